"""Unlicensed use in the ledger file: appended with its batch, read for closes, reports and operators.

Which close lists a use: the first close of its month or later whose cut-off covers its
record (``close_cutoffs``), so a use of a closed month booked after that close is listed
by the next close, and a rebuild from the log lists every use on the same statement.
"""

from __future__ import annotations

from typing import Sequence

import pyarrow as pa

from ledger.core.unlicensed import UnlicensedUse
from ledger.storage.arrow_rows import DECIMAL, TIMESTAMP
from ledger.storage.connection import Db

FIELDS = ("platform_id", "event_id", "line", "kind", "source_id", "holder_id", "model_id", "quantity", "unit",
          "occurred_at", "period", "reason", "license_id", "license_version", "currency", "revocation_id",
          "stream", "position")
_TYPES = {"line": pa.int32(), "quantity": DECIMAL, "occurred_at": TIMESTAMP, "license_version": pa.int32(),
          "position": pa.int64()}


def unlicensed_table(uses: Sequence[UnlicensedUse], batch_id: int) -> pa.Table:
    """``unlicensed_use`` rows of one batch; topic and partition are read back from each use's stream."""
    columns = {name: pa.array([getattr(u, name) for u in uses], _TYPES.get(name, pa.string())) for name in FIELDS}
    origins = [u.stream.rsplit("/", 1) for u in uses]  # a Kafka topic name holds no "/"
    columns["topic"] = pa.array([topic for topic, _ in origins], pa.string())
    columns["kafka_partition"] = pa.array([int(partition) for _, partition in origins], pa.int32())
    columns["kafka_offset"] = pa.array([u.position for u in uses], pa.int64())
    columns["batch_id"] = pa.array([batch_id] * len(uses), pa.int64())
    return pa.table(columns)


class UnlicensedRepository:
    """The ``unlicensed_use`` table."""

    def __init__(self, db: Db):
        self.db = db

    def _read(self, where: str, params: Sequence[object]) -> list[UnlicensedUse]:
        rows = self.db.rows(f"SELECT {', '.join(FIELDS)} FROM unlicensed_use u WHERE {where}"
                            " ORDER BY period, stream, position, line", params)
        return [UnlicensedUse(**dict(zip(FIELDS, row))) for row in rows]

    def unlicensed_uses(self, period: str | None = None, *, platform_id: str | None = None,
                        holder_id: str | None = None) -> list[UnlicensedUse]:
        """Every unlicensed use, or those of one month, platform or holder, in log order within a month."""
        clauses, params = ["TRUE"], []
        for column, value in (("period", period), ("platform_id", platform_id), ("holder_id", holder_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        return self._read(" AND ".join(clauses), params)

    def unlicensed_for_close(self, period: str) -> list[UnlicensedUse]:
        """The uses the close of ``period`` lists: of ``period`` or earlier, not covered by an earlier close's cut-off."""
        return self._read(
            "u.period <= ? AND NOT EXISTS (SELECT 1 FROM close_cutoffs c WHERE c.period < ? AND c.period >= u.period"
            " AND c.topic = u.topic AND c.kafka_partition = u.kafka_partition AND u.kafka_offset < c.next_offset)",
            [period, period])
