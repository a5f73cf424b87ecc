"""End to end (issue 20, item 4): a worker's identity is its place (hostname, boot, PID namespace), not its
hostname. Real ``wabulk run`` processes (``tests.torture.fake_worker``: ``run_worker`` on a fake transport)
on one database, one of them in another PID namespace with our hostname, as a container would be."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tests.torture.common import (
    enqueue_direct,
    holding_marker,
    killpg,
    read_deliveries,
    rows,
    start_fake_worker,
    wait_until,
)

from wabulk import exitcodes
from wabulk.queue import Queue

# The two-hosts test waits for A's heartbeat to go stale: A beats every 0.5 s and B holds a worker silent
# for 3 s dead (wabulk's 5 s / 30 s, scaled down: the same rule, without sitting through half a minute).
BEAT, STALE = 0.5, 3.0


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        done = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


# sh stays pid 1 of the new namespace, so the worker is pid 2 there: a pid that, here, is not that worker.
OTHER_PID_NAMESPACE = ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", '"$@"; exit $?', "sh"]


@pytest.mark.skipif(not _can_unshare(), reason="needs unshare with PID namespaces (root)")
def test_a_live_worker_in_another_pid_namespace_with_our_hostname_is_not_evicted(tmp_path: Path) -> None:
    db = tmp_path / "wabulk.db"
    Queue(db).close()
    a = start_fake_worker(tmp_path, "shop", "--lease", "5", tag=".container", prefix=OTHER_PID_NAMESPACE)
    b = None
    try:
        with Queue(db) as q:
            (wa,) = wait_until(lambda: q.workers(), 60, "the containerised worker to register")
        assert wa.pid != a.pid  # its own namespace's pid, meaningless here
        b = start_fake_worker(tmp_path, "shop", "--lease", "5", tag=".host")
        assert b.wait(60) != 0
        log = (tmp_path / "shop.host.log").read_text()
        assert "already used by a running worker" in log, log
        assert a.poll() is None  # the first worker runs on, still registered
        with Queue(db) as q:
            assert [w.id for w in q.workers()] == [wa.id]
    finally:
        for p in (a, b):
            if p is not None:
                killpg(p)


def _can_unshare_uts() -> bool:
    try:
        done = subprocess.run(
            ["unshare", "--uts", "--fork", "hostname", "x"], capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


# Another host sharing the database (an NFS-free stand-in: same file, another hostname).
OTHER_HOST = ["unshare", "--uts", "--fork", "sh", "-c", 'hostname other-host && exec "$@"', "sh"]


@pytest.mark.slow
@pytest.mark.skipif(not _can_unshare_uts(), reason="needs unshare with UTS namespaces (root)")
def test_the_same_session_on_two_hosts_presses_once(tmp_path: Path) -> None:
    """Host A stamps and is frozen (SIGSTOP) before Enter; once its heartbeat is stale, host B starts the same
    session, reclaims the message and finds the chat empty. A may still press, so B must not: when A wakes
    and presses there is one copy, and the message is reported unknown (it used to arrive twice)."""
    db = tmp_path / "wabulk.db"
    enqueue_direct(db, 1)
    thaw = tmp_path / "thaw"
    a = start_fake_worker(
        tmp_path, "shop", "--lease", "2", "--until-done", "--hold-after", str(thaw), "--heartbeat-every",
        str(BEAT), tag=".a",
    )  # fmt: skip
    b = None
    try:
        victim = wait_until(
            lambda: next((r for r in rows(db) if r["send_started_at"] is not None), None), 60, "A to stamp"
        )
        wait_until(holding_marker(thaw).exists, 60, "A to wait before Enter")  # no transaction open
        a.send_signal(signal.SIGSTOP)
        time.sleep(STALE + 1)  # A's heartbeat goes stale (its heartbeat thread is frozen too)
        b = start_fake_worker(
            tmp_path, "shop", "--lease", "2", "--until-done", "--stale-after", str(STALE), tag=".b",
            prefix=OTHER_HOST,
        )  # fmt: skip
        assert b.wait(90) == exitcodes.SOME_FAILED, (tmp_path / "shop.b.log").read_text()
        assert read_deliveries(tmp_path / "deliveries.jsonl") == []  # B did not press
        thaw.touch()
        a.send_signal(signal.SIGCONT)  # A presses, then finds its claim gone
        a.wait(60)
        assert len(read_deliveries(tmp_path / "deliveries.jsonl")) == 1
        (m,) = [r for r in rows(db) if r["id"] == victim["id"]]
        assert (m["status"], m["error_class"]) == ("failed", "unknown_outcome")
    finally:
        for p in (a, b):
            if p is not None:
                killpg(p)
