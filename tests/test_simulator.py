"""The simulator's server without a browser: control API, page API, message log durability, tick timing."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wabulk.web.simulator import Simulator


def call(sim: Simulator | str, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One HTTP request to a simulator (object or base URL); returns (status, decoded JSON or text)."""
    data = json.dumps(body).encode() if body is not None else None
    base = sim if isinstance(sim, str) else sim.url
    req = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json"} if data else {}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            status = resp.status
            ctype = resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        raw, status, ctype = exc.read(), exc.code, exc.headers.get("Content-Type", "")
    return status, json.loads(raw) if "json" in ctype else raw.decode()


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    s = Simulator(log_path=tmp_path / "sim" / "messages.jsonl", lookup_ms=0)
    s.start()
    yield s
    s.stop()


def link_device(sim: Simulator, page: str = "p1") -> str:
    """Do what the page does on the QR screen, scan it, and return the token the page receives."""
    status, body = call(sim, "POST", "/__sim/api/qr", {"page": page})
    assert status == 200
    call(sim, "GET", f"/__sim/api/poll?page={page}&screen=qr")
    assert sim.scan(body["ref"]) == 1
    _, poll = call(sim, "GET", f"/__sim/api/poll?page={page}&screen=qr")
    assert poll["linked"] is True
    return poll["new_token"]


def test_config_round_trip_and_validation(sim: Simulator) -> None:
    status, cfg = call(
        sim,
        "POST",
        "/__sim/config",
        {"ui_era": "2023", "sent_ms": 50, "invalid_numbers": ["+1 555 000 0000"]},
    )
    assert status == 200
    assert cfg["ui_era"] == "2023"
    assert cfg["sent_ms"] == [50, 50]
    assert cfg["invalid_numbers"] == ["15550000000"]
    _, state = call(sim, "GET", "/__sim/state")
    assert state["config"]["ui_era"] == "2023"
    assert sim.config["boot_ms"] == 2000  # untouched keys keep their realistic defaults

    status, err = call(sim, "POST", "/__sim/config", {"ui_era": "1999"})
    assert status == 400 and "ui_era" in err["error"]
    status, err = call(sim, "POST", "/__sim/config", {"nope": 1})
    assert status == 400 and "nope" in err["error"]
    with pytest.raises(ValueError, match="blocked"):
        sim.configure(blocked="forever")


def test_scan_links_only_the_page_showing_a_qr(sim: Simulator) -> None:
    call(sim, "POST", "/__sim/api/qr", {"page": "a"})
    call(sim, "GET", "/__sim/api/poll?page=a&screen=qr")
    call(sim, "GET", "/__sim/api/poll?page=b&screen=main")  # a page elsewhere is not scanned
    status, body = call(sim, "POST", "/__sim/scan", {})
    assert (status, body) == (200, {"count": 1})
    _, poll = call(sim, "GET", "/__sim/api/poll?page=a&screen=qr")
    token = poll["new_token"]
    assert token and poll["linked"]
    assert [d["device"] for d in sim.devices()] == [token]
    assert sim.scan() == 0  # nothing left on a QR screen
    _, again = call(sim, "GET", f"/__sim/api/poll?page=a&token={token}&screen=main")
    assert again["new_token"] is None and again["linked"] is True


def test_expired_qr_cannot_be_scanned(sim: Simulator) -> None:
    call(sim, "POST", "/__sim/api/qr", {"page": "a"})
    call(sim, "GET", "/__sim/api/poll?page=a&screen=qr_expired")
    assert sim.scan() == 0


def test_logout_unlinks_one_device_or_all(sim: Simulator) -> None:
    one, two = link_device(sim, "p1"), link_device(sim, "p2")
    status, body = call(sim, "POST", "/__sim/logout", {"device": one})
    assert (status, body) == (200, {"count": 1})
    _, poll = call(sim, "GET", f"/__sim/api/poll?page=p1&token={one}&screen=main")
    assert poll["linked"] is False
    _, devices = call(sim, "GET", "/__sim/devices")
    assert [d["device"] for d in devices] == [two]
    assert sim.logout() == 1
    assert sim.devices() == []


