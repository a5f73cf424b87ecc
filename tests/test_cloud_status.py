"""What ``status`` (and ``status --check``, the dashboard's attention list) says about Cloud API work."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from wabulk import exitcodes
from wabulk import session as sessions
from wabulk.cli import app
from wabulk.models import NewJob, NewMessage
from wabulk.queue import Queue

runner = CliRunner()


def check() -> tuple[int, str]:
    result = runner.invoke(app, ["status", "--check"], catch_exceptions=False)
    return result.exit_code, " ".join(result.stdout.split())  # Rich wraps long lines


def template_job(q: Queue, *, sessions_: tuple[str, ...] = ()) -> int:
    return q.enqueue(
        NewJob(name="promo", template="Hi", template_name="order_ready", sessions=sessions_),
        [NewMessage(phone="+14155550100", body="order_ready (en_US): Ann", params=("Ann",))],
    ).job_id


def test_a_template_job_only_web_workers_could_claim_is_flagged_with_the_login_to_do(db_path: Path) -> None:
    with Queue(db_path) as q:
        job = template_job(q)
        # A live WhatsApp Web worker: it never claims a template job's messages, so the job would wait
        # for ever without a word ("no live worker" does not fire: a worker is alive).
        q.register_worker("shop", pid=os.getpid(), host="h")
    code, out = check()
    assert code == exitcodes.ATTENTION
    assert f"job {job} (promo) is a template job (order_ready) that no session can send" in out
    assert "wabulk login --session NAME --cloud --phone-number-id ID" in out
    assert "no live worker" not in out  # one line per job, the precise one
    # Nor does the web worker's pace give the job an ETA: it will never send it.
    data = json.loads(runner.invoke(app, ["status", "--json"], catch_exceptions=False).stdout)
    assert data["jobs"][0]["eta_seconds"] is None


def test_a_template_job_pinned_to_a_web_session_names_it(db_path: Path) -> None:
    with Queue(db_path) as q:
        template_job(q, sessions_=("shop",))
        q.register_worker("shop", pid=os.getpid(), host="h")
    code, out = check()
    assert code == exitcodes.ATTENTION
    assert "its session(s) 'shop' cannot send" in out
    assert "wabulk login --session shop --cloud --phone-number-id ID" in out


def test_a_template_job_with_a_cloud_session_but_no_cloud_worker_says_which_run(db_path: Path) -> None:
    with Queue(db_path) as q:
        job = template_job(q)
        sessions.record(q, sessions.Session("biz", sessions.CLOUD, {"phone_number_id": "1"}))
        web = q.register_worker("shop", pid=os.getpid(), host="h")
    code, out = check()
    assert code == exitcodes.ATTENTION
    assert f"job {job} (promo)" in out and "wabulk run --session biz" in out
    # Once a worker of the Cloud session runs, nothing is left to say.
    with Queue(db_path) as q:
        q.unregister_worker(web)
        q.register_worker("biz", pid=os.getpid(), host="h")
    code, out = check()
    assert code == 0 and "template job" not in out
