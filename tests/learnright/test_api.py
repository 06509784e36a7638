"""The HTTP API: tenant isolation, token refusal, downloads, auditor SQL and snapshots."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import threading
import time
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

import learnright.api.auditors as auditors
from learnright.api import create_app
from ground.metrics import Metrics
from ground.settings import Settings
from ledger.storage.snapshots import SnapshotError
from ledger.storage.store import Ledger
from ledger.services.tokens import AUDITOR, HOLDER, create_token, revoke_token
from tests.learnright.books import book_two_holders
from tests.ledger.storage.test_sql import ATTACKS

T0 = datetime(2026, 6, 2, tzinfo=timezone.utc)


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


@pytest.fixture
def served(request, tmp_path, license_book_text):
    """A served two-holder book; ``indirect`` parametrization may set other SQL settings."""
    path = book_two_holders(tmp_path / "ledger.duckdb", license_book_text)
    sql = Settings().sql.model_copy(update={"time_limit_s": 2, **getattr(request, "param", {})})
    settings = Settings().model_copy(update={"db": path, "snapshots_dir": tmp_path / "snapshots",
                                             "signing_key": tmp_path / "no-key.pem", "sql": sql})
    clock = Clock()
    with Ledger.open(path) as ledger:
        tokens = {
            "ann": create_token(ledger, role=HOLDER, holder_id="h-ann", now=T0).token,
            "bo": create_token(ledger, role=HOLDER, holder_id="h-bo", now=T0).token,
            "auditor": create_token(ledger, role=AUDITOR, holder_id=None, now=T0).token,
        }
        ids = {h: [r.statement_id for r in ledger.statement_rows(holder_id=h)] for h in ("h-ann", "h-bo")}
        app = create_app(ledger=ledger, settings=settings, metrics=Metrics(), now=clock)
        with TestClient(app) as client:
            yield client, tokens, ids, ledger, clock


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_a_holder_lists_and_fetches_only_their_own_statements(served):
    client, tokens, ids, _, _ = served
    listed = client.get("/v1/statements", headers=auth(tokens["ann"])).json()["statements"]
    assert sorted(s["statement_id"] for s in listed) == sorted(ids["h-ann"])
    assert {s["holder_id"] for s in listed} == {"h-ann"}
    missing = client.get("/v1/statements/st_00000000000000000000", headers=auth(tokens["ann"]))
    assert missing.status_code == 404
    for other in ids["h-bo"]:  # every id of the other holder, and each download of it
        for path in (f"/v1/statements/{other}", *(f"/v1/statements/{other}/{f}" for f in ("json", "csv", "pdf"))):
            answer = client.get(path, headers=auth(tokens["ann"]))
            assert (answer.status_code, answer.content) == (missing.status_code, missing.content), path
    assert client.get(f"/v1/statements/{ids['h-ann'][0]}", headers=auth(tokens["ann"])).status_code == 200
    # The chart's data is the holder's alone too.
    royalties = client.get("/v1/royalties/monthly", headers=auth(tokens["bo"])).json()["royalties"]
    assert {(r["period"], r["source_id"], r["amount"]) for r in royalties} == {
        ("2026-02", "src-photos", "50.000000000000"), ("2026-03", "src-photos", "100.000000000000"),
        ("2026-04", "src-photos", "150.000000000000")}


def test_downloads_are_the_statement_as_csv_and_json(served):
    client, tokens, ids, ledger, _ = served
    sid = ids["h-ann"][-1]
    as_csv = client.get(f"/v1/statements/{sid}/csv", headers=auth(tokens["ann"]))
    assert as_csv.headers["content-disposition"] == (
        "attachment; filename=\"2026-04_h-ann_USD.csv\"; filename*=UTF-8''2026-04_h-ann_USD.csv")
    summary = {row["unit"]: row["amount"] for row in csv.DictReader(io.StringIO(as_csv.text)) if row["kind"] == "summary"}
    assert summary["payable"] == "3.60"
    as_json = client.get(f"/v1/statements/{sid}/json", headers=auth(tokens["ann"]))
    assert as_json.status_code == 200
    assert sid in as_json.text


def test_missing_expired_revoked_and_forged_tokens_are_refused(served):
    client, tokens, ids, ledger, clock = served
    assert client.get("/v1/statements").status_code == 401
    assert client.get("/v1/statements", headers=auth(tokens["ann"] + "x")).status_code == 401
    short = create_token(ledger, role=HOLDER, holder_id="h-ann", now=T0, expires_in=timedelta(hours=1))
    assert client.get("/v1/statements", headers=auth(short.token)).status_code == 200
    clock.now = T0 + timedelta(hours=1)
    expired = client.get("/v1/statements", headers=auth(short.token))
    assert expired.status_code == 401 and "expired" in expired.json()["message"]
    assert expired.headers["www-authenticate"].startswith("Bearer")
    revoke_token(ledger, tokens["bo"].split(".")[1], now=clock.now)
    revoked = client.get(f"/v1/statements/{ids['h-bo'][0]}", headers=auth(tokens["bo"]))
    assert revoked.status_code == 401 and "revoked" in revoked.json()["message"]


def test_sql_needs_an_auditor_and_answers_in_three_formats(served):
    client, tokens, _, _, _ = served
    query = {"sql": "SELECT holder_id, count(*) AS n FROM audit_statement_lines GROUP BY ALL ORDER BY ALL"}
    assert client.post("/v1/sql", json=query, headers=auth(tokens["ann"])).status_code == 403
    as_json = client.post("/v1/sql", json=query, headers=auth(tokens["auditor"]))
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["rows"] == [["h-ann", 3], ["h-bo", 3]]
    assert as_json.headers["x-learnright-snapshot"]
    as_csv = client.post("/v1/sql", json={**query, "format": "csv"}, headers=auth(tokens["auditor"]))
    assert as_csv.text.splitlines() == ['"holder_id","n"', '"h-ann",3', '"h-bo",3']
    as_arrow = client.post("/v1/sql", json={**query, "format": "arrow"}, headers=auth(tokens["auditor"]))
    assert pa.ipc.open_stream(as_arrow.content).read_all().column("n").to_pylist() == [3, 3]
    reconciled = client.post("/v1/sql", json={"sql": "SELECT count(*) FILTER (WHERE NOT balanced) AS off,"
                                                     " count(*) AS n FROM audit_reconciliation"},
                             headers=auth(tokens["auditor"]))
    assert reconciled.json()["rows"] == [[0, 6]]


@pytest.mark.parametrize("name", ["insert", "copy out", "attach", "install", "read a file", "set a setting",
                                  "two statements", "delete", "delete in a cte", "insert in a cte",
                                  "update in a materialized cte"])
def test_sql_attacks_over_http_are_refused_and_change_nothing(served, name):
    client, tokens, _, ledger, _ = served
    before = ledger.query("SELECT count(*), sum(amount) FROM accruals") + ledger.query("SELECT count(*) FROM statements")
    answer = client.post("/v1/sql", json={"sql": ATTACKS[name]}, headers=auth(tokens["auditor"]))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "refused"
    snapshot = client.get("/v1/snapshots", headers=auth(tokens["auditor"])).json()["snapshots"][-1]
    database = ledger.path.parent / "snapshots" / snapshot["snapshot_id"] / "ledger.duckdb"
    assert hashlib.sha256(database.read_bytes()).hexdigest()  # still readable, published read-only
    after = ledger.query("SELECT count(*), sum(amount) FROM accruals") + ledger.query("SELECT count(*) FROM statements")
    assert after == before


def test_sql_time_limit_over_http(served):
    client, tokens, _, _, _ = served
    answer = client.post("/v1/sql", json={"sql": "SELECT count(*) FROM range(100000000) a, range(100000000) b"},
                         headers=auth(tokens["auditor"]))
    assert answer.status_code == 408
    assert "time limit" in answer.json()["message"]


def test_an_auditor_publishes_a_snapshot_and_downloads_its_files(served):
    client, tokens, _, ledger, _ = served
    created = client.post("/v1/snapshots", headers=auth(tokens["auditor"]))
    assert created.status_code == 201
    manifest = created.json()
    assert manifest["last_entry_id"] == ledger.last_entry_id
    assert "api_tokens" not in manifest["tables"]
    assert manifest["tables"]["statements"] == 6
    parquet = client.get(f"/v1/snapshots/{manifest['snapshot_id']}/parquet/statements.parquet",
                         headers=auth(tokens["auditor"]))
    assert parquet.status_code == 200 and parquet.content[:4] == b"PAR1"
    assert client.post("/v1/snapshots", headers=auth(tokens["ann"])).status_code == 403
    assert client.get(f"/v1/snapshots/{manifest['snapshot_id']}/../ledger.duckdb",
                      headers=auth(tokens["auditor"])).status_code == 404


def test_openapi_health_and_pdf_or_a_clear_404(served):
    client, tokens, ids, _, _ = served
    spec = client.get("/openapi.json").json()
    assert {"/v1/statements", "/v1/sql", "/v1/snapshots", "/metrics", "/healthz", "/readyz"} <= set(spec["paths"])
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").status_code == 200
    pdf = client.get(f"/v1/statements/{ids['h-ann'][0]}/pdf", headers=auth(tokens["ann"]))
    assert (pdf.status_code, pdf.headers["content-type"]) == (200, "application/pdf") or (
        pdf.status_code == 404 and pdf.json()["error"] == "pdf_unavailable")
    key = client.get("/v1/signing-key")
    assert key.status_code == 404 and "signing key" in key.json()["message"]


def test_metrics_need_an_auditor_token(served):
    """A currency with a single holder would otherwise tell anyone that holder's total."""
    client, tokens, _, _, _ = served
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401 and "learnright_accrued_amount" not in anonymous.text
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers=auth(tokens["ann"])).status_code == 403
    scraped = client.get("/metrics", headers=auth(tokens["auditor"]))
    assert scraped.status_code == 200
    assert 'learnright_accrued_amount{currency="JPY"} 300.0' in scraped.text
    assert client.get("/healthz").status_code == 200


