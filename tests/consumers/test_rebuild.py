"""`learnright rebuild` on the real broker: a match, a changed amount named, deleted records said so."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import duckdb
import pytest
from kafka import KafkaAdminClient, TopicPartition
from typer.testing import CliRunner

from consumers.batch import usage_limits
from consumers.replay import retry_and_close
from learnright.cli import app
from ledger.core.signing import load_or_create_key
from ledger.storage.store import Ledger
from tests.consumers.helpers import consume_all, emitter_for
from tests.consumers.test_replay import LATE_LICENSE

pytestmark = pytest.mark.broker
runner = CliRunner()
MARCH = datetime(2026, 3, 10, tzinfo=timezone.utc)
APRIL = datetime(2026, 4, 10, tzinfo=timezone.utc)


def emit(settings, first: int, count: int, when: datetime) -> None:
    with emitter_for(settings) as emitter:
        for i in range(first, first + count):
            emitter.training(event_id=f"t{i}", model_id="m", run_id="r", source_id="src-photos", units=2 + i % 3,
                             unit="items", occurred_at=when)
            emitter.inference(event_id=f"i{i}", model_id="m", request_id=f"q{i}",
                              attributions={"src-novels": "0.5", "src-photos": "0.25"}, occurred_at=when)


@pytest.fixture
def live(make_settings, license_book_text, tmp_path, monkeypatch):
    """A ledger as an operator builds it: consume, apply a license mid-stream, close March (its retry books
    the usage that waited for that license), then `learnright close` April, which catches up first."""
    settings = make_settings(max_batch=7).model_copy(update={"signing_key": tmp_path / "key.pem"})
    for key, value in {"LEARNRIGHT_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
                       "LEARNRIGHT_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
                       "LEARNRIGHT_KAFKA__PARTITIONS": "2",
                       "LEARNRIGHT_CONSUMER__GROUP_ID": settings.consumer.group_id,
                       "LEARNRIGHT_SIGNING_KEY": str(settings.signing_key)}.items():
        monkeypatch.setenv(key, value)
    emit(settings, 0, 20, MARCH)
    with emitter_for(settings) as emitter:
        emitter.training(event_id="s1", model_id="m", run_id="r", source_id="src-songs", units=30, unit="seconds",
                         occurred_at=MARCH)
        emitter.correct(event_id="c1", corrects_event_id="t30", action="REPLACE", replacement_units=4,
                        occurred_at=APRIL)
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        first = consume_all(settings, ledger)
        assert sorted(first.by_error) == ["PendingCorrectionError", "UnknownSourceError"]
        ledger.apply_licenses(LATE_LICENSE, "late.toml")
        emit(settings, 20, 15, MARCH)
        consume_all(settings, ledger)
        retried, _ = retry_and_close(ledger, "2026-03", now=datetime(2026, 4, 3, tzinfo=timezone.utc),
                                     signer=load_or_create_key(settings.signing_key),
                                     limits=usage_limits(settings.consumer))
        assert retried.booked == 1  # s1; c1 still waits for t30
    emit(settings, 35, 20, APRIL)
    emit(settings, 2, 1, MARCH)  # a redelivery: duplicates, nothing booked
    closed = runner.invoke(app, ["close", "--period", "2026-04", "--db", str(settings.db), "--no-publish"])
    assert closed.exit_code == 0, closed.output
    assert "caught up before closing: consumed 42 records: 40 accepted" in closed.output
    return settings


def rebuild(settings):
    return runner.invoke(app, ["rebuild", "--db", str(settings.db)])


def test_a_rebuild_matches_then_names_a_changed_amount_then_names_deleted_records(live):
    settings = live
    with Ledger.open(settings.db, read_only=True) as ledger:
        roots = {c.period: c.root for c in ledger.closes()}
        counts = {c.period: c.statements for c in ledger.closes()}
        assert ledger.query("SELECT count(*) FROM accruals WHERE event_id = 'c1'") == [(2,)]  # applied on arrival of t30
        target = ledger.query("SELECT stream, position, line, amount FROM accruals WHERE period = '2026-04'"
                              " AND kind = 'training' ORDER BY stream, position, line LIMIT 1")[0]
        cutoff = ledger.close_cutoff("2026-03")
    matched = rebuild(settings)
    assert matched.exit_code == 0, matched.output
    lines = matched.output.splitlines()
    assert f"2026-03: match (root {roots['2026-03'][:16]}, {counts['2026-03']} statements)" in lines
    assert f"2026-04: match (root {roots['2026-04'][:16]}, {counts['2026-04']} statements)" in lines
    assert re.search(r": 2 closes rebuilt from \d+ records .*: 0 diverge$", lines[-1]), lines[-1]

    stream, position, line, amount = target
    with duckdb.connect(str(settings.db)) as con:  # someone edits the live file after the close
        con.execute("UPDATE accruals SET amount = amount + 1 WHERE stream = ? AND position = ? AND line = ?",
                    [stream, position, line])
    diverged = rebuild(settings)
    assert diverged.exit_code == 1, diverged.output
    lines = diverged.output.splitlines()
    assert lines[lines.index("2026-04: DIVERGES") + 1] == (
        f"  entry {stream}@{position}#{line}: amount live {amount + 1}, rebuilt {amount};"
        " the close's root commits to the rebuilt entry: the live file was changed after the close")
    assert f"2026-03: match (root {roots['2026-03'][:16]}, {counts['2026-03']} statements)" in lines

    (topic, partition), _ = min(cutoff.items())
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        admin.delete_records({TopicPartition(topic, partition): 1})
    finally:
        admin.close()
    gone = rebuild(settings)
    assert gone.exit_code == 3, gone.output
    lines = gone.output.splitlines()
    assert lines[:3] == ["2026-03: cannot rebuild: records deleted",
                         f"  {topic}/{partition} offsets 0-0 (deleted; the earliest offset is 1)",
                         "2026-04: cannot rebuild: an earlier close's records were deleted"]


def test_a_rebuilds_scratch_closes_run_under_the_close_memory_limit(live, tmp_path):
    """Each scratch close is a close like the live one: DuckDB capped at ``close.memory_limit``
    while its statements are built and stored, the scratch ledger's own limit back after."""
    from consumers.rebuild import rebuild as rebuild_ledger

    settings = live.model_copy(update={"close": live.close.model_copy(update={"memory_limit": "24MB"})})
    key = load_or_create_key(settings.signing_key)
    during: list[str] = []
    with Ledger.open(settings.db, read_only=True) as ledger, Ledger.open(tmp_path / "scratch.duckdb") as scratch:
        scratch.limit_memory("1GB")

        class NotingSigner:
            """Signs with the live key, noting the scratch ledger's memory limit at each statement."""

            fingerprint = key.fingerprint

            def sign(self, message: bytes) -> str:
                during.append(scratch.scalar("SELECT memory_limit FROM pragma_database_size() LIMIT 1"))
                return key.sign(message)

        report = rebuild_ledger(settings, ledger, scratch, NotingSigner())
        after = scratch.scalar("SELECT memory_limit FROM pragma_database_size() LIMIT 1")
    assert [check.verdict for check in report.closes] == ["match", "match"]
    assert during and set(during) == {"22.8 MiB"}  # DuckDB's spelling of 24MB
    assert after == "953.6 MiB"  # 1GB, as before


def test_a_rebuild_with_close_workers_signs_in_them_and_still_matches(live, tmp_path):
    """``close.workers`` reaches each scratch close: its statements are built and signed in worker
    processes (the signer in this process is never asked) and are the same bytes (both closes match)."""
    from consumers.rebuild import rebuild as rebuild_ledger

    settings = live.model_copy(update={"close": live.close.model_copy(update={"workers": 2})})
    live_key = load_or_create_key(settings.signing_key)
    asked: list[bytes] = []

    class CountingSigner:
        """The live key, for the workers; counts what it is asked to sign in this process."""

        fingerprint = live_key.fingerprint

        @property
        def key(self):
            return live_key.key

        def sign(self, message: bytes) -> str:
            asked.append(message)
            return live_key.sign(message)

    with Ledger.open(settings.db, read_only=True) as ledger, Ledger.open(tmp_path / "scratch.duckdb") as scratch:
        report = rebuild_ledger(settings, ledger, scratch, CountingSigner())
    assert [check.verdict for check in report.closes] == ["match", "match"]
    assert asked == []
