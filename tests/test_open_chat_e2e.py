"""End-to-end: opening chats in-page (New chat → "Search name or number") and the ``auto`` fallback to the
deep link, with real Chromium against the simulator. The oracle is what the simulator received."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from browser_marks import needs_chromium
from conftest import make_browser_settings
from e2e_helpers import snapshots_into
from wabulk import errors, models
from wabulk.web import dom
from wabulk.web import errors as web_errors
from wabulk.web import selectors as S
from wabulk.web.sender import WhatsAppSender
from wabulk.web.states import CHAT

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
]

FAST = dom.Timeouts(boot=15, stuck_loading=15, chat_open=10, element=5, confirm=8, takeover=10, settle=1.0)


@pytest.fixture(scope="module")
def wa(simulator_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WhatsAppSender]:
    """One logged-in browser for the module, opening chats in-page unless a test says otherwise."""
    home = tmp_path_factory.mktemp("open-chat-home")
    sender = WhatsAppSender(
        make_browser_settings(simulator_server.url, home), "openchat", timeouts=FAST, open_chat="inpage"
    )
    sender.start()
    assert sender.wait_for_login(lambda _ref: simulator_server.scan(), timeout=20)
    sender.ensure_ready()
    yield sender
    sender.close()


@pytest.fixture
def inpage(wa: WhatsAppSender, simulator: Any) -> Iterator[WhatsAppSender]:
    """The shared browser in in-page mode, back on the main page after each test."""
    wa.open_chat_method = "inpage"
    wa.chats.inpage_failures = 0
    yield wa
    wa.open_chat_method = "inpage"


def _reload(wa: WhatsAppSender, url: str) -> None:
    """Load the app again (the simulator reads its page era at load)."""
    wa.browser.open(url)
    wa.ensure_ready()


def _received(sim: Any, before: int) -> list[tuple[str, str]]:
    return [(m["phone"], m["text"]) for m in sim.messages()[before:]]


@pytest.mark.parametrize("era", ["2023", "2025", "2026", "2026-09"])
def test_inpage_sends_to_several_numbers_each_once_never_into_the_previous_chat(
    inpage: WhatsAppSender, simulator: Any, era: str
) -> None:
    # A slow lookup keeps the previous chat on screen for a while after Enter: typing early would hit it.
    simulator.configure(ui_era=era, lookup_ms=900)
    _reload(inpage, simulator.url)
    numbers = [f"+1415{era.replace('-', '')}{i:03d}" for i in range(3)]
    sends = [(numbers[0], f"first to A ({era}) 👋"), (numbers[1], f"then B ({era})\nline two")]
    if era == "2026-09":  # the full round on the newest page only (each send costs the lookup)
        sends += [(numbers[2], f"then C ({era})"), (numbers[0], f"A again ({era})")]
    before = len(simulator.messages())
    for phone, body in sends:
        inpage.send(phone, body)
        assert inpage.last_open_method == "inpage"
    assert _received(simulator, before) == [(p.lstrip("+"), b) for p, b in sends]
    assert inpage.page_state() == CHAT


def test_inpage_invalid_number_is_not_on_whatsapp_and_the_next_send_works(
    inpage: WhatsAppSender, simulator: Any
) -> None:
    simulator.configure(ui_era="2026", invalid_numbers=["15550009998"])
    _reload(inpage, simulator.url)
    before = len(simulator.messages())
    inpage.send("+14155550777", "open a chat first")
    called: list[bool] = []
    with pytest.raises(errors.NotOnWhatsApp) as info:
        inpage.send("+15550009998", "must not arrive anywhere", before_send=lambda _snap: called.append(True))
    assert not info.value.transient and "isn't on WhatsApp" in str(info.value)
    assert called == []
    assert inpage.last_open_method == "inpage"
    inpage.send("+14155550778", "after the invalid one")
    assert _received(simulator, before) == [
        ("14155550777", "open a chat first"),
        ("14155550778", "after the invalid one"),
    ]


def test_verify_sent_opens_the_chat_in_page(inpage: WhatsAppSender, simulator: Any) -> None:
    since = time.time()
    snaps: list[models.ChatSnapshot] = []
    inpage.send("+14155550779", "verify me in-page", before_send=snapshots_into(snaps))
    inpage.send("+14155550780", "another chat in between", before_send=snapshots_into(snaps))
    assert inpage.verify_sent(
        "+14155550779", "verify me in-page", since, evidence=snaps[0].to_evidence()
    ).sent
    assert inpage.last_open_method == "inpage"
    between = inpage.verify_sent(
        "+14155550780", "another chat in between", since, evidence=snaps[1].to_evidence()
    )
    assert between.sent and between.message_ref, between
    # that chat's only new bubble has another text: it proves nothing either way (issue 20, 7)
    other = inpage.verify_sent("+14155550780", "verify me in-page", since, evidence=snaps[1].to_evidence())
    assert other.outcome == models.VERIFY_UNKNOWN and "does not match" in other.reason, other
    # with that bubble in the snapshot, nothing new after it: the message is absent from that chat
    after = models.ChatSnapshot(ids=(str(between.message_ref),), count=1)
    assert inpage.verify_sent("+14155550780", "verify me in-page", since, evidence=after.to_evidence()).absent
    assert inpage.read_receipt("+14155550779", "verify me in-page", since) in ("sent", "delivered", "read")


def test_auto_falls_back_to_the_deep_link_when_new_chat_is_missing(
    inpage: WhatsAppSender, simulator: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(S, "NEW_CHAT_BUTTON", S.Selector("new_chat_button", ("#no-such-new-chat-button",)))
    _reload(inpage, simulator.url)
    before = len(simulator.messages())
    # in-page alone: a transient error, and nothing typed or sent anywhere
    with pytest.raises(web_errors.SelectorNotFound):
        inpage.send("+14155550781", "inpage only")
    inpage.open_chat_method = "auto"
    with caplog.at_level(logging.WARNING, logger="wabulk.web.sender"):
        inpage.send("+14155550781", "auto fell back")
    assert inpage.last_open_method == "deeplink"
    assert "in-page chat opening failed" in caplog.text and "14155550781" not in caplog.text
    assert _received(simulator, before) == [("14155550781", "auto fell back")]


def test_auto_uses_in_page_on_a_loaded_page_and_the_deep_link_on_a_page_not_loaded(
    inpage: WhatsAppSender, simulator: Any
) -> None:
    inpage.open_chat_method = "auto"
    _reload(inpage, simulator.url)
    before = len(simulator.messages())
    inpage.send("+14155550782", "auto on a loaded page")
    assert inpage.last_open_method == "inpage"
    inpage.browser.open("about:blank")
    inpage.open_chat("+14155550783")  # nothing loaded: the deep link boots the app with the chat
    assert inpage.last_open_method == "deeplink"
    assert inpage.page_state() == CHAT
    assert _received(simulator, before) == [("14155550782", "auto on a loaded page")]
