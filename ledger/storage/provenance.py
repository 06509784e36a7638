"""What the ledger knows of a model's training, for licensed-model evidence and the AI Act summary.

Reads only: priced training entries grouped per model, source and license version.
"""

from __future__ import annotations

from datetime import datetime

from ledger.core.evidence import TrainingUse
from ledger.storage.connection import Db


class ProvenanceRepository:
    """Reads of ``accruals`` (training entries) by platform and model."""

    def __init__(self, db: Db):
        self.db = db

    def training_uses(self, platform_id: str, as_of: datetime | None = None) -> list[TrainingUse]:
        """Priced training of each model of ``platform_id`` up to ``as_of``, per source and license version.

        Units are net of corrections (a reversal's negative quantity counts); events and
        first/last use count the booked events, not their reversals.
        """
        rows = self.db.rows(
            """
            SELECT model_id, source_id, holder_id, license_id, license_version, unit, sum(quantity),
                   count(DISTINCT event_id) FILTER (WHERE reverses_entry_id IS NULL AND reverses_entry_key IS NULL),
                   min(occurred_at), max(occurred_at)
            FROM accruals
            WHERE kind = 'training' AND platform_id = ? AND (? IS NULL OR occurred_at <= ?)
            GROUP BY ALL ORDER BY ALL
            """,
            [platform_id, as_of, as_of],
        )
        return [TrainingUse(platform_id=platform_id, model_id=model, source_id=source, holder_id=holder,
                            license_id=license_id, license_version=version, unit=unit, units=units, events=events,
                            first_use=first, last_use=last)
                for model, source, holder, license_id, version, unit, units, events, first, last in rows]

    def model_platforms(self, model_id: str) -> list[str]:
        """The platforms that reported usage of a model named ``model_id``, or named it as a fine-tune's base."""
        return [p for (p,) in self.db.rows(
            "SELECT platform_id FROM usage_events WHERE model_id = ?"
            " UNION SELECT platform_id FROM model_lineage WHERE base_model_id = ? ORDER BY 1", [model_id, model_id])]
