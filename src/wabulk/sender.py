"""Send one WhatsApp message through WhatsApp Web and know what happened (``models.Transport``).

How one send works, and why:

1. Open the chat with the deep link ``{web_url}/send?phone=<digits>`` **without** ``text``: the text is
   inserted by us, so any Unicode survives (no URL-encoding or server-side mangling). The "Starting chat"
   lookup popup is waited out; the invalid-number popup (old and new wording) becomes ``NotOnWhatsApp``.
2. Insert the text with ``document.execCommand('insertText')`` per line and Shift+Enter between lines:
   ChromeDriver's ``send_keys`` cannot type characters outside the BMP (emoji, flags), and Enter would send
   each line as its own message. The box is read back and compared with the body before anything is sent.
3. ``before_send()`` (the worker stamps *send started*), then Enter.
4. Confirm: the outgoing bubbles are listed before and after; the new one with exactly the body must leave
   the clock (" Pending ") state. Still on the clock after the confirm timeout → ``ConfirmTimeout``: the
   outcome is unknown and the worker verifies later instead of resending blindly.

The deep link reloads the whole app for every message (a boot per send). The in-page method
(``WABULK_OPEN_CHAT=inpage``) avoids the reload: New chat → "Search name or number" → the number → Enter
runs the same lookup without a boot. It only counts as open when the header of ``#main`` shows the target's
digits, so it can never type into the previously open chat. ``auto`` (the default) uses it while the page
is loaded and logged in, and falls back to the deep link (once per message, logged) when it fails for any
reason that is not permanent; the main search box is not used, since it only finds known chats.
"""

from __future__ import annotations

import logging
import math
import mimetypes
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_fixed

from . import dom, errors, models
from . import selectors as S
from . import session as sess
from .settings import OPEN_CHAT_METHODS, Settings

log = logging.getLogger("wabulk.sender")

OPEN_DEEPLINK, OPEN_INPAGE, OPEN_AUTO = "deeplink", "inpage", "auto"
# After this many in-page failures in a row, ``auto`` stops trying in-page for this sender (a page where the
# New chat flow is broken would otherwise cost a failed attempt per message).
INPAGE_GIVE_UP = 3
# A freshly rendered chat header whose title does not carry the target's digits after this long is not ours
# (e.g. a contact saved under a name): in-page cannot prove the identity, so it gives up on this message.
IDENTITY_GRACE = 1.0
# How often the in-page open polls the page (it waits on a ~1 s lookup; 0.1 s would add 5-10 % to it).
INPAGE_POLL = 0.05
# How often a sent message's bubble is read until it leaves the clock: every poll interval is latency
# added to each message, and one read is a ~10 ms script.
CONFIRM_POLL = 0.05

# textOf(node): the text a node shows, with <br> as "\n", emoji <img alt> as their character, and block
# children (Lexical paragraphs) separated by "\n".
TEXT_OF_JS = r"""
function textOf(root) {
  let out = '';
  const BLOCK = /^(P|DIV|LI|H[1-6]|BLOCKQUOTE|PRE)$/;
  function walk(n) {
    let first = true;
    for (let c = n.firstChild; c; c = c.nextSibling) {
      if (c.nodeType === 3) { out += c.data; first = false; continue; }
      if (c.nodeType !== 1) continue;
      if (c.tagName === 'BR') { out += '\n'; first = false; continue; }
      if (c.tagName === 'IMG') {
        out += c.getAttribute('alt') || c.getAttribute('data-plain-text') || '';
        first = false;
        continue;
      }
      if (c.tagName === 'STYLE' || c.tagName === 'SCRIPT') continue;
      if (BLOCK.test(c.tagName) && !first && !out.endsWith('\n')) out += '\n';
      walk(c);
      first = false;
    }
  }
  walk(root);
  return out;
}
"""

READ_BOX_JS = TEXT_OF_JS + "return textOf(arguments[0]);"

INSERT_JS = r"""
const box = arguments[0], text = arguments[1];
box.focus();
const sel = window.getSelection();
const range = document.createRange();
range.selectNodeContents(box);
range.collapse(false);
sel.removeAllRanges();
sel.addRange(range);
if (text.length) document.execCommand('insertText', false, text);
return true;
"""

CLEAR_JS = r"""
const box = arguments[0];
box.focus();
document.execCommand('selectAll', false, null);
document.execCommand('delete', false, null);
return true;
"""

