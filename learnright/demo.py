"""`make demo`: the main job end to end on a real broker, in a few seconds to a minute.

Starts the project's broker (unless KAFKA_BOOTSTRAP_SERVERS names one), applies the
example licenses, emits a month of synthetic usage from two platforms, consumes it
into a fresh ledger, closes the month, writes the statements (signed JSON, CSV, PDF) and
the per-platform usage reports, publishes StatementClosed events and prints a summary.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from learnright import broker
from consumers.kafka_admin import ensure_topics
from learnright.broker import PROJECT_ROOT
from ground.settings import Settings
from ledger.services.close import CloseOutcome, write_period_files
from ledger.core.periods import period_of, previous_period
from ledger.core.signing import load_or_create_key
from ledger.core.money import at_minor_unit
from ledger.core.licenses import LicenseBook
from ledger.core.records import StatementRow
from ledger.storage.store import Ledger

if TYPE_CHECKING:
    from consumers.service import IngestStats

PLATFORMS = ("orbit", "nimbus")
LICENSES = PROJECT_ROOT / "examples" / "licenses.toml"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Closed:
    """What the close step leaves for the summary."""

    outcome: CloseOutcome
    files: tuple[Path, ...]
    published: int
    rows: tuple[StatementRow, ...]
    sources: int


def run_demo(settings: Settings, *, workdir: Path, events: int, echo: Callable[[str], None] = print) -> dict:
    """Runs the demo in ``workdir`` (its ledger is made anew); returns the summary figures."""
    started = time.monotonic()
    now = datetime.now(timezone.utc)
    period = previous_period(period_of(now))
    db = workdir / "ledger.duckdb"
    out = workdir / "statements" / period
    for stale in (db, db.with_suffix(".duckdb.wal"), out):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
    with _kafka(settings, workdir / "kafka", echo) as bootstrap:
        settings = _demo_settings(settings, db, bootstrap)
        with Ledger.open(db) as ledger:
            book = _apply_licenses(ledger, echo)
            _emit_month(settings, book, period, events, echo)
            stats = _consume(settings, ledger, echo)
            closed = _close(settings, ledger, period, now, out)
            rebuilt = _rebuild(settings, ledger, workdir, echo)
    return _summarize(settings, period, db, out, stats, closed, rebuilt, time.monotonic() - started, echo)


@contextmanager
def _kafka(settings: Settings, state_dir: Path, echo: Callable[[str], None]) -> Iterator[str]:
    """The configured bootstrap servers, or those of a broker of the project's own, stopped afterwards."""
    if settings.kafka.bootstrap_servers:
        yield settings.kafka.bootstrap_servers
        return
    echo(f"starting Kafka {settings.broker.kafka_version} (state in {state_dir}) ...")
    state = broker.up(state_dir, version=settings.broker.kafka_version, cache_dir=settings.broker.cache_dir,
                      heap=settings.broker.heap, timeout_s=settings.broker.start_timeout_s)
    try:
        yield state.bootstrap_servers
    finally:
        broker.down(state_dir)


def _demo_settings(settings: Settings, db: Path, bootstrap: str) -> Settings:
    """The settings for this run: its own ledger file and topics of its own (created here)."""
    topics_prefix = f"demo-{uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(update={
        "db": db,
        "kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap, "topic_prefix": topics_prefix}),
    })
    topics = settings.kafka.topics
    ensure_topics(bootstrap, (*topics.usage, topics.dead_letter), settings.kafka.partitions,
                  replication_factor=settings.kafka.replication_factor,
                  min_insync_replicas=settings.kafka.min_insync_replicas)
    return settings


def _apply_licenses(ledger: Ledger, echo: Callable[[str], None]) -> LicenseBook:
    book, _ = ledger.apply_licenses(LICENSES.read_text(), str(LICENSES.relative_to(PROJECT_ROOT)))
    echo(f"applied {LICENSES.name}: {len(book.versions)} license versions, {len(book.sources)} sources")
    return book


def _emit_month(settings: Settings, book: LicenseBook, period: str, events: int, echo: Callable[[str], None]) -> None:
    """Emits a month of synthetic usage of the licensed sources, from every demo platform."""
    from producers.emitter import UsageEmitter
    from producers.synthetic import month_usage

    training_units = {
        v.source_id: v.training.unit for v in book.versions if v.training is not None
    }
    inference_sources = sorted({v.source_id for v in book.versions if v.inference is not None})
    usage = list(month_usage(period=period, platforms=PLATFORMS, training_units=training_units,
                             inference_sources=inference_sources, events=events))
    with UsageEmitter(settings.kafka.bootstrap_servers, topics=settings.kafka.topics) as emitter:
        emitter.send_events(usage)
        emitter.flush()
    echo(f"emitted {len(usage)} usage events for {period} from platforms {', '.join(PLATFORMS)}")


