"""Worker registrations and heartbeats."""

from __future__ import annotations

from wabulk import errors
from wabulk.models import (
    WorkerInfo,
)

from .base import (
    QueueBase,
    _guarded,
    _pid_alive,
)


class WorkersMixin(QueueBase):
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
