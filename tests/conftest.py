"""Shared fixtures: one real Kafka broker per test session, own topics and ledger per test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from learnright import broker
from ground.settings import LakeLocation, Settings

# Auditor queries run below the service's CPU priority by default (``sql.nice``). Tests give many of them
# a time limit of seconds, and a test machine is busy with other tests at normal priority, which would
# starve those queries into timeouts: here they run at the caller's priority (children inherit this), and
# tests/ledger/storage/test_sql.py tests the lowered priority itself.
os.environ.setdefault("LEARNRIGHT_SQL__NICE", "0")

BOOK = """
format = 1

[[holders]]
id = "h-ann"
name = "Ann Writes"

[[holders]]
id = "h-bo"
name = "Bo Pictures"

[[sources]]
id = "src-novels"
holder = "h-ann"

[[sources]]
id = "src-photos"
holder = "h-bo"

[[licenses]]
id = "lic-novels"
source = "src-novels"
effective_from = 2026-01-01T00:00:00Z
currency = "USD"
training = { rate = 0.80, per = 1000000, unit = "tokens" }
inference = { rate = 0.002 }

[[licenses]]
id = "lic-novels"
version = 2
source = "src-novels"
effective_from = 2026-03-15T00:00:00Z
currency = "USD"
training = { rate = 1.20, per = 1000000, unit = "tokens" }
inference = { rate = 0.003 }

[[licenses]]
id = "lic-photos"
source = "src-photos"
effective_from = 2026-01-01T00:00:00Z
currency = "JPY"
training = { rate = 5, per = 1, unit = "items" }
inference = { rate = 1 }
"""


@pytest.fixture(scope="session")
def license_book_text() -> str:
    """A small license book: two holders, a USD source with a mid-March price change, a JPY source."""
    return BOOK


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real Kafka broker for the whole session; KAFKA_BOOTSTRAP_SERVERS overrides it."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    settings = Settings()
    state_dir = tmp_path_factory.mktemp("kafka")
    state = broker.up(state_dir, version=settings.broker.kafka_version, cache_dir=settings.broker.cache_dir,
                      heap="512m", timeout_s=120)
    try:
        yield state.bootstrap_servers
    finally:
        broker.down(state_dir)


@pytest.fixture
def make_settings(kafka_bootstrap: str, tmp_path: Path):
    """Factory of settings with this test's own topics (a fresh prefix) and ledger file.

    A consumer waits up to 60 s (not the default 10 s) for its group to assign it partitions
    before ``--until-idle`` gives up: on a loaded machine a join has taken longer than 10 s. The
    wait ends as soon as partitions are assigned, so this only moves a failure's deadline.
    """

    def make(**consumer: object) -> Settings:
        base = Settings()
        return base.model_copy(update={
            "db": tmp_path / f"ledger-{uuid.uuid4().hex[:6]}.duckdb",
            "kafka": base.kafka.model_copy(update={
                "bootstrap_servers": kafka_bootstrap,
                "topic_prefix": f"t{uuid.uuid4().hex[:10]}",
                "partitions": 2,
            }),
            "consumer": base.consumer.model_copy(update={"group_id": f"g{uuid.uuid4().hex[:8]}", "idle_timeout_s": 60.0,
                                                          **consumer}),
        })

    return make


@pytest.fixture(scope="session")
def postgres_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real PostgreSQL server for the whole session (Debian's package, started by the project).

    LEARNRIGHT_TEST_POSTGRES_DSN (a libpq string of a server's maintenance database) overrides it.
    """
    if os.environ.get("LEARNRIGHT_TEST_POSTGRES_DSN"):
        yield os.environ["LEARNRIGHT_TEST_POSTGRES_DSN"]
        return
    from learnright import postgres
    parent = Path(tempfile.mkdtemp(prefix="learnright-pg-session-"))
    parent.chmod(0o755)  # as root, the server runs as Debian's postgres user, which cannot enter pytest's 0700 dirs
    state = postgres.up(parent / "pg")
    try:
        yield state.dsn
    finally:
        postgres.down(parent / "pg")
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def lake_location(postgres_dsn: str, tmp_path: Path) -> LakeLocation:
    """A fresh lake of this test's own: a new catalog database on the session's server, Parquet under tmp_path."""
    import psycopg
    name = f"lake_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as pg:
        pg.execute(f"CREATE DATABASE {name}")
    catalog = " ".join(part for part in postgres_dsn.split() if not part.startswith("dbname="))
    return LakeLocation(url=f"ducklake:postgres:dbname={name} {catalog}", data_path=tmp_path / "lake")


@pytest.fixture
def run_dir(monkeypatch: pytest.MonkeyPatch) -> Path:
    """A short ``XDG_RUNTIME_DIR`` of this test's own, for admin sockets (tmp_path is too deep for one)."""
    path = Path(tempfile.mkdtemp(prefix="lr-run-"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)
