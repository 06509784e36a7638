"""Consent and provenance over HTTP: a holder revokes its own sources, a platform fetches its models' evidence.

Tenant isolation: a holder token revokes only its holder's sources; another holder's
source answers exactly as an unknown one does (404, same body). A platform token reads
the evidence of its own platform's models only; another platform's model answers
exactly as an unknown one. Auditor tokens do not revoke (an operator revokes through the
CLI, ``learnright licenses revoke``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, Field

from learnright.api.auth import any_token, platform, principal
from learnright.api.downloads import content_disposition
from ledger.core.filenames import name_part
from ledger.core.signing import load_key
from ledger.services.provenance import UnknownModelError, model_evidence
from learnright.api.context import ApiContext, context
from learnright.api.errors import ApiError
from ledger.services.consent import (RevocationError, UnknownRevocationSourceError, parse_instant, revocation_json,
                                     revoke_source, unlicensed_report)
from ledger.errors import PeriodError
from ledger.services.tokens import AUDITOR, HOLDER, PLATFORM, TokenRecord

router = APIRouter(tags=["consent"])
NO_SOURCE = {"error": "not_found", "message": "no source with this id"}
NO_MODEL = {"error": "not_found", "message": "no model with this id"}


class RevocationRequest(BaseModel):
    """What a holder sends to withdraw consent for one of its sources."""

    effective_at: str = Field(description="ISO 8601 with a zone, not in the past, e.g. 2026-10-01T00:00:00Z.")
    reason: str = Field(min_length=1, max_length=2000, description="Why consent ends.")
    platform_id: str = Field("*", min_length=1, max_length=200, description="One platform, or * for every platform.")
    evidence_url: Optional[str] = Field(None, max_length=2000, description="Where the evidence is (RSL, a letter).")
    evidence_sha256: Optional[str] = Field(None, description="SHA-256 (64 hex digits) of the evidence.")


def holder(record: TokenRecord = Depends(principal)) -> TokenRecord:
    """A holder token's record; 403 for any other scope."""
    if record.role != HOLDER:
        raise ApiError(403, "forbidden", "this needs a holder token (`learnright tokens create --holder H`)")
    return record


@router.post("/v1/sources/{source_id}/revocations", status_code=201,
             summary="Revoke one of this holder's sources, for one platform or all, from an instant on.",
             responses={404: {"description": "No such source (or not this holder's)."},
                        422: {"description": "A past or malformed effective instant, or bad evidence."}})
def revoke(source_id: str, body: RevocationRequest, record: TokenRecord = Depends(holder),
           ctx: ApiContext = Depends(context)) -> dict:
    """Appends a revocation (never edited); usage after ``effective_at`` is booked as unlicensed use."""
    try:
        effective_at = parse_instant(body.effective_at, "effective_at")
        revocation = ctx.write(lambda writer: revoke_source(
            writer, source_id=source_id, platform_id=body.platform_id, effective_at=effective_at,
            reason=body.reason, by=f"holder:{record.holder_id}", holder_id=record.holder_id, now=ctx.now(),
            evidence_url=body.evidence_url, evidence_sha256=body.evidence_sha256))
    except UnknownRevocationSourceError as exc:
        raise ApiError(404, NO_SOURCE["error"], NO_SOURCE["message"]) from exc
    except RevocationError as exc:
        raise ApiError(422, exc.code, str(exc)) from exc
    return revocation_json(revocation)


@router.get("/v1/unlicensed", summary="Unlicensed use: a holder's of its sources, a platform's own, every one for auditors.")
def unlicensed(period: Optional[str] = None, record: TokenRecord = Depends(any_token),
               ctx: ApiContext = Depends(context)) -> dict:
    if record.role not in (HOLDER, PLATFORM, AUDITOR):  # a scope added later reads nothing here until it is decided
        raise ApiError(403, "forbidden", "this needs a holder, platform or auditor token")
    holder_id = record.holder_id if record.role == HOLDER else None
    platform_id = record.platform_id if record.role == PLATFORM else None
    try:
        with ctx.pool.reader() as reader:
            rows = unlicensed_report(reader, period, holder_id=holder_id, platform_id=platform_id)
    except PeriodError as exc:
        raise ApiError(422, exc.code, str(exc)) from exc
    return {"period": period, "unlicensed_use": rows}


@router.get("/v1/models/{model_id}/evidence/{fmt}",
            summary="Signed licensed-model evidence of one of this platform's models: json (signed file) or pdf.",
            responses={404: {"description": "No such model (or not this platform's), or no signing key."}})
def evidence(model_id: str, fmt: Literal["json", "pdf"], as_of: Optional[str] = None,
             record: TokenRecord = Depends(platform), ctx: ApiContext = Depends(context)) -> Response:
    """The model and its lineage as of ``as_of`` (ISO 8601 with a zone; default now), signed with the statement key."""
    try:
        moment = parse_instant(as_of, "as_of") if as_of else ctx.now().replace(microsecond=0)
    except RevocationError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    if not Path(ctx.settings.signing_key).exists():
        raise ApiError(404, "signing_unavailable", "this service has no statement signing key yet")
    try:
        with ctx.pool.reader() as reader:
            files = model_evidence(reader, platform_id=record.platform_id, model_id=model_id, as_of=moment,
                                   signer=load_key(ctx.settings.signing_key))
    except UnknownModelError as exc:
        raise ApiError(404, NO_MODEL["error"], NO_MODEL["message"]) from exc
    name = f"{name_part(record.platform_id, separator='_')}_{name_part(model_id)}.evidence.{fmt}"
    body, media = (files.json, "application/json") if fmt == "json" else (files.pdf, "application/pdf")
    return Response(body, media_type=media, headers={"Content-Disposition": content_disposition(name)})
