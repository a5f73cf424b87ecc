"""The ``wabulk`` command line: parse, call one library function, print.

Heavy modules (sqlite-utils, phonenumbers, Selenium, Rich's live display) are imported inside the
commands that need them, so ``wabulk --help`` and ``wabulk status`` start fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from . import __version__, exitcodes
from .errors import WabulkError
from .settings import ENV_DB, ENV_PACE, ENV_REMOTE_URL, ENV_SESSION, ENV_WEB_URL

if TYPE_CHECKING:
    from rich.console import Console

    from .queue import Queue
    from .settings import Settings

app = typer.Typer(
    name="wabulk",
    help="Send personalised WhatsApp messages in bulk through WhatsApp Web, safely and resumably.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
optout_app = typer.Typer(
    help="Manage the opt-out list: numbers that must never be messaged.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(optout_app, name="optout")
templates_app = typer.Typer(
    help="The Cloud API account's approved message templates (for enqueue --template).\n\n"
    "Example: wabulk templates sync --session biz",
    no_args_is_help=True,
)
app.add_typer(templates_app, name="templates")


class _State:
    db: Path | None = None


_state = _State()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wabulk {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    db: Annotated[
        Path | None,
        typer.Option("--db", envvar=ENV_DB, help="The queue database file.", show_default=False),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Send personalised WhatsApp messages in bulk through WhatsApp Web, safely and resumably."""
    _state.db = db


# --- helpers ------------------------------------------------------------------------------------


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _stdout() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def _fail(message: str, code: int) -> NoReturn:
    from rich.markup import escape

    _stderr().print(f"Error: {escape(message)}")
    raise typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn wabulk's exceptions into one ``Error: …`` line and the matching exit code."""
    try:
        yield
    except WabulkError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _stderr().print("Interrupted.")
        raise typer.Exit(exitcodes.INTERRUPTED) from None
    except OSError as exc:
        # A missing or unreadable file named by the user is a usage problem, not a crash.
        _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), exitcodes.ERROR)


def _settings() -> Settings:
    from .settings import Settings

    s = Settings.from_env()
    if _state.db is not None:
        s = s.with_(db=_state.db)
    return s


def _queue(*, create: bool = True) -> Queue:
    from .queue import Queue

    settings = _settings()
    db = settings.db
    explicit = _state.db is not None or bool(os.environ.get(ENV_DB))
    home = db.parent.expanduser().absolute() == settings.home.expanduser().absolute()
    if create and explicit and not home and not db.exists() and not db.parent.exists():
        # Only wabulk's own home is created on the fly: a folder named in --db/WABULK_DB that does not
        # exist is far more often a typo than a wish.
        _fail(f"the folder {db.parent} does not exist (a typo in --db or WABULK_DB?); create it first", 2)
    return Queue(db, create=create)


_REMOTE_URL_HELP = "A Selenium Grid 4 URL (e.g. http://grid:4444): run the browser there, not locally."
RemoteUrl = Annotated[
    str | None, typer.Option("--remote-url", envvar=ENV_REMOTE_URL, help=_REMOTE_URL_HELP, show_default=False)
]
# The options several commands share, defined once.
SessionName = Annotated[str, typer.Option("--session", envvar=ENV_SESSION, help="Session (account) name.")]
WebUrl = Annotated[str | None, typer.Option("--web-url", envvar=ENV_WEB_URL, help="WhatsApp Web URL.")]
Headless = Annotated[bool | None, typer.Option("--headless/--headed", help="Show the browser or not.")]


def _self_command() -> str:
    """How to run this wabulk again from a fresh shell: ``wabulk`` when that is what PATH finds, else the
    path it was started by (``make demo`` runs ``.venv/bin/wabulk``, which a new shell does not find)."""
    import shutil

    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "wabulk"
    if os.path.basename(argv0) != "wabulk":
        return "wabulk"
    found = shutil.which("wabulk")
    if found and os.path.realpath(found) == os.path.realpath(argv0):
        return "wabulk"
    rel = os.path.relpath(argv0)
    return rel if not rel.startswith("..") else os.path.abspath(argv0)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _fmt_time(ts: float | None, *, short: bool = False) -> str:
    if ts is None:
        return "-"
    from datetime import datetime

    when = datetime.fromtimestamp(ts)
    if short:
        # Today's times need no date; older ones need no time.
        return when.strftime("%H:%M" if when.date() == datetime.now().date() else "%m-%d")
    return when.strftime("%Y-%m-%d %H:%M")


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


# --- enqueue ------------------------------------------------------------------------------------


