"""What each administered command does to a ledger, and the plain answer it gives.

Each operation takes a ledger (the service's writer or a reader cursor, or the file the
CLI opened itself), the :class:`Tools` it needs and JSON arguments, calls the service
functions the CLI always called, and returns a JSON-able dict. The CLI prints that dict
the same way whichever path produced it, so a command's output does not depend on
whether a service was running.

Guarantees:
  * An operation marked ``writes`` runs only on the ledger's writer: through a running
    service, queued onto its single writer; otherwise on the file opened for writing.
  * Answers hold no secret but the one a ``tokens_create`` issues (shown once).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from consumers.batch import usage_limits
from consumers.replay import replay_quarantine, retry_and_close
from ground.errors import ConfigError, LearnrightError
from ground.settings import Settings
from learnright.admin.errors import error_to_json
from ledger.core.money import at_minor_unit
from ledger.core.signing import Signer
from ledger.core.usage import UsageLimits
from ledger.services.close import statement_file, write_period_files
from ledger.services.consent import parse_instant, revocation_json, revoke_source, unlicensed_report
from ledger.services.provenance import evidence_document, model_summary, platform_of
from ledger.services.tokens import AUDITOR, HOLDER, MEMBER, PLATFORM, TokenRecord, create_token, list_tokens, parse_duration, revoke_token
from ledger.storage.snapshots import Snapshot, publish_snapshot
from ledger.storage.store import Ledger
from schemas import Catalog, default_catalog
from schemas.registry import SchemaRegistry


@dataclass(frozen=True, slots=True, kw_only=True)
class Tools:
    """What replaying a record needs beyond the ledger: the consumer's decoders and limits."""

    catalog: Catalog
    registry: SchemaRegistry | None
    limits: UsageLimits
    close_memory_limit: str | None = None
    """``close.memory_limit`` of the settings, which a close caps the ledger's memory at."""
    close_workers: int | None = None
    """``close.workers`` of the settings: the processes that build a close's statements."""

    @classmethod
    def for_settings(cls, settings: Settings) -> "Tools":
        """As the consumer of ``settings`` would decode and bound a record, and its close would run."""
        registry = SchemaRegistry(settings.schema_registry_url) if settings.schema_registry_url else None
        return cls(catalog=default_catalog(), registry=registry, limits=usage_limits(settings.consumer),
                   close_memory_limit=settings.close.memory_limit, close_workers=settings.close.workers)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def tokens_create(ledger: Ledger, tools: Tools, *, auditor: bool, holder: str | None, expires_in: str | None,
                  label: str = "", platform: str | None = None, member: str | None = None) -> dict:
    """Issues a token; the answer holds its secret, which is stored nowhere (only its SHA-256 is)."""
    if [auditor, bool(holder), bool(platform), bool(member)].count(True) != 1:
        raise ConfigError("give exactly one of --holder H or --auditor (or --platform P, or --member M)")
    lifetime = parse_duration(expires_in) if expires_in else None
    role = AUDITOR if auditor else PLATFORM if platform else MEMBER if member else HOLDER
    issued = create_token(ledger, role=role, holder_id=member or holder, now=_now(), expires_in=lifetime,
                          label=label, platform_id=platform)
    record = issued.record
    return {"token_id": record.token_id, "role": record.role, "holder_id": record.holder_id,
            "platform_id": record.platform_id, "expires_at": _iso(record.expires_at), "token": issued.token}


def tokens_revoke(ledger: Ledger, tools: Tools, *, token_id: str) -> dict:
    """Revokes from now on; refused at the API's next request (nothing caches a token)."""
    record = revoke_token(ledger, token_id, now=_now())
    return {"token_id": record.token_id, "revoked_at": _iso(record.revoked_at)}


def _token_row(record: TokenRecord, now: datetime) -> dict:
    return {"token_id": record.token_id, "role": record.role, "holder_id": record.holder_id,
            "platform_id": record.platform_id, "state": record.state(now), "created_at": _iso(record.created_at), "expires_at": _iso(record.expires_at),
            "label": record.label}


def tokens_list(ledger: Ledger, tools: Tools) -> dict:
    """Every token with its state now; never a secret."""
    now = _now()
    return {"tokens": [_token_row(record, now) for record in list_tokens(ledger)]}


