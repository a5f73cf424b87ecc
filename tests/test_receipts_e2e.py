"""``wabulk track`` end to end: real Chromium on the simulator reads the ticks of our bubbles.

One number is held on one tick (``never_deliver``); the other is delivered, then read, as the simulator's
delays (``delivered_ms``, ``read_ms``) pass. The simulator's log is the oracle that tracking sends nothing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser_marks import needs_chromium
from e2e_helpers import E2E, SIM_E2E, simulator_running

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(240),
    needs_chromium,
]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with simulator_running(tmp_path_factory, "sim-receipts", SIM_E2E) as s:
        yield s


@pytest.fixture
def e2e(sim: Any, tmp_path: Path) -> Iterator[E2E]:
    sim.configure(**SIM_E2E)
    env = E2E(sim=sim, home=tmp_path / "home", base=7000)
    yield env
    env.cleanup()
    sim.configure(**SIM_E2E)


def test_track_records_delivered_then_read_and_flags_the_undelivered(e2e: E2E) -> None:
    held, ok = e2e.phone(0), e2e.phone(1)
    # Nothing is delivered while the job runs, so the send itself only sees one tick.
    e2e.sim.configure(delivered_ms=None, read_ms=None, never_deliver=[held])
    e2e.link("s")
    job, expected = e2e.enqueue(2)
    w = e2e.run("s")
    assert w.wait() == 0, w.output()
    e2e.assert_exactly_once(expected)
    rows = {r["phone"]: r for r in e2e.rows()}
    assert rows[held]["receipt"] == rows[ok]["receipt"] == "sent"
    sent_log = len(e2e.sim.messages())

    # Delivered now, read only in a minute.
    e2e.sim.configure(delivered_ms=0, read_ms=60_000)
    res = e2e.cli("track", "--session", "s", "--older-than", "0", "--json", timeout=120)
    out = json.loads(res.stdout)
    assert (out["checked"], out["delivered"], out["read"], out["unchanged"]) == (2, 1, 0, 1), out
    rows = {r["phone"]: r for r in e2e.rows()}
    assert rows[ok]["receipt"] == "delivered" and rows[ok]["delivered_at"] and rows[ok]["read_at"] is None
    assert rows[held]["receipt"] == "sent" and rows[held]["delivered_at"] is None

    # The read delay has passed.
    e2e.sim.configure(read_ms=0)
    out = json.loads(e2e.cli("track", "--session", "s", "--older-than", "0", "--json", timeout=120).stdout)
    assert (out["checked"], out["read"]) == (2, 1), out
    rows = {r["phone"]: r for r in e2e.rows()}
    assert rows[ok]["receipt"] == "read" and rows[ok]["read_at"] >= rows[ok]["delivered_at"]
    assert rows[held]["receipt"] == "sent"
    assert len(e2e.sim.messages()) == sent_log, "tracking must never send"

    row = e2e.job(job)
    assert (row["sent"], row["delivered"], row["read"], row["undelivered"]) == (2, 1, 1, 0)
    assert e2e.cli("status", "--check").returncode == 0
    # Past the (tiny, for the test) undelivered age: flagged, and exported alone.
    check = e2e.cli("status", "--check", "--undelivered-after", "1s", check=False)
    assert check.returncode == 4, check.stdout + check.stderr
    assert f"job {job} (" in check.stdout and "1 message undelivered after 1s" in check.stdout
    exported = e2e.cli("export", str(job), "--undelivered", "--undelivered-after", "1s").stdout
    assert [r["phone"] for r in csv.DictReader(io.StringIO(exported))] == ["'" + held]