def test_readyz_says_not_ready_without_the_exception_text(tmp_path, license_book_text, caplog):
    path = book_two_holders(tmp_path / "ledger.duckdb", license_book_text)

    def broken():
        raise RuntimeError(f"consumer died reading {tmp_path}/secret.conf")

    with Ledger.open(path) as ledger:
        app = create_app(ledger=ledger, settings=Settings(), metrics=Metrics(), readiness=broken)
        with TestClient(app) as client, caplog.at_level(logging.WARNING, logger="learnright.http"):
            answer = client.get("/readyz")
    assert answer.status_code == 503 and answer.json()["status"] == "not_ready"
    assert str(tmp_path) not in answer.text and "RuntimeError" not in answer.text
    reference = answer.json()["reason"].rsplit(" ", 1)[-1]
    logged = [r for r in caplog.records if getattr(r, "reference", None) == reference]
    assert logged and str(tmp_path) in logged[0].detail


def test_errors_name_no_server_path(served, monkeypatch, caplog):
    client, tokens, _, ledger, _ = served
    missing = client.get("/v1/snapshots/nope/ledger.duckdb", headers=auth(tokens["auditor"]))
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "message": "no such snapshot"}
    # A ledger error's detail goes to the log under a reference; the client gets the reference only.
    secret_path = str(ledger.path.parent / "snapshots")

    def failing(*args, **kwargs):
        raise SnapshotError(f"publishing a snapshot into {secret_path} failed: disk full")

    monkeypatch.setattr(auditors, "publish_snapshot", failing)
    with caplog.at_level(logging.WARNING, logger="learnright.http"):
        failed = client.post("/v1/snapshots", headers=auth(tokens["auditor"]))
    assert failed.status_code == 500
    assert secret_path not in failed.text and "disk full" not in failed.text
    assert failed.json()["message"].startswith("internal error, reference ")
    reference = failed.json()["message"].rsplit(" ", 1)[-1]
    assert [r.detail for r in caplog.records if getattr(r, "reference", None) == reference] == [
        f"publishing a snapshot into {secret_path} failed: disk full"]


