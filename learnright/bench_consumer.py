"""`make bench`'s consumer benchmark: memory over a backlog, ingest under auditor load, latency.

Three figures, measured side by side in one run on one broker (issue 18):

``bench consumer-rss ratio=R rate=N/s rss_mb=M events=E``
    ``learnright consume --until-idle`` with default settings, in a child process, books a
    backlog of ``E`` events (5,000,000 at full size) into a fresh ledger. ``rss_mb`` is the
    child's peak resident set (its ``VmHWM``, written as it exits: not ``wait4``'s
    ``ru_maxrss``, which Linux carries across ``exec`` from this process), ``ratio`` is 500 MB
    over it (>= 1 meets the target), ``rate`` the events booked per second of the child's whole run.
``bench ingest-with-auditor ratio=R rate=N/s queries=Q``
    The same pipeline in this process reads the same backlog twice, once with an auditor
    query every 5 s and once without, in turn. The query runs the way the HTTP API runs
    ``POST /v1/sql``: :func:`ledger.storage.sql.run_query` with the configured limits, on a
    published snapshot (here: of the ledger the first figure booked), on a thread of the
    ingesting process. ``ratio`` is throughput with over without (>= 0.90 meets the target).
``bench latency ratio=R rate=N/s p99_ms=P p50_ms=Q``
    A producer in this process sends pre-encoded events at half the ingest rate measured
    above (or as fast as one kafka-python producer can, when that is less: ``rate`` is what
    it sustained), flushing every 5 ms tick; each event's produce time (kept by its number)
    is when Kafka's acknowledgement of it reached the producer (a callback per record). ``learnright consume`` follows in a child process with a
    reader thread that asks the ledger, every :data:`POLL_S` seconds, which events became
    queryable; an event's latency is that moment minus its produce time. ``ratio`` is (flush interval + 0.5 s) over p99 (>= 1 meets the target).

The backlog is written fast: a few thousand synthetic events are encoded once, and each
event sent is one of them with a new event id of the same length patched into its bytes
(:func:`backlog_records`), so every event is distinct and decodes as the SDK wrote it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from kafka import KafkaProducer

from consumers.kafka_admin import ensure_topics
from ground.settings import Settings
from ground.topics import Topics
from learnright.bench import LICENSES, check_booked, consume_into, settings_environment
from learnright.bench_report import Figure, machine, write_section

NAME = "consumer"
FULL_EVENTS = 5_000_000
"""The backlog of the full run (issue 18: peak RSS < 500 MB at a 5M-event backlog)."""
RSS_TARGET_MB = 500
AUDITOR_EVERY_S = 5.0
AUDITOR_SQL = ("SELECT holder_id, currency, period, count(*) AS entries, sum(amount) AS amount"
               " FROM accruals GROUP BY ALL ORDER BY ALL")
"""What the auditor asks every 5 s: the open royalties per holder, a scan of every accrual."""
CLI = "from learnright.cli import app; app()"
"""A child's ``learnright`` command line (``sys.argv`` after ``-c`` is the command's)."""
PEAK_CLI = """import atexit, pathlib, sys
from learnright.bench_close import own_peak_kb
peak = pathlib.Path(sys.argv.pop(1))
atexit.register(lambda: peak.write_text(str(own_peak_kb())))
""" + CLI
""":data:`CLI` that writes its process's peak RSS in KB (``VmHWM``) to the file its first argument names as it exits."""
POLL_S = 0.02
"""How often the latency child's reader asks the ledger what became queryable (its resolution)."""
LATENCY_SECONDS = 20.0
"""How long the latency producer sends at full size (a smoke run sends its events once)."""
TEMPLATES = 4096
"""Distinct encoded events the backlog is patched from."""
PERIOD = "2026-10"
SEED = 11


@dataclass(frozen=True, slots=True, kw_only=True)
class Template:
    record: str
    """The record's schema name, which names its topic (``Topics.for_event``)."""
    key: bytes
    value: bytes
    event_id: bytes
    """The event id as it appears in ``key`` and ``value``; an id of the same length replaces it."""
    platform: str


