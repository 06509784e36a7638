"""Revocation over HTTP: a holder's own sources only, never in the past, appended to the ledger."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from ground.metrics import Metrics
from ground.settings import Settings
from learnright.api import create_app
from ledger.services.tokens import AUDITOR, HOLDER, PLATFORM, create_token
from ledger.storage.store import Ledger
from tests.learnright.books import book_two_holders

T0 = datetime(2026, 6, 2, tzinfo=timezone.utc)


@pytest.fixture
def served(tmp_path, license_book_text):
    path = book_two_holders(tmp_path / "ledger.duckdb", license_book_text)
    settings = Settings().model_copy(update={"db": path, "snapshots_dir": tmp_path / "snapshots",
                                             "signing_key": tmp_path / "no-key.pem"})
    with Ledger.open(path) as ledger:
        tokens = {
            "ann": create_token(ledger, role=HOLDER, holder_id="h-ann", now=T0).token,
            "auditor": create_token(ledger, role=AUDITOR, holder_id=None, now=T0).token,
        }
        with TestClient(create_app(ledger=ledger, settings=settings, metrics=Metrics(), now=lambda: T0)) as client:
            yield client, tokens, ledger


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_a_holder_revokes_its_own_source_and_another_holders_answers_like_an_unknown_one(served):
    client, tokens, ledger = served
    body = {"effective_at": "2026-07-01T00:00:00Z", "reason": "withdrawn", "platform_id": "p",
            "evidence_url": "https://ann.example/rsl.xml", "evidence_sha256": "0" * 64}
    made = client.post("/v1/sources/src-novels/revocations", json=body, headers=auth(tokens["ann"]))
    assert made.status_code == 201, made.text
    assert made.json()["by"] == "holder:h-ann" and made.json()["effective_at"] == "2026-07-01T00:00:00+00:00"
    (revocation,) = ledger.load_book().revocations
    assert (revocation.revocation_id, revocation.source_id, revocation.platform_id) == (
        made.json()["revocation_id"], "src-novels", "p")

    foreign = client.post("/v1/sources/src-photos/revocations", json=body, headers=auth(tokens["ann"]))
    unknown = client.post("/v1/sources/src-nothing/revocations", json=body, headers=auth(tokens["ann"]))
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.content == unknown.content

    past = client.post("/v1/sources/src-novels/revocations", headers=auth(tokens["ann"]),
                       json={**body, "effective_at": "2026-06-01T00:00:00Z"})
    assert past.status_code == 422 and "may not be in the past" in past.json()["message"]
    naive = client.post("/v1/sources/src-novels/revocations", headers=auth(tokens["ann"]),
                        json={**body, "effective_at": "2026-07-01T00:00:00"})
    assert naive.status_code == 422 and "zone" in naive.json()["message"]
    assert len(ledger.load_book().revocations) == 1  # nothing refused was appended

    auditor = client.post("/v1/sources/src-novels/revocations", json=body, headers=auth(tokens["auditor"]))
    assert auditor.status_code == 403


@pytest.fixture
def platforms(tmp_path):
    """The evidence book (tests/ledger/services/test_evidence.py) served with a signing key and platform tokens."""
    from ledger.core.signing import create_key
    from tests.ledger.services.test_consent import BOOK, at, book, training
    from tests.ledger.services.test_evidence import fine_tune

    key = create_key(tmp_path / "signing.pem")
    settings = Settings().model_copy(update={"db": tmp_path / "ledger.duckdb", "snapshots_dir": tmp_path / "snapshots",
                                             "signing_key": tmp_path / "signing.pem"})
    with Ledger.open(tmp_path / "ledger.duckdb") as ledger:
        ledger.apply_licenses(BOOK, "book.toml")
        book(ledger, [training("t1", at(4, 5), "src-novels", 600_000), fine_tune("f1", at(4, 11), "src-poems", 50)], 0)
        tokens = {name: create_token(ledger, role=PLATFORM, holder_id=None, platform_id=name, now=T0).token
                  for name in ("orbit", "rival")}
        tokens["ann"] = create_token(ledger, role=HOLDER, holder_id="h-ann", now=T0).token
        with TestClient(create_app(ledger=ledger, settings=settings, metrics=Metrics(), now=lambda: T0)) as client:
            yield client, tokens, key


def test_a_platform_token_fetches_the_evidence_of_its_own_models_only(platforms):
    from ledger.core.evidence import verify_evidence
    from ledger.core.signing import parse_public_key

    client, tokens, key = platforms
    fetched = client.get("/v1/models/orbit-legal/evidence/json?as_of=2026-05-01T00:00:00Z",
                         headers=auth(tokens["orbit"]))
    assert fetched.status_code == 200, fetched.text
    checked = verify_evidence(fetched.content, parse_public_key(key.public_pem().encode(), "key"), "download")
    assert (checked.model_id, checked.all_training_licensed) == ("orbit-legal", True)
    assert client.get("/v1/models/orbit-legal/evidence/pdf", headers=auth(tokens["orbit"])).content[:4] == b"%PDF"

    foreign = client.get("/v1/models/orbit-legal/evidence/json", headers=auth(tokens["rival"]))
    unknown = client.get("/v1/models/no-such-model/evidence/json", headers=auth(tokens["orbit"]))
    assert foreign.status_code == unknown.status_code == 404 and foreign.content == unknown.content
    assert client.get("/v1/models/orbit-legal/evidence/json", headers=auth(tokens["ann"])).status_code == 403
    # A platform token reads nothing of any holder.
    for path in ("/v1/statements", "/v1/royalties/monthly", "/v1/royalties/open", "/v1/snapshots"):
        assert client.get(path, headers=auth(tokens["orbit"])).status_code == 403, path
    assert client.get("/v1/me", headers=auth(tokens["orbit"])).json()["platform_id"] == "orbit"
