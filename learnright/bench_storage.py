"""`make bench`'s storage figure: bytes on disk per booked event, and where they are.

Fills fresh usage topics with synthetic events once (:func:`learnright.bench.fill`), then
each round books all of them through the ledger pipeline (:class:`consumers.service.LedgerConsumer`,
the native fast path where it takes a batch) into a fresh ledger file, checkpoints it and
measures it (:func:`ledger.storage.footprint.footprint`). Prints
``bench storage ratio=R rate=N/s bytes_per_event=B used_bytes_per_event=U``: ``B`` is the
file's size over the events booked, ``U`` the same without the free blocks checkpoints left
(they swing from run to run and are reused by later writes), ``R`` is the target
(:data:`TARGET_BYTES`) over ``B`` (at least 1.00 meets it), and the rate is the events booked per second while the ledger measured was written.
The report's section breaks the bytes down by table, column, indexes and free blocks.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ground.settings import Settings
from learnright.bench import book_file, filled_topics
from learnright.bench_report import Figure, machine, write_section

NAME = "storage"
FULL_EVENTS = 1_000_000
TARGET_BYTES = 120
"""Issue 18's target: at most this many bytes on disk per booked event."""
COLUMNS_SHOWN = 6
"""The largest columns of each large table the report names."""


def run(settings: Settings, *, workdir: Path, rounds: int, events: int | None, report: Path | None,
        echo: Callable[[str], None] = print) -> tuple[Figure, ...]:
    """Books ``events`` (None: :data:`FULL_EVENTS`) ``rounds`` times; returns the figure of the smallest file."""
    from ledger.storage.footprint import footprint

    size = events or FULL_EVENTS
    measured = []
    with filled_topics(settings, workdir, size, echo) as filled:
        for n in range(rounds):
            path, seconds = _book(filled, size, workdir)
            found = footprint(path)
            path.unlink()
            measured.append((found, seconds))
            echo(f"round {n + 1}: {found.file_bytes / size:.1f} bytes/event, booked at {size / seconds:,.0f}/s")
    best, seconds = min(measured, key=lambda m: m[0].file_bytes)
    per_event = best.file_bytes / size
    figure = Figure(name=NAME, ratio=TARGET_BYTES / per_event, rate=size / seconds,
                    extra=(("bytes_per_event", f"{per_event:.1f}"),
                           ("used_bytes_per_event", f"{best.used_bytes / size:.1f}")))
    echo(figure.line())
    if report is not None:
        write_section(report, NAME, _section(measured, size, figure))
    return (figure,)


def _book(settings: Settings, events: int, workdir: Path) -> tuple[Path, float]:
    """Books the filled topics into a fresh ledger file; returns it (closed) and the seconds booking took."""
    path = workdir / f"storage-{uuid.uuid4().hex[:6]}.duckdb"
    return path, book_file(settings, events, path)


def _section(measured: list, events: int, figure: Figure) -> str:
    best = min(measured, key=lambda m: m[0].file_bytes)[0]
    sizes = sorted(m[0].file_bytes / events for m in measured)
    accruals = next((t.rows for t in best.tables if t.table == "accruals"), 0)

    def per(value: int) -> str:
        return f"{value / events:.1f}"

    lines = [f"| file on disk | | {per(best.file_bytes)} |",
             f"| blocks in use | | {per(best.used_bytes)} |",
             f"| free blocks (freed by checkpoints, reused by later writes) | | {per(best.free_bytes)} |",
             f"| indexes, catalog and row-group metadata | | {per(best.other_bytes)} |"]
    for table in best.tables:
        lines.append(f"| `{table.table}` ({table.rows:,} rows) | | {per(table.bytes)} |")
        if table.bytes * 20 >= best.used_bytes:  # the large tables: their largest columns
            for column in table.columns[:COLUMNS_SHOWN]:
                lines.append(f"| | `{column.column}` ({column.compression}) | {per(column.bytes)} |")
    return f"""## Storage

Written by `make bench` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC). {events:,} synthetic events
({accruals:,} accruals) booked through the pipeline into a fresh ledger file, {len(measured)} round(s),
checkpointed, then measured from DuckDB's block accounting and segment map
(`ledger.storage.footprint`). Bytes per event: best {sizes[0]:.1f}, worst {sizes[-1]:.1f}
(run-to-run spread). Rate: events booked per second while the measured file was written.

`{figure.line()}`

Target: at most {TARGET_BYTES} bytes per event on disk (issue 18); ratio = {TARGET_BYTES} / bytes per event.

| where | column | bytes/event |
| --- | --- | --- |
{chr(10).join(lines)}

Machine: {machine()}."""
