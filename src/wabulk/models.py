"""Plain data passed between modules. Only queue.py writes SQL; everything else sees these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# Message statuses (the outbox). Receipts (delivered/read) are recorded beside ``sent`` in
# ``receipt``/``delivered_at``/``read_at``; the status of a message WhatsApp accepted stays ``sent``.
PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
SKIPPED = "skipped"
CANCELLED = "cancelled"
MESSAGE_STATUSES = (PENDING, SENDING, SENT, FAILED, SKIPPED, CANCELLED)

# Job statuses.
JOB_QUEUED = "queued"
JOB_RUNNING = "running"
JOB_PAUSED = "paused"
JOB_WAITING_FOR_LOGIN = "waiting_for_login"
JOB_COMPLETED = "completed"
JOB_STOPPED = "stopped"
JOB_STATUSES = (JOB_QUEUED, JOB_RUNNING, JOB_PAUSED, JOB_WAITING_FOR_LOGIN, JOB_COMPLETED, JOB_STOPPED)

# Tick states seen on an outgoing bubble.
TICK_PENDING = "pending"
TICK_SENT = "sent"
TICK_DELIVERED = "delivered"
TICK_READ = "read"


@dataclass(frozen=True)
class NewJob:
    """A job about to be enqueued."""

    name: str
    template: str
    attachment: str | None = None
    not_before: float | None = None  # unix seconds; None = start at once
    max_attempts: int = 3
    sessions: tuple[str, ...] = ()  # empty = any session may send it
    source: str | None = None  # the input file, for the record
    settings: dict[str, Any] = field(default_factory=dict)  # pacing overrides etc.
    # A Cloud API template job: the approved template's name and locale (None: a text job).
    template_name: str | None = None
    template_lang: str | None = None


@dataclass(frozen=True)
class NewMessage:
    """One recipient of a job about to be enqueued (already normalised and rendered)."""

    phone: str  # E.164, e.g. "+14155550123"
    body: str
    name: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    source_row: int | None = None  # 1-based row in the input file (header = row 1)
    flags: tuple[str, ...] = ()  # e.g. ("not_mobile",)
    # A template job's rendered parameters, in order ({{1}}, {{2}} …); ``body`` is then a readable rendering.
    params: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnqueueStats:
    """What :meth:`Queue.enqueue` wrote."""

    job_id: int
    enqueued: int
    duplicates: int
    opted_out: int


@dataclass(frozen=True)
class Job:
    id: int
    name: str
    template: str
    attachment: str | None
    status: str
    status_reason: str | None
    max_attempts: int
    sessions: tuple[str, ...]
    settings: dict[str, Any]
    source: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    not_before: float | None
    template_name: str | None = None  # a Cloud API template job (None: a text job)
    template_lang: str | None = None


@dataclass(frozen=True)
class JobSummary:
    """A job with its message counts per status (every status present, zero when none)."""

    job: Job
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return sum(self.counts.get(s, 0) for s in (SENT, FAILED, SKIPPED, CANCELLED))


@dataclass(frozen=True)
class Message:
    id: int
    job_id: int
    phone: str
    name: str | None
    variables: dict[str, str]
    body: str
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: float | None
    claimed_by: str | None
    lease_until: float | None
    send_started_at: float | None
    last_error: str | None
    error_class: str | None
    created_at: float
    updated_at: float
    sent_at: float | None
    receipt: str | None
    delivered_at: float | None
    read_at: float | None
    sent_by_session: str | None
    source_row: int | None
    params: tuple[str, ...] = ()  # a template job's rendered parameters
    wamid: str | None = None  # the Cloud API's message id (status webhooks carry it)
    wa_id: str | None = None  # the recipient's canonical WhatsApp id, from the send response
    pricing_category: str | None = None  # from the status webhook's pricing
    billable: bool | None = None


@dataclass(frozen=True)
class Claim:
    """A message leased to one worker. Completion is fenced on (id, worker_id, attempt)."""

    message_id: int
    job_id: int
    worker_id: str
    attempt: int  # the value of ``attempts`` after this claim; part of the fence
    phone: str
    body: str
    name: str | None
    attachment: str | None
    lease_until: float
    # Set when an earlier attempt stamped send-started and never completed: the outcome is unknown,
    # so the chat must be checked (verify_sent since this time) before any resend.
    send_started_at: float | None = None
    session: str = ""  # the session that claimed it (the stamp records it)
    send_started_session: str | None = None  # who stamped the earlier attempt (None: a pre-m003 stamp)
    send_snapshot: ChatSnapshot | None = None  # our bubbles before that Enter (None: no snapshot kept)
    sends: int = 0  # send actions stamped so far (the queue refuses more than the budget)
    template_name: str | None = None  # a Cloud API template job (None: a text job)
    template_lang: str | None = None
    params: tuple[str, ...] = ()  # the template's rendered parameters

    @property
    def needs_verification(self) -> bool:
        return self.send_started_at is not None


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    session: str
    pid: int
    host: str
    started_at: float
    heartbeat_at: float
    alive: bool
    state: str | None = None  # free text the worker reports, e.g. "sending", "waiting_for_login"


@dataclass(frozen=True)
class Event:
    id: int
    at: float
    job_id: int | None
    message_id: int | None
    kind: str  # e.g. "status", "job_status", "error", "verify"
    from_status: str | None
    to_status: str | None
    detail: str | None


@dataclass(frozen=True)
class SendResult:
    """What the browser saw after sending one message."""

    tick: str  # TICK_SENT / TICK_DELIVERED / TICK_READ (never TICK_PENDING: that is ConfirmTimeout)
    confirmed_at: float
    message_ref: str | None = None  # the bubble's data-id, when there is one


@dataclass(frozen=True)
class ChatSnapshot:
    """Our outgoing bubbles in the open chat right before the send action (handed to ``before_send``).

    After a crash, a new outgoing bubble whose id is not in ``ids`` is the message we sent; with
    ``readable`` False the reader could not read this chat, so its absence later proves nothing.
    """

    ids: tuple[str, ...] = ()  # message ids (data-id) of the outgoing bubbles seen, in page order
    count: int = 0  # outgoing bubbles seen, with or without an id
    readable: bool = True


# Outcomes of looking in a chat for a message whose send had started (``Transport.verify_sent``).
VERIFY_SENT = "sent"  # a new outgoing bubble with this message is in the chat
VERIFY_ABSENT = "absent"  # positive evidence it is not: the chat can be read and the message is not there
VERIFY_UNKNOWN = "unknown"  # the chat could not be read well enough to tell: never resend on this
VERIFY_OUTCOMES = (VERIFY_SENT, VERIFY_ABSENT, VERIFY_UNKNOWN)

# A failed message whose send action may have happened and whose chat could not tell: ``failed`` with this
# ``error_class``. Never resent automatically; ``wabulk resolve`` is the human decision.
UNKNOWN_OUTCOME = "unknown_outcome"


@dataclass(frozen=True)
class Verification:
    """What looking in the chat found (see the ``VERIFY_*`` outcomes)."""

    outcome: str
    reason: str = ""
    message_ref: str | None = None  # the id of the bubble found (outcome "sent")
    tick: str | None = None  # its tick, when read

    @property
    def sent(self) -> bool:
        return self.outcome == VERIFY_SENT

    @property
    def absent(self) -> bool:
        return self.outcome == VERIFY_ABSENT


def _no_stamp(snapshot: ChatSnapshot) -> None:
    return None


class Transport(Protocol):
    """What the worker needs from a WhatsApp Web browser (``sender.WhatsAppSender`` implements it;
    unit tests use a fake). Methods raise the classified errors of ``errors.py``."""

    def start(self) -> None:
        """Start the browser and open WhatsApp Web (idempotent)."""

    def page_state(self) -> str:
        """The page's state now: one of ``session.PAGE_STATES`` (e.g. "main", "qr", "logged_out")."""

    def ensure_ready(self) -> None:
        """Make the page ready to send: recover takeovers, stuck loads and dead browsers.
        Raises NotLoggedIn, Blocked, TakeoverFailed or BrowserError when it cannot."""

    def wait_for_login(
        self,
        on_qr: Callable[[str], None],
        *,
        timeout: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Wait until logged in, calling ``on_qr(payload)`` whenever a (new) QR is shown.
        Returns False when ``should_stop()`` became true or the timeout passed."""

    def send(
        self,
        phone: str,
        body: str,
        *,
        attachment: str | None = None,
        before_send: Callable[[ChatSnapshot], None] = _no_stamp,
    ) -> SendResult:
        """Send one message and confirm it left the clock state. ``before_send(snapshot)`` is called
        right before the send action (Enter/click) with our outgoing bubbles already in the chat; if it
        raises, nothing is sent."""

    def verify_sent(
        self, phone: str, body: str, since: float, *, known: ChatSnapshot | None = None
    ) -> Verification:
        """Look in the chat with ``phone`` for the message whose send started at ``since``: ``known`` is
        the snapshot recorded with the stamp (None for stamps that have none). "sent" when a new outgoing
        bubble with ``body`` is there, "absent" only on positive evidence, else "unknown"."""

    def read_receipt(self, phone: str, body: str, since: float) -> str | None:
        """The best tick (TICK_PENDING/SENT/DELIVERED/READ) of our bubble with exactly ``body`` in the
        chat after ``since``, or None when there is no such bubble. Opens the chat; never sends."""

    def restart(self) -> None:
        """Throw the browser away and start a new one on the same profile."""

    def close(self) -> None:
        """Quit the browser and release the profile lock."""
