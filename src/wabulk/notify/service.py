"""What ``wabulk run`` (and ``wabulk serve``) start beside their work: the notifier thread, and the worker
event hook that keeps the session's login QR in the database for the dashboard."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wabulk.errors import WabulkError
from wabulk.notify import store
from wabulk.notify.deliver import Notifier, NotifyConfig

log = logging.getLogger(__name__)


class QrHook:
    """A worker ``on_event`` handler: the QR a logged-out session shows goes to ``session_qr`` (so
    ``wabulk serve`` can show it), and is removed once the session is logged in or the worker ends.
    Opens its own connection on first use, in the worker's thread."""

    def __init__(self, db: Path, session: str, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.session = session
        self.clock = clock
        self._queue: Any = None

    def _conn(self) -> Any:
        if self._queue is None:
            from wabulk.queue import Queue

            self._queue = Queue(self.db, create=False)
        return self._queue.conn

    def __call__(self, event: Any) -> None:
        try:
            if event.kind == "qr" and event.payload:
                store.save_qr(self._conn(), self.session, event.payload, now=self.clock())
            elif event.kind in ("started", "logged_in", "stopped"):
                store.clear_qr(self._conn(), self.session)
        except WabulkError as e:  # the dashboard's QR must never stop the worker
            log.warning("could not record the login QR: %s", e)
        except Exception:
            log.exception("could not record the login QR")

    def close(self) -> None:
        if self._queue is not None:
            try:
                store.clear_qr(self._queue.conn, self.session)
            except Exception:
                log.exception("could not clear the login QR")
            self._queue.close()
            self._queue = None


def start_notifier(db: Path, config: NotifyConfig) -> Notifier | None:
    """Look once at the database in this thread, then start the background notifier (None without targets).

    The synchronous look matters for ``wabulk run``: a worker of the same session that died is noticed
    here, before the new worker registers and its row is replaced."""
    if not config.targets:
        return None
    from wabulk.notify.watch import Watcher
    from wabulk.queue import Queue

    try:
        with Queue(db) as q:
            watcher = Watcher(q, config.targets, undelivered_after=config.undelivered_after)
            watcher.scan_events()
            watcher.watch_state()
    except Exception:  # notifications must never keep the worker from starting
        log.exception("notifications: the first look failed")
    return Notifier(db, config).start()


@contextmanager
def worker_notifications(
    db: Path, session: str, *, urls: Sequence[str] = (), commands: Sequence[str] = ()
) -> Iterator[Callable[[Any], None]]:
    """Around one worker: yields its extra ``on_event`` handler (the QR hook); notifies when configured
    (``--notify``/``--notify-cmd`` or their environment variables)."""
    config = NotifyConfig.from_env(urls, commands)
    notifier = start_notifier(db, config)
    hook = QrHook(db, session)
    try:
        yield hook
    finally:
        hook.close()
        if notifier is not None:
            notifier.stop()
