"""The browser: Chromium through Selenium on a locked, persistent profile, and the page's state.

Selenium is imported inside functions only, so importing this module (or ``wabulk status``) stays cheap.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import dom, errors
from . import selectors as S
from .settings import Settings, ensure_private_dir

LOADING = "loading"
QR = "qr"
MAIN = "main"
CHAT = "chat"
TAKEOVER_WINDOW = "takeover_window"
TAKEOVER_COMPUTER = "takeover_computer"
LOGGED_OUT = "logged_out"
OFFLINE = "offline"
BLOCKED = "blocked"
UNKNOWN = "unknown"
PAGE_STATES = (
    LOADING,
    QR,
    MAIN,
    CHAT,
    TAKEOVER_WINDOW,
    TAKEOVER_COMPUTER,
    LOGGED_OUT,
    OFFLINE,
    BLOCKED,
    UNKNOWN,
)
LOGGED_IN_STATES = (MAIN, CHAT)

# What the state probe looks for on every poll (kept small: it runs several times a second).
STATE_SELECTORS: tuple[S.Selector, ...] = (
    S.LOADING,
    S.QR_CODE,
    S.QR_CANVAS,
    S.QR_REFRESH,
    S.MAIN,
    S.CHAT,
    S.COMPOSE_BOX,
    S.OFFLINE_ICON,
    S.USE_HERE,
)

LOCK_NAME = "wabulk.lock"

log = logging.getLogger("wabulk.session")

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


def _has(probe: dict[str, Any], name: str) -> bool:
    return int(probe.get("matched", {}).get(name, -1)) >= 0


def decide_state(probe: dict[str, Any]) -> str:
    """Classify a page probe (see :func:`dom.probe`) into one of :data:`PAGE_STATES`.

    Order matters: screens that replace the app (ban, takeover, logout) win over leftovers of the app, the
    QR wins over an offline warning drawn on top of it, and the offline bar wins over the chat under it.
    """
    text = str(probe.get("text") or "")
    dialogs = " ".join(str(d) for d in probe.get("dialogs") or ())
    everything = f"{text} {dialogs}"
    url = str(probe.get("url") or "")
    logged_in = _has(probe, S.MAIN.name) or _has(probe, S.CHAT.name)
    if dom.match_text(everything, "blocked") and not logged_in:
        return BLOCKED
    if dom.match_text(everything, "takeover_window"):
        return TAKEOVER_WINDOW
    if dom.match_text(everything, "takeover_computer"):
        return TAKEOVER_COMPUTER
    if dom.match_text(text, "logged_out") and not logged_in:
        return LOGGED_OUT
    if _has(probe, S.QR_CODE.name) or _has(probe, S.QR_CANVAS.name):
        return LOGGED_OUT if "post_logout=1" in url else QR
    if "post_logout=1" in url and not logged_in:
        return LOGGED_OUT
    if logged_in and (dom.match_text(text, "offline") or _has(probe, S.OFFLINE_ICON.name)):
        return OFFLINE
    if _has(probe, S.CHAT.name):
        return CHAT
    if _has(probe, S.MAIN.name):
        return MAIN
    if _has(probe, S.LOADING.name) or dom.match_text(text, "loading"):
        return LOADING
    if dom.match_text(text, "qr_screen"):
        return QR  # QR screen drawn, canvas not yet
    return UNKNOWN


def _is_our_browser(pid: int, profile_dir: Path) -> bool:
    """Whether ``pid`` is a live Chromium running on ``profile_dir`` (Linux /proc; False elsewhere)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"--user-data-dir={profile_dir}".encode() in cmdline


PROFILE_STATE_FILES = ("Local State", "Default/Preferences")


def repair_profile(profile_dir: Path) -> list[Path]:
    """Move aside Chromium state files that a kill left empty or cut short (they are JSON). chromedriver
    refuses such a profile for good ("cannot parse internal JSON template"), while Chromium simply rebuilds
    the files; the WhatsApp login lives elsewhere in the profile and is kept. Returns what was moved."""
    moved = []
    for name in PROFILE_STATE_FILES:
        path = profile_dir / name
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        try:
            json.loads(raw)
            continue
        except ValueError:
            pass
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        with contextlib.suppress(OSError):
            path.replace(aside)
            moved.append(aside)
    return moved


