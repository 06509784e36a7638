"""When the consumer's ledger checkpoints: rarely while the consumer is behind, early once it has caught up.

DuckDB writes each commit to its write-ahead log and, once the log passes its
``checkpoint_threshold`` (16 MiB by default), checkpoints inside the commit that crossed it:
it compresses every table's rows since the last checkpoint into the file and empties the log.
A full-speed batch writes more than 16 MiB, so with DuckDB's default nearly every commit
checkpointed, and each checkpoint does work beyond its own rows (its vacuum merges the small
row groups earlier checkpoints left, see below). Measured (docs/benchmarks.md),
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
    so each is kept short: small, and without DuckDB's vacuum (:meth:`Ledger.checkpoint`),
    which merges the small row groups earlier checkpoints left and made some of them several
    times as long as the others (docs/benchmarks.md, "Latency: what the p99 waited for");
  * the merge those leave is done by a checkpoint with the vacuum on, at a moment when no
    record waits for it: when a poll found none in ``flush_interval_ms`` (``idle``), or when DuckDB
    checkpoints inside a commit while the consumer is behind, or at the close; and, so that
    the small row groups never pile up without bound under traffic that never pauses, by the
    first caught-up checkpoint after ``consumer.checkpoint_wal_bytes`` of log were written
    without a merge (``merge``: a stall of seconds, 5.2 s of CPU in a measured run at 11,000
    events/s, about every 40 s under traffic that never pauses: the latency target is not met
    across one, docs/benchmarks.md);
  * when the consumer closes, once more for whatever is left (merging too), so the ledger it
    leaves has an empty log, as it did before.

DuckDB's vacuum only runs in a checkpoint that writes rows: one of an empty log merges nothing,
so the small row groups wait for the next checkpoint with rows to write and the vacuum on.

Guarantees:
  * The log never holds much more than ``checkpoint_wal_bytes`` and one batch: past it DuckDB
    checkpoints inside the commit that crossed it, whatever the consumer asks.
  * Rows written by checkpoints without a merge add up to at most about ``checkpoint_wal_bytes``
    of log before a checkpoint merges them; whether merged or not, the rows stored are the same.
  * Crash safety is DuckDB's and unchanged: every commit is in the log before it returns, and
    the next open replays the log, however large.
  * The threshold is the ledger's in this process while the consumer runs; its close restores
    the one it replaced.
  * After any batch that leaves DuckDB holding more than :data:`MEMORY_SHARE` percent of
    ``consumer.ledger_memory_limit`` once another batch like it is added, the writer checkpoints
    at once (``memory``, without the merge, whose debt is counted in ``unmerged`` like a
    caught-up one's), so rows not yet checkpointed never fill the limit that the next commit needs.
  * These checkpoints run with the ledger's memory limit raised to
    ``consumer.checkpoint_memory_limit`` (then set back): a checkpoint that cannot allocate is
    fatal to the open database in DuckDB, and one that merges row groups needs more memory than
    the commits' ``ledger_memory_limit`` gives.
"""

from __future__ import annotations

import time
from typing import Callable

from ground.metrics import Metrics
from ground.settings import ConsumerSettings, memory_size_bytes
from ledger.core.port import LedgerStore, memory_limited

MEMORY_SHARE = 50
"""Percent of ``consumer.ledger_memory_limit`` that DuckDB may hold, counting another batch like the
last one, before the writer checkpoints (``memory``). Rows committed and not yet checkpointed
hold blocks DuckDB cannot evict; a consumer that follows its topics without ever being caught up
(so without caught-up checkpoints) filled a 64MB limit that way long before
``checkpoint_wal_bytes`` of log, after which every commit failed for memory (docs/benchmarks.md,
"A checkpoint that ran out of memory"). The next batch is counted because a full batch's events
(30-32 MB at the default ``max_batch``), just under half the limit, were otherwise carried into
the next commit, which then held twice that and peaked about 70 MB higher (docs/benchmarks.md)."""

MEMORY_PER_LOG_BYTE = 2
"""Bytes of DuckDB memory a batch's rows take, per byte of log it wrote, until a checkpoint: measured
46-49 MB for 23-26 MB of log, and 30-32 MB for 15.8 MB (docs/benchmarks.md). Counts the next batch
as the last one's log, not as DuckDB's memory growth, which blocks read back for queries and a
checkpoint's leftover working memory move by tens of MB whatever was booked."""


