"""The provider contract (``wabulk/sender.py``'s docstring), run against every provider.

:class:`ProviderContract` holds the behaviours; each provider's class inherits them and supplies one
fixture, ``world``: the provider, started and logged in, and the service's own record of what arrived (the
oracle, never the provider's word). A new provider adds a class with its ``world`` fixture, nothing else.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import make_browser_settings
from wabulk import errors, models, sender
from wabulk.fakes import FakeTransport
from wabulk.web import dom
from wabulk.web.sender import WhatsAppSender

_numbers = itertools.count(1)


def fresh_phone() -> str:
    """A number no other test has used (the web simulator is shared by the whole run)."""
    return f"+1415557{os.getpid() % 100:02d}{next(_numbers):02d}"


@dataclass
class World:
    provider: sender.Provider
    arrived: Callable[[str, str], int]  # (phone, body) -> copies the service delivered
    not_on_whatsapp: Callable[[str], None]  # make this number one WhatsApp does not know


class _Stop(Exception):
    """What a worker's ``before_send`` raises when it must not send (e.g. it lost its lease)."""


class ProviderContract:
    """Every provider keeps these. Subclasses provide the ``world`` fixture."""

    def test_capabilities_are_data(self, world: World) -> None:
        caps = world.provider.capabilities
        assert isinstance(caps, sender.Capabilities)
        assert caps.receipts in (sender.RECEIPTS_POLLED, sender.RECEIPTS_PUSHED)
        assert caps.verification in (sender.VERIFY_LOOKED, sender.VERIFY_PUSHED)
        assert caps.max_in_flight >= 1 and world.provider.kind in sender.PROVIDERS | {"fake": ""}

    def test_a_ready_account_needs_no_login(self, world: World) -> None:
        world.provider.start()  # idempotent
        world.provider.ensure_ready()
        codes: list[str] = []
        assert world.provider.wait_for_login(codes.append, timeout=5)
        assert codes == []

    def test_send_stamps_once_before_the_message_exists_and_returns_its_id(self, world: World) -> None:
        phone, body = fresh_phone(), "contract: one message"
        stamps: list[tuple[str, int]] = []
        result = world.provider.send(
            phone, body, before_send=lambda e: stamps.append((e, world.arrived(phone, body)))
        )
        assert len(stamps) == 1
        evidence, arrived_at_stamp = stamps[0]
        assert isinstance(evidence, str) and arrived_at_stamp == 0
        assert result.message_ref and result.tick in (
            models.TICK_SENT,
            models.TICK_DELIVERED,
            models.TICK_READ,
        )
        assert world.arrived(phone, body) == 1

    def test_a_before_send_that_raises_sends_nothing_and_comes_through_untouched(self, world: World) -> None:
        phone, body = fresh_phone(), "contract: must never arrive"

        def refuse(evidence: str) -> None:
            raise _Stop("lease lost")

        with pytest.raises(_Stop):
            world.provider.send(phone, body, before_send=refuse)
        time.sleep(0.5)  # a press that did happen would show within this
        assert world.arrived(phone, body) == 0

    def test_a_sent_message_is_verified_sent_with_its_stamp_s_evidence(self, world: World) -> None:
        phone, body = fresh_phone(), "contract: verify me"
        since = time.time()
        kept: list[str] = []
        result = world.provider.send(phone, body, before_send=kept.append)
        found = world.provider.verify_sent(phone, body, since, evidence=kept[0])
        assert found.outcome == models.VERIFY_SENT, found
        assert found.message_ref == result.message_ref
        assert world.arrived(phone, body) == 1  # verifying never sends

    def test_a_stamp_whose_send_never_happened_is_absent(self, world: World) -> None:
        """The crash between the stamp and the press: positive evidence that nothing went out."""
        phone, body = fresh_phone(), "contract: stamped, never pressed"
        since = time.time()
        kept: list[str] = []

        def stamp_then_die(evidence: str) -> None:
            kept.append(evidence)
            raise _Stop("killed after the stamp")

        world.provider.send(fresh_phone(), "contract: an earlier message in another chat")
        with pytest.raises(_Stop):
            world.provider.send(phone, body, before_send=stamp_then_die)
        found = world.provider.verify_sent(phone, body, since, evidence=kept[0])
        if world.provider.capabilities.verification == sender.VERIFY_PUSHED:
            assert found.outcome == models.VERIFY_UNKNOWN  # the report settles it, never a guess
        else:
            assert found.outcome == models.VERIFY_ABSENT, found
        assert world.arrived(phone, body) == 0

    def test_a_number_not_on_whatsapp_is_about_the_recipient_only(self, world: World) -> None:
        phone = fresh_phone()
        world.not_on_whatsapp(phone)
        stamps: list[str] = []
        with pytest.raises(errors.WabulkError) as info:
            world.provider.send(phone, "contract: to nobody", before_send=stamps.append)
        assert info.value.scope == errors.SCOPE_RECIPIENT
        assert not getattr(info.value, "transient", True) and not info.value.restart_provider
        world.provider.ensure_ready()  # the account is fine

    def test_receipts_are_read_when_polled(self, world: World) -> None:
        if world.provider.capabilities.receipts != sender.RECEIPTS_POLLED:
            pytest.skip("receipts are pushed by the service")
        phone, body = fresh_phone(), "contract: a receipt"
        since = time.time()
        world.provider.send(phone, body)
        tick = world.provider.read_receipt(phone, body, since)
        assert tick in (models.TICK_PENDING, models.TICK_SENT, models.TICK_DELIVERED, models.TICK_READ)
        assert world.provider.read_receipt(phone, "contract: never sent", since) is None
        assert world.arrived(phone, body) == 1


class TestFakeProvider(ProviderContract):
    @pytest.fixture
    def world(self) -> World:
        fake = FakeTransport()
        fake.start()

        def arrived(phone: str, body: str) -> int:
            return sum(d.phone == phone and d.body == body for d in fake.deliveries)

        def not_on_whatsapp(phone: str) -> None:
            fake.always(phone, errors.NotOnWhatsApp("not on WhatsApp (fake)"))

        return World(fake, arrived, not_on_whatsapp)


FAST = dom.Timeouts(boot=15, stuck_loading=15, chat_open=10, element=5, confirm=8, takeover=10, settle=1.0)


@pytest.fixture(scope="module")
def web_provider(simulator_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WhatsAppSender]:
    """One logged-in browser on the shared simulator for the web provider's contract run."""
    home = tmp_path_factory.mktemp("contract-home")
    wa = WhatsAppSender(make_browser_settings(simulator_server.url, home), "contract", timeouts=FAST)
    wa.start()
    assert wa.wait_for_login(lambda _payload: simulator_server.scan(), timeout=30)
    yield wa
    wa.close()


@pytest.mark.browser
@pytest.mark.skipif(
    not Path("/usr/bin/chromedriver").exists() and not os.environ.get("WABULK_CHROMEDRIVER"),
    reason="needs Chromium and chromedriver",
)
class TestWebProvider(ProviderContract):
    @pytest.fixture
    def world(self, web_provider: WhatsAppSender, simulator: Any) -> World:
        def arrived(phone: str, body: str) -> int:
            digits = phone.lstrip("+")
            return sum(m["phone"] == digits and m["text"] == body for m in simulator.messages())

        def not_on_whatsapp(phone: str) -> None:
            simulator.configure(invalid_numbers=[phone.lstrip("+")])

        return World(web_provider, arrived, not_on_whatsapp)
