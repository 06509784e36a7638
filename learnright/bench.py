"""`make bench`: the ingestion pipeline measured against raw Kafka consumption, side by side.

Fills a topic with synthetic usage once, then in the same run reads it (1) with plain
kafka-python (poll and discard) and (2) through the ledger pipeline (consume, decode,
validate, price, append with offsets, commit), alternating, best of ``rounds``. Prints
``bench NAME ratio=R rate=N/s`` and writes the figures and the machine to
docs/benchmarks.md. Ratios, not seconds, are what compare across noisy machines.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from learnright import broker
from consumers.kafka_admin import ensure_topics
from learnright.broker import PROJECT_ROOT
from ground.settings import Settings

LICENSES = PROJECT_ROOT / "examples" / "licenses.toml"


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchResult:
    name: str
    events: int
    seconds: float
    baseline_seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def ratio(self) -> float:
        """Pipeline throughput over the raw-consumption throughput of the same records."""
        return self.baseline_seconds / self.seconds

    def line(self) -> str:
        return f"bench {self.name} ratio={self.ratio:.2f} rate={self.rate:,.0f}/s".replace(",", "")


def fill(settings: Settings, events: int, period: str) -> None:
    """Writes ``events`` encoded usage events to the usage topics, as platforms would."""
    from ledger.core.license_file import parse_book
    from ledger.core.usage import to_record
    from producers.emitter import RECORD_NAME, partition_key
    from producers.synthetic import month_usage
    from schemas import default_catalog, encode

    book = parse_book(LICENSES.read_text())
    catalog = default_catalog()
    schemas = {kind: catalog.latest(name) for kind, name in RECORD_NAME.items()}
    topics = settings.kafka.topics
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks=1, linger_ms=50,
                             batch_size=512 * 1024, max_in_flight_requests_per_connection=10)
    usage = month_usage(
        period=period, platforms=("orbit", "nimbus"),
        training_units={v.source_id: v.training.unit for v in book.versions if v.training},
        inference_sources=sorted({v.source_id for v in book.versions if v.inference}), events=events, seed=11,
    )
    for event in usage:
        name = RECORD_NAME[event.kind]
        producer.send(topics.for_event(name), key=partition_key(event), value=encode(to_record(event), schemas[event.kind]))
    producer.flush()
    producer.close()


def raw_consume(settings: Settings, events: int, *, whole_fetches: bool = False) -> float:
    """Seconds plain kafka-python takes to poll ``events`` records of the usage topics and drop them.

    With ``whole_fetches`` the consumer hands fetches over whole, as the pipeline's does
    (:func:`consumers.fast_path.install`): the cost of the fetch layer alone.
    """
    from consumers.fast_path import install

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False,
                             max_poll_records=settings.consumer.max_poll, fetch_max_wait_ms=settings.consumer.flush_interval_ms,
                             max_partition_fetch_bytes=settings.consumer.fetch_partition_bytes)
    if whole_fetches and not install(consumer):
        raise RuntimeError("the native fast path is not built (make setup builds native/)")
    partitions = [TopicPartition(t, p) for t in settings.kafka.topics.usage
                  for p in (consumer.partitions_for_topic(t) or ())]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    seen = 0
    started = time.perf_counter()
    while seen < events:
        for records in consumer.poll(timeout_ms=1000, max_records=settings.consumer.max_poll).values():
            seen += sum(getattr(item, "count", 1) for item in records) if whole_fetches else len(records)
    elapsed = time.perf_counter() - started
    consumer.close(autocommit=False)
    return elapsed


def pipeline_consume(settings: Settings, events: int, workdir: Path) -> float:
    """Seconds the ledger pipeline takes to book the same records into a fresh ledger."""
    from consumers.service import LedgerConsumer
    from ledger.storage.store import Ledger

    db = workdir / f"bench-{uuid.uuid4().hex[:6]}.duckdb"
    run = settings.model_copy(update={
        "db": db, "consumer": settings.consumer.model_copy(update={"group_id": f"bench-{uuid.uuid4().hex[:8]}"}),
    })
    with Ledger.open(db) as ledger:
        ledger.apply_licenses(LICENSES.read_text(), "examples/licenses.toml")
        consumer = LedgerConsumer(run, ledger)
        try:
            consumer.consumer.poll(timeout_ms=0)  # join the group before the clock starts
            started = time.perf_counter()
            polled = 0
            while polled < events:
                polled += consumer.run_once(wait=False)
            consumer.drain()
            elapsed = time.perf_counter() - started
        finally:
            consumer.close()
        booked = ledger.scalar("SELECT count(*) FROM usage_events")
    if booked != events:
        raise RuntimeError(f"pipeline booked {booked} of {events} events")
    db.unlink(missing_ok=True)
    return elapsed


def run_bench(settings: Settings, *, events: int, rounds: int, report: Path | None,
              echo: Callable[[str], None] = print) -> BenchResult:
    workdir = Path(tempfile.mkdtemp(prefix="learnright-bench-"))
    own = not settings.kafka.bootstrap_servers
    state_dir = workdir / "kafka"
    try:
        if own:
            state = broker.up(state_dir, version=settings.broker.kafka_version, cache_dir=settings.broker.cache_dir,
                              heap="1g")
            settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": state.bootstrap_servers})})
        settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={
            "topic_prefix": f"bench-{uuid.uuid4().hex[:6]}", "partitions": 2})})
        ensure_topics(settings.kafka.bootstrap_servers, (*settings.kafka.topics.usage, settings.kafka.topics.dead_letter), 2)
        started = time.perf_counter()
        fill(settings, events, "2026-10")
        echo(f"filled {events} events in {time.perf_counter() - started:.1f}s")
        raw, fetches, piped = [], [], []
        for n in range(rounds):
            raw.append(raw_consume(settings, events))
            fetches.append(raw_consume(settings, events, whole_fetches=True))
            piped.append(pipeline_consume(settings, events, workdir))
            echo(f"round {n + 1}: raw {events / raw[-1]:,.0f}/s, whole fetches {events / fetches[-1]:,.0f}/s,"
                 f" pipeline {events / piped[-1]:,.0f}/s")
        results = (
            BenchResult(name="raw-consume", events=events, seconds=min(raw), baseline_seconds=min(raw)),
            BenchResult(name="raw-consume-whole-fetches", events=events, seconds=min(fetches), baseline_seconds=min(raw)),
            BenchResult(name="ingest", events=events, seconds=min(piped), baseline_seconds=min(raw)),
        )
        for result in results:
            echo(result.line())
        if report is not None:
            write_report(report, results, rounds)
        return results[-1]
    finally:
        if own:
            broker.down(state_dir)
        shutil.rmtree(workdir, ignore_errors=True)


def write_report(path: Path, results: tuple[BenchResult, ...], rounds: int) -> None:
    uname = platform.uname()
    path.parent.mkdir(parents=True, exist_ok=True)
    raw, fetches, ingest = results
    path.write_text(f"""# Benchmarks

Written by `make bench` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC). Each figure is the best of {rounds}
rounds; the three read the same {ingest.events:,} records of the same topics in the same run, in turn.
Ratios are throughput over the first line's.

| benchmark | events | ratio | rate |
| --- | --- | --- | --- |
| raw-consume (kafka-python poll and discard, one ConsumerRecord per record) | {raw.events} | 1.00 | {raw.rate:,.0f}/s |
| raw-consume-whole-fetches (kafka-python poll and discard, fetches handed over whole) | {fetches.events} | {fetches.ratio:.2f} | {fetches.rate:,.0f}/s |
| ingest (consume, decode, validate, price, append with offsets, commit) | {ingest.events} | {ingest.ratio:.2f} | {ingest.rate:,.0f}/s |

Targets: ingest ratio >= 0.8 and >= 100,000 events/s on 2 cores. The pipeline reads Kafka
through kafka-python with fetches handed over whole (see docs/ingestion.md), so the second
line is the floor of what its fetch layer costs; ingest over that line is
{fetches.seconds / ingest.seconds:.2f}.

Machine: {uname.system} {uname.release} {uname.machine}, {os.cpu_count()} cores, Python {platform.python_version()}.
""")