def test_logged_in_default_links_new_browsers_but_not_after_logout(sim: Simulator) -> None:
    sim.configure(logged_in_default=True)
    _, boot = call(sim, "GET", "/__sim/api/boot?page=x")
    assert boot["linked"] is True and boot["token"]
    _, after = call(sim, "GET", "/__sim/api/boot?page=y&post_logout=1")
    assert after["linked"] is False


def test_send_records_exact_text_once(sim: Simulator) -> None:
    token = link_device(sim)
    text = 'Olá 👍🏽 🇧🇷\nשלום & # % + "quotes"'
    first = {"token": token, "id": "ABC123", "phone": "+55 11 99999-8888", "text": text, "attachment": None}
    status, body = call(sim, "POST", "/__sim/api/send", first)
    assert status == 200 and body["id"] == "ABC123"
    # the page retries after a network error: the same id is not recorded twice
    call(sim, "POST", "/__sim/api/send", {**first, "phone": "5511999998888"})
    _, msgs = call(sim, "GET", "/__sim/messages")
    assert len(msgs) == 1
    assert msgs[0]["text"] == text
    assert msgs[0]["phone"] == "5511999998888"
    assert msgs[0]["device"] == token
    assert msgs[0]["attachment"] is None and msgs[0]["caption"] is None
    _, chat = call(sim, "GET", f"/__sim/api/chat?token={token}&phone=5511999998888")
    assert [m["text"] for m in chat] == [text]


def test_send_with_attachment_records_metadata_and_caption(sim: Simulator) -> None:
    token = link_device(sim)
    att = {"name": "photo.jpg", "size": 1234, "type": "image/jpeg"}
    call(
        sim,
        "POST",
        "/__sim/api/send",
        {"token": token, "id": "M1", "phone": "15551230000", "text": "look", "attachment": att},
    )
    (msg,) = sim.messages()
    assert msg["attachment"] == att
    assert msg["caption"] == "look" == msg["text"]


def test_send_refused_when_offline_unlinked_or_blocked(sim: Simulator) -> None:
    token = link_device(sim)
    body = {"token": token, "id": "X1", "phone": "15551230000", "text": "hi"}
    sim.configure(offline=True)
    assert call(sim, "POST", "/__sim/api/send", body)[0] == 503
    sim.configure(offline=False, blocked="temp_ban")
    assert call(sim, "POST", "/__sim/api/send", body)[0] == 403
    sim.configure(blocked=None)
    assert call(sim, "POST", "/__sim/api/send", {**body, "token": "not-linked"})[0] == 401
    assert sim.messages() == []
    assert call(sim, "POST", "/__sim/api/send", body)[0] == 200
    assert len(sim.messages()) == 1


def test_log_survives_restart(tmp_path: Path) -> None:
    log = tmp_path / "messages.jsonl"
    first = Simulator(log_path=log)
    first.start()
    token = link_device(first)
    for i in range(3):
        call(
            first,
            "POST",
            "/__sim/api/send",
            {"token": token, "id": f"ID{i}", "phone": "15551230000", "text": f"message {i} ✓"},
        )
    first.stop()
    with log.open("a", encoding="utf-8") as fh:
        fh.write('{"id": "torn", "text": "half a li')  # a process killed mid-write
    second = Simulator(log_path=log)
    second.start()
    try:
        assert [m["text"] for m in second.messages()] == ["message 0 ✓", "message 1 ✓", "message 2 ✓"]
        assert [d["device"] for d in second.devices()] == [token]  # the browser profile stays logged in
        _, chat = call(second, "GET", f"/__sim/api/chat?token={token}&phone=15551230000")
        assert [m["id"] for m in chat] == ["ID0", "ID1", "ID2"]  # history the page shows after a restart
        call(
            second,
            "POST",
            "/__sim/api/send",
            {"token": token, "id": "ID3", "phone": "15551230000", "text": "after the tear"},
        )
    finally:
        second.stop()
    third = Simulator(log_path=log)
    assert [m["id"] for m in third.messages()] == ["ID0", "ID1", "ID2", "ID3"]


