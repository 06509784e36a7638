"""StatementClosed on the real broker: after the close commits, once per statement, never lost."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from kafka import KafkaConsumer

from consumers.publisher import publish_pending, statement_closed
from ground.errors import BrokerError
from ledger.core.records import StatementRecord
from ledger.core.statements import FORMAT_VERSION, content_hash, render_json
from ledger.services.close import close_period
from ledger.storage.store import Ledger
from schemas import decode, default_catalog, encode
from schemas.catalog import Catalog
from tests.ledger.core.test_statements import FORMAT_4_HEAD, ROOT, STORED_FORMAT_4, april_statement
from tests.ledger.keys import SIGNER
from tests.ledger.services.test_golden_book import BOOK, NOW, ingest

pytestmark = pytest.mark.broker


def read_all(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, dict]]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             group_id=f"payouts-{uuid.uuid4().hex[:6]}", consumer_timeout_ms=5000)
    try:
        records = []
        for message in consumer:
            name, record = decode(message.value)
            assert name == "StatementClosed"
            records.append((message.key, record))
            if len(records) >= expected + 5:
                break
        return records
    finally:
        consumer.close()


def test_each_statement_arrives_once_as_statement_closed_and_a_failed_publish_loses_nothing(make_settings, tmp_path):
    settings = make_settings()
    topic = settings.kafka.topics.statements
    bootstrap = settings.kafka.bootstrap_servers
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(BOOK, "golden-book.toml")
        ingest(ledger)
        close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
        statements = {row.statement_id: row for row in ledger.statement_rows(period="2026-04")}
        (root,) = {json.loads(ledger.statement_document(sid).document)["ledger"]["close_root"] for sid in statements}
        assert len(ledger.unpublished_statements()) == 6  # the close committed them unpublished

        with pytest.raises(BrokerError, match="6 StatementClosed events|stay pending|creating topics"):
            publish_pending(ledger, bootstrap, "not a valid topic name!", timeout_s=5)
        assert len(ledger.unpublished_statements()) == 6  # nothing lost

        outcome = publish_pending(ledger, bootstrap, topic, timeout_s=30)
        assert sorted(outcome.published) == sorted(statements)
        assert ledger.unpublished_statements() == []
        assert publish_pending(ledger, bootstrap, topic).published == ()  # already recorded: not sent again

    events = read_all(bootstrap, topic, expected=6)
    assert sorted(key.decode() for key, _ in events) == sorted(statements)
    by_id = {record["statement_id"]: record for _, record in events}
    kei_usd = next(sid for sid, row in statements.items() if (row.holder_id, row.currency) == ("h-kei", "USD"))
    assert (by_id[kei_usd]["payable"], by_id[kei_usd]["carry_out"]) == (Decimal(0), Decimal("39.2"))
    ann_usd = next(sid for sid, row in statements.items() if (row.holder_id, row.currency) == ("h-ann", "USD"))
    event = by_id[ann_usd]
    assert (event["period"], event["holder_name"], event["currency"], event["payable"]) == (
        "2026-04", "Ann Writes", "USD", Decimal("142.70"))
    assert event["content_hash"] == statements[ann_usd].content_hash
    assert event["key_fingerprint"] == SIGNER.fingerprint and event["signature"]
    assert event["format_version"] == FORMAT_VERSION
    assert (event["close_root"], event["chain_head"], event["last_entry_id"]) == (root, root, 0)


def stored(document: str, digest: str) -> StatementRecord:
    return StatementRecord(
        statement_id="st_1", period="2026-04", holder_id="h-ann", currency="USD", accrued=Decimal("2.5"),
        carry_in=Decimal("0.004"), payable=Decimal("2.50"), carry_out=Decimal("0.004"), content_hash=digest,
        document=document, created_at=datetime(2026, 5, 3, tzinfo=timezone.utc), signature="c2ln",
        key_fingerprint=SIGNER.fingerprint,
    )


def test_a_format_5_statement_sends_its_close_root_and_v1_readers_get_it_as_chain_head():
    statement = april_statement()
    record = statement_closed(stored(render_json(statement).decode(), content_hash(statement)))
    assert (record["close_root"], record["chain_head"], record["last_entry_id"]) == (ROOT, ROOT, 0)
    data = encode(record, default_catalog().latest("StatementClosed"))
    assert decode(data)[1]["close_root"] == ROOT
    _, old_reader = decode(data, Catalog(reader_version=1))
    assert "close_root" not in old_reader and (old_reader["chain_head"], old_reader["last_entry_id"]) == (ROOT, 0)


def test_a_stored_format_4_statement_sends_its_chain_head_and_last_entry_as_before():
    envelope = json.loads(STORED_FORMAT_4.read_bytes())
    record = statement_closed(stored(json.dumps(envelope["statement"]), envelope["content_hash"]))
    assert (record["format_version"], record["chain_head"], record["last_entry_id"]) == (4, FORMAT_4_HEAD, 21)
    assert record["close_root"] is None
    assert decode(encode(record, default_catalog().latest("StatementClosed")))[1]["close_root"] is None
