"""Hostile input to the HTTP API: holder ids that break headers, oversized bodies, errors that must stay JSON.

Every test runs the real app (FastAPI's TestClient) over a real DuckDB ledger.
"""

from __future__ import annotations

import email.message
import email.utils
import json
import logging

import pytest
from fastapi.testclient import TestClient

import learnright.api.holders as holders
from ground.metrics import Metrics
from ground.settings import Settings
from learnright.api import create_app
from learnright.api.downloads import content_disposition
from ledger.core.statements import render_csv
from ledger.services.close import statement_file, statement_pdf
from ledger.services.tokens import AUDITOR, HOLDER, create_token
from ledger.storage.store import Ledger
from tests.learnright.books import book_two_holders
from tests.learnright.test_api import T0, auth

TOKYO = "h-東京"
QUOTE = 'h-q"uote'
CAP = 4096


def with_holders(book_text: str, renames: dict[str, str]) -> str:
    """The license book with each holder id renamed (written as a TOML basic string)."""
    for old, new in renames.items():
        book_text = book_text.replace(f'"{old}"', json.dumps(new, ensure_ascii=False))
    return book_text


@pytest.fixture
def hostile(tmp_path, license_book_text):
    """The two-holder book with holders ``h-東京`` and ``h-q"uote``; a body cap of 4 KiB."""
    book = with_holders(license_book_text, {"h-ann": TOKYO, "h-bo": QUOTE})
    path = book_two_holders(tmp_path / "ledger.duckdb", book)
    base = Settings()
    settings = base.model_copy(update={"db": path, "snapshots_dir": tmp_path / "snapshots",
                                       "signing_key": tmp_path / "no-key.pem",
                                       "http": base.http.model_copy(update={"max_body_bytes": CAP})})
    with Ledger.open(path) as ledger:
        tokens = {holder: create_token(ledger, role=HOLDER, holder_id=holder, now=T0).token
                  for holder in (TOKYO, QUOTE)}
        tokens["auditor"] = create_token(ledger, role=AUDITOR, holder_id=None, now=T0).token
        app = create_app(ledger=ledger, settings=settings, metrics=Metrics(), now=lambda: T0)
        with TestClient(app) as client:
            yield client, tokens, ledger


def filenames(header: str) -> tuple[str, str]:
    """(the RFC 5987 ``filename*``, decoded; the plain ``filename``) of a Content-Disposition header."""
    message = email.message.Message()
    message["content-disposition"] = header
    [(disposition, _), *params] = message.get_params(header="content-disposition")
    assert disposition == "attachment"
    [extended] = [value for name, value in params if name == "filename" and isinstance(value, tuple)]
    [plain] = [value for name, value in params if name == "filename" and isinstance(value, str)]
    assert extended[0] == "UTF-8"
    return email.utils.collapse_rfc2231_value(extended), plain


def test_the_disposition_header_is_ascii_with_a_utf8_name_and_a_safe_fallback():
    header = content_disposition('2026-04_h-q"u\\o;te/東京\x07%.csv')
    assert header.isascii()
    exact, fallback = filenames(header)
    assert exact == '2026-04_h-q"u\\o;te/東京\x07%.csv'
    assert fallback == "2026-04_h-q_u_o;te_____.csv"
    assert filenames(content_disposition("2026-04_h-ann_USD.csv")) == ("2026-04_h-ann_USD.csv",) * 2