def licenses_apply(ledger: Ledger, tools: Tools, *, text: str, origin: str) -> dict:
    """Applies a license document's text (the CLI reads the file; ``origin`` names it)."""
    book, added = ledger.apply_licenses(text, origin)
    return {"origin": origin, "added": added, "versions": len(book.versions), "sources": len(book.sources),
            "holders": len(book.holders)}


def licenses_revoke(ledger: Ledger, tools: Tools, *, source_id: str, effective_at: str, reason: str,
                    platform_id: str = "*", evidence_url: str | None = None,
                    evidence_sha256: str | None = None) -> dict:
    """An operator's revocation of a source (any holder's), from ``effective_at`` (ISO 8601 with a zone)."""
    revocation = revoke_source(ledger, source_id=source_id, platform_id=platform_id,
                               effective_at=parse_instant(effective_at, "--effective-at"), reason=reason,
                               by="operator", now=_now(), evidence_url=evidence_url, evidence_sha256=evidence_sha256)
    return revocation_json(revocation)


def unlicensed_list(ledger: Ledger, tools: Tools, *, period: str | None = None) -> dict:
    """Booked unlicensed use, grouped per month, holder, source, platform, model, kind and reason."""
    return {"period": period, "unlicensed_use": unlicensed_report(ledger, period)}


def models_evidence(ledger: Ledger, tools: Tools, *, model_id: str, platform_id: str | None = None,
                    as_of: str | None = None) -> dict:
    """The unsigned evidence document of a model (the CLI signs it with the statement key)."""
    platform = platform_of(ledger, model_id, platform_id)
    moment = parse_instant(as_of, "--as-of") if as_of else _now().replace(microsecond=0)
    return {"evidence": evidence_document(ledger, platform_id=platform, model_id=model_id, as_of=moment)}


def models_summary(ledger: Ledger, tools: Tools, *, model_id: str, platform_id: str | None = None,
                   as_of: str | None = None) -> dict:
    """The AI Act training-content summary draft of a model (the CLI renders it as Markdown or JSON)."""
    platform = platform_of(ledger, model_id, platform_id)
    moment = parse_instant(as_of, "--as-of") if as_of else _now().replace(microsecond=0)
    return {"summary": model_summary(ledger, platform_id=platform, model_id=model_id, as_of=moment)}


def statements_list(ledger: Ledger, tools: Tools, *, period: str | None = None, holder: str | None = None) -> dict:
    """Closed statements; amounts as exact decimal strings, payable at the currency's minor unit."""
    return {"statements": [
        {"statement_id": r.statement_id, "period": r.period, "holder_id": r.holder_id, "currency": r.currency,
         "accrued": f"{r.accrued.normalize():f}", "payable": f"{at_minor_unit(r.payable, r.currency):f}",
         "carry_out": f"{r.carry_out.normalize():f}"}
        for r in ledger.statement_rows(period=period, holder_id=holder)]}


def statements_get(ledger: Ledger, tools: Tools, *, statement_id: str, format: str) -> dict:
    """One statement's or member statement's bytes (JSON: the signed file; CSV), base64 so they cross unchanged."""
    from ledger.core.statements import render_csv
    from ledger.services.distributions import member_statement_file

    if format not in ("json", "csv"):
        raise ConfigError(f"--format must be json or csv (got {format!r})")
    found = ledger.statement_document(statement_id)
    if found is None:  # a collective member's distribution statement (ms_...), or nothing
        body = member_statement_file(ledger, statement_id, format)
    else:
        body = statement_file(ledger, statement_id) if format == "json" else render_csv(json.loads(found.document))
    return {"found": body is not None, "body": None if body is None else base64.b64encode(body).decode()}


def quarantine_list(ledger: Ledger, tools: Tools) -> dict:
    """Open quarantined records: where they were read and why (not their bytes)."""
    return {"records": [
        {"quarantine_id": r.quarantine_id, "topic": r.topic, "partition": r.partition, "offset": r.offset,
         "error_code": r.error_code, "error_class": r.error_class, "reason": r.reason}
        for r in ledger.open_quarantine()]}


