"""A consumer that cannot make progress says so, skips nothing, and moves again once the cause is fixed.

The failure is real: the dead-letter topic is created with ``max.message.bytes`` = 1,024, so
the broker refuses the dead letter of a 4 KB undecodable record, on every attempt.
"""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumers.progress import STALL_AFTER
from consumers.service import ConsumerHaltError, LedgerConsumer
from ledger.storage.store import Ledger
from tests.consumers.helpers import POISON, accept_dead_letters, produce_poison_then_valid, refuse_dead_letters

pytestmark = pytest.mark.broker


def samples(consumer: LedgerConsumer) -> dict[str, float]:
    text = consumer.metrics.exposition().decode()
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
            if not s.labels}


@pytest.fixture
def stalling(make_settings, license_book_text):
    settings = make_settings()
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"partitions": 1})})
    refuse_dead_letters(settings)
    produce_poison_then_valid(settings)
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
    return settings


def test_until_idle_gives_up_once_stalled_and_books_nothing_past_the_refused_record(stalling):
    with Ledger.open(stalling.db) as ledger:
        consumer = LedgerConsumer(stalling, ledger)
        try:
            with pytest.raises(ConsumerHaltError, match=f"stalled: {STALL_AFTER} batches in a row failed") as halt:
                consumer.run(until_idle=True)
            assert stalling.kafka.topics.dead_letter in str(halt.value)  # the CLI says what refused
            metrics = samples(consumer)
            assert consumer.progress.stalled
        finally:
            consumer.close()
        assert metrics["learnright_consumer_stalled"] == 1
        assert metrics["learnright_consumer_batch_failures_total"] == STALL_AFTER
        assert metrics["learnright_consumer_last_commit_timestamp_seconds"] == 0
        # Nothing was skipped: neither record is booked, and the stored offset did not move.
        assert ledger.query("SELECT count(*) FROM usage_events") == [(0,)]
        assert ledger.query("SELECT count(*) FROM quarantine") == [(0,)]
        assert ledger.stored_offsets() == {}


def test_a_blocked_consumer_reports_the_records_waiting_behind_the_failing_batch_after_every_attempt(stalling):
    """The lag counts from what is booked, not from the fetch position: a consumer that fetches
    the failing batch again and again must not report 0 between its rewinds (the alert
    LearnrightConsumerNotCommitting relies on it)."""
    with Ledger.open(stalling.db) as ledger:
        consumer = LedgerConsumer(stalling, ledger)
        try:
            seen = []
            while consumer.progress.failures < 3:
                consumer.run_once()
                text = consumer.metrics.exposition().decode()
                lags = {s.labels["topic"]: s.value for family in text_string_to_metric_families(text)
                        for s in family.samples if s.name == "learnright_consumer_lag_records"}
                if consumer.progress.failures:
                    seen.append(lags[stalling.kafka.topics.for_event("TrainingUsage")])
            assert seen and set(seen) == {2}  # the poison and the record after it, after every attempt
            assert ledger.stored_offsets() == {}
        finally:
            consumer.close()


def test_a_following_consumer_retries_and_moves_again_once_the_cause_is_fixed(stalling):
    with Ledger.open(stalling.db) as ledger:
        consumer = LedgerConsumer(stalling, ledger)
        errors: list[BaseException] = []

        def follow():
            try:
                consumer.run()
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                errors.append(exc)

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
        try:
            wait_for(lambda: consumer.progress.stalled, "the consumer to stall")
            assert samples(consumer)["learnright_consumer_stalled"] == 1
            assert thread.is_alive()  # following, it keeps retrying instead of dying
            accept_dead_letters(stalling)
            wait_for(lambda: consumer.stats.accepted == 1, "the valid record to be booked")
            assert not consumer.progress.stalled
            assert samples(consumer)["learnright_consumer_stalled"] == 0
        finally:
            consumer.stop_event.set()
            thread.join(timeout=60)
            consumer.close()
        assert not errors
        assert consumer.stats.quarantined == 1
        [(value,)] = ledger.query("SELECT record_value FROM quarantine")
        assert value == POISON
        assert ledger.query("SELECT event_id FROM usage_events") == [("after",)]


def wait_for(condition, what: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
