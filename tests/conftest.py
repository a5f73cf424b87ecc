"""Shared fixtures. Every test runs with its own WABULK_HOME and WABULK_DB under tmp_path."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wabulk.fakes import FakeTransport
from wabulk.queue import Queue
from wabulk.web.simulator.server import DEFAULT_CONFIG

# --- scheduling: heaviest files first ----------------------------------------------------------------------

# `make test` runs `-n 3 --dist loadfile --no-loadscope-reorder`: each file goes whole to one worker, in the
# order below. xdist's own order (most tests first) sent these few-test, long browser files last, so the run
# ended with one worker idle for minutes while another sat through a 2-minute file. Longest first keeps
# every worker busy until the end. Seconds are per file on the 2-core machine (`--durations=0`, the mean of
# a `-n 2` and a `-n 3` run, 2026-12-06, loaded); only the order matters, and a file missing here runs
# after these, in its usual place.
HEAVY_FILES: dict[str, float] = {
    "test_worker_e2e_faults.py": 189,
    "test_worker_e2e.py": 177,
    "test_browser_e2e.py": 169,
    "test_torture.py": 167,
    "test_torture_browser.py": 159,
    "test_web_e2e.py": 95,
    "test_bench_smoke.py": 94,
    "test_notify_e2e_breaker.py": 86,
    "test_notify_e2e.py": 85,
    "test_fleet.py": 79,
    "test_grid_e2e.py": 76,
    "test_queue_model.py": 68,
    "test_dashboard_e2e.py": 68,
    "test_open_chat_e2e.py": 61,
    "test_simulator_browser.py": 61,
    "test_page_2026_09_e2e.py": 55,
    "test_receipts_e2e.py": 33,
    "test_serve.py": 27,
    "test_provider_contract.py": 23,
    "test_identity_e2e.py": 23,
    "test_cloud_e2e.py": 22,
    "test_phone_fastpath.py": 16,
    "test_cloud_cli.py": 15,
    "test_entry.py": 14,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the files of ``HEAVY_FILES`` first, longest first (stable: tests keep their order in a file)."""
    items.sort(key=lambda item: -HEAVY_FILES.get(item.path.name, 0.0))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every wabulk path at a fresh temp dir so tests never touch the user's data."""
    home = tmp_path / "wabulk-home"
    monkeypatch.setenv("WABULK_HOME", str(home))
    monkeypatch.setenv("WABULK_DB", str(home / "wabulk.db"))
    monkeypatch.setenv("TERMINAL_WIDTH", "200")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("_TYPER_FORCE_DISABLE_TERMINAL", "1")
    monkeypatch.delenv("WABULK_REMOTE_URL", raising=False)
    monkeypatch.delenv("WABULK_PACE", raising=False)
    return home


@pytest.fixture
def db_path(isolated_home: Path) -> Path:
    return isolated_home / "wabulk.db"


# --- time, the queue and the fake provider, for unit tests of the queue and the worker ---------------------

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc).timestamp()


class Clock:
    """A hand-driven wall clock: time moves only when a test (or the worker's ``sleep``) moves it, never by
    sleeping, so leases expire and backoffs pass when the test says so. ``at(when, action)`` runs ``action``
    once a ``sleep`` reaches ``when``; with ``max_sleep`` a longer sleep fails the test (the worker must wake
    at least that often)."""

    def __init__(self, t: float = T0, *, max_sleep: float | None = None) -> None:
        self.t = t
        self.max_sleep = max_sleep
        self.actions: list[tuple[float, Callable[[], None]]] = []
        self.slept: list[float] = []

    @property
    def now(self) -> float:
        return self.t

    @now.setter
    def now(self, value: float) -> None:
        self.t = value

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def at(self, when: float, action: Callable[[], None]) -> None:
        self.actions.append((when, action))

    def sleep(self, seconds: float) -> None:
        if self.max_sleep is not None:
            assert seconds <= self.max_sleep + 1e-9, f"the worker must wake at least every {self.max_sleep} s"
        self.slept.append(seconds)
        self.t += seconds
        due = [a for a in self.actions if a[0] <= self.t]
        self.actions = [a for a in self.actions if a[0] > self.t]
        for _, action in due:
            action()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(db_path: Path, clock: Clock) -> Iterator[Queue]:
    """The test's database on the test's clock."""
    q = Queue(db_path, clock=clock)
    yield q
    q.close()


@pytest.fixture
def fake(clock: Clock) -> FakeTransport:
    """The fake provider on the test's clock; each send takes two seconds of it."""
    return FakeTransport(clock=clock, advance=clock.advance, send_seconds=2.0)


# --- browser / simulator fixtures (owned by the browser work) -------------------------------------

# Fast simulator timings for tests: lookup_ms > 250 so the "Starting chat" popup is exercised.
SIM_FAST: dict[str, object] = {
    **DEFAULT_CONFIG,  # every knob back to its default before each test, then the fast timings
    "boot_ms": 150,
    "lookup_ms": 300,
    "sent_ms": [100, 250],
    "delivered_ms": 300,
}


@pytest.fixture(scope="session")
def simulator_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One simulator for the whole run (session-scoped; use the ``simulator`` fixture in tests)."""
    from wabulk.web.simulator.server import Simulator

    sim = Simulator(port=0, log_path=tmp_path_factory.mktemp("sim") / "messages.jsonl", **SIM_FAST)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def simulator(simulator_server):  # type: ignore[no-untyped-def]
    """The shared simulator with fast timings restored before each test. Linked devices and the message
    log are kept (so a module-scoped, logged-in browser survives): compare ``messages()`` before/after."""
    simulator_server.configure(**SIM_FAST)
    return simulator_server


def make_browser_settings(web_url: str, home: Path):  # type: ignore[no-untyped-def]
    """Settings for a headless browser on the simulator with its data under ``home``."""
    from wabulk.settings import Settings

    base = Settings.from_env()
    return base.with_(web_url=web_url, home=home, db=home / "wabulk.db", headless=True)


@pytest.fixture
def browser_settings(simulator, isolated_home: Path):  # type: ignore[no-untyped-def]
    """Settings pointing at the simulator: headless, data under this test's WABULK_HOME."""
    return make_browser_settings(simulator.url, isolated_home)
