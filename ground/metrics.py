"""Prometheus metrics of the ledger service, on a registry of its own (one per service).

Names follow Prometheus conventions: ``learnright_`` prefix, base units (seconds),
``_total`` for counters. What the process counted since it started (events, batches,
HTTP requests) is kept in counters and histograms; what the ledger holds (accrued
amounts, the last close) is read from the ledger at scrape time, so it is right after
a restart too.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Callable, Iterator, Mapping, Protocol, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from ground.topics import TOPIC_OF

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_TYPE_OF_TOPIC = {suffix: record for record, suffix in TOPIC_OF.items()}


class AccruedAmount(Protocol):
    @property
    def currency(self) -> str: ...

    @property
    def amount(self) -> Decimal: ...


class LedgerState(Protocol):
    """What the ledger holds, read at scrape time (``ledger.core.records.LedgerTotals`` is one)."""

    @property
    def accrued(self) -> Sequence[AccruedAmount]: ...

    @property
    def last_closed_at(self) -> datetime | None: ...


def event_type_of(topic: str) -> str:
    """The record name a usage topic carries (``TrainingUsage`` for ``<prefix>.usage.training``)."""
    for suffix, record in _TYPE_OF_TOPIC.items():
        if topic.endswith("." + suffix):
            return record
    return "unknown"


class Metrics:
    """Every metric the service exports; pass it where something is measured."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_ingested = Counter(
            "learnright_events_ingested", "Usage events booked into the ledger, by event type.", ["type"], registry=r)
        self.events_quarantined = Counter(
            "learnright_events_quarantined", "Records quarantined (and dead-lettered), by event type and reason.",
            ["type", "reason"], registry=r)
        self.events_duplicate = Counter(
            "learnright_events_duplicate", "Redelivered events already in the ledger, skipped.", registry=r)
        self.accruals_booked = Counter(
            "learnright_accruals_booked", "Accrual entries appended to the hash chain by ingestion.", registry=r)
        self.batch_size = Histogram(
            "learnright_batch_records", "Records per ingested batch.",
            buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 50000), registry=r)
        self.commit_seconds = Histogram(
            "learnright_ledger_commit_duration_seconds", "Time to append one batch and its offsets (one transaction).",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.consumer_lag = Gauge(
            "learnright_consumer_lag_records", "Records in a partition not yet booked (high watermark - next offset booked).",
            ["topic", "partition"], registry=r)
        self.consumer_stalled = Gauge(
            "learnright_consumer_stalled", "1 while the consumer cannot make progress (the same records refused"
            " several times in a row, see docs/ingestion.md), else 0.", registry=r)
        self.batch_failures = Counter(
            "learnright_consumer_batch_failures", "Batches that failed to apply; each is read again from the"
            " ledger's offsets.", registry=r)
        self.last_commit = Gauge(
            "learnright_consumer_last_commit_timestamp_seconds", "When the consumer last committed a batch to the"
            " ledger (Unix time; 0 before the first).", registry=r)
        self.checkpoints = Counter(
            "learnright_ledger_checkpoints", "Checkpoints of the ledger file while the consumer runs, by trigger:"
            " caught_up (the writer's, once the consumer had caught up, without merging row groups), merge (a"
            " caught_up one that merged what consumer.checkpoint_wal_bytes of log left unmerged), idle (the"
            " writer's merge when a poll found nothing waiting), commit (DuckDB's, inside the commit that took"
            " the WAL past consumer.checkpoint_wal_bytes), memory (the writer's, when DuckDB held more than half"
            " of consumer.ledger_memory_limit after a batch), close (the consumer's last).",
            ["trigger"], registry=r)
        self.checkpoint_seconds = Histogram(
            "learnright_ledger_checkpoint_duration_seconds", "Time a checkpoint the consumer ran took (the next batch"
            " waits for it); those inside a commit are part of learnright_ledger_commit_duration_seconds.",
            ["trigger"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.ledger_wal_bytes = Gauge(
            "learnright_ledger_wal_bytes", "Bytes in the ledger file's write-ahead log after the consumer's last"
            " batch or checkpoint (what a restart replays).", registry=r)
        self.close_seconds = Histogram(
            "learnright_close_duration_seconds", "Time a monthly close took (statements included).",
            buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600), registry=r)
        self.snapshots_published = Counter(
            "learnright_snapshots_published", "Read-only snapshots published for auditors.", registry=r)
        self.http_requests = Counter(
            "learnright_http_requests", "HTTP requests, by route template, method and status.",
            ["route", "method", "status"], registry=r)
        self.http_seconds = Histogram(
            "learnright_http_request_duration_seconds", "HTTP request latency, by route template.",
            ["route"], registry=r)

    # -- ingestion ---------------------------------------------------------------------

    def observe_batch(self, batch, records: int, commit_seconds: float) -> None:
        """Counts one applied batch (a :class:`ledger.core.records.IngestBatch`): the consumer moves."""
        self.last_commit.set_to_current_time()
        self.consumer_stalled.set(0)
        for event_type, count in batch.events_by_type().items():
            self.events_ingested.labels(type=event_type).inc(count)
        for row in batch.quarantined:
            self.events_quarantined.labels(type=event_type_of(row.topic), reason=row.error_class).inc()
        if batch.duplicates:
            self.events_duplicate.inc(batch.duplicates)
        self.accruals_booked.inc(batch.accrual_count)
        self.batch_size.observe(records)
        self.commit_seconds.observe(commit_seconds)

    def observe_checkpoint(self, trigger: str, seconds: float | None) -> None:
        """Counts one checkpoint of the ledger; ``seconds`` when it ran on its own (None: inside a commit)."""
        self.checkpoints.labels(trigger=trigger).inc()
        if seconds is not None:
            self.checkpoint_seconds.labels(trigger=trigger).observe(seconds)

    def observe_failure(self, *, stalled: bool) -> None:
        """Counts a batch that failed to apply; ``stalled`` says whether the consumer now is."""
        self.batch_failures.inc()
        self.consumer_stalled.set(1 if stalled else 0)

    def observe_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Sets the lag gauge of each (topic, partition) given; the consumer works the lags out."""
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic=topic, partition=str(partition)).set(max(lag, 0))

    # -- close ---------------------------------------------------------------------------

    @contextmanager
    def time_close(self, latest_close: Callable[[], object]) -> Iterator[None]:
        """Times a close attempt; observed only when it closed a month (``latest_close`` changed)."""
        before = latest_close()
        started = time.perf_counter()
        yield
        if latest_close() != before:
            self.close_seconds.observe(time.perf_counter() - started)

    # -- ledger state, read at scrape time ----------------------------------------------

    def watch_ledger(self, read: Callable[[], LedgerState]) -> None:
        """Exports the accrued amounts and the last close time of what ``read()`` returns at each scrape."""
        self.registry.register(_LedgerCollector(read))

    def watch_outbox(self, pending: Callable[[], int]) -> None:
        """Exports ``learnright_outbox_pending_statements``: what ``pending()`` returns at each scrape.

        ``pending()`` counts the signed statements whose StatementClosed event is not yet
        acknowledged by the broker (the close's outbox); it stays above 0 while the broker
        refuses them, which the ``LearnrightOutboxPendingTooLong`` alert watches.
        """
        self.registry.register(_CallbackGauge(
            "learnright_outbox_pending_statements",
            "Signed statements whose StatementClosed event the broker has not acknowledged yet.",
            lambda: float(pending())))

    def watch_signing_key(self, path: Path) -> None:
        """Exports ``learnright_signing_key_present``: 1 while ``path`` is a readable file, checked at each scrape.

        A missing key is created on first use, which would sign the next close with a key
        holders do not know (a silent rotation): where the key is mounted from a secret
        store, 0 means the mount is missing.
        """
        self.registry.register(_CallbackGauge(
            "learnright_signing_key_present",
            "1 while the statement signing key (LEARNRIGHT_SIGNING_KEY) is a readable file, else 0.",
            lambda: 1.0 if os.path.isfile(path) and os.access(path, os.R_OK) else 0.0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _CallbackGauge:
    """One unlabelled gauge whose value is read at scrape time."""

    def __init__(self, name: str, documentation: str, value: Callable[[], float]):
        self.name = name
        self.documentation = documentation
        self.value = value

    def describe(self):
        return []

    def collect(self):
        gauge = GaugeMetricFamily(self.name, self.documentation)
        gauge.add_metric([], self.value())
        yield gauge


class _LedgerCollector:
    def __init__(self, read: Callable[[], LedgerState]):
        self.read = read

    def describe(self):
        return []

    def collect(self):
        state = self.read()
        amounts = GaugeMetricFamily(
            "learnright_accrued_amount", "Sum of every ledger entry's amount, by currency (exact value as a float).",
            labels=["currency"])
        for accrued in state.accrued:
            amounts.add_metric([accrued.currency], float(accrued.amount))
        yield amounts
        closed = GaugeMetricFamily(
            "learnright_last_successful_close_timestamp_seconds", "When the latest monthly close was recorded (Unix time).")
        if state.last_closed_at is not None:
            closed.add_metric([], state.last_closed_at.timestamp())
        yield closed
