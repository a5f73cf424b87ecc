"""A local stand-in for Meta's Graph API (the WhatsApp Cloud API), used by tests, benchmarks and the demo.

It behaves as the project's reference ``whatsapp-cloud-api.md`` says Meta does: sends answered with a wamid
and settled later by signed, batched, duplicated and reordered status webhooks; rate and pair limits;
a template catalogue and its errors; account facts; and scripted faults (errors, cut or late responses,
refused connections). See README.md in this directory.
"""

from __future__ import annotations

from .server import DEFAULT_APP_SECRET, DEFAULT_PORT, DEFAULT_TOKEN, GraphSimulator, main
from .templates import template
from .webhooks import sign

__all__ = [
    "DEFAULT_APP_SECRET",
    "DEFAULT_PORT",
    "DEFAULT_TOKEN",
    "GraphSimulator",
    "main",
    "sign",
    "template",
]
