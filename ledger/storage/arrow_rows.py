"""Arrow tables of the rows a batch appends: how Python values become DuckDB columns.

Columnar inserts (one Arrow table per ledger table and batch) keep appends fast; the
types here match the DDL in :mod:`ledger.storage.migrations`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Sequence

import pyarrow as pa

from ledger.core import chain

if TYPE_CHECKING:
    from ledger.core.records import EventRow, QuarantineRow
    from ledger.core.usage import RevenueReport

DECIMAL = pa.decimal128(38, 12)
TIMESTAMP = pa.timestamp("us", tz="UTC")


def events_table(events: Sequence[EventRow], batch_id: int) -> pa.Table:
    return pa.table({
        "platform_id": [e.platform_id for e in events],
        "event_id": [e.event_id for e in events],
        "event_type": [e.event_type for e in events],
        "content_hash": [e.content_hash for e in events],
        "model_id": [e.model_id for e in events],
        "occurred_at": pa.array([e.occurred_at for e in events], TIMESTAMP),
        "period": [e.period for e in events],
        "topic": [e.topic for e in events],
        "kafka_partition": pa.array([e.partition for e in events], pa.int32()),
        "kafka_offset": pa.array([e.offset for e in events], pa.int64()),
        "batch_id": pa.array([batch_id] * len(events), pa.int64()),
    })


_ACCRUAL_TYPES = {
    "entry_id": pa.int64(), "line": pa.int32(), "license_version": pa.int32(), "quantity": DECIMAL,
    "rate": DECIMAL, "per": pa.int64(), "amount": DECIMAL, "occurred_at": TIMESTAMP,
    "reverses_entry_id": pa.int64(), "position": pa.int64(),
}


def accruals_table(values: Sequence[tuple], batch_id: int, first_entry_id: int) -> pa.Table:
    """``accruals`` rows from entries' ENTRY_FIELDS values (format 3), numbered from ``first_entry_id``.

    No ``entry_hash``: from schema 14 an entry's digest is computed from these fields where it
    is needed (:mod:`ledger.storage.entry_digests`), and the column stays NULL.
    """
    columns = {"entry_id": pa.array(range(first_entry_id, first_entry_id + len(values)), pa.int64())}
    for index, name in enumerate(chain.ENTRY_FIELDS):
        columns[name] = pa.array([row[index] for row in values], _ACCRUAL_TYPES.get(name, pa.string()))
    columns["batch_id"] = pa.array([batch_id] * len(values), pa.int64())
    return pa.table(columns)


def revenue_table(revenues: Sequence[tuple[RevenueReport, int]], batch_id: int) -> pa.Table:
    return pa.table({
        "platform_id": [r.platform_id for r, _ in revenues],
        "event_id": [r.event_id for r, _ in revenues],
        "model_id": [r.model_id for r, _ in revenues],
        "period": [r.period for r, _ in revenues],
        "revenue": pa.array([r.revenue for r, _ in revenues], DECIMAL),
        "currency": [r.currency for r, _ in revenues],
        "occurred_at": pa.array([r.occurred_at for r, _ in revenues], TIMESTAMP),
        "batch_id": pa.array([batch_id] * len(revenues), pa.int64()),
    })


def quarantine_table(rows: Sequence[QuarantineRow], first_id: int, batch_id: int, now: datetime) -> pa.Table:
    return pa.table({
        "quarantine_id": pa.array(range(first_id, first_id + len(rows)), pa.int64()),
        "batch_id": pa.array([batch_id] * len(rows), pa.int64()),
        "topic": [r.topic for r in rows],
        "kafka_partition": pa.array([r.partition for r in rows], pa.int32()),
        "kafka_offset": pa.array([r.offset for r in rows], pa.int64()),
        "record_key": pa.array([r.key for r in rows], pa.binary()),
        "record_value": pa.array([r.value for r in rows], pa.binary()),
        "headers": [json.dumps({k: v.hex() for k, v in r.headers}) for r in rows],
        "error_code": [r.error_code for r in rows],
        "error_class": [r.error_class for r in rows],
        "reason": [r.reason for r in rows],
        "platform_id": [r.platform_id for r in rows],
        "event_id": [r.event_id for r in rows],
        "quarantined_at": pa.array([now] * len(rows), TIMESTAMP),
        "record_timestamp": pa.array([r.record_timestamp for r in rows], pa.int64()),
    })


# The Arrow types of the native fast path's numeric buffers (strings come as offsets + data).
_NATIVE_TYPES = {**_ACCRUAL_TYPES, "position": pa.int64(), "kafka_partition": pa.int32(), "kafka_offset": pa.int64()}


def _strings(offsets, data) -> pa.Array:
    """A string array over native (offsets, data) buffers: int32 offsets, one more than its values."""
    return pa.Array.from_buffers(pa.string(), max(len(offsets) // 4 - 1, 0),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _native_columns(buffers: dict, rows: int) -> dict[str, pa.Array]:
    """Arrow arrays over the native fast path's buffers (no per-value conversion).

    A string column comes as (offsets, data), or as (keys, (offsets, data)) when it stores each
    distinct value once: an Arrow dictionary, which DuckDB appends as the same ``VARCHAR`` rows.
    """
    columns = {}
    for name, buffer in buffers.items():
        if isinstance(buffer, tuple) and isinstance(buffer[1], tuple):
            keys, (offsets, data) = buffer
            columns[name] = pa.DictionaryArray.from_arrays(
                pa.Array.from_buffers(pa.int32(), rows, [None, pa.py_buffer(keys)]), _strings(offsets, data))
        elif isinstance(buffer, tuple):
            columns[name] = _strings(*buffer)
        else:
            columns[name] = pa.Array.from_buffers(_NATIVE_TYPES[name], rows, [None, pa.py_buffer(buffer)])
    return columns


def native_events_table(native, batch_id: int) -> pa.Table:
    """The ``usage_events`` rows of a native batch (``learnright_native.Rows``)."""
    rows = native.event_count
    columns = _native_columns(native.event_buffers(), rows)
    columns["batch_id"] = pa.repeat(pa.scalar(batch_id, pa.int64()), rows)
    return pa.table(columns)


def native_accruals_table(native, first_entry_id: int, batch_id: int) -> pa.Table:
    """The ``accruals`` rows of a native batch, numbered from ``first_entry_id`` (no ``entry_hash``,
    as :func:`accruals_table`). The fast path books no reversals and no descriptions.
    """
    rows = native.accrual_count
    columns = _native_columns(native.accrual_buffers(), rows)
    columns["entry_id"] = pa.array(range(first_entry_id, first_entry_id + rows), pa.int64())
    columns["reverses_entry_key"] = pa.nulls(rows, pa.string())
    columns["description"] = pa.repeat(pa.scalar("", pa.string()), rows)
    columns["batch_id"] = pa.repeat(pa.scalar(batch_id, pa.int64()), rows)
    return pa.table(columns)
