"""Administering a running `learnright serve` through its admin socket, under steady ingest.

The CLI runs as its own process, as an operator would run it: the service holds the
ledger file, so every command below can only have gone through the admin socket.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from consumers.kafka_admin import ensure_topics
from ground.errors import ConfigError
from learnright.admin.server import AdminServer
from learnright.cli import app
from ledger.core.periods import period_of, period_start, previous_period
from ledger.storage.store import Ledger
from producers import UsageEmitter
from tests.learnright.test_serve import service_settings, serving, total, wait_for

LEARNRIGHT = str(Path(sys.executable).with_name("learnright"))

MAPS = """
[[sources]]
id = "src-maps"
holder = "h-bo"
"""
"""A source with no license yet: its usage is quarantined as ``no_license``."""

MAPS_LICENSE = """
format = 1

[[holders]]
id = "h-bo"
name = "Bo Pictures"

[[sources]]
id = "src-maps"
holder = "h-bo"

[[licenses]]
id = "lic-maps"
source = "src-maps"
effective_from = 2026-01-01T00:00:00Z
currency = "JPY"
training = { rate = 2, per = 1, unit = "items" }
inference = { rate = 1 }
"""


def cli(*args: str, db: Path) -> subprocess.CompletedProcess:
    """`learnright ARGS --db DB` in its own process, as an operator runs it."""
    done = subprocess.run([LEARNRIGHT, *args, "--db", str(db)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"learnright {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


class Producer(threading.Thread):
    """Emits usage steadily until stopped: two licensed sources, and every fifth round the unlicensed one."""

    def __init__(self, settings, occurred_at: datetime):
        super().__init__(daemon=True)
        self.settings = settings
        self.occurred_at = occurred_at
        self.stopped = threading.Event()
        self.emitted: list[str] = []
        self.maps = 0

    def run(self) -> None:
        with UsageEmitter(self.settings.kafka.bootstrap_servers, platform_id="orbit",
                          topics=self.settings.kafka.topics) as emitter:
            i = 0
            while not self.stopped.is_set():
                emitter.training(event_id=f"t{i}", model_id="m", run_id="r", source_id="src-photos", units=2,
                                 unit="items", occurred_at=self.occurred_at)
                emitter.inference(event_id=f"i{i}", model_id="m", request_id=f"q{i}",
                                  attributions={"src-novels": "0.5"}, occurred_at=self.occurred_at)
                self.emitted += [f"t{i}", f"i{i}"]
                if i % 5 == 0:
                    emitter.training(event_id=f"m{i}", model_id="m", run_id="r", source_id="src-maps", units=1,
                                     unit="items", occurred_at=self.occurred_at)
                    self.emitted.append(f"m{i}")
                    self.maps += 1
                i += 1
                time.sleep(0.02)
            emitter.flush()


def test_a_running_service_is_administered_through_its_socket_while_it_ingests(make_settings, license_book_text,
                                                                               tmp_path):
    settings = service_settings(make_settings, tmp_path).model_copy(update={"grace_days": 3})
    ensure_topics(settings.kafka.bootstrap_servers, (*settings.kafka.topics.usage, settings.kafka.topics.dead_letter), 2)
    this_month = period_of(datetime.now(timezone.utc))
    last_month = previous_period(this_month)
    producer = Producer(settings, period_start(last_month) + timedelta(days=9, hours=8))
    db = settings.db
    # The schedule stands at the 1st of this month, before the grace day: last month is not due, so
    # the service's own closes leave it open and it is closed below by hand.
    first_of_month = period_start(this_month)
    with serving(settings, license_book_text + MAPS, clock=lambda: first_of_month) as (_, url, auditor, _ledger):
        assert stat.S_IMODE(settings.admin_socket.stat().st_mode) == 0o600
        producer.start()
        try:
            # A holder is onboarded and its token works at once; revoked, it is refused at once.
            created = cli("tokens", "create", "--holder", "h-ann", "--label", "onboarding", db=db)
            token = created.stdout.strip()
            token_id = token.split(".")[1]
            assert f"created {token_id} (holder h-ann, expires never)" in created.stderr
            me = wait_for(lambda: (answer := httpx.get(f"{url}/v1/me", headers={"Authorization": f"Bearer {token}"}))
                          .status_code == 200 and answer, what="the new token to be accepted", timeout_s=30)
            assert me.json()["holder_id"] == "h-ann"
            assert cli("tokens", "revoke", token_id, db=db).stdout.startswith(f"{token_id} revoked at ")
            refused = wait_for(lambda: (answer := httpx.get(f"{url}/v1/me", headers={"Authorization": f"Bearer {token}"}))
                               .status_code == 401 and answer, what="the revoked token to be refused", timeout_s=30)
            assert "revoked" in refused.json()["message"]
            listed = cli("tokens", "list", db=db).stdout.splitlines()
            assert listed[0] == "token_id\trole\tholder\tstate\tcreated_at\texpires_at\tlabel"
            assert any(line.startswith(f"{token_id}\tholder\th-ann\trevoked\t") and line.endswith("\tonboarding")
                       for line in listed)

            # Usage of an unlicensed source is quarantined; its license is applied and the records replayed.
            wait_for(lambda: total(url, auditor, "learnright_events_quarantined_total") >= 3, what="unlicensed usage")
            quarantined = [line for line in cli("quarantine", "list", db=db).stdout.splitlines()
                           if "\tno_license\tNoLicenseError\t" in line]
            assert len(quarantined) >= 3
            license_file = tmp_path / "maps.toml"
            license_file.write_text(MAPS_LICENSE)
            applied = cli("licenses", "apply", str(license_file), db=db).stdout
            assert applied.startswith(f"{license_file}: 1 new license versions; 4 versions, 3 sources, 2 holders")
            replayed = cli("quarantine", "replay", "--error", "no_license", db=db).stdout.splitlines()[-1]
            attempted = int(replayed.split()[1].rstrip(":"))
            assert attempted >= len(quarantined)
            assert replayed == f"replayed {attempted}: {attempted} booked, 0 duplicates, 0 still quarantined"

            # Last month is closed by hand: the service books what Kafka holds first, then a snapshot covers it.
            closed = cli("close", "--period", last_month, db=db).stdout
            assert "caught up before closing: the running service booked what Kafka held" in closed
            assert f"{last_month} closed ({last_month}): 2 statements" in closed
            snapshot_id = closed.split("published snapshot ")[1].split()[0]
            with duckdb.connect(str(settings.snapshots_dir / snapshot_id / "ledger.duckdb"), read_only=True) as con:
                assert con.execute("SELECT count(*) FROM statements WHERE period = ?", [last_month]).fetchone() == (2,)
            # Reads go through the socket too (in this process: the file is the service's).
            runner = CliRunner()
            statements = runner.invoke(app, ["statements", "list", "--period", last_month, "--db", str(db)])
            assert statements.exit_code == 0 and len(statements.stdout.splitlines()) == 3
            statement_id = statements.stdout.splitlines()[1].split("\t")[0]
            document = runner.invoke(app, ["statements", "get", statement_id, "--db", str(db)])
            assert f'"statement_id": "{statement_id}"' in document.stdout
        finally:
            producer.stopped.set()
            producer.join(timeout=60)
        wait_for(lambda: count_booked(url, auditor) == len(producer.emitted), what="every event booked", timeout_s=120)
    # Stopped cleanly: the socket is gone, and the ledger holds every event exactly once.
    assert not settings.admin_socket.exists()
    with Ledger.open(db, read_only=True) as ledger:
        booked = ledger.query("SELECT event_id FROM usage_events")
        assert sorted(event_id for (event_id,) in booked) == sorted(producer.emitted)
        assert ledger.open_quarantine() == []
        assert ledger.scalar("SELECT count(*) - count(DISTINCT (topic, kafka_partition, kafka_offset)) FROM quarantine") == 0


def count_booked(url: str, auditor: str) -> int:
    headers = {"Authorization": f"Bearer {auditor}"}
    httpx.post(f"{url}/v1/snapshots", headers=headers).raise_for_status()
    answer = httpx.post(f"{url}/v1/sql", json={"sql": "SELECT count(*) FROM usage_events"}, headers=headers)
    return answer.json()["rows"][0][0]


def test_the_socket_is_owner_only_a_stale_one_is_replaced_and_a_live_one_refused(tmp_path):
    path = tmp_path / "l.admin.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a killed service: the file stays, nothing answers
    first = AdminServer(FastAPI(), path).start()
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_ISSOCK(path.stat().st_mode)
        with pytest.raises(ConfigError, match="another service answers on the admin socket"):
            AdminServer(FastAPI(), path)
    finally:
        first.stop()
    assert not path.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no private directory left behind
    path.write_text("not a socket")
    with pytest.raises(ConfigError, match="is not a socket"):
        AdminServer(FastAPI(), path)


def test_a_ledger_too_deep_for_a_socket_beside_it_is_served_from_the_users_runtime_directory(tmp_path, run_dir):
    from ground.settings import Settings
    from learnright.admin.client import find_service

    db = tmp_path / ("d" * 60) / ("e" * 60) / "ledger.duckdb"
    settings = Settings(db=db)
    assert settings.admin_socket.parent == run_dir / "learnright"
    server = AdminServer(FastAPI(), settings.admin_socket).start()
    try:
        assert stat.S_IMODE(settings.admin_socket.stat().st_mode) == 0o600
        assert stat.S_IMODE(settings.admin_socket.parent.stat().st_mode) == 0o700
        settings.admin_socket.parent.chmod(0o711)  # others may enter: no command talks to it
        with pytest.raises(ConfigError, match="must be a directory of this user's with mode 0700"):
            find_service(settings)
        settings.admin_socket.parent.chmod(0o700)
    finally:
        server.stop()
    assert not settings.admin_socket.exists()


HOLD = """
import duckdb, sys, time
con = duckdb.connect(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


def test_a_locked_ledger_with_no_service_says_what_to_do(tmp_path):
    """Another process holds the file (not a service: no socket answers): the lock error names it and the way out."""
    db = tmp_path / "ledger.duckdb"
    Ledger.open(db).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = CliRunner().invoke(app, ["tokens", "list", "--db", str(db)])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert f"(PID {holder.pid})" in message
    assert f"stop `learnright serve`, or run this command while it runs so it goes through its admin socket" \
           f" {db}.admin.sock" in message
    assert os.path.basename(sys.executable) in message or "python" in message
