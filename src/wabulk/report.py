"""What ``wabulk status`` reports: each job's counts and receipts, the workers, each session's sends
against today's cap, and why a human should look.

A library function rather than CLI code so that the Rich tables, ``status --json`` and the fast cron entry
point (:mod:`wabulk.entry`) all print the same data. It imports only the queue's own modules: no Typer,
Rich or sqlite-utils.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING, Any

from . import errors
from .models import (
    AUTO_PAUSE_PREFIX,
    CANCELLED,
    FAILED,
    JOB_PAUSED,
    JOB_WAITING_FOR_LOGIN,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    JobSummary,
    WorkerInfo,
)
from .pacing import PROFILES, WARMUP, CapState, cap_state, estimate_eta, local_midnight, local_zone
from .receipts import attention_lines, undelivered_counts

if TYPE_CHECKING:
    from .pacing import PaceProfile
    from .queue import Queue

# How the worker's auto-pause reasons start (worker.py): such a pause needs a human.
# The worker state of a session whose account WhatsApp restricts (worker.py): a human should know.
RESTRICTED_STATE = "restricted"


class StatusReport:
    """One look at the queue. ``jobs`` and ``sessions`` are the rows ``status --json`` prints;
    ``attention`` has one line per reason to look, empty when all is well (``status --check``).

    A plain class, not a dataclass: creating a dataclass costs about a millisecond at import, and the cron
    poll (entry.py) imports this module."""

    __slots__ = ("jobs", "workers", "sessions", "attention")

    def __init__(
        self,
        jobs: list[dict[str, Any]],
        workers: list[WorkerInfo],
        sessions: list[dict[str, Any]],
        attention: list[str],
    ) -> None:
        self.jobs = jobs
        self.workers = workers
        self.sessions = sessions
        self.attention = attention

    def as_dict(self) -> dict[str, Any]:
        """Exactly what ``wabulk status --json`` prints."""
        return {
            "jobs": self.jobs,
            "workers": [
                {
                    "id": w.id,
                    "session": w.session,
                    "pid": w.pid,
                    "host": w.host,
                    "state": w.state,
                    "heartbeat_at": w.heartbeat_at,
                    "alive": w.alive,
                }
                for w in self.workers
            ],
            "sessions": self.sessions,
            "attention": self.attention,
        }


def status_report(
    queue: Queue, *, job_id: int | None, undelivered_after_seconds: float, pace: str, now: float
) -> StatusReport:
    """The status of every job (or only ``job_id``: JobNotFound when there is none), read at ``now``.

    A sent message still on one tick ``undelivered_after_seconds`` after it was sent counts as undelivered;
    ``pace`` names the profile whose daily cap the session rows show."""
    if job_id is not None:
        queue.get_job(job_id)
    from .settings import orphan_after_seconds

    # A stopped job's message whose worker died after Enter will never be claimed again: settle it now, so
    # the report tells the truth (a read-only database just reports it as it stands).
    with contextlib.suppress(errors.DatabaseError):
        queue.settle_stopped()
    summaries = queue.summaries(job_id)
    workers = queue.workers()
    after = undelivered_after_seconds
    receipts = undelivered_counts(queue, summaries, now=now, after=after)
    unknown = {s.job.id: queue.unknown_count(s.job.id) for s in summaries if s.counts.get(FAILED, 0)}
    pauses = queue.session_pauses()
    billable = queue.billable_counts(job_id)
    providers = queue.session_providers()
    sessions = session_rows(queue, summaries, workers, now, pace=pace, pauses=pauses, providers=providers)
    caps = {r["session"]: r["_cap"] for r in sessions}
    live = {w.session for w in workers if w.alive}
    profile = PROFILES.get(pace, PROFILES["balanced"])
    jobs = [
        job_row(
            s,
            now,
            receipts.get(s.job.id),
            unknown.get(s.job.id, 0),
            billable.get(s.job.id),
            caps=_job_caps(s, caps, live, providers),
            pace=profile,
        )
        for s in summaries
    ]
    for r in sessions:
        del r["_cap"]
    return StatusReport(
        jobs=jobs,
        workers=workers,
        sessions=sessions,
        attention=attention(summaries, workers, providers)
        + cap_lines(summaries, caps)
        + safety_lines(queue, summaries, unknown, pauses, orphan_after=orphan_after_seconds())
        + attention_lines(summaries, receipts, after)
        + notification_lines(queue),
    )


def safety_lines(
    queue: Queue,
    summaries: list[JobSummary],
    unknown: dict[int, int],
    pauses: dict[str, tuple[float, str]],
    *,
    orphan_after: float,
) -> list[str]:
    """What fail-closed sending leaves for a human: outcomes nobody could read (``wabulk resolve``), paused
    sessions, and messages whose send was pressed by a session that never came back."""
    lines = []
    for s in summaries:
        n = unknown.get(s.job.id, 0)
        if n:
            lines.append(
                f"job {s.job.id} ({s.job.name}) has {n} message(s) whose outcome is unknown (they may have"
                " arrived): look in the chat, then `wabulk resolve MESSAGE_ID --sent` or"
                " `--resend-unverified`"
            )
    for name, (_at, reason) in pauses.items():
        lines.append(f"session {name!r} is paused: {reason}")
    jobs = {s.job.id for s in summaries}
    for st in queue.stuck():
        if st["job_id"] not in jobs:
            continue
        who = (
            f"its worker {st['worker']} (session {st['session']!r}) still beats but its main loop is stuck"
            if st["worker_alive"]
            else f"its worker {st['worker']} is gone and no worker of its session took it over"
        )
        pressed = " after its send was pressed" if st["pressed"] else ""
        lines.append(
            f"message {st['id']} (job {st['job_id']}) is stuck in sending{pressed}: its lease expired"
            f" {st['overdue'] / 60:.0f} min ago and {who}; restart that worker, or `wabulk resolve"
            f" {st['id']} --sent` / `--resend-unverified` after looking in the chat"
        )
    for o in queue.orphans(older_than=orphan_after):
        if o["job_id"] in jobs:
            lines.append(
                f"message {o['id']} (job {o['job_id']}) was pressed by session {o['session']!r} "
                f"{o['age'] / 3600:.1f} h ago and waits for that session (no live worker, or paused): "
                "only its chat can tell whether it went out"
            )
    return lines


# A notification that failed this many deliveries in a row is reported (it is still retried).
NOTIFY_FAILING_AFTER = 3


def notification_lines(queue: Queue) -> list[str]:
    """``status --check`` lines for notifications that keep failing (one per target)."""
    from .notify import describe, failing_summary

    return [
        f"{count} notification(s) to {describe(target)} keep failing (last error: {error})"
        for target, count, error in failing_summary(queue.conn, min_attempts=NOTIFY_FAILING_AFTER)
    ]


def attention(
    summaries: list[JobSummary],
    workers: list[WorkerInfo],
    providers: dict[str, tuple[str, dict[str, Any]]] | None = None,
) -> list[str]:
    """Why a human should look at these jobs (login, auto-pause, pending work without a live worker, a
    template job no live worker can send, a restricted session), one reason per line; empty when all is
    well. ``providers`` are the recorded sessions (``Queue.session_providers``). Undelivered messages are
    ``receipts.attention_lines``."""
    reasons: list[str] = []
    live = [w for w in workers if w.alive]
    providers = providers or {}
    for s in summaries:
        job = s.job
        waiting = s.counts.get(PENDING, 0) + s.counts.get(SENDING, 0)
        if job.template_name and job.status in ("queued", "running", JOB_WAITING_FOR_LOGIN) and waiting:
            line = template_job_line(s, live, providers)
            if line is not None:
                reasons.append(line)
                continue
        if job.status == JOB_WAITING_FOR_LOGIN:
            reasons.append(f"job {job.id} ({job.name}) {login_hint(job.status_reason, job.sessions, live)}")
        elif job.status == JOB_PAUSED and (job.status_reason or "").startswith(AUTO_PAUSE_PREFIX):
            reasons.append(f"job {job.id} ({job.name}) {job.status_reason}")
        elif (
            job.status in ("queued", "running") and (s.counts.get(PENDING, 0) + s.counts.get(SENDING, 0)) > 0
        ):
            sessions = set(job.sessions)
            if not any(not sessions or w.session in sessions for w in live):
                reasons.append(f"job {job.id} ({job.name}) has pending messages and no live worker")
    for w in live:
        if w.state == RESTRICTED_STATE:
            reasons.append(
                f"session {w.session!r} is restricted by WhatsApp (linked devices): it sends nothing until "
                "the restriction lifts (re-checked by its worker); other sessions go on"
            )
    return reasons


def template_job_line(
    s: JobSummary, live: list[WorkerInfo], providers: dict[str, tuple[str, dict[str, Any]]]
) -> str | None:
    """The line for a template job that no live worker can send, or None when one can. Only a Cloud API
    session sends Meta-approved templates (``wabulk run`` on it); a WhatsApp Web worker never claims a
    template job's messages, so without this line the job would wait silently for ever."""
    job = s.job
    cloud = sorted(n for n, (kind, _) in providers.items() if kind == "cloud")
    eligible = [n for n in (job.sessions or tuple(cloud)) if n in cloud]
    if any(w.session in eligible for w in live):
        return None
    head = f"job {job.id} ({job.name}) is a template job ({job.template_name}) that"
    if not eligible:
        if job.sessions:
            named = ", ".join(repr(n) for n in job.sessions)
            return (
                f"{head} its session(s) {named} cannot send: only a Cloud API session sends templates; run "
                f"`wabulk login --session {job.sessions[0]} --cloud --phone-number-id ID`"
            )
        return (
            f"{head} no session can send: only a Cloud API session sends templates; run "
            "`wabulk login --session NAME --cloud --phone-number-id ID`, then `wabulk run --session NAME`"
        )
    return f"{head} no live worker sends: run `wabulk run --session {eligible[0]}`"


