"""Unlicensed use: usage of a source whose consent ended, booked apart and never priced.

When a license version's ``effective_to`` has passed or the holder revoked the source
(:class:`ledger.core.licenses.ConsentEnd`), a use is neither priced nor dropped: it is
one :class:`UnlicensedUse` row, keyed like an accrual by the record that produced it
(stream, position, line). Statements list it in an optional ``unlicensed_use``
section (:func:`statement_section`), present only when non-empty, so every statement
without unlicensed use keeps its bytes; platform usage reports and ``learnright
unlicensed`` list it too.

Pure: rows in, grouped lines out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Iterable, Mapping


@dataclass(frozen=True, slots=True, kw_only=True)
class UnlicensedUse:
    """One use of a source without consent: a training event, or one attribution of an answer.

    ``quantity`` is units for training and the attribution weight for inference, as an
    accrual's would be. ``license_id``/``license_version`` name the version whose consent
    ended, ``currency`` its currency (the statement the use is listed on), ``reason``
    ``ended`` or ``revoked`` and ``revocation_id`` the revocation, if any.
    """

    platform_id: str
    event_id: str
    line: int
    kind: str
    source_id: str
    holder_id: str
    model_id: str
    quantity: Decimal
    unit: str
    occurred_at: datetime
    period: str
    reason: str
    license_id: str
    license_version: int
    currency: str
    revocation_id: str = ""
    stream: str = ""
    position: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class UnlicensedLine:
    """Unlicensed uses of one source by one platform and model, of one kind, month and reason, summed."""

    period: str
    source_id: str
    platform_id: str
    model_id: str
    kind: str
    unit: str
    quantity: Decimal
    events: int
    reason: str
    license_id: str
    license_version: int
    revocation_id: str = ""


def group_uses(uses: Iterable[UnlicensedUse]) -> tuple[UnlicensedLine, ...]:
    """Sums ``uses`` per (period, source, platform, model, kind, unit, reason, license, revocation).

    ``events`` counts distinct events, so an answer naming a revoked source once counts once.
    Ordered by those keys: the same uses give the same lines whatever order they came in.
    """
    quantities: dict[tuple, Decimal] = {}
    events: dict[tuple, set[str]] = {}
    for use in uses:
        key = (use.period, use.source_id, use.platform_id, use.model_id, use.kind, use.unit, use.reason,
               use.license_id, use.license_version, use.revocation_id)
        quantities[key] = quantities.get(key, Decimal(0)) + use.quantity
        events.setdefault(key, set()).add(use.event_id)
    lines = []
    for key in sorted(quantities):
        period, source, platform, model, kind, unit, reason, license_id, license_version, revocation_id = key
        lines.append(UnlicensedLine(
            period=period, source_id=source, platform_id=platform, model_id=model, kind=kind, unit=unit,
            quantity=quantities[key], events=len(events[key]), reason=reason, license_id=license_id,
            license_version=license_version, revocation_id=revocation_id))
    return tuple(lines)


def statement_section(lines: Iterable[UnlicensedLine]) -> list[dict]:
    """The ``unlicensed_use`` member of a statement document: objects of scalars, quantities as exact strings.

    Not money: no amount, no rate. It is signed with the statement.
    """
    return [
        {"period": line.period, "source_id": line.source_id, "platform_id": line.platform_id,
         "model_id": line.model_id, "kind": line.kind, "unit": line.unit, "quantity": format(line.quantity, "f"),
         "events": line.events, "reason": line.reason, "license": f"{line.license_id} v{line.license_version}",
         "revocation_id": line.revocation_id}
        for line in lines
    ]


def by_holder_and_currency(uses: Iterable[UnlicensedUse]) -> Mapping[tuple[str, str], tuple[UnlicensedLine, ...]]:
    """Grouped lines per (holder, currency): the statement each belongs on."""
    grouped: dict[tuple[str, str], list[UnlicensedUse]] = {}
    for use in uses:
        grouped.setdefault((use.holder_id, use.currency), []).append(use)
    return {key: group_uses(items) for key, items in sorted(grouped.items())}
