"""The session fleet (``wabulk run --sessions a,b``): supervision rules with stand-in worker processes, the
per-session view read from the database, and (browser) two real workers against the simulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from browser_marks import needs_chromium
from wabulk.models import NewJob, NewMessage
from wabulk.queue import Queue
from wabulk.settings import Settings
from wabulk.worker.fleet import Fleet

# A stand-in for `wabulk run --session S`: follows the plan in <dir>/<session>.plan, one entry per start:
# an exit code, "blocked" (prints a blocked event, exits 1), "sleep" (runs until SIGTERM, exits 130) or
# "ignore" (ignores SIGTERM). Every start appends a line to <dir>/<session>.starts.
FAKE_WORKER = textwrap.dedent("""
    import os, signal, sys, time
    d, session = sys.argv[1], sys.argv[2]
    with open(os.path.join(d, session + ".starts"), "a") as f:
        f.write(f"{os.getpid()}\\n")
    n = sum(1 for _ in open(os.path.join(d, session + ".starts")))
    plan = open(os.path.join(d, session + ".plan")).read().split(",")
    step = plan[min(n, len(plan)) - 1].strip()
    print(f"2026-01-01 00:00:00 started worker on {session}", flush=True)
    if step == "blocked":
        print("2026-01-01 00:00:01 blocked WhatsApp shows a block screen", flush=True)
        sys.exit(1)
    if step in ("sleep", "ignore"):
        def term(signum, frame):
            open(os.path.join(d, session + ".term"), "w").write("got SIGTERM")
            if step == "sleep":
                sys.exit(130)
        signal.signal(signal.SIGTERM, term)
        while True:
            time.sleep(0.05)
    sys.exit(int(step))
