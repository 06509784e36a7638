"""Reads for verification and monitoring: the chain as stored, its recorded ends, the totals.

Nothing here trusts a stored hash; :mod:`ledger.services.verify` recomputes the chain
from :meth:`AuditRepository.chain_entries` and compares.
"""

from __future__ import annotations

from typing import Iterator

from ledger.core import chain
from ledger.core.records import ChainAnchor, ChainEntry, CurrencyAmount, LedgerTotals
from ledger.storage.connection import Db, read_anchor

CHUNK = 50_000
"""Entries fetched at a time while the chain is read."""


class AuditRepository:
    def __init__(self, db: Db):
        self.db = db

    def chain_entries(self) -> Iterator[ChainEntry]:
        """Every entry as stored, in row order, on a cursor of its own (read in chunks)."""
        v3 = len(chain.ENTRY_FIELDS)
        cursor = self.db.cursor()
        try:
            cursor.execute(
                f"SELECT {', '.join(chain.ENTRY_FIELDS)}, {', '.join(chain.ENTRY_FIELDS_V2)}, entry_hash"
                " FROM accruals ORDER BY entry_id")
            while rows := cursor.fetchmany(CHUNK):
                for row in rows:
                    new, old, entry_hash = row[:v3], row[v3:-1], row[-1]
                    entry_id = old[0]
                    if new[0] is None:
                        yield ChainEntry(entry_id=entry_id, format=chain.CHAIN_FORMAT_V2, values=old,
                                         entry_hash=entry_hash, key=f"entry:{entry_id}")
                    else:
                        yield ChainEntry(entry_id=entry_id, format=chain.ENTRY_FORMAT, values=new,
                                         entry_hash=entry_hash, key=chain.entry_key(new[0], new[1], new[2]))
        finally:
            cursor.close()

    def chain_anchors(self) -> list[ChainAnchor]:
        """The chain's end as the last batch with entries records it (the file's tip adds its anchor file)."""
        anchors = [
            ChainAnchor(where=f"batch {batch_id}", last_entry_id=entry_id, chain_head=head)
            for batch_id, head, entry_id in self.db.rows(
                "SELECT batch_id, chain_head, (SELECT max(entry_id) FROM accruals a WHERE a.batch_id <= b.batch_id)"
                " FROM ingest_batches b ORDER BY batch_id DESC LIMIT 1"
            )
            if entry_id is not None
        ]
        return anchors

    def totals(self) -> LedgerTotals:
        """Accrued amounts per currency (every entry) and the time of the latest close."""
        accrued = self.db.rows("SELECT currency, sum(amount) FROM accruals GROUP BY ALL ORDER BY ALL")
        return LedgerTotals(
            accrued=tuple(CurrencyAmount(currency=currency, amount=amount) for currency, amount in accrued),
            last_closed_at=self.db.value("SELECT max(closed_at) FROM period_closes"),
        )