class Checkpoints:
    """The consumer's checkpoints of its ledger (see the module's docstring for when).

    :meth:`run` and :meth:`after_batch` run on the writer thread; :meth:`due` and
    :meth:`merge_due` may be asked from any thread (they read the log's size from the file system).
    """

    def __init__(self, ledger: LedgerStore, metrics: Metrics, settings: ConsumerSettings):
        self.ledger = ledger
        self.metrics = metrics
        self.caught_up_wal_bytes = settings.caught_up_checkpoint_wal_bytes
        self.merge_wal_bytes = settings.checkpoint_wal_bytes
        """Log written by checkpoints without a merge after which the next caught-up one merges."""
        self.memory_limit = settings.checkpoint_memory_limit
        """The ledger's memory limit while one of these checkpoints runs (the limit before restored after)."""
        self.memory_bound = memory_size_bytes(settings.ledger_memory_limit) * MEMORY_SHARE // 100
        """DuckDB memory in use after a batch past which the writer checkpoints at once (without the merge)."""
        self._wal_bytes_before = ledger.limit_wal(settings.checkpoint_wal_bytes)
        self._wal_after_last = ledger.wal_bytes()
        self.unmerged = 0
        """Bytes of log checkpointed without DuckDB's vacuum since the last checkpoint that ran it."""
        self.queued = False
        """A checkpoint is queued on the writer and has not run yet: no second one is queued
        behind it (it would take a writer slot from the next batch and checkpoint again)."""

    def due(self) -> bool:
        """Whether a caught-up checkpoint should be queued now: none is queued yet, and the log holds
        more than a caught-up consumer lets it (the writer may be adding to it now)."""
        return not self.queued and self.ledger.wal_bytes() > self.caught_up_wal_bytes

    def merge_due(self) -> bool:
        """Whether an idle consumer should queue a merging checkpoint: none is queued yet, checkpoints
        since the last merge left row groups to merge, and the log holds rows (DuckDB's vacuum only
        runs in a checkpoint that writes some: with an empty log it would merge nothing)."""
        return not self.queued and self.unmerged > 0 and self.ledger.wal_bytes() > 0

    def queue(self, trigger: str = "caught_up") -> Callable[[], None]:
        """Marks a checkpoint queued; returns the job that runs it on the writer.

        ``caught_up``: a short one, without a merge, unless ``merge_wal_bytes`` of log went
        without one (then it merges, counted as ``merge``); ``idle``: one that merges.
        """
        self.queued = True

        def job() -> None:
            try:
                if trigger == "idle":
                    self.run("idle")
                elif self.unmerged + self.ledger.wal_bytes() > self.merge_wal_bytes:
                    self.run("merge")
                else:
                    self.run("caught_up", vacuum=False)
            finally:
                self.queued = False

        return job

    def run(self, trigger: str = "caught_up", *, vacuum: bool = True) -> None:
        """Checkpoints the ledger now, merging small row groups with ``vacuum``, unless a checkpoint
        since it was asked for left nothing to do (an empty log: nothing to write, nor to merge)."""
        wal = self.ledger.wal_bytes()
        if wal == 0:
            return
        started = time.perf_counter()
        # With room: DuckDB invalidates the database when a checkpoint cannot allocate.
        with memory_limited(self.ledger, self.memory_limit):
            self.ledger.checkpoint(vacuum=vacuum)
        self.metrics.observe_checkpoint(trigger, time.perf_counter() - started)
        self.unmerged = 0 if vacuum else self.unmerged + wal
        self._note_wal()

    def after_batch(self) -> None:
        """Counts the checkpoint DuckDB ran inside the batch's commit, if it did (with its vacuum:
        nothing is left to merge after it).

        Every batch writes to the log (its offsets at least), so a log that is empty, or smaller
        than after the batch before, right after one was committed was emptied by its commit.
        Then checkpoints at once (``memory``) if another batch like this one would take DuckDB past
        ``memory_bound`` (:data:`MEMORY_SHARE`, :data:`MEMORY_PER_LOG_BYTE`).
        """
        wal = self.ledger.wal_bytes()
        emptied = wal == 0 or wal < self._wal_after_last
        logged = wal if emptied else wal - self._wal_after_last  # this batch's own log
        if emptied:
            self.metrics.observe_checkpoint("commit", None)
            self.unmerged = 0
        self._note_wal(wal)
        if wal and self.ledger.memory_in_use() + MEMORY_PER_LOG_BYTE * logged > self.memory_bound:
            self.run("memory", vacuum=False)

    def close(self) -> None:
        """Checkpoints and merges what is left and restores the ledger's threshold (after the writer has stopped)."""
        try:
            self.run("close")
        finally:
            if self._wal_bytes_before:
                self.ledger.limit_wal(self._wal_bytes_before)

    def _note_wal(self, wal: int | None = None) -> None:
        self._wal_after_last = self.ledger.wal_bytes() if wal is None else wal
        self.metrics.ledger_wal_bytes.set(self._wal_after_last)
