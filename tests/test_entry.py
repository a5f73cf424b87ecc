"""The console script's fast path for ``wabulk status --json`` (entry.py): same bytes and exit code as the
Typer command, a fall-back to Typer for anything else, and none of the heavy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wabulk import entry, errors, exitcodes, identity
from wabulk.cli import app
from wabulk.models import TICK_DELIVERED, TICK_READ, TICK_SENT, NewJob, NewMessage
from wabulk.queue import Queue

DAY = 86400.0
runner = CliRunner()


def typer_path(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, args, catch_exceptions=False)
    return result.exit_code, result.stdout


def fast_path(args: list[str]) -> tuple[int, str]:
    parsed = entry.parse_status_argv(args)
    assert parsed is not None, args
    return entry.fast_status(parsed, os.environ)


@pytest.fixture
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> float:
    """Both paths read the time once (rates, ETAs, today's sends): freeze it so their outputs compare."""
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)
    return now


def _messages(n: int, prefix: str = "+1415555") -> list[NewMessage]:
    return [NewMessage(phone=f"{prefix}{i:04d}", body=f"Hello {i}", name=f"N{i}") for i in range(n)]


def _send(q: Queue, session: str, ticks: list[str], at: float) -> None:
    """Send one message per tick as ``session`` through the queue's own claim/mark_sent, then record that
    tick as its receipt (TICK_SENT: nothing beyond the sent tick)."""
    wid = q.register_worker(session, pid=os.getpid(), host=identity.place_key())
    for tick in ticks:
        claim = q.claim(wid, session, lease_seconds=60)
        assert claim is not None
        q.mark_sent(claim, tick=TICK_SENT, session=session)
        if tick != TICK_SENT:
            q.record_receipt(claim.message_id, tick, at)


def _empty(db: Path) -> None:
    Queue(db).close()


def _pending(db: Path) -> None:
    with Queue(db) as q:
        q.enqueue(NewJob(name="spring ✿ promo", template="Hi"), _messages(3))


def _sent_two_days_ago(db: Path) -> None:
    """A running job half sent two days ago by a now-stale worker (one message still on one tick:
    undelivered after 24h), and a job pinned to a session with a live worker."""
    old = time.time() - 2 * DAY
    with Queue(db, clock=lambda: old) as q:
        q.enqueue(NewJob(name="promo", template="Hi"), _messages(6))
        _send(q, "main", [TICK_SENT, TICK_DELIVERED, TICK_READ], at=old)
    with Queue(db) as q:
        q.enqueue(NewJob(name="pinned", template="Hi", sessions=("phone2",)), _messages(2, "+1415666"))
        q.register_worker("phone2", pid=os.getpid(), host=identity.place_key())


def _paused(db: Path) -> None:
    with Queue(db) as q:
        first = q.enqueue(NewJob(name="a", template="Hi"), _messages(2)).job_id
        second = q.enqueue(NewJob(name="b", template="Hi"), _messages(2, "+1415777")).job_id
        q.pause_job(first, reason="auto-paused: 5 consecutive selector_missing failures")
        q.pause_job(second)


STATES = {"empty": _empty, "pending": _pending, "sent": _sent_two_days_ago, "paused": _paused}
ARGS = [
    ["status", "--json"],
    ["status", "--json", "--check"],
    ["status", "1", "--json"],
    ["status", "--check", "2", "--json"],
    ["status", "--json", "--undelivered-after", "1h"],
    ["status", "--undelivered-after=3d", "--check", "--json"],
]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("args", ARGS, ids=" ".join)
def test_fast_path_prints_what_typer_prints(
    state: str, args: list[str], db_path: Path, frozen_now: float
) -> None:
    STATES[state](db_path)
    expected = typer_path(args)
    if expected[0] == exitcodes.BAD_INPUT:
        # No such job in this state: the fast path raises, and main() gives way to Typer's error.
        with pytest.raises(errors.JobNotFound):
            fast_path(args)
        return
    assert fast_path(args) == expected


def test_check_exit_codes_follow_the_attention_lines(db_path: Path, frozen_now: float) -> None:
    _sent_two_days_ago(db_path)
    code, out = fast_path(["status", "--json", "--check"])
    attention = json.loads(out)["attention"]
    assert code == exitcodes.ATTENTION
    assert "job 1 (promo): 1 message undelivered after 1d" in attention
    # Nothing to look at in the empty state: --check passes.
    _empty(db_path.with_name("other.db"))
    assert fast_path(["--db", str(db_path.with_name("other.db")), "status", "--json", "--check"])[0] == 0
    # Without --check the same attention lines do not change the exit code.
    assert fast_path(["status", "--json"])[0] == exitcodes.OK


