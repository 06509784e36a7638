"""The consumer's memory is bounded by its settings, whatever the backlog: the bounds are applied.

What is checked is that each configured bound reaches the component it bounds (kafka-python's
fetch sizes, DuckDB's memory limit and threads, the writer's depth, a batch's bytes), never a
size or a time measured on this machine; `make bench` measures the peak RSS (docs/benchmarks.md).
"""

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from kafka import KafkaProducer

from consumers.kafka_admin import ensure_topics
from consumers.service import LedgerConsumer
from ground.errors import ConfigError
from ledger.storage.store import Ledger
from schemas import default_catalog, encode

APRIL = datetime(2026, 4, 10, 8, 30, tzinfo=timezone.utc)


def _produce(settings, count: int) -> int:
    """``count`` valid answers on partition 0 of the inference topic; returns the size of the largest value."""
    topics = settings.kafka.topics
    ensure_topics(settings.kafka.bootstrap_servers, (*topics.usage, topics.dead_letter), settings.kafka.partitions)
    schema = default_catalog().latest("InferenceUsage")
    # Record batches of at most 1 KiB: a fetch brings a record batch whole, whatever fetch_max_bytes says.
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=20, batch_size=1_024)
    largest = 0
    try:
        for i in range(count):
            value = encode({"event_id": f"e{i:05d}", "platform_id": "orbit", "model_id": "m", "request_id": f"q{i}",
                            "occurred_at": APRIL, "output_units": None,
                            "attributions": [{"source_id": "src-novels", "weight": Decimal("0.25")}]}, schema)
            largest = max(largest, len(value))
            producer.send(topics.for_event("InferenceUsage"), value=value, partition=0)
        producer.flush()
    finally:
        producer.close()
    return largest


@pytest.mark.broker
def test_every_configured_bound_reaches_what_it_bounds_and_the_batches_stay_within_them(
        make_settings, license_book_text):
    settings = make_settings(max_batch_bytes=4_096, fetch_partition_bytes=2_048, fetch_max_bytes=8_192,
                             ledger_memory_limit="48MB", ledger_threads=1)
    largest = _produce(settings, 400)
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        before = ledger.scalar("SELECT current_setting('threads')")
        consumer = LedgerConsumer(settings, ledger)
        try:
            assert consumer.consumer.config["fetch_max_bytes"] == 8_192
            assert consumer.consumer.config["max_partition_fetch_bytes"] == 2_048
            assert consumer.writer.capacity == 1  # one batch written while the next is gathered, no queue
            assert ledger.scalar("SELECT current_setting('memory_limit')") == "45.7 MiB"  # DuckDB's spelling of 48MB
            assert ledger.scalar("SELECT current_setting('threads')") == 1  # statements run on the writer thread
            stats = consumer.run(until_idle=True)
        finally:
            consumer.close()
        assert ledger.scalar("SELECT current_setting('threads')") == before  # what runs after it has them all
        per_batch = [row[0] for row in ledger.query("SELECT events FROM ingest_batches WHERE events > 0")]
    assert (stats.records, stats.accepted) == (400, 400)
    # A batch stops gathering once it holds max_batch_bytes, and may exceed them by one poll,
    # which brings at most one fetch response (fetch_max_bytes, or one record batch larger than that).
    bound = (4_096 + 8_192) // largest + 1
    assert len(per_batch) > 1 and max(per_batch) <= bound, (per_batch, bound)


def test_a_memory_limit_that_is_not_a_size_is_refused_naming_it(tmp_path):
    with Ledger.open(tmp_path / "ledger.duckdb") as ledger:
        with pytest.raises(ConfigError, match=r"a memory limit is a size such as '256MB'.*got \"64MB'; DROP\""):
            ledger.limit_memory("64MB'; DROP")
        ledger.limit_memory("1GiB")
        assert ledger.scalar("SELECT current_setting('memory_limit')") == "1.0 GiB"


def test_duckdb_threads_are_set_for_the_ledger_and_a_count_below_one_is_refused(tmp_path):
    with Ledger.open(tmp_path / "ledger.duckdb") as ledger:
        ledger.limit_threads(2)
        assert ledger.limit_threads(1) == 2  # the count it replaced, for the caller to restore
        assert ledger.scalar("SELECT current_setting('threads')") == 1
        ledger.limit_threads(2)
        for bad in (0, -1, True, "1; DROP"):
            with pytest.raises(ConfigError, match=r"DuckDB threads must be a whole number >= 1"):
                ledger.limit_threads(bad)
        assert ledger.scalar("SELECT current_setting('threads')") == 2


def test_a_memory_limit_set_returns_the_one_it_replaced_which_restores_the_buffer_pools_limit(tmp_path):
    def in_force(ledger: Ledger) -> str:  # the buffer pool's own limit, not the setting shown
        return ledger.scalar("SELECT memory_limit FROM pragma_database_size() LIMIT 1")

    with Ledger.open(tmp_path / "ledger.duckdb") as ledger:
        default = in_force(ledger)
        assert ledger.limit_memory("64MB") == default  # DuckDB's default, as DuckDB writes it
        assert ledger.limit_memory("128MB") == "64MB"  # as set, for the caller to restore exactly
        assert in_force(ledger) == "122.0 MiB"
        assert ledger.limit_memory(default) == "128MB"
        assert float(in_force(ledger).split()[0]) >= float(default.split()[0]) - 0.1  # "18.8 GiB" sets 18.7
        ledger.con.execute("SET memory_limit = '128MB'")
        ledger.con.execute("RESET memory_limit")  # why limits are restored by setting them: RESET does
        assert in_force(ledger) == "122.0 MiB"   # not reach the buffer pool (DuckDB 1.5)
