"""End-to-end on the page as seen live in 2026 (simulator era "2026-09", headless refusal ON): our bubbles
read by author label, tail, tick and id (no message-out class, text span by testid, time and tick inside
the text's container), the header without titles, verification by message id, a failed send, attachments
through the menu item's own late input (never the sticker), and doctor naming every selector."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser_marks import needs_chromium
from conftest import SIM_FAST
from e2e_helpers import simulator_running, snapshots_into
from wabulk import errors, models
from wabulk import qrcodes as qr
from wabulk.doctor import run_doctor
from wabulk.settings import Settings
from wabulk.web import bubbles, dom
from wabulk.web import selectors as S
from wabulk.web.sender import WhatsAppSender

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(240),
    needs_chromium,
]

ERA = {**SIM_FAST, "ui_era": "2026-09", "logged_in_default": True}  # refuse_headless: on (era default)
FAST = dom.Timeouts(boot=20, stuck_loading=20, chat_open=10, element=5, confirm=8, takeover=10, settle=1.0)
PHONE = "+14155550301"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with simulator_running(tmp_path_factory, "sim-2609", ERA) as s:
        yield s


@pytest.fixture(scope="module")
def wa(sim: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WhatsAppSender]:
    home = tmp_path_factory.mktemp("wa-2609")
    settings = Settings.from_env().with_(web_url=sim.url, home=home, db=home / "wabulk.db", headless=True)
    sender = WhatsAppSender(settings, "p2609", timeouts=FAST, open_chat="deeplink")
    sender.start()
    sender.ensure_ready()
    yield sender
    sender.close()


@pytest.fixture(autouse=True)
def era(sim: Any) -> None:
    sim.configure(**ERA)


def _send(
    wa: WhatsAppSender, sim: Any, body: str, phone: str = PHONE, **kw: Any
) -> tuple[Any, dict[str, Any]]:
    before = len(sim.messages())
    result = wa.send(phone, body, **kw)
    got = sim.messages()[before:]
    assert len(got) == 1, got
    return result, got[0]


def test_text_with_emoji_rtl_and_three_lines_is_sent_once_and_confirmed_by_its_id(
    wa: WhatsAppSender, sim: Any
) -> None:
    assert sim.state.snapshot()["refuse_headless"] is True  # the page refuses headless browsers here
    body = "Shalom 👋🏽 שלום עולם — مرحبا\nsecond line 🇮🇱\nthird line"
    snaps: list[models.ChatSnapshot] = []
    result, rec = _send(wa, sim, body, before_send=snapshots_into(snaps))
    assert rec["text"] == body and rec["kind"] == "text"
    assert result.tick in bubbles.LEFT and result.message_ref == rec["id"]  # the bare 2026 id
    assert snaps[0].readable and rec["id"] not in snaps[0].ids
    # a second identical message is a new bubble with its own id, confirmed as itself
    result2, rec2 = _send(wa, sim, body, before_send=snapshots_into(snaps))
    assert result2.message_ref == rec2["id"] != rec["id"]
    assert rec["id"] in snaps[1].ids and snaps[1].count == snaps[0].count + 1
    time.sleep(0.5)
    assert [m["text"] for m in sim.messages() if m["id"] in (rec["id"], rec2["id"])] == [body, body]


def test_verify_sent_by_id_absent_when_readable_unknown_when_ids_are_hidden(
    wa: WhatsAppSender, sim: Any
) -> None:
    phone = "+14155550302"
    _send(wa, sim, "already there", phone=phone)
    since = time.time()
    snaps: list[models.ChatSnapshot] = []
    result, rec = _send(wa, sim, "verify by id", phone=phone, before_send=snapshots_into(snaps))
    known = snaps[0]
    found = wa.verify_sent(phone, "verify by id", since, evidence=known.to_evidence())
    assert found.sent and found.message_ref == rec["id"], found
    # a new bubble of ours with another text after the snapshot proves nothing (issue 20, 7): unknown
    assert (
        wa.verify_sent(phone, "never sent", since, evidence=known.to_evidence()).outcome
        == models.VERIFY_UNKNOWN
    )
    # a snapshot taken after that bubble: the same chat, readable, and a message that never went out: absent
    after = models.ChatSnapshot(ids=(*known.ids, rec["id"]), count=known.count + 1)
    missing = wa.verify_sent(phone, "never sent", since, evidence=after.to_evidence())
    assert missing.absent, missing
    # the same text sent earlier (another job, a minute that may be the stamp's): in the snapshot, not ours
    assert wa.verify_sent(phone, "already there", since, evidence=after.to_evidence()).absent
    # an incoming message with exactly that text is not ours
    sim.incoming(phone.lstrip("+"), "never sent")
    time.sleep(0.7)
    assert wa.verify_sent(phone, "never sent", since, evidence=after.to_evidence()).absent
    # the page hides message ids: a snapshot without them, and a chat that cannot be compared by id
    sim.configure(bubble_ids=False)
    hidden: list[models.ChatSnapshot] = []
    _send(wa, sim, "sent while ids are hidden", phone=phone, before_send=snapshots_into(hidden))
    assert (hidden[0].ids, hidden[0].readable) == ((), False) and hidden[0].page_clock is not None
    v = wa.verify_sent(phone, "verify by id", since, evidence=known.to_evidence())
    assert v.outcome == models.VERIFY_UNKNOWN, v
    v = wa.verify_sent(phone, "sent while ids are hidden", time.time() - 5, evidence=hidden[0].to_evidence())
    assert v.outcome == models.VERIFY_UNKNOWN and "identical" in v.reason  # by its minute only: no guess


def test_a_failed_send_is_unconfirmed_and_never_pressed_again_while_in_the_chat(
    wa: WhatsAppSender, sim: Any
) -> None:
    # issue 20, 8: WhatsApp may retry a failed bubble itself; a second press would be a second copy
    phone = "+14155550303"
    sim.configure(fail_sends=[phone.lstrip("+")])
    before = len(sim.messages())
    snaps: list[models.ChatSnapshot] = []
    since = time.time()
    with pytest.raises(errors.ConfirmTimeout) as info:
        wa.send(phone, "will fail", before_send=snapshots_into(snaps))
    assert info.value.error_class == "send_failed"
    assert sim.messages()[before:] == [] and len(sim.failed()) >= 1
    v = wa.verify_sent(phone, "will fail", since, evidence=snaps[0].to_evidence())
    assert v.outcome == models.VERIFY_UNKNOWN and "failed" in v.reason, v


def test_image_arrives_as_an_image_and_pdf_as_a_document_never_a_sticker(
    wa: WhatsAppSender, sim: Any, tmp_path: Path
) -> None:
    image = qr.save_png("a picture", tmp_path / "picture.png")
    result, rec = _send(wa, sim, "caption 📎\nline two", attachment=str(image))
    assert rec["kind"] == "image" and rec["caption"] == "caption 📎\nline two"
    assert rec["attachment"]["name"] == "picture.png" and result.message_ref == rec["id"]
    doc = tmp_path / "invoice.pdf"
    doc.write_bytes(b"%PDF-1.4 fake")
    _, rec = _send(wa, sim, "your invoice", attachment=str(doc))
    assert rec["kind"] == "document" and rec["caption"] == "your invoice"
    # the sticker item's input (accept="image/*") is in the page now: a photo still goes as a photo
    drv = wa.browser.driver
    wa.browser.find(S.ATTACH_BUTTON, 5).click()
    sticker = dom.find(drv, S.Selector("sticker_item", ("[role='menuitem'][aria-label='New sticker']",)), 5)
    sticker.click()
    _, rec = _send(wa, sim, "", attachment=str(image))
    assert rec["kind"] == "image"
    _, rec = _send(wa, sim, "again, same page", attachment=str(image))
    assert rec["kind"] == "image" and rec["caption"] == "again, same page"


def test_in_page_opening_proves_the_chat_by_the_2026_header(wa: WhatsAppSender, sim: Any) -> None:
    wa.open_chat_method = "inpage"
    try:
        _send(wa, sim, "first, in-page", phone="+14155550304")
        assert wa.last_open_method == "inpage"
        _, rec = _send(wa, sim, "in-page to another chat", phone="+14155550305")
        assert rec["phone"] == "14155550305" and wa.last_open_method == "inpage"
        assert wa.chats.shows("+14155550305")
    finally:
        wa.open_chat_method = "deeplink"


def test_doctor_lists_every_selector_the_code_uses(sim: Any, tmp_path: Path) -> None:
    home = tmp_path / "doc"
    settings = Settings.from_env().with_(web_url=sim.url, home=home, db=home / "wabulk.db", headless=True)
    sim.configure(history_scope="account")  # doctor's new device sees the messages sent to PHONE before
    checks = run_doctor(settings, "doc", live=True, test_phone=PHONE, timeouts=FAST)
    text = "\n".join(f"{c.name}: {c.detail}" for c in checks)
    by = {c.name: c for c in checks}
    assert by["page"].level == "ok" and by["test chat"].level == "ok", text
    for sel in S.ALL:
        assert sel.name in text, f"doctor does not name {sel.name}"
    for name in ("chat_title", "compose_box", "attach_button", "attach_media_item", "attach_document_item"):
        assert by[f"selector {name}"].ok, by[f"selector {name}"]
    # the chat's messages are read: ids and texts of ours, and the reading selectors matched
    assert by["bubble reader"].level == "ok" and "with a message id" in by["bubble reader"].detail, text
    for name in ("message_row", "message_text", "message_pre_plain_text", "status_icon"):
        assert by[f"selector {name}"].ok, by[f"selector {name}"]
    assert "candidate 1 of" in by["selector message_text"].detail  # the testid span, not the class
    # the 2026 header has no title attribute: the 2026 title selector matched first
    assert "candidate 1 of" in by["selector chat_title"].detail
    # no file input until an item is chosen: reported, not failed
    assert by["selector media_input"].level == "warn"
    assert not [c for c in checks if c.level == "fail"], text
