"""The ledger service: follows the usage topics and closes each month on schedule.

APScheduler (3.x, UTC) fires at 00:00 UTC on day ``grace_days`` of every month and asks
for the previous month to be closed; on start the service asks once more, so every
month that was due while it was down is closed too.

A close first catches up: it takes the log-end offsets of the assigned usage partitions
at the instant it is asked for, keeps consuming until the consumer's positions reach
them and every polled batch is in the ledger, then retries the quarantined records whose
cause may be gone (:func:`consumers.replay.retry_before_close`) and closes. Usage that
was in Kafka when the close was due is therefore in the month's statement, never a
prior-period line of the next one; the close's cut-off (what the ledger had booked)
covers all of it. The close runs in the consuming thread between two batches, so
ingestion and closing never write the ledger at once.

After each close, and on start, the StatementClosed events of the outbox are published
(:mod:`consumers.publisher`); when Kafka does not take them they stay pending and the
service tries again every ``PUBLISH_RETRY_S`` seconds.

Administration while the service runs (:mod:`learnright.admin`) queues its writes here
(:meth:`LedgerService.submit`): each job runs on the consuming thread between two
batches, after every polled batch is in the ledger, in the order submitted, and hands
its result or error back through a :class:`~concurrent.futures.Future`. A job asked to
catch up first waits, as a close does, until what Kafka held when it came up is booked.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from consumers.publisher import publish_statements
from consumers.replay import retry_before_close
from consumers.service import LedgerConsumer, LogEnd
from ground.errors import BrokerError, TransientError
from ground.settings import Settings
from ledger.core.usage import DEFAULT_LIMITS, UsageLimits
from ledger.services.close import close_period
from ledger.core.periods import period_of, period_start, previous_period
from ledger.core.signing import Signer, load_or_create_key
from ledger.core.port import LedgerStore
from schemas import Catalog
from schemas.registry import SchemaRegistry

log = logging.getLogger(__name__)

PUBLISH_RETRY_S = 30.0


def close_trigger(grace_days: int) -> CronTrigger:
    """Fires at 00:00 UTC on day ``grace_days`` of every month."""
    return CronTrigger(day=grace_days, hour=0, minute=0, timezone=timezone.utc)


def due_period(now: datetime, grace_days: int) -> str:
    """The latest month whose close time (day ``grace_days`` of the next month) has passed."""
    current = period_of(now)
    close_of_previous = period_start(current).replace(day=grace_days)
    last = previous_period(current)
    return last if now >= close_of_previous else previous_period(last)


def closed_through(ledger: LedgerStore, now: datetime, grace_days: int) -> bool:
    """Whether the month due at ``now`` is closed already (nothing to catch up for)."""
    latest = ledger.latest_close()
    return latest is not None and latest.period >= due_period(now, grace_days)


def close_due(ledger: LedgerStore, now: datetime, grace_days: int, signer: Signer, *,
              catalog: Catalog | None = None, registry: SchemaRegistry | None = None,
              limits: UsageLimits = DEFAULT_LIMITS, memory_limit: str | None = None,
              workers: int | None = None) -> tuple[str, ...]:
    """Closes every due month not closed yet (and the months before it with usage); returns those closed.

    ``memory_limit`` and ``workers`` are :func:`ledger.services.close.close_period`'s
    (``close.memory_limit``, ``close.workers``).

    When a month is due, the quarantined records of
    :data:`consumers.replay.RETRIED_BEFORE_CLOSE` are retried first; when none is, nothing is.
    """
    if closed_through(ledger, now, grace_days):
        return ()
    period = due_period(now, grace_days)
    retried = retry_before_close(ledger, catalog, registry, limits)
    if retried.booked:
        log.info("retried %d quarantined records before closing: %d booked", retried.attempted, retried.booked)
    if ledger.latest_close() is None and not ledger.open_periods_through(period, None):
        return ()
    outcome = close_period(ledger, period, now=now, signer=signer, memory_limit=memory_limit, workers=workers)
    log.info("closed %s (%d statements)", ", ".join(outcome.closed_periods), len(outcome.statement_ids))
    return outcome.closed_periods


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingClose:
    """A close asked for and waiting for the consumer to book what Kafka held at ``at``."""

    at: datetime
    """When it was asked for: what decides the month due and the close's time."""
    assign_by: float
    """Monotonic time by which the consumer must have partitions to measure the log's end."""
    log_end: LogEnd | None = None
    """The log-end offsets at the first moment partitions were assigned; None until then."""


