"""The consent commands on a ledger file: revoke, unlicensed, models summary (no running service)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from learnright.cli import app
from tests.ledger.services.test_consent import revoked_ledger  # noqa: F401 - a fixture


def test_revoke_unlicensed_and_summary_commands(revoked_ledger, tmp_path, monkeypatch):
    ledger, _ = revoked_ledger
    monkeypatch.setenv("LEARNRIGHT_ADMIN_SOCKET", str(tmp_path / "no-service.sock"))
    path = str(ledger.path)
    ledger.close()
    runner = CliRunner()
    listed = runner.invoke(app, ["unlicensed", "--period", "2026-04", "--db", path])
    assert listed.exit_code == 0, listed.output
    assert "2026-04\th-ann\tsrc-novels\torbit\torbit-base\ttraining\t900000.000000000000\ttokens\t1\trevoked" in listed.output
    assert "2 lines of unlicensed use" in listed.output

    past = runner.invoke(app, ["licenses", "revoke", "src-poems", "--effective-at", "2020-01-01T00:00:00Z",
                               "--reason", "r", "--db", path])
    assert past.exit_code == 2 and "may not be in the past" in past.output
    made = runner.invoke(app, ["licenses", "revoke", "src-poems", "--effective-at", "2999-01-01T00:00:00Z",
                               "--reason", "the archive closes", "--platform", "orbit", "--db", path])
    assert made.exit_code == 0, made.output
    assert "src-poems revoked for platform orbit from 2999-01-01T00:00:00+00:00" in made.output

    summary = runner.invoke(app, ["models", "summary", "orbit-base", "--format", "json", "--as-of",
                                  "2026-05-01T00:00:00Z", "--db", path])
    assert summary.exit_code == 0, summary.output
    document = json.loads(summary.stdout)
    assert document["draft"] is True
    assert [r["source_id"] for r in document["data_processing"]["opt_outs"]["revocations_in_force"]] == ["src-novels"]
    markdown = runner.invoke(app, ["models", "summary", "orbit-base", "--as-of", "2026-05-01T00:00:00Z", "--db", path])
    assert markdown.exit_code == 0 and "(DRAFT)" in markdown.stdout
    wrong = runner.invoke(app, ["models", "summary", "orbit-base", "--format", "pdf", "--db", path])
    assert wrong.exit_code == 2 and "--format must be md or json" in wrong.output