def templates(count: int = TEMPLATES) -> list[Template]:
    """``count`` synthetic events encoded as the SDK sends them, with the ids they carry."""
    from ledger.core.license_file import parse_book
    from ledger.core.usage import to_record
    from producers.emitter import RECORD_NAME, partition_key
    from producers.synthetic import month_usage
    from schemas import default_catalog, encode

    book = parse_book(LICENSES.read_text())
    catalog = default_catalog()
    schemas = {kind: catalog.latest(name) for kind, name in RECORD_NAME.items()}
    usage = month_usage(
        period=PERIOD, platforms=("orbit", "nimbus"),
        training_units={v.source_id: v.training.unit for v in book.versions if v.training},
        inference_sources=sorted({v.source_id for v in book.versions if v.inference}), events=count, seed=SEED,
    )
    out = []
    for event in usage:
        value = encode(to_record(event), schemas[event.kind])
        event_id = event.event_id.encode()
        if value.count(event_id) != 1:
            raise RuntimeError(f"event id {event.event_id} appears {value.count(event_id)} times in its encoding")
        out.append(Template(record=RECORD_NAME[event.kind], key=partition_key(event), value=value,
                            event_id=event_id, platform=event.platform_id))
    return out


def event_id(platform: str, number: int) -> bytes:
    """The id of backlog event ``number``: the synthetic ids' shape, so it has the same length."""
    return f"{platform}-{SEED}-{number:08d}".encode()


def event_number(event_id: str) -> int:
    """The number :func:`event_id` wrote into an id."""
    return int(event_id.rsplit("-", 1)[1])


def backlog_records(pool: list[Template], topics: Topics, start: int, count: int) -> Iterator[tuple[str, bytes, bytes]]:
    """(topic, key, value) of events ``start`` .. ``start + count - 1``: distinct ids patched into the pool's bytes."""
    names = {template.record: topics.for_event(template.record) for template in pool}
    for number in range(start, start + count):
        template = pool[number % len(pool)]
        new = event_id(template.platform, number)
        yield names[template.record], template.key.replace(template.event_id, new), template.value.replace(template.event_id, new)


def producer(settings: Settings, **overrides: object) -> KafkaProducer:
    options = dict(acks=1, linger_ms=20, batch_size=1024 * 1024, max_in_flight_requests_per_connection=10)
    options.update(overrides)
    return KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, **options)


def fill_backlog(settings: Settings, events: int, pool: list[Template]) -> float:
    """Sends ``events`` distinct events to the usage topics; returns the seconds it took."""
    started = time.perf_counter()
    out = producer(settings)
    partitions = settings.kafka.partitions
    for number, (topic, key, value) in enumerate(backlog_records(pool, settings.kafka.topics, 0, events)):
        out.send(topic, key=key, value=value, partition=number % partitions)
    out.flush()
    out.close()
    return time.perf_counter() - started


def fresh_topics(settings: Settings, partitions: int = 2) -> Settings:
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={
        "topic_prefix": f"bench-{uuid.uuid4().hex[:6]}", "partitions": partitions})})
    ensure_topics(settings.kafka.bootstrap_servers, (*settings.kafka.topics.usage, settings.kafka.topics.dead_letter),
                  partitions)
    return settings


def fresh_ledger(workdir: Path) -> Path:
    """A new ledger file with the example license book applied."""
    from ledger.storage.store import Ledger

    db = workdir / f"ledger-{uuid.uuid4().hex[:6]}.duckdb"
    with Ledger.open(db) as ledger:
        ledger.apply_licenses(LICENSES.read_text(), "examples/licenses.toml")
    return db


