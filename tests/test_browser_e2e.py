"""End-to-end: real Chromium + chromedriver against the bundled simulator. The oracle is what the simulator
received (``simulator.messages()``), byte for byte and exactly once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser_marks import needs_chromium
from conftest import make_browser_settings
from e2e_helpers import snapshots_into
from wabulk import errors, models
from wabulk import qrcodes as qr
from wabulk.doctor import run_doctor
from wabulk.web import browser as sess
from wabulk.web import dom, login
from wabulk.web import errors as web_errors
from wabulk.web.profile import ProfileLock, is_our_browser
from wabulk.web.sender import WhatsAppSender
from wabulk.web.states import CHAT, LOADING, LOGGED_OUT, MAIN, QR, TAKEOVER_COMPUTER, TAKEOVER_WINDOW

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
]

PHONE = "+14155550123"
FAST = dom.Timeouts(boot=15, stuck_loading=15, chat_open=10, element=5, confirm=8, takeover=10, settle=1.0)


def _login_with_sim(sender: WhatsAppSender, sim: Any) -> list[str]:
    """Wait for the QR and 'scan' it in the simulator; returns the QR payloads seen."""
    seen: list[str] = []

    def on_qr(payload: str) -> None:
        seen.append(payload)
        sim.scan()

    assert sender.wait_for_login(on_qr, timeout=20)
    return seen


@pytest.fixture(scope="module")
def wa(simulator_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WhatsAppSender]:
    """One logged-in browser shared by the tests of this module (starting Chromium costs seconds)."""
    home = tmp_path_factory.mktemp("wa-home")
    # Pinned to the deep link: this module covers it; tests/test_open_chat_e2e.py covers the in-page way.
    sender = WhatsAppSender(
        make_browser_settings(simulator_server.url, home), "shared", timeouts=FAST, open_chat="deeplink"
    )
    sender.start()
    seen = _login_with_sim(sender, simulator_server)
    assert seen and seen[0].endswith(",WEB") and seen[0].count(",") == 4
    # A clean restart writes the fresh login to the profile (Chromium commits storage lazily, so a hard
    # kill seconds after linking would lose it), and shows the profile is reused without a QR.
    sender.restart()
    sender.ensure_ready()
    yield sender
    sender.close()


def _new(sim: Any, before: int) -> list[dict[str, Any]]:
    return sim.messages()[before:]


def _send_and_get(wa: WhatsAppSender, sim: Any, body: str, phone: str = PHONE, **kw: Any) -> dict[str, Any]:
    before = len(sim.messages())
    result = wa.send(phone, body, **kw)
    assert result.tick in (models.TICK_SENT, models.TICK_DELIVERED, models.TICK_READ)
    got = _new(sim, before)
    assert len(got) == 1, got
    assert got[0]["phone"] == phone.lstrip("+")
    assert result.message_ref and got[0]["id"] in result.message_ref
    return got[0]


@pytest.mark.parametrize("era", ["2023", "2025", "2026", "2026-09"])
def test_each_page_version(wa: WhatsAppSender, simulator: Any, era: str) -> None:
    simulator.configure(ui_era=era)
    rec = _send_and_get(wa, simulator, f"hello from the {era} page")
    assert rec["text"] == f"hello from the {era} page"
    assert wa.page_state() == CHAT


@pytest.mark.parametrize(
    "body",
    [
        "emoji 😀👍🏽🎉 and a family 👨‍👩‍👧‍👦",
        "flags 🇮🇱🇬🇧🇺🇸🏳️‍🌈",
        "שלום עולם — مرحبا بالعالم — mixed RTL ١٢٣",
        "quotes \"double\" 'single' “curly” ‘curly’ «guillemets» `back`",
        "symbols & # % + ? = / \\ <b>not html</b> %20 &amp;",
        "multi-line\nsecond line\n\nafter an empty line\n  indented",
        ("x" * 99 + "\u00e9") * 40,  # 4,000 characters
    ],
    ids=["emoji", "flags", "rtl", "quotes", "symbols", "multiline", "4000chars"],
)
def test_text_arrives_byte_exact_as_one_message(wa: WhatsAppSender, simulator: Any, body: str) -> None:
    rec = _send_and_get(wa, simulator, body)
    assert rec["text"] == body
    assert len(body) < 4000 or len(rec["text"]) == 4000


# legacy, 2025-26 ("The number …") and live 2026 ("The phone number …") invalid-number wording
@pytest.mark.parametrize("era", ["2023", "2026", "2026-09"])
def test_invalid_number_is_not_on_whatsapp(wa: WhatsAppSender, simulator: Any, era: str) -> None:
    simulator.configure(ui_era=era, invalid_numbers=["15550009999"])
    before = len(simulator.messages())
    called: list[bool] = []
    with pytest.raises(errors.NotOnWhatsApp) as info:
        wa.send("+15550009999", "hi", before_send=lambda _snap: called.append(True))
    assert not info.value.transient
    wording = {"2023": "shared via url is invalid", "2026": "The number +", "2026-09": "The phone number +"}
    assert wording[era] in str(info.value) and (era == "2023" or "isn't on WhatsApp" in str(info.value))
    assert called == [] and _new(simulator, before) == []
    assert wa.page_state() == MAIN  # OK was clicked: popup gone, no chat open


def test_before_send_failure_sends_nothing(wa: WhatsAppSender, simulator: Any) -> None:
    before = len(simulator.messages())

    lost = errors.LeaseLost("lease lost")

    def boom(_snap: object) -> None:
        raise lost

    with pytest.raises(errors.LeaseLost) as info:
        wa.send(PHONE, "must not be sent", before_send=boom)
    assert info.value is lost  # the caller's own exception, not a translated one
    time.sleep(0.5)  # give a wrongly sent message time to reach the simulator
    assert _new(simulator, before) == []
    # and the next message is sent on its own (the aborted text is not left in the box)
    assert _send_and_get(wa, simulator, "next one")["text"] == "next one"


def test_before_send_is_called_once_right_before_sending(wa: WhatsAppSender, simulator: Any) -> None:
    before = len(simulator.messages())
    seen_at_call: list[int] = []
    wa.send(PHONE, "stamped", before_send=lambda _snap: seen_at_call.append(len(simulator.messages())))
    assert seen_at_call == [before]  # nothing had been sent when it ran
    assert [m["text"] for m in _new(simulator, before)] == ["stamped"]


def test_attachment_with_caption(wa: WhatsAppSender, simulator: Any, tmp_path: Path) -> None:
    image = qr.save_png("a picture", tmp_path / "picture.png")
    rec = _send_and_get(wa, simulator, "caption with emoji 📎\nand a second line", attachment=str(image))
    assert rec["attachment"]["name"] == "picture.png"
    assert rec["attachment"]["size"] == image.stat().st_size
    assert rec["caption"] == "caption with emoji 📎\nand a second line"
    doc = tmp_path / "invoice.pdf"
    doc.write_bytes(b"%PDF-1.4 fake")
    rec = _send_and_get(wa, simulator, "your invoice", attachment=str(doc))
    assert rec["attachment"]["name"] == "invoice.pdf" and rec["caption"] == "your invoice"


def test_oversize_attachment_is_rejected_with_whatsapps_reason(
    wa: WhatsAppSender, simulator: Any, tmp_path: Path
) -> None:
    simulator.configure(max_media_bytes=1000)
    image = tmp_path / "big.png"
    image.write_bytes(qr.save_png("x" * 200, tmp_path / "q.png", scale=20).read_bytes() + b"\0" * 5000)
    before = len(simulator.messages())
    with pytest.raises(errors.AttachmentRejected, match="larger than the .* limit") as info:
        wa.send(PHONE, "too big", attachment=str(image))
    assert not info.value.transient
    assert _new(simulator, before) == []
    with pytest.raises(errors.AttachmentRejected, match="not found"):
        wa.send(PHONE, "missing", attachment=str(tmp_path / "nope.png"))


def test_message_left_on_the_clock_is_a_confirm_timeout_then_verified(
    wa: WhatsAppSender, simulator: Any
) -> None:
    simulator.configure(hold_pending=["14155550199"])
    since = time.time()
    old = wa.timeouts.confirm
    wa.timeouts.confirm = 2.0
    snaps: list[models.ChatSnapshot] = []
    try:
        with pytest.raises(errors.ConfirmTimeout, match="pending"):
            wa.send("+14155550199", "held on the clock", before_send=snapshots_into(snaps))
        # Still on the clock when looked at: it may yet turn into the failure icon, so it is read again
        # for the confirmation wait and then unknown, never "sent" for good (issue 20, 9)
        found = wa.verify_sent("+14155550199", "held on the clock", since, evidence=snaps[0].to_evidence())
        assert found.outcome == models.VERIFY_UNKNOWN and "clock" in found.reason, found
    finally:
        wa.timeouts.confirm = old
    # once WhatsApp sends it, the check finds it, so the worker will not send it twice
    simulator.configure(hold_pending=[])
    found = wa.verify_sent("+14155550199", "held on the clock", since, evidence=snaps[0].to_evidence())
    assert found.sent and found.tick != models.TICK_PENDING and found.message_ref, found
    # without the snapshot (a stamp from before ids were recorded) the bubble's minute cannot tell it from
    # an identical earlier message: unknown, never "absent"
    assert wa.verify_sent("+14155550199", "held on the clock", since).outcome == models.VERIFY_UNKNOWN


def test_offline_is_reported_and_nothing_is_sent(wa: WhatsAppSender, simulator: Any) -> None:
    simulator.configure(offline=True)
    before = len(simulator.messages())
    with pytest.raises(errors.Offline) as info:
        wa.send("+14155550177", "while offline")
    assert info.value.transient
    simulator.configure(offline=False)
    time.sleep(1.0)
    assert _new(simulator, before) == []


def test_verify_sent_by_message_id(wa: WhatsAppSender, simulator: Any) -> None:
    _send_and_get(wa, simulator, "an earlier message", phone="+14155550111")
    since = time.time()
    snaps: list[models.ChatSnapshot] = []
    rec = _send_and_get(
        wa, simulator, "verify me ✅", phone="+14155550111", before_send=snapshots_into(snaps)
    )
    known = snaps[0]
    assert known.readable and known.count >= 1 and len(known.ids) == known.count
    found = wa.verify_sent("+14155550111", "verify me ✅", since, evidence=known.to_evidence())
    assert found.sent and found.message_ref and rec["id"] in found.message_ref
    # exact text only: a new bubble of ours with another text proves nothing either way (issue 20, 7)
    other = wa.verify_sent("+14155550111", "verify me", since, evidence=known.to_evidence())
    assert other.outcome == models.VERIFY_UNKNOWN, other
    # the bubble is in the snapshot of a later send: it is not that later message
    after = models.ChatSnapshot(ids=(*known.ids, str(found.message_ref)), count=known.count + 1)
    assert wa.verify_sent("+14155550111", "verify me ✅", since, evidence=after.to_evidence()).absent
    # another chat, empty before and after the (never made) send
    empty = wa.verify_sent(
        "+14155550122", "verify me ✅", since, evidence=models.ChatSnapshot().to_evidence()
    )
    assert empty.absent, empty
    # without a snapshot, an empty chat proves nothing (the reader may be blind): unknown
    assert wa.verify_sent("+14155550122", "verify me ✅", since).outcome == models.VERIFY_UNKNOWN


def test_a_chat_whose_history_comes_late_is_never_taken_for_empty(wa: WhatsAppSender, simulator: Any) -> None:
    """Issue 20, 1 and 3: the first message to a contact, cut after Enter; after a browser restart the chat's
    history renders 3 s after opening. The chat is looked at only once it shows (its bubble, or the
    start-of-chat notice), so the message is found, not "absent" and sent again; a popup is unknown."""
    phone = "+14155550144"
    snaps: list[models.ChatSnapshot] = []
    since = time.time()
    rec = _send_and_get(wa, simulator, "first contact 🤝", phone=phone, before_send=snapshots_into(snaps))
    assert snaps[0].count == 0 and snaps[0].whole  # a new chat: the notice, no bubble
    simulator.configure(history_ms=3000, history_boot_ms=3000)
    try:
        wa.restart()
        before = len(simulator.messages())
        found = wa.verify_sent(phone, "first contact 🤝", since, evidence=snaps[0].to_evidence())
        assert found.sent and found.message_ref and rec["id"] in found.message_ref, found
        # a chat whose history never shows within the wait: unknown, never absent
        simulator.configure(history_ms=60_000, history_boot_ms=60_000)
        wa.timeouts.history = 4.0
        never = wa.verify_sent(phone, "first contact 🤝", since, evidence=snaps[0].to_evidence())
        assert never.outcome == models.VERIFY_UNKNOWN, never
        # and a send into such a chat is not pressed at all
        with pytest.raises(errors.TransientSendError) as info:
            wa.send("+14155550145", "never pressed")
        assert info.value.error_class == "history_not_shown"
        # the invalid-number popup while verifying a pressed send: unknown, not "absent"
        simulator.configure(history_ms=0, history_boot_ms=None, invalid_numbers=[phone])
        popup = wa.verify_sent(phone, "first contact 🤝", since, evidence=snaps[0].to_evidence())
        assert popup.outcome == models.VERIFY_UNKNOWN and "popup" in popup.reason, popup
        assert _new(simulator, before) == []
    finally:
        wa.timeouts.history = dom.Timeouts().history
        simulator.configure(history_ms=0, history_boot_ms=None, invalid_numbers=[])


@pytest.mark.parametrize("kind", ["window", "computer"])
def test_takeover_is_recovered_with_use_here(wa: WhatsAppSender, simulator: Any, kind: str) -> None:
    wa.ensure_ready()
    # only this browser's device (the simulator is shared by the whole run)
    device = wa.browser.driver.execute_script("return localStorage.getItem('wabulk-sim-device')")
    assert device in {d["device"] for d in simulator.devices()}
    simulator.takeover(kind, device)
    want = TAKEOVER_WINDOW if kind == "window" else TAKEOVER_COMPUTER
    deadline = time.monotonic() + 5
    while wa.page_state() != want:
        assert time.monotonic() < deadline, "the takeover screen never showed"
        time.sleep(0.1)
    rec = _send_and_get(wa, simulator, f"after a takeover ({kind})")
    assert rec["text"] == f"after a takeover ({kind})"


def test_stuck_loading_page_is_reloaded_once_then_reported(wa: WhatsAppSender, simulator: Any) -> None:
    simulator.configure(stall_boot=True)
    pages_before = {p["page"] for p in simulator.pages()}
    wa.browser.open(wa.settings.web_url)
    old = (wa.timeouts.stuck_loading, wa.timeouts.boot)
    wa.timeouts.stuck_loading, wa.timeouts.boot = 1.5, 3.0
    try:
        assert wa.browser.wait_state(lambda st, p: st == LOADING, 5)[0] == LOADING
        with pytest.raises(web_errors.BrowserError, match="did not finish loading"):
            wa.ensure_ready()
    finally:
        wa.timeouts.stuck_loading, wa.timeouts.boot = old
    new_pages = {p["page"] for p in simulator.pages()} - pages_before
    assert len(new_pages) == 2  # the stuck load and exactly one reload
    simulator.configure(stall_boot=False)
    wa.ensure_ready()
    assert _send_and_get(wa, simulator, "after a stuck load")["text"] == "after a stuck load"


def test_profile_in_use_gives_session_busy(wa: WhatsAppSender) -> None:
    other = sess.BrowserSession(wa.settings, wa.session_name)
    with pytest.raises(errors.SessionBusy, match=f"process {os.getpid()}"):
        other.start()


def test_browser_crash_is_recovered(wa: WhatsAppSender, simulator: Any) -> None:
    wa.ensure_ready()
    pid = wa.browser.browser_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    rec = _send_and_get(wa, simulator, "after a crash")
    assert rec["text"] == "after a crash"
    assert wa.browser.browser_pid() not in (None, pid)
    with pytest.raises(errors.SessionBusy):  # the restart kept the profile lock
        ProfileLock(wa.browser.lock.path, "shared").acquire()


def test_dead_chromedriver_is_recovered(wa: WhatsAppSender, simulator: Any) -> None:
    wa.ensure_ready()
    driver_proc = wa.browser.driver.service.process
    old_browser = wa.browser.browser_pid()
    os.kill(driver_proc.pid, signal.SIGKILL)
    driver_proc.wait(5)
    rec = _send_and_get(wa, simulator, "after chromedriver died")
    assert rec["text"] == "after chromedriver died"
    assert wa.browser.driver.service.process.pid != driver_proc.pid
    # the orphaned browser of the dead driver was ended (it would hold the profile)
    assert old_browser is not None
    assert not is_our_browser(old_browser, wa.browser.profile_dir)


# --- tests with their own browser (fresh profiles) -------------------------------------------------------


def test_login_via_qr_then_profile_reused_without_qr(simulator: Any, browser_settings: Any) -> None:
    simulator.configure(qr_rotate_ms=800)
    seen: list[str] = []

    def on_qr(payload: str) -> None:
        seen.append(payload)
        if len(seen) == 2:  # the QR rotated and was redrawn: scan the new one
            simulator.scan()

    result = login.login(browser_settings, "phone", on_qr=on_qr, timeout=20, timeouts=FAST, settle=0.5)
    assert result == login.LoginResult(
        already_logged_in=False, qr_png=qr.png_path(browser_settings, "phone"), qr_shown=2
    )
    assert len(set(seen)) == 2 and all(p.endswith(",WEB") for p in seen)
    assert result.qr_png is not None and result.qr_png.read_bytes()[:4] == b"\x89PNG"
    again: list[str] = []
    assert login.login(
        browser_settings, "phone", on_qr=again.append, timeout=20, timeouts=FAST, settle=0
    ).already_logged_in
    assert again == []
    assert (browser_settings.profile_dir("phone").stat().st_mode & 0o777) == 0o700


def test_logout_is_detected(simulator: Any, browser_settings: Any) -> None:
    devices_before = {d["device"] for d in simulator.devices()}
    sender = WhatsAppSender(browser_settings, "leaving", timeouts=FAST)
    try:
        sender.start()
        _login_with_sim(sender, simulator)
        sender.ensure_ready()
        mine = [d["device"] for d in simulator.devices() if d["device"] not in devices_before]
        assert len(mine) == 1
        simulator.logout(mine[0])
        deadline = time.monotonic() + 8
        while sender.page_state() not in (LOGGED_OUT, QR):
            assert time.monotonic() < deadline, "logout never showed"
            time.sleep(0.2)
        before = len(simulator.messages())
        with pytest.raises(errors.NotLoggedIn, match="wabulk login"):
            sender.send(PHONE, "after logout")
        assert _new(simulator, before) == []
    finally:
        sender.close()


def test_doctor_on_the_simulator(simulator: Any, browser_settings: Any) -> None:
    # a fresh profile: QR screen
    checks = run_doctor(browser_settings, "doc", live=True, timeouts=FAST)
    by = {c.name: c for c in checks}
    assert by["versions match"].level == "ok"
    assert by["page"].level == "warn" and "not logged in" in by["page"].detail
    assert by["selector qr_code"].ok and "candidate 1 of" in by["selector qr_code"].detail
    assert by["chat selectors"].level == "warn" and "compose_box" in by["chat selectors"].detail
    assert "use_here_button" in by["situational selectors"].detail
    # logged in, with a test number: every chat selector resolved, and which candidate matched is shown
    simulator.configure(logged_in_default=True, ui_era="2025")
    checks = run_doctor(browser_settings, "doc2", live=True, test_phone=PHONE, timeouts=FAST)
    by = {c.name: c for c in checks}
    assert by["page"].level == "ok" and by["test chat"].level == "ok", checks
    for name in (
        "main_screen",
        "compose_box",
        "attach_button",
        "chat_panel",
        "media_input",
        "document_input",
    ):
        check = by[f"selector {name}"]
        assert check.ok and ("candidate 1 of" in check.detail or "fallback" in check.detail), check
    # the 2025 page has no Lexical composer: doctor says a fallback matched
    assert by["selector compose_box"].level == "warn" and "fallback" in by["selector compose_box"].detail
    assert not [c for c in checks if c.level == "fail"], [c for c in checks if c.level == "fail"]


def test_expired_qr_is_refreshed(simulator: Any, browser_settings: Any) -> None:
    # two payloads, then the QR expires: a third and fourth payload only come after a click on "reload".
    # A payload shows 1 s: at 300 ms a loaded machine's poll could miss one, and the test never saw four.
    simulator.configure(qr_rotate_ms=1000, qr_max_rotations=1)
    seen: list[str] = []

    def on_qr(payload: str) -> None:
        seen.append(payload)
        if len(seen) == 4:
            simulator.scan()

    browser = sess.BrowserSession(browser_settings, "expiry", timeouts=FAST)
    try:
        browser.start()
        assert browser.wait_for_login(on_qr, timeout=20)
    finally:
        browser.close()
    assert len(set(seen)) == 4
