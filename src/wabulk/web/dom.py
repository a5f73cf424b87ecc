"""Finding elements through the fallback lists of :mod:`wabulk.web.selectors`, and the page probe.

No Selenium import at module level (``wabulk status`` must not load it); functions take a driver object
that only needs ``find_elements``/``execute_script``/``page_source``/``save_screenshot``.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wabulk.settings import ensure_private_dir
from wabulk.web import errors as web_errors

from . import selectors as S
from .selectors import TEXTS, Selector

# Named timeout tiers (seconds), as SeleniumBase names them: the call site says which kind of wait it is.
MINI = 2.0  # something that is already there or appears right after a click
SMALL = 7.0  # a UI reaction (popup, menu, preview)
LARGE = 20.0  # a server round trip (number lookup, message ack)
EXTREME = 60.0  # booting the whole app on a cold profile
POLL = 0.1


@dataclass
class Timeouts:
    """Waits used by the session and sender; tests shrink them, production keeps the defaults."""

    boot: float = EXTREME  # page load until main/qr/... (a cold profile can need > 30 s)
    stuck_loading: float = EXTREME  # a loading screen older than this is reloaded once
    chat_open: float = LARGE  # deep link → chat open or invalid-number popup
    element: float = SMALL  # a UI element after an action
    confirm: float = LARGE  # the new bubble leaving the clock
    takeover: float = LARGE  # "Use here" → main again
    settle: float = MINI  # messages rendered after a chat opened (verify_sent)
    # The chat's history showing (its bubbles, or the start-of-chat notice) after it opened: right after a
    # browser start it can take several seconds; nothing is pressed or concluded before it shows.
    history: float = LARGE


_BY = {"css": "css selector", "xpath": "xpath"}  # selenium.webdriver.common.by.By values


# --- masking --------------------------------------------------------------------------------------------

# Phone-like runs: 7+ digits, optionally with +, spaces, dashes, dots or parentheses between them.
_PHONE_RE = re.compile(r"\+?\d(?:[\s\-().\u00a0]*\d){6,}")


def mask_numbers(text: str) -> str:
    """Replace phone-number-like digit runs with ``•••`` plus the last two digits (debug captures)."""

    def repl(m: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", m.group(0))
        return "•••" + digits[-2:]

    return _PHONE_RE.sub(repl, text)


def safe_name(label: str) -> str:
    """A file-name-safe label with every digit run of 5+ removed (no numbers in debug file names)."""
    label = re.sub(r"\d{5,}", "x", label)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")[:60] or "capture"


# --- text ------------------------------------------------------------------------------------------------


def normalise_text(text: str) -> str:
    """What we compare: NBSP as space, CRLF as LF, trailing newlines dropped (the box adds a <br>)."""
    return text.replace("\u00a0", " ").replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")


def match_text(haystack: str, key: str) -> str | None:
    """The first wording of ``TEXTS[key]`` found in ``haystack`` (case-insensitive), or None."""
    low = haystack.lower().replace("\u2019", "'")
    for wording in TEXTS[key]:
        if wording.lower().replace("\u2019", "'") in low:
            return wording
    return None


# --- dead browser classification ------------------------------------------------------------------------

_DEAD_NAMES = {
    "InvalidSessionIdException",
    "NoSuchWindowException",
    "MaxRetryError",
    "NewConnectionError",
    "ProtocolError",
    "RemoteDisconnected",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "BrokenPipeError",
}
_DEAD_TEXTS = (
    "chrome not reachable",
    "disconnected: not connected to devtools",
    "session deleted",
    "invalid session id",
    "no such session",
    "tab crashed",
    "target window already closed",
    "unable to receive message from renderer",
    "cannot connect to chrome",
    "connection refused",
    "failed to establish a new connection",
    "browser has closed the connection",
    "session not created",
)


def is_dead_browser(exc: BaseException) -> bool:
    """Whether ``exc`` means the browser or chromedriver is gone (restart needed), not a page problem."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionError):
            return True
        names = {c.__name__ for c in type(cur).__mro__}
        if names & _DEAD_NAMES:
            return True
        msg = str(cur).lower()
        if any(t in msg for t in _DEAD_TEXTS):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


# --- debug captures ---------------------------------------------------------------------------------------


