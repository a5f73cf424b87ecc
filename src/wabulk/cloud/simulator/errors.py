"""Graph API error bodies as Meta writes them (reference ``whatsapp-cloud-api.md`` §5)."""

from __future__ import annotations

import secrets
from typing import Any

TITLES: dict[int, str] = {
    0: "AuthException",
    1: "API Unknown",
    2: "API Service",
    3: "API Method",
    4: "Too many calls",
    10: "Permission Denied",
    33: "Parameter value is not valid",
    100: "Invalid parameter",
    190: "Access token has expired",
    200: "API Permission",
    368: "Temporarily blocked for policies violations",
    80007: "Rate limit issues",
    130403: "Recipient blocked",
    130429: "Rate limit hit",
    130472: "User's number is part of an experiment",
    130497: "Business account is restricted from messaging users in this country",
    131000: "Something went wrong",
    131005: "Access denied",
    131008: "Required parameter is missing",
    131009: "Parameter value is not valid",
    131016: "Service unavailable",
    131021: "Recipient cannot be sender",
    131026: "Message undeliverable",
    131030: "Recipient phone number not in allowed list",
    131031: "Business Account locked",
    131037: "WhatsApp provided number needs display name approval before message can be sent.",
    131042: "Business eligibility payment issue",
    131045: "Incorrect certificate",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131049: "This message was not delivered to maintain healthy ecosystem engagement.",
    131050: "User has stopped marketing messages",
    131051: "Unsupported message type",
    131052: "Media download error",
    131053: "Media upload error",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    131057: "Account in maintenance mode",
    131063: "Marketing templates disabled for this WABA",
    131064: "Messaging limit reached due to template classification violations",
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation",
    132005: "Translated text too long",
    132007: "Template Format Character Policy Violated",
    132012: "Parameter format does not match format in the created template",
    132015: "Template is Paused",
    132016: "Template is Disabled",
    132018: "There was an issue with the parameters in your template.",
    133004: "Server temporarily unavailable",
    133010: "Phone number Not Registered",
    135000: "Generic user error",
    137000: "Identity key hash mismatch",
    2494100: "Phone number in maintenance mode",
    2500: "Unknown path components",
}

# HTTP statuses from Meta's older table; the throttling family is configurable (400 there, 429 in a 2026
# transcription), since a client must key on the code, never on the status.
_STATUS: dict[int, int] = {
    0: 401,
    190: 401,
    2: 503,
    3: 403,
    10: 403,
    368: 403,
    130403: 403,
    130497: 403,
    131000: 500,
    131005: 403,
    131016: 503,
    131031: 403,
    131045: 500,
    131057: 503,
    132001: 404,
    133004: 503,
    2494100: 503,
}
THROTTLING = frozenset({4, 80007, 130429, 131048, 131049, 131056, 131064})


def http_status(code: int, throttle_status: int = 400) -> int:
    """The HTTP status Meta answers a Graph error ``code`` with."""
    if code in THROTTLING:
        return throttle_status
    if 200 <= code <= 299:
        return 403
    return _STATUS.get(code, 400)


def fbtrace_id() -> str:
    """An opaque trace id like Meta's (``AbCdEf…``)."""
    return "A" + secrets.token_urlsafe(16)[:22]


class GraphError(Exception):
    """A Graph error to answer a request with."""

    def __init__(
        self,
        code: int,
        details: str = "",
        *,
        message: str | None = None,
        subcode: int | None = None,
        type_: str = "OAuthException",
        status: int | None = None,
    ) -> None:
        super().__init__(f"({code}) {details or TITLES.get(code, '')}")
        self.code = code
        self.details = details
        self.message = message
        self.subcode = subcode
        self.type = type_
        self.status = status

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {message, type, code, error_data, fbtrace_id}}``."""
        err: dict[str, Any] = {
            "message": self.message or f"(#{self.code}) {TITLES.get(self.code, 'Unknown error')}",
            "type": self.type,
            "code": self.code,
        }
        if self.details:
            err["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        if self.subcode is not None:
            err["error_subcode"] = self.subcode
        err["fbtrace_id"] = fbtrace_id()
        return {"error": err}


def webhook_error(code: int, details: str = "") -> dict[str, Any]:
    """One ``errors[]`` item of a failed status webhook."""
    title = TITLES.get(code, "Unknown error")
    return {
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details or title},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }


def bad_token(expired: bool = False) -> GraphError:
    """Code 190: the token is not (or no longer) valid."""
    if expired:
        return GraphError(
            190,
            message="Error validating access token: Session has expired.",
            subcode=463,
            status=401,
        )
    return GraphError(190, message="Invalid OAuth access token - Cannot parse access token", status=401)


def unknown_object(object_id: str, method: str = "get") -> GraphError:
    """Code 100 subcode 33: an id that does not exist or that this token may not use (indistinguishable)."""
    return GraphError(
        100,
        message=(
            f"Unsupported {method} request. Object with ID '{object_id}' does not exist, cannot be loaded "
            "due to missing permissions, or does not support this operation. Please read the Graph API "
            "documentation at https://developers.facebook.com/docs/graph-api"
        ),
        subcode=33,
        type_="GraphMethodException",
    )


def invalid_param(details: str) -> GraphError:
    """Code 100 with Meta's wording for a bad field of the request."""
    return GraphError(100, details, message=f"(#100) {details}")
