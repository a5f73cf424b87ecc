"""The messaging limit (unique recipients per rolling 24 h) as the daily cap of template sends."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from wabulk.cloud.limits import (
    FALLBACK_TIER,
    LimitGate,
    account_limit,
    describe,
    limit_of,
    recipients_in_window,
)
from wabulk.models import NewJob, NewMessage
from wabulk.queue import Queue


def test_the_current_field_wins_and_an_unknown_tier_is_the_lowest() -> None:
    facts = {
        "whatsapp_business_manager_messaging_limit": "TIER_10K",
        "messaging_limit_tier": "TIER_1K",
        "quality_rating": "yellow",
        "throughput": {"level": "STANDARD"},
    }
    got = account_limit(facts)
    assert (got.tier, got.limit, got.quality, got.reported, got.throughput) == (
        "TIER_10K",
        10_000,
        "YELLOW",
        True,
        "STANDARD",
    )
    assert account_limit({"messaging_limit_tier": "TIER_1K"}).limit == 1_000  # ≤ v23.0
    unknown = account_limit({"whatsapp_business_manager_messaging_limit": "TIER_42"})
    assert (unknown.tier, unknown.limit, unknown.reported) == (FALLBACK_TIER, 250, False)
    assert limit_of("TIER_UNLIMITED") is None and limit_of(None) == 250
    assert describe(unknown, 3) == (
        "quality UNKNOWN, messaging limit 250 people/24 h (not reported, TIER_250 assumed), 3 used"
    )


def test_gate_counts_unique_recipients_and_refuses_new_ones_past_the_limit() -> None:
    gate = LimitGate(2, {"+1"})
    assert gate.allow("+1") and gate.allow("+2")  # +1 was already counted in the window
    assert not gate.allow("+3")
    assert gate.allow("+2")  # someone already messaged may be messaged again
    assert (gate.used, gate.remaining, gate.refused) == (2, 0, 1)
    assert gate.refusal().startswith(
        "messaging limit reached: 2 unique recipients in the last 24 hours (limit 2)"
    )
    assert LimitGate(None).allow("+9")


def test_window_counts_template_sends_of_the_session_in_the_last_24_hours(db_path: Path) -> None:
    now = 1_000_000.0
    q = Queue(db_path)
    tpl = q.enqueue(
        NewJob(name="t", template="t (en_US)", template_name="t", template_lang="en_US"),
        [
            NewMessage(phone=p, body="t", params=("x",))
            for p in ("+14155550001", "+14155550002", "+14155550003")
        ],
    ).job_id
    text = q.enqueue(NewJob(name="text", template="hi"), [NewMessage(phone="+14155550009", body="hi")]).job_id
    with q._tx() as conn:  # what the Cloud run's stamp and sent mark record
        conn.execute(
            "UPDATE messages SET send_started_at = ?, send_started_session = 'biz' WHERE job_id = ?",
            (now - 3600, tpl),
        )
        conn.execute("UPDATE messages SET send_started_at = ? WHERE phone = '+14155550003'", (now - 90_000,))
        conn.execute(
            "UPDATE messages SET send_started_at = ?, send_started_session = 'biz' WHERE job_id = ?",
            (now - 60, text),
        )
    assert recipients_in_window(q, ["biz"], now=now) == {"+14155550001", "+14155550002"}
    assert recipients_in_window(q, ["other"], now=now) == set()
    gate = LimitGate.for_session(q, "biz", {"messaging_limit": "TIER_250"}, now=now)
    assert (gate.limit, gate.used) == (250, 2)
    q.close()


def test_status_shows_a_cloud_sessions_quality_and_messaging_limit(db_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from wabulk import session as sessions
    from wabulk.cli import app

    with Queue(db_path) as q:
        sessions.record(
            q,
            sessions.Session(
                "biz",
                sessions.CLOUD,
                {"phone_number_id": "1", "quality_rating": "YELLOW", "messaging_limit": "TIER_2K"},
            ),
        )
    runner = CliRunner()
    data = json.loads(runner.invoke(app, ["status", "--json"], catch_exceptions=False).stdout)
    (row,) = [s for s in data["sessions"] if s["session"] == "biz"]
    assert (row["quality"], row["messaging_limit"], row["limit_24h"], row["used_24h"]) == (
        "YELLOW",
        "TIER_2K",
        2000,
        0,
    )
    out = runner.invoke(app, ["status"], catch_exceptions=False).stdout
    assert "0/2,000 people/24 h, quality YELLOW" in out


def test_a_cloud_run_stops_at_the_messaging_limit_and_spends_nothing_beyond(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cloud_helpers import PHONE_ID, TOKEN, graph_simulator, webhook_receiver
    from wabulk import exitcodes
    from wabulk.cli import app

    runner = CliRunner()
    Queue(db_path).close()
    # An old (≤ v23.0) per-number tier of 50 people: the smallest limit there is.
    with webhook_receiver(db_path) as hook, graph_simulator(hook) as sim:
        sim.set_phone(PHONE_ID, whatsapp_business_manager_messaging_limit="TIER_50")
        monkeypatch.setenv("WABULK_GRAPH_URL", sim.url)
        monkeypatch.setenv("WABULK_CLOUD_TOKEN", TOKEN)
        monkeypatch.setenv("WABULK_CLOUD_SETTLE_SECONDS", "2")
        login = runner.invoke(app, ["login", "--session", "biz", "--cloud", "--phone-number-id", PHONE_ID])
        assert login.exit_code == 0, login.stderr
        with Queue(db_path) as q:
            job = q.enqueue(
                NewJob(name="t", template="order_ready", template_name="order_ready", template_lang="en_US"),
                [NewMessage(phone=f"+1415555{i:04d}", body="t", params=("Ann", str(i))) for i in range(53)],
            ).job_id
        result = runner.invoke(app, ["run", "--session", "biz", "--until-done"], catch_exceptions=False)
        assert result.exit_code == exitcodes.ATTENTION
        assert (
            "messaging limit reached: 50 unique recipients in the last 24 hours (limit 50)" in result.stderr
        )
        assert len({r["to"] for r in sim.accepted()}) == 50
    with Queue(db_path) as q:
        left = [m for m in q.iter_messages(job) if m.status == "pending"]
        assert len(left) == 3 and all(m.attempts == 0 and m.send_started_at is None for m in left)


def test_sessions_of_one_portfolio_share_the_limit_and_see_each_others_sends(db_path: Path) -> None:
    from wabulk import session as sessions
    from wabulk.cloud.limits import portfolio_sessions

    now = time.time()
    with Queue(db_path) as q:
        for name, settings in [
            ("a", {"phone_number_id": "1", "waba_id": "10", "portfolio_id": "77"}),
            (
                "b",
                {"phone_number_id": "2", "waba_id": "11", "portfolio_id": "77"},
            ),  # another WABA, same owner
            ("c", {"phone_number_id": "3", "waba_id": "12", "portfolio_id": "88"}),
            ("d", {"phone_number_id": "4"}),  # portfolio unknown: counts alone
        ]:
            sessions.record(q, sessions.Session(name, sessions.CLOUD, settings))
        providers = q.session_providers()
        assert portfolio_sessions("a", providers) == ["a", "b"]
        assert portfolio_sessions("b", providers) == ["b", "a"]
        assert portfolio_sessions("c", providers) == ["c"]
        assert portfolio_sessions("d", providers) == ["d"]

        q.enqueue(
            NewJob(name="t", template="t", template_name="t", template_lang="en_US"),
            [NewMessage(phone=f"+1415555{i:04d}", body="t", params=("x",)) for i in range(4)],
        )

        def stamp(phone: str, session: str) -> None:  # what a Cloud run's stamp records
            with q._tx() as conn:
                conn.execute(
                    "UPDATE messages SET send_started_at = ?, send_started_session = ? WHERE phone = ?",
                    (now, session, phone),
                )

        stamp("+14155550000", "b")
        stamp("+14155550001", "c")  # another portfolio: not counted for a
        gate = LimitGate.for_session(q, "a", {"messaging_limit": "TIER_250"}, now=now)
        assert gate.used == 1 and "+14155550000" in gate.seen
        # Session b, running at the same time in another process, stamps another recipient: a's gate sees
        # it at its next refresh, so the two numbers never exceed their shared limit between them.
        gate.refresh_every = 0.0
        stamp("+14155550002", "b")
        assert gate.allow("+14155550003")
        assert gate.seen == {"+14155550000", "+14155550002", "+14155550003"}
