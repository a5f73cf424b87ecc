"""The provider interface: what every way of sending a WhatsApp message implements, and :func:`open_sender`.

A *provider* is one way of reaching WhatsApp for one account (a session): WhatsApp Web driven in a browser
(:mod:`wabulk.web`), Meta's Cloud API over HTTP (:mod:`wabulk.cloud`), or the in-memory fake of the tests
(:mod:`wabulk.fakes`). The worker (:mod:`wabulk.worker`) drives a :class:`Provider` and nothing else: it
never imports a provider's module, and never asks what kind of provider it holds. What differs between
providers is said once, as data (:class:`Capabilities`), and checked before a job starts, not per message.

The contract (every provider keeps it; ``tests/test_provider_contract.py`` runs the same behaviours
against each):

Lifecycle
    ``start()`` prepares the provider (idempotent). ``ensure_ready()`` is called before every claim, i.e.
    between messages, never during one: it makes the account ready to send (recovering what it can
    recover, e.g. restarting a dead browser) or raises an account-scoped error (``NotLoggedIn``,
    ``Blocked``, ``AccountRestricted``, ``Unreachable``, …). ``restart()`` throws away the provider's
    connection and makes a new one for the same account; ``close()`` releases everything (idempotent).
    A provider whose connection degrades with use says after how many chats it wants a fresh one
    (``capabilities.restart_every``): the worker calls ``restart()`` then, between two messages.

Login
    ``wait_for_login(on_qr, timeout=, should_stop=)`` waits until the account can send and returns True,
    or False when ``should_stop()`` became true or the timeout passed. A provider with
    ``capabilities.interactive_login`` (a person links the account by scanning a QR) calls ``on_qr(payload)``
    for each new code; one without it never calls ``on_qr`` (its credentials are settings) and answers at
    once. A provider reports; it never writes the database: the application records what happened
    (e.g. the worker records a new device link after a successful wait).

Sending
    ``send(phone, body, attachment=, before_send=)`` sends one message. Right before the irreversible act
    (pressing Enter, the HTTP request) it calls ``before_send(evidence)`` exactly once: the worker stamps
    the message *send started* with ``evidence`` in one durable transaction. When ``before_send`` raises,
    the provider lets the exception through untouched and sends nothing. Everything raised before
    ``before_send`` was called means nothing was sent. ``send`` returns a :class:`~wabulk.models.SendResult`
    (the tick, and ``message_ref``: the provider's id of the message: a bubble's ``data-id`` on the web, a
    ``wamid`` on the Cloud API) once the provider knows the message was accepted. When it cannot know
    (a confirmation that never came), it raises ``ConfirmTimeout``: the outcome is unknown and the message is
    verified before any resend.

Evidence
    ``evidence`` is opaque text owned by the provider that made it: the worker and the queue store it with
    the stamp and hand it back to ``verify_sent`` unread. The web provider records the ids of our bubbles
    already in the chat (JSON of :class:`~wabulk.models.ChatSnapshot`); an HTTP API records a correlation
    token it sent with the request. A provider must accept ``None`` (a stamp without evidence) and
    evidence it cannot parse (treat it as "cannot tell", never as "absent").

Verification
    ``verify_sent(phone, body, since, evidence=)`` answers for a message whose send started at ``since``
    and whose outcome is unknown: a :class:`~wabulk.models.Verification` "sent" (found; ``message_ref`` set
    when known), "absent" only on positive evidence that it was not sent (then it may be sent once more),
    else "unknown" (never resent automatically). With ``capabilities.verification == "looked"`` the
    provider looks (opens the chat); with ``"pushed"`` the service reports outcomes by itself later (a
    webhook): the provider answers "unknown" while nothing has arrived, and the message waits for the
    report instead of being failed.

Receipts
    With ``capabilities.receipts == "polled"`` the worker (``run --track-receipts``) and ``wabulk track``
    ask ``read_receipt(phone, body, since)`` for the best tick of the message (or None when it is not
    found); it never sends. With ``"pushed"`` receipts arrive by themselves (a webhook) and
    ``read_receipt`` is never called.

Errors
    A provider raises the classified errors of :mod:`wabulk.errors`, never its library's own (a selenium or
    httpx exception is translated at the provider's edge). Each carries what the worker decides on:
    ``scope`` (``"recipient"``: about this one number, e.g. not on WhatsApp; ``"account"``: this account
    cannot send now, no recipient is to blame; ``"job"``: about what is sent, e.g. an attachment refused),
    ``transient`` (worth retrying) and ``restart_provider`` (the connection is broken: restart before the
    next message). The worker never checks a provider's own exception classes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .errors import ConfigError

if TYPE_CHECKING:
    from .models import SendResult, Verification
    from .session import Session
    from .settings import Settings

# Opaque text a provider records with the send stamp and reads back in ``verify_sent`` (see the docstring).
Evidence = str

RECEIPTS_POLLED = "polled"  # the worker opens the chat and reads the ticks (``read_receipt``)
RECEIPTS_PUSHED = "pushed"  # the service reports them (a webhook); ``read_receipt`` is never called
VERIFY_LOOKED = "looked"  # an unknown outcome is settled by looking (``verify_sent`` opens the chat)
VERIFY_PUSHED = "pushed"  # … by a report that arrives later (a webhook); until then it stays unknown


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do, as data: checked once before a job starts, never per message."""

    interactive_login: bool  # a person links the account (a QR); False: credentials in the settings
    receipts: str  # RECEIPTS_POLLED | RECEIPTS_PUSHED
    verification: str  # VERIFY_LOOKED | VERIFY_PUSHED
    attachments: bool  # can send a file with the message
    default_pace: str  # the pace profile ``run`` uses when none is given (pacing.PROFILES)
    # The service's own limit, in messages per second (None: pacing alone decides), and how many requests
    # may be in flight at once. A browser does one thing at a time; an HTTP API may allow more.
    rate_limit: float | None = None
    max_in_flight: int = 1
    # Can send Meta-approved message templates (a template job). False: the queue never hands this
    # provider a template job's message (``Queue.claim(templates=)``), so it stays pending for one that can.
    # No provider of this interface sets it: ``send(phone, body, …)`` carries no template, and a template
    # job's messages go out only through ``wabulk run``'s Cloud runner (``wabulk.cloud.runner``: its own
    # claim, the template payload with header and button parameters). One path builds template payloads;
    # ``status --check`` names a template job no such runner can reach.
    templates: bool = False
    # What a person does when the account is logged out (the worker says it).
    login_hint: str = "run `wabulk login` for this session"
    # What the worker shows with each new code of an interactive login (``wait_for_login``'s ``on_qr``).
    qr_prompt: str = "scan this code to link the account"
    # A provider whose connection degrades with use asks for a fresh one (``restart()``, between two
    # messages, never during one) after this many chats (sends, verifications, receipt looks); 0 = never.
    # ``restart_text`` is what the worker says then (``{chats}``: how many).
    restart_every: int = 0
    restart_text: str = "a fresh connection after {chats} chats"


