"""Entry digests computed from the stored entries, where a close or ``learnright verify`` needs them.

From schema 14 an entry's digest (format 3, :mod:`ledger.core.chain`) is not stored beside it:
it is a pure function of the entry's own stored fields (``chain.ENTRY_FIELDS``), so a stored
copy proved nothing the row does not (whoever can edit the row can recompute it), while it cost
about a third of the file and most of the checkpoints' compression work. What commits the
ledger is each close's stream heads and root; they fold these digests, computed here from the
Arrow batches DuckDB returns.

Guarantees:
  * The digests are ``chain.digest`` of each row's ENTRY_FIELDS values, byte for byte, whether
    ``learnright_native`` computes them (outside the GIL, from the Arrow buffers) or the
    Python fallback does (when the extension is not built); the tests compare the two.
  * A fold gives what ``chain.fold_streams`` gives over the same (stream, digest) pairs.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import pyarrow as pa

from ledger.core import chain
from ledger.errors import LedgerFileError

try:
    import learnright_native as _native
except ImportError:  # the extension is optional: the fallback below is exact, only slower
    _native = None
else:
    if not hasattr(_native, "EntryFolder"):  # a build from before schema 14
        _native = None


def _column_spec(array: pa.Array, name: str) -> tuple:
    """One Arrow column as ``learnright_native`` reads it: (kind, offset, validity, values, data)."""
    kind_of = array.type
    if pa.types.is_dictionary(kind_of):  # the native fast path's repeated strings (ledger.storage.arrow_rows)
        array = array.dictionary_decode()
        kind_of = array.type
    if pa.types.is_large_string(kind_of) or pa.types.is_string_view(kind_of):
        array, kind_of = array.cast(pa.string()), pa.string()
    buffers = array.buffers()
    validity = buffers[0] if array.null_count else None
    if pa.types.is_string(kind_of):
        return ("text", array.offset, validity, buffers[1], buffers[2])
    if pa.types.is_int32(kind_of):
        return ("int32", array.offset, validity, buffers[1], None)
    if pa.types.is_int64(kind_of) or (pa.types.is_timestamp(kind_of) and kind_of.unit == "us"):
        return ("int64", array.offset, validity, buffers[1], None)
    if pa.types.is_decimal128(kind_of) and kind_of.scale == 12:
        return ("scale12", array.offset, validity, buffers[1], None)
    raise LedgerFileError(f"accruals.{name} came as Arrow {kind_of}, which entry digests do not read")


def _specs(batch: pa.RecordBatch) -> list[tuple]:
    if tuple(batch.schema.names) != chain.ENTRY_FIELDS:
        raise LedgerFileError(f"entry columns {batch.schema.names} are not chain.ENTRY_FIELDS in order")
    return [_column_spec(column, name) for column, name in zip(batch.columns, chain.ENTRY_FIELDS)]


def _rows(batch: pa.RecordBatch) -> Iterable[tuple]:
    """The rows of a batch as Python values (the fallback's input to ``chain.digest``)."""
    return zip(*(column.to_pylist() for column in batch.columns))


def entry_digests(batch: pa.RecordBatch) -> list[str]:
    """``chain.digest`` of each row of a batch of ENTRY_FIELDS columns (in that order), in row order."""
    if _native is None:
        _specs(batch)  # the same refusals as the native path
        return [chain.digest(row) for row in _rows(batch)]
    raw = _native.entry_digests(batch.num_rows, _specs(batch))
    return [raw[start:start + 64].decode("ascii") for start in range(0, len(raw), 64)]


def fold_entries(batches: Iterable[pa.RecordBatch], start: Mapping[str, tuple[int, str]]
                 ) -> dict[str, tuple[int, str]]:
    """Folds the digests of the entries in ``batches`` onto ``start``, as ``chain.fold_streams`` does.

    ``batches`` hold ENTRY_FIELDS columns in order, rows grouped by stream and in (position,
    line) order within it, no stream NULL. Returns the (entry count, head) of each stream touched.
    """
    if _native is None:
        return chain.fold_streams(((row[0], chain.digest(row)) for batch in batches for row in _rows(batch)), start)
    folder = _native.EntryFolder(dict(start))
    for batch in batches:
        if batch.num_rows:
            folder.fold_columns(batch.num_rows, _specs(batch))
    return folder.heads()


def folds_in_stored_order() -> bool:
    """Whether :func:`fold_entries_in_stored_order` can fold at all (the native build is here):
    without it, reading the rows as stored would be a scan for nothing."""
    return _native is not None


def fold_entries_in_stored_order(batches: Iterable[pa.RecordBatch], start: Mapping[str, tuple[int, str]]
                                 ) -> dict[str, tuple[int, str]] | None:
    """:func:`fold_entries` over rows in any interleaving of their streams (the order they are
    stored in), or None when that cannot give the fold in key order.

    A ledger's writer appends each stream's entries in (position, line) order, so the rows as
    stored need no sort; the native folder keeps a head per stream and checks that each
    stream's keys only rise. None (fold again from rows sorted by key) when one did not, or
    without ``learnright_native`` (whose fallback folds grouped rows only).
    """
    if _native is None:
        return None
    folder = _native.EntryFolder(dict(start))
    for batch in batches:
        if batch.num_rows:
            folder.fold_columns(batch.num_rows, _specs(batch))
            if not folder.in_order():  # the rest would be digested for nothing: sorted, all are again
                return None
    return folder.heads()


LAST_ENTRY_SQL = (f"SELECT entry_id, {', '.join(chain.ENTRY_FIELDS)}, entry_hash FROM {{accruals}}"
                  " ORDER BY entry_id DESC LIMIT 1")
"""The last row of an accruals table (``{accruals}``: its name), as :func:`last_entry` reads it."""


def last_entry(rows: Sequence[tuple]) -> tuple[int, str]:
    """(row number, hash) of the last entry from :data:`LAST_ENTRY_SQL`'s rows; (0, "") without entries.

    The hash is the entry's digest computed from its fields (format 3), or its stored
    format-2 chain hash for an entry booked before schema 7 (no stream).
    """
    if not rows:
        return 0, ""
    entry_id, *values, stored = rows[0]
    return entry_id, stored if values[0] is None else chain.digest(values)
