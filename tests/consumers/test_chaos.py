"""Chaos on real processes: three ledger writers into one lake, on a three-node Kafka cluster.

A month of synthetic usage (:data:`EVENTS` events, 10,000 in ``make test``; ``LEARNRIGHT_CHAOS_EVENTS=200000`` for
the issue's full run, ``make test-chaos``) is produced into usage topics with three
replicas and ``min.insync.replicas=2``. Three `learnright consume` processes in one
consumer group book it into a DuckLake ledger on PostgreSQL. While they run, one of them
is SIGKILLed and started again, and one broker is stopped and started again. Every step
waits for a state (events booked, a process gone, a node back), never for a time.

Then: the lake holds every produced event exactly once, `verify` passes, and the month's
statements, closed at the same instant with the same key, are byte for byte those of a
single ledger file that consumed the same topics on its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from kafka import KafkaProducer

from consumers.kafka_admin import ensure_topics
from ground.settings import LakeLocation, LedgerSettings, Settings
from learnright import broker
from learnright.bench import LICENSES, settings_environment
from ledger.services.close import close_period, write_period_files
from ledger.services.verify import verify
from ledger.storage.store import Ledger
from producers.emitter import RECORD_NAME, partition_key
from tests.consumers.helpers import consume_all
from tests.ledger.keys import SIGNER

pytestmark = [pytest.mark.broker, pytest.mark.postgres]

EVENTS = int(os.environ.get("LEARNRIGHT_CHAOS_EVENTS", "10000"))
PERIOD = "2026-10"
NOW = datetime(2026, 11, 5, tzinfo=timezone.utc)
PARTITIONS = 6
WRITERS = 3
DEADLINE_S = 900
"""How long any one wait may last before the test fails (a hang, not a timing assertion)."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    settings = Settings()
    state_dir = tmp_path_factory.mktemp("cluster")
    state = broker.up_cluster(state_dir, nodes=3, version=settings.broker.kafka_version,
                              cache_dir=settings.broker.cache_dir, heap="384m", timeout_s=180)
    try:
        yield state
    finally:
        broker.down(state_dir)


def produce(settings: Settings) -> set[tuple[str, str]]:
    """A month of usage into the usage topics (keyed as the SDK keys it); the (platform, event id) produced."""
    from ledger.core.license_file import parse_book
    from ledger.core.usage import to_record
    from producers.synthetic import month_usage
    from schemas import default_catalog, encode

    book = parse_book(LICENSES.read_text())
    catalog = default_catalog()
    schemas = {kind: catalog.latest(name) for kind, name in RECORD_NAME.items()}
    topics = settings.kafka.topics
    usage = month_usage(period=PERIOD, platforms=("orbit", "nimbus"),
                        training_units={v.source_id: v.training.unit for v in book.versions if v.training},
                        inference_sources=sorted({v.source_id for v in book.versions if v.inference}),
                        events=EVENTS, seed=29)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", enable_idempotence=True,
                             linger_ms=20, batch_size=256 * 1024)
    produced = set()
    try:
        for event in usage:
            name = RECORD_NAME[event.kind]
            producer.send(topics.for_event(name), key=partition_key(event),
                          value=encode(to_record(event), schemas[event.kind]))
            produced.add((event.platform_id, event.event_id))
        producer.flush()
    finally:
        producer.close()
    return produced


def wait_for(what: str, condition) -> None:
    """Waits until ``condition()`` holds; fails the test after :data:`DEADLINE_S` (a hang)."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting for {what} after {DEADLINE_S}s")
        time.sleep(0.5)


def booked(location: LakeLocation) -> int:
    with Ledger.open(location, read_only=True) as ledger:
        return ledger.scalar("SELECT count(*) FROM usage_events")


def writer(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).with_name("learnright")), "consume"], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def month_files(ledger: Ledger, directory: Path) -> dict[str, bytes]:
    close_period(ledger, PERIOD, now=NOW, signer=SIGNER)
    return {path.name: path.read_bytes() for path in write_period_files(ledger, PERIOD, directory)}


def test_three_writers_a_killed_writer_and_a_stopped_broker_book_the_file_ledgers_statements(
        cluster, lake_location, tmp_path):
    base = Settings()
    settings = base.model_copy(update={
        "kafka": base.kafka.model_copy(update={"bootstrap_servers": cluster.bootstrap_servers,
                                               "topic_prefix": f"c{uuid.uuid4().hex[:8]}", "partitions": PARTITIONS}),
        "consumer": base.consumer.model_copy(update={"group_id": f"chaos-{uuid.uuid4().hex[:6]}", "max_batch": 4096}),
    })
    topics = settings.kafka.topics
    ensure_topics(cluster.bootstrap_servers, (*topics.usage, topics.dead_letter), PARTITIONS)
    produced = produce(settings)

    with Ledger.open(lake_location) as ledger:
        ledger.apply_licenses(LICENSES.read_text(), "examples/licenses.toml")
    env = {**os.environ, **settings_environment(settings),
           "LEARNRIGHT_LEDGER__URL": lake_location.url, "LEARNRIGHT_LEDGER__DATA_PATH": str(lake_location.data_path)}
    logs = [tmp_path / f"writer-{n}.log" for n in range(WRITERS)]
    writers = [writer(env, log) for log in logs]
    try:
        wait_for("a quarter of the events booked", lambda: booked(lake_location) >= EVENTS // 4)
        writers[0].send_signal(signal.SIGKILL)  # mid-stream: its batch in flight is lost, never half-booked
        writers[0].wait()
        writers[0] = writer(env, logs[0])
        broker.stop_node(cluster.state_dir, 2)
        wait_for("half the events booked with a broker down", lambda: booked(lake_location) >= EVENTS // 2)
        broker.start_node(cluster.state_dir, 2)
        wait_for("every event booked", lambda: booked(lake_location) >= len(produced))
    finally:
        for process in writers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in writers:
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    tails = "\n".join(f"--- {log.name} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                      for log in logs)

    with Ledger.open(lake_location) as lake:
        keys = lake.query("SELECT platform_id, event_id FROM usage_events")
        assert len(keys) == len(set(keys)), f"events booked twice\n{tails}"
        assert set(keys) == produced, tails
        report = verify(lake)
        assert report.ok, report
        lake_files = month_files(lake, tmp_path / "lake-statements")

    single = settings.model_copy(update={"consumer": settings.consumer.model_copy(
        update={"group_id": f"single-{uuid.uuid4().hex[:6]}"})})
    with Ledger.open(tmp_path / "single.duckdb") as ledger:
        ledger.apply_licenses(LICENSES.read_text(), "examples/licenses.toml")
        consume_all(single, ledger)
        file_files = month_files(ledger, tmp_path / "file-statements")
    assert lake_files.keys() == file_files.keys()
    assert [name for name in file_files if lake_files[name] != file_files[name]] == []
