"""Acting on the page's own screens and windows (2026): the "What's new" window, an expired QR code, the
refusal of the browser, the database-error and storage-full screens.
:mod:`wabulk.web.browser` decides when."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from wabulk.settings import Settings
from wabulk.web import dom, states
from wabulk.web import errors as web_errors
from wabulk.web import selectors as S

log = logging.getLogger("wabulk.web.browser")

# Unregisters the page's service workers and empties its caches: a worker that cached WhatsApp's refusal
# page keeps serving it even to a good user agent. Run in the refused page itself, so it also works for a
# Grid browser whose profile folder is not on this machine.
FORGET_SERVICE_WORKER_JS = r"""
const done = arguments[arguments.length - 1];
const jobs = [];
try {
  if (navigator.serviceWorker && navigator.serviceWorker.getRegistrations)
    jobs.push(navigator.serviceWorker.getRegistrations()
      .then(rs => Promise.all(rs.map(r => r.unregister()))));
  if (window.caches) jobs.push(caches.keys().then(ks => Promise.all(ks.map(k => caches.delete(k)))));
} catch (e) {}
Promise.all(jobs).then(() => done(true), () => done(false));
"""


def click(driver: Any, selector: S.Selector) -> bool:
    """Click the first visible match of ``selector``; an element that is covered or still animating is
    clicked in-page instead. Returns whether there was one. BrowserCrashed when the browser is gone."""
    hit = dom.resolve(driver, selector)
    if hit is None:
        return False
    try:
        hit[1].click()
    except Exception as exc:  # noqa: BLE001
        if dom.is_dead_browser(exc):
            raise web_errors.BrowserCrashed(f"the browser died: {exc}") from exc
        with contextlib.suppress(Exception):
            driver.execute_script("arguments[0].click()", hit[1])
    return True


def dismiss_whats_new(driver: Any, probe: dict[str, Any]) -> bool:
    """Close the "What's new on WhatsApp Web" window with its Continue button when ``probe`` shows it (it
    covers the page and swallows clicks and keys). Returns whether Continue was clicked."""
    if not states.whats_new(probe) or not click(driver, S.WHATS_NEW_CONTINUE):
        return False
    log.info("closed WhatsApp Web's \"What's new\" window (Continue)")
    return True


def reload_qr(driver: Any, probe: dict[str, Any]) -> bool:
    """Ask for a new QR code once the old one expired (WhatsApp stops rotating it after a few minutes):
    older pages have a reload button; the 2026 page shows "Select to reload QR code" over the code and
    reloads on a click on the code's container. Returns whether something was clicked."""
    if not states.qr_expired(probe):
        return False
    target = S.QR_REFRESH if states.has(probe, S.QR_REFRESH.name) else S.QR_CODE
    if not click(driver, target):
        return False
    log.info("the QR code expired; asked WhatsApp Web for a new one")
    return True


def forget_service_worker(driver: Any) -> None:
    """Unregister the page's service workers and empty its caches (best effort)."""
    with contextlib.suppress(Exception):
        driver.execute_async_script(FORGET_SERVICE_WORKER_JS)


def refusal_error(driver: Any, probe: dict[str, Any], settings: Settings) -> web_errors.UnsupportedBrowser:
    """The one line for a browser WhatsApp refused: what it said, the user agent, and the fix."""
    ua = ""
    with contextlib.suppress(Exception):
        ua = str(driver.execute_script("return navigator.userAgent") or "")
    found = dom.match_text(str(probe.get("text") or ""), "unsupported_browser")
    fix = (
        "WABULK_USER_AGENT is set: unset it or give a normal Chrome user agent"
        if settings.user_agent
        else "set WABULK_USER_AGENT to a normal Chrome user agent, or run with a display (WABULK_HEADLESS=0)"
    )
    return web_errors.UnsupportedBrowser(
        f"WhatsApp Web refused this browser ({found!r}; user agent {ua or 'unknown'!r}): {fix}"
    )


def page_error(probe: dict[str, Any], profile_dir: Path, session: str) -> web_errors.PageError:
    """The one line for an error screen that a reload did not clear."""
    if states.page_error(probe) == "storage_full":
        return web_errors.PageError(
            "WhatsApp Web says the browser storage is full (reloaded once): free disk space where the "
            f"profile lives ({profile_dir})"
        )
    return web_errors.PageError(
        "WhatsApp Web shows 'A database error occurred' (reloaded once): restart wabulk; if it stays, "
        f"link the session again with `wabulk login --session {session}`"
    )