def test_tick_states_follow_configured_times(sim: Simulator) -> None:
    sim.configure(sent_ms=100, delivered_ms=1000, read_ms=5000)
    token = link_device(sim)
    for phone in ("111111111", "222222222", "333333333"):
        call(sim, "POST", "/__sim/api/send", {"token": token, "id": phone, "phone": phone, "text": "x"})
    sim.configure(never_deliver=["222222222"], hold_pending=["333333333"])
    state = sim.state
    normal, never, held = (state.by_id[i] for i in ("111111111", "222222222", "333333333"))
    at = normal["at"]
    assert state.status_of(normal, at + 0.05) == "pending"
    assert state.status_of(normal, at + 0.2) == "sent"
    assert state.status_of(normal, at + 1.2) == "delivered"
    assert state.status_of(normal, at + 6.2) == "read"
    assert state.status_of(never, never["at"] + 100) == "sent"
    assert state.status_of(held, held["at"] + 100) == "pending"
    sim.configure(read_ms=None)
    assert state.status_of(normal, at + 100) == "delivered"


def test_takeover_is_reported_to_the_device_until_use_here(sim: Simulator) -> None:
    token = link_device(sim)
    status, _ = call(sim, "POST", "/__sim/takeover", {"kind": "computer"})
    assert status == 200
    _, poll = call(sim, "GET", f"/__sim/api/poll?page=p1&token={token}&screen=main")
    assert poll["takeover"] == "computer"
    call(sim, "POST", "/__sim/api/usehere", {"token": token})
    _, poll = call(sim, "GET", f"/__sim/api/poll?page=p1&token={token}&screen=main")
    assert poll["takeover"] is None
    assert call(sim, "POST", "/__sim/takeover", {"kind": "sideways"})[0] == 400


def test_lookup_reports_invalid_numbers(sim: Simulator) -> None:
    sim.configure(invalid_numbers=["15550000000"])
    assert call(sim, "GET", "/__sim/api/lookup?phone=15550000000")[1] == {"exists": False}
    assert call(sim, "GET", "/__sim/api/lookup?phone=15550000001")[1] == {"exists": True}


def test_reset_forgets_everything(sim: Simulator) -> None:
    token = link_device(sim)
    call(sim, "POST", "/__sim/api/send", {"token": token, "id": "A", "phone": "15551230000", "text": "x"})
    sim.configure(ui_era="2025")
    assert call(sim, "POST", "/__sim/reset", {})[0] == 200
    assert sim.messages() == [] and sim.devices() == []
    assert sim.config["ui_era"] == "2026-09"
    assert sim.log_path.read_text() == ""


def test_every_page_route_serves_the_app(sim: Simulator) -> None:
    for path in (
        "/",
        "/send?phone=15551230000&text=hi",
        "/send/?phone=1&type=phone_number&app_absent=0",
        "/accept?code=abc",
        "/?post_logout=1",
    ):
        status, body = call(sim, "GET", path)
        assert status == 200 and '<div id="app">' in body
    status, js = call(sim, "GET", "/__sim/static/app.js")
    assert status == 200 and "Starting chat" in js
    assert call(sim, "GET", "/__sim/static/../server.py")[0] == 404
    assert call(sim, "GET", "/__sim/nothing")[0] == 404


def test_module_entry_point_has_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "wabulk.web.simulator", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert "--port" in out.stdout


def test_wait_scan_links_a_qr_that_appears_later(sim: Simulator) -> None:
    import threading

    def page_shows_qr() -> None:
        call(sim, "POST", "/__sim/api/qr", {"page": "late"})

    timer = threading.Timer(0.3, page_shows_qr)
    timer.start()
    try:
        assert sim.wait_scan(timeout=10) == 1
    finally:
        timer.join()
    assert len(sim.devices()) == 1
    assert sim.wait_scan(timeout=0.1) == 0


