"""Rights holders, sources, effective-dated versioned licenses, and the book of them.

A usage event is priced by the license version in force at its ``occurred_at``: among
the licenses of the source that name the event's platform (or, if none does, those for
any platform ``"*"``), the version with the latest ``effective_from`` not after the
event. Nothing is edited: a new version supersedes an old one from its
``effective_from``. The license file that a book is read from is parsed in
:mod:`ledger.core.license_file`.

Consent can end (docs/licenses.md, "When consent ends"): a version with ``effective_to``
is in force up to that instant only, and a :class:`Revocation` of the source (for one
platform or all) ends every version that started before the revocation's
``effective_at``. A version that starts after a revocation is new consent. Usage of a
source whose consent ended is unlicensed use (:meth:`LicenseBook.consent_end` says
why), which the ledger books apart from accruals and never prices.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Mapping, Sequence

from ledger.core.distribution_rules import DistributionRule, Member, rules_of
from ledger.errors import LicenseFileError

ANY_PLATFORM = "*"
FORMAT_VERSION = 1
"""The format of a license file (``format = 1``), which each version's canonical terms carry."""


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
    minimum_monthly: Decimal | None = None
    pool: bool = False
    effective_to: datetime | None = None
    """The instant the version stops being in force (exclusive); None: until superseded."""

    @property
    def terms(self) -> dict[str, Any]:
        """The version's canonical terms, which :attr:`content_hash` covers and ``license_versions.terms`` stores.

        Made from the fields when asked for (applying a document asks), not kept: a book of
        10,000s of versions is read for pricing and closes, and the terms were a third of its memory.
        """
        return license_terms(
            license_id=self.license_id, version=self.version, source_id=self.source_id, platform_id=self.platform_id,
            effective_from=self.effective_from, currency=self.currency, training=self.training,
            inference=self.inference, minimum_monthly=self.minimum_monthly, pool=self.pool,
            effective_to=self.effective_to)

    @property
    def content_hash(self) -> str:
        """The SHA-256 of :attr:`terms` as JSON with sorted keys (:func:`terms_hash`).

        Made when asked for (applying a document stores it, a merge compares it for a restated
        version), not when the version is read: reading a book of 250,000 versions spent about a
        fifth of its time hashing terms that a close or a consumer never asks for.
        """
        return terms_hash(self.terms)


_TERMS_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
"""``json.dumps(terms, sort_keys=True, separators=(",", ":"))``, its encoder made once, not once per version."""


def terms_hash(terms: Mapping[str, Any]) -> str:
    """The content hash of canonical terms: hex SHA-256 of their JSON with sorted keys and no whitespace."""
    return hashlib.sha256(_TERMS_JSON(terms).encode()).hexdigest()


def license_terms(*, license_id: str, version: int, source_id: str, platform_id: str, effective_from: datetime,
                  currency: str, training: TrainingTerms | None, inference: InferenceTerms | None,
                  minimum_monthly: Decimal | None, pool: bool, effective_to: datetime | None) -> dict[str, Any]:
    """The canonical terms of a license version: what its content hash covers, so a restated version
    can be told from a changed one. Period terms (tiers, minimum, pool, end) enter only when present,
    so versions without them keep the hashes they had before those terms existed."""
    terms: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "license_id": license_id,
        "version": version,
        "source_id": source_id,
        "platform_id": platform_id,
        "effective_from": effective_from.isoformat(),
        "currency": currency,
        "training": None if training is None else {"rate": str(training.rate), "per": training.per, "unit": training.unit},
        "inference": None if inference is None else {"rate": str(inference.rate)},
    }
    if training is not None and training.tiers:
        terms["training"]["tiers"] = [
            {"up_to": tier.up_to, "rate": str(tier.rate)} for tier in training.tiers
        ]
    if minimum_monthly is not None:
        terms["minimum"] = {"monthly": str(minimum_monthly)}
    if pool:
        terms["pool"] = True
    if effective_to is not None:
        terms["effective_to"] = effective_to.isoformat()
    return terms


@dataclass(frozen=True, slots=True, kw_only=True)
class Revocation:
    """A holder's withdrawal of consent for a source, on one platform or on all (``"*"``).

    Appended as a license document of its own (never edited): it is part of the book
    and of the book's hash, which every close commits to.
    """

    revocation_id: str
    source_id: str
    platform_id: str
    effective_at: datetime
    reason: str
    revoked_by: str
    recorded_at: datetime
    evidence_url: str | None = None
    evidence_sha256: str | None = None
    content_hash: str = ""


