"""API tokens: who may read which statements, and who may query the ledger.

Guarantees:
  * The secret is shown once, at creation; the ledger keeps only its SHA-256.
  * A token belongs to one rights holder (``holder``), to one platform (``platform``:
    the licensed-model evidence of its own models, its own unlicensed use), to one member of
    a collective (``member``: its ``holder_id`` is the member id, and it reads only that
    member's distribution statements), or is an ``auditor`` token. Platform and member
    tokens are isolated as holder tokens are.
  * Revocation and expiry are rows appended to ``api_token_changes``; nothing is
    updated, so the history of every token stays readable.
  * Authentication compares hashes in constant time and refuses an unknown, malformed,
    expired or revoked token with an :class:`AuthenticationError` saying which.

A token reads ``lr.<token_id>.<secret>``: the id finds the row, the secret proves it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from ground.errors import ConfigError, TerminalError
from ledger.core.port import LedgerStore
from ledger.core.records import TokenRow

HOLDER = "holder"
AUDITOR = "auditor"
PLATFORM = "platform"
MEMBER = "member"
PREFIX = "lr"
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DUMMY_HASH = hashlib.sha256(b"learnright: no such token").hexdigest()


class TokenError(TerminalError):
    """A token cannot be created or revoked as asked; the message names the value."""

    code = "token_invalid"


class AuthenticationError(TerminalError):
    """A presented token is missing, malformed, unknown, expired or revoked."""

    code = "unauthenticated"


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRecord:
    """A token as stored: never its secret."""

    token_id: str
    role: str
    holder_id: str | None
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    platform_id: str | None = None
    """The platform of a ``platform`` token; None for the other scopes."""

    def state(self, now: datetime) -> str:
        """``active``, ``expired`` or ``revoked`` at ``now``."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedToken:
    """A new token and its secret, which is never stored and cannot be shown again."""

    record: TokenRecord
    token: str


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``2w`` or ``45s`` as a timedelta.

    Raises:
        ConfigError: the text is not a positive number followed by one of s, m, h, d, w.
    """
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(f"--expires-in must be a positive number with a unit s, m, h, d or w, like 90d (got {text!r})")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(ledger: LedgerStore, *, role: str, holder_id: str | None, now: datetime,
                 expires_in: timedelta | None = None, label: str = "", platform_id: str | None = None) -> IssuedToken:
    """Issues a token for ``holder_id`` (role ``holder``), ``platform_id`` (role ``platform``) or an auditor.

    Raises:
        TokenError: unknown role, a holder token without a holder (or another role with
            one), a platform token without a platform (or another role with one), or a
            holder the ledger's license book does not know.
    """
    if role not in (HOLDER, AUDITOR, PLATFORM, MEMBER):
        raise TokenError(f"token role must be {HOLDER!r}, {PLATFORM!r}, {MEMBER!r} or {AUDITOR!r} (got {role!r})")
    if role == PLATFORM:
        if not platform_id or not platform_id.strip():
            raise TokenError("a platform token needs --platform")
        if holder_id:
            raise TokenError(f"a platform token reads its platform's models; it takes no holder (got {holder_id!r})")
    elif platform_id:
        raise TokenError(f"a {role} token takes no platform (got {platform_id!r})")
    if role == MEMBER:
        if not holder_id:
            raise TokenError("a member token needs --member")
        if ledger.load_book().member_of(holder_id) is None:
            raise TokenError(f"member {holder_id!r} is not a member of any collective in the license book of {ledger.path}")
    elif role == HOLDER:
        if not holder_id:
            raise TokenError("a holder token needs --holder")
        if holder_id not in ledger.load_book().holders:
            known = ", ".join(sorted(ledger.load_book().holders)) or "none"
            raise TokenError(f"holder {holder_id!r} is not in the license book of {ledger.path} (known: {known})")
    elif holder_id and role == AUDITOR:
        raise TokenError(f"an auditor token reads every holder; it takes no holder (got {holder_id!r})")
    if now.tzinfo is None:
        raise TokenError(f"now must be timezone-aware UTC (got naive {now.isoformat()})")
    token_id = f"tok_{secrets.token_hex(6)}"
    secret = secrets.token_urlsafe(32)
    expires_at = now + expires_in if expires_in is not None else None
    ledger.record_token(token_id=token_id, secret_sha256=hash_secret(secret), role=role, holder_id=holder_id,
                        label=label, created_at=now, expires_at=expires_at,
                        **({"platform_id": platform_id} if platform_id else {}))
    record = TokenRecord(token_id=token_id, role=role, holder_id=holder_id, label=label, created_at=now,
                         expires_at=expires_at, revoked_at=None, platform_id=platform_id)
    return IssuedToken(record=record, token=f"{PREFIX}.{token_id}.{secret}")


def revoke_token(ledger: LedgerStore, token_id: str, *, now: datetime) -> TokenRecord:
    """Appends a revocation effective ``now``; revoking twice keeps the first.

    Raises:
        TokenError: no token has that id.
    """
    record = _record(ledger, token_id)
    if record is None:
        raise TokenError(f"no token {token_id!r} in {ledger.path}")
    if record.revoked_at is None:
        ledger.record_token_change(token_id, "revoked", now, now)
    return _record(ledger, token_id)


def list_tokens(ledger: LedgerStore) -> list[TokenRecord]:
    return [_to_record(row) for row in ledger.token_rows()]


def authenticate(ledger: LedgerStore, presented: str | None, *, now: datetime) -> TokenRecord:
    """The active token ``presented`` proves.

    Raises:
        AuthenticationError: missing, malformed, unknown, wrong secret, expired or revoked.
    """
    if not presented:
        raise AuthenticationError("no API token: send 'Authorization: Bearer lr.<token_id>.<secret>'")
    parts = presented.strip().split(".", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        raise AuthenticationError("malformed API token: expected lr.<token_id>.<secret>")
    _, token_id, secret = parts
    rows = ledger.token_rows(token_id)
    # The presented secret is hashed and compared whether or not the id exists, so an
    # unknown id costs what a known id with a wrong secret does.
    presented_hash = hash_secret(secret)
    expected = rows[0].secret_sha256 if rows else _DUMMY_HASH
    if not hmac.compare_digest(expected, presented_hash) or not rows:
        raise AuthenticationError("unknown API token")
    record = _to_record(rows[0])
    state = record.state(now)
    if state == "revoked":
        raise AuthenticationError(f"API token {token_id} was revoked at {record.revoked_at.isoformat()}")
    if state == "expired":
        raise AuthenticationError(f"API token {token_id} expired at {record.expires_at.isoformat()}")
    return record


def _record(ledger: LedgerStore, token_id: str) -> TokenRecord | None:
    rows = ledger.token_rows(token_id)
    return _to_record(rows[0]) if rows else None


def _to_record(row: TokenRow) -> TokenRecord:
    return TokenRecord(token_id=row.token_id, role=row.role, holder_id=row.holder_id, label=row.label,
                       created_at=row.created_at, expires_at=row.expires_at, revoked_at=row.revoked_at,
                       platform_id=row.platform_id)
