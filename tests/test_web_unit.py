"""The page layer without a browser: the 2026 page states, the browser's identity (user agent) and the
profile repairs made under wabulk's lock (another host's Chromium lock, a cached refusal)."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from wabulk import errors
from wabulk.settings import Settings
from wabulk.web import browser as sess
from wabulk.web import launch, profile, states


def probe(
    *names: str, text: str = "", dialogs: tuple[str, ...] = (), url: str = "http://x/"
) -> dict[str, Any]:
    matched = {s.name: -1 for s in states.STATE_SELECTORS}
    for n in names:
        matched[n] = 0
    return {"matched": matched, "text": text, "dialogs": list(dialogs), "url": url, "qr_ref": None}


REFUSAL = (
    "WhatsApp works with Google Chrome 100+ To use WhatsApp, update Chrome or use Mozilla Firefox, Safari, "
    "Microsoft Edge or Opera."
)


@pytest.mark.parametrize(
    ("p", "state"),
    [
        (probe(text=REFUSAL), states.UNSUPPORTED_BROWSER),
        # the same words inside a logged-in app (e.g. a chat list preview) are not the refusal page
        (probe("main_screen", text="update Chrome"), states.MAIN),
        (probe("main_screen", "chat_panel", "restricted_bar"), states.RESTRICTED),
        (probe("main_screen", "chat_panel", "compose_box"), states.CHAT),
        # offline wins over the bar: the bar may be stale, and the offline handling waits anyway
        (probe("main_screen", "chat_panel", "restricted_bar", text="Computer not connected"), states.OFFLINE),
        (probe(text="A database error occurred. Reload the page"), states.PAGE_ERROR),
        (probe(text="Your browser storage is full. Free up space"), states.PAGE_ERROR),
        (probe("main_screen", dialogs=("What's new on WhatsApp Web Continue",)), states.MAIN),
        (probe("qr_code", text="Steps to log in Select to reload QR code"), states.QR),
    ],
)
def test_decide_state_knows_the_2026_screens(p: dict[str, Any], state: str) -> None:
    assert states.decide_state(p) == state
    assert state in states.PAGE_STATES


def test_restricted_counts_as_logged_in() -> None:
    assert states.RESTRICTED in states.LOGGED_IN_STATES


def test_screen_details() -> None:
    assert states.page_error(probe(text="A database error occurred")) == "database_error"
    assert states.page_error(probe(text="Your browser storage is full")) == "storage_full"
    assert states.page_error(probe("main_screen")) is None
    assert states.whats_new(probe(dialogs=("What\u2019s new on WhatsApp Web",)))
    assert not states.whats_new(probe(text="What's new on WhatsApp Web"))  # only as an open window
    assert states.qr_expired(probe("qr_code", text="Select to reload QR code"))
    assert states.qr_expired(probe("qr_code", "qr_refresh"))
    assert not states.qr_expired(probe("qr_code", text="Steps to log in"))


# --- identity ---------------------------------------------------------------------------------------------


def test_the_user_agent_is_a_normal_chrome_one_derived_from_the_browser_version() -> None:
    ua = launch.chrome_user_agent("Chromium 156.0.8078.114 built on Debian GNU/Linux 12 (bookworm)")
    assert ua == (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/156.0.0.0 Safari/537.36"
    )
    assert "Headless" not in ua
    assert launch.chrome_user_agent("Google Chrome 140.0.7339.80") is not None
    assert launch.chrome_user_agent(None) is None and launch.chrome_user_agent("garbage") is None


def test_a_headless_user_agent_is_fixed_by_replacing_its_token() -> None:
    headless = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/156.0.0.0 Safari/537.36"
    )
    assert launch.fixed_user_agent(headless) == headless.replace("HeadlessChrome/", "Chrome/")
    assert launch.fixed_user_agent(headless.replace("HeadlessChrome", "Chrome")) is None


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "db": tmp_path / "w.db",
        "home": tmp_path,
        "chrome_binary": str(tmp_path / "chromium"),
        "chromedriver": "/usr/bin/chromedriver",
        "headless": True,
    }
    base.update(kw)
    return Settings(**base)


def _fake_chromium(tmp_path: Path, version: str) -> None:
    exe = tmp_path / "chromium"
    exe.write_text(f"#!/bin/sh\necho '{version}'\n")
    exe.chmod(0o755)


def test_launch_flags_carry_the_user_agent_and_hide_automation(tmp_path: Path) -> None:
    _fake_chromium(tmp_path, "Chromium 151.0.1.2 built on Debian")
    args = sess.BrowserSession(_settings(tmp_path), "work").build_options().arguments
    assert "--user-agent=" + launch.CHROME_UA.format(major=151) in args
    assert "--disable-blink-features=AutomationControlled" in args
    own = sess.BrowserSession(_settings(tmp_path, user_agent="MyAgent/1.0"), "work").build_options().arguments
    assert "--user-agent=MyAgent/1.0" in own and not any("Chrome/151" in a for a in own)
    # a Grid node's browser version is not known here: no guess; it is read from the browser after launch
    remote = sess.BrowserSession(_settings(tmp_path, remote_url="http://grid:4444"), "w").build_options()
    assert not any(a.startswith("--user-agent=") for a in remote.arguments)
    assert "--disable-blink-features=AutomationControlled" in remote.arguments


def test_the_user_agent_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WABULK_USER_AGENT", "  Mozilla/5.0 Custom  ")
    assert Settings.from_env().user_agent == "Mozilla/5.0 Custom"
    monkeypatch.setenv("WABULK_USER_AGENT", "")
    assert Settings.from_env().user_agent is None


class _Driver:
    """Stands in for a WebDriver: answers navigator.userAgent, records quit()."""

    def __init__(self, ua: str, opts: Any) -> None:
        self.ua, self.opts, self.quit_called = ua, opts, False

    def execute_script(self, script: str, *args: Any) -> Any:
        assert "navigator.userAgent" in script
        return self.ua

    def quit(self) -> None:
        self.quit_called = True


def test_a_grid_browser_that_announces_headless_is_relaunched_with_the_fixed_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[_Driver] = []

    def fake_remote(url: str, opts: Any) -> _Driver:
        ua_flags = [a for a in opts.arguments if a.startswith("--user-agent=")]
        ua = (
            ua_flags[0].split("=", 1)[1] if ua_flags else "Mozilla/5.0 HeadlessChrome/150.0.0.0 Safari/537.36"
        )
        started.append(_Driver(ua, opts))
        return started[-1]

    monkeypatch.setattr(launch, "launch_remote", fake_remote)
    s = _settings(tmp_path, remote_url="http://grid:4444")
    driver, ua = launch.launch(s, tmp_path / "p", "w", user_agent=None)
    assert len(started) == 2 and started[0].quit_called and driver is started[1]
    assert ua == "Mozilla/5.0 Chrome/150.0.0.0 Safari/537.36"
    assert f"--user-agent={ua}" in started[1].opts.arguments
    # the learned user agent is used straight away next time (a restart): one launch
    started.clear()
    driver, again = launch.launch(s, tmp_path / "p", "w", user_agent=ua)
    assert len(started) == 1 and again == ua
    # an explicit WABULK_USER_AGENT is used as given, never "fixed"
    started.clear()
    launch.launch(s.with_(user_agent="Mozilla/5.0 HeadlessChrome/1"), tmp_path / "p", "w", user_agent=None)
    assert len(started) == 1


# --- profile repairs under wabulk's lock ----------------------------------------------------------------


def _plant_singleton(profile_dir: Path, owner: str) -> None:
    profile_dir.mkdir(parents=True, exist_ok=True)
    os.symlink(owner, profile_dir / "SingletonLock")
    os.symlink("1234567890", profile_dir / "SingletonCookie")
    os.symlink("/tmp/.org.chromium.Chromium.gone/SingletonSocket", profile_dir / "SingletonSocket")


def _singletons(profile_dir: Path) -> list[str]:
    return sorted(n for n in profile.SINGLETON_FILES if os.path.lexists(profile_dir / n))


def test_another_hosts_chromium_lock_is_removed_under_our_lock_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "prof"
    _plant_singleton(d, "otherhost-12345")
    lock = profile.ProfileLock(tmp_path / "wabulk.lock", "s")
    with pytest.raises(errors.SessionBusy):  # never without wabulk's own lock
        profile.clear_foreign_singleton(lock, d)
    assert _singletons(d) == ["SingletonCookie", "SingletonLock", "SingletonSocket"]
    lock.acquire()
    try:
        with caplog.at_level(logging.WARNING, logger="wabulk.web.browser"):
            assert profile.clear_foreign_singleton(lock, d) == "otherhost"
    finally:
        lock.release()
    assert _singletons(d) == []
    assert any("otherhost" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_this_hosts_chromium_lock_is_left_alone(tmp_path: Path) -> None:
    d = tmp_path / "prof"
    _plant_singleton(d, f"{socket.gethostname()}-{os.getpid()}")  # a live Chromium here: not ours to break
    lock = profile.ProfileLock(tmp_path / "wabulk.lock", "s")
    lock.acquire()
    try:
        assert profile.clear_foreign_singleton(lock, d) is None
    finally:
        lock.release()
    assert _singletons(d) == ["SingletonCookie", "SingletonLock", "SingletonSocket"]
    assert profile.singleton_owner(d) == (socket.gethostname(), os.getpid())
    assert profile.singleton_owner(tmp_path / "nothing") is None


def test_a_refused_profile_loses_its_cached_service_worker_before_the_next_launch(tmp_path: Path) -> None:
    d = tmp_path / "prof"
    sw = d / "Default" / "Service Worker" / "CacheStorage"
    sw.mkdir(parents=True)
    (sw / "index").write_text("cached refusal")
    (d / "Default" / "Cookies").write_text("the login lives elsewhere")
    assert profile.clear_refusal(d) is False  # never refused: left alone
    assert sw.exists()
    profile.mark_refused(d)
    assert profile.clear_refusal(d) is True
    assert not (d / "Default" / "Service Worker").exists()
    assert (d / "Default" / "Cookies").exists()
    assert profile.clear_refusal(d) is False  # the marker went with it


def test_the_browser_restart_is_the_web_providers_setting(tmp_path: Path) -> None:
    """``run --restart-browser-every`` is a setting of the web provider, which tells the worker as data
    (its capabilities) after how many chats it wants a fresh browser; 100 unless set, 0 = never."""
    from wabulk.web.sender import WhatsAppSender

    caps = WhatsAppSender(_settings(tmp_path), "work").capabilities
    assert caps.restart_every == 100 and "fresh page after 7 chats" in caps.restart_text.format(chats=7)
    never = WhatsAppSender(_settings(tmp_path, restart_browser_every=0), "work")
    assert never.capabilities.restart_every == 0
