"""Period terms: the lines a monthly close adds, computed from the month's usage.

Pure: aggregated usage, revenue reports and model lineage in, :class:`PeriodLine` out.
Four terms (docs/licenses.md has the TOML):

* **tier adjustment**: training volume per source and platform is priced along the
  license's graduated tiers; ingest accrued it at the first tier's rate, so the line
  is graduated amount - accrued amount (usually negative).
* **minimum top-up**: when a source's month on a platform (per-event accruals plus
  tier adjustments) falls short of its license's monthly minimum, the difference,
  credited to that source (and so to its holder).
* **pool share**: a platform agreement's percentage of each revenue report, split
  among the sources licensed to that platform with ``pool = true``, pro rata to their
  summed inference attribution weights in the report's month.
* **model royalty**: a platform agreement's percentage of each revenue report, split
  among the sources the model was trained on by dataset share up to the end of the
  report's month; a fine-tune mixes in its base model's shares with the agreement's
  inherit factor.

Every amount is exact at the accrual scale: splits use :func:`ledger.core.allocation.allocate`
with quantum 1e-12, so the parts of a pool or royalty sum exactly to it. No rounding
happens here; statements round once. Each line says how it was computed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Mapping, Sequence

from ledger.core.allocation import allocate
from ledger.core.licenses import LicenseBook, Tier
from ledger.core.money import ACCRUAL_QUANTUM, EXACT, minor_quantum, minor_units, to_accrual_scale, wide_precision
from ledger.core.periods import last_instant
from ledger.core.pricing import Accrual
from ledger.core.usage import RevenueReport

TIER_ADJUSTMENT = "tier_adjustment"
MINIMUM_TOPUP = "minimum_topup"
POOL_SHARE = "pool_share"
MODEL_ROYALTY = "model_royalty"
PERIOD_KINDS = (TIER_ADJUSTMENT, MINIMUM_TOPUP, POOL_SHARE, MODEL_ROYALTY)


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageTotal:
    """Per-event accruals of one month, source, platform, kind and license version, summed."""

    period: str
    platform_id: str
    source_id: str
    kind: str
    license_id: str
    license_version: int
    currency: str
    unit: str
    quantity: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelTraining:
    """Training units of one source consumed by one model in one month."""

    platform_id: str
    model_id: str
    source_id: str
    period: str
    units: Decimal


def term_sources(book: LicenseBook, *, revenues: bool) -> frozenset[str]:
    """The sources whose usage totals :func:`period_lines` reads; every other source's rows change nothing.

    Tier adjustments read the sources with a tiered version, minimum top-ups those with a
    monthly minimum, pool shares (only when there are ``revenues``) those with a pooled
    version. Each term reads a source's rows whole and in their order, so totals limited to
    these sources give the same lines; a book without period terms (most of a large one)
    needs none at all.
    """
    return frozenset(
        version.source_id for version in book.versions
        if (version.training is not None and version.training.tiers) or version.minimum_monthly is not None
        or (revenues and version.pool))


# A period line is an accrual that the close computes rather than an event; its
# ``description`` says how (basis, percentage, split).
PeriodLine = Accrual


@wide_precision
def period_lines(
    *,
    period: str,
    book: LicenseBook,
    usage: Sequence[UsageTotal],
    training: Sequence[ModelTraining],
    revenues: Sequence[RevenueReport],
    lineage: Mapping[tuple[str, str], str],
) -> tuple[PeriodLine, ...]:
    """Every period line of the close of ``period``.

    Args:
        period: the month being closed; tiers and minimums are computed for it.
        book: licenses and platform agreements.
        usage: per-event accrual totals of ``period`` and of every month a report in
            ``revenues`` is for; those of the sources :func:`term_sources` names are enough.
        training: training units per model and source, for months up to the latest
            report month.
        revenues: reports not yet settled by an earlier close, for ``period`` or before.
        lineage: base model of each fine-tuned (platform, model).
    """
    tiers = tier_adjustments(period=period, book=book, usage=usage)
    minimums = minimum_topups(period=period, book=book, usage=usage, adjustments=tiers)
    ordered = sorted(revenues, key=lambda r: (r.period, r.platform_id, r.event_id))
    pools = tuple(line for report in ordered for line in pool_shares(period=period, book=book, usage=usage, report=report))
    royalties = tuple(
        line for report in ordered
        for line in model_royalties(period=period, book=book, training=training, lineage=lineage, report=report)
    )
    return tiers + minimums + pools + royalties


# -- tiers -------------------------------------------------------------------------------


def _graduated(start: Decimal, units: Decimal, tiers: Sequence[Tier]) -> tuple[Decimal, list[tuple[Decimal, Tier]]]:
    """Amount of the units at volume positions [start, start + units) along ``tiers``."""
    end = start + units
    amount, used, lower = Decimal(0), [], Decimal(0)
    for tier in tiers:
        upper = None if tier.up_to is None else Decimal(tier.up_to)
        overlap = (end if upper is None else min(end, upper)) - max(start, lower)
        if overlap > 0:
            amount += overlap * tier.unit_price
            used.append((overlap, tier))
        if upper is not None:
            lower = upper
    return amount, used


def tier_adjustments(*, period: str, book: LicenseBook, usage: Sequence[UsageTotal]) -> tuple[PeriodLine, ...]:
    """One line per (source, platform, license version with tiers) of the month.

    The month's training volume of a source on a platform is laid out in the order its
    license versions took effect, so a price change mid-month continues the volume
    count rather than restarting it; each version's units are priced by its own tiers.
    """
    groups: dict[tuple[str, str], list[UsageTotal]] = defaultdict(list)
    for total in usage:
        if total.period == period and total.kind == "training":
            groups[(total.source_id, total.platform_id)].append(total)
    lines = []
    for (source_id, platform_id), totals in sorted(groups.items()):
        versions = {(t.license_id, t.license_version): book.version(t.license_id, t.license_version) for t in totals}
        if all(v.training is not None and not v.training.tiers for v in versions.values()):
            continue  # no tiers, no adjustment: most sources of a large book
        order = sorted(versions, key=lambda key: (versions[key].effective_from, key))
        position = Decimal(0)
        for key in order:
            version = versions[key]
            units = sum((t.quantity for t in totals if (t.license_id, t.license_version) == key), Decimal(0))
            accrued = sum((t.amount for t in totals if (t.license_id, t.license_version) == key), Decimal(0))
            if units <= 0:
                continue
            start, position = position, position + units
            terms = version.training
            if not terms.tiers:
                continue
            graduated, used = _graduated(start, units, terms.tiers)
            adjustment = graduated - accrued
            if adjustment == 0:
                continue
            bands = " + ".join(f"{_num(n)} at {_num(t.rate)}" for n, t in used)
            lines.append(_line(
                period=period, kind=TIER_ADJUSTMENT, event_id=f"close:{period}:tier:{platform_id}:{source_id}:{key[0]}:v{key[1]}",
                platform_id=platform_id, source_id=source_id, book=book, model_id="", license=(key[0], key[1]),
                quantity=units, unit=terms.unit, rate=Decimal(0), per=terms.per, currency=version.currency,
                amount=adjustment,
                description=(
                    f"graduated tiers on {_num(units)} {terms.unit} of {source_id} on {platform_id} in {period}"
                    f" (volume {_num(start)} to {_num(start + units)}): {bands} per {_num(Decimal(terms.per))}"
                    f" = {_money(version.currency, graduated)}; accrued at the first tier {_money(version.currency, accrued)};"
                    f" adjustment {_money(version.currency, adjustment)}"
                ),
            ))
    return tuple(lines)


# -- minimum guarantee -------------------------------------------------------------------


def minimum_topups(
    *, period: str, book: LicenseBook, usage: Sequence[UsageTotal], adjustments: Sequence[PeriodLine]
) -> tuple[PeriodLine, ...]:
    """A top-up per (source, platform) whose license in force at the month's end has a
    monthly minimum the month's accruals after tiers fall short of; credited to the source."""
    end = last_instant(period)
    lines = []
    seen = set()
    for version in sorted(book.versions, key=lambda v: (v.source_id, v.platform_id, v.license_id, v.version)):
        key = (version.source_id, version.platform_id)
        if version.minimum_monthly is None or key in seen:
            continue
        if book.in_force(version.source_id, version.platform_id, end) is not version:
            continue
        seen.add(key)
        earned = sum(
            (t.amount for t in usage
             if t.period == period and (t.source_id, t.platform_id) == key and t.currency == version.currency),
            Decimal(0),
        ) + sum(
            (a.amount for a in adjustments if (a.source_id, a.platform_id) == key and a.currency == version.currency),
            Decimal(0),
        )
        shortfall = version.minimum_monthly - earned
        if shortfall <= 0:
            continue
        lines.append(_line(
            period=period, kind=MINIMUM_TOPUP, event_id=f"close:{period}:minimum:{version.platform_id}:{version.source_id}",
            platform_id=version.platform_id, source_id=version.source_id, book=book, model_id="",
            license=(version.license_id, version.version), quantity=Decimal(1), unit="month",
            rate=version.minimum_monthly, per=1, currency=version.currency, amount=shortfall,
            description=(
                f"minimum {_money(version.currency, version.minimum_monthly)} a month for {version.source_id}"
                f" on {version.platform_id} ({version.license_id} v{version.version}); accruals of {period}"
                f" after tiers {_money(version.currency, earned)}; top-up {_money(version.currency, shortfall)}"
            ),
        ))
    return tuple(lines)


