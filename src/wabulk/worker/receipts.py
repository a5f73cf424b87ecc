"""Receipt polling, for providers whose receipts are polled (``Capabilities.receipts == "polled"``): revisit
the chats of sent messages, read the ticks of our message, record them.

"Sent" (one tick) only says WhatsApp's server took the message. :func:`track` opens the chat of each sent
message that is not yet read (oldest first, only those the given session sent: no other account's chat
shows the message), asks the provider for its best tick (``Provider.read_receipt``) and records
``delivered_at``/``read_at`` through ``Queue.record_receipt``, which never downgrades. It never sends.
Times recorded are when the tick was *seen*, an upper bound of when it happened (a chat that is looked at
need not show when a tick appeared). ``wabulk track`` is :func:`run_track`; ``run --track-receipts`` calls
:func:`track` in the worker's idle time. Reading receipts back is :mod:`wabulk.receipts`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wabulk import errors
from wabulk.models import TICK_DELIVERED, TICK_READ, Message

if TYPE_CHECKING:
    from wabulk.queue import Queue
    from wabulk.sender import Provider
    from wabulk.settings import Settings

log = logging.getLogger("wabulk.receipts")

DEFAULT_OLDER_THAN = 600.0  # track: leave a message alone for its first 10 minutes (and between checks)
DEFAULT_LIMIT = 50
# Without a send-started stamp, look this far before sent_at for the message (bubbles carry minutes and
# sent_at is taken after the confirmation).
SENT_AT_SLACK = 120.0


@dataclass(frozen=True)
class Checked:
    """One message whose chat was looked at: its tick before, and what the chat showed (None: our
    bubble was not found)."""

    message_id: int
    job_id: int
    phone: str
    before: str | None
    seen: str | None
    error: str | None = None


@dataclass
class TrackResult:
    """What one :func:`track` pass did."""

    checked: list[Checked] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        """Messages that reached delivered (and not read) in this pass."""
        return sum(
            1
            for c in self.checked
            if c.seen == TICK_DELIVERED and c.before not in (TICK_DELIVERED, TICK_READ)
        )

    @property
    def read(self) -> int:
        """Messages seen read in this pass."""
        return sum(1 for c in self.checked if c.seen == TICK_READ)

    @property
    def unchanged(self) -> int:
        """Messages whose bubble was found without a newer tick."""
        found = sum(1 for c in self.checked if c.seen is not None and c.error is None)
        return found - self.delivered - self.read

    @property
    def not_found(self) -> int:
        return sum(1 for c in self.checked if c.seen is None and c.error is None)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.checked if c.error is not None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": len(self.checked),
            "delivered": self.delivered,
            "read": self.read,
            "unchanged": self.unchanged,
            "not_found": self.not_found,
            "errors": self.failed,
            "messages": [c.__dict__ for c in self.checked],
        }


def _since(m: Message) -> float:
    """From when to look for the bubble: the send-started stamp (taken right before Enter), else a
    little before the sent mark."""
    if m.send_started_at is not None and m.sent_at is not None and m.send_started_at <= m.sent_at:
        return m.send_started_at
    return (m.sent_at or 0.0) - SENT_AT_SLACK


def track(
    queue: Queue,
    transport: Provider,
    *,
    session: str,
    job_id: int | None = None,
    older_than: float = DEFAULT_OLDER_THAN,
    limit: int = DEFAULT_LIMIT,
    clock: Callable[[], float] = time.time,
    should_stop: Callable[[], bool] | None = None,
    on_checked: Callable[[Checked], None] | None = None,
) -> TrackResult:
    """Look at the chats of up to ``limit`` messages ``session`` sent more than ``older_than`` seconds ago
    and not yet read (nor looked at in the last ``older_than`` seconds), oldest first, and record the
    delivered/read ticks seen. Never sends. Errors about the account or the provider's connection (a
    SessionError such as NotLoggedIn or Blocked, Offline, or one with ``restart_provider``: ProviderDown,
    ProviderCrashed) propagate: what was recorded stays recorded. Any other error of one chat is noted on
    that message and the pass goes on."""
    result = TrackResult()
    now = clock()
    todo = queue.receipts_to_track(
        session, sent_before=now - older_than, checked_before=now - older_than, limit=limit, job_id=job_id
    )
    for m in todo:
        if should_stop is not None and should_stop():
            break
        try:
            seen = transport.read_receipt(m.phone, m.body, _since(m))
        except errors.WabulkError as exc:
            if isinstance(exc, (errors.SessionError, errors.Offline)) or exc.restart_provider:
                raise  # the account or its connection, not this message: the caller handles it
            item = Checked(m.id, m.job_id, m.phone, m.receipt, None, str(exc))
            queue.mark_receipt_checked(m.id, clock())
            log.warning("could not read the ticks of message %s: %s", m.id, exc)
        else:
            at = clock()
            if seen in (TICK_DELIVERED, TICK_READ):
                queue.record_receipt(m.id, seen, at)
            queue.mark_receipt_checked(m.id, at)
            item = Checked(m.id, m.job_id, m.phone, m.receipt, seen)
        result.checked.append(item)
        if on_checked is not None:
            on_checked(item)
    return result


def run_track(
    settings: Settings,
    *,
    session: str,
    job_id: int | None = None,
    older_than: float = DEFAULT_OLDER_THAN,
    limit: int = DEFAULT_LIMIT,
    transport: Provider | None = None,
    on_checked: Callable[[Checked], None] | None = None,
) -> TrackResult:
    """Everything ``wabulk track`` does: refuse when a live worker uses the session (SessionBusy: use
    ``run --track-receipts`` there), open the session's provider (which refuses a second user of the
    account too), track, close. NotLoggedIn when the session needs a login; ConfigError when the
    provider's receipts are pushed (there is nothing to look up)."""
    from wabulk.queue import Queue

    with Queue(settings.db, create=False) as queue:
        if job_id is not None:
            queue.get_job(job_id)
        busy = [w for w in queue.workers() if w.alive and w.session == session]
        if busy:
            w = busy[0]
            raise errors.SessionBusy(
                f"session {session!r} is used by a running worker (pid {w.pid} on {w.host}); stop it first, "
                "or let it track receipts in its idle time with `wabulk run --track-receipts`"
            )
        if not queue.receipts_to_track(
            session,
            sent_before=time.time() - older_than,
            checked_before=time.time() - older_than,
            limit=1,
            job_id=job_id,
        ):
            return TrackResult()  # nothing to look at: no provider needed
        own = transport is None
        if transport is None:
            from wabulk import session as sessions
            from wabulk.sender import RECEIPTS_POLLED, open_sender

            account = sessions.get(queue, session)
            transport = open_sender(account.provider, settings, account)
            if transport.capabilities.receipts != RECEIPTS_POLLED:
                raise errors.ConfigError(
                    f"session {session!r} ({account.provider}) gets its receipts pushed by the service: "
                    "there is nothing to look up"
                )
        try:
            transport.start()
            transport.ensure_ready()
            return track(
                queue,
                transport,
                session=session,
                job_id=job_id,
                older_than=older_than,
                limit=limit,
                on_checked=on_checked,
            )
        finally:
            if own:
                transport.close()
