"""For rights holders (and auditors): statements, their downloads, the royalties chart, the open months, the public key.

Tenant isolation: a holder token sees only its holder's statements, and another
holder's statement id answers exactly as a missing one does (404, same body).
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from learnright.api.auth import any_token, principal
from learnright.api.context import ApiContext, context
from learnright.api.downloads import content_disposition
from learnright.api.errors import ApiError
from ledger.core.money import wide_precision
from ledger.core.records import OpenAccrual
from ledger.core.royalties import monthly_by_source
from ledger.core.signing import load_key
from ledger.core.statements import render_csv
from ledger.services.close import statement_file, statement_pdf
from ledger.services.tokens import AUDITOR, HOLDER, TokenRecord
from ledger.storage.store import Ledger

router = APIRouter(tags=["holders"])
NOT_FOUND = {"error": "not_found", "message": "no statement with this id"}


def own_document(reader: Ledger, record: TokenRecord, statement_id: str) -> str:
    """The statement's document if ``record`` may read it; else 404, the same as for a missing one."""
    found = reader.statement_document(statement_id)
    if found is None or (record.role != AUDITOR and (record.role != HOLDER or
                                                     json.loads(found.document)["holder"]["id"] != record.holder_id)):
        raise ApiError(404, NOT_FOUND["error"], NOT_FOUND["message"])
    return found.document


@router.get("/v1/me", summary="Who this token is.")
def me(record: TokenRecord = Depends(any_token)) -> dict:
    return {"token_id": record.token_id, "role": record.role, "holder_id": record.holder_id,
            **({"platform_id": record.platform_id} if record.platform_id else {}),
            "expires_at": record.expires_at.isoformat() if record.expires_at else None}


@router.get("/v1/statements", summary="Closed statements: a holder's own; every one for auditors.")
def statements(period: str | None = None, record: TokenRecord = Depends(principal),
               ctx: ApiContext = Depends(context)) -> dict:
    holder = None if record.role == AUDITOR else record.holder_id
    with ctx.pool.reader() as reader:
        rows = reader.statement_rows(period=period, holder_id=holder) if record.role in (AUDITOR, HOLDER) else []
    return {"statements": [
        {"statement_id": r.statement_id, "period": r.period, "holder_id": r.holder_id, "currency": r.currency,
         "accrued": plain(r.accrued), "carry_in": plain(r.carry_in), "payable": plain(r.payable),
         "carry_out": plain(r.carry_out), "content_hash": r.content_hash,
         "downloads": {fmt: f"/v1/statements/{r.statement_id}/{fmt}" for fmt in ("json", "csv", "pdf")}}
        for r in rows
    ]}


@router.get("/v1/statements/{statement_id}", summary="One statement's document.",
            responses={404: {"description": "No such statement (or not this holder's)."}})
def statement(statement_id: str, record: TokenRecord = Depends(principal),
              ctx: ApiContext = Depends(context)) -> Response:
    with ctx.pool.reader() as reader:
        document = own_document(reader, record, statement_id)
    return Response(document, media_type="application/json")


@router.get("/v1/statements/{statement_id}/{fmt}", summary="Download a statement: json (signed file), csv or pdf.",
            responses={404: {"description": "No such statement (or not this holder's)."}})
def download(statement_id: str, fmt: Literal["json", "csv", "pdf"], record: TokenRecord = Depends(principal),
             ctx: ApiContext = Depends(context)) -> Response:
    with ctx.pool.reader() as reader:
        document = own_document(reader, record, statement_id)
        if fmt == "csv":
            body, media = render_csv(json.loads(document)), "text/csv; charset=utf-8"
        elif fmt == "json":
            body, media = statement_file(reader, statement_id), "application/json"
        else:
            body, media = statement_pdf(reader, statement_id), "application/pdf"
    period_holder = json.loads(document)
    name = f"{period_holder['period']}_{period_holder['holder']['id']}_{period_holder['currency']}.{fmt}"
    return Response(body, media_type=media, headers={"Content-Disposition": content_disposition(name)})


