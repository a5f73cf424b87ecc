"""``python -m wabulk.web.simulator --port N``."""

from __future__ import annotations

import sys

from .server import main

sys.exit(main())
