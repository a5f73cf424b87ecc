"""Opening the chat with a number: the deep link, the in-page New chat drawer, and the header identity.

``deeplink``: ``{web_url}/send?phone=<digits>`` **without** ``text`` (the text is inserted by us, so any
Unicode survives); it reloads the whole app for every message. ``inpage``: New chat → "Search name or
number" → the number → Enter runs the same lookup without a boot; it only counts as open when the chat
header shows the target's digits, so it can never type into the previously open chat. ``auto`` uses in-page
while the page is loaded and logged in, and falls back to the deep link (once per message, logged) when it
fails for any reason that is not permanent.

Both ways wait on the page through one :class:`PageWait` step (popups, logout, ban, restricted account,
takeover, offline), so what each state means is decided in one place.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from wabulk import errors
from wabulk.web import browser as sess
from wabulk.web import dom
from wabulk.web import errors as web_errors
from wabulk.web import selectors as S
from wabulk.web.states import (
    BLOCKED,
    CHAT,
    LOGGED_IN_STATES,
    LOGGED_OUT,
    OFFLINE,
    QR,
    RESTRICTED,
    TAKEOVER_COMPUTER,
    TAKEOVER_WINDOW,
)

from . import compose, scripts

log = logging.getLogger("wabulk.web.sender")

OPEN_DEEPLINK, OPEN_INPAGE, OPEN_AUTO = "deeplink", "inpage", "auto"
# After this many in-page failures in a row, ``auto`` stops trying in-page for this sender (a page where the
# New chat flow is broken would otherwise cost a failed attempt per message).
INPAGE_GIVE_UP = 3
# A freshly rendered chat header whose title does not carry the target's digits after this long is not ours
# (e.g. a contact saved under a name): in-page cannot prove the identity, so it gives up on this message.
IDENTITY_GRACE = 1.0
# How often the in-page open polls the page (it waits on a ~1 s lookup; 0.1 s would add 5-10 % to it).
INPAGE_POLL = 0.05
DEEPLINK_POLL = 0.1
# The page state of an account restricted on linked devices (the composer is replaced by a block bar).
TAKEOVERS = (TAKEOVER_WINDOW, TAKEOVER_COMPUTER)

# Labels of a popup's own buttons: not part of what WhatsApp says.
_BUTTON_LABELS = frozenset({"ok", "cancel", "close", "use here", "log out"})


def title_digits(title: str | None) -> str:
    r"""The digits of a chat header's title ("\u202a+1 415-555-0123\u202c" → "14155550123")."""
    return re.sub(r"\D", "", title or "")


def digits_of(phone: str) -> str:
    """The digits of an E.164 number (what the deep link wants)."""
    d = re.sub(r"\D", "", phone)
    if not d:
        raise errors.BadInput(f"not a phone number: {phone!r}")
    return d


def popup_reason(text: str) -> str:
    """A popup's message on one line: its text without button labels or repeated lines."""
    seen: list[str] = []
    for line in str(text).splitlines():
        line = " ".join(line.split())
        if line and line.lower() not in _BUTTON_LABELS and line not in seen:
            seen.append(line)
    return " ".join(seen)


def classify_dialog(text: str) -> errors.SendError | None:
    """The permanent error a popup's text means, if any (invalid number, rejected file)."""
    if dom.match_text(text, "invalid_number"):
        return errors.NotOnWhatsApp(f"WhatsApp says: {popup_reason(text)}")
    if dom.match_text(text, "file_rejected"):
        return errors.AttachmentRejected(f"WhatsApp refused the attachment: {text.strip()}")
    return None


def has(p: dict[str, Any], selector: S.Selector) -> bool:
    """Whether the probe ``p`` found ``selector``."""
    return int(p.get("matched", {}).get(selector.name, -1)) >= 0


def click_ok(driver: Any) -> None:
    """Close a popup with its OK button (it may close by itself meanwhile)."""
    hit = dom.resolve(driver, S.DIALOG_OK)
    if hit is not None:
        try:
            hit[1].click()
        except Exception as exc:  # noqa: BLE001 - the popup may close by itself
            if dom.is_dead_browser(exc):
                raise


