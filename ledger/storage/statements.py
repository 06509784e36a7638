"""Stored statements and the outbox of their StatementClosed events.

Statements are written by a close (:mod:`ledger.storage.closes`) and never change. A
signed statement without a ``statement_publications`` row is pending: its event is still
to be sent (:mod:`consumers.publisher`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterator, Sequence

import pyarrow as pa

from ledger.core.records import Publication, StatementDocument, StatementRecord, StatementRow, StatementSignature
from ledger.storage.arrow_rows import TIMESTAMP
from ledger.storage.connection import Db

CHUNK = 1_000
"""Statements read at a time where they are streamed."""

_RECORD_COLUMNS = ("s.statement_id, s.period, s.holder_id, s.currency, s.accrued, s.carry_in, s.payable, s.carry_out,"
                   " s.content_hash, s.document, s.created_at, s.signature, s.key_fingerprint")


def _record(row: tuple) -> StatementRecord:
    (statement_id, period, holder_id, currency, accrued, carry_in, payable, carry_out, content_hash, document,
     created_at, signature, key_fingerprint) = row
    return StatementRecord(
        statement_id=statement_id, period=period, holder_id=holder_id, currency=currency, accrued=accrued,
        carry_in=carry_in, payable=payable, carry_out=carry_out, content_hash=content_hash, document=document,
        created_at=created_at, signature=signature, key_fingerprint=key_fingerprint,
    )


class StatementRepository:
    """The ``statements`` and ``statement_publications`` tables."""

    def __init__(self, db: Db):
        self.db = db

    def statement_rows(self, period: str | None = None, holder_id: str | None = None) -> list[StatementRow]:
        """Statements' totals (all, or of ``period`` and/or ``holder_id``), by period, holder and currency."""
        rows = self.db.rows(
            """
            SELECT statement_id, period, holder_id, currency, accrued, carry_in, payable, carry_out, content_hash
            FROM statements
            WHERE (? IS NULL OR period = ?) AND (? IS NULL OR holder_id = ?)
            ORDER BY period, holder_id, currency
            """,
            [period, period, holder_id, holder_id],
        )
        return [
            StatementRow(statement_id=statement_id, period=p, holder_id=holder, currency=currency, accrued=accrued,
                         carry_in=carry_in, payable=payable, carry_out=carry_out, content_hash=content_hash)
            for statement_id, p, holder, currency, accrued, carry_in, payable, carry_out, content_hash in rows
        ]

    def stored_statements(self, period: str) -> list[StatementRecord]:
        """The statements of ``period`` whole, by holder and currency."""
        rows = self.db.rows(
            f"SELECT {_RECORD_COLUMNS} FROM statements s WHERE s.period = ? ORDER BY s.holder_id, s.currency", [period]
        )
        return [_record(row) for row in rows]

    def each_stored_statement(self, period: str) -> Iterator[StatementRecord]:
        """The statements of ``period`` whole, in the order stored (not sorted), on a cursor of their own.

        Read :data:`CHUNK` at a time: a reader holds that many documents (a few KB each),
        whatever the number of statements; sorting would gather them all first."""
        cursor = self.db.cursor()
        try:
            cursor.execute(f"SELECT {_RECORD_COLUMNS} FROM statements s WHERE s.period = ?", [period])
            while rows := cursor.fetchmany(CHUNK):
                yield from map(_record, rows)
        finally:
            cursor.close()

    def statement_count(self) -> int:
        return self.db.value("SELECT count(*) FROM statements")

    def statement_document(self, statement_id: str) -> StatementDocument | None:
        rows = self.db.rows("SELECT document, content_hash FROM statements WHERE statement_id = ?", [statement_id])
        return StatementDocument(document=rows[0][0], content_hash=rows[0][1]) if rows else None

    def statement_signature(self, statement_id: str) -> StatementSignature | None:
        """The signature of a statement; None for one closed before statements were signed."""
        rows = self.db.rows(
            "SELECT signature, key_fingerprint FROM statements WHERE statement_id = ? AND signature IS NOT NULL",
            [statement_id],
        )
        return StatementSignature(signature=rows[0][0], key_fingerprint=rows[0][1]) if rows else None

    # -- StatementClosed outbox ----------------------------------------------------------

    def unpublished_statements(self) -> list[StatementRecord]:
        """Signed statements whose StatementClosed event is not recorded as published, oldest first."""
        rows = self.db.rows(
            f"""
            SELECT {_RECORD_COLUMNS}
            FROM statements s
            WHERE s.signature IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM statement_publications p WHERE p.statement_id = s.statement_id)
            ORDER BY s.period, s.holder_id, s.currency
            """
        )
        return [_record(row) for row in rows]

    def record_publications(self, published: Sequence[Publication], at: datetime) -> None:
        """Records StatementClosed events as acknowledged by the broker, in one transaction."""
        if not published:
            return
        with self.db.transaction():
            self.db.insert("statement_publications", pa.table({
                "statement_id": [p.statement_id for p in published],
                "topic": [p.topic for p in published],
                "kafka_partition": pa.array([p.partition for p in published], pa.int32()),
                "kafka_offset": pa.array([p.offset for p in published], pa.int64()),
                "published_at": pa.array([at] * len(published), TIMESTAMP),
            }))
