"""Rights holders, sources, effective-dated versioned licenses, and the book of them.

A usage event is priced by the license version in force at its ``occurred_at``: among
the licenses of the source that name the event's platform (or, if none does, those for
any platform ``"*"``), the version with the latest ``effective_from`` not after the
event. Nothing is edited: a new version supersedes an old one from its
``effective_from``. The license file that a book is read from is parsed in
:mod:`ledger.core.license_file`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Mapping, Sequence

from ledger.core.distribution_rules import DistributionRule, Member, rules_of
from ledger.errors import LicenseFileError

ANY_PLATFORM = "*"


@dataclass(frozen=True, slots=True, kw_only=True)
class Holder:
    holder_id: str
    name: str
    payout_minimum: Mapping[str, Decimal] = field(default_factory=dict)
    members: Mapping[str, Member] = field(default_factory=dict)
    """Non-empty for a collective (see :mod:`ledger.core.collectives`): its members by id."""

    @property
    def is_collective(self) -> bool:
        return bool(self.members)


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
    distributions: tuple[DistributionRule, ...] = ()
    """Every version of every collective's distribution rule."""
    _index: Mapping[tuple[str, str], tuple[tuple[datetime, ...], tuple[LicenseVersion, ...]]] = field(
        default_factory=dict, repr=False
    )
    _by_id: Mapping[tuple[str, int], LicenseVersion] = field(default_factory=dict, repr=False)

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

    def distribution_rules(self, collective_id: str) -> tuple[DistributionRule, ...]:
        """The rule versions of ``collective_id``, ordered by effective_from then version."""
        return rules_of(self.distributions, collective_id)

    def member_of(self, member_id: str) -> tuple[Holder, Member] | None:
        """The collective ``member_id`` belongs to and the member; None if no collective has it."""
        for holder in self.holders.values():
            member = holder.members.get(member_id)
            if member is not None:
                return holder, member
        return None

    def version(self, license_id: str, version: int) -> LicenseVersion | None:
        """Version ``version`` of ``license_id``: a dict lookup (a close asks once per tier line)."""
        if self._by_id or not self.versions:
            return self._by_id.get((license_id, version))
        for candidate in self.versions:  # a book made without build_book
            if candidate.license_id == license_id and candidate.version == version:
                return candidate
        return None


def build_book(
    holders: Mapping[str, Holder],
    sources: Mapping[str, Source],
    versions: tuple[LicenseVersion, ...],
    agreements: tuple[AgreementVersion, ...] = (),
    distributions: tuple[DistributionRule, ...] = (),
) -> LicenseBook:
    """Indexes versions by (source, platform), ordered by effective_from then version.

    Raises:
        LicenseFileError: a member id is also a holder's id or a member of another collective
            (a member token names its member by id alone, so ids must be unambiguous).
    """
    seen: dict[str, str] = {}
    for holder in holders.values():
        for member_id in holder.members:
            if member_id in holders or member_id in seen:
                other = f"holder {member_id}" if member_id in holders else f"a member of collective {seen[member_id]}"
                raise LicenseFileError(f"member {member_id} of collective {holder.holder_id} is also {other};"
                                       " member ids must differ from every holder and member id")
            seen[member_id] = holder.holder_id
    grouped: dict[tuple[str, str], list[LicenseVersion]] = {}
    for version in versions:
        grouped.setdefault((version.source_id, version.platform_id), []).append(version)
    index = {}
    for key, items in grouped.items():
        items.sort(key=lambda v: (v.effective_from, v.version))
        index[key] = (tuple(v.effective_from for v in items), tuple(items))
    by_id: dict[tuple[str, int], LicenseVersion] = {}
    for version in versions:
        by_id.setdefault((version.license_id, version.version), version)  # the first, as the scan found it
    return LicenseBook(
        holders=dict(holders), sources=dict(sources), versions=tuple(versions), agreements=tuple(agreements),
        distributions=tuple(distributions), _index=index, _by_id=by_id,
    )


def merge_books(old: LicenseBook, new: LicenseBook) -> LicenseBook:
    """``old`` plus whatever ``new`` adds; a changed (license, version) is refused.

    Raises:
        LicenseFileError: ``new`` redefines an existing license version differently.
    """
    added = _new_versions("license", "license_id", old.versions, new.versions)
    added_agreements = _new_versions("agreement", "agreement_id", old.agreements, new.agreements)
    added_rules = _new_versions("distribution rule of collective", "collective_id", old.distributions,
                                new.distributions)
    return build_book(
        {**old.holders, **new.holders}, {**old.sources, **new.sources}, old.versions + tuple(added),
        old.agreements + tuple(added_agreements), old.distributions + tuple(added_rules),
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
