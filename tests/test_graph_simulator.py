"""The bundled Graph API simulator, through real HTTP (httpx), against the reference whatsapp-cloud-api.md."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.graphsim_helpers import Receiver

from wabulk.cloud.simulator import GraphSimulator, sign, template

TOKEN, SECRET, PHONE_ID, WABA_ID = "test-token", "test-secret", "1234567890", "4455667788"
ALICE, BOB = "+4915112345678", "+4915187654321"
# Deterministic base: no reads, duplicates or reordering unless a test asks for them.
BASE = {
    "sent_ms": 5,
    "delivered_ms": 10,
    "read_ms": 20,
    "webhook_batch_ms": 10,
    "read_rate": 0.0,
    "duplicate_rate": 0.0,
    "reorder_rate": 0.0,
    "skip_delivered_rate": 0.0,
    "webhook_retry_first_s": 0.02,
    "webhook_concurrency": 1,  # one POST at a time: arrival order = sending order (tests that assert it)
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def module_sim(receiver: Receiver) -> Iterator[GraphSimulator]:
    sim = GraphSimulator(token=TOKEN, app_secret=SECRET, webhook_url=receiver.url, seed=7, **BASE)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture()
def sim(module_sim: GraphSimulator, receiver: Receiver) -> GraphSimulator:
    module_sim.reset()
    assert module_sim.wait_webhooks(5)  # a POST of the previous test still in flight lands first
    module_sim.set_webhook_url(receiver.url)
    receiver.clear()
    return module_sim


@pytest.fixture(scope="module")
def module_client(module_sim: GraphSimulator) -> Iterator[httpx.Client]:
    # One client for the module: building an httpx.Client (its SSL context) costs ~0.1 s.
    with httpx.Client(
        base_url=module_sim.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=httpx.Timeout(5.0)
    ) as c:
        yield c


@pytest.fixture()
def client(sim: GraphSimulator, module_client: httpx.Client) -> httpx.Client:
    return module_client


def text(to: str, body: str = "Hello Ann", callback: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"body": body, "preview_url": False},
    }
    if callback is not None:
        msg["biz_opaque_callback_data"] = callback
    return msg


def tpl(
    to: str,
    name: str = "order_ready",
    params: tuple[str, ...] = ("Ann", "B-100"),
    lang: str = "en_US",
    callback: str | None = None,
    header: dict[str, Any] | None = None,
) -> dict[str, Any]:
    components: list[dict[str, Any]] = []
    if header is not None:
        components.append({"type": "header", "parameters": [header]})
    if params:
        components.append({"type": "body", "parameters": [{"type": "text", "text": p} for p in params]})
    msg: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": {"name": name, "language": {"code": lang}, "components": components},
    }
    if callback is not None:
        msg["biz_opaque_callback_data"] = callback
    return msg


def post(client: httpx.Client, body: dict[str, Any], phone_id: str = PHONE_ID) -> httpx.Response:
    return client.post(f"/v27.0/{phone_id}/messages", json=body)


def error_of(resp: httpx.Response) -> dict[str, Any]:
    return resp.json()["error"]  # type: ignore[no-any-return]


def settle(sim: GraphSimulator) -> None:
    assert sim.wait_webhooks(10), "webhooks still pending after 10 s"


def by_wamid(statuses: list[dict[str, Any]], wamid: str) -> list[str]:
    return [s["status"] for s in statuses if s["id"] == wamid]


# ----------------------------------------------------------------------------------------------- sending


def test_template_send_answers_the_real_success_body_then_signed_status_webhooks(
    sim: GraphSimulator, client: httpx.Client, receiver: Receiver
) -> None:
    resp = post(client, tpl("+49 151 1234-5678", callback="wb1:42:1"))
    assert resp.status_code == 200
    body = resp.json()
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": "+49 151 1234-5678", "wa_id": "4915112345678"}]
    wamid = body["messages"][0]["id"]
    assert wamid.startswith("wamid.")
    assert body["messages"][0]["message_status"] == "accepted"  # templates carry it
    settle(sim)
    statuses = receiver.statuses()
    assert by_wamid(statuses, wamid) == ["sent", "delivered"]
    sent = statuses[0]
    assert sent["biz_opaque_callback_data"] == "wb1:42:1"
    assert sent["recipient_id"] == "4915112345678"
    assert sent["pricing"] == {
        "billable": True,
        "pricing_model": "PMP",
        "type": "regular",
        "category": "utility",
    }
    assert "conversation" not in sent  # omitted from v24.0 on
    post_ = receiver.posts[0]
    expected = "sha256=" + hmac.new(SECRET.encode(), post_["raw"], hashlib.sha256).hexdigest()
    assert post_["headers"]["X-Hub-Signature-256"] == expected == sign(SECRET, post_["raw"])
    payload = json.loads(post_["raw"])
    assert payload["object"] == "whatsapp_business_account"
    assert payload["entry"][0]["id"] == WABA_ID
    assert payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] == PHONE_ID
    assert len(sim.accepted(ALICE)) == 1


def test_text_inside_the_window_is_free_service_and_outside_it_fails_by_webhook_131047(
    sim: GraphSimulator, client: httpx.Client, receiver: Receiver
) -> None:
    sim.open_window(BOB)
    inside = post(client, text(BOB, callback="in"))
    outside = post(client, text(ALICE, callback="out"))
    assert inside.status_code == outside.status_code == 200  # both accepted …
    assert "message_status" not in inside.json()["messages"][0]  # (only templates carry it)
    settle(sim)
    statuses = receiver.statuses()
    ok = [s for s in statuses if s["id"] == inside.json()["messages"][0]["id"]]
    assert [s["status"] for s in ok] == ["sent", "delivered"]
    assert ok[0]["pricing"]["category"] == "service" and ok[0]["pricing"]["billable"] is False
    failed = [s for s in statuses if s["id"] == outside.json()["messages"][0]["id"]]
    assert [s["status"] for s in failed] == ["failed"]  # … the second one then fails
    assert failed[0]["errors"][0]["code"] == 131047
    assert failed[0]["biz_opaque_callback_data"] == "out"


def test_an_inbound_message_is_a_webhook_with_contacts_and_opens_the_window(
    sim: GraphSimulator, client: httpx.Client, receiver: Receiver
) -> None:
    sim.inbound(ALICE, "hello shop", name="Ann")
    settle(sim)
    value = json.loads(receiver.posts[0]["raw"])["entry"][0]["changes"][0]["value"]
    assert value["contacts"] == [{"profile": {"name": "Ann"}, "wa_id": "4915112345678"}]
    assert value["messages"][0]["text"] == {"body": "hello shop"}
    resp = post(client, text(ALICE))
    settle(sim)
    assert by_wamid(receiver.statuses(), resp.json()["messages"][0]["id"]) == ["sent", "delivered"]


def test_recipient_format_and_wa_id_rewrite(sim: GraphSimulator, client: httpx.Client) -> None:
    sim.configure(wa_ids={"5511987654321": "551187654321"})  # Brazil: the API drops the extra 9
    resp = post(client, tpl("+55 (11) 98765-4321"))
    assert resp.json()["contacts"] == [{"input": "+55 (11) 98765-4321", "wa_id": "551187654321"}]
    assert len(sim.accepted("+5511987654321")) == len(sim.accepted("551187654321")) == 1
    bad = post(client, tpl("call me"))
    assert bad.status_code == 400 and error_of(bad)["code"] == 131009
    missing = post(client, {k: v for k, v in tpl(ALICE).items() if k != "to"})
    assert error_of(missing)["code"] == 100 and "to is required" in error_of(missing)["message"]


def test_request_validation_errors(sim: GraphSimulator, client: httpx.Client) -> None:
    no_product = {k: v for k, v in text(ALICE).items() if k != "messaging_product"}
    assert error_of(post(client, no_product))["code"] == 100
    assert error_of(post(client, text(ALICE, body="x" * 4097)))["code"] == 100
    assert error_of(post(client, text(ALICE, callback="c" * 513)))["code"] == 100
    assert post(client, text(ALICE, callback="c" * 512)).status_code == 200
    video = dict(text(ALICE), type="video", video={"link": "https://x.example/v.mp4"})
    assert error_of(post(client, video))["code"] == 131051
    assert sim.accepted(ALICE)[0]["biz_opaque_callback_data"] == "c" * 512


# --------------------------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("message", "code", "status", "detail"),
    [
        (tpl(ALICE, name="no_such_template"), 132001, 404, "does not exist"),
        (tpl(ALICE, lang="de"), 132001, 404, "approved in: en_US, pt_BR"),
        (tpl(ALICE, name="draft_notice", params=("x",)), 132001, 404, ""),
        (
            tpl(ALICE, params=("Ann",)),
            132000,
            400,
            "body: number of localizable_params (1) does not match the expected number of params (2)",
        ),
        (tpl(ALICE, params=("Ann", "B-1", "extra")), 132000, 400, "(3)"),
        (tpl(ALICE, name="spring_sale", params=("Ann", "20%")), 132000, 400, "header"),
        (
            tpl(ALICE, name="spring_sale", params=("Ann", "20%"), header={"type": "text", "text": "x"}),
            132012,
            400,
            "image",
        ),
        (tpl(ALICE, name="winter_promo", params=("Ann",)), 132015, 400, "paused"),
        (tpl(ALICE, name="old_offer", params=("Ann",)), 132016, 400, "disabled"),
        (tpl(ALICE, params=("Ann", "")), 100, 400, "non-empty"),
        (tpl(ALICE, params=("Ann", "line\nbreak")), 100, 400, "new-line"),
    ],
)
def test_template_errors(
    sim: GraphSimulator, client: httpx.Client, message: dict[str, Any], code: int, status: int, detail: str
) -> None:
    resp = post(client, message)
    assert resp.status_code == status
    err = error_of(resp)
    assert err["code"] == code
    assert err["message"].startswith(f"(#{code})")
    assert detail in err.get("error_data", {}).get("details", "")
    assert err["fbtrace_id"]
    assert sim.accepted() == []


def test_named_and_media_header_and_url_button_templates(sim: GraphSimulator, client: httpx.Client) -> None:
    named = tpl(ALICE, name="shipping_update", params=())
    named["template"]["components"] = [
        {
            "type": "body",
            "parameters": [
                {"type": "text", "parameter_name": "first_name", "text": "Ann"},
                {"type": "text", "parameter_name": "tracking", "text": "T-1"},
            ],
        },
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "T-1"}]},
    ]
    assert post(client, named).status_code == 200
    no_button = json.loads(json.dumps(named))
    no_button["template"]["components"].pop()
    assert error_of(post(client, no_button))["code"] == 132000
    image = {"type": "image", "image": {"link": "https://cdn.example/sale.jpg"}}
    assert post(client, tpl(BOB, name="spring_sale", params=("Bob", "20%"), header=image)).status_code == 200


def test_templates_catalogue_lists_pages_and_filters(sim: GraphSimulator, client: httpx.Client) -> None:
    first = client.get(f"/v27.0/{WABA_ID}/message_templates", params={"limit": 4})
    assert first.status_code == 200
    rows, page = list(first.json()["data"]), first.json()
    while "next" in page["paging"]:
        page = client.get(page["paging"]["next"]).json()
        rows.extend(page["data"])
    names = {(r["name"], r["language"]): r for r in rows}
    assert len(rows) == len(names) >= 10
    order = names[("order_ready", "en_US")]
    assert order["status"] == "APPROVED" and order["category"] == "UTILITY"
    assert order["components"][0] == {
        "type": "BODY",
        "text": "Hi {{1}}, your order {{2}} is ready for pickup.",
        "example": {"body_text": [["example 1", "example 2"]]},
    }
    assert names[("winter_promo", "en_US")]["status"] == "PAUSED"
    approved = client.get(f"/v27.0/{WABA_ID}/message_templates", params={"status": "APPROVED", "limit": 100})
    assert {r["status"] for r in approved.json()["data"]} == {"APPROVED"}
    only = client.get(f"/v27.0/{WABA_ID}/message_templates", params={"fields": "name,status", "limit": 1})
    assert set(only.json()["data"][0]) == {"name", "status", "id"}
    assert error_of(client.get("/v27.0/999/message_templates"))["error_subcode"] == 33


def test_waba_reads_are_rate_limited_80007_when_configured(sim: GraphSimulator, client: httpx.Client) -> None:
    sim.configure(waba_reads_per_hour=2)
    assert client.get(f"/v27.0/{WABA_ID}/message_templates").status_code == 200
    assert client.get(f"/v27.0/{WABA_ID}").status_code == 200
    third = client.get(f"/v27.0/{WABA_ID}/message_templates")
    assert error_of(third)["code"] == 80007
    assert client.get(f"/v27.0/{PHONE_ID}").status_code == 200  # the phone node is not a WABA endpoint


def test_concurrent_clients_get_distinct_wamids_and_every_send_is_counted(sim: GraphSimulator) -> None:
    import threading

    sim.set_phone(PHONE_ID, throughput="HIGH")
    answers: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        with httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as c:
            for i in range(40):
                wamid = post(c, tpl(f"+4917{n}{i:08d}")).json()["messages"][0]["id"]
                with lock:
                    answers.append(wamid)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == len(set(answers)) == 160
    assert sorted(r["wamid"] for r in sim.accepted()) == sorted(answers)


def test_configurable_catalogue(sim: GraphSimulator, client: httpx.Client) -> None:
    sim.set_templates([template("promo", "Hi {{1}}", category="MARKETING", language="de")])
    rows = client.get(f"/v27.0/{WABA_ID}/message_templates").json()["data"]
    assert [(r["name"], r["language"], r["category"]) for r in rows] == [("promo", "de", "MARKETING")]
    assert post(client, tpl(ALICE, name="promo", params=("Ann",), lang="de")).status_code == 200
    assert error_of(post(client, tpl(ALICE)))["code"] == 132001


def test_marketing_cap_131049_by_webhook_and_unbilled(
    sim: GraphSimulator, client: httpx.Client, receiver: Receiver
) -> None:
    sim.configure(marketing_capped=[ALICE])
    image = {"type": "image", "image": {"link": "https://cdn.example/sale.jpg"}}
    capped = post(client, tpl(ALICE, name="spring_sale", params=("Ann", "20%"), header=image))
    utility = post(client, tpl(ALICE))
    assert capped.status_code == utility.status_code == 200
    settle(sim)
    statuses = receiver.statuses()
    failed = [s for s in statuses if s["id"] == capped.json()["messages"][0]["id"]]
    assert [(s["status"], s["errors"][0]["code"]) for s in failed] == [("failed", 131049)]
    assert "pricing" not in failed[0]
    assert by_wamid(statuses, utility.json()["messages"][0]["id"]) == ["sent", "delivered"]


def test_marketing_templates_to_us_numbers_are_not_delivered(
    sim: GraphSimulator, client: httpx.Client, receiver: Receiver
) -> None:
    image = {"type": "image", "image": {"link": "https://cdn.example/sale.jpg"}}
    us = post(client, tpl("+1 415 555 0123", name="spring_sale", params=("Ann", "20%"), header=image))
    canada = post(client, tpl("+1 416 555 0123", name="spring_sale", params=("Bo", "20%"), header=image))
    utility = post(client, tpl("+1 415 555 0124"))
    settle(sim)
    statuses = receiver.statuses()
    assert [s["status"] for s in statuses if s["id"] == us.json()["messages"][0]["id"]] == ["failed"]
    assert by_wamid(statuses, canada.json()["messages"][0]["id"]) == ["sent", "delivered"]
    assert by_wamid(statuses, utility.json()["messages"][0]["id"]) == ["sent", "delivered"]


def test_held_for_quality_assessment_then_failed_132015_and_the_template_paused(
    sim: GraphSimulator, client: httpx.Client, receiver: Receiver
) -> None:
    sim.configure(paced_templates=["order_ready"], held_ms=None)
    resp = post(client, tpl(ALICE))
    assert resp.json()["messages"][0]["message_status"] == "held_for_quality_assessment"
    settle(sim)
    assert receiver.statuses() == []  # held: nothing yet
    assert sim.release_held("fail") == 1
    settle(sim)
    statuses = receiver.statuses()
    assert [(s["status"], s["errors"][0]["code"]) for s in statuses] == [("failed", 132015)]
    again = post(client, tpl(BOB))
    assert error_of(again)["code"] == 132015


def test_held_messages_released_go_on_normally(
    sim: GraphSimulator, client: httpx.Client, receiver: Receiver
) -> None:
    sim.configure(paced_templates=["order_ready"], held_ms=30)
    resp = post(client, tpl(ALICE))
    settle(sim)
    assert by_wamid(receiver.statuses(), resp.json()["messages"][0]["id"]) == ["sent", "delivered"]


# ----------------------------------------------------------------------------------------------- media


def test_media_upload_then_send_by_id_and_by_link(
    sim: GraphSimulator, client: httpx.Client, receiver: Receiver
) -> None:
    up = client.post(
        f"/v27.0/{PHONE_ID}/media",
        data={"messaging_product": "whatsapp", "type": "application/pdf"},
        files={"file": ("inv.pdf", b"%PDF-1.4 test", "application/pdf")},
    )
    assert up.status_code == 200
    media_id = up.json()["id"]
    assert sim.uploads()[0]["file_size"] == len(b"%PDF-1.4 test")
    info = client.get(f"/v27.0/{media_id}").json()
    assert info["mime_type"] == "application/pdf" and info["id"] == media_id
    by_id = dict(
        text(ALICE), type="document", document={"id": media_id, "caption": "Invoice", "filename": "i.pdf"}
    )
    by_link = dict(text(BOB), type="image", image={"link": "https://cdn.example/x.jpg", "caption": "Hi"})
    unknown = dict(text(ALICE), type="image", image={"id": "999", "caption": "?"})
    sim.configure(all_windows_open=True)
    wamids = [post(client, m).json()["messages"][0]["id"] for m in (by_id, by_link, unknown)]
    settle(sim)
    statuses = receiver.statuses()
    assert by_wamid(statuses, wamids[0]) == ["sent", "delivered"]
    assert by_wamid(statuses, wamids[1]) == ["sent", "delivered"]
    failed = [s for s in statuses if s["id"] == wamids[2]]
    assert failed[0]["errors"][0]["code"] == 131053  # media problems come by webhook
    both = dict(text(ALICE), type="image", image={"id": media_id, "link": "https://cdn.example/x.jpg"})
    assert error_of(post(client, both))["code"] == 100
    bad_type = client.post(
        f"/v27.0/{PHONE_ID}/media",
        data={"messaging_product": "whatsapp"},
        files={"file": ("x.exe", b"MZ", "application/x-msdownload")},
    )
    assert error_of(bad_type)["code"] == 131053


# ---------------------------------------------------------------------------------------------- account


def test_account_facts_and_the_messaging_limit_field_per_version(
    sim: GraphSimulator, client: httpx.Client
) -> None:
    fields = (
        "display_phone_number,verified_name,quality_rating,status,throughput,"
        "whatsapp_business_manager_messaging_limit,health_status"
    )
    facts = client.get(f"/v27.0/{PHONE_ID}", params={"fields": fields}).json()
    assert facts["quality_rating"] == "GREEN" and facts["throughput"] == {"level": "STANDARD"}
    assert facts["whatsapp_business_manager_messaging_limit"] == "TIER_2K"
    assert facts["id"] == PHONE_ID
    default = client.get(f"/v27.0/{PHONE_ID}").json()
    assert set(default) == {
        "id",
        "display_phone_number",
        "verified_name",
        "quality_rating",
        "code_verification_status",
    }
    old = client.get(f"/v27.0/{PHONE_ID}", params={"fields": "messaging_limit_tier"})
    assert (
        error_of(old)["code"] == 100
        and "nonexisting field (messaging_limit_tier)" in error_of(old)["message"]
    )
    assert client.get(f"/v23.0/{PHONE_ID}", params={"fields": "messaging_limit_tier"}).status_code == 200
    sim.set_phone(PHONE_ID, quality_rating="YELLOW", throughput="HIGH")
    facts = client.get(f"/v27.0/{PHONE_ID}", params={"fields": "quality_rating,throughput"}).json()
    assert facts["quality_rating"] == "YELLOW" and facts["throughput"] == {"level": "HIGH"}
    waba = client.get("/v27.0/debug_token", params={"input_token": TOKEN}).json()["data"]
    assert waba["is_valid"] is True and waba["granular_scopes"][0]["target_ids"] == [WABA_ID]
    numbers = client.get(f"/v27.0/{WABA_ID}/phone_numbers").json()["data"]
    assert [n["id"] for n in numbers] == [PHONE_ID]


def test_bad_token_190_and_unknown_number_100(sim: GraphSimulator, client: httpx.Client) -> None:
    for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": ""}):
        for resp in (
            client.get(f"/v27.0/{PHONE_ID}", headers=headers),
            client.post(f"/v27.0/{PHONE_ID}/messages", json=tpl(ALICE), headers=headers),
        ):
            assert resp.status_code == 401
            assert error_of(resp)["code"] == 190 and error_of(resp)["type"] == "OAuthException"
    sim.expire_token()
    expired = client.get(f"/v27.0/{PHONE_ID}")
    assert error_of(expired)["code"] == 190 and error_of(expired)["error_subcode"] == 463
    sim.set_token("rotated")
    assert client.get(f"/v27.0/{PHONE_ID}").status_code == 401
    sim.set_token(TOKEN)
    unknown = client.get("/v27.0/5550000")
    assert unknown.status_code == 400
    err = error_of(unknown)
    assert (err["code"], err["error_subcode"], err["type"]) == (100, 33, "GraphMethodException")
    assert error_of(post(client, tpl(ALICE), phone_id="5550000"))["code"] == 100
    assert sim.accepted() == []


@pytest.mark.parametrize(("code", "status"), [(368, 403), (131031, 403), (131048, 400), (131042, 400)])
def test_account_level_errors_refuse_every_send(
    sim: GraphSimulator, client: httpx.Client, code: int, status: int
) -> None:
    sim.configure(account_error=code)
    resp = post(client, tpl(ALICE))
    assert (resp.status_code, error_of(resp)["code"]) == (status, code)
    assert client.get(f"/v27.0/{PHONE_ID}").status_code == 200  # reads still work
    assert sim.accepted() == []


def test_rate_limit_130429_beyond_the_numbers_mps(sim: GraphSimulator, client: httpx.Client) -> None:
    sim.set_phone(PHONE_ID, mps=1)  # a bucket of one: the next message within a second is refused
    codes = [post(client, tpl(f"+49151000000{i}")).status_code for i in range(5)]
    refused = [c for c in codes if c != 200]
    assert refused and len(sim.accepted()) == 5 - len(refused) >= 1
    sim.configure(throttle_http_status=429)
    resp = post(client, tpl("+4915100000099"))
    if resp.status_code != 200:
        assert (resp.status_code, error_of(resp)["code"]) == (429, 130429)


def test_pair_rate_limit_131056_per_recipient(sim: GraphSimulator, client: httpx.Client) -> None:
    sim.configure(pair_burst=1, pair_interval_s=600)
    assert post(client, tpl(ALICE)).status_code == 200
    second = post(client, tpl(ALICE))
    assert (second.status_code, error_of(second)["code"]) == (400, 131056)
    assert post(client, tpl(BOB)).status_code == 200
    assert len(sim.accepted(ALICE)) == 1


def test_not_on_whatsapp_is_accepted_then_fails_131026(
    sim: GraphSimulator, client: httpx.Client, receiver: Receiver
) -> None:
    sim.configure(not_on_whatsapp=[ALICE], callback_on_failed=False)
    resp = post(client, tpl(ALICE, callback="wb1:7:1"))
    assert resp.status_code == 200
    settle(sim)
    (status,) = receiver.statuses()
    assert status["status"] == "failed" and status["errors"][0]["code"] == 131026
    assert "biz_opaque_callback_data" not in status  # Meta does not promise it on failed


# ------------------------------------------------------------------------------------------------ faults


@pytest.mark.parametrize(("code", "status"), [(131000, 500), (131016, 503), (133004, 503), (2, 503)])
def test_5xx_graph_errors_then_success(
    sim: GraphSimulator, client: httpx.Client, code: int, status: int
) -> None:
    sim.add_fault("error", code=code, count=1)
    first = post(client, tpl(ALICE))
    assert (first.status_code, error_of(first)["code"]) == (status, code)
    assert post(client, tpl(ALICE)).status_code == 200
    assert len(sim.accepted(ALICE)) == 1


def test_gateway_html_errors_before_and_after_acceptance(sim: GraphSimulator, client: httpx.Client) -> None:
    sim.add_fault("html", status=502, count=1)
    sim.add_fault("html", status=504, accepted=True, count=1, to=[BOB])
    before = post(client, tpl(ALICE))
    assert before.status_code == 502 and before.headers["content-type"].startswith("text/html")
    assert sim.accepted(ALICE) == []
    after = post(client, tpl(BOB))
    assert after.status_code == 504
    assert len(sim.accepted(BOB)) == 1  # the gateway timed out after the backend accepted it


def test_response_cut_after_acceptance_is_a_protocol_error_and_the_webhook_still_comes(
    sim: GraphSimulator, client: httpx.Client, receiver: Receiver
) -> None:
    sim.add_fault("cut_after", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        post(client, tpl(ALICE, callback="wb1:9:1"))
    (rec,) = sim.accepted(ALICE)
    settle(sim)
    statuses = [s for s in receiver.statuses() if s["id"] == rec["wamid"]]
    assert [s["status"] for s in statuses] == ["sent", "delivered"]
    assert statuses[0]["biz_opaque_callback_data"] == "wb1:9:1"
    assert post(client, tpl(BOB)).status_code == 200  # the client's pool recovers


def test_response_cut_before_acceptance_looks_the_same_to_the_client_but_nothing_was_sent(
    sim: GraphSimulator, client: httpx.Client, receiver: Receiver
) -> None:
    sim.add_fault("cut_before", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        post(client, tpl(ALICE))
    settle(sim)
    assert sim.accepted() == [] and receiver.statuses() == []


def test_refused_connections_are_connect_errors_and_nothing_is_accepted(
    sim: GraphSimulator, client: httpx.Client
) -> None:
    assert post(client, tpl(BOB)).status_code == 200  # a kept-alive connection exists
    sim.refuse_connections()
    try:
        with pytest.raises(httpx.ConnectError):
            post(client, tpl(ALICE))
    finally:
        sim.accept_connections()
    assert sim.accepted(ALICE) == []
    assert post(client, tpl(ALICE)).status_code == 200


def test_slow_response_is_a_read_timeout_after_acceptance(sim: GraphSimulator, client: httpx.Client) -> None:
    sim.add_fault("slow", delay_s=2.0, count=1)
    with pytest.raises(httpx.ReadTimeout):
        client.post(f"/v27.0/{PHONE_ID}/messages", json=tpl(ALICE), timeout=httpx.Timeout(5.0, read=0.3))
    assert len(sim.accepted(ALICE)) == 1
    with httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5) as other:
        assert post(other, tpl(BOB)).status_code == 200  # other connections are not held up


def test_garbled_success_body_and_fault_targeting(sim: GraphSimulator, client: httpx.Client) -> None:
    sim.add_fault("garbled", to=[BOB])
    assert post(client, tpl(ALICE)).status_code == 200
    resp = post(client, tpl(BOB))
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()
    assert len(sim.accepted(BOB)) == 1
    sim.clear_faults()
    assert "messages" in post(client, tpl(BOB)).json()
    for kind, spec in (("explode", {}), ("cut_after", {"count": 0}), ("slow", {"rate": 2}), ("error", {})):
        with pytest.raises(ValueError):
            sim.add_fault(kind, **spec)


def test_faults_on_reads(sim: GraphSimulator, client: httpx.Client) -> None:
    sim.add_fault("error", endpoint="account", code=190, count=1)
    assert error_of(client.get(f"/v27.0/{PHONE_ID}"))["code"] == 190
    sim.add_fault("error", endpoint="templates", code=80007, count=1)
    assert error_of(client.get(f"/v27.0/{WABA_ID}/message_templates"))["code"] == 80007
    assert client.get(f"/v27.0/{WABA_ID}/message_templates").status_code == 200


# ---------------------------------------------------------------------------------------------- webhooks


def test_webhooks_are_batched_in_several_entries_and_changes(
    sim: GraphSimulator, client: httpx.Client, receiver: Receiver
) -> None:
    sim.configure(statuses_per_change=2, changes_per_entry=2, webhook_batch_ms=200, read_rate=1.0)
    wamids = [post(client, tpl(f"+4915100000{i:02d}")).json()["messages"][0]["id"] for i in range(6)]
    settle(sim)
    shapes = []
    for p in receiver.posts:
        body = json.loads(p["raw"])
        shapes.append((len(body["entry"]), [len(e["changes"]) for e in body["entry"]]))
    assert any(entries > 1 for entries, _ in shapes)
    assert any(max(changes) > 1 for _, changes in shapes)
    statuses = receiver.statuses()
    assert len(statuses) == 18
    assert all(sorted(by_wamid(statuses, w)) == ["delivered", "read", "sent"] for w in wamids)


def test_duplicated_reordered_and_skipped_statuses(
    sim: GraphSimulator, client: httpx.Client, receiver: Receiver
) -> None:
    sim.configure(duplicate_rate=1.0, read_rate=1.0, reorder_rate=1.0)
    first = post(client, tpl(ALICE)).json()["messages"][0]["id"]
    settle(sim)
    order = by_wamid(receiver.statuses(), first)
    assert sorted(order) == ["delivered", "delivered", "read", "read", "sent", "sent"]  # each twice
    assert order.index("read") < order.index("delivered")  # read arrives before delivered
    delivered = next(s for s in receiver.statuses() if s["status"] == "delivered")
    read = next(s for s in receiver.statuses() if s["status"] == "read")
    assert int(delivered["timestamp"]) <= int(read["timestamp"])  # timestamps keep the true order
    receiver.clear()
    sim.configure(duplicate_rate=0.0, reorder_rate=0.0, skip_delivered_rate=1.0)
    second = post(client, tpl(BOB)).json()["messages"][0]["id"]
    settle(sim)
    statuses = [s for s in receiver.statuses() if s["id"] == second]
    assert [s["status"] for s in statuses] == ["sent", "read"]  # delivered never comes
    assert "pricing" in statuses[1]  # pricing rides on read then


def test_refused_webhooks_are_retried_until_acknowledged(
    sim: GraphSimulator, client: httpx.Client, receiver: Receiver
) -> None:
    receiver.fail_next = 3
    wamid = post(client, tpl(ALICE)).json()["messages"][0]["id"]
    settle(sim)
    assert [p["answered"] for p in receiver.posts[:3]] == [500, 500, 500]
    assert sorted(by_wamid(receiver.statuses(), wamid)) == ["delivered", "sent"]  # retries reorder
    attempts = [w["attempt"] for w in sim.sent_webhooks()]
    assert max(attempts) >= 2
    retried = [w for w in sim.sent_webhooks() if w["attempt"] > 1]
    assert all(w["raw"] in {p["raw"] for p in receiver.posts} for w in retried)  # the same bytes again


def test_statuses_wait_while_no_webhook_url_and_the_handshake_gates_subscription(
    sim: GraphSimulator, client: httpx.Client, receiver: Receiver
) -> None:
    sim.set_webhook_url(None)
    wamid = post(client, tpl(ALICE)).json()["messages"][0]["id"]
    assert not sim.wait_webhooks(0.2)
    assert sim.set_webhook_url(receiver.url, verify_token="wrong") is False
    assert receiver.gets[-1]["hub.mode"] == "subscribe"
    assert not sim.wait_webhooks(0.2) and receiver.posts == []
    assert sim.verify_webhook(receiver.url, "vt")["verified"] is True
    assert sim.set_webhook_url(receiver.url, verify_token="vt") is True
    settle(sim)
    assert by_wamid(receiver.statuses(), wamid) == ["sent", "delivered"]


def test_username_users_get_statuses_without_recipient_id(
    sim: GraphSimulator, client: httpx.Client, receiver: Receiver
) -> None:
    sim.configure(username_users=[ALICE])
    post(client, tpl(ALICE))
    settle(sim)
    statuses = receiver.statuses()
    assert statuses and all(
        "recipient_id" not in s and s["recipient_user_id"].startswith("US.") for s in statuses
    )


def test_template_status_and_limit_changes_are_told_by_account_webhooks(
    sim: GraphSimulator, receiver: Receiver
) -> None:
    sim.set_template_status("order_ready", "PAUSED", language="en_US")
    sim.set_phone(PHONE_ID, whatsapp_business_manager_messaging_limit="TIER_10K")
    sim.set_phone(PHONE_ID, throughput="HIGH")
    settle(sim)
    changes = [ch for p in receiver.posts for e in json.loads(p["raw"])["entry"] for ch in e["changes"]]
    fields = {ch["field"]: ch["value"] for ch in changes}
    assert fields["message_template_status_update"]["event"] == "PAUSED"
    assert fields["message_template_status_update"]["message_template_name"] == "order_ready"
    events = [ch["value"]["event"] for ch in changes if ch["field"] == "phone_number_quality_update"]
    assert events == ["UPGRADE", "THROUGHPUT_UPGRADE"]
    assert receiver.statuses() == []  # none of these is a message status


def test_value_level_error_webhook(sim: GraphSimulator, receiver: Receiver) -> None:
    sim.value_error(130429, "Throughput reached")
    settle(sim)
    value = json.loads(receiver.posts[0]["raw"])["entry"][0]["changes"][0]["value"]
    assert value["errors"][0]["code"] == 130429 and "statuses" not in value


def test_many_requests_on_kept_alive_connections(sim: GraphSimulator, client: httpx.Client) -> None:
    sim.set_phone(PHONE_ID, throughput="HIGH")
    for i in range(100):
        assert post(client, tpl(f"+4916{i:09d}")).status_code == 200
    assert len(sim.accepted()) == 100
    assert len({r["wamid"] for r in sim.accepted()}) == 100


# ----------------------------------------------------------------------------------- out of process + HTTP


def test_out_of_process_with_the_http_control_api(receiver: Receiver) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wabulk.cloud.simulator",
            "--port",
            "0",
            "--token",
            "tok",
            "--app-secret",
            "sec",
            "--webhook-url",
            receiver.url,
            "--phone-number-id",
            "111",
            "--config",
            json.dumps(BASE),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "Graph API simulator running at http://127.0.0.1:" in line, line
        url = line.split(" at ")[1].split()[0]
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer tok"}, timeout=5) as c:
            assert (
                c.post("/_sim/faults", json={"kind": "error", "code": 131056, "count": 1}).status_code == 200
            )
            assert error_of(post(c, tpl(ALICE), phone_id="111"))["code"] == 131056
            assert c.post("/_sim/config", json={"not_on_whatsapp": [BOB]}).status_code == 200
            assert post(c, tpl(ALICE), phone_id="111").status_code == 200
            assert post(c, tpl(BOB), phone_id="111").status_code == 200
            assert len(c.get("/_sim/accepted", params={"to": ALICE}).json()) == 1
            assert c.get("/_sim/idle", params={"timeout": 10}).json() == {"idle": True}
            posts = c.get("/_sim/webhooks").json()
            codes = [
                s.get("errors", [{}])[0].get("code")
                for p in posts
                for e in p["body"]["entry"]
                for ch in e["changes"]
                for s in ch["value"]["statuses"]
            ]
            assert 131026 in codes
            assert c.post("/_sim/config", json={"nope": 1}).status_code == 400
            state = c.get("/_sim/state").json()
            assert state["phone_numbers"]["111"]["waba_id"] == WABA_ID and state["accepted"] == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_wabulk_simulator_graph_runs_the_graph_simulator() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wabulk", "simulator", "--graph", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "Graph API simulator running at http://127.0.0.1:" in line, line
        url = line.split(" at ")[1].split()[0]
        resp = httpx.get(f"{url}/v27.0/{PHONE_ID}", headers={"Authorization": "Bearer sim-token"}, timeout=5)
        assert resp.json()["id"] == PHONE_ID
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_raw_http_pipelined_chunked_and_malformed_requests(sim: GraphSimulator) -> None:
    import socket

    host, port = sim.url.removeprefix("http://").split(":")
    body = json.dumps(tpl(ALICE)).encode()
    plain = (
        f"POST /v27.0/{PHONE_ID}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    chunked = (
        (
            f"POST /v27.0/{PHONE_ID}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        ).encode()
        + b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:10], body[10:]))
        + b"0\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(plain + chunked)  # two requests in one write, the second one chunked
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert len(sim.accepted(ALICE)) == 2
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(plain)
        s.shutdown(socket.SHUT_WR)  # a half-close after the request still gets its answer
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"NONSENSE\r\n\r\n")
        assert s.recv(1024).startswith(b"HTTP/1.1 400")
        assert s.recv(1024) == b""  # and the connection is closed
