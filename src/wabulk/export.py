"""Export one job's recipients as CSV, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .models import Message
    from .queue import Queue

COLUMNS = (
    "id",
    "phone",
    "name",
    "status",
    "attempts",
    "error_class",
    "last_error",
    "created_at",
    "sent_at",
    "delivered_at",
    "read_at",
    "receipt",
    # Cloud API: what the status webhooks' pricing said (Meta's category; billable 1/0); empty otherwise.
    "pricing_category",
    "billable",
    "message",  # the text this recipient got (or gets): what a person checking the report wants to see
)

# Characters that make Excel, LibreOffice or Google Sheets treat a cell as a formula (OWASP "CSV
# injection"), plus tab and carriage return, which some of them strip before looking.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value: str) -> str:
    """Prefix a cell that a spreadsheet would run as a formula with ``'`` (OWASP's recommendation).

    This includes E.164 phone numbers: ``+14155550123`` is exported as ``'+14155550123``. Spreadsheets
    show it as ``+14155550123`` (the quote marks text), and without it they would read the number as
    a formula or a number and drop the ``+``; ``wabulk enqueue`` strips the quote when reading it back.
    """
    if value.startswith(_FORMULA_START):
        return "'" + value
    return value


def iso_utc(ts: float | None) -> str:
    """Unix seconds as ISO 8601 UTC (``2026-12-01T09:00:00Z``); empty for None."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def export_job(queue: Queue, job_id: int, out: TextIO, *, raw: bool = False) -> int:
    """Write one CSV row per recipient of ``job_id`` to ``out`` (open it with ``newline=""``) and
    return the number of rows. Streams messages from the queue; raises JobNotFound for a wrong id.
    ``raw``: the values as stored, without the spreadsheet formula guard (for scripts, not Excel)."""
    queue.get_job(job_id)  # JobNotFound before any output
    return write_messages(queue.iter_messages(job_id), out, raw=raw)


def write_messages(messages: Iterable[Message], out: TextIO, *, raw: bool = False) -> int:
    """Write the export's header and one CSV row per message, neutralised unless ``raw``; return the row
    count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    n = 0
    for m in messages:
        row = (
            str(m.id),
            m.phone,
            m.name or "",
            m.status,
            str(m.attempts),
            m.error_class or "",
            m.last_error or "",
            iso_utc(m.created_at),
            iso_utc(m.sent_at),
            iso_utc(m.delivered_at),
            iso_utc(m.read_at),
            m.receipt or "",
            m.pricing_category or "",
            "" if m.billable is None else str(int(m.billable)),
            m.body,
        )
        writer.writerow(row if raw else [neutralize(v) for v in row])
        n += 1
    return n
