"""Revoking consent: the one service function the CLI (operators) and the HTTP API (holders) call.

A revocation is appended to the ledger as a license document of its own (a
``[[revocations]]`` entry, :mod:`ledger.core.license_file`), so it is stored as applied,
never edited, re-applied at the same place by ``learnright rebuild``, and covered by the
book hash that every close commits to (:func:`ledger.core.chain.book_hash`).

Guarantees:
  * The effective instant is not before ``now``: consent is withdrawn from now on, never
    for usage already booked (a past instant would silently turn booked, priced usage
    into unlicensed use).
  * A holder revokes only its own sources: another holder's source is refused exactly
    like an unknown one (:class:`UnknownRevocationSourceError`, same message).
  * The revocation id is derived from its content, so the same request applied twice
    (a retried HTTP call) adds nothing.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

from ground.errors import TerminalError, ValidationError
from ledger.core.licenses import ANY_PLATFORM, Revocation
from ledger.core.periods import check_period
from ledger.core.port import LedgerStore
from ledger.core.unlicensed import group_uses
from ledger.errors import LicenseFileError


class RevocationError(ValidationError):
    """A revocation request is malformed or its effective instant lies in the past."""

    code = "revocation_invalid"


class UnknownRevocationSourceError(TerminalError):
    """The source to revoke is unknown, or belongs to another holder (answered alike)."""

    code = "revocation_source_unknown"


def _toml_string(value: str) -> str:
    """A TOML basic string: JSON's escaping is a subset TOML reads the same."""
    return json.dumps(value, ensure_ascii=False)


def revocation_document(*, revocation_id: str, source_id: str, platform_id: str, effective_at: datetime,
                        recorded_at: datetime, reason: str, by: str, evidence_url: str | None,
                        evidence_sha256: str | None) -> str:
    """The license document (TOML) that records one revocation."""
    lines = [
        "# A revocation of consent, appended by learnright (docs/licenses.md).",
        "[[revocations]]",
        f"id = {_toml_string(revocation_id)}",
        f"source = {_toml_string(source_id)}",
        f"platform = {_toml_string(platform_id)}",
        f"effective_at = {effective_at.isoformat().replace('+00:00', 'Z')}",
        f"recorded_at = {recorded_at.isoformat().replace('+00:00', 'Z')}",
        f"reason = {_toml_string(reason)}",
        f"by = {_toml_string(by)}",
    ]
    if evidence_url is not None:
        lines.append(f"evidence_url = {_toml_string(evidence_url)}")
    if evidence_sha256 is not None:
        lines.append(f"evidence_sha256 = {_toml_string(evidence_sha256)}")
    return "\n".join(lines) + "\n"


def revoke_source(ledger: LedgerStore, *, source_id: str, effective_at: datetime, reason: str, by: str,
                  now: datetime, platform_id: str = ANY_PLATFORM, holder_id: str | None = None,
                  evidence_url: str | None = None, evidence_sha256: str | None = None) -> Revocation:
    """Appends a revocation of ``source_id`` for ``platform_id`` (``"*"``: every platform) from ``effective_at``.

    Args:
        holder_id: the holder asking (a holder token); None for an operator, who may revoke any source.
        by: who asked, as recorded (``holder:<id>`` or ``operator``).

    Raises:
        UnknownRevocationSourceError: no such source, or not ``holder_id``'s.
        RevocationError: a naive or past ``effective_at``, an empty reason, bad evidence.
    """
    if effective_at.tzinfo is None or effective_at.utcoffset() is None:
        raise RevocationError("effective_at", effective_at.isoformat(), "must carry a time zone (UTC)")
    if effective_at < now:
        raise RevocationError("effective_at", effective_at.isoformat(),
                              f"may not be in the past (it is {now.isoformat()}): consent ends from now on")
    if not reason.strip():
        raise RevocationError("reason", reason, "must say why consent is withdrawn")
    if not platform_id.strip():
        raise RevocationError("platform", platform_id, "must be a platform id or \"*\" (every platform)")
    book = ledger.load_book()
    source = book.sources.get(source_id)
    if source is None or (holder_id is not None and source.holder_id != holder_id):
        raise UnknownRevocationSourceError(f"no source {source_id!r}")
    recorded_at = now.astimezone(timezone.utc).replace(microsecond=0)
    effective = effective_at.astimezone(timezone.utc)
    request = json.dumps([source_id, platform_id, effective.isoformat(), reason, by, evidence_url, evidence_sha256])
    revocation_id = "rv_" + hashlib.sha256(request.encode()).hexdigest()[:20]
    existing = next((r for r in book.revocations if r.revocation_id == revocation_id), None)
    if existing is not None:
        return existing
    body = revocation_document(revocation_id=revocation_id, source_id=source_id, platform_id=platform_id,
                               effective_at=effective, recorded_at=recorded_at, reason=reason, by=by,
                               evidence_url=evidence_url, evidence_sha256=evidence_sha256)
    try:
        merged, _ = ledger.apply_licenses(body, f"revocation {revocation_id} by {by}")
    except LicenseFileError as exc:  # a bad evidence URL or hash, named by its field
        raise RevocationError("revocation", revocation_id, str(exc)) from exc
    return next(r for r in merged.revocations if r.revocation_id == revocation_id)


def parse_instant(text: str, where: str) -> datetime:
    """An ISO 8601 instant with a zone (``2026-10-01T00:00:00Z``), in UTC.

    Raises:
        RevocationError: not ISO 8601, or without a zone.
    """
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise RevocationError(where, text, "must be ISO 8601 with a zone, e.g. 2026-10-01T00:00:00Z") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise RevocationError(where, text, "must carry a zone (Z or +hh:mm); naive times are refused")
    return moment.astimezone(timezone.utc)


def revocation_json(revocation: Revocation) -> dict:
    """A revocation as the API and the CLI show it."""
    return {"revocation_id": revocation.revocation_id, "source_id": revocation.source_id,
            "platform_id": revocation.platform_id, "effective_at": revocation.effective_at.isoformat(),
            "recorded_at": revocation.recorded_at.isoformat(), "reason": revocation.reason,
            "by": revocation.revoked_by, "evidence_url": revocation.evidence_url,
            "evidence_sha256": revocation.evidence_sha256}


def unlicensed_report(ledger: LedgerStore, period: str | None = None, *, platform_id: str | None = None,
                      holder_id: str | None = None) -> list[dict]:
    """Booked unlicensed use grouped per month, holder, source, platform, model, kind and reason.

    Raises:
        PeriodError: ``period`` is not ``YYYY-MM``.
    """
    if period is not None:
        check_period(period)
    uses = ledger.unlicensed_uses(period, platform_id=platform_id, holder_id=holder_id)
    by_holder: dict[str, list] = {}
    for use in uses:
        by_holder.setdefault(use.holder_id, []).append(use)
    return [
        {"holder_id": holder, "period": line.period, "source_id": line.source_id, "platform_id": line.platform_id,
         "model_id": line.model_id, "kind": line.kind, "unit": line.unit, "quantity": format(line.quantity, "f"),
         "events": line.events, "reason": line.reason, "license": f"{line.license_id} v{line.license_version}",
         "revocation_id": line.revocation_id}
        for holder in sorted(by_holder) for line in group_uses(by_holder[holder])
    ]