class ServiceStoppingError(TransientError):
    """The service stopped (or is stopping) before it ran a queued job; run it again once it is back."""

    code = "service_stopping"


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """Work on the ledger queued for the service's writer (:meth:`LedgerService.submit`)."""

    run: Callable[[LedgerStore], object]
    """Called with the service's ledger on the consuming thread; what it returns is the future's result."""
    future: Future = field(default_factory=Future)
    catch_up: bool = False
    """Book what Kafka holds when the job's turn comes before running it, as a close does."""
    assign_by: float = 0.0
    """Monotonic time by which the consumer must have partitions to measure the log's end (catch-up only)."""
    log_end: LogEnd | None = None
    """What the job waits to be booked; None until measured (catch-up only)."""


class LedgerService:
    """`learnright serve`: consume continuously, close months when due."""

    def __init__(self, settings: Settings, ledger: LedgerStore, *, clock: Callable[[], datetime] | None = None):
        self.settings = settings
        self.ledger = ledger
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.consumer = LedgerConsumer(settings, ledger)
        self.signer = load_or_create_key(settings.signing_key)
        self.requests: queue.SimpleQueue[datetime] = queue.SimpleQueue()
        self.pending: PendingClose | None = None
        self.publish_retry_at: float | None = None
        self.jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.job: Job | None = None  # the job at the head, waiting for its catch-up
        self._jobs_lock = threading.Lock()
        self._jobs_closed = False
        self.scheduler = BackgroundScheduler(timezone=timezone.utc)
        self.scheduler.add_job(
            lambda: self.requests.put(self.clock()), close_trigger(settings.grace_days),
            id="monthly-close", coalesce=True, max_instances=1, misfire_grace_time=None,
        )

    def close_and_publish(self, now: datetime) -> tuple[str, ...]:
        """Closes what is due at ``now`` with what the ledger has booked, then publishes pending events.

        The caller has caught up first (:meth:`step_close`).
        """
        self.consumer.drain()
        consumer = self.consumer
        with consumer.metrics.time_close(self.ledger.latest_close):
            closed = close_due(self.ledger, now, self.settings.grace_days, self.signer, catalog=consumer.catalog,
                               registry=consumer.registry, limits=consumer.limits,
                               memory_limit=self.settings.close.memory_limit, workers=self.settings.close.workers)
        self.publish()
        return closed

    def step_close(self) -> tuple[str, ...]:
        """Moves the close asked for on: measures the log's end, or closes once it is booked.

        Called between batches. A close asked for while another waits stays queued; one
        for a month already closed is done at once.

        While no partition is assigned (a restarted service waits out its killed
        predecessor's session, say) the close waits, with a warning every
        ``consumer.idle_timeout_s``: closing without the log's end would leave its backlog
        to the next month as prior-period adjustments.
        """
        if self.pending is None:
            if self.requests.empty():
                return ()
            at = self.requests.get()
            # On this thread's read cursor: the writer thread may be appending a batch on the ledger's own.
            if closed_through(self.consumer.books, at, self.settings.grace_days):
                return ()
            self.pending = PendingClose(at=at, assign_by=time.monotonic() + self.settings.consumer.idle_timeout_s)
        pending = self.pending
        if pending.log_end is None:
            log_end = self.consumer.log_end()
            if log_end is None:
                if time.monotonic() > pending.assign_by:
                    log.warning("the close waits: no partitions of %s are assigned yet, so the log's end to book"
                                " up to is unknown", ", ".join(self.consumer.topics.usage))
                    self.pending = replace(pending, assign_by=time.monotonic() + self.settings.consumer.idle_timeout_s)
                return ()
            self.pending = pending = replace(pending, log_end=log_end)
            log.info("closing when booked up to the log's end: %s", log_end.describe())
        if not self.consumer.reached(pending.log_end):
            return ()
        self.consumer.drain()  # booked, not only polled; a failed batch is rewound and read again
        if not self.consumer.reached(pending.log_end):
            return ()
        self.pending = None
        return self.close_and_publish(pending.at)

    def submit(self, run: Callable[[LedgerStore], object], *, catch_up: bool = False) -> Future:
        """Queues ``run(ledger)`` for the service's writer; the future holds its result or its error.

        Safe from any thread. Jobs run one at a time in submission order (a job that
        catches up holds those behind it until it has run), each between two batches with
        nothing else writing the ledger, so a job's writes never interleave with a batch.

        Raises:
            ServiceStoppingError: the service has stopped taking jobs; the future of a job
                queued but not run when it stops fails with this error too.
        """
        job = Job(run=run, catch_up=catch_up)
        with self._jobs_lock:
            if self._jobs_closed:
                raise ServiceStoppingError("the ledger service is stopping and takes no more commands")
            self.jobs.put(job)
        return job.future

    def step_jobs(self) -> int:
        """Runs the queued jobs that can run now; returns how many ran. Called between batches.

        A catch-up job measures the log's end when its turn comes and waits (returning 0)
        until the consumer has booked up to it, as :meth:`step_close` does for a close.
        """
        ran = 0
        while True:
            if self.job is None:
                if self.jobs.empty():
                    return ran
                job = self.jobs.get()
                if not job.future.set_running_or_notify_cancel():
                    continue  # the asker gave up before its turn
                self.job = replace(job, assign_by=time.monotonic() + self.settings.consumer.idle_timeout_s)
            job = self.job
            if job.catch_up:
                if job.log_end is None:
                    log_end = self.consumer.log_end()
                    if log_end is None:
                        if time.monotonic() > job.assign_by:
                            log.warning("a queued command waits: no partitions of %s are assigned yet, so the log's"
                                        " end to book up to is unknown", ", ".join(self.consumer.topics.usage))
                            self.job = replace(job, assign_by=time.monotonic() + self.settings.consumer.idle_timeout_s)
                        return ran
                    self.job = job = replace(job, log_end=log_end)
                if not self.consumer.reached(job.log_end):
                    return ran
            self.consumer.drain()  # booked, not only polled; and the writer thread lets go of the ledger
            if job.catch_up and not self.consumer.reached(job.log_end):
                return ran
            self.job = None
            try:
                result = job.run(self.ledger)
            except Exception as exc:  # noqa: BLE001 - handed to the asker through its future
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)
            ran += 1

    def _fail_queued_jobs(self) -> None:
        """Stops taking jobs and fails those not run: nobody waits for a job that will never run."""
        with self._jobs_lock:
            self._jobs_closed = True
        left = [self.job] if self.job is not None else []
        self.job = None
        while not self.jobs.empty():
            left.append(self.jobs.get())
        for job in left:
            if not job.future.done() and (job.future.running() or job.future.set_running_or_notify_cancel()):
                job.future.set_exception(ServiceStoppingError("the ledger service stopped before it ran this command"))

    def publish(self) -> None:
        """Publishes the outbox; on a broker failure logs it and retries after ``PUBLISH_RETRY_S``."""
        self.consumer.drain()  # the ledger connection is the writer thread's while it applies a batch
        try:
            outcome = publish_statements(self.ledger, self.settings)
        except BrokerError as exc:
            log.warning("StatementClosed events stay pending, retrying in %.0fs: %s", PUBLISH_RETRY_S, exc)
            self.publish_retry_at = time.monotonic() + PUBLISH_RETRY_S
            return
        self.publish_retry_at = None
        if outcome.published:
            log.info("published %d StatementClosed events to %s", len(outcome.published), outcome.topic)

    def run(self) -> None:
        """Consumes until stopped; closes on start (after catching up) and on each trigger."""
        self.publish()
        self.requests.put(self.clock())
        self.scheduler.start()
        try:
            while not self.consumer.stop_event.is_set():
                self.consumer.run_once(wait=False)
                self.step_close()
                self.step_jobs()
                if self.publish_retry_at is not None and time.monotonic() >= self.publish_retry_at:
                    self.publish()
            self.consumer.drain()  # a batch that failed while stopping still fails the run
        finally:
            self._fail_queued_jobs()
            self.scheduler.shutdown(wait=False)
            self.consumer.close()

    def stop(self) -> None:
        self.consumer.stop_event.set()
