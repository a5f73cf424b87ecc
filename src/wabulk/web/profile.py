"""The persistent Chromium profile of a session: wabulk's own lock on it, and the repairs that are safe only
while that lock is held (orphaned browsers, corrupt state files, another host's Singleton* locks, a service
worker that cached WhatsApp's refusal page).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import time
from pathlib import Path

from wabulk import errors

LOCK_NAME = "wabulk.lock"
PROFILE_STATE_FILES = ("Local State", "Default/Preferences")
# Chromium's own "profile in use" markers: SingletonLock is a symlink to "<hostname>-<pid>".
SINGLETON_FILES = ("SingletonLock", "SingletonCookie", "SingletonSocket")
# Where Chromium keeps the page's service worker (scripts and caches). WhatsApp's worker can cache the
# unsupported-browser page, which then comes back even with a good user agent until this is removed.
SERVICE_WORKER_DIR = "Default/Service Worker"
# Left in the profile when WhatsApp refused the browser: the next launch clears the service worker first.
REFUSED_MARKER = "wabulk-refused-browser"

log = logging.getLogger("wabulk.web.browser")


def is_our_browser(pid: int, profile_dir: Path) -> bool:
    """Whether ``pid`` is a live Chromium running on ``profile_dir`` (Linux /proc; False elsewhere)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"--user-data-dir={profile_dir}".encode() in cmdline


def child_pid(parent: int) -> int | None:
    """The pid of a child process of ``parent`` (Linux /proc; None elsewhere or when there is none)."""
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return None
    for entry in proc_root.iterdir():
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
        if not is_our_browser(pid, profile_dir):
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
        while time.monotonic() < deadline and any(is_our_browser(p, profile_dir) for p in killed):
            time.sleep(0.05)
    return killed


def singleton_owner(profile_dir: Path) -> tuple[str, int | None] | None:
    """``(host, pid)`` named by the profile's ``SingletonLock`` symlink (``<host>-<pid>``), or None."""
    try:
        target = os.readlink(profile_dir / "SingletonLock")
    except OSError:
        return None
    host, sep, pid = target.rpartition("-")
    if not sep:
        return target, None
    return host, int(pid) if pid.isdigit() else None


def clear_foreign_singleton(
    lock: ProfileLock, profile_dir: Path, *, hostname: str | None = None
) -> str | None:
    """Remove Chromium's ``Singleton*`` files when ``SingletonLock`` names ANOTHER host, and return that host.

    A profile moved to another host or container keeps the old host's lock and Chromium then refuses to
    start ("The profile appears to be in use by another Chromium process on another computer"). Only
    done while ``lock`` (wabulk's own lock on this profile) is held: then no wabulk anywhere uses it. A
    lock of this host is left alone: with a live pid another Chromium really runs on the profile, and a
    dead pid's lock Chromium takes over by itself.
    """
    if not lock.held:
        raise errors.SessionBusy(f"not clearing Chromium's lock on {profile_dir}: wabulk's lock is not held")
    owner = singleton_owner(profile_dir)
    if owner is None:
        return None
    host = owner[0]
    if host == (hostname or socket.gethostname()):
        return None
    for name in SINGLETON_FILES:
        with contextlib.suppress(FileNotFoundError):
            (profile_dir / name).unlink()
    log.warning(
        "profile %s carried Chromium's lock from another host (%s, pid %s); removed it (wabulk holds the "
        "profile's lock, so no browser of ours uses it)",
        profile_dir,
        host,
        owner[1] if owner[1] is not None else "?",
    )
    return host


def mark_refused(profile_dir: Path) -> None:
    """Remember that WhatsApp refused the browser on this profile (see :func:`clear_refusal`)."""
    with contextlib.suppress(OSError):
        (profile_dir / REFUSED_MARKER).write_text(f"{time.time():.0f}\n")


def clear_refusal(profile_dir: Path, *, force: bool = False) -> bool:
    """Before a launch on a profile where WhatsApp refused the browser (or always with ``force``): remove
    the page's cached service worker, which may keep serving the refusal even to a good user agent.
    Returns whether a service worker folder was removed. Call only while holding the profile lock."""
    marker = profile_dir / REFUSED_MARKER
    if not (force or marker.exists()):
        return False
    folder = profile_dir / SERVICE_WORKER_DIR
    removed = folder.is_dir()
    if removed:
        shutil.rmtree(folder, ignore_errors=True)
        log.info("removed the cached service worker of %s (WhatsApp had refused the browser)", profile_dir)
    with contextlib.suppress(FileNotFoundError):
        marker.unlink()
    return removed


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
                f"session {self.session!r} is in use by process {holder} on this host (a running `wabulk "
                f"run`, `login` or `doctor --live`; lock {self.path}): stop it, or use another --session"
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
