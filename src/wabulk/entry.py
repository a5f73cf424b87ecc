"""The ``wabulk`` console script: the cron poll ``wabulk status --json`` without Typer, the rest with it.

Why this exists: cron jobs and monitors poll ``wabulk status --json [--check]`` every minute, and Typer
0.29 imports pydantic (plus Typer and Rich themselves) for any command that parses a parameter, so each
poll cost about half a second against ~20 ms for ``python -c pass``. This module recognises only

    wabulk [--db PATH | --db=PATH] status [JOB_ID] --json [--check] [--undelivered-after AGE]

(the options after ``status`` in any order, each at most once) and prints the same report the Typer command
does (:func:`wabulk.report.status_report`), importing only the queue's own modules. Any other argv, and any
error on the way (no database, unknown job, bad age...), runs the Typer CLI instead, which then prints its
own message and exit code: the fast path writes nothing until it has the whole answer.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

# Typer's default for --undelivered-after (cli.status); test_entry checks the two paths agree.
_DEFAULT_UNDELIVERED_AFTER = "24h"


class StatusArgs:
    """The parsed cron shape."""

    __slots__ = ("db", "job_id", "check", "undelivered_after")

    def __init__(self, db: str | None, job_id: int | None, check: bool, undelivered_after: str) -> None:
        self.db = db
        self.job_id = job_id
        self.check = check
        self.undelivered_after = undelivered_after


def _value(arg: str, option: str, rest: list[str]) -> str | None:
    """The value of ``option`` given as ``option=VALUE`` or as ``option VALUE`` (popped from ``rest``);
    None when ``arg`` is not that option or the value is missing, empty or looks like an option."""
    if arg.startswith(option + "="):
        value = arg[len(option) + 1 :]
    elif arg == option and rest:
        value = rest.pop(0)
    else:
        return None
    return value if value and not value.startswith("-") else None


def parse_status_argv(argv: Sequence[str]) -> StatusArgs | None:
    """The options of ``[--db PATH] status [JOB_ID] --json [--check] [--undelivered-after AGE]``, or None
    for any other argv (including a repeated option): the Typer CLI handles those."""
    rest = list(argv)
    db = None
    if rest and rest[0].startswith("--db"):
        db = _value(rest.pop(0), "--db", rest)
        if db is None:
            return None
    if not rest or rest.pop(0) != "status":
        return None
    job_id: int | None = None
    as_json = check = False
    after: str | None = None
    while rest:
        arg = rest.pop(0)
        if arg == "--json" and not as_json:
            as_json = True
        elif arg == "--check" and not check:
            check = True
        elif arg.startswith("--undelivered-after") and after is None:
            after = _value(arg, "--undelivered-after", rest)
            if after is None:
                return None
        elif arg.isascii() and arg.isdigit() and job_id is None:
            job_id = int(arg)
        else:
            return None
    if not as_json:
        return None  # the tables need Rich
    return StatusArgs(db, job_id, check, after if after is not None else _DEFAULT_UNDELIVERED_AFTER)


def fast_status(args: StatusArgs, environ: Mapping[str, str]) -> tuple[int, str]:
    """Exit code and stdout of ``wabulk status --json`` for ``args``, exactly as the Typer command prints
    them on success. Raises on any error (the caller then runs the Typer command for its message)."""
    import json
    import time
    from pathlib import Path

    from . import exitcodes
    from .queue import Queue
    from .receipts import parse_age
    from .report import status_report
    from .settings import ENV_DB, Settings

    after = parse_age(args.undelivered_after, option="--undelivered-after")
    settings = Settings.from_env()
    # As cli._settings: --db, else WABULK_DB (Typer's envvar; empty counts as unset), overrides the default.
    db = args.db or environ.get(ENV_DB) or None
    if db is not None:
        settings = settings.with_(db=Path(db))
    with Queue(settings.db, create=False) as q:
        report = status_report(
            q, job_id=args.job_id, undelivered_after_seconds=after, pace=settings.pace, now=time.time()
        )
    # As cli._print_json, then typer.echo's newline.
    out = json.dumps(report.as_dict(), indent=2, ensure_ascii=False, default=str) + "\n"
    return (exitcodes.ATTENTION if args.check and report.attention else exitcodes.OK), out


def _utf8_stdout() -> bool:
    """Whether stdout is a UTF-8 text stream: then ``write`` is all typer.echo does to it (it rewraps
    ASCII streams and writes nothing without a stdout)."""
    encoding = getattr(sys.stdout, "encoding", None) or ""
    return encoding.lower().replace("-", "").replace("_", "") == "utf8"


def main() -> None:
    """Console-script entry point: answer the cron shape here, anything else through the Typer CLI."""
    args = parse_status_argv(sys.argv[1:])
    if args is not None and _utf8_stdout():
        try:
            code, out = fast_status(args, os.environ)
        except KeyboardInterrupt:
            # As the Typer path (cli._errors): one line and the interrupted exit code, no traceback.
            from . import exitcodes

            sys.stderr.write("Interrupted.\n")
            sys.exit(exitcodes.INTERRUPTED)
        except Exception:
            pass  # the Typer command runs it again and reports the error its own way
        else:
            sys.stdout.write(out)
            sys.stdout.flush()
            sys.exit(code)
    from .cli import main as cli_main

    cli_main()
