"""When the consumer's ledger checkpoints (consumers.checkpoints), shown by the file, never by a clock.

A checkpoint empties the ledger's write-ahead log (DuckDB removes the ``.wal`` file), so the
log's size tells whether one ran; DuckDB's own threshold is read back from ``duckdb_settings()``.
"""

from __future__ import annotations

import multiprocessing
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from consumers.service import LedgerConsumer
from ground.settings import Settings
from ledger.storage.store import Ledger
from tests.consumers.helpers import emitter_for

pytestmark = pytest.mark.broker
APRIL = datetime(2026, 4, 1, tzinfo=timezone.utc)
GIB = 2**30


def emit(settings: Settings, count: int, first: int = 0) -> None:
    with emitter_for(settings) as emitter:
        for n in range(first, first + count):
            emitter.training(event_id=f"e{n}", model_id="m", run_id="r", source_id="src-novels", units=1000 + n,
                             unit="tokens", occurred_at=APRIL + timedelta(minutes=n))


def threshold(ledger: Ledger) -> str:
    return ledger.scalar("SELECT value FROM duckdb_settings() WHERE name = 'checkpoint_threshold'")


def checkpoints(consumer: LedgerConsumer, trigger: str) -> float:
    return consumer.metrics.registry.get_sample_value("learnright_ledger_checkpoints_total", {"trigger": trigger}) or 0


def test_the_consumer_keeps_its_commits_in_the_log_up_to_its_threshold_and_leaves_the_ledger_checkpointed(
        make_settings, license_book_text):
    settings = make_settings(checkpoint_wal_bytes=GIB, caught_up_checkpoint_wal_bytes=GIB, max_batch=50,
                             max_poll=50, native=False)
    emit(settings, 300)
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "test")
        ledger.checkpoint()
        assert threshold(ledger) == "16.0 MiB"  # DuckDB's default
        consumer = LedgerConsumer(settings, ledger)
        try:
            consumer.run(until_idle=True)
            assert threshold(ledger) == "1.0 GiB"
            assert consumer.stats.batches > 1
            # Every batch's commit is in the log and none checkpointed: the log is the only place they are.
            assert ledger.wal_bytes() > 0
            assert checkpoints(consumer, "commit") == checkpoints(consumer, "caught_up") == 0
        finally:
            consumer.close()
        assert ledger.wal_bytes() == 0  # the close checkpointed what was left
        assert checkpoints(consumer, "close") == 1
        assert threshold(ledger) == "16.0 MiB"  # and gave DuckDB its threshold back
        assert ledger.scalar("SELECT count(*) FROM usage_events") == 300


def test_a_caught_up_consumer_checkpoints_once_the_log_passes_its_caught_up_size(make_settings, license_book_text):
    settings = make_settings(checkpoint_wal_bytes=GIB, caught_up_checkpoint_wal_bytes=1)
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "test")
        consumer = LedgerConsumer(settings, ledger)
        try:
            emit(settings, 100)
            consumer.run(until_idle=True)  # everything Kafka holds is polled: caught up, with a log to checkpoint
            assert checkpoints(consumer, "caught_up") >= 1
            assert ledger.wal_bytes() == 0
            emit(settings, 100, first=100)
            consumer.run(until_idle=True)
            assert checkpoints(consumer, "caught_up") >= 2
            assert ledger.wal_bytes() == 0
            assert checkpoints(consumer, "commit") == 0
        finally:
            consumer.close()
        assert ledger.scalar("SELECT count(*) FROM usage_events") == 200


def test_a_small_threshold_checkpoints_inside_the_commits_while_behind(make_settings, license_book_text):
    settings = make_settings(checkpoint_wal_bytes=1, caught_up_checkpoint_wal_bytes=GIB, max_batch=50,
                             max_poll=50, native=False)
    emit(settings, 300)
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "test")
        consumer = LedgerConsumer(settings, ledger)
        try:
            consumer.run(until_idle=True)
            assert consumer.stats.batches > 1
            assert checkpoints(consumer, "commit") == consumer.stats.batches  # DuckDB's, in every commit
            assert ledger.wal_bytes() == 0
        finally:
            consumer.close()


def _book_and_die(settings_json: str) -> None:
    """Books everything with no checkpoint at all, then dies without closing the consumer or the ledger."""
    settings = Settings.model_validate_json(settings_json)
    ledger = Ledger.open(settings.db)
    consumer = LedgerConsumer(settings, ledger)
    consumer.run(until_idle=True)
    os._exit(0)