def test_foreground_server_keeps_messages_when_killed(tmp_path: Path) -> None:
    log = tmp_path / "messages.jsonl"

    def launch() -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wabulk.web.simulator", "--port", "0", "--log", str(log)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = first.split(" at ")[1].split()[0].rstrip("/")
        return proc, url

    proc, url = launch()
    try:
        call(url, "POST", "/__sim/config", {"logged_in_default": True})
        _, boot = call(url, "GET", "/__sim/api/boot?page=k")
        msg = {"token": boot["token"], "id": "K1", "phone": "15551230000", "text": "survives kill -9"}
        status, _ = call(url, "POST", "/__sim/api/send", msg)
        assert status == 200
    finally:
        proc.kill()  # no clean shutdown
        proc.wait(timeout=10)
    proc, url = launch()
    try:
        _, msgs = call(url, "GET", "/__sim/messages")
        assert [m["text"] for m in msgs] == ["survives kill -9"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- era 2026-09 ------------------------------------------------------------------------------------------
HEADLESS_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/140.0.0.0 Safari/537.36"
)
CHROME_UA = HEADLESS_UA.replace("HeadlessChrome/", "Chrome/")


def page(sim: Simulator, path: str, user_agent: str) -> tuple[int, str, dict[str, str]]:
    req = urllib.request.Request(sim.url + path, headers={"User-Agent": user_agent})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read().decode(), dict(resp.headers)


def test_new_config_keys_validate(sim: Simulator) -> None:
    cfg = sim.state.configure(
        {
            "fail_sends": ["+1 555 000 1111"],
            "restricted": 1,
            "page_error": "storage_full",
            "refuse_headless": None,
        }
    )
    assert cfg["fail_sends"] == ["15550001111"] and cfg["restricted"] is True
    assert cfg["page_error"] == "storage_full" and cfg["refuse_headless"] is None
    assert (cfg["bubble_ids"], cfg["whats_new"], cfg["sw_caches_refusal"]) == (True, False, False)
    status, err = call(sim, "POST", "/__sim/config", {"page_error": "disk"})
    assert status == 400 and "page_error" in err["error"]
    status, _ = call(sim, "POST", "/__sim/config", {"ui_era": "2026-09"})
    assert status == 200
    assert sim.config["ui_era"] == "2026-09"
    assert Simulator().config["ui_era"] == "2026-09"  # the live page of 2026 is the default


@pytest.mark.parametrize("token", ["HeadlessChrome/140.0.0.0", "Electron/31.0.0", "WhatsApp/2.2412.54"])
def test_2026_09_refuses_headless_electron_and_whatsapp_user_agents(sim: Simulator, token: str) -> None:
    ua = CHROME_UA.replace("Chrome/140.0.0.0", token)
    sim.configure(ui_era="2026")
    assert 'id="sim-page"' in page(sim, "/", ua)[1] and "unsupported-browser" not in page(sim, "/", ua)[1]
    assert sim.state.snapshot()["refuse_headless"] is False
    sim.configure(ui_era="2026-09")
    assert sim.state.snapshot()["refuse_headless"] is True and sim.config["refuse_headless"] is None
    status, body, _ = page(sim, "/send?phone=15551230000&text=hi", ua)
    assert status == 200
    assert 'data-screen="unsupported-browser"' in body and "WhatsApp works with Google Chrome 100+" in body
    assert "app.js" not in body and "serviceWorker" not in body  # no app; no worker unless asked for
    (refusal,) = sim.state.snapshot()["refusals"]
    assert refusal["user_agent"] == ua and refusal["path"] == "/send"
    # the same request with a normal Chrome UA gets the app, told to check navigator.userAgent itself
    _, body, _ = page(sim, "/", CHROME_UA)
    assert "app.js" in body and '{"refuse_headless": true, "sw_caches_refusal": false}' in body
    # the api.whatsapp.com stand-in is another site: not refused
    assert "app.js" in page(sim, "/api-landing/send/?phone=1", ua)[1]
    sim.configure(refuse_headless=False)
    assert "app.js" in page(sim, "/", ua)[1]


def test_refusal_page_registers_the_service_worker_only_when_asked(sim: Simulator) -> None:
    sim.configure(ui_era="2026-09", sw_caches_refusal=True)
    _, body, _ = page(sim, "/", HEADLESS_UA)
    assert "navigator.serviceWorker" in body and "/__sim/sw.js" in body
    _, sw, headers = page(sim, "/__sim/sw.js", CHROME_UA)
    assert headers["Service-Worker-Allowed"] == "/" and "javascript" in headers["Content-Type"]
    assert "/__sim/refused.html" in sw
    _, cached, _ = page(sim, "/__sim/refused.html?via=service-worker", CHROME_UA)
    assert 'data-sim-refusal="service-worker"' in cached and "unsupported-browser" in cached


