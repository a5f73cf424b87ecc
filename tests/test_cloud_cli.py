"""The Cloud API through the CLI: login --cloud, run on a Cloud session (rate, until-done, a token refused
mid-run, a template problem), status --json's sessions; all against the bundled Graph simulator."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cloud_helpers import PHONE_ID, TOKEN, graph_simulator, webhook_receiver
from wabulk import exitcodes
from wabulk.cli import app
from wabulk.models import NewJob, NewMessage
from wabulk.queue import Queue

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def sim(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    Queue(db_path).close()
    with webhook_receiver(db_path) as hook, graph_simulator(hook, all_windows_open=True) as s:
        monkeypatch.setenv("WABULK_GRAPH_URL", s.url)
        monkeypatch.setenv("WABULK_CLOUD_TOKEN", TOKEN)
        monkeypatch.setenv("WABULK_CLOUD_SETTLE_SECONDS", "2")
        yield s


def enqueue(db: Path, n: int, **job: Any) -> int:
    with Queue(db) as q:
        return q.enqueue(
            NewJob(name="j", template="Hi", **job),
            [NewMessage(phone=f"+1415555{i:04d}", body=f"Hi {i}", params=("Ann", str(i))) for i in range(n)],
        ).job_id


def sessions(db: Path) -> dict[str, dict[str, Any]]:
    code, out, _ = invoke("status", "--json")
    assert code == 0
    return {s["session"]: s for s in json.loads(out)["sessions"]}


def test_login_checks_the_token_and_the_number_and_records_nothing_on_failure(
    db_path: Path, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WABULK_CLOUD_TOKEN", "wrong")
    code, out, err = invoke("login", "--session", "biz", "--cloud", "--phone-number-id", PHONE_ID)
    assert code != 0 and "190" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("WABULK_CLOUD_TOKEN", TOKEN)
    code, out, err = invoke("login", "--session", "biz", "--cloud", "--phone-number-id", "999000111")
    assert code != 0 and "100" in err and len(err.strip().splitlines()) == 1
    assert "biz" not in sessions(db_path)
    code, out, err = invoke("login", "--session", "biz", "--cloud", "--phone-number-id", PHONE_ID)
    assert code == 0, err
    assert "Cloud API" in out
    row = sessions(db_path)["biz"]
    assert row["provider"] == "cloud" and row["phone_number_id"] == PHONE_ID and not row["paused"]
    assert TOKEN not in json.dumps(row)


def test_run_on_a_cloud_session_sends_everything(db_path: Path, sim: Any) -> None:
    assert invoke("login", "--session", "biz", "--cloud", "--phone-number-id", PHONE_ID)[0] == 0
    job = enqueue(db_path, 40)
    # A WhatsApp Web option on a Cloud session: said once, and otherwise ignored.
    code, out, err = invoke(
        "run", "--session", "biz", "--until-done", "--rate", "200", "--restart-browser-every", "5"
    )
    assert code == exitcodes.OK, err
    assert (
        "--restart-browser-every applies to WhatsApp Web sessions; ignored for the Cloud API session 'biz'"
        in err
    )
    with Queue(db_path) as q:
        assert q.counts(job)["sent"] == 40
    assert len(sim.accepted()) == 40


def test_a_rate_above_meta_maximum_is_refused(db_path: Path, sim: Any) -> None:
    assert invoke("login", "--session", "biz", "--cloud", "--phone-number-id", PHONE_ID)[0] == 0
    code, _, err = invoke("run", "--session", "biz", "--until-done", "--rate", "5000")
    assert code != 0 and "1000" in err


def test_a_token_refused_mid_run_stops_sending_and_a_working_login_lifts_it(db_path: Path, sim: Any) -> None:
    assert invoke("login", "--session", "biz", "--cloud", "--phone-number-id", PHONE_ID)[0] == 0
    job = enqueue(db_path, 300)

    def expire_soon() -> None:
        sim.wait_accepted(20, timeout=30)
        sim.expire_token()

    t = threading.Thread(target=expire_soon, daemon=True)
    t.start()
    started = time.monotonic()
    code, out, err = invoke("run", "--session", "biz", "--until-done", "--rate", "40")
    t.join(5)
    assert code == exitcodes.ATTENTION and "190" in err
    assert time.monotonic() - started < 30
    with Queue(db_path) as q:
        counts = q.counts(job)
    assert counts["failed"] == 0 and counts["sending"] == 0 and counts["pending"] > 0
    assert sessions(db_path)["biz"]["paused"]
    sim.set_token(TOKEN)
    code, out, _ = invoke("login", "--session", "biz", "--cloud", "--phone-number-id", PHONE_ID)
    assert code == 0 and "no longer paused" in out
    code, _, err = invoke("run", "--session", "biz", "--until-done", "--rate", "500")
    assert code == exitcodes.OK, err
    with Queue(db_path) as q:
        assert q.counts(job)["sent"] == 300
    assert all(len(sim.accepted(f"+1415555{i:04d}")) == 1 for i in range(300))


def test_a_template_problem_pauses_the_job_and_until_done_exits_4(db_path: Path, sim: Any) -> None:
    assert invoke("login", "--session", "biz", "--cloud", "--phone-number-id", PHONE_ID)[0] == 0
    job = enqueue(db_path, 10, template_name="order_ready", template_lang="de")  # not approved in German
    code, _, err = invoke("run", "--session", "biz", "--until-done")
    assert code == exitcodes.ATTENTION and "132001" in err
    with Queue(db_path) as q:
        assert q.get_job(job).status == "paused" and q.counts(job)["pending"] == 10


def test_the_token_never_appears_in_the_database_logs_api_or_doctor(
    db_path: Path, sim: Any, isolated_home: Path
) -> None:
    assert invoke("login", "--session", "biz", "--cloud", "--phone-number-id", PHONE_ID)[0] == 0
    # The login also looked the token's accounts up (debug_token carries the token in its query) to record
    # the number's WABA and business portfolio: those ids are stored, the token is not (checked below).
    recorded = sessions(db_path)["biz"]
    assert (recorded["waba_id"], recorded["portfolio_id"]) == ("4455667788", "7766554433")
    enqueue(db_path, 5)
    sim.add_fault("error", code=190, count=1)  # a refused token mid-run: its error line is stored and shown
    outputs = [invoke("run", "--session", "biz", "--until-done"), invoke("resume", "--session", "biz")]
    sim.clear_faults()
    outputs += [
        invoke("run", "--session", "biz", "--until-done"),
        invoke("status", "--json"),
        invoke("status"),
    ]
    outputs.append(invoke("doctor", "--session", "biz", "--offline"))
    for _code, out, err in outputs:
        assert TOKEN not in out and TOKEN not in err
    from wabulk.serve.api import create_app
    from wabulk.settings import Settings

    asgi, _ = create_app(Settings.from_env(), token="api-token")
    from fastapi.testclient import TestClient

    with TestClient(asgi) as client:
        for path in ("/api/status", "/api/jobs/1", "/api/jobs/1/messages", "/api/jobs/1/export.csv"):
            got = client.get(path, headers={"Authorization": "Bearer api-token"})
            assert got.status_code == 200 and TOKEN not in got.text
    stored = b"".join(p.read_bytes() for p in isolated_home.rglob("*") if p.is_file())
    assert TOKEN.encode() not in stored


def test_the_messaging_limit_is_the_daily_cap_of_template_sends(db_path: Path, sim: Any) -> None:
    sim.set_phone(PHONE_ID, whatsapp_business_manager_messaging_limit="TIER_250", mps=1000)
    assert invoke("login", "--session", "biz", "--cloud", "--phone-number-id", PHONE_ID)[0] == 0
    job = enqueue(db_path, 260, template_name="order_ready", template_lang="en_US")
    code, _, err = invoke("run", "--session", "biz", "--until-done", "--rate", "500")
    assert code == exitcodes.ATTENTION and "messaging limit reached" in err
    with Queue(db_path) as q:
        counts = q.counts(job)
    assert counts["sent"] == 250 and counts["pending"] == 10 and counts["failed"] == 0, (counts, err)
    assert len(sim.accepted()) == 250


def test_numbers_of_one_business_portfolio_share_its_messaging_limit(db_path: Path, sim: Any) -> None:
    """Meta's messaging limit belongs to the business portfolio (since October 2025): two numbers of it
    reach 250 people between them, not 250 each; a number of another portfolio has its own."""
    other, elsewhere = "2233445566", "3344556677"
    for pid in (PHONE_ID, other, elsewhere):
        sim.set_phone(pid, whatsapp_business_manager_messaging_limit="TIER_250", mps=1000)
    sim.set_phone(elsewhere, waba_id="5550001")
    sim.set_waba_owner("5550001", "1212")
    assert invoke("login", "--session", "a", "--cloud", "--phone-number-id", PHONE_ID)[0] == 0
    code, out, _ = invoke("login", "--session", "b", "--cloud", "--phone-number-id", other)
    assert code == 0 and "business portfolio 7766554433" in out
    assert invoke("login", "--session", "c", "--cloud", "--phone-number-id", elsewhere)[0] == 0

    def job(first: int, n: int, session: str) -> int:
        with Queue(db_path) as q:
            return q.enqueue(
                NewJob(name=session, template="t", template_name="order_ready", sessions=(session,)),
                [
                    NewMessage(phone=f"+1415555{i:04d}", body="t", params=("Ann", "1"))
                    for i in range(first, first + n)
                ],
            ).job_id

    job(0, 150, "a")
    assert invoke("run", "--session", "a", "--until-done", "--rate", "500")[0] == 0
    second = job(150, 150, "b")
    code, _, err = invoke("run", "--session", "b", "--until-done", "--rate", "500")
    assert code == exitcodes.ATTENTION and "messaging limit reached: 250 unique recipients" in err
    with Queue(db_path) as q:
        counts = q.counts(second)
    assert (counts["sent"], counts["pending"]) == (100, 50), counts
    rows = sessions(db_path)
    assert (rows["b"]["portfolio_id"], rows["b"]["used_24h"], rows["b"]["limit_shared_with"]) == (
        "7766554433",
        250,
        ["a"],
    )
    assert (rows["c"]["portfolio_id"], rows["c"]["used_24h"], rows["c"]["limit_shared_with"]) == (
        "1212",
        0,
        [],
    )
    code, out, _ = invoke("doctor", "--session", "b", "--offline")
    assert "business portfolio 7766554433, counted with session(s) a" in " ".join(out.split())
