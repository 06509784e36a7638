"""`learnright serve` on a real broker: metrics that match the ledger, snapshots read while ingesting."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone

import httpx
import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from consumers.progress import STALL_AFTER
from consumers.scheduler import LedgerService
from consumers.kafka_admin import ensure_topics
from learnright.server import serve
from ledger.storage.store import Ledger
from ledger.services.tokens import AUDITOR, create_token
from producers import UsageEmitter
from tests.consumers.helpers import accept_dead_letters, produce_poison_then_valid, refuse_dead_letters

pytestmark = pytest.mark.broker
APRIL = datetime(2026, 4, 10, 8, 30, tzinfo=timezone.utc)


def emit(settings, first: int, count: int, *, unknown: int = 0, poison: int = 0) -> None:
    topics = settings.kafka.topics
    with UsageEmitter(settings.kafka.bootstrap_servers, platform_id="orbit", topics=topics) as emitter:
        for i in range(first, first + count):
            emitter.training(event_id=f"t{i}", model_id="m", run_id="r", source_id="src-photos", units=2,
                             unit="items", occurred_at=APRIL)
            emitter.inference(event_id=f"i{i}", model_id="m", request_id=f"q{i}",
                              attributions={"src-novels": "0.5"}, occurred_at=APRIL)
        for i in range(unknown):
            emitter.training(event_id=f"u{first}-{i}", model_id="m", run_id="r", source_id="src-unknown", units=1,
                             unit="items", occurred_at=APRIL)
    if poison:
        raw = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
        for _ in range(poison):
            raw.send(topics.for_event("TrainingUsage"), key=b"x", value=b"not avro").get(30)
        raw.close()


def scrape(url: str, token: str) -> dict[str, dict[tuple, float]]:
    """Scrapes /metrics as Prometheus would, with an auditor token (bearer auth in the scrape config)."""
    answer = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})
    answer.raise_for_status()
    text = answer.text
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def total(url: str, token: str, name: str) -> float:
    return sum(scrape(url, token).get(name, {}).values())


def wait_for(condition, timeout_s: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def service_settings(make_settings, tmp_path):
    settings = make_settings(max_batch=20)
    return settings.model_copy(update={
        "snapshots_dir": tmp_path / "snapshots", "signing_key": tmp_path / "key.pem",
        "http": settings.http.model_copy(update={"port": 0}),
    })


@pytest.fixture
def service(make_settings, license_book_text, tmp_path):
    settings = service_settings(make_settings, tmp_path)
    ensure_topics(settings.kafka.bootstrap_servers, (*settings.kafka.topics.usage, settings.kafka.topics.dead_letter), 2)
    with running(settings, license_book_text) as (url, auditor, ledger):
        yield settings, url, auditor, ledger


@contextmanager
def running(settings, license_book_text):
    """`learnright serve` in a thread over a new ledger; yields its URL, an auditor token and the ledger."""
    with serving(settings, license_book_text) as (_, url, auditor, ledger):
        yield url, auditor, ledger


@contextmanager
def serving(settings, license_book_text, clock=None):
    """`learnright serve` in a thread over a new ledger, its scheduler's clock ``clock`` (the wall clock
    if None); yields the service, its URL, an auditor token and the ledger."""
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        auditor = create_token(ledger, role=AUDITOR, holder_id=None, now=datetime.now(timezone.utc)).token
        service = LedgerService(settings, ledger, clock=clock)
        listening: list[str] = []
        thread = threading.Thread(target=serve, args=(settings, ledger, service),
                                  kwargs={"on_listening": listening.append}, daemon=True)
        thread.start()
        url = wait_for(lambda: listening and listening[0], what="the HTTP API")
        try:
            yield service, url, auditor, ledger
        finally:
            service.stop()
            thread.join(timeout=30)


def test_metrics_parse_and_their_counters_match_the_ledger(service):
    settings, url, auditor, ledger = service
    assert url.startswith("http://127.0.0.1:")
    emit(settings, 0, 30, unknown=3, poison=2)
    wait_for(lambda: total(url, auditor, "learnright_events_ingested_total") == 60
             and total(url, auditor, "learnright_events_quarantined_total") == 5, what="ingestion")
    wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, what="readiness")
    metrics = scrape(url, auditor)
    answer = httpx.post(f"{url}/v1/snapshots", headers={"Authorization": f"Bearer {auditor}"})
    assert answer.status_code == 201
    query = lambda sql: httpx.post(f"{url}/v1/sql", json={"sql": sql},  # noqa: E731
                                   headers={"Authorization": f"Bearer {auditor}"}).json()["rows"]
    by_type = {(("type", t),): float(n) for t, n in query("SELECT event_type, count(*) FROM usage_events GROUP BY ALL")}
    assert metrics["learnright_events_ingested_total"] == by_type
    quarantined = {(("reason", reason), ("type", "TrainingUsage")): float(n) for reason, n in
                   query("SELECT error_class, count(*) FROM quarantine GROUP BY ALL")}
    assert metrics["learnright_events_quarantined_total"] == quarantined
    accrued = {(("currency", c),): float(a) for c, a in query("SELECT currency, sum(amount) FROM accruals GROUP BY ALL")}
    assert metrics["learnright_accrued_amount"] == pytest.approx(accrued)
    assert accrued == {(("currency", "JPY"),): 300.0, (("currency", "USD"),): 0.045}  # 30 x 2 items x 5; 30 x 0.0015
    assert metrics["learnright_batch_records_count"][()] >= 1
    assert metrics["learnright_ledger_commit_duration_seconds_count"][()] == metrics["learnright_batch_records_count"][()]
    lag = metrics["learnright_consumer_lag_records"]
    assert lag and all(value == 0 for value in lag.values()), {k: v for k, v in lag.items() if v}
    assert metrics["learnright_http_requests_total"][
        (("method", "GET"), ("route", "/metrics"), ("status", "200"))] >= 1
    anonymous = httpx.get(f"{url}/metrics")
    assert anonymous.status_code == 401 and "learnright_accrued_amount" not in anonymous.text


def test_a_stalled_consumer_fails_readyz_and_raises_the_metric_until_it_moves_again(
        make_settings, license_book_text, tmp_path):
    """The broker refuses the poison's dead letter on every attempt (a 1,024-byte record limit on the
    dead-letter topic): the service stays up, says it is not ready and why without the exception,
    exports learnright_consumer_stalled 1, and books both records once the limit is raised."""
    settings = service_settings(make_settings, tmp_path)
    refuse_dead_letters(settings)
    produce_poison_then_valid(settings)
    with running(settings, license_book_text) as (url, auditor, ledger):
        stalled = wait_for(lambda: (answer := httpx.get(f"{url}/readyz")).status_code == 503
                           and "stalled" in answer.text and answer, what="readyz to say stalled", timeout_s=120)
        assert stalled.json() == {"status": "not_ready", "reason": stalled.json()["reason"]}
        assert stalled.json()["reason"].startswith("the consumer is stalled: ")
        for leak in ("MessageSizeTooLarge", "BrokerError", "Error", settings.kafka.topics.dead_letter, "Traceback"):
            assert leak not in stalled.text
        metrics = scrape(url, auditor)
        assert metrics["learnright_consumer_stalled"] == {(): 1.0}
        assert metrics["learnright_consumer_batch_failures_total"][()] >= STALL_AFTER
        assert sum(metrics.get("learnright_events_ingested_total", {}).values()) == 0  # nothing past the poison
        assert httpx.get(f"{url}/healthz").status_code == 200  # alive: it keeps retrying

        accept_dead_letters(settings)
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, what="readiness after the fix", timeout_s=180)
        metrics = scrape(url, auditor)
        assert metrics["learnright_consumer_stalled"] == {(): 0.0}
        assert total(url, auditor, "learnright_events_ingested_total") == 1
        assert total(url, auditor, "learnright_events_quarantined_total") == 1
        assert metrics["learnright_consumer_last_commit_timestamp_seconds"][()] > 0


READ_SNAPSHOT = """
import duckdb, json, sys
con = duckdb.connect(sys.argv[1], read_only=True)
print(json.dumps([con.execute("SELECT count(*) FROM usage_events").fetchall()[0][0],
                  con.execute("SELECT count(*) FROM audit_reconciliation WHERE NOT balanced").fetchall()[0][0]]))
