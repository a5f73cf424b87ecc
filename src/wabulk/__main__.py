"""``python -m wabulk`` runs the CLI (through the fast path for ``status --json``, see entry.py)."""

from .entry import main

main()
