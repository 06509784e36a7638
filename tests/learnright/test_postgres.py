"""`learnright postgres up|down|status`: a throwaway PostgreSQL from Debian's package, on loopback.

Connections go through Debian's own ``psql`` (the shared virtualenv has no PostgreSQL driver).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ground.errors import ConfigError
from learnright import postgres
from learnright.broker import free_port
from learnright.cli import app

runner = CliRunner()


def installed() -> bool:
    try:
        postgres.find_bin_dir()
    except ConfigError:
        return False
    return True


needs_postgres = pytest.mark.skipif(not installed(), reason="needs Debian's postgresql (make postgres)")


@pytest.fixture
def state_dir():
    """A state directory the ``postgres`` user can reach when the tests run as root (pytest's are 0700)."""
    parent = Path(tempfile.mkdtemp(prefix="learnright-pg-test-"))
    parent.chmod(0o755)
    try:
        yield parent / "pg"
    finally:
        postgres.down(parent / "pg")  # what a failed test left running
        shutil.rmtree(parent)


def psql(dsn: str, sql: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(postgres.find_bin_dir() / "psql"), dsn, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                           "-c", sql], capture_output=True, text=True, timeout=60)


@pytest.mark.postgres
@needs_postgres
def test_up_connect_keep_down(state_dir, monkeypatch):
    port = free_port()
    monkeypatch.setenv("LEARNRIGHT_POSTGRES__STATE_DIR", str(state_dir))
    monkeypatch.setenv("LEARNRIGHT_POSTGRES__PORT", str(port))
    dsn = f"dbname=learnright host=127.0.0.1 port={port} user=learnright"

    up = runner.invoke(app, ["postgres", "up"])
    assert up.exit_code == 0, up.output
    assert up.output.splitlines()[-1] == dsn
    who = psql(dsn, "select current_database(), current_user, current_setting('listen_addresses'),"
                    " current_setting('unix_socket_directories')")
    assert who.returncode == 0, who.stderr
    assert who.stdout.strip() == "learnright|learnright|127.0.0.1|"
    rules = psql(dsn, "select type, database, user_name, address, auth_method from pg_hba_file_rules")
    assert rules.stdout.strip() == "host|{all}|{all}|127.0.0.1|trust"  # trusted from loopback, nothing else
    assert psql(dsn, "create table kept (n int); insert into kept values (7)").returncode == 0

    again = runner.invoke(app, ["postgres", "up"])  # already running: the same cluster, data untouched
    assert again.exit_code == 0 and again.output.splitlines()[-1] == dsn
    status = runner.invoke(app, ["postgres", "status"])
    assert status.exit_code == 0 and f"running at 127.0.0.1:{port}" in status.output
    assert runner.invoke(app, ["postgres", "status", "--dsn"]).output == dsn + "\n"

    down = runner.invoke(app, ["postgres", "down"])
    assert down.exit_code == 0 and "PostgreSQL stopped" in down.output
    stopped = runner.invoke(app, ["postgres", "status"])
    assert stopped.exit_code == 1 and "not running" in stopped.output
    assert psql(dsn, "select 1").returncode != 0

    kept = runner.invoke(app, ["postgres", "up", "--keep"])
    assert kept.exit_code == 0, kept.output
    assert psql(dsn, "select n from kept").stdout.strip() == "7"
    assert runner.invoke(app, ["postgres", "down"]).exit_code == 0

    fresh = runner.invoke(app, ["postgres", "up"])
    assert fresh.exit_code == 0, fresh.output
    gone = psql(dsn, "select n from kept")
    assert gone.returncode != 0 and 'relation "kept" does not exist' in gone.stderr
    assert runner.invoke(app, ["postgres", "down"]).exit_code == 0
    assert runner.invoke(app, ["postgres", "down"]).output == "no PostgreSQL was running\n"


@pytest.mark.postgres
@needs_postgres
@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to the postgres user")
def test_as_root_a_state_dir_the_postgres_user_cannot_reach_is_refused_by_name(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match=f"cannot reach {private}/pg: {private} is not searchable"):
        postgres.up(private / "pg")


def test_the_newest_major_version_installed_is_chosen(tmp_path, monkeypatch):
    for major in ("9", "16", "15"):
        (tmp_path / major / "bin").mkdir(parents=True)
        (tmp_path / major / "bin" / "initdb").touch()
    (tmp_path / "99" / "bin").mkdir(parents=True)  # a client-only major: no server, not chosen
    monkeypatch.setattr(postgres, "DEBIAN_ROOT", tmp_path)
    assert postgres.find_bin_dir() == tmp_path / "16" / "bin"


def test_without_a_server_the_error_says_how_to_install_one(tmp_path, monkeypatch):
    monkeypatch.setattr(postgres, "DEBIAN_ROOT", tmp_path)
    with pytest.raises(ConfigError, match=r"install Debian's postgresql \(`make postgres`"):
        postgres.find_bin_dir()
    with pytest.raises(ConfigError, match=f"postgres.bin_dir {tmp_path} lacks initdb"):
        postgres.find_bin_dir(tmp_path)
