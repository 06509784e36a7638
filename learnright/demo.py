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
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Callable

from learnright import broker
from consumers.kafka_admin import ensure_topics
from learnright.broker import PROJECT_ROOT
from ground.settings import Settings
from ledger.services.close import close_period, previous_period, write_period_files
from ledger.core.signing import load_or_create_key
from ledger.core.money import at_minor_unit
from ledger.storage.store import Ledger
from ledger.core.usage import period_of

PLATFORMS = ("orbit", "nimbus")
LICENSES = PROJECT_ROOT / "examples" / "licenses.toml"


def run_demo(settings: Settings, *, workdir: Path, events: int, echo: Callable[[str], None] = print) -> dict:
    """Runs the demo in ``workdir`` (its ledger is made anew); returns the summary figures."""
    from consumers.publisher import publish_statements
    from consumers.service import LedgerConsumer
    from producers.emitter import UsageEmitter
    from producers.synthetic import month_usage

    started = time.monotonic()
    now = datetime.now(timezone.utc)
    period = previous_period(period_of(now))
    db = workdir / "ledger.duckdb"
    out = workdir / "statements" / period
    for stale in (db, db.with_suffix(".duckdb.wal"), out):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
    own_broker = not settings.kafka.bootstrap_servers
    state_dir = workdir / "kafka"
    if own_broker:
        echo(f"starting Kafka {settings.broker.kafka_version} (state in {state_dir}) ...")
        state = broker.up(state_dir, version=settings.broker.kafka_version, cache_dir=settings.broker.cache_dir,
                          heap=settings.broker.heap, timeout_s=settings.broker.start_timeout_s)
        bootstrap = state.bootstrap_servers
    else:
        bootstrap = settings.kafka.bootstrap_servers
    try:
        topics_prefix = f"demo-{uuid.uuid4().hex[:8]}"
        settings = settings.model_copy(update={
            "db": db,
            "kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap, "topic_prefix": topics_prefix}),
        })
        topics = settings.kafka.topics
        ensure_topics(bootstrap, (*topics.usage, topics.dead_letter), settings.kafka.partitions)
        with Ledger.open(db) as ledger:
            book, _ = ledger.apply_licenses(LICENSES.read_text(), str(LICENSES.relative_to(PROJECT_ROOT)))
            echo(f"applied {LICENSES.name}: {len(book.versions)} license versions, {len(book.sources)} sources")
            training_units = {
                v.source_id: v.training.unit for v in book.versions if v.training is not None
            }
            inference_sources = sorted({v.source_id for v in book.versions if v.inference is not None})
            usage = list(month_usage(period=period, platforms=PLATFORMS, training_units=training_units,
                                     inference_sources=inference_sources, events=events))
            with UsageEmitter(bootstrap, topics=topics) as emitter:
                for event in usage:
                    emitter.send_event(event)
                emitter.flush()
            echo(f"emitted {len(usage)} usage events for {period} from platforms {', '.join(PLATFORMS)}")
            consumer = LedgerConsumer(settings, ledger)
            try:
                stats = consumer.run(until_idle=True)
            finally:
                consumer.close()
            echo(f"consumed {stats.records} records: {stats.accepted} accepted, {stats.accruals} accruals,"
                 f" {stats.duplicates} duplicates, {stats.quarantined} quarantined")
            outcome = close_period(ledger, period, now=now, signer=load_or_create_key(settings.signing_key))
            files = write_period_files(ledger, period, out)
            events_published = publish_statements(ledger, settings).published
            rows = ledger.statement_rows(period=period)
            sources = ledger.query("SELECT count(DISTINCT source_id) FROM accruals WHERE period = ?", [period])[0][0]
    finally:
        if own_broker:
            broker.down(state_dir)
    payable: dict[str, Decimal] = defaultdict(Decimal)
    accrued: dict[str, Decimal] = defaultdict(Decimal)
    for _sid, _p, _holder, currency, acc, _cin, pay, _cout, _h in rows:
        payable[currency] += pay
        accrued[currency] += acc
    holders = sorted({row[2] for row in rows})
    echo("")
    echo(f"Learnright demo: period {period} closed in {time.monotonic() - started:.1f}s")
    echo(f"  ledger      {db}")
    echo(f"  events      {stats.accepted} accepted, {stats.quarantined} quarantined")
    echo(f"  sources     {sources}")
    echo(f"  holders     {len(holders)} ({', '.join(holders)})")
    pdfs = sorted(p.name for p in files if p.suffix == ".pdf")
    reports = sorted(p.name for p in files if p.name.endswith(".dsr.tsv"))
    echo(f"  statements  {len(outcome.statement_ids)} in {out} ({len(files)} files: signed JSON, CSV, PDF;"
         f" {len(reports)} platform usage reports)")
    echo(f"  PDFs        {', '.join(pdfs)}")
    echo(f"  published   {len(events_published)} StatementClosed events on {settings.kafka.topics.statements}")
    if pdfs:
        echo(f"  check       learnright statements verify {out / pdfs[0].replace('.pdf', '.json')}")
    for currency in sorted(payable):
        echo(f"  royalties   {currency} {at_minor_unit(payable[currency], currency):f} payable (accrued {accrued[currency].normalize():f})")
    return {"period": period, "events": stats.accepted, "payable": dict(payable), "statements": len(rows), "out": out,
            "published": len(events_published)}
