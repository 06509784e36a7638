"""The ledger service: follows the usage topics and closes each month on schedule.

APScheduler (3.x, UTC) fires at 00:00 UTC on day ``grace_days`` of every month and asks
for the previous month to be closed. The close itself runs in the consuming thread
between two batches, so ingestion and closing never write the ledger at once. On start
every month that was due while the service was down is closed.

After each close, and on start, the StatementClosed events of the outbox are published
(:mod:`consumers.publisher`); when Kafka does not take them they stay pending and the
service tries again every ``PUBLISH_RETRY_S`` seconds.
"""

from __future__ import annotations

import logging
import queue
import time
from datetime import datetime, timezone
from typing import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from consumers.publisher import publish_statements
from consumers.service import LedgerConsumer
from ground.errors import BrokerError
from ground.settings import Settings
from ledger.services.close import close_period
from ledger.core.periods import period_of, period_start, previous_period
from ledger.core.signing import Signer, load_or_create_key
from ledger.core.port import LedgerStore

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


def close_due(ledger: LedgerStore, now: datetime, grace_days: int, signer: Signer) -> tuple[str, ...]:
    """Closes every due month not closed yet (and the months before it with usage); returns those closed."""
    period = due_period(now, grace_days)
    latest = ledger.latest_close()
    if latest is not None and latest.period >= period:
        return ()
    if latest is None and not ledger.open_periods_through(period, None):
        return ()
    outcome = close_period(ledger, period, now=now, signer=signer)
    log.info("closed %s (%d statements)", ", ".join(outcome.closed_periods), len(outcome.statement_ids))
    return outcome.closed_periods


class LedgerService:
    """`learnright serve`: consume continuously, close months when due."""

    def __init__(self, settings: Settings, ledger: LedgerStore, *, clock: Callable[[], datetime] | None = None):
        self.settings = settings
        self.ledger = ledger
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.consumer = LedgerConsumer(settings, ledger)
        self.signer = load_or_create_key(settings.signing_key)
        self.requests: queue.SimpleQueue[datetime] = queue.SimpleQueue()
        self.publish_retry_at: float | None = None
        self.scheduler = BackgroundScheduler(timezone=timezone.utc)
        self.scheduler.add_job(
            lambda: self.requests.put(self.clock()), close_trigger(settings.grace_days),
            id="monthly-close", coalesce=True, max_instances=1, misfire_grace_time=None,
        )

    def close_and_publish(self, now: datetime) -> tuple[str, ...]:
        """Closes what is due at ``now``, then publishes pending StatementClosed events."""
        self.consumer.drain()
        with self.consumer.metrics.time_close(self.ledger.latest_close):
            closed = close_due(self.ledger, now, self.settings.grace_days, self.signer)
        self.publish()
        return closed

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
        self.close_and_publish(self.clock())
        self.scheduler.start()
        try:
            while not self.consumer.stop_event.is_set():
                self.consumer.run_once(wait=False)
                while not self.requests.empty():
                    self.close_and_publish(self.requests.get())
                if self.publish_retry_at is not None and time.monotonic() >= self.publish_retry_at:
                    self.publish()
            self.consumer.drain()  # a batch that failed while stopping still fails the run
        finally:
            self.scheduler.shutdown(wait=False)
            self.consumer.close()

    def stop(self) -> None:
        self.consumer.stop_event.set()
