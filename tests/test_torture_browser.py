"""The browser kill storms of the torture suite, small (``tests/test_torture.py`` has the other scripts; a
file of their own so that the scheduler runs them beside the rest; full sizes: ``make torture``)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.torture.common import torture  # noqa: E402

HAS_BROWSER = bool(shutil.which("chromedriver") or os.environ.get("WABULK_CHROMEDRIVER"))


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not HAS_BROWSER, reason="needs Chromium and chromedriver")
def test_kill_storm_real_browsers() -> None:
    f = torture("kill_storm_browser", "--messages", "12", "--kills", "3", "--seed", "2", timeout=400)
    assert (f["lost"], f["duplicates"], f["stuck"], f["integrity"]) == (0, 0, 0, "ok")
    assert f["kills"] >= 1
    assert f["extra"]["history_ms"] == "500/3000"  # chats render their history late (issue 20)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not HAS_BROWSER, reason="needs Chromium and chromedriver")
def test_kill_storm_real_browsers_with_bubbles_without_ids_fails_closed() -> None:
    f = torture(
        "kill_storm_browser", "--messages", "12", "--kills", "4", "--seed", "3", "--blind-page",
        "--blind-seconds", "20", timeout=500,
    )  # fmt: skip
    assert (f["lost"], f["duplicates"], f["stuck"], f["failed"], f["integrity"]) == (0, 0, 0, 0, "ok")
