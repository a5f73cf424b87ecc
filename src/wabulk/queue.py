"""The SQLite queue: the only module that writes SQL. (Contract stub — being implemented.)

All times are unix seconds (float, UTC). Every state change of a message is one short transaction
and is also appended to ``events``. The claim is one ``UPDATE … RETURNING`` in ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from .models import Claim, EnqueueStats, Event, Job, JobSummary, Message, NewJob, NewMessage, WorkerInfo


class Queue:
    """A handle on one wabulk database file. Not thread-safe: one per thread/process."""

    def __init__(self, path: Path | str, *, synchronous: str = "NORMAL",
                 clock: Callable[[], float] = time.time, create: bool = True) -> None:
        """Open (and migrate) the database. ``synchronous='FULL'`` for workers (a sent mark survives
        power loss). ``create=False`` raises DatabaseError when the file does not exist."""
        raise NotImplementedError

    def close(self) -> None: ...

    # --- enqueue --------------------------------------------------------------------------------
    def enqueue(self, job: NewJob, messages: Iterable[NewMessage]) -> EnqueueStats:
        """Create a job and its messages in ONE transaction (all-or-nothing, streamed).
        Duplicate phones within the job are dropped and counted; opted-out phones are skipped and
        counted. If iterating ``messages`` raises, nothing is written and the exception propagates."""
        raise NotImplementedError

    # --- jobs -------------------------------------------------------------------------------------
    def get_job(self, job_id: int) -> Job: ...  # raises JobNotFound
    def list_jobs(self) -> list[Job]: ...
    def summaries(self, job_id: int | None = None) -> list[JobSummary]: ...
    def counts(self, job_id: int) -> dict[str, int]: ...  # every MESSAGE_STATUSES key present
    def pause_job(self, job_id: int, reason: str | None = None) -> Job: ...
    def resume_job(self, job_id: int) -> Job: ...
    def stop_job(self, job_id: int) -> Job: ...  # pending -> cancelled; in-flight finish
    def set_job_status(self, job_id: int, status: str, reason: str | None = None) -> Job: ...
    def retry_failed(self, job_id: int | None = None, *, message_id: int | None = None,
                     error_class: str | None = None) -> int: ...  # failed -> pending, attempts reset
    def prune(self, older_than_days: float) -> int: ...  # finished jobs' messages removed, counts kept

    # --- the worker side ----------------------------------------------------------------------------
    def claim(self, worker_id: str, session: str, *, lease_seconds: float,
              job_ids: Sequence[int] | None = None) -> Claim | None:
        """Lease the next runnable message (FIFO within a job), or None."""
        raise NotImplementedError

    def mark_send_started(self, claim: Claim) -> None: ...  # fenced; raises LeaseLost
    def extend_lease(self, claim: Claim, seconds: float) -> Claim: ...  # fenced
    def mark_sent(self, claim: Claim, *, tick: str, session: str, at: float | None = None) -> None: ...
    def schedule_retry(self, claim: Claim, *, error: str, error_class: str, delay: float) -> None: ...
    def mark_failed(self, claim: Claim, *, error: str, error_class: str) -> None: ...
    def release(self, claim: Claim, *, reason: str) -> None: ...  # give back, no attempt spent
    def record_receipt(self, message_id: int, tick: str, at: float) -> None: ...
    def sent_count(self, session: str, since: float) -> int: ...  # for daily caps

    # --- workers ----------------------------------------------------------------------------------
    def register_worker(self, session: str, *, pid: int, host: str, stale_after: float = 30.0) -> str: ...
    def heartbeat(self, worker_id: str, state: str | None = None) -> None: ...
    def unregister_worker(self, worker_id: str) -> None: ...
    def workers(self, *, stale_after: float = 30.0) -> list[WorkerInfo]: ...

    # --- opt-outs -----------------------------------------------------------------------------------
    def add_optouts(self, phones: Iterable[str], reason: str | None = None) -> int: ...
    def remove_optouts(self, phones: Iterable[str]) -> int: ...
    def list_optouts(self) -> list[tuple[str, float, str | None]]: ...
    def is_opted_out(self, phone: str) -> bool: ...

    # --- reading ------------------------------------------------------------------------------------
    def get_message(self, message_id: int) -> Message: ...
    def iter_messages(self, job_id: int) -> Iterator[Message]: ...
    def events(self, *, job_id: int | None = None, message_id: int | None = None,
               limit: int | None = None) -> list[Event]: ...
