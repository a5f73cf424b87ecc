"""The browser's part of ``wabulk doctor``: Chromium and chromedriver, the profile, and whether every
WhatsApp Web selector still resolves on the live page (:func:`check_live`)."""

from __future__ import annotations

import time
from pathlib import Path

from wabulk import errors
from wabulk.doctor import FAIL, WARN, Check, _fail, _mode, _ok, _warn
from wabulk.settings import Settings
from wabulk.web.launch import INSTALL_HINT, binary_version, major_version
from wabulk.web.profile import LOCK_NAME, ProfileLock
from wabulk.web.states import LOGGED_OUT, QR

from . import browser as sess
from . import dom
from . import selectors as S


def check_binaries(settings: Settings) -> list[Check]:
    """Browser and driver found, their versions, and that their major versions match."""
    if settings.remote_url:
        return [_ok("browser", f"remote browser at {settings.remote_url} (local binaries not used)")]
    out: list[Check] = []
    majors: dict[str, int | None] = {}
    for label, path, env in (
        ("browser", settings.chrome_binary, "WABULK_CHROME_BINARY"),
        ("chromedriver", settings.chromedriver, "WABULK_CHROMEDRIVER"),
    ):
        if not path or not Path(path).exists():
            out.append(_fail(label, f"not found ({path or 'not on PATH'}): {INSTALL_HINT}"))
            majors[label] = None
            continue
        version = binary_version(path)
        majors[label] = major_version(version)
        if version is None:
            out.append(_fail(label, f"{path} does not run (`{path} --version` failed); set {env}"))
        else:
            out.append(_ok(label, f"{version.split(' (')[0]} ({path})"))
    b, d = majors.get("browser"), majors.get("chromedriver")
    if b is not None and d is not None:
        if b == d:
            out.append(_ok("versions match", f"major version {b}"))
        else:
            out.append(
                _fail(
                    "versions match",
                    f"Chromium {b} but chromedriver {d}: install the matching driver (same major version)",
                )
            )
    return out


def check_profile(settings: Settings, session_name: str) -> list[Check]:
    """The session's browser profile: exists, 0700, and whether its lock is free."""
    out: list[Check] = []
    profile = settings.profile_dir(session_name)
    if not profile.is_dir():
        out.append(
            _warn("profile", f"{profile} does not exist yet: run `wabulk login --session {session_name}`")
        )
    else:
        mode = _mode(profile)
        if mode & 0o077:
            out.append(
                _warn(
                    "profile",
                    f"{profile} is mode {mode:o}: other users can read the WhatsApp session; "
                    f"run chmod 700 {profile}",
                )
            )
        else:
            out.append(_ok("profile", f"{profile} (mode {mode:o})"))
        lock = profile / LOCK_NAME
        if lock.exists():
            probe_lock = ProfileLock(lock, session_name)
            try:
                probe_lock.acquire()
                probe_lock.release()
                out.append(_ok("profile lock", "free"))
            except errors.SessionBusy as exc:
                out.append(_warn("profile lock", str(exc)))
    return out


def _selector_check(
    browser: sess.BrowserSession, selector: S.Selector, *, visible: bool = True, absent_level: str = FAIL
) -> Check:
    hit = dom.resolve(browser.driver, selector, visible=visible)
    name = f"selector {selector.name}"
    if hit is None:
        detail = f"no candidate matched (tried {len(selector.resolved)}: {', '.join(selector.describe())})"
        return Check(name, absent_level != FAIL, detail, absent_level)
    idx = hit[0]
    cand = selector.describe()[idx]
    if idx == 0:
        return _ok(name, f"candidate 1 of {len(selector.resolved)}: {cand}")
    return _warn(
        name,
        f"only fallback {idx + 1} of {len(selector.resolved)} matched: {cand} "
        "(WhatsApp changed its page; wabulk still works)",
    )


def _wait_for_qr_code(browser: sess.BrowserSession) -> None:
    """The QR screen is drawn before its code is issued (``data-ref`` comes with the code): wait for the code,
    so the QR selectors are judged on the finished screen, not mid-render (a candidate checked a moment too
    early was reported as "only a fallback matched")."""
    deadline = time.monotonic() + browser.timeouts.element
    while not browser.probe().get("qr_ref") and time.monotonic() < deadline:
        time.sleep(dom.POLL)


# Which selectors can be checked on which screen (every other one of ``selectors.ALL`` is listed as not
# checked, with the reason, so the report names every selector wabulk uses).
_CHECK_ON_MAIN = (S.MAIN, S.CHAT_LIST, S.NEW_CHAT_BUTTON)
_CHECK_ON_QR = (S.QR_CODE, S.QR_CANVAS)
_CHECK_IN_CHAT = (S.CHAT, S.CHAT_TITLE, S.COMPOSE_BOX, S.ATTACH_BUTTON)
# Inside message rows: checked when the test chat has messages.
_CHECK_IN_MESSAGES = (S.MESSAGE_ROW, S.MESSAGE_PRE_PLAIN, S.MESSAGE_TEXT, S.STATUS_ICON)
_CHECK_IN_MENU = (S.ATTACH_MEDIA_ITEM, S.ATTACH_DOCUMENT_ITEM)
# Older builds keep the file inputs in the open menu; 2026 creates them only once an item is chosen
# (which opens a file chooser, so doctor does not): not finding them here is no failure.
_CHECK_IN_MENU_INPUTS = (S.MEDIA_INPUT, S.DOCUMENT_INPUT, S.FILE_INPUT)


