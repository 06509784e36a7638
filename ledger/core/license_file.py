"""The license file: a TOML document of holders, sources, licenses, agreements and distribution rules.

A holder with ``members`` is a collective; its ``[[distributions]]`` are the versions
of the rule that splits its income among them (:mod:`ledger.core.distribution_rules`).

Floats are read as exact decimals. Each license and agreement version keeps a SHA-256
of the canonical JSON of its terms, so that a restated version can be told apart from a
changed one (:func:`ledger.core.licenses.merge_books`); a license version makes its terms
from its fields when asked (:func:`ledger.core.licenses.license_terms`).

Reading is two steps: :func:`read_document` (``tomllib``) and :func:`book_of` (every
check, the book). A ledger stores the first step's result beside the text
(:mod:`ledger.core.license_forms`) and repeats only the second when it reads its book.
"""

from __future__ import annotations

import decimal
import tomllib
from datetime import datetime, timezone
from decimal import Decimal
from collections.abc import Iterator, Mapping
from typing import Any

from ground.errors import ValidationError
from ledger.errors import LicenseFileError
from ledger.core.licenses import (
    ANY_PLATFORM,
    FORMAT_VERSION,
    AgreementVersion,
    Holder,
    InferenceTerms,
    LicenseBook,
    LicenseVersion,
    Revocation,
    Source,
    Tier,
    TrainingTerms,
    build_book,
    terms_hash,
)
from ledger.core.distribution_rules import Deduction, DistributionRule, ManagementFee, Member
from ledger.core.money import ACCRUAL_SCALE, EXACT, LEDGER_LIMIT, check_currency, money

def parse_book(text: str, origin: str = "<string>") -> LicenseBook:
    """Parses a license TOML document.

    Raises:
        LicenseFileError: naming the entry, the field and the bad value.
    """
    return book_of(read_document(text, origin), origin)


def read_document(text: str, origin: str = "<string>") -> dict[str, Any]:
    """The license TOML document as ``tomllib`` parses it, floats as exact decimals; not yet checked.

    Raises:
        LicenseFileError: ``text`` is not TOML.
    """
    try:
        return tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise LicenseFileError(f"{origin} is not valid TOML: {exc}") from exc


def book_of(data: dict[str, Any], origin: str = "<string>") -> LicenseBook:
    """The book of a parsed license document (:func:`read_document`), every entry checked.

    The same checks and values whether ``data`` was just parsed or decoded from its stored
    form (:mod:`ledger.core.license_forms`). ``data`` is consumed: each entry is let go of as
    it is read.

    Raises:
        LicenseFileError: naming the entry, the field and the bad value.
    """
    fmt = data.get("format", FORMAT_VERSION)
    if fmt != FORMAT_VERSION:
        raise LicenseFileError(f"{origin}: format {fmt!r} is not supported (this Learnright reads format {FORMAT_VERSION})")
    try:
        holders = {h.holder_id: h for h in (_holder(item) for item in _entries(data, "holders"))}
        sources = {s.source_id: s for s in (_source(item, holders) for item in _entries(data, "sources"))}
        versions = tuple(_license(item, sources) for item in _entries(data, "licenses"))
        agreements = tuple(_agreement(item) for item in _entries(data, "agreements"))
        revocations = tuple(_revocation(item) for item in _entries(data, "revocations"))
        distributions = tuple(_distribution(item, holders, sources) for item in _entries(data, "distributions"))
    except ValidationError as exc:
        raise LicenseFileError(f"{origin}: {exc}") from exc
    return build_book(holders, sources, versions, agreements, revocations, distributions)


# -- fields shared by every entry --------------------------------------------------------


def _entries(data: Mapping[str, Any], key: str) -> Iterator[Mapping[str, Any]]:
    """The tables of ``[[key]]``, each let go of by ``data`` as it is read: a large book's parsed
    tables need not stay in memory beside the book built from them."""
    items = data.get(key, [])
    if not isinstance(items, list):
        raise ValidationError(key, items, "must be an array of tables ([[...]])")
    for index in range(len(items)):
        item, items[index] = items[index], None
        yield item


