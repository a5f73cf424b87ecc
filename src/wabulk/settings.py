"""Every setting wabulk has, its environment variable and its default, in one place."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

APP_NAME = "wabulk"

ENV_DB = "WABULK_DB"
ENV_HOME = "WABULK_HOME"
ENV_WEB_URL = "WABULK_WEB_URL"
ENV_CHROME_BINARY = "WABULK_CHROME_BINARY"
ENV_CHROMEDRIVER = "WABULK_CHROMEDRIVER"
ENV_HEADLESS = "WABULK_HEADLESS"
ENV_REMOTE_URL = "WABULK_REMOTE_URL"
ENV_PACE = "WABULK_PACE"
ENV_SESSION = "WABULK_SESSION"
ENV_OPEN_CHAT = "WABULK_OPEN_CHAT"
# The browser's user agent (unset: a normal Chrome UA derived from the browser's own version).
ENV_USER_AGENT = "WABULK_USER_AGENT"
# How often a worker whose account WhatsApp restricts opens a chat again to see whether it lifted (seconds).
ENV_RESTRICTED_RECHECK = "WABULK_RESTRICTED_RECHECK"

DEFAULT_WEB_URL = "https://web.whatsapp.com"
DEFAULT_SESSION = "default"
DEFAULT_PACE = "balanced"
# How the sender opens a chat: the /send?phone= deep link (reloads the app), the in-page New chat drawer,
# or in-page when the page is loaded with a deep-link fallback.
OPEN_CHAT_METHODS = ("deeplink", "inpage", "auto")
DEFAULT_OPEN_CHAT = "auto"
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_LEASE_SECONDS = 120.0
DEFAULT_RESTRICTED_RECHECK = 900.0
# The web provider starts a fresh browser after this many chats (0 = never): a WhatsApp Web page that is
# never reloaded keeps growing (over 1,000 in-page sends Chromium's memory doubled and every send slowed,
# docs/performance.md). A restart costs one WhatsApp Web start-up: seconds, against 100 paced sends.
DEFAULT_RESTART_BROWSER_EVERY = 100
CHROME_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVER_CANDIDATES = ("chromedriver",)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def default_home() -> Path:
    """The data directory: ``WABULK_HOME`` or the platform's user data dir."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False))


def default_db() -> Path:
    """The queue database: ``WABULK_DB`` or ``<home>/wabulk.db``."""
    env = os.environ.get(ENV_DB)
    if env:
        return Path(env).expanduser()
    return default_home() / "wabulk.db"


def _find(candidates: tuple[str, ...]) -> str | None:
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    return None


def parse_bool(value: str | None, default: bool) -> bool:
    """Read a boolean environment value (1/0, true/false, yes/no, on/off)."""
    if value is None or value.strip() == "":
        return default
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    return default


def parse_open_chat(value: str | None) -> str:
    """Read ``WABULK_OPEN_CHAT`` ("deeplink" | "inpage" | "auto"; unset or empty: auto)."""
    if value is None or value.strip() == "":
        return DEFAULT_OPEN_CHAT
    v = value.strip().lower().replace("-", "").replace("_", "")
    if v not in OPEN_CHAT_METHODS:
        from .errors import ConfigError

        raise ConfigError(f"{ENV_OPEN_CHAT} must be one of {', '.join(OPEN_CHAT_METHODS)} (got {value!r})")
    return v


def restricted_recheck_seconds() -> float:
    """``WABULK_RESTRICTED_RECHECK`` (seconds, > 0), else the default of 15 minutes."""
    raw = os.environ.get(ENV_RESTRICTED_RECHECK)
    if raw is None or raw.strip() == "":
        return DEFAULT_RESTRICTED_RECHECK
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        from .errors import ConfigError

        raise ConfigError(f"{ENV_RESTRICTED_RECHECK} must be a number of seconds above 0 (got {raw!r})")
    return value


def check_restart_browser_every(value: int | None) -> int | None:
    """``run --restart-browser-every`` as given (None: the default), refused when negative (BadInput)."""
    if value is not None and value < 0:
        from .errors import BadInput

        raise BadInput(f"--restart-browser-every must be 0 (never) or more, not {value}")
    return value


def default_headless() -> bool:
    """Headless unless a display exists (``WABULK_HEADLESS`` overrides)."""
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return parse_bool(os.environ.get(ENV_HEADLESS), not has_display)


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :meth:`from_env`; override per field with :func:`dataclasses.replace`."""

    db: Path
    home: Path
    web_url: str = DEFAULT_WEB_URL
    chrome_binary: str | None = None
    chromedriver: str | None = None
    headless: bool = True
    remote_url: str | None = None
    pace: str = DEFAULT_PACE
    session: str = DEFAULT_SESSION
    open_chat: str = DEFAULT_OPEN_CHAT
    extra: dict[str, str] = field(default_factory=dict)
    user_agent: str | None = None
    restart_browser_every: int = DEFAULT_RESTART_BROWSER_EVERY  # the web provider's (0 = never)

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from the environment, with defaults for everything unset."""
        return cls(
            db=default_db(),
            home=default_home(),
            web_url=os.environ.get(ENV_WEB_URL) or DEFAULT_WEB_URL,
            chrome_binary=os.environ.get(ENV_CHROME_BINARY) or _find(CHROME_CANDIDATES),
            chromedriver=os.environ.get(ENV_CHROMEDRIVER) or _find(DRIVER_CANDIDATES),
            headless=default_headless(),
            remote_url=os.environ.get(ENV_REMOTE_URL) or None,
            pace=os.environ.get(ENV_PACE) or DEFAULT_PACE,
            session=os.environ.get(ENV_SESSION) or DEFAULT_SESSION,
            open_chat=parse_open_chat(os.environ.get(ENV_OPEN_CHAT)),
            user_agent=(os.environ.get(ENV_USER_AGENT) or "").strip() or None,
        )

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]

    @property
    def sessions_dir(self) -> Path:
        return self.home / "sessions"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def debug_dir(self) -> Path:
        return self.home / "debug"

    def profile_dir(self, session: str) -> Path:
        """The persistent Chromium profile of one WhatsApp session."""
        return self.sessions_dir / session


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable only by the user: profiles are the WhatsApp account."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
    return path


