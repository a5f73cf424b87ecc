"""``wabulk backup FILE``: a consistent copy of the queue database while workers keep running.

SQLite's online backup API copies the pages of a live WAL database as of one read transaction, so the copy
is a database the workers could have left at some instant (never a torn file, as ``cp`` of a busy database
with its ``-wal`` can be). The copy is written next to the target and renamed into place only when it is
complete and passes ``PRAGMA quick_check``; it is private (0600), as the queue holds phone numbers.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInput, DatabaseError

PAGES_PER_STEP = 1024  # copy in slices so writers are not held off for the whole copy


@dataclass(frozen=True)
class BackupResult:
    """Where the copy went and how big it is."""

    path: Path
    bytes: int


def backup(db: Path, dest: Path, *, overwrite: bool = False) -> BackupResult:
    """Copy the wabulk database ``db`` to ``dest`` (BadInput when ``dest`` exists and not ``overwrite``,
    or is the database itself; DatabaseError when ``db`` is not a wabulk database)."""
    from .queue import Queue

    dest = dest.expanduser()
    if dest.exists() and not overwrite:
        raise BadInput(f"{dest} exists: choose another file or pass --force")
    if dest.exists() and db.exists() and dest.resolve() == db.expanduser().resolve():
        raise BadInput(f"{dest} is the database itself")
    if not dest.parent.is_dir():
        raise BadInput(f"{dest.parent} is not a directory")
    tmp = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    with Queue(db, create=False) as q:  # refuses another program's file, migrates an old one
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        os.close(fd)
        try:
            out = sqlite3.connect(str(tmp))
            try:
                q.conn.backup(out, pages=PAGES_PER_STEP)
                # The copy keeps WAL mode in its header; a backup is one self-contained file.
                out.execute("PRAGMA journal_mode = DELETE")
                check = out.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                out.close()
            if check != "ok":
                raise DatabaseError(f"the copy failed its integrity check ({check}); {db} was not changed")
            os.replace(tmp, dest)
        except sqlite3.Error as exc:
            tmp.unlink(missing_ok=True)
            raise DatabaseError(f"backup to {dest} failed: {exc}") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return BackupResult(dest, dest.stat().st_size)
