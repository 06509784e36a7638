"""API tokens: hashes only, append-only revocation and expiry, every bad token refused."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from learnright.cli import app
from ground.errors import ConfigError
from ledger.storage.store import Ledger
from ledger.services.tokens import (AUDITOR, HOLDER, AuthenticationError, TokenError, authenticate, create_token,
                           parse_duration, revoke_token)

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)


@pytest.fixture
def ledger(tmp_path, license_book_text):
    with Ledger.open(tmp_path / "ledger.duckdb") as opened:
        opened.apply_licenses(license_book_text, "book.toml")
        yield opened


def test_a_token_authenticates_as_its_holder_and_only_its_hash_is_stored(ledger):
    issued = create_token(ledger, role=HOLDER, holder_id="h-ann", now=T0)
    record = authenticate(ledger, issued.token, now=T0)
    assert (record.role, record.holder_id) == (HOLDER, "h-ann")
    secret = issued.token.split(".", 2)[2]
    stored = ledger.query("SELECT * FROM api_tokens")
    assert secret not in repr(stored)
    assert len(stored) == 1


def test_expired_revoked_unknown_and_tampered_tokens_are_refused(ledger):
    short = create_token(ledger, role=HOLDER, holder_id="h-ann", now=T0, expires_in=parse_duration("1h"))
    assert authenticate(ledger, short.token, now=T0 + timedelta(minutes=59)).token_id == short.record.token_id
    with pytest.raises(AuthenticationError, match="expired at 2026-05-01T01:00:00"):
        authenticate(ledger, short.token, now=T0 + timedelta(hours=1))
    revoked = create_token(ledger, role=AUDITOR, holder_id=None, now=T0)
    revoke_token(ledger, revoked.record.token_id, now=T0 + timedelta(days=1))
    authenticate(ledger, revoked.token, now=T0 + timedelta(hours=23))
    with pytest.raises(AuthenticationError, match="was revoked"):
        authenticate(ledger, revoked.token, now=T0 + timedelta(days=1))
    good = create_token(ledger, role=HOLDER, holder_id="h-bo", now=T0)
    for bad in (None, "", "Bearer x", good.token[:-1] + ("A" if good.token[-1] != "A" else "B"),
                "lr.tok_000000000000.secret", good.token.replace("lr.", "xx.", 1)):
        with pytest.raises(AuthenticationError):
            authenticate(ledger, bad, now=T0)


def test_revocation_and_expiry_are_appended_rows_never_updates(ledger):
    issued = create_token(ledger, role=HOLDER, holder_id="h-ann", now=T0, expires_in=timedelta(days=90))
    before = ledger.query("SELECT * FROM api_tokens")
    revoke_token(ledger, issued.record.token_id, now=T0 + timedelta(days=2))
    revoke_token(ledger, issued.record.token_id, now=T0 + timedelta(days=3))  # the first revocation stands
    assert ledger.query("SELECT * FROM api_tokens") == before
    changes = ledger.query("SELECT change, effective_at FROM api_token_changes ORDER BY recorded_at")
    assert [c for c, _ in changes] == ["expires", "revoked"]
    assert changes[1][1] == T0 + timedelta(days=2)


def test_a_holder_token_needs_a_known_holder(ledger):
    with pytest.raises(TokenError, match="'h-nobody' is not in the license book"):
        create_token(ledger, role=HOLDER, holder_id="h-nobody", now=T0)
    with pytest.raises(TokenError, match="needs --holder"):
        create_token(ledger, role=HOLDER, holder_id=None, now=T0)
    with pytest.raises(ConfigError, match="like 90d"):
        parse_duration("ninety days")


def test_tokens_commands_create_list_and_revoke(tmp_path, license_book_text):
    db = tmp_path / "ledger.duckdb"
    with Ledger.open(db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
    runner = CliRunner()
    created = runner.invoke(app, ["tokens", "create", "--holder", "h-ann", "--expires-in", "90d", "--db", str(db)])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    token_id = token.split(".")[1]
    listed = runner.invoke(app, ["tokens", "list", "--db", str(db)])
    assert f"{token_id}\tholder\th-ann\tactive" in listed.output
    assert token.split(".", 2)[2] not in listed.output
    assert runner.invoke(app, ["tokens", "revoke", token_id, "--db", str(db)]).exit_code == 0
    assert f"{token_id}\tholder\th-ann\trevoked" in runner.invoke(app, ["tokens", "list", "--db", str(db)]).output
    both = runner.invoke(app, ["tokens", "create", "--holder", "h-ann", "--auditor", "--db", str(db)])
    assert both.exit_code == 2 and "exactly one of --holder H or --auditor" in both.output


def test_an_unknown_token_id_costs_a_hash_and_a_constant_time_compare_like_a_wrong_secret(ledger, monkeypatch):
    """No timing shortcut tells an attacker which token ids exist."""
    import hmac

    import ledger.services.tokens as tokens

    good = create_token(ledger, role=HOLDER, holder_id="h-ann", now=T0)
    compared: list[tuple[int, int]] = []
    real_compare = hmac.compare_digest

    def spy(a, b):
        compared.append((len(a), len(b)))
        return real_compare(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    hashed: list[str] = []
    real_hash = tokens.hash_secret
    monkeypatch.setattr(tokens, "hash_secret", lambda secret: hashed.append(secret) or real_hash(secret))
    for presented in (f"lr.tok_000000000000.{'s' * 43}", good.token[:-1] + ("A" if good.token[-1] != "A" else "B")):
        compared.clear(), hashed.clear()
        with pytest.raises(AuthenticationError, match="unknown API token"):
            authenticate(ledger, presented, now=T0)
        assert hashed == [presented.split(".", 2)[2]], presented
        assert compared == [(64, 64)], presented
