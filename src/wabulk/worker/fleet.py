"""``wabulk run --sessions a,b,c``: one worker process per session, supervised, under one live view.

Each session's worker is an ordinary ``python -m wabulk run --session X …`` subprocess (its own process
group, output captured to ``<home>/logs/fleet-<session>.out``), exactly what a user would start by hand,
so one account's crash or hang never touches another's. The supervisor needs no IPC: every row of
its view (state, sent today, cap, next send) is read from the database the workers already write (the
``workers`` table's state/heartbeat, ``sent_count``), one short read every refresh.

Supervision rules:

* a worker that exits 0 or 3 with ``--until-done`` is done and not restarted;
* a worker that exits 4 ("a person must act": blocked account, paused session, a setting to fix), or
  whose output shows its account is blocked, is not restarted (a new worker would not help);
* any other exit is restarted after a bounded, doubling backoff; after ``max_quick_failures`` deaths in a
  row, each within ``quick_failure`` seconds of its start, the session is given up;
* Ctrl-C / SIGTERM: SIGTERM is forwarded to every worker (each finishes or releases the message in flight),
  then after ``grace`` seconds the stragglers' process groups (with whatever they started) get SIGKILL;
  exit 130.

Exit code with ``--until-done``: 0 when every session finished with everything sent, 3 when some messages
failed, 4 when a session is blocked or needs a person, 1 when a session was given up.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from wabulk import exitcodes
from wabulk.pacing import daily_limit, local_midnight, local_zone, next_local_midnight
from wabulk.settings import ensure_private_dir

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from wabulk.queue import Queue
    from wabulk.settings import Settings

    from .base import WorkerConfig

DONE_CODES = (exitcodes.OK, exitcodes.SOME_FAILED)
# A worker's plain event line: "<date> <time> <kind>[ job=N] <text>" (live.LiveView._print_line).
_BLOCKED_LINE = re.compile(r"^\S+ \S+ blocked\b", re.MULTILINE)
_EVENT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (\w+)(?: job=\d+)? (.*)$")
_TAIL_BYTES = 8192


@dataclass
class Member:
    """One session of the fleet: its worker process and what the supervisor knows about it."""

    session: str
    out_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    quick_failures: int = 0
    restart_at: float | None = None  # when a dead worker is started again
    exit_code: int | None = None  # the last worker's exit code
    # done, failed, blocked, attention, gave_up, stopped (final; None while it runs)
    outcome: str | None = None
    last_line: str = ""
    # From the database, refreshed by the supervisor.
    state: str | None = None
    alive: bool = False
    sent_today: int = 0
    cap_today: int | None = None
    next_send: str = "-"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Fleet:
    """Supervises one worker subprocess per session. Build with :func:`run_fleet`, or directly in tests
    (``command`` makes the child command line; ``clock``/``sleep`` are injectable)."""

    db: Path
    sessions: Sequence[str]
    command: Callable[[str], list[str]]
    logs_dir: Path
    until_done: bool = False
    cap: int = 0
    min_delay: float = 0.0
    max_delay: float = 0.0
    env: Mapping[str, str] | None = None
    restart_min: float = 1.0
    restart_max: float = 60.0
    quick_failure: float = 30.0
    max_quick_failures: int = 5
    grace: float = 20.0
    poll: float = 0.5
    clock: Callable[[], float] = time.time
    on_line: Callable[[str], None] = lambda _line: None  # plain-mode notices (exits, restarts, states)
    members: list[Member] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _queue: Queue | None = None

    def __post_init__(self) -> None:
        if not self.members:
            ensure_private_dir(self.logs_dir)
            self.members = [Member(s, self.logs_dir / f"fleet-{s}.out") for s in self.sessions]

    # --- control ----------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the fleet to stop (safe from a signal handler)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    # --- processes --------------------------------------------------------------------------------------
    def _spawn(self, m: Member) -> None:
        with m.out_path.open("ab") as out:
            out.write(
                f"\n--- wabulk fleet: starting worker for session {m.session} at "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode()
            )
            out.flush()
            # Its own process group: the supervisor decides who gets which signal, and can SIGKILL a
            # straggler together with every process it started.
            m.proc = subprocess.Popen(
                self.command(m.session),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(self.env) if self.env else None,
                start_new_session=True,
            )
        m.started_at = self.clock()
        m.restart_at = None
        self.on_line(f"session {m.session}: worker started (pid {m.proc.pid}, output {m.out_path})")

    def _tail(self, m: Member) -> str:
        try:
            with m.out_path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - _TAIL_BYTES))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _last_event(self, m: Member) -> str:
        """The worker's last plain event line (kind and text), for the view's "last" column."""
        for line in reversed(self._tail(m).splitlines()):
            hit = _EVENT_LINE.match(line.strip())
            if hit and hit.group(1) not in ("qr",):
                return f"{hit.group(1)}: {hit.group(2)}"
            if line.startswith("Error:"):
                return line
        return m.last_line

    def _reap(self, m: Member, now: float) -> None:
        """Handle a worker that exited: done, blocked, or restart after a backoff."""
        assert m.proc is not None
        code = m.proc.returncode
        m.exit_code, m.proc = code, None
        m.last_line = self._last_event(m)
        if self.stop_requested:
            m.outcome = "stopped"
            return
        if self.until_done and code in DONE_CODES:
            m.outcome = "done" if code == exitcodes.OK else "failed"
            self.on_line(f"session {m.session}: finished (exit {code})")
            return
        if code == exitcodes.BAD_INPUT:
            m.outcome = "gave_up"  # the same options would fail the same way
            self.on_line(f"session {m.session}: worker refused its options (exit 2): {m.last_line}")
            return
        if _BLOCKED_LINE.search(self._tail(m)):
            m.outcome = "blocked"
            self.on_line(f"session {m.session}: account blocked; not restarted ({m.last_line})")
            return
        if code == exitcodes.ATTENTION:
            m.outcome = "attention"
            self.on_line(f"session {m.session}: a person must act; not restarted ({m.last_line})")
            return
        lived = now - m.started_at
        m.quick_failures = m.quick_failures + 1 if lived < self.quick_failure else 1
        if m.quick_failures >= self.max_quick_failures:
            m.outcome = "gave_up"
            self.on_line(
                f"session {m.session}: gave up after {m.quick_failures} quick failures "
                f"(last exit {code}: {m.last_line}); see {m.out_path}"
            )
            return
        delay = min(self.restart_max, self.restart_min * 2 ** (m.quick_failures - 1))
        m.restart_at = now + delay
        m.restarts += 1
        self.on_line(
            f"session {m.session}: worker exited {code} ({m.last_line or 'no output'}); "
            f"restarting in {delay:.0f}s"
        )

    def step(self) -> None:
        """One supervision round: reap exits, start due restarts, refresh the database view."""
        now = self.clock()
        for m in self.members:
            if m.outcome is not None:
                continue
            if m.proc is not None and m.proc.poll() is not None:
                self._reap(m, now)
            if (
                m.outcome is None
                and m.proc is None
                and not self.stop_requested
                and (m.restart_at is None or now >= m.restart_at)
            ):
                self._spawn(m)
        self.refresh(now)

    @property
    def finished(self) -> bool:
        return all(m.outcome is not None for m in self.members)

    def stop_all(self) -> None:
        """SIGTERM every worker, wait up to ``grace`` seconds, SIGKILL the stragglers' process groups."""
        live = [m for m in self.members if m.running]
        for m in live:
            assert m.proc is not None
            with contextlib.suppress(ProcessLookupError):
                m.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for m in live:
            assert m.proc is not None
            try:
                m.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.on_line(f"session {m.session}: worker did not stop in {self.grace:.0f}s; killing it")
        for m in self.members:
            if m.proc is None:
                continue
            if m.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(m.proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    m.proc.wait(10)
            m.exit_code = m.proc.returncode
            m.proc = None
            m.outcome = m.outcome or "stopped"

    def exit_code(self) -> int:
        """The fleet's exit code once every member has an outcome (see the module docstring)."""
        if self.stop_requested:
            return exitcodes.INTERRUPTED
        outcomes = {m.outcome for m in self.members}
        if "gave_up" in outcomes:
            return exitcodes.ERROR
        if outcomes & {"blocked", "attention"}:
            return exitcodes.ATTENTION
        if "failed" in outcomes:
            return exitcodes.SOME_FAILED
        return exitcodes.OK

    # --- the database view --------------------------------------------------------------------------------
    def refresh(self, now: float) -> None:
        """Per-session state, sent today, cap and next send from the database (no IPC with workers)."""
        q = self._queue
        if q is None:
            return
        from wabulk.errors import WabulkError

        try:
            workers = q.workers()
            zone = local_zone()
            midnight = local_midnight(now, zone)
            for m in self.members:
                mine = [w for w in workers if w.session == m.session]
                live = [w for w in mine if w.alive]
                m.alive = bool(live)
                m.state = (live or mine)[0].state if (live or mine) else None
                m.sent_today = q.sent_count(m.session, midnight)
                m.cap_today = (
                    daily_limit(self.cap, q.first_sent_at(m.session), now, tz=zone) if self.cap > 0 else None
                )
                m.next_send = self._next_send(q, m, now, next_local_midnight(now, zone))
        except WabulkError:
            pass  # a busy database: keep the last picture, try again next round

    def _next_send(self, q: Queue, m: Member, now: float, day_end: float) -> str:
        from wabulk.live import format_duration

        if m.cap_today is not None and m.sent_today >= m.cap_today:
            return f"after midnight ({format_duration(day_end - now)})"
        if m.state == "sending":
            return "now"
        if m.state == "pacing":
            last = q.last_sent_at(m.session)
            if last is not None:
                lo, hi = last + self.min_delay - now, last + self.max_delay - now
                if hi <= 0:
                    return "soon"
                return f"in {format_duration(max(0.0, lo))}–{format_duration(hi)}"
        return "-"

    def row_status(self, m: Member, now: float) -> str:
        """What the view says about a member's process."""
        if m.outcome is not None:
            code = f" (exit {m.exit_code})" if m.exit_code is not None else ""
            return f"{m.outcome}{code}"
        if m.proc is None and m.restart_at is not None:
            return f"restarting in {max(0, m.restart_at - now):.0f}s"
        return m.state or "starting"

    def render(self) -> RenderableType:
        """The live view: one row per session."""
        from rich.markup import escape
        from rich.table import Table

        now = self.clock()
        t = Table(title="wabulk fleet", expand=False, show_edge=False, pad_edge=False)
        for col in ("session", "state", "sent today", "cap", "next send", "restarts", "last"):
            t.add_column(col, no_wrap=col != "last", overflow="ellipsis")
        for m in self.members:
            last = m.last_line if m.proc is None else self._last_event(m)
            logged_out = m.state == "waiting_for_login"
            # The worker keeps the account (and shows its login steps in its output): `wabulk login` would
            # be refused.
            hint = f" — log in with what {m.out_path} shows" if logged_out else ""
            t.add_row(
                escape(m.session),
                escape(self.row_status(m, now)),
                str(m.sent_today),
                str(m.cap_today) if m.cap_today is not None else "-",
                escape(m.next_send),
                str(m.restarts),
                escape((last + hint)[:120]),
            )
        return t

    # --- the loop -----------------------------------------------------------------------------------------
    def run(self, queue: Queue, *, sleep: Callable[[float], None] | None = None) -> int:
        """Start every worker and supervise until all are done (``until_done``) or a stop is requested.
        Returns the exit code; always leaves no worker running."""
        self._queue = queue
        wait = sleep or self._stop.wait
        last_states: dict[str, str] = {}
        try:
            while not self.stop_requested:
                self.step()
                now = self.clock()
                for m in self.members:  # plain mode: one line per state change
                    st = self.row_status(m, now)
                    changed = last_states.get(m.session) != st
                    if m.proc is not None and changed and not st.startswith("restart"):
                        self.on_line(
                            f"session {m.session}: {st}, sent today {m.sent_today}"
                            + (f"/{m.cap_today}" if m.cap_today is not None else "")
                        )
                    last_states[m.session] = st
                if self.finished:
                    break
                wait(self.poll)
        finally:
            self.stop_all()
            self.refresh(self.clock())
        return self.exit_code()


def worker_command(db: Path, session: str, worker_args: Sequence[str]) -> list[str]:
    """The command line of one session's worker: ``python -m wabulk --db DB run --session S …``."""
    return [sys.executable, "-m", "wabulk", "--db", str(db), "run", "--session", session, *worker_args]


@dataclass(frozen=True)
class RunOptions:
    """The options of ``wabulk run`` that every worker of a fleet gets: the command line's values (env vars
    resolved), turned back into each worker's arguments by :meth:`argv`. None/False: not given."""

    pace: str
    job_ids: tuple[int, ...] = ()
    until_done: bool = False
    min_delay: float | None = None
    max_delay: float | None = None
    long_pause_every: int | None = None
    daily_cap: int | None = None
    quiet_hours: str | None = None
    lease_seconds: float | None = None
    log_numbers: bool = False
    track_receipts: bool = False
    # The options of the sessions' provider (e.g. the web's --web-url), passed to each worker unread.
    provider_args: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()
    notify_cmd: str | None = None

    def argv(self) -> list[str]:
        """The arguments of ``wabulk run --session NAME`` that carry these options."""
        args: list[str] = ["--pace", self.pace]
        for flag, value in (
            ("--min-delay", self.min_delay),
            ("--max-delay", self.max_delay),
            ("--long-pause-every", self.long_pause_every),
            ("--daily-cap", self.daily_cap),
            ("--quiet-hours", self.quiet_hours),
            ("--lease-seconds", self.lease_seconds),
        ):
            if value is not None:
                args += [flag, str(value)]
        for j in self.job_ids:
            args += ["--job", str(j)]
        for flag, on in (
            ("--until-done", self.until_done),
            ("--log-numbers", self.log_numbers),
            ("--track-receipts", self.track_receipts),
        ):
            if on:
                args.append(flag)
        args += self.provider_args
        for url in self.notify:
            args += ["--notify", url]
        if self.notify_cmd:
            args += ["--notify-cmd", self.notify_cmd]
        return args


def run_fleet(
    settings: Settings,
    sessions: Sequence[str],
    worker_args: Sequence[str],
    *,
    config: WorkerConfig,
    console: Console | None = None,
    env: Mapping[str, str] | None = None,
    grace: float = 20.0,
) -> int:
    """Everything ``wabulk run`` with several sessions does: one worker subprocess per session with
    ``worker_args`` (the same run options), supervised under one live view (Rich on a terminal, plain lines
    otherwise), stopped cleanly on Ctrl-C/SIGTERM. ``config`` gives the cap and pacing shown per session.
    Returns the exit code (0/3 with --until-done, 1 when a session was given up, 4 when one needs a person,
    130 when interrupted)."""
    from rich.console import Console

    from wabulk.queue import Queue

    out = console or Console(stderr=True, highlight=False, soft_wrap=True)
    queue = Queue(settings.db, create=True)  # migrate once here, not in N workers at the same moment
    use_live = out.is_terminal

    def line(text: str) -> None:
        if not use_live:
            out.print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} fleet {text}", markup=False, highlight=False)

    fleet = Fleet(
        db=settings.db,
        sessions=list(sessions),
        command=lambda s: worker_command(settings.db, s, worker_args),
        logs_dir=settings.logs_dir,
        until_done=config.until_done,
        cap=config.cap,
        min_delay=config.pace.min_delay,
        max_delay=config.pace.max_delay,
        env=env,
        grace=grace,
        on_line=line,
    )
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        fleet.request_stop()

    main = threading.current_thread() is threading.main_thread()
    if main:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, handler)
    try:
        if use_live:
            from rich.live import Live

            with Live(get_renderable=fleet.render, console=out, refresh_per_second=2, transient=False):
                code = fleet.run(queue)
        else:
            code = fleet.run(queue)
            out.print(fleet.render())
    finally:
        for signum, h in previous.items():
            signal.signal(signum, h)
        queue.close()
    return code


__all__ = ["DONE_CODES", "Fleet", "Member", "run_fleet", "worker_command"]