def _job_caps(
    s: JobSummary,
    caps: dict[str, CapState],
    live: set[str],
    providers: dict[str, tuple[str, dict[str, Any]]] | None = None,
) -> list[CapState]:
    """The caps of the sessions that send this job: its pinned sessions, else those with a live worker;
    for a template job only Cloud API sessions (a web worker never sends one: no ETA from its pace)."""
    names = list(s.job.sessions) or sorted(live)
    if s.job.template_name and providers is not None:
        names = [n for n in names if providers.get(n, ("web", {}))[0] == "cloud"]
    return [caps[n] for n in names if n in caps]


def job_eta(
    remaining: int,
    status: str,
    *,
    now: float,
    rate_per_min: float | None,
    caps: list[CapState],
    not_before: float | None,
    pace: PaceProfile,
) -> tuple[float | None, float | None]:
    """(ETA seconds, waiting until) of a job, from the caps of its sessions and its scheduled start: what
    ``status``, ``status --json`` and the dashboard show. "Waiting until" is set while nothing can be sent
    before a known time (a ``--at`` start, or every sending session at its daily cap)."""
    if not remaining or status not in ("queued", "running"):
        return None, None
    waiting = not_before if not_before is not None and not_before > now else None
    if caps and all(c.reached for c in caps):
        reopen = min(c.day_ends_at for c in caps)
        waiting = max(waiting or 0.0, reopen)
    if rate_per_min is None and waiting is None and not caps:
        return None, None  # nobody sends it and nothing was sent: nothing to say
    unlimited = not caps or any(c.cap_today is None for c in caps)
    left = 10**9 if unlimited else sum(c.left_today or 0 for c in caps)
    daily = 10**9 if unlimited else sum(c.cap_today or 0 for c in caps)
    day_ends = min((c.day_ends_at for c in caps), default=now + 86400.0)
    eta = estimate_eta(
        remaining,
        pace,
        send_seconds=3.0,
        left_today=left,
        daily_cap_today=daily,
        now=now,
        day_ends_at=day_ends,
        start_at=not_before,
        per_message=60.0 / rate_per_min if rate_per_min else None,
    )
    return eta, waiting


