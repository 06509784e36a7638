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
from learnright.admin import ensure_topics
from learnright.broker import PROJECT_ROOT
from learnright.settings import Settings

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
    from ledger.licenses import parse_book
    from ledger.usage import to_record
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


def raw_consume(settings: Settings, events: int) -> float:
    """Seconds plain kafka-python takes to poll ``events`` records of the usage topics and drop them."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False,
                             max_poll_records=settings.consumer.max_poll, fetch_max_wait_ms=settings.consumer.flush_interval_ms)
    partitions = [TopicPartition(t, p) for t in settings.kafka.topics.usage
                  for p in (consumer.partitions_for_topic(t) or ())]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    seen = 0
    started = time.perf_counter()
    while seen < events:
        for records in consumer.poll(timeout_ms=1000, max_records=settings.consumer.max_poll).values():
            seen += len(records)
    elapsed = time.perf_counter() - started
    consumer.close(autocommit=False)
    return elapsed


def pipeline_consume(settings: Settings, events: int, workdir: Path) -> float:
    """Seconds the ledger pipeline takes to book the same records into a fresh ledger."""
    from consumers.service import LedgerConsumer
    from ledger.store import Ledger

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
        booked = ledger.query("SELECT count(*) FROM usage_events")[0][0]
    if booked < events:
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
        raw, piped = [], []
        for n in range(rounds):
            raw.append(raw_consume(settings, events))
            piped.append(pipeline_consume(settings, events, workdir))
            echo(f"round {n + 1}: raw {events / raw[-1]:,.0f}/s, pipeline {events / piped[-1]:,.0f}/s")
        result = BenchResult(name="ingest", events=events, seconds=min(piped), baseline_seconds=min(raw))
        echo(BenchResult(name="raw-consume", events=events, seconds=min(raw), baseline_seconds=min(raw)).line())
        echo(result.line())
        if report is not None:
            write_report(report, result, rounds)
        return result
    finally:
        if own:
            broker.down(state_dir)
        shutil.rmtree(workdir, ignore_errors=True)


def write_report(path: Path, result: BenchResult, rounds: int) -> None:
    uname = platform.uname()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""# Benchmarks

Written by `make bench` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC). Each figure is the best of {rounds}
rounds; the pipeline and the baseline read the same records in the same run, alternating.

| benchmark | events | ratio | rate |
| --- | --- | --- | --- |
| raw-consume (kafka-python poll and discard) | {result.events} | 1.00 | {result.events / result.baseline_seconds:,.0f}/s |
| ingest (consume, decode, validate, price, append with offsets, commit) | {result.events} | {result.ratio:.2f} | {result.rate:,.0f}/s |

Targets: ratio >= 0.8 and >= 100,000 events/s on 2 cores.

Machine: {uname.system} {uname.release} {uname.machine}, {os.cpu_count()} cores, Python {platform.python_version()}.
""")
