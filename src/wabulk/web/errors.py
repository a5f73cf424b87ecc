"""Errors only the WhatsApp Web provider raises. The worker and CLI never name these classes: they decide
by the core category each one subclasses (``wabulk.errors``) and by its ``scope`` / ``restart_provider``."""

from __future__ import annotations

from wabulk import exitcodes
from wabulk.errors import (
    SCOPE_ACCOUNT,
    ConfigError,
    ProviderCrashed,
    ProviderDown,
    SessionError,
    TransientSendError,
)


class BrowserError(ProviderDown):
    """The browser or chromedriver could not be started, or died between messages."""


class BrowserCrashed(ProviderCrashed):
    """The browser or chromedriver died while sending."""

    error_class = "browser_crashed"  # stored in databases and exported: never renamed


class SelectorNotFound(TransientSendError):
    """No candidate of a selector matched in time; names the selector and what was tried."""

    error_class = "selector_missing"
    scope = SCOPE_ACCOUNT  # the page changed under our reader: about this account's page, not the job

    def __init__(
        self, name: str, tried: tuple[str, ...] | list[str], timeout: float, debug_path: str | None = None
    ) -> None:
        msg = f"element {name!r} not found after {timeout:g}s (tried: {', '.join(tried)})"
        if debug_path:
            msg += f"; page saved under {debug_path}"
        super().__init__(msg)
        self.name = name
        self.tried = tuple(tried)
        self.timeout = timeout
        self.debug_path = debug_path


class UnsupportedBrowser(ConfigError):
    """WhatsApp Web refused the browser ("WhatsApp works with Google Chrome"): its user agent gave it away
    (HeadlessChrome). Not retried: the fix is a setting (WABULK_USER_AGENT, or a display), so a person
    must act (exit 4: a restart would meet the same refusal)."""

    exit_code = exitcodes.ATTENTION


class PageError(BrowserError):
    """WhatsApp Web shows an error screen instead of the app (database error, browser storage full) and a
    reload did not help."""


class TakeoverFailed(SessionError):
    """WhatsApp is open elsewhere and 'Use here' did not bring this window back."""

    error_class = "takeover"