# Outgoing bubbles in #main, in document order: {id, text, tick, pre, ts}. Every candidate of the
# outgoing-bubble selector is unioned (eras mark direction differently). ``ts`` is the bubble's minute
# (epoch ms) parsed from data-pre-plain-text in the BROWSER's time zone; day/month order is ambiguous, so
# the reading closest to now that is not in the future wins.
BUBBLES_JS = (
    TEXT_OF_JS
    + dom.MATCHES_JS
    + r"""
const cands = arguments[0], byIcon = arguments[1], byLabel = arguments[2], bySvg = arguments[3];
const rows = [];
for (const [kind, expr] of cands) {
  for (const el of matches(kind, expr)) {
    const row = el.closest('[data-id]') || el;
    if (!rows.includes(row)) rows.push(row);
  }
}
rows.sort((a, b) => (a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING) ? -1 : 1);
function tickOf(row) {
  for (const el of row.querySelectorAll('[aria-label]')) {
    const t = byLabel[(el.getAttribute('aria-label') || '').trim().toLowerCase()];
    if (t) return t;
  }
  for (const el of row.querySelectorAll('[data-icon]')) {
    const t = byIcon[el.getAttribute('data-icon')];
    if (t) return t;
  }
  for (const el of row.querySelectorAll('svg title')) {
    const t = bySvg[(el.textContent || '').trim()];
    if (t) return t;
  }
  return null;
}
function parsePre(pre) {
  const re = new RegExp('\\[(\\d{1,2})[:.](\\d{2})(?:\\s*([AaPp])\\.?\\s*[Mm]\\.?)?,\\s*' +
                      '(\\d{1,4})[/.-](\\d{1,2})[/.-](\\d{2,4})\\]');
  const m = re.exec(pre || '');
  if (!m) return null;
  let h = +m[1]; const mi = +m[2];
  if (m[3]) { h = h % 12; if (m[3].toLowerCase() === 'p') h += 12; }
  let a = +m[4], b = +m[5], y = +m[6];
  if (a > 999) { const t = new Date(a, b - 1, y, h, mi); return t.getTime(); }  // Y/M/D
  if (y < 100) y += 2000;
  const now = Date.now() + 86400000;
  const opts = [];
  if (a <= 31 && b <= 12) opts.push(new Date(y, b - 1, a, h, mi).getTime());  // D/M
  if (a <= 12 && b <= 31) opts.push(new Date(y, a - 1, b, h, mi).getTime());  // M/D
  const past = opts.filter(t => t <= now);
  if (past.length) return Math.max(...past);
  return opts.length ? opts[0] : null;
}
const out = [];
for (const row of rows) {
  const preEl = row.querySelector('[data-pre-plain-text]');
  let textEl = row.querySelector('[data-pre-plain-text] span.selectable-text') ||
               row.querySelector('span.selectable-text') || preEl;
  const pre = preEl ? preEl.getAttribute('data-pre-plain-text') : null;
  // A long message is cut with a "Read more" button on the real page.
  const more = Array.from(row.querySelectorAll("[role='button'], button"))
    .some(b => /^read more$/i.test((b.textContent || '').trim()));
  out.push({id: row.getAttribute('data-id'), text: textEl ? textOf(textEl) : '', tick: tickOf(row),
            pre: pre, ts: parsePre(pre), more: more});
}
return out;
"""
)


# The open chat's identity: the title of #main's header (first visible candidate of CHAT_TITLE) and
# whether #main is a node rendered after ``mark`` was set (arguments: candidates, token, mark?).
CHAT_IDENTITY_JS = (
    dom.MATCHES_JS
    + r"""
const cands = arguments[0], token = arguments[1], mark = arguments[2];
const main = document.querySelector('#main');
function vis(el) { return !!(el && el.isConnected && el.getClientRects().length); }
let title = null;
for (const [kind, expr] of cands) {
  const el = matches(kind, expr).find(vis);
  if (el) { title = el.getAttribute('title') || el.textContent || ''; break; }
}
const fresh = !!main && main.__wabulkOpen !== token;
if (mark && main) main.__wabulkOpen = token;
return {main: !!main, fresh: fresh, title: title};
"""
)

# Click the New chat drawer's result row for a number: a row (candidates of NEW_CHAT_RESULT) outside #main
# and the chat list whose title or text has exactly the wanted digits. Returns whether one was clicked.
PICK_RESULT_JS = r"""
const cands = arguments[0], want = arguments[1];
const digits = s => (s || '').replace(/\D/g, '');
for (const [kind, expr] of cands) {
  let found = [];
  try { if (kind === 'css') found = Array.from(document.querySelectorAll(expr)); } catch (e) { continue; }
  for (const el of found) {
    if (el.closest('#main') || el.closest('#pane-side') || !el.getClientRects().length) continue;
    const titled = el.querySelector('[title]');
    if (digits(titled ? titled.getAttribute('title') : '') === want || digits(el.textContent) === want) {
      el.click();
      return true;
    }
  }
}
return false;
"""

