"""Sessions are accounts: a named sending account, how it sends (its provider) and that provider's settings.

A session is what ``--session NAME`` names everywhere. Its provider kind says how it reaches WhatsApp:
``"web"`` (WhatsApp Web in a browser: :mod:`wabulk.web`; its setting is its browser profile, which follows
from its name: ``Settings.profile_dir(name)``) or ``"cloud"`` (Meta's Cloud API: :mod:`wabulk.cloud`; its
settings name the phone number id). A session the database has never recorded is a web session, as every
session was before there was a choice (migration ``m009_session_provider``). The worker gets its
provider with ``sender.open_sender(session.provider, settings, session)``.

Only the queue writes SQL: this module reads and records sessions through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .queue import Queue
    from .settings import Settings

WEB = "web"
CLOUD = "cloud"
DEFAULT_PROVIDER = WEB


@dataclass(frozen=True)
class Session:
    """One sending account."""

    name: str
    provider: str = DEFAULT_PROVIDER  # the provider kind: sender.open_sender knows it by this name
    settings: Mapping[str, Any] = field(default_factory=dict)  # the provider's own settings


def get(queue: Queue, name: str) -> Session:
    """The session ``name`` as recorded (a web session with no settings when it never was)."""
    recorded = queue.session_provider(name)
    if recorded is None:
        return Session(name)
    kind, settings = recorded
    return Session(name, kind, settings)


def all_sessions(queue: Queue) -> list[Session]:
    """Every session the database has recorded, by name."""
    return [Session(name, kind, settings) for name, (kind, settings) in queue.session_providers().items()]


def record_link(settings: Settings, name: str) -> None:
    """A login went from the QR to the app: a NEW device is linked to session ``name``, whose chats may lack
    what the old one sent. Recorded so that no send pressed before now is ever proved absent (and resent)."""
    from .queue import Queue

    with Queue(settings.db) as q:
        q.mark_linked(name)


def record(queue: Queue, session: Session) -> None:
    """Record how ``session`` sends (e.g. after linking a Cloud API number)."""
    queue.set_session_provider(session.name, session.provider, dict(session.settings))
