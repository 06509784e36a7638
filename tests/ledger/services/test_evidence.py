"""Licensed-model evidence: a fine-tune's lineage, the verdict flipping on one unlicensed event, the signature.

Book and platform as in test_consent (src-novels of h-ann, src-poems of h-bah, platform orbit):

  t1 04-05 orbit-base  src-novels 600,000 tokens
  t3 04-10 orbit-base  src-poems  200,000 tokens
  f1 04-11 orbit-legal src-poems   50,000 tokens (fine-tune of orbit-base)
     04-10 h-ann revokes src-novels from 04-15
  t2 04-20 orbit-base  src-novels 900,000 tokens: unlicensed, so orbit-legal's verdict becomes "no"
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from typer.testing import CliRunner

from ledger.core.evidence import verify_evidence
from ledger.core.signing import SignatureError, parse_public_key
from ledger.core.usage import TrainingUsage
from ledger.services.consent import revoke_source
from ledger.services.provenance import UnknownModelError, model_evidence
from ledger.storage.store import Ledger
from tests.ledger.keys import SIGNER
from tests.ledger.services.test_consent import BOOK, at, book, training

PUBLIC = parse_public_key(SIGNER.public_pem().encode(), "test key")


def fine_tune(event_id, when, source, units):
    return TrainingUsage(event_id=event_id, platform_id="orbit", model_id="orbit-legal", run_id="ft", source_id=source,
                         units=units, unit="tokens", occurred_at=when, base_model_id="orbit-base")


@pytest.fixture()
def ledger(tmp_path):
    with Ledger.open(tmp_path / "ledger.duckdb") as ledger:
        ledger.apply_licenses(BOOK, "book.toml")
        book(ledger, [training("t1", at(4, 5), "src-novels", 600_000), training("t3", at(4, 10), "src-poems", 200_000),
                      fine_tune("f1", at(4, 11), "src-poems", 50_000)], 0)
        revoke_source(ledger, source_id="src-novels", effective_at=at(4, 15), reason="withdrawn", by="holder:h-ann",
                      holder_id="h-ann", now=at(4, 10))
        yield ledger


def evidence(ledger, as_of=None, model="orbit-legal"):
    return model_evidence(ledger, platform_id="orbit", model_id=model, as_of=as_of or at(5, 1), signer=SIGNER)


def test_the_evidence_of_a_fine_tune_lists_its_base_models_sources_with_the_license_in_force(ledger):
    files = evidence(ledger)
    document = files.document
    assert document["lineage"] == ["orbit-legal", "orbit-base"]
    own, base = document["models"]
    assert [s["source_id"] for s in own["sources"]] == ["src-poems"]
    assert own["base_model_id"] == "orbit-base"
    novels = next(s for s in base["sources"] if s["source_id"] == "src-novels")
    assert (novels["holder_id"], novels["holder_name"]) == ("h-ann", "Ann Writes")
    assert novels["licenses"] == [{"license": "lic-novels v1", "unit": "tokens", "units": "600000.000000000000",
                                   "events": 1, "first_use": at(4, 5).isoformat(), "last_use": at(4, 5).isoformat()}]
    assert novels["unlicensed"] == []
    assert document["verdict"]["answer"] == "yes" and document["verdict"]["all_training_licensed"] is True
    assert files.pdf.startswith(b"%PDF") and evidence(ledger).json == files.json  # same ledger, same bytes


def test_the_verdict_flips_to_no_after_one_training_event_past_the_revocation(ledger):
    book(ledger, [training("t2", at(4, 20), "src-novels", 900_000)], 3)
    after = evidence(ledger).document
    assert after["verdict"]["answer"] == "no" and after["verdict"]["unlicensed_training_events"] == 1
    novels = next(s for s in after["models"][1]["sources"] if s["source_id"] == "src-novels")
    (unlicensed,) = novels["unlicensed"]
    assert (unlicensed["reason"], unlicensed["units"], unlicensed["events"]) == ("revoked", "900000.000000000000", 1)
    assert evidence(ledger, as_of=at(4, 16)).document["verdict"]["answer"] == "yes"  # before that event
    with pytest.raises(UnknownModelError):
        model_evidence(ledger, platform_id="elsewhere", model_id="orbit-legal", as_of=at(5, 1), signer=SIGNER)


def test_evidence_verifies_and_fails_after_any_single_byte_changes(ledger):
    data = evidence(ledger).json
    checked = verify_evidence(data, PUBLIC, "ev.json")
    assert (checked.model_id, checked.all_training_licensed) == ("orbit-legal", True)
    for index in range(len(data)):
        changed = data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]
        with pytest.raises(SignatureError):
            verify_evidence(changed, PUBLIC, "ev.json")


def test_models_evidence_and_evidence_verify_commands(ledger, tmp_path, monkeypatch):
    from learnright.cli import app

    key = tmp_path / "signing.pem"
    monkeypatch.setenv("LEARNRIGHT_SIGNING_KEY", str(key))
    monkeypatch.setenv("LEARNRIGHT_ADMIN_SOCKET", str(tmp_path / "no-service.sock"))
    path = ledger.path
    ledger.close()
    runner = CliRunner()
    made = runner.invoke(app, ["models", "evidence", "orbit-legal", "--as-of", "2026-05-01T00:00:00Z",
                               "--out", str(tmp_path / "out"), "--db", str(path)])
    assert made.exit_code == 0, made.output
    assert "every training use licensed: yes" in made.output
    written = tmp_path / "out" / "orbit_orbit-legal.evidence.json"
    assert json.loads(written.read_bytes())["verdict"] == "yes"
    public = tmp_path / "public.pem"
    public.write_text(runner.invoke(app, ["keys", "public"]).stdout)
    assert runner.invoke(app, ["evidence", "verify", str(written), "--public-key", str(public)]).exit_code == 0
    written.write_bytes(written.read_bytes().replace(b'"yes"', b'"no"', 1))
    failed = runner.invoke(app, ["evidence", "verify", str(written), "--public-key", str(public)])
    assert failed.exit_code == 1
