"""Who is asking: the bearer token as a dependency of every route that needs one."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from learnright.api.context import ApiContext, context
from learnright.api.errors import ApiError
from ledger.services.tokens import AUDITOR, AuthenticationError, TokenRecord, authenticate

bearer = HTTPBearer(auto_error=False, description="lr.<token_id>.<secret> from `learnright tokens create`")


def principal(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
              ctx: ApiContext = Depends(context)) -> TokenRecord:
    """The valid token's record; 401 with ``WWW-Authenticate`` for a missing, bad, expired or revoked one.

    The token is looked up in the ledger on every request, never cached: a token created
    or revoked through the admin socket is taken or refused from the next request on.
    """
    with ctx.pool.reader() as reader:
        try:
            record = authenticate(reader, credentials.credentials if credentials else None, now=ctx.now())
        except AuthenticationError as exc:
            raise ApiError(401, "unauthorized", str(exc), {"WWW-Authenticate": 'Bearer realm="learnright"'}) from exc
    request.state.token_id = record.token_id
    return record


def auditor(record: TokenRecord = Depends(principal)) -> TokenRecord:
    """An auditor token's record; 403 for a holder's token."""
    if record.role != AUDITOR:
        raise ApiError(403, "forbidden", "this needs an auditor token (`learnright tokens create --auditor`)")
    return record
