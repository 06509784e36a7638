"""What no close can avoid beside the bare statement-lines query: `make bench`'s ``close-floor`` line.

A close computes the statement lines (the bare query's work: the same SQL), signs each
statement's canonical bytes (SHA-256 for its content hash, Ed25519 for its signature:
:func:`ledger.services.statement_workers.sealed`) and stores the rows in ``statements``. This
measures the CPU of the last two alone over the statements a close of the bench's ledger
stored, beside the bare query's CPU. On ``cores`` cores no close can finish before those three
CPU times together divided by the cores (nor before the query alone), so the bare query's
seconds over that floor is the best ratio any close could reach on the machine: issue 18 asks
for 0.67 (a close at most 1.5x the bare query).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from learnright.bench_report import process_cpu_seconds
from ledger.core.statements import canonical_bytes
from ledger.storage.store import Ledger


class FloorError(RuntimeError):
    """The documents read back do not hash to what the close stored: the floor would time other bytes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FloorParts:
    statements: int
    sign_cpu_seconds: float
    store_cpu_seconds: float


def floor_parts(ledger, period: str, signer, into: Path, *, memory_limit: str) -> FloorParts:
    """The CPU seconds of signing and of storing the statements of ``period`` that ``ledger`` (an open,
    closed ledger) holds: each statement's canonical bytes hashed and signed by ``signer`` as the
    close does, then every row inserted as Arrow into a new ledger file ``into`` (the format and the
    column compression a ledger has) and committed.

    Raises:
        FloorError: a document's canonical bytes do not hash to its stored content hash.
    """
    rows = ledger.con.execute("SELECT * FROM statements WHERE period = ? ORDER BY statement_id", [period]).to_arrow_table()
    documents = [canonical_bytes(json.loads(text)) for text in rows.column("document").to_pylist()]
    started = process_cpu_seconds()
    hashes = [(hashlib.sha256(canonical).hexdigest(), signer.sign(canonical)) for canonical in documents]
    sign = process_cpu_seconds() - started
    stored = rows.column("content_hash").to_pylist()
    if [digest for digest, _ in hashes] != stored:
        raise FloorError("the stored documents' canonical bytes do not hash to their content_hash")
    with Ledger.open(into) as store:  # a new ledger file: the same format, table and column compression
        store.limit_memory(memory_limit)
        store.con.register("_statements", rows)
        started = process_cpu_seconds()
        store.con.execute("BEGIN")
        store.con.execute("INSERT INTO statements BY NAME SELECT * FROM _statements")
        store.con.execute("COMMIT")
        kept = process_cpu_seconds() - started
    return FloorParts(statements=len(documents), sign_cpu_seconds=sign, store_cpu_seconds=kept)


def floor_seconds(*, bare_seconds: float, bare_cpu_seconds: float, parts: FloorParts, cores: int) -> float:
    """The least wall time any close can take: the bare query's, or all three parts' CPU over ``cores``."""
    return max(bare_seconds, (bare_cpu_seconds + parts.sign_cpu_seconds + parts.store_cpu_seconds) / cores)
