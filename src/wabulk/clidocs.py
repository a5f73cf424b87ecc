"""Generate docs/cli.md from the commands' ``--help`` (``make docs``; a test fails when it drifts)."""

from __future__ import annotations

import os
import sys


def _help_text(args: list[str]) -> str:
    from typer.testing import CliRunner

    from .cli import app

    os.environ["COLUMNS"] = "100"
    os.environ["TERMINAL_WIDTH"] = "100"
    os.environ["_TYPER_FORCE_DISABLE_TERMINAL"] = "1"
    result = CliRunner().invoke(app, [*args, "--help"], prog_name="wabulk", env={"COLUMNS": "100"})
    if result.exit_code != 0:
        raise RuntimeError(f"wabulk {' '.join(args)} --help failed: {result.output}")
    return result.output.rstrip() + "\n"


def command_paths() -> list[list[str]]:
    """Every command and sub-command, as argument lists, in a stable order."""
    import typer.main

    from .cli import app

    group = typer.main.get_command(app)
    paths: list[list[str]] = [[]]

    def walk(cmd: object, prefix: list[str]) -> None:
        subs = getattr(cmd, "commands", None)
        if not subs:
            return
        for name in sorted(subs):
            paths.append([*prefix, name])
            walk(subs[name], [*prefix, name])

    walk(group, [])
    return paths


def render() -> str:
    """The whole of docs/cli.md."""
    parts = [
        "# wabulk command reference\n",
        "Generated from `--help` by `make docs` (`python -m wabulk.clidocs > docs/cli.md`); "
        "a test fails when this file drifts from the code.\n",
    ]
    for path in command_paths():
        title = " ".join(["wabulk", *path])
        parts.append(f"## `{title}`\n\n```\n{_help_text(path)}```\n")
    return "\n".join(parts)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
