"""What makes the ledger tamper-evident and reproducible: entry digests, stream heads, close roots.

Entry format 3 (every entry booked by this version)
----------------------------------------------------
An entry's identity comes from what produced it, never from when or how it was booked:
its **stream** (``<topic>/<partition>`` of the Kafka record, or ``close/<period>`` for a
period line a close computed), its **position** in that stream (the record's offset, or
the period line's index) and its **line** within that. :func:`entry_key` writes the three
as ``<stream>@<position>#<line>``. A reversal names the entry it reverses by that key.

An entry's **digest** is the SHA-256 of its canonical bytes (:func:`canonical`): a
versioned JSON array (compact, UTF-8, exactly what ``json.dumps(..., separators=(",", ":"),
ensure_ascii=False)`` writes) of the ENTRY_FIELDS values, amounts at the accrual scale as
strings, times as UTC microseconds and ``null`` for a missing value. It depends on the
entry alone, so batch boundaries, poll timing, restarts, the number of consumers and
whether the native fast path ran cannot change it. Being a function of the entry's own
fields, it is not stored beside the entry (from ledger schema 14; ``accruals.entry_hash``
of older rows still holds it): a close and ``learnright verify`` compute it from the
stored fields (``ledger.storage.entry_digests``, natively where built).

Commitments
-----------
Each close folds the digests of the entries it covers into a **head per stream**, in
(position, line) order, continuing from that stream's head at the previous close
(:func:`fold`). The **close root** (:func:`close_root`) hashes the period, the previous
close's root, the license book the close used, its cut-off (the next offset per
partition) and every stream's head. Statements carry the root. Changing, dropping,
adding or moving (re-keying) any covered entry changes its stream's head and every
later root.

Format 2 (entries booked before ledger schema 7)
------------------------------------------------
One global chain in booking order, ``hash_n = SHA-256(hash_{n-1} || "\\n" || canonical_v2)``,
numbered by ``entry_id``. Kept so old ledgers still verify; nothing new is written in it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from json.encoder import encode_basestring

from ledger.core.money import ACCRUAL_QUANTUM, WIDE

if TYPE_CHECKING:
    from ledger.core.pricing import Accrual

ENTRY_FORMAT = 3
GENESIS = "0" * 64
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# The entry fields the digest covers, in order. Changing this list is a new ENTRY_FORMAT.
ENTRY_FIELDS = (
    "stream", "position", "line", "platform_id", "event_id", "kind", "source_id", "holder_id", "model_id",
    "license_id", "license_version", "quantity", "unit", "rate", "per", "currency", "amount",
    "occurred_at", "period", "reverses_entry_key", "description",
)
_PREFIX = f"[{ENTRY_FORMAT},"

# Format 2: the fields of the global chain, with the local entry id first.
CHAIN_FORMAT_V2 = 2
ENTRY_FIELDS_V2 = (
    "entry_id", "platform_id", "event_id", "line", "kind", "source_id", "holder_id", "model_id",
    "license_id", "license_version", "quantity", "unit", "rate", "per", "currency", "amount",
    "occurred_at", "period", "reverses_entry_id", "description",
)
_PREFIX_V2 = f"[{CHAIN_FORMAT_V2},"


def stream_of(topic: str, partition: int) -> str:
    """The stream of entries a Kafka topic-partition produces."""
    return f"{topic}/{partition}"


def close_stream(period: str) -> str:
    """The stream of the period lines the close of ``period`` computes."""
    return f"close/{period}"


def entry_key(stream: str, position: int, line: int) -> str:
    """An entry's identity as text: ``<stream>@<position>#<line>``."""
    return f"{stream}@{position}#{line}"


def utc_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime, as entries write times."""
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
    """The canonical bytes (format 3) of one entry given its ENTRY_FIELDS values in order."""
    return (_PREFIX + ",".join(map(_json, values)) + "]").encode()


def digest(values: Sequence[object]) -> str:
    """An entry's hash (format 3): the SHA-256 of its canonical bytes, as hex."""
    return hashlib.sha256(canonical(values)).hexdigest()


def digest_accruals(accruals: Sequence[Accrual]) -> list[str]:
    """The digest of each accrual (format 3), in order: :func:`digest` of its ENTRY_FIELDS values."""
    return [digest([getattr(a, name) for name in ENTRY_FIELDS]) for a in accruals]


def link(previous: str, entry: bytes) -> str:
    """One step of a hash chain: SHA-256 of the previous hash, a newline and the next item."""
    return hashlib.sha256(previous.encode("ascii") + b"\n" + entry).hexdigest()


def fold(head: str, digests: Iterable[str]) -> str:
    """A stream's head after its next entries' ``digests``, in (position, line) order."""
    for item in digests:
        head = link(head, item.encode("ascii"))
    return head


def fold_streams(digests: Iterable[tuple[str, str]], start: Mapping[str, tuple[int, str]]
                 ) -> dict[str, tuple[int, str]]:
    """Folds (stream, digest) pairs, grouped by stream and in order within it, onto ``start``.

    Returns the (entry count, head) of each stream touched; ``start`` gives each stream's
    (count, head) before, a stream not in it starting from (0, GENESIS).
    """
    touched: dict[str, tuple[int, str]] = {}
    sha = hashlib.sha256
    current: str | None = None
    count, head = 0, GENESIS
    # :func:`link` inlined, and a stream's (count, head) kept in locals over its run of
    # digests: a close folds every entry it covers, so this loop is per event.
    for stream, item in digests:
        if stream != current:
            if current is not None:
                touched[current] = (count, head)
            current = stream
            count, head = touched.get(stream) or start.get(stream) or (0, GENESIS)
        head = sha((head + "\n" + item).encode("ascii")).hexdigest()
        count += 1
    if current is not None:
        touched[current] = (count, head)
    return touched


def book_hash(document_hashes: Iterable[str]) -> str:
    """The identity of a license book: SHA-256 over its documents' hashes, sorted."""
    return hashlib.sha256("\n".join(sorted(document_hashes)).encode("ascii")).hexdigest()


def close_root(*, period: str, previous_root: str, book: str, cutoff: Mapping[tuple[str, int], int],
               heads: Mapping[str, tuple[int, str]]) -> str:
    """The commitment of one close: what statements carry and ``learnright rebuild`` compares.

    ``cutoff`` is the next offset per (topic, partition) the close booked up to; ``heads``
    is every stream's (entry count, head) after the close, streams it did not touch
    included. Sorted and written as compact JSON, then hashed.
    """
    body = [
        ENTRY_FORMAT, period, previous_root, book,
        [[topic, partition, offset] for (topic, partition), offset in sorted(cutoff.items())],
        [[stream, count, head] for stream, (count, head) in sorted(heads.items())],
    ]
    return hashlib.sha256(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


# -- format 2 (verification of entries booked before schema 7) --------------------------------


def canonical_v2(values: Sequence[object]) -> bytes:
    """The canonical bytes of a format-2 entry given its ENTRY_FIELDS_V2 values in order."""
    return (_PREFIX_V2 + ",".join(map(_json, values)) + "]").encode()


def chain_v2(previous: str, entries: Iterable[Sequence[object]]) -> list[str]:
    """The format-2 hash of each entry in turn, starting from ``previous``."""
    hashes = []
    for values in entries:
        previous = link(previous, canonical_v2(values))
        hashes.append(previous)
    return hashes
