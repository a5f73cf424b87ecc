"""enqueue_file: contacts -> rendered messages -> one all-or-nothing queue transaction; parse_when."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from wabulk.errors import BadInput, TemplateError
from wabulk.importer import enqueue_file, parse_when
from wabulk.models import EnqueueStats, NewJob, NewMessage

SAMPLE = Path(__file__).parents[1] / "src" / "wabulk" / "data" / "sample_contacts.csv"
AU1, AU2, AU3 = "+61491570156", "+61491570157", "+61491570158"


@dataclass
class _Msg:
    phone: str
    body: str
    name: str | None
    source_row: int | None
    variables: dict[str, str]
    status: str = "pending"


class FakeQueue:
    """Stand-in with the Queue contract's enqueue semantics, used until the real queue lands."""

    def __init__(self) -> None:
        self.jobs: list[NewJob] = []
        self.messages: dict[int, list[_Msg]] = {}
        self.optouts: set[str] = set()

    def enqueue(self, job: NewJob, messages: Iterable[NewMessage], on_duplicate: Any = None) -> EnqueueStats:
        staged: list[_Msg] = []
        seen: dict[str, int | None] = {}
        dup = opted = 0
        for m in messages:  # an exception here propagates and nothing is kept: all-or-nothing
            if m.phone in seen:
                dup += 1
                if on_duplicate is not None:
                    on_duplicate(m.source_row, m.phone, seen[m.phone])
            elif m.phone in self.optouts:
                opted += 1
            else:
                seen[m.phone] = m.source_row
                staged.append(_Msg(m.phone, m.body, m.name, m.source_row, dict(m.variables)))
        self.jobs.append(job)
        job_id = len(self.jobs)
        self.messages[job_id] = staged
        return EnqueueStats(job_id, len(staged), dup, opted)

    def add_optouts(self, phones: Iterable[str], reason: str | None = None) -> int:
        before = len(self.optouts)
        self.optouts.update(phones)
        return len(self.optouts) - before

    def is_opted_out(self, phone: str) -> bool:
        return phone in self.optouts

    def get_job(self, job_id: int) -> NewJob:
        return self.jobs[job_id - 1]

    def list_jobs(self) -> list[Any]:
        return list(self.jobs)

    def iter_messages(self, job_id: int) -> Iterator[_Msg]:
        return iter(self.messages[job_id])

    def close(self) -> None:
        pass


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[Any]:
    """The real Queue once it is implemented (the stub raises NotImplementedError), else the fake."""
    from wabulk.queue import Queue

    try:
        q: Any = Queue(tmp_path / "q.db")
    except NotImplementedError:
        q = FakeQueue()
    yield q
    q.close()


