"""Shared fixtures. Every test runs with its own WABULK_HOME and WABULK_DB under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest


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
