"""Distributing a collective's income to its members: exact shares, fees, deductions, undistributed.

Pure. Input: the lines of a collective's statement for one period and currency, each
cut into portions by the distribution rule version in force when its usage occurred
(:class:`AccrualPortion`), and the collective's rule versions. Output: a
:class:`Distribution`; each member's :class:`MemberStatement` follows from it by the
same one rounding a holder's statement gets (:func:`ledger.core.statements.settle`).
The collective's own statement is not touched: its lines, sums and bytes stay what
:mod:`ledger.core.statements` makes of them; the distribution is an optional section
beside them (:func:`distribution_section`).

How a portion of amount ``a`` under rule ``r`` is split, exactly (as fractions):

* attributed (gross) to member ``m``: ``a * w`` where ``w`` is 1 for the owner of an own
  source, ``share / 100`` for a pooled one; the rest (shares under 100 %, a source the
  rule gives no member, no rule in force yet) is the undistributed party's gross;
* of each party's gross, the management fee takes ``percent / 100`` and each named
  deduction its ``percent / 100``; the party keeps the rest (net);
* if the fees of the period and currency add up to more than the cap of the rule in
  force at the period's last instant, every fee is scaled down so they add up to the
  cap exactly.

The exact amounts are then brought to the accrual scale (1e-12) by largest remainder,
top down, so that every level sums exactly to the level above it:

1. the collective's accrued amount into fee, each deduction and net;
2. the fee, each deduction and the net into the parties (members and undistributed);
3. each member's gross (its net + its fee + its deductions) into its lines.

Guaranteed, for every collective, currency and period: the members' nets + the fee +
the deductions + the undistributed amount == the collective's accrued amount, exactly;
a capped fee equals its cap exactly; every part is off its exact value by a few 1e-12 at most.
Negative lines (corrections, late usage of a month whose terms fell) are split the same
way and keep their sign.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Hashable, Iterable, Mapping, Sequence, TypeVar

from ground.errors import ValidationError
from ledger.core.distribution_rules import DistributionRule, Member, rule_in_force
from ledger.core.money import ACCRUAL_QUANTUM, wide_precision
from ledger.core.periods import check_period
from ledger.core.statements import CSV_COLUMNS, FORMAT_VERSION, StatementLine, _csv_cell, _plain, settle

K = TypeVar("K", bound=Hashable)

FEE = "management_fee"
UNDISTRIBUTED = "undistributed"


@dataclass(frozen=True, slots=True, kw_only=True)
class AccrualPortion:
    """The part of one collective statement line whose usage falls under one rule version.

    ``at`` is an instant of that usage (the close passes the start of the rule's window
    within the month, or the period's last instant for a period term, which has no time
    of its own); the rule in force at ``at`` splits ``line.amount``.
    """

    line: StatementLine
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberLine:
    """What one member is attributed of one portion of a collective line."""

    line: StatementLine
    rule_version: int | None
    share: Decimal
    """The member's fraction of the line in percent (100 for an own source)."""
    amount: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Taken:
    """A management fee or a named deduction, as an amount."""

    name: str
    amount: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberDistribution:
    """One member's part of a period's income: attributed - fee - deductions = net."""

    member_id: str
    name: str
    lines: tuple[MemberLine, ...]
    attributed: Decimal
    management_fee: Decimal
    deductions: tuple[Taken, ...]
    net: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Distribution:
    """How a collective's income of one period and currency was split.

    ``members`` (ordered by id) + ``management_fee`` + ``deductions`` + ``undistributed``
    == ``accrued``, exactly.
    """

    collective_id: str
    period: str
    currency: str
    accrued: Decimal
    rule_versions: tuple[int, ...]
    management_fee: Decimal
    fee_cap: Decimal | None
    fee_capped: bool
    deductions: tuple[Taken, ...]
    undistributed: Decimal
    members: tuple[MemberDistribution, ...]

    def member(self, member_id: str) -> MemberDistribution | None:
        return next((m for m in self.members if m.member_id == member_id), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldUndistributed:
    """Undistributed income of an earlier period, still held."""

    period: str
    amount: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberStatement:
    """One member's distribution statement: its net settled once, with its own carry and payout minimum.

    ``payable + carry_out == net + carry_in``, always, as for a holder.
    """

    statement_id: str
    period: str
    currency: str
    collective_id: str
    collective_name: str
    collective_statement_id: str
    collective_content_hash: str
    member: MemberDistribution
    carry_in: Decimal
    payable: Decimal
    carry_out: Decimal
    close_root: str


# -- exact splitting ----------------------------------------------------------------------


def split_signed(total: Decimal, exact: Mapping[K, Fraction], quantum: Decimal = ACCRUAL_QUANTUM) -> dict[K, Decimal]:
    """Largest remainder over signed exact parts that sum to ``total``: each part a whole number of quanta.

    Unlike :func:`ledger.core.allocation.allocate` the parts may have mixed signs (a
    member's negative correction beside another's income). Each part is its exact value
    floored, plus one quantum for the parts with the largest remainders (ties by key);
    each is within one quantum of its exact value; a part that is already a whole number
    of quanta (a capped fee) is kept exactly.

    Raises:
        ValidationError: the exact parts do not sum to ``total``, or ``total`` is not a
            whole number of quanta.
    """
    q = Fraction(quantum)
    units_total = Fraction(total) / q
    if units_total.denominator != 1:
        raise ValidationError("total", total, f"is not a whole number of the quantum {quantum}")
    if sum(exact.values(), Fraction(0)) != Fraction(total):
        raise ValidationError("parts", dict(exact), f"do not sum to the total {total}")
    keys = sorted(exact)
    units = {key: exact[key] / q for key in keys}
    floors = {key: math.floor(units[key]) for key in keys}
    left = int(units_total) - sum(floors.values())
    for key in sorted(keys, key=lambda k: units[k] - floors[k], reverse=True)[:left]:
        floors[key] += 1
    return {key: quantum * floors[key] + Decimal(0) for key in keys}


def fit(exact: Mapping[K, Fraction], total: Fraction) -> dict[K, Fraction]:
    """``exact`` moved to sum to ``total``: the difference spread in proportion to each part's size.

    Used one level down, where ``total`` is the rounded sum of ``exact`` (less than one
    quantum away), so no part moves by more than that difference.
    """
    difference = total - sum(exact.values(), Fraction(0))
    if difference == 0:
        return dict(exact)
    size = sum((abs(v) for v in exact.values()), Fraction(0))
    if size == 0:
        raise ValidationError("parts", dict(exact), f"are all zero and cannot make up {total}")
    return {key: value + difference * abs(value) / size for key, value in exact.items()}


# -- the distribution ---------------------------------------------------------------------


def _line_key(line: StatementLine) -> tuple:
    return (line.period, line.source_id, line.platform_id, line.model_id, line.kind, line.rate, line.license_id,
            line.license_version, line.unit, line.per, line.description, line.amount)


@wide_precision
def distribute(
    *,
    collective_id: str,
    members: Mapping[str, Member],
    rules: Sequence[DistributionRule],
    period: str,
    currency: str,
    portions: Iterable[AccrualPortion],
    period_last_instant: datetime,
) -> Distribution:
    """Splits a collective's income of one period and currency among its members (see the module docstring).

    Args:
        rules: the collective's rule versions, ordered by effective_from then version.
        portions: the collective's statement lines of the period and currency, cut at
            rule boundaries; their amounts sum to the statement's accrued amount.
        period_last_instant: picks the rule whose fee cap applies to the period.
    """
    rules = tuple(rules)
    ordered = sorted(portions, key=lambda p: (_line_key(p.line), p.at))
    accrued = sum((p.line.amount for p in ordered), Decimal(0))
    gross: dict[tuple[str, int], Fraction] = {}  # (party, portion) -> exact attribution
    fees: dict[str, Fraction] = {}
    deductions: dict[str, dict[str, Fraction]] = {}
    weights_used: dict[tuple[str, int], Fraction] = {}
    versions: set[int] = set()
    for index, portion in enumerate(ordered):
        rule = rule_in_force(rules, portion.at)
        amount = Fraction(portion.line.amount)
        weights = {m: Fraction(w) for m, w in rule.weights(portion.line.source_id).items()} if rule else {}
        weights = {m: w for m, w in weights.items() if w != 0 and m in members}
        if sum(weights.values(), Fraction(0)) > 1:
            raise ValidationError(f"distribution rule {rule.collective_id} v{rule.version}", portion.line.source_id,
                                  "gives its members more than 100 percent of this source")
        parties = {**weights, UNDISTRIBUTED: 1 - sum(weights.values(), Fraction(0))}
        if rule is not None:
            versions.add(rule.version)
        for party, weight in parties.items():
            if weight == 0:
                continue
            cell = amount * weight
            gross[(party, index)] = cell
            weights_used[(party, index)] = weight
            if rule is None:
                continue
            if rule.management_fee is not None:
                fees[party] = fees.get(party, Fraction(0)) + cell * Fraction(rule.management_fee.percent) / 100
            for deduction in rule.deductions:
                by_party = deductions.setdefault(deduction.name, {})
                by_party[party] = by_party.get(party, Fraction(0)) + cell * Fraction(deduction.percent) / 100
    closing_rule = rule_in_force(rules, period_last_instant)
    cap = closing_rule.fee_cap(currency) if closing_rule else None
    fee_total = sum(fees.values(), Fraction(0))
    capped = cap is not None and fee_total > Fraction(cap)
    if capped:
        fees = {party: fee * Fraction(cap) / fee_total for party, fee in fees.items()}
        fee_total = Fraction(cap)
    parties = sorted({party for party, _ in gross} | {UNDISTRIBUTED})
    net = {party: sum((c for (p, _), c in gross.items() if p == party), Fraction(0))
           - fees.get(party, Fraction(0)) - sum((d.get(party, Fraction(0)) for d in deductions.values()), Fraction(0))
           for party in parties}
    # Level 1: the accrued amount into fee, deductions, net.
    components: dict[tuple[int, str], Fraction] = {(0, FEE): fee_total, (2, ""): sum(net.values(), Fraction(0))}
    for name, by_party in deductions.items():
        components[(1, name)] = sum(by_party.values(), Fraction(0))
    level1 = split_signed(accrued, components)
    # Level 2: each component into the parties.
    def into_parties(total: Decimal, cells: Mapping[str, Fraction]) -> dict[str, Decimal]:
        exact = {party: cells.get(party, Fraction(0)) for party in parties}
        return split_signed(total, fit(exact, Fraction(total)))

    fee_of = into_parties(level1[(0, FEE)], fees)
    deduction_of = {name: into_parties(level1[(1, name)], by_party) for name, by_party in sorted(deductions.items())}
    net_of = into_parties(level1[(2, "")], net)
    shares = []
    for party in parties:
        if party == UNDISTRIBUTED:
            continue
        taken = tuple(Taken(name=name, amount=amounts[party]) for name, amounts in deduction_of.items())
        attributed = net_of[party] + fee_of[party] + sum((t.amount for t in taken), Decimal(0))
        # Level 3: the member's attribution into its lines.
        cells = {index: c for (p, index), c in gross.items() if p == party}
        by_line = split_signed(attributed, fit(cells, Fraction(attributed)))
        lines = tuple(
            MemberLine(line=ordered[index].line, rule_version=_version_at(rules, ordered[index].at),
                       share=_percent(weights_used[(party, index)]), amount=amount)
            for index, amount in sorted(by_line.items()))
        member = members[party]
        shares.append(MemberDistribution(member_id=party, name=member.name, lines=lines, attributed=attributed,
                                         management_fee=fee_of[party], deductions=taken, net=net_of[party]))
    return Distribution(
        collective_id=collective_id, period=period, currency=currency, accrued=accrued,
        rule_versions=tuple(sorted(versions)), management_fee=level1[(0, FEE)], fee_cap=cap, fee_capped=capped,
        deductions=tuple(Taken(name=name, amount=level1[(1, name)]) for name in sorted(deductions)),
        undistributed=net_of[UNDISTRIBUTED], members=tuple(shares),
    )


def months_between(earlier: str, later: str) -> int:
    """Whole calendar months from period ``earlier`` to period ``later`` (the age of held income)."""
    first, last = check_period(earlier), check_period(later)
    return (int(last[:4]) - int(first[:4])) * 12 + int(last[5:]) - int(first[5:])


def _version_at(rules: Sequence[DistributionRule], at: datetime) -> int | None:
    rule = rule_in_force(tuple(rules), at)
    return rule.version if rule else None


def _percent(weight: Fraction) -> Decimal:
    """A weight in [0, 1] as the percent it was declared as (shares have at most 4 decimal places)."""
    value = weight * 100
    return Decimal(value.numerator) / Decimal(value.denominator)


# -- member statements --------------------------------------------------------------------


def member_statement_id(period: str, collective_id: str, member_id: str, currency: str) -> str:
    """Deterministic, opaque id of a member's distribution statement (``ms_``, apart from holders' ``st_``)."""
    digest = hashlib.sha256(f"{period}\x1f{collective_id}\x1f{member_id}\x1f{currency}".encode()).hexdigest()
    return f"ms_{digest[:20]}"


def idle_member(member: Member) -> MemberDistribution:
    """A member attributed nothing this period (it still gets a statement when it carries a balance)."""
    return MemberDistribution(member_id=member.member_id, name=member.name, lines=(), attributed=Decimal(0),
                              management_fee=Decimal(0), deductions=(), net=Decimal(0))


@wide_precision
def member_statement(
    *,
    distribution: Distribution,
    member: MemberDistribution,
    collective_name: str,
    collective_statement_id: str,
    collective_content_hash: str,
    carry_in: Decimal,
    payout_minimum: Decimal,
    close_root: str,
) -> MemberStatement:
    """The member's statement of ``distribution``: net + carry in, rounded once, under its payout minimum carried."""
    payable, carry_out = settle(member.net + carry_in, distribution.currency, payout_minimum)
    return MemberStatement(
        statement_id=member_statement_id(distribution.period, distribution.collective_id, member.member_id,
                                         distribution.currency),
        period=distribution.period, currency=distribution.currency, collective_id=distribution.collective_id,
        collective_name=collective_name, collective_statement_id=collective_statement_id,
        collective_content_hash=collective_content_hash, member=member, carry_in=carry_in, payable=payable,
        carry_out=carry_out, close_root=close_root)


def member_document(statement: MemberStatement) -> dict:
    """A member's distribution statement as a JSON-ready document.

    It has the members of a holder's statement (so the same envelope, signature check,
    CSV and PDF apply), ``holder`` being the member, ``summary.accrued`` its net; and
    two of its own: ``collective`` (which collective statement it derives from, by
    content hash) and ``distribution`` (attributed, the fee and each deduction, net).
    Its lines are the member's attributed amounts by source, platform and kind of use.
    """
    member = statement.member
    by_source: dict[str, Decimal] = {}
    for line in member.lines:
        by_source[line.line.source_id] = by_source.get(line.line.source_id, Decimal(0)) + line.amount
    return {
        "format_version": FORMAT_VERSION,
        "statement_id": statement.statement_id,
        "period": statement.period,
        "holder": {"id": member.member_id, "name": member.name},
        "currency": statement.currency,
        "collective": {
            "id": statement.collective_id,
            "name": statement.collective_name,
            "statement_id": statement.collective_statement_id,
            "content_hash": statement.collective_content_hash,
        },
        "distribution": {
            "attributed": _plain(member.attributed),
            "management_fee": _plain(member.management_fee),
            "deductions": {taken.name: _plain(taken.amount) for taken in member.deductions},
            "net": _plain(member.net),
        },
        "summary": {
            "accrued": _plain(member.net),
            "carry_in": _plain(statement.carry_in),
            "payable": _plain(statement.payable),
            "carry_out": _plain(statement.carry_out),
        },
        "by_source": {source: _plain(amount) for source, amount in sorted(by_source.items())},
        "lines": [_member_line(statement.period, line) for line in member.lines],
        "ledger": {"close_root": statement.close_root},
    }


def _member_line(period: str, member_line: MemberLine) -> dict:
    line = member_line.line
    return {
        "period": line.period,
        "prior_period_adjustment": line.period != period,
        "source_id": line.source_id,
        "platform_id": line.platform_id,
        "model_id": line.model_id,
        "kind": line.kind,
        "unit": line.unit,
        "quantity": _plain(line.quantity),
        "rate": _plain(line.rate),
        "per": line.per,
        "line_amount": _plain(line.amount),
        "share": _plain(member_line.share),
        "rule_version": member_line.rule_version,
        "amount": _plain(member_line.amount),
        "entries": line.entries,
        "license": f"{line.license_id} v{line.license_version}",
        "description": line.description,
    }


def render_member_csv(document: dict) -> bytes:
    """A member's distribution statement as CSV: its lines, then the distribution rows, then the summary rows.

    The columns are those of a holder's statement CSV; a distribution row has kind
    ``distribution`` and names what it is in ``unit`` (``attributed``,
    ``management_fee``, ``deduction:<name>``, ``net``).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for line in document["lines"]:
        writer.writerow([_csv_cell(c, line.get(c, "")) for c in CSV_COLUMNS])
    distribution = document["distribution"]
    rows = [("distribution", "attributed", distribution["attributed"]),
            ("distribution", "management_fee", distribution["management_fee"])]
    rows += [("distribution", f"deduction:{name}", amount) for name, amount in sorted(distribution["deductions"].items())]
    rows.append(("distribution", "net", distribution["net"]))
    rows += [("summary", key, document["summary"][key]) for key in ("accrued", "carry_in", "payable", "carry_out")]
    for kind, unit, amount in rows:
        row = dict.fromkeys(CSV_COLUMNS, "")
        row.update(period=document["period"], kind=kind, unit=unit, amount=amount)
        writer.writerow([_csv_cell(c, row[c]) for c in CSV_COLUMNS])
    return out.getvalue().encode()


# -- the collective statement's optional section ---------------------------------------


def distribution_section(distribution: Distribution, held: Iterable[HeldUndistributed] = ()) -> dict:
    """The ``distribution`` member of a collective's statement document: per member, fee, deductions, undistributed.

    Present only on a collective's statement, so every other statement's bytes stay
    what they were. ``undistributed.held`` lists the undistributed income of this and
    earlier periods still held, each with its age in months.
    """
    held_rows = [{"period": h.period, "amount": _plain(h.amount),
                  "age_months": months_between(h.period, distribution.period)}
                 for h in sorted(held, key=lambda h: h.period) if h.amount != 0 and h.period < distribution.period]
    if distribution.undistributed != 0:
        held_rows.append({"period": distribution.period, "amount": _plain(distribution.undistributed), "age_months": 0})
    return {
        "rule_versions": list(distribution.rule_versions),
        "management_fee": {
            "amount": _plain(distribution.management_fee),
            "cap": None if distribution.fee_cap is None else _plain(distribution.fee_cap),
            "capped": distribution.fee_capped,
        },
        "deductions": {taken.name: _plain(taken.amount) for taken in distribution.deductions},
        "members": [
            {"id": m.member_id, "name": m.name, "attributed": _plain(m.attributed),
             "management_fee": _plain(m.management_fee),
             "deductions": {t.name: _plain(t.amount) for t in m.deductions}, "net": _plain(m.net)}
            for m in distribution.members
        ],
        "undistributed": {"amount": _plain(distribution.undistributed), "held": held_rows},
    }