def test_a_crash_before_any_checkpoint_loses_nothing(make_settings, license_book_text):
    settings = make_settings(checkpoint_wal_bytes=GIB, caught_up_checkpoint_wal_bytes=GIB, max_batch=50,
                             max_poll=50, native=False)
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "test")
    emit(settings, 300)
    child = multiprocessing.get_context("fork").Process(target=_book_and_die, args=(settings.model_dump_json(),))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    wal = Path(str(settings.db) + ".wal")
    assert wal.stat().st_size > 0  # the booked batches are in the log alone
    with Ledger.open(settings.db) as ledger:  # the open replays the log
        assert ledger.scalar("SELECT count(*) FROM usage_events") == 300
        assert ledger.scalar("SELECT count(DISTINCT event_id) FROM usage_events") == 300
        assert ledger.stored_offsets() and sum(ledger.stored_offsets().values()) == 300


def test_a_queued_caught_up_checkpoint_is_not_queued_again_until_it_has_run(tmp_path):
    """The consumer asks after every poll; while one caught-up checkpoint waits for the writer,
    :meth:`Checkpoints.due` says no, so no second one takes a writer slot and checkpoints again."""
    from consumers.checkpoints import Checkpoints
    from ground.metrics import Metrics
    from ground.settings import ConsumerSettings

    with Ledger.open(tmp_path / "ledger.duckdb") as ledger:
        checkpoints = Checkpoints(ledger, Metrics(), ConsumerSettings(caught_up_checkpoint_wal_bytes=1))
        ledger.con.execute("CREATE TABLE t (n INTEGER)")
        ledger.con.execute("INSERT INTO t VALUES (1)")
        assert checkpoints.due()
        job = checkpoints.queue()
        assert not checkpoints.due()  # the log is still there, but its checkpoint is queued
        job()
        assert ledger.wal_bytes() == 0 and not checkpoints.due()
        ledger.con.execute("INSERT INTO t VALUES (2)")
        assert checkpoints.due()  # run: the next one may be queued


def _policy(tmp_path, **settings):
    from consumers.checkpoints import Checkpoints
    from ground.metrics import Metrics
    from ground.settings import ConsumerSettings

    ledger = Ledger.open(tmp_path / "ledger.duckdb")
    ledger.con.execute("CREATE TABLE t (n BIGINT, s VARCHAR)")
    metrics = Metrics()
    return ledger, metrics, Checkpoints(ledger, metrics, ConsumerSettings(**settings))


def _book(ledger: Ledger, step: int) -> None:
    """One batch's worth of rows: about 100 KB of log."""
    ledger.con.execute(f"INSERT INTO t SELECT i, repeat('x', 40) || i FROM range({step * 2000}, {step * 2000 + 2000}) r(i)")


def _row_groups(ledger: Ledger) -> int:
    return ledger.scalar("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('t')")


def _count(metrics, trigger: str) -> float:
    return metrics.registry.get_sample_value("learnright_ledger_checkpoints_total", {"trigger": trigger}) or 0


def test_caught_up_checkpoints_merge_nothing_until_a_merge_is_due_after_checkpoint_wal_bytes(tmp_path):
    """Short caught-up checkpoints leave their row groups unmerged (the merge is what made some of them
    several times as long); once they have written ``checkpoint_wal_bytes`` of log without a merge, the
    next one merges, so the small row groups never pile up without bound."""
    ledger, metrics, checkpoints = _policy(tmp_path, caught_up_checkpoint_wal_bytes=1, checkpoint_wal_bytes=2**20)
    with ledger:
        steps = 0
        while _count(metrics, "merge") == 0:
            _book(ledger, steps)
            steps += 1
            assert checkpoints.due()
            checkpoints.queue()()
            assert ledger.wal_bytes() == 0
            if _count(metrics, "merge") == 0:
                assert _row_groups(ledger) == steps  # one more each time: nothing merged
                assert checkpoints.unmerged > 0
            assert steps < 100, "no merging checkpoint came"
        assert steps > 2  # several short ones first: the bound is of log, not of checkpoints
        assert _count(metrics, "caught_up") == steps - 1
        assert _row_groups(ledger) < steps and checkpoints.unmerged == 0  # the merge rewrote them together
        assert ledger.scalar("SELECT count(*) FROM t") == 2000 * steps


def test_an_idle_consumer_merges_what_the_short_checkpoints_left_and_a_commit_checkpoint_counts_as_a_merge(tmp_path):
    ledger, metrics, checkpoints = _policy(tmp_path, caught_up_checkpoint_wal_bytes=1, checkpoint_wal_bytes=2**30)
    with ledger:
        assert not checkpoints.merge_due()  # nothing to merge
        for step in range(3):
            _book(ledger, step)
            checkpoints.queue()()
        assert _row_groups(ledger) == 3
        assert not checkpoints.merge_due()  # an empty log: a checkpoint now would merge nothing
        _book(ledger, 3)
        assert checkpoints.merge_due()
        job = checkpoints.queue("idle")
        assert not checkpoints.merge_due() and not checkpoints.due()  # queued once
        job()
        assert _count(metrics, "idle") == 1 and _row_groups(ledger) == 1 and not checkpoints.merge_due()

        _book(ledger, 4)
        checkpoints.queue()()
        assert checkpoints.unmerged > 0
        _book(ledger, 5)
        ledger.limit_wal(1)  # DuckDB checkpoints inside the next commit, with its vacuum
        _book(ledger, 6)
        checkpoints.after_batch()
        assert _count(metrics, "commit") == 1 and checkpoints.unmerged == 0
        assert ledger.scalar("SELECT count(*) FROM t") == 2000 * 7


