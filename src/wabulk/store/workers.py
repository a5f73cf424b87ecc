"""Worker registrations and heartbeats; sessions (accounts): their pauses, pace, device link and provider."""

from __future__ import annotations

import json
from typing import Any

from wabulk import errors, identity
from wabulk.models import (
    AUTO_PAUSE_PREFIX,
    WorkerInfo,
)

from .base import (
    QueueBase,
    _guarded,
    _looks_like_wabulk,
    _pid_alive,
)


class WorkersMixin(QueueBase):
    # --- workers ----------------------------------------------------------------------------------
    @_guarded
    def register_worker(
        self,
        session: str,
        *,
        pid: int,
        host: str,
        stale_after: float = 30.0,
        daily_cap: int | None = None,
    ) -> str:
        """Register a worker for ``session`` and return its id (random: a worker instance, never reused).
        ``host`` is the worker's place (``identity.place_key()``: hostname, boot, PID namespace); only in the
        same place can its ``pid`` be tested. SessionBusy when a live worker already has the session (in our
        place: its process lives; elsewhere: its heartbeat is within ``stale_after`` seconds); stale ones
        are replaced. ``daily_cap`` is the cap it runs with (0 = none), so ``status`` shows the real one."""
        now = self._clock()
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT id, pid, host, heartbeat_at FROM workers WHERE session = ?", (session,)
            ).fetchall()
            for _wid, wpid, whost, beat in rows:
                # In this place (host, boot, PID namespace: ``identity.place_key``) the process decides,
                # not the heartbeat: a worker whose process is gone (kill -9) is replaced at once, and one
                # whose process lives is never evicted, however old its heartbeat (a long browser step;
                # evicting it left stamps without a session and two browsers on one account). Anywhere
                # else (another host, a container with our hostname) its pid means nothing here: only
                # the heartbeat can tell.
                fresh = beat >= now - stale_after
                if whost == host and wpid != pid:
                    busy = _pid_alive(wpid) and _looks_like_wabulk(wpid)
                else:  # another host, or another worker object in this very process
                    busy = fresh
                if busy:
                    raise errors.SessionBusy(
                        f"session {session!r} is already used by a running worker (pid {wpid} on {whost}, "
                        f"last heartbeat {max(0.0, now - beat):.0f}s ago); stop it first or use another "
                        "session"
                    )
            conn.execute("DELETE FROM workers WHERE session = ?", (session,))
            import uuid  # here, not at the top: uuid imports platform, and `status` never registers

            worker_id = uuid.uuid4().hex
            conn.execute(
                "INSERT INTO workers (id, session, pid, host, started_at, heartbeat_at, state, daily_cap)"
                " VALUES (?, ?, ?, ?, ?, ?, 'starting', ?)",
                (worker_id, session, pid, host, now, now, daily_cap),
            )
            conn.execute(
                "INSERT INTO worker_instances (id, session, host, pid, started_at) VALUES (?, ?, ?, ?, ?)",
                (worker_id, session, host, pid, now),
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
            # A clean end: this instance presses nothing any more, so its stamps may be proved absent.
            conn.execute("UPDATE worker_instances SET ended_at = ? WHERE id = ?", (now, worker_id))
            if conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,)).rowcount:
                self._event(
                    conn, now, None, None, "worker", "registered", "unregistered", f"worker {worker_id}"
                )

    @_guarded
    def workers(self, *, stale_after: float = 30.0) -> list[WorkerInfo]:
        """Every registered worker, with ``alive`` = heartbeat within ``stale_after`` seconds and, on this
        host, its process still running (a killed worker is not shown alive until its heartbeat ages)."""
        now = self._clock()
        here = identity.place_key()  # only here can a pid be tested
        return [
            WorkerInfo(
                id=r[0],
                session=r[1],
                pid=r[2],
                host=r[3],
                started_at=r[4],
                heartbeat_at=r[5],
                alive=r[5] >= now - stale_after and (r[3] != here or _pid_alive(r[2])),
                state=r[6],
                daily_cap=r[7],
            )
            for r in self.conn.execute(
                "SELECT id, session, pid, host, started_at, heartbeat_at, state, daily_cap FROM workers"
                " ORDER BY session, started_at"
            )
        ]

    # --- sessions: pause, pace, orphans ---------------------------------------------------------------
    @_guarded
    def pause_session(self, session: str, reason: str) -> None:
        """Stop ``session`` from claiming until :meth:`resume_session` (its workers idle and say why).
        Other sessions keep sending the same jobs. Durable."""
        now = self._clock()
        with self._tx(durable=True) as conn:
            conn.execute(
                "INSERT INTO sessions (name, paused_at, paused_reason) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET paused_at = excluded.paused_at,"
                " paused_reason = excluded.paused_reason",
                (session, now, reason),
            )
            self._event(conn, now, None, None, "session", None, "paused", f"session {session}: {reason}")

    @_guarded
    def resume_session(self, session: str) -> bool:
        """Lift a session's pause (and its unknown-outcome streak). Returns whether it was paused. Durable."""
        now = self._clock()
        with self._tx(durable=True) as conn:
            n = conn.execute(
                "UPDATE sessions SET paused_at = NULL, paused_reason = NULL, unknown_streak = 0"
                " WHERE name = ? AND paused_at IS NOT NULL",
                (session,),
            ).rowcount
            if n:
                self._event(conn, now, None, None, "session", "paused", "resumed", f"session {session}")
            return bool(n)

    @_guarded
    def session_pause(self, session: str) -> tuple[float, str] | None:
        """(paused_at, reason) while ``session`` is paused, else None."""
        row = self.conn.execute(
            "SELECT paused_at, paused_reason FROM sessions WHERE name = ? AND paused_at IS NOT NULL",
            (session,),
        ).fetchone()
        return None if row is None else (float(row[0]), str(row[1] or ""))

    @_guarded
    def session_pauses(self) -> dict[str, tuple[float, str]]:
        """Every paused session: name -> (paused_at, reason)."""
        return {
            str(r[0]): (float(r[1]), str(r[2] or ""))
            for r in self.conn.execute(
                "SELECT name, paused_at, paused_reason FROM sessions"
                " WHERE paused_at IS NOT NULL ORDER BY name"
            )
        }

    @_guarded
    def record_unknown(self, session: str, *, threshold: int) -> str | None:
        """Count one more unknown outcome in a row for ``session`` (a confirmed send or a chat that could be
        read resets it). At ``threshold`` the session pauses; returns the pause reason then, else None."""
        now = self._clock()
        with self._tx(durable=True) as conn:
            streak = conn.execute(
                "INSERT INTO sessions (name, unknown_streak) VALUES (?, 1)"
                " ON CONFLICT (name) DO UPDATE SET unknown_streak = unknown_streak + 1"
                " RETURNING unknown_streak",
                (session,),
            ).fetchone()[0]
            if threshold <= 0 or streak < threshold:
                return None
            reason = (
                f"{AUTO_PAUSE_PREFIX}: {streak} outcomes in a row could not be read in the chat"
                " (is the page readable?);"
                f" check them, then `wabulk resolve` and `wabulk resume --session {session}`"
            )
            conn.execute(
                "UPDATE sessions SET paused_at = COALESCE(paused_at, ?), paused_reason = ? WHERE name = ?",
                (now, reason, session),
            )
            self._event(conn, now, None, None, "session", None, "paused", f"session {session}: {reason}")
            return reason

    @_guarded
    def mark_linked(self, session: str, *, at: float | None = None) -> float:
        """Record that ``session``'s browser was just linked as a device (a login went from the QR to the
        app). A new device may not show what the old one sent, so a stamp older than this can never be
        proved absent (see :meth:`linked_at`). Durable. Returns the time recorded."""
        now = self._clock()
        when = now if at is None else at
        with self._tx(durable=True) as conn:
            self._event(conn, now, None, None, "session", None, "linked", f"session {session}: device linked")
            # The link's place in the events sequence: stamps are compared with it, not with the clock.
            conn.execute(
                "INSERT INTO sessions (name, linked_at, linked_seq) VALUES (?, ?, last_insert_rowid())"
                " ON CONFLICT (name) DO UPDATE SET linked_at = excluded.linked_at,"
                " linked_seq = excluded.linked_seq",
                (session, when),
            )
        return when

    @_guarded
    def linked_at(self, session: str) -> float | None:
        """When ``session``'s current device was linked (recorded by :meth:`mark_linked`), or None when no
        login was seen since this was recorded (m008)."""
        row = self.conn.execute("SELECT linked_at FROM sessions WHERE name = ?", (session,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    @_guarded
    def session_provider(self, session: str) -> tuple[str, dict[str, Any]] | None:
        """How ``session`` sends: (provider kind, its settings), or None when the session was never recorded
        (then it is a web session, as every session was before m009)."""
        row = self.conn.execute(
            "SELECT provider, provider_settings FROM sessions WHERE name = ?", (session,)
        ).fetchone()
        if row is None:
            return None
        return str(row[0]), _settings_from_json(row[1])

    @_guarded
    def session_providers(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Every recorded session: name -> (provider kind, its settings)."""
        rows = self.conn.execute("SELECT name, provider, provider_settings FROM sessions ORDER BY name")
        return {str(name): (str(kind), _settings_from_json(raw)) for name, kind, raw in rows}

    @_guarded
    def set_session_provider(self, session: str, provider: str, settings: dict[str, Any]) -> None:
        """Record how ``session`` sends (e.g. ``login --cloud`` makes it a Cloud API account). Durable."""
        now = self._clock()
        with self._tx(durable=True) as conn:
            conn.execute(
                "INSERT INTO sessions (name, provider, provider_settings) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET provider = excluded.provider,"
                " provider_settings = excluded.provider_settings",
                (session, provider, json.dumps(settings, sort_keys=True)),
            )
            self._event(
                conn, now, None, None, "session", None, provider, f"session {session}: provider {provider}"
            )

    @_guarded
    def last_send_at(self, session: str) -> float | None:
        """When ``session`` last pressed send (recorded with the stamp): the pace resumes from here."""
        row = self.conn.execute("SELECT last_send_at FROM sessions WHERE name = ?", (session,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    @_guarded
    def stamped_elsewhere(self, session: str, job_ids: list[int]) -> int:
        """Open messages of these jobs whose send another session pressed: only that account's chat can
        tell whether they went out, so ``session`` can never finish them (``--until-done`` ignores them)."""
        if not job_ids:
            return 0
        marks = ", ".join("?" for _ in job_ids)
        return int(
            self.conn.execute(
                "SELECT count(*) FROM messages INDEXED BY idx_messages_stamped"
                " WHERE send_started_at IS NOT NULL"
                " AND status IN ('pending', 'sending') AND send_started_session IS NOT NULL"
                f" AND send_started_session != ? AND job_id IN ({marks})",
                (session, *job_ids),
            ).fetchone()[0]
        )

    @_guarded
    def orphans(self, *, older_than: float, stale_after: float = 30.0) -> list[dict[str, Any]]:
        """Open messages whose send was pressed by a session that has no live worker, or is paused, for more
        than ``older_than`` seconds: nobody else may finish them (only that account's chat can tell whether
        they went out). One dict per message: id, job_id, session, age (seconds since it last changed)."""
        now = self._clock()
        live = {
            r[0]
            for r in self.conn.execute(
                "SELECT DISTINCT session FROM workers WHERE heartbeat_at >= ?", (now - stale_after,)
            )
        }
        paused = set(self.session_pauses())
        out = []
        for mid, job_id, session, updated in self.conn.execute(
            "SELECT id, job_id, send_started_session, updated_at"
            " FROM messages INDEXED BY idx_messages_stamped"
            " WHERE send_started_at IS NOT NULL AND status IN ('pending', 'sending')"
            " AND send_started_session IS NOT NULL AND updated_at < ? ORDER BY id",
            (now - older_than,),
        ):
            if session not in live or session in paused:
                out.append({"id": mid, "job_id": job_id, "session": session, "age": now - float(updated)})
        return out

    @_guarded
    def stuck(self, *, grace: float = 120.0, stale_after: float = 30.0) -> list[dict[str, Any]]:
        """Messages ``sending`` whose lease expired more than ``grace`` seconds ago and that nobody reclaimed:
        their worker hung (its main loop stopped, maybe after Enter) or died with no worker of its session to
        take over. One dict per message: id, job_id, worker, session, overdue (seconds past the lease),
        pressed (send stamped), worker_alive (its heartbeat is fresh: a hung worker, not a dead one)."""
        now = self._clock()
        out = []
        for mid, job_id, owner, lease, stamp, session, beat in self.conn.execute(
            "SELECT m.id, m.job_id, m.claimed_by, m.lease_until, m.send_started_at, w.session, w.heartbeat_at"
            " FROM messages m INDEXED BY idx_messages_lease LEFT JOIN workers w ON w.id = m.claimed_by"
            " WHERE m.status = 'sending' AND m.lease_until < ? ORDER BY m.lease_until",
            (now - grace,),
        ):
            out.append(
                {
                    "id": mid,
                    "job_id": job_id,
                    "worker": owner,
                    "session": session,
                    "overdue": now - float(lease),
                    "pressed": stamp is not None,
                    "worker_alive": beat is not None and beat >= now - stale_after,
                }
            )
        return out


def _settings_from_json(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
