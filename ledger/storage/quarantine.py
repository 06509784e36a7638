"""Reading the quarantine: records refused at ingestion and not booked since.

A quarantined record is open until an event is accepted at its (topic, partition,
offset), by a replay. Rows are written with the batch that refused them (see
:mod:`ledger.storage.ingest`); nothing here writes.
"""

from __future__ import annotations

import json
from typing import Sequence

from ledger.core.records import QuarantinedRecord
from ledger.storage.connection import Db
from ledger.storage.migrations import CODES_BEFORE_5


def _code_of_old_rows() -> str:
    cases = " ".join(f"WHEN '{name}' THEN '{code}'" for name, code in sorted(CODES_BEFORE_5.items()))
    return f"coalesce(q.error_code, CASE q.error_class {cases} ELSE 'internal' END)"


ERROR_CODE = _code_of_old_rows()
"""SQL of a quarantine row's code: the stored one, or for a row older than codes, its class's."""

RECORD_TIMESTAMP = "coalesce(q.record_timestamp, epoch_ms(q.quarantined_at))"
"""SQL of a quarantine row's Kafka timestamp: the stored one, or for a row older than ledger
schema 6, its quarantine time (the record was appended before it was read, so that is later)."""

_OPEN = ("NOT EXISTS (SELECT 1 FROM usage_events u WHERE u.topic = q.topic"
         " AND u.kafka_partition = q.kafka_partition AND u.kafka_offset = q.kafka_offset)")


class QuarantineRepository:
    """The ``quarantine`` table, as open records."""

    def __init__(self, db: Db):
        self.db = db

    def open_quarantine(self, ids: Sequence[int] | None = None) -> list[QuarantinedRecord]:
        """Quarantined records not booked since (no accepted event read at their offset), by id."""
        listed = None if ids is None else list(ids)
        rows = self.db.rows(
            f"""
            SELECT q.quarantine_id, q.topic, q.kafka_partition, q.kafka_offset, q.record_key, q.record_value,
                   q.headers, {ERROR_CODE}, q.error_class, q.reason, q.platform_id, q.event_id, q.quarantined_at,
                   {RECORD_TIMESTAMP}
            FROM quarantine q
            WHERE {_OPEN} AND (? IS NULL OR list_contains(?, q.quarantine_id))
            ORDER BY q.quarantine_id
            """,
            [listed, listed],
        )
        return [
            QuarantinedRecord(
                quarantine_id=qid, topic=topic, partition=partition, offset=offset, key=key, value=value,
                headers=tuple((k, bytes.fromhex(v)) for k, v in json.loads(headers).items()),
                error_code=code, error_class=error_class, reason=reason, platform_id=platform_id,
                event_id=event_id, quarantined_at=quarantined_at, record_timestamp=record_timestamp,
            )
            for (qid, topic, partition, offset, key, value, headers, code, error_class, reason, platform_id,
                 event_id, quarantined_at, record_timestamp) in rows
        ]

    def open_quarantine_count(self, error_code: str) -> int:
        """How many open quarantined records were refused with the error of ``error_code``."""
        return self.db.value(f"SELECT count(*) FROM quarantine q WHERE {ERROR_CODE} = ? AND {_OPEN}", [error_code])