# The first visible element of a selector's candidates, in one round trip (dom.resolve needs one per
# candidate plus one per visibility check; the in-page open does this several times per message).
FIRST_VISIBLE_JS = (
    dom.MATCHES_JS
    + r"""
const cands = arguments[0];
for (const [kind, expr] of cands) {
  const el = matches(kind, expr).find(e => e.isConnected && e.getClientRects().length);
  if (el) return el;
}
return null;
"""
)

READ_INPUT_JS = TEXT_OF_JS + "const e = arguments[0]; return e.tagName === 'INPUT' ? e.value : textOf(e);"


def title_digits(title: str | None) -> str:
    r"""The digits of a chat header's title ("\u202a+1 415-555-0123\u202c" → "14155550123")."""
    return re.sub(r"\D", "", title or "")


def digits_of(phone: str) -> str:
    """The digits of an E.164 number (what the deep link wants)."""
    d = re.sub(r"\D", "", phone)
    if not d:
        raise errors.BadInput(f"not a phone number: {phone!r}")
    return d


def same_text(a: str, b: str) -> bool:
    """Equality after :func:`dom.normalise_text` (NBSP, CRLF, trailing newlines)."""
    return dom.normalise_text(a) == dom.normalise_text(b)


_MARKUP = re.compile(r"[*_~`]")
_TICK_ORDER = {models.TICK_PENDING: 0, models.TICK_SENT: 1, models.TICK_DELIVERED: 2, models.TICK_READ: 3}


def bubble_matches(bubble: dict[str, Any], body: str) -> bool:
    """Whether a bubble shows ``body``.

    Exact (after :func:`same_text`), or — for what the real page renders differently from what was typed —
    equal once WhatsApp's formatting markers (``*bold*``, ``_italic_``, ``~strike~``, ```` ``` ````) are
    dropped from both, or a prefix of a long body when the bubble has a "Read more" button. The last two are
    from the real page's behaviour and are not exercised by the simulator.
    """
    shown = dom.normalise_text(str(bubble.get("text") or ""))
    want = dom.normalise_text(body)
    if shown == want:
        return True
    if not shown:
        return False
    if _MARKUP.sub("", shown) == _MARKUP.sub("", want):
        return True
    cut = shown.rstrip("…. ")
    return bool(bubble.get("more")) and len(cut) >= 50 and want.startswith(cut)


def minute_floor(ts: float) -> float:
    """``ts`` rounded down to its minute (bubbles only carry minutes)."""
    return math.floor(ts / 60.0) * 60.0


def is_media(path: Path) -> bool:
    """Whether WhatsApp takes the file through the photos & videos input (else: document)."""
    mime = mimetypes.guess_type(path.name)[0] or ""
    return mime.startswith(("image/", "video/"))


# Labels of a popup's own buttons: not part of what WhatsApp says.
_BUTTON_LABELS = frozenset({"ok", "cancel", "close", "use here", "log out"})


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


def _snapshot(bubbles: list[dict[str, Any]]) -> models.ChatSnapshot:
    """The outgoing bubbles read before the send action, as the stamp records them."""
    ids = tuple(str(b["id"]) for b in bubbles if b.get("id"))
    return models.ChatSnapshot(ids=ids, count=len(bubbles), readable=True)


