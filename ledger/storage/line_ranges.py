"""A close's statement lines as Arrow fetched them, turned into line objects: what a worker process needs.

Apart from :mod:`ledger.storage.closes` (which fetches them) so that a close's worker processes
(:mod:`ledger.services.statement_workers`) load Arrow and the pure core only, not DuckDB: about
60 MB less each.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ledger.core.statements import StatementLine
from ledger.errors import LedgerFileError

RANGE_LINES = 16_384
"""Statement lines a :class:`LineRange` holds, about (whole statements): what a close hands a worker at a time."""

GROUP_ROWS = 1_024
"""Lines a worker turns into Python values at a time (:meth:`LineRange.groups`): each value of a range's 16
columns is a Python object while its batch is read, so whole ranges at once would hold about 16 x
:data:`RANGE_LINES` of them."""


def python_values(column: pa.Array) -> list:
    """``column.to_pylist()``, value for value (a decimal the same digits and exponent), decimals read faster.

    Arrow makes each ``Decimal`` of a decimal column through Python one value at a time; ``Decimal`` of
    the column cast to text (Arrow writes every digit of the scale) is cheaper: the 16 columns of a
    10M-event close's lines read in 2.5-3.3 us a line against 3.6-5.3 us (docs/benchmarks.md).
    """
    if pa.types.is_decimal(column.type) and not column.null_count:
        return list(map(Decimal, pc.cast(column, pa.string()).to_pylist()))
    return column.to_pylist()


def line_groups(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[tuple[str, str], list[StatementLine]]]:
    """Batches of :data:`ledger.storage.closes.STATEMENT_LINES_SQL`'s rows as (holder, currency) and its lines, one key at a time.

    Raises:
        LedgerFileError: a key came after a greater one (not in Python's string order).
    """
    key: tuple[str, str] | None = None
    lines: list[StatementLine] = []
    for batch in batches:
        for (holder_id, currency, line_period, source_id, platform_id, model_id, kind, unit, rate, per,
             license_id, license_version, quantity, amount, entries, description) in zip(
                *map(python_values, batch.columns)):
            if key is None or key[0] != holder_id or key[1] != currency:
                if key is not None:
                    if (holder_id, currency) < key:
                        raise LedgerFileError(f"statement lines of {(holder_id, currency)!r} came after"
                                              f" {key!r}: not in (holder, currency) order")
                    yield key, lines
                key, lines = (holder_id, currency), []
            lines.append(StatementLine(
                period=line_period, source_id=source_id, platform_id=platform_id, model_id=model_id,
                kind=kind, unit=unit, quantity=quantity, rate=rate, per=per, amount=amount, entries=entries,
                license_id=license_id, license_version=license_version, description=description or ""))
    if key is not None:
        yield key, lines


@dataclass(frozen=True, slots=True, kw_only=True)
class LineRange:
    """The statement lines of consecutive (holder, currency) keys, whole statements only, as fetched (Arrow,
    ``STATEMENT_LINES_SQL``'s columns): a value that pickles compactly, so a worker process can build
    the statements of a range (:meth:`groups`) while the close fetches the next."""

    lines: pa.Table
    last_key: tuple[str, str]
    """The greatest (holder, currency) of the range."""

    def groups(self) -> Iterator[tuple[tuple[str, str], list[StatementLine]]]:
        """The range's (holder, currency) keys and their lines, in increasing key (:func:`line_groups`)."""
        return line_groups(self.lines.to_batches(max_chunksize=GROUP_ROWS))
