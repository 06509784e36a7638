"""`make bench`'s produce benchmark: the SDK's emitter and `learnright emit` against plain kafka-python.

In one run, on fresh topics each time, the same synthetic usage events are sent by:

* ``produce-plain``: kafka-python's ``KafkaProducer.send`` of the events already encoded
  (the emitter's bytes, keys and topics), with the emitter's settings
  (:data:`producers.emitter.PRODUCER_SETTINGS`: acks=all, idempotence, linger, batch
  size, lz4). The baseline: ratio 1.00.
* ``produce``: :meth:`UsageEmitter.send_events` of the events as values (it checks the
  usage limits, encodes, keys and partitions them itself).
* ``produce-per-event``: :meth:`UsageEmitter.send_event`, one call per event.
* ``emit``: :func:`producers.files.send_file` (what `learnright emit FILE` runs, without
  the interpreter's start) of the same events as a JSON Lines file: read, validate (the
  native row reader where it is sure, :func:`producers.files.native_reader`), send.

Each producer is built and has the topics' metadata before its clock starts (``emit``
connects inside its clock, as the command does); the clock stops when every record is
acknowledged (flush), and the run is refused unless every record was acknowledged and the
topics hold exactly the events sent. Rounds alternate the order; each figure is the best
of the rounds, and the report gives the worst too.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from consumers.kafka_admin import ensure_topics
from ground.settings import Settings
from ground.topics import Topics
from learnright.bench_report import Figure, machine, write_section

NAME = "produce"
FULL_EVENTS = 200_000
PERIOD = "2026-10"
PARTITIONS = 2
"""Partitions of each fresh usage topic (as the issue's first measurement had them)."""
TARGETS = "`UsageEmitter` >= 50,000 events/s per process and >= 0.75 of plain; `learnright emit` >= 30,000 rows/s"

# (figure name, what it measures), in the report's order.
PRODUCERS = (
    ("produce-plain", "kafka-python `KafkaProducer.send` of the same events pre-encoded, emitter's settings"),
    ("produce", "`UsageEmitter.send_events` (limits check, Avro encoding, keys, partitions, batches)"),
    ("produce-per-event", "`UsageEmitter.send_event`, one call per event"),
    ("emit", "`learnright emit` of a JSON Lines file (`producers.files.send_file`: read and validate, natively"
             " where sure, send)"),
)


class ProduceBenchError(RuntimeError):
    """A producer did not get every record acknowledged, or the topics do not hold them all."""


def synthetic_events(count: int) -> list:
    from producers.synthetic import month_usage

    return list(month_usage(period=PERIOD, platforms=("orbit", "nimbus"),
                            training_units={"src-novels": "tokens", "src-photos": "items"},
                            inference_sources=("src-novels", "src-photos", "src-poems", "src-maps"), events=count, seed=5))


def write_rows(events: list, path: Path) -> None:
    """The events as `learnright emit` rows (JSON Lines), amounts as exact decimal text."""
    with path.open("w") as handle:
        for event in events:
            row = {"type": event.kind, "event_id": event.event_id, "platform_id": event.platform_id,
                   "model_id": event.model_id, "occurred_at": event.occurred_at.isoformat()}
            if event.kind == "training":
                row.update(run_id=event.run_id, source_id=event.source_id, units=event.units, unit=event.unit)
            else:
                row.update(request_id=event.request_id, output_units=event.output_units,
                           attributions=[{"source_id": a.source_id, "weight": str(a.weight)} for a in event.attributions])
            handle.write(json.dumps(row) + "\n")


def _fresh_topics(settings: Settings) -> Topics:
    topics = Topics(prefix=f"bench-produce-{uuid.uuid4().hex[:8]}")
    ensure_topics(settings.kafka.bootstrap_servers, topics.usage, PARTITIONS)
    return topics


def _landed(servers: str, topics: Topics) -> int:
    """Records the broker holds on ``topics`` (sum of end offsets of fresh topics)."""
    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(t, p) for t in topics.usage for p in consumer.partitions_for_topic(t) or ()]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def _plain(servers: str, topics: Topics, encoded: list) -> float:
    from producers.emitter import PRODUCER_SETTINGS

    producer = KafkaProducer(**{**PRODUCER_SETTINGS, "bootstrap_servers": servers, "max_block_ms": 60_000,
                                "delivery_timeout_ms": 120_000})
    try:
        for topic in topics.usage:
            producer.partitions_for(topic)
        send = producer.send
        started = time.perf_counter()
        futures = [send(topics.for_event(name), value=value, key=key) for name, key, value in encoded]
        producer.flush()
        elapsed = time.perf_counter() - started
    finally:
        producer.close()
    failed = sum(1 for future in futures if not future.succeeded())
    if failed:
        raise ProduceBenchError(f"plain kafka-python: {failed} of {len(futures)} records not acknowledged")
    return elapsed