def child_environment(settings: Settings, db: Path) -> dict[str, str]:
    """The environment of a child that runs the consumer with ``settings`` (a fresh group) on ``db``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEARNRIGHT_")}
    env.update(settings_environment(settings))
    env["LEARNRIGHT_CONSUMER__GROUP_ID"] = f"bench-{uuid.uuid4().hex[:8]}"
    env["LEARNRIGHT_DB"] = str(db)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")) if p)
    return env


@dataclass(frozen=True, slots=True, kw_only=True)
class RssRound:
    seconds: float
    peak_mb: float


def consume_backlog_in_child(settings: Settings, db: Path, events: int) -> RssRound:
    """``learnright consume --until-idle`` on ``db`` in a child; its wall time and peak RSS.

    Raises:
        RuntimeError: the child failed.
        BenchError: it booked another number of events than ``events``.
    """
    from ledger.storage.store import Ledger

    logs, peak = db.with_suffix(".consume.log"), db.with_suffix(".peak")
    started = time.perf_counter()
    with logs.open("wb") as log:
        child = subprocess.Popen([sys.executable, "-c", PEAK_CLI, str(peak), "consume", "--until-idle", "--db", str(db)],
                                 env=child_environment(settings, db), stdout=log, stderr=log)
    try:
        child.wait(timeout=600 + events / 1_000)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    seconds = time.perf_counter() - started
    said = logs.read_text(errors="replace")[-2000:]
    if child.returncode != 0 or not peak.exists():
        raise RuntimeError(f"learnright consume failed (exit {child.returncode}): {said}")
    with Ledger.open(db, read_only=True) as ledger:
        check_booked(ledger, events, "learnright consume", said)
    return RssRound(seconds=seconds, peak_mb=int(peak.read_text()) / 1024)


def publish_auditor_snapshot(db: Path, directory: Path):
    """A snapshot of the ledger at ``db`` for the auditor to query, as the service publishes one."""
    from ledger.storage.snapshots import publish_snapshot
    from ledger.storage.store import Ledger

    with Ledger.open(db, read_only=True) as ledger:
        return publish_snapshot(ledger, directory, now=datetime.now(timezone.utc))


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestRound:
    seconds: float
    queries: int
    query_seconds: float
    timeouts: int = 0
    """Auditor queries stopped at the configured time limit (``sql.timeout_s``): each still
    loaded the machine for that long, and the auditor asks again at its next turn, as a
    client of ``POST /v1/sql`` would after a timeout."""


def ingest_in_process(settings: Settings, workdir: Path, events: int, auditor_db: Path | None = None) -> IngestRound:
    """Seconds the pipeline takes to book ``events`` of the backlog into a fresh ledger, in this process.

    With ``auditor_db`` (a published snapshot's database) a thread of this process runs
    :data:`AUDITOR_SQL` on it when ingest starts and every :data:`AUDITOR_EVERY_S` after,
    through :func:`ledger.storage.sql.run_query` with the configured limits, as ``POST
    /v1/sql`` does inside ``learnright serve``.
    """
    from dataclasses import replace

    from ledger.storage.sql import SqlLimits, SqlTimeoutError, run_query
    from ledger.storage.store import Ledger

    db = fresh_ledger(workdir)
    limits = replace(SqlLimits.from_settings(settings.sql), temp_directory=workdir / "sql-spill")
    stop = threading.Event()
    asked: list[float] = []
    timeouts: list[float] = []

    def audit() -> None:
        while True:
            began = time.perf_counter()
            try:
                run_query(auditor_db, AUDITOR_SQL, limits, fmt="json")
            except SqlTimeoutError:
                timeouts.append(time.perf_counter() - began)
            asked.append(time.perf_counter() - began)
            if stop.wait(max(0.0, AUDITOR_EVERY_S - (time.perf_counter() - began))):
                return

    auditor = threading.Thread(target=audit, name="bench-auditor", daemon=True) if auditor_db else None
    with Ledger.open(db) as ledger:
        try:
            elapsed = consume_into(settings, ledger, events, on_start=auditor.start if auditor else None)
        finally:
            stop.set()
            if auditor is not None and auditor.is_alive():
                auditor.join()
    db.unlink(missing_ok=True)
    return IngestRound(seconds=elapsed, queries=len(asked), query_seconds=sum(asked), timeouts=len(timeouts))


_LATENCY_CHILD = """
import sys, threading, time
from array import array
from ground.settings import Settings
from consumers.service import LedgerConsumer
from ledger.storage.store import Ledger

out, expected, poll_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
settings = Settings()
numbers, seen_at = array("q"), array("d")
with Ledger.open(settings.db) as ledger:
    consumer = LedgerConsumer(settings, ledger)
    reader = ledger.reader()

    def watch():
        last = 0
        while len(numbers) < expected and not consumer.stop_event.is_set():
            time.sleep(poll_s)
            # On the cursor itself: Ledger.scalar parses and checks the SQL first (the guard for a
            # user's query), which cost 3 times the query's CPU, 50 times a second, in the consumer's process.
            newest = reader.con.execute("SELECT coalesce(max(batch_id), 0) FROM ingest_batches").fetchone()[0]
            if newest == last:
                continue
            now = time.time()
            batch = reader.con.execute(
                "SELECT CAST(split_part(event_id, '-', 3) AS BIGINT) FROM usage_events"
                " WHERE batch_id > ? AND batch_id <= ?", [last, newest]).arrow().read_all()
            column = batch.column(0).to_pylist()
            numbers.extend(column)
            seen_at.extend([now] * len(column))
            last = newest
        consumer.stop_event.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    print("ready", flush=True)
    try:
        consumer.run()
    finally:
        consumer.close()
        reader.close()
with open(out, "wb") as file:
    numbers.tofile(file)
    seen_at.tofile(file)
"""
"""The latency child: ``learnright consume`` following the topics (as ``serve`` does), and a reader
thread that notes when each event (by its number) became queryable in the ledger."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyRound:
    rate: float
    p50_s: float
    p99_s: float
    events: int


def measure_latency(settings: Settings, workdir: Path, pool: list[Template], *, rate: float, events: int) -> LatencyRound:
    """Sends ``events`` backlog-style events at ``rate`` per second to fresh topics while a child follows them.

    Raises:
        RuntimeError: the child failed or did not see every event.
    """
    settings = fresh_topics(settings)
    db = fresh_ledger(workdir)
    out = workdir / f"latency-{uuid.uuid4().hex[:6]}.bin"
    logs = out.with_suffix(".log")
    with logs.open("wb") as log:
        child = subprocess.Popen([sys.executable, "-c", _LATENCY_CHILD, str(out), str(events), str(POLL_S)],
                                 env=child_environment(settings, db), stdout=subprocess.PIPE, stderr=log)
    try:
        if child.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the latency child did not start: {logs.read_text(errors='replace')[-2000:]}")
        time.sleep(3.0)  # its group join and first fetch, before the clock
        sent_at = array("d", bytes(8 * events))

        def acknowledged(number: int, _metadata) -> None:
            # Produced = acknowledged by Kafka: the moment the event could be read. Noted per
            # record on the producer's I/O thread as its answer arrives, not after the tick's
            # flush, which would date a large tick's first records late (a behind producer's
            # ticks are large) and could even put them after they were seen.
            sent_at[number] = time.time()

        out_producer = producer(settings, linger_ms=5)
        partitions = settings.kafka.partitions
        started = time.time()
        sent = 0
        records = backlog_records(pool, settings.kafka.topics, 0, events)
        while sent < events:
            due = min(events, int((time.time() - started) * rate) + 1)
            while sent < due:
                topic, key, value = next(records)
                out_producer.send(topic, key=key, value=value, partition=sent % partitions).add_callback(
                    acknowledged, sent)
                sent += 1
            out_producer.flush()  # each tick's events leave now, not at the linger's end
            time.sleep(0.005)
        sending = time.time() - started
        out_producer.flush()
        out_producer.close()
        child.wait(timeout=60 + events / 10_000)
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            child.wait(timeout=30)
        child.stdout.close()
    if child.returncode != 0 or not out.exists():
        raise RuntimeError(f"the latency child failed (exit {child.returncode}): {logs.read_text(errors='replace')[-2000:]}")
    numbers, seen_at = array("q"), array("d")
    with out.open("rb") as file:
        count = out.stat().st_size // 16
        numbers.fromfile(file, count)
        seen_at.fromfile(file, count)
    if count != events or len(set(numbers)) != events:
        raise RuntimeError(f"the latency child saw {count} events ({len(set(numbers))} distinct) of {events}")
    latency = sorted(seen - sent_at[number] for number, seen in zip(numbers, seen_at))
    out.unlink()
    db.unlink(missing_ok=True)
    return LatencyRound(rate=events / sending, p50_s=_percentile(latency, 50), p99_s=_percentile(latency, 99),
                        events=events)


def _percentile(ordered: list[float], percent: float) -> float:
    """The ``percent`` percentile of ``ordered`` (nearest rank)."""
    return ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * percent // 100) - 1))]


def run(settings: Settings, *, workdir: Path, rounds: int, events: int | None, report: Path | None,
        echo: Callable[[str], None] = print) -> tuple[Figure, ...]:
    """The three figures of the module docstring; ``events`` None: a backlog of :data:`FULL_EVENTS`."""
    backlog = events or FULL_EVENTS
    pool = templates()
    live = fresh_topics(settings)
    filled = fill_backlog(live, backlog, pool)
    echo(f"consumer: filled a backlog of {backlog} events in {filled:.1f}s ({backlog / filled:,.0f}/s)")

    memory: list[RssRound] = []
    audited_db: Path | None = None
    for n in range(rounds):
        db = fresh_ledger(workdir)
        memory.append(consume_backlog_in_child(live, db, backlog))
        echo(f"consumer round {n + 1}: consume --until-idle {backlog / memory[-1].seconds:,.0f}/s,"
             f" peak RSS {memory[-1].peak_mb:.0f} MB")
        if audited_db is None:
            audited_db = db
        else:
            db.unlink(missing_ok=True)
    snapshot = publish_auditor_snapshot(audited_db, workdir / "snapshots")
    audited_db.unlink(missing_ok=True)

    plain: list[IngestRound] = []
    audited: list[IngestRound] = []
    for n in range(rounds):
        turns = [(None, plain), (snapshot.database, audited)]
        for database, times in turns if n % 2 == 0 else reversed(turns):
            times.append(ingest_in_process(live, workdir, backlog, database))
        echo(f"consumer round {n + 1}: ingest {backlog / plain[-1].seconds:,.0f}/s, with an auditor query every"
             f" {AUDITOR_EVERY_S:.0f}s {backlog / audited[-1].seconds:,.0f}/s ({audited[-1].queries} queries,"
             f" {audited[-1].timeouts} of them stopped at the time limit, {audited[-1].query_seconds:.1f}s in them)")

    best_plain = min(plain, key=lambda r: r.seconds)
    best_audited = min(audited, key=lambda r: r.seconds)
    target_rate = backlog / best_plain.seconds / 2
    sent = max(1, min(backlog, int(target_rate * LATENCY_SECONDS)))
    latencies: list[LatencyRound] = []
    for n in range(rounds):
        latencies.append(measure_latency(settings, workdir, pool, rate=target_rate, events=sent))
        echo(f"consumer round {n + 1}: latency at {latencies[-1].rate:,.0f}/s (asked {target_rate:,.0f}/s):"
             f" p50 {latencies[-1].p50_s * 1000:.0f} ms, p99 {latencies[-1].p99_s * 1000:.0f} ms")

    peak = max(r.peak_mb for r in memory)
    bound_s = settings.consumer.flush_interval_ms / 1000 + 0.5
    latency = min(latencies, key=lambda r: r.p99_s)
    figures = (
        Figure(name="consumer-rss", ratio=RSS_TARGET_MB / peak, rate=backlog / min(r.seconds for r in memory),
               extra=(("rss_mb", f"{peak:.0f}"), ("events", str(backlog)))),
        Figure(name="ingest-with-auditor", ratio=best_plain.seconds / best_audited.seconds,
               rate=backlog / best_audited.seconds,
               extra=(("without", f"{backlog / best_plain.seconds:.0f}/s"), ("queries", str(best_audited.queries)),
                      ("timeouts", str(best_audited.timeouts)))),
        Figure(name="latency", ratio=bound_s / latency.p99_s, rate=latency.rate,
               extra=(("p99_ms", f"{latency.p99_s * 1000:.0f}"), ("p50_ms", f"{latency.p50_s * 1000:.0f}"))),
    )
    for figure in figures:
        echo(figure.line())
    if report is not None:
        write_section(report, NAME, _section(settings, figures, memory=memory, plain=plain, audited=audited,
                                             latencies=latencies, backlog=backlog, filled=filled,
                                             target_rate=target_rate, rounds=rounds))
    return figures


def _section(settings: Settings, figures: tuple[Figure, ...], *, memory: list[RssRound], plain: list[IngestRound],
             audited: list[IngestRound], latencies: list[LatencyRound], backlog: int, filled: float,
             target_rate: float, rounds: int) -> str:
    rss, auditor, latency = figures
    consumer = settings.consumer
    ratios = [p.seconds / a.seconds for p, a in zip(plain, audited)]
    load = os.getloadavg()
    return f"""## The consumer: memory, auditor load, latency

Written by `make bench` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC), {rounds} round(s), on a backlog of
{backlog:,} distinct synthetic events (80% inference, written in {filled:.0f} s from pre-encoded bytes, 2
partitions per topic). Default consumer settings: `max_batch` {consumer.max_batch:,}, `max_poll`
{consumer.max_poll:,}, `fetch_partition_bytes` {consumer.fetch_partition_bytes:,}, `fetch_max_bytes`
{consumer.fetch_max_bytes:,}, `ledger_memory_limit` {consumer.ledger_memory_limit}, `flush_interval_ms`
{consumer.flush_interval_ms}.

| figure | ratio | rate | more | best / worst of the rounds |
| --- | --- | --- | --- | --- |
| consumer-rss: peak RSS of `learnright consume --until-idle` (a child) over the backlog; ratio 500 MB / peak | {rss.ratio:.2f} | {rss.rate:,.0f}/s | {dict(rss.extra)['rss_mb']} MB | peak {min(r.peak_mb for r in memory):.0f}-{max(r.peak_mb for r in memory):.0f} MB, {backlog / max(r.seconds for r in memory):,.0f}-{backlog / min(r.seconds for r in memory):,.0f}/s |
| ingest-with-auditor: throughput with `{AUDITOR_SQL}` every {AUDITOR_EVERY_S:.0f} s (on a snapshot, as `POST /v1/sql`) over without | {auditor.ratio:.2f} | {auditor.rate:,.0f}/s | without {dict(auditor.extra)['without']}, {dict(auditor.extra)['queries']} queries ({dict(auditor.extra)['timeouts']} stopped at the {settings.sql.time_limit_s:g} s limit) | per-round ratio {min(ratios):.2f}-{max(ratios):.2f} |
| latency: produce to queryable at half the ingest rate ({target_rate:,.0f}/s asked); ratio (flush interval + 0.5 s) / p99 | {latency.ratio:.2f} | {latency.rate:,.0f}/s | p99 {dict(latency.extra)['p99_ms']} ms, p50 {dict(latency.extra)['p50_ms']} ms | p99 {min(r.p99_s for r in latencies) * 1000:.0f}-{max(r.p99_s for r in latencies) * 1000:.0f} ms |

Targets (issue 18): peak RSS < 500 MB at a 5M-event backlog (ratio > 1); an auditor query every
5 s costs <= 10% of ingest (ratio >= 0.90); p99 produce-to-queryable <= flush interval + 0.5 s
(ratio >= 1). Latency is produced-to-seen: from the moment Kafka acknowledged the event (the
producer, kafka-python with acks=1, sends each 5 ms tick's events and flushes, and notes each
acknowledgement as it arrives) to the moment a
reader of the ledger, asking every {POLL_S * 1000:.0f} ms, finds it. The producer runs in this process
while the consumer follows in a child; when one producer cannot reach the asked rate, `rate`
is what it sustained.

Machine: {machine()}; load average {load[0]:.1f} at the end of the run.""".replace("\u2009", " ")
