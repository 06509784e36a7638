"""A close's statements built, rendered and signed by worker processes while the close fetches and stores them.

A statement is a pure function of its lines, its holder, its carry in, its unlicensed use and
the close root: built (:func:`ledger.core.statements.build_statement`), its document made,
written twice (the canonical bytes that are hashed and signed, the indented document that is
stored) and signed. That is Python work of about 1 ms a statement at 20 lines, which holds the
interpreter's lock: at 100,000 statements over 10M events it was most of the close, on one core.
Here it runs in ``workers`` spawned processes, a range of whole statements at a time
(:meth:`ledger.core.port.LedgerStore.statement_line_ranges`), while the close's process fetches
the next ranges and inserts the statements that came back.

Guarantees:
  * The same statements, in the same order, byte for byte, as the close builds in its own
    process: a worker runs the same functions (:func:`statement_groups`, :func:`signed_statement`)
    over the keys of one range, each key with exactly the period lines, carry, unlicensed use
    and holder it has in the close; the close takes the ranges' results in range order.
  * At most ``2 x workers`` ranges are out at a time (a few thousand statements each), so
    the documents waiting to be stored stay bounded whatever the month's size.
  * A worker's error is raised in the close, whose transaction then stores nothing; the workers
    end when the close's statements do.
  * Only holders without members are built here: a collective's split reads the ledger, so a
    close with collectives builds every statement in its own process.
  * The signing key reaches a worker as its 32 raw bytes, through the pipe to a child process
    the close starts itself (spawned, not forked: the close's process may run threads).
"""

from __future__ import annotations

import bisect
import gc
import hashlib
import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from decimal import Decimal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.core.licenses import Holder
from ledger.core.port import StatementLineRange
from ledger.core.records import SignedStatement
from ledger.core.signing import Signer, signer_of
from ledger.core.statements import Statement, StatementLine, build_statement, statement_renderings

Key = tuple[str, str]
"""A statement's (holder, currency)."""


def statement_groups(covered: Iterable[tuple[Key, list[StatementLine]]], added: Mapping[Key, list[StatementLine]],
                     extra: Iterable[Key]) -> Iterator[tuple[Key, list[StatementLine]]]:
    """Every statement's (holder, currency) and lines, in increasing (holder, currency): the ``covered``
    groups (in that order, streamed), each with its ``added`` lines, merged with the ``extra`` keys
    that have no covered line (their ``added`` lines or none)."""
    pending = sorted(extra)
    at = 0
    for key, lines in covered:
        while at < len(pending) and pending[at] < key:
            yield pending[at], list(added.get(pending[at], ()))
            at += 1
        if at < len(pending) and pending[at] == key:
            at += 1
        yield key, lines + added.get(key, [])
    for key in pending[at:]:
        yield key, list(added.get(key, ()))


def built_statement(*, period: str, holder_id: str, currency: str, holder: Holder | None,
                    lines: list[StatementLine], carry_in: Decimal, unlicensed: tuple, close_root: str) -> Statement:
    """One statement of a close, built (its holder's name and payout minimum; the holder's id when unknown)."""
    return build_statement(
        period=period,
        holder_id=holder_id,
        holder_name=holder.name if holder else holder_id,
        currency=currency,
        lines=lines,
        carry_in=carry_in,
        payout_minimum=holder.payout_minimum.get(currency, Decimal(0)) if holder else Decimal(0),
        close_root=close_root,
        unlicensed=unlicensed,
    )


def sealed(statement: Statement, renderings: tuple[bytes, bytes], signer: Signer) -> SignedStatement:
    """``statement`` with its document's ``renderings`` (canonical bytes, indented form) hashed, signed and kept.

    Stored without its line objects: what is stored of them is in the document, and a close of
    100,000 statements must not hold every line of the month at once."""
    canonical, stored = renderings
    return SignedStatement(statement=replace(statement, lines=()), content_hash=hashlib.sha256(canonical).hexdigest(),
                           document=stored, signature=signer.sign(canonical), key_fingerprint=signer.fingerprint)


def signed_statement(*, period: str, key: Key, holder: Holder | None, lines: list[StatementLine],
                     carry: Mapping[Key, Decimal], unlicensed: Mapping[Key, tuple], close_root: str,
                     signer: Signer) -> SignedStatement:
    """The signed statement of ``key`` of a holder without members (a collective's adds its split)."""
    statement = built_statement(period=period, holder_id=key[0], currency=key[1], holder=holder, lines=lines,
                                carry_in=carry.get(key, Decimal(0)), unlicensed=unlicensed.get(key, ()),
                                close_root=close_root)
    return sealed(statement, statement_renderings(statement), signer)