# -- revenue: pool share and model royalty ----------------------------------------------


def _share_of_revenue(report: RevenueReport, percent: Decimal) -> Decimal:
    # Revenue has at most 6 places and percent at most 4, so this is exact at 12.
    return to_accrual_scale(EXACT.divide(EXACT.multiply(report.revenue, percent), Decimal(100)), "revenue share")


def _revenue_text(report: RevenueReport, percent: Decimal, amount: Decimal) -> str:
    return (
        f"{_num(percent)}% of {_money(report.currency, report.revenue)} revenue of model {report.model_id}"
        f" (report {report.event_id}, {report.period}) = {_money(report.currency, amount)}"
    )


def pool_shares(*, period: str, book: LicenseBook, usage: Sequence[UsageTotal], report: RevenueReport) -> tuple[PeriodLine, ...]:
    """The pool of one revenue report, split by summed inference weight in the report's month.

    Members are the sources whose license for the platform, in force at the end of the
    report's month, has ``pool = true``; a member with no weighted use that month gets
    nothing. A pool no member used pays nobody (no line).
    """
    end = last_instant(report.period)
    agreement = book.agreement_in_force(report.platform_id, end)
    if agreement is None or agreement.pool_percent is None:
        return ()
    members = {
        source_id for source_id in book.sources
        if (version := book.in_force(source_id, report.platform_id, end)) is not None and version.pool
    }
    weights: dict[str, Decimal] = defaultdict(Decimal)
    for total in usage:
        if (total.period == report.period and total.platform_id == report.platform_id
                and total.kind == "inference" and total.source_id in members):
            weights[total.source_id] += total.quantity
    weights = {source: weight for source, weight in weights.items() if weight > 0}
    pool = _share_of_revenue(report, agreement.pool_percent)
    if not weights or pool == 0:
        return ()
    whole = sum(weights.values(), Decimal(0))
    parts = allocate(pool, weights, ACCRUAL_QUANTUM)
    return tuple(
        _line(
            period=report.period, kind=POOL_SHARE, event_id=f"close:{period}:pool:{report.platform_id}:{report.event_id}",
            line=index, platform_id=report.platform_id, source_id=source_id, book=book, model_id=report.model_id,
            license=(agreement.agreement_id, agreement.version), quantity=weights[source_id], unit="weight",
            rate=agreement.pool_percent, per=100, currency=report.currency, amount=parts[source_id],
            description=(
                f"pool: {_revenue_text(report, agreement.pool_percent, pool)}, split by inference weight"
                f" {_num(weights[source_id])} of {_num(whole)} on {report.platform_id}"
            ),
        )
        for index, source_id in enumerate(parts)
    )


