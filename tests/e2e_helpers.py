"""Helpers for the worker's end-to-end tests: the ``wabulk`` CLI as a subprocess on one test's data, and
the simulator's log as the oracle. Used by ``test_worker_e2e*.py``."""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from wabulk.models import ChatSnapshot
from wabulk.web.simulator.server import DEFAULT_CONFIG

WABULK = str(Path(sys.executable).with_name("wabulk"))

# Fast simulator timings: a whole job of a few messages takes seconds.
SIM_E2E: dict[str, Any] = {
    **DEFAULT_CONFIG,
    "boot_ms": 200,
    "lookup_ms": 150,
    "sent_ms": [100, 100],
    "delivered_ms": 300,
}


def snapshots_into(kept: list[ChatSnapshot]) -> Callable[[str], None]:
    """A ``before_send`` that keeps the web provider's evidence, decoded (the ids of our bubbles before
    the send), so that a test can look at it and hand it back to ``verify_sent``."""

    def keep(evidence: str) -> None:
        kept.append(ChatSnapshot.from_evidence(evidence) or ChatSnapshot(readable=False))

    return keep


@contextlib.contextmanager
def simulator_running(factory: Any, name: str, config: dict[str, Any]) -> Iterator[Any]:
    """A simulator on a free port with its log in a fresh temp dir ``name``, stopped afterwards (the
    module-scoped ``sim`` fixtures of the e2e test files)."""
    from wabulk.web.simulator.server import Simulator

    s = Simulator(port=0, log_path=factory.mktemp(name) / "messages.jsonl", **config)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Worker:
    """A ``wabulk run`` subprocess in its own process group (so its orphaned browser can be cleaned up)."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def wait(self, timeout: float = 90.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker did not exit in {timeout:.0f}s; output:\n{self.output()[-4000:]}"
            ) from None

    def kill9(self) -> None:
        """SIGKILL the wabulk process only (its Chromium and chromedriver are left behind, as in life)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def cleanup(self) -> None:
        """Kill whatever is left in this worker's process group (the orphaned browser after a kill -9)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.wait(10)


@dataclass
class E2E:
    """One test's wabulk data (home, database) on the module's simulator."""

    sim: Any
    home: Path
    base: int  # phone numbers of this test start here, so tests never share a chat
    # Linked profiles shared by the module: {session: (profile dir, device token)}. Linking costs a browser
    # start, copying a linked profile costs nothing.
    linked: dict[str, tuple[Path, str]] = field(default_factory=dict)
    template_home: Path | None = None
    devices: dict[str, str] = field(default_factory=dict)  # session -> simulator device token
    workers: list[Worker] = field(default_factory=list)
    start: int = 0  # the simulator's log length when the test started

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.start = len(self.sim.messages())

    @property
    def db(self) -> Path:
        return self.home / "wabulk.db"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WABULK_")}
        env.update(
            WABULK_HOME=str(self.home),
            WABULK_DB=str(self.db),
            WABULK_HEADLESS="1",
            WABULK_WEB_URL=self.sim.url,
            COLUMNS="200",
            TERMINAL_WIDTH="200",
        )
        env.update(extra)
        return env

    def cli(self, *args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [WABULK, "--db", str(self.db), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"wabulk {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}")
        return res

    # --- setup ------------------------------------------------------------------------------------------
    def link(self, session: str, *, fresh: bool = False) -> str:
        """A logged-in profile for ``session``: a copy of the module's linked one, or (``fresh``, or the
        first time) ``wabulk login`` with its QR 'scanned'. Returns the simulator's device token."""
        if fresh or self.template_home is None:
            token = self._login(self.home, session)
            self.devices[session] = token
            return token
        if session not in self.linked:
            token = self._login(self.template_home, session)
            self.linked[session] = (self.template_home / "sessions" / session, token)
        src, token = self.linked[session]
        shutil.copytree(
            src, self.home / "sessions" / session, symlinks=True, ignore=shutil.ignore_patterns("Singleton*")
        )
        self.devices[session] = token
        return token

    def _login(self, home: Path, session: str) -> str:
        before = {d["device"] for d in self.sim.devices()}
        env = self.env(WABULK_HOME=str(home))
        proc = subprocess.Popen(
            [WABULK, "--db", str(home / "wabulk.db"), "login", "--session", session, "--timeout", "60"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            wait_for(lambda: self.sim.scan() or proc.poll() is not None, 60, f"the QR of session {session}")
            out, err = proc.communicate(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        assert proc.returncode == 0, (out, err)
        new = [d["device"] for d in self.sim.devices() if d["device"] not in before]
        assert len(new) == 1, new
        return str(new[0])

    def phone(self, i: int) -> str:
        """The i-th (valid, fictional Australian mobile) number of this test, E.164."""
        return f"+614915{self.base + i:05d}"

    def enqueue(
        self, n: int, *, extra_phones: Iterable[str] = (), tag: str = ""
    ) -> tuple[int, dict[str, str]]:
        """Enqueue ``n`` contacts through the CLI; returns (job id, {digits: exact expected text})."""
        path = self.home / f"contacts{tag}.csv"
        phones = [self.phone(i) for i in range(n)] + list(extra_phones)
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["name", "phone"])
            for i, p in enumerate(phones):
                w.writerow([f"Ana {i}{tag}", p])
        res = self.cli(
            "enqueue", str(path), "-m", "Olá {name} 👋 — your code is ready", "--country", "AU", "--json"
        )
        data = json.loads(res.stdout)
        assert data["enqueued"] == len(phones), data
        expected = {p.lstrip("+"): f"Olá Ana {i}{tag} 👋 — your code is ready" for i, p in enumerate(phones)}
        return int(data["job_id"]), expected

    # --- running ----------------------------------------------------------------------------------------
    def run(self, session: str, *args: str, lease: float | None = 8.0, until_done: bool = True) -> Worker:
        """Start ``wabulk run --session S [--until-done]`` (pace off unless ``args`` say otherwise)."""
        return self._run(["--session", session], args, lease, until_done)

    def run_fleet(self, sessions: str, *args: str, lease: float | None = None) -> Worker:
        """Start ``wabulk run --sessions A,B --until-done`` (one worker process per session, pace off unless
        ``args`` say otherwise); without ``lease`` the workers keep wabulk's default lease."""
        return self._run(["--sessions", sessions], args, lease, True)

    def _run(self, target: list[str], args: tuple[str, ...], lease: float | None, until_done: bool) -> Worker:
        n = len(self.workers)
        out, err = self.home / f"run{n}.out", self.home / f"run{n}.err"
        extra = {"WABULK_LEASE_SECONDS": str(lease)} if lease else {}
        if "--pace" not in args:
            args = ("--pace", "off", *args)
        if until_done:
            args = ("--until-done", *args)
        with out.open("wb") as fo, err.open("wb") as fe:
            proc = subprocess.Popen(
                [WABULK, "--db", str(self.db), "run", *target, "--web-url", self.sim.url, *args],
                env=self.env(**extra),
                stdout=fo,
                stderr=fe,
                start_new_session=True,
            )
        w = Worker(proc, out, err)
        self.workers.append(w)
        return w

    def cleanup(self) -> None:
        for w in self.workers:
            w.cleanup()

    # --- oracles ----------------------------------------------------------------------------------------
    def arrived(self) -> list[dict[str, Any]]:
        """What the simulator received since this test started."""
        return self.sim.messages()[self.start :]

    def wait_arrived(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]] | None:
            got = self.arrived()
            return got if len(got) >= count else None

        return wait_for(enough, timeout, f"{count} messages to arrive")

    def assert_exactly_once(self, expected: dict[str, str]) -> list[dict[str, Any]]:
        """Every expected (number, text) arrived exactly once and nothing else arrived."""
        got = self.arrived()
        counts = collections.Counter((m["phone"], m["text"]) for m in got)
        want = collections.Counter(expected.items())
        dupes = {k: c for k, c in counts.items() if c > 1}
        assert not dupes, f"duplicates: {dupes}"
        assert counts == want, f"missing: {want - counts}; unexpected: {counts - want}"
        return got

    def status(self) -> dict[str, Any]:
        return json.loads(self.cli("status", "--json").stdout)

    def job(self, job_id: int) -> dict[str, Any]:
        return next(j for j in self.status()["jobs"] if j["id"] == job_id)

    def events_matching(self, text: str) -> list[str]:
        """Details of queue events containing ``text`` (read-only)."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            rows = conn.execute("SELECT detail FROM events WHERE instr(detail, ?) > 0", (text,))
            return [r[0] for r in rows]
        finally:
            conn.close()

    def rows(self) -> list[dict[str, Any]]:
        """The messages table (read-only), for attempts and error classes."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM messages ORDER BY id")]
        finally:
            conn.close()


