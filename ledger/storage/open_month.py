"""The open months: what the ledger has booked since its last close, summed per source.

Guarantees:
  * The rows and the cut (last entry, booked offsets, last batch) are read in one
    transaction, so the cut names exactly the entries the sums include.
  * Only months after the last close are read: a closed month is answered by its signed
    statement, never by this provisional view.
"""

from __future__ import annotations

from ledger.core.records import OpenAccrual, OpenAccruals
from ledger.storage.connection import Db


def open_accruals(db: Db, holder_id: str | None = None) -> OpenAccruals:
    """Accruals of every month after the last close (of ``holder_id``, or of every holder).

    Rows are summed per (period, holder, currency, source, kind, unit) and sorted by them.
    """
    with db.transaction():
        last = db.rows("SELECT period, closed_at FROM period_closes ORDER BY period DESC LIMIT 1")
        after, closed_at = last[0] if last else (None, None)
        rows = db.rows(
            """
            SELECT period, holder_id, currency, source_id, kind, unit, sum(quantity), sum(amount), count(*)
            FROM accruals
            WHERE (? IS NULL OR period > ?) AND (? IS NULL OR holder_id = ?)
            GROUP BY ALL
            ORDER BY period, holder_id, currency, source_id, kind, unit
            """,
            [after, after, holder_id, holder_id],
        )
        last_entry_id = db.value("SELECT coalesce(max(entry_id), 0) FROM accruals")
        offsets = db.rows("SELECT topic, kafka_partition, max(next_offset) FROM consumer_offsets"
                          " GROUP BY ALL ORDER BY topic, kafka_partition")
        last_batch_at = db.value("SELECT max(committed_at) FROM ingest_batches")
    return OpenAccruals(
        rows=tuple(OpenAccrual(period=period, holder_id=holder, currency=currency, source_id=source, kind=kind,
                               unit=unit, quantity=quantity, amount=amount, entries=entries)
                   for period, holder, currency, source, kind, unit, quantity, amount, entries in rows),
        after_period=after, last_closed_at=closed_at, last_entry_id=last_entry_id,
        offsets={(topic, partition): offset for topic, partition, offset in offsets}, last_batch_at=last_batch_at,
    )
