"""Starting Chromium: its options and identity (user agent), a local browser or one from a Selenium Grid,
and the checks that turn a wrong install into one clear line (missing binary, driver version mismatch).

Selenium is imported inside functions only.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from wabulk import errors
from wabulk.settings import Settings
from wabulk.web import errors as web_errors

log = logging.getLogger("wabulk.web.browser")

# A Grid browser's --user-data-dir is a path on the NODE, not here: <root>/<session>. Default: the same layout
# as locally (<WABULK_HOME>/sessions), which fits a node that mounts the same persistent volume there.
ENV_REMOTE_PROFILE_ROOT = "WABULK_REMOTE_PROFILE_ROOT"
REMOTE_SESSION_CAPABILITY = "wabulk:session"  # sent with every Grid request (node stereotypes can pin on it)
# How long to keep trying to get a browser from a Grid that is down or full before giving up (seconds),
# and the backoff between tries (doubling, capped: short enough that a stop request is not kept waiting).
ENV_REMOTE_RETRY_SECONDS = "WABULK_REMOTE_RETRY_SECONDS"
REMOTE_RETRY_SECONDS = 60.0
REMOTE_BACKOFF_FIRST, REMOTE_BACKOFF_MAX = 2.0, 10.0
INSTALL_HINT = (
    "install Chromium and its driver (Debian/Ubuntu: apt-get install chromium chromium-driver) "
    "or set WABULK_CHROME_BINARY / WABULK_CHROMEDRIVER"
)

# The user agent of a desktop Chrome on Linux. Since Chrome 110 ("UA reduction") only the major version is
# sent, as MAJOR.0.0.0: exactly what headless Chromium sends, with its "HeadlessChrome" token replaced.
# WhatsApp Web (2026) refuses HeadlessChrome, Electron and WhatsApp/ user agents with "WhatsApp works
# with Google Chrome 100+"; the UA must be a launch flag (a DevTools override comes too late for the page's
# service worker, which then caches the refusal).
CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{major}.0.0.0 Safari/537.36"
)


# --- versions ---------------------------------------------------------------------------------------------

_VERSIONS: dict[str, str | None] = {}


def binary_version(path: str) -> str | None:
    """``<binary> --version`` output (first line), or None when it cannot run."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = (out.stdout or out.stderr).strip().splitlines()
    return line[0].strip() if line else None


def major_version(version: str | None) -> int | None:
    """The major version in a ``Chromium 156.0.8078.108`` / ``ChromeDriver 156.0…`` line."""
    if not version:
        return None
    m = re.search(r"(\d+)\.\d+\.\d+", version)
    return int(m.group(1)) if m else None


_CHECKED_PAIRS: set[tuple[str, str]] = set()


def check_driver_matches(binary: str, driver: str) -> None:
    """ConfigError when chromedriver's major version differs from Chromium's (checked once per process
    and pair: a mismatched driver otherwise fails only after a 30 s "cannot connect" wait, naming nothing)."""
    if (binary, driver) in _CHECKED_PAIRS:
        return
    b, d = binary_version(binary), binary_version(driver)
    bm, dm = major_version(b), major_version(d)
    if d is None:
        raise errors.ConfigError(
            f"chromedriver {driver} does not run (`{driver} --version` failed): {INSTALL_HINT}"
        )
    if bm is not None and dm is not None and bm != dm:
        raise errors.ConfigError(
            f"chromedriver {driver} is version {dm} but Chromium {binary} is version {bm}: install the "
            "matching driver (same major version) or set WABULK_CHROMEDRIVER"
        )
    _CHECKED_PAIRS.add((binary, driver))


# --- identity ---------------------------------------------------------------------------------------------


def chrome_user_agent(version: str | None) -> str | None:
    """A normal desktop Chrome user agent for the browser whose ``--version`` line is ``version``
    (``Chromium 156.0.8078.114 …`` → ``… Chrome/156.0.0.0 Safari/537.36``); None when it has no version."""
    major = major_version(version)
    return None if major is None else CHROME_UA.format(major=major)