@dataclass
class InProcessWorker:
    """``run_worker`` in a background thread (no signal handlers there), on a sender with short waits."""

    thread: threading.Thread
    transport: Any
    codes: list[int]

    def wait(self, timeout: float = 90.0) -> int:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"in-process worker did not finish in {timeout:.0f}s"
        return self.codes[0]

    def close(self) -> None:
        if self.thread.is_alive():  # a failed test: end the worker before closing its browser
            self.transport.close()
            self.thread.join(30)
        self.transport.close()


def run_in_process(e2e: E2E, session: str, *, confirm: float = 3.0, **changes: Any) -> InProcessWorker:
    """Start the worker in this process with ``WorkerConfig`` ``changes`` (e.g. a short retry backoff,
    which the CLI does not expose) and a short confirmation wait."""
    from wabulk import worker
    from wabulk.settings import Settings
    from wabulk.web import dom
    from wabulk.web.sender import WhatsAppSender

    settings = Settings.from_env().with_(web_url=e2e.sim.url, home=e2e.home, db=e2e.db, headless=True)
    timeouts = dom.Timeouts(
        boot=20, stuck_loading=20, chat_open=10, element=5, confirm=confirm, takeover=10, settle=1.0
    )
    transport = WhatsAppSender(settings, session, timeouts=timeouts)
    config = dataclasses.replace(worker.build_config(session=session, until_done=True, pace="off"), **changes)
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(worker.run_worker(settings, config, transport=transport)),
        name=f"worker-{session}",
        daemon=True,
    )
    thread.start()
    return InProcessWorker(thread, transport, codes)


# --- the fixtures of the worker's e2e files --------------------------------------------------------------
# tests/test_worker_e2e*.py import them (pytest knows them by their ``name``); each module gets its own
# simulator and linked profiles, so the two files can run on different xdist workers.

_BASES = iter(range(100, 99_000, 100))


@pytest.fixture(scope="module", name="sim")
def sim_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A simulator of this module's own (logouts and takeovers here must not touch other tests' browsers)."""
    with simulator_running(tmp_path_factory, "sim-worker", SIM_E2E) as s:
        yield s


@pytest.fixture(scope="module", name="linked")
def linked_fixture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[Path, str]]]:
    """Profiles linked once for the module (copied into each test's home)."""
    return tmp_path_factory.mktemp("linked-profiles"), {}


@pytest.fixture(name="e2e")
def e2e_fixture(sim: Any, tmp_path: Path, linked: tuple[Path, dict[str, tuple[Path, str]]]) -> Iterator[E2E]:
    """One test's data on the module's simulator, with the module's linked profiles to copy."""
    sim.configure(**SIM_E2E)
    env = E2E(sim=sim, home=tmp_path / "home", base=next(_BASES), template_home=linked[0], linked=linked[1])
    yield env
    env.cleanup()
    sim.configure(**SIM_E2E)