def _reader_check(browser: sess.BrowserSession) -> Check | None:
    """What the bubble reader makes of the test chat (None when it has no messages)."""
    from . import bubbles

    read = bubbles.read(browser.driver)
    rows = [b for b in read.messages if b.has_message]  # not the start-of-chat notice or a date separator
    if not rows:
        return None
    ours = read.ours
    with_ids = sum(1 for b in ours if b.id)
    texts = sum(1 for b in ours if b.readable)
    detail = (
        f"{len(rows)} message row(s): {len(ours)} ours ({with_ids} with a message id, "
        f"{texts} with readable content), {len(rows) - len(ours) - len(read.unclassified)} "
        f"other, {len(read.unclassified)} of unknown direction"
    )
    if read.readable:
        return _ok("bubble reader", detail)
    return _warn("bubble reader", detail + ": verification after a crash will report 'unknown' here")


def _close_menu(browser: sess.BrowserSession) -> None:
    from selenium.webdriver.common.keys import Keys

    try:
        browser.driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    except Exception as exc:  # noqa: BLE001 - best effort; the browser is closed next
        if dom.is_dead_browser(exc):
            raise


def check_live(
    settings: Settings,
    session_name: str,
    *,
    test_phone: str | None = None,
    timeouts: dom.Timeouts | None = None,
) -> list[Check]:
    """Open WhatsApp Web and resolve every selector the current page can show; list the others.

    Without a test number only the QR or main screen's selectors can be seen. With one, its chat is opened
    (nothing is typed or sent) and the chat, message and attach-menu selectors are checked too.
    """
    out: list[Check] = []
    browser = sess.BrowserSession(settings, session_name, timeouts=timeouts)
    checked: set[str] = set()
    why: dict[str, str] = {}

    def check(sel: S.Selector, **kw: object) -> None:
        out.append(_selector_check(browser, sel, **kw))  # type: ignore[arg-type]
        checked.add(sel.name)

    try:
        browser.start()
        state = browser.ensure_ready(require_login=False)
        if state in (QR, LOGGED_OUT):
            out.append(_warn("page", f"WhatsApp Web is not logged in ({state}): run `wabulk login`"))
            _wait_for_qr_code(browser)
            group: tuple[S.Selector, ...] = _CHECK_ON_QR
        else:
            out.append(_ok("page", f"WhatsApp Web is logged in ({state}) at {settings.web_url}"))
            group = _CHECK_ON_MAIN
        for sel in group:
            check(sel)
        if state not in (QR, LOGGED_OUT) and test_phone:
            from .sender import WhatsAppSender

            sender = WhatsAppSender(settings, session_name, browser=browser)  # same browser and lock
            try:
                sender.open_chat(test_phone)
            except errors.WabulkError as exc:
                out.append(_fail("test chat", f"could not open a chat with the test number: {exc}"))
            else:
                inpage = sender.last_open_method == "inpage"
                how = "New chat (in-page)" if inpage else "the /send?phone= deep link"
                out.append(_ok("test chat", f"opened with {how}"))
                for sel in _CHECK_IN_CHAT:
                    check(sel)
                reader = _reader_check(browser)
                if reader is not None:
                    out.append(reader)
                    for sel in _CHECK_IN_MESSAGES:
                        check(sel)
                else:
                    for sel in _CHECK_IN_MESSAGES:
                        why[sel.name] = "the test chat has no messages"
                try:
                    browser.find(S.ATTACH_BUTTON, browser.timeouts.element).click()
                    for sel in _CHECK_IN_MENU:
                        check(sel)
                    for sel in _CHECK_IN_MENU_INPUTS:
                        check(sel, visible=False, absent_level=WARN)
                    _close_menu(browser)
                except errors.WabulkError as exc:
                    out.append(_fail("attach menu", str(exc)))
    except errors.WabulkError as exc:
        out.append(_fail("page", str(exc)))
        return out
    finally:
        browser.close()
    rest = [sel for sel in S.ALL if sel.name not in checked]
    in_chat = [s.name for s in rest if s.where in (S.WHERE_CHAT, S.WHERE_ATTACH_MENU)]
    other = [s.name for s in rest if s.name not in in_chat]
    if in_chat:
        if "compose_box" in checked:  # a chat was open: what is left needs text, messages or a file
            reason = "they need text in the box, particular messages, or a file being attached"
        else:
            reason = "give a test number to open a chat; only its chat is opened, nothing is sent"
        named = ", ".join(f"{n} ({why[n]})" if n in why else n for n in in_chat)
        out.append(_warn("chat selectors", f"not checked: {named} ({reason})"))
    if other:
        # Loading screen, QR, popups, preview, takeover: they exist only in situations doctor does not create.
        out.append(
            _ok("situational selectors", f"not checked (shown only in their situation): {', '.join(other)}")
        )
    return out
