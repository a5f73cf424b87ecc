"""The page's states: what one probe of WhatsApp Web (see :func:`wabulk.web.dom.probe`) says the page shows.

Pure functions over the probe's dict, so every state is unit-tested without a browser. The selectors and
texts live in :mod:`wabulk.web.selectors`.
"""

from __future__ import annotations

from typing import Any

from wabulk.web import dom
from wabulk.web import selectors as S

LOADING = "loading"
QR = "qr"
MAIN = "main"
CHAT = "chat"
TAKEOVER_WINDOW = "takeover_window"
TAKEOVER_COMPUTER = "takeover_computer"
LOGGED_OUT = "logged_out"
OFFLINE = "offline"
BLOCKED = "blocked"
UNKNOWN = "unknown"
# 2026: the page refuses the browser ("WhatsApp works with Google Chrome 100+"), no app and no QR.
UNSUPPORTED_BROWSER = "unsupported_browser"
# 2026: an open chat whose composer is replaced by "Your account on linked devices is restricted".
RESTRICTED = "restricted"
# 2026: "A database error occurred" / "Your browser storage is full" instead of the app.
PAGE_ERROR = "page_error"
PAGE_STATES = (
    LOADING,
    QR,
    MAIN,
    CHAT,
    TAKEOVER_WINDOW,
    TAKEOVER_COMPUTER,
    LOGGED_OUT,
    OFFLINE,
    BLOCKED,
    UNKNOWN,
    UNSUPPORTED_BROWSER,
    RESTRICTED,
    PAGE_ERROR,
)
# Logged in with the app loaded. A restricted account is logged in too: its chat list works, only
# sending is refused (the sender raises AccountRestricted when a chat shows the block bar).
LOGGED_IN_STATES = (MAIN, CHAT, RESTRICTED)

# What the state probe looks for on every poll (kept small: it runs several times a second).
STATE_SELECTORS: tuple[S.Selector, ...] = (
    S.LOADING,
    S.QR_CODE,
    S.QR_CANVAS,
    S.QR_REFRESH,
    S.MAIN,
    S.CHAT,
    S.COMPOSE_BOX,
    S.OFFLINE_ICON,
    S.USE_HERE,
    S.RESTRICTED_BAR,
)


def has(probe: dict[str, Any], name: str) -> bool:
    """Whether the probe matched the selector called ``name``."""
    return int(probe.get("matched", {}).get(name, -1)) >= 0


def _texts(probe: dict[str, Any]) -> tuple[str, str]:
    text = str(probe.get("text") or "")
    dialogs = " ".join(str(d) for d in probe.get("dialogs") or ())
    return text, f"{text} {dialogs}"


def decide_state(probe: dict[str, Any]) -> str:
    """Classify a page probe (see :func:`dom.probe`) into one of :data:`PAGE_STATES`.

    Order matters: screens that replace the app (ban, refusal, takeover, logout, database error) win over
    leftovers of the app, the QR wins over an offline warning drawn on top of it, the offline bar wins over
    the chat under it, and a chat's block bar makes it ``restricted``.
    """
    text, everything = _texts(probe)
    url = str(probe.get("url") or "")
    logged_in = has(probe, S.MAIN.name) or has(probe, S.CHAT.name)
    if dom.match_text(everything, "blocked") and not logged_in:
        return BLOCKED
    if dom.match_text(text, "unsupported_browser") and not logged_in:
        return UNSUPPORTED_BROWSER
    if dom.match_text(everything, "takeover_window"):
        return TAKEOVER_WINDOW
    if dom.match_text(everything, "takeover_computer"):
        return TAKEOVER_COMPUTER
    if page_error(probe) is not None and not logged_in:
        return PAGE_ERROR
    if dom.match_text(text, "logged_out") and not logged_in:
        return LOGGED_OUT
    if has(probe, S.QR_CODE.name) or has(probe, S.QR_CANVAS.name):
        return LOGGED_OUT if "post_logout=1" in url else QR
    if "post_logout=1" in url and not logged_in:
        return LOGGED_OUT
    if logged_in and (dom.match_text(text, "offline") or has(probe, S.OFFLINE_ICON.name)):
        return OFFLINE
    if has(probe, S.CHAT.name) and has(probe, S.RESTRICTED_BAR.name):
        return RESTRICTED
    if has(probe, S.CHAT.name):
        return CHAT
    if has(probe, S.MAIN.name):
        return MAIN
    if has(probe, S.LOADING.name) or dom.match_text(text, "loading"):
        return LOADING
    if dom.match_text(text, "qr_screen"):
        return QR  # QR screen drawn, canvas not yet
    return UNKNOWN


def page_error(probe: dict[str, Any]) -> str | None:
    """Which error screen replaces the app: ``"database_error"``, ``"storage_full"`` or None."""
    text, _ = _texts(probe)
    for key in ("database_error", "storage_full"):
        if dom.match_text(text, key):
            return key
    return None


def whats_new(probe: dict[str, Any]) -> bool:
    """Whether the "What's new on WhatsApp Web" modal is open (it covers the page and swallows input)."""
    dialogs = " ".join(str(d) for d in probe.get("dialogs") or ())
    return dom.match_text(dialogs, "whats_new") is not None


def qr_expired(probe: dict[str, Any]) -> bool:
    """Whether the QR has expired and waits for a click (2026: "Select to reload QR code" over the code;
    older pages: a reload button, :data:`selectors.QR_REFRESH`)."""
    text, _ = _texts(probe)
    return has(probe, S.QR_REFRESH.name) or dom.match_text(text, "qr_expired") is not None
