"""What the simulated Graph API does: accounts, sends, media, templates, faults and the webhooks they cause.

Everything here follows ``whatsapp-cloud-api.md`` (the project's reference on Meta's behaviour); where Meta
leaves a choice open (HTTP status of throttling errors, ``biz_opaque_callback_data`` on failed statuses) the
choice is a config key. The HTTP server (``httpserver.py``) calls :meth:`GraphApp.handle` in its event loop;
tests and the ``/_sim/`` control API call the other public methods from any thread (one lock guards state).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import functools
import hashlib
import heapq
import itertools
import json
import random
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import templates as tpl_mod
from .errors import GraphError, bad_token, http_status, invalid_param, unknown_object, webhook_error
from .httpserver import Cut, Request, Response

CURRENT_VERSION = "v27.0"  # reference §1.8 (Dec 2026)
VERSION_RE = re.compile(r"^v(\d+)\.(\d+)$")
DEFAULT_PHONE_ID = "1234567890"
DEFAULT_WABA_ID = "4455667788"
DEFAULT_BUSINESS_ID = "7766554433"  # the business portfolio owning every WABA unless a test says otherwise
DAY = 86400.0

DEFAULT_CONFIG: dict[str, Any] = {
    # Status webhooks, in milliseconds after the POST was accepted.
    "sent_ms": 20,
    "delivered_ms": 60,
    "read_ms": 150,
    "read_rate": 0.5,  # share of delivered messages that are read
    "skip_delivered_rate": 0.05,  # of read messages: 'delivered' never comes (the user read at once)
    "reorder_rate": 0.05,  # of read messages: 'read' arrives before 'delivered'
    "duplicate_rate": 0.02,  # each status: sent a second time in a later POST
    "duplicate_post_rate": 0.0,  # each acknowledged POST: delivered again (Meta re-delivers to slow ends)
    "callback_on_failed": True,  # biz_opaque_callback_data on 'failed' statuses (Meta does not promise it)
    # Recipients (phone digits) with a fate.
    "not_on_whatsapp": [],  # accepted, then failed by webhook 131026
    "open_windows": [],  # a 24-hour customer service window is open (text allowed, utility free)
    "all_windows_open": False,
    "marketing_capped": [],  # marketing templates fail by webhook 131049
    "us_marketing_blocked": True,  # marketing templates to US numbers are not delivered (since Apr 2025)
    "never_deliver": [],  # 'sent' only (phone off)
    "username_users": [],  # adopted a username: statuses carry recipient_user_id (BSUID), no recipient_id
    "wa_ids": {},  # input digits -> the canonical wa_id the API answers (Brazil/Mexico rewrites)
    "bad_media_links": [],  # link media that Meta's fetcher cannot download: failed by webhook 131053
    # Templates held for quality assessment (pacing).
    "paced_templates": [],
    "held_ms": 500,  # null: held until release_held()
    "held_outcome": "release",  # or "fail" (132015 by webhook, the template gets PAUSED)
    # Account and limits.
    "account_error": None,  # a Graph code every send is refused with (368, 131031, 131048, 131042 …)
    "throttle_http_status": 400,  # HTTP status of 130429/131056/131048/… (Meta's table: 400; 2026: 429)
    "pair_burst": 45,  # 131056 beyond this burst to one recipient …
    "pair_interval_s": 6.0,  # … refilled at one message per this many seconds
    # Reads of WABA endpoints (templates, phone_numbers, the WABA node) per WABA per rolling hour, then 80007.
    # Meta's default is 200 (5,000 for active WABAs); null = unlimited, so tests opt in.
    "waba_reads_per_hour": None,
    # Webhook delivery.
    "webhook_batch_max": 100,  # statuses per POST (Meta: up to 1,000)
    "webhook_batch_ms": 20,  # how often due statuses are gathered into POSTs
    "statuses_per_change": 25,
    "changes_per_entry": 2,
    "webhook_concurrency": 4,
    "webhook_timeout_s": 10.0,
    "webhook_retry_first_s": 0.05,  # a refused POST is retried after this, doubling …
    "webhook_retry_max_delay_s": 30.0,  # … up to this, …
    "webhook_retry_for_s": 7 * DAY,  # … for up to 7 days (then dropped, as Meta does)
    "keep_webhook_bodies": True,  # False for benchmarks: sent_webhooks() then has no bodies
}
NULLABLE = {"account_error", "held_ms", "waba_reads_per_hour"}

PHONE_FIELDS = (
    "id",
    "display_phone_number",
    "verified_name",
    "quality_rating",
    "code_verification_status",
    "status",
    "platform_type",
    "throughput",
    "name_status",
    "whatsapp_business_manager_messaging_limit",
    "messaging_limit_tier",
    "health_status",
    "is_on_biz_app",
    "account_mode",
    "is_official_business_account",
)
PHONE_DEFAULT_FIELDS = (
    "id",
    "display_phone_number",
    "verified_name",
    "quality_rating",
    "code_verification_status",
)
WABA_FIELDS = (
    "id",
    "name",
    "currency",
    "timezone_id",
    "message_template_namespace",
    "account_review_status",
    "whatsapp_business_manager_messaging_limit",
    "owner_business_info",  # the business portfolio that owns the WABA: {"id", "name"}
)
MEDIA_LIMITS: dict[str, int] = {
    "image/jpeg": 5 * 2**20,
    "image/png": 5 * 2**20,
    "image/webp": 500 * 2**10,
    "video/mp4": 16 * 2**20,
    "video/3gpp": 16 * 2**20,
    "audio/aac": 16 * 2**20,
    "audio/mp4": 16 * 2**20,
    "audio/mpeg": 16 * 2**20,
    "audio/amr": 16 * 2**20,
    "audio/ogg": 16 * 2**20,
    "text/plain": 100 * 2**20,
    "application/pdf": 100 * 2**20,
    "application/msword": 100 * 2**20,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": 100 * 2**20,
    "application/vnd.ms-excel": 100 * 2**20,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": 100 * 2**20,
    "application/vnd.ms-powerpoint": 100 * 2**20,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": 100 * 2**20,
}
FAULT_KINDS = ("error", "html", "cut_before", "cut_after", "slow", "garbled")
POST_ACCEPT_KINDS = ("cut_after", "slow", "garbled")
FAULT_ENDPOINTS = ("messages", "media", "account", "templates", "any")
MPS_BY_LEVEL = {"STANDARD": 80, "HIGH": 1000, "NOT_APPLICABLE": 80}


def _check_config(key: str, value: Any) -> Any:
    """``value`` for config ``key``, normalised (phone lists to digits); ValueError if it does not fit."""
    if key not in DEFAULT_CONFIG:
        raise ValueError(f"unknown config key {key!r}")
    default = DEFAULT_CONFIG[key]
    if value is None and key in NULLABLE:
        return None
    if key == "held_outcome":
        if value not in ("release", "fail"):
            raise ValueError("held_outcome must be 'release' or 'fail'")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false")
        return value
    if isinstance(default, (int, float)) or key in NULLABLE:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{key} must be a non-negative number")
        if key.endswith("_rate") and value > 1:
            raise ValueError(f"{key} must be between 0 and 1")
        return value
    if isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
            raise ValueError(f"{key} must be a list of strings")
        if key in ("paced_templates", "bad_media_links"):
            return [str(v) for v in value]
        return [digits(str(v)) for v in value]
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ValueError(f"{key} must be an object")
        return {digits(str(k)): digits(str(v)) for k, v in value.items()}
    raise ValueError(f"{key}: unsupported value")


_NON_DIGITS = re.compile(r"\D+")


def digits(phone: str) -> str:
    """The digits of a phone number as written (``+1 (555) 000-1234`` -> ``15550001234``)."""
    return _NON_DIGITS.sub("", str(phone))


@functools.lru_cache(maxsize=64)
def version_tuple(version: str) -> tuple[int, int]:
    m = VERSION_RE.match(version)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def default_phone(phone_id: str, n: int = 0) -> dict[str, Any]:
    """The facts of a healthy number (STANDARD throughput, GREEN, the 2,000 tier)."""
    return {
        "display_phone_number": f"+1 555-000-{1234 + n:04d}",
        "verified_name": "Wabulk Test Shop",
        "quality_rating": "GREEN",
        "code_verification_status": "VERIFIED",
        "status": "CONNECTED",
        "platform_type": "CLOUD_API",
        "throughput": {"level": "STANDARD"},
        "name_status": "APPROVED",
        "whatsapp_business_manager_messaging_limit": "TIER_2K",
        "messaging_limit_tier": "TIER_1K",  # the per-number field of Graph <= v23.0
        "health_status": {"can_send_message": "AVAILABLE"},
        "is_on_biz_app": False,
        "account_mode": "LIVE",
        "is_official_business_account": False,
        "waba_id": DEFAULT_WABA_ID,
        "mps": None,  # None: from the throughput level (80 / 1,000; 20 on a coexistence number)
    }


@dataclass
class Fault:
    """A scripted fault: the next ``count`` matching requests (or a ``rate`` share of them, or all)."""

    id: int
    kind: str
    endpoint: str = "messages"
    count: int | None = None
    rate: float | None = None
    to: frozenset[str] | None = None
    code: int | None = None
    status: int | None = None
    details: str = ""
    delay_s: float = 5.0
    accepted: bool | None = None
    reset: bool = False
    body: str | None = None
    hits: int = 0

    def public(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v is not None}
        if self.to is not None:
            out["to"] = sorted(self.to)
        return out


TIERS = ("TIER_250", "TIER_2K", "TIER_10K", "TIER_100K", "TIER_UNLIMITED")


def _limit_event(key: str, old: Any, new: Any) -> str | None:
    """The ``phone_number_quality_update`` event a change of a number's facts causes, if any."""
    if key == "whatsapp_business_manager_messaging_limit" and old in TIERS and new in TIERS and old != new:
        return "UPGRADE" if TIERS.index(new) > TIERS.index(old) else "DOWNGRADE"
    if key == "throughput" and isinstance(new, dict) and new.get("level") == "HIGH":
        if not isinstance(old, dict) or old.get("level") != "HIGH":
            return "THROUGHPUT_UPGRADE"
    return None


