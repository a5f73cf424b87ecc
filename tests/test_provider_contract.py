"""The provider contract (``wabulk/sender.py``'s docstring), run against every provider.

:class:`ProviderContract` holds the behaviours; each provider's class inherits them and supplies one
fixture, ``world``: the provider, started and logged in, and the service's own record of what arrived (the
oracle, never the provider's word), plus optional hooks (log out, lose an answer, refuse the account) where
its service can be scripted without harming other tests; a behaviour whose hook is None is skipped. Where
providers genuinely differ, a test branches on ``capabilities`` (e.g. ``verification == "pushed"``: the
service reports outcomes later by webhook), never on the kind. A new provider adds a class with its
``world`` fixture, nothing else.
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

from browser_marks import needs_chromium
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
    # What the service recorded for a message it accepted to a number it does not know (the failure it
    # reports by itself later), for providers whose service pushes outcomes; None elsewhere.
    reported_failure: Callable[[str], str | None] | None = None
    # Make the next send's answer get lost after the service accepted it (None: not scriptable here).
    lose_next_answer: Callable[[], None] | None = None
    # Make the account unable to send (the service refuses every send for the account), or None.
    refuse_account: Callable[[], None] | None = None
    # Log the account out, with nobody there to link it again (None: not scriptable without harm here).
    log_out: Callable[[], None] | None = None


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
        if world.provider.capabilities.verification == sender.VERIFY_PUSHED:
            # A service that reports outcomes by itself (the Cloud API) accepts the POST: it learns the
            # number is unknown only afterwards and says so by webhook (131026), which settles the message.
            result = world.provider.send(phone, "contract: to nobody", before_send=stamps.append)
            assert result.message_ref and len(stamps) == 1
            assert world.reported_failure is not None
            assert world.reported_failure(phone) == "failed:131026"
            world.provider.ensure_ready()
            return
        with pytest.raises(errors.WabulkError) as info:
            world.provider.send(phone, "contract: to nobody", before_send=stamps.append)
        assert info.value.scope == errors.SCOPE_RECIPIENT
        assert not getattr(info.value, "transient", True) and not info.value.restart_provider
        world.provider.ensure_ready()  # the account is fine

    def test_a_logged_out_account_is_reported_by_the_means_of_its_login(self, world: World) -> None:
        if world.log_out is None:
            pytest.skip("this world cannot log the account out")
        world.log_out()
        codes: list[str] = []
        if world.provider.capabilities.interactive_login:
            # A person links the account: the provider shows codes and waits; nobody scans here.
            assert not world.provider.wait_for_login(codes.append, timeout=1)
            assert codes
        else:
            # Credentials are settings (a token): no code to show, nothing to wait for; a person fixes the
            # settings, so the provider says at once that the account cannot send.
            with pytest.raises(errors.WabulkError) as info:
                world.provider.wait_for_login(codes.append, timeout=1)
            assert info.value.scope == errors.SCOPE_ACCOUNT and codes == []

    def test_a_lost_answer_is_unknown_until_settled_and_never_absent(self, world: World) -> None:
        if world.lose_next_answer is None:
            pytest.skip("this world cannot lose an answer after the service accepted the message")
        phone, body = fresh_phone(), "contract: the answer got lost"
        since = time.time()
        kept: list[str] = []
        world.lose_next_answer()
        with pytest.raises(errors.ConfirmTimeout):
            world.provider.send(phone, body, before_send=kept.append)
        assert len(kept) == 1 and world.arrived(phone, body) == 1
        found = world.provider.verify_sent(phone, body, since, evidence=kept[0])
        if world.provider.capabilities.verification == sender.VERIFY_PUSHED:
            # Nothing can be looked up: the status webhook carrying the evidence settles it later.
            assert found.outcome == models.VERIFY_UNKNOWN, found
        else:
            assert found.outcome == models.VERIFY_SENT, found
        assert world.arrived(phone, body) == 1  # verifying never sends

    def test_an_account_that_cannot_send_is_about_the_account(self, world: World) -> None:
        if world.refuse_account is None:
            pytest.skip("this world cannot make the service refuse the account")
        phone, body = fresh_phone(), "contract: refused for the account"
        world.refuse_account()
        with pytest.raises(errors.WabulkError) as info:
            world.provider.send(phone, body)
        assert info.value.scope == errors.SCOPE_ACCOUNT
        assert world.arrived(phone, body) == 0

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

        def log_out() -> None:
            fake.logged_out, fake.login_succeeds = True, False

        return World(fake, arrived, not_on_whatsapp, log_out=log_out)


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
@needs_chromium
class TestWebProvider(ProviderContract):
    @pytest.fixture
    def world(self, web_provider: WhatsAppSender, simulator: Any) -> World:
        def arrived(phone: str, body: str) -> int:
            digits = phone.lstrip("+")
            return sum(m["phone"] == digits and m["text"] == body for m in simulator.messages())

        def not_on_whatsapp(phone: str) -> None:
            simulator.configure(invalid_numbers=[phone.lstrip("+")])

        return World(web_provider, arrived, not_on_whatsapp)


@pytest.fixture(scope="module")
def graph_sim() -> Iterator[Any]:
    """The bundled Graph API simulator (real HTTP), every 24-hour window open so texts are delivered."""
    from cloud_helpers import graph_simulator

    with graph_simulator(None, all_windows_open=True) as sim:
        yield sim


class TestCloudProvider(ProviderContract):
    @pytest.fixture
    def world(self, graph_sim: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[World]:
        from cloud_helpers import PHONE_ID, TOKEN
        from wabulk.session import Session
        from wabulk.settings import ENV_CLOUD_TOKEN, ENV_GRAPH_URL, Settings

        monkeypatch.setenv(ENV_CLOUD_TOKEN, TOKEN)
        monkeypatch.setenv(ENV_GRAPH_URL, graph_sim.url)
        graph_sim.configure(not_on_whatsapp=[], account_error=None)
        graph_sim.clear_faults()
        provider = sender.open_sender(
            "cloud",
            Settings.from_env().with_(home=tmp_path, db=tmp_path / "wabulk.db"),  # unused by Cloud
            Session("biz", "cloud", {"phone_number_id": PHONE_ID}),
        )
        provider.start()

        def arrived(phone: str, body: str) -> int:
            recs = graph_sim.accepted(phone)
            return sum(r["payload"].get("text", {}).get("body") == body for r in recs)

        def not_on_whatsapp(phone: str) -> None:
            graph_sim.configure(not_on_whatsapp=[phone.lstrip("+")])

        def reported_failure(phone: str) -> str | None:
            recs = graph_sim.accepted(phone)
            return str(recs[-1]["outcome"]) if recs else None

        yield World(
            provider,
            arrived,
            not_on_whatsapp,
            reported_failure=reported_failure,
            lose_next_answer=lambda: graph_sim.add_fault("cut_after", count=1),
            refuse_account=lambda: graph_sim.configure(account_error=368),
            log_out=graph_sim.expire_token,
        )
        provider.close()
        graph_sim.configure(account_error=None)
        graph_sim.clear_faults()
        graph_sim.set_token(TOKEN)