def write(tmp_path: Path, text: str, name: str = "c.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_sample_file_enqueues_with_counts(queue: Any, tmp_path: Path) -> None:
    res = enqueue_file(queue, SAMPLE, message="Hi {name} from {city}!", country=None)
    assert (res.enqueued, res.invalid, res.duplicates, res.opted_out) == (10, 2, 1, 0)
    assert res.job_id is not None and res.job_name == "sample_contacts.csv"
    msgs = list(queue.iter_messages(res.job_id))
    assert msgs[0].phone == AU1 and msgs[0].body == "Hi Olivia Bennett from Sydney!"
    assert msgs[0].source_row == 2 and msgs[0].name == "Olivia Bennett"
    assert {r.row for r in res.rejects} == {13, 14}
    assert res.previews[:1] == ["Hi Olivia Bennett from Sydney!"]


def test_opted_out_numbers_are_skipped(queue: Any, tmp_path: Path) -> None:
    queue.add_optouts([AU2])
    res = enqueue_file(queue, SAMPLE, message="Hi {name}", country=None)
    assert res.opted_out == 1 and res.enqueued == 9
    # The real queue keeps the row as "skipped" (so export shows it); it must never be pending.
    assert [m for m in queue.iter_messages(res.job_id) if m.phone == AU2 and m.status == "pending"] == []


def test_rejects_csv_has_every_rejected_row(queue: Any, tmp_path: Path) -> None:
    lines = ["name,phone", *(f"P{i},bad{i}" for i in range(25)), "Ok,+61491570156", "=cmd,+1 200 555 0123"]
    src = write(tmp_path, "\n".join(lines) + "\n")
    out = tmp_path / "rejects.csv"
    res = enqueue_file(queue, src, message="Hi {name}", country=None, rejects_path=out)
    assert res.invalid == 26 and len(res.rejects) == 10 and res.enqueued == 1
    with open(out, newline="", encoding="utf-8") as fh:
        got = list(csv.reader(fh))
    assert got[0] == ["row", "column", "value", "reason"]
    assert got[1] == ["2", "phone", "bad0", "not a phone number"]
    assert len(got) == 27
    # values from the file are neutralised against formula injection, like exports
    assert got[-1][:3] == ["28", "phone", "'+1 200 555 0123"]
    assert not list(tmp_path.glob(".rejects.csv.*"))  # temp file renamed away


def test_bad_template_fails_before_anything_is_written(queue: Any, tmp_path: Path) -> None:
    out = tmp_path / "rejects.csv"
    with pytest.raises(TemplateError, match=r"\{surname\}, which is not a column; available: \{name\}"):
        enqueue_file(queue, SAMPLE, message="Hi {surname}", country=None, rejects_path=out)
    with pytest.raises(TemplateError, match="invalid placeholder"):
        enqueue_file(queue, SAMPLE, message="Hi {0.__class__}", country=None)
    assert queue.list_jobs() == []
    assert not out.exists()


def test_missing_phone_column_is_bad_input_naming_file_and_columns(queue: Any, tmp_path: Path) -> None:
    src = write(tmp_path, "name,city\nAnn,Oslo\n")
    with pytest.raises(BadInput) as err:
        enqueue_file(queue, src, message="Hi", country=None, phone_column="Phone")
    assert str(err.value) == f"{src}: no phone column 'Phone'; the columns are: 'name', 'city'"
    assert err.value.exit_code == 2
    assert queue.list_jobs() == []


def test_fatal_error_mid_file_rolls_back_everything(queue: Any, tmp_path: Path) -> None:
    # 300 good rows, then a row with a field over the 1 MiB cap: fatal, found only while streaming.
    good = "".join(f"P{i},+61491570{i:03d}\n" for i in range(100, 400))
    big = write(tmp_path, "name,phone\n" + good + '"' + "x" * (1024 * 1024 + 10) + '",1\n', "big.csv")
    out = tmp_path / "rejects.csv"
    with pytest.raises(BadInput, match=r"big\.csv, row 302: malformed CSV"):
        enqueue_file(queue, big, message="Hi {name}", country=None, rejects_path=out)
    assert queue.list_jobs() == []
    assert not out.exists() and not list(tmp_path.glob(".rejects*"))


def test_no_valid_rows_is_bad_input_but_writes_the_report(queue: Any, tmp_path: Path) -> None:
    src = write(tmp_path, "name,phone\nA,x\nB,y\n")
    out = tmp_path / "rejects.csv"
    with pytest.raises(BadInput, match="nothing to enqueue: all 2 rows were rejected") as exc:
        enqueue_file(queue, src, message="Hi", country=None, rejects_path=out)
    assert exc.value.file == str(src)
    assert queue.list_jobs() == []
    assert len(out.read_text().splitlines()) == 3


def test_all_rejected_names_the_column_the_first_rows_and_the_next_step(queue: Any, tmp_path: Path) -> None:
    src = write(tmp_path, "Customer,Phone,Notes\nAna,ask Bob,+61491570156\nBen,n/a,+61491570157\n")
    with pytest.raises(BadInput) as exc:
        enqueue_file(queue, src, message="Hi", country=None)
    msg = str(exc.value)
    assert "The numbers were read from column 'Phone'" in msg
    assert "row 2 'ask Bob'" in msg and "row 3 'n/a'" in msg
    assert "--phone-column" in msg
    assert queue.list_jobs() == []


def test_empty_placeholders_are_counted_per_row_and_the_fallback_fills_them(
    queue: Any, tmp_path: Path
) -> None:
    src = write(tmp_path, "phone,name,order\n+61491570156,,B-100\n+61491570157,Ben,B-101\n")
    dry = enqueue_file(None, src, message="Hi {name}, order {order}", country=None, dry_run=True)
    assert (dry.empty_rows, dry.empty_placeholders, dry.empty_examples) == (1, {"name": 1}, [2])
    assert dry.as_json()["empty_rows"] == 1 and dry.previews[0] == "Hi , order B-100"
    real = enqueue_file(queue, src, message="Hi {name|there}, order {order}", country=None)
    assert real.empty_rows == 0
    assert sorted(m.body for m in queue.iter_messages(real.job_id)) == [
        "Hi Ben, order B-101",
        "Hi there, order B-100",
    ]


def test_duplicates_are_listed_in_the_result_and_the_rejects_file(queue: Any, tmp_path: Path) -> None:
    src = write(tmp_path, f"name,phone\nAnn,{AU1}\nBob,{AU2}\nAnn again,0061 491 570 156\nBob,{AU2}\n")
    for dry in (True, False):
        out = tmp_path / f"rejects-{dry}.csv"
        r = enqueue_file(queue, src, message="Hi {name}", country=None, rejects_path=out, dry_run=dry)
        assert r.duplicates == 2
        assert r.duplicate_rows == [(4, AU1, 2), (5, AU2, 3)]
        assert r.as_json()["duplicate_rows"][0] == {"row": 4, "phone": AU1, "first_row": 2}
        lines = list(csv.reader(out.open(encoding="utf-8")))
        assert lines[1:] == [  # "'+61…": the spreadsheet formula guard, as for every rejected value
            ["4", "phone", "'" + AU1, "duplicate: the same number as row 2"],
            ["5", "phone", "'" + AU2, "duplicate: the same number as row 3"],
        ]


def test_duplicates_across_import_chunks_are_listed(queue: Any, tmp_path: Path, monkeypatch: Any) -> None:
    import wabulk.store.enqueue as store_enqueue

    monkeypatch.setattr(store_enqueue, "ENQUEUE_CHUNK", 2)
    src = write(tmp_path, f"name,phone\nA,{AU1}\nB,{AU2}\nC,{AU3}\nD,{AU1}\nE,{AU3}\n")
    r = enqueue_file(queue, src, message="Hi {name}", country=None)
    assert (r.enqueued, r.duplicates, r.duplicate_rows) == (3, 2, [(5, AU1, 2), (6, AU3, 4)])


def test_queueing_the_same_file_and_message_again_warns(queue: Any, tmp_path: Path) -> None:
    src = write(tmp_path, f"name,phone\nAnn,{AU1}\n")
    first = enqueue_file(queue, src, message="Hi {name}", country=None)
    assert not any("already queued" in n for n in first.notices)
    other = enqueue_file(queue, src, message="Bye {name}", country=None)
    assert not any("already queued" in n for n in other.notices)
    again = enqueue_file(queue, src, message="Hi {name}", country=None, dry_run=True)
    assert any(f"already queued as job {first.job_id}" in n for n in again.notices)


def test_header_only_file(queue: Any, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no contact rows"):
        enqueue_file(queue, write(tmp_path, "name,phone\n"), message="Hi", country=None)


def test_dry_run_writes_nothing_and_counts_like_the_real_run(queue: Any, tmp_path: Path) -> None:
    queue.add_optouts([AU2])
    dry = enqueue_file(queue, SAMPLE, message="{Hi|Hello} {name}", country=None, dry_run=True)
    assert dry.job_id is None and dry.dry_run
    assert queue.list_jobs() == []
    real = enqueue_file(queue, SAMPLE, message="{Hi|Hello} {name}", country=None)
    assert (
        (dry.enqueued, dry.invalid, dry.duplicates, dry.opted_out)
        == (real.enqueued, real.invalid, real.duplicates, real.opted_out)
        == (9, 2, 1, 1)
    )
    # the preview shows exactly what will be sent (same spintax choice)
    assert dry.previews == [m.body for m in list(queue.iter_messages(real.job_id))[:3]]


def test_dry_run_without_a_queue(tmp_path: Path) -> None:
    res = enqueue_file(None, SAMPLE, message="Hi {name}", country=None, dry_run=True)
    assert res.enqueued == 10 and len(res.previews) == 3


def test_over_long_and_empty_bodies_are_row_rejects(queue: Any, tmp_path: Path) -> None:
    src = write(tmp_path, f"name,phone,note\nA,{AU1},{'x' * 70000}\nB,{AU2},\nC,{AU3},ok\n")
    res = enqueue_file(queue, src, message="{note}", country=None)
    assert res.enqueued == 1 and res.invalid == 2
    assert "70,000 characters" in res.rejects[0].reason and res.rejects[0].row == 2
    assert "empty" in res.rejects[1].reason
    assert [m.body for m in queue.iter_messages(res.job_id)] == ["ok"]


def test_spintax_is_stable_per_message(queue: Any, tmp_path: Path) -> None:
    a = enqueue_file(queue, SAMPLE, message="{A|B|C|D|E|F}", country=None, name="promo", dry_run=True)
    b = enqueue_file(queue, SAMPLE, message="{A|B|C|D|E|F}", country=None, name="promo", dry_run=True)
    assert a.previews == b.previews


def test_only_used_variables_are_stored(queue: Any, tmp_path: Path) -> None:
    res = enqueue_file(queue, SAMPLE, message="Hi {name}", country=None)
    assert next(iter(queue.iter_messages(res.job_id))).variables == {"name": "Olivia Bennett"}


def test_attachment_must_exist(queue: Any, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="attachment not found"):
        enqueue_file(queue, SAMPLE, message="Hi", country=None, attachment=tmp_path / "nope.pdf")
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    res = enqueue_file(queue, SAMPLE, message="Hi", country=None, attachment=pdf, dry_run=True)
    assert res.enqueued == 10


def test_rejects_file_may_not_overwrite_the_input(queue: Any, tmp_path: Path) -> None:
    src = tmp_path / "c.csv"
    shutil.copy(SAMPLE, src)
    with pytest.raises(BadInput, match="must not be the input"):
        enqueue_file(queue, src, message="Hi", country=None, rejects_path=src)
    assert src.read_bytes() == SAMPLE.read_bytes()


def test_job_fields(queue: Any, tmp_path: Path) -> None:
    res = enqueue_file(
        queue,
        SAMPLE,
        message="Hi",
        country="au",
        name="launch",
        not_before=123.0,
        max_attempts=5,
        sessions=("shop",),
    )
    job = queue.get_job(res.job_id)
    assert (job.name, job.template, job.not_before, job.max_attempts, job.sessions) == (
        "launch",
        "Hi",
        123.0,
        5,
        ("shop",),
    )
    assert job.source == str(SAMPLE.resolve())


def test_cp1252_notice_is_passed_on(queue: Any) -> None:
    res = enqueue_file(
        queue,
        Path(__file__).parent / "data" / "outlook_cp1252_semicolon.csv",
        message="Hallo {first name}",
        country="AU",
        dry_run=True,
    )
    assert any("cp1252" in n for n in res.notices)
    assert res.previews == ["Hallo Zoë", "Hallo José"]


def test_unknown_country_is_bad_input(queue: Any) -> None:
    with pytest.raises(BadInput, match="unknown country"):
        enqueue_file(queue, SAMPLE, message="Hi", country="Narnia")


# --- parse_when ------------------------------------------------------------------------------------

NOW = datetime(2026, 6, 1, 12, 0).timestamp()  # local noon


@pytest.mark.parametrize(
    "text,expected",
    [
        ("+2h", NOW + 7200),
        ("+30m", NOW + 1800),
        ("+1h30m", NOW + 5400),
        ("+ 1d", NOW + 86400),
        ("now", NOW),
        ("2026-12-01 09:00", datetime(2026, 12, 1, 9, 0).timestamp()),
        ("2026-12-01T09:00:00", datetime(2026, 12, 1, 9, 0).timestamp()),
        ("2026-12-01", datetime(2026, 12, 1).timestamp()),
        ("2026-12-01T09:00Z", datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc).timestamp()),
        ("2026-12-01T09:00+02:00", datetime(2026, 12, 1, 7, 0, tzinfo=timezone.utc).timestamp()),
        ("tomorrow 09:00", (datetime(2026, 6, 1, 9, 0) + timedelta(days=1)).timestamp()),
        ("today 18:30", datetime(2026, 6, 1, 18, 30).timestamp()),
        ("18:30", datetime(2026, 6, 1, 18, 30).timestamp()),
        ("08:00", datetime(2026, 6, 2, 8, 0).timestamp()),  # already past today: tomorrow
    ],
)
def test_parse_when(text: str, expected: float) -> None:
    assert parse_when(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["soon", "", "+2x", "tomorrow", "25:00", "2026-13-01", "tomorrow 9:75"])
def test_parse_when_garbage(text: str) -> None:
    with pytest.raises(BadInput, match="--at"):
        parse_when(text, NOW)


def test_not_mobile_numbers_are_kept_and_counted(queue: Any) -> None:
    res = enqueue_file(
        queue, Path(__file__).parent / "data" / "google_contacts.csv", message="Hi {given name}", country=None
    )
    assert (res.enqueued, res.not_mobile, res.invalid) == (3, 1, 0)
    assert res.phone_column == "Phone 1 - Value" and res.name_column == "Name"


def test_dry_run_still_writes_the_requested_rejects_report(queue: Any, tmp_path: Path) -> None:
    out = tmp_path / "rejects.csv"
    res = enqueue_file(queue, SAMPLE, message="Hi", country=None, rejects_path=out, dry_run=True)
    assert res.invalid == 2 and queue.list_jobs() == []
    assert [r[0] for r in csv.reader(out.read_text(encoding="utf-8").splitlines())] == [
        "row",
        "12",
        "13",
        "14",
    ]
