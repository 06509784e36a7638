"""Signed statements: what a holder downloads checks out, and any changed byte is caught."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from learnright.cli import app
from ground.errors import LearnrightError
from ledger.services.close import close_period, statement_file, write_statement_files
from ledger.core.envelope import verify_envelope
from ledger.core.statements import FORMAT_VERSION, to_document
from ledger.core.signing import SignatureError, generate_signer, load_key
from ledger.storage.store import Ledger
from tests.ledger.core.test_statements import FORMAT_4_HEAD, ROOT, STORED_FORMAT_4, april_statement, signed_file
from tests.ledger.keys import SIGNER
from tests.ledger.services.test_golden_book import BOOK, NOW, ingest

GOLDEN = Path(__file__).parents[1] / "golden"


@pytest.fixture
def closed(tmp_path):
    with Ledger.open(tmp_path / "ledger.duckdb") as ledger:
        ledger.apply_licenses(BOOK, "golden-book.toml")
        ingest(ledger)
        close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
        yield ledger


def ann_usd(ledger: Ledger) -> bytes:
    (row,) = ledger.statement_rows(period="2026-04", holder_id="h-ann")[1:]
    assert row.currency == "USD"
    return statement_file(ledger, row.statement_id)


def test_the_downloaded_file_verifies_and_carries_hash_signature_key_and_close_root(closed):
    data = ann_usd(closed)
    checked = verify_envelope(data, SIGNER.key.public_key(), "ann.json")
    envelope = json.loads(data)
    assert (checked.holder_id, checked.currency, checked.payable) == ("h-ann", "USD", "142.70")
    assert envelope["content_hash"] == checked.content_hash == closed.statement_rows(holder_id="h-ann")[1].content_hash
    assert envelope["signature"]["key_fingerprint"] == SIGNER.fingerprint
    assert envelope["envelope_version"] == 2 and "chain_head" not in envelope
    assert envelope["close_root"] == checked.close_root == closed.get_close("2026-04").root
    assert envelope["statement"]["ledger"] == {"close_root": envelope["close_root"]}
    assert envelope["format_version"] == envelope["statement"]["format_version"] == FORMAT_VERSION


def test_the_signed_file_is_golden(closed):
    """Ed25519 is deterministic: same ledger, same key, same bytes."""
    path = GOLDEN / "signed_2026-04_h-ann_USD.json"
    if os.environ.get("LEARNRIGHT_UPDATE_GOLDEN"):
        path.write_bytes(ann_usd(closed))
    assert ann_usd(closed) == path.read_bytes()


def test_changing_any_single_byte_fails_the_check(closed):
    data = ann_usd(closed)
    key = SIGNER.key.public_key()
    for position in range(len(data)):
        tampered = bytearray(data)
        tampered[position] ^= 0x01
        with pytest.raises(LearnrightError):
            verify_envelope(bytes(tampered), key, f"byte {position}")


def test_a_changed_amount_is_named_as_a_content_hash_mismatch(closed):
    data = ann_usd(closed).replace(b'"payable": "142.70"', b'"payable": "942.70"')
    with pytest.raises(SignatureError, match="does not match the statement"):
        verify_envelope(data, SIGNER.key.public_key(), "ann.json")


def test_a_re_hashed_forgery_fails_the_signature(closed):
    from ledger.core.envelope import render_envelope

    envelope = json.loads(ann_usd(closed))
    envelope["statement"]["summary"]["payable"] = "942.70"
    forged = render_envelope(envelope["statement"], signature=envelope["signature"]["value"],
                             key_fingerprint=envelope["signature"]["key_fingerprint"])
    with pytest.raises(SignatureError, match="signature of ann.json does not match its content"):
        verify_envelope(forged, SIGNER.key.public_key(), "ann.json")


def test_another_key_and_a_newer_format_are_refused(closed):
    data = ann_usd(closed)
    with pytest.raises(SignatureError, match=f"signed with key {SIGNER.fingerprint}, but the public key given"):
        verify_envelope(data, generate_signer().key.public_key(), "ann.json")
    newer = data.replace(b'"format_version": %d' % FORMAT_VERSION, b'"format_version": %d' % (FORMAT_VERSION + 1))
    with pytest.raises(SignatureError, match=f"format_version {FORMAT_VERSION + 1} is newer than this Learnright knows"):
        verify_envelope(newer, SIGNER.key.public_key(), "ann.json")


def test_holder_checks_a_file_with_the_published_key_on_the_command_line(closed, tmp_path, monkeypatch):
    key_path = tmp_path / "keys" / "signing.pem"
    monkeypatch.setenv("LEARNRIGHT_SIGNING_KEY", str(key_path))
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create"])
    assert created.exit_code == 0, created.output
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert runner.invoke(app, ["keys", "create"]).exit_code == 2  # never overwritten
    public = runner.invoke(app, ["keys", "public"])
    assert public.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    (tmp_path / "published.pem").write_text(public.stdout)

    close_period_files = tmp_path / "files"
    with Ledger.open(tmp_path / "second.duckdb") as ledger:
        ledger.apply_licenses(BOOK, "golden-book.toml")
        ingest(ledger)
        close_period(ledger, "2026-04", now=NOW, signer=load_key(key_path))
        write_statement_files(ledger, "2026-04", close_period_files)
    statement = close_period_files / "2026-04_h-ann_USD.json"
    ok = runner.invoke(app, ["statements", "verify", str(statement), "--public-key", str(tmp_path / "published.pem")])
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.stdout and "USD 142.70 payable" in ok.stdout
    statement.write_bytes(statement.read_bytes().replace(b'"142.70"', b'"142.71"'))
    bad = runner.invoke(app, ["statements", "verify", str(statement), "--public-key", str(tmp_path / "published.pem")])
    assert bad.exit_code == 1
    assert "FAIL" in bad.stderr and "content_hash" in bad.stderr


def test_the_command_line_checks_old_and_new_files_and_names_what_each_carries(tmp_path):
    key = tmp_path / "published.pem"
    key.write_text(SIGNER.public_pem())
    new = tmp_path / "2026-04_h-ann_USD.json"
    new.write_bytes(signed_file(to_document(april_statement())))
    root = ROOT
    runner = CliRunner()
    ok = runner.invoke(app, ["statements", "verify", str(new), "--public-key", str(key)])
    assert ok.exit_code == 0, ok.output
    assert f"format {FORMAT_VERSION}, close root {root}, content hash" in ok.stdout
    old = runner.invoke(app, ["statements", "verify", str(STORED_FORMAT_4), "--public-key", str(key)])
    assert old.exit_code == 0, old.output
    assert f"format 4, chain head {FORMAT_4_HEAD}, content hash" in old.stdout
    new.write_bytes(new.read_bytes().replace(root.encode(), b"0" * 64, 1))
    bad = runner.invoke(app, ["statements", "verify", str(new), "--public-key", str(key)])
    assert bad.exit_code == 1 and f"close_root '{'0' * 64}' differs from the signed statement's '{root}'" in bad.stderr