def _is_us(wa_id: str) -> bool:
    """Whether a wa_id is a US number (+1 with a US area code, not Canada or the Caribbean)."""
    if not wa_id.startswith("1"):
        return False
    import phonenumbers

    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse("+" + wa_id)) == "US"
    except phonenumbers.NumberParseException:
        return False


def _post_accept(fault: Fault) -> bool:
    """Whether ``fault`` acts after the request took effect (the message was accepted)."""
    return fault.kind in POST_ACCEPT_KINDS or (fault.kind == "html" and bool(fault.accepted))


@dataclass
class _Bucket:
    tokens: float
    last: float


# A webhook item waiting in the queue: (due, seq, phone_id, kind, obj); kind: statuses | messages | errors.
# Plain tuples: the heap compares them a million times in a benchmark (seq is unique, so obj never is).
_Due = tuple[float, int, str, str, dict[str, Any]]


class GraphApp:
    """The simulated Graph API. See the package README for the behaviours and the control API."""

    def __init__(
        self,
        *,
        token: str,
        app_secret: str,
        phone_numbers: Iterable[str] | dict[str, dict[str, Any]] | None = None,
        templates: list[dict[str, Any]] | dict[str, list[dict[str, Any]]] | None = None,
        seed: int | None = 0,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.app_secret = app_secret
        self.base_url = ""
        self._init_args = (token, phone_numbers, templates, seed)
        self._init_config = dict(config or {})
        self._reset_state(token, phone_numbers, templates, seed)
        self.configure(self._init_config)

    # ----------------------------------------------------------------------------------------------- state

    def _reset_state(
        self,
        token: str,
        phone_numbers: Iterable[str] | dict[str, dict[str, Any]] | None,
        templates: list[dict[str, Any]] | dict[str, list[dict[str, Any]]] | None,
        seed: int | None,
    ) -> None:
        self.token = token
        self.token_expired = False
        self.config: dict[str, Any] = copy.deepcopy(DEFAULT_CONFIG)
        self.rng = random.Random(seed)
        self.phones: dict[str, dict[str, Any]] = {}
        if phone_numbers is None:
            phone_numbers = [DEFAULT_PHONE_ID]
        items = (
            list(phone_numbers.items())
            if isinstance(phone_numbers, dict)
            else [(str(p), {}) for p in phone_numbers]
        )
        for n, (pid, facts) in enumerate(items):
            phone = default_phone(str(pid), n)
            phone.update(copy.deepcopy(facts))
            self.phones[str(pid)] = phone
        self.wabas: dict[str, dict[str, Any]] = {}
        for phone in self.phones.values():
            self._waba(str(phone["waba_id"]))
        if templates is not None:
            if isinstance(templates, dict):
                for waba_id, tpls in templates.items():
                    self._waba(str(waba_id))["templates"] = [tpl_mod.normalise(t) for t in tpls]
            else:
                for waba in self.wabas.values():
                    waba["templates"] = [tpl_mod.normalise(t) for t in templates]
        self.faults: list[Fault] = []
        self._fault_ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._wamid_prefix = secrets.token_hex(5).upper()
        self.records: list[dict[str, Any]] = []
        self._by_recipient: dict[str, list[dict[str, Any]]] = {}
        self._by_wamid: dict[str, dict[str, Any]] = {}
        self.held: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (record, schedule context)
        self.media: dict[str, dict[str, Any]] = {}
        self.windows: dict[str, float] = {}  # wa_id -> when the customer service window closes
        self.queue: list[_Due] = []
        self.webhooks: list[dict[str, Any]] = []  # every POST attempt (see webhooks.py)
        self.requests = 0
        self._buckets: dict[str, _Bucket] = {}
        self._pair: dict[tuple[str, str], _Bucket] = {}
        self._waba_reads: dict[str, collections.deque[float]] = {}

    def _waba(self, waba_id: str) -> dict[str, Any]:
        if waba_id not in self.wabas:
            self.wabas[waba_id] = {
                "name": "Wabulk Test WABA",
                "currency": "USD",
                "timezone_id": "1",
                "message_template_namespace": hashlib.md5(waba_id.encode()).hexdigest()[:36],
                "account_review_status": "APPROVED",
                "owner_business_info": {"id": DEFAULT_BUSINESS_ID, "name": "Wabulk Test Business"},
                "templates": [tpl_mod.normalise(t) for t in tpl_mod.DEFAULT_TEMPLATES],
            }
        return self.wabas[waba_id]

    def reset(self) -> None:
        """Back to the state the simulator started with (its constructor's config, catalogue, numbers,
        token and seed): no records, faults or webhooks."""
        with self.lock:
            token, phones, templates, seed = self._init_args
            self._reset_state(token, phones, templates, seed)
            self.configure(self._init_config)

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Change config keys (see ``DEFAULT_CONFIG``); ValueError on an unknown key or a bad value."""
        with self.lock:
            for key, value in changes.items():
                self.config[key] = _check_config(key, value)
            return copy.deepcopy(self.config)

    def set_token(self, token: str) -> None:
        """Accept ``token`` from now on (any other one, the previous included, gets 190)."""
        with self.lock:
            self.token = token
            self.token_expired = False

    def expire_token(self) -> None:
        """The token expires: every request gets 190 (subcode 463) until :meth:`set_token`."""
        with self.lock:
            self.token_expired = True

    def set_phone(self, phone_id: str, **facts: Any) -> dict[str, Any]:
        """Change (or add) a number's facts: quality_rating, throughput, status, mps, waba_id …"""
        with self.lock:
            phone = self.phones.get(phone_id)
            if phone is None:
                phone = self.phones[phone_id] = default_phone(phone_id, len(self.phones))
            for key, value in facts.items():
                if key == "throughput" and isinstance(value, str):
                    value = {"level": value}
                if key not in phone:
                    raise ValueError(f"unknown phone number fact {key!r}")
                event = _limit_event(key, phone[key], value)
                phone[key] = value
                if event is not None:
                    self.account_webhook(
                        "phone_number_quality_update",
                        {
                            "display_phone_number": digits(phone["display_phone_number"]),
                            "event": event,
                            "max_daily_conversations_per_business": phone[
                                "whatsapp_business_manager_messaging_limit"
                            ],
                        },
                        waba_id=str(phone["waba_id"]),
                    )
            self._waba(str(phone["waba_id"]))
            self._buckets.pop(phone_id, None)
            return copy.deepcopy(phone)

    def set_waba_owner(self, waba_id: str, business_id: str) -> None:
        """Make business portfolio ``business_id`` the owner of WABA ``waba_id`` (created when new)."""
        with self.lock:
            self._waba(waba_id)["owner_business_info"] = {
                "id": business_id,
                "name": f"Business {business_id}",
            }

    def set_templates(self, templates: list[dict[str, Any]], waba_id: str | None = None) -> None:
        """Replace the template catalogue of one WABA (default: every WABA)."""
        entries = [tpl_mod.normalise(t) for t in templates]
        with self.lock:
            targets = [waba_id] if waba_id else list(self.wabas)
            for wid in targets:
                self._waba(wid)["templates"] = copy.deepcopy(entries)

    def set_template_status(self, name: str, status: str, language: str | None = None) -> int:
        """Set the status (APPROVED, PAUSED, DISABLED …) of a template in every WABA; how many changed.
        Each change is told by a ``message_template_status_update`` webhook, as Meta does."""
        n = 0
        with self.lock:
            for waba_id, waba in self.wabas.items():
                for t in waba["templates"]:
                    if t["name"] == name and (language is None or t["language"] == language):
                        if t["status"] != status:
                            value = {
                                "event": status,
                                "message_template_id": int(t["id"]),
                                "message_template_name": t["name"],
                                "message_template_language": t["language"],
                                "reason": "LOW_QUALITY" if status == "PAUSED" else None,
                            }
                            self.account_webhook("message_template_status_update", value, waba_id=waba_id)
                        t["status"] = status
                        n += 1
        return n

    def account_webhook(self, field: str, value: dict[str, Any], waba_id: str | None = None) -> None:
        """A webhook of another field than ``messages`` (account_update, phone_number_quality_update,
        message_template_status_update …): ``{"field": field, "value": value}`` for the WABA."""
        with self.lock:
            wid = waba_id or str(next(iter(self.phones.values()))["waba_id"])
            self._enqueue(time.time(), f"waba:{wid}", f"field:{field}", value)

    def add_fault(self, kind: str, **spec: Any) -> int:
        """Script a fault (see the README's table); returns its id."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (one of {', '.join(FAULT_KINDS)})")
        endpoint = spec.pop("endpoint", "messages")
        if endpoint not in FAULT_ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r} (one of {', '.join(FAULT_ENDPOINTS)})")
        to = spec.pop("to", None)
        if isinstance(to, str):
            to = [to]
        allowed = {"count", "rate", "code", "status", "details", "delay_s", "accepted", "reset", "body"}
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"unknown fault option(s): {', '.join(sorted(unknown))}")
        if kind == "error" and not isinstance(spec.get("code"), int):
            raise ValueError("an 'error' fault needs an integer code")
        count, rate = spec.get("count"), spec.get("rate")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError("count must be a positive integer")
        if rate is not None and (not isinstance(rate, (int, float)) or not 0 <= rate <= 1):
            raise ValueError("rate must be between 0 and 1")
        with self.lock:
            fault = Fault(
                id=next(self._fault_ids),
                kind=kind,
                endpoint=endpoint,
                to=frozenset(digits(t) for t in to) if to is not None else None,
                **spec,
            )
            self.faults.append(fault)
            return fault.id

    def clear_faults(self) -> None:
        """Remove every scripted fault."""
        with self.lock:
            self.faults.clear()

    def open_window(self, phone: str, hours: float = 24.0) -> None:
        """Open a customer service window with ``phone`` (as if they had written to the business)."""
        with self.lock:
            self.windows[self._wa_id(digits(phone))] = time.time() + hours * 3600

    # ----------------------------------------------------------------------------------------- inspection

    def accepted(self, to: str | None = None) -> list[dict[str, Any]]:
        """Messages accepted (HTTP 200 or accepted before a cut), all or to one recipient, oldest first."""
        with self.lock:
            if to is None:
                recs = self.records
            else:
                recs = self._by_recipient.get(digits(to), [])
            return [dict(r) for r in recs]

    def state(self) -> dict[str, Any]:
        """A summary for ``GET /_sim/state``."""
        with self.lock:
            return {
                "config": copy.deepcopy(self.config),
                "phone_numbers": {k: copy.deepcopy(v) for k, v in self.phones.items()},
                "waba_ids": sorted(self.wabas),
                "faults": [f.public() for f in self.faults],
                "requests": self.requests,
                "accepted": len(self.records),
                "held": len(self.held),
                "media": len(self.media),
                "pending_webhook_items": len(self.queue),
                "webhook_posts": len(self.webhooks),
            }

    # ------------------------------------------------------------------------------------------- routing

    def handle(self, req: Request) -> Any:
        """Answer one Graph API request (a Response, a Cut, or an awaitable of one)."""
        with self.lock:
            self.requests += 1
            parts = [p for p in req.path.split("/") if p]
            version = CURRENT_VERSION
            if parts and VERSION_RE.match(parts[0]):
                version = parts.pop(0)
            try:
                self._check_token(req)
                return self._route(req, version, parts)
            except GraphError as err:
                return self._error(err)

    def _error(self, err: GraphError) -> Response:
        status = err.status or http_status(err.code, self.config["throttle_http_status"])
        return self._json(status, err.body())

    @staticmethod
    def _json(status: int, body: Any) -> Response:
        return Response(
            status,
            json.dumps(body, separators=(",", ":")).encode(),
            headers=[("facebook-api-version", CURRENT_VERSION)],
        )

    def _check_token(self, req: Request) -> None:
        auth = req.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else req.arg("access_token")
        if not token:
            raise GraphError(190, message="An active access token must be used to query this resource.")
        if token != self.token:
            raise bad_token()
        if self.token_expired:
            raise bad_token(expired=True)

    def _route(self, req: Request, version: str, parts: list[str]) -> Any:
        endpoint, answer = self._dispatch(req, version, parts)
        if endpoint == "messages":
            return answer()  # faults are matched inside, once the recipient is known
        fault = self._match_fault(endpoint, None, after=None)
        if fault is None:
            return answer()
        if not _post_accept(fault):
            return self._pre_accept_fault(fault)
        try:
            done = answer()  # the request takes effect (an upload is stored) …
        except GraphError as err:
            done = self._error(err)
        return self._post_accept_fault(fault, done)  # … and its answer is cut, late or garbled

    def _dispatch(self, req: Request, version: str, parts: list[str]) -> tuple[str, Any]:
        """(fault endpoint, a function answering the request)."""
        m = req.method
        if len(parts) == 2 and parts[1] == "messages" and m == "POST":
            return "messages", lambda: self._send(req, version, parts[0])
        if len(parts) == 2 and parts[1] == "media" and m == "POST":
            return "media", lambda: self._upload(req, parts[0])
        if len(parts) == 2 and parts[1] == "message_templates" and m == "GET":
            return "templates", lambda: self._templates(req, version, parts[0])
        if len(parts) == 2 and parts[1] == "phone_numbers" and m == "GET":
            return "account", lambda: self._phone_numbers(req, version, parts[0])
        if len(parts) == 1 and parts[0] == "debug_token" and m == "GET":
            return "account", lambda: self._debug_token(req)
        if len(parts) == 1 and m == "GET":
            return "account", lambda: self._get_node(req, version, parts[0])
        if len(parts) == 1 and m == "DELETE" and parts[0] in self.media:
            return "media", lambda: self._delete_media(parts[0])
        if (
            parts
            and parts[0] not in self.phones
            and parts[0] not in self.wabas
            and parts[0] not in self.media
        ):
            raise unknown_object(parts[0], m.lower())
        raise GraphError(2500, message=f"Unknown path components: /{'/'.join(parts[1:])}")

    def _delete_media(self, media_id: str) -> Response:
        del self.media[media_id]
        return self._json(200, {"success": True})

    # ---------------------------------------------------------------------------------------------- reads

    def _fields(
        self, req: Request, allowed: tuple[str, ...], node_type: str, version: str
    ) -> list[str] | None:
        raw = req.arg("fields")
        if raw is None:
            return None
        fields = [f.strip() for f in raw.split(",") if f.strip()]
        v = version_tuple(version)
        for f in fields:
            gone = (f == "messaging_limit_tier" and v >= (24, 0)) or (
                f == "whatsapp_business_manager_messaging_limit" and v < (24, 0)
            )
            if f not in allowed or gone:
                raise GraphError(
                    100, message=f"(#100) Tried accessing nonexisting field ({f}) on node type ({node_type})"
                )
        return fields

    def _get_node(self, req: Request, version: str, node: str) -> Any:
        if node in self.phones:
            phone = self.phones[node]
            fields = self._fields(req, PHONE_FIELDS, "WhatsAppBusinessPhoneNumber", version)
            out: dict[str, Any] = {}
            for f in fields or PHONE_DEFAULT_FIELDS:
                out[f] = node if f == "id" else copy.deepcopy(phone[f])
            out.setdefault("id", node)
            return self._json(200, out)
        if node in self.wabas:
            self._count_waba_read(node)
            waba = self.wabas[node]
            fields = self._fields(req, WABA_FIELDS, "WhatsAppBusinessAccount", version)
            out = {}
            for f in fields or ("id", "name", "currency", "timezone_id", "message_template_namespace"):
                if f == "id":
                    out["id"] = node
                elif f == "whatsapp_business_manager_messaging_limit":
                    limits = [p[f] for p in self.phones.values() if str(p["waba_id"]) == node and f in p]
                    out[f] = limits[0] if limits else "TIER_250"
                else:
                    out[f] = waba[f]
            out.setdefault("id", node)
            return self._json(200, out)
        if node in self.media:
            m = self.media[node]
            return self._json(
                200,
                {
                    "messaging_product": "whatsapp",
                    "url": f"{self.base_url}/_sim/media/{node}",
                    "mime_type": m["mime_type"],
                    "sha256": m["sha256"],
                    "file_size": m["file_size"],
                    "id": node,
                },
            )
        raise unknown_object(node)

    def _count_waba_read(self, waba_id: str) -> None:
        """80007 beyond ``waba_reads_per_hour`` reads of this WABA's endpoints in the last hour."""
        limit = self.config["waba_reads_per_hour"]
        if limit is None:
            return
        now = time.time()
        reads = self._waba_reads.setdefault(waba_id, collections.deque())
        while reads and reads[0] <= now - 3600:
            reads.popleft()
        if len(reads) >= limit:
            raise GraphError(
                80007, f"WhatsApp Business Account {waba_id} reached its rate limit ({limit}/hour)."
            )
        reads.append(now)

    def _phone_numbers(self, req: Request, version: str, waba_id: str) -> Response:
        if waba_id not in self.wabas:
            raise unknown_object(waba_id)
        self._count_waba_read(waba_id)
        fields = self._fields(req, PHONE_FIELDS, "WhatsAppBusinessPhoneNumber", version)
        data = []
        for pid, phone in self.phones.items():
            if str(phone["waba_id"]) == waba_id:
                row = {
                    f: (pid if f == "id" else copy.deepcopy(phone[f])) for f in fields or PHONE_DEFAULT_FIELDS
                }
                row.setdefault("id", pid)
                data.append(row)
        return self._json(200, {"data": data})

    def _debug_token(self, req: Request) -> Response:
        target = req.arg("input_token") or ""
        wabas = sorted(self.wabas)
        data: dict[str, Any] = {
            "app_id": "100200300400500",
            "type": "SYSTEM_USER",
            "application": "wabulk simulator",
            "expires_at": 0,
            "is_valid": target == self.token and not self.token_expired,
            "scopes": ["whatsapp_business_management", "whatsapp_business_messaging"],
            "granular_scopes": [
                {"scope": "whatsapp_business_management", "target_ids": wabas},
                {"scope": "whatsapp_business_messaging", "target_ids": wabas},
            ],
        }
        return self._json(200, {"data": data})

    def _templates(self, req: Request, version: str, waba_id: str) -> Any:
        if waba_id not in self.wabas:
            raise unknown_object(waba_id)
        self._count_waba_read(waba_id)
        allowed = (
            "id",
            "name",
            "language",
            "status",
            "category",
            "components",
            "parameter_format",
            "quality_score",
            "rejected_reason",
            "sub_category",
        )
        fields = self._fields(req, allowed, "WhatsAppMessageTemplate", version)
        rows = self.wabas[waba_id]["templates"]
        for key in ("name", "language", "status", "category"):
            want = req.arg(key)
            if want:
                rows = [t for t in rows if str(t.get(key, "")).upper() == want.upper()]
        try:
            limit = max(1, min(int(req.arg("limit") or 25), 1000))
            start = int(base64.urlsafe_b64decode((req.arg("after") or "MA==").encode()).decode())
        except ValueError as exc:
            raise invalid_param("Param limit/after is invalid.") from exc
        page = rows[start : start + limit]
        body: dict[str, Any] = {"data": [tpl_mod.render(t, fields) for t in page]}
        cursor = lambda i: base64.urlsafe_b64encode(str(i).encode()).decode()  # noqa: E731
        body["paging"] = {"cursors": {"before": cursor(start), "after": cursor(start + len(page))}}
        if start + len(page) < len(rows):
            query = [f"limit={limit}", f"after={cursor(start + len(page))}"]
            for key in ("fields", "name", "language", "status", "category"):
                if req.arg(key):
                    query.append(f"{key}={req.arg(key)}")
            body["paging"]["next"] = (
                f"{self.base_url}/{version}/{waba_id}/message_templates?{'&'.join(query)}"
            )
        return self._json(200, body)

    # --------------------------------------------------------------------------------------------- faults

    def _match_fault(self, endpoint: str, to: str | None, *, after: bool | None) -> Fault | None:
        """The first fault matching this request (using up one of its ``count``). ``after``: only faults
        that act after the message was accepted (True), only those before (False), any (None)."""
        for fault in self.faults:
            if fault.endpoint not in (endpoint, "any"):
                continue
            if after is not None and _post_accept(fault) != after:
                continue
            if fault.to is not None and (to is None or to not in fault.to):
                continue
            if fault.rate is not None and self.rng.random() >= fault.rate:
                continue
            fault.hits += 1
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
            return fault
        return None

    def _pre_accept_fault(self, fault: Fault) -> Response | Cut:
        """The answer to a request refused by ``fault`` before it took effect."""
        if fault.kind == "error":
            assert fault.code is not None
            raise GraphError(fault.code, fault.details, status=fault.status)
        if fault.kind == "html":
            return self._html(fault.status or 502)
        return Cut(reset=fault.reset)  # cut_before

    def _post_accept_fault(self, fault: Fault, done: Response) -> Any:
        """What replaces the answer ``done`` of a request that took effect."""
        if fault.kind == "slow":
            return self._late(fault.delay_s, done)
        if fault.kind == "html":
            return self._html(fault.status or 504)
        if fault.kind == "garbled":
            return Response(200, (fault.body or '{"messaging_product":"whatsapp","contacts":[{"in').encode())
        return Cut(reset=fault.reset)  # cut_after

    @staticmethod
    def _html(status: int) -> Response:
        phrase = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}.get(status, "Error")
        body = f"<html><head><title>{status} {phrase}</title></head><body><h1>{phrase}</h1></body></html>"
        return Response(status, body.encode(), "text/html; charset=utf-8")

    @staticmethod
    async def _late(delay_s: float, resp: Response) -> Response:
        await asyncio.sleep(delay_s)
        return resp

    # ---------------------------------------------------------------------------------------------- sends

    def _phone_or_error(self, phone_id: str, method: str) -> dict[str, Any]:
        phone = self.phones.get(phone_id)
        if phone is None:
            raise unknown_object(phone_id, method)
        return phone

    def _mps(self, phone: dict[str, Any]) -> float:
        if phone.get("mps"):
            return float(phone["mps"])
        if phone.get("is_on_biz_app"):
            return 20.0
        level = (phone.get("throughput") or {}).get("level", "STANDARD")
        return float(MPS_BY_LEVEL.get(level, 80))

    @staticmethod
    def _take(bucket: _Bucket, rate: float, cap: float, now: float) -> bool:
        bucket.tokens = min(cap, bucket.tokens + (now - bucket.last) * rate)
        bucket.last = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    def _wa_id(self, to_digits: str) -> str:
        return str(self.config["wa_ids"].get(to_digits, to_digits))

    def _window_open(self, wa_id: str, now: float) -> bool:
        if self.config["all_windows_open"] or wa_id in self.config["open_windows"]:
            return True
        return self.windows.get(wa_id, 0.0) > now

    def _send(self, req: Request, version: str, phone_id: str) -> Any:
        phone = self._phone_or_error(phone_id, "post")
        try:
            body = json.loads(req.body or b"{}")
        except ValueError as exc:
            raise invalid_param("The request body is not valid JSON.") from exc
        if not isinstance(body, dict):
            raise invalid_param("The request body must be a JSON object.")
        to_raw = body.get("to")
        to = digits(str(to_raw)) if isinstance(to_raw, (str, int)) else None
        fault = self._match_fault("messages", to, after=False)
        if fault is not None:
            return self._pre_accept_fault(fault)
        if phone["status"] != "CONNECTED" or phone["platform_type"] != "CLOUD_API":
            raise GraphError(133010, "The phone number is not registered on the Cloud API.")
        if self.config["account_error"] is not None:
            raise GraphError(int(self.config["account_error"]))
        now = time.time()
        mps = self._mps(phone)
        bucket = self._buckets.get(phone_id)
        if bucket is None:
            bucket = self._buckets[phone_id] = _Bucket(mps, now)
        if not self._take(bucket, mps, mps, now):
            raise GraphError(
                130429, f"Cloud API message throughput ({int(mps)} messages/second) has been reached."
            )
        # The request itself.
        if body.get("messaging_product") != "whatsapp":
            raise invalid_param("The parameter messaging_product is required.")
        if body.get("recipient_type", "individual") != "individual":
            raise invalid_param("Param recipient_type must be one of {individual}.")
        if to_raw is None:
            raise invalid_param("The parameter to is required.")
        if (
            not isinstance(to_raw, str)
            or not re.fullmatch(r"[+\d\s\-().]+", to_raw)
            or not 5 <= len(to or "") <= 15
        ):
            raise GraphError(131009, f"Invalid recipient phone number: {to_raw!r}")
        assert to is not None
        if to == digits(phone["display_phone_number"]):
            raise GraphError(131021, "The recipient is the sending business number.")
        callback = body.get("biz_opaque_callback_data")
        if callback is not None and (not isinstance(callback, str) or len(callback) > 512):
            raise invalid_param("Param biz_opaque_callback_data must be a string of at most 512 characters.")
        mtype = body.get("type", "text")
        wa_id = self._wa_id(to)
        category = "service"
        media_failure: str | None = None
        template: dict[str, Any] | None = None
        if mtype == "text":
            text = body.get("text")
            if not isinstance(text, dict) or not isinstance(text.get("body"), str) or not text["body"]:
                raise invalid_param("The parameter text['body'] is required.")
            if len(text["body"]) > 4096:
                raise invalid_param("Param text['body'] must be at most 4096 characters long.")
        elif mtype == "template":
            template = self._check_template(body.get("template"), str(phone["waba_id"]))
            category = str(template["category"]).lower()
            media_failure = self._template_media_failure(body["template"])
        elif mtype in ("image", "document"):
            media = body.get(mtype)
            if not isinstance(media, dict):
                raise invalid_param(f"The parameter {mtype} is required.")
            media_failure = self._media_failure(mtype, media)
            caption = media.get("caption")
            if caption is not None and (not isinstance(caption, str) or len(caption) > 1024):
                raise invalid_param(f"Param {mtype}['caption'] must be at most 1024 characters long.")
        else:
            raise GraphError(131051, f"Message type {mtype!r} is not supported by this simulator.")
        # Per-recipient pair rate limit (after validation: it is counted on messages Meta would send).
        key = (phone_id, wa_id)
        pair = self._pair.get(key)
        if pair is None:
            pair = self._pair[key] = _Bucket(float(self.config["pair_burst"]), now)
        rate = 1.0 / max(float(self.config["pair_interval_s"]), 1e-6)
        if not self._take(pair, rate, float(self.config["pair_burst"]), now):
            raise GraphError(
                131056,
                "Message failed to send because there were too many messages sent from "
                "this phone number to the same phone number in a short period of time.",
            )
        late = self._match_fault("messages", to, after=True)
        rec = self._accept(
            phone_id,
            phone,
            version,
            body,
            to_raw,
            wa_id,
            mtype,
            template,
            category,
            media_failure,
            callback,
            now,
        )
        response: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to_raw, "wa_id": wa_id}],
            "messages": [{"id": rec["wamid"]}],
        }
        if template is not None:
            response["messages"][0]["message_status"] = rec["message_status"]
        ok = self._json(200, response)
        return ok if late is None else self._post_accept_fault(late, ok)

    def _check_template(self, tpl: Any, waba_id: str) -> dict[str, Any]:
        if not isinstance(tpl, dict) or not isinstance(tpl.get("name"), str):
            raise invalid_param("The parameter template['name'] is required.")
        lang = tpl.get("language")
        code = lang.get("code") if isinstance(lang, dict) else None
        if not isinstance(code, str):
            raise invalid_param("The parameter template['language']['code'] is required.")
        match = None
        for t in self.wabas[waba_id]["templates"]:
            if t["name"] == tpl["name"] and t["language"] == code:
                match = t
                break
        if match is None or match["status"] in ("PENDING", "REJECTED", "IN_APPEAL", "PENDING_DELETION"):
            langs = sorted(
                t["language"]
                for t in self.wabas[waba_id]["templates"]
                if t["name"] == tpl["name"] and t["status"] == "APPROVED"
            )
            detail = f"template name ({tpl['name']}) does not exist in {code}"
            if langs:
                detail += f" (approved in: {', '.join(langs)})"
            raise GraphError(132001, detail)
        if match["status"] == "PAUSED":
            raise GraphError(132015, f"Template {tpl['name']} ({code}) is paused because of low quality.")
        if match["status"] == "DISABLED":
            raise GraphError(132016, f"Template {tpl['name']} ({code}) is disabled.")
        if match["status"] != "APPROVED":
            raise GraphError(132001, f"template name ({tpl['name']}) is not approved in {code}")
        tpl_mod.check_send(match, tpl.get("components"))
        return match

    def _media_failure(self, mtype: str, media: dict[str, Any]) -> str | None:
        if ("id" in media) == ("link" in media):
            raise invalid_param(f"Param {mtype} must contain either id or link.")
        if "id" in media:
            if str(media["id"]) not in self.media:
                return f"Media id {media['id']} was not found or has expired."
            return None
        link = media["link"]
        if not isinstance(link, str) or not re.match(r"^https?://", link):
            raise invalid_param(f"Param {mtype}['link'] must be a valid URL.")
        if link in self.config["bad_media_links"]:
            return "Downloading media from weblink failed with http code 404, status message Not Found"
        return None

    def _template_media_failure(self, tpl: dict[str, Any]) -> str | None:
        for comp in tpl.get("components") or []:
            if isinstance(comp, dict) and str(comp.get("type", "")).lower() == "header":
                for p in comp.get("parameters", []):
                    kind = p.get("type") if isinstance(p, dict) else None
                    if kind in ("image", "video", "document") and isinstance(p.get(kind), dict):
                        failure = self._media_failure(kind, p[kind])
                        if failure:
                            return failure
        return None

    def _wamid(self, wa_id: str) -> str:
        # Unique across simulator instances (a random prefix per reset, not drawn from the seeded rng: two
        # runs with one seed against one database must not collide) and cheap (no syscall per message).
        raw = f"{wa_id}\x15\x02\x00\x11\x18\x12{self._wamid_prefix}{next(self._seq):012X}"
        return "wamid.HBgL" + base64.b64encode(raw.encode()).decode().rstrip("=")

    def _accept(
        self,
        phone_id: str,
        phone: dict[str, Any],
        version: str,
        body: dict[str, Any],
        to_raw: str,
        wa_id: str,
        mtype: str,
        template: dict[str, Any] | None,
        category: str,
        media_failure: str | None,
        callback: str | None,
        now: float,
    ) -> dict[str, Any]:
        cfg = self.config
        in_window = self._window_open(wa_id, now)
        paced = template is not None and template["name"] in cfg["paced_templates"]
        rec: dict[str, Any] = {
            "wamid": self._wamid(wa_id),
            "to": to_raw,
            "wa_id": wa_id,
            "phone_number_id": phone_id,
            "type": mtype,
            "payload": body,
            "biz_opaque_callback_data": callback,
            "at": now,
            "version": version,
            "message_status": "held_for_quality_assessment" if paced else "accepted",
            "outcome": "pending",
        }
        self.records.append(rec)
        self._by_wamid[rec["wamid"]] = rec
        self._by_recipient.setdefault(wa_id, []).append(rec)
        if digits(to_raw) != wa_id:
            self._by_recipient.setdefault(digits(to_raw), []).append(rec)
        # What happens next, decided now (the random draws in a fixed order keep a seed reproducible).
        failure: tuple[int, str] | None = None
        if wa_id in cfg["not_on_whatsapp"]:
            failure = (131026, "Message Undeliverable.")
        elif media_failure is not None:
            failure = (131053, media_failure)
        elif template is None and not in_window:
            failure = (
                131047,
                "Message failed to send because more than 24 hours have passed since the "
                "customer last replied to this number.",
            )
        elif category == "marketing" and wa_id in cfg["marketing_capped"] and not in_window:
            failure = (131049, "This message was not delivered to maintain healthy ecosystem engagement.")
        elif category == "marketing" and cfg["us_marketing_blocked"] and _is_us(wa_id):
            failure = (131049, "Marketing template messages are not delivered to US phone numbers.")
        if template is None:
            pricing = {
                "billable": False,
                "pricing_model": "PMP",
                "type": "free_customer_service",
                "category": "service",
            }
        elif category == "utility" and in_window:
            pricing = {
                "billable": False,
                "pricing_model": "PMP",
                "type": "free_customer_service",
                "category": "utility",
            }
        else:
            pricing = {"billable": True, "pricing_model": "PMP", "type": "regular", "category": category}
        ctx = {"failure": failure, "pricing": pricing, "draws": [self.rng.random() for _ in range(6)]}
        if paced:
            if cfg["held_ms"] is None:
                self.held.append((rec, ctx))
                return rec
            if cfg["held_outcome"] == "fail":
                ctx["failure"] = (132015, "Template was paused after early feedback: held message dropped.")
            self._schedule(rec, ctx, now + float(cfg["held_ms"]) / 1000)
        else:
            self._schedule(rec, ctx, now)
        return rec

    def _status(
        self,
        rec: dict[str, Any],
        status: str,
        ts: float,
        pricing: dict[str, Any] | None = None,
        error: tuple[int, str] | None = None,
    ) -> dict[str, Any]:
        st: dict[str, Any] = {"id": rec["wamid"], "status": status, "timestamp": str(int(ts))}
        if rec["wa_id"] in self.config["username_users"]:
            # 2026: for users with a username, statuses may carry the business-scoped id only.
            st["recipient_user_id"] = "US." + hashlib.sha256(rec["wa_id"].encode()).hexdigest()[:16]
        else:
            st["recipient_id"] = rec["wa_id"]
        cb = rec["biz_opaque_callback_data"]
        if cb is not None and (status != "failed" or self.config["callback_on_failed"]):
            st["biz_opaque_callback_data"] = cb
        if pricing is not None:
            st["pricing"] = dict(pricing)
            if version_tuple(rec["version"]) < (24, 0):
                st["conversation"] = {
                    "id": hashlib.md5(rec["wa_id"].encode()).hexdigest(),
                    "origin": {"type": pricing["category"]},
                }
        if error is not None:
            st["errors"] = [webhook_error(*error)]
        return st

    def _schedule(self, rec: dict[str, Any], ctx: dict[str, Any], t0: float) -> None:
        cfg = self.config
        d_read, d_skip, d_reorder, *d_dup = ctx["draws"]
        sent_at = t0 + cfg["sent_ms"] / 1000
        failure = ctx["failure"]
        plan: list[tuple[float, float, dict[str, Any]]] = []  # (arrives, timestamp, status)
        if failure is not None:
            rec["outcome"] = f"failed:{failure[0]}"
            plan.append((sent_at, sent_at, self._status(rec, "failed", sent_at, error=failure)))
        else:
            pricing = ctx["pricing"]
            plan.append((sent_at, sent_at, self._status(rec, "sent", sent_at, pricing)))
            rec["outcome"] = "sent"
            if rec["wa_id"] not in cfg["never_deliver"]:
                delivered_at = t0 + cfg["delivered_ms"] / 1000
                read = d_read < cfg["read_rate"]
                skip = read and d_skip < cfg["skip_delivered_rate"]
                read_at = t0 + max(cfg["read_ms"], cfg["delivered_ms"]) / 1000
                if not skip:
                    arrives = delivered_at
                    if read and d_reorder < cfg["reorder_rate"]:
                        arrives = read_at + cfg["sent_ms"] / 1000 + cfg["webhook_batch_ms"] / 500
                    plan.append(
                        (arrives, delivered_at, self._status(rec, "delivered", delivered_at, pricing))
                    )
                    rec["outcome"] = "delivered"
                if read:
                    plan.append(
                        (read_at, read_at, self._status(rec, "read", read_at, pricing if skip else None))
                    )
                    rec["outcome"] = "read"
        for i, (arrives, _ts, st) in enumerate(plan):
            self._enqueue(arrives, rec["phone_number_id"], "statuses", st)
            if d_dup[i % len(d_dup)] < cfg["duplicate_rate"]:
                self._enqueue(
                    arrives + 3 * cfg["webhook_batch_ms"] / 1000, rec["phone_number_id"], "statuses", st
                )

    def _enqueue(self, due: float, phone_id: str, kind: str, obj: dict[str, Any]) -> None:
        heapq.heappush(self.queue, (due, next(self._seq), phone_id, kind, obj))

    def release_held(self, outcome: str = "release") -> int:
        """Decide the held (paced) messages: ``release`` (they go on normally) or ``fail`` (132015 by webhook
        and the template is PAUSED). Returns how many were held."""
        if outcome not in ("release", "fail"):
            raise ValueError("outcome must be 'release' or 'fail'")
        with self.lock:
            held, self.held = self.held, []
            now = time.time()
            for rec, ctx in held:
                if outcome == "fail":
                    ctx["failure"] = (
                        132015,
                        "Template was paused after early feedback: held message dropped.",
                    )
                    name = rec["payload"]["template"]["name"]
                    self.set_template_status(name, "PAUSED")
                self._schedule(rec, ctx, now)
            return len(held)

    # ------------------------------------------------------------------------------------- other webhooks

    def inbound(self, from_: str, text: str, name: str = "Customer", phone_id: str | None = None) -> str:
        """A customer writes to the business: a ``messages`` webhook with the message (wabulk ignores it),
        and the 24-hour window with that customer opens. Returns the inbound wamid."""
        with self.lock:
            pid = phone_id or next(iter(self.phones))
            wa_id = self._wa_id(digits(from_))
            now = time.time()
            self.windows[wa_id] = now + DAY
            wamid = self._wamid(wa_id)
            obj = {
                "contact": {"profile": {"name": name}, "wa_id": wa_id},
                "message": {
                    "from": wa_id,
                    "id": wamid,
                    "timestamp": str(int(now)),
                    "type": "text",
                    "text": {"body": text},
                },
            }
            self._enqueue(now, pid, "messages", obj)
            return wamid

    def value_error(self, code: int = 130429, details: str = "", phone_id: str | None = None) -> None:
        """A value-level ``errors[]`` webhook (an app/system problem with no wamid)."""
        with self.lock:
            pid = phone_id or next(iter(self.phones))
            self._enqueue(time.time(), pid, "errors", webhook_error(code, details))

    def take_due(self, now: float, max_posts: int = 1) -> list[tuple[bytes, int]]:
        """Pop the webhook items due by ``now`` into at most ``max_posts`` POST bodies:
        ``[(body, statuses)]``.

        Items left over wait for the next round, so a busy receiver gets bigger batches (as from Meta)."""
        with self.lock:
            size = max(1, int(self.config["webhook_batch_max"]))
            items: list[_Due] = []
            while self.queue and self.queue[0][0] <= now and len(items) < size * max_posts:
                items.append(heapq.heappop(self.queue))
            return [self._payload(items[i : i + size]) for i in range(0, len(items), size)]

    def _payload(self, items: list[_Due]) -> tuple[bytes, int]:
        cfg = self.config
        per_change = max(1, int(cfg["statuses_per_change"]))
        per_entry = max(1, int(cfg["changes_per_entry"]))
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for _due, _seq, phone_id, kind, obj in items:
            groups.setdefault((phone_id, kind), []).append(obj)
        by_waba: dict[str, list[dict[str, Any]]] = {}
        for (pid, kind), objs in groups.items():
            if kind.startswith("field:"):  # account-level fields: one change per event
                for obj in objs:
                    by_waba.setdefault(pid.removeprefix("waba:"), []).append(
                        {"field": kind[6:], "value": obj}
                    )
                continue
            phone = self.phones.get(pid) or default_phone(pid)
            for i in range(0, len(objs), per_change):
                chunk = objs[i : i + per_change]
                value: dict[str, Any] = {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": digits(phone["display_phone_number"]),
                        "phone_number_id": pid,
                    },
                }
                if kind == "messages":
                    value["contacts"] = [o["contact"] for o in chunk]
                    value["messages"] = [o["message"] for o in chunk]
                else:
                    value[kind] = chunk
                by_waba.setdefault(str(phone["waba_id"]), []).append({"field": "messages", "value": value})
        entries = []
        for waba_id, changes in by_waba.items():
            for i in range(0, len(changes), per_entry):
                entries.append({"id": waba_id, "changes": changes[i : i + per_entry]})
        body = json.dumps({"object": "whatsapp_business_account", "entry": entries}, separators=(",", ":"))
        return body.encode(), sum(1 for it in items if it[3] == "statuses")

    # ---------------------------------------------------------------------------------------------- media

    def _upload(self, req: Request, phone_id: str) -> Any:
        self._phone_or_error(phone_id, "post")
        fields, files = parse_multipart(req.headers.get("content-type", ""), req.body)
        if fields.get("messaging_product") != "whatsapp":
            raise invalid_param("The parameter messaging_product is required.")
        if "file" not in files:
            raise invalid_param("The parameter file is required.")
        filename, part_type, data = files["file"]
        mime = (fields.get("type") or part_type or "").split(";")[0].strip().lower()
        limit = MEDIA_LIMITS.get(mime)
        if limit is None:
            raise GraphError(
                131053,
                f"Param file must be a file with one of the following types: "
                f"{', '.join(MEDIA_LIMITS)}. Received file of type '{mime}'.",
            )
        if len(data) > limit:
            raise GraphError(131053, f"The file is {len(data)} bytes; {mime} files may be {limit} bytes.")
        if not data:
            raise GraphError(131053, "The file is empty.")
        media_id = str(10**15 + self.rng.randrange(10**15))
        self.media[media_id] = {
            "id": media_id,
            "phone_number_id": phone_id,
            "filename": filename,
            "mime_type": mime,
            "file_size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "at": time.time(),
        }
        return self._json(200, {"id": media_id})

    def uploads(self) -> list[dict[str, Any]]:
        """Every media upload accepted: ``{id, phone_number_id, filename, mime_type, file_size, sha256,
        at}``."""
        with self.lock:
            return [dict(m) for m in self.media.values()]


def parse_multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, str], dict[str, tuple[str, str, bytes]]]:
    """Form fields and files of a ``multipart/form-data`` body:
    ``({name: value}, {name: (filename, type, data)})``."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if "multipart/form-data" not in content_type or m is None:
        raise invalid_param("The request must be multipart/form-data.")
    boundary = b"--" + m.group(1).encode()
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, str, bytes]] = {}
    for part in body.split(boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            k, _, v = line.partition(":")
            if k.strip():
                headers[k.strip().lower()] = v.strip()
        disp = headers.get("content-disposition", "")
        name = re.search(r'name="([^"]*)"', disp)
        if name is None:
            continue
        fn = re.search(r'filename="([^"]*)"', disp)
        if fn is not None:
            files[name.group(1)] = (fn.group(1), headers.get("content-type", ""), data)
        else:
            fields[name.group(1)] = data.decode("utf-8", "replace")
    return fields, files