def test_the_close_checkpoints_with_the_merge(tmp_path):
    ledger, metrics, checkpoints = _policy(tmp_path, caught_up_checkpoint_wal_bytes=1, checkpoint_wal_bytes=2**30)
    with ledger:
        for step in range(3):
            _book(ledger, step)
            checkpoints.queue()()
        _book(ledger, 3)
        checkpoints.close()
        assert _count(metrics, "close") == 1 and _row_groups(ledger) == 1 and ledger.wal_bytes() == 0


def test_the_consumers_checkpoint_runs_with_checkpoint_memory_limit_and_gives_the_limit_back(tmp_path, monkeypatch):
    """DuckDB invalidates the database when a checkpoint cannot allocate: the writer's checkpoints get
    ``checkpoint_memory_limit``, and the commits' limit is back after, also after a failed one."""
    ledger, metrics, checkpoints = _policy(tmp_path, checkpoint_memory_limit="200MB")
    with ledger:
        ledger.limit_memory("64MB")
        shown = lambda: ledger.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]  # noqa: E731
        commits_limit = shown()
        seen, original = [], ledger.checkpoint

        def checkpoint(*, vacuum=True):
            seen.append(shown())
            original(vacuum=vacuum)

        monkeypatch.setattr(ledger, "checkpoint", checkpoint)
        _book(ledger, 0)
        checkpoints.run("idle")
        assert seen == ["190.7 MiB"] and shown() == commits_limit  # 200MB as DuckDB writes it
        assert ledger.wal_bytes() == 0

        def failing(*, vacuum=True):
            raise RuntimeError("the checkpoint failed")

        monkeypatch.setattr(ledger, "checkpoint", failing)
        _book(ledger, 1)
        with pytest.raises(RuntimeError, match="the checkpoint failed"):
            checkpoints.run("idle")
        assert shown() == commits_limit


def test_a_batch_that_leaves_duckdb_holding_half_its_limit_is_checkpointed_at_once(tmp_path):
    """Rows committed and not checkpointed hold blocks DuckDB cannot evict: past half of
    ``ledger_memory_limit`` after a batch the writer checkpoints (``memory``), whether caught up or not."""
    ledger, metrics, checkpoints = _policy(tmp_path, ledger_memory_limit="64MB", checkpoint_wal_bytes=2**30)
    with ledger:
        _book(ledger, 0)
        from consumers.checkpoints import MEMORY_SHARE

        assert checkpoints.memory_bound == 64_000_000 * MEMORY_SHARE // 100  # of ledger_memory_limit, as DuckDB reads it
        checkpoints.after_batch()  # a batch of about 100 KB: far under half of 64MB
        assert ledger.wal_bytes() > 0 and _count(metrics, "memory") == 0
        checkpoints.memory_bound = ledger.memory_in_use() - 1  # as if the limit were that small
        _book(ledger, 1)
        checkpoints.after_batch()
        assert _count(metrics, "memory") == 1 and ledger.wal_bytes() == 0
        assert ledger.scalar("SELECT count(*) FROM t") == 4000


def test_a_batch_is_checkpointed_when_another_like_it_would_take_duckdb_past_the_bound(tmp_path):
    """A full batch's rows just under half the limit were carried into the next commit, which then
    held twice as much: the writer counts the next batch as the last one's log, in memory."""
    from consumers.checkpoints import MEMORY_PER_LOG_BYTE

    ledger, metrics, checkpoints = _policy(tmp_path, ledger_memory_limit="64MB", checkpoint_wal_bytes=2**30)
    with ledger:
        _book(ledger, 0)
        checkpoints.after_batch()
        logged_before = ledger.wal_bytes()
        _book(ledger, 1)
        logged = ledger.wal_bytes() - logged_before
        held = ledger.memory_in_use()
        assert logged > 0 and _count(metrics, "memory") == 0
        checkpoints.memory_bound = held + MEMORY_PER_LOG_BYTE * logged - 1  # this batch alone stays under it
        checkpoints.after_batch()
        assert _count(metrics, "memory") == 1 and ledger.wal_bytes() == 0
        _book(ledger, 2)
        checkpoints.memory_bound = 2**40  # a batch that leaves room for another: nothing more
        checkpoints.after_batch()
        assert _count(metrics, "memory") == 1 and ledger.wal_bytes() > 0