@pytest.mark.parametrize("holder", [TOKYO, QUOTE])
@pytest.mark.parametrize("fmt", ["json", "csv", "pdf"])
def test_downloads_for_hostile_holder_ids_are_the_statement_with_a_parsable_name(hostile, holder, fmt):
    client, tokens, ledger = hostile
    [sid, *_] = [r.statement_id for r in ledger.statement_rows(holder_id=holder, period="2026-04")]
    document = json.loads(ledger.statement_document(sid).document)
    expected = {"json": lambda: statement_file(ledger, sid), "csv": lambda: render_csv(document),
                "pdf": lambda: statement_pdf(ledger, sid)}[fmt]()
    for token in (tokens[holder], tokens["auditor"]):
        answer = client.get(f"/v1/statements/{sid}/{fmt}", headers=auth(token))
        assert answer.status_code == 200, answer.text
        assert answer.content == expected
        raw = dict(answer.headers.raw)[b"content-disposition"]
        assert raw.isascii()
        exact, fallback = filenames(raw.decode("ascii"))
        assert exact == f"2026-04_{holder}_{document['currency']}.{fmt}"
        assert fallback.isascii() and '"' not in fallback and "\\" not in fallback
        assert fallback.endswith(f"_{document['currency']}.{fmt}")


def test_snapshot_files_carry_the_same_disposition(hostile):
    client, tokens, _ = hostile
    snapshot = client.post("/v1/snapshots", headers=auth(tokens["auditor"])).json()
    answer = client.get(f"/v1/snapshots/{snapshot['snapshot_id']}/parquet/statements.parquet",
                        headers=auth(tokens["auditor"]))
    assert answer.status_code == 200 and answer.content[:4] == b"PAR1"
    assert filenames(answer.headers["content-disposition"]) == ("statements.parquet", "statements.parquet")


def test_an_anonymous_oversized_body_is_refused_401_and_an_authenticated_one_413(hostile):
    client, tokens, _ = hostile
    oversized = json.dumps({"sql": "SELECT 1 AS n", "pad": "x" * CAP}).encode()
    anonymous = client.post("/v1/sql", content=oversized, headers={"Content-Type": "application/json"})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    holder = client.post("/v1/sql", content=oversized, headers={"Content-Type": "application/json",
                                                                **auth(tokens[TOKYO])})
    assert holder.status_code == 403
    refused = client.post("/v1/sql", content=oversized, headers={"Content-Type": "application/json",
                                                                 **auth(tokens["auditor"])})
    assert refused.status_code == 413
    assert refused.json() == {"error": "body_too_large",
                              "message": f"the request body is larger than the limit of {CAP} bytes"
                                         " (LEARNRIGHT_HTTP__MAX_BODY_BYTES)"}
    assert refused.headers["connection"] == "close"


def test_a_body_without_a_length_is_counted_as_it_arrives(hostile):
    client, tokens, _ = hostile

    def chunks():
        yield b'{"sql": "SELECT 1 AS n", "pad": "'
        for _ in range(8):
            yield b"x" * 1024
        yield b'"}'

    refused = client.post("/v1/sql", content=chunks(), headers={"Content-Type": "application/json",
                                                                 **auth(tokens["auditor"])})
    assert refused.status_code == 413 and refused.json()["error"] == "body_too_large"


def test_normal_queries_are_unchanged_and_bad_ones_answer_422_as_json(hostile):
    client, tokens, _ = hostile
    query = {"sql": "SELECT 1 AS n", "format": "csv"}
    answer = client.post("/v1/sql", json=query, headers=auth(tokens["auditor"]))
    assert answer.status_code == 200 and answer.text.splitlines() == ['"n"', "1"]
    for bad in (b"{not json", b'{"format": "csv"}', b'{"sql": "SELECT 1", "format": "xml"}', b"[]", b""):
        refused = client.post("/v1/sql", content=bad, headers={"Content-Type": "application/json",
                                                               **auth(tokens["auditor"])})
        assert refused.status_code == 422, bad
        assert set(refused.json()) == {"error", "message"} and refused.json()["error"] == "invalid_request"
    spec = client.get("/openapi.json").json()
    schema = spec["paths"]["/v1/sql"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"sql", "format"} <= set(schema["properties"]) and schema["required"] == ["sql"]


