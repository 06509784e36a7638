"""What a collective declares: its members and its versioned, effective-dated distribution rules.

A collective (a collective management organisation, a learnright agent, a data union)
is a holder of the license file with ``members``. How the income of its sources is
split among them is a :class:`DistributionRule`, versioned and effective-dated like a
license: a rule version is in force from its ``effective_from`` until a later version
starts. Pure declarations; the split itself is :mod:`ledger.core.collectives`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Mapping

HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One member of a collective: paid from its distribution statements like a holder from its statements."""

    member_id: str
    name: str
    payout_minimum: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagementFee:
    """``percent`` of what each member is attributed, at most ``cap[currency]`` per period and currency in all."""

    percent: Decimal
    cap: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Deduction:
    """A named deduction other than the management fee (a social or cultural fund), ``percent`` of the attribution."""

    name: str
    percent: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class DistributionRule:
    """One version of a collective's distribution rule.

    ``sources`` maps a source to the one member it belongs to; ``pools`` maps a pooled
    source to fixed shares (percent) of its members, summing to at most 100: what the
    shares leave, and every source of the collective the rule names for no member (a
    member who left), is undistributed. ``content_hash`` identifies the version's terms,
    so a restated version can be told apart from a changed one.
    """

    collective_id: str
    version: int
    effective_from: datetime
    sources: Mapping[str, str]
    pools: Mapping[str, Mapping[str, Decimal]]
    management_fee: ManagementFee | None
    deductions: tuple[Deduction, ...]
    content_hash: str
    terms: Mapping[str, Any]

    def weights(self, source_id: str) -> dict[str, Decimal]:
        """The fraction of ``source_id``'s income each member is attributed (each in [0, 1], summing to at most 1)."""
        owner = self.sources.get(source_id)
        if owner is not None:
            return {owner: Decimal(1)}
        return {member: share / HUNDRED for member, share in self.pools.get(source_id, {}).items()}

    def fee_cap(self, currency: str) -> Decimal | None:
        """The most the management fee takes of one period's income in ``currency``; None: no cap."""
        if self.management_fee is None:
            return None
        return self.management_fee.cap.get(currency)


def rules_of(rules: tuple[DistributionRule, ...], collective_id: str) -> tuple[DistributionRule, ...]:
    """The versions of ``collective_id``'s rule, ordered by ``effective_from`` then version."""
    return tuple(sorted((r for r in rules if r.collective_id == collective_id),
                        key=lambda r: (r.effective_from, r.version)))


def rule_in_force(rules: tuple[DistributionRule, ...], at: datetime) -> DistributionRule | None:
    """Of one collective's ordered versions (:func:`rules_of`), the one in force at ``at``: the last started."""
    position = bisect.bisect_right([r.effective_from for r in rules], at)
    return rules[position - 1] if position else None
