"""``wabulk doctor``: can this machine send, and does WhatsApp Web still look the way wabulk expects?

The report's lines and the checks of wabulk's own files live here; the browser's (binaries, profile, the
live page's selectors) in :mod:`wabulk.web.doctor`."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import errors
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
    """All checks: binaries and versions, files and permissions and, when ``live``, the page's selectors.
    A Cloud API session gets :func:`check_cloud` instead (no browser is involved)."""
    from .web.doctor import check_binaries, check_live

    cloud = _cloud_settings(settings, session_name)
    if cloud is not None:
        return check_cloud(settings, session_name, cloud, live=live)
    checks = check_binaries(settings) + check_files(settings, session_name)
    if live:
        if any(c.level == FAIL for c in checks if c.name in ("browser", "chromedriver", "versions match")):
            checks.append(_fail("live page", "skipped: the browser cannot start"))
        else:
            checks.extend(check_live(settings, session_name, test_phone=test_phone, timeouts=timeouts))
    return checks


# --- Cloud API sessions --------------------------------------------------------------------------------


def _cloud_settings(settings: Settings, session_name: str) -> dict[str, object] | None:
    """The provider settings of ``session_name`` when the database records it as a Cloud API session."""
    if not settings.db.exists():
        return None
    from . import session as sessions
    from .queue import Queue

    try:
        with Queue(settings.db, create=False) as q:
            found = sessions.get(q, session_name)
    except errors.WabulkError:
        return None
    return dict(found.settings) if found.provider == sessions.CLOUD else None


def check_cloud(
    settings: Settings, session_name: str, provider: dict[str, object], *, live: bool = True
) -> list[Check]:
    """A Cloud API session: the token is set (never shown), the number answers (live), its quality rating
    and messaging limit with the unique recipients of the last 24 hours, and the webhook secrets."""
    from . import settings as cfg
    from .cloud.limits import account_limit, describe, portfolio_sessions, recipients_in_window, shared_by
    from .queue import Queue

    out: list[Check] = []
    pid = str(provider.get("phone_number_id") or "")
    token = cfg.cloud_token()
    out.append(
        _ok("token", "WABULK_CLOUD_TOKEN is set")
        if token
        else _fail("token", "WABULK_CLOUD_TOKEN is not set: the Cloud API needs the access token")
    )
    facts: dict[str, object] = dict(provider)
    if live and token and pid:
        from .cloud.client import GraphClient
        from .cloud.errors import CloudError

        try:
            with GraphClient(token, base_url=cfg.graph_url(), read_timeout=30.0) as client:
                answer = client.phone_number(pid)
        except CloudError as exc:
            out.append(_fail("Graph API", f"number {pid}: {exc}"))
        else:
            facts = {**facts, **answer}
            state = answer.get("status") or "status unknown"
            out.append(
                _ok(
                    "Graph API",
                    f"number {pid}: {answer.get('verified_name') or '?'} "
                    f"({answer.get('display_phone_number') or '?'}), {state}",
                )
            )
    facts.setdefault("quality_rating", provider.get("quality_rating"))
    if "whatsapp_business_manager_messaging_limit" not in facts:
        facts["whatsapp_business_manager_messaging_limit"] = provider.get("messaging_limit")
    limit = account_limit(facts)
    with Queue(settings.db, create=False) as q:
        # Meta's limit is the business portfolio's: every session of it counts.
        sharing = portfolio_sessions(session_name, q.session_providers())
        used = len(recipients_in_window(q, sharing))
    line = f"{describe(limit, used)}; {shared_by(provider, sharing)}"
    near = limit.limit is not None and used >= 0.8 * limit.limit
    known = bool(provider.get("portfolio_id") or provider.get("waba_id"))
    if limit.quality == "RED" or near or not limit.reported or not known:
        out.append(_warn("messaging limit", line))
    else:
        out.append(_ok("messaging limit", line))
    if not cfg.cloud_app_secret():
        out.append(
            _warn(
                "webhooks",
                "WABULK_CLOUD_APP_SECRET is not set where this runs: `wabulk serve` refuses "
                "Meta's status webhooks without it",
            )
        )
    else:
        verify = "set" if cfg.cloud_verify_token() else "not set (Meta's handshake will fail)"
        out.append(_ok("webhooks", f"app secret set; verify token {verify}"))
    return out