_SESSION_IN_REASON = re.compile(r"session '([^']+)'")


def login_hint(reason: str | None, sessions: tuple[str, ...], live: list[WorkerInfo]) -> str:
    """What to do for a job that waits for a login, naming the session: scan the QR its running worker
    shows (``wabulk login`` is refused while the worker runs), or ``wabulk login --session NAME``."""
    m = _SESSION_IN_REASON.search(reason or "")
    name = m.group(1) if m else (sessions[0] if len(sessions) == 1 else None)
    if name is None:
        return "waits for a WhatsApp login: run `wabulk login --session NAME` for its session"
    if any(w.session == name for w in live):
        return (
            f"waits for session {name!r} to log in: scan the QR its running worker shows (in the worker's "
            "terminal or on the dashboard's Sessions) with WhatsApp > Linked devices"
        )
    return f"waits for session {name!r} to log in: run `wabulk login --session {name}` and scan the QR"


def job_row(
    s: JobSummary,
    now: float,
    receipts: dict[str, int] | None = None,
    unknown: int = 0,
    billable: dict[str, dict[str, int]] | None = None,
    *,
    caps: list[CapState] | None = None,
    pace: PaceProfile | None = None,
) -> dict[str, Any]:
    """One job as ``status --json`` prints it: counts per status, receipts, progress, rate, ETA (with the
    daily caps of its sessions and its scheduled start), until when it waits, and (Cloud API) the messages
    Meta's pricing called billable or free, per pricing category."""
    c = s.counts
    rc = receipts or {}
    total = s.total
    done = s.done
    rate = None
    eta = None
    waiting = None
    remaining = c.get(PENDING, 0) + c.get(SENDING, 0)
    if s.job.started_at and c.get(SENT, 0):
        elapsed = max(now - s.job.started_at, 1.0)
        rate = c[SENT] / elapsed * 60.0
    if caps is not None or rate is not None:
        eta, waiting = job_eta(
            remaining,
            s.job.status,
            now=now,
            rate_per_min=rate,
            caps=caps or [],
            not_before=s.job.not_before,
            pace=pace or PROFILES["balanced"],
        )
    return {
        "id": s.job.id,
        "name": s.job.name,
        "status": s.job.status,
        "reason": s.job.status_reason,
        "total": total,
        "pending": c.get(PENDING, 0),
        "sending": c.get(SENDING, 0),
        "sent": c.get(SENT, 0),
        "failed": c.get(FAILED, 0),
        "unknown": unknown,  # of the failed: outcome unknown (may have arrived; `wabulk resolve`)
        "skipped": c.get(SKIPPED, 0),
        "cancelled": c.get(CANCELLED, 0),
        "delivered": rc.get("delivered", 0),
        "read": rc.get("read", 0),
        "undelivered": rc.get("undelivered", 0),
        "progress": round(100.0 * done / total, 1) if total else 100.0,
        "sessions": list(s.job.sessions),
        "created_at": s.job.created_at,
        "started_at": s.job.started_at,
        "finished_at": s.job.finished_at,
        "not_before": s.job.not_before,
        "rate_per_min": round(rate, 2) if rate else None,
        "eta_seconds": round(eta) if eta else None,
        "waiting_until": waiting,
        "template": s.job.template_name,
        "billable": billable or {},
    }


