"""Helpers shared by the benchmark scripts: timing, medians, RSS from /proc, tables, JSON results.

Every bench script prints a table and, with ``--json PATH``, writes its rows for ``run_all.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
Row = dict[str, Any]


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every bench script takes."""
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    p.add_argument("--quick", action="store_true", help="tiny sizes: proves the script works (smoke test)")
    p.add_argument("--runs", type=int, default=None, help="repetitions per measurement (median is kept)")
    p.add_argument("--json", type=Path, default=None, help="write the result rows here")
    return p


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def rss_mib(pid: int | None = None) -> float:
    """Resident set size of a process (this one by default) from /proc, in MiB."""
    path = f"/proc/{pid or 'self'}/status"
    with open(path) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pss_mib(pid: int) -> float:
    """Proportional set size (shared pages split between the processes sharing them), in MiB."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss_mib(pid)


def tree_rss_mib(root_pid: int, measure: Callable[[int], float] | None = None) -> tuple[float, int]:
    """Summed RSS (or ``measure``, e.g. pss_mib) of a process and all its descendants (chromedriver +
    Chromium), and how many processes."""
    measure = measure or rss_mib
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total, n, todo = 0.0, 0, [root_pid]
    while todo:
        pid = todo.pop()
        try:
            total += measure(pid)
            n += 1
        except OSError:
            pass
        todo.extend(children.get(pid, []))
    return total, n


def run_child(code: str, *args: str, env: dict[str, str] | None = None) -> tuple[dict[str, Any], float]:
    """Run ``python -c code args`` in a fresh process; returns (its JSON stdout, its peak RSS in MiB).

    Peak RSS comes from getrusage(RUSAGE_CHILDREN) after the child is reaped; as that is a max over all
    children so far, each measurement runs in its own grandchild via a tiny launcher."""
    launcher = (
        "import resource, subprocess, sys, json\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "if p.returncode: sys.stderr.write(p.stderr); sys.exit(p.returncode)\n"
        "ru = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps({'out': p.stdout, 'maxrss_kib': ru}))\n"
    )
    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    p = subprocess.run(
        [PYTHON, "-c", launcher, PYTHON, "-c", code, *args],
        capture_output=True,
        text=True,
        env=full_env,
        check=False,
    )
    if p.returncode:
        raise RuntimeError(f"child failed ({p.returncode}): {p.stderr[-2000:]}")
    outer = json.loads(p.stdout)
    return json.loads(outer["out"]), outer["maxrss_kib"] / 1024


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as fh:
            mem = f"{int(fh.readline().split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    import phonenumbers

    return {
        "cpu": f"{os.cpu_count()} × {cpu}",
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "phonenumbers": phonenumbers.__version__,
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "fsync": f"{fsync_ms():.2f} ms (median 4 KiB write+fsync in the temp dir)",
    }


def fsync_ms(n: int = 20) -> float:
    """Median latency of a 4 KiB write + fsync: what bounds synchronous=FULL commits."""
    import tempfile

    times = []
    with tempfile.NamedTemporaryFile() as fh:
        for _ in range(n):
            t = time.perf_counter()
            os.write(fh.fileno(), b"x" * 4096)
            os.fsync(fh.fileno())
            times.append(time.perf_counter() - t)
    return median(times) * 1000


def ok(value: float, target: float, higher_is_better: bool = True) -> str:
    good = value >= target if higher_is_better else value <= target
    return "yes" if good else "NO"


def print_table(title: str, rows: Sequence[Row]) -> None:
    """A plain aligned table on stdout."""
    print(f"\n## {title}")
    if not rows:
        print("(no rows)")
        return
    cols = list(rows[0])
    for r in rows:
        for c in r:
            if c not in cols:
                cols.append(c)
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def finish(title: str, rows: list[Row], args: argparse.Namespace, notes: Sequence[str] = ()) -> None:
    """Print the table and, with --json, write {title, rows, notes} for run_all.py."""
    print_table(title, rows)
    for n in notes:
        print(f"note: {n}")
    sys.stdout.flush()
    if args.json is not None:
        args.json.write_text(json.dumps({"title": title, "rows": rows, "notes": list(notes)}, indent=1))


def peak_rss_self_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
