"""Templates whose header (text, image, video, document) or buttons (url, copy_code, quick_reply) take
parameters: checked against the synced catalogue at enqueue, sent in Meta's ``components`` shape, and
validated by the Graph simulator as Meta does."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cloud_helpers import PHONE_ID, TOKEN, graph_simulator, webhook_receiver
from wabulk import exitcodes
from wabulk.cli import app
from wabulk.cloud.provider import build_payload
from wabulk.cloud.simulator import templates as sim_templates
from wabulk.cloud.simulator.errors import GraphError as SimGraphError
from wabulk.cloud.simulator.templates import template
from wabulk.cloud.templates import Catalogue, Extras, check_template, parse_template, shape_of
from wabulk.errors import BadInput
from wabulk.models import Claim
from wabulk.queue import Queue

runner = CliRunner()

BUTTONS = [
    {"type": "COPY_CODE", "example": "SAVE20"},
    {"type": "QUICK_REPLY", "text": "Stop promotions"},
]
# A text header with a parameter, a URL button with one, a copy-code button and a quick reply.
RICH = template(
    "order_rich",
    "Hi {{1}}, your order is ready.",
    header="Order {{1}}",
    url_button="https://shop.example/o/{{1}}",
    buttons=BUTTONS,
)
# Utility: the simulator, as Meta, does not deliver marketing templates to the US numbers used here.
PHOTO = template("photo_offer", "Hi {{1}}, your receipt.", category="UTILITY", header="IMAGE")
# NAMED parameters: each body value is sent with its parameter_name.
TRACK = template(
    "track", "Hello {{first_name}}, parcel {{tracking}} ships today.", url_button="https://t.example/{{1}}"
)
TEMPLATES = [RICH, PHOTO, TRACK, template("plain", "Hi {{1}}.")]


def catalogue() -> Catalogue:
    entries = [parse_template(t) for t in TEMPLATES]
    return Catalogue([e for e in entries if e is not None], {"biz": ("1", 0.0)})


def test_the_shape_counts_header_and_button_parameters() -> None:
    shape = shape_of(RICH["components"])
    assert (shape.body, shape.header_format, shape.header_params) == (1, "TEXT", 1)
    assert [(b.index, b.sub_type, b.required) for b in shape.buttons] == [
        (0, "url", True),
        (1, "copy_code", True),
        (2, "quick_reply", False),
    ]
    assert shape_of(PHOTO["components"]).media_header == "image"
    assert shape_of(TRACK["components"]).body_names == ("first_name", "tracking")
    assert shape_of(RICH["components"]).body_names == ()


def test_enqueue_checks_header_and_buttons_against_the_catalogue() -> None:
    cat = catalogue()
    # The quick reply's payload is optional: 2 or 3 button values fit.
    for buttons in (2, 3):
        check_template(cat, "order_rich", "en_US", 1, Extras(header_params=1, button_params=buttons))
    check_template(cat, "photo_offer", "en_US", 1, Extras(header_media="link"))
    for name, extras, expected in [
        (
            "order_rich",
            Extras(header_params=0, button_params=2),
            "takes 1 header parameter and 0 --header-param were given",
        ),
        ("order_rich", Extras(header_params=1, button_params=1), "takes 2 or 3 button parameter(s)"),
        ("order_rich", Extras(header_params=1, header_media="link", button_params=2), "not a media one"),
        ("photo_offer", Extras(), "has an image header: give it with --header-media"),
        ("photo_offer", Extras(header_media="file", header_params=1), "not --header-param"),
        ("plain", Extras(button_params=1), "takes 0 button parameter(s) (buttons none)"),
    ]:
        with pytest.raises(BadInput) as err:
            check_template(cat, name, "en_US", 1, extras)
        assert expected in str(err.value), (name, extras)


def claim(params: tuple[str, ...], layout: dict[str, Any], **kw: Any) -> Claim:
    return Claim(
        message_id=7, job_id=1, worker_id="w", attempt=1, phone="+14155550100", body="x", name=None,
        attachment=kw.pop("attachment", None), lease_until=0.0, session="biz", sends=1,
        template_name=kw.pop("name", "order_rich"), template_lang="en_US", params=params,
        template_layout=json.dumps(layout),
    )  # fmt: skip


def test_the_payload_carries_header_and_buttons_in_meta_shape_and_the_simulator_accepts_it() -> None:
    layout = {
        "body": 1,
        "header": {"format": "text", "params": 1},
        "buttons": [[0, "url"], [1, "copy_code"], [2, "quick_reply"]],
    }
    payload = build_payload(claim(("Ann", "B-100", "b100", "SAVE20", "stop-ann"), layout))
    components = payload["template"]["components"]
    assert components == [
        {"type": "header", "parameters": [{"type": "text", "text": "B-100"}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Ann"}]},
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "b100"}]},
        {
            "type": "button",
            "sub_type": "copy_code",
            "index": "1",
            "parameters": [{"type": "coupon_code", "coupon_code": "SAVE20"}],
        },
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": "2",
            "parameters": [{"type": "payload", "payload": "stop-ann"}],
        },
    ]
    sim_templates.check_send(sim_templates.normalise(RICH), components)
    # A file header goes by the job's uploaded media id; a link header by its (rendered) link.
    by_file = build_payload(
        claim(("Ann",), {"body": 1, "header": {"format": "image", "source": "file"}}, name="photo_offer"),
        media_id="55",
    )
    assert by_file["template"]["components"][0] == {
        "type": "header",
        "parameters": [{"type": "image", "image": {"id": "55"}}],
    }
    by_link = build_payload(
        claim(
            ("Ann", "https://cdn.example/a.jpg"),
            {"body": 1, "header": {"format": "image", "source": "link"}},
            name="photo_offer",
        )
    )
    assert by_link["template"]["components"][0]["parameters"][0]["image"] == {
        "link": "https://cdn.example/a.jpg"
    }


def test_the_simulator_refuses_what_meta_refuses() -> None:
    rich = sim_templates.normalise(RICH)
    body = {"type": "body", "parameters": [{"type": "text", "text": "Ann"}]}
    header = {"type": "header", "parameters": [{"type": "text", "text": "B-100"}]}
    url = {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "x"}]}
    code = {
        "type": "button",
        "sub_type": "copy_code",
        "index": "1",
        "parameters": [{"type": "coupon_code", "coupon_code": "SAVE20"}],
    }
    sim_templates.check_send(rich, [header, body, url, code])  # the quick reply's payload is optional
    for components, want in [
        ([body, url, code], 132000),  # the header's parameter missing
        ([header, body, code], 132000),  # the URL button's parameter missing
        ([header, body, url, {**code, "sub_type": "url"}], 132012),  # not the button's sub_type
        ([header, body, url, {**code, "parameters": [{"type": "text", "text": "SAVE20"}]}], 132012),
    ]:
        with pytest.raises(SimGraphError) as err:
            sim_templates.check_send(rich, components)
        assert err.value.code == want, components


# --- the CLI over real HTTP against the simulator ------------------------------------------------------


def write_contacts(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "phone", "order"])
        w.writerows(rows)
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_enqueue_and_run_fill_header_and_buttons_end_to_end(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Queue(db_path).close()
    with webhook_receiver(db_path) as hook, graph_simulator(hook, templates=TEMPLATES) as sim:
        monkeypatch.setenv("WABULK_GRAPH_URL", sim.url)
        monkeypatch.setenv("WABULK_CLOUD_TOKEN", TOKEN)
        login = invoke("login", "--session", "biz", "--cloud", "--phone-number-id", PHONE_ID)
        assert login[0] == 0, login
        assert invoke("templates", "sync", "--session", "biz")[0] == 0
        src = write_contacts(
            tmp_path / "c.csv", [("Ann", "+14155550101", "B-100"), ("Bob", "+14155550102", "B-101")]
        )
        rich = ["--template", "order_rich", "--template-param", "{name}", "--header-param", "{order}"]
        rich += ["--button-param", "{order}", "--button-param", "SAVE20"]
        code, out, err = invoke("enqueue", str(src), *rich, "--dry-run")
        assert code == 0, err
        assert "--header-param 1 = 'B-100'" in out and "--button-param 2 = 'SAVE20'" in out

        # A value that renders empty for one row: refused with its row and column, nothing written.
        bad = write_contacts(
            tmp_path / "bad.csv", [("Ann", "+14155550101", "B-100"), ("Cy", "+14155550103", "")]
        )
        code, _, err = invoke("enqueue", str(bad), *rich)
        assert code == exitcodes.BAD_INPUT
        assert "row 3" in err and "'order'" in err and "--header-param 1" in err
        # A file for the image header that is not an image the header takes.
        pdf = tmp_path / "offer.pdf"
        pdf.write_bytes(b"%PDF-1.4")
        photo = ["--template", "photo_offer", "--template-param", "{name}"]
        code, _, err = invoke("enqueue", str(src), *photo, "--header-media", str(pdf))
        assert code == exitcodes.BAD_INPUT and "takes .jpg/.jpeg/.png files" in err
        with Queue(db_path) as q:
            assert q.summaries() == []

        assert invoke("enqueue", str(src), *rich)[0] == 0
        jpg = tmp_path / "offer.jpg"
        jpg.write_bytes(b"\xff\xd8\xff\xe0" + b"0" * 64)
        assert invoke("enqueue", str(src), *photo, "--header-media", str(jpg))[0] == 0
        track = ["--template", "track", "--template-param", "{name}", "--template-param", "{order}"]
        assert invoke("enqueue", str(src), *track, "--button-param", "{order}")[0] == 0
        code, _, err = invoke("run", "--session", "biz", "--until-done")
        assert code == 0, err
        sent = sim.accepted()
        assert len(sent) == 6
        by_template: dict[str, list[dict[str, Any]]] = {}
        for rec in sent:
            tpl = rec["payload"]["template"]
            by_template.setdefault(tpl["name"], []).append(tpl["components"])
        ann_rich = next(c for c in by_template["order_rich"] if c[1]["parameters"][0]["text"] == "Ann")
        assert ann_rich[0] == {"type": "header", "parameters": [{"type": "text", "text": "B-100"}]}
        assert ann_rich[2]["parameters"] == [{"type": "text", "text": "B-100"}]
        assert ann_rich[3]["parameters"] == [{"type": "coupon_code", "coupon_code": "SAVE20"}]
        # The image is uploaded once for the job, and every message carries its id.
        (upload,) = sim.uploads()
        ids = {c[0]["parameters"][0]["image"]["id"] for c in by_template["photo_offer"]}
        assert ids == {upload["id"]}
        # A NAMED template's values carry their names (the simulator, as Meta, refuses them without).
        assert {tuple(p["parameter_name"] for p in c[0]["parameters"]) for c in by_template["track"]} == {
            ("first_name", "tracking")
        }