def test_sql_errors_keep_duckdbs_message_without_filesystem_paths(served):
    client, tokens, _, _, _ = served
    answer = client.post("/v1/sql", json={"sql": "FROM duckdb_extensions()"}, headers=auth(tokens["auditor"]))
    assert answer.status_code == 400
    message = answer.json()["message"]
    assert "Permission Error: Cannot access directory" in message
    assert "/root" not in message and ".duckdb/extensions" not in message and "<path>" in message


# The time limit is far away so that only the byte limit can refuse, however loaded the machine:
# building the 2 GB DuckDB computes before the first batch takes seconds there. That the
# refusal comes at the first oversized batch is pinned in tests/ledger/test_sql.py.
@pytest.mark.parametrize("served", [{"time_limit_s": 600}], indirect=True)
def test_a_result_past_the_byte_limit_is_refused_quickly_over_http(served):
    client, tokens, _, _, _ = served
    answer = client.post("/v1/sql", json={"sql": "SELECT repeat('x', 10000000) FROM range(200)"},
                         headers=auth(tokens["auditor"]))
    assert answer.status_code == 400 and answer.json()["error"] == "too_large"
    assert "larger than the limit of 67108864 bytes (64 MiB)" in answer.json()["message"]


def test_auditor_queries_past_the_concurrency_limit_get_429(served, monkeypatch):
    client, tokens, _, _, _ = served
    assert Settings().sql.max_concurrent == 2
    release, entered = threading.Event(), threading.Semaphore(0)
    real = auditors.run_query

    def held(*args, **kwargs):
        entered.release()
        release.wait(30)
        return real(*args, **kwargs)

    assert client.post("/v1/snapshots", headers=auth(tokens["auditor"])).status_code == 201
    monkeypatch.setattr(auditors, "run_query", held)
    query = {"sql": "SELECT 1 AS n"}
    answers = []
    running = [threading.Thread(target=lambda: answers.append(
        client.post("/v1/sql", json=query, headers=auth(tokens["auditor"])))) for _ in range(2)]
    for thread in running:
        thread.start()
    try:
        assert entered.acquire(timeout=30) and entered.acquire(timeout=30)
        refused = client.post("/v1/sql", json=query, headers=auth(tokens["auditor"]))
        assert refused.status_code == 429 and refused.json()["error"] == "too_many_queries"
        assert int(refused.headers["retry-after"]) >= 1
    finally:
        release.set()
        for thread in running:
            thread.join(30)
    assert [a.status_code for a in answers] == [200, 200]
    monkeypatch.setattr(auditors, "run_query", real)
    assert client.post("/v1/sql", json=query, headers=auth(tokens["auditor"])).status_code == 200


