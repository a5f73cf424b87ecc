"""Plain data passed between modules. Only queue.py writes SQL; everything else sees these. The provider
interface the worker drives is :mod:`wabulk.sender`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

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
    # JSON: how messages' params map to the template's header and buttons (migration m018); None: body only.
    template_layout: str | None = None


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
    # What the provider recorded with that stamp (opaque text only it reads; None: no evidence kept).
    send_evidence: str | None = None
    sends: int = 0  # send actions stamped so far (the queue refuses more than the budget)
    template_name: str | None = None  # a Cloud API template job (None: a text job)
    template_lang: str | None = None
    params: tuple[str, ...] = ()  # the template's rendered parameters
    template_layout: str | None = None  # the job's header/button layout (JSON, m018); None: body only

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
    daily_cap: int | None = None  # the cap it runs with (0 = none); None: not reported (the pace's)


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
    """What the provider knew after sending one message."""

    tick: str  # TICK_SENT / TICK_DELIVERED / TICK_READ (never TICK_PENDING: that is ConfirmTimeout)
    confirmed_at: float
    # The provider's id of the message, when there is one: the bubble's data-id on the web, the wamid on
    # the Cloud API.
    message_ref: str | None = None


@dataclass(frozen=True)
class ChatSnapshot:
    """Our outgoing bubbles in the open chat right before the send action: the evidence the web provider
    (and the fake) records with the stamp, as JSON text (:meth:`to_evidence`).

    After a crash, a new outgoing bubble whose id is not in ``ids`` is the message we sent; with
    ``readable`` False the reader could not read this chat, so its absence later proves nothing.
    """

    ids: tuple[str, ...] = ()  # message ids (data-id) of the outgoing bubbles seen, in page order
    count: int = 0  # outgoing bubbles seen, with or without an id
    readable: bool = True
    # The chat's start-of-chat notice was shown: the snapshot is the whole history (an empty one is a new
    # chat, not a read before the history rendered).
    whole: bool = False
    # The page's own clock (unix seconds) when the snapshot was read: bubble times are on that clock, so the
    # id-less time fallback compares them with this, never with the host's clock.
    page_clock: float | None = None

    def to_evidence(self) -> str:
        """The snapshot as the evidence stored with the stamp (JSON, m006's ``send_snapshot`` format)."""
        return json.dumps(
            {
                "ids": list(self.ids),
                "count": self.count,
                "readable": self.readable,
                "whole": self.whole,
                "page_clock": self.page_clock,
            }
        )

    @classmethod
    def from_evidence(cls, raw: str | None) -> ChatSnapshot | None:
        """The snapshot stored with a stamp; None when there is none. A record that cannot be read gives an
        unreadable snapshot: the chat's look then proves nothing absent."""
        if not raw:
            return None
        try:
            d = json.loads(raw)
            ids = tuple(str(i) for i in d.get("ids", ()))
            clock = d.get("page_clock")
            return cls(
                ids=ids,
                count=int(d.get("count", 0)),
                readable=bool(d["readable"]),
                whole=bool(d.get("whole", False)),  # older stamps: not known to be the whole chat
                page_clock=None if clock is None else float(clock),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return cls(readable=False)


# Outcomes of settling a message whose send had started (``sender.Provider.verify_sent``).
VERIFY_SENT = "sent"  # a new outgoing bubble with this message is in the chat
VERIFY_ABSENT = "absent"  # positive evidence it is not: the chat can be read and the message is not there
VERIFY_UNKNOWN = "unknown"  # the chat could not be read well enough to tell: never resend on this
VERIFY_OUTCOMES = (VERIFY_SENT, VERIFY_ABSENT, VERIFY_UNKNOWN)

# A failed message whose send action may have happened and whose chat could not tell: ``failed`` with this
# ``error_class``. Never resent automatically; ``wabulk resolve`` is the human decision.
UNKNOWN_OUTCOME = "unknown_outcome"
UNKNOWN_TEXT = "outcome unknown"  # how the error text of every such message starts
# How the reason of every automatic pause (a job's or a session's) starts; status and notify look for it.
AUTO_PAUSE_PREFIX = "auto-paused"


@dataclass(frozen=True)
class Verification:
    """What settling an unknown send found (see the ``VERIFY_*`` outcomes)."""

    outcome: str
    reason: str = ""
    message_ref: str | None = None  # the provider's id of the message found (outcome "sent")
    tick: str | None = None  # its tick, when read

    @property
    def sent(self) -> bool:
        return self.outcome == VERIFY_SENT

    @property
    def absent(self) -> bool:
        return self.outcome == VERIFY_ABSENT


# --- The Cloud API provider ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CloudStatus:
    """One ``statuses[]`` entry of a Cloud API ``messages`` webhook, as the queue applies it."""

    status: str  # "sent" | "delivered" | "read" | "failed" (anything else is ignored)
    wamid: str | None
    callback: str | None = None  # biz_opaque_callback_data: wabulk's name for the message
    timestamp: float | None = None
    recipient: str | None = None
    error_code: int | None = None  # the first errors[].code of a failed status
    error_details: str | None = None
    pricing_category: str | None = None
    billable: bool | None = None


# What the answer to one Cloud API POST means for its claimed message (``Queue.finish_cloud_batch``).
CLOUD_OUTCOMES = ("sent", "retry", "release", "failed", "unknown")


@dataclass(frozen=True)
class CloudOutcome:
    """``kind``: sent (a wamid), retry (rejected, send again after ``delay``; ``uses_attempt`` False for
    Meta's slow-down codes), release (rejected for the account or job: back to pending, nothing burnt),
    failed (rejected for good), unknown (no answer after the request went out: wait ``delay`` seconds for a
    status webhook)."""

    claim: Claim
    kind: str
    wamid: str | None = None
    wa_id: str | None = None
    error: str = ""
    error_class: str = ""
    delay: float = 0.0
    uses_attempt: bool = True
    detail: str = ""


@dataclass(frozen=True)
class CatalogueTemplate:
    """One message template of a Cloud API account (its WABA), as ``wabulk templates sync`` fetched it."""

    name: str
    language: str  # the locale it was approved in, e.g. "en_US"
    status: str  # Meta's: APPROVED, PENDING, REJECTED, PAUSED, DISABLED, …
    category: str | None  # MARKETING, UTILITY, AUTHENTICATION
    params: int  # how many parameters its body takes ({{1}}, {{2}} … or named ones)
    template_id: str | None = None
    other_params: int = 0  # parameters of its header (text or media) and URL buttons
    parameter_format: str | None = None  # POSITIONAL or NAMED
    components: str | None = None  # Meta's components, JSON
    waba_id: str = ""
    session: str = ""  # the session it was synced through
    synced_at: float = 0.0

    @property
    def approved(self) -> bool:
        return self.status.upper() == "APPROVED"
