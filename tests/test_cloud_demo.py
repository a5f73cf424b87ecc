"""``wabulk demo --cloud`` end to end: the Graph API simulator and wabulk's webhook receiver over real HTTP,
login, templates sync, a template job, the run and the status, in a throwaway data dir."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from wabulk.cli import app

runner = CliRunner()


def test_demo_cloud_runs_the_whole_flow_and_exits_0(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wabulk.cloud import account

    # The demo's session is what `wabulk login --cloud` records (its code, against the simulator), not a
    # copy of it that could drift.
    logins: list[tuple[str, str]] = []
    real_login = account.login_cloud

    def login_spy(db: Path, session: str, phone_number_id: str, **kw: Any) -> account.CloudLogin:
        logins.append((session, phone_number_id))
        return real_login(db, session, phone_number_id, **kw)

    monkeypatch.setattr(account, "login_cloud", login_spy)
    result = runner.invoke(app, ["demo", "--cloud"], catch_exceptions=False)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert logins == [("biz", "1234567890")]
    out = result.stdout
    assert "quality GREEN" in out
    assert "business portfolio 7766554433" in out  # what login --cloud found for the number
    assert "template(s) of account 4455667788" in out
    assert "One failure is expected: the sample list has a number that is not on WhatsApp (131026)." in out
    db = isolated_home / "demo-cloud" / "demo.db"
    status = json.loads(runner.invoke(app, ["--db", str(db), "status", "--json"]).stdout)
    (job,) = status["jobs"]
    assert job["template"] == "pickup_ready"
    assert (job["total"], job["pending"], job["sending"]) == (10, 0, 0)
    assert (job["sent"], job["failed"], job["unknown"]) == (9, 1, 0)
    assert job["delivered"] >= 1
    assert sum(c["billable"] for c in job["billable"].values()) >= 1
    with open(isolated_home / "demo-cloud" / "demo-report.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    failed = [r for r in rows if r["status"] == "failed"]
    assert [(r["phone"], r["error_class"]) for r in failed] == [("'+12125550199", "graph_131026")]
