"""Shared fixtures. Every test runs with its own WABULK_HOME and WABULK_DB under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from wabulk.web.simulator.server import DEFAULT_CONFIG


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
