"""The browser: Chromium through Selenium on a locked, persistent profile, and the page's state.

The entry point for the rest of wabulk (:class:`BrowserSession`). The parts live in :mod:`wabulk.web`:
``launch`` (options, user agent, local and Grid browsers, version checks), ``profile`` (the profile lock
and the repairs made under it) and ``states`` (what the page shows); import their names from them.
Selenium is imported inside functions only, so importing this module (or ``wabulk status``) stays cheap.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from wabulk import errors
from wabulk.settings import Settings, ensure_private_dir
from wabulk.web import errors as web_errors

from . import dom, screens, states
from . import launch as _launch
from . import profile as _profile
from . import selectors as S
from .launch import remote_profile_dir
from .profile import LOCK_NAME, ProfileLock, reap_orphans, repair_profile
from .profile import is_our_browser as _is_our_browser
from .states import (
    BLOCKED,
    LOGGED_IN_STATES,
    LOGGED_OUT,
    OFFLINE,
    PAGE_ERROR,
    QR,
    STATE_SELECTORS,
    TAKEOVER_COMPUTER,
    TAKEOVER_WINDOW,
    UNSUPPORTED_BROWSER,
    decide_state,
)
from .states import has as _has

log = logging.getLogger("wabulk.web.browser")

NET_ERROR_SECONDS = 15.0  # how long the browser's network error page may persist before we give up
WHATS_NEW_TRIES = 3  # clicks on the What's new modal's Continue before leaving it to the caller


# --- the browser session -----------------------------------------------------------------------------------


class BrowserSession:
    """One Chromium on the persistent, locked profile of a WhatsApp session, and its page state."""

    def __init__(
        self, settings: Settings, session_name: str = "default", *, timeouts: dom.Timeouts | None = None
    ) -> None:
        self.settings = settings
        self.name = session_name
        self.timeouts = timeouts or dom.Timeouts()
        self.profile_dir = settings.profile_dir(session_name)
        # The lock is always taken here, on the controller: one worker per session whatever the Grid does.
        self.lock = ProfileLock(self.profile_dir / LOCK_NAME, session_name)
        self.browser_profile_dir = (
            remote_profile_dir(settings, session_name) if settings.remote_url else self.profile_dir
        )
        self._driver: Any = None
        self._browser_pid: int | None = None
        # The user agent the browser runs with once known (derived locally; learned from a Grid node's
        # browser when it announced itself as headless), so a restart needs no second launch.
        self._user_agent: str | None = None

    # --- lifecycle -------------------------------------------------------------------------------------
    @property
    def driver(self) -> Any:
        """The live WebDriver (raises BrowserError before :meth:`start`)."""
        if self._driver is None:
            raise web_errors.BrowserError("the browser is not started")
        return self._driver

    @property
    def started(self) -> bool:
        return self._driver is not None

    def start(self) -> None:
        """Lock the profile, launch the browser and open WhatsApp Web (idempotent)."""
        if self._driver is not None:
            return
        ensure_private_dir(self.profile_dir)
        self.lock.acquire()
        try:
            reap_orphans(self.profile_dir)  # we hold the lock: a browser still on the profile is an orphan
            self._prepare_profile()
            self._driver = self._launch()
            self._browser_pid = self.browser_pid()
            self.open(self.settings.web_url)
        except BaseException:
            self._quit_driver()
            self.lock.release()
            raise

    def restart(self) -> None:
        """Throw the browser away and start a new one on the same profile, keeping the lock."""
        self._quit_driver()
        if not self.lock.held:
            ensure_private_dir(self.profile_dir)
            self.lock.acquire()
        self._prepare_profile()  # the dead browser may have been killed mid-write
        self._driver = self._launch()
        self._browser_pid = self.browser_pid()
        self.open(self.settings.web_url)

    def close(self) -> None:
        """Quit the browser and release the profile lock (idempotent)."""
        self._quit_driver()
        self.lock.release()

    def __enter__(self) -> BrowserSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _quit_driver(self) -> None:
        drv, self._driver = self._driver, None
        if drv is None:
            return
        with contextlib.suppress(Exception):
            drv.quit()
        # quit() may fail half-way on a dead browser: make sure chromedriver does not linger.
        proc = getattr(getattr(drv, "service", None), "process", None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                proc.kill()
                proc.wait(5)
        # A browser orphaned by a dead chromedriver still holds the profile, and a new Chromium on the
        # same profile would just hand over to it and exit: end the one *we* launched (by its cmdline).
        pid, self._browser_pid = self._browser_pid, None
        if pid is not None and _is_our_browser(pid, self.profile_dir):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def _prepare_profile(self) -> None:
        """Repairs made before every launch, while the profile lock is held: state files a kill cut short,
        another host's Chromium lock (a profile moved between hosts or containers), and the service worker
        of a profile on which WhatsApp refused the browser. A Grid node's profile is not on this machine."""
        repair_profile(self.profile_dir)
        if self.settings.remote_url:
            return
        _profile.clear_foreign_singleton(self.lock, self.profile_dir)
        _profile.clear_refusal(self.profile_dir)

    def _launch_user_agent(self) -> str | None:
        if self._user_agent:
            return self._user_agent
        if self.settings.remote_url:
            return self.settings.user_agent  # a node's browser: read from it after the launch
        return _launch.local_user_agent(self.settings)

    def build_options(self) -> Any:
        """Chromium options for this session (also used for a remote Grid browser)."""
        return _launch.build_options(
            self.settings, self.browser_profile_dir, self.name, user_agent=self._launch_user_agent()
        )

    def _launch(self) -> Any:
        driver, user_agent = _launch.launch(
            self.settings, self.browser_profile_dir, self.name, user_agent=self._launch_user_agent()
        )
        self._user_agent = user_agent
        return driver

    # --- driver helpers -------------------------------------------------------------------------------
    def alive(self) -> bool:
        """Whether the browser and chromedriver still answer."""
        if self._driver is None:
            return False
        try:
            self._driver.execute_script("return 1")
            return True
        except Exception as exc:  # noqa: BLE001
            if dom.is_dead_browser(exc):
                return False
            # An alert (beforeunload) or similar: the browser is alive.
            return True

    def browser_pid(self) -> int | None:
        """The pid of the (local) Chromium browser process, found as chromedriver's child (Linux /proc)."""
        proc = getattr(getattr(self._driver, "service", None), "process", None)
        return None if proc is None else _profile.child_pid(proc.pid)

    def open(self, url: str) -> None:
        """Navigate; accepts a beforeunload prompt (WhatsApp asks when a message is still pending)."""
        drv = self.driver
        try:
            drv.get(url)
        except Exception as exc:  # noqa: BLE001
            if dom.is_dead_browser(exc):
                raise web_errors.BrowserCrashed(f"the browser died while opening the page: {exc}") from exc
            if type(exc).__name__ == "UnexpectedAlertPresentException":
                self.accept_alert()
                drv.get(url)
            elif "net::ERR_" in str(exc):
                # The URL cannot be reached (refused, DNS, offline): the tab shows Chromium's error page,
                # which ensure_ready retries for a while and then reports as "cannot reach …".
                return
            else:
                raise
        self.accept_alert()

    def accept_alert(self) -> bool:
        """Accept a native alert/confirm if one is open; True when there was one."""
        try:
            self.driver.switch_to.alert.accept()
            return True
        except Exception as exc:  # noqa: BLE001
            if dom.is_dead_browser(exc):
                raise web_errors.BrowserCrashed(f"the browser died: {exc}") from exc
            return False

    def url_for(self, path: str) -> str:
        """``web_url`` joined with ``path``."""
        return self.settings.web_url.rstrip("/") + "/" + path.lstrip("/")

    def capture(self, label: str) -> str | None:
        """Save a masked debug capture (screenshot + page source) under ``settings.debug_dir``."""
        if self._driver is None:
            return None
        return dom.save_debug(self._driver, self.settings.debug_dir, label)

    def find(self, selector: S.Selector, timeout: float, *, visible: bool = True, root: Any = None) -> Any:
        """:func:`dom.find` with this session's debug directory."""
        try:
            return dom.find(
                self.driver, selector, timeout, visible=visible, root=root, debug_dir=self.settings.debug_dir
            )
        except web_errors.SelectorNotFound:
            raise
        except Exception as exc:  # noqa: BLE001
            if dom.is_dead_browser(exc):
                raise web_errors.BrowserCrashed(f"the browser died: {exc}") from exc
            raise

    # --- state ----------------------------------------------------------------------------------------
    def probe(self, selectors: tuple[S.Selector, ...] = STATE_SELECTORS) -> dict[str, Any]:
        """One round trip describing the page (see :func:`dom.probe`)."""
        try:
            return dom.probe(self.driver, selectors)
        except Exception as exc:  # noqa: BLE001
            if dom.is_dead_browser(exc):
                raise web_errors.BrowserCrashed(f"the browser died: {exc}") from exc
            if type(exc).__name__ == "UnexpectedAlertPresentException":
                self.accept_alert()
                return dom.probe(self.driver, selectors)
            raise

    def snapshot(self) -> tuple[str, dict[str, Any]]:
        """The page state and the probe it was decided from."""
        p = self.probe()
        return decide_state(p), p

    def state(self) -> str:
        """The page's state now: one of :data:`PAGE_STATES`."""
        return self.snapshot()[0]

    def wait_state(
        self, wanted: Callable[[str, dict[str, Any]], bool], timeout: float, poll: float = 0.15
    ) -> tuple[str, dict[str, Any]]:
        """Poll until ``wanted(state, probe)``; returns the last snapshot either way."""
        deadline = time.monotonic() + timeout
        while True:
            st, p = self.snapshot()
            if wanted(st, p) or time.monotonic() >= deadline:
                return st, p
            time.sleep(poll)

    # --- recovery -------------------------------------------------------------------------------------
    def use_here(self) -> None:
        """Click "Use here" on a takeover screen and wait for the main screen; TakeoverFailed otherwise."""
        try:
            self.find(S.USE_HERE, self.timeouts.element).click()
        except web_errors.SelectorNotFound as exc:
            raise web_errors.TakeoverFailed(
                f"WhatsApp is open elsewhere and 'Use here' is missing: {exc}"
            ) from exc
        st, _ = self.wait_state(
            lambda s, p: s in (*LOGGED_IN_STATES, OFFLINE, QR, LOGGED_OUT, BLOCKED), self.timeouts.takeover
        )
        if st not in (*LOGGED_IN_STATES, OFFLINE, QR, LOGGED_OUT, BLOCKED):
            path = self.capture("takeover")
            raise web_errors.TakeoverFailed(
                f"'Use here' did not bring WhatsApp back (page: {st}; saved {path})"
            )

    # --- the 2026 page's own screens ---------------------------------------------------------------
    def dismiss_whats_new(self, p: dict[str, Any] | None = None) -> bool:
        """Close the "What's new on WhatsApp Web" window when it is open (it covers the page and swallows
        clicks and keys); True when Continue was clicked. For every loop that a popup would block."""
        return screens.dismiss_whats_new(self.driver, p if p is not None else self.probe())

    def _refused(self, p: dict[str, Any], *, retried: bool) -> bool:
        """WhatsApp refused the browser. The refusal may come from the page's service worker cache (a
        profile that once saw it): the first time, forget the worker and start afresh (True: look again).
        Otherwise raise UnsupportedBrowser, one line saying what was refused and how to fix it."""
        if not self.settings.remote_url:
            _profile.mark_refused(self.profile_dir)  # the next launch clears the cached service worker
        screens.forget_service_worker(self.driver)
        cached = self.settings.remote_url or (self.profile_dir / _profile.SERVICE_WORKER_DIR).is_dir()
        if not retried and cached:
            log.warning("WhatsApp Web refused the browser; clearing its cached service worker and retrying")
            self.restart()
            return True
        raise screens.refusal_error(self.driver, p, self.settings)

    def ensure_ready(self, *, require_login: bool = True) -> str:
        """Bring the page to a usable state and return it: main, chat or offline.

        Restarts a dead browser, reloads a stuck loading screen once, clicks "Use here" on a takeover,
        closes the "What's new" window. A restricted account is returned as ``restricted`` (logged in; its
        chats refuse sending). Raises NotLoggedIn (QR / logged out), Blocked, TakeoverFailed,
        UnsupportedBrowser (the page refused the browser), PageError (database error or storage full
        after one reload), BrowserError.
        """
        if self._driver is None:
            self.start()
        elif not self.alive():
            self.restart()
        deadline = time.monotonic() + self.timeouts.boot
        loading_since: float | None = None
        net_error_since: float | None = None
        reloaded = refused = page_reloaded = False
        takeovers = whats_new = 0
        while True:
            try:
                st, p = self.snapshot()
            except web_errors.BrowserCrashed:
                self.restart()
                st, p = self.snapshot()
            now = time.monotonic()
            if st in (*LOGGED_IN_STATES, OFFLINE) and whats_new < WHATS_NEW_TRIES and states.whats_new(p):
                whats_new += 1
                self.dismiss_whats_new(p)
                continue
            if st in LOGGED_IN_STATES or (st == OFFLINE):
                return st
            if st == UNSUPPORTED_BROWSER:
                refused = self._refused(p, retried=refused)
                deadline = time.monotonic() + self.timeouts.boot
                continue
            if st == PAGE_ERROR:
                if page_reloaded:
                    raise screens.page_error(p, self.browser_profile_dir, self.name)
                page_reloaded = True
                log.warning("WhatsApp Web shows an error screen (%s); reloading once", states.page_error(p))
                self.open(self.settings.web_url)
                continue
            if st in (QR, LOGGED_OUT):
                if require_login:
                    raise errors.NotLoggedIn(
                        f"session {self.name!r} is not logged in to WhatsApp Web: run `wabulk login "
                        f"--session {self.name}` and scan the QR code"
                    )
                return st
            if st == BLOCKED:
                found = dom.match_text(f"{p.get('text')} {' '.join(p.get('dialogs') or ())}", "blocked")
                raise errors.Blocked(
                    f"WhatsApp shows a block screen ({found!r}); this account cannot send now"
                )
            if st in (TAKEOVER_WINDOW, TAKEOVER_COMPUTER):
                takeovers += 1
                if takeovers > 2:
                    raise web_errors.TakeoverFailed(
                        "WhatsApp keeps being taken over by another window or computer"
                    )
                self.use_here()
                continue
            if not str(p.get("url") or "").startswith(self.settings.web_url.rstrip("/")):
                if str(p.get("url") or "").startswith("chrome-error:"):
                    # Chromium's own error page: the URL cannot be reached. Retry for a while, then say so
                    # (re-opening forever would hang the worker without a word).
                    net_error_since = net_error_since if net_error_since is not None else now
                    if now - net_error_since >= NET_ERROR_SECONDS:
                        raise errors.Unreachable(
                            f"cannot reach {self.settings.web_url} (the browser shows a network error page); "
                            "check the network connection or --web-url / WABULK_WEB_URL"
                        )
                    time.sleep(1.0)
                self.open(self.settings.web_url)  # about:blank after a restart, or a foreign page
                continue
            # loading / unknown: wait, reload once when stuck.
            loading_since = loading_since if loading_since is not None else now
            if now - loading_since > self.timeouts.stuck_loading and not reloaded:
                reloaded = True
                loading_since = now
                deadline = now + self.timeouts.boot
                self.open(self.settings.web_url)
                continue
            if now >= deadline:
                path = self.capture(f"stuck-{st}")
                raise web_errors.BrowserError(
                    f"WhatsApp Web did not finish loading (state {st!r}, reloaded once); saved {path}"
                )
            time.sleep(0.2)

    def wait_for_login(
        self,
        on_qr: Callable[[str], None],
        *,
        timeout: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Wait until logged in, calling ``on_qr(payload)`` for every new QR payload (``data-ref``).

        Reloads an expired QR (its reload button, or a click on the code itself in 2026) and clicks "Use
        here" on a takeover. Returns False when ``should_stop()`` became true or ``timeout`` passed; raises
        Blocked on a block screen, UnsupportedBrowser when the page refuses the browser, PageError.
        """
        if self._driver is None:
            self.start()
        elif not self.alive():
            self.restart()
        deadline = None if timeout is None else time.monotonic() + timeout
        last_ref: str | None = None
        refused = page_reloaded = False
        while True:
            if should_stop is not None and should_stop():
                return False
            try:
                st, p = self.snapshot()
            except web_errors.BrowserCrashed:
                self.restart()
                continue
            if st in LOGGED_IN_STATES or (st == OFFLINE and _has(p, S.MAIN.name)):
                self.dismiss_whats_new(p)
                return True
            if st == BLOCKED:
                raise errors.Blocked("WhatsApp shows a block screen; this account cannot log in now")
            if st == UNSUPPORTED_BROWSER:
                refused = self._refused(p, retried=refused)
                continue
            if st == PAGE_ERROR:
                if page_reloaded:
                    raise screens.page_error(p, self.browser_profile_dir, self.name)
                page_reloaded = True
                self.open(self.settings.web_url)
                continue
            if st in (TAKEOVER_WINDOW, TAKEOVER_COMPUTER):
                self.use_here()
                continue
            if st in (QR, LOGGED_OUT):
                ref = p.get("qr_ref")
                if ref and ref != last_ref:
                    last_ref = str(ref)
                    on_qr(last_ref)
                screens.reload_qr(self.driver, p)
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.25)