def restricted_error() -> errors.SessionError:
    """The error for an account WhatsApp restricted on linked devices (nothing can be sent until it lifts)."""
    return errors.AccountRestricted(
        "WhatsApp restricts this account on linked devices; nothing can be sent now"
    )


class PageWait:
    """One poll of the page while a chat opens, shared by the deep link and the in-page way.

    :meth:`step` closes a "What's new" window, raises what no waiting can fix (the number is not on
    WhatsApp, logged out, banned, restricted), hands a takeover to ``on_takeover`` (which may recover or
    raise), and raises Offline once the "not connected" bar has stayed for a moment without a usable chat.
    It returns the state, the probe and the visible dialogs' texts.
    """

    def __init__(self, browser: sess.BrowserSession, session_name: str, on_takeover: Callable[[], None]):
        self.browser = browser
        self.session_name = session_name
        self.on_takeover = on_takeover
        self._offline_since: float | None = None

    def step(self) -> tuple[str, dict[str, Any], str]:
        st, p = self.browser.snapshot()
        if self.browser.dismiss_whats_new(p):  # the What's new window swallows clicks and keys
            st, p = self.browser.snapshot()
        dialogs = " | ".join(str(d) for d in p.get("dialogs") or ())
        if dom.match_text(dialogs, "invalid_number"):
            text = next(str(d) for d in p["dialogs"] if dom.match_text(str(d), "invalid_number"))
            click_ok(self.browser.driver)
            raise errors.NotOnWhatsApp(f"WhatsApp says: {popup_reason(text)}")
        if st in (QR, LOGGED_OUT):
            raise errors.NotLoggedIn(
                f"session {self.session_name!r} is logged out of WhatsApp Web: "
                f"run `wabulk login --session {self.session_name}`"
            )
        if st == BLOCKED:
            raise errors.Blocked("WhatsApp shows a block screen; this account cannot send now")
        if st == RESTRICTED:
            raise restricted_error()
        if st in TAKEOVERS:
            self.on_takeover()
            return self.step()
        if st == OFFLINE and not has(p, S.COMPOSE_BOX):
            # No network: the number lookup cannot finish. Give a flapping connection a moment first.
            now = time.monotonic()
            self._offline_since = self._offline_since if self._offline_since is not None else now
            if now - self._offline_since > dom.MINI:
                raise errors.Offline("WhatsApp Web says the computer is not connected; nothing was sent")
        else:
            self._offline_since = None
        return st, p, dialogs


