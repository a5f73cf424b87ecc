"""What becomes a notification, read from the database (never from one process's memory).

Two sources, both durable, so a worker killed at any moment loses nothing:

* the append-only ``events`` log, read past a per-target cursor that moves in the same transaction as the
  notifications it produced (``store.advance``): a job completed (with its counts), messages failed,
  messages whose outcome is unknown (error class ``unknown_outcome``), a job auto-paused, a session
  auto-paused, jobs waiting for a login;
* a look at the current state every few seconds: a worker that died (its heartbeat is stale, or its
  process is gone on this host; noticed by any notifying process: a worker, the next worker of the
  session before it takes the dead one's place, or ``wabulk serve``), and jobs with undelivered messages.

Each notification has a ``key`` naming what it is about; the outbox keeps one per (target, key), so two
processes noticing the same death queue it once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from wabulk import identity
from wabulk.models import AUTO_PAUSE_PREFIX, UNKNOWN_TEXT
from wabulk.notify import store
from wabulk.queue import Queue

# The kinds a receiver may get (an unknown kind must be ignored by receivers: more may come).
JOB_COMPLETED = "job_completed"
MESSAGES_FAILED = "messages_failed"
UNKNOWN_OUTCOMES = "unknown_outcomes"
JOB_AUTO_PAUSED = "job_auto_paused"
SESSION_AUTO_PAUSED = "session_auto_paused"
WAITING_FOR_LOGIN = "waiting_for_login"
UNDELIVERED_FOUND = "undelivered_found"
WORKER_DIED = "worker_died"
KINDS = (
    JOB_COMPLETED,
    MESSAGES_FAILED,
    UNKNOWN_OUTCOMES,
    JOB_AUTO_PAUSED,
    SESSION_AUTO_PAUSED,
    WAITING_FOR_LOGIN,
    UNDELIVERED_FOUND,
    WORKER_DIED,
)
UNKNOWN_OUTCOME_CLASS = "unknown_outcome"
EVENTS_PAGE = 500
MAX_LISTED = 50  # message ids listed in one notification
# A worker on another host is reported dead after this long without a heartbeat: longer than the 30 s after
# which a new worker may take its session, so a slow browser step is not a death. On this host a process
# that is gone is reported at once.
DEAD_AFTER = 120.0


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Watcher:
    """Turns the database into notifications for ``targets`` (one :class:`Queue` per thread)."""

    def __init__(
        self,
        queue: Queue,
        targets: Sequence[str],
        *,
        undelivered_after: float,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
    ) -> None:
        self.queue = queue
        self.targets = list(targets)
        self.undelivered_after = undelivered_after
        self.clock = clock
        self.host = host or identity.place_key()

    # --- the events log --------------------------------------------------------------------------------
    def scan_events(self) -> int:
        """Turn new events into notifications for every target; returns how many were queued."""
        conn = self.queue.conn
        queued = 0
        for target in self.targets:
            while True:
                start = store.cursor(conn, target)
                if start is None:
                    # A new target starts now: it is not told about the database's history.
                    top = conn.execute("SELECT COALESCE(max(id), 0) FROM events").fetchone()[0]
                    store.advance(conn, target, expected=None, to=int(top), items=[], now=self.clock())
                    break
                rows = conn.execute(
                    "SELECT id, at, job_id, message_id, kind, from_status, to_status, detail FROM events"
                    " WHERE id > ? ORDER BY id LIMIT ?",
                    (start, EVENTS_PAGE),
                ).fetchall()
                if not rows:
                    break
                items = self._items(rows)
                if store.advance(
                    conn, target, expected=start, to=int(rows[-1][0]), items=items, now=self.clock()
                ):
                    queued += len(items)
                if len(rows) < EVENTS_PAGE:
                    break
        return queued

    def _items(self, rows: Sequence[Sequence[Any]]) -> list[tuple[str, str, dict[str, Any]]]:
        items: list[tuple[str, str, dict[str, Any]]] = []
        failed: dict[tuple[int, str], list[tuple[int, int, str]]] = {}
        waiting: dict[str, list[tuple[int, int]]] = {}
        for eid, _at, job_id, mid, kind, _from, to, detail in rows:
            if kind == "job_status" and to == "completed":
                # Keyed by the event: a job completes again after resolve/retry-failed, and is told again.
                key = f"{JOB_COMPLETED}:{job_id}:{eid}"
                items.append((JOB_COMPLETED, key, self._job(job_id, counts=True)))
            elif kind == "job_status" and to == "paused" and (detail or "").startswith(AUTO_PAUSE_PREFIX):
                data = {**self._job(job_id), "reason": detail, "text": f"job {job_id} {detail}"}
                items.append((JOB_AUTO_PAUSED, f"{JOB_AUTO_PAUSED}:{eid}", data))
            elif kind == "job_status" and to == "waiting_for_login":
                waiting.setdefault(detail or "", []).append((eid, job_id))
            elif kind == "session" and to == "paused":
                # A session paused by its worker (fail-closed work: N unknown outcomes, a blocked account);
                # the queue logs it as "session NAME: reason".
                text = detail or ""
                name, _, reason = text.removeprefix("session ").partition(": ")
                data = {"session": name, "reason": reason or text, "text": f"session auto-paused: {text}"}
                items.append((SESSION_AUTO_PAUSED, f"{SESSION_AUTO_PAUSED}:{eid}", data))
            elif kind == "status" and to == "failed" and mid is not None:
                unknown = self._unknown_outcome(mid, detail or "")
                failed.setdefault((job_id, UNKNOWN_OUTCOMES if unknown else MESSAGES_FAILED), []).append(
                    (eid, mid, detail or "")
                )
        for reason, evs in waiting.items():
            jobs = [j for _, j in evs]
            data = {
                "jobs": jobs,
                "reason": reason,
                "text": f"{reason}: job(s) {', '.join(map(str, jobs))} wait; scan the QR its worker shows "
                "(worker terminal or dashboard Sessions)",
            }
            items.append((WAITING_FOR_LOGIN, f"{WAITING_FOR_LOGIN}:{evs[0][0]}", data))
        for (job_id, kind), fails in failed.items():
            data = {
                **self._job(job_id),
                "count": len(fails),
                "messages": [{"id": m, "error": e} for _, m, e in fails[:MAX_LISTED]],
                "text": f"job {job_id}: {len(fails)} message(s) "
                + ("with an unknown outcome (sent or not?)" if kind == UNKNOWN_OUTCOMES else "failed"),
            }
            items.append((kind, f"{kind}:{fails[0][0]}", data))
        return items

    def _job(self, job_id: int | None, *, counts: bool = False) -> dict[str, Any]:
        if job_id is None:
            return {"job": None}
        row = self.queue.conn.execute("SELECT name, status FROM jobs WHERE id = ?", (job_id,)).fetchone()
        data: dict[str, Any] = {"job": job_id, "job_name": row[0] if row else None}
        if counts:
            c = {k: v for k, v in self.queue.counts(job_id).items() if v}
            data["counts"] = c
            data["text"] = f"job {job_id} ({data['job_name']}) completed: " + ", ".join(
                f"{v} {k}" for k, v in c.items()
            )
        return data

    def _unknown_outcome(self, message_id: int, detail: str) -> bool:
        """Whether the failure this event logged was an unknown outcome. The event carries the error text,
        not its class, and the message may have changed since (a person resolved it, or retried it and it
        failed otherwise) when the scan comes late (a notifier killed, a new target): the message's class
        counts only while its error is still this event's; otherwise the text tells (every unknown outcome
        the queue or the worker records starts with "outcome unknown")."""
        row = self.queue.conn.execute(
            "SELECT error_class, last_error FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        if row is not None and row[1] == detail:
            return bool(row[0] == UNKNOWN_OUTCOME_CLASS)
        return detail.startswith(UNKNOWN_TEXT)

    # --- the current state -----------------------------------------------------------------------------
    def watch_state(self) -> int:
        """Dead workers and undelivered messages; returns how many notifications were new."""
        from wabulk.receipts import format_age, undelivered_counts

        now = self.clock()
        n = 0
        for w in self.queue.workers(stale_after=DEAD_AFTER):
            gone = w.host == self.host and not pid_alive(w.pid)
            if w.alive and not gone:
                continue
            why = "its process is gone" if gone else f"no heartbeat for {now - w.heartbeat_at:.0f}s"
            data = {
                "session": w.session,
                "worker": w.id,
                "pid": w.pid,
                "host": w.host,
                "last_state": w.state,
                "heartbeat_at": w.heartbeat_at,
                "text": f"the worker of session {w.session!r} (pid {w.pid} on {w.host}) died: {why}",
            }
            n += store.add(
                self.queue.conn,
                self.targets,
                kind=WORKER_DIED,
                key=f"{WORKER_DIED}:{w.id}",
                data=data,
                now=now,
            )
        summaries = [s for s in self.queue.summaries() if s.counts.get("sent", 0)]
        for job_id, rc in undelivered_counts(
            self.queue, summaries, now=now, after=self.undelivered_after
        ).items():
            count = rc.get("undelivered", 0)
            if not count or count <= store.most_undelivered_told(self.queue.conn, job_id):
                continue
            data = {
                **self._job(job_id),
                "count": count,
                "after_seconds": self.undelivered_after,
                "text": f"job {job_id}: {count} message(s) still undelivered after "
                f"{format_age(self.undelivered_after)} (wabulk export {job_id} --undelivered)",
            }
            # A new notification when the count passes the highest one told, none while it stays or drops.
            key = f"{UNDELIVERED_FOUND}:{job_id}:{count}"
            n += store.add(self.queue.conn, self.targets, kind=UNDELIVERED_FOUND, key=key, data=data, now=now)
        return n
