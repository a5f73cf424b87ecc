"""The SQLite queue: the only module that writes SQL.

All times are unix seconds (float, UTC). Every state change of a message is one short transaction
and is also appended to ``events``. The claim is one ``UPDATE … RETURNING`` in ``BEGIN IMMEDIATE``;
completions are fenced on ``(id, status='sending', claimed_by, attempts)``.

Rules chosen here (see also design.md):

- Claimable jobs are ``queued``, ``running`` and ``waiting_for_login`` ones, completely imported, whose
  ``not_before`` has passed and that are not pinned to other sessions; a paused session claims nothing.
  Within a job, messages go out by id (FIFO); jobs are served oldest first. A message in backoff keeps
  its place and goes out once due.
- Expired leases are reclaimed before fresh work. A message whose ``send_started_at`` is set is only
  claimed again by the session that stamped it, as a claim that ``needs_verification``, even when its
  attempts are used up (at most two claims beyond them: then its outcome is unknown). One without the
  stamp and with attempts used up becomes ``failed`` ("attempts exhausted").
- Fail closed (issue 14), enforced by ``mark_send_started``: never more presses than ``max_attempts``; a
  stamped message is pressed again only after ``mark_absent`` (the chat gave positive evidence) in the
  same attempt, and at most once without a human. A stamped message that fails without that evidence
  fails as ``unknown_outcome``. ``sessions.linked_seq`` (``mark_linked``, at every completed login) places the
  session's current device in the events sequence: a stamp before it (``messages.send_seq``) is never
  taken as absent (``mark_absent`` settles it as unknown), as a new device's chats may lack the old one's
  history; nor is a stamp by another worker instance that is not provably gone (it may still press).
  ``retry_failed`` keeps the presses counted; only ``resolve(resend=True)`` refills the budget.
- Stop, pause and opt-out are re-checked in the stamp's transaction. A message of a stopped job ends
  ``cancelled`` when nothing can have gone out, else ``failed`` ``unknown_outcome`` (one rule for a
  pending one, one in flight and an expired lease). Those of a paused job wait for resume.
- An opted-out number is re-checked at claim time: the message becomes ``skipped``, no attempt spent.
- A job with nothing pending or in flight left becomes ``completed`` (also when it was paused or
  waiting for login); a stopped job stays ``stopped`` and gets its finish time when the last
  in-flight message ends.
- Imports and prunes write in short transactions; ``prune`` deletes messages (and their events) of
  long-finished jobs; the trigger-kept ``job_counts`` have no delete trigger, so the job's counts stay
  visible, and the daily cap counts ``send_log``, which prune leaves alone.
- Control commands (stop, pause, resume, opt-outs, retry-failed, resolve, session pauses) commit with
  ``synchronous=FULL`` whatever the connection's level.
"""

from __future__ import annotations

from .store.base import (  # noqa: F401  (re-exported: the queue's public constants)
    BUSY_TIMEOUT_MS,
    CLAIMABLE_JOB_STATUSES,
    ENQUEUE_CHUNK,
    MIN_SQLITE,
    OPTED_OUT,
    _describe,
    _pid_alive,
)
from .store.catalogue import CatalogueMixin
from .store.claims import ClaimsMixin
from .store.cloud import CloudMixin
from .store.enqueue import EnqueueMixin
from .store.jobs import JobsMixin
from .store.optouts import OptoutsMixin
from .store.pricing import PricingMixin
from .store.reading import ReadingMixin
from .store.receipts import ReceiptsMixin
from .store.workers import WorkersMixin


class Queue(
    EnqueueMixin,
    JobsMixin,
    ClaimsMixin,
    CloudMixin,
    ReceiptsMixin,
    WorkersMixin,
    OptoutsMixin,
    ReadingMixin,
    CatalogueMixin,
    PricingMixin,
):
    """A handle on one wabulk database file. Not thread-safe: one per thread/process.
    Its methods live in ``wabulk.store``, one module per concern."""


__all__ = ["Queue"]