# A message whose send was pressed by a session that has been gone (no live worker) or paused this long is
# reported by ``status --check`` as orphaned: only that account's chat can tell whether it went out.
ENV_ORPHAN_HOURS = "WABULK_ORPHAN_HOURS"
DEFAULT_ORPHAN_HOURS = 6.0


def orphan_after_seconds() -> float:
    """``WABULK_ORPHAN_HOURS`` (default 6) in seconds; a bad value falls back to the default."""
    raw = os.environ.get(ENV_ORPHAN_HOURS, "")
    try:
        hours = float(raw) if raw.strip() else DEFAULT_ORPHAN_HOURS
    except ValueError:
        hours = DEFAULT_ORPHAN_HOURS
    return max(0.0, hours) * 3600.0


# --- The Cloud API provider (issue 19) ------------------------------------------------------------------
# The access token is read from the environment only: never stored in the database, logged, shown by the
# API or by ``doctor`` (a person sets it where wabulk runs).
ENV_CLOUD_TOKEN = "WABULK_CLOUD_TOKEN"
ENV_GRAPH_URL = "WABULK_GRAPH_URL"
ENV_GRAPH_VERSION = "WABULK_GRAPH_VERSION"
# Webhooks: the app secret signs Meta's POSTs (X-Hub-Signature-256); the verify token answers its handshake.
ENV_CLOUD_APP_SECRET = "WABULK_CLOUD_APP_SECRET"
ENV_CLOUD_VERIFY_TOKEN = "WABULK_CLOUD_VERIFY_TOKEN"
# Messages per second per phone number (Meta: 80 by default, 1,000 for upgraded numbers).
ENV_CLOUD_MPS = "WABULK_CLOUD_MPS"
# How long a send POST may wait for Meta's answer before its outcome is unknown (and the claim's lease, which
# must outlast the POST, grows with it).
ENV_GRAPH_READ_TIMEOUT = "WABULK_GRAPH_READ_TIMEOUT"

DEFAULT_GRAPH_URL = "https://graph.facebook.com"
# The current Graph API version (Dec 2026: v27.0, released 2026-11-04; see the Cloud API reference §1.8).
DEFAULT_GRAPH_VERSION = "v27.0"
DEFAULT_CLOUD_MPS = 80.0
MAX_CLOUD_MPS = 1000.0
DEFAULT_GRAPH_READ_TIMEOUT = 60.0


def cloud_token() -> str | None:
    """``WABULK_CLOUD_TOKEN`` (None when unset or blank)."""
    return (os.environ.get(ENV_CLOUD_TOKEN) or "").strip() or None


def graph_url() -> str:
    """``WABULK_GRAPH_URL`` without a trailing slash (default ``https://graph.facebook.com``)."""
    return ((os.environ.get(ENV_GRAPH_URL) or "").strip() or DEFAULT_GRAPH_URL).rstrip("/")


def graph_version() -> str:
    """``WABULK_GRAPH_VERSION`` as ``vNN.N`` ("27.0" is accepted too); default the current version."""
    raw = (os.environ.get(ENV_GRAPH_VERSION) or "").strip()
    if not raw:
        return DEFAULT_GRAPH_VERSION
    version = raw if raw.startswith("v") else f"v{raw}"
    body = version[1:]
    if not body.replace(".", "", 1).isdigit():
        from .errors import ConfigError

        raise ConfigError(f"{ENV_GRAPH_VERSION} must look like v27.0 (got {raw!r})")
    return version


def cloud_app_secret() -> str | None:
    """``WABULK_CLOUD_APP_SECRET`` (None when unset: webhooks are then refused, never accepted unsigned)."""
    return (os.environ.get(ENV_CLOUD_APP_SECRET) or "").strip() or None


def cloud_verify_token() -> str | None:
    """``WABULK_CLOUD_VERIFY_TOKEN`` (None when unset: the webhook handshake is refused)."""
    return (os.environ.get(ENV_CLOUD_VERIFY_TOKEN) or "").strip() or None


def parse_cloud_mps(value: str | float | None) -> float:
    """A per-number rate in messages/second: above 0 and at most 1,000 (Meta's highest throughput level)."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return DEFAULT_CLOUD_MPS
    try:
        rate = float(value)
    except ValueError:
        rate = -1.0
    if not 0 < rate <= MAX_CLOUD_MPS:
        from .errors import ConfigError

        raise ConfigError(
            f"the Cloud API rate must be above 0 and at most {MAX_CLOUD_MPS:.0f} messages/s (got {value!r})"
        )
    return rate


def graph_read_timeout() -> float:
    """``WABULK_GRAPH_READ_TIMEOUT`` in seconds (default 60; above 0 and at most 600)."""
    raw = (os.environ.get(ENV_GRAPH_READ_TIMEOUT) or "").strip()
    if not raw:
        return DEFAULT_GRAPH_READ_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 600:
        from .errors import ConfigError

        raise ConfigError(
            f"{ENV_GRAPH_READ_TIMEOUT} must be a number of seconds above 0, at most 600 (got {raw!r})"
        )
    return seconds


def cloud_mps() -> float:
    """``WABULK_CLOUD_MPS`` (default 80 messages/s per phone number, at most 1,000)."""
    return parse_cloud_mps(os.environ.get(ENV_CLOUD_MPS))
