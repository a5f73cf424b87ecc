"""A scriptable in-memory :class:`~wabulk.sender.Provider` for unit tests and benchmarks (no browser).

It behaves like the web provider (a QR login, receipts read in the chat, verification by looking, our
bubbles' ids as the send evidence), without a page.

Its record of deliveries is the oracle: ``fake.deliveries`` lists every message that "arrived", so a test
can assert that each recipient got exactly one. Outcomes are scripted per phone number::

    fake = FakeTransport(clock=clock)
    fake.script("+14155550123", Fail(Offline("offline")))            # once, then OK
    fake.always("+14155550124", NotOnWhatsApp("not on WhatsApp"))     # every time
    fake.script("+14155550125", DeliverThenRaise(ConfirmTimeout("clock")))  # arrived, but unconfirmed
    fake.script("+14155550126", LOGOUT)                                # session logged out
    fake.script("+14155550127", CRASH)                                 # browser died mid-send
    fake.blind = True   # bubbles cannot be read: sends go out unconfirmed, verification is "unknown"
    fake.lying = True   # a broken reader: verification says "absent" even when the message is there
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import Blocked, ConfirmTimeout, NotLoggedIn, ProviderCrashed, ProviderDown, Unreachable
from .models import (
    TICK_SENT,
    VERIFY_ABSENT,
    VERIFY_SENT,
    VERIFY_UNKNOWN,
    ChatSnapshot,
    SendResult,
    Verification,
)
from .sender import RECEIPTS_POLLED, VERIFY_LOOKED, Capabilities, Evidence, _no_stamp
from .settings import DEFAULT_RESTART_BROWSER_EVERY

FAKE_CAPABILITIES = Capabilities(
    interactive_login=True,
    receipts=RECEIPTS_POLLED,
    verification=VERIFY_LOOKED,
    attachments=True,
    default_pace="balanced",
    login_hint="scan the QR code (WhatsApp > Linked devices)",
    qr_prompt="scan this QR code with WhatsApp > Linked devices",
    restart_every=DEFAULT_RESTART_BROWSER_EVERY,  # as the web's page, so runs over 100 chats restart too
)


@dataclass(frozen=True)
class Delivery:
    """One message that reached WhatsApp in the fake world."""

    phone: str
    body: str
    at: float
    attachment: str | None = None
    id: str = ""  # the message id the chat shows for it


@dataclass(frozen=True)
class Fail:
    """Raise ``error`` before the send action: ``before_send`` is not called, nothing arrives."""

    error: Exception


@dataclass(frozen=True)
class FailAtSend:
    """Call ``before_send`` (the stamp is written), then raise ``error`` without delivering: the
    ambiguous case where verification must find nothing and the message is sent again."""

    error: Exception


@dataclass(frozen=True)
class DeliverThenRaise:
    """Call ``before_send``, deliver, then raise ``error`` (e.g. ConfirmTimeout, ProviderCrashed)."""

    error: Exception


@dataclass(frozen=True)
class _Special:
    name: str


OK = _Special("ok")
LOGOUT = _Special("logout")  # the session is logged out: NotLoggedIn until wait_for_login succeeds
CRASH = _Special("crash")  # the browser dies mid-send after the stamp (not delivered); restart needed
BLOCK = _Special("block")  # WhatsApp shows a ban screen: Blocked from now on

Outcome = Fail | FailAtSend | DeliverThenRaise | _Special | Exception


@dataclass
class FakeTransport:
    """In-memory provider. ``clock`` stamps deliveries; ``send_seconds`` is added to the clock via
    ``advance`` (when given) for each send, so tests and benchmarks can model time without sleeping."""

    kind = "fake"
    capabilities = FAKE_CAPABILITIES

    clock: Callable[[], float] = time.time
    advance: Callable[[float], None] | None = None
    send_seconds: float = 0.0
    qr_payloads: tuple[str, ...] = ("2@fake-qr-payload,abc,def,ghi",)
    login_succeeds: bool = True
    deliveries: list[Delivery] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, phone) in order
    restarts: int = 0
    logged_out: bool = False
    blocked: bool = False
    crashed: bool = False
    unreachable: int = 0  # the next N ensure_ready calls find WhatsApp Web unreachable
    started: bool = False
    closed: bool = False
    on_send: Callable[[str], None] | None = None  # hook run at the start of every send (tests)
    on_wait_for_login: Callable[[], None] | None = None
    ticks: dict[str, str] = field(default_factory=dict)  # phone -> tick read_receipt reports
    # The page's bubbles cannot be read (True, or only the chats of these phones): a send goes out but
    # cannot be confirmed (ConfirmTimeout after delivering), the snapshot is unreadable and verification
    # answers "unknown". The real page does this when its DOM changes under our reader.
    blind: bool | set[str] = False
    lying: bool = False  # verification wrongly answers "absent" (a reader that misses our bubbles)
    skew: float = 0.0  # the page's clock minus the host's: bubble times are read on the page's clock
    # "device": after a login (wait_for_login) the chats show only what this new device sent, as WhatsApp
    # Web's history sync to a new device is partial and late (the simulator's default); "account": all.
    history_scope: str = "account"
    _linked_from: int = 0  # deliveries before this index were sent by an earlier device
    _scripts: dict[str, deque[Outcome]] = field(default_factory=lambda: defaultdict(deque))
    _always: dict[str, Outcome] = field(default_factory=dict)

    # --- scripting ------------------------------------------------------------------------------
    def script(self, phone: str, *outcomes: Outcome) -> FakeTransport:
        """Queue outcomes for the next sends to ``phone`` (consumed one per send; then OK)."""
        self._scripts[phone].extend(outcomes)
        return self

    def always(self, phone: str, outcome: Outcome) -> FakeTransport:
        """Every send to ``phone`` has this outcome (after any scripted ones)."""
        self._always[phone] = outcome
        return self

    # --- the oracle -----------------------------------------------------------------------------------
    def delivered_to(self, phone: str) -> int:
        """How many times a message reached ``phone``."""
        return sum(1 for d in self.deliveries if d.phone == phone)

    def duplicates(self) -> list[str]:
        """Phones that received the same body more than once."""
        seen: dict[tuple[str, str], int] = defaultdict(int)
        for d in self.deliveries:
            seen[(d.phone, d.body)] += 1
        return sorted({p for (p, _), n in seen.items() if n > 1})

    # --- Provider ------------------------------------------------------------------------------------
    def start(self) -> None:
        self.started = True

    def ensure_ready(self) -> None:
        self.calls.append(("ensure_ready", ""))
        self.started = True
        if self.crashed:  # a real transport restarts a dead browser here
            self.restart()
        if self.unreachable > 0:
            self.unreachable -= 1
            raise Unreachable("cannot reach the WhatsApp Web URL (fake)")
        if self.blocked:
            raise Blocked("WhatsApp shows a block screen (fake)")
        if self.logged_out:
            raise NotLoggedIn("logged out (fake)")

    def wait_for_login(
        self,
        on_qr: Callable[[str], None],
        *,
        timeout: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        self.calls.append(("wait_for_login", ""))
        if not self.logged_out:
            return True  # already linked: no QR to show (as the real page)
        for payload in self.qr_payloads:
            if should_stop is not None and should_stop():
                return False
            on_qr(payload)
        if self.on_wait_for_login is not None:
            self.on_wait_for_login()
        if should_stop is not None and should_stop():
            return False
        if self.login_succeeds:
            self.logged_out = False
            if self.history_scope == "device":
                self._linked_from = len(self.deliveries)
            return True
        return False

    def _next_outcome(self, phone: str) -> Outcome:
        q = self._scripts.get(phone)
        if q:
            return q.popleft()
        return self._always.get(phone, OK)

    def send(
        self,
        phone: str,
        body: str,
        *,
        attachment: str | None = None,
        before_send: Callable[[Evidence], None] = _no_stamp,
    ) -> SendResult:
        self.calls.append(("send", phone))
        if self.on_send is not None:
            self.on_send(phone)
        if self.crashed:
            raise ProviderDown("browser is dead (fake)")
        if self.blocked:
            raise Blocked("WhatsApp shows a block screen (fake)")
        if self.logged_out:
            raise NotLoggedIn("logged out (fake)")
        outcome = self._next_outcome(phone)
        if outcome == LOGOUT:
            self.logged_out = True
            raise NotLoggedIn("logged out (fake)")
        if outcome == BLOCK:
            self.blocked = True
            raise Blocked("WhatsApp shows a block screen (fake)")
        if isinstance(outcome, Exception):
            outcome = Fail(outcome)
        if isinstance(outcome, Fail):
            raise outcome.error
        before_send(
            self.snapshot(phone).to_evidence()
        )  # may raise (LeaseLost, stop requested): then nothing is sent
        if self.advance is not None and self.send_seconds:
            self.advance(self.send_seconds)
        if outcome == OK and self.is_blind(phone):
            outcome = DeliverThenRaise(ConfirmTimeout("cannot read the chat's bubbles (fake blind page)"))
        if outcome == CRASH:
            self.crashed = True
            raise ProviderCrashed("browser died while sending (fake)")
        if isinstance(outcome, FailAtSend):
            raise outcome.error
        msg_id = f"FAKE{len(self.deliveries) + 1:012d}"
        self.deliveries.append(Delivery(phone, body, self.clock() + self.skew, attachment, msg_id))
        if isinstance(outcome, DeliverThenRaise):
            if isinstance(outcome.error, ProviderCrashed):
                self.crashed = True
            raise outcome.error
        tick = self.ticks.get(phone, TICK_SENT)
        return SendResult(tick=tick, confirmed_at=self.clock(), message_ref=msg_id)

    def in_chats(self) -> list[Delivery]:
        """The deliveries the page's chats show now (see ``history_scope``); the oracle is ``deliveries``."""
        return self.deliveries[self._linked_from :]

    def is_blind(self, phone: str) -> bool:
        """Whether the chat with ``phone`` cannot be read now (see ``blind``)."""
        return self.blind is True or (isinstance(self.blind, set) and phone in self.blind)

    def snapshot(self, phone: str) -> ChatSnapshot:
        """The ids of what the chat with ``phone`` shows now (as the real sender reads before Enter)."""
        if self.is_blind(phone):
            return ChatSnapshot(ids=(), count=0, readable=False)
        ids = tuple(d.id for d in self.in_chats() if d.phone == phone)
        return ChatSnapshot(ids=ids, count=len(ids), readable=True)

    def verify_sent(
        self, phone: str, body: str, since: float, *, evidence: Evidence | None = None
    ) -> Verification:
        self.calls.append(("verify_sent", phone))
        known = ChatSnapshot.from_evidence(evidence)
        if self.crashed:
            raise ProviderDown("browser is dead (fake)")
        if self.logged_out:
            raise NotLoggedIn("logged out (fake)")
        if self.is_blind(phone):
            return Verification(VERIFY_UNKNOWN, "cannot read the chat's bubbles (fake blind page)")
        if self.lying:
            return Verification(VERIFY_ABSENT, "not in the fake chat (a lying reader)")
        for d in self.in_chats():
            if d.phone != phone or d.body != body:
                continue
            if known is not None and known.readable:
                new = d.id not in known.ids
            else:
                # No snapshot: only the bubble's time is left, and the page shows it to the minute.
                new = int(d.at // 60) >= int(since // 60)
            if new:
                return Verification(VERIFY_SENT, "found in the fake chat", d.id)
        same_text = any(d.phone == phone and d.body == body for d in self.in_chats())
        if same_text and known is not None and not known.readable:
            # An older bubble with this text and no ids to date it by: cannot tell.
            return Verification(VERIFY_UNKNOWN, "the chat could not be read before the send")
        # The chat is readable and holds no new bubble with this text: positive evidence.
        return Verification(VERIFY_ABSENT, "not in the fake chat")

    def read_receipt(self, phone: str, body: str, since: float) -> str | None:
        """The tick set with :meth:`set_tick` for this phone (``sent`` by default) when a matching
        delivery exists at or after ``since``; None otherwise. Never delivers anything."""
        self.calls.append(("read_receipt", phone))
        if self.crashed:
            raise ProviderDown("browser is dead (fake)")
        if self.logged_out:
            raise NotLoggedIn("logged out (fake)")
        if not any(d.phone == phone and d.body == body and d.at >= since for d in self.deliveries):
            return None
        return self.ticks.get(phone, TICK_SENT)

    def set_tick(self, phone: str, tick: str) -> FakeTransport:
        """What the chat with ``phone`` shows on our bubble from now on (for receipt tracking)."""
        self.ticks[phone] = tick
        return self

    def restart(self) -> None:
        self.calls.append(("restart", ""))
        self.restarts += 1
        self.crashed = False
        self.started = True

    def close(self) -> None:
        self.closed = True


__all__ = [
    "BLOCK",
    "CRASH",
    "LOGOUT",
    "OK",
    "FAKE_CAPABILITIES",
    "DeliverThenRaise",
    "Delivery",
    "Fail",
    "FailAtSend",
    "FakeTransport",
]