""")


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    d = tmp_path / "fake"
    d.mkdir()
    (d / "worker.py").write_text(FAKE_WORKER)
    return d


@pytest.fixture
def queue(db_path: Path) -> Iterator[Queue]:
    q = Queue(db_path)
    yield q
    q.close()


def make_fleet(fake: Path, plans: dict[str, str], **kw: Any) -> Fleet:
    for session, plan in plans.items():
        (fake / f"{session}.plan").write_text(plan)
    kw.setdefault("restart_min", 0.01)
    kw.setdefault("poll", 0.02)
    return Fleet(
        db=fake / "unused.db",
        sessions=list(plans),
        command=lambda s: [sys.executable, str(fake / "worker.py"), str(fake), s],
        logs_dir=fake / "logs",
        **kw,
    )


def starts(fake: Path, session: str) -> list[int]:
    path = fake / f"{session}.starts"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): it is dead for our purposes once its state is Z.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def test_a_worker_that_dies_is_restarted_and_one_that_finishes_is_not(fake: Path, queue: Queue) -> None:
    fleet = make_fleet(fake, {"a": "1,1,0", "b": "0"}, until_done=True)
    assert fleet.run(queue) == 0
    assert len(starts(fake, "a")) == 3  # died twice, restarted twice, then finished
    assert len(starts(fake, "b")) == 1  # finished at once: never restarted
    a = fleet.members[0]
    assert (a.outcome, a.restarts, a.exit_code) == ("done", 2, 0)
    assert "started worker on a" in a.out_path.read_text()  # the worker's output is captured per session


def test_until_done_exit_3_when_some_session_failed_messages(fake: Path, queue: Queue) -> None:
    fleet = make_fleet(fake, {"a": "0", "b": "3"}, until_done=True)
    assert fleet.run(queue) == 3
    assert len(starts(fake, "b")) == 1


def test_a_blocked_account_is_not_restarted(fake: Path, queue: Queue) -> None:
    lines: list[str] = []
    fleet = make_fleet(fake, {"a": "blocked,0", "b": "0"}, until_done=True, on_line=lines.append)
    assert fleet.run(queue) == 4
    assert len(starts(fake, "a")) == 1
    assert any("session a: account blocked; not restarted" in line for line in lines), lines


def test_repeated_quick_deaths_give_the_session_up_with_a_doubling_backoff(fake: Path, queue: Queue) -> None:
    lines: list[str] = []
    fleet = make_fleet(
        fake, {"a": "1"}, until_done=True, restart_min=0.05, max_quick_failures=4, on_line=lines.append
    )
    assert fleet.run(queue) == 1
    assert len(starts(fake, "a")) == 4
    delays = [line.split("restarting in ")[1] for line in lines if "restarting in" in line]
    assert len(delays) == 3
    assert any("gave up after 4 quick failures" in line for line in lines), lines


def test_stop_forwards_sigterm_then_kills_stragglers(fake: Path, queue: Queue) -> None:
    fleet = make_fleet(fake, {"polite": "sleep", "stubborn": "ignore"}, grace=1.0)
    codes: list[int] = []
    t = threading.Thread(target=lambda: codes.append(fleet.run(queue)))
    t.start()
    try:
        deadline = time.monotonic() + 20
        while not (starts(fake, "polite") and starts(fake, "stubborn")) and time.monotonic() < deadline:
            time.sleep(0.02)
        # Both have installed their handlers once they print; give the interpreters that moment.
        while time.monotonic() < deadline and not all(
            "started worker" in (fake / "logs" / f"fleet-{s}.out").read_text() for s in ("polite", "stubborn")
        ):
            time.sleep(0.02)
        time.sleep(0.2)
        fleet.request_stop()
        t.join(30)
    finally:
        fleet.request_stop()
        t.join(30)
    assert codes == [130]
    assert (fake / "polite.term").exists() and (fake / "stubborn.term").exists()  # both were asked first
    assert fleet.members[0].exit_code == 130  # the polite one stopped by itself
    assert fleet.members[1].exit_code == -signal.SIGKILL  # the straggler was killed after the grace
    assert not any(pid_alive(p) for s in ("polite", "stubborn") for p in starts(fake, s))


def test_view_shows_one_row_per_session_from_the_database(fake: Path, queue: Queue) -> None:
    job = queue.enqueue(
        NewJob(name="j", template="Hi"),
        [NewMessage(phone=f"+1415555{i:04d}", body="Hi", name="x") for i in range(3)],
    )
    assert job.job_id
    wid = queue.register_worker("a", pid=os.getpid(), host="h")
    for _ in range(2):
        c = queue.claim(wid, "a", lease_seconds=60)
        assert c is not None
        queue.mark_sent(c, tick="sent", session="a")
    queue.heartbeat(wid, state="daily_cap")
    fleet = make_fleet(fake, {"a": "0", "b": "0"}, cap=2)
    fleet._queue = queue
    fleet.refresh(time.time())
    console = Console(record=True, width=200)
    console.print(fleet.render())
    text = console.export_text()
    row_a = next(line for line in text.splitlines() if line.strip().startswith("a "))
    row_b = next(line for line in text.splitlines() if line.strip().startswith("b "))
    # a: capped (the warm-up ramp's first day allows fewer than 2? then the cap shown is that ramp value).
    cap_a = fleet.members[0].cap_today
    assert cap_a is not None and cap_a <= 2
    assert "daily_cap" in row_a and " 2 " in row_a and "after midnight" in row_a
    assert " 0 " in row_b and "daily_cap" not in row_b


# --- the real thing: two browsers, two sessions, one queue ------------------------------------------------

needs_browser = needs_chromium


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from e2e_helpers import SIM_E2E, simulator_running

    with simulator_running(tmp_path_factory, "sim-fleet", SIM_E2E) as s:
        yield s


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(240)
@needs_browser
def test_two_sessions_as_two_processes_deliver_pinned_and_shared_jobs_exactly_once(
    sim: Any, tmp_path: Path
) -> None:
    from e2e_helpers import E2E, wait_for

    e2e = E2E(sim=sim, home=tmp_path / "home", base=500)
    try:
        e2e.link("a")
        e2e.link("b")
        shared, expected = e2e.enqueue(6)
        # A job pinned to b only: a must never send it.
        e2e.base += 50
        path = e2e.home / "pinned.csv"
        path.write_text("name,phone\n" + "".join(f"P {i},{e2e.phone(i)}\n" for i in range(3)))
        res = e2e.cli(
            "enqueue", str(path), "-m", "Pinned {name}", "--country", "AU", "--session", "b", "--json"
        )
        pinned = int(json.loads(res.stdout)["job_id"])
        expected.update({e2e.phone(i).lstrip("+"): f"Pinned P {i}" for i in range(3)})

        # Paced (2-5 s between sends), not --pace off: otherwise one account whose browser starts first can
        # drain the shared job before the other is up, and "both took a share" depends on start-up timing.
        w = e2e.run_fleet("a,b", "--pace", "fast")
        code = w.wait(180)
        log = w.output()
        assert code == 0, log
        got = e2e.assert_exactly_once(expected)
        by_device = {d: e2e.devices[s] for s, d in (("a", "a"), ("b", "b"))}
        pinned_phones = {e2e.phone(i).lstrip("+") for i in range(3)}
        assert all(m.get("device") == by_device["b"] for m in got if m["phone"] in pinned_phones), got
        # Both accounts took a share of the shared job (one process per session, running side by side).
        senders = {r["sent_by_session"] for r in e2e.rows() if r["job_id"] == shared}
        assert senders == {"a", "b"}, senders
        assert "session a" in log and "session b" in log
        status = e2e.status()
        per = {s["session"]: s for s in status["sessions"]}
        assert per["a"]["sent_today"] + per["b"]["sent_today"] == 9
        assert e2e.job(pinned)["sent"] == 3
        wait_for(lambda: not any(w["alive"] for w in e2e.status()["workers"]), 10, "workers to unregister")
    finally:
        e2e.cleanup()


def test_cli_fleet_forwards_options_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`wabulk run --sessions a,b` with a Grid that is down: both workers (separate processes, given the same
    --remote-url) keep retrying; SIGTERM stops the fleet and every worker with exit 130."""
    from e2e_helpers import WABULK, wait_for

    with socket_port() as port:
        url = f"http://127.0.0.1:{port}"  # bound but never listening: connection refused
        env = {k: v for k, v in os.environ.items() if not k.startswith("WABULK_")}
        env.update(
            WABULK_HOME=str(tmp_path), WABULK_DB=str(tmp_path / "w.db"), WABULK_REMOTE_RETRY_SECONDS="600"
        )
        out = tmp_path / "fleet.out"
        with out.open("wb") as fo:
            args = ["run", "--sessions", "a,b", "--remote-url", url, "--pace", "off"]
            proc = subprocess.Popen(
                [WABULK, *args], env=env, stdout=fo, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            # Two workers registered, each a `run --session X` process given the fleet's --remote-url ...
            wait_for(
                lambda: len(json_workers(tmp_path / "w.db")) == 2 or proc.poll() is not None,
                60,
                "both workers to register",
            )
            assert proc.poll() is None, out.read_text()
            pids = json_workers(tmp_path / "w.db")
            cmdlines = {p: Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0") for p in pids}
            for session in ("a", "b"):
                assert any(
                    [b"--session", session.encode()] == c[i : i + 2] and url.encode() in c
                    for c in cmdlines.values()
                    for i in range(len(c))
                ), cmdlines
            # ... and retrying the Grid that is down, with a clear warning in the log (not crashing).
            log = tmp_path / "logs" / "wabulk.log"
            wait_for(
                lambda: log.exists() and f"Selenium Grid at {url} is unreachable" in log.read_text(),
                60,
                "the retry warning",
            )
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert code == 130, out.read_text()
        assert not any(pid_alive(p) for p in pids)
        text = out.read_text()
        assert "session a" in text and "session b" in text


class socket_port:
    """A loopback port that is bound (so nobody else takes it) but never listens."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def json_workers(db: Path) -> list[int]:
    """The pids of the registered workers (read-only)."""
    import sqlite3

    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [int(r[0]) for r in conn.execute("SELECT pid FROM workers")]
    except sqlite3.OperationalError:  # not migrated yet
        return []
    finally:
        conn.close()


def test_status_shows_per_session_sent_today_cap_and_state(db_path: Path) -> None:
    from e2e_helpers import WABULK

    q = Queue(db_path)
    try:
        q.enqueue(
            NewJob(name="shared", template="Hi"),
            [NewMessage(phone=f"+1415555{i:04d}", body="Hi", name="x") for i in range(3)],
        )
        q.enqueue(
            NewJob(name="pinned", template="Hi", sessions=("c",)),
            [NewMessage(phone="+14155559999", body="Hi", name="y")],
        )
        wa = q.register_worker("a", pid=os.getpid(), host="h")
        for _ in range(2):
            c = q.claim(wa, "a", lease_seconds=60)
            assert c is not None
            q.mark_sent(c, tick="sent", session="a")
        q.heartbeat(wa, state="pacing")
        wb = q.register_worker("b", pid=os.getpid(), host="h")
        c = q.claim(wb, "b", lease_seconds=60)
        assert c is not None
        q.mark_sent(c, tick="sent", session="b")
        q.unregister_worker(wb)
    finally:
        q.close()
    env = {**os.environ, "WABULK_PACE": "safe"}
    res = subprocess.run(
        [WABULK, "status", "--json"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    per = {s["session"]: s for s in json.loads(res.stdout)["sessions"]}
    assert set(per) == {"a", "b", "c"}  # a worker, a sender, a pinned job's session
    assert (per["a"]["sent_today"], per["a"]["state"]) == (2, "pacing")
    assert (per["b"]["sent_today"], per["b"]["state"]) == (1, "no worker")
    assert (per["c"]["sent_today"], per["c"]["state"]) == (0, "no worker")
    from wabulk.pacing import PROFILES

    assert all(0 < s["cap_today"] <= PROFILES["safe"].daily_cap for s in per.values())
    table = subprocess.run(
        [WABULK, "status"], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "Sessions" in table
    sessions_part = table.split("Sessions", 1)[1]
    row_a = next(line for line in sessions_part.splitlines() if line.strip().startswith("a "))
    assert row_a.split()[:2] == ["a", "2"] and row_a.split()[-1] == "pacing", row_a


def test_each_worker_of_a_fleet_gets_the_run_options_of_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fleet turns ``wabulk run``'s options back into each worker's arguments: a worker started with
    them is configured as the fleet's own command line was."""
    from typer.testing import CliRunner

    from wabulk import cli, worker
    from wabulk.cli import app
    from wabulk.worker.fleet import RunOptions

    seen: list[object] = []
    monkeypatch.setattr(
        worker, "run_worker", lambda settings, config, **_: seen.append((settings, config)) or 0
    )
    line = [
        "--pace",
        "safe",
        "--min-delay",
        "40",
        "--daily-cap",
        "120",
        "--quiet-hours",
        "21:00-08:00",
        "--job",
        "3",
        "--job",
        "4",
        "--until-done",
        "--track-receipts",
        "--restart-browser-every",
        "7",
        "--web-url",
        "http://127.0.0.1:9/",
        "--headed",
    ]
    assert CliRunner().invoke(app, ["run", "--session", "a", *line]).exit_code == 0
    options = RunOptions(
        pace="safe",
        min_delay=40.0,
        daily_cap=120,
        quiet_hours="21:00-08:00",
        job_ids=(3, 4),
        until_done=True,
        track_receipts=True,
        provider_args=cli._web_run_args("http://127.0.0.1:9/", None, False, 7),
    )
    assert CliRunner().invoke(app, ["run", "--session", "a", *options.argv()]).exit_code == 0
    assert seen[0] == seen[1]
    settings = seen[0][0]
    assert isinstance(settings, Settings)
    assert (settings.restart_browser_every, settings.web_url, settings.headless) == (
        7,
        "http://127.0.0.1:9/",
        False,
    )


def test_a_worker_exiting_4_needs_a_person_and_is_not_restarted(fake: Path, queue: Queue) -> None:
    lines: list[str] = []
    fleet = make_fleet(fake, {"a": "4,0", "b": "0"}, until_done=True, on_line=lines.append)
    assert fleet.run(queue) == 4
    assert len(starts(fake, "a")) == 1
    assert any("session a: a person must act; not restarted" in line for line in lines), lines
