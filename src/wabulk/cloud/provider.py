"""The Cloud API provider: one claimed message → one POST → what its answer means for the queue.

A :class:`CloudSender` knows one session (a business phone number id), its Graph client and its rate
limiter. :meth:`CloudSender.send` builds the payload (text, template, or uploaded media with a caption),
carries ``biz_opaque_callback_data`` naming the message, waits for the limiter, POSTs and turns the answer
into a :class:`~wabulk.models.CloudOutcome` by the reference's error table (``cloud/errors.py``). It never
retries by itself: the queue and the run loop decide (a message is POSTed again only after a rejection).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wabulk.models import Claim, CloudOutcome
from wabulk.store.cloud import EVIDENCE_PREFIX, callback_data

from . import errors as ge
from .answers import Accepted
from .limiter import RateLimiter

if TYPE_CHECKING:
    from .client import GraphClient

DEFAULT_SETTLE_SECONDS = 120.0  # how long an unknown outcome waits for a status webhook
MAX_BACKOFF = 300.0
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def e164_plus(phone: str) -> str:
    """``+<E.164>``: the recipient form Meta documents as safe (a number without ``+`` may get the business
    number's country code prepended)."""
    digits = phone.strip()
    return digits if digits.startswith("+") else f"+{digits}"


def build_payload(claim: Claim, *, media_id: str | None = None) -> dict[str, Any]:
    """The POST body for one claimed message (reference §1): a template with its parameters (body, and
    header and buttons as the job's layout says), a text, or the job's uploaded image/document with the
    message as its caption. For a template whose header is a file, ``media_id`` is that file's upload."""
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
        components = template_components(claim, media_id)
        if components:
            template["components"] = components
        body["type"] = "template"
        body["template"] = template
    elif media_id is not None and claim.attachment:
        kind = "image" if claim.attachment.lower().endswith(_IMAGE_SUFFIXES) else "document"
        media: dict[str, Any] = {"id": media_id}
        if claim.body:
            media["caption"] = claim.body[:1024]
        if kind == "document":
            media["filename"] = _file_name(claim.attachment)
        body["type"] = kind
        body[kind] = media
    else:
        body["type"] = "text"
        body["text"] = {"body": claim.body, "preview_url": False}
    return body


# The parameter object of each button sub_type (reference §1.3; Meta's template-send components).
_BUTTON_PARAM = {"url": "text", "copy_code": "coupon_code", "quick_reply": "payload"}


def template_components(claim: Claim, media_id: str | None = None) -> list[dict[str, Any]]:
    """A template send's ``components``: the header (text values, or the media by link or uploaded id),
    the body's text parameters, then one component per button that takes a parameter. ``claim.params``
    holds the body values, then the header's, then the buttons' (``jobs.template_layout``, m018)."""
    import json

    layout: dict[str, Any] = json.loads(claim.template_layout) if claim.template_layout else {}
    values = list(claim.params)
    nbody = int(layout.get("body", len(values)))
    body, rest = values[:nbody], values[nbody:]
    out: list[dict[str, Any]] = []
    header = layout.get("header")
    if header:
        fmt = str(header.get("format"))
        if fmt == "text":
            n = int(header.get("params", 0))
            texts, rest = rest[:n], rest[n:]
            out.append({"type": "header", "parameters": [{"type": "text", "text": v} for v in texts]})
        else:
            if header.get("source") == "file":
                media: dict[str, Any] = {"id": media_id}
                if fmt == "document" and claim.attachment:
                    media["filename"] = _file_name(claim.attachment)
            else:
                media = {"link": rest[0]}
                rest = rest[1:]
            out.append({"type": "header", "parameters": [{"type": fmt, fmt: media}]})
    if body:
        names = layout.get("names") or ()
        params: list[dict[str, Any]] = [{"type": "text", "text": p} for p in body]
        for param, name in zip(params, names, strict=False):
            param["parameter_name"] = name  # a NAMED template's values are matched by name
        out.append({"type": "body", "parameters": params})
    for (index, sub_type), value in zip(layout.get("buttons") or (), rest, strict=False):
        kind = _BUTTON_PARAM.get(sub_type, "text")
        out.append(
            {
                "type": "button",
                "sub_type": sub_type,
                "index": str(index),
                "parameters": [{"type": kind, kind: value}],
            }
        )
    return out


def _file_name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def backoff(claim: Claim, code: int | None = None, *, rand: Callable[[], float] = random.random) -> float:
    """Seconds before a rejected message is tried again: 4^X for the pair rate limit (131056, Meta's
    advice), else exponential with jitter by attempt."""
    if code == 131056:
        return min(MAX_BACKOFF, 4.0 ** max(0, min(claim.sends - 1, 4)) * (1 + 0.2 * rand()))
    return min(MAX_BACKOFF, 2.0 ** max(0, claim.attempt) * (0.75 + 0.5 * rand()))


def lease_covers_post(claim: Claim, now: float, post_seconds: float) -> bool:
    """Whether ``claim``'s lease still covers a POST started at ``now`` that may take up to ``post_seconds``.
    Once the lease has run out the queue treats the stamped message as abandoned (it fails as
    ``unknown_outcome`` and a person may resend it), so a POST reaching Meta after that would be a second
    copy: a worker never starts a POST its lease does not cover."""
    return claim.lease_until - now > post_seconds


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
        client: GraphClient | None,
        phone_number_id: str,
        *,
        limiter: RateLimiter,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client  # None: only :meth:`report` is used (the run loop POSTs on its own wire)
        self.phone_number_id = phone_number_id
        self.limiter = limiter
        self.settle_seconds = settle_seconds
        self.clock = clock  # the queue's clock: a claim's lease_until is in its time

    def send(
        self, claim: Claim, *, media_id: str | None = None, should_stop: Callable[[], bool] | None = None
    ) -> SendReport:
        """Wait for the rate limiter, POST the message and classify the answer."""
        if self.client is None:
            raise RuntimeError("this CloudSender has no client to send with")
        if not self.limiter.acquire(should_stop):
            return SendReport(CloudOutcome(claim, "release", error="stopping before the POST"))
        # After the rate limiter's wait: the lease may have run out meanwhile (nothing was sent: release).
        if not lease_covers_post(claim, self.clock(), self.client.longest_post):
            return SendReport(
                CloudOutcome(claim, "release", error="the lease ran out before the POST (nothing was sent)")
            )
        try:
            accepted = self.client.send(self.phone_number_id, build_payload(claim, media_id=media_id))
        except ge.CloudError as exc:
            return self.report(claim, exc)
        return self.report(claim, accepted)

    def report(self, claim: Claim, result: Accepted | ge.CloudError) -> SendReport:
        """What one POST's result (its :class:`Accepted` answer, or the error the client raised) means for
        the message, the job and the account."""
        if isinstance(result, ge.GraphError):
            return self._rejected(claim, result)
        if isinstance(result, (ge.TransportError, ge.HttpError)):
            if result.written:
                return SendReport(
                    CloudOutcome(
                        claim,
                        "unknown",
                        error=str(result),
                        error_class="unknown_outcome",
                        delay=self.settle_seconds,
                    )
                )
            delay = backoff(claim)
            return SendReport(
                CloudOutcome(claim, "retry", error=str(result), error_class="graph_unreachable", delay=delay)
            )
        if not isinstance(result, Accepted):
            raise TypeError(f"not a send result: {result!r}")
        held = result.message_status if result.message_status not in (None, "accepted") else ""
        return SendReport(CloudOutcome(claim, "sent", wamid=result.wamid, wa_id=result.wa_id, detail=held))

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


# --- The provider interface (sender.Provider) -----------------------------------------------------------
# ``wabulk run`` sends Cloud API sessions through the fast path (cloud/runner.py: batches, several POSTs in
# flight, templates). This is the one-message-at-a-time provider that ``sender.open_sender("cloud", …)``
# returns, for the worker's generic loop: text and media messages, the same error table, the same rules.


def new_evidence() -> str:
    """An unguessable correlation token, sent as ``biz_opaque_callback_data`` and stored with the stamp."""
    import secrets

    return EVIDENCE_PREFIX + secrets.token_hex(12)


class CloudProvider:
    """:class:`wabulk.sender.Provider` over the Graph API for one session (a phone number id)."""

    kind = "cloud"

    def __init__(
        self,
        session: str,
        phone_number_id: str,
        *,
        token: str | None,
        base_url: str | None = None,
        rate: float = 80.0,
    ) -> None:
        from wabulk.sender import RECEIPTS_PUSHED, VERIFY_PUSHED, Capabilities

        self.session = session
        self.phone_number_id = phone_number_id
        self._token = token
        self._base_url = base_url
        self.capabilities = Capabilities(
            interactive_login=False,
            receipts=RECEIPTS_PUSHED,
            verification=VERIFY_PUSHED,
            attachments=True,
            default_pace="off",
            rate_limit=rate,
            max_in_flight=1,
            # Not here: ``send(phone, body, …)`` carries no template, so a template job's message would go
            # out as its readable body in a plain text. Template jobs go through ``wabulk run``'s Cloud fast
            # path (cloud/runner.py, its own claim), which builds the template payload: ``wabulk run`` on a
            # Cloud session always takes that path, so this provider only meets text and media jobs (the
            # provider contract tests, ``wabulk track``). Carrying templates here too would make two
            # builders of the same payload to keep in step for no sender that needs it.
            templates=False,
        )
        self._limiter = RateLimiter(rate)
        self._client: GraphClient | None = None
        self._media: dict[str, str] = {}
        # evidence -> wamid of the POSTs this provider saw accepted (its own answers, not a guess)
        self._accepted: dict[str, str] = {}

    def start(self) -> None:
        if self._client is None:
            if not self._token:
                from wabulk.errors import ConfigError

                raise ConfigError("WABULK_CLOUD_TOKEN is not set: the Cloud API needs an access token")
            from .client import GraphClient

            self._client = GraphClient(self._token, base_url=self._base_url, max_connections=4)

    def ensure_ready(self) -> None:
        self.start()

    def wait_for_login(
        self,
        on_qr: Callable[[str], None],
        *,
        timeout: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Credentials are settings (the token): never a QR. True once the number answers."""
        self.start()
        assert self._client is not None
        try:
            self._client.phone_number(self.phone_number_id)
        except ge.GraphError as exc:
            raise _translate(exc) from None
        except ge.CloudError:
            return False
        return True

    def send(
        self,
        phone: str,
        body: str,
        *,
        attachment: str | None = None,
        before_send: Callable[[str], None] = lambda evidence: None,
    ) -> Any:
        from pathlib import Path

        from wabulk import errors
        from wabulk.models import TICK_SENT, SendResult

        self.start()
        assert self._client is not None
        media_id = None
        if attachment:
            media_id = self._media.get(attachment)
            if media_id is None:
                try:
                    media_id = self._client.upload_media(self.phone_number_id, Path(attachment))
                except ge.GraphError as exc:
                    raise _translate(exc) from None
                except ge.CloudError as exc:
                    raise errors.TransientSendError(str(exc), error_class="graph_unreachable") from None
                self._media[attachment] = media_id
        evidence = new_evidence()
        claim = Claim(
            message_id=0, job_id=0, worker_id="", attempt=1, phone=phone, body=body, name=None,
            attachment=attachment, lease_until=0.0, session=self.session,
        )  # fmt: skip
        payload = build_payload(claim, media_id=media_id)
        payload["biz_opaque_callback_data"] = evidence
        if not self._limiter.acquire():
            raise errors.TransientSendError("stopping before the POST", error_class="stopping")
        before_send(evidence)  # the durable stamp; if it raises, nothing is sent
        try:
            accepted = self._client.send(self.phone_number_id, payload)
        except ge.GraphError as exc:
            if exc.code == 130429:
                self._limiter.throttled_by_meta()
            raise _translate(exc) from None
        except (ge.TransportError, ge.HttpError) as exc:
            if exc.written:
                raise errors.ConfirmTimeout(f"{exc} (a status webhook will settle it)") from None
            raise errors.TransientSendError(str(exc), error_class="graph_unreachable") from None
        import time

        self._accepted[evidence] = accepted.wamid
        return SendResult(tick=TICK_SENT, confirmed_at=time.time(), message_ref=accepted.wamid)

    def verify_sent(self, phone: str, body: str, since: float, *, evidence: str | None = None) -> Any:
        """ "sent" when this provider saw the POST carrying ``evidence`` accepted (its wamid); otherwise
        "unknown": nothing can be looked up at Meta (no API lists sent messages), and the status webhook
        carrying the evidence settles the message by itself. Never "absent"."""
        from wabulk.models import VERIFY_SENT, VERIFY_UNKNOWN, Verification

        wamid = self._accepted.get(evidence or "")
        if wamid is not None:
            return Verification(VERIFY_SENT, "accepted by the Graph API", message_ref=wamid)
        return Verification(VERIFY_UNKNOWN, "the Cloud API reports outcomes by webhook only")

    def read_receipt(self, phone: str, body: str, since: float) -> str | None:
        return None  # receipts are pushed by webhook

    def restart(self) -> None:
        self.close()
        self.start()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _translate(exc: ge.GraphError) -> Exception:
    """A Graph rejection as the classified error the worker decides on (scope, transient)."""
    from wabulk import errors

    line, cls = exc.line(), exc.error_class
    if exc.kind == ge.ACCOUNT:
        return errors.SendError(line, error_class=cls, scope=errors.SCOPE_ACCOUNT)
    if exc.kind == ge.JOB:
        err = errors.PermanentSendError(line, error_class=cls, scope=errors.SCOPE_JOB)
        return err
    if exc.kind == ge.TRANSIENT:
        return errors.TransientSendError(line, error_class=cls, scope=errors.SCOPE_RECIPIENT)
    return errors.PermanentSendError(line, error_class=cls, scope=errors.SCOPE_RECIPIENT)


def open_provider(settings: Any, session: Any) -> CloudProvider:
    """The ``sender.open_sender("cloud", …)`` factory: the session's phone number id and the token from
    the environment (never from the database)."""
    from wabulk import settings as cfg
    from wabulk.errors import ConfigError

    pid = str((session.settings or {}).get("phone_number_id") or "")
    if not pid:
        raise ConfigError(f"session {session.name!r} has no phone number id: run wabulk login --cloud")
    return CloudProvider(
        session.name, pid, token=cfg.cloud_token(), base_url=cfg.graph_url(), rate=cfg.cloud_mps()
    )
