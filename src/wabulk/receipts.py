"""Reading delivery truth: undelivered messages, durations, the ``status --check`` lines.

Receipts are recorded beside ``sent`` (``delivered_at``/``read_at``) by whoever learns them: the worker's
receipt polling (:mod:`wabulk.worker.receipts`, for providers whose receipts are polled) or a provider's
pushed reports. A message that is still on one tick ``undelivered_after`` seconds (default 24 h) after it
was sent is *undelivered*: counted by ``status``, listed by ``status --check``, exported alone by
``export --undelivered``. This module only reads: ``serve`` and ``status`` use it and reach no provider.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from . import errors
from .models import JobSummary

if TYPE_CHECKING:
    from .queue import Queue

DEFAULT_UNDELIVERED_AFTER = 24 * 3600.0

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


__all__ = [
    "DEFAULT_UNDELIVERED_AFTER",
    "attention_lines",
    "export_undelivered",
    "format_age",
    "parse_age",
    "undelivered_counts",
]
