"""What a worker reports (``WorkerEvent``, for the live view and the logs) and what one step did
(``StepResult``). Their own module so that the live view and the worker do not import each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wabulk.models import JobSummary


@dataclass(frozen=True)
class WorkerEvent:
    """Something the user may want to see. ``text`` is one human line (numbers already masked).

    kinds: started, warning, claimed, sent, verified, retry, failed, released, deferred, lease_lost,
    logged_out, qr, logged_in, blocked, breaker, restart, cap, quiet, idle, job_status, progress,
    stopping, stopped, error, receipt, restricted, restricted_lifted, scheduled (idle until a job's --at)."""

    kind: str
    at: float
    text: str
    job_id: int | None = None
    message_id: int | None = None
    phone: str | None = None  # masked unless log_numbers
    state: str | None = None  # the session/worker state after this event
    next_send_at: float | None = None
    payload: str | None = None  # the login code of a "qr" event (an interactive login)
    summaries: tuple[JobSummary, ...] | None = None  # on "progress" events
    stats: dict[str, Any] | None = None  # counters for the live view (sent_today, cap_today, …)


@dataclass(frozen=True)
class StepResult:
    """What one :meth:`Worker.run_once` did. ``wait`` is how long to pause before the next step
    (the pacing gap after a send, or the time until a cap/quiet window opens); ``exit_code`` is set
    when the worker must stop (blocked account, unrecoverable session)."""

    outcome: str  # sent, verified, retry, failed, released, deferred, lease_lost, idle, cap, quiet,
    # login, stopped, blocked, error
    message_id: int | None = None
    wait: float = 0.0
    exit_code: int | None = None
