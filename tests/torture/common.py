"""Shared pieces of the torture scripts: a durable fake transport, a fake worker process, the oracle checks
and the figures each script prints."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:  # e2e_helpers lives beside the tests (imported there as a top-level module)
    sys.path.insert(0, str(TESTS))

from wabulk.errors import ConfirmTimeout  # noqa: E402
from wabulk.fakes import FakeTransport  # noqa: E402
from wabulk.models import (  # noqa: E402
    TICK_SENT,
    VERIFY_ABSENT,
    VERIFY_SENT,
    VERIFY_UNKNOWN,
    ChatSnapshot,
    NewJob,
    NewMessage,
    SendResult,
    Verification,
)
from wabulk.sender import Evidence, _no_stamp  # noqa: E402


def phone(i: int) -> str:
    """The i-th fictional Australian mobile number (valid for phonenumbers), E.164."""
    return f"+6149{i:07d}"


def body(i: int) -> str:
    return f"torture message {i} ✓"


class DurableFake(FakeTransport):
    """A FakeTransport whose deliveries survive SIGKILL: each one is a line appended with one ``os.write``
    to an ``O_APPEND`` file (the kernel keeps it even if the process dies right after), and ``verify_sent``
    reads that file, as the real sender reads the chat. ``jitter`` adds random sleeps around the "click", so
    kills land in every window of a send, including between delivery and the ``sent`` mark.

    Each delivery gets a message id, and each session sees only its own deliveries in a chat (another
    account's chat with the same number is another chat). Before the send action the chat's ids are handed to
    ``before_send`` (the stamp records them); verification looks for a bubble with the body whose id is not in
    that snapshot, as the real page reader does.

    ``blind_file``: while this file exists the page cannot be read (a BLIND page: WhatsApp changed its DOM
    under our reader): the snapshot is unreadable, a send goes out but cannot be confirmed
    (ConfirmTimeout) and verification answers "unknown". ``lying`` is the negative control: verification
    always answers "absent", even for a message that is there."""

    def __init__(
        self,
        path: Path,
        session: str,
        jitter: float = 0.01,
        blind: bool = False,
        blind_file: Path | None = None,
    ) -> None:
        super().__init__()
        self.lying = blind  # negative control: verification never finds anything (resends when allowed)
        self.blind_file = blind_file
        # The zombie scenario freezes a worker inside its first send: it waits there until this file exists.
        self.hold_before: Path | None = None  # before the send-started stamp
        self.hold_after: Path | None = None  # after the stamp, before the delivery
        self.path = path
        self.session = session
        self.jitter = jitter
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._n = 0

    def page_blind(self) -> bool:
        """Whether the page cannot be read right now."""
        return self.blind_file is not None and self.blind_file.exists()

    def _chat(self, phone: str) -> list[dict[str, Any]]:
        return [
            d for d in read_deliveries(self.path) if d["phone"] == phone and d.get("session") == self.session
        ]

    def send(
        self,
        phone: str,
        body: str,
        *,
        attachment: str | None = None,
        before_send: Callable[[Evidence], None] = _no_stamp,
    ) -> SendResult:
        time.sleep(random.uniform(0, self.jitter))
        self.hold_before = _hold(self.hold_before)
        blind = self.page_blind()
        if blind:
            snapshot = ChatSnapshot(readable=False)
        else:
            ids = tuple(d["id"] for d in self._chat(phone) if "id" in d)
            snapshot = ChatSnapshot(ids=ids, count=len(ids), readable=True)
        # The durable send-started stamp (fenced: a zombie raises LeaseLost here).
        before_send(snapshot.to_evidence())
        time.sleep(random.uniform(0, self.jitter))
        self.hold_after = _hold(self.hold_after)
        self._n += 1
        msg_id = f"{self.session}-{os.getpid()}-{self._n}-{time.monotonic_ns()}"
        line = json.dumps(
            {
                "phone": phone,
                "body": body,
                "at": time.time(),
                "session": self.session,
                "pid": os.getpid(),
                "id": msg_id,
            },
            ensure_ascii=False,
        )
        os.write(self._fd, (line + "\n").encode("utf-8"))
        time.sleep(random.uniform(0, self.jitter))  # the window between "arrived" and "marked sent"
        if blind or self.page_blind():
            raise ConfirmTimeout("cannot read the chat's bubbles (blind page)")
        return SendResult(tick=TICK_SENT, confirmed_at=time.time(), message_ref=msg_id)

    def verify_sent(
        self, phone: str, body: str, since: float, *, evidence: Evidence | None = None
    ) -> Verification:
        known = ChatSnapshot.from_evidence(evidence)
        if self.page_blind():
            return Verification(VERIFY_UNKNOWN, "cannot read the chat's bubbles (blind page)")
        if self.lying:
            return Verification(VERIFY_ABSENT, "lying reader (negative control)")
        mine = [d for d in self._chat(phone) if d["body"] == body]
        if known is not None and known.readable:
            found = [d for d in mine if d.get("id") not in known.ids]
            if found:
                return Verification(VERIFY_SENT, "a new bubble with this text", found[0].get("id"))
            return Verification(VERIFY_ABSENT, "no new bubble with this text")
        # No readable snapshot: only times are left, at minute resolution like WhatsApp Web's bubbles.
        floor = since - since % 60
        if any(d["at"] >= floor for d in mine):
            return Verification(VERIFY_SENT, "a bubble with this text since the stamp's minute")
        if mine and known is not None:  # an older bubble with this text, and no ids to tell them apart
            return Verification(VERIFY_UNKNOWN, "a bubble with this text, but no snapshot to date it by")
        # The chat can be read now and holds no bubble with this text at all: positive evidence.
        return Verification(VERIFY_ABSENT, "no bubble with this text in the chat")


def _hold(until: Path | None) -> None:
    """Wait until the file ``until`` exists (at most a minute). ``<until>.holding`` says the wait began: a
    test that freezes the worker there knows it holds no database transaction at that moment."""
    if until is not None:
        holding_marker(until).touch()
    deadline = time.monotonic() + 60
    while until is not None and not until.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def holding_marker(until: Path) -> Path:
    """The file a fake worker creates when it starts waiting for ``until`` (``--hold-before/after``)."""
    return until.with_name(until.name + ".holding")


def read_deliveries(path: Path) -> list[dict[str, Any]]:
    """Every delivery line (a line cut by a kill mid-write cannot happen: one write per line)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def enqueue_direct(db: Path, n: int, *, max_attempts: int = 10, offset: int = 0) -> int:
    """A job of ``n`` messages straight through the queue API (fast); returns its id."""
    from wabulk.queue import Queue

    with Queue(db) as q:
        stats = q.enqueue(
            NewJob(name="torture", template="{name}", max_attempts=max_attempts),
            (NewMessage(phone=phone(offset + i), body=body(offset + i), name=f"n{i}") for i in range(n)),
        )
    return stats.job_id


@dataclasses.dataclass
class Figures:
    """What a torture run found; ``ok`` is False on any loss, duplicate, stuck message or corruption."""

    name: str
    messages: int = 0
    kills: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    stuck: int = 0
    failed: int = 0
    integrity: str = "?"
    seconds: float = 0.0
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicates == 0
            and self.stuck == 0
            and self.failed == 0
            and self.integrity == "ok"
            and not self.extra.get("problems")
        )

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.extra.items() if k != "problems")
        problems = self.extra.get("problems") or []
        return (
            f"{self.name}: messages={self.messages} kills={self.kills} delivered={self.delivered} "
            f"lost={self.lost} duplicates={self.duplicates} stuck={self.stuck} failed={self.failed} "
            f"integrity={self.integrity} seconds={self.seconds:.1f} {extra}".rstrip()
            + (f" PROBLEMS: {'; '.join(map(str, problems[:5]))}" if problems else "")
            + f" -> {'PASS' if self.ok else 'FAIL'}"
        )

    def report(self) -> int:
        """Print the figures (one line, then JSON) and return the exit code."""
        print(self.line(), flush=True)
        print("FIGURES " + json.dumps({**dataclasses.asdict(self), "ok": self.ok}, default=str), flush=True)
        return 0 if self.ok else 1