def reap_orphans(profile_dir: Path) -> list[int]:
    """Kill a Chromium (and its chromedriver) left running on ``profile_dir`` by a wabulk process that died
    (kill -9, OOM): it keeps the profile's SingletonLock, so a new Chromium on the profile would hand over
    to it and exit ("Chrome instance exited"). Call only while holding the profile lock: then no live
    wabulk owns that browser. Returns the pids killed (Linux /proc; nothing elsewhere)."""
    killed: list[int] = []
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return killed
    me = os.getpid()
    for entry in proc_root.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        if not _is_our_browser(pid, profile_dir):
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            if (proc_root / str(ppid) / "comm").read_text().strip() == "chromedriver":
                os.kill(ppid, signal.SIGKILL)  # the orphaned driver would otherwise linger forever
                killed.append(ppid)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    if killed:
        # The kernel needs a moment to let the profile go; the SingletonLock of a dead pid is then stale
        # and Chromium takes it over.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(_is_our_browser(p, profile_dir) for p in killed):
            time.sleep(0.05)
    return killed


# --- the profile lock ------------------------------------------------------------------------------------


class ProfileLock:
    """An exclusive ``flock`` on ``<profile>/wabulk.lock`` holding the owner's pid.

    The kernel drops the lock when its process dies, so a stale file from a crashed process is simply taken
    over; a live holder makes :meth:`acquire` raise :class:`errors.SessionBusy` naming its pid.
    """

    def __init__(self, path: Path, session: str) -> None:
        self.path = path
        self.session = session
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock (idempotent for this object)."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise errors.SessionBusy(
                f"session {self.session!r} is in use by process {holder} (lock {self.path}); "
                "stop that process or use another --session"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock back (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


# --- versions ---------------------------------------------------------------------------------------------


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
NET_ERROR_SECONDS = 15.0  # how long the browser's network error page may persist before we give up


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


# --- Selenium Grid ----------------------------------------------------------------------------------------


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

    # --- lifecycle -------------------------------------------------------------------------------------
    @property
    def driver(self) -> Any:
        """The live WebDriver (raises BrowserError before :meth:`start`)."""
        if self._driver is None:
            raise errors.BrowserError("the browser is not started")
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
            repair_profile(self.profile_dir)
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
        repair_profile(self.profile_dir)  # the dead browser may have been killed mid-write
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

    def build_options(self) -> Any:
        """Chromium options for this session (also used for a remote Grid browser)."""
        from selenium.webdriver.chrome.options import Options

        opts = Options()
        if not self.settings.remote_url and self.settings.chrome_binary:
            opts.binary_location = self.settings.chrome_binary
        opts.add_argument(f"--user-data-dir={self.browser_profile_dir}")
        if self.settings.headless:
            opts.add_argument("--headless=new")
            opts.add_argument("--disable-gpu")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            opts.add_argument("--no-sandbox")  # Chromium refuses to start sandboxed as root
        for flag in (
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
        if self.settings.remote_url:
            # Lets a Grid pin the session to the node holding its profile: a node whose stereotype has
            # "wabulk:session": "<name>" takes only that session; a node without the key takes any.
            opts.set_capability(REMOTE_SESSION_CAPABILITY, self.name)
        return opts

    def _launch(self) -> Any:
        from selenium import webdriver
        from selenium.common.exceptions import SessionNotCreatedException, WebDriverException

        opts = self.build_options()
        try:
            if self.settings.remote_url:
                return self._launch_remote(opts)
            binary, driver_path = self.settings.chrome_binary, self.settings.chromedriver
            if not binary or not Path(binary).exists():
                raise errors.ConfigError(f"Chromium not found ({binary or 'not on PATH'}): {INSTALL_HINT}")
            if not driver_path or not Path(driver_path).exists():
                raise errors.ConfigError(
                    f"chromedriver not found ({driver_path or 'not on PATH'}): {INSTALL_HINT}"
                )
            check_driver_matches(binary, driver_path)
            from selenium.webdriver.chrome.service import Service

            # An explicit Service path means Selenium Manager (which would try to download) is never used.
            return webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
        except SessionNotCreatedException as exc:
            msg = exc.msg or str(exc)
            if "only supports" in msg or "version" in msg.lower():
                raise errors.ConfigError(f"Chromium and chromedriver do not match: {msg.strip()}") from exc
            raise errors.BrowserError(f"the browser did not start: {msg.strip()}") from exc
        except WebDriverException as exc:
            raise errors.BrowserError(f"the browser did not start: {(exc.msg or str(exc)).strip()}") from exc
        except OSError as exc:
            raise errors.BrowserError(f"the browser did not start: {exc}") from exc

    def _launch_remote(self, opts: Any) -> Any:
        """A browser from the Grid. A Grid that is down or full is retried with a doubling backoff for
        ``WABULK_REMOTE_RETRY_SECONDS`` (60 s), a warning per try; then one clear BrowserError line (the
        worker's caller, e.g. the fleet, retries again later). A capability no node offers: ConfigError."""
        from selenium import webdriver

        url = str(self.settings.remote_url)
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
                    raise errors.BrowserError(f"{why} (gave up after {budget:.0f}s of retries)") from exc
                wait = min(delay, left)
                log.warning("%s; retrying in %.0fs", why, wait)
                time.sleep(wait)
                delay = min(REMOTE_BACKOFF_MAX, delay * 2)

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
        if proc is None:
            return None
        parent = proc.pid
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if len(fields) > 1 and int(fields[1]) == parent:
                return int(entry.name)
        return None

    def open(self, url: str) -> None:
        """Navigate; accepts a beforeunload prompt (WhatsApp asks when a message is still pending)."""
        drv = self.driver
        try:
            drv.get(url)
        except Exception as exc:  # noqa: BLE001
            if dom.is_dead_browser(exc):
                raise errors.BrowserCrashed(f"the browser died while opening the page: {exc}") from exc
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
                raise errors.BrowserCrashed(f"the browser died: {exc}") from exc
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
        except errors.SelectorNotFound:
            raise
        except Exception as exc:  # noqa: BLE001
            if dom.is_dead_browser(exc):
                raise errors.BrowserCrashed(f"the browser died: {exc}") from exc
            raise

    # --- state ----------------------------------------------------------------------------------------
    def probe(self, selectors: tuple[S.Selector, ...] = STATE_SELECTORS) -> dict[str, Any]:
        """One round trip describing the page (see :func:`dom.probe`)."""
        try:
            return dom.probe(self.driver, selectors)
        except Exception as exc:  # noqa: BLE001
            if dom.is_dead_browser(exc):
                raise errors.BrowserCrashed(f"the browser died: {exc}") from exc
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
        except errors.SelectorNotFound as exc:
            raise errors.TakeoverFailed(
                f"WhatsApp is open elsewhere and 'Use here' is missing: {exc}"
            ) from exc
        st, _ = self.wait_state(
            lambda s, p: s in (*LOGGED_IN_STATES, OFFLINE, QR, LOGGED_OUT, BLOCKED), self.timeouts.takeover
        )
        if st not in (*LOGGED_IN_STATES, OFFLINE, QR, LOGGED_OUT, BLOCKED):
            path = self.capture("takeover")
            raise errors.TakeoverFailed(f"'Use here' did not bring WhatsApp back (page: {st}; saved {path})")

    def ensure_ready(self, *, require_login: bool = True) -> str:
        """Bring the page to a usable state and return it: main, chat or offline.

        Restarts a dead browser, reloads a stuck loading screen once, clicks "Use here" on a takeover.
        Raises NotLoggedIn (QR / logged out), Blocked, TakeoverFailed, BrowserError.
        """
        if self._driver is None:
            self.start()
        elif not self.alive():
            self.restart()
        deadline = time.monotonic() + self.timeouts.boot
        loading_since: float | None = None
        net_error_since: float | None = None
        reloaded = False
        takeovers = 0
        while True:
            try:
                st, p = self.snapshot()
            except errors.BrowserCrashed:
                self.restart()
                st, p = self.snapshot()
            now = time.monotonic()
            if st in LOGGED_IN_STATES or (st == OFFLINE):
                return st
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
                    raise errors.TakeoverFailed(
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
                raise errors.BrowserError(
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

        Clicks the reload button of an expired QR and "Use here" on a takeover. Returns False when
        ``should_stop()`` became true or ``timeout`` passed; raises Blocked on a block screen.
        """
        if self._driver is None:
            self.start()
        elif not self.alive():
            self.restart()
        deadline = None if timeout is None else time.monotonic() + timeout
        last_ref: str | None = None
        while True:
            if should_stop is not None and should_stop():
                return False
            try:
                st, p = self.snapshot()
            except errors.BrowserCrashed:
                self.restart()
                continue
            if st in LOGGED_IN_STATES or (st == OFFLINE and _has(p, S.MAIN.name)):
                return True
            if st == BLOCKED:
                raise errors.Blocked("WhatsApp shows a block screen; this account cannot log in now")
            if st in (TAKEOVER_WINDOW, TAKEOVER_COMPUTER):
                self.use_here()
                continue
            if st in (QR, LOGGED_OUT):
                ref = p.get("qr_ref")
                if ref and ref != last_ref:
                    last_ref = str(ref)
                    on_qr(last_ref)
                if _has(p, S.QR_REFRESH.name):
                    # Expired QR: ask for a new one (WhatsApp stops rotating after a few minutes).
                    hit = dom.resolve(self.driver, S.QR_REFRESH)
                    if hit is not None:
                        with contextlib.suppress(Exception):
                            hit[1].click()
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.25)
