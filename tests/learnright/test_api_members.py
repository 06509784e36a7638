"""IDOR: member and collective tokens on every statement endpoint and download format.

Two collectives (cmo-duo with m-eva and m-finn, cmo-solo with m-gus) and a plain holder
h-plain, April closed. Every token is tried against every statement of every kind, in
every format; what it may not read answers byte for byte like an id that does not exist.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from ground.metrics import Metrics
from ground.settings import Settings
from learnright.api import create_app
from ledger.services.close import close_period
from ledger.services.tokens import AUDITOR, HOLDER, MEMBER, TokenError, create_token
from ledger.storage.store import Ledger
from tests.ledger.keys import SIGNER
from tests.ledger.services.test_collective_close import BOOK, ingest, usage

T0 = datetime(2026, 6, 2, tzinfo=timezone.utc)
MORE = """
[[holders]]
id = "cmo-solo"
name = "Solo Collective"
members = [{ id = "m-gus", name = "Gus" }]

[[holders]]
id = "h-plain"
name = "Plain Holder"

[[sources]]
id = "src-gus"
holder = "cmo-solo"

[[sources]]
id = "src-plain"
holder = "h-plain"

[[licenses]]
id = "lic-gus"
source = "src-gus"
effective_from = 2026-01-01T00:00:00Z
currency = "USD"
training = { rate = 1, per = 1, unit = "units" }

[[licenses]]
id = "lic-plain"
source = "src-plain"
effective_from = 2026-01-01T00:00:00Z
currency = "USD"
training = { rate = 1, per = 1, unit = "units" }

