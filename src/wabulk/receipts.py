"""Delivery truth: revisit the chats of sent messages, read the ticks of our bubble, record them.

"Sent" (one tick) only says WhatsApp's server took the message. :func:`track` opens the chat of each sent
message that is not yet read (oldest first, only those the given session sent: no other account's chat
shows the bubble), reads the best tick of our bubble with exactly the message's body
(``Provider.read_receipt``) and records ``delivered_at``/``read_at`` through ``Queue.record_receipt``,
which never downgrades. It never types or sends anything.

Times recorded are when the tick was *seen*, an upper bound of when it happened (WhatsApp Web does not
show receipt times in the chat). A message that is still on one tick ``undelivered_after`` seconds
(default 24 h) after it was sent is *undelivered*: counted by ``status``, listed by ``status --check``,
exported alone by ``export --undelivered``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from . import errors
from .models import TICK_DELIVERED, TICK_READ, JobSummary, Message

if TYPE_CHECKING:
    from .queue import Queue
    from .sender import Provider
    from .settings import Settings

DEFAULT_OLDER_THAN = 600.0  # track: leave a message alone for its first 10 minutes (and between checks)
DEFAULT_LIMIT = 50
DEFAULT_UNDELIVERED_AFTER = 24 * 3600.0
# Without a send-started stamp, look this far before sent_at for the bubble (bubbles carry minutes and
# sent_at is taken after the confirmation).
SENT_AT_SLACK = 120.0

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_AGE = re.compile(r"^(?:\d+(?:\.\d+)?[smhdw])+$")
_AGE_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_age(text: str, *, option: str = "age") -> float:
    """A duration such as ``90`` (seconds), ``90s``, ``10m``, ``24h``, ``7d`` or ``1h30m`` in seconds.
    BadInput otherwise (``option`` names the option in the message)."""
    s = str(text).strip().lower().replace(" ", "")
    try:
        value = float(s)
    except ValueError:
        if not _AGE.match(s):
            raise errors.BadInput(
                f"{option} {text!r} is not a duration (e.g. 90s, 10m, 24h, 7d, 1h30m)"
            ) from None
        value = sum(float(n) * _UNITS[u] for n, u in _AGE_PART.findall(s))
    if value < 0:
        raise errors.BadInput(f"{option} must not be negative ({text!r})")
    return value


def format_age(seconds: float) -> str:
    """Seconds as a short duration: ``24h``, ``10m``, ``1h30m``, ``45s``, ``2d``."""
    s = int(round(seconds))
    if s <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    return "".join(parts)


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
    delivered/read ticks seen. Never sends. Session and browser errors (NotLoggedIn, Blocked,
    TakeoverFailed, Offline, BrowserError, BrowserCrashed) propagate: what was recorded stays recorded.
    Any other error of one chat is noted on that message and the pass goes on."""
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
        except (errors.SessionError, errors.BrowserError, errors.BrowserCrashed, errors.Offline):
            raise
        except errors.WabulkError as exc:
            item = Checked(m.id, m.job_id, m.phone, m.receipt, None, str(exc))
            queue.mark_receipt_checked(m.id, clock())
            import logging  # not at the top: `status` imports this module and never logs

            log = logging.getLogger("wabulk.receipts")
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


def undelivered_counts(
    queue: Queue, summaries: Sequence[JobSummary], *, now: float, after: float = DEFAULT_UNDELIVERED_AFTER
) -> dict[int, dict[str, int]]:
    """``{job id: {"delivered", "read", "undelivered"}}`` for these jobs; undelivered = sent more than
    ``after`` seconds before ``now`` and still on one tick."""
    return {s.job.id: queue.receipt_counts(s.job.id, undelivered_before=now - after) for s in summaries}


def attention_lines(
    summaries: Sequence[JobSummary], receipts: dict[int, dict[str, int]], after: float
) -> list[str]:
    """``status --check`` lines: one per job with undelivered messages."""
    lines = []
    for s in summaries:
        n = receipts.get(s.job.id, {}).get("undelivered", 0)
        if n:
            lines.append(
                f"job {s.job.id} ({s.job.name}): {n} message{'s' if n != 1 else ''} undelivered "
                f"after {format_age(after)}"
            )
    return lines


def export_undelivered(
    queue: Queue,
    job_id: int,
    out: TextIO,
    *,
    now: float,
    after: float = DEFAULT_UNDELIVERED_AFTER,
    raw: bool = False,
) -> int:
    """Write the job's undelivered messages (same columns as ``export``), oldest first, to ``out``;
    returns the number of rows. JobNotFound for a wrong id."""
    from .export import write_messages

    queue.get_job(job_id)
    return write_messages(queue.iter_undelivered(job_id, before=now - after), out, raw=raw)


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
    ``run --track-receipts`` there), open the session's browser (the profile lock refuses a second
    browser too), track, close. NotLoggedIn when the session needs a scan."""
    from .queue import Queue

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
            return TrackResult()  # nothing to look at: no browser needed
        own = transport is None
        if transport is None:
            from . import session as sessions
            from .sender import RECEIPTS_POLLED, open_sender

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


__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_OLDER_THAN",
    "DEFAULT_UNDELIVERED_AFTER",
    "Checked",
    "TrackResult",
    "attention_lines",
    "export_undelivered",
    "format_age",
    "parse_age",
    "run_track",
    "track",
    "undelivered_counts",
]