@router.get("/v1/royalties/monthly", summary="Royalties per month and source (the holder's chart).")
def royalties(record: TokenRecord = Depends(principal), ctx: ApiContext = Depends(context)) -> dict:
    holder = None if record.role == AUDITOR else record.holder_id
    with ctx.pool.reader() as reader:
        documents = [json.loads(reader.statement_document(row.statement_id).document)
                     for row in reader.statement_rows(holder_id=holder)] if record.role in (AUDITOR, HOLDER) else []
    return {"royalties": [{"period": r.period, "currency": r.currency, "source_id": r.source_id,
                           "amount": plain(r.amount)} for r in monthly_by_source(documents)]}


@router.get("/v1/royalties/open", summary="Accruals so far in the months not yet closed: provisional, never signed.",
            responses={403: {"description": "A holder token asked for another holder."}})
def open_royalties(holder: str | None = None, record: TokenRecord = Depends(principal),
                   ctx: ApiContext = Depends(context)) -> dict:
    """Every month after the last close that has entries, per holder, currency and source.

    A holder token reads its own holder only (naming another answers 403); an auditor reads
    every holder, or the one ``holder`` names. The answer is marked provisional and carries
    no signature: a close still adds period terms, rounds and carries. ``cut`` says which
    booked entries the sums include, read in the same transaction as the sums.
    """
    if record.role not in (AUDITOR, HOLDER):
        raise ApiError(403, "forbidden", "this token reads only distribution statements (/v1/member-statements)")
    if record.role != AUDITOR:
        if holder is not None and holder != record.holder_id:
            raise ApiError(403, "forbidden", "a holder token reads only its own holder's open months")
        holder = record.holder_id
    with ctx.pool.reader() as reader:
        found = reader.open_accruals(holder)
    return {"provisional": True, "signed": False, "holder_id": holder,
            "after_period": found.after_period,
            "last_closed_at": found.last_closed_at.isoformat() if found.last_closed_at else None,
            "cut": {"last_entry_id": found.last_entry_id,
                    "last_batch_at": found.last_batch_at.isoformat() if found.last_batch_at else None,
                    "offsets": [{"topic": topic, "partition": partition, "next_offset": offset}
                                for (topic, partition), offset in sorted(found.offsets.items())]},
            "months": open_months(found.rows)}


@wide_precision
def open_months(rows: tuple[OpenAccrual, ...]) -> list[dict]:
    """Rows grouped by month, then by (holder, currency, source), quantities per kind and unit; amounts as exact strings."""
    months: dict[str, dict[tuple[str, str, str], dict]] = {}
    for row in rows:
        sources = months.setdefault(row.period, {})
        entry = sources.setdefault((row.holder_id, row.currency, row.source_id), {
            "holder_id": row.holder_id, "currency": row.currency, "source_id": row.source_id,
            "amount": Decimal(0), "entries": 0, "quantities": []})
        entry["amount"] += row.amount
        entry["entries"] += row.entries
        entry["quantities"].append({"kind": row.kind, "unit": row.unit, "quantity": plain(row.quantity),
                                    "amount": plain(row.amount), "entries": row.entries})
    answer = []
    for period, sources in months.items():
        totals: dict[str, Decimal] = {}
        for (_, currency, _), entry in sources.items():
            totals[currency] = totals.get(currency, Decimal(0)) + entry["amount"]
        answer.append({"period": period, "provisional": True,
                       "totals": [{"currency": c, "amount": plain(a)} for c, a in sorted(totals.items())],
                       "sources": [{**entry, "amount": plain(entry["amount"])} for entry in sources.values()]})
    return answer


def plain(amount: Decimal) -> str:
    """An exact decimal in positional notation (``0.000000000000``, never ``0E-12``)."""
    return format(amount, "f")


@router.get("/v1/signing-key", summary="The public key (PEM) that verifies statement signatures.",
            responses={404: {"description": "This service has no signing key."}})
def signing_key(ctx: ApiContext = Depends(context)) -> Response:
    if not Path(ctx.settings.signing_key).exists():
        raise ApiError(404, "signing_unavailable", "this service has no statement signing key yet")
    return Response(load_key(ctx.settings.signing_key).public_pem(), media_type="application/x-pem-file")
