"""The template catalogue (``wabulk templates sync``/``list``) and the checks of ``enqueue --template``.

Graph answers here come from httpx's MockTransport shaped like Meta's (``data`` + ``paging``); the same
flows run over real HTTP against the bundled Graph API simulator in test_cloudcli_e2e.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from wabulk import exitcodes
from wabulk.cli import app
from wabulk.cloud.templates import (
    Catalogue,
    GraphRequestError,
    body_params,
    check_template,
    fetch_templates,
    load_catalogue,
    other_params,
    parse_template,
    resolve_waba_id,
    sync_templates,
)
from wabulk.errors import BadInput, ConfigError
from wabulk.importer import TemplateJob, enqueue_file
from wabulk.models import CatalogueTemplate
from wabulk.queue import Queue

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def graph_template(name: str, lang: str = "en_US", body: str = "Hi {{1}}, order {{2}} is ready", **kw: Any):
    return {
        "name": name,
        "language": lang,
        "status": kw.get("status", "APPROVED"),
        "category": kw.get("category", "UTILITY"),
        "id": kw.get("id", f"{name}-{lang}"),
        "components": [{"type": "HEADER", "format": "TEXT", "text": "Shop"}, {"type": "BODY", "text": body}],
    }


def paged_graph(templates: list[dict], page: int = 2, token: str = "tok", seen: list | None = None):
    """A MockTransport answering GET /v27.0/{waba}/message_templates like Meta: pages of ``page`` with
    cursors, ``next`` only while more remain; 190 for a wrong token, 100 for an unknown WABA."""

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if request.headers.get("Authorization") != f"Bearer {token}":
            return httpx.Response(
                401, json={"error": {"message": "Invalid OAuth access token.", "code": 190, "type": "OAuth"}}
            )
        if not request.url.path.startswith("/v27.0/555/"):
            return httpx.Response(
                400, json={"error": {"message": "Unsupported get request.", "code": 100, "error_subcode": 33}}
            )
        start = int(request.url.params.get("after") or 0)
        limit = min(int(request.url.params.get("limit") or 25), page)
        chunk = templates[start : start + limit]
        body: dict[str, Any] = {"data": chunk, "paging": {"cursors": {"before": str(start)}}}
        if start + limit < len(templates):
            body["paging"]["cursors"]["after"] = str(start + limit)
            body["paging"]["next"] = f"{request.url.copy_merge_params({'after': str(start + limit)})}"
        return httpx.Response(200, json=body)

    return httpx.Client(transport=httpx.MockTransport(handler))


CATALOGUE = [
    graph_template("order_ready"),
    graph_template("order_ready", "pt_BR", "Oi {{1}}, pedido {{2}}"),
    graph_template("promo", body="Hi {{first_name}}, {{first_name}}: 20% off", category="MARKETING"),
    graph_template("rejected_one", status="REJECTED"),
    graph_template("no_params", body="Your parcel is on its way"),
]


def test_body_params_counts_distinct_positional_and_named_placeholders() -> None:
    assert body_params([{"type": "BODY", "text": "Hi {{1}}, {{2}} and {{ 1 }}"}]) == 2
    assert body_params([{"type": "body", "text": "Hi {{first_name}} / {{order_id}}"}]) == 2
    assert body_params([{"type": "HEADER", "text": "{{1}}"}, {"type": "BODY", "text": "none"}]) == 0
    assert body_params(None) == 0
    t = parse_template(graph_template("x", status="approved", category="utility"))
    assert t is not None and (t.status, t.category, t.params) == ("APPROVED", "UTILITY", 2)
    assert parse_template({"language": "en_US"}) is None
    assert other_params([{"type": "HEADER", "format": "TEXT", "text": "Shop"}]) == 0
    assert other_params([{"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"}]) == 1
    assert other_params([{"type": "HEADER", "format": "IMAGE"}]) == 1
    buttons = [
        {"type": "URL", "url": "https://x.example/{{1}}"},
        {"type": "URL", "url": "https://x.example/"},
    ]
    assert other_params([{"type": "BUTTONS", "buttons": buttons}]) == 1


def test_fetch_follows_every_page() -> None:
    seen: list[httpx.Request] = []
    got = fetch_templates(
        "http://graph.test", "v27.0", "555", "tok", client=paged_graph(CATALOGUE, 2, seen=seen)
    )
    assert [(t.name, t.language) for t in got] == [(t["name"], t["language"]) for t in CATALOGUE]
    assert len(seen) == 3  # 2 + 2 + 1
    assert [r.url.params.get("after") for r in seen] == [None, "2", "4"]


def test_fetch_errors_keep_the_graph_code() -> None:
    with pytest.raises(GraphRequestError) as bad_token:
        fetch_templates("http://graph.test", "v27.0", "555", "wrong", client=paged_graph(CATALOGUE))
    assert bad_token.value.code == 190
    with pytest.raises(GraphRequestError) as bad_waba:
        fetch_templates("http://graph.test", "v27.0", "999", "tok", client=paged_graph(CATALOGUE))
    assert bad_waba.value.code == 100


def test_sync_replaces_the_catalogue_and_a_failed_sync_keeps_the_old_one(db_path: Path) -> None:
    q = Queue(db_path)
    res = sync_templates(
        q,
        "biz",
        "555",
        token="tok",
        base_url="http://graph.test",
        version="v27.0",
        client=paged_graph(CATALOGUE),
        now=1000.0,
    )
    assert (len(res.templates), res.approved) == (5, 4)
    assert q.catalogue_syncs() == {"biz": ("555", 1000.0)}
    with pytest.raises(ConfigError, match=r"refused the access token \(code 190\)"):
        sync_templates(
            q,
            "biz",
            "555",
            token="nope",
            base_url="http://graph.test",
            version="v27.0",
            client=paged_graph(CATALOGUE),
        )
    assert len(q.catalogue(["biz"])) == 5
    sync_templates(
        q,
        "biz",
        "555",
        token="tok",
        base_url="http://graph.test",
        version="v27.0",
        client=paged_graph(CATALOGUE[:1]),
        now=2000.0,
    )
    assert [(t.name, t.language, t.params, t.synced_at) for t in q.catalogue()] == [
        ("order_ready", "en_US", 2, 2000.0)
    ]
    with pytest.raises(ConfigError, match="WABULK_CLOUD_TOKEN"):
        sync_templates(q, "biz", "555", token=None, base_url="http://graph.test", version="v27.0")
    q.close()


def catalogue(*templates: CatalogueTemplate) -> Catalogue:
    return Catalogue(list(templates), {"biz": ("555", 1.0)})


def entry(name: str, lang: str = "en_US", params: int = 2, status: str = "APPROVED") -> CatalogueTemplate:
    return CatalogueTemplate(name, lang, status, "UTILITY", params, session="biz", waba_id="555")


def test_check_template_names_what_is_wrong() -> None:
    cat = catalogue(entry("order_ready"), entry("order_ready", "pt_BR"), entry("old", status="PAUSED"))
    assert check_template(cat, "order_ready", "en_US", 2).language == "en_US"
    with pytest.raises(BadInput) as e:
        check_template(cat, "order_redy", "en_US", 2)
    assert str(e.value) == (
        "template 'order_redy' is not in the synced catalogue (approved: order_ready); "
        "if it was created since, run: wabulk templates sync --session biz"
    )
    with pytest.raises(BadInput) as e:
        check_template(cat, "order_ready", "de", 2)
    assert str(e.value) == (
        "template 'order_ready' has no 'de' version (approved in: en_US, pt_BR); "
        "choose one with --template-lang"
    )
    with pytest.raises(BadInput) as e:
        check_template(cat, "order_ready", "en_US", 1)
    assert (
        str(e.value) == "template 'order_ready' (en_US) takes 2 parameters and 1 --template-param was given"
    )
    with pytest.raises(BadInput) as e:
        check_template(cat, "old", "en_US", 2)
    assert str(e.value) == "template 'old' (en_US) is PAUSED, not APPROVED: Meta refuses to send it"


def contacts_file(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["Name", "Phone", "Order"])
        w.writerows(rows)
    return path


ROWS = [("Alice", "+447911123456", "B-100"), ("Bob", "+447911123457", "B-101"), ("Cy", "+14155550123", "B-7")]


def test_template_job_renders_each_parameter_per_contact(tmp_path: Path, db_path: Path) -> None:
    q = Queue(db_path)
    src = contacts_file(tmp_path / "c.csv", ROWS)
    job = TemplateJob("order_ready", "en_US", ("{name}", "#{order}"))
    res = enqueue_file(
        None, src, template=job, catalogue=catalogue(entry("order_ready")), country="GB", dry_run=True
    )
    assert res.enqueued == 3 and res.category == "UTILITY"
    assert res.param_previews[:2] == [("Alice", "#B-100"), ("Bob", "#B-101")]
    assert res.previews[0] == "order_ready (en_US): Alice, #B-100"
    assert res.notices == []
    q.close()


def test_empty_parameter_names_row_and_column_and_writes_nothing(tmp_path: Path, db_path: Path) -> None:
    q = Queue(db_path)
    src = contacts_file(tmp_path / "c.csv", [ROWS[0], ("Bob", "+447911123457", "  "), ROWS[2]])
    with pytest.raises(BadInput) as e:
        enqueue_file(q, src, template=TemplateJob("t", "en_US", ("{name}", "{order}")), country="GB")
    assert str(e.value) == (
        f"{src}, row 3, column 'Order': template parameter 2 ({{order}}) is empty for this row, "
        "and WhatsApp refuses empty parameters: fill it in or leave the row out"
    )
    assert q.summaries() == []
    q.close()


def test_no_catalogue_is_a_notice_not_a_refusal(tmp_path: Path) -> None:
    src = contacts_file(tmp_path / "c.csv", ROWS)
    res = enqueue_file(
        None, src, template=TemplateJob("t", "en_US", ("{name}",)), catalogue=None, country="GB", dry_run=True
    )
    assert res.enqueued == 3
    assert res.notices == [
        "no template catalogue was synced, so 't' (en_US) and its 1 parameter(s) were not checked: Meta "
        "refuses a wrong one only when the job runs (132000/132001); check them first with: "
        "wabulk templates sync --session NAME"
    ]


# --- the CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def synced(db_path: Path) -> Queue:
    q = Queue(db_path)
    q.replace_catalogue(
        "biz",
        "555",
        [
            CatalogueTemplate("order_ready", "en_US", "APPROVED", "UTILITY", 2),
            CatalogueTemplate("promo", "en_US", "APPROVED", "MARKETING", 1),
        ],
        synced_at=1000.0,
    )
    yield q
    q.close()


def test_cli_rejects_a_wrong_template_before_writing(tmp_path: Path, synced: Queue) -> None:
    src = contacts_file(tmp_path / "c.csv", ROWS)
    base = ["enqueue", str(src), "--country", "GB"]
    code, out, err = invoke(*base, "--template", "order_ready", "--template-param", "{name}")
    assert (code, out) == (exitcodes.BAD_INPUT, "")
    assert (
        err == "Error: template 'order_ready' (en_US) takes 2 parameters and 1 --template-param was given\n"
    )
    code, _, err = invoke(
        *base,
        "--template",
        "order_ready",
        "--template-lang",
        "fr",
        "--template-param",
        "{name}",
        "--template-param",
        "{order}",
    )
    assert code == exitcodes.BAD_INPUT
    assert err == (
        "Error: template 'order_ready' has no 'fr' version (approved in: en_US); "
        "choose one with --template-lang\n"
    )
    code, _, err = invoke(*base, "--template", "nope", "--template-param", "{name}")
    assert code == exitcodes.BAD_INPUT
    assert err == (
        "Error: template 'nope' is not in the synced catalogue (approved: order_ready, promo); "
        "if it was created since, run: wabulk templates sync --session biz\n"
    )
    code, _, err = invoke(*base, "--template", "promo", "--template-param", "{nope}")
    assert code == exitcodes.BAD_INPUT
    assert err.startswith("Error: --template-param 1: the template uses {nope}, which is not a column")
    assert synced.summaries() == []


def test_cli_template_and_message_are_exclusive(tmp_path: Path) -> None:
    src = contacts_file(tmp_path / "c.csv", ROWS)
    result = runner.invoke(app, ["enqueue", str(src), "--message", "hi", "--template", "x"])
    assert result.exit_code == exitcodes.BAD_INPUT
    assert "give exactly one of --message, --message-file or --template (got --message and --template)" in (
        result.stderr
    )
    result = runner.invoke(app, ["enqueue", str(src), "--message", "hi", "--template-param", "{name}"])
    assert result.exit_code == exitcodes.BAD_INPUT
    assert "--header-media and --button-param need --template" in " ".join(result.stderr.split())


def test_cli_dry_run_shows_the_rendered_parameters(tmp_path: Path, synced: Queue) -> None:
    src = contacts_file(tmp_path / "c.csv", ROWS)
    code, out, err = invoke(
        "enqueue",
        str(src),
        "--country",
        "GB",
        "--template",
        "order_ready",
        "--template-param",
        "{name}",
        "--template-param",
        "{order}",
        "--dry-run",
    )
    assert code == 0, err
    assert "Dry run: 3 message(s) would be queued; nothing was written." in out
    assert "Template order_ready (en_US, category UTILITY)" in out
    assert "--- preview 1 ---\n{{1}} = 'Alice'\n{{2}} = 'B-100'\n" in out
    code, out, _ = invoke(
        "enqueue",
        str(src),
        "--country",
        "GB",
        "--template",
        "order_ready",
        "--template-param",
        "{name}",
        "--template-param",
        "{order}",
        "--dry-run",
        "--json",
    )
    data = json.loads(out)
    assert data["template"] == {
        "name": "order_ready",
        "language": "en_US",
        "category": "UTILITY",
        "previews": [["Alice", "B-100"], ["Bob", "B-101"], ["Cy", "B-7"]],
    }
    assert synced.summaries() == []


def test_cli_templates_list(synced: Queue) -> None:
    code, out, _ = invoke("templates", "list", "--json")
    assert code == 0
    assert [(t["name"], t["language"], t["category"], t["params"]) for t in json.loads(out)] == [
        ("order_ready", "en_US", "UTILITY", 2),
        ("promo", "en_US", "MARKETING", 1),
    ]
    code, out, _ = invoke("templates", "list", "--session", "other")
    assert (code, out) == (
        0,
        "No templates synced for session 'other'. Fetch them with: wabulk templates sync --session NAME\n",
    )


def test_cli_sync_needs_a_token(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WABULK_CLOUD_TOKEN", raising=False)
    code, out, err = invoke("templates", "sync", "--session", "biz", "--waba-id", "555")
    assert (code, out) == (exitcodes.ERROR, "")
    assert err == "Error: no access token: set WABULK_CLOUD_TOKEN (the system-user token of the app)\n"


def test_resolve_waba_id_names_the_choices(synced: Queue) -> None:
    assert resolve_waba_id(synced, "biz", None) == "555"  # the last sync's
    assert resolve_waba_id(synced, "new", None, discover=lambda: ["777"]) == "777"
    with pytest.raises(ConfigError) as e:
        resolve_waba_id(synced, "new", None, discover=lambda: ["777", "888"])
    assert (
        str(e.value) == "the token may use 2 WhatsApp Business Accounts (777, 888): choose one with --waba-id"
    )
    with pytest.raises(ConfigError) as e:
        resolve_waba_id(synced, "new", None, discover=lambda: [])
    assert str(e.value) == (
        "the WhatsApp Business Account id of session 'new' is not known yet: pass --waba-id "
        "(WhatsApp Manager shows it beside the account name)"
    )
    with pytest.raises(BadInput):
        resolve_waba_id(synced, "new", "12ab")


def test_load_catalogue_by_session(synced: Queue) -> None:
    assert load_catalogue(synced, ["biz"]).synced == {"biz": ("555", 1000.0)}
    none = load_catalogue(synced, ["web"])
    assert none.empty and none.unsynced == ("web",)
    assert len(load_catalogue(synced).templates) == 2


def test_cli_enqueues_a_template_job_with_its_parameters(tmp_path: Path, synced: Queue) -> None:
    src = contacts_file(tmp_path / "c.csv", ROWS)
    code, out, err = invoke(
        "enqueue",
        str(src),
        "--country",
        "GB",
        "--template",
        "order_ready",
        "--template-param",
        "{name}",
        "--template-param",
        "Order {order}",
        "--json",
    )
    assert code == 0, err
    job_id = json.loads(out)["job_id"]
    job = synced.get_job(job_id)
    assert (job.template_name, job.template_lang, job.template) == (
        "order_ready",
        "en_US",
        "order_ready (en_US): {name}, Order {order}",
    )
    first = next(synced.iter_messages(job_id))
    assert first.params == ("Alice", "Order B-100")
    assert first.body == "order_ready (en_US): Alice, Order B-100"