@dataclass(frozen=True, slots=True, kw_only=True)
class RangeWork:
    """What a worker needs to build the statements of one range of keys: everything the close would use
    for those keys, nothing of the others."""

    period: str
    close_root: str
    lines: StatementLineRange | None
    """The range's covered lines; None for the keys after the last range (added lines, carry, unlicensed use)."""
    extra: tuple[Key, ...]
    added: dict[Key, list[StatementLine]]
    holders: dict[str, Holder]
    carry: dict[Key, Decimal]
    unlicensed: dict[Key, tuple]


_SIGNER: Signer | None = None
"""A worker process's signer (:func:`_start`)."""


def _start(private_key: bytes) -> None:
    """A worker's start: its signer, and no cyclic collector (it makes no cyclic garbage and ends with the close)."""
    global _SIGNER
    _SIGNER = signer_of(Ed25519PrivateKey.from_private_bytes(private_key))
    gc.disable()


def _signed_range(work: RangeWork) -> list[SignedStatement]:
    """The signed statements of one range, in increasing (holder, currency) (in a worker)."""
    covered = work.lines.groups() if work.lines is not None else ()
    return [signed_statement(period=work.period, key=key, holder=work.holders.get(key[0]), lines=lines,
                             carry=work.carry, unlicensed=work.unlicensed, close_root=work.close_root,
                             signer=_SIGNER)
            for key, lines in statement_groups(covered, work.added, work.extra)]


def statement_pool(signer: Signer, workers: int) -> ProcessPoolExecutor:
    """``workers`` spawned processes that sign with ``signer``'s key (started as the pool is first used)."""
    raw = signer.key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                   serialization.NoEncryption())
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start, initargs=(raw,))


class _Sorted:
    """Keys of a mapping (or a set) in order, to take the part of them a range holds."""

    def __init__(self, keys: Iterable):
        self.keys = sorted(keys)

    def part(self, low, high, *, from_low: bool = False) -> list:
        """The keys ``k`` with ``low < k <= high`` (``low <= k`` when ``from_low``; None: unbounded)."""
        if low is None:
            start = 0
        else:
            start = (bisect.bisect_left if from_low else bisect.bisect_right)(self.keys, low)
        return self.keys[start:] if high is None else self.keys[start:bisect.bisect_right(self.keys, high)]


def signed_in_workers(pool: ProcessPoolExecutor, ranges: Iterable[StatementLineRange], *, workers: int,
                      period: str, close_root: str, added: Mapping[Key, list[StatementLine]], extra: set[Key],
                      holders: Mapping[str, Holder], carry: Mapping[Key, Decimal],
                      unlicensed: Mapping[Key, tuple]) -> Iterator[SignedStatement]:
    """The close's signed statements, in increasing (holder, currency), built by ``pool``'s workers a range at a time.

    The same statements :func:`statement_groups` and :func:`signed_statement` give in order over the
    close's line groups, ``added`` lines and ``extra`` keys."""
    extras, adds, carried, unlicensed_keys = _Sorted(extra), _Sorted(added), _Sorted(carry), _Sorted(unlicensed)
    holder_ids = _Sorted(holders)

    def work(lines: StatementLineRange | None, low: Key | None, high: Key | None) -> RangeWork:
        # The holders of the range's keys: from ``low``'s holder (other currencies of it may follow) to ``high``'s.
        held = holder_ids.part(None if low is None else low[0], None if high is None else high[0], from_low=True)
        return RangeWork(period=period, close_root=close_root, lines=lines, extra=tuple(extras.part(low, high)),
                         added={key: added[key] for key in adds.part(low, high)}, holders={h: holders[h] for h in held},
                         carry={key: carry[key] for key in carried.part(low, high)},
                         unlicensed={key: unlicensed[key] for key in unlicensed_keys.part(low, high)})

    def submitted() -> Iterator[Future]:
        low: Key | None = None
        for lines in ranges:
            yield pool.submit(_signed_range, work(lines, low, lines.last_key))
            low = lines.last_key
        yield pool.submit(_signed_range, work(None, low, None))

    out: deque[Future] = deque()
    for future in submitted():
        out.append(future)
        if len(out) >= 2 * workers:
            yield from out.popleft().result()
    while out:
        yield from out.popleft().result()

