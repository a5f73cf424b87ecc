"""Enqueue: a generated CSV through the importer (rows/s, peak RSS vs a 10k-row import), and the store's
insert path (Queue.enqueue with pre-normalised messages) vs raw sqlite3 executemany of the same rows."""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Row, finish, median, ok, parser, run_child  # noqa: E402

# Example mobile numbers (valid in phonenumbers' metadata); the last 5 digits vary per row.
_MOBILES = [
    "+12015550123",
    "+447400123456",
    "+61412345678",
    "+919123456789",
    "+5511961234567",
    "+4915123456789",
    "+33612345678",
    "+34612345678",
    "+31612345678",
    "+27711234567",
]

IMPORT_CHILD = r"""
import json, sys, time, tempfile, os
from wabulk.importer import enqueue_file
from wabulk.queue import Queue
src = sys.argv[1]
d = tempfile.mkdtemp()
q = Queue(os.path.join(d, "bench.db"))
t = time.perf_counter()
r = enqueue_file(q, src, message="Hi {name}, your order from {city} is ready", country="US")
dt = time.perf_counter() - t
q.close()
print(json.dumps({"seconds": dt, "enqueued": r.enqueued, "invalid": r.invalid, "duplicates": r.duplicates}))
"""


def make_csv(path: Path, rows: int, seed: int = 1) -> None:
    """Contacts in the formats users have: 50 % E.164, 25 % international with spaces, 25 % US national
    like "(201) 555-0123" (read with --country US). Every number is distinct."""
    rnd = random.Random(seed)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("name,phone,city\n")
        for i in range(rows):
            base = _MOBILES[i % len(_MOBILES)]
            num = base[:-5] + f"{(i // len(_MOBILES)) % 100000:05d}"
            k = i % 4
            if k == 2:
                cc_len = 1 if num.startswith("+1") else 2
                phone = f"{num[: cc_len + 1]} {num[cc_len + 1 : cc_len + 4]} {num[cc_len + 4 :]}"
            elif k == 3:
                n = f"646{2_000_000 + (i // 4) % 8_000_000:07d}"
                phone = f"({n[:3]}) {n[3:6]}-{n[6:]}"
            else:
                phone = num
            fh.write(f"Person {i},{phone},City {rnd.randrange(500)}\n")


def import_once(csv_path: Path) -> tuple[dict, float]:
    return run_child(IMPORT_CHILD, str(csv_path))


def bench_import(rows: int, small: int, runs: int, tmp: Path) -> list[Row]:
    big_csv, small_csv = tmp / f"c{rows}.csv", tmp / f"c{small}.csv"
    make_csv(big_csv, rows)
    make_csv(small_csv, small)
    out: list[Row] = []
    results = {}
    for label, path, n in (("small", small_csv, small), ("big", big_csv, rows)):
        secs, rss, info = [], [], {}
        for _ in range(runs):
            info, peak = import_once(path)
            secs.append(info["seconds"])
            rss.append(peak)
        results[label] = (n, median(secs), median(rss), info, min(secs), max(secs))
    n_small, s_small, rss_small, _, _, _ = results["small"]
    n, s, rss_big, info, lo, hi = results["big"]
    rate = n / s
    out.append(
        {
            "what": f"CSV import, {n_small:,} rows (baseline)",
            "rows/s": f"{n_small / s_small:,.0f}",
            "peak RSS MiB": f"{rss_small:.1f}",
            "ratio": "1.00",
            "target": "",
            "met": "",
        }
    )
    out.append(
        {
            "what": f"CSV import, {n:,} rows",
            "rows/s": f"{rate:,.0f} ({n / hi:,.0f}-{n / lo:,.0f})",
            "peak RSS MiB": f"{rss_big:.1f}",
            "ratio": f"{rate / (n_small / s_small):.2f}",
            "target": ">= 25,000 rows/s",
            "met": ok(rate, 25_000),
        }
    )
    out.append(
        {
            "what": "  peak RSS vs baseline",
            "rows/s": "",
            "peak RSS MiB": f"+{rss_big - rss_small:.1f}",
            "ratio": "",
            "target": "<= 64 MiB, <= +16 MiB",
            "met": "yes" if rss_big <= 64 and rss_big - rss_small <= 16 else "NO",
        }
    )
    out.append(
        {
            "what": f"  (enqueued {info['enqueued']:,}, invalid {info['invalid']:,}, "
            f"duplicates {info['duplicates']:,})",
            "rows/s": "",
            "peak RSS MiB": "",
            "ratio": "",
            "target": "",
            "met": "",
        }
    )
    return out


