"""The Cloud API provider: one claimed message → one POST → what its answer means for the queue.

A :class:`CloudSender` knows one session (a business phone number id), its Graph client and its rate
limiter. :meth:`CloudSender.send` builds the payload (text, template, or uploaded media with a caption),
carries ``biz_opaque_callback_data`` naming the message, waits for the limiter, POSTs and turns the answer
into a :class:`~wabulk.models.CloudOutcome` by the reference's error table (``cloud/errors.py``). It never
retries by itself: the queue and the run loop decide (a message is POSTed again only after a rejection).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wabulk.models import Claim, CloudOutcome
from wabulk.store.cloud import callback_data

from . import errors as ge
from .client import GraphClient
from .limiter import RateLimiter

DEFAULT_SETTLE_SECONDS = 120.0  # how long an unknown outcome waits for a status webhook
MAX_BACKOFF = 300.0
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def e164_plus(phone: str) -> str:
    """``+<E.164>``: the recipient form Meta documents as safe (a number without ``+`` may get the business
    number's country code prepended)."""
    digits = phone.strip()
    return digits if digits.startswith("+") else f"+{digits}"


def build_payload(claim: Claim, *, media_id: str | None = None) -> dict[str, Any]:
    """The POST body for one claimed message (reference §1): a template with its body parameters, a text,
    or the job's uploaded image/document with the message as its caption."""
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": e164_plus(claim.phone),
        "biz_opaque_callback_data": callback_data(claim.message_id, claim.sends),
    }
    if claim.template_name:
        template: dict[str, Any] = {
            "name": claim.template_name,
            "language": {"code": claim.template_lang or "en_US"},
        }
        if claim.params:
            template["components"] = [
                {"type": "body", "parameters": [{"type": "text", "text": p} for p in claim.params]}
            ]
        body["type"] = "template"
        body["template"] = template
    elif media_id is not None and claim.attachment:
        kind = "image" if claim.attachment.lower().endswith(_IMAGE_SUFFIXES) else "document"
        media: dict[str, Any] = {"id": media_id}
        if claim.body:
            media["caption"] = claim.body[:1024]
        if kind == "document":
            media["filename"] = claim.attachment.replace("\\", "/").rsplit("/", 1)[-1]
        body["type"] = kind
        body[kind] = media
    else:
        body["type"] = "text"
        body["text"] = {"body": claim.body, "preview_url": False}
    return body


def backoff(claim: Claim, code: int | None = None, *, rand: Callable[[], float] = random.random) -> float:
    """Seconds before a rejected message is tried again: 4^X for the pair rate limit (131056, Meta's
    advice), else exponential with jitter by attempt."""
    if code == 131056:
        return min(MAX_BACKOFF, 4.0 ** max(0, min(claim.sends - 1, 4)) * (1 + 0.2 * rand()))
    return min(MAX_BACKOFF, 2.0 ** max(0, claim.attempt) * (0.75 + 0.5 * rand()))


@dataclass
class SendReport:
    """One POST's outcome for the queue plus what the run loop must react to."""

    outcome: CloudOutcome
    reaction: str | None = None  # errors.ACCOUNT / errors.JOB when the account or the job must stop
    code: int | None = None
    line: str = ""  # the one-line reason for a person


class CloudSender:
    """Sends claimed messages of one session through the Graph API (thread-safe)."""

    def __init__(
        self,
        client: GraphClient,
        phone_number_id: str,
        *,
        limiter: RateLimiter,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
    ) -> None:
        self.client = client
        self.phone_number_id = phone_number_id
        self.limiter = limiter
        self.settle_seconds = settle_seconds

    def send(
        self, claim: Claim, *, media_id: str | None = None, should_stop: Callable[[], bool] | None = None
    ) -> SendReport:
        """Wait for the rate limiter, POST the message and classify the answer."""
        if not self.limiter.acquire(should_stop):
            return SendReport(CloudOutcome(claim, "release", error="stopping before the POST"))
        try:
            accepted = self.client.send(self.phone_number_id, build_payload(claim, media_id=media_id))
        except ge.GraphError as exc:
            return self._rejected(claim, exc)
        except (ge.TransportError, ge.HttpError) as exc:
            if exc.written:
                return SendReport(
                    CloudOutcome(
                        claim,
                        "unknown",
                        error=str(exc),
                        error_class="unknown_outcome",
                        delay=self.settle_seconds,
                    )
                )
            delay = backoff(claim)
            return SendReport(
                CloudOutcome(claim, "retry", error=str(exc), error_class="graph_unreachable", delay=delay)
            )
        held = accepted.message_status if accepted.message_status not in (None, "accepted") else ""
        return SendReport(
            CloudOutcome(claim, "sent", wamid=accepted.wamid, wa_id=accepted.wa_id, detail=held)
        )

    def _rejected(self, claim: Claim, exc: ge.GraphError) -> SendReport:
        line = exc.line()
        cls = exc.error_class
        if exc.kind == ge.ACCOUNT:
            return SendReport(
                CloudOutcome(claim, "release", error=line, error_class=cls), ge.ACCOUNT, exc.code, line
            )
        if exc.kind == ge.JOB:
            return SendReport(
                CloudOutcome(claim, "release", error=line, error_class=cls), ge.JOB, exc.code, line
            )
        if exc.kind == ge.TRANSIENT:
            if exc.code == 130429:
                delay = self.limiter.throttled_by_meta()
            else:
                delay = backoff(claim, exc.code)
            outcome = CloudOutcome(
                claim, "retry", error=line, error_class=cls, delay=delay, uses_attempt=exc.uses_attempt
            )
            return SendReport(outcome, None, exc.code, line)
        return SendReport(CloudOutcome(claim, "failed", error=line, error_class=cls), None, exc.code, line)