@app.command()
def enqueue(
    file: Annotated[Path, typer.Argument(help="Contacts file: CSV (any delimiter/encoding) or .xlsx.")],
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Message template, e.g. 'Hi {name}'.")
    ] = None,
    message_file: Annotated[
        Path | None, typer.Option("--message-file", help="Read the template from a UTF-8 file.")
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(
            "--template", help="Send this approved Cloud API template (by name) instead of a --message."
        ),
    ] = None,
    template_lang: Annotated[
        str, typer.Option("--template-lang", help="The template's language (an approved locale).")
    ] = "en_US",
    template_param: Annotated[
        list[str] | None,
        typer.Option(
            "--template-param",
            help="The template's next body parameter, rendered per contact like --message (repeatable).",
            show_default=False,
        ),
    ] = None,
    header_param: Annotated[
        list[str] | None,
        typer.Option(
            "--header-param",
            help="The template's next text-header parameter, rendered per contact (repeatable).",
            show_default=False,
        ),
    ] = None,
    header_media: Annotated[
        str | None,
        typer.Option(
            "--header-media",
            help="The template's image/video/document header: an https:// link (rendered per contact, "
            "e.g. '{photo_url}') or a file, uploaded once per job.",
            show_default=False,
        ),
    ] = None,
    button_param: Annotated[
        list[str] | None,
        typer.Option(
            "--button-param",
            help="The value of the template's next button that takes one (a URL button's {{1}}, a "
            "copy-code, a quick-reply payload), rendered per contact (repeatable).",
            show_default=False,
        ),
    ] = None,
    rates: Annotated[
        Path | None,
        typer.Option(
            "--rates", help="With --dry-run: estimate the cost from this CSV (country, category, price)."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Job name (default: the file name).")] = None,
    country: Annotated[
        str | None,
        typer.Option(
            "--country",
            help="Default country for local numbers (ISO code, e.g. GB). Default: from the locale.",
        ),
    ] = None,
    phone_column: Annotated[str | None, typer.Option("--phone-column", help="Column with numbers.")] = None,
    name_column: Annotated[str | None, typer.Option("--name-column", help="Column with names.")] = None,
    attach: Annotated[
        Path | None,
        typer.Option("--attach", help="Image, video or document sent with the message as caption."),
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Do not start before this time ('2026-12-01 09:00', '+2h').")
    ] = None,
    session: Annotated[
        str | None, typer.Option("--session", help="Only these sessions may send it (comma separated).")
    ] = None,
    max_attempts: Annotated[
        int, typer.Option("--max-attempts", min=1, max=20, help="Attempts per message.")
    ] = 3,
    rejects: Annotated[
        Path | None, typer.Option("--rejects", help="Write every rejected row, with its reason, to this CSV.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and preview; write nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Validate a contact list, render the message per contact and queue it as a job.

    Template: {column} is a column's value; {Hi|Hello} picks one variant per message (spintax); {name|there}
    is a fallback: when the first alternative is a column, it is used unless empty, else the rest. Rows
    with an empty placeholder and no fallback are reported.

    A Cloud API session sends approved templates instead: --template NAME, each --template-param rendered
    like a message; a parameter that renders empty is refused with its row and column. A template with a
    header or buttons that take parameters gets them with --header-param / --header-media and
    --button-param, checked against the synced catalogue (wabulk templates sync).

    Example: wabulk enqueue contacts.csv --message "{Hi|Hello} {name|there}, see you!" --country GB

    Example (Cloud API): wabulk enqueue contacts.csv --template order_ready --template-param "{name}"
    --template-param "{order}" --dry-run --rates rates.csv
    """
    given = [
        flag
        for flag, v in (("--message", message), ("--message-file", message_file), ("--template", template))
        if v is not None
    ]
    if len(given) != 1:
        raise typer.BadParameter(
            "give exactly one of --message, --message-file or --template"
            + (f" (got {' and '.join(given)})" if given else ""),
            param_hint="--message",
        )
    if template is None and (
        template_param or template_lang != "en_US" or header_param or header_media or button_param
    ):
        raise typer.BadParameter(
            "--template-param, --template-lang, --header-param, --header-media and --button-param need "
            "--template",
            param_hint="--template",
        )
    if rates is not None and not dry_run:
        raise typer.BadParameter("the cost estimate is for a dry run: add --dry-run", param_hint="--rates")
    if template is not None and attach is not None:
        raise typer.BadParameter("a template job cannot carry --attach", param_hint="--attach")
    with _errors():
        import time

        from .contacts import default_country
        from .importer import TemplateJob, enqueue_file, parse_when

        if message_file is not None:
            try:
                message = message_file.read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError) as exc:
                _fail(f"{message_file}: cannot read the message file ({exc})", exitcodes.BAD_INPUT)
        not_before = parse_when(at, time.time()) if at else None
        sessions = tuple(s.strip() for s in session.split(",") if s.strip()) if session else ()
        # A dry run reads the opt-out list (so it counts what the real run queues) and the template
        # catalogue too, but never creates a database.
        q = _queue(create=False) if dry_run and _settings().db.exists() else None if dry_run else _queue()
        job = None
        catalogue = None
        if template is not None:
            from .cloud.templates import load_catalogue

            job = TemplateJob(
                template,
                template_lang,
                tuple(template_param or ()),
                header_params=tuple(header_param or ()),
                header_media=header_media,
                button_params=tuple(button_param or ()),
            )
            catalogue = load_catalogue(q, sessions) if q is not None else None
        rate_card = None
        if rates is not None:
            from .cloud.costs import read_rates

            rate_card = read_rates(rates)
        result = enqueue_file(
            q,
            file,
            message=message,
            template=job,
            catalogue=catalogue,
            rates=rate_card,
            name=name,
            country=(country or default_country()),
            phone_column=phone_column,
            name_column=name_column,
            attachment=str(attach) if attach else None,
            not_before=not_before,
            max_attempts=max_attempts,
            sessions=sessions,
            rejects_path=rejects,
            dry_run=dry_run,
        )
    _print_enqueue_result(result, as_json=as_json, dry_run=dry_run, rejects=rejects)


def _print_enqueue_result(result: Any, *, as_json: bool, dry_run: bool, rejects: Path | None) -> None:
    from rich.markup import escape

    if as_json:
        _print_json(result.as_json())
        return
    out = _stdout()
    err = _stderr()
    for notice in result.notices:
        err.print(f"Notice: {escape(notice)}")
    names = f"; names from {result.name_column!r}" if result.name_column else "; no name column"
    err.print(f"Numbers from column {escape(repr(result.phone_column))}{escape(names)}.")
    if dry_run:
        out.print(f"Dry run: {result.enqueued} message(s) would be queued; nothing was written.")
        if result.template is not None:
            t = result.template
            category = f", category {result.category}" if result.category else ""
            out.print(f"Template {escape(t.name)} ({escape(t.language)}{category})")
        for i, body in enumerate(result.previews, 1):
            out.print(f"--- preview {i} ---")
            if result.template is not None and i <= len(result.param_previews):
                labels = result.param_labels
                for n, value in enumerate(result.param_previews[i - 1], 1):
                    what = labels[n - 1] if n <= len(labels) else f"{{{{{n}}}}}"
                    out.print(f"{escape(what)} = {escape(repr(value))}")
            else:
                out.print(escape(body))
        if result.cost is not None:
            _print_cost(result.cost)
    else:
        out.print(f"Job {result.job_id}: {result.enqueued} message(s) queued.")
    out.print(
        f"invalid: {result.invalid}  duplicates: {result.duplicates}  opted out: {result.opted_out}"
        f"  not mobile (kept): {result.not_mobile}"
    )
    if result.empty_rows:
        err.print(f"Warning: {_empty_summary(result)}")
    if result.duplicate_rows:
        err.print("Duplicates dropped (first few; each number is sent once):")
        for row, phone, first in result.duplicate_rows:
            err.print(f"  row {row}: {escape(phone)} - the same number as row {first}")
    if result.rejects:
        err.print("Rejected rows (first few):")
        for r in result.rejects:
            err.print(
                f"  row {r.row}, column {escape(repr(r.column))}: {escape(r.value)!r} - {escape(r.reason)}"
            )
    if rejects is None and (
        result.invalid > len(result.rejects) or result.duplicates > len(result.duplicate_rows)
    ):
        err.print("Use --rejects FILE to write all rejected and duplicate rows.")
    elif rejects is not None and (result.rejects or result.duplicate_rows):
        err.print(f"All rejected and duplicate rows are in {escape(str(rejects))}")


def _print_cost(cost: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = _stdout()
    what = f"{cost.category.lower()} messages" if cost.category else "messages (category unknown)"
    t = Table(title=f"Estimated cost: {what}", box=None, pad_edge=False, header_style="bold underline")
    for col in ("country", "messages", "price", "subtotal"):
        t.add_column(col, justify="left" if col == "country" else "right")
    for c in cost.rows():
        assumed = f" ({cost.assumed[c.country]})" if c.country in cost.assumed else ""
        t.add_row(
            escape(c.country),
            str(c.messages),
            ("no rate" if c.price is None else f"{c.price}{assumed}"),
            ("-" if c.subtotal is None else str(c.subtotal)),
        )
    out.print(t)
    out.print(
        f"Estimated total: {cost.total} (an upper bound: Meta charges delivered template messages only)"
    )
    if cost.unpriced:
        out.print(f"{cost.unpriced} message(s) to countries the rate card has no price for are not counted.")
    if cost.category is None:
        out.print(
            "The template's category is unknown (no synced catalogue): each country is priced at its "
            "dearest category."
        )


def _empty_summary(result: Any) -> str:
    """ "2 message(s) have an empty {name} (rows 4, 7): …", with the fallback syntax as the next step."""
    keys = ", ".join(f"{{{k}}} ({n})" for k, n in result.empty_placeholders.items())
    rows = ", ".join(str(r) for r in result.empty_examples)
    more = ", …" if result.empty_rows > len(result.empty_examples) else ""
    first = next(iter(result.empty_placeholders), "name")
    return (
        f"{result.empty_rows} message(s) have an empty placeholder: {keys}; rows {rows}{more}. "
        f"They would read e.g. 'Hi , …': give a fallback like {{{first}|there}}, or fill the column."
    )


# --- status -------------------------------------------------------------------------------------


@app.command()
def status(
    job_id: Annotated[int | None, typer.Argument(help="Only this job.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Exit 4 when attention is needed (login, auto-pause, no worker, undelivered messages).",
        ),
    ] = False,
    undelivered_after: Annotated[
        str,
        typer.Option(
            "--undelivered-after", help="A sent message still on one tick after this long is undelivered."
        ),
    ] = "24h",
) -> None:
    """Show jobs with their counts per status, delivered/read receipts, and the workers.

    Example: wabulk status --check || notify-send "wabulk needs you"
    """
    import time

    from .receipts import parse_age
    from .report import status_report

    with _errors():
        after = parse_age(undelivered_after, option="--undelivered-after")
        q = _queue(create=False)
        now = time.time()
        report = status_report(
            q, job_id=job_id, undelivered_after_seconds=after, pace=_settings().pace, now=now
        )
    if as_json:
        _print_json(report.as_dict())
    else:
        _print_status_tables(report.jobs, report.workers, report.attention, now)
        _print_session_table(report.sessions)
    if check and report.attention:
        raise typer.Exit(exitcodes.ATTENTION)


def _print_session_table(per_session: list[dict[str, Any]]) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    if not per_session:
        return
    t = Table(title="Sessions", box=box.SIMPLE_HEAD)
    for col in ("session", "sent today", "cap today", "state"):
        t.add_column(col)
    for r in per_session:
        cap = "none" if r["cap_today"] is None else str(r["cap_today"])
        if r.get("warmup_day"):
            cap += f" (warm-up day {r['warmup_day']})"
        if "quality" in r:  # a Cloud API session: Meta's messaging limit is its cap
            limit = "unlimited" if r["limit_24h"] is None else f"{r['limit_24h']:,}"
            cap = f"{r['used_24h']:,}/{limit} people/24 h, quality {r['quality']}"
            if r.get("portfolio_id"):
                cap += f", portfolio {r['portfolio_id']}"
            if r.get("limit_shared_with"):
                cap += f" (with {', '.join(r['limit_shared_with'])})"
        state = r["state"] or "-"
        if r.get("paused"):
            state = f"paused ({r['paused']})"
        elif r.get("waiting_until"):
            state = f"cap reached; waits until {_fmt_time(r['waiting_until'], short=True)}"
        t.add_row(escape(r["session"]), str(r["sent_today"]), cap, escape(state))
    _stdout().print(t)


# The job table's columns in the order they give way when the terminal is narrow: id, name and status
# always stay (status --json has everything).
_JOB_COLUMNS_DROPPED_FIRST = (
    "started",
    "total",
    "sending",
    "skipped",
    "cancelled",
    "read",
    "delivered",
    "undelivered",
    "unknown",
    "done",
    "ETA",
    "pending",
    "failed",
    "sent",
)


def _fit_job_columns(cols: list[str], cells: list[dict[str, str]], width: int) -> list[str]:
    """The columns of ``cols`` that fit ``width``, dropping the least important first, so that no count
    is squeezed into "1…" and name and status keep room (up to 24 and 20 characters; longer ones wrap)."""

    def need(keep: list[str]) -> int:
        widths = []
        for col in keep:
            natural = max(len(col), *(len(c[col]) for c in cells))
            cap = {"name": 24, "status": 20}.get(col)
            widths.append(min(natural, cap) if cap else natural)
        return sum(widths) + 2 * (len(keep) - 1)  # box=None: two spaces between columns

    keep = list(cols)
    for col in _JOB_COLUMNS_DROPPED_FIRST:
        if need(keep) <= width:
            break
        if col in keep:
            keep.remove(col)
    return keep


def _print_status_tables(
    rows: list[dict[str, Any]], workers: list[Any], reasons: list[str], now: float
) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    out = _stdout()
    if not rows:
        out.print("No jobs. Queue one with: wabulk enqueue contacts.csv --message 'Hi {name}'")
    else:
        # Counts that are zero in every row are left out so the table fits an 80-column terminal;
        # --json always has every column.
        optional = ("sending", "skipped", "cancelled")
        shown = [c for c in optional if any(r[c] for r in rows)]
        # Receipts once any were recorded (`wabulk track`); "undelivered" only when some message is.
        ticks = ["delivered", "read"] if any(r["delivered"] or r["read"] for r in rows) else []
        ticks += ["undelivered"] if any(r["undelivered"] for r in rows) else []
        # "unknown" (of the failed: the send was pressed, the chat could not tell) once there is one.
        unknown = ["unknown"] if any(r.get("unknown") for r in rows) else []
        counts = ["total", "pending", *shown[:1], "sent", *ticks, "failed", *unknown, *shown[1:]]
        cells: list[dict[str, str]] = []
        for r in rows:
            st = r["status"] + (f" ({r['reason']})" if r["reason"] else "")
            if r.get("waiting_until"):
                st += f", waits until {_fmt_time(r['waiting_until'], short=True)}"
            cells.append(
                {
                    "id": str(r["id"]),
                    "name": r["name"],
                    "status": st,
                    **{c: str(r[c]) for c in counts},
                    "done": f"{r['progress']:.0f}%",
                    "started": _fmt_time(r["started_at"], short=True),
                    "ETA": _fmt_duration(r["eta_seconds"]),
                }
            )
        cols = _fit_job_columns(["id", "name", "status", *counts, "done", "started", "ETA"], cells, out.width)
        t = Table(title="Jobs", box=None, pad_edge=False, header_style="bold underline")
        for col in cols:
            wide = col in ("name", "status")
            t.add_column(
                col, justify="left" if wide else "right", no_wrap=not wide, min_width=7 if wide else None
            )
        for c in cells:
            t.add_row(*(escape(c[col]) for col in cols))
        out.print(t)
    if workers:
        w = Table(title="Workers", box=box.SIMPLE_HEAD)
        for col in ("session", "pid", "host", "state", "last heartbeat", "alive"):
            w.add_column(col)
        for wk in workers:
            w.add_row(
                escape(wk.session),
                str(wk.pid),
                escape(wk.host),
                escape(wk.state or "-"),
                f"{_fmt_duration(now - wk.heartbeat_at)} ago",
                "yes" if wk.alive else "no",
            )
        out.print(w)
    for r in rows:
        if r.get("billable"):
            per = ", ".join(
                f"{escape(c)} {n['billable']}" + (f" (+{n['free']} free)" if n["free"] else "")
                for c, n in sorted(r["billable"].items())
            )
            out.print(f"Job {r['id']} billable messages by category: {per}")
    for reason in reasons:
        out.print(f"[bold]Attention:[/bold] {escape(reason)}")


# --- job control --------------------------------------------------------------------------------


@app.command()
def pause(job_id: Annotated[int, typer.Argument(help="The job to pause.")]) -> None:
    """Pause a job: workers stop claiming its messages within a second (the one in flight finishes).

    Example: wabulk pause 3
    """
    with _errors():
        job = _queue(create=False).pause_job(job_id)
    typer.echo(f"Job {job.id} is {job.status}.")


@app.command()
def resume(
    job_id: Annotated[int | None, typer.Argument(help="The job to resume.")] = None,
    session: Annotated[
        str | None,
        typer.Option(
            "--session", help="Resume this WhatsApp session instead (paused by unknown outcomes or a block)."
        ),
    ] = None,
) -> None:
    """Resume a paused job (also one auto-paused by the circuit breaker), or with --session a session that
    paused itself (outcomes it could not read in the chat, or a blocked account).

    Example: wabulk resume 3
    """
    if (job_id is None) == (session is None):
        raise typer.BadParameter("give exactly one of JOB_ID or --session NAME")
    with _errors():
        q = _queue(create=False)
        if session is not None:
            was = q.resume_session(session)
            typer.echo(f"Session {session!r} " + ("resumed." if was else "was not paused."))
            return
        assert job_id is not None
        job = q.resume_job(job_id)
    typer.echo(f"Job {job.id} is {job.status}.")


@app.command()
def stop(job_id: Annotated[int, typer.Argument(help="The job to stop for good.")]) -> None:
    """Stop a job: its pending messages become cancelled; messages in flight finish (those whose worker is
    gone are settled now, as unknown when their send was pressed); says what it could not settle.

    Example: wabulk stop 3
    """
    with _errors():
        q = _queue(create=False)
        job = q.stop_job(job_id)
        counts = q.counts(job_id)
        flying = q.in_flight(job_id)
        unknown = q.unknown_count(job_id)
    typer.echo(
        f"Job {job.id} is {job.status}; {counts.get('cancelled', 0)} message(s) cancelled"
        + (f"; {unknown} whose outcome is unknown (see `wabulk status --check`)" if unknown else "")
        + "."
    )
    if flying:
        ids = ", ".join(str(mid) for mid, _, _ in flying[:20]) + (" …" if len(flying) > 20 else "")
        typer.echo(
            f"{len(flying)} message(s) still in flight on a live worker (ids {ids}): each ends when its"
            " worker finishes it, or is settled (unknown if its send was pressed) once its lease expires;"
            " `wabulk resolve ID` settles one whose worker is gone."
        )


@app.command("retry-failed")
def retry_failed(
    job_id: Annotated[int | None, typer.Argument(help="The job whose failed messages to retry.")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Retry failed messages of every job.")] = False,
    message_id: Annotated[int | None, typer.Option("--message", help="Retry only this message.")] = None,
    error_class: Annotated[
        str | None, typer.Option("--error-class", help="Only failures of this class (e.g. offline).")
    ] = None,
) -> None:
    """Put failed messages back in the queue with their attempts reset. A message whose send was pressed
    keeps its stamp: its chat is looked at first, and it is sent again only if the chat shows it is not
    there (an outcome still unknown stays failed; see `wabulk resolve`).

    Example: wabulk retry-failed 3 --error-class unknown_outcome
    """
    chosen = int(job_id is not None) + int(message_id is not None) + int(all_jobs)
    if chosen != 1:
        raise typer.BadParameter("give exactly one of JOB_ID, --all or --message ID")
    with _errors():
        n = _queue(create=False).retry_failed(job_id, message_id=message_id, error_class=error_class)
    typer.echo(f"{n} message(s) back in the queue.")


@app.command()
def resolve(
    message_id: Annotated[int, typer.Argument(help="The message (its id is in `wabulk export`).")],
    sent: Annotated[bool, typer.Option("--sent", help="You saw it in the chat: mark it sent.")] = False,
    resend: Annotated[
        bool,
        typer.Option(
            "--resend-unverified", help="Send it again without looking in the chat (it may arrive twice)."
        ),
    ] = False,
) -> None:
    """Decide a message whose outcome is unknown (failed, class unknown_outcome): wabulk pressed send but
    could not read the chat to tell whether it arrived, so it never resends it on its own. Look in the
    chat on the phone, then mark it sent, or send it again knowingly. Logged in the message's events.
    Any message no worker can settle is accepted, one by one: a failed one, a pending one (for instance
    pressed by a session that never comes back) and one stuck in sending whose worker is gone (its lease
    expired); not one in flight on a live worker.

    Example: wabulk resolve 1234 --sent
    """
    if sent == resend:
        raise typer.BadParameter("give exactly one of --sent or --resend-unverified")
    with _errors():
        m = _queue(create=False).resolve(message_id, sent=sent, resend=resend)
    typer.echo(f"Message {m.id} is {m.status}" + (" (it will be sent again)." if resend else "."))


@app.command()
def prune(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", help="Finished longer ago than this: 30d, 12h, 90m (a bare number is days)."
        ),
    ],
) -> None:
    """Delete the messages of finished jobs (their counts are kept). Never touches pending work.

    Example: wabulk prune --older-than 30d
    """
    from .receipts import parse_age

    with _errors():
        text = older_than.strip()
        bare = text.replace(".", "", 1).isdigit()
        days = float(text) if bare else parse_age(text, option="--older-than") / 86400
        n = _queue(create=False).prune(days)
    typer.echo(f"{n} message(s) pruned.")


@app.command()
def export(
    job_id: Annotated[int, typer.Argument(help="The job to export.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="CSV file to write (default: stdout).")
    ] = None,
    undelivered: Annotated[
        bool,
        typer.Option("--undelivered", help="Only messages still on one tick after --undelivered-after."),
    ] = False,
    undelivered_after: Annotated[
        str,
        typer.Option(
            "--undelivered-after", help="A sent message still on one tick after this long is undelivered."
        ),
    ] = "24h",
    raw: Annotated[
        bool,
        typer.Option("--raw", help="Values as stored, for scripts: no ' before +, =, -, @ (unsafe in Excel)"),
    ] = False,
) -> None:
    """Export one row per recipient (number, name, status, attempts, error, sent/delivered/read times,
    the message text) as CSV.

    Cells that a spreadsheet would run as a formula are neutralised (a ' before +, =, -, @) unless --raw.

    Example: wabulk export 3 --undelivered --out follow-up.csv
    """
    import time
    from functools import partial

    from .export import export_job
    from .receipts import export_undelivered, parse_age

    with _errors():
        after = parse_age(undelivered_after, option="--undelivered-after")
        q = _queue(create=False)
        q.get_job(job_id)
        write = (
            partial(export_undelivered, now=time.time(), after=after, raw=raw)
            if undelivered
            else partial(export_job, raw=raw)
        )
        if out is None:
            n = write(q, job_id, sys.stdout)
        else:
            with open(out, "w", encoding="utf-8", newline="") as fh:
                n = write(q, job_id, fh)
    if out is not None:
        typer.echo(f"{n} row(s) written to {out}")


# --- opt-outs -----------------------------------------------------------------------------------


def _normalize_many(numbers: list[str], country: str | None) -> list[str]:
    from .contacts import normalize_phones
    from .errors import BadInput

    try:
        return normalize_phones(numbers, country)
    except BadInput as exc:
        raise typer.BadParameter(str(exc)) from None


@optout_app.command("add")
def optout_add(
    numbers: Annotated[list[str], typer.Argument(help="Numbers that must never be messaged.")],
    country: Annotated[
        str | None, typer.Option("--country", help="Default country for local numbers.")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept for the record).")] = None,
) -> None:
    """Add numbers to the opt-out list; queued messages to them are skipped.

    Example: wabulk optout add +447700900123 --reason "asked by email"
    """
    phones = _normalize_many(numbers, country)
    with _errors():
        n = _queue().add_optouts(phones, reason)
    typer.echo(f"{n} number(s) added to the opt-out list.")


@optout_app.command("remove")
def optout_remove(
    numbers: Annotated[list[str], typer.Argument(help="Numbers to remove from the list.")],
    country: Annotated[
        str | None, typer.Option("--country", help="Default country for local numbers.")
    ] = None,
) -> None:
    """Remove numbers from the opt-out list.

    Example: wabulk optout remove +447700900123
    """
    phones = _normalize_many(numbers, country)
    with _errors():
        n = _queue(create=False).remove_optouts(phones)
    typer.echo(f"{n} number(s) removed from the opt-out list.")


@optout_app.command("list")
def optout_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the opted-out numbers.

    Example: wabulk optout list --json
    """
    with _errors():
        rows = _queue().list_optouts()
    if as_json:
        from .store.optouts import optouts_as_json

        _print_json(optouts_as_json(rows))
        return
    for phone, at, r in rows:
        typer.echo(f"{phone}\t{_fmt_time(at)}\t{r or ''}")


@optout_app.command("import")
def optout_import(
    file: Annotated[Path, typer.Argument(help="CSV or .xlsx with a phone column.")],
    country: Annotated[
        str | None, typer.Option("--country", help="Default country for local numbers.")
    ] = None,
    phone_column: Annotated[str | None, typer.Option("--phone-column", help="Column with numbers.")] = None,
) -> None:
    """Add every number of a contacts file to the opt-out list (invalid ones are reported).

    Example: wabulk optout import unsubscribed.csv --country GB
    """
    from .contacts import default_country, read_contacts

    with _errors():
        phones: list[str] = []
        bad = 0
        for row in read_contacts(
            file, country=country or default_country(), phone_column=phone_column, require_name=False
        ):
            if row.phone:
                phones.append(row.phone)
            else:
                bad += 1
        n = _queue().add_optouts(phones, f"imported from {file.name}")
    typer.echo(f"{n} number(s) added to the opt-out list; {bad} invalid row(s) ignored.")


# --- Cloud API templates ----------------------------------------------------------------------


@templates_app.command("sync")
def templates_sync(
    session: Annotated[
        str, typer.Option("--session", envvar=ENV_SESSION, help="The Cloud API session (account).")
    ] = "default",
    waba_id: Annotated[
        str | None,
        typer.Option(
            "--waba-id",
            help="The WhatsApp Business Account id (default: the one the session knows or synced last).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the templates as JSON.")] = False,
) -> None:
    """Fetch the account's message templates (name, language, category, status, parameter count) so that
    enqueue --template can check a job before anything is written. Needs WABULK_CLOUD_TOKEN.

    Example: wabulk templates sync --session biz
    """
    from .cloud.templates import catalogue_rows, sync_waba
    from .settings import cloud_token, graph_url, graph_version

    with _errors():
        q = _queue()
        result = sync_waba(
            q, session, waba_id, token=cloud_token(), base_url=graph_url(), version=graph_version()
        )
    if as_json:
        _print_json(list(catalogue_rows(q.catalogue([session]))))
        return
    typer.echo(
        f"Synced {len(result.templates)} template(s) of WhatsApp Business Account {result.waba_id} "
        f"for session {session!r}: {result.approved} approved."
    )


@templates_app.command("list")
def templates_list(
    session: Annotated[
        str | None, typer.Option("--session", help="Only this session's templates.", show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show the synced templates: name, language, category, status and how many parameters each takes.

    Example: wabulk templates list --session biz
    """
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from .cloud.templates import catalogue_rows

    with _errors():
        q = _queue(create=False)
        templates = q.catalogue([session] if session else [])
        syncs = q.catalogue_syncs()
    if as_json:
        _print_json(list(catalogue_rows(templates)))
        return
    if not syncs or (session is not None and session not in syncs):
        which = f" for session {session!r}" if session else ""
        typer.echo(f"No templates synced{which}. Fetch them with: wabulk templates sync --session NAME")
        return
    t = Table(box=box.SIMPLE_HEAD)
    for col in ("session", "name", "language", "category", "status", "params", "synced"):
        t.add_column(col)
    for x in templates:
        t.add_row(
            escape(x.session),
            escape(x.name),
            escape(x.language),
            escape(x.category or "-"),
            escape(x.status),
            str(x.params),
            _fmt_time(x.synced_at),
        )
    _stdout().print(t)


# --- browser-side commands ---------------------------------------------------------------------


@app.command()
def login(
    session: SessionName = "default",
    web_url: WebUrl = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the scan.")] = 300.0,
    remote_url: RemoteUrl = None,
    cloud: Annotated[
        bool,
        typer.Option(
            "--cloud",
            help="A WhatsApp Business Cloud API number (token in WABULK_CLOUD_TOKEN) instead of a QR.",
        ),
    ] = False,
    phone_number_id: Annotated[
        str | None,
        typer.Option(
            "--phone-number-id", help="With --cloud: the number's id (WhatsApp Manager > Phone numbers)."
        ),
    ] = None,
    waba_id: Annotated[
        str | None,
        typer.Option(
            "--waba-id",
            help="With --cloud: the number's WhatsApp Business Account id, when the token may use several "
            "(found by itself otherwise); it tells which business portfolio shares the messaging limit.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Link a WhatsApp account: shows the QR code in the terminal (and as a PNG) until it is scanned.

    With --cloud, checks the Cloud API token (WABULK_CLOUD_TOKEN) and the phone number id and records the
    session as that number; nothing is recorded if either is refused.

    Example: wabulk login --session shop
    Example: wabulk login --session biz --cloud --phone-number-id 1234567890
    """
    if cloud or phone_number_id or waba_id:
        if not (cloud and phone_number_id):
            raise typer.BadParameter("--cloud and --phone-number-id go together")
        _login_cloud(session, phone_number_id, waba_id)
        return
    from . import session as sessions
    from .web.login import login as do_login

    settings = _settings().with_(web_url=web_url, remote_url=remote_url)
    err = _stderr()

    def show(payload: str) -> None:
        from .qrcodes import render_terminal

        err.print(render_terminal(payload), markup=False)
        err.print("Scan this with WhatsApp on your phone: Settings > Linked devices > Link a device.")

    with _errors():
        result = do_login(settings, session, on_qr=show, timeout=timeout)
        if not result.already_logged_in:
            sessions.record_link(settings, session)
    if result.already_logged_in:
        typer.echo(f"Session {session!r} is already logged in.")
    else:
        if result.qr_png is not None:
            typer.echo(f"(The QR code was also saved as {result.qr_png}.)")
        typer.echo(f"Session {session!r} is logged in.")


def _login_cloud(session: str, phone_number_id: str, waba_id: str | None = None) -> None:
    from . import settings as cfg
    from .cloud.account import login_cloud

    with _errors():
        found = login_cloud(
            _settings().db, session, phone_number_id, token=cfg.cloud_token(), waba_id=waba_id
        )
    name = found.verified_name or "?"
    number = found.display_phone_number or found.phone_number_id
    typer.echo(
        f"Session {session!r} sends through the Cloud API as {name} ({number}); quality"
        f" {found.quality_rating or 'unknown'}, throughput {found.throughput or 'unknown'},"
        f" messaging limit {found.messaging_limit or 'unknown'}."
    )
    if found.portfolio_id:
        typer.echo(
            f"Its messaging limit is business portfolio {found.portfolio_id}'s (WhatsApp Business Account"
            f" {found.waba_id}), shared with the portfolio's other numbers."
        )
    else:
        _stderr().print(
            f"Warning: {found.portfolio_note or 'the business portfolio is unknown'}; the messaging limit is"
            " counted for this number alone.",
            markup=False,
        )
    if found.unpaused:
        typer.echo(f"The token works again: session {session!r} is no longer paused.")


@app.command()
def doctor(
    session: SessionName = "default",
    live: Annotated[
        bool, typer.Option("--live/--offline", help="Also open WhatsApp Web and resolve selectors.")
    ] = True,
    web_url: WebUrl = None,
    test_number: Annotated[
        str | None,
        typer.Option(
            "--test-number", help="Open this number's chat to check the chat selectors too (sends nothing)."
        ),
    ] = None,
    remote_url: RemoteUrl = None,
) -> None:
    """Check the browser, driver, profile, database and (live) every WhatsApp Web selector.

    Example: wabulk doctor --session shop
    """
    from rich.markup import escape

    from .doctor import run_doctor

    settings = _settings().with_(web_url=web_url, remote_url=remote_url)
    with _errors():
        phone = _normalize_many([test_number], None)[0] if test_number else None
        checks = run_doctor(settings, session, live=live, test_phone=phone)
    out = _stdout()
    marks = {"ok": "[green]ok[/green]", "warn": "[yellow]warn[/yellow]", "fail": "[red]FAIL[/red]"}
    for c in checks:
        out.print(f"{marks.get(c.level, c.level):>6}  {escape(c.name)}: {escape(c.detail)}")
    if any(c.level == "fail" for c in checks):
        raise typer.Exit(exitcodes.ERROR)


@app.command()
def run(
    session: Annotated[
        list[str] | None,
        typer.Option(
            "--session",
            envvar=ENV_SESSION,
            help="Session (account) name; repeat it to run one worker process per session."
            " Default: the session called 'default'.",
            show_default=False,
        ),
    ] = None,
    sessions: Annotated[
        str | None,
        typer.Option("--sessions", help="Comma-separated sessions, one worker process each (e.g. a,b,c)."),
    ] = None,
    job: Annotated[list[int] | None, typer.Option("--job", help="Only these jobs (repeatable).")] = None,
    until_done: Annotated[
        bool,
        typer.Option(
            "--until-done",
            help="Exit when nothing is left: 0 all sent, 3 some failed, 4 a person must act (e.g. blocked).",
        ),
    ] = False,
    pace: Annotated[
        str | None,
        typer.Option(
            "--pace",
            envvar=ENV_PACE,
            help="fast (2-5 s apart), balanced (4-8 s, the default), safe (10-30 s) or off (tests only).",
        ),
    ] = None,
    min_delay: Annotated[
        float | None, typer.Option("--min-delay", min=0, help="Seconds between sends (min).")
    ] = None,
    max_delay: Annotated[
        float | None, typer.Option("--max-delay", min=0, help="Seconds between sends (max).")
    ] = None,
    long_pause_every: Annotated[
        int | None, typer.Option("--long-pause-every", min=0, help="A longer pause about every N messages.")
    ] = None,
    daily_cap: Annotated[
        int | None,
        typer.Option(
            "--daily-cap",
            min=0,
            help="Most messages per session and day; 0 = no cap. Default: the pace's (fast 1000, balanced"
            " 500, safe 200). A new session warms up: at most 20, 40, 80, 150, 250 on its first five days.",
        ),
    ] = None,
    quiet_hours: Annotated[
        str | None, typer.Option("--quiet-hours", help="No sends in the recipient's local HH:MM-HH:MM.")
    ] = None,
    web_url: WebUrl = None,
    headless: Headless = None,
    log_numbers: Annotated[bool, typer.Option("--log-numbers", help="Do not mask numbers in logs.")] = False,
    track_receipts: Annotated[
        bool,
        typer.Option(
            "--track-receipts",
            help="In idle time, look at the chats of sent messages and record delivered/read ticks.",
        ),
    ] = False,
    restart_browser_every: Annotated[
        int | None,
        typer.Option(
            "--restart-browser-every",
            min=0,
            help="Start a fresh browser after this many chats (0 = never): a long-lived page keeps growing.",
            show_default="100",
        ),
    ] = None,
    lease_seconds: Annotated[
        float | None,
        typer.Option(
            "--lease-seconds",
            envvar="WABULK_LEASE_SECONDS",
            min=1,
            hidden=True,
            help="How long a claim lasts before another worker may take it over (tests).",
        ),
    ] = None,
    remote_url: RemoteUrl = None,
    notify: Annotated[
        list[str] | None,
        typer.Option(
            "--notify",
            envvar="WABULK_NOTIFY",
            help="POST signed JSON to this URL when a human should know (repeatable; secret: "
            "WABULK_NOTIFY_SECRET).",
            show_default=False,
        ),
    ] = None,
    notify_cmd: Annotated[
        str | None,
        typer.Option(
            "--notify-cmd",
            envvar="WABULK_NOTIFY_CMD",
            help="Run this command (no shell; use sh -c for pipes) with the notification's JSON on stdin.",
            show_default=False,
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate",
            envvar="WABULK_CLOUD_MPS",
            help="Cloud API sessions: messages per second for this number (at most 1000).",
            show_default="80",
        ),
    ] = None,
    settle_seconds: Annotated[
        float | None,
        typer.Option(
            "--settle-seconds",
            envvar="WABULK_CLOUD_SETTLE_SECONDS",
            min=0.1,
            hidden=True,
            help="Cloud API: how long a POST without an answer waits for its status webhook.",
        ),
    ] = None,
) -> None:
    """Run the worker: send queued messages through one WhatsApp session, paced like a human.

    A Cloud API session (wabulk login --cloud) sends at --rate messages per second instead; pace options
    do not apply to it.

    With several sessions (--session a --session b, or --sessions a,b) each session gets its own worker
    process under one live view; a worker that dies is restarted, Ctrl-C stops them all.

    Example: wabulk run --session shop --pace safe --daily-cap 200 --quiet-hours 21:00-08:00
    """
    names = _session_names(session, sessions)
    if len(names) == 1:
        cloud = _cloud_session(names[0])
        if cloud is not None:
            if restart_browser_every is not None:
                # A WhatsApp Web setting: the Cloud API has no browser to restart.
                _stderr().print(
                    f"Note: --restart-browser-every applies to WhatsApp Web sessions; ignored for the Cloud"
                    f" API session {names[0]!r}.",
                    markup=False,
                )
            _run_cloud(names[0], cloud, job, until_done, rate, settle_seconds, lease_seconds)
            return
    from . import settings as cfg
    from .worker import build_config, run_worker

    settings = _settings().with_(web_url=web_url, headless=headless, session=names[0], remote_url=remote_url)
    with _errors():
        # The web provider's own setting: it restarts its browser, the worker only asks it to.
        settings = settings.with_(
            restart_browser_every=cfg.check_restart_browser_every(restart_browser_every)
        )
        config = build_config(
            session=names[0],
            job_ids=tuple(job) if job else None,
            until_done=until_done,
            pace=pace or settings.pace,
            min_delay=min_delay,
            max_delay=max_delay,
            long_pause_every=long_pause_every,
            daily_cap=daily_cap,
            quiet_hours=quiet_hours,
            log_numbers=log_numbers,
            lease_seconds=lease_seconds,
            track_receipts=track_receipts,
        )
        if len(names) > 1:
            from .worker.fleet import RunOptions, run_fleet

            # The same options for every worker; values come from this command line (or its env vars).
            options = RunOptions(
                pace=pace or settings.pace,
                job_ids=tuple(job or ()),
                until_done=until_done,
                min_delay=min_delay,
                max_delay=max_delay,
                long_pause_every=long_pause_every,
                daily_cap=daily_cap,
                quiet_hours=quiet_hours,
                lease_seconds=lease_seconds,
                log_numbers=log_numbers,
                track_receipts=track_receipts,
                provider_args=_web_run_args(web_url, remote_url, headless, restart_browser_every),
                notify=tuple(notify or ()),
                notify_cmd=notify_cmd,
            )
            code = run_fleet(settings, names, options.argv(), config=config)
        else:
            from .notify.service import worker_notifications

            with worker_notifications(
                settings.db, names[0], urls=notify or (), commands=[notify_cmd] if notify_cmd else ()
            ) as hook:
                code = run_worker(settings, config, on_event=hook)
    raise typer.Exit(code)


def _web_run_args(
    web_url: str | None, remote_url: str | None, headless: bool | None, restart_browser_every: int | None
) -> tuple[str, ...]:
    """``run``'s WhatsApp Web options as given on this command line, for each worker of a fleet."""
    args: list[str] = []
    for flag, value in (
        ("--web-url", web_url),
        ("--remote-url", remote_url),
        ("--restart-browser-every", restart_browser_every),
    ):
        if value is not None:
            args += [flag, str(value)]
    if headless is not None:
        args.append("--headless" if headless else "--headed")
    return tuple(args)


def _cloud_session(name: str) -> dict[str, Any] | None:
    """The provider settings of ``name`` when it is a Cloud API session, else None."""
    from . import session as sessions

    settings = _settings()
    if not settings.db.exists():
        return None
    with _errors(), _queue(create=False) as q:
        s = sessions.get(q, name)
    return dict(s.settings) if s.provider == sessions.CLOUD else None


def _run_cloud(
    name: str,
    provider_settings: dict[str, Any],
    job: list[int] | None,
    until_done: bool,
    rate: float | None,
    settle_seconds: float | None,
    lease_seconds: float | None,
) -> None:
    from . import settings as cfg
    from .cloud.account import MPS_BY_LEVEL
    from .cloud.provider import DEFAULT_SETTLE_SECONDS as SETTLE
    from .cloud.runner import DEFAULT_LEASE_SECONDS as LEASE
    from .cloud.runner import CloudRunConfig, run_cloud
    from .errors import ConfigError

    with _errors():
        # --rate / WABULK_CLOUD_MPS, else the number's throughput level as login read it (80 or 1,000).
        level = MPS_BY_LEVEL.get(str(provider_settings.get("throughput") or ""))
        mps = cfg.parse_cloud_mps(rate if rate is not None else level)
        config = CloudRunConfig(
            session=name,
            phone_number_id=str(provider_settings.get("phone_number_id") or ""),
            rate=mps,
            settle_seconds=settle_seconds or SETTLE,
            until_done=until_done,
            job_ids=tuple(job) if job else None,
            lease_seconds=lease_seconds or LEASE,
            provider_settings=provider_settings,
        )
        if not config.phone_number_id:
            raise ConfigError(f"session {name!r} has no phone number id: run wabulk login --cloud again")
        view = _CloudView(name, mps)
        with view:
            result = run_cloud(_settings().db, config, token=cfg.cloud_token(), on_progress=view.update)
    if result.code in (exitcodes.OK,):
        typer.echo(f"Session {name!r}: {result.line}.")
    else:
        _stderr().print(f"Session {name!r}: {result.line}", markup=False)
    raise typer.Exit(result.code)


class _CloudView:
    """The live table of a Cloud API run: accepted, delivered, read, failed, msg/s (plain lines when the
    output is not a terminal)."""

    def __init__(self, session: str, rate: float) -> None:
        self.session = session
        self.rate = rate
        self._live: Any = None
        self._last = 0.0

    def __enter__(self) -> _CloudView:
        err = _stderr()
        if err.is_terminal:
            from rich.live import Live

            self._live = Live(console=err, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def update(self, p: Any) -> None:
        import time as _time

        if self._live is not None:
            from rich.table import Table

            table = Table(title=f"{self.session} (Cloud API, up to {self.rate:g} msg/s): {p.state}")
            for col in ("accepted", "delivered", "read", "failed", "unknown", "msg/s"):
                table.add_column(col, justify="right")
            table.add_row(
                str(p.accepted), str(p.delivered), str(p.read), str(p.failed), str(p.unknown), f"{p.rate:.0f}"
            )
            self._live.update(table)
            return
        now = _time.monotonic()
        if now - self._last >= 5.0:
            self._last = now
            _stderr().print(
                f"{self.session}: {p.state}; accepted {p.accepted}, delivered {p.delivered}, read {p.read},"
                f" failed {p.failed}, unknown {p.unknown}, {p.rate:.0f} msg/s",
                markup=False,
            )


def _session_names(session: list[str] | None, sessions: str | None) -> list[str]:
    """The sessions of ``run``: every --session and --sessions name, in order, without duplicates."""
    names: list[str] = []
    for raw in [*(session or ()), *((sessions or "").split(","))]:
        for name in raw.replace(",", " ").split():
            if name not in names:
                names.append(name)
    return names or ["default"]


@app.command()
def track(
    session: Annotated[
        str, typer.Option("--session", envvar=ENV_SESSION, help="Session (account) that sent the messages.")
    ] = "default",
    job: Annotated[int | None, typer.Option("--job", help="Only this job's messages.")] = None,
    older_than: Annotated[
        str,
        typer.Option("--older-than", help="Only messages sent (and last checked) longer ago than this."),
    ] = "10m",
    limit: Annotated[int, typer.Option("--limit", min=1, help="Look at most this many chats.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    web_url: WebUrl = None,
    headless: Headless = None,
) -> None:
    """Record delivered/read receipts: open the chats of sent, unread messages (oldest first) and read
    the ticks of our bubble. Never sends anything. Refused while a worker uses the session: run that
    worker with --track-receipts instead.

    Example: wabulk track --session shop --older-than 1h --limit 100
    """
    from .receipts import parse_age
    from .worker.receipts import run_track

    settings = _settings().with_(web_url=web_url, headless=headless, session=session)
    with _errors():
        age = parse_age(older_than, option="--older-than")
        result = run_track(settings, session=session, job_id=job, older_than=age, limit=limit)
    if as_json:
        _print_json(result.as_dict())
        return
    typer.echo(
        f"Checked {len(result.checked)} chat(s): {result.delivered} newly delivered, {result.read} read, "
        f"{result.unchanged} unchanged, {result.not_found} not found, {result.failed} error(s)."
    )


@app.command()
def demo(
    port: Annotated[
        int, typer.Option("--port", help="Port for the bundled simulator (0 = any free one).")
    ] = 0,
    headed: Annotated[bool, typer.Option("--headed", help="Show the browser window.")] = False,
    cloud: Annotated[
        bool,
        typer.Option(
            "--cloud", help="The Cloud API flow instead, on the bundled Graph API simulator (webhooks too)."
        ),
    ] = False,
) -> None:
    """Run the whole flow on the bundled WhatsApp Web simulator: enqueue, run with the live view, status.

    With --cloud: the Cloud API flow on the bundled Graph API simulator, whose signed status webhooks go to
    wabulk's own receiver: login --cloud, templates sync, enqueue --template, run with the live table, status.

    Example: wabulk demo
    Example: wabulk demo --cloud
    """
    if cloud:
        _demo_cloud()
        return
    import time

    from .demo import run_demo
    from .queue import Queue
    from .report import job_row

    with _errors():
        result = run_demo(_settings(), port=port, headed=headed, console=_stdout())
        q = Queue(result.settings.db, create=False)
        summaries = q.summaries(result.job_id)
        workers = q.workers()
    now = time.time()
    out = _stdout()
    out.rule("4. Status")
    _print_status_tables([job_row(s, now) for s in summaries], workers, [], now)
    out.print(f"Report: {result.export_path}")
    out.print(f"What the simulated WhatsApp received: {result.simulator_log}")
    exe = _self_command()
    out.print(f"Look around: {exe} --db {result.settings.db} status")
    out.print(f"Or in a browser: {exe} --db {result.settings.db} serve  (open the URL it prints)")
    if result.exit_code == exitcodes.SOME_FAILED:
        # The sample list holds a number that is not on WhatsApp on purpose: its failure is the demo
        # working, not the demo failing.
        out.print("One failure is expected: the sample list has a number that is not on WhatsApp.")
        raise typer.Exit(exitcodes.OK)
    raise typer.Exit(result.exit_code)


def _demo_cloud() -> None:
    import time

    from .cloud.demo import run_cloud_demo
    from .queue import Queue
    from .report import status_report

    out = _stdout()
    with _errors(), _DemoProgress(out) as view:
        result = run_cloud_demo(_settings(), console=out, on_progress=view.update)
    now = time.time()
    with _errors(), Queue(result.settings.db, create=False) as q:
        # The same report as `wabulk status`: receipts and billable counts come from the webhooks.
        report = status_report(q, job_id=result.job_id, undelivered_after_seconds=86400, pace="off", now=now)
    out.rule("5. Status")
    _print_status_tables(report.jobs, report.workers, report.attention, now)
    out.print(f"Report: {result.export_path}", markup=False)
    out.print(f"Look around: wabulk --db {result.settings.db} status", markup=False)
    failed = sum(r["failed"] for r in report.jobs)
    if result.exit_code in (exitcodes.OK, exitcodes.SOME_FAILED) and failed == 1:
        # The sample list holds a number that is not on WhatsApp on purpose: its 131026 (by webhook, after
        # Meta accepted the POST) is the demo working, not failing.
        out.print("One failure is expected: the sample list has a number that is not on WhatsApp (131026).")
        raise typer.Exit(exitcodes.OK)
    raise typer.Exit(result.exit_code)


class _DemoProgress:
    """The demo's live line of a Cloud API run: accepted, delivered, read, failed, unknown, msg/s."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self._live: Any = None
        self._last = -1.0

    def __enter__(self) -> _DemoProgress:
        if self.console.is_terminal:
            from rich.live import Live

            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def update(self, p: Any) -> None:
        import time as _time

        line = (
            f"   {p.state}: accepted {p.accepted}, delivered {p.delivered}, read {p.read}, failed {p.failed},"
            f" unknown {p.unknown}, {p.rate:.0f} msg/s"
        )
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text(line))
        elif _time.monotonic() - self._last >= 2.0:
            self._last = _time.monotonic()
            self.console.print(line, markup=False)


@app.command()
def simulator(
    port: Annotated[
        int | None,
        typer.Option("--port", help="Port to listen on (loopback only; default 8765, or 8766 with --graph)."),
    ] = None,
    graph: Annotated[
        bool,
        typer.Option(
            "--graph", help="Simulate Meta's Graph API (the WhatsApp Cloud API) instead of WhatsApp Web."
        ),
    ] = False,
    webhook_url: Annotated[
        str | None,
        typer.Option("--webhook-url", help="With --graph: where status webhooks are POSTed."),
    ] = None,
) -> None:
    """Run a bundled simulator for trying wabulk without a real account: WhatsApp Web, or with --graph the
    Cloud API (token and app secret from WABULK_CLOUD_TOKEN / WABULK_CLOUD_APP_SECRET, else sim-token /
    sim-app-secret).

    Example: wabulk simulator --port 8765 & WABULK_WEB_URL=http://127.0.0.1:8765 wabulk login

    Example: wabulk simulator --graph --webhook-url http://127.0.0.1:8787/webhooks/whatsapp
    """
    if graph:
        from .cloud.simulator.server import DEFAULT_PORT
        from .cloud.simulator.server import main as graph_main

        argv = ["--port", str(DEFAULT_PORT if port is None else port)]
        if webhook_url:
            argv += ["--webhook-url", webhook_url]
        with _errors():
            code = graph_main(argv)
        raise typer.Exit(code)
    if webhook_url:
        raise typer.BadParameter("--webhook-url needs --graph", param_hint="--webhook-url")
    from .web.simulator.server import main as sim_main

    with _errors():
        code = sim_main(["--port", str(8765 if port is None else port)])
    raise typer.Exit(code)


@app.command()
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (non-loopback needs an explicit token).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0 = any free one).")] = 8787,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="WABULK_API_TOKEN",
            help="The API/dashboard token (default: a new one, printed in the dashboard URL).",
            show_default=False,
        ),
    ] = None,
    max_upload: Annotated[
        int,
        typer.Option(
            "--max-upload", envvar="WABULK_SERVE_MAX_UPLOAD", min=1024, help="Largest upload, bytes."
        ),
    ] = 20 * 1024 * 1024,
    notify: Annotated[
        list[str] | None,
        typer.Option("--notify", envvar="WABULK_NOTIFY", help="Also notify this URL (as `run --notify`)."),
    ] = None,
    notify_cmd: Annotated[
        str | None, typer.Option("--notify-cmd", envvar="WABULK_NOTIFY_CMD", help="Also run this command.")
    ] = None,
) -> None:
    """Run the HTTP API and web dashboard on the queue (it never sends: workers stay `wabulk run`).

    Example: wabulk serve --port 8787   (then open the printed URL; it carries the token once)
    """
    from .serve import run_server

    with _errors():
        code = run_server(
            _settings(),
            host=host,
            port=port,
            token=token or None,
            max_upload=max_upload,
            notify=notify or (),
            notify_cmd=[notify_cmd] if notify_cmd else (),
        )
    raise typer.Exit(code)


@app.command()
def backup(
    file: Annotated[Path, typer.Argument(help="Where to write the copy (a new file).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE if it exists.")] = False,
) -> None:
    """Copy the queue database consistently while workers keep running (SQLite's online backup).

    Example: wabulk backup /var/backups/wabulk-$(date +%F).db
    """
    from .backup import backup as do_backup

    with _errors():
        result = do_backup(_settings().db, file, overwrite=force)
    typer.echo(f"Backed up to {result.path} ({result.bytes} bytes).")


def _plain_metavars(callback: Any) -> None:
    """FILE, JOB_ID and TEXT in the help, as users write them, not Typer's ``{file}`` and ``<list[str]>``:
    an argument is shown by its name, a repeatable option by what one value is."""
    import typing

    from typer.models import ArgumentInfo, OptionInfo

    try:
        hints = typing.get_type_hints(callback, include_extras=True)
    except (NameError, TypeError):  # an annotation that cannot be resolved here: leave Typer's
        return
    for pname, hint in hints.items():
        if typing.get_origin(hint) is not typing.Annotated:
            continue
        base, *meta = typing.get_args(hint)
        values = [a for a in typing.get_args(base) if a is not type(None)] or [base]
        inner = typing.get_args(values[0]) if typing.get_origin(values[0]) is list else ()
        for m in meta:
            if isinstance(m, ArgumentInfo) and m.metavar is None:
                m.metavar = pname.upper() + ("..." if inner else "")
            elif isinstance(m, OptionInfo) and m.metavar is None and inner:
                m.metavar = "N" if inner[0] is int else "TEXT"
    # The annotations are strings (``from __future__ import annotations``): evaluating them made new
    # parameter objects, so hand Typer these ones.
    callback.__annotations__.update(hints)


def _tidy_help(typer_app: typer.Typer) -> None:
    """Each command's whole first docstring paragraph as its summary in the command list (Click cuts an
    automatic one with "..." at the terminal width), and "Example:" paragraphs kept as written (Click
    re-wraps paragraphs unless they start with ``\\b``)."""
    import inspect
    import re

    for info in typer_app.registered_commands:
        if info.callback is not None:
            _plain_metavars(info.callback)
        doc = inspect.getdoc(info.callback) if info.callback else None
        if not doc:
            continue
        if info.short_help is None:
            info.short_help = " ".join(doc.split("\n\n", 1)[0].split())
        if info.help is None:
            info.help = re.sub(r"\n\n(Examples?:)", "\n\n\b\n\\1", doc)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _tidy_help(group.typer_instance)


_tidy_help(app)


def main() -> None:
    """Console-script entry point."""
    # Rich wraps to the terminal; keep errors on one line in pipes too.
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    sys.argv[1:] = hoist_db(sys.argv[1:])
    app()


def hoist_db(args: list[str]) -> list[str]:
    """``wabulk status --db FILE`` as ``wabulk --db FILE status``: ``--db`` is a global option (before the
    command for Click), but people write it after the command too."""
    out: list[str] = []
    moved: list[str] = []
    command_at: int | None = None  # where the command starts in ``out``
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            out += args[i:]
            break
        if a == "--db" and i + 1 < len(args):
            (moved if command_at is not None else out).extend(args[i : i + 2])
            i += 2
            continue
        if a.startswith("--db="):
            (moved if command_at is not None else out).append(a)
            i += 1
            continue
        if command_at is None and not a.startswith("-"):
            command_at = len(out)
        out.append(a)
        i += 1
    if command_at is None or not moved:
        return out
    return out[:command_at] + moved + out[command_at:]  # after a global --db: the later one wins


if __name__ == "__main__":
    main()
