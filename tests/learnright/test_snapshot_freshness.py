"""Fresh snapshots on a running `learnright serve`: after a close, by the scheduler or by hand, the next
auditor answer (HTTP and CLI) comes from a snapshot that covers it, and says which close that is.

Before: `learnright sql` answered from a snapshot taken before the last close, so reconciliation of the
month just closed returned nothing until someone published a snapshot by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone

import httpx
import pytest
from typer.testing import CliRunner

from consumers.kafka_admin import ensure_topics
from learnright.cli import app
from ledger.storage.snapshots import latest_snapshot
from tests.consumers.test_scheduler import emit_month
from tests.learnright.test_serve import serving, total, wait_for

pytestmark = pytest.mark.broker
RECONCILED = ("SELECT period, count(*) AS statements, count(*) FILTER (WHERE NOT balanced) AS unbalanced"
              " FROM audit_reconciliation GROUP BY ALL ORDER BY ALL")


@pytest.fixture
def settings(make_settings, tmp_path, monkeypatch):
    """A service's settings; the CLI run in this test reads the same through the environment."""
    settings = make_settings(max_batch=50)
    settings = settings.model_copy(update={
        "snapshots_dir": tmp_path / "snapshots", "signing_key": tmp_path / "key.pem",
        "http": settings.http.model_copy(update={"port": 0}),
        "sql": settings.sql.model_copy(update={"temp_directory": tmp_path / "spill"}),
        "snapshots": settings.snapshots.model_copy(update={"watch_interval_s": 0.2})})
    for key, value in (("SNAPSHOTS_DIR", settings.snapshots_dir), ("SIGNING_KEY", settings.signing_key),
                       ("SQL__TEMP_DIRECTORY", settings.sql.temp_directory),
                       ("KAFKA__BOOTSTRAP_SERVERS", settings.kafka.bootstrap_servers),
                       ("KAFKA__TOPIC_PREFIX", settings.kafka.topic_prefix)):
        monkeypatch.setenv(f"LEARNRIGHT_{key}", str(value))
    ensure_topics(settings.kafka.bootstrap_servers, (*settings.kafka.topics.usage, settings.kafka.topics.dead_letter), 2)
    return settings


def sql(url: str, auditor: str, query: str) -> httpx.Response:
    answer = httpx.post(f"{url}/v1/sql", json={"sql": query}, headers={"Authorization": f"Bearer {auditor}"})
    answer.raise_for_status()
    return answer


def assert_answers_cover(settings, url, auditor, ledger, period: str) -> None:
    """The next HTTP and CLI answers come from a snapshot that holds ``period``'s close and name it."""
    close = ledger.reader().get_close(period)
    http = sql(url, auditor, RECONCILED)
    assert http.headers["x-learnright-last-close"] == f"{period}; root={close.root}"
    assert http.json()["snapshot"]["last_close"]["root"] == close.root
    assert http.json()["rows"] == [[period, 2, 0]]  # h-ann's USD and h-bo's JPY statement, both balanced

    # In a process of its own, as an auditor runs it: it finds the ledger held and answers from LATEST.
    cli = subprocess.run([sys.executable, "-c", "from learnright.cli import app; app()", "sql", "--db",
                          str(settings.db), "--format", "json", RECONCILED],
                         capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert cli.returncode == 0, cli.stderr
    assert '"rows": [["' + period + '", 2, 0]]' in cli.stdout
    assert f"last close {period} root {close.root}" in cli.stderr
    assert "held by the running service" in cli.stderr  # the CLI could not open the ledger: LATEST answered


def test_the_watcher_publishes_after_the_services_own_close(settings, license_book_text):
    """The scheduler closes April (its clock moved to May 20); nobody asks for a snapshot, yet one that
    covers April is published, and the next auditor answers come from it."""
    now = [datetime(2026, 4, 20, tzinfo=timezone.utc)]  # nothing due: no usage before April
    emit_month(settings, 4, 10)
    with serving(settings, license_book_text, lambda: now[0]) as (service, url, auditor, ledger):
        wait_for(lambda: total(url, auditor, "learnright_events_ingested_total") == 20, what="April's usage")
        first = wait_for(lambda: latest_snapshot(settings.snapshots_dir), what="the snapshot published at start")
        assert first.last_close is None
        assert sql(url, auditor, RECONCILED).headers["x-learnright-last-close"] == "none"

        now[0] = datetime(2026, 5, 20, tzinfo=timezone.utc)
        service.requests.put(now[0])  # as the monthly trigger does
        after = wait_for(lambda: (s := latest_snapshot(settings.snapshots_dir)) and s.last_close and s,
                         what="a snapshot after April's close")
        assert after.last_close.period == "2026-04"
        assert after.last_close.root == ledger.reader().get_close("2026-04").root
        assert_answers_cover(settings, url, auditor, ledger, "2026-04")


def test_a_month_closed_by_hand_while_the_service_runs_is_in_the_next_auditor_answer(settings, license_book_text):
    """`learnright close` goes through the running service's admin socket; the next `learnright sql`
    (which cannot open the held ledger) and the next `POST /v1/sql` both answer from a snapshot with it."""
    emit_month(settings, 4, 10)
    with serving(settings, license_book_text, lambda: datetime(2026, 4, 20, tzinfo=timezone.utc)) as (
            service, url, auditor, ledger):
        wait_for(lambda: total(url, auditor, "learnright_events_ingested_total") == 20, what="April's usage")
        wait_for(lambda: latest_snapshot(settings.snapshots_dir), what="the snapshot published at start")
        assert ledger.reader().latest_close() is None
        closed = CliRunner().invoke(app, ["close", "--period", "2026-04", "--db", str(settings.db), "--no-publish"])
        assert closed.exit_code == 0, closed.output
        assert "2026-04 closed" in closed.stdout
        assert_answers_cover(settings, url, auditor, ledger, "2026-04")
