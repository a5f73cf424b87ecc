"""The SQLite queue: the only module that writes SQL.

All times are unix seconds (float, UTC). Every state change of a message is one short transaction
and is also appended to ``events``. The claim is one ``UPDATE … RETURNING`` in ``BEGIN IMMEDIATE``;
completions are fenced on ``(id, status='sending', claimed_by, attempts)``.

Rules chosen here (see also design.md):

- Claimable jobs are ``queued``, ``running`` and ``waiting_for_login`` ones whose ``not_before`` has
  passed and that are not pinned to other sessions. Within a job, messages go out by id (FIFO);
  jobs are served oldest first. A message in backoff keeps its place and goes out once due.
- Expired leases are reclaimed before fresh work. One whose ``send_started_at`` is set comes back
  as a claim that ``needs_verification``, even when its attempts are used up (the outcome must be
  checked before giving up; a verified-unsent message may then be sent once more, so real sends
  never exceed ``max_attempts``). One without the stamp and with attempts used up becomes ``failed``
  ("attempts exhausted").
- Expired leases in a *stopped* job are settled at the next claim: ``cancelled`` without the stamp,
  ``failed`` ("outcome unknown") with it. Those of a paused job wait for resume.
- An opted-out number is re-checked at claim time: the message becomes ``skipped``, no attempt spent.
- A job with nothing pending or in flight left becomes ``completed`` (also when it was paused or
  waiting for login); a stopped job stays ``stopped`` and gets its finish time when the last
  in-flight message ends.
- ``prune`` deletes messages (and their events) of long-finished jobs; the trigger-kept
  ``job_counts`` have no delete trigger, so the job's counts stay visible.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import os
import sqlite3
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from . import errors, schema
from .models import (
    CANCELLED,
    FAILED,
    JOB_COMPLETED,
    JOB_PAUSED,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_STATUSES,
    JOB_STOPPED,
    JOB_WAITING_FOR_LOGIN,
    MESSAGE_STATUSES,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    TICK_DELIVERED,
    TICK_READ,
    TICK_SENT,
    Claim,
    EnqueueStats,
    Event,
    Job,
    JobSummary,
    Message,
    NewJob,
    NewMessage,
    WorkerInfo,
)

MIN_SQLITE = (3, 35, 0)  # UPDATE … RETURNING
BUSY_TIMEOUT_MS = 30_000
ENQUEUE_CHUNK = 10_000
OPTED_OUT = "opted out"

CLAIMABLE_JOB_STATUSES = (JOB_QUEUED, JOB_RUNNING, JOB_WAITING_FOR_LOGIN)
_ACTIVE_JOB_STATUSES = (JOB_QUEUED, JOB_RUNNING, JOB_WAITING_FOR_LOGIN, JOB_PAUSED)
_TICK_RANK = {TICK_SENT: 1, TICK_DELIVERED: 2, TICK_READ: 3}

_MESSAGE_FIELDS = tuple(f.name for f in dataclasses.fields(Message))
_VARIABLES_AT = _MESSAGE_FIELDS.index("variables")
_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
_MESSAGE_COLS = ", ".join(_MESSAGE_FIELDS)
_JOB_COLS = ", ".join(_JOB_FIELDS)
_EVENT_COLS = ", ".join(f.name for f in dataclasses.fields(Event))
# The claim returns the job's status and attachment in the same statement (two round trips fewer).
# The opt-out check stays a separate primary-key probe: inside RETURNING, SQLite 3.40 plans
# ``optouts.phone = messages.phone`` as a full scan of optouts.
# A message stamped send-started by one session may only be claimed again by that session: only its
# chat can tell whether the earlier try went out (another account would resend it blindly).
_SAME_SESSION = "(m.send_started_session IS NULL OR m.send_started_session = :session)"

_CLAIM_RETURNING = (
    "id, job_id, attempts, max_attempts, phone, body, name, send_started_at,"
    " (SELECT status FROM jobs WHERE jobs.id = messages.job_id),"
    " (SELECT attachment FROM jobs WHERE jobs.id = messages.job_id)"
)

F = TypeVar("F", bound=Callable[..., Any])
# One encoder for every row: json.dumps(..., ensure_ascii=False) builds a new one per call (10 µs/row).
_JSON = json.JSONEncoder(ensure_ascii=False)


_encode_str = json.encoder.encode_basestring  # the C escaper json uses with ensure_ascii=False


def _variables_json(variables: dict[str, str]) -> str:
    """``_JSON.encode(variables)``, byte for byte; for the usual str-to-str dict it skips the encoder's
    per-call set-up (a new C encoder each call: most of the cost on a 1M-row enqueue)."""
    parts = []
    for k, v in variables.items():
        if type(k) is not str or type(v) is not str:
            return _JSON.encode(variables)
        parts.append(f"{_encode_str(k)}: {_encode_str(v)}")
    return "{" + ", ".join(parts) + "}"


def _pid_alive(pid: int | None) -> bool:
    """Whether process ``pid`` (on this host) still runs; a zombie counts as dead."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, owned by someone else
        return True
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rfind(")") + 2 :].split()[0] != "Z"
    return True


