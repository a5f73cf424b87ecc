"""Page-state and error classification, the profile lock, options, QR rendering and doctor's file checks —
all without a browser."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from wabulk import errors
from wabulk import qrcodes as qr
from wabulk.doctor import check_files
from wabulk.settings import Settings
from wabulk.web import attach, bubbles, chat, dom, sender
from wabulk.web import browser as sess
from wabulk.web import errors as web_errors
from wabulk.web import selectors as S
from wabulk.web.doctor import check_binaries
from wabulk.web.launch import major_version
from wabulk.web.profile import ProfileLock
from wabulk.web.states import (
    BLOCKED,
    CHAT,
    LOADING,
    LOGGED_OUT,
    MAIN,
    OFFLINE,
    PAGE_STATES,
    QR,
    RESTRICTED,
    STATE_SELECTORS,
    TAKEOVER_COMPUTER,
    TAKEOVER_WINDOW,
    UNKNOWN,
    decide_state,
)


def probe(
    *names: str, text: str = "", dialogs: tuple[str, ...] = (), url: str = "http://x/"
) -> dict[str, Any]:
    matched = {s.name: -1 for s in STATE_SELECTORS}
    for n in names:
        matched[n] = 0
    return {"matched": matched, "text": text, "dialogs": list(dialogs), "url": url, "qr_ref": None}


@pytest.mark.parametrize(
    ("p", "state"),
    [
        (probe("loading", text="WhatsApp Loading your chats [40%]"), LOADING),
        (probe(text="Loading your chats [0%]"), LOADING),
        (probe("qr_code", "qr_canvas", text="Steps to log in"), QR),
        (probe("qr_code", url="http://x/?post_logout=1"), LOGGED_OUT),
        (probe(text="Logging out… Your device was logged out."), LOGGED_OUT),
        (probe("main_screen"), MAIN),
        (probe("main_screen", "chat_panel", "compose_box"), CHAT),
        (probe("main_screen", "chat_panel", text="Computer not connected"), OFFLINE),
        (probe("main_screen", "offline_icon"), OFFLINE),
        # an offline warning over the QR is still the QR screen
        (probe("qr_code", text="Computer not connected"), QR),
        (
            probe(
                dialogs=(
                    'WhatsApp is open in another window. Click "Use here" to use WhatsApp in this window.',
                )
            ),
            TAKEOVER_WINDOW,
        ),
        (
            probe(dialogs=("WhatsApp is open on another computer or browser. Click \u201cUse Here\u201d",)),
            TAKEOVER_COMPUTER,
        ),
        (probe(text="Your account has been temporarily banned"), BLOCKED),
        (probe(text="This account is not allowed to use WhatsApp due to spam."), BLOCKED),
        (probe(), UNKNOWN),
    ],
)
def test_page_state_is_decided_from_the_probe(p: dict[str, Any], state: str) -> None:
    assert decide_state(p) == state
    assert state in PAGE_STATES


def test_dialog_texts_classify_into_permanent_errors() -> None:
    err = chat.classify_dialog("The number +1 555-010-0999 isn't on WhatsApp. OK")
    assert isinstance(err, errors.NotOnWhatsApp) and not err.transient
    assert err.error_class == "not_on_whatsapp" and "isn't on WhatsApp" in str(err)
    assert isinstance(chat.classify_dialog("Phone number shared via url is invalid."), errors.NotOnWhatsApp)
    big = chat.classify_dialog("1 video you tried adding is larger than the 16 MB limit.")
    assert isinstance(big, errors.AttachmentRejected) and "16 MB" in str(big) and not big.transient
    assert isinstance(
        chat.classify_dialog("1 file you tried adding has no content."), errors.AttachmentRejected
    )
    assert chat.classify_dialog("Starting chat Cancel") is None


class FakeWebDriverException(Exception):
    """Stands in for selenium's WebDriverException (only the message matters)."""


class InvalidSessionIdException(Exception):
    pass


class MaxRetryError(Exception):
    pass


