"""End-to-end: wabulk's browser identity and the 2026 page's own screens, through real Chromium against the
simulator with the unsupported-browser refusal ON (as the real page does to headless Chromium).

- a headless wabulk browser reaches the QR and the main screen of the 2026-09 page, while the same headless
  Chromium without wabulk's user agent is refused (so the check is real);
- a browser the page refuses fails at once with one line (no reload loop), and a profile whose service
  worker cached the refusal is cleared and gets the QR;
- a profile carrying another host's Chromium lock starts;
- the What's new window is closed and the messages go out; a restricted account spends no attempt, shows
  ``restricted`` in ``status`` (and ``--check`` exits 4) and sends once the restriction lifts.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser_marks import needs_chromium
from e2e_helpers import E2E, SIM_E2E, WABULK, simulator_running, wait_for
from wabulk.settings import Settings
from wabulk.web import browser as sess
from wabulk.web import dom
from wabulk.web import errors as web_errors
from wabulk.web.states import (
    LOGGED_IN_STATES,
    QR,
    STATE_SELECTORS,
    UNKNOWN,
    UNSUPPORTED_BROWSER,
    decide_state,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(180),
    needs_chromium,
]

HEADLESS_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 "
    "Safari/537.36"
)
ERA_2026_09 = {**SIM_E2E, "ui_era": "2026-09"}  # refuse_headless is on by default in this era
# The send path reads bubbles the 2026 way (ui_era 2026); the refusal is switched on explicitly there.
SENDING = {**SIM_E2E, "ui_era": "2026-09"}  # refuse_headless is on by default in this era
FAST = dom.Timeouts(boot=30.0, stuck_loading=20.0, chat_open=15.0, element=5.0, confirm=10.0)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with simulator_running(tmp_path_factory, "sim-web", ERA_2026_09) as s:
        yield s


@pytest.fixture
def settings(sim: Any, tmp_path: Path) -> Settings:
    sim.configure(**ERA_2026_09)
    home = tmp_path / "home"
    return Settings.from_env().with_(web_url=sim.url, home=home, db=home / "wabulk.db", headless=True)


def refusals(sim: Any) -> list[dict[str, Any]]:
    return list(sim.state.snapshot()["refusals"])


# --- identity -------------------------------------------------------------------------------------------


def test_a_headless_wabulk_browser_reaches_the_qr_and_the_app_of_the_2026_09_page(
    sim: Any, settings: Settings
) -> None:
    assert settings.headless and sim.config["ui_era"] == "2026-09"
    before = len(refusals(sim))
    browser = sess.BrowserSession(settings, "ua", timeouts=FAST)
    try:
        assert browser.ensure_ready(require_login=False) == QR
        ua = str(browser.driver.execute_script("return navigator.userAgent"))
        assert "HeadlessChrome" not in ua and " Chrome/" in ua
        # --disable-blink-features=AutomationControlled: chromedriver's automation flag is not exposed either
        assert browser.driver.execute_script("return navigator.webdriver") is False
        wait_for(lambda: sim.scan(), 10, "the QR to be scanned")
        assert browser.wait_for_login(lambda ref: None, timeout=20)
        assert browser.ensure_ready() in LOGGED_IN_STATES
    finally:
        browser.close()
    assert len(refusals(sim)) == before  # never refused on the way


def test_without_wabulks_user_agent_the_same_headless_chromium_is_refused(
    sim: Any, settings: Settings, tmp_path: Path
) -> None:
    """The check is real: plain headless Chromium (no --user-agent) gets the unsupported-browser page, and
    wabulk's page probe names it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(settings.chrome_binary)
    for flag in ("--headless=new", f"--user-data-dir={tmp_path / 'raw'}", "--no-sandbox"):
        opts.add_argument(flag)
    raw = webdriver.Chrome(service=Service(str(settings.chromedriver)), options=opts)
    try:
        raw.get(sim.url + "/")
        st = wait_for(
            lambda: (s := decide_state(dom.probe(raw, STATE_SELECTORS))) != UNKNOWN and s,
            15,
            "the page to settle",
        )
        assert st == UNSUPPORTED_BROWSER
        assert "HeadlessChrome" in str(raw.execute_script("return navigator.userAgent"))
        assert raw.find_elements("css selector", "div[data-ref], #side") == []  # no QR, no app
    finally:
        raw.quit()
    assert any("HeadlessChrome" in r["user_agent"] for r in refusals(sim))


