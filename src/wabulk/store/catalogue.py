"""The Cloud API template catalogue (``cloud_templates``, migration m014): what ``wabulk templates sync``
fetched, read back by ``templates list`` and ``enqueue --template``."""

from __future__ import annotations

from collections.abc import Iterable

from wabulk.models import CatalogueTemplate

from .base import QueueBase, _guarded

_COLS = (
    "waba_id, name, language, session, category, status, params, template_id, synced_at, other_params,"
    " parameter_format, components"
)


class CatalogueMixin(QueueBase):
    # --- template catalogue ---------------------------------------------------------------------------
    @_guarded
    def replace_catalogue(
        self, session: str, waba_id: str, templates: Iterable[CatalogueTemplate], *, synced_at: float
    ) -> int:
        """Replace the catalogue of ``waba_id`` (synced through ``session``) with ``templates``, in one
        transaction: a sync cut short leaves the previous catalogue whole. Returns how many were stored."""
        rows = [
            (
                waba_id,
                t.name,
                t.language,
                session,
                t.category,
                t.status,
                t.params,
                t.template_id,
                synced_at,
                t.other_params,
                t.parameter_format,
                t.components,
            )
            for t in templates
        ]
        with self._tx() as conn:
            conn.execute("DELETE FROM cloud_templates WHERE waba_id = ?", (waba_id,))
            # A session re-pointed to another WABA no longer speaks for its old one.
            conn.execute("DELETE FROM cloud_templates WHERE session = ?", (session,))
            conn.executemany(
                f"INSERT OR REPLACE INTO cloud_templates ({_COLS}) VALUES ({', '.join('?' * 12)})", rows
            )
            conn.execute(
                "INSERT OR REPLACE INTO cloud_template_syncs (session, waba_id, synced_at, templates)"
                " VALUES (?, ?, ?, ?)",
                (session, waba_id, synced_at, len(rows)),
            )
        return len(rows)

    @_guarded
    def catalogue(self, sessions: Iterable[str] = ()) -> list[CatalogueTemplate]:
        """The synced templates (of these sessions' WABAs, or of every synced one), by name and language."""
        wanted = list(sessions)
        where = f"WHERE session IN ({', '.join('?' * len(wanted))})" if wanted else ""
        rows = self.conn.execute(
            f"SELECT {_COLS} FROM cloud_templates {where} ORDER BY name, language, session", wanted
        ).fetchall()
        return [
            CatalogueTemplate(
                waba_id=r[0],
                name=r[1],
                language=r[2],
                session=r[3],
                category=r[4],
                status=r[5],
                params=r[6],
                template_id=r[7],
                synced_at=r[8],
                other_params=r[9],
                parameter_format=r[10],
                components=r[11],
            )
            for r in rows
        ]

    @_guarded
    def catalogue_syncs(self) -> dict[str, tuple[str, float]]:
        """Each session that synced a catalogue: its WABA id and when it last synced."""
        return {
            r[0]: (r[1], r[2])
            for r in self.conn.execute("SELECT session, waba_id, synced_at FROM cloud_template_syncs")
        }