def session_rows(
    queue: Queue,
    summaries: list[JobSummary],
    workers: list[WorkerInfo],
    now: float,
    *,
    pace: str,
    pauses: dict[str, tuple[float, str]] | None = None,
    providers: dict[str, tuple[str, dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """Per session (any that has a worker, a pinned job or sent messages): sent today and today's cap
    (:class:`CapState`: the cap its worker runs with, ``--daily-cap`` included; without a worker the
    ``pace`` profile's, ``WABULK_PACE``; with the warm-up ramp; Cloud API sessions have no pace cap), the
    live worker's state; its provider (``web`` or ``cloud``), a Cloud API session's phone number id, and
    whether it is paused and why. Each row also has the CapState under ``"_cap"`` for
    :func:`status_report`, which removes it."""
    names: list[str] = []
    pauses = pauses if pauses is not None else queue.session_pauses()
    providers = providers if providers is not None else queue.session_providers()
    for name in [
        *providers,
        *pauses,
        *(w.session for w in workers),
        *(x for s in summaries for x in s.job.sessions),
        *queue.sessions_that_sent(),
    ]:
        if name not in names:
            names.append(name)
    zone = local_zone()
    midnight = local_midnight(now, zone)
    profile = PROFILES.get(pace, PROFILES["balanced"])
    out = []
    for name in sorted(names):
        mine = [w for w in workers if w.session == name]
        live = [w for w in mine if w.alive]
        account = cloud_account(queue, name, providers.get(name), now, providers=providers)
        kind, provider_settings = providers.get(name, ("web", {}))
        if kind == "cloud":
            configured = 0  # pace caps do not apply to Cloud API sessions (Meta's tiers limit them)
        elif live and live[0].daily_cap is not None:
            configured = live[0].daily_cap
        else:
            configured = profile.daily_cap
        cap = cap_state(configured, queue.first_sent_at(name), queue.sent_count(name, midnight), now, zone)
        out.append(
            {
                "session": name,
                "name": name,
                "provider": kind,
                "phone_number_id": provider_settings.get("phone_number_id"),
                **cap.as_dict(),
                "state": live[0].state if live else ("stale" if mine else "no worker"),
                # The reason while paused (truthy), else None; ``reason`` says the same for new readers.
                "paused": pauses[name][1] if name in pauses else None,
                **account,
                "reason": pauses[name][1] if name in pauses else None,
                "_cap": cap,
            }
        )
    return out


def cloud_account(
    queue: Queue,
    name: str,
    provider: tuple[str, dict[str, Any]] | None,
    now: float,
    *,
    providers: dict[str, tuple[str, dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """A Cloud API session's quality rating and messaging limit (as ``login --cloud`` last read them) with
    the unique template recipients of the last 24 hours of every session of its business portfolio (the
    limit is the portfolio's: ``portfolio_id``, the sessions sharing it in ``limit_shared_with``); empty
    for other sessions."""
    if provider is None or provider[0] != "cloud":
        return {}
    from .cloud.limits import account_limit, portfolio_sessions, recipients_in_window

    settings = provider[1]
    limit = account_limit(
        {
            "quality_rating": settings.get("quality_rating"),
            "whatsapp_business_manager_messaging_limit": settings.get("messaging_limit"),
        }
    )
    sharing = portfolio_sessions(name, providers if providers is not None else queue.session_providers())
    return {
        "quality": limit.quality,
        "messaging_limit": limit.tier,
        "limit_24h": limit.limit,
        "used_24h": len(recipients_in_window(queue, sharing, now=now)),
        "waba_id": settings.get("waba_id"),
        "portfolio_id": settings.get("portfolio_id"),
        "limit_shared_with": sharing[1:],
    }


def cap_lines(summaries: list[JobSummary], caps: dict[str, CapState]) -> list[str]:
    """A session at its daily cap while its jobs still have work: the messages wait until midnight, which
    surprises (a new session may send 20 on its first day), so ``status --check`` says so."""
    import time as _time

    lines = []
    for name, cap in caps.items():
        if not cap.reached:
            continue
        waiting = sum(
            s.counts.get(PENDING, 0)
            for s in summaries
            if s.job.status in ("queued", "running") and (name in s.job.sessions or not s.job.sessions)
        )
        if not waiting:
            continue
        ramp = (
            f", warm-up day {cap.warmup_day} of {len(WARMUP)}: {'/'.join(map(str, WARMUP))} then {cap.cap}"
            if cap.warmup_day
            else ""
        )
        until = _time.strftime("%H:%M", _time.localtime(cap.day_ends_at))
        lines.append(
            f"session {name!r} reached its daily cap ({cap.sent_today}/{cap.cap_today} today{ramp}): "
            f"{waiting} message(s) wait until {until}; `wabulk run --session {name} --daily-cap N` "
            "changes the cap (0 = none)"
        )
    return lines