class ChatOpener:
    """Opens chats for one sender, by its method, and remembers how the last one was opened."""

    def __init__(self, browser: sess.BrowserSession, web_url: str, session_name: str, method: str) -> None:
        self.browser = browser
        self.web_url = web_url
        self.session_name = session_name
        self.method = method
        self.last_method: str | None = None  # the method that opened the last chat (doctor, bench)
        self.inpage_failures = 0  # in a row, for ``auto``

    @property
    def driver(self) -> Any:
        return self.browser.driver

    @property
    def timeouts(self) -> dom.Timeouts:
        return self.browser.timeouts

    def open(self, phone: str) -> None:
        """Open the chat with ``phone`` and wait until its compose box is usable, by this opener's method.

        ``auto``: in-page when the page is loaded and logged in (main or chat, no popup), else the deep link;
        an in-page failure that is not permanent (a missing button, a lookup or identity that does not
        settle, the page moving under us) is logged and the deep link is tried once. Raises NotOnWhatsApp,
        the session errors, Offline, BrowserCrashed and transient errors.
        """
        if self.method == OPEN_DEEPLINK:
            self.open_deeplink(phone)
            return
        if self.method == OPEN_INPAGE:
            self.open_inpage(phone)
            return
        if self.inpage_failures >= INPAGE_GIVE_UP or not self.inpage_usable():
            self.open_deeplink(phone)
            return
        try:
            self.open_inpage(phone)
        except (errors.PermanentSendError, errors.SessionError, errors.Offline, web_errors.BrowserCrashed):
            raise  # the deep link would meet the same answer (or the same dead browser)
        except errors.TransientSendError as exc:
            reason: BaseException = exc
        except Exception as exc:
            if dom.is_dead_browser(exc):
                raise web_errors.BrowserCrashed(f"the browser died while opening a chat: {exc}") from exc
            if not any(c.__name__ == "WebDriverException" for c in type(exc).__mro__):
                raise
            reason = exc  # stale element, click intercepted…: the page moved under us
        else:
            self.inpage_failures = 0
            return
        self.inpage_failures += 1
        log.warning(
            "in-page chat opening failed (%s: %s); using the deep link for this message",
            type(reason).__name__,
            dom.mask_numbers(str(reason).strip().splitlines()[0] if str(reason).strip() else "")[:300],
        )
        if self.inpage_failures == INPAGE_GIVE_UP:
            log.warning(
                "in-page chat opening failed %d times in a row; using only the deep link from now on",
                INPAGE_GIVE_UP,
            )
        self.open_deeplink(phone)

    def inpage_usable(self) -> bool:
        """Whether the loaded page can open a chat in-page now: logged in, main or chat, no popup."""
        if not self.browser.started:
            return False
        try:
            st, p = self.browser.snapshot()
        except web_errors.BrowserCrashed:
            return False
        url = str(p.get("url") or "")
        return st in LOGGED_IN_STATES and not p.get("dialogs") and url.startswith(self.web_url.rstrip("/"))

    def identity(self, token: str, *, mark: bool = False) -> dict[str, Any]:
        """The open chat's header title and whether the chat panel was rendered after ``mark``."""
        args = {"title": scripts.cands(S.CHAT_TITLE), "chat": scripts.cands(S.CHAT)}
        res = scripts.run(self.driver, "chat_identity", args, token, mark)
        return dict(res) if isinstance(res, dict) else {"main": False, "fresh": False, "title": None}

    def shows(self, phone: str) -> bool:
        """Whether the open chat's header shows exactly ``phone``'s digits."""
        return title_digits(self.identity("check").get("title")) == digits_of(phone)

    def _wait_visible(self, selector: S.Selector, timeout: float) -> Any:
        """The first visible element of ``selector`` within ``timeout``, else SelectorNotFound (no debug
        capture: auto falls back to the deep link, and a capture per message would only fill the disk)."""
        deadline = time.monotonic() + timeout
        while True:
            el = compose.first_visible(self.driver, selector)
            if el is not None:
                return el
            if time.monotonic() >= deadline:
                raise web_errors.SelectorNotFound(selector.name, selector.describe(), timeout)
            time.sleep(INPAGE_POLL)

    def _new_chat_input(self) -> Any:
        """The New chat drawer's search box, opening the drawer when it is not open already."""
        el = compose.first_visible(self.driver, S.NEW_CHAT_SEARCH)
        if el is not None:
            return el
        self._wait_visible(S.NEW_CHAT_BUTTON, dom.MINI).click()
        return self._wait_visible(S.NEW_CHAT_SEARCH, dom.MINI)

    def _pick_result(self, want: str) -> bool:
        args = {
            "rows": scripts.cands(S.NEW_CHAT_RESULT),
            "titled": scripts.cands(S.NEW_CHAT_RESULT_TITLE),
            "exclude": scripts.cands(S.CHAT) + scripts.cands(S.CHAT_LIST),
        }
        return bool(scripts.run(self.driver, "pick_result", args, want))

    def open_inpage(self, phone: str) -> None:
        """Open the chat through New chat → "Search name or number" → Enter, without reloading the page.

        Done only when the chat header shows exactly the target's digits (with no lookup popup left and a
        usable compose box), so a previously open chat is never taken for the new one; a new chat whose
        title does not show the number (a saved contact's name) raises TransientSendError.
        """
        from selenium.webdriver.common.keys import Keys

        want = digits_of(phone)
        st, p = self.browser.snapshot()
        if st not in LOGGED_IN_STATES:
            self.browser.ensure_ready()
            st, p = self.browser.snapshot()
            if st not in LOGGED_IN_STATES:
                raise errors.TransientSendError(
                    f"the page is not ready to open a chat in-page (state {st})", error_class="inpage_unready"
                )
        if p.get("dialogs"):
            click_ok(self.driver)  # a leftover popup (e.g. an earlier invalid number) would block the drawer
            st, p = self.browser.snapshot()
            if p.get("dialogs"):
                raise errors.TransientSendError(
                    "a popup is open; cannot open a chat in-page", error_class="inpage_unready"
                )
        token = f"{time.time_ns()}"
        ident = self.identity(token, mark=True)
        if st == CHAT and title_digits(ident.get("title")) == want and has(p, S.COMPOSE_BOX):
            self.last_method = OPEN_INPAGE
            return  # that chat is already the open one
        box = self._new_chat_input()
        typed = f"+{want}"
        if str(box.tag_name).lower() == "input":
            if compose.read_box(self.driver, box):  # a freshly opened drawer is empty
                box.clear()
            box.send_keys(typed)
        else:
            compose.clear(self.driver, box)
            scripts.run(self.driver, "insert_text", box, typed)
        seen = compose.read_box(self.driver, box)
        if re.sub(r"\D", "", seen) != want:
            raise errors.TransientSendError(
                f"the New chat search box did not take the number (holds {len(seen)} characters)",
                error_class="inpage_input",
            )
        box.send_keys(Keys.ENTER)

        def takeover() -> None:
            self.browser.use_here()
            raise errors.TransientSendError(
                "WhatsApp was opened elsewhere while the chat was opening", error_class="takeover_during_open"
            )

        wait = PageWait(self.browser, self.session_name, takeover)
        start = time.monotonic()
        deadline = start + self.timeouts.chat_open
        picked = False
        fresh_since: float | None = None
        ever_lookup = False
        while True:
            st, p, dialogs = wait.step()
            lookup = bool(dom.match_text(dialogs, "starting_chat"))
            ever_lookup = ever_lookup or lookup
            now = time.monotonic()
            if has(p, S.COMPOSE_BOX) and not lookup:
                ident = self.identity(token)
                if title_digits(ident.get("title")) == want:
                    self.last_method = OPEN_INPAGE
                    return
                if ident.get("fresh"):
                    # A chat rendered after we started, and its header is not the number: not provably ours.
                    fresh_since = fresh_since if fresh_since is not None else now
                    if now - fresh_since > IDENTITY_GRACE:
                        raise errors.TransientSendError(
                            "the chat that opened does not show the number in its header; not typing into it",
                            error_class="chat_identity",
                        )
            if not picked and not lookup and not ever_lookup and now - start > dom.MINI:
                # Enter started nothing: pick the drawer's row for the number instead (only an exact match).
                picked = True
                self._pick_result(want)
            if now >= deadline:
                path = self.browser.capture("inpage-chat-not-open")
                raise errors.TransientSendError(
                    (
                        "the number lookup ('Starting chat') did not finish in time"
                        if lookup
                        else "the chat for the number did not open in-page"
                    )
                    + f"; saved {path}",
                    error_class="lookup_timeout" if lookup else "chat_not_open",
                )
            time.sleep(INPAGE_POLL)

    def open_deeplink(self, phone: str) -> None:
        """Deep-link to the chat and wait until its compose box is usable."""
        self.last_method = OPEN_DEEPLINK
        url = self.browser.url_for(f"send?phone={digits_of(phone)}")
        self.browser.open(url)
        t = self.timeouts
        takeovers = [0]

        def takeover() -> None:
            takeovers[0] += 1
            if takeovers[0] > 2:
                raise web_errors.TakeoverFailed(
                    "WhatsApp keeps being taken over by another window or computer"
                )
            self.browser.use_here()
            self.browser.open(url)  # the takeover reboots into the main screen, without our chat

        wait = PageWait(self.browser, self.session_name, takeover)
        deadline = time.monotonic() + t.boot + t.chat_open
        while True:
            st, p, dialogs = wait.step()
            lookup = dom.match_text(dialogs, "starting_chat")
            if has(p, S.COMPOSE_BOX) and not lookup:
                return
            if time.monotonic() >= deadline:
                path = self.browser.capture("chat-not-open")
                if lookup:
                    raise errors.TransientSendError(
                        f"the number lookup ('Starting chat') did not finish in time; saved {path}",
                        error_class="lookup_timeout",
                    )
                raise web_errors.SelectorNotFound(
                    S.COMPOSE_BOX.name, S.COMPOSE_BOX.describe(), t.boot + t.chat_open, debug_path=path
                )
            time.sleep(DEEPLINK_POLL)
