"""Faults: each must end with one ``Error: …`` line naming the cause, exit 1 or 2, lose nothing, and the next
run (once the cause is gone) must carry on. Scenarios: database on a full disk, on a read-only file system,
a corrupt database file, a profile locked by another process, chromedriver missing or of the wrong version,
the WhatsApp URL unreachable.

Full-disk and read-only use a small tmpfs (``mount -t tmpfs``, root only); they are reported as SKIPPED with
the reason when mounting is impossible. The browser faults need Chromium (skipped without it).

    python -m tests.torture.faults [--only disk_full,read_only,...]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.torture.common import (
    Figures,
    body,
    enqueue_direct,
    integrity,
    phone,
    python_env,
    read_deliveries,
    rows,
    start_fake_worker,
)

WABULK = str(Path(sys.executable).with_name("wabulk"))


class Skip(Exception):
    """This fault cannot be staged here (the reason is reported)."""


def wabulk(
    tmp: Path, *args: str, db: Path | None = None, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    e = python_env(WABULK_HOME=str(tmp / "home"), WABULK_HEADLESS="1", **env)
    return subprocess.run(
        [WABULK, "--db", str(db or tmp / "wabulk.db"), *args],
        env=e,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def expect_error(res: subprocess.CompletedProcess[str], *words: str) -> None:
    """One ``Error:`` line naming the cause (any of ``words``), exit 1 or 2, never a traceback."""
    out = res.stdout + res.stderr
    errs = [ln for ln in out.splitlines() if ln.startswith("Error:")]
    assert "Traceback" not in out, f"traceback:\n{out[-2000:]}"
    assert res.returncode in (1, 2), f"exit {res.returncode}:\n{out[-2000:]}"
    assert len(errs) == 1, f"expected one Error: line, got {errs}:\n{out[-2000:]}"
    assert any(w.lower() in errs[0].lower() for w in words), f"{errs[0]!r} names none of {words}"


def drain_with_fake(tmp: Path, n: int) -> None:
    """The next run: a fake-transport worker sends everything, each message exactly once."""
    w = start_fake_worker(tmp, "next", "--until-done", "--lease", "5", tag=f"-{time.monotonic_ns()}")
    code = w.wait(120)
    assert code == 0, (
        (tmp / "next.log").read_text(errors="replace")[-2000:]
        if (tmp / "next.log").exists()
        else f"exit {code}"
    )
    got = collections.Counter((d["phone"], d["body"]) for d in read_deliveries(tmp / "deliveries.jsonl"))
    want = collections.Counter({(phone(i), body(i)): 1 for i in range(n)})
    assert got == want, f"deliveries differ: missing {want - got}, extra {got - want}"
    assert integrity(tmp / "wabulk.db") == "ok"


def untouched(db: Path, n: int) -> None:
    data = rows(db)
    assert len(data) == n and all(r["status"] == "pending" and r["attempts"] == 0 for r in data), [
        (r["status"], r["attempts"]) for r in data
    ][:5]


@contextlib.contextmanager
def tmpfs(size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        raise Skip("mounting a tmpfs needs root")
    d = Path(tempfile.mkdtemp(prefix="wabulk-tmpfs-"))
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True, text=True
    )
    if res.returncode != 0:
        d.rmdir()
        raise Skip(f"cannot mount a tmpfs: {res.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)
        with contextlib.suppress(OSError):
            d.rmdir()


def big_csv(path: Path, n: int) -> None:
    with path.open("w") as f:
        f.write("name,phone\n")
        for i in range(n):
            f.write(f"Someone with a long name {i},+6148{i:07d}\n")


def fault_disk_full(tmp: Path) -> str:
    n = 30
    with tmpfs("4m") as mnt:
        enqueue_direct(mnt / "wabulk.db", n)
        csv = tmp / "big.csv"
        big_csv(csv, 50_000)
        filler = mnt / "filler"
        # Unbuffered: a partly written buffer would fail again when the file is closed.
        with filler.open("wb", buffering=0) as f:  # fill the disk to the last byte
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
        with contextlib.suppress(OSError):
            with filler.open("ab", buffering=0) as f:
                while True:
                    f.write(b"\0" * 512)
                    f.flush()
        res = wabulk(tmp, "enqueue", str(csv), "-m", "Hi {name}", "--country", "AU", db=mnt / "wabulk.db")
        expect_error(res, "full", "disk")
        # A worker on the full disk: refused with the same kind of error, nothing claimed.
        w = start_fake_worker(mnt, "w", "--until-done", "--lease", "5", log_dir=tmp)
        code = w.wait(60)
        log = (tmp / "w.log").read_text(errors="replace")
        assert code == 1 and "Error:" in log and "Traceback" not in log, (code, log[-1500:])
        filler.unlink()
        conn = sqlite3.connect(str(mnt / "wabulk.db"))
        jobs = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
        conn.close()
        assert jobs == 1, "a partial job was left by the failed import"
        untouched(mnt / "wabulk.db", n)
        shutil.copy(mnt / "wabulk.db", tmp / "wabulk.db")
        for ext in ("-wal", "-shm"):
            if (mnt / f"wabulk.db{ext}").exists():
                shutil.copy(mnt / f"wabulk.db{ext}", tmp / f"wabulk.db{ext}")
        # The next run, on the freed disk, continues: the import succeeds and the worker drains the job.
        small = tmp / "small.csv"
        big_csv(small, 20)
        res = wabulk(tmp, "enqueue", str(small), "-m", "Hi {name}", "--country", "AU", db=mnt / "wabulk.db")
        assert res.returncode == 0, res.stderr
    drain_with_fake(tmp, n)
    return "ok"


def fault_read_only(tmp: Path) -> str:
    n = 10
    with tmpfs("8m") as mnt:
        enqueue_direct(mnt / "wabulk.db", n)
        res = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True)
        if res.returncode != 0:
            raise Skip(f"cannot remount read-only: {res.stderr.strip()}")
        csv = tmp / "c.csv"
        big_csv(csv, 5)
        res = wabulk(tmp, "enqueue", str(csv), "-m", "Hi {name}", "--country", "AU", db=mnt / "wabulk.db")
        expect_error(res, "read-only", "readonly", "read only")
        wr = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.torture.fake_worker",
                "--db",
                str(mnt / "wabulk.db"),
                "--home",
                str(tmp / "home"),
                "--session",
                "w",
                "--deliveries",
                str(tmp / "deliveries.jsonl"),
                "--until-done",
            ],
            env=python_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert wr.returncode == 1 and "Error:" in wr.stderr and "Traceback" not in wr.stderr, (
            wr.returncode,
            wr.stderr[-1500:],
        )
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
        untouched(mnt / "wabulk.db", n)
        for f in mnt.iterdir():
            shutil.copy(f, tmp / f.name)
    drain_with_fake(tmp, n)
    return "ok"


def fault_corrupt(tmp: Path) -> str:
    junk = tmp / "junk.db"
    junk.write_bytes(random.Random(1).randbytes(50_000))
    expect_error(wabulk(tmp, "status", db=junk), "not a", "database", "corrupt")
    # A real database with pages overwritten in the middle.
    db = tmp / "real.db"
    enqueue_direct(db, 3000)
    conn = sqlite3.connect(str(db))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = db.stat().st_size
    with db.open("r+b") as f:
        for off in range(8192, size - 8192, max(4096, size // 20)):
            f.seek(off)
            f.write(random.Random(off).randbytes(2048))
    for args in (("status",), ("export", "1", "-o", str(tmp / "out.csv"))):
        res = wabulk(tmp, *args, db=db)
        out = res.stdout + res.stderr
        assert "Traceback" not in out, out[-2000:]
        if res.returncode != 0:
            expect_error(res, "corrupt", "malformed", "not a", "database")
    # The next run: a fresh database file works.
    enqueue_direct(tmp / "wabulk.db", 5)
    drain_with_fake(tmp, 5)
    return "ok"


def _chromium() -> None:
    if not (shutil.which("chromium") or shutil.which("google-chrome")) or not shutil.which("chromedriver"):
        raise Skip("needs Chromium and chromedriver")


def _run_fails(tmp: Path, *words: str, args: tuple[str, ...] = (), **env: str) -> None:
    n = 3
    if not (tmp / "wabulk.db").exists():
        enqueue_direct(tmp / "wabulk.db", n)
    res = wabulk(tmp, "run", "--session", "s", "--until-done", "--pace", "off", *args, timeout=180, **env)
    expect_error(res, *words)
    untouched(tmp / "wabulk.db", n)
    conn = sqlite3.connect(str(tmp / "wabulk.db"))
    assert conn.execute("SELECT count(*) FROM workers").fetchone()[0] == 0, "a worker registration was left"
    conn.close()


def fault_profile_locked(tmp: Path) -> str:
    profile = tmp / "home" / "sessions" / "s"
    profile.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from wabulk.web.profile import ProfileLock;"
            " from pathlib import Path; ProfileLock(Path(sys.argv[1]), 's').acquire();"
            " print('held', flush=True); time.sleep(600)",
            str(profile / "wabulk.lock"),
        ],
        env=python_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        _run_fails(tmp, f"process {holder.pid}", "in use")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    from wabulk.web.profile import ProfileLock

    lock = ProfileLock(profile / "wabulk.lock", "s")
    lock.acquire()  # the holder's death freed it: the next run gets it
    lock.release()
    drain_with_fake(tmp, 3)
    return "ok"


def fault_chromedriver_missing(tmp: Path) -> str:
    _run_fails(tmp, "chromedriver", WABULK_CHROMEDRIVER="/nonexistent/chromedriver")
    drain_with_fake(tmp, 3)
    return "ok"


def fault_chromedriver_version(tmp: Path) -> str:
    _chromium()
    fake = tmp / "chromedriver"
    fake.write_text("#!/bin/sh\necho 'ChromeDriver 99.0.4844.51 (0123456789abcdef)'\n")
    fake.chmod(0o755)
    _run_fails(tmp, "version 99", "match", WABULK_CHROMEDRIVER=str(fake))
    drain_with_fake(tmp, 3)
    return "ok"


def fault_url_unreachable(tmp: Path) -> str:
    _chromium()
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        _run_fails(tmp, "cannot reach", args=("--web-url", f"http://127.0.0.1:{port}"))
    drain_with_fake(tmp, 3)
    return "ok"


FAULTS: dict[str, Callable[[Path], str]] = {
    "disk_full": fault_disk_full,
    "read_only": fault_read_only,
    "corrupt": fault_corrupt,
    "profile_locked": fault_profile_locked,
    "chromedriver_missing": fault_chromedriver_missing,
    "chromedriver_version": fault_chromedriver_version,
    "url_unreachable": fault_url_unreachable,
}


def run(only: list[str] | None = None, tmpdir: Path | None = None) -> Figures:
    t0 = time.monotonic()
    fig = Figures("faults")
    problems: list[str] = []
    results: dict[str, str] = {}
    for name, fn in FAULTS.items():
        if only and name not in only:
            continue
        with tempfile.TemporaryDirectory(dir=tmpdir) as d:
            try:
                results[name] = fn(Path(d))
            except Skip as e:
                results[name] = f"SKIPPED ({e})"
            except AssertionError as e:
                results[name] = "FAILED"
                problems.append(f"{name}: {e}")
        print(f"  {name}: {results[name]}", flush=True)
    fig.integrity = "ok"
    fig.extra["passed"] = sum(1 for v in results.values() if v == "ok")
    fig.extra["skipped"] = sum(1 for v in results.values() if v.startswith("SKIPPED"))
    if problems:
        fig.extra["problems"] = problems
    fig.seconds = time.monotonic() - t0
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(FAULTS)}")
    a = ap.parse_args(argv)
    return run(a.only.split(",") if a.only else None).report()


if __name__ == "__main__":
    sys.exit(main())