class _BeforeSendFailed(Exception):
    """Carries what ``before_send`` raised past the sender's own error translation."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


class _Guarded:
    """``before_send`` wrapped so its exceptions are never mistaken for page errors."""

    def __init__(self, fn: Callable[[models.ChatSnapshot], None]) -> None:
        self.fn = fn

    def __call__(self, snapshot: models.ChatSnapshot) -> None:
        try:
            self.fn(snapshot)
        except Exception as exc:
            raise _BeforeSendFailed(exc) from exc


class WhatsAppSender:
    """A WhatsApp Web browser that sends one message at a time (implements ``models.Transport``)."""

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
        # How chats are opened ("deeplink" | "inpage" | "auto"): the argument, else WABULK_OPEN_CHAT.
        self.open_chat_method = (open_chat or settings.open_chat or OPEN_AUTO).lower()
        if self.open_chat_method not in OPEN_CHAT_METHODS:
            raise errors.ConfigError(
                f"unknown chat opening method {self.open_chat_method!r} (use {', '.join(OPEN_CHAT_METHODS)})"
            )
        self.last_open_method: str | None = None  # the method that opened the last chat (doctor, bench)
        self._inpage_failures = 0  # in a row, for ``auto``
        self.timeouts = timeouts or (browser.timeouts if browser is not None else dom.Timeouts())
        # ``browser``: reuse an already started session (doctor), instead of locking the profile again.
        self.browser = browser or sess.BrowserSession(settings, session, timeouts=self.timeouts)

    # --- lifecycle (Transport) ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the browser and open WhatsApp Web (idempotent)."""
        self.browser.start()

    def page_state(self) -> str:
        """The page's state now (``session.PAGE_STATES``); "unknown" when the browser is dead."""
        if not self.browser.started:
            self.browser.start()
        try:
            return self.browser.state()
        except errors.BrowserCrashed:
            return sess.UNKNOWN

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

    # --- sending (Transport) --------------------------------------------------------------------------------
    def send(
        self,
        phone: str,
        body: str,
        *,
        attachment: str | None = None,
        before_send: Callable[[models.ChatSnapshot], None] = models._no_stamp,
    ) -> models.SendResult:
        """Send ``body`` (and ``attachment`` with ``body`` as caption) to ``phone`` and confirm it.

        Raises NotOnWhatsApp, AttachmentRejected (permanent); SelectorNotFound, ConfirmTimeout, Offline,
        BrowserCrashed, TransientSendError (transient); NotLoggedIn, Blocked, TakeoverFailed (session).
        Whatever ``before_send`` raises propagates, and then nothing was sent.
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
            if dom.is_dead_browser(exc):
                raise errors.BrowserCrashed(f"the browser died while sending: {exc}") from exc
            if any(c.__name__ == "WebDriverException" for c in type(exc).__mro__):
                # stale element, click intercepted, alert, script error…: the page moved under us
                raise errors.TransientSendError(
                    f"the page changed while sending: {type(exc).__name__}: {str(exc).strip()[:300]}"
                ) from exc
            raise

    def verify_sent(
        self, phone: str, body: str, since: float, *, known: models.ChatSnapshot | None = None
    ) -> models.Verification:
        """Whether the chat with ``phone`` shows an outgoing bubble with exactly ``body`` sent at or after
        ``since`` (unix seconds).

        Bubbles only carry the minute (``data-pre-plain-text`` "[HH:MM, D/M/YYYY]") in the browser's local
        time zone, so the comparison is ``bubble minute >= since rounded down to its minute``. Residual
        window: the same body sent to the same number earlier within that same minute (before ``since``)
        also counts. A bubble without a readable time counts too (a duplicate is worse than a recheck), and
        so does one still on the clock: WhatsApp's outbox holds it and will send it.
        """
        found = self._our_bubbles(phone, body, since, "verifying")
        if found:
            return models.Verification(
                models.VERIFY_SENT, "an outgoing bubble with this text is in the chat", found[-1].get("id")
            )
        return models.Verification(models.VERIFY_ABSENT, "no outgoing bubble with this text in the chat")

    def read_receipt(self, phone: str, body: str, since: float) -> str | None:
        """The best tick of our bubble(s) with exactly ``body`` in the chat with ``phone`` at or after
        ``since`` (the same matching as :meth:`verify_sent`), or None when there is none. A bubble whose
        tick cannot be read counts as ``pending``. Only opens the chat: nothing is typed or sent."""
        best: str | None = None
        for b in self._our_bubbles(phone, body, since, "reading receipts"):
            tick = str(b.get("tick") or models.TICK_PENDING)
            if best is None or _TICK_ORDER.get(tick, 0) > _TICK_ORDER.get(best, 0):
                best = tick
        return best

    def _our_bubbles(self, phone: str, body: str, since: float, doing: str) -> list[dict[str, Any]]:
        """Outgoing bubbles in the chat with ``phone`` showing ``body``, at or after ``since``'s minute
        (or without a readable time). None found when the number is not on WhatsApp."""
        try:
            self.browser.ensure_ready()
            try:
                self.open_chat(phone)
            except errors.NotOnWhatsApp:
                return []
            bubbles = self._settled_bubbles()
        except errors.WabulkError:
            raise
        except Exception as exc:
            if dom.is_dead_browser(exc):
                raise errors.BrowserCrashed(f"the browser died while {doing}: {exc}") from exc
            raise
        floor_ms = minute_floor(since) * 1000.0
        return [
            b
            for b in bubbles
            if bubble_matches(b, body) and (b.get("ts") is None or float(b["ts"]) >= floor_ms)
        ]

    # --- steps ---------------------------------------------------------------------------------------------
    @property
    def _driver(self) -> Any:
        return self.browser.driver

    def open_chat(self, phone: str) -> None:
        """Open the chat with ``phone`` and wait until its compose box is usable, by the sender's method.

        ``deeplink``: ``/send?phone=`` (reloads the app). ``inpage``: the New chat drawer, on the loaded page.
        ``auto``: in-page when the page is loaded and logged in (main or chat, no popup), else the deep link;
        an in-page failure that is not permanent (a missing button, a lookup or identity that does not
        settle, the page moving under us) is logged and the deep link is tried once. Raises NotOnWhatsApp,
        the session errors, Offline, BrowserCrashed and transient errors as :meth:`send` documents.
        """
        method = self.open_chat_method
        if method == OPEN_DEEPLINK:
            self._open_chat_deeplink(phone)
            return
        if method == OPEN_INPAGE:
            self._open_chat_inpage(phone)
            return
        if self._inpage_failures >= INPAGE_GIVE_UP or not self._inpage_usable():
            self._open_chat_deeplink(phone)
            return
        try:
            self._open_chat_inpage(phone)
        except (errors.PermanentSendError, errors.SessionError, errors.Offline, errors.BrowserCrashed):
            raise  # the deep link would meet the same answer (or the same dead browser)
        except errors.TransientSendError as exc:
            reason: BaseException = exc
        except Exception as exc:
            if dom.is_dead_browser(exc):
                raise errors.BrowserCrashed(f"the browser died while opening a chat: {exc}") from exc
            if not any(c.__name__ == "WebDriverException" for c in type(exc).__mro__):
                raise
            reason = exc  # stale element, click intercepted…: the page moved under us
        else:
            self._inpage_failures = 0
            return
        self._inpage_failures += 1
        log.warning(
            "in-page chat opening failed (%s: %s); using the deep link for this message",
            type(reason).__name__,
            dom.mask_numbers(str(reason).strip().splitlines()[0] if str(reason).strip() else "")[:300],
        )
        if self._inpage_failures == INPAGE_GIVE_UP:
            log.warning(
                "in-page chat opening failed %d times in a row; using only the deep link from now on",
                INPAGE_GIVE_UP,
            )
        self._open_chat_deeplink(phone)

    def _inpage_usable(self) -> bool:
        """Whether the loaded page can open a chat in-page now: logged in, main or chat, no popup."""
        if not self.browser.started:
            return False
        try:
            st, p = self.browser.snapshot()
        except errors.BrowserCrashed:
            return False
        url = str(p.get("url") or "")
        return (
            st in sess.LOGGED_IN_STATES
            and not p.get("dialogs")
            and url.startswith(self.settings.web_url.rstrip("/"))
        )

    def _identity(self, token: str, *, mark: bool = False) -> dict[str, Any]:
        res = self._driver.execute_script(
            CHAT_IDENTITY_JS, [list(c) for c in S.CHAT_TITLE.resolved], token, mark
        )
        return dict(res) if isinstance(res, dict) else {"main": False, "fresh": False, "title": None}

    def _wait_visible(self, selector: S.Selector, timeout: float) -> Any:
        """The first visible element of ``selector`` within ``timeout``, else SelectorNotFound (no debug
        capture: auto falls back to the deep link, and a capture per message would only fill the disk)."""
        deadline = time.monotonic() + timeout
        cands = [list(c) for c in selector.resolved]
        while True:
            el = self._driver.execute_script(FIRST_VISIBLE_JS, cands)
            if el is not None:
                return el
            if time.monotonic() >= deadline:
                raise errors.SelectorNotFound(selector.name, selector.describe(), timeout)
            time.sleep(INPAGE_POLL)

    def _new_chat_input(self) -> Any:
        """The New chat drawer's search box, opening the drawer when it is not open already."""
        el = self._driver.execute_script(FIRST_VISIBLE_JS, [list(c) for c in S.NEW_CHAT_SEARCH.resolved])
        if el is not None:
            return el
        self._wait_visible(S.NEW_CHAT_BUTTON, dom.MINI).click()
        return self._wait_visible(S.NEW_CHAT_SEARCH, dom.MINI)

    def _open_chat_inpage(self, phone: str) -> None:
        """Open the chat through New chat → "Search name or number" → Enter, without reloading the page.

        Done only when ``#main``'s header shows exactly the target's digits (with no lookup popup left and
        a usable compose box), so a previously open chat is never taken for the new one; a new chat whose
        title does not show the number (a saved contact's name) raises TransientSendError.
        """
        from selenium.webdriver.common.keys import Keys

        want = digits_of(phone)
        t = self.timeouts
        st, p = self.browser.snapshot()
        if st not in sess.LOGGED_IN_STATES:
            self.browser.ensure_ready()
            st, p = self.browser.snapshot()
            if st not in sess.LOGGED_IN_STATES:
                raise errors.TransientSendError(
                    f"the page is not ready to open a chat in-page (state {st})", error_class="inpage_unready"
                )
        if p.get("dialogs"):
            self._click_ok()  # a leftover popup (e.g. an earlier invalid number) would block the drawer
            st, p = self.browser.snapshot()
            if p.get("dialogs"):
                raise errors.TransientSendError(
                    "a popup is open; cannot open a chat in-page", error_class="inpage_unready"
                )
        token = f"{time.time_ns()}"
        ident = self._identity(token, mark=True)
        if (
            st == sess.CHAT
            and title_digits(ident.get("title")) == want
            and int(p.get("matched", {}).get(S.COMPOSE_BOX.name, -1)) >= 0
        ):
            self.last_open_method = OPEN_INPAGE
            return  # that chat is already the open one
        box = self._new_chat_input()
        typed = f"+{want}"
        if str(box.tag_name).lower() == "input":
            if self._driver.execute_script(READ_INPUT_JS, box):  # a freshly opened drawer is empty
                box.clear()
            box.send_keys(typed)
        else:
            self._driver.execute_script(CLEAR_JS, box)
            self._driver.execute_script(INSERT_JS, box, typed)
        seen = str(self._driver.execute_script(READ_INPUT_JS, box) or "")
        if re.sub(r"\D", "", seen) != want:
            raise errors.TransientSendError(
                f"the New chat search box did not take the number (holds {len(seen)} characters)",
                error_class="inpage_input",
            )
        box.send_keys(Keys.ENTER)
        start = time.monotonic()
        deadline = start + t.chat_open
        picked = False
        offline_since: float | None = None
        fresh_since: float | None = None
        ever_lookup = False
        while True:
            st, p = self.browser.snapshot()
            dialogs = self._raise_for_page(st, p)
            if st in (sess.TAKEOVER_WINDOW, sess.TAKEOVER_COMPUTER):
                self.browser.use_here()
                raise errors.TransientSendError(
                    "WhatsApp was opened elsewhere while the chat was opening",
                    error_class="takeover_during_open",
                )
            compose = int(p.get("matched", {}).get(S.COMPOSE_BOX.name, -1)) >= 0
            if st == sess.OFFLINE and not compose:
                offline_since = offline_since if offline_since is not None else time.monotonic()
                if time.monotonic() - offline_since > dom.MINI:
                    raise errors.Offline("WhatsApp Web says the computer is not connected; nothing was sent")
            else:
                offline_since = None
            lookup = bool(dom.match_text(dialogs, "starting_chat"))
            ever_lookup = ever_lookup or lookup
            now = time.monotonic()
            if compose and not lookup:
                ident = self._identity(token)
                if title_digits(ident.get("title")) == want:
                    self.last_open_method = OPEN_INPAGE
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
                rows = [list(c) for c in S.NEW_CHAT_RESULT.resolved]
                self._driver.execute_script(PICK_RESULT_JS, rows, want)
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

    def _raise_for_page(self, st: str, p: dict[str, Any]) -> str:
        """While a chat opens: raise for what no waiting can fix (the number is not on WhatsApp, logged
        out, blocked). Returns the visible dialogs' texts joined, for the caller's own checks."""
        if self.browser.dismiss_whats_new(p):  # the What's new window swallows clicks and keys
            return ""
        dialogs = " | ".join(str(d) for d in p.get("dialogs") or ())
        if dom.match_text(dialogs, "invalid_number"):
            text = next(d for d in p["dialogs"] if dom.match_text(str(d), "invalid_number"))
            self._click_ok()
            raise errors.NotOnWhatsApp(f"WhatsApp says: {popup_reason(text)}")
        if st in (sess.QR, sess.LOGGED_OUT):
            raise errors.NotLoggedIn(
                f"session {self.session_name!r} is logged out of WhatsApp Web: "
                f"run `wabulk login --session {self.session_name}`"
            )
        if st == sess.BLOCKED:
            raise errors.Blocked("WhatsApp shows a block screen; this account cannot send now")
        if st == sess.RESTRICTED:
            raise errors.AccountRestricted(
                "WhatsApp restricts this account on linked devices; nothing can be sent now"
            )
        return dialogs

    def _open_chat_deeplink(self, phone: str) -> None:
        """Deep-link to the chat and wait until its compose box is usable."""
        self.last_open_method = OPEN_DEEPLINK
        url = self.browser.url_for(f"send?phone={digits_of(phone)}")
        self.browser.open(url)
        t = self.timeouts
        deadline = time.monotonic() + t.boot + t.chat_open
        takeovers = 0
        offline_since: float | None = None
        while True:
            st, p = self.browser.snapshot()
            dialogs = self._raise_for_page(st, p)
            if st in (sess.TAKEOVER_WINDOW, sess.TAKEOVER_COMPUTER):
                takeovers += 1
                if takeovers > 2:
                    raise errors.TakeoverFailed(
                        "WhatsApp keeps being taken over by another window or computer"
                    )
                self.browser.use_here()
                self.browser.open(url)  # the takeover reboots into the main screen, without our chat
                continue
            if st == sess.OFFLINE and int(p.get("matched", {}).get(S.COMPOSE_BOX.name, -1)) < 0:
                # No network: the number lookup cannot finish. Give a flapping connection a moment first.
                offline_since = offline_since if offline_since is not None else time.monotonic()
                if time.monotonic() - offline_since > dom.MINI:
                    raise errors.Offline("WhatsApp Web says the computer is not connected; nothing was sent")
            else:
                offline_since = None
            lookup = dom.match_text(dialogs, "starting_chat")
            if int(p.get("matched", {}).get(S.COMPOSE_BOX.name, -1)) >= 0 and not lookup:
                return
            if time.monotonic() >= deadline:
                path = self.browser.capture("chat-not-open")
                if lookup:
                    raise errors.TransientSendError(
                        f"the number lookup ('Starting chat') did not finish in time; saved {path}",
                        error_class="lookup_timeout",
                    )
                raise errors.SelectorNotFound(
                    S.COMPOSE_BOX.name, S.COMPOSE_BOX.describe(), t.boot + t.chat_open, debug_path=path
                )
            time.sleep(0.1)

    def _click_ok(self) -> None:
        hit = dom.resolve(self._driver, S.DIALOG_OK)
        if hit is not None:
            try:
                hit[1].click()
            except Exception as exc:  # noqa: BLE001 - the popup may close by itself
                if dom.is_dead_browser(exc):
                    raise

    def _bubbles(self) -> list[dict[str, Any]]:
        res = self._driver.execute_script(
            BUBBLES_JS,
            [list(c) for c in S.OUTGOING_BUBBLE.resolved],
            S.TICK_BY_DATA_ICON,
            S.TICK_BY_LABEL,
            S.TICK_BY_SVG_TITLE,
        )
        return list(res or [])

    def _settled_bubbles(self) -> list[dict[str, Any]]:
        """Bubbles once the list stopped growing (history renders after the chat opens)."""
        deadline = time.monotonic() + self.timeouts.settle
        prev = self._bubbles()
        while time.monotonic() < deadline:
            time.sleep(0.3)
            cur = self._bubbles()
            if len(cur) == len(prev) and cur:
                return cur
            prev = cur
        return prev

    def _insert(self, box: Any, body: str) -> None:
        """Put ``body`` into an (empty) contenteditable: insertText per line, Shift+Enter between lines."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        for i, line in enumerate(lines):
            if i:
                ActionChains(self._driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(
                    Keys.SHIFT
                ).perform()
            if line:
                self._driver.execute_script(INSERT_JS, box, line)

    def _box(self, selector: S.Selector) -> Any:
        """The visible element of ``selector``: one script round trip when it is there already (the usual
        case, right after the chat opened), else the waiting find (with its debug capture on a miss)."""
        el = self._driver.execute_script(FIRST_VISIBLE_JS, [list(c) for c in selector.resolved])
        return el if el is not None else self.browser.find(selector, self.timeouts.element)

    def _fill(self, selector: S.Selector, body: str) -> Any:
        """Insert ``body`` into the box found by ``selector`` and check it reads back exactly (one retry)."""
        box = self._box(selector)
        seen = ""
        for _ in range(2):
            self._driver.execute_script(CLEAR_JS, box)
            self._insert(box, body)
            seen = str(self._driver.execute_script(READ_BOX_JS, box) or "")
            if same_text(seen, body):
                return box
            box = self._box(selector)
        self._driver.execute_script(CLEAR_JS, box)
        raise errors.TransientSendError(
            f"the {selector.name.replace('_', ' ')} did not hold the exact text (expected {len(body)} "
            f"characters, found {len(seen)})",
            error_class="text_mismatch",
        )

    def _check_online(self) -> None:
        st, _ = self.browser.snapshot()
        if st == sess.OFFLINE:
            raise errors.Offline("WhatsApp Web says the computer is not connected; nothing was sent")

    def _send_text(self, body: str, before_send: Callable[[], None]) -> models.SendResult:
        from selenium.webdriver.common.keys import Keys

        seen = self._bubbles()
        before = {b.get("id") for b in seen}
        box = self._fill(S.COMPOSE_BOX, body)
        self._check_online()
        before_send(_snapshot(seen))
        box.send_keys(Keys.ENTER)
        return self._confirm(body, before, retry_box=box)

    @retry(
        stop=stop_after_attempt(3),
        wait=wait_fixed(0.5),
        reraise=True,
        retry=retry_if_exception_type(errors.SelectorNotFound),
    )
    def _file_input(self, media: bool) -> Any:
        """Open the attach menu and return the right hidden file input (the menu may need a second click)."""
        drv = self._driver
        target = S.MEDIA_INPUT if media else S.DOCUMENT_INPUT
        hit = dom.resolve(drv, target, visible=False)
        if hit is not None:
            return hit[1]
        self.browser.find(S.ATTACH_BUTTON, self.timeouts.element).click()
        return self.browser.find(target, dom.MINI, visible=False)

    def _send_attachment(self, path: Path, body: str, before_send: Callable[[], None]) -> models.SendResult:
        path = path.expanduser().resolve()
        if not path.is_file():
            raise errors.AttachmentRejected(f"attachment not found: {path}")
        seen = self._bubbles()
        before = {b.get("id") for b in seen}
        self._file_input(is_media(path)).send_keys(str(path))
        # Either the preview (caption box) or a rejection popup.
        deadline = time.monotonic() + self.timeouts.element
        extra = (*sess.STATE_SELECTORS, S.CAPTION_BOX, S.MEDIA_SEND)
        while True:
            p = self.browser.probe(extra)
            for d in p.get("dialogs") or ():
                err = classify_dialog(str(d))
                if isinstance(err, errors.AttachmentRejected):
                    self._click_ok()
                    raise err
            if (
                int(p["matched"].get(S.CAPTION_BOX.name, -1)) >= 0
                or int(p["matched"].get(S.MEDIA_SEND.name, -1)) >= 0
            ):
                break
            if time.monotonic() >= deadline:
                path_ = self.browser.capture("no-preview")
                raise errors.SelectorNotFound(
                    S.CAPTION_BOX.name, S.CAPTION_BOX.describe(), self.timeouts.element, debug_path=path_
                )
            time.sleep(0.1)
        if body:
            self._fill(S.CAPTION_BOX, body)
        self._check_online()
        send_btn = self.browser.find(S.MEDIA_SEND, self.timeouts.element)
        before_send(_snapshot(seen))
        send_btn.click()
        return self._confirm(body, before, retry_box=None, media=True)

    def _confirm(
        self, body: str, before: set[Any], *, retry_box: Any, media: bool = False
    ) -> models.SendResult:
        """Wait for the new outgoing bubble with ``body`` to leave the clock."""
        from selenium.webdriver.common.keys import Keys

        start = time.monotonic()
        deadline = start + self.timeouts.confirm
        pressed_again = False
        last_state_check = start
        bubble: dict[str, Any] | None = None
        while True:
            fresh = [b for b in self._bubbles() if b.get("id") not in before]
            mine = [b for b in fresh if bubble_matches(b, body)] if (body or not media) else fresh
            bubble = mine[-1] if mine else None
            if bubble is not None and bubble.get("tick") in (
                models.TICK_SENT,
                models.TICK_DELIVERED,
                models.TICK_READ,
            ):
                return models.SendResult(
                    tick=str(bubble["tick"]), confirmed_at=time.time(), message_ref=bubble.get("id")
                )
            now = time.monotonic()
            if (
                bubble is None
                and not fresh
                and retry_box is not None
                and not pressed_again
                and now - start > dom.MINI
            ):
                # Enter did nothing if the box still holds the text ("typed but not sent"): press once more.
                try:
                    still = str(self._driver.execute_script(READ_BOX_JS, retry_box) or "")
                except Exception:  # noqa: BLE001 - box replaced: the page moved on
                    still = ""
                if same_text(still, body):
                    pressed_again = True
                    hit = dom.resolve(self._driver, S.SEND_BUTTON)
                    if hit is not None:
                        hit[1].click()
                    else:
                        retry_box.send_keys(Keys.ENTER)
            if now - last_state_check > 1.0:
                last_state_check = now
                st, _ = self.browser.snapshot()
                if st in (sess.QR, sess.LOGGED_OUT):
                    raise errors.NotLoggedIn("WhatsApp Web logged out while the message was being sent")
                if st in (sess.TAKEOVER_WINDOW, sess.TAKEOVER_COMPUTER):
                    # The chat is gone from the page: the tick can no longer be seen. Waiting out the
                    # confirm timeout would only delay the verdict, which is the same: unconfirmed
                    # (the message may have left), so it is verified in the chat before any resend.
                    raise errors.ConfirmTimeout(
                        "WhatsApp Web was opened elsewhere before the message was confirmed"
                    )
            if now >= deadline:
                break
            time.sleep(CONFIRM_POLL)
        offline = self.browser.state() == sess.OFFLINE
        where = " (WhatsApp Web shows it is offline)" if offline else ""
        if bubble is not None:
            raise errors.ConfirmTimeout(
                f"the message is still pending (clock) after {self.timeouts.confirm:g}s{where}"
            )
        path = self.browser.capture("no-bubble")
        raise errors.ConfirmTimeout(
            f"no outgoing message with this text appeared within {self.timeouts.confirm:g}s{where}; "
            f"saved {path}"
        )
