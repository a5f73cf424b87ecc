"""What the user sees while ``wabulk run`` works: a Rich live view on a terminal, one plain line per event
otherwise (cron, systemd, a pipe).

The view is fed only :class:`~wabulk.worker.events.WorkerEvent` objects (from the worker's thread); it never
touches the database, so Rich's refresh thread cannot race the queue's connection. Job counts arrive in
the worker's periodic ``progress`` events.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .models import FAILED, PENDING, SENDING, SENT, JobSummary
from .pacing import PaceProfile, estimate_eta

if TYPE_CHECKING:
    from rich.live import Live

    from .worker.events import WorkerEvent

LAST_EVENTS = 5
_QUIET_KINDS = {"progress"}  # never printed as lines
_DONE_KINDS = {"sent", "verified", "failed", "retry", "released", "deferred", "lease_lost", "quiet"}
_STYLES = {
    "sent": "green",
    "verified": "green",
    "failed": "red",
    "retry": "yellow",
    "breaker": "bold red",
    "blocked": "bold red",
    "error": "bold red",
    "warning": "yellow",
    "logged_out": "yellow",
    "lease_lost": "yellow",
    "qr": "cyan",
    "restricted": "bold yellow",
    "restricted_lifted": "green",
}


def render_qr(payload: str) -> str:
    """The QR code as terminal text, else (it could not be drawn) the payload."""
    from .qrcodes import render_terminal

    try:
        return str(render_terminal(payload))
    except Exception:  # a rendering problem must not hide the payload the user needs
        return f"QR payload: {payload}"


def format_duration(seconds: float | None) -> str:
    """``95`` -> ``1m35s``; ``None`` -> ``?``."""
    if seconds is None:
        return "?"
    s = max(0, int(round(seconds)))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d{h:02d}h"
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


class LiveView:
    """Consumes worker events; renders a live dashboard on a TTY or prints one line per event."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        profile: PaceProfile | None = None,
        log_numbers: bool = False,
        live: bool | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.console = console or Console()
        self.profile = profile
        self.log_numbers = log_numbers
        self.use_live = self.console.is_terminal if live is None else live
        self.clock = clock
        self.events: deque[WorkerEvent] = deque(maxlen=LAST_EVENTS)
        self.summaries: tuple[JobSummary, ...] = ()
        self.stats: dict[str, Any] = {}
        self.state = "starting"
        self.in_flight: str | None = None
        self.next_send_at: float | None = None
        self.qr: str | None = None
        self._sent_times: dict[int, deque[float]] = {}
        self._started = clock()
        self._live: Live | None = None

    # --- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> LiveView:
        if self.use_live:
            from rich.live import Live

            self._live = Live(
                get_renderable=self.render,
                console=self.console,
                refresh_per_second=4,
                transient=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    # --- events ------------------------------------------------------------------------------------------
    def handle(self, ev: WorkerEvent) -> None:
        """Take one event (called by the worker)."""
        if ev.state:
            self.state = ev.state
        self.next_send_at = ev.next_send_at
        if ev.summaries is not None:
            self.summaries = ev.summaries
        if ev.stats is not None:
            self.stats = ev.stats
        if ev.kind == "claimed":
            self.in_flight = ev.phone
        elif ev.kind in _DONE_KINDS:
            self.in_flight = None
        if ev.kind in ("sent", "verified") and ev.job_id is not None:
            self._sent_times.setdefault(ev.job_id, deque(maxlen=200)).append(ev.at)
        if ev.kind == "qr" and ev.payload:
            self.qr = ev.payload
        elif ev.kind in ("logged_in", "stopped", "blocked"):
            self.qr = None
        if ev.kind in _QUIET_KINDS:
            return
        self.events.append(ev)
        if not self.use_live:
            self._print_line(ev)
        elif self._live is not None:
            self._live.refresh()

    def _print_line(self, ev: WorkerEvent) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ev.at))
        job = f" job={ev.job_id}" if ev.job_id is not None else ""
        line = f"{stamp} {ev.kind}{job} {ev.text}".rstrip()
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        if ev.kind == "qr" and ev.payload:
            self.console.print(render_qr(ev.payload), markup=False, highlight=False, soft_wrap=True)

    # --- rendering -----------------------------------------------------------------------------------------
    def rate_per_min(self, job_id: int) -> float | None:
        """Messages per minute for a job over the recent sends of this run."""
        times = self._sent_times.get(job_id)
        if not times or len(times) < 2:
            return None
        span = times[-1] - times[0]
        return (len(times) - 1) / span * 60 if span > 0 else None

    def eta(self, s: JobSummary) -> float | None:
        remaining = s.counts.get(PENDING, 0) + s.counts.get(SENDING, 0)
        if remaining == 0:
            return 0.0
        if self.profile is None:
            return None
        now = self.clock()
        cap_today = self.stats.get("cap_today")
        sent_today = self.stats.get("sent_today") or 0
        day_ends = self.stats.get("day_ends_at") or now
        quiet = self._quiet_fraction()
        if cap_today is None:
            cap_today, left = 10**9, 10**9
        else:
            left = max(0, int(cap_today) - int(sent_today))
        return estimate_eta(
            remaining,
            self.profile,
            send_seconds=float(self.stats.get("send_seconds", 3.0)),
            left_today=left,
            daily_cap_today=int(cap_today),
            now=now,
            day_ends_at=day_ends,
            quiet_fraction=quiet,
            start_at=s.job.not_before,  # a job scheduled with --at sends nothing before then
        )

    def _quiet_fraction(self) -> float:
        spec = self.stats.get("quiet_hours")
        if not spec:
            return 0.0
        from .pacing import QuietHours

        try:
            q = QuietHours.parse(spec)
        except Exception:
            return 0.0
        if q is None:
            return 0.0
        minutes = (q.end - q.start) % 1440
        return minutes / 1440

    def render(self) -> RenderableType:
        """One frame of the dashboard."""
        now = self.clock()
        parts: list[RenderableType] = []
        session = self.stats.get("session", "")
        header = Text.assemble(
            ("wabulk ", "bold"), (f"session {session} ", "cyan"), (f"[{self.state}]", "bold")
        )
        if self.profile is not None:
            header.append(f"  pace {self.profile.name}")
        if self.stats.get("cap_today") is not None:
            header.append(f"  today {self.stats.get('sent_today', 0)}/{self.stats['cap_today']}")
        if self.stats.get("quiet_hours"):
            header.append(f"  quiet {self.stats['quiet_hours']}")
        parts.append(header)

        table = Table(expand=False, show_edge=False, pad_edge=False)
        for col, justify in (
            ("job", "right"),
            ("name", "left"),
            ("status", "left"),
            ("total", "right"),
            ("sent", "right"),
            ("failed", "right"),
            ("pending", "right"),
            ("rate/min", "right"),
            ("ETA", "right"),
        ):
            table.add_column(col, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
        for s in self.summaries:
            rate = self.rate_per_min(s.job.id)
            table.add_row(
                str(s.job.id),
                escape(s.job.name),
                s.job.status,
                str(s.total),
                str(s.counts.get(SENT, 0)),
                str(s.counts.get(FAILED, 0)),
                str(s.counts.get(PENDING, 0) + s.counts.get(SENDING, 0)),
                f"{rate:.1f}" if rate is not None else "-",
                format_duration(self.eta(s)),
            )
        parts.append(table)

        line = Text()
        if self.in_flight:
            line.append("sending to ", "bold")
            line.append(self.in_flight)
        elif self.next_send_at is not None and self.next_send_at > now:
            line.append(f"next send in {format_duration(self.next_send_at - now)}")
        if len(line):
            parts.append(line)
        if self.qr:
            parts.append(Text("Scan this QR code with WhatsApp > Linked devices:", style="bold yellow"))
            parts.append(Text(render_qr(self.qr)))
        for ev in self.events:
            stamp = time.strftime("%H:%M:%S", time.localtime(ev.at))
            parts.append(
                Text.assemble(
                    (stamp + " ", "dim"),
                    (ev.kind, _STYLES.get(ev.kind, "")),
                    " ",
                    ev.text,
                    overflow="ellipsis",
                    no_wrap=True,
                )
            )
        return Group(*parts)
