"""Who is asking: the bearer token as a dependency of every route that needs one.

Three scopes (:mod:`ledger.services.tokens`): a holder token reads its holder's data, an
auditor token everyone's, a platform token only its own platform's models (their
licensed-model evidence, their unlicensed use). Routes of holders' data depend on
:func:`principal`, which refuses a platform token, so no holder route can read with one.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from learnright.api.context import ApiContext, context
from learnright.api.errors import ApiError
from ledger.services.tokens import AUDITOR, PLATFORM, AuthenticationError, TokenRecord, authenticate

bearer = HTTPBearer(auto_error=False, description="lr.<token_id>.<secret> from `learnright tokens create`")


def any_token(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
              ctx: ApiContext = Depends(context)) -> TokenRecord:
    """The valid token's record, of any scope; 401 with ``WWW-Authenticate`` for a missing, bad, expired or revoked one.

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


def principal(record: TokenRecord = Depends(any_token)) -> TokenRecord:
    """A holder's or auditor's token record; 403 for a platform token, which has no holder."""
    if record.role == PLATFORM:
        raise ApiError(403, "forbidden", "a platform token reads its own models' evidence only, not holders' data")
    return record


def auditor(record: TokenRecord = Depends(principal)) -> TokenRecord:
    """An auditor token's record; 403 for a holder's token."""
    if record.role != AUDITOR:
        raise ApiError(403, "forbidden", "this needs an auditor token (`learnright tokens create --auditor`)")
    return record


def platform(record: TokenRecord = Depends(any_token)) -> TokenRecord:
    """A platform token's record; 403 for any other scope."""
    if record.role != PLATFORM:
        raise ApiError(403, "forbidden", "this needs a platform token (`learnright tokens create --platform P`)")
    return record
