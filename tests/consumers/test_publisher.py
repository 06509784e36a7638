"""StatementClosed on the real broker: after the close commits, once per statement, never lost."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from kafka import KafkaConsumer

from consumers.publisher import publish_pending
from ground.errors import BrokerError
from ledger.services.close import close_period
from ledger.core.statements import FORMAT_VERSION
from ledger.storage.store import Ledger
from schemas import decode
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
    assert event["format_version"] == FORMAT_VERSION and len(event["chain_head"]) == 64
