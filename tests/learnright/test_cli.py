"""The CLI at a glance, as a user drives it: broker lifecycle and the ledger commands."""

import json
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from consumers.kafka_admin import ensure_topics
from learnright.broker import free_port
from learnright.cli import app
from producers import UsageEmitter

pytestmark = pytest.mark.broker

runner = CliRunner()


def test_kafka_up_status_down(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARNRIGHT_BROKER__STATE_DIR", str(tmp_path / "kafka"))
    monkeypatch.setenv("LEARNRIGHT_BROKER__PORT", str(free_port()))  # not the default 19092 a user's broker may hold
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    try:
        up = runner.invoke(app, ["kafka", "up"])
        assert up.exit_code == 0 and "up at 127.0.0.1:" in up.output, up.output
        status = runner.invoke(app, ["kafka", "status"])
        assert status.exit_code == 0 and "running at 127.0.0.1:" in status.output
        assert (tmp_path / "kafka" / "logs" / "server.log").exists()
    finally:
        down = runner.invoke(app, ["kafka", "down"])
    assert "Kafka stopped" in down.output
    stopped = runner.invoke(app, ["kafka", "status"])
    assert stopped.exit_code == 1 and "not running" in stopped.output


def test_licenses_consume_close_and_statements(make_settings, license_book_text, tmp_path, monkeypatch):
    from datetime import datetime, timezone

    settings = make_settings()
    monkeypatch.setenv("LEARNRIGHT_KAFKA__BOOTSTRAP_SERVERS", settings.kafka.bootstrap_servers)
    monkeypatch.setenv("LEARNRIGHT_KAFKA__TOPIC_PREFIX", settings.kafka.topic_prefix)
    monkeypatch.setenv("LEARNRIGHT_CONSUMER__GROUP_ID", settings.consumer.group_id)
    db = str(settings.db)
    book = tmp_path / "book.toml"
    book.write_text(license_book_text)
    applied = runner.invoke(app, ["licenses", "apply", str(book), "--db", db])
    assert applied.exit_code == 0 and "3 new license versions" in applied.output, applied.output
    again = runner.invoke(app, ["licenses", "apply", str(book), "--db", db])
    assert "0 new license versions" in again.output

    ensure_topics(settings.kafka.bootstrap_servers, settings.kafka.topics.usage, 2)
    with UsageEmitter(settings.kafka.bootstrap_servers, platform_id="orbit", topics=settings.kafka.topics) as emitter:
        emitter.training(event_id="e1", model_id="m", run_id="r", source_id="src-photos", units=7, unit="items",
                         occurred_at=datetime(2026, 4, 3, tzinfo=timezone.utc))
    consumed = runner.invoke(app, ["consume", "--until-idle", "--db", db])
    assert consumed.exit_code == 0 and "consumed 1 records: 1 accepted" in consumed.output, consumed.output

    closed = runner.invoke(app, ["close", "--period", "2026-04", "--db", db])
    assert closed.exit_code == 0 and "1 statements" in closed.output, closed.output
    listed = runner.invoke(app, ["statements", "list", "--db", db])
    assert listed.exit_code == 0
    row = listed.output.splitlines()[1].split("\t")
    assert row[1:4] == ["2026-04", "h-bo", "JPY"] and row[5] == "35"
    got = runner.invoke(app, ["statements", "get", row[0], "--db", db])
    document = json.loads(got.output)["statement"]
    assert document["currency"] == "JPY" and Decimal(document["summary"]["payable"]) == 35
    csv = runner.invoke(app, ["statements", "get", row[0], "--format", "csv", "--db", db])
    assert csv.output.splitlines()[0].startswith("period,")
    missing = runner.invoke(app, ["statements", "get", "st_nope", "--db", db])
    assert missing.exit_code == 1 and "no statement 'st_nope'" in missing.output
