"""The queue's connection, transactions and shared helpers (the base every ``store`` part builds on)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from wabulk import errors, schema
from wabulk.models import (
    JOB_COMPLETED,
    JOB_PAUSED,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_STOPPED,
    JOB_WAITING_FOR_LOGIN,
    MESSAGE_STATUSES,
    TICK_DELIVERED,
    TICK_READ,
    TICK_SENT,
    Event,
    Job,
    Message,
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
_PARAMS_AT = _MESSAGE_FIELDS.index("params")
_BILLABLE_AT = _MESSAGE_FIELDS.index("billable")
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
    "id, job_id, attempts, max_attempts, phone, body, name, send_started_at, send_started_session,"
    " send_snapshot, sends,"
    " (SELECT status FROM jobs WHERE jobs.id = messages.job_id),"
    " (SELECT attachment FROM jobs WHERE jobs.id = messages.job_id),"
    " (SELECT template_name FROM jobs WHERE jobs.id = messages.job_id),"
    " (SELECT template_lang FROM jobs WHERE jobs.id = messages.job_id),"
    " params"
)

F = TypeVar("F", bound=Callable[..., Any])
_Q = TypeVar("_Q", bound="QueueBase")
_K = TypeVar("_K")
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


def _looks_like_wabulk(pid: int) -> bool:
    """Whether live process ``pid`` can be a wabulk worker (a Python process), so that a recycled pid of
    another program does not hold a session forever. True when it cannot be told."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().lower()
    except OSError:
        return True
    return b"python" in cmdline or b"wabulk" in cmdline


def params_json(params: Sequence[str]) -> str | None:
    """A template's rendered parameters as stored in ``messages.params`` (None: no parameters)."""
    return _JSON.encode(list(params)) if params else None


def params_from_json(raw: str | None) -> tuple[str, ...]:
    """The inverse of :func:`params_json`."""
    return tuple(json.loads(raw)) if raw else ()


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


_BUSY_WORDS = ("database is locked", "database is busy", "database table is locked")
# Network file systems break SQLite's locking (and so the claim's exclusivity): warn when the file is on one.
NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "sshfs", "9p", "afs", "glusterfs", "ceph")


