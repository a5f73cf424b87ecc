"""wabulk's reliability torture suite: scripts that kill, freeze and starve wabulk and count what was lost
or sent twice. Run one with ``python -m tests.torture.<name> --help``; ``make torture`` runs them all at full
size; ``tests/test_torture.py`` runs them small inside ``make test``."""
