"""Delivering notifications: signed webhooks, commands, and the background thread that never blocks sending.

* A webhook gets ``POST`` with the notification's JSON, ``Content-Type: application/json``,
  ``X-Wabulk-Id``/``X-Wabulk-Kind`` and, when ``WABULK_NOTIFY_SECRET`` is set,
  ``X-Wabulk-Signature: sha256=<hex HMAC-SHA256 of the body>``. Any 2xx answer delivers it.
* A command runs with the JSON on stdin (and ``WABULK_NOTIFICATION_ID``/``_KIND`` in its environment);
  exit 0 delivers it. It is split like a shell line but never run by a shell (wabulk starts no shell
  anywhere): pipes or redirections need an explicit ``sh -c '…'``.
* Anything else is retried with a doubling backoff (capped) for ever; ``wabulk status`` reports a target
  whose notifications keep failing. Delivery is at least once: a receiver de-duplicates by ``id``.

The :class:`Notifier` thread has its own database connection and does all of this between short
transactions; the worker never waits for it. On stop it makes one last, bounded pass, so the notification
of a job that completed just before ``--until-done`` exits still goes out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import shlex
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wabulk import __version__
from wabulk.errors import BadInput, WabulkError
from wabulk.notify import describe, store

if TYPE_CHECKING:
    from wabulk.notify.watch import Watcher
    from wabulk.queue import Queue

log = logging.getLogger(__name__)

ENV_URL = "WABULK_NOTIFY"
ENV_CMD = "WABULK_NOTIFY_CMD"
ENV_SECRET = "WABULK_NOTIFY_SECRET"
ENV_RETRY = "WABULK_NOTIFY_RETRY"  # first retry delay, seconds (doubling, capped at RETRY_MAX)
ENV_UNDELIVERED_AFTER = "WABULK_NOTIFY_UNDELIVERED_AFTER"
SIGNATURE_HEADER = "X-Wabulk-Signature"
RETRY_FIRST = 10.0
RETRY_MAX = 3600.0
HTTP_TIMEOUT = 10.0
CMD_TIMEOUT = 30.0
POLL_SECONDS = 1.0
STATE_EVERY = 10.0  # seconds between looks at workers and receipts
FINAL_PASS_SECONDS = 10.0


def targets_from(urls: Sequence[str], commands: Sequence[str]) -> list[str]:
    """The outbox targets for ``--notify`` URLs and ``--notify-cmd`` commands (BadInput for a bad URL)."""
    out: list[str] = []
    for url in urls:
        url = url.strip()
        if not url:
            continue
        if not url.lower().startswith(("http://", "https://")):
            raise BadInput(f"--notify needs an http:// or https:// URL (got {url!r})")
        out.append("url:" + url)
    out += ["cmd:" + c.strip() for c in commands if c.strip()]
    return list(dict.fromkeys(out))


def sign(secret: str, body: bytes) -> str:
    """The ``X-Wabulk-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether a received ``X-Wabulk-Signature`` header matches ``body`` (for receivers written in Python)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def deliver_one(n: store.Notification, *, secret: str | None) -> None:
    """Deliver one notification; raises WabulkError with a one-line reason when it did not go through."""
    body = json.dumps(n.payload, ensure_ascii=False, sort_keys=True).encode()
    kind, _, where = n.target.partition(":")
    if kind == "url":
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"wabulk/{__version__}",
            "X-Wabulk-Id": n.id,
            "X-Wabulk-Kind": n.kind,
        }
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, body)
        req = urllib.request.Request(where, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as r:  # noqa: S310 - http(s) only
                if not 200 <= r.status < 300:
                    raise WabulkError(f"HTTP {r.status}")
        except urllib.error.HTTPError as e:
            raise WabulkError(f"HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            raise WabulkError(str(getattr(e, "reason", e))) from None
        return
    env = {**os.environ, "WABULK_NOTIFICATION_ID": n.id, "WABULK_NOTIFICATION_KIND": n.kind}
    try:
        argv = shlex.split(where)
    except ValueError as e:
        raise WabulkError(f"cannot parse the command: {e}") from None
    if not argv:
        raise WabulkError("the command is empty")
    try:
        done = subprocess.run(
            argv, input=body, env=env, capture_output=True, timeout=CMD_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise WabulkError(f"the command ran longer than {CMD_TIMEOUT:.0f}s") from None
    except OSError as e:  # not found, not executable
        raise WabulkError(f"cannot run {argv[0]}: {e.strerror or e}") from None
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        raise WabulkError(f"exit {done.returncode}" + (f": {err[-1][:200]}" if err else ""))


@dataclass
class NotifyConfig:
    """What a notifying process needs; :meth:`from_env` reads the settings."""

    targets: list[str]
    secret: str | None = None
    retry_first: float = RETRY_FIRST
    undelivered_after: float = 24 * 3600.0

    @classmethod
    def from_env(cls, urls: Sequence[str] = (), commands: Sequence[str] = ()) -> NotifyConfig:
        """``--notify``/``--notify-cmd`` values, else ``WABULK_NOTIFY``/``WABULK_NOTIFY_CMD``."""
        from wabulk.receipts import parse_age

        env = os.environ
        urls = list(urls) or [u for u in env.get(ENV_URL, "").split() if u]
        commands = list(commands) or ([env[ENV_CMD]] if env.get(ENV_CMD, "").strip() else [])
        retry = env.get(ENV_RETRY, "").strip()
        after = env.get(ENV_UNDELIVERED_AFTER, "").strip()
        return cls(
            targets=targets_from(urls, commands),
            secret=env.get(ENV_SECRET) or None,
            retry_first=float(retry) if retry else RETRY_FIRST,
            undelivered_after=parse_age(after, option=ENV_UNDELIVERED_AFTER) if after else 24 * 3600.0,
        )


class Notifier:
    """The background thread: watch the database, deliver what is due. Never raises into its owner."""

    def __init__(
        self, db: Path, config: NotifyConfig, *, clock: Callable[[], float] = time.time, name: str = "notify"
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._rng = random.Random()
        if config.targets and not config.secret and any(t.startswith("url:") for t in config.targets):
            log.warning("webhook notifications are not signed: set %s", ENV_SECRET)

    def start(self) -> Notifier:
        if self.config.targets:
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after one last bounded pass (the notifications the run's last moments produced)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(FINAL_PASS_SECONDS + HTTP_TIMEOUT + 5)

    def _run(self) -> None:
        from wabulk.notify.watch import Watcher
        from wabulk.queue import Queue

        try:
            queue = Queue(self.db, create=False)
        except WabulkError as e:
            log.error("notifications are off: %s", e)
            return
        watcher = Watcher(
            queue, self.config.targets, undelivered_after=self.config.undelivered_after, clock=self.clock
        )
        next_state = 0.0
        try:
            while True:
                stopping = self._stop.is_set()
                self._step(watcher, queue, look=stopping or self.clock() >= next_state)
                if self.clock() >= next_state:
                    next_state = self.clock() + STATE_EVERY
                if stopping:
                    self._final(queue)
                    return
                self._stop.wait(POLL_SECONDS)
        finally:
            queue.close()

    def _step(self, watcher: Watcher, queue: Queue, *, look: bool) -> None:
        try:
            watcher.scan_events()
            if look:
                watcher.watch_state()
            self.deliver_due(queue)
        except Exception:  # a broken receiver or a busy database must never stop the worker
            log.exception("notifications: a pass failed (retried next time)")

    def _final(self, queue: Queue) -> None:
        deadline = time.monotonic() + FINAL_PASS_SECONDS
        while time.monotonic() < deadline:
            try:
                if not self.deliver_due(queue, deadline=deadline):
                    return
            except Exception:
                log.exception("notifications: the last pass failed")
                return

    def deliver_due(self, queue: Queue, *, deadline: float | None = None) -> int:
        """Deliver every due notification of this process's targets once; returns how many were tried.
        Past ``deadline`` (monotonic) the rest are given back untried, for the next notifying process."""
        due = store.claim_due(queue.conn, self.config.targets, now=self.clock())
        for i, n in enumerate(due):
            if deadline is not None and time.monotonic() >= deadline:
                for rest in due[i:]:
                    store.release(queue.conn, rest.id)
                return i
            try:
                deliver_one(n, secret=self.config.secret)
            except WabulkError as e:
                delay = min(RETRY_MAX, self.config.retry_first * 2 ** max(0, n.attempts - 1))
                delay *= 1 + 0.2 * self._rng.random()  # jitter: many workers do not retry in step
                store.failed(queue.conn, n.id, error=str(e), retry_at=self.clock() + delay)
                log.warning("notification %s (%s) to %s failed: %s", n.id, n.kind, describe(n.target), e)
            else:
                store.delivered(queue.conn, n.id, now=self.clock())
        return len(due)
