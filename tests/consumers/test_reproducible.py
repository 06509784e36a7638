"""Byte-identical rebuilds: the same topics consumed into fresh ledgers give the same files.

One seeded log (:func:`tests.consumers.reproducible_helpers.workload`: two months of
training, inference, revenue, corrections before and after their originals, a duplicate,
a conflict, an undecodable record, usage quarantined until a late license) is produced
once. Each test consumes it into a fresh ledger of its own (own consumer group), applies
the late license, retries the quarantine and closes both months at the same instant with
the same key, then compares with a ledger consumed with the default settings: every
statement file (signed JSON, CSV, PDF) and usage report, every close root and the
``verify`` report, byte for byte. Nothing asserted depends on timing: only how the log
was batched, interleaved and interrupted differs, and none of it may show.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import threading
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer
from typer.testing import CliRunner

from consumers.kafka_admin import ensure_topics
from ground.settings import LakeLocation, LedgerSettings, Settings
from learnright.cli import app
from ledger.storage.connection import anchor_path
from ledger.storage.store import Ledger
from tests.consumers.helpers import consume_all
from tests.consumers.reproducible_helpers import (
    BOOK, LATE_BOOK, PARTITIONS, Outcome, close_months, differences, outcome_of, workload,
)

pytestmark = pytest.mark.broker
PLAN = workload(seed=2026, size=200)
KILLS = 12
KILL_SEED = 11


@pytest.fixture(scope="module")
def log_settings(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings on a topic prefix of this module's own, into which :data:`PLAN` is produced once."""
    base = Settings()
    settings = base.model_copy(update={
        "db": tmp_path_factory.mktemp("reproducible") / "unused.duckdb",
        "kafka": base.kafka.model_copy(update={"bootstrap_servers": kafka_bootstrap,
                                               "topic_prefix": f"t{uuid.uuid4().hex[:10]}",
                                               "partitions": PARTITIONS}),
    })
    topics = settings.kafka.topics
    ensure_topics(kafka_bootstrap, (*topics.usage, topics.dead_letter), PARTITIONS)
    # Small record batches (a few records each), so that a consumer on the native fast path,
    # which takes a fetch whole, can still be made to commit a few records at a time.
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True,
                             batch_size=512)
    try:
        for n, item in enumerate(PLAN):
            producer.send(topics.for_event(item.record_name), key=item.key, value=item.value, partition=item.partition)
            if n == 0:
                producer.flush()  # the correction is in the log before its original is even sent
        producer.flush()
    finally:
        producer.close()
    return settings


def own_ledger(log_settings: Settings, directory: Path, **consumer: object) -> Settings:
    """Settings of a fresh ledger in ``directory`` with a consumer group of its own."""
    return log_settings.model_copy(update={
        "db": directory / "ledger.duckdb",
        "consumer": log_settings.consumer.model_copy(update={"group_id": f"g{uuid.uuid4().hex[:8]}", **consumer}),
    })


def start_ledger(settings: Settings) -> None:
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(BOOK, "book.toml")


def consume(settings: Settings) -> None:
    with Ledger.open(settings.db) as ledger:
        consume_all(settings, ledger)


def finish(settings: Settings, *, replay_with_cli: bool = False) -> Outcome:
    """Applies the late license, optionally replays the quarantine by hand, closes both months; what shows."""
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(LATE_BOOK, "late.toml")
    if replay_with_cli:
        replayed = CliRunner().invoke(app, ["quarantine", "replay", "--db", str(settings.db)])
        assert replayed.exit_code == 0, replayed.output
        assert " 0 booked" not in replayed.output, replayed.output  # the late license's usage booked here
    with Ledger.open(settings.db) as ledger:
        close_months(ledger)
        return outcome_of(ledger, settings.db.parent / "files", PLAN)


def entries_booked(db: Path) -> int:
    """The ledger's last row number as the anchor file beside it says (0 before the first commit)."""
    anchor = anchor_path(db)
    return json.loads(anchor.read_text())["last_entry_id"] if anchor.exists() else 0


