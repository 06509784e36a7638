"""Rights holders, sources and effective-dated, versioned licenses.

A license book is parsed from TOML (floats are read as exact decimals). A usage event
is priced by the license version in force at its ``occurred_at``: among the licenses
of the source that name the event's platform (or, if none does, those for any
platform ``"*"``), the version with the latest ``effective_from`` not after the event.
Nothing is edited: a new version supersedes an old one from its ``effective_from``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Mapping, Sequence

from ground.errors import ValidationError
from ledger.errors import LicenseFileError
from ledger.core.money import ACCRUAL_SCALE, EXACT, LEDGER_LIMIT, check_currency, money

FORMAT_VERSION = 1
ANY_PLATFORM = "*"


@dataclass(frozen=True, slots=True, kw_only=True)
class Holder:
    holder_id: str
    name: str
    payout_minimum: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    source_id: str
    holder_id: str
    title: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tier:
    """One band of graduated training pricing: units up to ``up_to`` (None: no limit) at ``rate`` per ``per``."""

    up_to: int | None
    rate: Decimal
    unit_price: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingTerms:
    """``rate`` per ``per`` units of ``unit``; ``unit_price`` = rate / per, exact.

    With ``tiers``, ingest still accrues at ``rate`` (the first tier's); the close adds
    a tier adjustment bringing the month's volume per source and platform to the
    graduated amount.
    """

    rate: Decimal
    per: int
    unit: str
    unit_price: Decimal
    tiers: tuple[Tier, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceTerms:
    """``rate`` per answer that drew on the source, times its attribution weight."""

    rate: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class LicenseVersion:
    license_id: str
    version: int
    source_id: str
    platform_id: str
    effective_from: datetime
    currency: str
    training: TrainingTerms | None
    inference: InferenceTerms | None
    content_hash: str
    terms: Mapping[str, Any]
    minimum_monthly: Decimal | None = None
    pool: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AgreementVersion:
    """A platform agreement: revenue-based terms that are computed at close.

    ``pool_percent`` of each RevenueReport of the platform goes to a pool shared by the
    sources licensed to it with ``pool = true``; ``royalty_percent`` goes to the sources
    the reporting model was trained on; ``inherit`` is the weight a fine-tune gives to
    its base model's dataset composition.
    """

    agreement_id: str
    version: int
    platform_id: str
    effective_from: datetime
    pool_percent: Decimal | None
    royalty_percent: Decimal | None
    inherit: Decimal
    content_hash: str
    terms: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class LicenseBook:
    """Holders, sources and every license version, indexed for in-force lookups."""

    holders: Mapping[str, Holder]
    sources: Mapping[str, Source]
    versions: tuple[LicenseVersion, ...]
    agreements: tuple[AgreementVersion, ...] = ()
    _index: Mapping[tuple[str, str], tuple[tuple[datetime, ...], tuple[LicenseVersion, ...]]] = field(
        default_factory=dict, repr=False
    )

    def in_force_index(self) -> Mapping[tuple[str, str], tuple[tuple[datetime, ...], tuple[LicenseVersion, ...]]]:
        """(source_id, platform_id or ANY_PLATFORM) -> (effective starts, versions), as
        :meth:`in_force` bisects them; for compiled lookups that must agree with it."""
        return self._index

    def in_force(self, source_id: str, platform_id: str, at: datetime) -> LicenseVersion | None:
        """The version pricing a use of ``source_id`` by ``platform_id`` at ``at``, if any."""
        for key in ((source_id, platform_id), (source_id, ANY_PLATFORM)):
            entry = self._index.get(key)
            if entry is None:
                continue
            starts, versions = entry
            position = bisect.bisect_right(starts, at)
            if position:
                return versions[position - 1]
        return None

    def agreement_in_force(self, platform_id: str, at: datetime) -> AgreementVersion | None:
        """The platform agreement of ``platform_id`` in force at ``at``: latest effective_from, then version."""
        candidates = [a for a in self.agreements if a.platform_id == platform_id and a.effective_from <= at]
        return max(candidates, key=lambda a: (a.effective_from, a.version), default=None)

    def version(self, license_id: str, version: int) -> LicenseVersion | None:
        for candidate in self.versions:
            if candidate.license_id == license_id and candidate.version == version:
                return candidate
        return None

    def holder_of(self, source_id: str) -> Holder | None:
        source = self.sources.get(source_id)
        return None if source is None else self.holders.get(source.holder_id)


def build_book(
    holders: Mapping[str, Holder],
    sources: Mapping[str, Source],
    versions: tuple[LicenseVersion, ...],
    agreements: tuple[AgreementVersion, ...] = (),
) -> LicenseBook:
    """Indexes versions by (source, platform), ordered by effective_from then version."""
    grouped: dict[tuple[str, str], list[LicenseVersion]] = {}
    for version in versions:
        grouped.setdefault((version.source_id, version.platform_id), []).append(version)
    index = {}
    for key, items in grouped.items():
        items.sort(key=lambda v: (v.effective_from, v.version))
        index[key] = (tuple(v.effective_from for v in items), tuple(items))
    return LicenseBook(
        holders=dict(holders), sources=dict(sources), versions=tuple(versions), agreements=tuple(agreements),
        _index=index,
    )


def merge_books(old: LicenseBook, new: LicenseBook) -> LicenseBook:
    """``old`` plus whatever ``new`` adds; a changed (license, version) is refused.

    Raises:
        LicenseFileError: ``new`` redefines an existing license version differently.
    """
    added = _new_versions("license", "license_id", old.versions, new.versions)
    added_agreements = _new_versions("agreement", "agreement_id", old.agreements, new.agreements)
    return build_book(
        {**old.holders, **new.holders}, {**old.sources, **new.sources}, old.versions + tuple(added),
        old.agreements + tuple(added_agreements),
    )


def _new_versions(kind: str, id_field: str, old: Sequence, new: Sequence) -> list:
    """The versions of ``new`` that ``old`` lacks; a known (id, version) with other content is refused."""
    known = {(getattr(v, id_field), v.version): v for v in old}
    added = []
    for version in new:
        identity = getattr(version, id_field)
        existing = known.get((identity, version.version))
        if existing is None:
            added.append(version)
        elif existing.content_hash != version.content_hash:
            raise LicenseFileError(
                f"{kind} {identity} version {version.version} already exists with other terms"
                f" (hash {existing.content_hash[:12]}, new {version.content_hash[:12]});"
                f" versions are never edited: add version {version.version + 1} instead"
            )
    return added


def parse_book(text: str, origin: str = "<string>") -> LicenseBook:
    """Parses a license TOML document.

    Raises:
        LicenseFileError: naming the entry, the field and the bad value.
    """
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise LicenseFileError(f"{origin} is not valid TOML: {exc}") from exc
    fmt = data.get("format", FORMAT_VERSION)
    if fmt != FORMAT_VERSION:
        raise LicenseFileError(f"{origin}: format {fmt!r} is not supported (this Learnright reads format {FORMAT_VERSION})")
    try:
        holders = {h.holder_id: h for h in (_holder(item) for item in _entries(data, "holders"))}
        sources = {s.source_id: s for s in (_source(item, holders) for item in _entries(data, "sources"))}
        versions = tuple(_license(item, sources) for item in _entries(data, "licenses"))
        agreements = tuple(_agreement(item) for item in _entries(data, "agreements"))
    except ValidationError as exc:
        raise LicenseFileError(f"{origin}: {exc}") from exc
    return build_book(holders, sources, versions, agreements)


def _entries(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = data.get(key, [])
    if not isinstance(items, list):
        raise ValidationError(key, items, "must be an array of tables ([[...]])")
    return items


def _str(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{where}.{key}", value, "must be a non-empty string")
    return value


def _holder(item: Mapping[str, Any]) -> Holder:
    holder_id = _str(item, "id", "holders[]")
    where = f"holders[{holder_id}]"
    minimums = item.get("payout_minimum", {})
    if not isinstance(minimums, Mapping):
        raise ValidationError(f"{where}.payout_minimum", minimums, "must be a table of currency = amount")
    parsed = {}
    for currency, amount in minimums.items():
        check_currency(currency, f"{where}.payout_minimum")
        value = money(amount, f"{where}.payout_minimum.{currency}")
        if value < 0:
            raise ValidationError(f"{where}.payout_minimum.{currency}", value, "must be >= 0")
        parsed[currency] = value
    return Holder(holder_id=holder_id, name=item.get("name", holder_id), payout_minimum=parsed)


def _source(item: Mapping[str, Any], holders: Mapping[str, Holder]) -> Source:
    source_id = _str(item, "id", "sources[]")
    holder_id = _str(item, "holder", f"sources[{source_id}]")
    if holder_id not in holders:
        raise ValidationError(f"sources[{source_id}].holder", holder_id, "is not a holder declared in this file")
    return Source(source_id=source_id, holder_id=holder_id, title=item.get("title", ""))


def _positive(value: Any, where: str) -> Decimal:
    amount = money(value, where)
    if amount <= 0:
        raise ValidationError(where, amount, "must be > 0")
    if amount > LEDGER_LIMIT:
        raise ValidationError(where, amount, "must be below 10^26, the most a ledger amount (DECIMAL(38,12)) holds")
    return amount


def _license(item: Mapping[str, Any], sources: Mapping[str, Source]) -> LicenseVersion:
    license_id = _str(item, "id", "licenses[]")
    version = item.get("version", 1)
    where = f"licenses[{license_id} v{version}]"
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValidationError(f"{where}.version", version, "must be an integer >= 1")
    source_id = _str(item, "source", where)
    if source_id not in sources:
        raise ValidationError(f"{where}.source", source_id, "is not a source declared in this file")
    effective_from = item.get("effective_from")
    if not isinstance(effective_from, datetime) or effective_from.tzinfo is None:
        raise ValidationError(
            f"{where}.effective_from", effective_from, "must be a TOML offset date-time such as 2026-01-01T00:00:00Z"
        )
    currency = check_currency(item.get("currency"), f"{where}.currency")
    training = inference = None
    if "training" in item:
        terms = item["training"]
        rate = _positive(terms.get("rate"), f"{where}.training.rate")
        per = terms.get("per", 1)
        if isinstance(per, bool) or not isinstance(per, int) or per <= 0:
            raise ValidationError(f"{where}.training.per", per, "must be an integer > 0")
        try:
            unit_price = EXACT.divide(rate, Decimal(per))
        except Exception:
            raise ValidationError(f"{where}.training", f"{rate}/{per}", "rate / per must be an exact decimal") from None
        if unit_price.as_tuple().exponent < -ACCRUAL_SCALE:
            raise ValidationError(
                f"{where}.training", f"{rate}/{per}", f"rate / per needs more than {ACCRUAL_SCALE} decimal places"
            )
        unit = _str(terms, "unit", f"{where}.training")
        tiers = _tiers(terms.get("tiers"), rate, per, f"{where}.training.tiers")
        training = TrainingTerms(rate=rate, per=per, unit=unit, unit_price=unit_price, tiers=tiers)
    if "inference" in item:
        rate = _positive(item["inference"].get("rate"), f"{where}.inference.rate")
        if rate.as_tuple().exponent < -(ACCRUAL_SCALE - 6):
            raise ValidationError(f"{where}.inference.rate", rate, f"must have at most {ACCRUAL_SCALE - 6} decimal places")
        inference = InferenceTerms(rate=rate)
    if training is None and inference is None:
        raise ValidationError(where, license_id, "has no pricing terms (training or inference)")
    platform_id = item.get("platform", ANY_PLATFORM)
    minimum_monthly = None
    if "minimum" in item:
        minimum = item["minimum"]
        if not isinstance(minimum, Mapping) or "monthly" not in minimum:
            raise ValidationError(f"{where}.minimum", minimum, "must be a table { monthly = amount }")
        minimum_monthly = _positive(minimum["monthly"], f"{where}.minimum.monthly")
        if minimum_monthly.as_tuple().exponent < -ACCRUAL_SCALE:
            raise ValidationError(f"{where}.minimum.monthly", minimum_monthly, f"must have at most {ACCRUAL_SCALE} decimal places")
        if platform_id == ANY_PLATFORM:
            raise ValidationError(f"{where}.minimum", platform_id, "needs a license for one platform (platform = \"...\"), not \"*\"")
    pool = item.get("pool", False)
    if not isinstance(pool, bool):
        raise ValidationError(f"{where}.pool", pool, "must be true or false")
    terms = {
        "format": FORMAT_VERSION,
        "license_id": license_id,
        "version": version,
        "source_id": source_id,
        "platform_id": platform_id,
        "effective_from": effective_from.astimezone(timezone.utc).isoformat(),
        "currency": currency,
        "training": None if training is None else {"rate": str(training.rate), "per": training.per, "unit": training.unit},
        "inference": None if inference is None else {"rate": str(inference.rate)},
    }
    # Period terms enter the hashed terms only when present, so older versions keep their hashes.
    if training is not None and training.tiers:
        terms["training"]["tiers"] = [
            {"up_to": tier.up_to, "rate": str(tier.rate)} for tier in training.tiers
        ]
    if minimum_monthly is not None:
        terms["minimum"] = {"monthly": str(minimum_monthly)}
    if pool:
        terms["pool"] = True
    canonical = json.dumps(terms, sort_keys=True, separators=(",", ":"))
    return LicenseVersion(
        license_id=license_id,
        version=version,
        source_id=source_id,
        platform_id=terms["platform_id"],
        effective_from=effective_from.astimezone(timezone.utc),
        currency=currency,
        training=training,
        inference=inference,
        content_hash=hashlib.sha256(canonical.encode()).hexdigest(),
        terms=terms,
        minimum_monthly=minimum_monthly,
        pool=pool,
    )


def _tiers(value: Any, rate: Decimal, per: int, where: str) -> tuple[Tier, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise ValidationError(where, value, "must be a non-empty array of { up_to = units, rate = amount }")
    tiers = []
    previous = 0
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        if not isinstance(item, Mapping):
            raise ValidationError(here, item, "must be a table { up_to = units, rate = amount }")
        tier_rate = _positive(item.get("rate"), f"{here}.rate")
        up_to = item.get("up_to")
        last = index == len(value) - 1
        if last and up_to is not None:
            raise ValidationError(f"{here}.up_to", up_to, "must be absent on the last tier (it has no upper limit)")
        if not last and (isinstance(up_to, bool) or not isinstance(up_to, int) or up_to <= previous):
            raise ValidationError(f"{here}.up_to", up_to, f"must be an integer above the previous tier's limit ({previous})")
        try:
            unit_price = EXACT.divide(tier_rate, Decimal(per))
        except Exception:
            raise ValidationError(f"{here}.rate", f"{tier_rate}/{per}", "rate / per must be an exact decimal") from None
        if unit_price.as_tuple().exponent < -ACCRUAL_SCALE:
            raise ValidationError(f"{here}.rate", f"{tier_rate}/{per}", f"rate / per needs more than {ACCRUAL_SCALE} decimal places")
        tiers.append(Tier(up_to=up_to, rate=tier_rate, unit_price=unit_price))
        previous = up_to or previous
    if tiers[0].rate != rate:
        raise ValidationError(
            f"{where}[0].rate", tiers[0].rate, f"must equal training.rate ({rate}): ingest accrues at the first tier's rate"
        )
    return tuple(tiers)


def _percent(value: Any, where: str) -> Decimal:
    percent = _positive(value, where)
    if percent > 100:
        raise ValidationError(where, percent, "must be at most 100")
    if percent.as_tuple().exponent < -4:
        raise ValidationError(where, percent, "must have at most 4 decimal places")
    return percent


def _agreement(item: Mapping[str, Any]) -> AgreementVersion:
    agreement_id = _str(item, "id", "agreements[]")
    version = item.get("version", 1)
    where = f"agreements[{agreement_id} v{version}]"
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValidationError(f"{where}.version", version, "must be an integer >= 1")
    platform_id = _str(item, "platform", where)
    if platform_id == ANY_PLATFORM:
        raise ValidationError(f"{where}.platform", platform_id, "must name one platform")
    effective_from = item.get("effective_from")
    if not isinstance(effective_from, datetime) or effective_from.tzinfo is None:
        raise ValidationError(
            f"{where}.effective_from", effective_from, "must be a TOML offset date-time such as 2026-01-01T00:00:00Z"
        )
    pool_percent = royalty_percent = None
    inherit = Decimal(0)
    if "pool" in item:
        if not isinstance(item["pool"], Mapping):
            raise ValidationError(f"{where}.pool", item["pool"], "must be a table { percent = number }")
        pool_percent = _percent(item["pool"].get("percent"), f"{where}.pool.percent")
    if "model_royalty" in item:
        royalty = item["model_royalty"]
        if not isinstance(royalty, Mapping):
            raise ValidationError(f"{where}.model_royalty", royalty, "must be a table { percent = number, inherit = 0..1 }")
        royalty_percent = _percent(royalty.get("percent"), f"{where}.model_royalty.percent")
        inherit = money(royalty.get("inherit", 0), f"{where}.model_royalty.inherit")
        if not 0 <= inherit <= 1 or inherit.as_tuple().exponent < -6:
            raise ValidationError(f"{where}.model_royalty.inherit", inherit, "must be in [0, 1] with at most 6 decimal places")
    if pool_percent is None and royalty_percent is None:
        raise ValidationError(where, agreement_id, "has no terms (pool or model_royalty)")
    terms = {
        "format": FORMAT_VERSION,
        "agreement_id": agreement_id,
        "version": version,
        "platform_id": platform_id,
        "effective_from": effective_from.astimezone(timezone.utc).isoformat(),
        "pool": None if pool_percent is None else {"percent": str(pool_percent)},
        "model_royalty": None if royalty_percent is None else {"percent": str(royalty_percent), "inherit": str(inherit)},
    }
    canonical = json.dumps(terms, sort_keys=True, separators=(",", ":"))
    return AgreementVersion(
        agreement_id=agreement_id,
        version=version,
        platform_id=platform_id,
        effective_from=effective_from.astimezone(timezone.utc),
        pool_percent=pool_percent,
        royalty_percent=royalty_percent,
        inherit=inherit,
        content_hash=hashlib.sha256(canonical.encode()).hexdigest(),
        terms=terms,
    )