ENDED = "ended"
REVOKED = "revoked"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentEnd:
    """Why a source had a license for a platform that is no longer in force at an instant.

    ``version`` is the version that would price the use had consent not ended; ``reason``
    is :data:`ENDED` (its ``effective_to`` passed) or :data:`REVOKED` (``revocation``).
    """

    version: LicenseVersion
    reason: str
    since: datetime
    revocation: Revocation | None = None

    def describe(self) -> str:
        if self.revocation is not None:
            return f"revoked by {self.revocation.revocation_id} from {self.since.isoformat()}"
        return f"license {self.version.license_id} v{self.version.version} ended at {self.since.isoformat()}"


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
    revocations: tuple[Revocation, ...] = ()
    _revoked: Mapping[str, tuple[Revocation, ...]] = field(default_factory=dict, repr=False)
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
        """The version pricing a use of ``source_id`` by ``platform_id`` at ``at``, if any.

        None also when consent ended (``effective_to`` or a revocation): see :meth:`consent_end`.
        """
        version = self._started(source_id, platform_id, at)
        if version is None or self._ended(version, platform_id, at) is not None:
            return None
        return version

    def consent_end(self, source_id: str, platform_id: str, at: datetime) -> ConsentEnd | None:
        """Why the license of ``source_id`` for ``platform_id`` is not in force at ``at``; None if it is or never was."""
        version = self._started(source_id, platform_id, at)
        return None if version is None else self._ended(version, platform_id, at)

    def _started(self, source_id: str, platform_id: str, at: datetime) -> LicenseVersion | None:
        """The latest version started at ``at``: the platform's own licenses first, else those for any platform."""
        for key in ((source_id, platform_id), (source_id, ANY_PLATFORM)):
            entry = self._index.get(key)
            if entry is None:
                continue
            starts, versions = entry
            position = bisect.bisect_right(starts, at)
            if position:
                return versions[position - 1]
        return None

    def _ended(self, version: LicenseVersion, platform_id: str, at: datetime) -> ConsentEnd | None:
        """The earliest end of ``version``'s consent for ``platform_id`` at or before ``at``, if any."""
        ends = []
        if version.effective_to is not None and version.effective_to <= at:
            ends.append(ConsentEnd(version=version, reason=ENDED, since=version.effective_to))
        for revocation in self._revoked.get(version.source_id, ()):
            if (revocation.platform_id in (platform_id, ANY_PLATFORM)
                    and version.effective_from <= revocation.effective_at <= at):
                ends.append(ConsentEnd(version=version, reason=REVOKED, since=revocation.effective_at,
                                       revocation=revocation))
                break  # ordered by effective_at: the first that applies is the earliest
        return min(ends, key=lambda end: (end.since, end.reason), default=None)

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
    revocations: tuple[Revocation, ...] = (),
    distributions: tuple[DistributionRule, ...] = (),
) -> LicenseBook:
    """Indexes versions by (source, platform), ordered by effective_from then version, and revocations by source.

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
        if len(items) > 1:  # most (source, platform) pairs have one version: nothing to order
            items.sort(key=lambda v: (v.effective_from, v.version))
        index[key] = (tuple(v.effective_from for v in items), tuple(items))
    by_id: dict[tuple[str, int], LicenseVersion] = {}
    for version in versions:
        by_id.setdefault((version.license_id, version.version), version)  # the first, as the scan found it
    revoked: dict[str, list[Revocation]] = {}
    for revocation in revocations:
        revoked.setdefault(revocation.source_id, []).append(revocation)
    return LicenseBook(
        holders=dict(holders), sources=dict(sources), versions=tuple(versions), agreements=tuple(agreements),
        revocations=tuple(revocations),
        _revoked={source: tuple(sorted(items, key=lambda r: (r.effective_at, r.revocation_id)))
                  for source, items in revoked.items()},
        distributions=tuple(distributions), _index=index, _by_id=by_id,
    )


def merge_books(old: LicenseBook, new: LicenseBook) -> LicenseBook:
    """``old`` plus whatever ``new`` adds; a changed (license, version) is refused.

    Raises:
        LicenseFileError: ``new`` redefines an existing license version differently, or
            revokes a source neither book declares.
    """
    if _is_empty(old) and (new._by_id or not new.versions):
        # The first document of a ledger: the merge would rebuild ``new`` as it is (every entry of
        # it added, in its order), so ``new`` is the merged book once its revocations are checked.
        _check_revoked_sources(new.revocations, new.sources)
        return new
    added = _new_versions("license", "license_id", old.versions, new.versions)
    added_agreements = _new_versions("agreement", "agreement_id", old.agreements, new.agreements)
    sources = {**old.sources, **new.sources}
    _check_revoked_sources(new.revocations, sources)
    known = {r.revocation_id: r for r in old.revocations}
    added_revocations = []
    for revocation in new.revocations:
        existing = known.get(revocation.revocation_id)
        if existing is None:
            added_revocations.append(revocation)
        elif existing.content_hash != revocation.content_hash:
            raise LicenseFileError(f"revocation {revocation.revocation_id} already exists with other content;"
                                   " revocations are never edited")
    added_rules = _new_versions("distribution rule of collective", "collective_id", old.distributions,
                                new.distributions)
    return build_book(
        {**old.holders, **new.holders}, sources, old.versions + tuple(added),
        old.agreements + tuple(added_agreements), old.revocations + tuple(added_revocations),
        old.distributions + tuple(added_rules),
    )


def _is_empty(book: LicenseBook) -> bool:
    return not (book.holders or book.sources or book.versions or book.agreements or book.revocations
                or book.distributions)


def _check_revoked_sources(revocations: Sequence[Revocation], sources: Mapping[str, Source]) -> None:
    """Refuses a revocation of a source that no applied document declares."""
    for revocation in revocations:
        if revocation.source_id not in sources:
            raise LicenseFileError(f"revocation {revocation.revocation_id}: source {revocation.source_id!r}"
                                   " is not declared by any applied license file")


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