def _hide_css() -> str:
    """CSS that blurs chat names (``selectors.PRIVATE_TITLES``) for a screenshot."""
    css = ", ".join(expr for kind, expr in S.PRIVATE_TITLES.resolved if kind == "css")
    return css + " { filter: blur(7px) !important; }"


def save_debug(driver: Any, debug_dir: Path, label: str) -> str | None:
    """Save a screenshot and the page source (phone numbers masked) under ``debug_dir``; return the stem.

    The screenshot is taken with chat titles blurred, since pixels cannot be masked afterwards. Failures to
    capture are swallowed: a debug capture must never hide the error being reported.
    """
    try:
        ensure_private_dir(debug_dir)
        stem = (
            debug_dir
            / f"{time.strftime('%Y%m%d-%H%M%S')}-{int(time.time() * 1000) % 1000:03d}-{safe_name(label)}"
        )
    except OSError:
        return None
    try:
        source = driver.page_source
        # 0600: even masked, a page shows names and message texts.
        fd = os.open(f"{stem}.html", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(mask_numbers(source))
    except Exception:  # noqa: BLE001 - best effort
        pass
    try:
        from . import scripts

        scripts.run(driver, "hide_titles", _hide_css())
        # Created empty and private first: save_screenshot then writes into the 0600 file.
        os.close(os.open(f"{stem}.png", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        driver.save_screenshot(f"{stem}.png")
        scripts.run(driver, "unhide_titles")
    except Exception:  # noqa: BLE001 - best effort
        pass
    return str(stem)


# --- finding ---------------------------------------------------------------------------------------------


def _displayed(el: Any) -> bool:
    try:
        return bool(el.is_displayed())
    except Exception as exc:  # noqa: BLE001
        if is_dead_browser(exc):
            raise
        return False  # stale element: it went away between find and check


def resolve(
    driver: Any, selector: Selector, *, visible: bool = True, root: Any = None
) -> tuple[int, Any] | None:
    """Try each candidate once, in order; return ``(index, element)`` of the first match, or None."""
    base = root if root is not None else driver
    for i, (kind, expr) in enumerate(selector.resolved):
        try:
            found = base.find_elements(_BY[kind], expr)
        except Exception as exc:  # noqa: BLE001
            if is_dead_browser(exc):
                raise
            continue  # e.g. :has() unsupported by an old browser: try the next candidate
        for el in found:
            if not visible or _displayed(el):
                return i, el
    return None


def find(
    driver: Any,
    selector: Selector,
    timeout: float,
    *,
    visible: bool = True,
    root: Any = None,
    debug_dir: Path | None = None,
    label: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Wait up to ``timeout`` for any candidate of ``selector``; return the element.

    Raises :class:`web_errors.SelectorNotFound` naming the selector and every candidate tried, after saving a
    screenshot and the page source under ``debug_dir`` (when given).
    """
    deadline = clock() + timeout
    while True:
        hit = resolve(driver, selector, visible=visible, root=root)
        if hit is not None:
            return hit[1]
        if clock() >= deadline:
            break
        sleep(POLL)
    path = save_debug(driver, debug_dir, label or selector.name) if debug_dir is not None else None
    raise web_errors.SelectorNotFound(selector.name, selector.describe(), timeout, debug_path=path)


# --- the page probe ---------------------------------------------------------------------------------------


def probe(driver: Any, selectors: tuple[Selector, ...]) -> dict[str, Any]:
    """Run the page probe (``web/js/probe.js``) for ``selectors``.

    Returns ``{matched, dialogs, text, url, qr_ref, title}``."""
    from . import scripts

    args = {
        "sels": {s.name: scripts.cands(s) for s in selectors},
        "dialogs": scripts.cands(S.DIALOG),
        "skip": scripts.cands(S.PRIVATE_CONTENT),
        "qr": {"name": S.QR_CODE.name, "attr": S.QR_PAYLOAD_ATTRIBUTE},
    }
    result = scripts.run(driver, "probe", args)
    if not isinstance(result, dict):  # e.g. a page without a body mid-navigation
        return {"matched": {}, "dialogs": [], "text": "", "url": "", "qr_ref": None, "title": ""}
    return result


def probe_json(probe_result: dict[str, Any]) -> str:
    """A compact, masked dump of a probe (for error messages and logs)."""
    return mask_numbers(
        json.dumps({k: v for k, v in probe_result.items() if k != "text"}, ensure_ascii=False)
    )