def _emitter(servers: str, topics: Topics, events: list, *, bulk: bool) -> float:
    from producers.emitter import UsageEmitter

    with UsageEmitter(servers, topics=topics) as emitter:
        for topic in topics.usage:
            emitter._producer.partitions_for(topic)
        started = time.perf_counter()
        if bulk:
            emitter.send_events(events)
        else:
            for event in events:
                emitter.send_event(event)
        emitter.flush()
        elapsed = time.perf_counter() - started
    if emitter.acknowledged != len(events):
        raise ProduceBenchError(f"the emitter: {emitter.acknowledged} of {len(events)} records acknowledged")
    return elapsed


def _emit(servers: str, topics: Topics, rows: Path, count: int) -> float:
    from producers.emitter import UsageEmitter
    from producers.files import send_file

    problems: list = []
    started = time.perf_counter()
    outcome = send_file(rows, lambda: UsageEmitter(servers, topics=topics), report=problems.append)
    elapsed = time.perf_counter() - started
    if problems or outcome.failure is not None or outcome.sent != count:
        raise ProduceBenchError(f"emit: {outcome.sent} of {count} rows acknowledged, {len(problems)} rejected"
                                f" ({problems[:1] or outcome.failure})")
    return elapsed


def run(settings: Settings, *, workdir: Path, rounds: int, events: int | None, report: Path | None,
        echo: Callable[[str], None] = print) -> tuple[Figure, ...]:
    """Measures the four producers side by side; prints and returns one figure each."""
    from producers.encoding import RECORD_NAME, encode_event
    from producers.emitter import partition_key
    from schemas import default_catalog

    count = events or FULL_EVENTS
    servers = settings.kafka.bootstrap_servers
    off = _bulk_unavailable(servers)
    if off:
        echo(f"produce: the emitter's bulk path is off ({off}); send_events sends one event at a time")
    from producers.files import native_reader

    rows_off = native_reader() is None
    if rows_off:
        echo("produce: the native row reader is off (the native module has no UsageRowReader); emit reads rows in Python")
    usage = synthetic_events(count)
    catalog = default_catalog()
    encoded = [(RECORD_NAME[e.kind], partition_key(e), encode_event(e, catalog)) for e in usage]
    rows = workdir / "produce-rows.jsonl"
    write_rows(usage, rows)
    runners: dict[str, Callable[[Topics], float]] = {
        "produce-plain": lambda topics: _plain(servers, topics, encoded),
        "produce": lambda topics: _emitter(servers, topics, usage, bulk=True),
        "produce-per-event": lambda topics: _emitter(servers, topics, usage, bulk=False),
        "emit": lambda topics: _emit(servers, topics, rows, count),
    }
    seconds: dict[str, list[float]] = {name: [] for name, _ in PRODUCERS}
    loads = []
    for n in range(rounds):
        order = [name for name, _ in PRODUCERS]
        for name in order if n % 2 == 0 else reversed(order):
            topics = _fresh_topics(settings)
            seconds[name].append(runners[name](topics))
            landed = _landed(servers, topics)
            if landed != count:
                raise ProduceBenchError(f"{name}: the topics hold {landed} records, {count} were sent")
        loads.append(os.getloadavg()[0])
        echo(f"round {n + 1}: " + ", ".join(f"{name} {count / seconds[name][-1]:,.0f}/s" for name, _ in PRODUCERS))
    best = {name: count / min(times) for name, times in seconds.items()}
    worst = {name: count / max(times) for name, times in seconds.items()}
    plain = best["produce-plain"]
    figures = tuple(Figure(name=name, ratio=best[name] / plain, rate=best[name]) for name, _ in PRODUCERS)
    for figure in figures:
        echo(figure.line())
    if report is not None:
        write_section(report, NAME, _section(figures, worst, count=count, rounds=rounds, loads=loads, off=off,
                                             rows_off=rows_off))
    return figures


def _bulk_unavailable(servers: str) -> str | None:
    from producers.emitter import UsageEmitter

    with UsageEmitter(servers) as emitter:
        return emitter.bulk_unavailable


def _section(figures: tuple[Figure, ...], worst: dict[str, float], *, count: int, rounds: int,
             loads: list[float], off: str | None, rows_off: bool = False) -> str:
    what = dict(PRODUCERS)
    table = "\n".join(f"| {f.name} | {what[f.name]} | {f.ratio:.2f} | {f.rate:,.0f}/s | {worst[f.name]:,.0f}/s |"
                      for f in figures)
    return f"""## Producing

Written by `make bench` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC). {count:,} synthetic usage events
(`producers.synthetic.month_usage`, 80% inference), sent by each producer in turn on fresh
{PARTITIONS}-partition topics of one broker, {rounds} rounds in alternating order; the clock stops when every
record is acknowledged (flush), and each run is checked: every record acknowledged and the topics
holding exactly the events sent. Ratios are best-of-rounds throughput over produce-plain's.

| figure | what | ratio | best | worst |
| --- | --- | --- | --- | --- |
{table}

Targets (issue 18): {TARGETS}, on 2 cores.{f" The bulk path was OFF in this run: {off}." if off else ""}{
" The native row reader was OFF in this run: emit read every row in Python." if rows_off else ""}

Machine: {machine()}; 1-minute load average after each round: {", ".join(f"{load:.1f}" for load in loads)}.
"""