def fixed_user_agent(user_agent: str) -> str | None:
    """``user_agent`` with a token WhatsApp refuses replaced (``HeadlessChrome/156…`` → ``Chrome/156…``),
    or None when it carries none."""
    if "HeadlessChrome" not in user_agent:
        return None
    return user_agent.replace("HeadlessChrome", "Chrome")


def local_user_agent(settings: Settings) -> str | None:
    """The user agent a local browser is launched with: ``WABULK_USER_AGENT``, else derived from
    ``<chromium> --version`` (once per process and binary); None when neither is known."""
    if settings.user_agent:
        return settings.user_agent
    binary = settings.chrome_binary
    if not binary or not Path(binary).exists():
        return None
    if binary not in _VERSIONS:
        _VERSIONS[binary] = binary_version(binary)
    return chrome_user_agent(_VERSIONS[binary])


# --- options ----------------------------------------------------------------------------------------------


def build_options(settings: Settings, profile_dir: Path, session: str, *, user_agent: str | None) -> Any:
    """Chromium options for ``session`` on ``profile_dir`` (also used for a remote Grid browser)."""
    from selenium.webdriver.chrome.options import Options

    opts = Options()
    if not settings.remote_url and settings.chrome_binary:
        opts.binary_location = settings.chrome_binary
    opts.add_argument(f"--user-data-dir={profile_dir}")
    if settings.headless:
        opts.add_argument("--headless=new")
        opts.add_argument("--disable-gpu")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        opts.add_argument("--no-sandbox")  # Chromium refuses to start sandboxed as root
    if user_agent:
        opts.add_argument(f"--user-agent={user_agent}")
    for flag in (
        "--disable-blink-features=AutomationControlled",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--no-default-browser-check",
        "--window-size=1366,900",
        "--lang=en-US",
    ):
        opts.add_argument(flag)
    # English UI: the on-page texts wabulk matches are the English ones.
    opts.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    if settings.remote_url:
        # Lets a Grid pin the session to the node holding its profile: a node whose stereotype has
        # "wabulk:session": "<name>" takes only that session; a node without the key takes any.
        opts.set_capability(REMOTE_SESSION_CAPABILITY, session)
    return opts


# --- launching --------------------------------------------------------------------------------------------


def launch(
    settings: Settings, profile_dir: Path, session: str, *, user_agent: str | None
) -> tuple[Any, str | None]:
    """Start the browser; returns ``(driver, user_agent)``, the user agent being the one to launch with
    next time (None: the browser's own is fine).

    Without ``user_agent`` (a Grid node's browser, whose version is not known here, or a local one whose
    version could not be read), the browser's own ``navigator.userAgent`` is read once; when it carries
    ``HeadlessChrome`` the browser is quit and launched again with that token replaced, as a launch flag.
    An explicit ``WABULK_USER_AGENT`` is always used as given.
    """
    from selenium.common.exceptions import SessionNotCreatedException, WebDriverException

    try:
        driver = _start(settings, build_options(settings, profile_dir, session, user_agent=user_agent))
        if user_agent or settings.user_agent:
            return driver, user_agent
        try:
            own = str(driver.execute_script("return navigator.userAgent") or "")
        except Exception:  # noqa: BLE001 - a page problem here must not cost the browser
            return driver, None
        fixed = fixed_user_agent(own)
        if fixed is None:
            return driver, None
        log.info("the browser announces itself as headless (%s); relaunching it as %s", own, fixed)
        _quit(driver)
        return _start(settings, build_options(settings, profile_dir, session, user_agent=fixed)), fixed
    except SessionNotCreatedException as exc:
        msg = exc.msg or str(exc)
        if "only supports" in msg or "version" in msg.lower():
            raise errors.ConfigError(f"Chromium and chromedriver do not match: {msg.strip()}") from exc
        raise web_errors.BrowserError(f"the browser did not start: {msg.strip()}") from exc
    except WebDriverException as exc:
        raise web_errors.BrowserError(f"the browser did not start: {(exc.msg or str(exc)).strip()}") from exc
    except OSError as exc:
        raise web_errors.BrowserError(f"the browser did not start: {exc}") from exc


