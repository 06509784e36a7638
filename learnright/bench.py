"""`make bench`: the ingestion pipeline measured against raw Kafka consumption, side by side.

Fills a topic with synthetic usage once, then in the same run reads it (1) with plain
kafka-python (poll and discard) and (2) through the ledger pipeline (consume, decode,
validate, price, append with offsets, commit), alternating, best of ``rounds``; and (3)
appends the rows each round booked with DuckDB alone, the ceiling of (2). Prints
``bench NAME ratio=R rate=N/s`` and writes the figures and the machine to
docs/benchmarks.md. Ratios, not seconds, are what compare across noisy machines.

``bench --against REV`` (``make bench-compare``) compares two revisions of our own code
instead: the working tree's pipeline and the pipeline of commit ``REV``, exported with
``git archive`` and its native extension built apart, read the same filled topic in turn,
each round in a child process of its own so both pay the same start-up. Only the seconds
``pipeline_consume`` reports count. Prints ``bench pipeline@REV``, ``bench pipeline@HEAD``
and ``bench current/REV = X`` and adds a row to the report's section on revisions.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from learnright import broker
from consumers.kafka_admin import ensure_topics
from learnright.bench_append import append_booked
from learnright.bench_report import Figure, machine, process_cpu_seconds, write_section
from learnright.broker import PROJECT_ROOT
from ground.errors import ConfigError, TerminalError
from ground.settings import Settings

LICENSES = PROJECT_ROOT / "examples" / "licenses.toml"
COMPARE_HEADING = "## Against an earlier revision"
"""Heading of the report's section that ``bench --against`` adds rows to and ``make bench`` keeps."""


