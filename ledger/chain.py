"""Hash chaining of ledger entries: each entry's hash covers its content and its predecessor.

``hash_n = SHA-256(hash_{n-1} || "\\n" || canonical(entry_n))``. The canonical form is a
versioned JSON array (compact, UTF-8, exactly what ``json.dumps(..., separators=(",", ":"),
ensure_ascii=False)`` writes) of the ENTRY_FIELDS values, with amounts at the accrual
scale as strings and times as UTC microseconds, so the same entry hashes the same
whether it comes from Python or back from DuckDB. Changing any row, reordering rows or
truncating the tail changes the head.

Format 2 covers ``description`` (how a period line was computed) as well.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from decimal import Decimal
from typing import Iterable, Sequence

from json.encoder import encode_basestring

from ledger.money import ACCRUAL_QUANTUM, WIDE

CHAIN_FORMAT = 2
GENESIS = "0" * 64
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# The accrual fields the hash covers, in order. Changing this list is a new CHAIN_FORMAT.
ENTRY_FIELDS = (
    "entry_id", "platform_id", "event_id", "line", "kind", "source_id", "holder_id", "model_id",
    "license_id", "license_version", "quantity", "unit", "rate", "per", "currency", "amount",
    "occurred_at", "period", "reverses_entry_id", "description",
)
_PREFIX = f"[{CHAIN_FORMAT},"


def _json(value: object) -> str:
    """One value as canonical JSON; the same text json.dumps would write for its normal form."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is int:
        return str(value)
    if kind is Decimal:
        return f'"{value.quantize(ACCRUAL_QUANTUM, context=WIDE)}"'
    if isinstance(value, datetime):
        delta = value.astimezone(timezone.utc) - _EPOCH
        return str((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
    raise TypeError(f"a ledger entry cannot hold {kind.__name__} values ({value!r})")


def canonical(values: Sequence[object]) -> bytes:
    """The canonical bytes of one entry given its ENTRY_FIELDS values in order."""
    return (_PREFIX + ",".join(map(_json, values)) + "]").encode()


def link(previous: str, entry: bytes) -> str:
    return hashlib.sha256(previous.encode("ascii") + b"\n" + entry).hexdigest()


def chain(previous: str, entries: Iterable[Sequence[object]]) -> list[str]:
    """The hash of each entry in turn, starting from ``previous``."""
    hashes = []
    for values in entries:
        previous = link(previous, canonical(values))
        hashes.append(previous)
    return hashes