def dataset_shares(
    *,
    platform_id: str,
    model_id: str,
    through: str,
    training: Sequence[ModelTraining],
    lineage: Mapping[tuple[str, str], str],
    inherit: Fraction,
    _seen: frozenset[str] = frozenset(),
) -> dict[str, Fraction]:
    """Each source's exact share of ``model_id``'s training units up to the end of ``through``.

    A fine-tune with base B: share(s) = (1 - inherit) x own(s) + inherit x share_B(s).
    A model with no own units takes its base's shares whole; a base with none leaves
    the own shares; a lineage that loops back is cut where it repeats.
    """
    own: dict[str, Decimal] = defaultdict(Decimal)
    for item in training:
        if item.platform_id == platform_id and item.model_id == model_id and item.period <= through:
            own[item.source_id] += item.units
    own = {source: units for source, units in own.items() if units > 0}
    total = sum(own.values(), Decimal(0))
    shares = {source: Fraction(units) / Fraction(total) for source, units in own.items()}
    base = lineage.get((platform_id, model_id))
    if base is None or base in _seen | {model_id}:
        return dict(sorted(shares.items()))
    inherited = dataset_shares(platform_id=platform_id, model_id=base, through=through, training=training,
                               lineage=lineage, inherit=inherit, _seen=_seen | {model_id})
    if not inherited:
        return dict(sorted(shares.items()))
    if not shares:
        return inherited
    mixed = {source: (1 - inherit) * share for source, share in shares.items()}
    for source, share in inherited.items():
        mixed[source] = mixed.get(source, Fraction(0)) + inherit * share
    return dict(sorted(mixed.items()))


