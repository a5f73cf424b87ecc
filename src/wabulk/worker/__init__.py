"""The worker: drains the queue through one account's provider, paced like a human, failing closed.

- ``base.py``: what ``wabulk run`` was asked (:class:`WorkerConfig`, :func:`build_config`) and the state every
  part shares: events, jobs, heartbeat, waits, the daily cap.
- ``loop.py``: :class:`Worker`, one message at a time: claim, verify, stamp, send, settle.
- ``trouble.py``: what it does when the account, not a message, is in trouble (logged out, blocked,
  restricted, offline, a broken connection), and receipt polling in idle time.
- ``runner.py``: :func:`run_worker`, what ``wabulk run`` wraps around it (heartbeat thread, signals, logs,
  the live view, the session's provider from :func:`wabulk.sender.open_sender`).
- ``fleet.py``: ``run --sessions a,b``, one worker process per session under one view.
- ``events.py``: what the worker reports (:class:`WorkerEvent`, :class:`StepResult`).

The worker reaches a provider only through :mod:`wabulk.sender`: it never imports one.
"""

from .base import WorkerConfig, build_config
from .events import StepResult, WorkerEvent
from .loop import Worker
from .runner import run_worker

__all__ = [
    "StepResult",
    "Worker",
    "WorkerConfig",
    "WorkerEvent",
    "build_config",
    "run_worker",
]