def integrity(db: Path) -> str:
    conn = sqlite3.connect(str(db), timeout=30)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def rows(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM messages ORDER BY id")]
    finally:
        conn.close()


def check_outcome(
    fig: Figures, db: Path, expected: dict[str, str], arrived: Sequence[tuple[str, str]]
) -> Figures:
    """Fill lost/duplicates/stuck/failed/integrity from the database and what arrived.

    ``expected`` maps phone -> body; ``arrived`` lists (phone, body) as the destination saw them."""
    # Phones compared without the "+" (the simulator logs digits, the database stores E.164).
    expected = {p.lstrip("+"): b for p, b in expected.items()}
    counts = collections.Counter((p.lstrip("+"), b) for p, b in arrived)
    want = set(expected.items())
    fig.delivered = len(arrived)
    fig.duplicates = sum(c - 1 for c in counts.values() if c > 1)
    problems: list[str] = fig.extra.setdefault("problems", [])
    unexpected = [k for k in counts if k not in want]
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected deliveries, e.g. {unexpected[0]}")
    data = rows(db)
    by_phone = {r["phone"].lstrip("+"): r for r in data}
    fig.stuck = sum(1 for r in data if r["status"] in ("sending", "pending"))
    fig.failed = sum(1 for r in data if r["status"] == "failed")
    failures = [
        f"{r.get('error_class')}: {str(r.get('last_error'))[:200]}" for r in data if r["status"] == "failed"
    ]
    if failures:
        fig.extra["failed_errors"] = failures[:5]  # why, for the one reading a red run
    lost = [p for p, b in expected.items() if (p, b) not in counts]
    fig.lost = len(lost)
    lying = [p for p, r in by_phone.items() if r["status"] == "sent" and (p, expected.get(p)) not in counts]
    if lying:
        problems.append(f"{len(lying)} marked sent but never arrived")
    over = [r["id"] for r in data if r["attempts"] > r["max_attempts"] + 1]
    if over:
        problems.append(f"{len(over)} with attempts > max_attempts + 1")
    fig.integrity = integrity(db)
    if not problems:
        fig.extra.pop("problems")
    return fig


def kill(pid: int, sig: int = signal.SIGKILL) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of every live descendant of ``pid`` (from /proc)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        rparen = stat.rfind(")")
        names[int(entry.name)] = stat[stat.find("(") + 1 : rparen]
        children[int(stat[rparen + 2 :].split()[1])].append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append((c, names.get(c, "?")))
            todo.append(c)
    return out


def killpg(proc: subprocess.Popen[Any]) -> None:
    """Kill a process started with ``start_new_session=True`` and everything left in its group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def python_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WABULK_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env.update(extra)
    return env


def torture(name: str, *args: str, timeout: float = 240) -> dict[str, Any]:
    """Run ``python -m tests.torture.<name> args`` (the suite's small sizes); return its FIGURES. Fails the
    calling test when the script prints none or exits non-zero."""
    res = subprocess.run(
        [sys.executable, "-m", f"tests.torture.{name}", *args],
        cwd=ROOT,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("FIGURES ")]
    assert lines, f"no figures from {name}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    figures: dict[str, Any] = json.loads(lines[-1][len("FIGURES ") :])
    assert res.returncode == 0, f"{name} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return figures


def start_fake_worker(
    tmp: Path,
    session: str,
    *args: str,
    tag: str = "",
    log_dir: Path | None = None,
    prefix: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """``tests.torture.fake_worker`` on ``tmp/wabulk.db`` (deliveries in ``tmp/deliveries.jsonl``), in its
    own process group, output in ``<log_dir or tmp>/<session><tag>.log``. ``prefix`` runs it under another
    command (``unshare …``: another PID namespace or hostname)."""
    log = ((log_dir or tmp) / f"{session}{tag}.log").open("wb")
    return subprocess.Popen(
        [
            *prefix,
            sys.executable,
            "-m",
            "tests.torture.fake_worker",
            "--db",
            str(tmp / "wabulk.db"),
            "--home",
            str(tmp / "home"),
            "--session",
            session,
            "--deliveries",
            str(tmp / "deliveries.jsonl"),
            *args,
        ],
        env=python_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=str(ROOT),
    )


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll until ``predicate`` is truthy (returned); RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
