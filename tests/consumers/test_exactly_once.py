"""Exactly once whatever fails: SIGKILL at random points, redelivery, expired offsets, a broker restart."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition

from consumers.service import ConsumerHaltError, LedgerConsumer
from learnright import broker
from consumers.kafka_admin import ensure_topics
from ground.settings import Settings
from ledger.storage.connection import read_anchor
from ledger.storage.store import Ledger
from ledger.services.verify import verify
from producers import UsageEmitter

pytestmark = pytest.mark.broker
APRIL = datetime(2026, 4, 1, tzinfo=timezone.utc)
# The oracle prices by hand from the license text in tests/conftest.py (April: novels v2).
NOVELS_PER_TOKEN = Decimal("1.20") / Decimal(1_000_000)
NOVELS_PER_ANSWER = Decimal("0.003")
PHOTOS_PER_ITEM = Decimal(5)
PHOTOS_PER_ANSWER = Decimal(1)


def produce_workload(settings: Settings, count: int, seed: int) -> tuple[set[tuple[str, str]], dict[str, Decimal], int]:
    """Emits ``count`` events plus a few poison records; returns keys, oracle totals, poison count."""
    rng = random.Random(seed)
    keys, totals = set(), {"USD": Decimal(0), "JPY": Decimal(0)}
    ensure_topics(settings.kafka.bootstrap_servers, (*settings.kafka.topics.usage, settings.kafka.topics.dead_letter),
                  settings.kafka.partitions)
    with UsageEmitter(settings.kafka.bootstrap_servers, platform_id="orbit", topics=settings.kafka.topics) as emitter:
        for n in range(count):
            when = APRIL + timedelta(minutes=n)
            if n % 3 == 0:
                units = rng.randint(1, 3_000_000)
                source = rng.choice(["src-novels", "src-photos"])
                if source == "src-novels":
                    totals["USD"] += units * NOVELS_PER_TOKEN
                    emitter.training(event_id=f"e{n}", model_id="m", run_id="r", source_id=source, units=units,
                                     unit="tokens", occurred_at=when)
                else:
                    units = units % 500 + 1
                    totals["JPY"] += units * PHOTOS_PER_ITEM
                    emitter.training(event_id=f"e{n}", model_id="m", run_id="r", source_id=source, units=units,
                                     unit="items", occurred_at=when)
            else:
                weight = Decimal(rng.randint(1, 500)).scaleb(-3)
                totals["USD"] += weight * NOVELS_PER_ANSWER
                totals["JPY"] += (Decimal(1) - weight) * PHOTOS_PER_ANSWER
                emitter.inference(event_id=f"e{n}", model_id="m", request_id=f"q{n}", occurred_at=when,
                                  attributions={"src-novels": weight, "src-photos": Decimal(1) - weight})
            keys.add(("orbit", f"e{n}"))
    raw = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    poison = 3
    for n in range(poison):
        raw.send(settings.kafka.topics.for_event("TrainingUsage"), key=b"src-novels", value=b"\x00poison" + bytes([n]))
    raw.flush()
    raw.close()
    return keys, totals, poison


def consume_until_idle(settings: Settings) -> None:
    """Runs a consumer with a group of its own: the ledger, not the group, holds the offsets."""
    own = settings.model_copy(update={"consumer": settings.consumer.model_copy(update={"group_id": f"g{uuid.uuid4().hex[:8]}"})})
    with Ledger.open(own.db) as ledger:
        consumer = LedgerConsumer(own, ledger)
        try:
            consumer.run(until_idle=True)
        finally:
            consumer.close()


def _child(settings_json: str) -> None:
    consume_until_idle(Settings.model_validate_json(settings_json))
    os._exit(0)


def assert_exact(settings: Settings, keys, totals, poison) -> None:
    with Ledger.open(settings.db) as ledger:
        booked = set(ledger.query("SELECT platform_id, event_id FROM usage_events"))
        assert booked == keys
        sums = dict(ledger.query("SELECT currency, sum(amount) FROM accruals GROUP BY currency"))
        assert sums == totals
        quarantined = ledger.query("SELECT count(*) FROM quarantine")[0][0]
        assert quarantined == poison  # accepted + quarantined = records consumed
        assert ledger.query("SELECT count(*) - count(DISTINCT (platform_id, event_id, line)) FROM accruals")[0][0] == 0
        # Every entry is keyed by the record that produced it, once, and its digest matches its content.
        assert ledger.query("SELECT count(*) - count(DISTINCT (stream, position, line)), count(*) - count(stream)"
                            " FROM accruals") == [(0, 0)]
        assert verify(ledger).ok


def test_sigkill_at_random_points_then_restart_loses_and_doubles_nothing(make_settings, license_book_text, tmp_path):
    # Small fetches: the native fast path takes a fetch whole, so this keeps batches small
    # and the kills spread over many commits.
    settings = make_settings(max_batch=150, fetch_partition_bytes=2048)
    keys, totals, poison = produce_workload(settings, 1500, seed=1)
    fork = multiprocessing.get_context("fork")

    def start(seed: int | str):
        run = settings.model_copy(update={"db": tmp_path / f"run-{seed}.duckdb"})
        with Ledger.open(run.db) as ledger:
            ledger.apply_licenses(license_book_text, "book.toml")
        child = fork.Process(target=_child, args=(run.model_dump_json(),))
        child.start()
        return run, child

    def booked_rows(run) -> int:
        """The last row the child committed, from the anchor file it writes after every commit."""
        anchor = read_anchor(run.db)
        return anchor.last_entry_id if anchor is not None else 0

    # One undisturbed run: how many rows the workload books. Each kill then waits for a seeded
    # share of them to be committed (a point in the stream, not a moment on the clock), so the
    # kills land mid-stream however loaded the machine is, and a seeded pause of a few ms
    # after it lands them anywhere in the batch being built or committed.
    run, child = start("whole")
    child.join()
    assert_exact(run, keys, totals, poison)
    total = booked_rows(run)
    kills, partial = 0, 0
    rounds = int(os.environ.get("LEARNRIGHT_SIGKILL_ROUNDS", "12"))  # make test-chaos: 60
    for seed in range(rounds):
        rng = random.Random(seed)
        run, child = start(seed)
        threshold = max(1, int(rng.uniform(0.05, 0.8) * total))
        while child.is_alive() and booked_rows(run) < threshold:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.005))
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
            kills += 1
        child.join()
        with Ledger.open(run.db) as ledger:
            booked_before_restart = ledger.query("SELECT count(*) FROM usage_events")[0][0]
        partial += 0 < booked_before_restart < len(keys)
        consume_until_idle(run)
        assert_exact(run, keys, totals, poison)
    # The kills must land mid-stream, not only before the first or after the last batch.
    assert kills >= rounds // 2 and partial >= rounds * 2 // 5, f"{kills} kills, {partial} with a partly filled ledger"


def test_redelivery_from_earliest_adds_nothing(make_settings, license_book_text):
    settings = make_settings(max_batch=100)
    keys, totals, poison = produce_workload(settings, 300, seed=2)
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
    consume_until_idle(settings)
    # Redeliver everything: rewind every partition to the start of the log, as a reset
    # of offsets to earliest would, and read it all into the same ledger again.
    with Ledger.open(settings.db) as ledger:
        consumer = LedgerConsumer(settings, ledger)
        try:
            consumer.consumer.poll(timeout_ms=1000)
            for tp in consumer.consumer.assignment():
                consumer.consumer.seek_to_beginning(tp)
            while consumer.run_once():
                pass
            assert consumer.stats.duplicates + consumer.stats.quarantined >= 300
            assert consumer.stats.accepted == 0
        finally:
            consumer.close()
    assert_exact(settings, keys, totals, poison * 2)


def test_a_stored_offset_below_the_log_start_halts_with_a_clear_error(make_settings, license_book_text):
    settings = make_settings()
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"partitions": 1})})
    produce_workload(settings, 30, seed=3)
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
    consume_until_idle(settings)
    produce_workload(settings, 30, seed=4)
    topic = settings.kafka.topics.for_event("InferenceUsage")
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    end = admin.list_partition_offsets({TopicPartition(topic, 0): -1})  # latest
    admin.delete_records({TopicPartition(topic, 0): list(end.values())[0].offset})
    admin.close()
    with pytest.raises(ConsumerHaltError, match="no longer in Kafka"):
        consume_until_idle(settings)


def test_a_broker_restart_mid_stream_loses_nothing(tmp_path, license_book_text):
    base = Settings()
    state_dir = tmp_path / "kafka"
    state = broker.up(state_dir, version=base.broker.kafka_version, cache_dir=base.broker.cache_dir, heap="384m")
    try:
        settings = base.model_copy(update={
            "db": tmp_path / "ledger.duckdb",
            "kafka": base.kafka.model_copy(update={"bootstrap_servers": state.bootstrap_servers, "topic_prefix": "r",
                                                   "partitions": 2}),
            "consumer": base.consumer.model_copy(update={"max_batch": 100, "idle_timeout_s": 60}),
        })
        keys, totals, poison = produce_workload(settings, 600, seed=5)
        with Ledger.open(settings.db) as ledger:
            ledger.apply_licenses(license_book_text, "book.toml")
            consumer = LedgerConsumer(settings, ledger)
            try:
                consumer.run_once()
                broker.down(state_dir)
                restarter = threading.Timer(2.0, lambda: broker.up(
                    state_dir, version=base.broker.kafka_version, cache_dir=base.broker.cache_dir, heap="384m",
                    fresh=False))
                restarter.start()
                consumer.run(until_idle=True)
                restarter.join()
            finally:
                consumer.close()
        assert_exact(settings, keys, totals, poison)
    finally:
        broker.down(state_dir)


def test_records_gathered_across_a_rebalance_are_read_again_and_booked_once(make_settings, license_book_text):
    settings = make_settings()
    keys, totals, poison = produce_workload(settings, 300, seed=6)
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        consumer = LedgerConsumer(settings, ledger)
        try:
            while not consumer.consumer.assignment():
                consumer.consumer.poll(timeout_ms=200)  # join; whatever this reads is re-read from the ledger's offsets
            consumer.listener.on_partitions_assigned(consumer.consumer.assignment())
            generation = consumer.listener.generation
            gathered = consumer._poll(5000, 100_000)
            assert gathered
            # A rebalance while the batch is still being gathered, as kafka-python reports it.
            owned = consumer.consumer.assignment()
            consumer.listener.on_partitions_revoked(owned)
            consumer.listener.on_partitions_assigned(owned)
            assert not consumer._current(gathered, generation)
            consumer.run(until_idle=True)
        finally:
            consumer.close()
    assert_exact(settings, keys, totals, poison)  # every event once, every poison record quarantined once
