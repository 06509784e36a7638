"""The writer's filter of booked events: what refuses an event booked twice in a ledger file.

Why: until schema 12 the primary key (platform_id, event_id) of ``usage_events`` refused it
inside the insert, through an ART index that took about 60 bytes an event in the file, about
as much again in blocks each checkpoint freed rewriting it, and its size in memory. A ledger
file has one writer (DuckDB's file lock), so that writer holds the check instead: the set of
the 64-bit hashes (DuckDB's ``hash(platform_id, event_id)``) of every event the file holds,
about 9 bytes an event in memory (``learnright_native.EventHashes``, a sorted vector; a
Python set when the native extension is not built, correct but several times larger).

Guarantees:
  * The set is loaded from ``usage_events`` at the writer's first check (all but the batch being
    checked), so it covers every event committed before; a reader never loads it.
  * A batch's hashes join the set only once its transaction committed (:meth:`EventFilter.committed`):
    a rolled-back batch leaves the set as it was.
  * A hash found in the set (or twice in one batch) is only a candidate: it is confirmed exactly
    against the table, keys compared as strings. A collision of two keys' hashes costs one query
    and never refuses an event; an event booked twice is refused whatever its hash.
"""

from __future__ import annotations

import struct
from typing import Iterable, Protocol

import pyarrow as pa

from ledger.errors import DuplicateEventError

try:
    from learnright_native import EventHashes as _NativeHashes
except ImportError:  # the extension is optional: the fallback below is exact, only larger
    _NativeHashes = None

LOAD_CHUNK = 1_000_000
"""Hashes read from the file per step while loading (8 MB at a time)."""


class HashSet(Protocol):
    def extend(self, hashes: object) -> None: ...
    def hits(self, hashes: object) -> list[int]: ...
    def __len__(self) -> int: ...


class PythonHashes:
    """The set as a Python ``set`` (about 70 bytes an event): used when ``learnright_native`` is not built."""

    def __init__(self, capacity: int = 0):
        self._seen: set[int] = set()

    def extend(self, hashes: object) -> None:
        self._seen.update(h for (h,) in struct.iter_unpack("<Q", memoryview(hashes).cast("B")))

    def hits(self, hashes: object) -> list[int]:
        own: set[int] = set()
        found = []
        for i, (h,) in enumerate(struct.iter_unpack("<Q", memoryview(hashes).cast("B"))):
            if h in self._seen or h in own:
                found.append(i)
            own.add(h)
        return found

    def __len__(self) -> int:
        return len(self._seen)


def new_set(capacity: int) -> HashSet:
    return _NativeHashes(capacity) if _NativeHashes is not None else PythonHashes(capacity)


def hash_bytes(column: pa.ChunkedArray | pa.Array) -> Iterable[memoryview]:
    """The little-endian bytes of a UInt64 column without nulls, chunk by chunk (no copy)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    for chunk in chunks:
        if len(chunk):
            data = memoryview(chunk.buffers()[1]).cast("B")
            yield data[chunk.offset * 8:(chunk.offset + len(chunk)) * 8]


class EventFilter:
    """The hashes of a ledger file's booked events, held by its one writer (see the module)."""

    def __init__(self) -> None:
        self._seen: HashSet | None = None
        self._staged: tuple[int, bytes] | None = None

    def __len__(self) -> int:
        return len(self._seen) if self._seen is not None else 0

    def _loaded(self, db, batch_id: int) -> HashSet:
        """The set, loaded on first use from every committed event: all but batch ``batch_id``'s,
        inserted in the open transaction (loading those too would make each of them a candidate)."""
        if self._seen is None:
            count = db.value("SELECT count(*) FROM usage_events WHERE batch_id <> ?", [batch_id])
            seen = new_set(count)
            reader = db.con.execute("SELECT hash(platform_id, event_id) FROM usage_events WHERE batch_id <> ?",
                                    [batch_id]).to_arrow_reader(LOAD_CHUNK)
            for chunk in reader:
                for raw in hash_bytes(chunk.column(0)):
                    seen.extend(raw)
            self._seen = seen
        return self._seen

    def check(self, db, batch_id: int) -> None:
        """Refuses batch ``batch_id`` (inserted, not yet committed) if it books an event the file holds.

        Raises:
            DuplicateEventError: an event of the batch is booked already, or twice in the batch;
                the caller's transaction rolls the batch back.
        """
        seen = self._loaded(db, batch_id)
        column = db.con.execute("SELECT hash(platform_id, event_id) FROM usage_events WHERE batch_id = ?",
                                [batch_id]).to_arrow_table().column(0)
        raw = b"".join(hash_bytes(column))
        candidates = seen.hits(raw)
        if candidates:
            hits = sorted({struct.unpack_from("<Q", raw, 8 * i)[0] for i in candidates})
            found = db.rows(
                "SELECT platform_id, event_id FROM usage_events WHERE (platform_id, event_id) IN"
                " (SELECT platform_id, event_id FROM usage_events WHERE batch_id = ?"
                "  AND hash(platform_id, event_id) IN (SELECT unnest(?::UBIGINT[])))"
                " GROUP BY ALL HAVING count(*) > 1 ORDER BY ALL LIMIT 3", [batch_id, hits])
            if found:
                raise DuplicateEventError(
                    f"batch {batch_id} would book events that are booked already, or twice in the batch"
                    f" ((platform_id, event_id), at most 3 shown): {found}")
        self._staged = (batch_id, raw)

    def forget_staged(self) -> None:
        """Drops the hashes of a batch checked but not committed (its transaction rolled back)."""
        self._staged = None

    def committed(self, batch_id: int) -> None:
        """Adds the hashes of batch ``batch_id``, checked by :meth:`check`, once its transaction committed."""
        if self._staged is not None and self._staged[0] == batch_id:
            if self._seen is not None:
                self._seen.extend(self._staged[1])
            self._staged = None