def _no_stamp(evidence: Evidence) -> None:
    return None


@runtime_checkable
class Provider(Protocol):
    """One way of sending for one account. The whole contract is this module's docstring."""

    kind: str  # the name :func:`open_sender` knows it by ("web", "cloud", "fake")
    capabilities: Capabilities

    def start(self) -> None:
        """Prepare the provider (idempotent)."""

    def ensure_ready(self) -> None:
        """Between messages: make the account ready to send, or raise an account-scoped error."""

    def wait_for_login(
        self,
        on_qr: Callable[[str], None],
        *,
        timeout: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Wait until the account can send (True), calling ``on_qr(payload)`` for each new QR when the login
        is interactive. False when ``should_stop()`` became true or the timeout passed."""

    def send(
        self,
        phone: str,
        body: str,
        *,
        attachment: str | None = None,
        before_send: Callable[[Evidence], None] = _no_stamp,
    ) -> SendResult:
        """Send one message; ``before_send(evidence)`` right before the irreversible act (if it raises,
        nothing is sent)."""

    def verify_sent(
        self, phone: str, body: str, since: float, *, evidence: Evidence | None = None
    ) -> Verification:
        """Settle a send whose outcome is unknown: "sent", "absent" (positive evidence only) or "unknown"."""

    def read_receipt(self, phone: str, body: str, since: float) -> str | None:
        """The best tick of the message, or None when it is not found (``receipts == "polled"`` only)."""

    def restart(self) -> None:
        """A new connection for the same account."""

    def close(self) -> None:
        """Release everything (idempotent)."""


# kind -> "module:factory". A factory takes (settings, session) and returns a Provider. Imported only when
# that kind is opened: `wabulk status` never loads a browser or an HTTP client.
PROVIDERS: dict[str, str] = {
    "web": "wabulk.web.sender:open_provider",
    "cloud": "wabulk.cloud.provider:open_provider",
}


def open_sender(kind: str, settings: Settings, session: Session) -> Provider:
    """The provider ``kind`` for ``session`` (not started). Imports it by name, on first use.

    Raises ConfigError for an unknown kind, and a one-line ConfigError naming the package to install when
    the provider's optional dependency is missing (never an ImportError traceback)."""
    target = PROVIDERS.get(kind)
    if target is None:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigError(f"unknown provider {kind!r} for session {session.name!r} (known: {known})")
    module_name, _, factory_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = (e.name or "").split(".")[0]
        if missing == "wabulk":
            raise ConfigError(f"the {kind!r} provider is not part of this wabulk version") from None
        raise ConfigError(
            f"the {kind!r} provider needs the Python package {missing!r}, which is not installed "
            f"(pip install {missing})"
        ) from None
    factory: Callable[[Settings, Session], Provider] = getattr(module, factory_name)
    return factory(settings, session)


__all__ = [
    "RECEIPTS_POLLED",
    "RECEIPTS_PUSHED",
    "VERIFY_LOOKED",
    "VERIFY_PUSHED",
    "Capabilities",
    "Evidence",
    "Provider",
    "open_sender",
]