def model_royalties(
    *,
    period: str,
    book: LicenseBook,
    training: Sequence[ModelTraining],
    lineage: Mapping[tuple[str, str], str],
    report: RevenueReport,
) -> tuple[PeriodLine, ...]:
    """The recurring royalty of one revenue report, split by the model's dataset shares.

    A model with no known training units pays nobody (no line).
    """
    agreement = book.agreement_in_force(report.platform_id, last_instant(report.period))
    if agreement is None or agreement.royalty_percent is None:
        return ()
    inherit = Fraction(agreement.inherit)
    shares = dataset_shares(platform_id=report.platform_id, model_id=report.model_id, through=report.period,
                            training=training, lineage=lineage, inherit=inherit)
    royalty = _share_of_revenue(report, agreement.royalty_percent)
    if not shares or royalty == 0:
        return ()
    own = dataset_shares(platform_id=report.platform_id, model_id=report.model_id, through=report.period,
                         training=training, lineage={}, inherit=inherit)
    base = lineage.get((report.platform_id, report.model_id))
    base_shares = {} if base is None else dataset_shares(
        platform_id=report.platform_id, model_id=base, through=report.period, training=training,
        lineage=lineage, inherit=inherit, _seen=frozenset({report.model_id}))
    units: dict[str, Decimal] = defaultdict(Decimal)
    for item in training:
        if item.platform_id == report.platform_id and item.model_id == report.model_id and item.period <= report.period:
            units[item.source_id] += item.units
    parts = allocate(royalty, shares, ACCRUAL_QUANTUM)
    lines = []
    for index, source_id in enumerate(parts):
        how = f"dataset share {_fraction(shares[source_id])}"
        if base_shares and own:
            how += (
                f" = (1 - {_num(agreement.inherit)}) x own {_fraction(own.get(source_id, Fraction(0)))}"
                f" + {_num(agreement.inherit)} x base {base} {_fraction(base_shares.get(source_id, Fraction(0)))}"
            )
        elif base_shares:
            how += f" (all from base {base})"
        lines.append(_line(
            period=report.period, kind=MODEL_ROYALTY,
            event_id=f"close:{period}:royalty:{report.platform_id}:{report.event_id}", line=index,
            platform_id=report.platform_id, source_id=source_id, book=book, model_id=report.model_id,
            license=(agreement.agreement_id, agreement.version), quantity=units.get(source_id, Decimal(0)),
            unit="units", rate=agreement.royalty_percent, per=100, currency=report.currency, amount=parts[source_id],
            description=f"model royalty: {_revenue_text(report, agreement.royalty_percent, royalty)}, {how}",
        ))
    return tuple(lines)


# -- helpers -----------------------------------------------------------------------------


def _line(*, period: str, kind: str, event_id: str, platform_id: str, source_id: str, book: LicenseBook,
          model_id: str, license: tuple[str, int], quantity: Decimal, unit: str, rate: Decimal, per: int,
          currency: str, amount: Decimal, description: str, line: int = 0) -> PeriodLine:
    return PeriodLine(
        platform_id=platform_id, event_id=event_id, line=line, kind=kind, source_id=source_id,
        holder_id=book.sources[source_id].holder_id, model_id=model_id, license_id=license[0],
        license_version=license[1], quantity=to_accrual_scale(quantity, f"{kind} quantity"), unit=unit,
        rate=to_accrual_scale(rate, f"{kind} rate"), per=per, currency=currency,
        amount=to_accrual_scale(amount, f"{kind} amount"), occurred_at=last_instant(period), period=period,
        description=description,
    )


def _num(value: Decimal) -> str:
    """A number for reading: no trailing zeros, thousands separated."""
    normal = value.normalize()
    if normal == normal.to_integral_value():
        normal = normal.quantize(Decimal(1))
    return f"{normal:,f}"


def _money(currency: str, value: Decimal) -> str:
    """``USD 1,234.50``: at least the currency's minor digits, never fewer digits than exact."""
    normal = value.normalize()
    if -normal.as_tuple().exponent < minor_units(currency):
        normal = normal.quantize(minor_quantum(currency))
    return f"{currency} {normal:,f}"


def _fraction(value: Fraction) -> str:
    """An exact share as a decimal when it terminates within 12 places, else as n/d."""
    scaled = value * 10**12
    if scaled.denominator == 1:
        return _num(Decimal(scaled.numerator).scaleb(-12))
    return f"{value.numerator}/{value.denominator}"