class BenchError(TerminalError):
    """A benchmark round, or the build of the revision compared against, failed."""

    code = "bench_failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchResult:
    name: str
    events: int
    seconds: float
    baseline_seconds: float
    cpu_seconds: float | None = None
    """CPU time of the whole process (every thread, user and system) over the run, the least of
    the rounds; None where it was not measured. It moves far less than ``seconds`` with
    what else runs on the machine (docs/benchmarks.md, the ingest profile)."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def ratio(self) -> float:
        """Pipeline throughput over the raw-consumption throughput of the same records."""
        return self.baseline_seconds / self.seconds

    @property
    def cpu_us_per_event(self) -> float | None:
        return None if self.cpu_seconds is None else 1e6 * self.cpu_seconds / self.events

    def extra(self) -> tuple[tuple[str, str], ...]:
        """Measures printed after the rate: the CPU per event, where it was measured."""
        return () if self.cpu_seconds is None else (("cpu_us_per_event", f"{self.cpu_us_per_event:.1f}"),)

    def line(self) -> str:
        tail = "".join(f" {key}={value}" for key, value in self.extra())
        return f"bench {self.name} ratio={self.ratio:.2f} rate={self.rate:,.0f}/s".replace(",", "") + tail


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
    db = workdir / f"bench-{uuid.uuid4().hex[:6]}.duckdb"
    elapsed = book_file(settings, events, db)
    db.unlink(missing_ok=True)
    return elapsed


def book_file(settings: Settings, events: int, db: Path) -> float:
    """Books the usage topics into a new ledger file ``db`` (left closed) under a consumer group of its own.

    Returns the seconds from the group joined to the last batch applied.

    Raises:
        BenchError: the ledger did not book exactly ``events`` events.
    """
    from ledger.storage.store import Ledger

    with Ledger.open(db) as ledger:
        ledger.apply_licenses(LICENSES.read_text(), "examples/licenses.toml")
        return consume_into(settings, ledger, events)


def consume_into(settings: Settings, ledger, events: int, *, on_start: Callable[[], None] | None = None) -> float:
    """Books ``events`` records of the usage topics into the open ``ledger`` through the pipeline,
    under a consumer group of its own, and checks that exactly ``events`` events are booked.

    Returns the seconds from the group joined (``on_start`` is called then, once) to the last
    batch applied: joining the group is not part of what any benchmark times.

    Raises:
        BenchError: the ledger did not book exactly ``events`` events.
    """
    from consumers.service import LedgerConsumer

    run = settings.model_copy(update={
        "consumer": settings.consumer.model_copy(update={"group_id": f"bench-{uuid.uuid4().hex[:8]}"}),
    })
    consumer = LedgerConsumer(run, ledger)
    try:
        consumer.consumer.poll(timeout_ms=0)  # join the group before the clock starts
        started = time.perf_counter()
        if on_start is not None:
            on_start()
        polled = 0
        while polled < events:
            polled += consumer.run_once(wait=False)
        consumer.drain()
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
    check_booked(ledger, events, "the pipeline")
    return elapsed


def check_booked(ledger, events: int, who: str, said: str = "") -> None:
    """Refuses a benchmark run whose ledger does not hold exactly ``events`` usage events: a
    figure is only worth printing over a run that booked what it read, once.

    Raises:
        BenchError: naming ``who`` booked how many (and ``said``, what the run printed).
    """
    booked = ledger.scalar("SELECT count(*) FROM usage_events")
    if booked != events:
        raise BenchError(f"{who} booked {booked} of {events} events" + (f": {said}" if said else ""))


@contextmanager
def running_broker(settings: Settings, workdir: Path) -> Iterator[Settings]:
    """Yields ``settings`` pointing at a broker: the configured one, or one started under ``workdir``
    and stopped on the way out."""
    if settings.kafka.bootstrap_servers:
        yield settings
        return
    state_dir = workdir / "kafka"
    try:
        state = broker.up(state_dir, version=settings.broker.kafka_version, cache_dir=settings.broker.cache_dir,
                          heap="1g")
        yield settings.model_copy(update={"kafka": settings.kafka.model_copy(update={
            "bootstrap_servers": state.bootstrap_servers})})
    finally:
        broker.down(state_dir)


@contextmanager
def filled_topics(settings: Settings, workdir: Path, events: int, echo: Callable[[str], None],
                  partitions: int = 2) -> Iterator[Settings]:
    """Yields ``settings`` pointed at fresh usage topics holding ``events`` events.

    Without a configured broker one is started under ``workdir`` and stopped on the way out.
    """
    with running_broker(settings, workdir) as settings:
        settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={
            "topic_prefix": f"bench-{uuid.uuid4().hex[:6]}", "partitions": partitions})})
        ensure_topics(settings.kafka.bootstrap_servers, (*settings.kafka.topics.usage, settings.kafka.topics.dead_letter),
                      partitions)
        started = time.perf_counter()
        fill(settings, events, "2026-10")
        echo(f"filled {events} events in {time.perf_counter() - started:.1f}s")
        yield settings


SUITES = ("ingest", "close", "produce", "consumer", "storage")
"""Every benchmark of `make bench`, in the order it runs. ``ingest`` is this module's; each other
``NAME`` is module ``learnright.bench_NAME``, whose ``run(settings, *, workdir, rounds, events,
report, echo) -> tuple[Figure, ...]`` measures with a live broker in ``settings`` (none for
those in :data:`WITHOUT_BROKER`; ``events`` None: its own full size), prints its lines and
rewrites its section of ``report``."""

WITHOUT_BROKER = frozenset({"close"})
"""The benchmarks that never talk to Kafka: a run of only these starts no broker."""


def run_suites(settings: Settings, *, suites: tuple[str, ...], events: int | None, rounds: int,
               report: Path | None, echo: Callable[[str], None] = print) -> list[Figure]:
    """Runs ``suites`` in :data:`SUITES` order on one broker (none if every one is in
    :data:`WITHOUT_BROKER`); returns every figure printed.

    ``events`` sizes the ingest suite (and, when given, every other one: a smoke run).

    Raises:
        ConfigError: a suite is not one of :data:`SUITES`.
    """
    unknown = sorted(set(suites) - set(SUITES))
    if unknown:
        raise ConfigError(f"bench: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    figures: list[Figure] = []
    workdir = Path(tempfile.mkdtemp(prefix="learnright-bench-"))
    workdir.chmod(0o755)
    try:
        needs_broker = not set(suites) <= WITHOUT_BROKER
        with running_broker(settings, workdir) if needs_broker else nullcontext(settings) as live:
            for name in (suite for suite in SUITES if suite in suites):
                if name == "ingest":
                    results = measure_ingest(live, events=events or 1_000_000, rounds=rounds, report=report, echo=echo)
                    figures.extend(result_figure(result) for result in results)
                    continue
                module = importlib.import_module(f"learnright.bench_{name}")
                figures.extend(module.run(live, workdir=workdir, rounds=rounds, events=events, report=report, echo=echo))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


def result_figure(result: BenchResult) -> Figure:
    return Figure(name=result.name, ratio=result.ratio, rate=result.rate, extra=result.extra())


def run_bench(settings: Settings, *, events: int, rounds: int, report: Path | None,
              echo: Callable[[str], None] = print) -> BenchResult:
    """The ingest benchmark alone; returns its ``ingest`` figure."""
    results = measure_ingest(settings, events=events, rounds=rounds, report=report, echo=echo)
    return next(result for result in results if result.name == "ingest")


def measure_ingest(settings: Settings, *, events: int, rounds: int, report: Path | None,
                   echo: Callable[[str], None] = print) -> tuple[BenchResult, ...]:
    """Raw consumption, raw consumption of whole fetches and the pipeline, read in turn from one filled topic;
    then, each round, DuckDB alone appending the rows the pipeline booked (:mod:`learnright.bench_append`)."""
    workdir = Path(tempfile.mkdtemp(prefix="learnright-bench-"))
    try:
        with filled_topics(settings, workdir, events, echo) as settings:
            raw, fetches, piped, cpu, appends = [], [], [], [], []
            for n in range(rounds):
                raw.append(raw_consume(settings, events))
                fetches.append(raw_consume(settings, events, whole_fetches=True))
                booked = workdir / f"bench-{uuid.uuid4().hex[:6]}.duckdb"
                before = process_cpu_seconds()
                piped.append(book_file(settings, events, booked))
                cpu.append(process_cpu_seconds() - before)
                appends.append(append_booked(booked, workdir / "append.duckdb", threads=settings.consumer.ledger_threads,
                                             memory_limit=settings.consumer.checkpoint_memory_limit))
                for leftover in (booked, workdir / "append.duckdb"):
                    leftover.unlink(missing_ok=True)
                echo(f"round {n + 1}: raw {events / raw[-1]:,.0f}/s, whole fetches {events / fetches[-1]:,.0f}/s,"
                     f" pipeline {events / piped[-1]:,.0f}/s, DuckDB's append alone {events / appends[-1].seconds:,.0f}/s")
        results = (
            BenchResult(name="raw-consume", events=events, seconds=min(raw), baseline_seconds=min(raw)),
            BenchResult(name="raw-consume-whole-fetches", events=events, seconds=min(fetches), baseline_seconds=min(raw)),
            BenchResult(name="ingest", events=events, seconds=min(piped), baseline_seconds=min(raw),
                        cpu_seconds=min(cpu)),
            BenchResult(name="duckdb-append", events=events, seconds=min(a.seconds for a in appends),
                        baseline_seconds=min(raw), cpu_seconds=min(a.cpu_seconds for a in appends)),
        )
        for result in results:
            echo(result.line())
        if report is not None:
            write_report(report, results, rounds)
        return results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def write_report(path: Path, results: tuple[BenchResult, ...], rounds: int) -> None:
    """Rewrites the report's ingest section with ``results``; the rest of the report stays."""
    named = {result.name: result for result in results}
    raw, fetches, ingest = named["raw-consume"], named["raw-consume-whole-fetches"], named["ingest"]
    append = named.get("duckdb-append")
    append_row = "" if append is None else (
        f"\n| duckdb-append (DuckDB alone appending the rows ingest booked, in its batches, then checkpointing)"
        f" | {append.events} | {append.ratio:.2f} | {append.rate:,.0f}/s |")
    write_section(path, "ingest", f"""## Ingest

Written by `make bench` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC). Each figure is the best of {rounds}
rounds; the first three read the same {ingest.events:,} records of the same topics in the same run, in turn,
and the fourth appends the rows each round's ingest booked. Ratios are throughput over the first line's.

| benchmark | events | ratio | rate |
| --- | --- | --- | --- |
| raw-consume (kafka-python poll and discard, one ConsumerRecord per record) | {raw.events} | 1.00 | {raw.rate:,.0f}/s |
| raw-consume-whole-fetches (kafka-python poll and discard, fetches handed over whole) | {fetches.events} | {fetches.ratio:.2f} | {fetches.rate:,.0f}/s |
| ingest (consume, decode, validate, price, append with offsets, commit) | {ingest.events} | {ingest.ratio:.2f} | {ingest.rate:,.0f}/s |{append_row}

Targets: ingest >= 250,000 events/s on 2 cores (issue 18). The pipeline reads Kafka
through kafka-python with fetches handed over whole (see docs/ingestion.md), so the second
line is the floor of what its fetch layer costs; ingest over that line is
{fetches.seconds / ingest.seconds:.2f}.{_cpu_sentence(ingest)}{_append_sentence(ingest, append)}

Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end of the run.""")


