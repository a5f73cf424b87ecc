"""Named process exit codes, shared by the CLI and the worker (see docs/design.md)."""

from __future__ import annotations

OK = 0
ERROR = 1
BAD_INPUT = 2
SOME_FAILED = 3
ATTENTION = 4
INTERRUPTED = 130
