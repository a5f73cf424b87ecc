"""Restarting after ``kill -9`` (no browser needed): a dead worker's registration and its orphaned Chromium
must not block the next ``wabulk run`` on the same session; the lease can be shortened for tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wabulk import errors
from wabulk.queue import Queue
from wabulk.web.profile import reap_orphans
from wabulk.worker import build_config


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_registration_of_a_dead_process_on_this_host_is_replaced_at_once(db_path: Path) -> None:
    q = Queue(db_path)
    host = socket.gethostname()
    q.register_worker("s", pid=_dead_pid(), host=host)  # heartbeat just now, but the process is gone
    wid = q.register_worker("s", pid=12345, host=host)
    assert [w.id for w in q.workers()] == [wid]
    q.close()


def test_live_or_remote_registrations_still_refuse_the_session(db_path: Path) -> None:
    import os

    q = Queue(db_path)
    host = socket.gethostname()
    q.register_worker("s", pid=os.getpid(), host=host)  # alive
    with pytest.raises(errors.SessionBusy):
        q.register_worker("s", pid=1, host=host)
    q.register_worker("t", pid=_dead_pid(), host="another-box")  # cannot tell from here: heartbeat rules
    with pytest.raises(errors.SessionBusy):
        q.register_worker("t", pid=1, host=host)
    q.close()


def test_reap_orphans_kills_only_the_browser_on_this_profile(tmp_path: Path) -> None:
    profile, other = tmp_path / "sessions" / "s", tmp_path / "sessions" / "t"
    script = "import time; time.sleep(60)"
    mine = subprocess.Popen([sys.executable, "-c", script, f"--user-data-dir={profile}"])
    theirs = subprocess.Popen([sys.executable, "-c", script, f"--user-data-dir={other}"])
    try:
        deadline = time.monotonic() + 5
        while (
            time.monotonic() < deadline
            and f"--user-data-dir={profile}".encode() not in Path(f"/proc/{mine.pid}/cmdline").read_bytes()
        ):
            time.sleep(0.02)
        assert mine.pid in reap_orphans(profile)
        assert mine.wait(5) == -9
        assert theirs.poll() is None
    finally:
        for p in (mine, theirs):
            p.kill()
            p.wait()


def test_lease_seconds_option() -> None:
    assert build_config(session="s").lease_seconds == 120.0
    assert build_config(session="s", lease_seconds=5).lease_seconds == 5.0


def test_hidden_lease_option_reaches_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from wabulk import worker
    from wabulk.cli import app

    seen = {}

    def fake_run_worker(settings: object, config: worker.WorkerConfig, **_: object) -> int:
        seen["lease"] = config.lease_seconds
        return 0

    monkeypatch.setattr(worker, "run_worker", fake_run_worker)
    monkeypatch.setenv("WABULK_LEASE_SECONDS", "7")
    result = CliRunner().invoke(app, ["run", "--session", "s", "--pace", "off"])
    assert result.exit_code == 0, result.output
    assert seen == {"lease": 7.0}
    assert "--lease-seconds" not in CliRunner().invoke(app, ["run", "--help"]).output