def _cpu_sentence(ingest: BenchResult) -> str:
    if ingest.cpu_us_per_event is None:
        return ""
    return (f"\n\nThe pipeline's process used {ingest.cpu_us_per_event:,.1f} us of CPU per event (every thread, the"
            f" least of the rounds, ledger open and close included): 250,000 events/s on 2 cores leaves 8. It moves"
            f" far less than the rate with the machine's load.")


def _append_sentence(ingest: BenchResult, append: BenchResult | None) -> str:
    if append is None or append.cpu_us_per_event is None:
        return ""
    return (f"\n\nThe writer appends each batch's rows in one DuckDB transaction on one thread, so no pipeline books"
            f" faster than the last line: DuckDB alone appended ingest's rows at {append.rate:,.0f}/s with"
            f" {append.cpu_us_per_event:,.1f} us of CPU an event (the writer thread's budget at 250,000/s is 4), and"
            f" ingest ran at {ingest.rate / append.rate:.2f} of that rate.")


# Side by side against an earlier revision (`bench --against REV`, `make bench-compare`).

_ROUND = """
import json, sys
from pathlib import Path
import learnright.bench as bench
seconds = bench.pipeline_consume(bench.Settings(), int(sys.argv[1]), Path(sys.argv[2]))
native = sys.modules.get("learnright_native")
print(json.dumps({"seconds": seconds, "bench": bench.__file__, "native": getattr(native, "__file__", None)}))
"""
"""One round in a child process: the tree's own ``pipeline_consume`` and its settings class, whatever
they import; prints the seconds it reports and which files ran, as one JSON line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tree:
    """A source tree whose pipeline a child process runs: the working tree or an exported revision."""

    label: str
    """How lines and the report name it: ``HEAD`` for the working tree, else the revision as given."""
    commit: str
    """The commit it is (the working tree: HEAD, uncommitted changes included)."""
    root: Path
    native: Path | None
    """Private target holding the revision's own native extension; None: the one installed in .venv."""

    @property
    def pythonpath(self) -> tuple[Path, ...]:
        return (self.native, self.root) if self.native is not None else (self.root,)