def test_kind_is_recorded_for_every_message(sim: Simulator) -> None:
    token = link_device(sim)
    sends = [
        ({"text": "hi"}, "text"),
        ({"text": "cap", "attachment": {"name": "a.jpg", "size": 3, "type": "image/jpeg"}}, "image"),
        ({"text": "", "attachment": {"name": "v.mp4", "size": 3, "type": "video/mp4"}}, "video"),
        ({"text": "", "attachment": {"name": "a.pdf", "size": 3, "type": "application/pdf"}}, "document"),
        (
            {"text": "", "attachment": {"name": "s.png", "size": 3, "type": "image/png"}, "kind": "sticker"},
            "sticker",
        ),
        (
            {
                "text": "",
                "attachment": {"name": "photo.png", "size": 3, "type": "image/png"},
                "kind": "document",
            },
            "document",
        ),
    ]
    for i, (extra, _) in enumerate(sends):
        status, _ = call(
            sim, "POST", "/__sim/api/send", {"token": token, "id": f"K{i}", "phone": "15551230000", **extra}
        )
        assert status == 200
    assert [m["kind"] for m in sim.messages()] == [kind for _, kind in sends]
    status, err = call(
        sim, "POST", "/__sim/api/send", {"token": token, "id": "K9", "phone": "1555", "kind": "gif"}
    )
    assert status == 400 and "kind" in err["error"]


def test_fail_sends_are_not_logged_and_end_failed(sim: Simulator) -> None:
    token = link_device(sim)
    sim.configure(fail_sends=["15550001111"], sent_ms=0)
    status, body = call(
        sim, "POST", "/__sim/api/send", {"token": token, "id": "F1", "phone": "15550001111", "text": "no"}
    )
    assert status == 200
    assert sim.messages() == []
    _, chat = call(sim, "GET", f"/__sim/api/chat?token={token}&phone=15550001111")
    assert [(m["id"], m["status"], m["dir"]) for m in chat] == [("F1", "failed", "out")]
    assert [m["id"] for m in sim.state.snapshot()["failed"]] == ["F1"]
    # a retry of the same page message id does not turn into a delivered one
    call(sim, "POST", "/__sim/api/send", {"token": token, "id": "F1", "phone": "15550001111", "text": "no"})
    assert sim.messages() == []


def test_restricted_refuses_sends_until_lifted(sim: Simulator) -> None:
    token = link_device(sim)
    body = {"token": token, "id": "R1", "phone": "15551230000", "text": "hi"}
    sim.configure(restricted=True)
    status, err = call(sim, "POST", "/__sim/api/send", body)
    assert (status, err["error"]) == (403, "restricted")
    assert sim.messages() == []
    sim.configure(restricted=False)
    assert call(sim, "POST", "/__sim/api/send", body)[0] == 200


def test_incoming_messages_join_the_chat_in_time_order(sim: Simulator) -> None:
    token = link_device(sim)
    call(sim, "POST", "/__sim/api/send", {"token": token, "id": "O1", "phone": "14155550123", "text": "out"})
    status, rec = call(
        sim, "POST", "/__sim/incoming", {"phone": "+1 415-555-0123", "text": "back", "name": "Ann"}
    )
    assert status == 200 and rec["phone"] == "14155550123" and rec["name"] == "Ann"
    _, chat = call(sim, "GET", f"/__sim/api/chat?token={token}&phone=14155550123")
    assert [(m["text"], m["dir"]) for m in chat] == [("out", "out"), ("back", "in")]
    assert [m["text"] for m in sim.messages()] == ["out"]  # the log is what the page sent
    _, poll = call(sim, "GET", f"/__sim/api/poll?page=p1&token={token}&chats=1")
    assert poll["chats"][0]["text"] == "back" and poll["chats"][0]["status"] == "incoming"
    assert call(sim, "POST", "/__sim/incoming", {"text": "x"})[0] == 400
