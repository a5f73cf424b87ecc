"""``wabulk login --cloud``: check the token and the phone number id against the Graph API, then record the
session as a Cloud API account (its phone number id and the facts read: display number, name, quality,
throughput, messaging limit). Nothing is recorded when the check fails; the token itself never is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wabulk.errors import ConfigError

from .client import GraphClient
from .errors import CloudError, GraphError, HttpError, TransportError
from .limits import CURRENT_FIELD, AccountLimit, account_limit

# Why a token pause can be lifted by a login with a working token (the reasons run/the webhook write).
TOKEN_CODES = (0, 190)
# Throughput level → messages per second (reference §4.1).
MPS_BY_LEVEL = {"STANDARD": 80, "HIGH": 1000}


class LoginFailed(CloudError):
    """The Graph API refused the token or does not know the number: nothing was recorded."""


@dataclass(frozen=True)
class CloudLogin:
    """What ``login --cloud`` found and recorded."""

    session: str
    phone_number_id: str
    display_phone_number: str | None
    verified_name: str | None
    quality_rating: str | None
    throughput: str | None
    messaging_limit: str | None
    unpaused: bool  # a token pause was lifted

    def limit(self) -> AccountLimit:
        """The quality rating, messaging limit and throughput level this login read."""
        return account_limit(
            {
                "quality_rating": self.quality_rating,
                CURRENT_FIELD: self.messaging_limit,
                "throughput": self.throughput,
            }
        )

    def settings(self) -> dict[str, Any]:
        """The session's provider settings (never the token)."""
        return {
            "phone_number_id": self.phone_number_id,
            "display_phone_number": self.display_phone_number,
            "verified_name": self.verified_name,
            "quality_rating": self.quality_rating,
            "throughput": self.throughput,
            "messaging_limit": self.messaging_limit,
        }


def check_number(client: GraphClient, phone_number_id: str) -> dict[str, Any]:
    """The phone number node, or LoginFailed with one line: a refused token (190 …) or an unknown number /
    missing permission (100: Meta cannot tell the two apart)."""
    try:
        return client.phone_number(phone_number_id)
    except GraphError as exc:
        if exc.code in TOKEN_CODES or 200 <= exc.code <= 299:
            raise LoginFailed(
                f"the Graph API refused the token (code {exc.code}): set a valid WABULK_CLOUD_TOKEN"
            ) from None
        if exc.code == 100:
            raise LoginFailed(
                f"phone number id {phone_number_id} does not exist or this token may not use it (code 100);"
                " check the id in WhatsApp Manager > Phone numbers and the token's permissions"
            ) from None
        raise LoginFailed(exc.line()) from None
    except (TransportError, HttpError) as exc:
        raise LoginFailed(f"cannot check the number: {exc}") from None


def _level(facts: dict[str, Any]) -> str | None:
    throughput = facts.get("throughput")
    if isinstance(throughput, dict):
        level = throughput.get("level")
        return str(level) if level else None
    return str(throughput) if throughput else None


def login_cloud(
    db: Path, session: str, phone_number_id: str, *, token: str | None, base_url: str | None = None
) -> CloudLogin:
    """Check ``token`` and ``phone_number_id`` and record ``session`` as a Cloud API account. A working
    token lifts a pause that a refused token (190) put on the session."""
    if not token:
        raise ConfigError("WABULK_CLOUD_TOKEN is not set: the Cloud API needs an access token")
    pid = phone_number_id.strip()
    if not pid.isdigit():
        raise LoginFailed(f"a phone number id is a number (WhatsApp Manager > Phone numbers), not {pid!r}")
    with GraphClient(token, base_url=base_url, read_timeout=30.0) as client:
        facts = check_number(client, pid)
    limit = facts.get("whatsapp_business_manager_messaging_limit")
    from wabulk import session as sessions
    from wabulk.queue import Queue

    with Queue(db) as q:
        pause = q.session_pause(session)
        unpaused = False
        if pause is not None and any(f"Graph error {c}:" in pause[1] for c in TOKEN_CODES):
            unpaused = q.resume_session(session)
        result = CloudLogin(
            session=session,
            phone_number_id=pid,
            display_phone_number=_str(facts.get("display_phone_number")),
            verified_name=_str(facts.get("verified_name")),
            quality_rating=_str(facts.get("quality_rating")),
            throughput=_level(facts),
            messaging_limit=_str(limit),
            unpaused=unpaused,
        )
        sessions.record(q, sessions.Session(session, sessions.CLOUD, result.settings()))
    return result


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