def _is_busy(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and any(w in str(exc).lower() for w in _BUSY_WORDS)


def _guarded(fn: F) -> F:
    """Turn any raw sqlite3 error into errors.DatabaseError naming the file (never a traceback).

    "Database is busy" (another process held the write lock longer than ``busy_timeout``, e.g. an old
    wabulk's long import) is retried with a growing pause for up to ``busy_retry_for`` seconds instead of
    ending a worker: every guarded method is one or more whole transactions, so running it again is safe."""

    @functools.wraps(fn)
    def wrapper(self: QueueBase, *args: Any, **kwargs: Any) -> Any:
        pause = 0.05
        deadline: float | None = None
        while True:
            try:
                return fn(self, *args, **kwargs)
            except sqlite3.Error as exc:
                if _is_busy(exc) and self._conn is not None and not self._conn.in_transaction:
                    now = time.monotonic()
                    deadline = now + self.busy_retry_for if deadline is None else deadline
                    if now < deadline:
                        self.busy_sleep(pause)
                        pause = min(pause * 2, 5.0)
                        continue
                raise errors.DatabaseError(_describe(self.path, exc)) from exc

    return wrapper  # type: ignore[return-value]


def _guarded_once(fn: F) -> F:
    """Like :func:`_guarded` without the retry, for methods that consume an iterator (enqueue)."""

    @functools.wraps(fn)
    def wrapper(self: QueueBase, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise errors.DatabaseError(_describe(self.path, exc)) from exc

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def write_tx(conn: sqlite3.Connection) -> Generator[sqlite3.Connection, None, None]:
    """One short write transaction on an autocommit connection, holding the write lock from the start
    (BEGIN IMMEDIATE): committed when the block ends, rolled back when it raises. Shared by the queue
    (:meth:`QueueBase._tx`) and the notification tables (:mod:`wabulk.notify.store`)."""
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


def network_filesystem(path: Path, mounts: str | None = None) -> str | None:
    """The type of the network file system ``path`` lives on (``nfs4``, ``cifs``, ``fuse.sshfs``…), or None.
    Reads ``/proc/mounts`` (``mounts`` for tests); None where there is no such file."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    target = str(path.expanduser().absolute())
    best, fstype = "", ""
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, fstype = point, parts[2]
    if fstype in NETWORK_FS or fstype.startswith(("nfs", "fuse.sshfs", "smb")):
        return fstype
    return None


class QueueBase:
    """A handle on one wabulk database file. Not thread-safe: one per thread/process."""

    _applied: list[str]  # migration names recorded in the file when it was opened
    read_only: bool = False  # opened mode=ro: this user cannot write the file (a backup copy, say)

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
        self._synchronous = synchronous.upper()
        self.busy_retry_for = 300.0  # seconds a busy database is retried before giving up
        self.busy_sleep: Callable[[float], None] = time.sleep
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
        from wabulk.settings import ensure_private_dir  # imports shutil: only when creating a file

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
        # Read-only when this user cannot write the file, or cannot create the WAL's -shm beside it.
        shm = self.path.with_name(self.path.name + "-shm")
        self.read_only = not os.access(self.path, os.W_OK) or (
            not shm.exists() and not os.access(self.path.parent, os.W_OK)
        )
        if self.read_only:
            conn = self._connect_read_only(busy_timeout)
        else:
            conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=busy_timeout)
        self._conn = conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        self._check_is_wabulk(conn)
        if self.read_only:
            # A backup copy or another user's file: readable as it is, never migrated in place.
            if self._applied != list(schema.NAMES):
                raise errors.DatabaseError(
                    f"{self.path} is read-only and was written by an older wabulk (its schema needs an "
                    "upgrade): copy it to a writable folder, or make it writable, and run the command again"
                )
            return
        # WAL before migrating: the schema is then written with WAL's cheaper commits. The mode is
        # stored in the file, so this is a no-op on every open but the first.
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise errors.DatabaseError(f"{self.path}: cannot switch to WAL journal mode (got {mode})")
        if self._applied != list(schema.NAMES):
            from wabulk import migrations

            migrations.migrate(conn)

    def _connect_read_only(self, busy_timeout: float) -> sqlite3.Connection:
        """A read-only connection on a file this user cannot write (``mode=ro``). A WAL file whose ``-shm``
        cannot be created (a backup copy in a read-only folder) is opened ``immutable``: no writer can be
        active on it then, as an active writer keeps the ``-shm`` file."""
        uri = "file:" + urllib.parse.quote(str(self.path.absolute())) + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=busy_timeout)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
        return sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None, timeout=busy_timeout)

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

    def __enter__(self: _Q) -> _Q:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- helpers ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self, *, durable: bool = False) -> Generator[sqlite3.Connection, None, None]:
        """One short write transaction holding the write lock from the start (BEGIN IMMEDIATE).
        ``durable``: commit with ``synchronous=FULL`` whatever the connection's level (control commands:
        an acknowledged stop or opt-out must survive a power cut)."""
        conn = self.conn
        raise_level = durable and self._synchronous not in ("FULL", "EXTRA")
        if raise_level:
            conn.execute("PRAGMA synchronous = FULL")
        try:
            with write_tx(conn):
                yield conn
        finally:
            if raise_level:
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")

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

    def _settle_stopped(self, conn: sqlite3.Connection, now: float) -> int:
        """Settle expired leases of stopped jobs (``ClaimsMixin`` implements it; jobs' stop uses it)."""
        raise NotImplementedError

    @staticmethod
    def _log_send(conn: sqlite3.Connection, session: str, at: float, message_id: int) -> None:
        """Count ``message_id`` once in the session's daily cap (``send_log``), at its first press."""
        conn.execute(
            "INSERT INTO send_log (session, at, message_id) SELECT ?, ?, ?"
            " WHERE NOT EXISTS (SELECT 1 FROM send_log WHERE message_id = ?)",
            (session, at, message_id, message_id),
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
        values[_PARAMS_AT] = params_from_json(values[_PARAMS_AT])
        if values[_BILLABLE_AT] is not None:
            values[_BILLABLE_AT] = bool(values[_BILLABLE_AT])
        return Message(*values)

    def _message_pages(
        self,
        sql: str,
        params: Callable[[_K], Sequence[Any]],
        after: _K,
        key: Callable[[Message], _K],
    ) -> Iterator[Message]:
        """Messages streamed page by page by keyset: ``sql`` (with ``params(after)``) reads the page after
        ``after``; ``key`` of a page's last message is where the next page starts. Each page is its own
        statement, so no read transaction stays open between pages; the first empty page ends it."""
        while True:
            try:
                rows = self.conn.execute(sql, params(after)).fetchall()
            except sqlite3.Error as exc:
                raise errors.DatabaseError(_describe(self.path, exc)) from exc
            if not rows:
                return
            for row in rows:
                m = self._message_from_row(row)
                yield m
            after = key(m)

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
