"""The opt-out list."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .base import (
    QueueBase,
    _guarded,
)


def optouts_as_json(rows: Iterable[tuple[str, float, str | None]]) -> list[dict[str, Any]]:
    """:meth:`OptoutsMixin.list_optouts` as ``wabulk optout list --json`` prints it and ``GET /api/optouts``
    answers (one function so that the two cannot drift apart)."""
    return [{"phone": phone, "added_at": added_at, "reason": reason} for phone, added_at, reason in rows]


class OptoutsMixin(QueueBase):
    # --- opt-outs -----------------------------------------------------------------------------------
    @_guarded
    def add_optouts(self, phones: Iterable[str], reason: str | None = None) -> int:
        """Add E.164 numbers to the opt-out list; returns how many were new. Pending messages to them
        are skipped when next claimed."""
        now = self._clock()
        with self._tx(durable=True) as conn:
            return conn.executemany(
                "INSERT OR IGNORE INTO optouts (phone, added_at, reason) VALUES (?, ?, ?)",
                ((p, now, reason) for p in phones),
            ).rowcount

    @_guarded
    def remove_optouts(self, phones: Iterable[str]) -> int:
        """Remove numbers from the opt-out list; returns how many were there."""
        with self._tx(durable=True) as conn:
            return conn.executemany("DELETE FROM optouts WHERE phone = ?", ((p,) for p in phones)).rowcount

    @_guarded
    def list_optouts(self) -> list[tuple[str, float, str | None]]:
        """Every opt-out as (phone, added_at, reason), by phone."""
        return [
            (r[0], r[1], r[2])
            for r in self.conn.execute("SELECT phone, added_at, reason FROM optouts ORDER BY phone")
        ]

    @_guarded
    def is_opted_out(self, phone: str) -> bool:
        """Whether this E.164 number is on the opt-out list."""
        return self.conn.execute("SELECT 1 FROM optouts WHERE phone = ?", (phone,)).fetchone() is not None
