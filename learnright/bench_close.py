"""`make bench`'s close: `close_period` against the bare SQL that computes the same statement lines.

Builds one ledger: a synthetic book (``holders`` rights holders, five sources each, three
priced in USD and two in EUR, so two statements per holder) and a month of training and
inference usage, priced by :func:`ledger.core.pricing.price` and booked by
``Ledger.append_batch`` with each entry's stream and position, as the consumer books a
Kafka record (no broker is needed: the close reads only the ledger). Then, in the same
run and in turn, each round copies that ledger and runs in a child process of its own
either the close (:func:`ledger.services.close.close_period`, what `learnright close` and
the scheduler call) or the bare query (the statement-lines ``GROUP BY`` of
:mod:`ledger.storage.closes`, fetched as Arrow). Only the call itself is timed; the peak
RSS is the close child's with the worker processes the close starts (the greater of its own
peak, ``VmHWM``, and the sum of its process tree's RSS sampled every 0.25 s), so the parent's ledger
and book do not count. (Not ``ru_maxrss``: Linux carries it across ``exec``, so a child forked by a
bench that has just priced 500,000 events in Python reported that process's 1.8 GB as its own.) The best round of each counts.

Prints ``bench close ratio=R rate=N/s statements=S seconds=T rss_mb=M``: ratio is the bare
query's seconds over the close's (issue 18 asks the close to take at most 1.5x the bare
query: ratio >= 0.67), rate is statements closed per second. Then ``bench close-floor ratio=R
rate=N/s seconds=T ...``: the least time any close could take here (the bare query, signing and
storing the statements, :mod:`learnright.bench_close_floor`), and the best ratio it allows.

Sizes: ``events`` None is the full size, 2,000 holders (4,000 statements) over 200,000
events; an int is a smoke run of that many events over ``events // 100`` holders (at least
2). ``LEARNRIGHT_BENCH_CLOSE_SIZE=large`` (``learnright bench --only close``) measures issue
18's large figure instead: 50,000 holders (100,000 statements) over 10,000,000 events;
``=HOLDERSxEVENTS`` (e.g. ``50000x1000000``: 100,000 statements over 1M events) any other size.
Up to :data:`REPLICATE_ABOVE` events (every size but the large ones) the month is priced event
by event in Python (the book of the large sizes is applied by one Arrow insert): 1M events take
about 10 minutes on 2 busy cores, so 10M would take well over an hour. Above it,
:func:`build_ledger` prices a base month of at most :data:`BASE_EVENTS` events the same way and
replicates it in SQL into the full count (see :func:`replicate_month` for what is copied, how,
and why the close does the same work on it).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ground.errors import ConfigError
from ground.settings import Settings
from learnright.bench_close_floor import FloorParts, floor_seconds
from learnright.bench_report import Figure, machine, process_cpu_seconds, write_section
from learnright.broker import PROJECT_ROOT

NAME = "close"
PERIOD = "2026-10"
NOW = datetime(2026, 11, 2, tzinfo=timezone.utc)
SOURCES_PER_HOLDER = 5
PLATFORMS = ("orbit", "nimbus")
MODELS = 2
TRAINING_SHARE = 0.8
CHUNK_EVENTS = 50_000
"""Events priced and appended per ledger batch while the bench books its month."""
SIZE_KEY = "LEARNRIGHT_BENCH_CLOSE_SIZE"
RATE_CYCLE = 97
"""A license's training rate is ``50 + n % RATE_CYCLE`` cents (``n``: its source's number): rates repeat
every RATE_CYCLE holders with the same source index, which is what :func:`replicate_month` relies on."""
REPLICATE_ABOVE = 1_000_000
"""Months of more events than this are booked as a priced base month replicated in SQL."""
BASE_EVENTS = 500_000
"""The most events of a replicated month's base, priced event by event (about 5 minutes)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Size:
    holders: int
    events: int

    @property
    def statements(self) -> int:
        return 2 * self.holders


FULL = Size(holders=2_000, events=200_000)
LARGE = Size(holders=50_000, events=10_000_000)