def _quit(driver: Any) -> None:
    try:
        driver.quit()
    except Exception:  # noqa: BLE001 - it is being thrown away either way
        log.debug("quit failed", exc_info=True)


def _start(settings: Settings, opts: Any) -> Any:
    if settings.remote_url:
        return launch_remote(str(settings.remote_url), opts)
    return launch_local(settings, opts)


def launch_local(settings: Settings, opts: Any) -> Any:
    """A local Chromium through the configured chromedriver (ConfigError naming what is missing)."""
    from selenium import webdriver

    binary, driver_path = settings.chrome_binary, settings.chromedriver
    if not binary or not Path(binary).exists():
        raise errors.ConfigError(f"Chromium not found ({binary or 'not on PATH'}): {INSTALL_HINT}")
    if not driver_path or not Path(driver_path).exists():
        raise errors.ConfigError(f"chromedriver not found ({driver_path or 'not on PATH'}): {INSTALL_HINT}")
    check_driver_matches(binary, driver_path)
    from selenium.webdriver.chrome.service import Service

    # An explicit Service path means Selenium Manager (which would try to download) is never used.
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)


def launch_remote(url: str, opts: Any) -> Any:
    """A browser from the Grid at ``url``. A Grid that is down or full is retried with a doubling backoff
    for ``WABULK_REMOTE_RETRY_SECONDS`` (60 s), a warning per try; then one clear BrowserError line (the
    worker's caller, e.g. the fleet, retries again later). A capability no node offers: ConfigError."""
    from selenium import webdriver

    try:
        budget = float(os.environ.get(ENV_REMOTE_RETRY_SECONDS) or REMOTE_RETRY_SECONDS)
    except ValueError:
        budget = REMOTE_RETRY_SECONDS
    deadline = time.monotonic() + budget
    delay = REMOTE_BACKOFF_FIRST
    while True:
        try:
            return webdriver.Remote(command_executor=url, options=opts)
        except Exception as exc:  # noqa: BLE001 - urllib3/socket errors are not WebDriverExceptions
            why, retry = describe_remote_failure(url, exc)
            if not retry:
                raise errors.ConfigError(why) from exc
            left = deadline - time.monotonic()
            if left <= 0:
                raise web_errors.BrowserError(f"{why} (gave up after {budget:.0f}s of retries)") from exc
            wait = min(delay, left)
            log.warning("%s; retrying in %.0fs", why, wait)
            time.sleep(wait)
            delay = min(REMOTE_BACKOFF_MAX, delay * 2)


def remote_profile_dir(settings: Settings, session: str) -> Path:
    """Where a session's profile lives on the Grid node (``WABULK_REMOTE_PROFILE_ROOT``/<session>)."""
    root = os.environ.get(ENV_REMOTE_PROFILE_ROOT)
    return (Path(root) if root else settings.sessions_dir) / session


def describe_remote_failure(url: str, exc: BaseException) -> tuple[str, bool]:
    """One line saying why the Grid at ``url`` gave no browser, and whether trying again may help
    (down, unreachable, full, timed out: yes; a capability no node offers: no)."""
    msg = " ".join((getattr(exc, "msg", None) or str(exc) or type(exc).__name__).split())
    low = msg.lower()
    if type(exc).__name__ == "SessionNotCreatedException":
        if "timed out" in low or "timeout" in low or "queue" in low or "retry" in low:
            return f"the Selenium Grid at {url} is full (no free chrome slot): {msg[:200]}", True
        if "no nodes support" in low or "capabilit" in low:
            return (f"no node of the Selenium Grid at {url} offers this browser (chrome): {msg[:200]}", False)
        return f"the Selenium Grid at {url} could not start a browser: {msg[:200]}", True
    if "refused" in low or "max retries" in low or "name or service" in low or "failed to establish" in low:
        reason = "connection refused" if "refused" in low else "no connection"
        return f"the Selenium Grid at {url} is unreachable ({reason}; is it running?)", True
    if "timed out" in low or "timeout" in low:
        return f"the Selenium Grid at {url} did not answer in time (down or overloaded): {msg[:160]}", True
    return f"the Selenium Grid at {url} failed: {msg[:200]}", True
