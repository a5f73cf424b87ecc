"""Running a worker as ``wabulk run`` does: the heartbeat thread, signal handlers, logs, the live view and
the provider around a :class:`~wabulk.worker.loop.Worker`."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from wabulk import exitcodes
from wabulk.errors import SessionBusy, WabulkError
from wabulk.sender import Provider, open_sender

from .base import WorkerConfig
from .events import WorkerEvent
from .loop import Worker

if TYPE_CHECKING:
    from wabulk.settings import Settings

log = logging.getLogger("wabulk.worker")
# A main loop without progress for this long (and at least three leases) is hung: longer than any provider
# step wabulk waits for (a send, a verification, a restart, each bounded well below this).
HUNG_AFTER = 600.0


class HeartbeatThread:
    """Keeps a worker's heartbeat going while its thread is busy in a long provider step (a send, a
    verification, a restart): a worker must never look dead while it lives. Uses its own
    connection (SQLite connections are per thread). ``on_lost`` is called once if the registration is gone
    (another process took the session over): the worker must stop.

    The beat reflects the main loop, not only the process: ``progress`` returns when (``time.monotonic``)
    the main loop last moved; after ``hung_after`` seconds without progress (stuck mid-send, a provider
    call that never returns) the thread stops beating, so the worker is seen as dead (``status``,
    ``worker_died`` notifications) and ``status --check`` names the message it holds."""

    def __init__(
        self,
        db: Path | str,
        worker_id: str,
        *,
        interval: float,
        state: Callable[[], str | None],
        on_lost: Callable[[SessionBusy], None] | None = None,
        progress: Callable[[], float] | None = None,
        hung_after: float = 600.0,
    ) -> None:
        self.db = db
        self.worker_id = worker_id
        self.interval = interval
        self.state = state
        self.on_lost = on_lost
        self.progress = progress
        self.hung_after = hung_after
        self.beats_skipped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wabulk-heartbeat", daemon=True)

    def start(self) -> None:
        """Start beating every ``interval`` seconds."""
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the thread (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        from wabulk.queue import Queue

        try:
            queue = Queue(self.db, create=False)
        except WabulkError:
            log.exception("the heartbeat thread cannot open the database")
            return
        try:
            while not self._stop.wait(self.interval):
                if self.progress is not None and time.monotonic() - self.progress() > self.hung_after:
                    if not self.beats_skipped:
                        log.error(
                            "the worker's main loop made no progress for %.0f s: heartbeat stopped",
                            self.hung_after,
                        )
                    self.beats_skipped += 1
                    continue
                try:
                    queue.heartbeat(self.worker_id, state=self.state())
                except SessionBusy as e:
                    if self.on_lost is not None:
                        self.on_lost(e)
                    return
                except WabulkError:
                    log.exception("heartbeat failed")
        finally:
            queue.close()


# --- signals ---------------------------------------------------------------------------------------------


def install_signal_handlers(worker: Worker) -> Callable[[], None]:
    """SIGINT/SIGTERM: first one asks the worker to stop (the message in flight finishes if its send
    started, else it is released; exit 130). A second SIGINT raises KeyboardInterrupt at once; the
    claim stays safe (send-started stamp and lease) and is released in ``finally`` when possible.
    Returns a function restoring the previous handlers."""
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        worker.signals += 1
        if worker.signals > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt
        worker.request_stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, h in previous.items():
            signal.signal(sig, h)

    return restore


# --- the CLI's entry point ----------------------------------------------------------------------------------


def run_worker(
    settings: Settings,
    config: WorkerConfig,
    *,
    transport: Provider | None = None,
    console: Any = None,
    clock: Callable[[], float] = time.time,
    on_event: Callable[[WorkerEvent], None] | None = None,
) -> int:
    """Everything ``wabulk run`` does: open the queue (synchronous=FULL), set up logs and the live view
    (Rich when ``console`` is a terminal, plain lines otherwise), open the session's provider lazily,
    install signal handlers and run. Returns the exit code. Raises SessionBusy when another live worker
    uses the session, and the provider's errors when it cannot start at all. ``on_event`` also
    gets every worker event (after the live view)."""
    from wabulk.live import LiveView
    from wabulk.logs import setup_logging, teardown_logging
    from wabulk.queue import Queue
    from wabulk.store.base import network_filesystem

    log_path = setup_logging(settings.logs_dir, log_numbers=config.log_numbers)
    queue = Queue(settings.db, synchronous="FULL", clock=clock)
    own_transport = transport is None
    view = LiveView(console=console, profile=config.pace, log_numbers=config.log_numbers)
    try:
        if transport is None:
            from wabulk import session as sessions

            account = sessions.get(queue, config.session)
            transport = open_sender(account.provider, settings, account)
        handle = view.handle
        if on_event is not None:  # e.g. the notifications' login hook, after the live view

            def handle(ev: WorkerEvent) -> None:
                view.handle(ev)
                on_event(ev)

        worker = Worker(queue, transport, config, clock=clock, on_event=handle)
        worker.register()  # before the provider starts: a second worker on this session is refused at once
        fs = network_filesystem(queue.path)
        if fs is not None:
            worker._emit(
                "warning",
                f"the database {queue.path} is on a network file system ({fs}): SQLite's locks are not "
                "reliable there, so two workers could claim the same message; keep it on a local disk",
                level=logging.WARNING,
            )

        def lost(e: SessionBusy) -> None:
            worker.fatal = e
            worker.request_stop()

        beat = HeartbeatThread(
            queue.path,
            worker.worker_id or "",
            interval=config.heartbeat_every,
            state=lambda: worker.state,
            on_lost=lost,
            progress=lambda: worker.progress_at,
            hung_after=max(HUNG_AFTER, 3 * config.lease_seconds),
        )
        beat.start()
        # Signal handlers can only be installed from the main thread (the demo may run us elsewhere).
        main = threading.current_thread() is threading.main_thread()
        restore = install_signal_handlers(worker) if main else (lambda: None)
        try:
            with view:
                return worker.run()
        except KeyboardInterrupt:
            return exitcodes.INTERRUPTED
        finally:
            beat.stop()
            restore()
            worker.shutdown()  # idempotent; covers a failure before run() took over
    finally:
        if own_transport and transport is not None:
            try:
                transport.close()
            except Exception:  # closing a dead provider must not hide the real exit code
                log.exception("closing the provider failed")
        queue.close()
        teardown_logging(log_path)