def _sql_list(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _describe(path: Path, exc: sqlite3.Error) -> str:
    """One line for a user, naming the file and SQLite's own reason."""
    text = str(exc)
    low = text.lower()
    if "file is not a database" in low or "not a database" in low:
        return f"{path} is not a wabulk database ({text})"
    if "malformed" in low or "corrupt" in low:
        return f"{path} is corrupt ({text}); restore a backup or move it away to start afresh"
    if "readonly" in low or "read-only" in low:
        return f"{path} is read-only ({text}); check the file's and its folder's permissions"
    if "full" in low:
        return f"cannot write {path}: the disk is full ({text})"
    if "locked" in low or "busy" in low:
        return f"{path} is busy: another wabulk process held it too long ({text}); try again"
    if "unable to open" in low:
        with contextlib.suppress(OSError):
            if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
                return f"{path} is on a read-only file system ({text}); wabulk needs to write there"
        return f"cannot open {path} ({text}); check that the folder exists and is writable"
    if "disk i/o" in low:
        return f"cannot read or write {path} ({text})"
    return f"{path}: database error ({text})"


def _guarded(fn: F) -> F:
    """Turn any raw sqlite3 error into errors.DatabaseError naming the file (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(self: Queue, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise errors.DatabaseError(_describe(self.path, exc)) from exc

    return wrapper  # type: ignore[return-value]


class Queue:
    """A handle on one wabulk database file. Not thread-safe: one per thread/process."""

    _applied: list[str]  # migration names recorded in the file when it was opened

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
        create: bool = True,
        busy_timeout: float = BUSY_TIMEOUT_MS / 1000,
    ) -> None:
        """Open (and migrate) the database. ``synchronous='FULL'`` for workers (a sent mark survives
        power loss). ``create=False`` raises DatabaseError when the file does not exist.
        ``busy_timeout`` (seconds, at least 5) is how long a write waits for another process."""
        self.path = Path(path).expanduser()
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise errors.DatabaseError(
                f"wabulk needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer (for RETURNING); "
                f"this Python uses SQLite {sqlite3.sqlite_version}"
            )
        if not self.path.exists():
            if not create:
                raise errors.DatabaseError(f"no wabulk database at {self.path} (nothing enqueued yet?)")
            self._create_file()
        elif self.path.is_dir():
            raise errors.DatabaseError(f"{self.path} is a directory, not a wabulk database")
        try:
            self._open(synchronous.upper(), max(5.0, busy_timeout))
        except sqlite3.Error as exc:
            self.close()
            raise errors.DatabaseError(_describe(self.path, exc)) from exc
        except BaseException:
            self.close()
            raise

    def _create_file(self) -> None:
        # The queue holds phone numbers: private folder (only when we create it; never chmod a folder
        # the user chose) and a 0600 file. SQLite gives -wal/-shm the database file's mode.
        from .settings import ensure_private_dir  # imports shutil: only when creating a file

        parent = self.path.parent
        try:
            if not parent.exists():
                ensure_private_dir(parent)
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        except OSError as exc:
            raise errors.DatabaseError(f"cannot create {self.path} ({exc.strerror or exc})") from exc

    def _open(self, synchronous: str, busy_timeout: float) -> None:
        # isolation_level=None: the driver never opens transactions behind our back; every
        # multi-statement write is an explicit BEGIN IMMEDIATE (huey #123: implicit BEGIN = duplicates).
        conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=busy_timeout)
        self._conn = conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        self._check_is_wabulk(conn)
        # WAL before migrating: the schema is then written with WAL's cheaper commits. The mode is
        # stored in the file, so this is a no-op on every open but the first.
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise errors.DatabaseError(f"{self.path}: cannot switch to WAL journal mode (got {mode})")
        if self._applied != list(schema.NAMES):
            from . import migrations

            migrations.migrate(conn)

    def _check_is_wabulk(self, conn: sqlite3.Connection) -> None:
        """Refuse another program's SQLite file, and one written by a newer wabulk."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        user_tables = {t for t in tables if not t.startswith("sqlite_")}
        self._applied = []
        if not user_tables:
            return  # a new, empty file
        applied: list[str] = []
        if "_sqlite_migrations" in tables:
            applied = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM _sqlite_migrations WHERE migration_set = ? ORDER BY rowid",
                    (schema.MIGRATION_SET,),
                )
            ]
        if not applied:
            raise errors.DatabaseError(
                f"{self.path} is not a wabulk database (it holds other tables: "
                f"{', '.join(sorted(user_tables)[:5])}); choose another file with --db"
            )
        self._applied = applied
        unknown = [name for name in applied if name not in schema.NAMES]
        if unknown:
            raise errors.DatabaseError(
                f"{self.path} was written by a newer wabulk (unknown migration {unknown[0]}); "
                "upgrade wabulk to use it"
            )

    @property
    def conn(self) -> sqlite3.Connection:
        """The underlying connection (for tests and diagnostics; do not write through it)."""
        if self._conn is None:
            raise errors.DatabaseError(f"{self.path}: the queue is closed")
        return self._conn

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- helpers ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self) -> Generator[sqlite3.Connection, None, None]:
        """One short write transaction holding the write lock from the start (BEGIN IMMEDIATE)."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            # e.g. disk full at commit: never leave a transaction open for the next call to inherit.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _event(
        conn: sqlite3.Connection,
        at: float,
        job_id: int | None,
        message_id: int | None,
        kind: str,
        from_status: str | None,
        to_status: str | None,
        detail: str | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO events (at, job_id, message_id, kind, from_status, to_status, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (at, job_id, message_id, kind, from_status, to_status, detail),
        )

    @staticmethod
    def _job_from_row(row: Sequence[Any]) -> Job:
        d = dict(zip(_JOB_FIELDS, row, strict=True))
        d["sessions"] = tuple(json.loads(d["sessions"] or "[]"))
        d["settings"] = json.loads(d["settings"] or "{}")
        return Job(**d)

    @staticmethod
    def _message_from_row(row: Sequence[Any]) -> Message:
        values = list(row)
        raw = values[_VARIABLES_AT]
        values[_VARIABLES_AT] = json.loads(raw) if raw and raw != "{}" else {}
        return Message(*values)

    def _job(self, conn: sqlite3.Connection, job_id: int) -> Job:
        row = conn.execute(f"SELECT {_JOB_COLS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise errors.JobNotFound(f"no job with id {job_id}")
        return self._job_from_row(row)

    def _set_job(
        self,
        conn: sqlite3.Connection,
        job: Job,
        status: str,
        reason: str | None,
        now: float,
        detail: str | None = None,
    ) -> None:
        """Move a job to ``status`` (setting started/finished times) and log it."""
        started = "COALESCE(started_at, :now)" if status == JOB_RUNNING else "started_at"
        finished = ":now" if status in (JOB_COMPLETED, JOB_STOPPED) else "NULL"
        conn.execute(
            f"UPDATE jobs SET status = :status, status_reason = :reason, started_at = {started}, "
            f"finished_at = {finished} WHERE id = :id",
            {"status": status, "reason": reason, "now": now, "id": job.id},
        )
        self._event(conn, now, job.id, None, "job_status", job.status, status, detail or reason)

    def _open_work(self, conn: sqlite3.Connection, job_id: int) -> tuple[int, int]:
        row = conn.execute(
            "SELECT COALESCE(SUM(CASE WHEN status = 'pending' THEN n END), 0), "
            "COALESCE(SUM(CASE WHEN status = 'sending' THEN n END), 0) "
            "FROM job_counts WHERE job_id = ?",
            (job_id,),
        ).fetchone()
        return int(row[0]), int(row[1])

    def _maybe_finish(self, conn: sqlite3.Connection, job_id: int, now: float) -> None:
        """A job with nothing pending or in flight is completed (a stopped one gets its finish time)."""
        pending, sending = self._open_work(conn, job_id)
        if pending or sending:
            return
        job = self._job(conn, job_id)
        if job.status in _ACTIVE_JOB_STATUSES:
            self._set_job(conn, job, JOB_COMPLETED, None, now, "no messages left")
        elif job.status == JOB_STOPPED and job.finished_at is None:
            conn.execute("UPDATE jobs SET finished_at = ? WHERE id = ?", (now, job_id))

    def _counts(self, conn: sqlite3.Connection, job_id: int) -> dict[str, int]:
        counts = dict.fromkeys(MESSAGE_STATUSES, 0)
        for status, n in conn.execute("SELECT status, n FROM job_counts WHERE job_id = ?", (job_id,)):
            counts[status] = int(n)
        return counts

    # --- enqueue --------------------------------------------------------------------------------
    @_guarded
    def enqueue(self, job: NewJob, messages: Iterable[NewMessage]) -> EnqueueStats:
        """Create a job and its messages in ONE transaction (all-or-nothing, streamed).
        Duplicate phones within the job are dropped and counted; opted-out phones are stored as
        ``skipped`` (last_error "opted out", so export shows them) and counted. ``enqueued`` counts
        the messages left to send. If iterating ``messages`` raises, nothing is written and the
        exception propagates."""
        if job.max_attempts < 1:
            raise errors.BadInput(f"max_attempts must be at least 1, not {job.max_attempts}")
        now = self._clock()
        seen = 0
        inserted = 0
        with self._tx() as conn:
            job_id = conn.execute(
                "INSERT INTO jobs (name, template, attachment, status, max_attempts, sessions, settings,"
                " source, created_at, not_before) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                (
                    job.name,
                    job.template,
                    job.attachment,
                    job.max_attempts,
                    json.dumps(list(job.sessions)),
                    json.dumps(job.settings),
                    job.source,
                    now,
                    job.not_before,
                ),
            ).lastrowid
            assert job_id is not None
            sql = (
                "INSERT OR IGNORE INTO messages (job_id, phone, name, variables, body, flags, source_row,"
                " status, attempts, max_attempts, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)"
            )
            rows = (
                (
                    job_id,
                    m.phone,
                    m.name,
                    _variables_json(m.variables) if m.variables else "{}",
                    m.body,
                    json.dumps(list(m.flags)) if m.flags else None,
                    m.source_row,
                    job.max_attempts,
                    now,
                    now,
                )
                for m in messages
            )
            # Stream in chunks: memory stays flat on a 1M-row import, and one transaction keeps it
            # all-or-nothing (a generator that raises rolls everything back).
            while True:
                chunk = list(itertools.islice(rows, ENQUEUE_CHUNK))
                if not chunk:
                    break
                seen += len(chunk)
                added = conn.executemany(sql, chunk).rowcount
                if added:
                    # No per-row insert trigger (m005): every inserted row is 'pending', counted here.
                    conn.execute(
                        "INSERT INTO job_counts (job_id, status, n) VALUES (?, 'pending', ?)"
                        " ON CONFLICT (job_id, status) DO UPDATE SET n = n + excluded.n",
                        (job_id, added),
                    )
                inserted += added
            # Opted-out numbers: probe (job_id, phone) per opt-out instead of per message.
            self._event_select(
                conn,
                now,
                "status",
                PENDING,
                SKIPPED,
                OPTED_OUT,
                "job_id = ? AND status = 'pending' AND phone IN (SELECT phone FROM optouts)",
                (job_id,),
            )
            opted_out = conn.execute(
                "UPDATE messages SET status = 'skipped', last_error = ?, error_class = 'opted_out' "
                "WHERE job_id = ? AND status = 'pending' AND phone IN (SELECT phone FROM optouts)",
                (OPTED_OUT, job_id),
            ).rowcount
            stats = EnqueueStats(
                job_id=job_id, enqueued=inserted - opted_out, duplicates=seen - inserted, opted_out=opted_out
            )
            self._event(
                conn,
                now,
                job_id,
                None,
                "enqueued",
                None,
                JOB_QUEUED,
                f"{stats.enqueued} enqueued, {stats.duplicates} duplicates, {stats.opted_out} opted out",
            )
            self._maybe_finish(conn, job_id, now)
        return stats

    def _event_select(
        self,
        conn: sqlite3.Connection,
        now: float,
        kind: str,
        from_status: str,
        to_status: str,
        detail: str | None,
        where: str,
        params: Sequence[Any],
    ) -> None:
        """Log one event per message matching ``where`` (call before the bulk UPDATE it describes)."""
        conn.execute(
            "INSERT INTO events (at, job_id, message_id, kind, from_status, to_status, detail) "
            f"SELECT ?, job_id, id, ?, ?, ?, ? FROM messages WHERE {where}",
            (now, kind, from_status, to_status, detail, *params),
        )

    # --- jobs -------------------------------------------------------------------------------------
    @_guarded
    def get_job(self, job_id: int) -> Job:
        """The job with this id; raises JobNotFound."""
        return self._job(self.conn, job_id)

    @_guarded
    def list_jobs(self) -> list[Job]:
        """Every job, oldest first."""
        return [self._job_from_row(r) for r in self.conn.execute(f"SELECT {_JOB_COLS} FROM jobs ORDER BY id")]

    @_guarded
    def summaries(self, job_id: int | None = None) -> list[JobSummary]:
        """Jobs (all, or the one given: JobNotFound when missing) with their counts per status."""
        conn = self.conn
        # One read transaction: every job and count comes from the same snapshot.
        conn.execute("BEGIN")
        try:
            jobs = [self._job(conn, job_id)] if job_id is not None else self.list_jobs()
            return [JobSummary(job=j, counts=self._counts(conn, j.id)) for j in jobs]
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    @_guarded
    def counts(self, job_id: int) -> dict[str, int]:
        """Messages per status for one job, every MESSAGE_STATUSES key present (O(1): counters).
        Counts survive :meth:`prune`."""
        conn = self.conn
        self._job(conn, job_id)
        return self._counts(conn, job_id)

    @_guarded
    def pruned_at(self, job_id: int) -> float | None:
        """When this job's messages were pruned (None if never); its counts are still available."""
        row = self.conn.execute("SELECT pruned_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise errors.JobNotFound(f"no job with id {job_id}")
        return row[0]

    @_guarded
    def pause_job(self, job_id: int, reason: str | None = None) -> Job:
        """Pause a queued/running/waiting job (``reason`` records why, e.g. an auto-pause).
        Pausing a paused job only updates the reason. InvalidTransition for stopped/completed."""
        now = self._clock()
        with self._tx() as conn:
            job = self._job(conn, job_id)
            if job.status == JOB_PAUSED:
                if reason is not None:
                    conn.execute("UPDATE jobs SET status_reason = ? WHERE id = ?", (reason, job_id))
            elif job.status in (JOB_QUEUED, JOB_RUNNING, JOB_WAITING_FOR_LOGIN):
                self._set_job(conn, job, JOB_PAUSED, reason, now)
            else:
                raise errors.InvalidTransition(
                    f"job {job_id} is {job.status}; only an active job can be paused"
                )
            return self._job(conn, job_id)

    @_guarded
    def resume_job(self, job_id: int) -> Job:
        """Resume a paused or waiting_for_login job (to running if it started, else queued).
        Resuming a queued/running job does nothing. InvalidTransition for stopped/completed."""
        now = self._clock()
        with self._tx() as conn:
            job = self._job(conn, job_id)
            if job.status in (JOB_PAUSED, JOB_WAITING_FOR_LOGIN):
                self._set_job(
                    conn, job, JOB_RUNNING if job.started_at is not None else JOB_QUEUED, None, now, "resumed"
                )
            elif job.status in (JOB_STOPPED, JOB_COMPLETED):
                raise errors.InvalidTransition(f"job {job_id} is {job.status} and cannot be resumed")
            return self._job(conn, job_id)

    @_guarded
    def stop_job(self, job_id: int) -> Job:
        """Stop a job for good: pending messages become cancelled; in-flight ones finish.
        Stopping a stopped job does nothing; a completed one raises InvalidTransition."""
        now = self._clock()
        with self._tx() as conn:
            job = self._job(conn, job_id)
            if job.status == JOB_STOPPED:
                return job
            if job.status == JOB_COMPLETED:
                raise errors.InvalidTransition(f"job {job_id} is already completed")
            where = "job_id = ? AND status = 'pending'"
            self._event_select(conn, now, "status", PENDING, CANCELLED, "job stopped", where, (job_id,))
            conn.execute(
                f"UPDATE messages SET status = 'cancelled', updated_at = ?, next_attempt_at = NULL "
                f"WHERE {where}",
                (now, job_id),
            )
            self._set_job(conn, job, JOB_STOPPED, None, now, "stopped")
            _, sending = self._open_work(conn, job_id)
            if sending:
                # In-flight messages finish; the job's finish time is set when the last one does.
                conn.execute("UPDATE jobs SET finished_at = NULL WHERE id = ?", (job_id,))
            return self._job(conn, job_id)

    @_guarded
    def set_job_status(self, job_id: int, status: str, reason: str | None = None) -> Job:
        """Set a job's status directly (workers: waiting_for_login, auto-pause with a reason).
        A stopped or completed job cannot change (InvalidTransition); an unknown status is BadInput."""
        if status not in JOB_STATUSES:
            raise errors.BadInput(f"unknown job status {status!r} (one of {', '.join(JOB_STATUSES)})")
        if status == JOB_STOPPED:
            return self.stop_job(job_id)
        now = self._clock()
        with self._tx() as conn:
            job = self._job(conn, job_id)
            if job.status == status:
                if reason is not None and reason != job.status_reason:
                    conn.execute("UPDATE jobs SET status_reason = ? WHERE id = ?", (reason, job_id))
            elif job.status in (JOB_STOPPED, JOB_COMPLETED):
                raise errors.InvalidTransition(f"job {job_id} is {job.status}; it cannot become {status}")
            else:
                self._set_job(conn, job, status, reason, now)
            return self._job(conn, job_id)

    @_guarded
    def retry_failed(
        self, job_id: int | None = None, *, message_id: int | None = None, error_class: str | None = None
    ) -> int:
        """Put failed messages back to pending with attempts reset and the send stamp cleared:
        one job, one message, or every job (``job_id=None``: stopped and pruned jobs are left alone),
        optionally only those with ``error_class``. A completed job goes back to queued.
        Returns how many. JobNotFound/MessageNotFound for bad ids; InvalidTransition for a stopped or
        pruned job, or a ``message_id`` that is not failed."""
        now = self._clock()
        with self._tx() as conn:
            where = [
                "m.status = 'failed'",
                "m.job_id IN (SELECT id FROM jobs WHERE status != 'stopped' AND pruned_at IS NULL)",
            ]
            params: list[Any] = []
            if job_id is not None:
                job = self._job(conn, job_id)
                if job.status == JOB_STOPPED:
                    raise errors.InvalidTransition(f"job {job_id} is stopped; its messages cannot be retried")
                if self.pruned_at(job_id) is not None:
                    raise errors.InvalidTransition(f"job {job_id} was pruned; its messages are gone")
                where.append("m.job_id = ?")
                params.append(job_id)
            if message_id is not None:
                row = conn.execute(
                    "SELECT job_id, status FROM messages WHERE id = ?", (message_id,)
                ).fetchone()
                if row is None:
                    raise errors.MessageNotFound(f"no message with id {message_id}")
                if row[1] != FAILED:
                    raise errors.InvalidTransition(f"message {message_id} is {row[1]}, not failed")
                if self._job(conn, row[0]).status == JOB_STOPPED:
                    raise errors.InvalidTransition(f"message {message_id} belongs to stopped job {row[0]}")
                where.append("m.id = ?")
                params.append(message_id)
            if error_class is not None:
                where.append("m.error_class = ?")
                params.append(error_class)
            cond = " AND ".join(where)
            job_ids = [
                r[0] for r in conn.execute(f"SELECT DISTINCT m.job_id FROM messages m WHERE {cond}", params)
            ]
            conn.execute(
                "INSERT INTO events (at, job_id, message_id, kind, from_status, to_status, detail) "
                "SELECT ?, m.job_id, m.id, 'status', 'failed', 'pending', 'retry'"
                f" FROM messages m WHERE {cond}",
                (now, *params),
            )
            n = conn.execute(
                "UPDATE messages SET status = 'pending', attempts = 0, send_started_at = NULL,"
                " send_started_session = NULL,"
                " next_attempt_at = NULL, last_error = NULL, error_class = NULL, claimed_by = NULL,"
                " lease_until = NULL, updated_at = ?"
                f" WHERE id IN (SELECT m.id FROM messages m WHERE {cond})",
                (now, *params),
            ).rowcount
            for jid in job_ids:
                job = self._job(conn, jid)
                if job.status == JOB_COMPLETED:
                    self._set_job(conn, job, JOB_QUEUED, None, now, "retrying failed messages")
            return n

    @_guarded
    def prune(self, older_than_days: float) -> int:
        """Delete the messages (and their events) of completed/stopped jobs that finished more than
        ``older_than_days`` ago, keeping the jobs and their counts. Never touches pending or
        in-flight work. Returns the number of messages deleted."""
        if older_than_days < 0:
            raise errors.BadInput(f"--older-than must not be negative ({older_than_days:g})")
        now = self._clock()
        cutoff = now - older_than_days * 86400.0
        deleted = 0
        with self._tx() as conn:
            candidates = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM jobs WHERE status IN ('completed', 'stopped') AND finished_at IS NOT NULL"
                    " AND finished_at < ? AND pruned_at IS NULL ORDER BY id",
                    (cutoff,),
                )
            ]
            for jid in candidates:
                pending, sending = self._open_work(conn, jid)
                if pending or sending:
                    continue
                conn.execute(
                    "DELETE FROM events WHERE message_id IN (SELECT id FROM messages WHERE job_id = ?)",
                    (jid,),
                )
                n = conn.execute("DELETE FROM messages WHERE job_id = ?", (jid,)).rowcount
                conn.execute("UPDATE jobs SET pruned_at = ? WHERE id = ?", (now, jid))
                self._event(conn, now, jid, None, "pruned", None, None, f"{n} messages removed")
                deleted += n
        return deleted

    # --- the worker side ----------------------------------------------------------------------------
    @staticmethod
    def _job_filter(job_ids: Sequence[int] | None) -> str:
        """SQL (on alias ``j``) for jobs this session may claim from now."""
        sql = (
            f"j.status IN ({_sql_list(CLAIMABLE_JOB_STATUSES)})"
            " AND (j.not_before IS NULL OR j.not_before <= :now)"
            " AND (j.sessions = '[]' OR EXISTS (SELECT 1 FROM json_each(j.sessions) WHERE value = :session))"
        )
        if job_ids is not None:
            sql += f" AND j.id IN ({', '.join(str(int(i)) for i in job_ids) or 'NULL'})"
        return sql

    def claim_sql(self, job_ids: Sequence[int] | None = None) -> tuple[str, str]:
        """The two claim statements (expired lease first, then pending), for EXPLAIN and tests."""
        jf = self._job_filter(job_ids)
        expired = (
            "UPDATE messages SET claimed_by = :worker, lease_until = :lease, attempts = attempts + 1,"
            " updated_at = :now"
            " WHERE status = 'sending' AND id = ("
            "SELECT m.id FROM messages m INDEXED BY idx_messages_lease JOIN jobs j ON j.id = m.job_id"
            f" WHERE m.status = 'sending' AND m.lease_until < :now AND {jf} AND {_SAME_SESSION}"
            " ORDER BY m.lease_until LIMIT 1)"
            f" RETURNING {_CLAIM_RETURNING}"
        )
        # CROSS JOIN pins the loop order: claimable jobs (few) outside, the partial index inside,
        # so ORDER BY j.id, m.id comes straight from the index (no temp B-tree, no scan). INDEXED BY
        # makes a planner change an error instead of a silent slowdown (and the plan is tested).
        pending = (
            "UPDATE messages SET status = 'sending', claimed_by = :worker, lease_until = :lease,"
            " attempts = attempts + 1, updated_at = :now"
            " WHERE status = 'pending' AND id = ("
            "SELECT m.id FROM jobs j CROSS JOIN messages m INDEXED BY idx_messages_claim"
            f" WHERE {jf} AND m.job_id = j.id AND m.status = 'pending'"
            " AND (m.next_attempt_at IS NULL OR m.next_attempt_at <= :now)"
            f" AND {_SAME_SESSION}"
            " ORDER BY j.id, m.id LIMIT 1)"
            f" RETURNING {_CLAIM_RETURNING}"
        )
        return expired, pending

    @_guarded
    def claim(
        self, worker_id: str, session: str, *, lease_seconds: float, job_ids: Sequence[int] | None = None
    ) -> Claim | None:
        """Lease the next runnable message (FIFO within a job), or None. See the module docstring
        for expired leases, exhausted attempts and opt-outs."""
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        expired_sql, pending_sql = self.claim_sql(job_ids)
        now = self._clock()
        params = {"worker": worker_id, "lease": now + lease_seconds, "now": now, "session": session}
        with self._tx() as conn:
            # Expired leases are rare: one probe of a tiny partial index before the two UPDATEs.
            any_expired = (
                conn.execute(
                    "SELECT 1 FROM messages WHERE status = 'sending' AND lease_until < ? LIMIT 1", (now,)
                ).fetchone()
                is not None
            )
            if any_expired:
                self._settle_stopped(conn, now)
            while True:
                row = None
                if any_expired:
                    from_status = SENDING
                    row = conn.execute(expired_sql, params).fetchone()
                if row is None:
                    from_status = PENDING
                    row = conn.execute(pending_sql, params).fetchone()
                if row is None:
                    return None
                mid, job_id, attempts, max_attempts, phone, body, name, stamp, job_status, attachment = row
                if conn.execute("SELECT 1 FROM optouts WHERE phone = ?", (phone,)).fetchone():
                    why = OPTED_OUT if stamp is None else f"{OPTED_OUT} (an earlier try may have gone out)"
                    self._settle(conn, mid, job_id, SKIPPED, from_status, why, "opted_out", now)
                    continue
                if from_status == SENDING and stamp is None and attempts > max_attempts:
                    self._settle(
                        conn,
                        mid,
                        job_id,
                        FAILED,
                        SENDING,
                        "attempts exhausted: lease expired (worker died?)",
                        "attempts_exhausted",
                        now,
                    )
                    continue
                detail = f"worker {worker_id} attempt {attempts}"
                if from_status == SENDING:
                    detail += (
                        "; lease expired; reclaimed"
                        if stamp is None
                        else "; lease expired after send started; needs verification"
                    )
                self._event(conn, now, job_id, mid, "claim", from_status, SENDING, detail)
                if job_status == JOB_QUEUED:
                    self._set_job(conn, self._job(conn, job_id), JOB_RUNNING, None, now, "first claim")
                return Claim(
                    message_id=mid,
                    job_id=job_id,
                    worker_id=worker_id,
                    attempt=attempts,
                    phone=phone,
                    body=body,
                    name=name,
                    attachment=attachment,
                    lease_until=now + lease_seconds,
                    send_started_at=stamp,
                )

    def _settle(
        self,
        conn: sqlite3.Connection,
        mid: int,
        job_id: int,
        status: str,
        from_status: str,
        error: str,
        error_class: str,
        now: float,
    ) -> None:
        """Within a claim: end a just-claimed message without spending an attempt."""
        conn.execute(
            "UPDATE messages SET status = ?, attempts = attempts - 1, claimed_by = NULL, lease_until = NULL,"
            " last_error = ?, error_class = ?, updated_at = ? WHERE id = ?",
            (status, error, error_class, now, mid),
        )
        self._event(conn, now, job_id, mid, "status", from_status, status, error)
        self._maybe_finish(conn, job_id, now)

    def _settle_stopped(self, conn: sqlite3.Connection, now: float) -> None:
        """Expired leases of stopped jobs will never be claimed: close them honestly."""
        rows = conn.execute(
            "SELECT m.id, m.job_id, m.send_started_at FROM messages m JOIN jobs j ON j.id = m.job_id"
            " WHERE m.status = 'sending' AND m.lease_until < ? AND j.status = 'stopped'",
            (now,),
        ).fetchall()
        for mid, job_id, stamp in rows:
            if stamp is None:
                status, error = CANCELLED, "job stopped"
            else:
                status, error = FAILED, "outcome unknown: job stopped while a send was in progress"
            conn.execute(
                "UPDATE messages SET status = ?, claimed_by = NULL, lease_until = NULL, last_error = ?,"
                " error_class = ?, updated_at = ? WHERE id = ?",
                (status, error, None if stamp is None else "unknown_outcome", now, mid),
            )
            self._event(conn, now, job_id, mid, "status", SENDING, status, error)
            self._maybe_finish(conn, job_id, now)

    def _fenced(
        self,
        conn: sqlite3.Connection,
        claim: Claim,
        set_sql: str,
        params: Sequence[Any],
        *,
        now: float,
        to: str,
        detail: str,
        kind: str = "status",
        extra_where: str = "",
        extra_params: Sequence[Any] = (),
    ) -> None:
        """Apply ``SET set_sql`` only while the claim still owns the message, and log it as a ``kind``
        event from sending to ``to`` with ``detail`` (one step, one transaction); else LeaseLost."""
        cur = conn.execute(
            f"UPDATE messages SET {set_sql} WHERE id = ? AND status = 'sending' AND claimed_by = ?"
            f" AND attempts = ?{extra_where}",
            (*params, claim.message_id, claim.worker_id, claim.attempt, *extra_params),
        )
        if cur.rowcount != 1:
            row = conn.execute(
                "SELECT status, claimed_by, attempts, lease_until FROM messages WHERE id = ?",
                (claim.message_id,),
            ).fetchone()
            if row is None:
                raise errors.LeaseLost(f"message {claim.message_id} no longer exists")
            status, owner, attempts, lease = row
            if status == SENDING and owner == claim.worker_id and attempts == claim.attempt:
                raise errors.LeaseLost(
                    f"lease on message {claim.message_id} expired at {lease:.3f}; not sending it"
                )
            raise errors.LeaseLost(
                f"message {claim.message_id} is no longer ours (now {status}, attempt {attempts}, "
                f"owner {owner or 'none'})"
            )
        self._event(conn, now, claim.job_id, claim.message_id, kind, SENDING, to, detail)

    @_guarded
    def mark_send_started(self, claim: Claim) -> None:
        """Durably stamp that the send action is about to happen (fenced; LeaseLost also when the
        lease has expired: a zombie must not click send). Keeps the earliest stamp."""
        now = self._clock()
        with self._tx() as conn:
            self._fenced(
                conn,
                claim,
                "send_started_at = COALESCE(send_started_at, ?), updated_at = ?,"
                " send_started_session = COALESCE(send_started_session,"
                " (SELECT session FROM workers WHERE id = claimed_by))",
                (now, now),
                now=now,
                kind="send_started",
                to=SENDING,
                detail=f"worker {claim.worker_id} attempt {claim.attempt}",
                extra_where=" AND lease_until > ?",
                extra_params=(now,),
            )

    @_guarded
    def extend_lease(self, claim: Claim, seconds: float) -> Claim:
        """Push the lease to now + ``seconds`` (fenced). Returns the updated claim."""
        now = self._clock()
        until = now + seconds
        with self._tx() as conn:
            self._fenced(
                conn,
                claim,
                "lease_until = ?, updated_at = ?",
                (until, now),
                now=now,
                kind="lease",
                to=SENDING,
                detail=f"extended to {until:.3f}",
            )
        return dataclasses.replace(claim, lease_until=until)

    @_guarded
    def mark_sent(self, claim: Claim, *, tick: str, session: str, at: float | None = None) -> None:
        """WhatsApp accepted the message (``tick`` left the clock). Fenced; clears the lease."""
        now = self._clock()
        sent_at = now if at is None else at
        delivered = sent_at if _TICK_RANK.get(tick, 0) >= 2 else None
        read = sent_at if tick == TICK_READ else None
        with self._tx() as conn:
            self._fenced(
                conn,
                claim,
                "status = 'sent', sent_at = ?, receipt = ?, delivered_at = ?, read_at = ?,"
                " sent_by_session = ?, claimed_by = NULL, lease_until = NULL, last_error = NULL,"
                " error_class = NULL, updated_at = ?",
                (sent_at, tick, delivered, read, session, now),
                now=now,
                to=SENT,
                detail=f"tick {tick} via session {session}",
            )
            self._maybe_finish(conn, claim.job_id, now)

    @_guarded
    def schedule_retry(self, claim: Claim, *, error: str, error_class: str, delay: float) -> None:
        """A transient failure: back to pending, due in ``delay`` seconds, keeping the send stamp (the
        next claim verifies). With attempts used up, the message fails ("attempts exhausted: …")."""
        now = self._clock()
        with self._tx() as conn:
            row = conn.execute(
                "SELECT max_attempts FROM messages WHERE id = ?", (claim.message_id,)
            ).fetchone()
            if row is not None and claim.attempt >= row[0]:
                self._fail(conn, claim, f"attempts exhausted: {error}", error_class, now)
                return
            self._fenced(
                conn,
                claim,
                "status = 'pending', next_attempt_at = ?, last_error = ?,"
                " error_class = ?, claimed_by = NULL, lease_until = NULL, updated_at = ?",
                (now + max(0.0, delay), error, error_class, now),
                now=now,
                to=PENDING,
                detail=f"retry in {max(0.0, delay):g}s: {error}",
            )

    @_guarded
    def mark_failed(self, claim: Claim, *, error: str, error_class: str) -> None:
        """A permanent failure (fenced)."""
        now = self._clock()
        with self._tx() as conn:
            self._fail(conn, claim, error, error_class, now)

    def _fail(self, conn: sqlite3.Connection, claim: Claim, error: str, error_class: str, now: float) -> None:
        """Within a transaction: the claimed message fails for good (fenced), with its event."""
        self._fenced(
            conn,
            claim,
            "status = 'failed', last_error = ?, error_class = ?,"
            " claimed_by = NULL, lease_until = NULL, updated_at = ?",
            (error, error_class, now),
            now=now,
            to=FAILED,
            detail=error,
        )
        self._maybe_finish(conn, claim.job_id, now)

    @_guarded
    def release(self, claim: Claim, *, reason: str, delay: float = 0.0) -> None:
        """Give the message back untried (pause, shutdown, logged out, quiet hours): pending, no
        attempt spent, send stamp kept. With ``delay`` > 0 it is not claimable again for that many
        seconds (e.g. until the recipient's quiet hours end). Fenced."""
        now = self._clock()
        due = "next_attempt_at = ?, " if delay > 0 else ""
        params: tuple[Any, ...] = (now + delay, now) if delay > 0 else (now,)
        with self._tx() as conn:
            self._fenced(
                conn,
                claim,
                f"status = 'pending', attempts = attempts - 1, claimed_by = NULL,"
                f" lease_until = NULL, {due}updated_at = ?",
                params,
                now=now,
                to=PENDING,
                detail=f"released: {reason}" + (f" (due in {delay:g}s)" if delay > 0 else ""),
            )

    def defer(self, claim: Claim, *, until: float, reason: str) -> None:
        """Give the message back untried, not to be claimed before ``until`` (e.g. the end of the
        recipient's quiet hours). Fenced; no attempt spent; the send stamp is kept."""
        self.release(claim, reason=reason, delay=max(until - self._clock(), 0.001))

    @_guarded
    def record_receipt(self, message_id: int, tick: str, at: float) -> None:
        """Record a later tick (delivered/read) on a sent message; never downgrades."""
        now = self._clock()
        rank = _TICK_RANK.get(tick)
        if rank is None:
            raise errors.BadInput(f"unknown tick {tick!r}")
        with self._tx() as conn:
            row = conn.execute("SELECT job_id, receipt FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise errors.MessageNotFound(f"no message with id {message_id}")
            job_id, old = row
            if _TICK_RANK.get(old or "", 0) >= rank:
                return
            conn.execute(
                "UPDATE messages SET receipt = ?,"
                " delivered_at = CASE WHEN ? >= 2 THEN COALESCE(delivered_at, ?) ELSE delivered_at END,"
                " read_at = CASE WHEN ? >= 3 THEN COALESCE(read_at, ?) ELSE read_at END,"
                " updated_at = ? WHERE id = ?",
                (tick, rank, at, rank, at, now, message_id),
            )
            self._event(conn, now, job_id, message_id, "receipt", old, tick, None)

    # --- receipts (wabulk track) ------------------------------------------------------------------
    @_guarded
    def receipts_to_track(
        self,
        session: str,
        *,
        sent_before: float,
        checked_before: float,
        limit: int,
        job_id: int | None = None,
    ) -> list[Message]:
        """Sent messages of ``session`` not yet read, sent before ``sent_before`` and not looked at since
        ``checked_before``, oldest first, at most ``limit`` (``idx_messages_track``)."""
        sql = (
            f"SELECT {_MESSAGE_COLS} FROM messages INDEXED BY idx_messages_track"
            " WHERE status = 'sent' AND read_at IS NULL AND sent_by_session = ? AND sent_at < ?"
            " AND (receipt_checked_at IS NULL OR receipt_checked_at < ?)"
        )
        params: list[Any] = [session, sent_before, checked_before]
        if job_id is not None:
            sql += " AND job_id = ?"
            params.append(job_id)
        sql += " ORDER BY sent_at, id LIMIT ?"
        params.append(max(0, int(limit)))
        return [self._message_from_row(r) for r in self.conn.execute(sql, params)]

    @_guarded
    def mark_receipt_checked(self, message_id: int, at: float) -> None:
        """Remember that the chat was looked at for this message's ticks (the tracking order)."""
        self.conn.execute("UPDATE messages SET receipt_checked_at = ? WHERE id = ?", (at, message_id))

    @_guarded
    def receipt_counts(self, job_id: int, *, undelivered_before: float) -> dict[str, int]:
        """``delivered``, ``read`` (trigger-kept totals, O(1)) and ``undelivered`` (sent before
        ``undelivered_before`` and still without a delivered tick: a range of
        ``idx_messages_undelivered``) for one job."""
        conn = self.conn
        row = conn.execute(
            "SELECT delivered, read FROM receipt_counts WHERE job_id = ?", (job_id,)
        ).fetchone()
        undelivered = conn.execute(
            "SELECT count(*) FROM messages INDEXED BY idx_messages_undelivered"
            " WHERE job_id = ? AND status = 'sent' AND delivered_at IS NULL AND sent_at < ?",
            (job_id, undelivered_before),
        ).fetchone()[0]
        return {
            "delivered": int(row[0]) if row else 0,
            "read": int(row[1]) if row else 0,
            "undelivered": int(undelivered),
        }

    def iter_undelivered(self, job_id: int, *, before: float, page_size: int = 1000) -> Iterator[Message]:
        """A job's messages sent before ``before`` and still without a delivered tick, oldest first,
        streamed page by page (``idx_messages_undelivered``). JobNotFound for a bad id."""
        try:
            self._job(self.conn, job_id)
        except sqlite3.Error as exc:
            raise errors.DatabaseError(_describe(self.path, exc)) from exc
        after: tuple[float, int] = (float("-inf"), 0)
        while True:
            try:
                rows = self.conn.execute(
                    f"SELECT {_MESSAGE_COLS} FROM messages INDEXED BY idx_messages_undelivered"
                    " WHERE job_id = ? AND status = 'sent' AND delivered_at IS NULL AND sent_at < ?"
                    " AND (sent_at, id) > (?, ?) ORDER BY sent_at, id LIMIT ?",
                    (job_id, before, after[0], after[1], page_size),
                ).fetchall()
            except sqlite3.Error as exc:
                raise errors.DatabaseError(_describe(self.path, exc)) from exc
            if not rows:
                return
            for row in rows:
                m = self._message_from_row(row)
                yield m
            after = (float(m.sent_at or 0.0), m.id)

    @_guarded
    def sent_count(self, session: str, since: float) -> int:
        """Messages marked sent by ``session`` at or after ``since`` (daily caps; indexed)."""
        row = self.conn.execute(
            "SELECT count(*) FROM messages WHERE sent_by_session = ? AND sent_at >= ?", (session, since)
        ).fetchone()
        return int(row[0])

    @_guarded
    def first_sent_at(self, session: str) -> float | None:
        """When ``session`` first sent a message still in the database (warm-up ramps); None if never.
        One index probe (pruned jobs' messages no longer count)."""
        row = self.conn.execute(
            "SELECT min(sent_at) FROM messages WHERE sent_by_session = ?", (session,)
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    @_guarded
    def sessions_that_sent(self) -> list[str]:
        """Every session that has sent a message still in the database (``status``'s per-session rows)."""
        rows = self.conn.execute(
            "SELECT DISTINCT sent_by_session FROM messages WHERE sent_by_session IS NOT NULL ORDER BY 1"
        ).fetchall()
        return [str(r[0]) for r in rows]

    @_guarded
    def last_sent_at(self, session: str) -> float | None:
        """When ``session`` last sent a message (the fleet's "next send" estimate); None if never.
        Read-only, one index probe."""
        row = self.conn.execute(
            "SELECT max(sent_at) FROM messages WHERE sent_by_session = ?", (session,)
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # --- workers ----------------------------------------------------------------------------------
    @_guarded
    def register_worker(self, session: str, *, pid: int, host: str, stale_after: float = 30.0) -> str:
        """Register a worker for ``session`` and return its id. SessionBusy when a live worker
        (heartbeat within ``stale_after`` seconds) already has the session; stale ones are replaced."""
        now = self._clock()
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT id, pid, host, heartbeat_at FROM workers WHERE session = ?", (session,)
            ).fetchall()
            for _wid, wpid, whost, beat in rows:
                # A worker on this host whose process is gone (kill -9, power cut of the process) is
                # stale at once: its restart must not wait for the heartbeat to age.
                if beat >= now - stale_after and not (whost == host and not _pid_alive(wpid)):
                    raise errors.SessionBusy(
                        f"session {session!r} is already used by a running worker (pid {wpid} on {whost}, "
                        f"last heartbeat {max(0.0, now - beat):.0f}s ago); stop it first or use another "
                        "session"
                    )
            conn.execute("DELETE FROM workers WHERE session = ?", (session,))
            import uuid  # here, not at the top: uuid imports platform, and `status` never registers

            worker_id = uuid.uuid4().hex
            conn.execute(
                "INSERT INTO workers (id, session, pid, host, started_at, heartbeat_at, state)"
                " VALUES (?, ?, ?, ?, ?, ?, 'starting')",
                (worker_id, session, pid, host, now, now),
            )
            self._event(
                conn,
                now,
                None,
                None,
                "worker",
                None,
                "registered",
                f"worker {worker_id} session {session} pid {pid} host {host}"
                + (f" (replaced {len(rows)} stale)" if rows else ""),
            )
        return worker_id

    @_guarded
    def heartbeat(self, worker_id: str, state: str | None = None) -> None:
        """Record that the worker is alive (and its state). SessionBusy when its registration is gone
        (another process took the session over after this one went stale)."""
        now = self._clock()
        n = self.conn.execute(
            "UPDATE workers SET heartbeat_at = ?, state = COALESCE(?, state) WHERE id = ?",
            (now, state, worker_id),
        ).rowcount
        if n != 1:
            raise errors.SessionBusy(
                f"worker {worker_id} is no longer registered (another process took over its session)"
            )

    @_guarded
    def unregister_worker(self, worker_id: str) -> None:
        """Remove the worker's registration (idempotent)."""
        now = self._clock()
        with self._tx() as conn:
            if conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,)).rowcount:
                self._event(
                    conn, now, None, None, "worker", "registered", "unregistered", f"worker {worker_id}"
                )

    @_guarded
    def workers(self, *, stale_after: float = 30.0) -> list[WorkerInfo]:
        """Every registered worker, with ``alive`` = heartbeat within ``stale_after`` seconds."""
        now = self._clock()
        return [
            WorkerInfo(
                id=r[0],
                session=r[1],
                pid=r[2],
                host=r[3],
                started_at=r[4],
                heartbeat_at=r[5],
                alive=r[5] >= now - stale_after,
                state=r[6],
            )
            for r in self.conn.execute(
                "SELECT id, session, pid, host, started_at, heartbeat_at, state FROM workers"
                " ORDER BY session, started_at"
            )
        ]

    # --- opt-outs -----------------------------------------------------------------------------------
    @_guarded
    def add_optouts(self, phones: Iterable[str], reason: str | None = None) -> int:
        """Add E.164 numbers to the opt-out list; returns how many were new. Pending messages to them
        are skipped when next claimed."""
        now = self._clock()
        with self._tx() as conn:
            return conn.executemany(
                "INSERT OR IGNORE INTO optouts (phone, added_at, reason) VALUES (?, ?, ?)",
                ((p, now, reason) for p in phones),
            ).rowcount

    @_guarded
    def remove_optouts(self, phones: Iterable[str]) -> int:
        """Remove numbers from the opt-out list; returns how many were there."""
        with self._tx() as conn:
            return conn.executemany("DELETE FROM optouts WHERE phone = ?", ((p,) for p in phones)).rowcount

    @_guarded
    def list_optouts(self) -> list[tuple[str, float, str | None]]:
        """Every opt-out as (phone, added_at, reason), by phone."""
        return [
            (r[0], r[1], r[2])
            for r in self.conn.execute("SELECT phone, added_at, reason FROM optouts ORDER BY phone")
        ]

    @_guarded
    def is_opted_out(self, phone: str) -> bool:
        """Whether this E.164 number is on the opt-out list."""
        return self.conn.execute("SELECT 1 FROM optouts WHERE phone = ?", (phone,)).fetchone() is not None

    # --- reading ------------------------------------------------------------------------------------
    @_guarded
    def get_message(self, message_id: int) -> Message:
        """One message; raises MessageNotFound."""
        row = self.conn.execute(
            f"SELECT {_MESSAGE_COLS} FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        if row is None:
            raise errors.MessageNotFound(f"no message with id {message_id}")
        return self._message_from_row(row)

    def iter_messages(self, job_id: int, *, page_size: int = 1000) -> Iterator[Message]:
        """A job's messages by id, streamed page by page (no read transaction stays open between
        pages, so it is safe to write while iterating). JobNotFound for a bad id."""
        try:
            self._job(self.conn, job_id)
            lo, hi = self.conn.execute(
                "SELECT min(id), max(id) FROM messages WHERE job_id = ?", (job_id,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise errors.DatabaseError(_describe(self.path, exc)) from exc
        if lo is None:
            return
        after = lo - 1
        while True:
            try:
                # ``+job_id`` keeps the planner on the rowid range: a job's ids are one contiguous
                # block (enqueued in one transaction), so each page reads just its own rows.
                rows = self.conn.execute(
                    f"SELECT {_MESSAGE_COLS} FROM messages WHERE +job_id = ? AND id > ? AND id <= ?"
                    " ORDER BY id LIMIT ?",
                    (job_id, after, hi, page_size),
                ).fetchall()
            except sqlite3.Error as exc:
                raise errors.DatabaseError(_describe(self.path, exc)) from exc
            if not rows:
                return
            for row in rows:
                yield self._message_from_row(row)
            after = rows[-1][0]

    @_guarded
    def events(
        self, *, job_id: int | None = None, message_id: int | None = None, limit: int | None = None
    ) -> list[Event]:
        """History, oldest first (the newest last); ``limit`` keeps the newest N."""
        where, params = [], []
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        if message_id is not None:
            where.append("message_id = ?")
            params.append(message_id)
        sql = f"SELECT {_EVENT_COLS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self.conn.execute(sql, params).fetchall()
        return [Event(*r) for r in reversed(rows)]