def test_a_refused_browser_fails_with_one_line_and_no_reload_loop(sim: Any, settings: Settings) -> None:
    home = settings.home
    env = {k: v for k, v in os.environ.items() if not k.startswith("WABULK_")}
    env.update(
        WABULK_HOME=str(home),
        WABULK_DB=str(home / "wabulk.db"),
        WABULK_HEADLESS="1",
        WABULK_WEB_URL=sim.url,
        WABULK_USER_AGENT=HEADLESS_UA,  # what wabulk launched before it learned to set its user agent
    )
    before = len(refusals(sim))
    started = time.monotonic()
    res = subprocess.run(
        [WABULK, "login", "--session", "refused", "--timeout", "90"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    took = time.monotonic() - started
    assert res.returncode == 4, res  # a person must act (a setting): a restart would not help
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: WhatsApp Web refused this browser"), res.stderr
    assert "HeadlessChrome" in lines[0] and "WABULK_USER_AGENT" in lines[0]
    assert "Traceback" not in res.stdout + res.stderr
    assert took < 60  # not the 90 s login wait, nor a boot timeout
    assert len(refusals(sim)) - before <= 2  # the page was asked for once (twice with a cache clearing)


def test_a_profile_whose_service_worker_cached_the_refusal_gets_the_qr(
    sim: Any, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    sim.configure(sw_caches_refusal=True)
    profile = settings.profile_dir("cached")
    profile.mkdir(parents=True)
    # An older wabulk (no user agent) once opened the page on this profile: the worker cached the refusal.
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(settings.chrome_binary)
    for flag in ("--headless=new", f"--user-data-dir={profile}", "--no-sandbox"):
        opts.add_argument(flag)
    old = webdriver.Chrome(service=Service(str(settings.chromedriver)), options=opts)
    try:
        old.get(sim.url + "/")
        wait_for(
            lambda: old.execute_async_script(
                "const done = arguments[0]; navigator.serviceWorker.getRegistration('/')"
                ".then(r => done(!!(r && r.active)), () => done(false));"
            ),
            15,
            "the refusal's service worker",
        )
    finally:
        old.quit()
    assert (profile / "Default" / "Service Worker").is_dir()

    browser = sess.BrowserSession(settings, "cached", timeouts=FAST)
    try:
        with caplog.at_level(logging.WARNING, logger="wabulk.web.browser"):
            assert browser.ensure_ready(require_login=False) == QR
    finally:
        browser.close()
    assert any("cached service worker" in r.getMessage() for r in caplog.records)


def test_a_refusal_inside_the_library_is_unsupported_browser(sim: Any, settings: Settings) -> None:
    browser = sess.BrowserSession(settings.with_(user_agent=HEADLESS_UA), "lib", timeouts=FAST)
    try:
        with pytest.raises(web_errors.UnsupportedBrowser, match="refused this browser"):
            browser.ensure_ready(require_login=False)
    finally:
        browser.close()
    # remembered: the next launch on this profile clears the page's service worker first
    assert (settings.profile_dir("lib") / "wabulk-refused-browser").exists()


def test_an_expired_2026_qr_is_reloaded_by_a_click_on_the_code(sim: Any, settings: Settings) -> None:
    # two payloads, then the QR expires under "Select to reload QR code" (no button in this era): a third
    # and fourth payload only come after a click on the code's container
    # 1.5 s per code: the scan must land while the fourth code is still fresh (300 ms lost that race under
    # load: the code expired again before the scan, which only links pages showing a live code).
    sim.configure(qr_rotate_ms=1500, qr_max_rotations=1)
    seen: list[str] = []

    def on_qr(payload: str) -> None:
        seen.append(payload)
        if len(seen) == 4:
            sim.scan()

    browser = sess.BrowserSession(settings, "expiry", timeouts=FAST)
    try:
        assert browser.wait_for_login(on_qr, timeout=20)
    finally:
        browser.close()
    assert len(set(seen)) == 4


def test_an_error_screen_is_reloaded_once_then_named_in_one_line(sim: Any, settings: Settings) -> None:
    sim.configure(page_error="database")
    browser = sess.BrowserSession(settings, "dberror", timeouts=FAST)
    try:
        with pytest.raises(web_errors.PageError, match="'A database error occurred' \\(reloaded once\\)"):
            browser.ensure_ready(require_login=False)
        sim.configure(page_error="storage_full")
        with pytest.raises(web_errors.PageError, match="storage is full .*free disk space"):
            browser.ensure_ready(require_login=False)
        # the screen stays until the page reloads (as on the real page): gone after wabulk's one reload
        sim.configure(page_error=None)
        assert browser.ensure_ready(require_login=False) == QR
    finally:
        browser.close()


# --- the profile ----------------------------------------------------------------------------------------


def test_a_profile_with_another_hosts_chromium_lock_starts(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    from wabulk.web.simulator.profile_fixtures import plant_foreign_singleton_lock

    profile = settings.profile_dir("moved")
    plant_foreign_singleton_lock(profile, host="otherhost", pid=12345)
    browser = sess.BrowserSession(settings, "moved", timeouts=FAST)
    try:
        with caplog.at_level(logging.WARNING, logger="wabulk.web.browser"):
            assert browser.ensure_ready(require_login=False) == QR
        lock = os.readlink(profile / "SingletonLock")  # Chromium's own lock now: this host
        assert not lock.startswith("otherhost-")
    finally:
        browser.close()
    warned = [r for r in caplog.records if "otherhost" in r.getMessage()]
    assert warned and warned[0].levelno == logging.WARNING


# --- the worker on the 2026 screens ------------------------------------------------------------------------

_BASES = iter(range(300, 99_000, 100))


@pytest.fixture(scope="module")
def send_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A simulator of its own: a QR page that a test above closed a moment ago would take the 'scan' of
    the next login (the simulator links every page that polled on its QR in the last 3 s)."""
    with simulator_running(tmp_path_factory, "sim-send", SENDING) as s:
        yield s


@pytest.fixture
def e2e(send_sim: Any, tmp_path: Path) -> Iterator[E2E]:
    send_sim.configure(**SENDING)
    env = E2E(sim=send_sim, home=tmp_path / "home", base=next(_BASES))
    yield env
    env.cleanup()


def _log_lines(e2e: E2E) -> list[dict[str, Any]]:
    out = []
    for path in (e2e.home / "logs").glob("*.log*"):
        out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return out


def test_the_whats_new_window_is_closed_and_the_messages_go_out(e2e: E2E) -> None:
    e2e.link("s", fresh=True)
    e2e.sim.configure(whats_new=True)  # shown after every page load from now on, until Continue
    job, expected = e2e.enqueue(2)
    w = e2e.run("s")
    assert w.wait() == 0, w.output()
    e2e.assert_exactly_once(expected)
    assert e2e.job(job)["sent"] == 2
    assert any("What's new" in str(entry.get("msg")) for entry in _log_lines(e2e))


def test_a_restricted_account_spends_no_attempt_and_sends_once_lifted(e2e: E2E) -> None:
    e2e.link("s", fresh=True)
    e2e.sim.configure(restricted=True)
    job, expected = e2e.enqueue(2)
    base_env = e2e.env
    e2e.env = lambda **extra: base_env(WABULK_RESTRICTED_RECHECK="1", **extra)  # type: ignore[method-assign]
    w = e2e.run("s")

    def restricted() -> bool:
        return any(wk["state"] == "restricted" for wk in e2e.status()["workers"])

    wait_for(restricted, 60, "the worker to report the restricted session")
    check = e2e.cli("status", "--check", check=False)
    assert check.returncode == 4, check
    assert "'s' is restricted" in check.stdout + check.stderr
    # it opens a chat again on its slow schedule (1 s, 2 s, 4 s, 4 s): each time the message goes back unspent
    wait_for(lambda: len(e2e.events_matching("account restricted")) >= 3, 60, "three re-checks")
    rows = e2e.rows()
    assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 0), ("pending", 0)]
    assert e2e.arrived() == []
    assert e2e.job(job)["status"] == "running"  # not paused

    e2e.sim.configure(restricted=False)
    assert w.wait(120) == 0, w.output()
    e2e.assert_exactly_once(expected)
    assert [(r["status"], r["attempts"]) for r in e2e.rows()] == [("sent", 1), ("sent", 1)]