def resolve_revision(rev: str) -> str:
    """The full commit id ``rev`` names in this repository (read-only ``git rev-parse``).

    Raises:
        ConfigError: git is missing, or ``rev`` names no commit.
    """
    if not rev or rev.startswith("-"):
        raise ConfigError(f"bench --against: {rev!r} is not a revision (give a commit, e.g. HEAD~1)")
    try:
        found = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                               capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise ConfigError("bench --against needs git on PATH") from exc
    if found.returncode != 0 or not found.stdout.strip():
        raise ConfigError(f"bench --against: unknown revision {rev!r} (git rev-parse finds no commit of that name"
                          f" in {PROJECT_ROOT})")
    return found.stdout.strip()


def export_revision(rev: str, dest: Path, *, cache_dir: Path, echo: Callable[[str], None] = print) -> Tree:
    """Exports commit ``rev`` to ``dest`` (``git archive | tar -x``) and builds its native extension there.

    The extension goes into ``dest/.native``, never into .venv, so the working tree's own
    stays installed. Cargo keeps compiled dependencies under ``cache_dir`` between runs.

    Raises:
        ConfigError: ``rev`` names no commit, or the commit has no ``pipeline_consume`` to run.
        BenchError: the export or the native build failed.
    """
    commit = resolve_revision(rev)
    dest.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(PROJECT_ROOT), "archive", "--format=tar", commit],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, capture_output=True, text=True, check=False)
    archive.stdout.close()
    archive_errors = archive.stderr.read().decode(errors="replace")
    if archive.wait() != 0 or untar.returncode != 0:
        raise BenchError(f"exporting {rev} ({commit[:12]}) with git archive | tar failed:"
                         f" {_tail(archive_errors + untar.stderr)}")
    if not _has_pipeline_consume(dest / "learnright" / "bench.py"):
        raise ConfigError(f"bench --against: {rev} ({commit[:12]}) has no learnright.bench.pipeline_consume(settings,"
                          " events, workdir) to run; compare against a later commit")
    native_src = dest / "native"
    if not (native_src / "pyproject.toml").is_file():
        return Tree(label=rev, commit=commit, root=dest, native=None)
    started = time.perf_counter()
    target = dest / ".native"
    cargo_bin = Path.home() / ".cargo" / "bin"
    env = dict(os.environ, PATH=f"{cargo_bin}{os.pathsep}{os.environ.get('PATH', '')}",
               CARGO_TARGET_DIR=str(cache_dir / "bench-cargo-target"))
    built = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                            str(native_src)], env=env, capture_output=True, text=True, check=False)
    if built.returncode != 0:
        raise BenchError(f"building the native extension of {rev} ({commit[:12]}) failed: {_tail(built.stderr)}")
    echo(f"exported {rev} ({commit[:12]}) and built its native extension in {time.perf_counter() - started:.1f}s")
    return Tree(label=rev, commit=commit, root=dest, native=target)


