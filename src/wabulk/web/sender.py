"""The WhatsApp Web provider: send one message through WhatsApp Web and know what happened
(:class:`wabulk.sender.Provider`; :func:`open_provider` is what ``sender.open_sender("web", …)`` calls).

The entry point of the page layer; the work is in :mod:`wabulk.web`: opening the chat (``web.chat``),
putting the text in and pressing send (``web.compose``), reading our bubbles, confirming and verifying
(``web.bubbles``) and files (``web.attach``). How one send works, and why:

1. Open the chat (deep link, or in-page through New chat: ``web.chat``). The "Starting chat" lookup popup
   is waited out; the invalid-number popup (old and new wording) becomes ``NotOnWhatsApp``.
2. Read our bubbles already in the chat (their message ids), insert the text and read it back.
3. ``before_send(evidence)`` (the worker stamps *send started* with those ids: the JSON of a
   ``models.ChatSnapshot``, the evidence only this provider reads), then Enter.
4. Confirm: the new outgoing bubble (an id not in the snapshot) with exactly the body must leave the clock
   (" Pending ") state. Still on the clock after the confirm timeout → ``ConfirmTimeout``: the outcome is
   unknown and the worker verifies later instead of resending blindly. A bubble WhatsApp marks as failed
   (``message-fail``) → ``send_failed``, an unconfirmed send (ConfirmTimeout): WhatsApp may retry it
   itself, so it is never pressed again while the failed bubble is in the chat (see ``web.bubbles.confirm``).

After a crash, :meth:`WhatsAppSender.verify_sent` looks for a new outgoing bubble whose id is not in the
stamp's snapshot: "sent", "absent" only on positive evidence that the chat can be read and lacks it, else
"unknown" (never resend on that); see ``web.bubbles.verify``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from wabulk import errors, models
from wabulk.sender import RECEIPTS_POLLED, VERIFY_LOOKED, Capabilities, Evidence, _no_stamp
from wabulk.session import Session
from wabulk.settings import DEFAULT_RESTART_BROWSER_EVERY, OPEN_CHAT_METHODS, Settings
from wabulk.web.states import OFFLINE, UNKNOWN

from . import attach, bubbles, chat, compose, dates, dom
from . import browser as sess
from . import errors as web_errors
from . import selectors as S
from .chat import OPEN_AUTO

__all__ = ["WEB_CAPABILITIES", "WhatsAppSender", "open_provider"]

log = logging.getLogger("wabulk.web.sender")

# In the profile directory: what was learnt about this account's page (its date order).
PAGE_FACTS_FILE = "wabulk-page.json"


class _BeforeSendFailed(Exception):
    """Carries what ``before_send`` raised past the sender's own error translation."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


class _Guarded:
    """``before_send`` wrapped so its exceptions are never mistaken for page errors."""

    def __init__(self, fn: Callable[[Evidence], None]) -> None:
        self.fn = fn

    def __call__(self, snapshot: models.ChatSnapshot) -> None:
        try:
            self.fn(snapshot.to_evidence())
        except Exception as exc:
            raise _BeforeSendFailed(exc) from exc


def _page_error(exc: Exception, doing: str) -> Exception:
    """A Selenium exception as our error: a dead browser, or the page moving under us (transient)."""
    if dom.is_dead_browser(exc):
        return web_errors.BrowserCrashed(f"the browser died while {doing}: {exc}")
    if any(c.__name__ == "WebDriverException" for c in type(exc).__mro__):
        # stale element, click intercepted, alert, script error…: the page moved under us
        return errors.TransientSendError(
            f"the page changed while {doing}: {type(exc).__name__}: {str(exc).strip()[:300]}"
        )
    return exc


