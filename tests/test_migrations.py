"""Schema migrations: from an empty file, and upgrading a database the first release wrote."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from wabulk import migrations
from wabulk.models import MESSAGE_STATUSES, NewJob, NewMessage
from wabulk.queue import Queue

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "wabulk-v1.db"


def schema(path: Path) -> dict[str, object]:
    """Tables with their columns, plus every index and trigger (name -> normalised SQL)."""
    db = Database(path)
    out: dict[str, object] = {}
    for table in db.tables:
        if table.name == "_sqlite_migrations":
            continue
        out[f"table:{table.name}"] = table.columns_dict
    for name, sql in db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND sql IS NOT NULL"
    ):
        if "_sqlite_migrations" not in name:
            out[f"obj:{name}"] = " ".join(sql.split())
    db.close()
    return out


def test_fresh_database_gets_every_migration(db_path: Path) -> None:
    q = Queue(db_path)
    applied = migrations.applied(Database(q.conn))
    assert (
        applied
        == migrations.names()
        == [
            "m001_initial",
            "m002_job_counts",
            "m003_stamp_session",
            "m004_receipts",
            "m005_enqueue_counts",
            "m006_fail_closed",
            "m007_notifications",
            "m008_device_linked",
            "m009_session_provider",
            "m010_fail_closed_queue",
            "m013_cloud",
            "m014_template_catalogue",
            "m014_template_components",
            "m014_pricing_index",
            "m015_worker_cap",
            "m018_template_layout",
        ]
    )
    tables = {r[0] for r in q.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"jobs", "messages", "events", "workers", "optouts", "job_counts"} <= tables
    assert q.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    q.close()


def test_reopening_applies_nothing(db_path: Path) -> None:
    Queue(db_path).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    assert migrations.migrate(conn) == []
    rows = conn.execute("SELECT count(*) FROM _sqlite_migrations WHERE migration_set = 'wabulk'").fetchone()
    assert rows[0] == len(migrations.names())
    conn.close()


def test_every_migration_is_transactional() -> None:
    # migrate() runs them all inside one BEGIN IMMEDIATE so concurrent openers serialise; a
    # non-transactional migration (VACUUM, journal_mode) would break that.
    assert all(m.transactional for m in migrations.migrations._migrations)


def test_upgrade_from_checked_in_v1_database(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(FIXTURE_V1, db)
    conn = sqlite3.connect(db)
    assert [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations")] == ["m001_initial"]
    conn.close()

    q = Queue(db)
    assert migrations.applied(Database(q.conn)) == migrations.names()
    # Counters are backfilled from the rows already there.
    assert q.counts(1) == {
        **dict.fromkeys(MESSAGE_STATUSES, 0),
        "sent": 3,
        "failed": 2,
        "pending": 4,
        "skipped": 1,
    }
    assert q.counts(2)["pending"] == 2
    j2 = q.get_job(2)
    assert j2.sessions == ("shop",) and j2.settings == {"pace": "careful"}
    assert q.is_opted_out("+14155559999")
    # The old data keeps working with the new code: retry, claim, and counters stay right.
    assert q.retry_failed(1) == 2
    c = q.claim("w", "default", lease_seconds=60, job_ids=[1])
    assert c is not None and c.phone.startswith("+1415555")
    q.mark_sent(c, tick="sent", session="default")
    assert q.counts(1)["sent"] == 4 and q.counts(1)["pending"] == 5
    stats = q.enqueue(NewJob(name="new", template="x"), [NewMessage(phone="+14155550000", body="x")])
    assert stats.enqueued == 1
    q.close()

    fresh = tmp_path / "fresh.db"
    Queue(fresh).close()
    assert schema(db) == schema(fresh)


def test_upgrade_of_a_database_stopped_before_m002(db_path: Path) -> None:
    """The same upgrade, built with today's m001 (guards against m001 drifting from the fixture)."""
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    migrations.migrations.apply(Database(conn, execute_plugins=False), stop_before="m002_job_counts")
    conn.execute("INSERT INTO jobs (name, template, created_at) VALUES ('j', 't', 0)")
    conn.executemany(
        "INSERT INTO messages (job_id, phone, body, status, created_at, updated_at)"
        " VALUES (1, ?, 'b', ?, 0, 0)",
        [("+1", "sent"), ("+2", "pending"), ("+3", "pending")],
    )
    conn.close()
    assert schema(db_path) == schema(FIXTURE_V1)
    q = Queue(db_path)
    assert q.counts(1)["pending"] == 2 and q.counts(1)["sent"] == 1
    q.close()


def test_failed_migration_rolls_back_and_stays_pending(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    migrations.migrations.apply(Database(conn, execute_plugins=False), stop_before="m002_job_counts")
    conn.close()

    def boom(db: Database) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(migrations.migrations._migrations[1], "fn", boom)
    conn = sqlite3.connect(db_path, isolation_level=None)
    with pytest.raises(RuntimeError, match="migration bug"):
        migrations.migrate(conn)
    assert not conn.in_transaction
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in names and "job_counts" not in names
    assert migrations.applied(Database(conn, execute_plugins=False)) == ["m001_initial"]
    conn.close()


def test_the_quick_schema_check_knows_every_migration() -> None:
    from wabulk import schema

    assert schema.NAMES == tuple(migrations.names())


def test_opening_an_up_to_date_database_does_not_import_sqlite_utils(db_path: Path) -> None:
    """Every command opens the queue: the migration machinery must cost nothing when nothing is pending."""
    import subprocess
    import sys

    Queue(db_path).close()
    code = (
        "import sys; from wabulk.queue import Queue; Queue(sys.argv[1]).close(); "
        "print('sqlite_utils' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(db_path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
