"""The suite's own plumbing: the scheduling order of ``conftest.HEAVY_FILES`` names files that exist."""

from __future__ import annotations

from pathlib import Path

from conftest import HEAVY_FILES


def test_every_heavy_file_exists_so_it_really_runs_first() -> None:
    # A renamed or split file would silently fall back to the end of the run, where it is the long tail.
    here = Path(__file__).parent
    assert [f for f in HEAVY_FILES if not (here / f).is_file()] == []
