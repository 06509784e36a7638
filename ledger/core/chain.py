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
from typing import TYPE_CHECKING, Iterable, Sequence

from json.encoder import encode_basestring

from ledger.core.money import ACCRUAL_QUANTUM, WIDE

if TYPE_CHECKING:
    from ledger.core.pricing import Accrual

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


def utc_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime, as the chain writes times."""
    delta = moment.astimezone(timezone.utc) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


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
        return str(utc_micros(value))
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


def canonical_accrual(entry_id: int, accrual: Accrual) -> bytes:
    """``canonical`` of an accrual's ENTRY_FIELDS, written out field by field.

    The append path's fast form of :func:`canonical` (no per-value type dispatch); the
    two give identical bytes, which the tests check on every kind of value.
    """
    a, q, w, text = accrual, ACCRUAL_QUANTUM, WIDE, encode_basestring
    reverses = "null" if a.reverses_entry_id is None else str(a.reverses_entry_id)
    return (
        f"{_PREFIX}{entry_id},{text(a.platform_id)},{text(a.event_id)},{a.line:d},{text(a.kind)},"
        f"{text(a.source_id)},{text(a.holder_id)},{text(a.model_id)},{text(a.license_id)},{a.license_version:d},"
        f'"{a.quantity.quantize(q, context=w)}",{text(a.unit)},"{a.rate.quantize(q, context=w)}",{a.per:d},'
        f'{text(a.currency)},"{a.amount.quantize(q, context=w)}",{utc_micros(a.occurred_at)},{text(a.period)},'
        f"{reverses},{text(a.description)}]"
    ).encode()


def chain_accruals(previous: str, first_entry_id: int, accruals: Sequence[Accrual]) -> list[str]:
    """The hash of each accrual in turn, numbered from ``first_entry_id``."""
    hashes = []
    for entry_id, accrual in enumerate(accruals, start=first_entry_id):
        previous = link(previous, canonical_accrual(entry_id, accrual))
        hashes.append(previous)
    return hashes
