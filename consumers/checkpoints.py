"""When the consumer's ledger checkpoints: rarely while the consumer is behind, early once it has caught up.

DuckDB writes each commit to its write-ahead log and, once the log passes its
``checkpoint_threshold`` (16 MiB by default), checkpoints inside the commit that crossed it:
it compresses every table's rows since the last checkpoint into the file and empties the log.
A full-speed batch writes more than 16 MiB, so with DuckDB's default nearly every commit
checkpointed, and a checkpoint's work has a large part that does not shrink with the rows it
writes (each table's open row group is compressed again). Measured (docs/benchmarks.md),
checkpointing every few hundred MB of log instead cut ingest's CPU per event by about a third.

A checkpoint cannot run beside the writer on DuckDB 1.5.5 without stalling it: a commit on
one connection waits while another checkpoints (measured; docs/benchmarks.md, "Checkpoints
out of the commits"). So the consumer's checkpoints run on its one writer thread, between
two batches, at a moment chosen so that they cost the least:

  * while the consumer is behind (a backlog), only DuckDB's own, inside the commit that takes
    the log past ``consumer.checkpoint_wal_bytes``: few, large checkpoints, least CPU;
  * once the consumer has caught up with Kafka, as a job of its own on the writer thread as
    soon as the log holds more than ``consumer.caught_up_checkpoint_wal_bytes``: the next
    batch (events that arrived meanwhile) waits for it, as it would for one inside a commit,
    but each is short, and a consumer that keeps up leaves little in the log;
  * when the consumer closes, once more for whatever is left, so the ledger it leaves has an
    empty log, as it did before.

Guarantees:
  * The log never holds much more than ``checkpoint_wal_bytes`` and one batch: past it DuckDB
    checkpoints inside the commit that crossed it, whatever the consumer asks.
  * Crash safety is DuckDB's and unchanged: every commit is in the log before it returns, and
    the next open replays the log, however large.
  * The threshold is the ledger's in this process while the consumer runs; its close restores
    the one it replaced.
"""

from __future__ import annotations

import time
from typing import Callable

from ground.metrics import Metrics
from ground.settings import ConsumerSettings
from ledger.core.port import LedgerStore


class Checkpoints:
    """The consumer's checkpoints of its ledger (see the module's docstring for when).

    :meth:`run` and :meth:`after_batch` run on the writer thread; :meth:`due` may be asked
    from any thread (it reads the log's size from the file system).
    """

    def __init__(self, ledger: LedgerStore, metrics: Metrics, settings: ConsumerSettings):
        self.ledger = ledger
        self.metrics = metrics
        self.caught_up_wal_bytes = settings.caught_up_checkpoint_wal_bytes
        self._wal_bytes_before = ledger.limit_wal(settings.checkpoint_wal_bytes)
        self._wal_after_last = ledger.wal_bytes()
        self.queued = False
        """A caught-up checkpoint is queued on the writer and has not run yet: no second one is queued
        behind it (it would take a writer slot from the next batch and checkpoint again)."""

    def due(self) -> bool:
        """Whether a caught-up checkpoint should be queued now: none is queued yet, and the log holds
        more than a caught-up consumer lets it (the writer may be adding to it now)."""
        return not self.queued and self.ledger.wal_bytes() > self.caught_up_wal_bytes

    def queue(self) -> Callable[[], None]:
        """Marks a caught-up checkpoint queued; returns the job that runs it on the writer."""
        self.queued = True
        return self._run_queued

    def _run_queued(self) -> None:
        try:
            self.run()
        finally:
            self.queued = False

    def run(self, trigger: str = "caught_up") -> None:
        """Checkpoints the ledger now, unless a checkpoint since :meth:`due` said so left nothing to do."""
        if self.ledger.wal_bytes() == 0:
            return
        started = time.perf_counter()
        self.ledger.checkpoint()
        self.metrics.observe_checkpoint(trigger, time.perf_counter() - started)
        self._note_wal()

    def after_batch(self) -> None:
        """Counts the checkpoint DuckDB ran inside the batch's commit, if it did.

        Every batch writes to the log (its offsets at least), so a log that is empty, or smaller
        than after the batch before, right after one was committed was emptied by its commit.
        """
        wal = self.ledger.wal_bytes()
        if wal == 0 or wal < self._wal_after_last:
            self.metrics.observe_checkpoint("commit", None)
        self._note_wal(wal)

    def close(self) -> None:
        """Checkpoints what is left and restores the ledger's threshold (after the writer has stopped)."""
        try:
            self.run("close")
        finally:
            if self._wal_bytes_before:
                self.ledger.limit_wal(self._wal_bytes_before)

    def _note_wal(self, wal: int | None = None) -> None:
        self._wal_after_last = self.ledger.wal_bytes() if wal is None else wal
        self.metrics.ledger_wal_bytes.set(self._wal_after_last)
