"""End to end over real HTTP against the bundled Graph API simulator: ``templates sync`` (paging, the
token's account found by ``debug_token``, a refused token) and ``enqueue --template`` checked against
what was synced."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wabulk import exitcodes
from wabulk.cli import app
from wabulk.cloud.simulator.server import GraphSimulator
from wabulk.cloud.simulator.templates import template
from wabulk.queue import Queue

runner = CliRunner()
TOKEN = "e2e-token"
# 205 templates: the sync needs three pages of 100.
MANY = [template(f"notice_{i:03d}", "Hi {{1}}, notice " + str(i)) for i in range(200)] + [
    template("order_ready", "Hi {{1}}, your order {{2}} is ready for pickup."),
    template("order_ready", "Olá {{1}}, o seu pedido {{2}} está pronto.", language="pt_BR"),
    template("spring_sale", "Hi {{1}}, sale: {{2}} off.", category="MARKETING", header="IMAGE"),
    template("winter_promo", "Hi {{1}}, winter deals.", category="MARKETING", status="PAUSED"),
    template("promo", "Hi {{1}}, 20% off today.", category="MARKETING"),
]


@pytest.fixture(scope="module")
def graph() -> Iterator[GraphSimulator]:
    sim = GraphSimulator(token=TOKEN, app_secret="s", templates=MANY, seed=1)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def env(graph: GraphSimulator, monkeypatch: pytest.MonkeyPatch) -> GraphSimulator:
    monkeypatch.setenv("WABULK_GRAPH_URL", graph.url)
    monkeypatch.setenv("WABULK_CLOUD_TOKEN", TOKEN)
    return graph


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def contacts(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path = tmp_path / "contacts.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "phone", "order"])
        w.writerows(rows)
    return path


def test_sync_then_enqueue_checks_against_the_account(
    env: GraphSimulator, tmp_path: Path, db_path: Path
) -> None:
    code, out, err = invoke("templates", "sync", "--session", "biz")
    assert code == 0, err
    # The account was found through the token (debug_token), every page was read.
    assert out == (
        "Synced 205 template(s) of WhatsApp Business Account 4455667788 for session 'biz': 204 approved.\n"
    )
    code, out, _ = invoke("templates", "list", "--json")
    listed = {(t["name"], t["language"]): t for t in json.loads(out)}
    assert len(listed) == 205
    assert listed[("order_ready", "pt_BR")]["params"] == 2
    assert listed[("winter_promo", "en_US")]["status"] == "PAUSED"

    src = contacts(tmp_path, [("Alice", "+447911123456", "B-100"), ("Bob", "+14155550123", "B-101")])
    ok = [
        "enqueue",
        str(src),
        "--template",
        "order_ready",
        "--template-param",
        "{name}",
        "--template-param",
        "{order}",
        "--json",
    ]
    code, out, err = invoke(*ok)
    assert code == 0, err
    job_id = json.loads(out)["job_id"]
    with Queue(db_path) as q:
        assert [m.params for m in q.iter_messages(job_id)] == [("Alice", "B-100"), ("Bob", "B-101")]

    for args, error in [
        (
            [
                "--template",
                "order_ready",
                "--template-lang",
                "de",
                "--template-param",
                "{name}",
                "--template-param",
                "{order}",
            ],
            "Error: template 'order_ready' has no 'de' version (approved in: en_US, pt_BR); "
            "choose one with --template-lang\n",
        ),
        (
            ["--template", "winter_promo", "--template-param", "{name}"],
            "Error: template 'winter_promo' (en_US) is PAUSED, not APPROVED: Meta refuses to send it\n",
        ),
        (
            ["--template", "promo"],
            "Error: template 'promo' (en_US) takes 1 parameter and 0 --template-param were given\n",
        ),
        (
            ["--template", "spring_sale", "--template-param", "{name}", "--template-param", "{order}"],
            "Error: template 'spring_sale' (en_US) has an image header: give it with --header-media (an "
            "https:// link, or a file uploaded once for the job)\n",
        ),
    ]:
        code, out, err = invoke("enqueue", str(src), *args)
        assert (code, out, err) == (exitcodes.BAD_INPUT, "", error)
    with Queue(db_path) as q:
        assert [s.job.id for s in q.summaries()] == [job_id]  # nothing else was written


def test_a_refused_token_is_one_line_and_keeps_the_catalogue(
    env: GraphSimulator, monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    assert invoke("templates", "sync", "--session", "biz", "--waba-id", "4455667788")[0] == 0
    monkeypatch.setenv("WABULK_CLOUD_TOKEN", "wrong")
    code, out, err = invoke("templates", "sync", "--session", "biz")
    assert (code, out) == (exitcodes.ERROR, "")
    assert (
        err == "Error: the Graph API refused the access token (code 190): set a working WABULK_CLOUD_TOKEN\n"
    )
    assert len(json.loads(invoke("templates", "list", "--json")[1])) == 205
    monkeypatch.setenv("WABULK_CLOUD_TOKEN", TOKEN)
    code, _, err = invoke("templates", "sync", "--session", "biz", "--waba-id", "999")
    assert code == exitcodes.ERROR
    assert err == (
        "Error: the Graph API does not know WhatsApp Business Account '999' or the token has no permission "
        "on it (code 100): check --waba-id\n"
    )


def test_doctor_on_a_cloud_session_shows_quality_and_limit_never_the_token(
    env: GraphSimulator, monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    from wabulk import session as sessions

    with Queue(db_path) as q:
        # Recorded before login --cloud found portfolios: the limit is this number's alone, and doctor
        # says so (a warning, not a failure).
        sessions.record(q, sessions.Session("biz", sessions.CLOUD, {"phone_number_id": "1234567890"}))
    monkeypatch.setenv("WABULK_CLOUD_APP_SECRET", "s")
    code, out, err = invoke("doctor", "--session", "biz")
    assert code == 0, out + err
    assert (
        "warn messaging limit: quality GREEN, messaging limit 2,000 people/24 h (TIER_2K), 0 used; this "
        "number alone: its business portfolio is unknown" in " ".join(out.split())
    )
    with Queue(db_path) as q:
        sessions.record(
            q,
            sessions.Session(
                "biz", sessions.CLOUD, {"phone_number_id": "1234567890", "portfolio_id": "7766554433"}
            ),
        )
    code, out, err = invoke("doctor", "--session", "biz")
    assert code == 0, out + err
    assert "ok  token: WABULK_CLOUD_TOKEN is set" in out
    assert (
        "ok  messaging limit: quality GREEN, messaging limit 2,000 people/24 h (TIER_2K), 0 used; "
        "business portfolio 7766554433"
    ) in out
    assert "chromedriver" not in out and TOKEN not in out + err
    monkeypatch.delenv("WABULK_CLOUD_TOKEN")
    code, out, _ = invoke("doctor", "--session", "biz")
    assert code == exitcodes.ERROR
    assert "FAIL  token: WABULK_CLOUD_TOKEN is not set: the Cloud API needs the access token" in out