def test_an_sql_answer_names_its_snapshot_and_the_last_close_and_the_next_query_after_a_close_includes_it(served):
    """Closed by hand on the served ledger, with no watcher running: the very next query answers from a
    new snapshot that covers the close, and says so in headers and in the JSON body."""
    from tests.learnright.books import close

    client, tokens, _, ledger, clock = served
    query = {"sql": "SELECT max(period) AS period FROM period_closes"}
    before = client.post("/v1/sql", json=query, headers=auth(tokens["auditor"]))
    april = ledger.get_close("2026-04")
    assert before.headers["x-learnright-last-close"] == f"2026-04; root={april.root}"
    body = before.json()
    assert body["rows"] == [["2026-04"]] and body["truncated"] is False and body["columns"]
    assert body["snapshot"] == {
        "snapshot_id": before.headers["x-learnright-snapshot"], "created_at": T0.isoformat(),
        "last_entry_id": int(before.headers["x-learnright-last-entry"]),
        "last_close": {"period": "2026-04", "root": april.root,
                       "closed_at": april.closed_at.astimezone(timezone.utc).isoformat()}}
    assert before.headers["x-learnright-snapshot-created"] == T0.isoformat()
    same = client.post("/v1/sql", json=query, headers=auth(tokens["auditor"]))
    assert same.headers["x-learnright-snapshot"] == before.headers["x-learnright-snapshot"]  # no close: no new one

    clock.now = T0 + timedelta(seconds=1)
    close(ledger, "2026-05")
    may = ledger.get_close("2026-05")
    after = client.post("/v1/sql", json=query, headers=auth(tokens["auditor"]))
    assert after.json()["rows"] == [["2026-05"]]
    assert after.headers["x-learnright-last-close"] == f"2026-05; root={may.root}"
    assert after.headers["x-learnright-snapshot"] != before.headers["x-learnright-snapshot"]
    assert after.json()["snapshot"]["last_close"]["root"] == may.root
    as_csv = client.post("/v1/sql", json={**query, "format": "csv"}, headers=auth(tokens["auditor"]))
    assert as_csv.text.splitlines() == ['"period"', '"2026-05"']  # CSV and Arrow bodies stay the result alone
    assert as_csv.headers["x-learnright-last-close"] == after.headers["x-learnright-last-close"]
