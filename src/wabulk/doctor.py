"""``wabulk doctor``: can this machine send, and does WhatsApp Web still look the way wabulk expects?

The report's lines and the checks of wabulk's own files live here; the browser's (binaries, profile, the
live page's selectors) in :mod:`wabulk.web.doctor`."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .settings import Settings

if TYPE_CHECKING:
    from .web import dom

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str
    level: str = OK  # ok | warn | fail


def _ok(name: str, detail: str) -> Check:
    return Check(name, True, detail, OK)


def _warn(name: str, detail: str) -> Check:
    return Check(name, True, detail, WARN)


def _fail(name: str, detail: str) -> Check:
    return Check(name, False, detail, FAIL)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def check_files(settings: Settings, session_name: str) -> list[Check]:
    """Profile directory (exists, 0700), database file (0600), logs and debug captures (private)."""
    from .web.doctor import check_profile

    out = check_profile(settings, session_name)
    db = settings.db
    if not db.exists():
        out.append(_ok("database", f"{db} not created yet (the first `wabulk enqueue` creates it)"))
    else:
        mode = _mode(db)
        if mode & 0o177:
            out.append(
                _warn("database", f"{db} is mode {mode:o}: it holds phone numbers; run chmod 600 {db}")
            )
        else:
            out.append(_ok("database", f"{db} (mode {mode:o})"))
    # Logs name sessions and (masked) recipients; debug captures show the page: both private.
    for label, folder in (("logs", settings.logs_dir), ("debug captures", settings.debug_dir)):
        if folder.is_dir():
            wide = [p for p in (folder, *folder.iterdir()) if _mode(p) & (0o077 if p.is_dir() else 0o177)]
            if wide:
                out.append(
                    _warn(
                        label,
                        f"{wide[0]} is mode {_mode(wide[0]):o} ({len(wide)} item(s) readable "
                        f"by others); run chmod -R go-rwx {folder}",
                    )
                )
            else:
                out.append(_ok(label, f"{folder} (private)"))
    if os.access(settings.home, os.W_OK) or not settings.home.exists():
        out.append(_ok("data dir", str(settings.home)))
    else:
        out.append(_fail("data dir", f"{settings.home} is not writable"))
    return out


def run_doctor(
    settings: Settings,
    session_name: str,
    live: bool,
    *,
    test_phone: str | None = None,
    timeouts: dom.Timeouts | None = None,
) -> list[Check]:
    """All checks: binaries and versions, files and permissions and, when ``live``, the page's selectors."""
    from .web.doctor import check_binaries, check_live

    checks = check_binaries(settings) + check_files(settings, session_name)
    if live:
        if any(c.level == FAIL for c in checks if c.name in ("browser", "chromedriver", "versions match")):
            checks.append(_fail("live page", "skipped: the browser cannot start"))
        else:
            checks.extend(check_live(settings, session_name, test_phone=test_phone, timeouts=timeouts))
    return checks