# A person links the account by scanning a QR; ticks are read in the chat; an unknown outcome is settled
# by looking in the chat. One browser does one thing at a time.
# A page never reloaded keeps growing: a fresh browser every ``Settings.restart_browser_every`` chats
# (``run --restart-browser-every``; the instance's capabilities carry the setting).
WEB_CAPABILITIES = Capabilities(
    interactive_login=True,
    receipts=RECEIPTS_POLLED,
    verification=VERIFY_LOOKED,
    attachments=True,
    default_pace="balanced",
    login_hint="scan the QR code (WhatsApp > Linked devices)",
    qr_prompt="scan this QR code with WhatsApp > Linked devices",
    restart_every=DEFAULT_RESTART_BROWSER_EVERY,
    restart_text="a fresh page after {chats} chats; a long-lived one keeps growing",
)


def open_provider(settings: Settings, session: Session) -> WhatsAppSender:
    """The web provider for ``session`` (its browser profile follows from its name); not started."""
    return WhatsAppSender(settings, session=session.name)


class WhatsAppSender:
    """A WhatsApp Web browser that sends one message at a time (a :class:`wabulk.sender.Provider`)."""

    kind = "web"
    capabilities = WEB_CAPABILITIES

    def __init__(
        self,
        settings: Settings,
        session: str = "default",
        *,
        timeouts: dom.Timeouts | None = None,
        browser: sess.BrowserSession | None = None,
        open_chat: str | None = None,
    ) -> None:
        self.settings = settings
        self.session_name = session
        self.capabilities = replace(WEB_CAPABILITIES, restart_every=settings.restart_browser_every)
        # How chats are opened ("deeplink" | "inpage" | "auto"): the argument, else WABULK_OPEN_CHAT.
        method = (open_chat or settings.open_chat or OPEN_AUTO).lower()
        if method not in OPEN_CHAT_METHODS:
            raise errors.ConfigError(
                f"unknown chat opening method {method!r} (use {', '.join(OPEN_CHAT_METHODS)})"
            )
        self.timeouts = timeouts or (browser.timeouts if browser is not None else dom.Timeouts())
        # ``browser``: reuse an already started session (doctor), instead of locking the profile again.
        self.browser = browser or sess.BrowserSession(settings, session, timeouts=self.timeouts)
        self.chats = chat.ChatOpener(self.browser, settings.web_url, session, method)
        # The page's date order (day or month first), learnt from a bubble we sent (its date is today) and
        # kept in the profile: it is the account's locale, and a verifier after a crash is a new process.
        self._date_order: str | None = None
        self._order_file = settings.profile_dir(session) / PAGE_FACTS_FILE

    @property
    def date_order(self) -> str | None:
        """The page's date order ("dm" | "md"), as learnt on this profile; None while unknown."""
        if self._date_order is None:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                self._date_order = json.loads(self._order_file.read_text()).get("date_order")
        return self._date_order

    def _learn_order(self, order: str | None) -> None:
        if order is None or order == self.date_order:
            return
        self._date_order = order
        with contextlib.suppress(OSError):
            self._order_file.write_text(json.dumps({"date_order": order}))

    @property
    def open_chat_method(self) -> str:
        """How chats are opened: "deeplink" | "inpage" | "auto" (settable)."""
        return self.chats.method

    @open_chat_method.setter
    def open_chat_method(self, method: str) -> None:
        self.chats.method = method

    @property
    def last_open_method(self) -> str | None:
        """How the last chat was opened ("deeplink" | "inpage"), for doctor and the benchmarks."""
        return self.chats.last_method

    # --- lifecycle (Provider) ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the browser and open WhatsApp Web (idempotent)."""
        self.browser.start()

    def page_state(self) -> str:
        """The page's state now (``session.PAGE_STATES``); "unknown" when the browser is dead."""
        if not self.browser.started:
            self.browser.start()
        try:
            return self.browser.state()
        except web_errors.BrowserCrashed:
            return UNKNOWN

    def ensure_ready(self) -> None:
        """Make the page ready to send (see :meth:`session.BrowserSession.ensure_ready`)."""
        self.browser.ensure_ready()

    def wait_for_login(
        self,
        on_qr: Callable[[str], None],
        *,
        timeout: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Wait until logged in, calling ``on_qr(payload)`` for each new QR."""
        return self.browser.wait_for_login(on_qr, timeout=timeout, should_stop=should_stop)

    def restart(self) -> None:
        """New browser on the same profile (the profile lock is kept)."""
        self.browser.restart()

    def close(self) -> None:
        """Quit the browser and release the profile lock."""
        self.browser.close()

    # --- sending (Provider) ---------------------------------------------------------------------------------
    def send(
        self,
        phone: str,
        body: str,
        *,
        attachment: str | None = None,
        before_send: Callable[[Evidence], None] = _no_stamp,
    ) -> models.SendResult:
        """Send ``body`` (and ``attachment`` with ``body`` as caption) to ``phone`` and confirm it.

        ``before_send(evidence)`` runs right before the send action with our bubbles' ids already in the
        chat (a ``ChatSnapshot`` as JSON). Raises NotOnWhatsApp, AttachmentRejected, PermanentSendError
        ``wrong_kind`` (permanent);
        SelectorNotFound, ConfirmTimeout, Offline, BrowserCrashed, TransientSendError (transient);
        NotLoggedIn, Blocked, AccountRestricted, TakeoverFailed (session). Whatever ``before_send`` raises
        propagates, and then nothing was sent.
        """
        if attachment is None and not body.strip():
            raise errors.PermanentSendError("empty message", error_class="empty_message")
        guarded = _Guarded(before_send)
        try:
            self.browser.ensure_ready()
            self.open_chat(phone)
            if attachment is not None:
                return self._send_attachment(Path(attachment), body, guarded)
            return self._send_text(body, guarded)
        except _BeforeSendFailed as failed:
            raise failed.original from None  # the caller's own exception, untouched: nothing was sent
        except errors.WabulkError:
            raise
        except Exception as exc:
            mapped = _page_error(exc, "sending")
            if mapped is exc:
                raise
            raise mapped from exc

    def verify_sent(
        self, phone: str, body: str, since: float, *, evidence: Evidence | None = None
    ) -> models.Verification:
        """Whether the message whose send started at ``since`` (unix seconds) is in the chat with ``phone``.

        By message id when ``evidence`` (the stamp's snapshot, ``known``) and the page have them: "sent"
        when a new outgoing bubble (id not in ``known``, after its last bubble) shows ``body`` and left the
        clock;
        "absent" only on positive evidence, read twice across the settle window: the last bubble from
        before the send is shown again (or the start-of-chat notice of a chat that was empty) and no new
        bubble of ours follows; else "unknown" with the reason. Without ids: by the bubbles' time (minutes,
        in the page's date order) on the page's own clock recorded in the snapshot, which can only tell
        "sent" for a bubble clearly after the send and says "unknown" for an identical one around that
        time. A popup (even "not on WhatsApp"), a history that does not show, a bubble still on the clock
        or failed, a new bubble of ours with another text: "unknown".
        """
        known = models.ChatSnapshot.from_evidence(evidence)
        try:
            read = self._read_chat(phone, "verifying", shows=bubbles.anchored(known))
        except errors.NotOnWhatsApp as exc:
            # The stamp proves the chat opened and send was pressed in it: a popup now proves nothing.
            return models.Verification(
                models.VERIFY_UNKNOWN, f"WhatsApp showed a popup instead of the chat ({exc})"
            )
        if read is None:
            return models.Verification(
                models.VERIFY_UNKNOWN, "the chat did not open, so it could not be read"
            )
        if not read.settled:
            return models.Verification(
                models.VERIFY_UNKNOWN,
                "the chat's history did not show (neither the bubbles from before the send nor the "
                f"start-of-chat notice) within {self.timeouts.history:g}s",
            )

        def judge(r: bubbles.ChatRead) -> models.Verification:
            order = dates.date_order(r, self.date_order)
            return bubbles.verify(
                r, body, since, known, chat_open=True, order=order, host_now=bubbles.host_now()
            )

        # A bubble of ours still on the clock is read again until it leaves it (sent) or fails (unknown).
        return bubbles.recheck(self._driver, read, judge, self.timeouts.confirm)

    def read_receipt(self, phone: str, body: str, since: float) -> str | None:
        """The best tick of our bubble(s) with exactly ``body`` in the chat with ``phone`` not dated before
        ``since`` (the reader of :meth:`verify_sent`), or None when there is none. A bubble whose tick
        cannot be read counts as ``pending``. Only opens the chat: nothing is typed or sent."""
        try:
            read = self._read_chat(phone, "reading receipts")
        except errors.NotOnWhatsApp:
            return None
        if read is None:
            return None
        return bubbles.receipt(read, body, since, dates.date_order(read, self.date_order))

    def _read_chat(
        self, phone: str, doing: str, shows: Callable[[bubbles.ChatRead], bool] | None = None
    ) -> bubbles.ChatRead | None:
        """Open the chat with ``phone`` and read it once it settled (``shows``: what proves its history
        is there; see :func:`web.bubbles.settled`); None when the chat is not usable."""
        try:
            self.browser.ensure_ready()
            self.open_chat(phone)
            if compose.first_visible(self._driver, S.COMPOSE_BOX) is None:
                return None
            if shows is None:
                return bubbles.settled(self._driver, self.timeouts.settle)
            return bubbles.settled(self._driver, self.timeouts.history, evidence=shows)
        except errors.WabulkError:
            raise
        except Exception as exc:
            mapped = _page_error(exc, doing)
            if mapped is exc:
                raise
            raise mapped from exc

    # --- steps ---------------------------------------------------------------------------------------------
    @property
    def _driver(self) -> Any:
        return self.browser.driver

    def open_chat(self, phone: str) -> None:
        """Open the chat with ``phone`` by the sender's method (see :class:`web.chat.ChatOpener`)."""
        self.chats.open(phone)

    def _check_online(self) -> None:
        st, _ = self.browser.snapshot()
        if st == OFFLINE:
            raise errors.Offline("WhatsApp Web says the computer is not connected; nothing was sent")
        if st == chat.RESTRICTED:
            raise chat.restricted_error()

    def _before(self) -> bubbles.ChatRead:
        """Our bubbles right before the send, once the chat's history shows (its messages, or the
        start-of-chat notice of a new chat) in two reads across the settle window: a bubble rendered late
        would otherwise look new, and an empty read would make any later bubble look like ours. Nothing is
        pressed on a chat whose history does not show (TransientSendError, before the stamp)."""
        read = bubbles.settled(self._driver, self.timeouts.history)
        if not read.settled:
            raise errors.TransientSendError(
                "the chat's history did not show (no messages and no start-of-chat notice) within "
                f"{self.timeouts.history:g}s; nothing was sent",
                error_class="history_not_shown",
            )
        return read

    def _send_text(self, body: str, before_send: Callable[[models.ChatSnapshot], None]) -> models.SendResult:
        before = self._before()
        box = compose.fill(self.browser, S.COMPOSE_BOX, body)
        self._check_online()
        before_send(before.snapshot())
        compose.press_enter(box)
        result, order = bubbles.confirm(
            self.browser, before, body, press_again=lambda: compose.press_again(self.browser, box, body)
        )
        self._learn_order(order)
        return result

    def _send_attachment(
        self, path: Path, body: str, before_send: Callable[[models.ChatSnapshot], None]
    ) -> models.SendResult:
        path = path.expanduser().resolve()
        if not path.is_file():
            raise errors.AttachmentRejected(f"attachment not found: {path}")
        before = self._before()
        send_btn = attach.prepare(self.browser, path, body)
        self._check_online()
        before_send(before.snapshot())
        send_btn.click()
        kind = attach.kind_of(path)
        result, order = bubbles.confirm(self.browser, before, body, expected=kind)
        self._learn_order(order)
        return result