def test_every_error_answer_is_the_documented_json(hostile, tmp_path):
    client, tokens, ledger = hostile
    [sid, *_] = [r.statement_id for r in ledger.statement_rows(holder_id=TOKYO)]
    # With the snapshots directory present, a 300-character id once reached the file system: ENAMETOOLONG.
    assert client.post("/v1/snapshots", headers=auth(tokens["auditor"])).status_code == 201
    answers = {
        "unknown route": client.get("/v1/nothing-here", headers=auth(tokens["auditor"])),
        "unknown page file": client.get("/app/nothing-here.js"),
        "wrong method": client.delete("/v1/statements", headers=auth(tokens["auditor"])),
        "unknown format": client.get(f"/v1/statements/{sid}/xml", headers=auth(tokens[TOKYO])),
        "300-character snapshot id": client.get(f"/v1/snapshots/{'a' * 300}/ledger.duckdb",
                                                headers=auth(tokens["auditor"])),
        "dotted snapshot id": client.get("/v1/snapshots/..%2F..%2Fetc/ledger.duckdb", headers=auth(tokens["auditor"])),
    }
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {"unknown route": 404, "unknown page file": 404, "wrong method": 405, "unknown format": 422,
                        "300-character snapshot id": 404, "dotted snapshot id": 404}
    for name, answer in answers.items():
        assert answer.headers["content-type"] == "application/json", name
        assert set(answer.json()) == {"error", "message"}, name
        assert str(tmp_path) not in answer.text, name
    assert answers["wrong method"].headers["allow"] == "GET"
    assert answers["300-character snapshot id"].json() == {"error": "not_found", "message": "no such snapshot"}


def test_an_unexpected_error_answers_json_500_with_a_reference_to_the_log(hostile, monkeypatch, caplog, tmp_path):
    client, tokens, ledger = hostile
    [sid, *_] = [r.statement_id for r in ledger.statement_rows(holder_id=TOKYO)]
    secret = f"{tmp_path}/fonts/secret.ttf"

    def crashing(*args, **kwargs):
        raise RuntimeError(f"the PDF renderer could not open {secret}")

    monkeypatch.setattr(holders, "statement_pdf", crashing)
    with caplog.at_level(logging.INFO, logger="learnright.http"):
        failed = client.get(f"/v1/statements/{sid}/pdf", headers=auth(tokens[TOKYO]))
    assert failed.status_code == 500 and failed.headers["content-type"] == "application/json"
    assert failed.json()["error"] == "internal"
    assert failed.json()["message"].startswith("internal error, reference ")
    assert secret not in failed.text and "RuntimeError" not in failed.text
    reference = failed.json()["message"].rsplit(" ", 1)[-1]
    logged = [r for r in caplog.records if getattr(r, "reference", None) == reference]
    assert [r.detail for r in logged] == [f"the PDF renderer could not open {secret}"]
    assert logged[0].exc_info is not None  # the traceback is in the log too
    requests = [r for r in caplog.records if r.getMessage() == "http request" and r.status == 500]
    assert [(r.route, r.token_id) for r in requests] == [("/v1/statements/{statement_id}/{fmt}",
                                                          tokens[TOKYO].split(".")[1])]
    # The service goes on answering.
    assert client.get(f"/v1/statements/{sid}/csv", headers=auth(tokens[TOKYO])).status_code == 200


def test_a_snapshot_file_gone_from_disk_answers_json_500_without_its_path(hostile, tmp_path, caplog):
    """The file is checked before the answer starts (Starlette's FileResponse): the client gets a reference."""
    client, tokens, _ = hostile
    snapshot = client.post("/v1/snapshots", headers=auth(tokens["auditor"])).json()
    gone = tmp_path / "snapshots" / snapshot["snapshot_id"] / "parquet" / "statements.parquet"
    gone.parent.chmod(0o755)
    gone.unlink()
    with caplog.at_level(logging.INFO, logger="learnright.http"):
        failed = client.get(f"/v1/snapshots/{snapshot['snapshot_id']}/parquet/statements.parquet",
                            headers=auth(tokens["auditor"]))
    assert failed.status_code == 500 and failed.json()["error"] == "internal"
    assert str(tmp_path) not in failed.text
    reference = failed.json()["message"].rsplit(" ", 1)[-1]
    assert any(str(gone) in r.detail for r in caplog.records if getattr(r, "reference", None) == reference)