def size_for(events: int | None, environ: dict[str, str] | None = None) -> Size:
    """The size to measure: a smoke size for ``events``, else ``LEARNRIGHT_BENCH_CLOSE_SIZE`` or :data:`FULL`.

    Raises:
        ConfigError: ``LEARNRIGHT_BENCH_CLOSE_SIZE`` is neither ``large``, ``full`` nor ``HOLDERSxEVENTS``.
    """
    if events is not None:
        return Size(holders=max(2, min(FULL.holders, events // 100)), events=events)
    wanted = (environ if environ is not None else os.environ).get(SIZE_KEY, "").strip().lower()
    if wanted in ("", "full"):
        return FULL
    if wanted == "large":
        return LARGE
    holders, _, count = wanted.partition("x")
    if holders.isdigit() and count.isdigit() and int(holders) > 0 and int(count) > 0:
        return Size(holders=int(holders), events=int(count))
    raise ConfigError(f"{SIZE_KEY}={wanted!r} is not a size: give 'full', 'large' or HOLDERSxEVENTS,"
                      " e.g. 10000x1000000")


def synthetic_book(holders: int) -> str:
    """A license document of ``holders`` holders with five sources each: three licensed in USD, two in EUR."""
    parts = ["format = 1\n"]
    for h in range(holders):
        parts.append(f'[[holders]]\nid = "h-{h:06d}"\nname = "Holder {h}"\n')
    for h in range(holders):
        for s in range(SOURCES_PER_HOLDER):
            parts.append(f'[[sources]]\nid = "src-{h:06d}-{s}"\nholder = "h-{h:06d}"\ntitle = "Works {h}/{s}"\n')
    for h in range(holders):
        for s in range(SOURCES_PER_HOLDER):
            currency = "USD" if s % 2 == 0 else "EUR"
            rate = Decimal(50 + (h * SOURCES_PER_HOLDER + s) % RATE_CYCLE).scaleb(-2)
            parts.append(
                f'[[licenses]]\nid = "lic-{h:06d}-{s}"\nversion = 1\nsource = "src-{h:06d}-{s}"\n'
                f'effective_from = 2026-01-01T00:00:00Z\ncurrency = "{currency}"\n'
                f'training = {{ rate = {rate}, per = 1000000, unit = "tokens" }}\ninference = {{ rate = 0.002 }}\n')
    return "\n".join(parts)


def month_events(size: Size, seed: int = 18) -> Iterator:
    """``size.events`` usage events of :data:`PERIOD`, deterministic for ``seed``: mostly training, some answers."""
    from ledger.core.periods import period_end, period_start
    from ledger.core.usage import Attribution, InferenceUsage, TrainingUsage

    rng = random.Random(seed)
    start = period_start(PERIOD)
    span = int((period_end(PERIOD) - start).total_seconds() * 1_000_000)
    sources = size.holders * SOURCES_PER_HOLDER
    for n in range(size.events):
        platform = PLATFORMS[n % len(PLATFORMS)]
        model = f"{platform}-model-{rng.randrange(MODELS)}"
        occurred_at = start + timedelta(microseconds=rng.randrange(span))
        event_id = f"{platform}-{n:09d}"
        if rng.random() < TRAINING_SHARE:
            s = rng.randrange(sources)
            yield TrainingUsage(event_id=event_id, platform_id=platform, model_id=model, run_id=f"{model}-run",
                                source_id=f"src-{s // SOURCES_PER_HOLDER:06d}-{s % SOURCES_PER_HOLDER}",
                                units=rng.randint(10_000, 5_000_000), unit="tokens", occurred_at=occurred_at)
        else:
            drawn = sorted({rng.randrange(sources) for _ in range(rng.randint(1, 2))})
            yield InferenceUsage(
                event_id=event_id, platform_id=platform, model_id=model, request_id=f"req-{n}", occurred_at=occurred_at,
                attributions=tuple(Attribution(source_id=f"src-{s // SOURCES_PER_HOLDER:06d}-{s % SOURCES_PER_HOLDER}",
                                               weight=Decimal(rng.randint(1, 400)).scaleb(-3)) for s in drawn),
                output_units=rng.randint(20, 800))


def build_ledger(path: Path, size: Size, echo: Callable[[str], None] = print, *,
                 replicate_above: int = REPLICATE_ABOVE, base_events: int = BASE_EVENTS) -> None:
    """Books ``size`` into a new ledger at ``path``: the book, then the month in batches of :data:`CHUNK_EVENTS`.

    Each event is priced by the ledger's own pricing and appended with its stream and
    position (``bench-usage/<partition>``, its offset), as the consumer books a record. A month
    of more than ``replicate_above`` events is booked as a base month of at most ``base_events``
    events priced so, replicated by :func:`replicate_month` (when the count splits into even
    copies; else every event is priced).
    """
    started = time.perf_counter()
    plan = replication(size, replicate_above=replicate_above, base_events=base_events)
    if plan is None:
        book_month(path, size.holders, month_events(size))
        how = ""
    else:
        base, copies = plan
        book_month(path, size.holders, month_events(replace(size, events=base)))
        priced = time.perf_counter() - started
        replicate_month(path, holders=size.holders, base_events=base, copies=copies)
        how = f" ({base} priced in {priced:.1f}s, then {copies - 1} copies of them made in SQL)"
    with _ledger(path) as ledger:
        entries = ledger.scalar("SELECT count(*) FROM accruals")
    echo(f"booked {size.events} events ({entries} entries, {size.holders} holders) in"
         f" {time.perf_counter() - started:.1f}s{how}")


def _ledger(path: Path):
    from ledger.storage.store import Ledger

    return Ledger.open(path)


def book_month(path: Path, holders: int, events: Iterable) -> None:
    """Books the synthetic book of ``holders`` and ``events`` into a new ledger at ``path``, priced one by one.

    Events alternate between the two platforms' partitions, as :func:`month_events` makes them;
    each is booked at its partition's next offset."""
    from ledger.core.chain import stream_of
    from ledger.core.pricing import price
    from ledger.core.records import EventRow, IngestBatch

    topic = "bench-usage"
    with _ledger(path) as ledger:
        ledger.apply_licenses(synthetic_book(holders), "bench-book.toml")
        book = ledger.load_book()
        offsets = [0, 0]
        rows, accruals = [], []

        def flush() -> None:
            ledger.append_batch(IngestBatch(events=tuple(rows), accruals=tuple(accruals),
                                            offsets={(topic, p): offsets[p] for p in range(2)}))
            rows.clear()
            accruals.clear()

        for event in events:
            partition = PLATFORMS.index(event.platform_id)
            offset = offsets[partition]
            offsets[partition] += 1
            stream = stream_of(topic, partition)
            accruals.extend(replace(a, stream=stream, position=offset) for a in price(event, book))
            rows.append(EventRow(platform_id=event.platform_id, event_id=event.event_id,
                                 event_type=type(event).__name__, content_hash=f"bench-{event.event_id}",
                                 model_id=event.model_id, occurred_at=event.occurred_at, period=PERIOD,
                                 topic=topic, partition=partition, offset=offset))
            if len(rows) == CHUNK_EVENTS:
                flush()
        if rows:
            flush()


def replication(size: Size, *, replicate_above: int = REPLICATE_ABOVE, base_events: int = BASE_EVENTS
                ) -> tuple[int, int] | None:
    """(base events, copies) a month of ``size`` is booked as, or None to price every event.

    The fewest copies of an even base of at most ``base_events`` that make ``size.events``
    exactly (even: so that a copied event keeps its partition)."""
    if size.events <= replicate_above:
        return None
    for copies in range(max(2, -(-size.events // base_events)), size.events // 2 + 1):
        base, rest = divmod(size.events, copies)
        if rest == 0 and base % 2 == 0:
            return base, copies
    return None


def shifted_holder(holder: int, copy: int, holders: int) -> int:
    """The holder whose sources copy ``copy`` of a replicated month books ``holder``'s use against.

    A cyclic shift by ``copy`` among the holders of the same number modulo :data:`RATE_CYCLE`,
    whose sources have the same rates and currencies; copy 0 is the base itself."""
    residue, rank = holder % RATE_CYCLE, holder // RATE_CYCLE
    return residue + RATE_CYCLE * ((rank + copy) % ((holders - 1 - residue) // RATE_CYCLE + 1))


def shifted_source(source_id: str, copy: int, holders: int) -> str:
    """``src-HHHHHH-S`` of :func:`shifted_holder`'s holder, the same source index ``S``."""
    return f"src-{shifted_holder(int(source_id[4:10]), copy, holders):06d}{source_id[10:]}"


def replica(event, *, copy: int, base_events: int, holders: int):
    """The event copy ``copy`` of a replicated month books for base ``event``, as an event of its own.

    What :func:`replicate_month` writes for it is what pricing and booking this event give
    (the tests book these events one by one and compare every row)."""
    from ledger.core.usage import TrainingUsage

    number = int(event.event_id.rsplit("-", 1)[1]) + copy * base_events
    event_id = f"{event.platform_id}-{number:09d}"
    if isinstance(event, TrainingUsage):
        return replace(event, event_id=event_id, source_id=shifted_source(event.source_id, copy, holders))
    return replace(event, event_id=event_id, request_id=f"req-{number}", attributions=tuple(
        replace(a, source_id=shifted_source(a.source_id, copy, holders)) for a in event.attributions))


def _shifted(column: str, prefix: str) -> str:
    """SQL of :func:`shifted_holder` for an id ``<prefix>HHHHHH...`` in ``column`` (``$copy``, ``$holders``)."""
    number = f"CAST(substr({column}, {len(prefix) + 1}, 6) AS BIGINT)"
    residue = f"({number} % {RATE_CYCLE})"
    shifted = (f"{residue} + {RATE_CYCLE} * ((({number} // {RATE_CYCLE}) + $copy)"
               f" % (($holders - 1 - {residue}) // {RATE_CYCLE} + 1))")
    return f"'{prefix}' || lpad(CAST({shifted} AS VARCHAR), 6, '0') || substr({column}, {len(prefix) + 7})"


_COPIED_EVENT_ID = ("platform_id || '-' || lpad(CAST(CAST(split_part(event_id, '-', 2) AS BIGINT) + $copy * $base"
                    " AS VARCHAR), 9, '0')")

_REPLICA_SQL = (
    f"""INSERT INTO usage_events BY NAME
    SELECT * REPLACE ({_COPIED_EVENT_ID} AS event_id, 'bench-' || {_COPIED_EVENT_ID} AS content_hash,
                      kafka_offset + $copy * $half AS kafka_offset, batch_id + $copy * $batches AS batch_id)
    FROM usage_events WHERE batch_id <= $batches ORDER BY batch_id, kafka_offset, kafka_partition""",
    f"""INSERT INTO accruals BY NAME
    SELECT * REPLACE (entry_id + $copy * $entries AS entry_id, batch_id + $copy * $batches AS batch_id,
                      {_COPIED_EVENT_ID} AS event_id, {_shifted("source_id", "src-")} AS source_id,
                      {_shifted("holder_id", "h-")} AS holder_id, {_shifted("license_id", "lic-")} AS license_id,
                      position + $copy * $half AS position)
    FROM accruals WHERE entry_id <= $entries ORDER BY entry_id""",
    """INSERT INTO ingest_batches BY NAME
    SELECT * REPLACE (batch_id + $copy * $batches AS batch_id, now() AS committed_at)
    FROM ingest_batches WHERE batch_id <= $batches ORDER BY batch_id""",
    """INSERT INTO consumer_offsets BY NAME
    SELECT * REPLACE (batch_id + $copy * $batches AS batch_id, next_offset + $copy * $half AS next_offset)
    FROM consumer_offsets WHERE batch_id <= $batches ORDER BY batch_id, topic, kafka_partition""",
)


def replicate_month(path: Path, *, holders: int, base_events: int, copies: int) -> None:
    """Grows the priced base month of the ledger at ``path`` (``base_events`` events, nothing else booked)
    into ``copies`` times as many events, in SQL, as if the consumer had booked them.

    Copy ``c`` (1 .. copies-1) books every base event again, as :func:`replica` says: event
    number ``n + c * base_events`` (so a new event id, its content hash, and the same partition,
    at offset and stream position ``+ c * base_events / 2``: each stream's positions keep rising
    in stored order, which the close's fold checks), the same kind, model, time, units, weights
    and amounts, but against the sources of :func:`shifted_holder`'s holder, whose licenses
    have the same rate and currency (so every amount is what pricing gives). Its entries,
    batches and offsets rows follow the base's, numbered on (entry ids, batch ids). Nothing
    of the copies is computed by the close: every entry's digest is of its own fields.

    Why this measures the same close as pricing every event: the close's work is a function
    of the covered entries (the fold and the statement-lines ``GROUP BY`` scan every one)
    and of the statement lines they sum to (every line is read, rendered twice and signed
    over). A plain copy of the base would repeat the base's lines and so make as few lines
    as the base (about 0.8M at 1M events against about 2M at 10M, with 24 possible lines a
    statement). Shifting the holders instead gives each holder the use of ``copies``
    different base holders, drawn as independently as :func:`month_events` draws them, so the
    lines and their sums are distributed as in a month of ``copies`` times the events (up to
    ``holders / RATE_CYCLE`` copies; beyond, copies repeat lines).
    """
    from ledger.errors import LedgerFileError

    with _ledger(path) as ledger:
        con = ledger.con
        entries, first, batches, events = con.execute(
            "SELECT (SELECT count(*) FROM accruals), (SELECT min(entry_id) FROM accruals),"
            " (SELECT max(batch_id) FROM ingest_batches), (SELECT count(*) FROM usage_events)").fetchone()
        if base_events % 2 or events != base_events or first != 1 or batches is None:
            raise LedgerFileError(f"{path} is not a base month of {base_events} events (even) numbered from 1:"
                                  f" {events} events, entries from {first}")
        for copy in range(1, copies):
            values = {"copy": copy, "base": base_events, "half": base_events // 2, "entries": entries,
                      "batches": batches, "holders": holders}
            con.execute("BEGIN TRANSACTION")
            for sql in _REPLICA_SQL:
                con.execute(sql, {name: value for name, value in values.items() if f"${name}" in sql})
            con.execute("COMMIT")
        con.execute("CHECKPOINT")


_CHILD = """
import json, sys, threading, time
from pathlib import Path
from learnright.bench_close import own_peak_kb, tree_rss_kb
mode, path = sys.argv[1], Path(sys.argv[2])
tree = [0]
def sample():  # the close's worker processes are the child's children: their RSS counts too
    while True:
        tree[0] = max(tree[0], tree_rss_kb())
        time.sleep(0.25)
threading.Thread(target=sample, daemon=True).start()
cpu = sign = store = 0.0
if mode in ("close", "floor"):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from ground.settings import Settings
    from ledger.core.signing import signer_of
    from ledger.services.close import close_period
    from ledger.storage.store import Ledger
    from learnright.bench_close import NOW, PERIOD
    signer = signer_of(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    with Ledger.open(path) as ledger:
        settings = Settings()
        started = time.perf_counter()
        outcome = close_period(ledger, PERIOD, now=NOW, signer=signer, memory_limit=settings.close.memory_limit,
                               workers=settings.close.workers)
        seconds = time.perf_counter() - started
        if mode == "floor":
            from learnright.bench_close_floor import floor_parts
            parts = floor_parts(ledger, PERIOD, signer, path.with_name(path.name + ".stored"),
                                memory_limit=settings.close.memory_limit)
            sign, store = parts.sign_cpu_seconds, parts.store_cpu_seconds
    count, book = len(outcome.statement_ids), 0.0
elif mode == "book":
    from ledger.storage.store import Ledger
    with Ledger.open(path, read_only=True) as ledger:
        started = time.perf_counter()
        ledger.load_book(keep=False)
        seconds = book = time.perf_counter() - started
    count = 0
else:
    from learnright.bench_close import bare_statement_lines
    seconds, cpu, count = bare_statement_lines(path)
    book = 0.0
print(json.dumps({"seconds": seconds, "book": book, "count": count, "cpu": cpu, "sign": sign, "store": store,
                  "rss_kb": max(tree[0], own_peak_kb())}))
"""
"""One round in a child process: ``close``, ``book``, ``bare`` or ``floor`` over a copy of the bench ledger;
prints one JSON line (``cpu``: the bare query's CPU seconds; a ``floor`` round closes, then ``sign`` and
``store`` are the CPU of signing and of storing its statements, :mod:`learnright.bench_close_floor`).

A ``close`` round is what `learnright close` pays without a running service, with the settings
of the environment (``close.memory_limit``, 256MB by default): the close, which reads the license
book from the ledger and frees it when done, as the command does; its seconds and peak memory are
the command's. A ``book`` round times that read alone (its documents' stored parsed forms decoded
and checked, :mod:`ledger.core.license_forms`) in a child of its own: a read before the close in
the close's child would leave its memory there (about 150-700 MB more at 250,000 licenses). The
running service and its scheduler have the book made already
(:func:`ledger.storage.licenses.parsed_book`), so their close costs about ``seconds - book``."""


def own_peak_kb() -> int:
    """This process's peak RSS since it started its program (``VmHWM``), in KB: unlike ``ru_maxrss``,
    not the peak of the process it was forked from before ``exec``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def tree_rss_kb() -> int:
    """The RSS of this process and of every process under it, summed, in KB (pages shared between them
    counted in each: an upper bound)."""
    total, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
            for tasks in Path(f"/proc/{pid}/task").iterdir():
                todo.extend(int(child) for child in (tasks / "children").read_text().split())
        except (OSError, ValueError):  # ended meanwhile
            continue
    return total


def bare_statement_lines(path: Path) -> tuple[float, float, int]:
    """Seconds the statement-lines ``GROUP BY`` alone takes over the ledger at ``path``, fetched as Arrow, the
    CPU seconds of the process over it (DuckDB's threads included), and the number of statements its lines make.

    The same query and covered range a first close of :data:`PERIOD` runs (everything
    booked so far; no earlier close), on the same DuckDB file, without anything else.
    """
    from ledger.storage.closes import STATEMENT_LINES_SQL
    from ledger.storage.store import Ledger

    with Ledger.open(path, read_only=True) as ledger:
        watermark = ledger.last_entry_id
        started, cpu = time.perf_counter(), process_cpu_seconds()
        lines = ledger.con.execute(STATEMENT_LINES_SQL, [watermark, PERIOD, PERIOD, 0]).to_arrow_table()
        seconds, cpu = time.perf_counter() - started, process_cpu_seconds() - cpu
    keys = {(h, c) for h, c in zip(lines.column("holder_id").to_pylist(), lines.column("currency").to_pylist())}
    return seconds, cpu, len(keys)



@dataclass(frozen=True, slots=True, kw_only=True)
class Round:
    seconds: float
    book_seconds: float
    count: int
    rss_mb: float
    cpu_seconds: float = 0.0
    """The bare query's CPU seconds (a ``bare`` round)."""
    floor: FloorParts | None = None
    """What a ``floor`` round measured after its close: the CPU of signing and of storing the statements."""


def child_round(mode: str, ledger: Path, workdir: Path) -> Round:
    """Runs one ``mode`` round (``close``, ``book``, ``bare`` or ``floor``) in a child process on a fresh copy of ``ledger``."""
    from learnright.bench import BenchError, _tail

    copy = workdir / f"round-{mode}.duckdb"
    shutil.copyfile(ledger, copy)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(PROJECT_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]))
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, mode, str(copy)], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, check=False)
    finally:
        for leftover in (copy, copy.with_name(copy.name + ".wal"), copy.with_name(copy.name + ".stored"),
                     copy.with_name(copy.name + ".stored.wal"), copy.with_name(copy.name + ".stored.anchor")):
            leftover.unlink(missing_ok=True)
    if done.returncode != 0:
        raise BenchError(f"the {mode} round failed (exit {done.returncode}): {_tail(done.stderr)}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return Round(seconds=answer["seconds"], book_seconds=answer["book"], count=answer["count"],
                 rss_mb=answer["rss_kb"] / 1024, cpu_seconds=answer["cpu"],
                 floor=FloorParts(statements=answer["count"], sign_cpu_seconds=answer["sign"],
                                  store_cpu_seconds=answer["store"]) if mode == "floor" else None)


def run(settings: Settings, *, workdir: Path, rounds: int, events: int | None, report: Path | None,
        echo: Callable[[str], None] = print) -> tuple[Figure, ...]:
    """Measures the close against the bare statement-lines query, ``rounds`` times each in turn, then once
    what no close can avoid beside that query (:mod:`learnright.bench_close_floor`); two figures.

    ``settings`` is not used: the close reads only the ledger, which the bench books itself.

    Raises:
        BenchError: a round failed, or the close made another number of statements than the lines give.
    """
    from learnright.bench import BenchError

    size = size_for(events)
    ledger = workdir / "close-bench.duckdb"
    build_ledger(ledger, size, echo)
    closes, bares = [], []
    try:
        for n in range(rounds):
            bares.append(child_round("bare", ledger, workdir))
            book = child_round("book", ledger, workdir)
            closes.append(replace(child_round("close", ledger, workdir), book_seconds=book.seconds))
            echo(f"round {n + 1}: close {closes[-1].seconds:.2f}s (book {closes[-1].book_seconds:.2f}s,"
                 f" {closes[-1].count} statements,"
                 f" {closes[-1].rss_mb:.0f} MB), bare query {bares[-1].seconds:.2f}s")
        floor = child_round("floor", ledger, workdir)
    finally:
        ledger.unlink(missing_ok=True)
    if any(c.count != bares[0].count for c in closes):
        raise BenchError(f"the close made {closes[0].count} statements where the statement lines make {bares[0].count}")
    close = min(closes, key=lambda r: r.seconds)
    bare = min(r.seconds for r in bares)
    figure = Figure(name=NAME, ratio=bare / close.seconds, rate=close.count / close.seconds, extra=(
        ("statements", str(close.count)), ("seconds", f"{close.seconds:.2f}"),
        ("rss_mb", f"{max(r.rss_mb for r in closes):.0f}"), ("book_seconds", f"{close.book_seconds:.2f}")))
    best_bare = min(bares, key=lambda r: r.seconds)
    parts = floor.floor
    least = floor_seconds(bare_seconds=best_bare.seconds, bare_cpu_seconds=best_bare.cpu_seconds, parts=parts,
                          cores=os.cpu_count() or 1)
    floor_figure = Figure(name=f"{NAME}-floor", ratio=best_bare.seconds / least, rate=floor.count / least, extra=(
        ("seconds", f"{least:.2f}"), ("bare_cpu_seconds", f"{best_bare.cpu_seconds:.2f}"),
        ("sign_cpu_seconds", f"{parts.sign_cpu_seconds:.2f}"), ("store_cpu_seconds", f"{parts.store_cpu_seconds:.2f}")))
    echo(figure.line())
    echo(floor_figure.line())
    if report is not None:
        write_section(report, NAME, section(size, figure, closes, bares, rounds, floor_figure, parts, best_bare))
    return figure, floor_figure


def section(size: Size, figure: Figure, closes: list[Round], bares: list[Round], rounds: int, floor: Figure,
            parts: FloorParts, bare: Round) -> str:
    """The report's measured close section."""
    worst = max(closes, key=lambda r: r.seconds)
    best = min(closes, key=lambda r: r.seconds)
    return f"""## The close, measured

Written by `make bench` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC). One ledger: a book of
{size.holders:,} holders x {SOURCES_PER_HOLDER} sources in two currencies and {size.events:,} usage events of
{PERIOD}, booked through pricing and `append_batch`. Each of {rounds} rounds closes a fresh copy with
`close_period` and runs the bare statement-lines `GROUP BY` (fetched as Arrow) on another, each in a child
process of its own, and reads the license book alone in a third; only the call is timed, the RSS is the
close child's peak (its worker processes' RSS added).

| figure | statements | close (best) | of which book read | close (worst) | bare query (best-worst) | ratio bare/close | statements/s | peak RSS |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
| close | {best.count:,} | {best.seconds:.2f} s | {best.book_seconds:.2f} s | {worst.seconds:.2f} s | {min(r.seconds for r in bares):.2f}-{max(r.seconds for r in bares):.2f} s | {figure.ratio:.2f} | {figure.rate:,.0f} | {max(r.rss_mb for r in closes):.0f} MB |

"close" is what `learnright close` pays without a running service: the close, which reads the
license book from the ledger (the stored parsed forms of its documents decoded and checked, ledger
schema 13) and frees it when done. "of which book read" is that read timed alone in a child of its
own. The service and its scheduler keep the book made, so their close costs about the close
column less the book column. Load average when written: {os.getloadavg()[0]:.1f}
on {os.cpu_count()} cores (other work on the machine slows every figure; the ratio less so).

Targets (issue 18, 2 cores): 4,000 statements in <= 5 s; 100,000 statements over 10M events in <= 60 s
(`LEARNRIGHT_BENCH_CLOSE_SIZE=large learnright bench --only close`); at most 1.5x the bare query
(ratio >= 0.67); peak RSS <= 1 GB at 100,000 statements.

**What no close can avoid** (`close-floor`, once per run on another copy, closed untimed first): a
close computes the same lines (the bare query: {bare.seconds:.2f} s, {bare.cpu_seconds:.2f} s of CPU
on DuckDB's threads), hashes and signs each statement's canonical bytes ({parts.sign_cpu_seconds:.2f} s of
CPU for {parts.statements:,}) and stores the rows ({parts.store_cpu_seconds:.2f} s of CPU, one insert into a
new ledger file). On {os.cpu_count()} cores those alone take at least {dict(floor.extra)["seconds"]} s, so the best
ratio any close could reach here is **{floor.ratio:.2f}** (`bench close-floor ratio=`), before a line is
rendered, a total rounded or the book read.

Machine: {machine()}."""