@pytest.fixture(scope="module")
def reference(log_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[Outcome, int]:
    """The ledger consumed with the default settings; also the entries its consumer booked."""
    settings = own_ledger(log_settings, tmp_path_factory.mktemp("reference"))
    start_ledger(settings)
    consume(settings)
    booked = entries_booked(settings.db)
    return finish(settings), booked


def test_the_reference_books_every_case_of_the_log(reference):
    outcome, _ = reference
    assert outcome.report.ok, outcome.report.problems
    assert outcome.report.closes == 2 and all(outcome.roots.values())
    # What no replay can book stays quarantined; the rest (the late license's usage, the
    # corrections that waited) was booked before the close.
    assert outcome.open_quarantine == (
        ("event_conflict", "conflict: same event id, other units"),
        ("undecodable", "undecodable"),
        ("unknown_source", "usage of an unknown source"),
    )
    assert {"2026-03/2026-03_h-lea_USD.json", "2026-04/2026-04_h-lea_USD.pdf"} <= outcome.files.keys()
    assert len(outcome.files) == 32  # 5 statements x 3 files + 1 usage report, per month


def assert_identical(reference: tuple[Outcome, int], outcome: Outcome) -> None:
    expected, _ = reference
    assert outcome.report.ok, outcome.report.problems
    assert differences(expected, outcome) == []


@pytest.mark.parametrize("consumer", [
    # One record per batch: on the Python path only, as the native path takes a fetch whole
    # (the killed consumer below books one small fetch per batch on the native path).
    pytest.param({"max_batch": 1, "native": False}, id="max_batch=1"),
    pytest.param({"max_batch": 777}, id="max_batch=777"),
    pytest.param({"native": False}, id="native-off"),
])
def test_batching_and_the_native_path_do_not_show(reference, log_settings, tmp_path, consumer):
    settings = own_ledger(log_settings, tmp_path, **consumer)
    start_ledger(settings)
    consume(settings)
    assert_identical(reference, finish(settings))


def test_replaying_the_quarantine_by_hand_before_the_close_does_not_show(reference, log_settings, tmp_path):
    settings = own_ledger(log_settings, tmp_path)
    start_ledger(settings)
    consume(settings)
    assert_identical(reference, finish(settings, replay_with_cli=True))


def _consume_in_child(settings_json: str, kill_at: int, before_commit: bool) -> None:
    """Consumes, and SIGKILLs this process at its ``kill_at``-th batch: inside the batch's
    transaction (``before_commit``: its rows are written, not committed) or right after it."""
    appended = 0
    real_append = Ledger.append_batch

    def append_then_maybe_die(ledger, batch):
        nonlocal appended
        appended += 1
        if appended == kill_at and before_commit:
            real_insert = ledger._ingest.db.insert

            def insert_then_die(table, data):
                real_insert(table, data)
                os.kill(os.getpid(), signal.SIGKILL)
            ledger._ingest.db.insert = insert_then_die
        result = real_append(ledger, batch)
        if appended == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    Ledger.append_batch = append_then_maybe_die
    consume(Settings.model_validate_json(settings_json))
    os._exit(0)


def test_a_consumer_killed_at_12_seeded_points_and_restarted_does_not_show(reference, log_settings, tmp_path):
    # Batches of one fetch of one small record batch (the native path takes a fetch whole),
    # so that the kills fall between many commits. Each run kills itself with SIGKILL at a
    # seeded batch, inside its transaction or just after its commit: where, not when.
    small = {"max_batch": 1, "fetch_partition_bytes": 512}
    settings = own_ledger(log_settings, tmp_path, **small)
    start_ledger(settings)
    rng = random.Random(KILL_SEED)
    fork = multiprocessing.get_context("fork")
    kills = 0
    for _ in range(KILLS):
        # Each run gets a group of its own (the ledger holds the offsets): no wait for the
        # killed member's session to expire.
        run = own_ledger(log_settings, tmp_path, **small)
        child = fork.Process(target=_consume_in_child,
                             args=(run.model_dump_json(), rng.randint(1, 4), rng.random() < 0.5))
        child.start()
        child.join()
        assert child.exitcode in (0, -signal.SIGKILL), f"the consumer failed (exit code {child.exitcode})"
        if child.exitcode == 0:
            break  # drained before its kill point
        kills += 1
    consume(settings)
    outcome = finish(settings)
    assert kills >= KILLS // 2, f"only {kills} of {KILLS} runs were killed before the log was drained"
    assert_identical(reference, outcome)


# -- the same log into a lake (DuckLake, PostgreSQL catalog) -------------------------------

def lake_settings(log_settings: Settings, location: LakeLocation) -> Settings:
    """Settings of a lake ledger at ``location`` with a consumer group of its own."""
    return own_ledger(log_settings, location.data_path).model_copy(update={
        "ledger": LedgerSettings(url=location.url, data_path=location.data_path)})


@pytest.mark.postgres
def test_a_lake_ledger_gives_the_files_of_the_single_file_ledger(reference, log_settings, lake_location):
    """One writer into DuckLake: same entries, roots, verify report and statement bytes as the file."""
    settings = lake_settings(log_settings, lake_location)
    with Ledger.open(settings.ledger_at) as ledger:
        ledger.apply_licenses(BOOK, "book.toml")
        consume_all(settings, ledger)
        ledger.apply_licenses(LATE_BOOK, "late.toml")
        close_months(ledger)
        outcome = outcome_of(ledger, lake_location.data_path.parent / "files", PLAN)
    assert differences(reference[0], outcome) == []


@pytest.mark.postgres
def test_two_lake_writers_in_one_group_give_the_files_of_the_single_file_ledger(reference, log_settings, lake_location):
    """Two writers share the partitions (one consumer group, small batches, so they hand partitions
    over as they join and leave); whatever the interleaving, the lake shows what one file shows."""
    settings = lake_settings(log_settings, lake_location)
    # A writer joining while the other rebalances may wait long for partitions on a loaded machine:
    # the wait for an assignment is not what this test is about.
    settings = settings.model_copy(update={"consumer": settings.consumer.model_copy(update={
        "max_batch": 7, "max_poll": 7, "idle_timeout_s": 180.0})})
    with Ledger.open(settings.ledger_at) as ledger:
        ledger.apply_licenses(BOOK, "book.toml")
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            with Ledger.open(settings.ledger_at) as own:
                consume_all(settings, own)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failures.append(exc)

    threads = [threading.Thread(target=writer, name=f"writer-{n}") for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with Ledger.open(settings.ledger_at) as ledger:
        consume_all(settings, ledger)  # whatever a writer leaving early left behind
        ledger.apply_licenses(LATE_BOOK, "late.toml")
        close_months(ledger)
        outcome = outcome_of(ledger, lake_location.data_path.parent / "files", PLAN)
    assert differences(reference[0], outcome) == []
