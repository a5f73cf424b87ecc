"""`wabulk serve`: the API through real HTTP against a running server, its auth and its limits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serve_helpers import Reply, Server, request
from wabulk.cli import app

runner = CliRunner()
CSV = (
    b"Name,Phone,City\nAnn,0491 570 156,Leeds\nBob,+61 491 570 157,York\nDud,12,Hull\n"
    b"Ann again,0491570156,Leeds\n"
)
FIELDS = {"message": "Hi {name} from {city}", "country": "AU"}


def cli(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def server(db_path: Path) -> Iterator[Server]:
    s = Server(db_path)
    yield s
    s.stop()


def queue_job(server: Server) -> int:
    r = server.upload("/api/jobs", FIELDS, CSV)
    assert r.status == 200, r.text
    return int(r.json()["job_id"])


def test_health_needs_no_token_and_says_nothing_sensitive(server: Server) -> None:
    r = request("GET", server.base + "/api/health")
    assert r.status == 200
    assert r.json() == {"ok": True, "version": r.json()["version"]}


def test_status_is_the_cli_json_and_needs_the_token(server: Server, tmp_path: Path) -> None:
    assert request("GET", server.base + "/api/status").status == 401
    assert request("GET", server.base + "/api/status", headers={"Authorization": "Bearer nope"}).status == 401
    # The URL's token works only for opening the dashboard, not as an API credential.
    assert request("GET", f"{server.base}/api/status?token={server.token}").status == 401
    job = queue_job(server)
    code, out, _ = cli("status", "--json")
    assert code == 0
    api = server.get("/api/status").json()
    cli_json = json.loads(out)
    for j in (api, cli_json):  # rates depend on the second the report is read
        for row in j["jobs"]:
            row.pop("rate_per_min"), row.pop("eta_seconds")
    assert api == cli_json
    one = server.get(f"/api/jobs/{job}").json()
    assert one["id"] == job and one["pending"] == 2 and one["total"] == 2
    r = server.get("/api/jobs/99")
    assert r.status == 404 and r.json()["error"] == "no job with id 99"


def test_enqueue_is_the_cli_json_with_the_rejected_rows(server: Server, tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_bytes(CSV)
    code, out, _ = cli(
        "enqueue",
        str(tmp_path / "c.csv"),
        "--message",
        FIELDS["message"],
        "--country",
        "AU",
        "--dry-run",
        "--json",
    )
    assert code == 0
    preview = server.upload("/api/jobs", {**FIELDS, "dry_run": "true"}, CSV)
    assert preview.status == 200
    body = preview.json()
    rejects = body.pop("rejects")
    body.pop("notices")
    # The column-mapping step's data: every header and the columns wabulk picks by itself.
    assert body.pop("columns") == {"headers": ["Name", "Phone", "City"], "phone": "Phone", "name": "Name"}
    assert (body.pop("phone_column"), body.pop("name_column")) == ("Phone", "Name")
    assert body == json.loads(out)
    assert body["previews"][0] == "Hi Ann from Leeds"
    assert [(r["row"], r["column"], r["reason"]) for r in rejects] == [
        ("4", "Phone", rejects[0]["reason"]),
        ("5", "Phone", "duplicate: the same number as row 2"),  # listed, not only counted
    ]
    assert body["duplicate_rows"] == [{"row": 5, "phone": "+61491570156", "first_row": 2}]
    assert server.get("/api/status").json()["jobs"] == []  # a dry run writes nothing
    real = server.upload("/api/jobs", {**FIELDS, "name": "spring", "max_attempts": "2"}, CSV).json()
    assert real["job_id"] == 1 and real["enqueued"] == 2 and real["duplicates"] == 1 and real["invalid"] == 1
    assert server.get("/api/jobs/1").json()["name"] == "spring"


def test_bad_input_is_a_4xx_with_the_cli_error_and_nothing_written(server: Server, tmp_path: Path) -> None:
    bad = b"Name,Phone\nDud,12\nNope,34\n"
    r = server.upload("/api/jobs", {"message": "Hi {name}", "country": "AU"}, bad)
    assert r.status == 400
    (tmp_path / "bad.csv").write_bytes(bad)
    code, _, err = cli("enqueue", str(tmp_path / "bad.csv"), "--message", "Hi {name}", "--country", "AU")
    assert code == 2
    assert err.strip() == "Error: " + r.json()["error"].replace("contacts.csv", str(tmp_path / "bad.csv"))
    assert r.json()["error"].startswith("contacts.csv: nothing to enqueue")
    assert r.json()["exit_code"] == 2
    assert len(r.json()["rejects"]) == 2
    r = server.upload("/api/jobs", {"message": "Hi {nobody}", "country": "AU"}, CSV)
    assert r.status == 400 and "nobody" in r.json()["error"]
    r = server.upload("/api/jobs", {**FIELDS, "max_attempts": "99"}, CSV)
    assert r.status == 422
    assert r.json() == {"error": "max_attempts: must be at most 20", "exit_code": 2}  # not pydantic's words
    r = server.get("/api/status?undelivered_after=soon")
    assert r.status == 400 and r.json()["exit_code"] == 2
    assert server.get("/api/status").json()["jobs"] == []


def test_controls_export_and_optouts(server: Server, tmp_path: Path) -> None:
    job = queue_job(server)
    assert server.post(f"/api/jobs/{job}/pause").json() == {
        "id": job,
        "status": "paused",
        "message": f"Job {job} is paused.",
    }
    assert server.post(f"/api/jobs/{job}/resume").json()["status"] in ("queued", "running")
    assert server.post(f"/api/jobs/{job}/retry-failed").json()["retried"] == 0
    csv_api = server.get(f"/api/jobs/{job}/export.csv")
    assert csv_api.status == 200 and csv_api.headers["content-type"].startswith("text/csv")
    code, out, _ = cli("export", str(job))
    assert csv_api.text.replace("\r\n", "\n") == out.replace("\r\n", "\n")
    assert server.get(f"/api/jobs/{job}/export.csv?undelivered=1").text.count("\n") == 1  # header only
    stopped = server.post(f"/api/jobs/{job}/stop").json()
    assert stopped["status"] == "stopped" and stopped["cancelled"] == 2
    r = server.post(f"/api/jobs/{job}/pause")
    assert r.status == 409  # a stopped job cannot be paused: the CLI's words and exit code
    code, _, err = cli("pause", str(job))
    assert code == 2 and err.strip() == "Error: " + r.json()["error"] and r.json()["exit_code"] == 2
    msgs = server.get(f"/api/jobs/{job}/messages").json()["messages"]
    assert [m["status"] for m in msgs] == ["cancelled", "cancelled"]
    assert server.get(f"/api/jobs/{job}/messages?status=sent").json()["messages"] == []

    r = server.post(
        "/api/optouts", json_body={"numbers": ["0491 570 156"], "country": "AU", "reason": "asked"}
    )
    assert r.json()["added"] == 1
    listed = server.get("/api/optouts").json()
    code, out, _ = cli("optout", "list", "--json")
    assert listed == json.loads(out) and listed[0]["phone"] == "+61491570156"
    preview = server.upload("/api/jobs", {**FIELDS, "dry_run": "true"}, CSV).json()
    real = server.upload("/api/jobs", FIELDS, CSV).json()
    assert preview["opted_out"] == real["opted_out"] == 1  # the preview counts what the real run does
    assert preview["enqueued"] == real["enqueued"] == 1
    assert server.post("/api/optouts", json_body={"numbers": ["12"], "country": "AU"}).status == 400
    r = request("DELETE", server.base + "/api/optouts/+61491570156", headers=server.auth)
    assert r.json()["removed"] == 1
    assert server.get("/api/optouts").json() == []


def _mutating_routes() -> list[tuple[str, str]]:
    from wabulk.serve.api import create_app
    from wabulk.settings import Settings

    _, fastapi_app = create_app(Settings.from_env(), token="x")
    out = []
    for route in fastapi_app.routes:
        for method in sorted(getattr(route, "methods", None) or ()):
            if method not in ("GET", "HEAD", "OPTIONS"):
                path = route.path.replace("{job_id}", "1").replace("{phone}", "+61491570156")
                out.append((method, path))
    return out


def test_every_mutating_endpoint_refuses_a_request_without_the_token(server: Server) -> None:
    job = queue_job(server)
    routes = _mutating_routes()
    # The endpoints the issue names are all among them (a new one is checked by the same loop).
    assert {p for _, p in routes} >= {
        "/api/jobs",
        "/api/jobs/1/pause",
        "/api/jobs/1/resume",
        "/api/jobs/1/stop",
        "/api/jobs/1/retry-failed",
        "/api/optouts",
        "/api/optouts/+61491570156",
    }
    for method, path in routes:
        r = request(method, server.base + path, data=b"{}", headers={"Content-Type": "application/json"})
        assert r.status == 401, (method, path, r.status)
        r = request(method, server.base + path, headers={"Authorization": "Bearer wrong"})
        assert r.status == 401, (method, path)
        # The cookie alone (what a browser sends along) is not enough: no CSRF header.
        r = request(method, server.base + path, headers={"Cookie": f"wabulk_token={server.token}"})
        assert r.status == 403, (method, path)
    assert server.get(f"/api/jobs/{job}").json()["status"] == "queued"  # nothing changed


def test_a_cross_site_form_post_is_refused(server: Server) -> None:
    job = queue_job(server)
    page = request("GET", f"{server.base}/?token={server.token}")
    assert page.status == 200
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
    jar = {"Cookie": f"wabulk_token={server.token}"}
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    # What evil.example's auto-submitting form makes a browser send (if it sent the cookie at all).
    evil = request(
        "POST",
        f"{server.base}/api/jobs/{job}/stop",
        data=b"x=1",
        headers={**jar, **form, "Origin": "http://evil.example"},
    )
    assert evil.status == 403 and "cross-site" in evil.json()["error"]
    # Even with a stolen CSRF value, another origin is refused.
    evil = request(
        "POST",
        f"{server.base}/api/jobs/{job}/stop",
        data=b"x=1",
        headers={**jar, **form, "Origin": "http://evil.example", "X-CSRF-Token": csrf},
    )
    assert evil.status == 403
    assert server.get(f"/api/jobs/{job}").json()["status"] == "queued"
    # The dashboard's own request: same origin, cookie and CSRF header.
    ok = request(
        "POST",
        f"{server.base}/api/jobs/{job}/pause",
        headers={**jar, "Origin": server.base, "X-CSRF-Token": csrf},
    )
    assert ok.status == 200 and ok.json()["status"] == "paused"


def test_the_dashboard_needs_the_token(server: Server) -> None:
    assert request("GET", server.base + "/").status == 401
    assert request("GET", server.base + "/?token=wrong").status == 401
    assert request("GET", server.base + "/docs").status == 401
    assert request("GET", server.base + "/api").status == 401
    assert request("GET", server.base + "/openapi.json").status == 401
    spec = server.get("/openapi.json").json()
    assert "/api/jobs/{job_id}/pause" in spec["paths"]
    assert server.get("/static/app.js").status == 200
    assert server.get("/static/..%2F..%2Fapi.py").status == 404
    assert server.get("/static/../api.py").status in (401, 404)


def test_upload_size_limit(db_path: Path) -> None:
    s = Server(db_path, extra=["--max-upload", "2048"])
    try:
        r = s.upload("/api/jobs", FIELDS, CSV + b"Zed,0491 570 159,Leeds\n" * 200)
        assert r.status == 413
        assert s.get("/api/status").json()["jobs"] == []
        assert s.upload("/api/jobs", FIELDS, CSV).status == 200
    finally:
        s.stop()


def test_a_generated_token_is_printed_and_required(db_path: Path) -> None:
    s = Server(db_path, token=None)
    try:
        assert len(s.token) >= 20
        assert s.get("/api/status").status == 200
        assert request("GET", s.base + "/api/status").status == 401
    finally:
        s.stop()


def test_no_public_address_without_an_explicit_token(db_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WABULK_API_TOKEN"}
    r = subprocess.run(
        [sys.executable, "-m", "wabulk", "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2
    assert r.stderr.startswith("Error: refusing to listen on 0.0.0.0 without an explicit token")


def test_a_session_waiting_for_login_shows_its_qr(server: Server) -> None:
    from wabulk.notify import store
    from wabulk.queue import Queue

    assert server.get("/api/sessions/shop/qr.svg").status == 404
    with Queue(os.environ["WABULK_DB"]) as q:
        store.save_qr(q.conn, "shop", "2@abc,def,ghi", now=time.time())
    r = server.get("/api/sessions/shop/qr.svg")
    assert r.status == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in r.body


@pytest.mark.parametrize("argv", [["--help"], ["status", "--json"]])
def test_the_web_stack_is_imported_only_by_serve(db_path: Path, argv: list[str]) -> None:
    from wabulk.queue import Queue

    Queue(db_path).close()
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "wabulk", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in r.stderr.splitlines() if "|" in line}
    assert not imported & {"fastapi", "starlette", "uvicorn", "multipart"}


def test_messages_are_paged_with_a_total_and_their_text(server: Server) -> None:
    from serve_helpers import seed_dashboard

    job = queue_job(server)
    page = server.get(f"/api/jobs/{job}/messages?limit=1").json()
    assert (page["total"], page["offset"], page["limit"], len(page["messages"])) == (2, 0, 1, 1)
    assert page["messages"][0]["body"] == "Hi Ann from Leeds"  # the text the recipient gets
    second = server.get(f"/api/jobs/{job}/messages?limit=1&offset=1").json()
    assert second["total"] == 2 and second["messages"][0]["body"] == "Hi Bob from York"
    assert server.get(f"/api/jobs/{job}/messages?offset=5").json()["messages"] == []
    assert server.get(f"/api/jobs/{job}/messages?status=sent").json()["total"] == 0
    assert server.get(f"/api/jobs/{job}/messages?status=pending").json()["total"] == 2
    assert server.get("/api/jobs/99/messages").status == 404

    # A job of 120 (45 sent, 3 failed, 72 cancelled): every message is reachable, page by page.
    home = Path(os.environ["WABULK_HOME"])
    ids = seed_dashboard(Path(os.environ["WABULK_DB"]), home / "f", live_workers=False)
    seen: list[int] = []
    offset = 0
    while True:
        page = server.get(f"/api/jobs/{ids['stopped']}/messages?offset={offset}&limit=50").json()
        assert page["total"] == 120
        if not page["messages"]:
            break
        seen += [m["id"] for m in page["messages"]]
        offset += 50
    assert len(seen) == 120 == len(set(seen)) and seen == sorted(seen)
    cancelled = server.get(f"/api/jobs/{ids['stopped']}/messages?status=cancelled&limit=1000").json()
    assert cancelled["total"] == 72 == len(cancelled["messages"])


def test_the_mapping_preview_names_the_columns_and_takes_the_choice(server: Server) -> None:
    two = b"Name,Nickname,Mobile,Office\nAnn,Annie,0491 570 156,0491 570 157\n"
    fields = {"message": "Hi {name}", "country": "AU", "dry_run": "true"}
    auto = server.upload("/api/jobs", fields, two).json()
    assert auto["columns"] == {
        "headers": ["Name", "Nickname", "Mobile", "Office"],
        "phone": "Mobile",
        "name": "Name",
    }
    assert auto["previews"] == ["Hi Ann"] and auto["phone_column"] == "Mobile"
    chosen = server.upload(
        "/api/jobs", {**fields, "phone_column": "Office", "name_column": "Nickname"}, two
    ).json()
    assert chosen["previews"] == ["Hi Annie"]
    assert (chosen["phone_column"], chosen["name_column"]) == ("Office", "Nickname")
    assert chosen["columns"]["phone"] == "Mobile"  # what wabulk would pick is still shown
    # No phone column found: the error, and the headers to choose one from.
    nophone = b"Who,Ref\nAnn,A-1\nBob,B-2\n"
    r = server.upload("/api/jobs", fields, nophone)
    assert r.status == 400 and "no phone column" in r.json()["error"]
    assert r.json()["columns"] == {"headers": ["Who", "Ref"], "phone": None, "name": None}
    r = server.upload("/api/jobs", {**fields, "phone_column": "Ref"}, nophone)
    assert r.status == 400 and r.json()["columns"]["headers"] == ["Who", "Ref"]
    assert [x["value"] for x in r.json()["rejects"]] == ["A-1", "B-2"]


def test_an_uploaded_attachment_is_kept_for_the_job_and_only_for_it(server: Server) -> None:
    from serve_helpers import multipart

    home = Path(os.environ["WABULK_HOME"])
    pdf = b"%PDF-1.4 price list"

    def post(dry_run: bool, contacts: bytes = CSV) -> Reply:
        body, ctype = multipart(
            {**FIELDS, "dry_run": "true" if dry_run else "false"},
            {"file": ("c.csv", contacts), "attachment": ("../Price list.pdf", pdf)},
        )
        return server.post("/api/jobs", data=body, headers={"Content-Type": ctype})

    assert post(True).status == 200
    assert not (home / "attachments").exists() or not any((home / "attachments").iterdir())
    assert post(False, b"Name,Phone\nDud,12\n").status == 400  # nothing queued: nothing kept
    assert not (home / "attachments").exists() or not any((home / "attachments").iterdir())
    r = post(False)
    assert r.status == 200
    from wabulk.queue import Queue

    with Queue(os.environ["WABULK_DB"]) as q:
        attachment = q.get_job(r.json()["job_id"]).attachment
    assert attachment is not None
    kept = Path(attachment)
    assert kept.name == "Price list.pdf" and kept.read_bytes() == pdf
    assert kept.is_relative_to(home / "attachments")  # never where the file name points


def test_notifications_show_what_they_said_without_the_hook_secret(server: Server) -> None:
    from wabulk.notify import store
    from wabulk.queue import Queue

    with Queue(os.environ["WABULK_DB"]) as q:
        store.add(
            q.conn,
            ["url:https://hooks.example.com/services/T000/SECRET"],
            kind="messages_failed",
            key="messages_failed:1",
            data={"text": "job 1: 3 message(s) failed"},
            now=time.time(),
        )
    [n] = server.get("/api/notifications").json()
    assert n["kind"] == "messages_failed" and n["text"] == "job 1: 3 message(s) failed"
    assert "SECRET" not in json.dumps(n) and n["target"].startswith("webhook https://hooks.example.com")
