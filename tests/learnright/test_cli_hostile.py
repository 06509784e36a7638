"""Hostile input through the real CLI (issue 13): ids that make bad file names, an auditor after token hashes.

No broker: `close` runs with --no-publish, `sql` needs only DuckDB files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from learnright.cli import app
from ledger.services.tokens import AUDITOR, HOLDER, create_token
from ledger.storage.snapshots import list_snapshots, publish_snapshot
from ledger.storage.store import Ledger
from tests.learnright.books import book_two_holders
from tests.ledger.services.test_period_files import closed_ledger

runner = CliRunner()
T0 = datetime(2026, 6, 2, tzinfo=timezone.utc)
PHOTOS_V2 = """
[[licenses]]
id = "lic-photos"
version = 2
source = "src-photos"
effective_from = 2026-07-01T00:00:00Z
currency = "JPY"
training = { rate = 6, per = 1, unit = "items" }
inference = { rate = 1 }
"""


@pytest.fixture
def env(tmp_path, monkeypatch) -> Path:
    """Snapshots, SQL spill and signing key under this test's own directory."""
    monkeypatch.setenv("LEARNRIGHT_SNAPSHOTS_DIR", str(tmp_path / "snapshots"))
    monkeypatch.setenv("LEARNRIGHT_SQL__TEMP_DIRECTORY", str(tmp_path / "spill"))
    monkeypatch.setenv("LEARNRIGHT_SIGNING_KEY", str(tmp_path / "key.pem"))
    return tmp_path / "snapshots"


# -- close --out: one file per holder and platform, and exactly the files written -------------


def test_close_out_writes_a_file_per_dotted_holder_and_slashed_platform_and_lists_them(tmp_path, env):
    """Before: acme.one and acme.two both became 2026-04_acme.json, and orbit/eu crashed the reports."""
    db = closed_ledger(tmp_path / "ledger.duckdb")
    out = tmp_path / "files" / "out"
    closed = runner.invoke(app, ["close", "--period", "2026-04", "--db", str(db), "--out", str(out), "--no-publish"])
    assert closed.exit_code == 0, closed.output
    listed = [Path(line.strip()) for line in closed.stdout.splitlines() if line.startswith("  ")]
    on_disk = sorted(p for p in (tmp_path / "files").rglob("*") if p.is_file())
    assert sorted(listed) == on_disk and len(on_disk) == 3 * 3 + 2
    assert f"{len(on_disk)} files in {out}:" in closed.stdout
    assert {p.name for p in on_disk if p.suffix == ".json"} == {
        "2026-04_acme.one_USD.json", "2026-04_acme.two_USD.json", "2026-04_%2E.%2Fup_USD.json"}
    assert out / "2026-04_orbit%2Feu.dsr.tsv" in on_disk
    holders = {json.loads(p.read_text())["statement"]["holder"]["id"] for p in on_disk if p.suffix == ".json"}
    assert holders == {"acme.one", "acme.two", "../up"}


def test_close_out_refuses_names_that_clash_writes_nothing_and_keeps_the_close(tmp_path, env):
    db = closed_ledger(tmp_path / "ledger.duckdb", holders=("Acme", "acme"), platforms=("orbit",))
    out = tmp_path / "out"
    closed = runner.invoke(app, ["close", "--period", "2026-04", "--db", str(db), "--out", str(out), "--no-publish"])
    assert closed.exit_code == 2
    assert "2026-04 was already closed: 2 statements" in closed.stdout
    assert "error:" in closed.stderr and "holder 'Acme'" in closed.stderr and "holder 'acme'" in closed.stderr
    assert "differ only in case" in closed.stderr and "nothing was written" in closed.stderr
    assert not out.exists()


# -- sql: an auditor sees a snapshot, never the ledger file and its token hashes ---------------


@pytest.fixture
def ledger_with_tokens(tmp_path, license_book_text) -> tuple[Path, set[str]]:
    """The two-holder ledger with a holder and an auditor token; and every secret of theirs as text."""
    path = book_two_holders(tmp_path / "ledger.duckdb", license_book_text)
    with Ledger.open(path) as ledger:
        issued = [create_token(ledger, role=HOLDER, holder_id="h-ann", now=T0, label="ann's laptop"),
                  create_token(ledger, role=AUDITOR, holder_id=None, now=T0, label="audit firm")]
        stored = ledger.query("SELECT token_id, secret_sha256 FROM api_tokens")
    secrets = {value for row in stored for value in row} | {t.token.split(".", 2)[2] for t in issued}
    secrets |= {"ann's laptop", "audit firm"}
    assert len(secrets) == 8
    return path, secrets


def attacks(ledger: Path, snapshots: Path) -> dict[str, tuple[str, bool]]:
    """Query -> whether DuckDB answers it at all (with nothing secret) rather than refusing it."""
    return {
        "the token table": ("SELECT * FROM api_tokens", False),
        "the token history": ("FROM api_token_changes", False),
        "query_table": ("FROM query_table('api_tokens')", False),
        "query_table of a list": ("FROM query_table(['api_tokens', 'api_token_changes'])", False),
        "query": ("FROM query('SELECT * FROM api_tokens')", False),
        "read_duckdb of the ledger": (f"FROM read_duckdb('{ledger}', table_name='api_tokens')", False),
        "read_text of the ledger": (f"SELECT content FROM read_text('{ledger}')", False),
        "read_blob of the ledger": (f"SELECT content FROM read_blob('{ledger}')", False),
        "a listing beside the ledger": (f"FROM glob('{ledger.parent}/*')", False),
        "another snapshot's parquet": (f"FROM read_parquet('{snapshots}/*/parquet/*.parquet')", False),
        "secrets": ("FROM duckdb_secrets()", False),
        "the catalog's tables": ("SELECT * FROM duckdb_tables() WHERE table_name LIKE '%token%'", True),
        "the catalog's columns": ("SELECT * FROM duckdb_columns() WHERE column_name LIKE '%secret%'", True),
        "the databases": ("SELECT database_name, path FROM duckdb_databases()", True),
    }


