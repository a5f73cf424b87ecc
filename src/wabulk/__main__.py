"""``python -m wabulk`` runs the CLI."""

from .cli import main

main()
