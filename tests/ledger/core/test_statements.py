import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from ledger.core.envelope import render_envelope, verify_envelope
from ledger.core.signing import SignatureError
from ledger.core.statements import (
    FORMAT_VERSION, StatementLine, build_statement, canonical_bytes, content_hash, ledger_section, render_json,
    settle, to_document,
)
from tests.ledger.keys import SIGNER


def test_residual_is_carried():
    assert settle(Decimal("10.005"), "USD", Decimal(0)) == (Decimal("10.00"), Decimal("0.005"))
    assert settle(Decimal("99.5"), "JPY", Decimal(0)) == (Decimal("100"), Decimal("-0.5"))


def test_under_minimum_or_negative_is_carried_whole():
    assert settle(Decimal("9.99"), "USD", Decimal("10")) == (Decimal(0), Decimal("9.99"))
    assert settle(Decimal("-3.2"), "USD", Decimal(0)) == (Decimal(0), Decimal("-3.2"))


@given(
    st.lists(st.decimals(min_value=-50, max_value=500, places=12, allow_nan=False), min_size=1, max_size=24),
    st.sampled_from(["JPY", "USD", "BHD"]),
    st.decimals(min_value=0, max_value=100, places=2, allow_nan=False),
)
def test_payouts_plus_carry_equal_accruals_over_any_number_of_periods(monthly, currency, minimum):
    carry, paid = Decimal(0), Decimal(0)
    for accrued in monthly:
        payable, carry = settle(accrued + carry, currency, minimum)
        assert payable >= 0
        paid += payable
    assert paid + carry == sum(monthly)


# -- format 5: the ledger section is the close root; stored format-4 files still verify ---------

ROOT = "3b6f1c0e9d2a4857b1e0c6f5a9d3e2b7c4f8a1d6e0b9c3f7a2e5d8b1c4f7a0e3"
OTHER_ROOT = "f" * 64
# The signed file of a format-4 statement as Learnright handed it out before format 5
# (envelope 1, chain head and last entry id), frozen here: it must keep verifying.
STORED_FORMAT_4 = Path(__file__).parent / "stored" / "format4_2026-04_h-ann_USD.json"
FORMAT_4_HEAD = "ad1df200a830fc9f4cd7d727f37351a1e4205d2bad6e657d65dfebcaa5f8d745"


def april_statement(close_root: str = ROOT):
    line = StatementLine(
        period="2026-04", source_id="src-novels", platform_id="orbit", model_id="orbit-7b", kind="inference",
        unit="answers", quantity=Decimal("1000"), rate=Decimal("0.0025"), per=1, amount=Decimal("2.5"), entries=3,
        license_id="lic-a", license_version=1,
    )
    return build_statement(period="2026-04", holder_id="h-ann", holder_name="Ann Writes", currency="USD",
                           lines=[line], carry_in=Decimal("0.004"), payout_minimum=Decimal(0), close_root=close_root)


def signed_file(document: dict) -> bytes:
    return render_envelope(document, signature=SIGNER.sign(canonical_bytes(document)),
                           key_fingerprint=SIGNER.fingerprint)


def test_a_format_5_statement_carries_the_close_root_and_nothing_batch_dependent():
    statement = april_statement()
    document = to_document(statement)
    assert FORMAT_VERSION == 5 and document["format_version"] == 5
    assert document["ledger"] == {"close_root": ROOT}
    assert ledger_section(document).close_root == ROOT
    assert json.loads(render_json(statement)) == document
    # Two closes with the same root (a rebuild from the same log) sign the same bytes.
    assert content_hash(april_statement()) == content_hash(statement)
    assert content_hash(april_statement(OTHER_ROOT)) != content_hash(statement)


def test_a_format_5_statement_round_trips_through_envelope_2_and_verifies():
    document = to_document(april_statement())
    data = signed_file(document)
    envelope = json.loads(data)
    assert list(envelope)[:4] == ["envelope_version", "format_version", "statement_id", "close_root"]
    assert (envelope["envelope_version"], envelope["close_root"]) == (2, ROOT) and "chain_head" not in envelope
    assert envelope["statement"] == document
    checked = verify_envelope(data, SIGNER.key.public_key(), "ann.json")
    assert (checked.format_version, checked.close_root, checked.chain_head) == (5, ROOT, None)
    assert (checked.payable, checked.content_hash) == ("2.50", content_hash(april_statement()))


def test_a_changed_close_root_in_the_envelope_is_named_with_both_values():
    data = signed_file(to_document(april_statement()))
    outside = data.replace(ROOT.encode(), OTHER_ROOT.encode(), 1)  # the repeated member comes first
    with pytest.raises(SignatureError, match=f"close_root '{OTHER_ROOT}' differs from the signed statement's '{ROOT}'"):
        verify_envelope(outside, SIGNER.key.public_key(), "ann.json")
    inside = data.replace(ROOT.encode(), OTHER_ROOT.encode())  # and in the signed statement too
    with pytest.raises(SignatureError, match="does not match the statement"):
        verify_envelope(inside, SIGNER.key.public_key(), "ann.json")


def test_an_envelope_that_does_not_fit_the_statement_format_is_refused():
    data = signed_file(to_document(april_statement()))
    as_v1 = data.replace(b'"envelope_version": 2', b'"envelope_version": 1').replace(b'"close_root"', b'"chain_head"', 1)
    with pytest.raises(SignatureError, match="envelope_version 1 does not fit statement format_version 5"):
        verify_envelope(as_v1, SIGNER.key.public_key(), "ann.json")
    newer = data.replace(b'"envelope_version": 2', b'"envelope_version": 3')
    with pytest.raises(SignatureError, match="envelope_version 3 is not one of 1, 2 .written by a newer Learnright"):
        verify_envelope(newer, SIGNER.key.public_key(), "ann.json")


def test_a_stored_format_4_file_in_envelope_1_still_verifies_byte_for_byte():
    data = STORED_FORMAT_4.read_bytes()
    checked = verify_envelope(data, SIGNER.key.public_key(), STORED_FORMAT_4.name)
    assert (checked.format_version, checked.chain_head, checked.close_root) == (4, FORMAT_4_HEAD, None)
    envelope = json.loads(data)
    assert envelope["envelope_version"] == 1 and envelope["chain_head"] == FORMAT_4_HEAD
    section = ledger_section(envelope["statement"])
    assert (section.chain_head, section.last_entry_id, section.close_root) == (FORMAT_4_HEAD, 21, None)
    # The file Learnright hands out for the stored document is still exactly the old one.
    assert render_envelope(envelope["statement"], signature=envelope["signature"]["value"],
                           key_fingerprint=envelope["signature"]["key_fingerprint"]) == data


def test_a_changed_chain_head_in_an_envelope_1_is_still_named():
    data = STORED_FORMAT_4.read_bytes().replace(FORMAT_4_HEAD.encode(), OTHER_ROOT.encode(), 1)
    with pytest.raises(SignatureError, match=f"chain_head '{OTHER_ROOT}' differs from the signed statement's"):
        verify_envelope(data, SIGNER.key.public_key(), STORED_FORMAT_4.name)
