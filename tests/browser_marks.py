"""The mark every browser test file shares: Chromium and chromedriver must be there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

needs_chromium = pytest.mark.skipif(
    not Path("/usr/bin/chromedriver").exists() and not os.environ.get("WABULK_CHROMEDRIVER"),
    reason="needs Chromium and chromedriver",
)
