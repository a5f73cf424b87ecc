"""export_job: one CSV row per recipient, ISO times, formula injection neutralised."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Clock
from wabulk.errors import JobNotFound
from wabulk.export import COLUMNS, export_job, iso_utc, neutralize
from wabulk.models import NewJob, NewMessage
from wabulk.queue import Queue

T0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def queue(tmp_path: Path, clock: Clock) -> Iterator[Queue]:
    q = Queue(tmp_path / "q.db", clock=clock)
    yield q
    q.close()


def read(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_neutralize() -> None:
    for dangerous in ('=HYPERLINK("http://x")', "+14155550123", "-2+3", "@SUM(A1)", "\t=1", "\r=1"):
        assert neutralize(dangerous) == "'" + dangerous
    for safe in ("Ann", "", "14155550123", " =1", "'=1"):
        assert neutralize(safe) == safe


def test_iso_utc() -> None:
    assert iso_utc(T0) == "2026-11-18T11:06:40Z"
    assert iso_utc(None) == ""


def test_export_rows_statuses_and_times(queue: Queue, clock: Clock) -> None:
    stats = queue.enqueue(
        NewJob(name="j", template="Hi {name}"),
        [
            NewMessage(phone="+61491570156", body="Hi Ann", name="Ann"),
            NewMessage(phone="+61491570157", body="Hi =evil", name='=HYPERLINK("http://x","click")'),
            NewMessage(phone="+61491570158", body="Hi Bob", name=None),
        ],
    )
    clock.now = T0 + 60
    first = queue.claim("w1", "default", lease_seconds=60)
    assert first is not None
    queue.mark_sent(first, tick="sent", session="default")
    clock.now = T0 + 120
    queue.record_receipt(first.message_id, "read", T0 + 120)
    second = queue.claim("w1", "default", lease_seconds=60)
    assert second is not None
    queue.mark_failed(second, error="-not on WhatsApp", error_class="not_on_whatsapp")

    out = io.StringIO()
    n = export_job(queue, stats.job_id, out)
    rows = read(out.getvalue())
    assert n == 3 and len(rows) == 3
    assert tuple(rows[0]) == COLUMNS
    ann, evil, bob = rows
    assert ann["phone"] == "'+61491570156"  # OWASP: a leading "+" is prefixed too (see export.neutralize)
    assert (ann["name"], ann["status"], ann["attempts"]) == ("Ann", "sent", "1")
    assert ann["sent_at"] == "2026-11-18T11:07:40Z"
    assert ann["read_at"] == "2026-11-18T11:08:40Z" and ann["receipt"] == "read"
    assert ann["created_at"] == "2026-11-18T11:06:40Z"
    assert evil["name"] == '\'=HYPERLINK("http://x","click")'
    assert (evil["status"], evil["error_class"], evil["last_error"]) == (
        "failed",
        "not_on_whatsapp",
        "'-not on WhatsApp",
    )
    assert (bob["name"], bob["status"], bob["sent_at"], bob["attempts"]) == ("", "pending", "", "0")


def test_export_unknown_job_writes_nothing(queue: Queue) -> None:
    out = io.StringIO()
    with pytest.raises(JobNotFound):
        export_job(queue, 99, out)
    assert out.getvalue() == ""


def test_exported_phone_reads_back_through_the_importer(queue: Queue, tmp_path: Path) -> None:
    # The "'" that protects spreadsheets must not break re-importing an export as a contact list.
    from wabulk.contacts import Contact, read_contacts

    stats = queue.enqueue(
        NewJob(name="j", template="x"), [NewMessage(phone="+61491570156", body="x", name="Ann")]
    )
    p = tmp_path / "export.csv"
    with open(p, "w", encoding="utf-8", newline="") as fh:
        export_job(queue, stats.job_id, fh)
    [c] = list(read_contacts(p, country=None))
    assert isinstance(c, Contact) and (c.phone, c.name) == ("+61491570156", "Ann")
