"""Members' distribution statements: for the member, its collective, and auditors.

Who reads what:

* a ``member`` token: its own distribution statements only;
* a collective's ``holder`` token: those of every member of that collective;
* an ``auditor`` token: every one;
* any other token: none.

A statement the token may not read answers exactly as a missing one does (404, same
body), and so does a member of another collective named in ``?member=``: another
tenant's id is indistinguishable from an unknown one.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from learnright.api.auth import principal
from learnright.api.context import ApiContext, context
from learnright.api.downloads import content_disposition
from learnright.api.errors import ApiError
from ledger.core.records import MemberStatementRecord
from ledger.services.distributions import member_statement_file
from ledger.services.tokens import AUDITOR, HOLDER, MEMBER, TokenRecord

router = APIRouter(tags=["members"])
NOT_FOUND = {"error": "not_found", "message": "no statement with this id"}
NO_MEMBER = {"error": "not_found", "message": "no member with this id"}


def may_read(record: TokenRecord, row: MemberStatementRecord) -> bool:
    """Whether ``record`` may read the member statement ``row``."""
    if record.role == AUDITOR:
        return True
    if record.role == HOLDER:
        return row.collective_id == record.holder_id
    if record.role == MEMBER:
        return row.member_id == record.holder_id
    return False


def _readable(reader, record: TokenRecord, statement_id: str) -> MemberStatementRecord:
    found = reader.member_statement(statement_id)
    if found is None or not may_read(record, found):
        raise ApiError(404, NOT_FOUND["error"], NOT_FOUND["message"])
    return found


@router.get("/v1/member-statements", summary="Distribution statements: a member's own, a collective's members', all for auditors.",
            responses={404: {"description": "No such member (or not this token's)."}})
def member_statements(period: str | None = None, member: str | None = None, record: TokenRecord = Depends(principal),
                      ctx: ApiContext = Depends(context)) -> dict:
    with ctx.pool.reader() as reader:
        rows = [r for r in reader.member_statements(period=period, member_id=member) if may_read(record, r)]
        if member is not None and not rows:
            known = reader.load_book().member_of(member)
            visible = known is not None and (
                record.role == AUDITOR
                or (record.role == HOLDER and known[0].holder_id == record.holder_id)
                or (record.role == MEMBER and member == record.holder_id))
            if not visible:
                raise ApiError(404, NO_MEMBER["error"], NO_MEMBER["message"])
    return {"statements": [
        {"statement_id": r.statement_id, "period": r.period, "collective_id": r.collective_id,
         "member_id": r.member_id, "currency": r.currency, "net": format(r.net, "f"),
         "carry_in": format(r.carry_in, "f"), "payable": format(r.payable, "f"),
         "carry_out": format(r.carry_out, "f"), "content_hash": r.content_hash,
         "downloads": {fmt: f"/v1/member-statements/{r.statement_id}/{fmt}" for fmt in ("json", "csv", "pdf")}}
        for r in rows
    ]}


@router.get("/v1/member-statements/{statement_id}", summary="One distribution statement's document.",
            responses={404: {"description": "No such statement (or not this token's)."}})
def member_statement(statement_id: str, record: TokenRecord = Depends(principal),
                     ctx: ApiContext = Depends(context)) -> Response:
    with ctx.pool.reader() as reader:
        found = _readable(reader, record, statement_id)
    return Response(found.document, media_type="application/json")


@router.get("/v1/member-statements/{statement_id}/{fmt}",
            summary="Download a distribution statement: json (signed file), csv or pdf.",
            responses={404: {"description": "No such statement (or not this token's)."}})
def member_download(statement_id: str, fmt: Literal["json", "csv", "pdf"], record: TokenRecord = Depends(principal),
                    ctx: ApiContext = Depends(context)) -> Response:
    with ctx.pool.reader() as reader:
        found = _readable(reader, record, statement_id)
        body = member_statement_file(reader, statement_id, fmt)
    media = {"json": "application/json", "csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}[fmt]
    name = f"{found.period}_{found.collective_id}_{found.member_id}_{found.currency}.{fmt}"
    return Response(body, media_type=media, headers={"Content-Disposition": content_disposition(name)})
