"""Every Graph API error code a bulk sender meets, and wabulk's reaction to it (reference §5).

The reaction decides what happens to the message, the job and the account:

- ``RECIPIENT``: this message failed for this recipient; not retried; the job goes on.
- ``TRANSIENT``: the request was rejected (no wamid issued), so sending it again is safe: retried with
  backoff within the message's bounded attempts. 130429 (throughput) and 131056 (pair rate) are Meta
  asking us to slow down, not a fault of the message: they do not use up its attempts.
- ``ACCOUNT``: the sending account (session) cannot send; it is paused, no message is burnt.
- ``JOB``: the job's template or payload is wrong; the job is paused after at most 3 requests, its
  messages stay pending.

Build on the code, never on the HTTP status or the title (Meta's own advice). ``error_class`` is
``graph_<code>`` everywhere (queue, status, export, dashboard).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wabulk.errors import WabulkError

RECIPIENT = "recipient"
TRANSIENT = "transient"
ACCOUNT = "account"
JOB = "job"
REACTIONS = (RECIPIENT, TRANSIENT, ACCOUNT, JOB)

# Codes that mean "slow down": retried without using up an attempt.
FREE_RETRY_CODES = frozenset({130429, 131056})


@dataclass(frozen=True)
class Reaction:
    """What one Graph code means for wabulk: the reaction, a one-line reason and how a person goes on."""

    kind: str
    reason: str
    fix: str = ""


_TOKEN_FIX = "set a working WABULK_CLOUD_TOKEN, then 'wabulk login --cloud' or 'wabulk resume --session'"
_ACCOUNT_FIX = "check the number in WhatsApp Manager, then 'wabulk resume --session'"
_TEMPLATE_FIX = "fix the template (wabulk templates sync), then 'wabulk resume' the job"

# The reference's table (§5). Codes 200–299 (permissions) are handled by range in :func:`reaction`.
TABLE: dict[int, Reaction] = {
    0: Reaction(ACCOUNT, "the access token is invalid or the app's access was removed", _TOKEN_FIX),
    1: Reaction(TRANSIENT, "the Graph API answered 'unknown error'"),
    2: Reaction(TRANSIENT, "the Graph API is temporarily down or overloaded"),
    3: Reaction(ACCOUNT, "the app lacks a capability or permission for this number", _ACCOUNT_FIX),
    4: Reaction(TRANSIENT, "the app made too many Graph calls (app rate limit)"),
    10: Reaction(ACCOUNT, "permission denied or removed for this number", _ACCOUNT_FIX),
    33: Reaction(ACCOUNT, "the business phone number was deleted", _ACCOUNT_FIX),
    100: Reaction(JOB, "the request has an invalid parameter", _TEMPLATE_FIX),
    190: Reaction(ACCOUNT, "the access token expired or is invalid", _TOKEN_FIX),
    368: Reaction(ACCOUNT, "the account is temporarily blocked for policy violations", _ACCOUNT_FIX),
    80007: Reaction(TRANSIENT, "the WhatsApp Business Account hit its rate limit"),
    130403: Reaction(RECIPIENT, "your business blocked this user"),
    130429: Reaction(TRANSIENT, "the number's throughput (messages per second) was exceeded"),
    130472: Reaction(RECIPIENT, "the user is part of a Meta marketing experiment; not sent"),
    130497: Reaction(RECIPIENT, "the business may not message users in this country"),
    131000: Reaction(TRANSIENT, "the Graph API failed to send the message (unknown error)"),
    131005: Reaction(ACCOUNT, "access denied for this number", _ACCOUNT_FIX),
    131008: Reaction(JOB, "a required parameter is missing", _TEMPLATE_FIX),
    131009: Reaction(RECIPIENT, "a parameter value is invalid (e.g. the number's format)"),
    131016: Reaction(TRANSIENT, "the service is temporarily unavailable"),
    131021: Reaction(RECIPIENT, "the recipient is the sending number itself"),
    131026: Reaction(RECIPIENT, "undeliverable: not on WhatsApp, an old app, or the user blocked you"),
    131030: Reaction(RECIPIENT, "the recipient is not in the test number's allowed list"),
    131031: Reaction(ACCOUNT, "the business account is locked", _ACCOUNT_FIX),
    131037: Reaction(ACCOUNT, "the number needs an approved display name", _ACCOUNT_FIX),
    131042: Reaction(ACCOUNT, "a payment or billing problem on the business account", _ACCOUNT_FIX),
    131045: Reaction(ACCOUNT, "the phone number's registration is incomplete (certificate)", _ACCOUNT_FIX),
    131047: Reaction(
        RECIPIENT, "more than 24 hours since the user last wrote: only a template can reach them"
    ),
    131048: Reaction(ACCOUNT, "the number is spam rate limited (low quality)", _ACCOUNT_FIX),
    131049: Reaction(
        RECIPIENT, "not delivered to keep the ecosystem healthy (marketing cap); retry after 24 h"
    ),
    131050: Reaction(RECIPIENT, "the user stopped marketing messages from you"),
    131051: Reaction(RECIPIENT, "unsupported message type"),
    131052: Reaction(RECIPIENT, "the user's media could not be downloaded"),
    131053: Reaction(JOB, "the media could not be uploaded or fetched (URL, type or size)", _TEMPLATE_FIX),
    131056: Reaction(TRANSIENT, "too many messages to this recipient in a short time (pair rate limit)"),
    131057: Reaction(TRANSIENT, "the account is in maintenance (e.g. a throughput upgrade)"),
    131063: Reaction(
        JOB, "marketing templates are disabled on the Cloud API for this account", _TEMPLATE_FIX
    ),
    131064: Reaction(ACCOUNT, "messaging limit hit after template classification violations", _ACCOUNT_FIX),
    132000: Reaction(JOB, "the number of template parameters does not match the template", _TEMPLATE_FIX),
    132001: Reaction(JOB, "the template does not exist in this language or is not approved", _TEMPLATE_FIX),
    132005: Reaction(RECIPIENT, "the filled-in template text is too long"),
    132007: Reaction(JOB, "the template's content violates WhatsApp policy", _TEMPLATE_FIX),
    132012: Reaction(JOB, "a template parameter has the wrong format", _TEMPLATE_FIX),
    132015: Reaction(JOB, "the template is paused for low quality", _TEMPLATE_FIX),
    132016: Reaction(JOB, "the template was disabled for low quality", _TEMPLATE_FIX),
    132018: Reaction(JOB, "a template parameter failed validation", _TEMPLATE_FIX),
    133004: Reaction(TRANSIENT, "the server is temporarily unavailable"),
    133010: Reaction(ACCOUNT, "the business number is not registered on the Cloud API", _ACCOUNT_FIX),
    135000: Reaction(JOB, "the request's parameters are wrong (generic user error)", _TEMPLATE_FIX),
    137000: Reaction(RECIPIENT, "the recipient's identity key changed"),
    2494100: Reaction(TRANSIENT, "the phone number is in maintenance mode"),
}

_PERMISSION = Reaction(ACCOUNT, "the token lacks a permission for this number", _TOKEN_FIX)
_UNLISTED = Reaction(RECIPIENT, "the Graph API refused the message")


def reaction(code: int) -> Reaction:
    """wabulk's reaction to a Graph error code (an unlisted code fails this message only)."""
    found = TABLE.get(code)
    if found is not None:
        return found
    if 200 <= code <= 299:
        return _PERMISSION
    return _UNLISTED