def _consume(settings: Settings, ledger: Ledger, echo: Callable[[str], None]) -> IngestStats:
    from consumers.service import LedgerConsumer

    consumer = LedgerConsumer(settings, ledger)
    try:
        stats = consumer.run(until_idle=True)
    finally:
        consumer.close()
    echo(f"consumed {stats.records} records: {stats.accepted} accepted, {stats.accruals} accruals,"
         f" {stats.duplicates} duplicates, {stats.quarantined} quarantined")
    return stats


def _close(settings: Settings, ledger: Ledger, period: str, now: datetime, out: Path) -> _Closed:
    """Closes the month, writes its files to ``out`` and publishes its StatementClosed events."""
    from consumers.publisher import publish_statements

    from consumers.replay import retry_and_close

    _, outcome = retry_and_close(ledger, period, now=now, signer=load_or_create_key(settings.signing_key),
                                 memory_limit=settings.close.memory_limit, workers=settings.close.workers)
    files = write_period_files(ledger, period, out)
    events_published = publish_statements(ledger, settings).published
    rows = ledger.statement_rows(period=period)
    sources = ledger.scalar("SELECT count(DISTINCT source_id) FROM accruals WHERE period = ?", [period])
    return _Closed(outcome=outcome, files=tuple(files), published=len(events_published), rows=tuple(rows),
                   sources=sources)


def _rebuild(settings: Settings, ledger: Ledger, workdir: Path, echo: Callable[[str], None]) -> str:
    """Rebuilds the demo ledger from its topics into a scratch file and compares (``learnright rebuild``)."""
    from consumers.rebuild import rebuild

    scratch_path = workdir / "rebuild.duckdb"
    for stale in (scratch_path, scratch_path.with_suffix(".duckdb.wal"), scratch_path.with_name("rebuild.duckdb.anchor")):
        stale.unlink(missing_ok=True)
    with Ledger.open(scratch_path) as scratch:
        report = rebuild(settings, ledger, scratch, load_or_create_key(settings.signing_key))
    verdicts = "; ".join(" ".join(check.lines()) for check in report.closes)
    echo(f"rebuilt the ledger from {report.records} Kafka records: {verdicts}")
    return "diverges" if report.diverged or report.incomplete else "match"


def _summarize(settings: Settings, period: str, db: Path, out: Path, stats: IngestStats, closed: _Closed,
               rebuilt: str, elapsed_s: float, echo: Callable[[str], None]) -> dict:
    """Prints the summary; returns its figures."""
    rows, files = closed.rows, closed.files
    payable: dict[str, Decimal] = defaultdict(Decimal)
    accrued: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        payable[row.currency] += row.payable
        accrued[row.currency] += row.accrued
    holders = sorted({row.holder_id for row in rows})
    echo("")
    echo(f"Learnright demo: period {period} closed in {elapsed_s:.1f}s")
    echo(f"  ledger      {db}")
    echo(f"  events      {stats.accepted} accepted, {stats.quarantined} quarantined")
    echo(f"  sources     {closed.sources}")
    echo(f"  holders     {len(holders)} ({', '.join(holders)})")
    pdfs = sorted(p.name for p in files if p.suffix == ".pdf")
    reports = sorted(p.name for p in files if p.name.endswith(".dsr.tsv"))
    echo(f"  statements  {len(closed.outcome.statement_ids)} in {out} ({len(files)} files: signed JSON, CSV, PDF;"
         f" {len(reports)} platform usage reports)")
    echo(f"  PDFs        {', '.join(pdfs)}")
    echo(f"  published   {closed.published} StatementClosed events on {settings.kafka.topics.statements}")
    echo(f"  rebuild     {rebuilt}: the same topics replayed into a scratch ledger give the same close root"
         " and statements")
    if pdfs:
        echo(f"  check       learnright statements verify {out / pdfs[0].replace('.pdf', '.json')}")
    for currency in sorted(payable):
        echo(f"  royalties   {currency} {at_minor_unit(payable[currency], currency):f} payable (accrued {accrued[currency].normalize():f})")
    return {"period": period, "events": stats.accepted, "payable": dict(payable), "statements": len(rows), "out": out,
            "published": closed.published, "rebuild": rebuilt}