def _str(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{where}.{key}", value, "must be a non-empty string")
    return value


def _version(item: Mapping[str, Any], where: str) -> int:
    version = item.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValidationError(f"{where}.version", version, "must be an integer >= 1")
    return version


def _effective_from(item: Mapping[str, Any], where: str, key: str = "effective_from") -> datetime:
    """The entry's ``effective_from`` (or other instant ``key``) in UTC; a naive or missing one is refused."""
    effective_from = item.get(key)
    if not isinstance(effective_from, datetime) or effective_from.tzinfo is None:
        raise ValidationError(
            f"{where}.{key}", effective_from, "must be a TOML offset date-time such as 2026-01-01T00:00:00Z"
        )
    return effective_from.astimezone(timezone.utc)


def _positive(value: Any, where: str) -> Decimal:
    amount = money(value, where)
    if amount <= 0:
        raise ValidationError(where, amount, "must be > 0")
    if amount > LEDGER_LIMIT:
        raise ValidationError(where, amount, "must be below 10^26, the most a ledger amount (DECIMAL(38,12)) holds")
    return amount


# -- holders and sources -----------------------------------------------------------------


def _holder(item: Mapping[str, Any]) -> Holder:
    holder_id = _str(item, "id", "holders[]")
    where = f"holders[{holder_id}]"
    members: dict[str, Member] = {}
    for member in _members(item.get("members", []), f"{where}.members"):
        if member.member_id in members or member.member_id == holder_id:
            raise ValidationError(f"{where}.members", member.member_id, "is declared twice")
        members[member.member_id] = member
    return Holder(holder_id=holder_id, name=item.get("name", holder_id),
                  payout_minimum=_payout_minimum(item, where), members=members)


def _members(value: Any, where: str) -> list[Member]:
    """The members of a collective: ``[[holders.members]]`` tables of id, name, payout_minimum."""
    if not isinstance(value, list):
        raise ValidationError(where, value, "must be an array of tables { id = ..., name = ... }")
    members = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise ValidationError(f"{where}[{index}]", item, "must be a table { id = ..., name = ... }")
        member_id = _str(item, "id", f"{where}[{index}]")
        here = f"{where}[{member_id}]"
        members.append(Member(member_id=member_id, name=item.get("name", member_id),
                              payout_minimum=_payout_minimum(item, here)))
    return members


def _payout_minimum(item: Mapping[str, Any], where: str) -> dict[str, Decimal]:
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
    return parsed


def _source(item: Mapping[str, Any], holders: Mapping[str, Holder]) -> Source:
    source_id = _str(item, "id", "sources[]")
    holder_id = _str(item, "holder", f"sources[{source_id}]")
    if holder_id not in holders:
        raise ValidationError(f"sources[{source_id}].holder", holder_id, "is not a holder declared in this file")
    return Source(source_id=source_id, holder_id=holder_id, title=item.get("title", ""))


# -- licenses ----------------------------------------------------------------------------


def _license(item: Mapping[str, Any], sources: Mapping[str, Source]) -> LicenseVersion:
    license_id = _str(item, "id", "licenses[]")
    where = f"licenses[{license_id} v{item.get('version', 1)}]"
    version = _version(item, where)
    source_id = _str(item, "source", where)
    if source_id not in sources:
        raise ValidationError(f"{where}.source", source_id, "is not a source declared in this file")
    effective_from = _effective_from(item, where)
    currency = check_currency(item.get("currency"), f"{where}.currency")
    training = _training(_table(item, "training", where), f"{where}.training") if "training" in item else None
    inference = _inference(_table(item, "inference", where), f"{where}.inference") if "inference" in item else None
    if training is None and inference is None:
        raise ValidationError(where, license_id, "has no pricing terms (training or inference)")
    platform_id = item.get("platform", ANY_PLATFORM)
    if not isinstance(platform_id, str) or not platform_id.strip():
        raise ValidationError(f"{where}.platform", platform_id, "must be a platform id or \"*\" (any platform)")
    minimum_monthly = _minimum(item["minimum"], platform_id, f"{where}.minimum") if "minimum" in item else None
    pool = item.get("pool", False)
    if not isinstance(pool, bool):
        raise ValidationError(f"{where}.pool", pool, "must be true or false")
    effective_to = _effective_from(item, where, "effective_to") if "effective_to" in item else None
    if effective_to is not None and effective_to <= effective_from:
        raise ValidationError(f"{where}.effective_to", effective_to.isoformat(),
                              f"must be after effective_from ({effective_from.isoformat()})")
    return LicenseVersion(
        license_id=license_id,
        version=version,
        source_id=source_id,
        platform_id=platform_id,
        effective_from=effective_from,
        currency=currency,
        training=training,
        inference=inference,
        minimum_monthly=minimum_monthly,
        pool=pool,
        effective_to=effective_to,
    )


def _table(item: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """``item[key]``, which must be a TOML table (``training = { rate = 1.1, ... }``)."""
    value = item[key]
    if not isinstance(value, Mapping):
        raise ValidationError(f"{where}.{key}", value, "must be a table, e.g. { rate = 0.0025 }")
    return value


def _training(terms: Mapping[str, Any], where: str) -> TrainingTerms:
    rate = _positive(terms.get("rate"), f"{where}.rate")
    per = terms.get("per", 1)
    if isinstance(per, bool) or not isinstance(per, int) or per <= 0:
        raise ValidationError(f"{where}.per", per, "must be an integer > 0")
    unit_price = _unit_price(rate, per, where)
    unit = _str(terms, "unit", where)
    tiers = _tiers(terms.get("tiers"), rate, per, f"{where}.tiers")
    return TrainingTerms(rate=rate, per=per, unit=unit, unit_price=unit_price, tiers=tiers)


def _unit_price(rate: Decimal, per: int, where: str) -> Decimal:
    """``rate / per``, which must be exact and fit the accrual scale."""
    try:
        unit_price = EXACT.divide(rate, Decimal(per))
    except decimal.DecimalException:
        raise ValidationError(where, f"{rate}/{per}", "rate / per must be an exact decimal") from None
    if unit_price.as_tuple().exponent < -ACCRUAL_SCALE:
        raise ValidationError(where, f"{rate}/{per}", f"rate / per needs more than {ACCRUAL_SCALE} decimal places")
    return unit_price


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
        unit_price = _unit_price(tier_rate, per, f"{here}.rate")
        tiers.append(Tier(up_to=up_to, rate=tier_rate, unit_price=unit_price))
        previous = up_to or previous
    if tiers[0].rate != rate:
        raise ValidationError(
            f"{where}[0].rate", tiers[0].rate, f"must equal training.rate ({rate}): ingest accrues at the first tier's rate"
        )
    return tuple(tiers)


def _inference(terms: Mapping[str, Any], where: str) -> InferenceTerms:
    rate = _positive(terms.get("rate"), f"{where}.rate")
    if rate.as_tuple().exponent < -(ACCRUAL_SCALE - 6):
        raise ValidationError(f"{where}.rate", rate, f"must have at most {ACCRUAL_SCALE - 6} decimal places")
    return InferenceTerms(rate=rate)


def _minimum(minimum: Any, platform_id: str, where: str) -> Decimal:
    """The monthly minimum of a license for one platform."""
    if not isinstance(minimum, Mapping) or "monthly" not in minimum:
        raise ValidationError(where, minimum, "must be a table { monthly = amount }")
    monthly = _positive(minimum["monthly"], f"{where}.monthly")
    if monthly.as_tuple().exponent < -ACCRUAL_SCALE:
        raise ValidationError(f"{where}.monthly", monthly, f"must have at most {ACCRUAL_SCALE} decimal places")
    if platform_id == ANY_PLATFORM:
        raise ValidationError(where, platform_id, "needs a license for one platform (platform = \"...\"), not \"*\"")
    return monthly


# -- revocations -------------------------------------------------------------------------


SHA256_HEX = frozenset("0123456789abcdef")


def _revocation(item: Mapping[str, Any]) -> Revocation:
    """A ``[[revocations]]`` entry: which source, for which platform, from when, why, by whom, on what evidence.

    The source is checked against the whole book when the document is merged
    (:func:`ledger.core.licenses.merge_books`): a revocation names a source of another file.
    """
    revocation_id = _str(item, "id", "revocations[]")
    where = f"revocations[{revocation_id}]"
    source_id = _str(item, "source", where)
    platform_id = item.get("platform", ANY_PLATFORM)
    if not isinstance(platform_id, str) or not platform_id.strip():
        raise ValidationError(f"{where}.platform", platform_id, "must be a platform id or \"*\" (every platform)")
    effective_at = _effective_from(item, where, "effective_at")
    recorded_at = _effective_from(item, where, "recorded_at")
    reason = _str(item, "reason", where)
    revoked_by = _str(item, "by", where)
    evidence_url = item.get("evidence_url")
    if evidence_url is not None and (not isinstance(evidence_url, str) or not evidence_url.startswith(("https://", "http://"))):
        raise ValidationError(f"{where}.evidence_url", evidence_url, "must be an http(s) URL")
    evidence_sha256 = item.get("evidence_sha256")
    if evidence_sha256 is not None and (not isinstance(evidence_sha256, str) or len(evidence_sha256) != 64
                                        or not SHA256_HEX.issuperset(evidence_sha256)):
        raise ValidationError(f"{where}.evidence_sha256", evidence_sha256, "must be 64 lower-case hex digits (SHA-256)")
    if evidence_sha256 is not None and evidence_url is None:
        raise ValidationError(f"{where}.evidence_sha256", evidence_sha256, "needs evidence_url: the hash of what?")
    terms = {
        "format": FORMAT_VERSION, "revocation_id": revocation_id, "source_id": source_id, "platform_id": platform_id,
        "effective_at": effective_at.isoformat(), "recorded_at": recorded_at.isoformat(), "reason": reason,
        "by": revoked_by, "evidence_url": evidence_url, "evidence_sha256": evidence_sha256,
    }
    return Revocation(revocation_id=revocation_id, source_id=source_id, platform_id=platform_id,
                      effective_at=effective_at, reason=reason, revoked_by=revoked_by, recorded_at=recorded_at,
                      evidence_url=evidence_url, evidence_sha256=evidence_sha256, content_hash=terms_hash(terms))


# -- platform agreements -----------------------------------------------------------------


def _agreement(item: Mapping[str, Any]) -> AgreementVersion:
    agreement_id = _str(item, "id", "agreements[]")
    where = f"agreements[{agreement_id} v{item.get('version', 1)}]"
    version = _version(item, where)
    platform_id = _str(item, "platform", where)
    if platform_id == ANY_PLATFORM:
        raise ValidationError(f"{where}.platform", platform_id, "must name one platform")
    effective_from = _effective_from(item, where)
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
        "effective_from": effective_from.isoformat(),
        "pool": None if pool_percent is None else {"percent": str(pool_percent)},
        "model_royalty": None if royalty_percent is None else {"percent": str(royalty_percent), "inherit": str(inherit)},
    }
    return AgreementVersion(
        agreement_id=agreement_id,
        version=version,
        platform_id=platform_id,
        effective_from=effective_from,
        pool_percent=pool_percent,
        royalty_percent=royalty_percent,
        inherit=inherit,
        content_hash=terms_hash(terms),
        terms=terms,
    )


def _percent(value: Any, where: str) -> Decimal:
    percent = _positive(value, where)
    if percent > 100:
        raise ValidationError(where, percent, "must be at most 100")
    if percent.as_tuple().exponent < -4:
        raise ValidationError(where, percent, "must have at most 4 decimal places")
    return percent


# -- distribution rules of collectives ----------------------------------------------------


def _distribution(item: Mapping[str, Any], holders: Mapping[str, Holder],
                  sources: Mapping[str, Source]) -> DistributionRule:
    collective_id = _str(item, "collective", "distributions[]")
    where = f"distributions[{collective_id} v{item.get('version', 1)}]"
    version = _version(item, where)
    holder = holders.get(collective_id)
    if holder is None or not holder.members:
        raise ValidationError(f"{where}.collective", collective_id,
                              "is not a collective (a holder with members) declared in this file")
    effective_from = _effective_from(item, where)
    declared = item.get("members", {})
    if not isinstance(declared, Mapping) or not declared:
        raise ValidationError(f"{where}.members", declared,
                              "must be a table of member id = { sources = [...], shares = { source = percent } }")
    owners: dict[str, str] = {}
    pools: dict[str, dict[str, Decimal]] = {}
    for member_id, terms in sorted(declared.items()):
        here = f"{where}.members.{member_id}"
        if member_id not in holder.members:
            raise ValidationError(here, member_id, f"is not a member of collective {collective_id}")
        if not isinstance(terms, Mapping):
            raise ValidationError(here, terms, "must be a table { sources = [...], shares = { source = percent } }")
        own = terms.get("sources", [])
        if not isinstance(own, list):
            raise ValidationError(f"{here}.sources", own, "must be an array of source ids")
        for source_id in own:
            _collective_source(source_id, collective_id, sources, f"{here}.sources")
            if source_id in owners:
                raise ValidationError(f"{here}.sources", source_id, f"already belongs to member {owners[source_id]}")
            owners[source_id] = member_id
        shares = terms.get("shares", {})
        if not isinstance(shares, Mapping):
            raise ValidationError(f"{here}.shares", shares, "must be a table of source = percent")
        for source_id, share in sorted(shares.items()):
            _collective_source(source_id, collective_id, sources, f"{here}.shares")
            pools.setdefault(source_id, {})[member_id] = _percent(share, f"{here}.shares.{source_id}")
    for source_id, shares in sorted(pools.items()):
        if source_id in owners:
            raise ValidationError(f"{where}", source_id, f"is both member {owners[source_id]}'s own source and pooled")
        if sum(shares.values()) > 100:
            raise ValidationError(f"{where}.shares of {source_id}", str(sum(shares.values())), "must sum to at most 100")
    fee = _management_fee(item["management_fee"], f"{where}.management_fee") if "management_fee" in item else None
    deductions = _deductions(item.get("deductions", []), f"{where}.deductions")
    taken = (fee.percent if fee else Decimal(0)) + sum((d.percent for d in deductions), Decimal(0))
    if taken > 100:
        raise ValidationError(where, str(taken), "management fee and deductions must take at most 100 percent together")
    terms = {
        "format": FORMAT_VERSION,
        "collective_id": collective_id,
        "version": version,
        "effective_from": effective_from.isoformat(),
        "sources": dict(sorted(owners.items())),
        "pools": {source: {m: str(p) for m, p in sorted(shares.items())} for source, shares in sorted(pools.items())},
        "management_fee": None if fee is None else {
            "percent": str(fee.percent), "cap": {c: str(a) for c, a in sorted(fee.cap.items())}},
        "deductions": [{"name": d.name, "percent": str(d.percent)} for d in deductions],
    }
    return DistributionRule(collective_id=collective_id, version=version, effective_from=effective_from,
                            sources=owners, pools=pools, management_fee=fee, deductions=deductions,
                            content_hash=terms_hash(terms), terms=terms)


def _collective_source(source_id: Any, collective_id: str, sources: Mapping[str, Source], where: str) -> None:
    source = sources.get(source_id) if isinstance(source_id, str) else None
    if source is None:
        raise ValidationError(where, source_id, "is not a source declared in this file")
    if source.holder_id != collective_id:
        raise ValidationError(where, source_id, f"belongs to holder {source.holder_id}, not to collective {collective_id}")


def _management_fee(value: Any, where: str) -> ManagementFee:
    if not isinstance(value, Mapping):
        raise ValidationError(where, value, "must be a table { percent = number, cap = { CUR = amount } }")
    percent = _percent(value.get("percent"), f"{where}.percent")
    caps = value.get("cap", {})
    if not isinstance(caps, Mapping):
        raise ValidationError(f"{where}.cap", caps, "must be a table of currency = amount per period")
    cap = {}
    for currency, amount in caps.items():
        check_currency(currency, f"{where}.cap")
        cap[currency] = _positive(amount, f"{where}.cap.{currency}")
        if cap[currency].as_tuple().exponent < -ACCRUAL_SCALE:
            raise ValidationError(f"{where}.cap.{currency}", cap[currency], f"must have at most {ACCRUAL_SCALE} decimal places")
    return ManagementFee(percent=percent, cap=cap)


def _deductions(value: Any, where: str) -> tuple[Deduction, ...]:
    if not isinstance(value, list):
        raise ValidationError(where, value, "must be an array of { name = ..., percent = number }")
    deductions = []
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        if not isinstance(item, Mapping):
            raise ValidationError(here, item, "must be a table { name = ..., percent = number }")
        name = _str(item, "name", here)
        if name == "management_fee" or any(d.name == name for d in deductions):
            raise ValidationError(f"{here}.name", name, "must be unique and not 'management_fee'")
        deductions.append(Deduction(name=name, percent=_percent(item.get("percent"), f"{here}.percent")))
    return tuple(deductions)
