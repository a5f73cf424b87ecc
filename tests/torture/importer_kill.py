"""The importer killed mid-file: ``wabulk enqueue`` of a big generated CSV is SIGKILLed at random moments,
then re-run. Every job in the database must be complete (all rows, in one transaction) or absent, and the
re-run must add exactly one complete job (no duplicate rows within it).

    python -m tests.torture.importer_kill --rows 200000 --kills 5
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.torture.common import Figures, integrity, python_env

WABULK = str(Path(sys.executable).with_name("wabulk"))


def make_csv(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("name,phone,city\n")
        for i in range(n):
            f.write(f"Name {i},+6149{i:07d},City {i % 97}\n")


def enqueue_cmd(db: Path, csv: Path) -> list[str]:
    return [
        WABULK,
        "--db",
        str(db),
        "enqueue",
        str(csv),
        "-m",
        "Hi {name} from {city}",
        "--country",
        "AU",
        "--json",
    ]


def jobs(db: Path, *, visible: bool = True) -> list[tuple[int, int, int]]:
    """(job id, messages, distinct phones) per job. An import is written in chunks into a job that stays
    invisible and unclaimable (``ready = 0``) until complete; ``visible`` lists only complete jobs."""
    if not db.exists():
        return []
    conn = sqlite3.connect(str(db), timeout=30)
    try:
        return [
            (r[0], r[1], r[2])
            for r in conn.execute(
                "SELECT j.id, count(m.id), count(DISTINCT m.phone) FROM jobs j LEFT JOIN messages m"
                f" ON m.job_id = j.id {'WHERE j.ready = 1' if visible else ''} GROUP BY j.id ORDER BY j.id"
            )
        ]
    finally:
        conn.close()


def run(n_rows: int, kills: int, seed: int | None = None, tmpdir: Path | None = None) -> Figures:
    rng = random.Random(seed)
    t0 = time.monotonic()
    fig = Figures("importer-kill", messages=n_rows)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(dir=tmpdir) as d:
        tmp = Path(d)
        csv, db = tmp / "big.csv", tmp / "home" / "wabulk.db"
        make_csv(csv, n_rows)
        env = python_env(WABULK_HOME=str(tmp / "home"))
        # How long a full import takes, to aim the kills inside it.
        t = time.monotonic()
        res = subprocess.run(enqueue_cmd(db, csv), env=env, capture_output=True, text=True, timeout=900)
        full = time.monotonic() - t
        if res.returncode != 0:
            problems.append(f"clean import failed: {res.stderr.strip()[-300:]}")
        fig.extra["import_seconds"] = round(full, 2)
        completed = 1
        for _ in range(kills):
            p = subprocess.Popen(
                enqueue_cmd(db, csv), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            time.sleep(rng.uniform(0.05, 0.95) * full)
            if p.poll() is None:
                p.kill()
                fig.kills += 1
            else:
                completed += 1  # it finished before the kill: a legitimate complete job
            p.communicate()
            for jid, count, distinct in jobs(db):
                if count != n_rows or distinct != n_rows:
                    problems.append(f"job {jid} has {count} rows ({distinct} distinct), not {n_rows}")
        # The re-run after the last kill.
        res = subprocess.run(enqueue_cmd(db, csv), env=env, capture_output=True, text=True, timeout=900)
        if res.returncode != 0:
            problems.append(f"re-run failed ({res.returncode}): {res.stderr.strip()[-300:]}")
        else:
            completed += 1
            if json.loads(res.stdout)["enqueued"] != n_rows:
                problems.append(f"re-run enqueued {res.stdout.strip()}")
        found = jobs(db)
        # More is fine: a kill that landed after the last chunk's commit (while the CLI printed) killed an
        # import that had completed; every visible job was checked whole above.
        if len(found) < completed:
            problems.append(f"{len(found)} jobs, expected {completed} complete imports")
        # The next import removed every half-written job its killed predecessors left.
        everything = jobs(db, visible=False)
        if len(everything) != len(found):
            problems.append(f"{len(everything) - len(found)} half-imported job(s) left behind")
        fig.lost = sum(n_rows - c for _, c, _ in found if c < n_rows)
        fig.duplicates = sum(c - dist for _, c, dist in found)
        fig.delivered = sum(c for _, c, _ in found)
        fig.integrity = integrity(db)
        leftovers = [p.name for p in csv.parent.iterdir() if p.name.endswith(".tmp")]
        if leftovers:
            problems.append(f"temporary files left behind: {leftovers}")
    fig.extra["complete_jobs"] = completed
    if problems:
        fig.extra["problems"] = problems
    fig.seconds = time.monotonic() - t0
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args(argv)
    return run(a.rows, a.kills, a.seed).report()


if __name__ == "__main__":
    sys.exit(main())