[[distributions]]
collective = "cmo-solo"
effective_from = 2026-01-01T00:00:00Z
members.m-gus = { sources = ["src-gus"] }
"""
FORMATS = ("", "/json", "/csv", "/pdf")


@pytest.fixture
def served(tmp_path):
    path = tmp_path / "ledger.duckdb"
    settings = Settings().model_copy(update={"db": path, "snapshots_dir": tmp_path / "snapshots",
                                             "signing_key": tmp_path / "no-key.pem"})
    with Ledger.open(path) as ledger:
        ledger.apply_licenses(BOOK + MORE, "two-collectives.toml")
        ingest(ledger, [usage("a", 4, 2, "src-eva", 20), usage("b", 4, 20, "src-shared", 10),
                        usage("c", 4, 3, "src-gus", 7), usage("d", 4, 4, "src-plain", 5)], 0)
        close_period(ledger, "2026-04", now=datetime(2026, 5, 3, tzinfo=timezone.utc), signer=SIGNER)
        tokens = {
            "cmo-duo": create_token(ledger, role=HOLDER, holder_id="cmo-duo", now=T0).token,
            "cmo-solo": create_token(ledger, role=HOLDER, holder_id="cmo-solo", now=T0).token,
            "h-plain": create_token(ledger, role=HOLDER, holder_id="h-plain", now=T0).token,
            "m-eva": create_token(ledger, role=MEMBER, holder_id="m-eva", now=T0).token,
            "m-finn": create_token(ledger, role=MEMBER, holder_id="m-finn", now=T0).token,
            "m-gus": create_token(ledger, role=MEMBER, holder_id="m-gus", now=T0).token,
            "auditor": create_token(ledger, role=AUDITOR, holder_id=None, now=T0).token,
        }
        members = {r.member_id: r.statement_id for r in ledger.member_statements()}
        holders = {r.holder_id: r.statement_id for r in ledger.statement_rows()}
        app = create_app(ledger=ledger, settings=settings, metrics=Metrics(), now=lambda: T0)
        with TestClient(app) as client:
            yield client, tokens, members, holders, ledger


def auth(token):
    return {"Authorization": f"Bearer {token}"}


# Which member statements each token may read; everything else must look missing.
MAY_READ_MEMBERS = {
    "cmo-duo": {"m-eva", "m-finn"}, "cmo-solo": {"m-gus"}, "h-plain": set(),
    "m-eva": {"m-eva"}, "m-finn": {"m-finn"}, "m-gus": {"m-gus"}, "auditor": {"m-eva", "m-finn", "m-gus"},
}
MAY_READ_HOLDERS = {
    "cmo-duo": {"cmo-duo"}, "cmo-solo": {"cmo-solo"}, "h-plain": {"h-plain"},
    "m-eva": set(), "m-finn": set(), "m-gus": set(), "auditor": {"cmo-duo", "cmo-solo", "h-plain"},
}


def test_every_token_reads_exactly_what_it_may_and_the_rest_answers_like_a_missing_id(served):
    client, tokens, members, holders, _ = served
    assert set(members) == {"m-eva", "m-finn", "m-gus"}
    for who, token in tokens.items():
        for fmt in FORMATS:
            missing = client.get(f"/v1/member-statements/ms_00000000000000000000{fmt}", headers=auth(token))
            assert missing.status_code == 404
            for member, statement_id in members.items():
                answer = client.get(f"/v1/member-statements/{statement_id}{fmt}", headers=auth(token))
                if member in MAY_READ_MEMBERS[who]:
                    assert answer.status_code == 200, (who, member, fmt)
                else:
                    assert (answer.status_code, answer.content) == (missing.status_code, missing.content), (who, member, fmt)
            missing_holder = client.get(f"/v1/statements/st_00000000000000000000{fmt}", headers=auth(token))
            for holder, statement_id in holders.items():
                answer = client.get(f"/v1/statements/{statement_id}{fmt}", headers=auth(token))
                if holder in MAY_READ_HOLDERS[who]:
                    assert answer.status_code == 200, (who, holder, fmt)
                else:
                    assert (answer.status_code, answer.content) == (missing_holder.status_code,
                                                                    missing_holder.content), (who, holder, fmt)
        listed = client.get("/v1/member-statements", headers=auth(token)).json()["statements"]
        assert {s["member_id"] for s in listed} == MAY_READ_MEMBERS[who], who
        listed = client.get("/v1/statements", headers=auth(token)).json()["statements"]
        assert {s["holder_id"] for s in listed} == MAY_READ_HOLDERS[who], who


def test_another_collectives_member_answers_like_an_unknown_member(served):
    client, tokens, _, _, _ = served
    for who, other in (("cmo-duo", "m-gus"), ("cmo-solo", "m-eva"), ("m-eva", "m-finn"), ("h-plain", "m-eva")):
        unknown = client.get("/v1/member-statements?member=m-nobody", headers=auth(tokens[who]))
        answer = client.get(f"/v1/member-statements?member={other}", headers=auth(tokens[who]))
        assert unknown.status_code == 404
        assert (answer.status_code, answer.content) == (unknown.status_code, unknown.content), (who, other)
    own = client.get("/v1/member-statements?member=m-finn", headers=auth(tokens["cmo-duo"])).json()["statements"]
    assert [s["member_id"] for s in own] == ["m-finn"]


def test_a_member_token_gets_no_holder_data_and_names_a_known_member(served):
    client, tokens, _, _, ledger = served
    assert client.get("/v1/royalties/monthly", headers=auth(tokens["m-eva"])).json() == {"royalties": []}
    assert client.get("/v1/royalties/open", headers=auth(tokens["m-eva"])).status_code == 403
    with pytest.raises(TokenError, match="m-nobody"):
        create_token(ledger, role=MEMBER, holder_id="m-nobody", now=T0)


def test_statements_get_prints_a_member_statement_as_the_cli_does(served):
    import base64

    from learnright.admin.operations import statements_get
    from ledger.core.envelope import verify_envelope

    _, _, members, _, ledger = served
    found = statements_get(ledger, None, statement_id=members["m-finn"], format="json")
    checked = verify_envelope(base64.b64decode(found["body"]), SIGNER.key.public_key(), "m-finn.json")
    assert (checked.statement_id, checked.holder_id) == (members["m-finn"], "m-finn")
    assert statements_get(ledger, None, statement_id="ms_nothing", format="json") == {"found": False, "body": None}
