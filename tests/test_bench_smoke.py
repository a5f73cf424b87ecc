"""The benchmark scripts run (tiny sizes) and report what they claim to. Not timing assertions: the figures
of a --quick run mean nothing; only that each script works end to end and emits its table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from browser_marks import needs_chromium

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def _run(script: str, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / f"{script}.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", *extra, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["title"] in proc.stdout  # the table is printed too
    return result


def _cells(result: dict, column: str) -> list[str]:
    return [str(r.get(column, "")) for r in result["rows"]]


def test_enqueue_bench_measures_import_and_insert_path(tmp_path: Path) -> None:
    r = _run("bench_enqueue.py", tmp_path, "--rows", "1200", "--insert-rows", "500")
    whats = _cells(r, "what")
    assert any("CSV import, 1,200 rows" in w for w in whats)
    assert any("Queue.enqueue" in w for w in whats) and any("raw executemany" in w for w in whats)
    # Every generated contact is valid and distinct: the import benchmark measures real work.
    assert any("enqueued 1,200, invalid 0, duplicates 0" in w for w in whats)
    assert all(float(v) > 0 for v in _cells(r, "peak RSS MiB") if v and not v.startswith("+"))


def test_queue_bench_claims_without_duplicates_and_plans_with_an_index(tmp_path: Path) -> None:
    r = _run("bench_queue.py", tmp_path, "--messages", "600", "--seconds", "0.3")
    claim_rows = [row for row in r["rows"] if "process(es)" in row["what"]]
    assert len(claim_rows) == 6  # 1, 2, 4 processes at 0 % and 50 %
    assert all(row["dup"] == 0 and row["errors"] == 0 for row in claim_rows)
    plan = next(row for row in r["rows"] if "EXPLAIN" in row["what"])
    assert plan["met"] == "yes"
    assert any(n.startswith("claim plan:") and "idx_messages_claim" in n for n in r["notes"])
    assert any("summaries" in w for w in _cells(r, "what"))


def test_startup_bench_reports_heavy_imports(tmp_path: Path) -> None:
    r = _run("bench_startup.py", tmp_path)
    rows = {row["command"]: row for row in r["rows"]}
    assert {"python -c pass (baseline)", "wabulk --help", "wabulk status --json"} <= set(rows)
    for cmd in ("wabulk --help", "wabulk status --json"):
        assert "selenium" not in rows[cmd]["heavy imports"]
        assert "phonenumbers" not in rows[cmd]["heavy imports"]


def test_run_all_writes_the_performance_page_between_markers(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(
        "# Performance\n\nhand-written intro\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\nouttro\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "run_all.py"),
            "--quick",
            "--only",
            "bench_startup.py",
            "--out",
            str(doc),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = doc.read_text()
    assert "hand-written intro" in text and "outtro" in text and "old\n" not in text
    assert "### Start-up" in text and "| wabulk --help |" in text
    assert "**Machine:**" in text and "python bench/run_all.py --scale quick" in text


@pytest.mark.browser
@needs_chromium
def test_browser_bench_sends_through_the_simulator(tmp_path: Path) -> None:
    r = _run("bench_browser.py", tmp_path, "--messages", "2", "--memory-messages", "3")
    whats = _cells(r, "what")
    assert any(w.startswith("deep link") for w in whats)
    mech = next(row for row in r["rows"] if row["what"].startswith("deep link"))
    assert float(mech["median s"]) > 0
    # The simulator's own latency is at least its 0.8 s lookup + 2 s boot for the deep link.
    assert float(mech["simulator floor s"]) >= 2.8
    assert float(mech["wabulk overhead s"]) == pytest.approx(
        float(mech["median s"]) - float(mech["simulator floor s"]), abs=0.011
    )


def test_graph_simulator_bench_sends_and_receives_webhooks(tmp_path: Path) -> None:
    r = _run("bench_graphsim.py", tmp_path, "--messages", "200", "--connections", "2")
    (row,) = r["rows"]
    assert row["accepted"] == 200 and row["refused"] == 0
    assert row["statuses"] >= 400  # sent + delivered for each, batched into fewer POSTs
    assert 0 < row["POSTs"] < row["statuses"]


def test_cloud_bench_runs_wabulk_and_a_naive_sender_through_the_simulator(tmp_path: Path) -> None:
    r = _run("bench_cloud.py", tmp_path, "--messages", "60")
    assert _cells(r, "sender") == ["run --rate 1000", "run loop, no per-number cap", "naive sequential"]
    assert _cells(r, "sent") == ["60", "60", "60"] and _cells(r, "accepted at the simulator") == ["60"] * 3