try:
    duckdb.connect(sys.argv[2], read_only=True)
    print("live ledger opened")
except duckdb.IOException as exc:
    print("live ledger locked")
"""


def test_an_auditor_opens_a_snapshot_in_another_process_while_the_service_ingests(service):
    settings, url, auditor, ledger = service
    headers = {"Authorization": f"Bearer {auditor}"}
    emit(settings, 0, 20)
    wait_for(lambda: total(url, auditor, "learnright_events_ingested_total") == 40, what="first wave")
    first = httpx.post(f"{url}/v1/snapshots", headers=headers).json()
    assert first["tables"]["usage_events"] == 40
    writer = threading.Thread(target=emit, args=(settings, 20, 200))
    writer.start()  # the second wave is ingested while the auditor reads
    try:
        database = settings.snapshots_dir / first["snapshot_id"] / "ledger.duckdb"
        reads = []
        while writer.is_alive() or len(reads) < 3:
            out = subprocess.run([sys.executable, "-c", READ_SNAPSHOT, str(database), str(settings.db)],
                                 capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
            reads.append((json.loads(out[0]), out[1]))
    finally:
        writer.join()
    assert all(read == ([40, 0], "live ledger locked") for read in reads), reads
    wait_for(lambda: total(url, auditor, "learnright_events_ingested_total") == 440, what="second wave")
    second = httpx.post(f"{url}/v1/snapshots", headers=headers).json()
    assert second["tables"]["usage_events"] == 440
    assert (settings.snapshots_dir / "LATEST").read_text().strip() == second["snapshot_id"]
