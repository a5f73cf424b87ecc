"""``wabulk login --cloud``: check the token and the phone number id against the Graph API, then record the
session as a Cloud API account (its phone number id and the facts read: display number, name, quality,
throughput, messaging limit, and the WhatsApp Business Account and business portfolio the number belongs
to). Nothing is recorded when the check fails; the token itself never is.

The portfolio matters because Meta's messaging limit belongs to it (since October 2025), shared by every
number of every WABA it owns: wabulk counts the cap over all sessions of one portfolio
(:func:`wabulk.cloud.limits.portfolio_sessions`). The number's WABA is found among ``--waba-id``, the
WABA this session's templates were synced from, or the WABAs the token may manage (``debug_token``), by
listing each one's numbers; its owner is ``GET /{WABA_ID}?fields=owner_business_info``."""

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
    waba_id: str | None = None  # the WhatsApp Business Account of the number (None: not found)
    portfolio_id: str | None = None  # the business portfolio owning that WABA (None: not found)
    portfolio_note: str | None = None  # why the portfolio is not known, for the person logging in

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
            "waba_id": self.waba_id,
            "portfolio_id": self.portfolio_id,
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


# At most this many WABAs are searched for the number (each costs one WABA read of Meta's hourly budget).
MAX_WABAS_SEARCHED = 20


@dataclass(frozen=True)
class Portfolio:
    """Where a number belongs: its WABA and the business portfolio owning it (None: not found, with
    ``note`` saying why)."""

    waba_id: str | None
    portfolio_id: str | None
    note: str | None = None


def find_portfolio(
    client: GraphClient, phone_number_id: str, *, token: str, candidates: list[str] | None = None
) -> Portfolio:
    """The WABA among ``candidates``, else among the token's (``debug_token``), whose numbers include
    ``phone_number_id``, and its owner business portfolio. Never raises for what it cannot find: a login
    goes on without it (the limit is then counted for this number alone)."""
    tried: list[str] = []
    waba_id = _search(client, phone_number_id, [w for w in candidates or [] if w], tried)
    problem = None
    if waba_id is None:
        try:
            wabas = _token_wabas(client, token)
        except CloudError as exc:
            wabas, problem = [], f"the token's accounts could not be read ({exc})"
        waba_id = _search(client, phone_number_id, [w for w in wabas if w not in tried], tried)
    if waba_id is None:
        among = f" among {', '.join(tried)}" if tried else ""
        return Portfolio(
            None, None, problem or f"its WhatsApp Business Account was not found{among} (pass --waba-id)"
        )
    try:
        node = client.get(waba_id, {"fields": "owner_business_info"})
    except CloudError as exc:
        return Portfolio(
            waba_id, None, f"the owner of WhatsApp Business Account {waba_id} is unknown ({exc})"
        )
    owner = node.get("owner_business_info")
    portfolio = str(owner.get("id")) if isinstance(owner, dict) and owner.get("id") else None
    note = None if portfolio else f"WhatsApp Business Account {waba_id} did not name its business portfolio"
    return Portfolio(waba_id, portfolio, note)


def _token_wabas(client: GraphClient, token: str) -> list[str]:
    """The WABAs the token may manage (its ``whatsapp_business_management`` scope's targets)."""
    page = client.get("debug_token", {"input_token": token})
    data = page.get("data")
    for scope in (data.get("granular_scopes") or ()) if isinstance(data, dict) else ():
        if isinstance(scope, dict) and scope.get("scope") == "whatsapp_business_management":
            return [str(t) for t in scope.get("target_ids") or () if str(t).isdigit()]
    return []


def _search(client: GraphClient, phone_number_id: str, wabas: list[str], tried: list[str]) -> str | None:
    """The first of ``wabas`` listing ``phone_number_id`` among its numbers (each read noted in ``tried``)."""
    for waba in wabas:
        if len(tried) >= MAX_WABAS_SEARCHED:
            return None
        tried.append(waba)
        try:
            listed = client.get(f"{waba}/phone_numbers", {"fields": "id"})
        except CloudError:
            continue  # not this one (no permission, unknown): try the next
        if phone_number_id in {str(n.get("id")) for n in listed.get("data") or () if isinstance(n, dict)}:
            return waba
    return None


def login_cloud(
    db: Path,
    session: str,
    phone_number_id: str,
    *,
    token: str | None,
    base_url: str | None = None,
    waba_id: str | None = None,
) -> CloudLogin:
    """Check ``token`` and ``phone_number_id`` and record ``session`` as a Cloud API account, with the WABA
    and business portfolio the number belongs to (searched in ``waba_id``, else the WABA the session's
    templates came from, else the token's). A working token lifts a pause that a refused token (190) put
    on the session."""
    if not token:
        raise ConfigError("WABULK_CLOUD_TOKEN is not set: the Cloud API needs an access token")
    pid = phone_number_id.strip()
    if not pid.isdigit():
        raise LoginFailed(f"a phone number id is a number (WhatsApp Manager > Phone numbers), not {pid!r}")
    if waba_id is not None and not waba_id.strip().isdigit():
        raise LoginFailed(f"--waba-id must be the account's numeric id (got {waba_id!r})")
    from wabulk import session as sessions
    from wabulk.queue import Queue

    candidates = [waba_id.strip()] if waba_id else []
    if not candidates:
        with Queue(db) as q:
            synced = q.catalogue_syncs().get(session)
        candidates = [synced[0]] if synced else []
    with GraphClient(token, base_url=base_url, read_timeout=30.0) as client:
        facts = check_number(client, pid)
        where = find_portfolio(client, pid, token=token, candidates=candidates)
    limit = facts.get("whatsapp_business_manager_messaging_limit")

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
            waba_id=where.waba_id,
            portfolio_id=where.portfolio_id,
            portfolio_note=where.note,
        )
        sessions.record(q, sessions.Session(session, sessions.CLOUD, result.settings()))
    return result


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
