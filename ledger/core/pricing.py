"""Per-event pricing: usage in, accruals out, by the license in force at occurred_at.

Pure: the same event and book always give the same accruals. Amounts are exact at
the accrual scale (license parsing guarantees rate / per and rate x weight fit it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from ledger.errors import NoLicenseError, PricingError, UnknownSourceError, UnlicensedUseError
from ledger.core.licenses import ConsentEnd, LicenseBook, LicenseVersion
from ledger.core.money import LEDGER_LIMIT, wide_precision
from ledger.core.periods import period_of
from ledger.core.unlicensed import UnlicensedUse
from ledger.core.usage import InferenceUsage, TrainingUsage

TRAINING = "training"
INFERENCE = "inference"


@dataclass(frozen=True, slots=True, kw_only=True)
class Accrual:
    """One priced line of one event: what a source earned from one use.

    ``quantity`` is units for training and the attribution weight for inference;
    ``amount`` = quantity x rate / per, exact. A reversal (a correction) negates the
    quantity and amount of the entry it names in ``reverses_entry_key``.

    ``stream`` and ``position`` say what produced the entry (see :mod:`ledger.core.chain`):
    pricing leaves them empty, and ingestion sets them from the Kafka record (a close,
    from its period and the line's index) before the entry is hashed.
    """

    platform_id: str
    event_id: str
    line: int
    kind: str
    source_id: str
    holder_id: str
    model_id: str
    license_id: str
    license_version: int
    quantity: Decimal
    unit: str
    rate: Decimal
    per: int
    currency: str
    amount: Decimal
    occurred_at: datetime
    period: str
    reverses_entry_key: str | None = None
    description: str = ""
    stream: str = ""
    position: int = 0


def _license(book: LicenseBook, source_id: str, platform_id: str, at: datetime, kind: str) -> LicenseVersion:
    source = book.sources.get(source_id)
    if source is None:
        raise UnknownSourceError(f"source {source_id!r} is not in any applied license file")
    version = book.in_force(source_id, platform_id, at)
    if version is None and (end := book.consent_end(source_id, platform_id, at)) is not None:
        raise UnlicensedUseError(
            f"source {source_id!r} is not licensed to platform {platform_id!r} at {at.isoformat()}: {end.describe()}",
            end)
    if version is None:
        raise NoLicenseError(
            f"no license for source {source_id!r} and platform {platform_id!r} is in force at {at.isoformat()}"
        )
    if getattr(version, kind) is None:
        raise NoLicenseError(
            f"license {version.license_id} v{version.version} in force at {at.isoformat()}"
            f" has no {kind} terms for source {source_id!r}"
        )
    return version


def _within_ledger(amount: Decimal, event_id: str, source_id: str) -> Decimal:
    if abs(amount) > LEDGER_LIMIT:
        raise PricingError(
            f"event {event_id} would accrue {amount} for source {source_id!r}, beyond the 26 integer digits"
            " a ledger amount (DECIMAL(38,12)) holds"
        )
    return amount


@wide_precision
def price_training(event: TrainingUsage, book: LicenseBook) -> tuple[Accrual, ...]:
    """Units x rate / per, by the source's license in force at ``event.occurred_at``.

    Raises:
        PricingError: unknown source, no license in force, or a unit the license does not price.
    """
    version = _license(book, event.source_id, event.platform_id, event.occurred_at, TRAINING)
    terms = version.training
    if event.unit != terms.unit:
        raise PricingError(
            f"unit {event.unit!r} of event {event.event_id} does not match license"
            f" {version.license_id} v{version.version}, which prices {terms.unit!r}"
        )
    return (
        Accrual(
            platform_id=event.platform_id,
            event_id=event.event_id,
            line=0,
            kind=TRAINING,
            source_id=event.source_id,
            holder_id=book.sources[event.source_id].holder_id,
            model_id=event.model_id,
            license_id=version.license_id,
            license_version=version.version,
            quantity=Decimal(event.units),
            unit=event.unit,
            rate=terms.rate,
            per=terms.per,
            currency=version.currency,
            amount=_within_ledger(terms.unit_price * event.units, event.event_id, event.source_id),
            occurred_at=event.occurred_at,
            period=period_of(event.occurred_at),
        ),
    )


@wide_precision
def price_inference(event: InferenceUsage, book: LicenseBook) -> tuple[Accrual, ...]:
    """Rate x weight for every source the answer drew on, one accrual per attribution.

    Raises:
        PricingError: for the first attribution that cannot be priced; then none is.
    """
    period = period_of(event.occurred_at)
    accruals = []
    for line, attribution in enumerate(event.attributions):
        version = _license(book, attribution.source_id, event.platform_id, event.occurred_at, INFERENCE)
        rate = version.inference.rate
        accruals.append(
            Accrual(
                platform_id=event.platform_id,
                event_id=event.event_id,
                line=line,
                kind=INFERENCE,
                source_id=attribution.source_id,
                holder_id=book.sources[attribution.source_id].holder_id,
                model_id=event.model_id,
                license_id=version.license_id,
                license_version=version.version,
                quantity=attribution.weight,
                unit="answer",
                rate=rate,
                per=1,
                currency=version.currency,
                amount=_within_ledger(rate * attribution.weight, event.event_id, attribution.source_id),
                occurred_at=event.occurred_at,
                period=period,
            )
        )
    return tuple(accruals)


def price(event: TrainingUsage | InferenceUsage, book: LicenseBook) -> tuple[Accrual, ...]:
    if isinstance(event, TrainingUsage):
        return price_training(event, book)
    return price_inference(event, book)


@dataclass(frozen=True, slots=True, kw_only=True)
class Priced:
    """What one usage event books: accruals for licensed uses, unlicensed uses for the rest."""

    accruals: tuple[Accrual, ...] = ()
    unlicensed: tuple[UnlicensedUse, ...] = ()


def _unlicensed(end: ConsentEnd, *, event: TrainingUsage | InferenceUsage, line: int, kind: str, source_id: str,
                holder_id: str, quantity: Decimal, unit: str) -> UnlicensedUse:
    return UnlicensedUse(
        platform_id=event.platform_id, event_id=event.event_id, line=line, kind=kind, source_id=source_id,
        holder_id=holder_id, model_id=event.model_id, quantity=quantity, unit=unit, occurred_at=event.occurred_at,
        period=period_of(event.occurred_at), reason=end.reason, license_id=end.version.license_id,
        license_version=end.version.version, currency=end.version.currency,
        revocation_id=end.revocation.revocation_id if end.revocation is not None else "")


def price_consented(event: TrainingUsage | InferenceUsage, book: LicenseBook) -> Priced:
    """Prices ``event`` like :func:`price`, booking a use whose consent ended as unlicensed instead.

    A training event of a source whose license ended or was revoked is one unlicensed use;
    an answer prices its licensed attributions and lists each one whose consent ended
    as an unlicensed use of the same line number. An event using a source never
    licensed to the platform is still refused (quarantined, and retried when a license
    arrives).

    Raises:
        PricingError: as :func:`price`, for anything but ended consent.
    """
    if isinstance(event, TrainingUsage):
        try:
            return Priced(accruals=price_training(event, book))
        except UnlicensedUseError as exc:
            return Priced(unlicensed=(_unlicensed(
                exc.end, event=event, line=0, kind=TRAINING, source_id=event.source_id,
                holder_id=book.sources[event.source_id].holder_id, quantity=Decimal(event.units), unit=event.unit),))
    ended = {}
    for line, attribution in enumerate(event.attributions):
        if attribution.source_id in book.sources:
            end = book.consent_end(attribution.source_id, event.platform_id, event.occurred_at)
            if end is not None:
                ended[line] = end
    if not ended:
        return Priced(accruals=price_inference(event, book))
    licensed = tuple(a for line, a in enumerate(event.attributions) if line not in ended)
    lines = [line for line in range(len(event.attributions)) if line not in ended]
    accruals = tuple(replace(accrual, line=lines[index]) for index, accrual in
                     enumerate(price_inference(replace(event, attributions=licensed), book)))
    return Priced(accruals=accruals, unlicensed=tuple(
        _unlicensed(end, event=event, line=line, kind=INFERENCE, source_id=event.attributions[line].source_id,
                    holder_id=book.sources[event.attributions[line].source_id].holder_id,
                    quantity=event.attributions[line].weight, unit="answer")
        for line, end in sorted(ended.items())))
