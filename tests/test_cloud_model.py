"""The Cloud API data model (migration m013_cloud): template jobs, their parameters and settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from wabulk import settings
from wabulk.errors import ConfigError
from wabulk.models import NewJob, NewMessage
from wabulk.queue import Queue


def test_a_template_job_keeps_its_template_and_each_message_its_parameters(db_path: Path) -> None:
    q = Queue(db_path)
    stats = q.enqueue(
        NewJob(name="orders", template="order_ready", template_name="order_ready", template_lang="en_US"),
        [
            NewMessage(
                phone="+14155550001", body="order_ready (en_US): Alice, B-100", params=("Alice", "B-100")
            ),
            NewMessage(phone="+14155550002", body="order_ready (en_US): Bob, B-101", params=("Bob", "B-101")),
        ],
    )
    job = q.get_job(stats.job_id)
    assert (job.template_name, job.template_lang) == ("order_ready", "en_US")
    first = next(q.iter_messages(stats.job_id))
    assert first.params == ("Alice", "B-100") and first.wamid is None and first.billable is None
    assert q.claim("w1", "biz", lease_seconds=60) is None  # a provider without templates never gets it
    claim = q.claim("w1", "biz", lease_seconds=60, templates=True)
    assert claim is not None
    assert (claim.template_name, claim.template_lang, claim.params) == (
        "order_ready",
        "en_US",
        ("Alice", "B-100"),
    )
    q.close()


def test_a_text_job_has_no_template_and_no_parameters(db_path: Path) -> None:
    q = Queue(db_path)
    stats = q.enqueue(
        NewJob(name="t", template="Hi {name}"), [NewMessage(phone="+14155550001", body="Hi Ann")]
    )
    assert q.get_job(stats.job_id).template_name is None
    claim = q.claim("w1", "biz", lease_seconds=60)
    assert claim is not None and claim.template_name is None and claim.params == ()
    q.close()


def test_wamids_are_unique(db_path: Path) -> None:
    import sqlite3

    q = Queue(db_path)
    q.enqueue(
        NewJob(name="t", template="x"),
        [NewMessage(phone="+14155550001", body="x"), NewMessage(phone="+14155550002", body="x")],
    )
    q.conn.execute("UPDATE messages SET wamid = 'wamid.A' WHERE id = 1")
    with pytest.raises(sqlite3.IntegrityError):
        q.conn.execute("UPDATE messages SET wamid = 'wamid.A' WHERE id = 2")
    q.close()


def test_cloud_settings_defaults_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WABULK_GRAPH_URL", "WABULK_GRAPH_VERSION", "WABULK_CLOUD_MPS", "WABULK_CLOUD_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert settings.graph_url() == "https://graph.facebook.com"
    assert settings.graph_version() == "v27.0"
    assert settings.cloud_mps() == 80.0
    assert settings.cloud_token() is None
    monkeypatch.setenv("WABULK_GRAPH_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("WABULK_GRAPH_VERSION", "25.0")
    monkeypatch.setenv("WABULK_CLOUD_MPS", "1000")
    assert settings.graph_url() == "http://127.0.0.1:9"
    assert settings.graph_version() == "v25.0"
    assert settings.cloud_mps() == 1000.0
    monkeypatch.setenv("WABULK_CLOUD_MPS", "1001")
    with pytest.raises(ConfigError, match="at most 1000"):
        settings.cloud_mps()
    monkeypatch.setenv("WABULK_GRAPH_VERSION", "latest")
    with pytest.raises(ConfigError, match="v27.0"):
        settings.graph_version()