def _has_pipeline_consume(bench_file: Path) -> bool:
    """Whether ``bench_file`` defines ``pipeline_consume(settings, events, workdir)``."""
    if not bench_file.is_file():
        return False
    for node in ast.parse(bench_file.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name == "pipeline_consume":
            return [arg.arg for arg in node.args.args] == ["settings", "events", "workdir"]
    return False


def working_tree() -> Tree:
    """The tree this code runs from, with the native extension installed in .venv (``make setup``)."""
    return Tree(label="HEAD", commit=resolve_revision("HEAD"), root=PROJECT_ROOT, native=None)


def settings_environment(settings: Settings) -> dict[str, str]:
    """``LEARNRIGHT_KAFKA__*`` and ``LEARNRIGHT_CONSUMER__*`` keys that rebuild the pipeline's settings in a child."""
    env = {}
    for section in ("kafka", "consumer"):
        for name, value in getattr(settings, section).model_dump(mode="json").items():
            if value is not None:
                env[f"LEARNRIGHT_{section.upper()}__{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def child_consume(tree: Tree, settings: Settings, events: int, workdir: Path) -> float:
    """Seconds ``tree``'s own ``pipeline_consume`` reports for booking the topic into a fresh ledger.

    Runs in a child process (``python -P``, PYTHONPATH = the tree, its native extension first)
    with the same settings, in a workdir of its own; process start is not timed. Each call
    books into a new ledger file under a new consumer group (``pipeline_consume`` names both),
    so rounds never see each other's offsets.

    Raises:
        BenchError: the child failed, hung, or ran other files than ``tree``'s.
    """
    round_dir = Path(tempfile.mkdtemp(prefix="round-", dir=workdir))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(settings_environment(settings), PYTHONPATH=os.pathsep.join(str(path) for path in tree.pythonpath))
    timeout_s = 120 + events / 1_000
    try:
        done = subprocess.run([sys.executable, "-P", "-c", _ROUND, str(events), str(round_dir)], cwd=tree.root, env=env,
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        raise BenchError(f"the pipeline of {tree.label} ({tree.root}) had not booked {events} events after"
                         f" {timeout_s:.0f}s: {_tail(stderr)}") from exc
    finally:
        shutil.rmtree(round_dir, ignore_errors=True)
    if done.returncode != 0:
        raise BenchError(f"the pipeline of {tree.label} ({tree.root}) failed (exit {done.returncode}): {_tail(done.stderr)}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(answer["bench"]).is_relative_to(tree.root):
        raise BenchError(f"the round of {tree.label} ran {answer['bench']}, not the bench of {tree.root}")
    if (tree.root / "native").is_dir() and (answer["native"] is None or (
            tree.native is not None and not Path(answer["native"]).is_relative_to(tree.native))):
        raise BenchError(f"the round of {tree.label} ran native extension {answer['native']}, not its own"
                         f" ({tree.native or 'the one installed by make setup'})")
    return float(answer["seconds"])


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """Best-of-rounds seconds of raw consumption and of both pipelines over the same records."""

    current: Tree
    previous: Tree
    events: int
    rounds: int
    raw_seconds: float
    current_seconds: float
    previous_seconds: float

    @property
    def results(self) -> tuple[BenchResult, BenchResult, BenchResult]:
        """Raw consumption, the revision's pipeline and the working tree's, as ratios to the first."""
        return (
            BenchResult(name="raw-consume", events=self.events, seconds=self.raw_seconds, baseline_seconds=self.raw_seconds),
            BenchResult(name=f"pipeline@{self.previous.label}", events=self.events, seconds=self.previous_seconds,
                        baseline_seconds=self.raw_seconds),
            BenchResult(name=f"pipeline@{self.current.label}", events=self.events, seconds=self.current_seconds,
                        baseline_seconds=self.raw_seconds),
        )

    @property
    def speedup(self) -> float:
        """The working tree's throughput over the revision's: below 0.95 is a slowdown beyond 5%."""
        return self.previous_seconds / self.current_seconds

    def lines(self) -> tuple[str, ...]:
        return (*(result.line() for result in self.results),
                f"bench current/{self.previous.label} = {self.speedup:.2f}")


def run_compare(settings: Settings, *, against: str, events: int, rounds: int, report: Path | None,
                echo: Callable[[str], None] = print) -> Comparison:
    """Runs the working tree's pipeline and revision ``against``'s side by side on one filled topic.

    Each round reads the topic raw (the ratios' baseline), then through the working tree's
    pipeline and the revision's, which goes first alternating by round; the best of
    ``rounds`` counts for each. The revision is exported and built before any broker
    starts, so a bad one fails at once.
    """
    workdir = Path(tempfile.mkdtemp(prefix="learnright-bench-"))
    try:
        previous = export_revision(against, workdir / "revision", cache_dir=settings.broker.cache_dir, echo=echo)
        current = working_tree()
        with filled_topics(settings, workdir, events, echo) as settings:
            raw, mine, theirs = [], [], []
            for n in range(rounds):
                raw.append(raw_consume(settings, events))
                turns = [(current, mine), (previous, theirs)]
                for tree, times in turns if n % 2 == 0 else reversed(turns):
                    times.append(child_consume(tree, settings, events, workdir))
                echo(f"round {n + 1}: raw {events / raw[-1]:,.0f}/s, pipeline@{current.label} {events / mine[-1]:,.0f}/s,"
                     f" pipeline@{previous.label} {events / theirs[-1]:,.0f}/s")
        comparison = Comparison(current=current, previous=previous, events=events, rounds=rounds,
                                raw_seconds=min(raw), current_seconds=min(mine), previous_seconds=min(theirs))
        for line in comparison.lines():
            echo(line)
        if report is not None:
            write_compare_report(report, comparison)
        return comparison
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


_COMPARE_INTRO = f"""{COMPARE_HEADING}

Written by `make bench-compare REV=<rev>` (`learnright bench --against REV`), one row per run.
In one run the working tree's pipeline (`pipeline@HEAD`: the HEAD commit named below with any
uncommitted changes) and the pipeline of commit REV (exported with `git archive`, its native
extension built apart) read the same records of the same topics in turn, each round in a child
process of its own; only the seconds `pipeline_consume` reports count, best of the rounds. Ratios
are throughput over raw-consume's in the same run; `current/REV` is the working tree's throughput
over REV's. Issue 11's bar: `current/REV` >= 0.95.

| written (UTC) | REV | REV commit | HEAD commit | events | rounds | raw-consume | pipeline@REV ratio | pipeline@HEAD ratio | current/REV | machine |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
"""


def write_compare_report(path: Path, comparison: Comparison) -> None:
    """Adds ``comparison`` as a row to the report's section on revisions, creating the section if needed.

    The rest of the report (``make bench``'s figures) is left as it is; the section stays last.
    """
    uname = platform.uname()
    raw, previous, current = comparison.results
    label = comparison.previous.label.replace("|", r"\|")
    row = (f"| {datetime.now(timezone.utc):%Y-%m-%d %H:%M} | {label}"
           f" | {comparison.previous.commit[:12]} | {comparison.current.commit[:12]} | {comparison.events}"
           f" | {comparison.rounds} | {raw.rate:,.0f}/s | {previous.ratio:.2f} ({previous.rate:,.0f}/s)"
           f" | {current.ratio:.2f} ({current.rate:,.0f}/s) | {comparison.speedup:.2f}"
           f" | {uname.system} {uname.machine}, {os.cpu_count()} cores, Python {platform.python_version()} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else ""
    at = f"\n{text}".find(f"\n{COMPARE_HEADING}\n")
    if at < 0:
        text = f"{text.rstrip()}\n\n{_COMPARE_INTRO}" if text.strip() else _COMPARE_INTRO
        at = f"\n{text}".find(f"\n{COMPARE_HEADING}\n")
    before, section = text[:at], text[at:]
    lines = section.rstrip("\n").split("\n")
    last_row = max((n for n, line in enumerate(lines) if line.startswith("|")), default=len(lines) - 1)
    lines.insert(last_row + 1, row)  # the row joins the table, ahead of any notes below it
    path.write_text(before + "\n".join(lines) + "\n")