def bench_insert(rows: int, runs: int, tmp: Path) -> list[Row]:
    from wabulk.models import NewJob, NewMessage
    from wabulk.queue import Queue

    msgs = [
        NewMessage(
            phone=f"+1201555{i:07d}"[:16],
            body=f"Hi Person {i}, your order from City {i % 500} is ready for pick-up at the usual place.",
            name=f"Person {i}",
            variables={"name": f"Person {i}", "city": f"City {i % 500}"},
            source_row=i + 2,
        )
        for i in range(rows)
    ]
    now = time.time()
    tuples = [
        (
            1,
            m.phone,
            m.name,
            json.dumps(m.variables, ensure_ascii=False),
            m.body,
            None,
            m.source_row,
            3,
            now,
            now,
        )
        for m in msgs
    ]
    sql = (
        "INSERT OR IGNORE INTO messages (job_id, phone, name, variables, body, flags, source_row, status,"
        " attempts, max_attempts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)"
    )
    store, raw, bare = [], [], []
    for r in range(runs):
        # The store: a fresh database, Queue.enqueue of the NewMessage objects.
        q = Queue(tmp / f"store{r}.db")
        t = time.perf_counter()
        q.enqueue(NewJob(name="bench", template="x"), iter(msgs))
        store.append(time.perf_counter() - t)
        q.close()
        # Raw: the same schema (indexes, counter triggers), pre-serialised tuples, one executemany.
        q = Queue(tmp / f"raw{r}.db")
        conn = q.conn
        conn.execute("INSERT INTO jobs (name, template, created_at) VALUES ('bench', 'x', 0)")
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, tuples)
        conn.execute("COMMIT")
        raw.append(time.perf_counter() - t)
        q.close()
        # Reference: a bare table without indexes or triggers (the doc's a1 measurement).
        c = sqlite3.connect(tmp / f"bare{r}.db", isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY, job_id, phone, name, variables, body, flags,"
            " source_row, status, attempts, max_attempts, created_at, updated_at)"
        )
        t = time.perf_counter()
        c.execute("BEGIN IMMEDIATE")
        c.executemany(sql.replace("OR IGNORE ", ""), tuples)
        c.execute("COMMIT")
        bare.append(time.perf_counter() - t)
        c.close()
    s, rw, b = median(store), median(raw), median(bare)
    return [
        {
            "what": f"raw executemany, wabulk schema, {rows:,} rows (baseline)",
            "rows/s": f"{rows / rw:,.0f}",
            "ratio": "1.00",
            "target": "",
            "met": "",
        },
        {
            "what": "Queue.enqueue (NewMessage objects)",
            "rows/s": f"{rows / s:,.0f}",
            "ratio": f"{rw / s:.2f}",
            "target": ">= 0.8x raw",
            "met": ok(rw / s, 0.8),
        },
        {
            "what": "raw executemany, bare table (reference)",
            "rows/s": f"{rows / b:,.0f}",
            "ratio": f"{rw / b:.2f}",
            "target": "",
            "met": "",
        },
    ]


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--rows", type=int, default=None, help="CSV rows for the import (default 1,000,000)")
    p.add_argument(
        "--insert-rows", type=int, default=None, help="rows for the insert path (default 1,000,000)"
    )
    args = p.parse_args()
    rows = args.rows or (2_000 if args.quick else 1_000_000)
    small = min(10_000, max(500, rows // 10)) if args.quick else 10_000
    insert_rows = args.insert_rows or (2_000 if args.quick else 1_000_000)
    runs = args.runs or (1 if args.quick else 3)
    with tempfile.TemporaryDirectory(prefix="wabulk-bench-") as d:
        tmp = Path(d)
        rows_out = bench_import(rows, small, runs, tmp)
        rows_out += bench_insert(insert_rows, runs, tmp)
    finish(
        "Enqueue",
        rows_out,
        args,
        notes=[
            f"median of {runs} run(s); import rates show the range (min-max) in brackets",
            "CSV mix: 50 % E.164, 25 % international with spaces, 25 % US national format (--country US)",
            "import: fresh process and database per run; its peak RSS (getrusage RUSAGE_CHILDREN)",
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
