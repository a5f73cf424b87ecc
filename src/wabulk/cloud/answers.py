"""What a Graph API answer to a send POST means: the wamid, or the error to raise (reference §5).

Kept apart from the httpx client so that ``wabulk run``'s send path (``cloud/wire.py``) does not import
httpx at all (a third of a second of start-up).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import GraphError, HttpError, TransportError

# Gateway answers without a Graph body that say the request was not processed (safe to retry): an edge
# rate limit, a service-unavailable page. Every other status without a Graph body may come after the
# backend accepted the message (502/504 especially): unknown.
_NOT_PROCESSED = frozenset({429, 503})


@dataclass(frozen=True)
class Accepted:
    """Meta accepted the message: its wamid, the recipient's canonical id and the ``message_status``
    (``accepted``, or ``held_for_quality_assessment`` for a paced template)."""

    wamid: str
    wa_id: str | None
    message_status: str | None


def read_send_answer(status: int, data: bytes) -> Accepted:
    """What the answer to a send POST means: the wamid, or the GraphError/HttpError/TransportError (with
    ``written``) to raise. Shared by :class:`~wabulk.cloud.client.GraphClient` and the run loop's
    :mod:`~wabulk.cloud.wire`."""
    if status >= 400:
        raise error_of(status, data)
    return _accepted(data)


def error_of(status: int, data: bytes) -> Exception:
    """The exception an error answer (status >= 400) stands for."""
    graph = GraphError.from_body(json_or_none(data), status)
    if graph is not None:
        return graph
    written = status not in _NOT_PROCESSED
    what = "outcome unknown" if written else "not processed"
    return HttpError(
        f"the Graph API answered HTTP {status} without a Graph error ({what})",
        http_status=status,
        written=written,
    )


def json_or_none(data: bytes) -> Any:
    """The parsed JSON body, or None when it is not JSON."""
    try:
        return json.loads(data)
    except ValueError:
        return None


def _accepted(data: bytes) -> Accepted:
    """The wamid of a 200 answer; an answer without one is an accepted message whose id was lost."""
    parsed = json_or_none(data)
    try:
        msg = parsed["messages"][0]
        wamid = msg["id"]
        if not isinstance(wamid, str) or not wamid:
            raise TypeError("empty id")
    except (TypeError, KeyError, IndexError) as exc:
        raise TransportError(
            "the Graph API answered 200 without a message id: outcome unknown", written=True
        ) from exc
    contacts = parsed.get("contacts") if isinstance(parsed, dict) else None
    wa_id = None
    if isinstance(contacts, list) and contacts and isinstance(contacts[0], dict):
        wa_id = contacts[0].get("wa_id")
    status = msg.get("message_status") if isinstance(msg, dict) else None
    return Accepted(wamid=wamid, wa_id=str(wa_id) if wa_id else None, message_status=status)


__all__ = ["Accepted", "read_send_answer", "error_of", "json_or_none"]