def quarantine_replay(ledger: Ledger, tools: Tools, *, ids: list[int] | None = None, error: str | None = None) -> dict:
    """Replays open quarantined records once (:func:`consumers.replay.replay_quarantine`)."""
    outcome = replay_quarantine(ledger, ids or None, error=error, catalog=tools.catalog, registry=tools.registry,
                                limits=tools.limits)
    return {"attempted": outcome.attempted, "booked": outcome.booked, "duplicates": outcome.duplicates,
            "still_quarantined": [
                {"quarantine_id": s.quarantine_id, "error_code": s.error_code, "error_class": s.error_class,
                 "reason": s.reason} for s in outcome.still_quarantined]}


def _snapshot_view(snapshot: Snapshot) -> dict:
    return {"snapshot_id": snapshot.snapshot_id, "database": str(snapshot.database),
            "last_entry_id": snapshot.last_entry_id, "chain_head": snapshot.chain_head,
            "parquet": str(snapshot.directory / "parquet")}


def snapshot(ledger: Ledger, tools: Tools, *, directory: str, keep_last: int) -> dict:
    """Publishes a snapshot of the ledger as it is now into ``directory`` (pruned to ``keep_last`` plus one per close)."""
    return _snapshot_view(publish_snapshot(ledger, Path(directory), now=_now(), keep_last=keep_last))


def close_month(ledger: Ledger, tools: Tools, *, period: str, now: datetime, signer: Signer, out: Path | None,
                publish: Callable[[], object] | None, snapshots_dir: Path, keep_last: int) -> dict:
    """Closes ``period`` as every close path does (retry the quarantine, close), then what follows a close.

    The caller has booked what Kafka holds first, unless told not to. After the close:
    the files (with ``out``), StatementClosed (``publish`` returns a
    :class:`~consumers.publisher.PublishOutcome`), and a snapshot into ``snapshots_dir``
    when something was closed, so auditors' next query covers it. A failure to write files
    or publish leaves the close standing and is in the answer (``unwritten``, ``problem``).
    """
    retried, outcome = retry_and_close(ledger, period, now=now, signer=signer, catalog=tools.catalog,
                                       registry=tools.registry, limits=tools.limits,
                                       memory_limit=tools.close_memory_limit, workers=tools.close_workers)
    files: list[Path] = []
    unwritten = problem = published = topic = None
    if out is not None:
        try:
            files = write_period_files(ledger, period, out)
        except LearnrightError as exc:  # the close stands and its events are still published
            unwritten = error_to_json(exc)
    if publish is not None:
        try:
            sent = publish()
            published, topic = len(sent.published), sent.topic
        except LearnrightError as exc:
            problem = error_to_json(exc)
    latest = None if outcome.already_closed else _snapshot_view(
        publish_snapshot(ledger, snapshots_dir, now=_now(), keep_last=keep_last))
    return {"period": period, "retried": {"attempted": retried.attempted, "booked": retried.booked,
                                          "still_quarantined": len(retried.still_quarantined)},
            "already_closed": outcome.already_closed, "closed_periods": list(outcome.closed_periods),
            "statements": len(outcome.statement_ids), "files": [str(path) for path in files],
            "unwritten": unwritten, "published": published, "topic": topic, "problem": problem,
            "pending": len(ledger.unpublished_statements()), "snapshot": latest}


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    run: Callable[..., dict]
    writes: bool
    """Whether it writes the ledger: queued onto the service's writer, or the file opened for writing."""


OPERATIONS: dict[str, Operation] = {
    "tokens_create": Operation(run=tokens_create, writes=True),
    "tokens_revoke": Operation(run=tokens_revoke, writes=True),
    "tokens_list": Operation(run=tokens_list, writes=False),
    "licenses_apply": Operation(run=licenses_apply, writes=True),
    "licenses_revoke": Operation(run=licenses_revoke, writes=True),
    "unlicensed_list": Operation(run=unlicensed_list, writes=False),
    "models_evidence": Operation(run=models_evidence, writes=False),
    "models_summary": Operation(run=models_summary, writes=False),
    "statements_list": Operation(run=statements_list, writes=False),
    "statements_get": Operation(run=statements_get, writes=False),
    "quarantine_list": Operation(run=quarantine_list, writes=False),
    "quarantine_replay": Operation(run=quarantine_replay, writes=True),
    "snapshot": Operation(run=snapshot, writes=True),
}
"""Every operation but the close, which catches up first and is the server's and CLI's own."""