def webhook_reaction(code: int) -> Reaction:
    """The reaction to a code that arrived in a ``failed`` status webhook: Meta had accepted the message,
    so a send again would be a second message: it fails for this recipient (an account-level code also
    pauses the account). Nothing here is retried automatically."""
    found = reaction(code)
    if found.kind in (TRANSIENT, JOB):
        return Reaction(RECIPIENT, found.reason, found.fix)
    return found


def error_class(code: int) -> str:
    """The stable name stored with the message: ``graph_<code>``."""
    return f"graph_{code}"


class CloudError(WabulkError):
    """Base of the Cloud API provider's errors."""


class GraphError(CloudError):
    """The Graph API answered with an error body (a request it *rejected*: no wamid was issued)."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        http_status: int | None = None,
        details: str | None = None,
        fbtrace_id: str | None = None,
        subcode: int | None = None,
    ) -> None:
        self.code = code
        self.graph_message = message
        self.http_status = http_status
        self.details = details
        self.fbtrace_id = fbtrace_id
        self.subcode = subcode
        self.reaction = reaction(code)
        super().__init__(self.line())

    @property
    def kind(self) -> str:
        return self.reaction.kind

    @property
    def error_class(self) -> str:
        return error_class(self.code)

    @property
    def uses_attempt(self) -> bool:
        """False for Meta's slow-down answers (130429, 131056): they say nothing about the message."""
        return self.code not in FREE_RETRY_CODES

    def line(self) -> str:
        """One line a person understands: the reason, Graph's own details, and how to go on."""
        text = f"Graph error {self.code}: {self.reaction.reason}"
        if self.details:
            text += f" ({self.details})"
        if self.reaction.fix:
            text += f"; {self.reaction.fix}"
        return text

    @classmethod
    def from_body(cls, body: Any, http_status: int | None = None) -> GraphError | None:
        """The error in a Graph JSON body (``{"error": {"code": …}}``), or None if it holds none."""
        if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
            return None
        err = body["error"]
        code = err.get("code")
        if not isinstance(code, int) or isinstance(code, bool):
            return None
        data = err.get("error_data") if isinstance(err.get("error_data"), dict) else {}
        details = data.get("details") if isinstance(data.get("details"), str) else None
        sub = err.get("error_subcode")
        return cls(
            code,
            str(err.get("message") or ""),
            http_status=http_status,
            details=details,
            fbtrace_id=str(err["fbtrace_id"]) if err.get("fbtrace_id") else None,
            subcode=sub if isinstance(sub, int) else None,
        )


class TransportError(CloudError):
    """No Graph answer. ``written`` says whether the request may have reached Meta: False (connect refused,
    DNS, TLS, connect timeout, pool timeout) means nothing was sent and a retry is safe; True (read timeout,
    connection cut after the request was written, unreadable 200) means the outcome is **unknown** and the
    message is never POSTed again on its own."""

    def __init__(self, message: str, *, written: bool) -> None:
        super().__init__(message)
        self.written = written


class HttpError(CloudError):
    """An HTTP error status without a Graph error body (a proxy/gateway page, an edge 429). ``written`` is
    True for gateway errors (502/504: the backend may have accepted the request before the gateway gave up),
    so these are handled like an unknown outcome, never re-POSTed blindly."""

    def __init__(self, message: str, *, http_status: int, written: bool) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.written = written
