"""Where a ledger file's bytes are: per table and per column, indexes and metadata, free blocks.

What ``learnright bench`` reports as bytes per event, and what a change of the row shape is
judged by. Read from DuckDB's own block accounting (``pragma_database_size``) and its
segment map (``pragma_storage_info``); nothing is copied or rewritten.

Guarantees:
  * ``file_bytes`` is the file's size on disk after a checkpoint, and equals
    ``used_bytes + free_bytes`` plus DuckDB's file header.
  * A column's bytes are those of the blocks its persistent segments occupy: within a block,
    each segment counts up to the next segment's start (the last one up to the block's end),
    so the columns of a table sum to the blocks the table's data fills. What the used blocks
    hold beyond every table's columns is ``other_bytes``: the tables' indexes (an ART index
    of a primary key), the catalog and the row groups' metadata.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ledger.errors import LedgerFileError


@dataclass(frozen=True, slots=True, kw_only=True)
class ColumnBytes:
    column: str
    bytes: int
    compression: str
    """DuckDB's compressions of the column's segments, comma-separated (``FSST``, ``BitPacking``...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TableBytes:
    table: str
    rows: int
    columns: tuple[ColumnBytes, ...]
    """Largest first."""

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.columns)


@dataclass(frozen=True, slots=True, kw_only=True)
class Footprint:
    file_bytes: int
    used_bytes: int
    free_bytes: int
    tables: tuple[TableBytes, ...]
    """Every table with rows, largest first."""

    @property
    def other_bytes(self) -> int:
        """Used bytes outside the tables' columns: indexes, catalog and row-group metadata."""
        return max(0, self.used_bytes - sum(t.bytes for t in self.tables))

    def table(self, name: str) -> TableBytes:
        return next(t for t in self.tables if t.table == name)


def footprint(path: Path) -> Footprint:
    """The footprint of the ledger file at ``path``, checkpointed first (the file must not be open elsewhere).

    Raises:
        LedgerFileError: no DuckDB file at ``path``, or it cannot be opened.
    """
    path = Path(path)
    if not path.is_file():
        raise LedgerFileError(f"no ledger file at {path} to measure")
    try:
        con = duckdb.connect(str(path))
    except duckdb.Error as exc:
        raise LedgerFileError(f"cannot open {path} to measure it: {exc}") from exc
    try:
        con.execute("CHECKPOINT")
        block_size, used, free = con.execute(
            "SELECT block_size, used_blocks, free_blocks FROM pragma_database_size()"
            " WHERE database_name = current_database()").fetchone()
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() ORDER BY 1").fetchall()]
        segments, rows = [], {}
        for name in names:
            rows[name] = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
            segments.extend((block, offset, name, column, compression) for column, compression, block, offset in con.execute(
                "SELECT column_name, compression, block_id, block_offset FROM pragma_storage_info(?)"
                " WHERE persistent AND block_id >= 0", [name]).fetchall())
    finally:
        con.close()
    segments.sort()
    sizes: dict[tuple[str, str], int] = defaultdict(int)
    compressions: dict[tuple[str, str], set[str]] = defaultdict(set)
    for index, (block, offset, name, column, compression) in enumerate(segments):
        following = segments[index + 1] if index + 1 < len(segments) else None
        end = following[1] if following is not None and following[0] == block else block_size
        sizes[(name, column)] += end - offset
        compressions[(name, column)].add(compression)
    tables = []
    for name in names:
        columns = sorted((ColumnBytes(column=column, bytes=size, compression=",".join(sorted(compressions[(t, column)])))
                          for (t, column), size in sizes.items() if t == name), key=lambda c: (-c.bytes, c.column))
        if rows[name]:
            tables.append(TableBytes(table=name, rows=rows[name], columns=tuple(columns)))
    tables.sort(key=lambda t: (-t.bytes, t.table))
    return Footprint(file_bytes=path.stat().st_size, used_bytes=used * block_size, free_bytes=free * block_size,
                     tables=tuple(tables))