@pytest.mark.parametrize("name", sorted(attacks(Path("/x"), Path("/y"))))
def test_an_auditor_query_reaches_no_token_and_no_file_but_its_snapshot(ledger_with_tokens, env, name):
    """Before: `learnright sql` ran on the ledger file and `SELECT * FROM api_tokens` listed the hashes."""
    path, secrets = ledger_with_tokens
    assert runner.invoke(app, ["sql", "--db", str(path), "SELECT 1"]).exit_code == 0  # a snapshot for the parquet probe
    query, answers = attacks(path, env)[name]
    result = runner.invoke(app, ["sql", "--db", str(path), "--format", "json", query])
    assert not [s for s in secrets if s in result.output], result.output
    if not answers:
        assert result.exit_code == 2, result.output
        assert "error:" in result.stderr
        return
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    if name == "the databases":
        assert [r for r in rows if r[1]] == [[r[0], str(list_snapshots(env)[-1].database)] for r in rows if r[1]]
        assert str(path) not in result.stdout
    else:
        assert rows == []


def test_an_audit_query_answers_from_a_current_snapshot_and_names_it(ledger_with_tokens, env):
    path, _ = ledger_with_tokens
    query = "SELECT count(*) FILTER (WHERE NOT balanced) AS off, count(*) AS n FROM audit_reconciliation"
    first = runner.invoke(app, ["sql", "--db", str(path), query])
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == ['"off","n"', "0,6"]
    [snapshot] = list_snapshots(env)
    with Ledger.open(path, read_only=True) as ledger:
        assert snapshot.last_entry_id == ledger.last_entry_id == 6
        root = ledger.get_close("2026-04").root
    assert first.stderr.strip() == (
        f"answered from snapshot {snapshot.snapshot_id} (created {snapshot.created_at.isoformat()}, entries up to 6,"
        f" last close 2026-04 root {root});"
        " published now: the latest snapshot did not hold all the ledger holds")

    # A token is not in a snapshot, so a new one does not make the latest one stale.
    with Ledger.open(path) as ledger:
        create_token(ledger, role=AUDITOR, holder_id=None, now=T0)
    again = runner.invoke(app, ["sql", "--db", str(path), query])
    assert again.exit_code == 0 and again.stdout == first.stdout
    assert again.stderr.strip() == (f"answered from snapshot {snapshot.snapshot_id}"
                                    f" (created {snapshot.created_at.isoformat()}, entries up to 6,"
                                    f" last close 2026-04 root {root})")
    assert list_snapshots(env) == [snapshot]

    # A new license version adds rows but no entry: the latest no longer holds all, so a new one answers.
    with Ledger.open(path) as ledger:
        ledger.apply_licenses(ledger.query("SELECT body FROM license_documents ORDER BY ALL LIMIT 1")[0][0]
                              + PHOTOS_V2, "book-v2.toml")
    fresh = runner.invoke(app, ["sql", "--db", str(path), "SELECT count(*) AS n FROM license_versions"])
    assert fresh.exit_code == 0, fresh.output
    assert fresh.stdout.splitlines() == ['"n"', "4"]
    newest = list_snapshots(env)[-1]
    assert newest != snapshot and f"answered from snapshot {newest.snapshot_id}" in fresh.stderr
    assert "published now" in fresh.stderr


def test_while_the_service_holds_the_ledger_the_latest_snapshot_answers_and_says_it_may_lag(
        ledger_with_tokens, env):
    path, _ = ledger_with_tokens
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom ledger.storage.store import Ledger\n"
                               f"ledger = Ledger.open({str(path)!r})\nprint('ready', flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        none = runner.invoke(app, ["sql", "--db", str(path), "SELECT 1 AS one"])
        assert none.exit_code == 2
        assert "is held by the running service" in none.stderr and "has no snapshot" in none.stderr
    finally:
        holder.stdin.close()
        holder.wait(timeout=120)
    with Ledger.open(path, read_only=True) as ledger:
        snapshot = publish_snapshot(ledger, env, now=T0)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom ledger.storage.store import Ledger\n"
                               f"ledger = Ledger.open({str(path)!r})\nprint('ready', flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        held = runner.invoke(app, ["sql", "--db", str(path), "SELECT count(*) AS n FROM statements"])
        tokens = runner.invoke(app, ["sql", "--db", str(path), "FROM api_tokens"])
    finally:
        holder.stdin.close()
        holder.wait(timeout=120)
    assert held.exit_code == 0, held.output
    assert held.stdout.splitlines() == ['"n"', "6"]
    assert f"answered from snapshot {snapshot.snapshot_id}" in held.stderr
    assert "is held by the running service, so this snapshot may lag it" in held.stderr
    assert tokens.exit_code == 2 and "api_tokens does not exist" in tokens.stderr