def test_db_option_and_env(
    db_path: Path, tmp_path: Path, frozen_now: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = tmp_path / "chosen.db"
    _pending(chosen)
    _empty(db_path)  # what WABULK_DB (set by conftest) points at: must lose to --db
    for args in (
        ["--db", str(chosen), "status", "--json"],
        [f"--db={chosen}", "status", "--check", "--json"],
    ):
        code, out = fast_path(args)
        assert (code, out) == typer_path(args)
        assert json.loads(out)["jobs"][0]["name"] == "spring ✿ promo"
    monkeypatch.setenv("WABULK_DB", str(chosen))
    assert fast_path(["status", "--json"]) == typer_path(["status", "--json"])
    assert json.loads(fast_path(["status", "--json"])[1])["jobs"]
    # An empty WABULK_DB counts as unset, as for Typer: the default <WABULK_HOME>/wabulk.db.
    monkeypatch.setenv("WABULK_DB", "")
    _pending(db_path.parent / "wabulk.db")
    code, out = fast_path(["status", "--json"])
    assert (code, out) == typer_path(["status", "--json"])
    assert len(json.loads(out)["jobs"]) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["--db", "x.db", "status", "3", "--check", "--json", "--undelivered-after", "10m"],
        ["--db=x.db", "status", "--undelivered-after=1h", "--json"],
        ["status", "007", "--json"],
    ],
)
def test_the_cron_shape_is_recognised(argv: list[str]) -> None:
    assert entry.parse_status_argv(argv) is not None


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["--version"],
        ["status"],  # the tables need Rich
        ["status", "--check"],
        ["status", "--json", "--help"],
        ["status", "--json", "--json"],
        ["status", "1", "2", "--json"],
        ["status", "-1", "--json"],
        ["status", "٣", "--json"],  # a digit, but not ASCII
        ["status", "--json", "--nope"],
        ["status", "--json", "--undelivered-after"],
        ["status", "--json", "--undelivered-after", "--check"],
        ["status", "--json", "--undelivered-after="],
        ["status", "--json", "--db", "x.db"],
        ["--db", "status", "--json"],
        ["--db=", "status", "--json"],
        ["--json", "status"],
        ["enqueue", "c.csv", "--json"],
        ["status", "--", "--json"],
    ],
)
def test_anything_else_is_left_to_typer(argv: list[str]) -> None:
    assert entry.parse_status_argv(argv) is None


class _TyperCalled(Exception):
    pass


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],  # not the cron shape
        ["status", "--json"],  # no database yet
        ["status", "9", "--json"],  # no such job
        ["status", "--json", "--undelivered-after", "later"],  # not a duration
    ],
)
def test_main_falls_back_to_typer(
    argv: list[str], db_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if argv != ["status", "--json"]:
        _pending(db_path)

    def typer_main() -> None:
        raise _TyperCalled

    monkeypatch.setattr("wabulk.cli.main", typer_main)
    monkeypatch.setattr(sys, "argv", ["wabulk", *argv])
    with pytest.raises(_TyperCalled):
        entry.main()
    assert capsys.readouterr().out == ""  # the fast path printed nothing before giving way


def test_ctrl_c_during_the_fast_path_is_one_line_and_exit_130(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _pending(db_path)

    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(entry, "fast_status", interrupted)
    monkeypatch.setattr(sys, "argv", ["wabulk", "status", "--json"])
    with pytest.raises(SystemExit) as exc:
        entry.main()
    assert exc.value.code == 130
    captured = capsys.readouterr()
    assert captured.err == "Interrupted.\n"
    assert captured.out == ""


def _run(args: list[str], *, fast: bool) -> subprocess.CompletedProcess[bytes]:
    """``wabulk ARGS`` in a fresh process: through the console script's module, or straight into Typer."""
    prefix = ["-m", "wabulk"] if fast else ["-c", "from wabulk.cli import main; main()"]
    return subprocess.run([sys.executable, *prefix, *args], capture_output=True, timeout=120, check=False)


@pytest.mark.parametrize(
    ("state", "args"),
    [
        ("pending", ["status", "--json", "--check"]),
        ("paused", ["status", "2", "--json"]),
        (None, ["status", "--json"]),  # no database: Typer's error and exit code
        ("pending", ["status", "7", "--json", "--check"]),  # no such job
    ],
)
def test_processes_agree_byte_for_byte(state: str | None, args: list[str], db_path: Path) -> None:
    if state is not None:
        STATES[state](db_path)
    fast, slow = _run(args, fast=True), _run(args, fast=False)
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)
    assert fast.returncode in (exitcodes.OK, exitcodes.ATTENTION) or fast.stderr.startswith(b"Error: ")


def test_the_poll_imports_no_heavy_package(db_path: Path) -> None:
    _sent_two_days_ago(db_path)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "wabulk", "status", "--json", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == exitcodes.ATTENTION, proc.stderr
    assert json.loads(proc.stdout)["jobs"][0]["sent"] == 3
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "wabulk" in imported and "sqlite3" in imported  # the parse saw the imports
    heavy = {"typer", "click", "pydantic", "rich", "sqlite_utils", "selenium", "phonenumbers", "httpx"}
    assert not heavy & imported
