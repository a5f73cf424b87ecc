"""``wabulk login``: link a session by scanning the QR (shown in the terminal and saved as a PNG)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wabulk import errors
from wabulk import qrcodes as qr
from wabulk.settings import Settings
from wabulk.web.states import LOGGED_IN_STATES, OFFLINE

from . import browser as sess
from . import dom

DEFAULT_LOGIN_TIMEOUT = 300.0
# After linking, WhatsApp writes its keys to the profile; quitting at once can lose the login.
SETTLE_AFTER_LINK = 3.0


@dataclass(frozen=True)
class LoginResult:
    """What :func:`login` found or did."""

    already_logged_in: bool
    qr_png: Path | None = None  # the last QR saved, when one was shown
    qr_shown: int = 0  # how many distinct QR payloads were shown


def login(
    settings: Settings,
    session_name: str,
    on_qr: Callable[[str], None] | None = None,
    timeout: float = DEFAULT_LOGIN_TIMEOUT,
    *,
    timeouts: dom.Timeouts | None = None,
    should_stop: Callable[[], bool] | None = None,
    settle: float = SETTLE_AFTER_LINK,
) -> LoginResult:
    """Open WhatsApp Web on the session's profile and wait until it is linked. Reports, never records:
    ``already_logged_in`` False means a NEW device was linked, which the caller records
    (:func:`wabulk.session.record_link`).

    Each new QR payload (``data-ref``; it rotates about every 20 s) is saved as a PNG under
    ``settings.home/qr/<session>.png`` and passed to ``on_qr`` (the CLI prints
    :func:`qr.render_terminal` of it). An expired QR is refreshed. Raises NotLoggedIn when nobody scanned in
    ``timeout`` seconds, Blocked on a ban screen, SessionBusy when the profile is in use.
    """
    browser = sess.BrowserSession(settings, session_name, timeouts=timeouts)
    png = qr.png_path(settings, session_name)
    shown = 0

    def handle(payload: str) -> None:
        nonlocal shown
        shown += 1
        qr.save_png(payload, png)
        if on_qr is not None:
            on_qr(payload)

    browser.start()
    try:
        state = browser.ensure_ready(require_login=False)
        if state in LOGGED_IN_STATES or state == OFFLINE:
            return LoginResult(already_logged_in=True)
        if not browser.wait_for_login(handle, timeout=timeout, should_stop=should_stop):
            raise errors.NotLoggedIn(
                f"session {session_name!r} was not linked within {timeout:g}s: run `wabulk login` again and "
                "scan the QR with WhatsApp on your phone (Settings → Linked devices → Link a device)"
            )
        time.sleep(settle)
        return LoginResult(already_logged_in=False, qr_png=png if shown else None, qr_shown=shown)
    finally:
        browser.close()
