"""Cloud API reads for costs and limits: billable messages per pricing category (recorded from the status
webhooks' ``pricing``, migration m013) and the template recipients of a rolling window (the messaging
limit)."""

from __future__ import annotations

from .base import QueueBase, _guarded


class PricingMixin(QueueBase):
    # --- costs and limits -----------------------------------------------------------------------------
    @_guarded
    def billable_counts(self, job_id: int | None = None) -> dict[int, dict[str, dict[str, int]]]:
        """Per job, per pricing category: ``{"billable": n, "free": m}`` of the messages whose status
        webhook carried pricing (others are not counted: Meta has not said)."""
        where = "AND job_id = ?" if job_id is not None else ""
        args = (job_id,) if job_id is not None else ()
        out: dict[int, dict[str, dict[str, int]]] = {}
        for jid, category, billable, n in self.conn.execute(
            "SELECT job_id, pricing_category, coalesce(billable, 0), count(*) FROM messages"
            f" WHERE pricing_category IS NOT NULL {where} GROUP BY job_id, pricing_category, 3",
            args,
        ):
            per = out.setdefault(jid, {}).setdefault(category, {"billable": 0, "free": 0})
            per["billable" if billable else "free"] += n
        return out

    @_guarded
    def template_recipients_since(self, sessions: list[str], since: float) -> set[str]:
        """The distinct numbers of template messages ``sessions`` stamped (send started) or sent since
        ``since``; every session when ``sessions`` is empty."""
        in_sessions = ", ".join("?" * len(sessions))
        by_stamp = f"send_started_session IN ({in_sessions})" if sessions else "1"
        by_sent = f"sent_by_session IN ({in_sessions})" if sessions else "1"
        rows = self.conn.execute(
            "SELECT DISTINCT m.phone FROM messages m JOIN jobs j ON j.id = m.job_id"
            " WHERE j.template_name IS NOT NULL AND ("
            f" (m.send_started_at >= ? AND {by_stamp}) OR (m.sent_at >= ? AND {by_sent}))",
            (since, *sessions, since, *sessions),
        )
        return {r[0] for r in rows}