@pytest.mark.parametrize(
    "exc",
    [
        FakeWebDriverException("Message: chrome not reachable"),
        FakeWebDriverException("disconnected: not connected to DevTools"),
        FakeWebDriverException(
            "invalid session id: session deleted as the browser has closed the connection"
        ),
        InvalidSessionIdException("x"),
        MaxRetryError("HTTPConnectionPool(host='localhost', port=4444)"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
def test_dead_browser_errors_are_recognised(exc: BaseException) -> None:
    assert dom.is_dead_browser(exc)


def test_page_errors_are_not_mistaken_for_a_dead_browser() -> None:
    assert not dom.is_dead_browser(FakeWebDriverException("no such element: Unable to locate element"))
    assert not dom.is_dead_browser(FakeWebDriverException("stale element reference"))
    wrapped = RuntimeError("while sending")
    wrapped.__cause__ = ConnectionResetError("reset")
    assert dom.is_dead_browser(wrapped)


def test_text_helpers() -> None:
    assert bubbles.same_text("a\u00a0b\n", "a b")
    assert bubbles.same_text("line1\nline2\n\n", "line1\nline2")
    assert not bubbles.same_text("a\nb", "a b")
    assert not bubbles.same_text("😀", "😃")
    assert chat.digits_of("+1 (415) 555-0123") == "14155550123"
    with pytest.raises(errors.BadInput):
        chat.digits_of("n/a")
    assert bubbles.minute_floor(1_700_000_059.9) == 1_700_000_040.0
    assert attach.is_media(Path("a.JPG")) and attach.is_media(Path("clip.mp4"))
    assert not attach.is_media(Path("invoice.pdf"))


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    base = {
        "db": tmp_path / "wabulk.db",
        "home": tmp_path,
        "web_url": "http://127.0.0.1:9",
        "chrome_binary": "/usr/bin/chromium",
        "chromedriver": "/usr/bin/chromedriver",
        "headless": True,
    }
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def test_profile_lock_excludes_a_second_holder_and_names_the_pid(tmp_path: Path) -> None:
    path = tmp_path / "wabulk.lock"
    first = ProfileLock(path, "default")
    first.acquire()
    assert path.read_text().strip() == str(os.getpid())
    second = ProfileLock(path, "default")
    with pytest.raises(errors.SessionBusy, match=f"in use by process {os.getpid()}"):
        second.acquire()
    first.release()
    second.acquire()  # free again
    second.release()


def test_profile_lock_held_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "wabulk.lock"
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from wabulk.web.profile import ProfileLock
        lock = ProfileLock(Path({str(path)!r}), "default")
        lock.acquire()
        print("locked", flush=True)
        sys.stdin.readline()
    """)
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(errors.SessionBusy, match=f"process {child.pid}"):
            ProfileLock(path, "default").acquire()
    finally:
        child.kill()
        child.wait()
    # the holder died without releasing: its stale pid is in the file, and the lock is taken over
    assert path.read_text().strip() == str(child.pid)
    lock = ProfileLock(path, "default")
    lock.acquire()
    assert path.read_text().strip() == str(os.getpid())
    lock.release()


def test_missing_browser_or_driver_is_a_config_error_naming_what_to_set(tmp_path: Path) -> None:
    s = _settings(tmp_path, chrome_binary=str(tmp_path / "no-chromium"))
    b = sess.BrowserSession(s, "default")
    with pytest.raises(errors.ConfigError, match="WABULK_CHROME_BINARY"):
        b.start()
    assert not b.lock.held  # a failed start releases the profile
    s2 = _settings(tmp_path, chromedriver=None)
    with pytest.raises(errors.ConfigError, match="chromedriver not found.*WABULK_CHROMEDRIVER"):
        sess.BrowserSession(s2, "default").start()


def test_browser_options(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    opts = sess.BrowserSession(s, "work").build_options()
    args = opts.arguments
    assert f"--user-data-dir={tmp_path / 'sessions' / 'work'}" in args
    assert "--headless=new" in args and "--disable-gpu" in args
    for flag in (
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
    ):
        assert flag in args
    assert ("--no-sandbox" in args) == (os.geteuid() == 0)
    assert opts.binary_location == "/usr/bin/chromium"
    headed = sess.BrowserSession(_settings(tmp_path, headless=False), "work").build_options().arguments
    assert not any(a.startswith("--headless") for a in headed) and "--disable-gpu" not in headed
    remote = sess.BrowserSession(_settings(tmp_path, remote_url="http://grid:4444"), "w").build_options()
    assert not remote.binary_location  # the grid node has its own browser


def test_selenium_is_not_imported_by_the_browser_modules() -> None:
    code = (
        "import sys, wabulk.web.browser, wabulk.web.sender, wabulk.web.login, wabulk.doctor, wabulk.qrcodes,"
        " wabulk.web.dom;"
        "print('selenium' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_terminal_qr_encodes_the_payload_exactly() -> None:
    import segno

    payload = "2@abcDEF123,bm9pc2U=,aWRlbnRpdHk=,c2VjcmV0,WEB"
    text = qr.render_terminal(payload, invert=False, border=2)
    lines = text.split("\n")
    code = segno.make(payload, error="L", micro=False)
    size = len(code.matrix) + 4
    assert all(len(line) == size for line in lines)
    assert len(lines) == (size + 1) // 2  # two module rows per line
    decoded: list[list[bool]] = []
    for line in lines:
        decoded.append([c in "\u2580\u2588" for c in line])
        decoded.append([c in "\u2584\u2588" for c in line])
    inner = [row[2:-2] for row in decoded[2 : 2 + len(code.matrix)]]
    assert inner == [[bool(v) for v in row] for row in code.matrix]
    inverted = qr.render_terminal(payload)
    assert inverted != text and len(inverted.split("\n")) == len(lines)


def test_qr_png_is_saved_privately(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    path = qr.save_png("2@ref,a,b,c,WEB", qr.png_path(s, "work"))
    assert path == tmp_path / "qr" / "work.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (path.stat().st_mode & 0o777) == 0o600


def test_doctor_file_checks_warn_on_wide_permissions(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    checks = {c.name: c for c in check_files(s, "default")}
    assert checks["profile"].level == "warn" and "wabulk login" in checks["profile"].detail
    assert checks["database"].level == "ok"
    profile = s.profile_dir("default")
    profile.mkdir(parents=True, mode=0o755)
    profile.chmod(0o755)
    s.db.write_text("")
    s.db.chmod(0o644)
    checks = {c.name: c for c in check_files(s, "default")}
    assert checks["profile"].level == "warn" and "chmod 700" in checks["profile"].detail
    assert checks["database"].level == "warn" and "chmod 600" in checks["database"].detail
    profile.chmod(0o700)
    s.db.chmod(0o600)
    checks = {c.name: c for c in check_files(s, "default")}
    assert checks["profile"].level == "ok" and checks["database"].level == "ok"


def test_doctor_binary_checks(tmp_path: Path) -> None:
    missing = {c.name: c for c in check_binaries(_settings(tmp_path, chromedriver=str(tmp_path / "nope")))}
    assert missing["chromedriver"].level == "fail" and "WABULK_CHROMEDRIVER" in missing["chromedriver"].detail
    assert major_version("Chromium 156.0.8078.108 built on Debian") == 156
    assert major_version("ChromeDriver 155.0.1.2 (abc)") == 155
    assert major_version(None) is None


@pytest.mark.skipif(not Path("/usr/bin/chromedriver").exists(), reason="needs the local chromedriver")
def test_doctor_reports_real_versions(tmp_path: Path) -> None:
    checks = {c.name: c for c in check_binaries(_settings(tmp_path))}
    assert checks["browser"].ok and checks["chromedriver"].ok
    assert checks["versions match"].level == "ok"


def test_selector_where_values_are_known() -> None:
    known = {
        S.WHERE_ANY,
        S.WHERE_LOADING,
        S.WHERE_QR,
        S.WHERE_MAIN,
        S.WHERE_CHAT,
        S.WHERE_ATTACH_MENU,
        S.WHERE_PREVIEW,
        S.WHERE_DIALOG,
        S.WHERE_TAKEOVER,
    }
    assert {s.where for s in S.ALL} <= known


def test_bubble_matching_is_exact_with_real_page_allowances() -> None:
    assert bubbles.bubble_matches({"text": "hi there\n"}, "hi there")
    assert not bubbles.bubble_matches({"text": "hi there!"}, "hi there")
    assert not bubbles.bubble_matches({"text": ""}, "hi")
    # the real page renders *bold* / _italic_ without the markers
    assert bubbles.bubble_matches({"text": "Your order is ready"}, "Your *order* is _ready_")
    long_body = "word " * 200
    cut = long_body[:300] + "…"
    assert bubbles.bubble_matches({"text": cut, "more": True}, long_body)
    assert not bubbles.bubble_matches({"text": cut, "more": False}, long_body)
    assert not bubbles.bubble_matches({"text": "word …", "more": True}, long_body)  # too short to tell


# --- how chats are opened (WABULK_OPEN_CHAT) -------------------------------------------------------------


def test_open_chat_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from wabulk.settings import parse_open_chat

    monkeypatch.delenv("WABULK_OPEN_CHAT", raising=False)
    assert Settings.from_env().open_chat == "auto"
    monkeypatch.setenv("WABULK_OPEN_CHAT", "In-Page")
    assert Settings.from_env().open_chat == "inpage"
    assert parse_open_chat("deeplink") == "deeplink" and parse_open_chat(" ") == "auto"
    with pytest.raises(errors.ConfigError, match="WABULK_OPEN_CHAT must be one of deeplink, inpage, auto"):
        parse_open_chat("search-box")


def test_unknown_open_chat_method_is_refused_before_any_browser(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="unknown chat opening method 'wa.me'"):
        sender.WhatsAppSender(_settings(tmp_path), open_chat="wa.me")
    assert sender.WhatsAppSender(_settings(tmp_path, open_chat="deeplink")).open_chat_method == "deeplink"
    assert sender.WhatsAppSender(_settings(tmp_path), open_chat="inpage").open_chat_method == "inpage"


def test_chat_title_digits_ignore_formatting_and_bidi_marks() -> None:
    assert chat.title_digits("\u202a+1 415-555-0123\u202c") == "14155550123"
    assert chat.title_digits("Alice") == "" and chat.title_digits(None) == ""


class _Opener(chat.ChatOpener):
    """A chat opener whose page-level steps are scripted: records which way each chat was opened."""

    def __init__(self, tmp_path: Path, inpage_result: BaseException | None, usable: bool = True) -> None:
        wa = sender.WhatsAppSender(_settings(tmp_path), open_chat="auto")
        super().__init__(wa.browser, wa.settings.web_url, "default", "auto")
        self.inpage_result = inpage_result
        self.usable = usable
        self.calls: list[str] = []

    def inpage_usable(self) -> bool:
        return self.usable

    def open_inpage(self, phone: str) -> None:
        self.calls.append("inpage")
        if self.inpage_result is not None:
            raise self.inpage_result

    def open_deeplink(self, phone: str) -> None:
        self.calls.append("deeplink")


def test_auto_uses_in_page_and_falls_back_to_the_deep_link_once_on_a_transient_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ok = _Opener(tmp_path, None)
    ok.open("+14155550123")
    assert ok.calls == ["inpage"]
    for failure in (
        web_errors.SelectorNotFound("new_chat_button", ("x",), 2.0),
        errors.TransientSendError("identity not proven", error_class="chat_identity"),
    ):
        op = _Opener(tmp_path, failure)
        with caplog.at_level("WARNING", logger="wabulk.web.sender"):
            op.open("+14155550123")
        assert op.calls == ["inpage", "deeplink"]
    assert "in-page chat opening failed" in caplog.text and "using the deep link" in caplog.text


@pytest.mark.parametrize(
    "failure",
    [
        errors.NotOnWhatsApp("WhatsApp says: The number +1 555 isn't on WhatsApp."),
        errors.NotLoggedIn("logged out"),
        errors.Offline("offline"),
        web_errors.BrowserCrashed("gone"),
    ],
    ids=["not-on-whatsapp", "logged-out", "offline", "crashed"],
)
def test_auto_does_not_retry_with_the_deep_link_what_it_would_meet_again(
    tmp_path: Path, failure: BaseException
) -> None:
    op = _Opener(tmp_path, failure)
    with pytest.raises(type(failure)):
        op.open("+14155550123")
    assert op.calls == ["inpage"]


def test_auto_uses_the_deep_link_when_the_page_is_not_loaded_or_in_page_keeps_failing(tmp_path: Path) -> None:
    cold = _Opener(tmp_path, None, usable=False)
    cold.open("+14155550123")
    assert cold.calls == ["deeplink"]
    broken = _Opener(tmp_path, web_errors.SelectorNotFound("new_chat_button", ("x",), 2.0))
    for _ in range(chat.INPAGE_GIVE_UP + 2):
        broken.open("+14155550123")
    tries = chat.INPAGE_GIVE_UP
    assert broken.calls == ["inpage", "deeplink"] * tries + ["deeplink"] * 2


# --- the one wait both chat-opening ways share ------------------------------------------------------------


class _Page:
    """A browser whose probes are scripted: each snapshot() returns the next (state, probe)."""

    def __init__(self, *states: tuple[str, dict[str, Any]]) -> None:
        self.states = list(states)
        self.driver = None
        self.dismissed = 0

    def snapshot(self) -> tuple[str, dict[str, Any]]:
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def dismiss_whats_new(self, p: dict[str, Any]) -> bool:
        if "What's new" in " ".join(p.get("dialogs") or ()):
            self.dismissed += 1
            return True
        return False


def _wait(page: _Page, takeovers: list[int] | None = None) -> chat.PageWait:
    return chat.PageWait(page, "s", lambda: (takeovers if takeovers is not None else []).append(1))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "error"),
    [
        (RESTRICTED, errors.AccountRestricted),
        (BLOCKED, errors.Blocked),
        (QR, errors.NotLoggedIn),
        (LOGGED_OUT, errors.NotLoggedIn),
    ],
)
def test_the_shared_wait_raises_what_no_waiting_can_fix(state: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        _wait(_Page((state, probe()))).step()


def test_the_shared_wait_closes_whats_new_hands_takeovers_over_and_reads_invalid_numbers() -> None:
    page = _Page((MAIN, probe(dialogs=("What's new on WhatsApp Web Continue",))), (CHAT, probe()))
    st, _, dialogs = _wait(page).step()
    assert (st, dialogs, page.dismissed) == (CHAT, "", 1)
    takeovers: list[int] = []
    page = _Page((TAKEOVER_WINDOW, probe()), (CHAT, probe("compose_box")))
    assert _wait(page, takeovers).step()[0] == CHAT and takeovers == [1]
    page = _Page((MAIN, probe(dialogs=("The phone number +1 555 isn't on WhatsApp. OK",))))
    with pytest.raises(errors.NotOnWhatsApp, match="isn't on WhatsApp"):
        _wait(page).step()


def test_the_shared_wait_gives_a_flapping_connection_a_moment_then_says_offline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(chat.time, "monotonic", lambda: now[0])
    wait = _wait(_Page((OFFLINE, probe("main_screen"))))
    wait.step()
    now[0] += dom.MINI / 2
    wait.step()  # still within the grace
    now[0] += dom.MINI
    with pytest.raises(errors.Offline):
        wait.step()
    # offline with the chat's compose box usable is not a reason to stop opening it
    ok = _wait(_Page((OFFLINE, probe("main_screen", "compose_box"))))
    now[0] += 10 * dom.MINI
    assert ok.step()[0] == OFFLINE and ok.step()[0] == OFFLINE
