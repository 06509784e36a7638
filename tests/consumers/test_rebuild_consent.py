"""A revocation on the real broker: booked as unlicensed, listed on the signed statement, rebuilt byte for byte.

    03-10  src-novels trained and answered on (priced); src-photos too
    03-12  h-ann revokes src-novels from 03-16 (appended as a license document)
    03-20  the same usage again: src-novels' is unlicensed use, src-photos' priced
    close of March, then `learnright rebuild` from the Kafka log: every close matches
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from typer.testing import CliRunner

from learnright.cli import app
from ledger.services.consent import revoke_source
from ledger.storage.store import Ledger
from tests.consumers.helpers import consume_all, emitter_for

pytestmark = pytest.mark.broker
runner = CliRunner()


def emit(settings, prefix: str, when: datetime) -> None:
    with emitter_for(settings) as emitter:
        for i in range(3):
            emitter.training(event_id=f"{prefix}t{i}", model_id="m", run_id="r", source_id="src-novels",
                             units=1000 * (i + 1), unit="tokens", occurred_at=when)
            emitter.inference(event_id=f"{prefix}i{i}", model_id="m", request_id=f"q{i}",
                              attributions={"src-novels": "0.5", "src-photos": "0.25"}, occurred_at=when)


def test_a_revocation_is_booked_listed_and_rebuilt_from_the_log(make_settings, license_book_text, tmp_path,
                                                               monkeypatch):
    settings = make_settings(max_batch=4).model_copy(update={"signing_key": tmp_path / "key.pem"})
    for key, value in {"LEARNRIGHT_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
                       "LEARNRIGHT_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
                       "LEARNRIGHT_CONSUMER__GROUP_ID": settings.consumer.group_id,
                       "LEARNRIGHT_SIGNING_KEY": str(settings.signing_key)}.items():
        monkeypatch.setenv(key, value)
    emit(settings, "a", datetime(2026, 3, 10, tzinfo=timezone.utc))
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        consume_all(settings, ledger)
        revoke_source(ledger, source_id="src-novels", effective_at=datetime(2026, 3, 16, tzinfo=timezone.utc),
                      reason="withdrawn", by="holder:h-ann", holder_id="h-ann",
                      now=datetime(2026, 3, 12, tzinfo=timezone.utc))
        emit(settings, "b", datetime(2026, 3, 20, tzinfo=timezone.utc))
        stats = consume_all(settings, ledger)
        assert stats.quarantined == 0
        assert len(ledger.unlicensed_uses("2026-03")) == 6  # 3 trainings and 3 attributions, after 03-16
    closed = runner.invoke(app, ["close", "--period", "2026-03", "--db", str(settings.db), "--no-publish"])
    assert closed.exit_code == 0, closed.output
    with Ledger.open(settings.db, read_only=True) as ledger:
        (ann,) = [json.loads(ledger.statement_document(r.statement_id).document)
                  for r in ledger.statement_rows(period="2026-03", holder_id="h-ann")]
    assert {(u["kind"], u["quantity"], u["events"]) for u in ann["unlicensed_use"]} == {
        ("training", "6000.000000000000", 3), ("inference", "1.500000000000", 3)}
    assert {line["license"] for line in ann["lines"]} == {"lic-novels v1"}  # only usage before the revocation
    rebuilt = runner.invoke(app, ["rebuild", "--db", str(settings.db)])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "2026-03: match" in rebuilt.output
