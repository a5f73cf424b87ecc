"""A local stand-in for WhatsApp Web, used by ``wabulk demo``, ``wabulk simulator`` and the e2e tests.

It reproduces the real page's DOM (see ``whatsapp-web-dom.md`` in the project's reference notes) for the
2023, 2025, 2026 and 2026-09 page versions (2026-09: the page as seen live in 2026, which refuses headless
browsers), and records every message it receives in a durable JSONL log.
"""

from __future__ import annotations

from .server import DEFAULT_CONFIG, Simulator, main

__all__ = ["DEFAULT_CONFIG", "Simulator", "main"]
