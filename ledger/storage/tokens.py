"""API tokens in the ledger file: hashes only, and their changes appended, never updated.

A platform token's platform is a row of ``api_token_platforms``, written with the token.
"""

from __future__ import annotations

from datetime import datetime

from ledger.core.records import TokenRow
from ledger.storage.connection import Db


class TokenRepository:
    """The ``api_tokens``, ``api_token_changes`` and ``api_token_platforms`` tables."""

    def __init__(self, db: Db):
        self.db = db

    def record_token(self, *, token_id: str, secret_sha256: str, role: str, holder_id: str | None, label: str,
                     created_at: datetime, expires_at: datetime | None, platform_id: str | None = None) -> None:
        """Stores an API token's hash (never the secret) and its expiry, in one transaction."""
        con = self.db.con
        with self.db.transaction():
            con.execute("INSERT INTO api_tokens VALUES (?, ?, ?, ?, ?, ?)",
                        [token_id, secret_sha256, role, holder_id, label, created_at])
            if platform_id is not None:
                con.execute("INSERT INTO api_token_platforms VALUES (?, ?)", [token_id, platform_id])
            if expires_at is not None:
                con.execute("INSERT INTO api_token_changes VALUES (?, 'expires', ?, ?)",
                            [token_id, expires_at, created_at])

    def record_token_change(self, token_id: str, change: str, effective_at: datetime, recorded_at: datetime) -> None:
        """Appends a change ('revoked', 'expires') to a token; earlier rows stay as they were."""
        self.db.con.execute("INSERT INTO api_token_changes VALUES (?, ?, ?, ?)",
                            [token_id, change, effective_at, recorded_at])

    def token_rows(self, token_id: str | None = None) -> list[TokenRow]:
        """Every token (or the one of ``token_id``) with its state, by creation.

        Expiry is the latest recorded 'expires' row; revocation the earliest 'revoked' row.
        """
        rows = self.db.rows(
            """
            SELECT t.token_id, t.secret_sha256, t.role, t.holder_id, t.label, t.created_at,
                   arg_max(c.effective_at, c.recorded_at) FILTER (WHERE c.change = 'expires'),
                   min(c.effective_at) FILTER (WHERE c.change = 'revoked'), p.platform_id
            FROM api_tokens t LEFT JOIN api_token_changes c USING (token_id)
            LEFT JOIN api_token_platforms p USING (token_id)
            WHERE (? IS NULL OR t.token_id = ?)
            GROUP BY ALL ORDER BY t.created_at, t.token_id
            """,
            [token_id, token_id],
        )
        return [
            TokenRow(token_id=tid, secret_sha256=secret_sha256, role=role, holder_id=holder_id, label=label,
                     created_at=created_at, expires_at=expires_at, revoked_at=revoked_at, platform_id=platform_id)
            for tid, secret_sha256, role, holder_id, label, created_at, expires_at, revoked_at, platform_id in rows
        ]
