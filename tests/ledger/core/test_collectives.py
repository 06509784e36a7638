"""Collectives: the golden book worked out by hand, the property, and the license file's declarations.

The book (April 2026), declared in :data:`BOOK`:

    Northern Rights Collective (cmo-north), members Ana, Ben and Cai (Cai's EUR payout minimum is 50).
    Rule v1 from 1 April: src-ana is Ana's, src-ben is Ben's, src-pool is pooled Ana 40 / Ben 30 / Cai 20
    (90 %: 10 % undistributed). Management fee 10 %, capped at EUR 20 and JPY 1000 a month; a 2 %
    "cultural fund" deduction. Rule v2 from 16 April: src-pool becomes Ana 30 / Ben 30 / Cai 30.

    EUR lines: src-ana 100 (5 Apr), src-ben 50 (10 Apr), src-pool 60 before the change and 90 after:
    accrued 300.
      attributed (gross): Ana 100 + 60*.4 + 90*.3 = 151; Ben 50 + 18 + 27 = 95; Cai 12 + 27 = 39;
                          undistributed 6 + 9 = 15.
      fee: 10 % would be 30 > cap 20, so every fee is scaled by 2/3: Ana 10.0666.., Ben 6.3333..,
           Cai 2.6, undistributed 1 (total 20, exactly the cap).
      cultural fund 2 %: Ana 3.02, Ben 1.90, Cai 0.78, undistributed 0.30 (total 6).
      net: Ana 137.91333.., Ben 86.76666.., Cai 35.62, undistributed 13.70 (total 274).
      at 1e-12, largest remainder: fee Ana 10.066666666667 (remainder .67 beats Ben's .33),
           Ben 6.333333333333; net Ana 137.913333333333, Ben 86.766666666667.
      check: 137.913333333333 + 86.766666666667 + 35.62 + 13.70 + 20 + 6 = 300.
      settle: Ana pays 137.91, carries 0.003333333333; Ben pays 86.77, carries -0.003333333333;
              Cai's 35.62 is under its minimum of 50: pays 0, carries 35.62.

    JPY lines (0 decimals): src-ana 1234 (3 Apr), src-pool 1000 (25 Apr, v2): accrued 2234.
      attributed Ana 1534, Ben 300, Cai 300, undistributed 100; fee 10 % = 223.4 (under the
      cap of 1000); fund 44.68; net Ana 1349.92, Ben 264, Cai 264, undistributed 88.
      settle: Ana pays 1350, carries -0.08; Ben 264; Cai 264.

    Undistributed EUR 5.50 of February is still held: on April's statement, aged 2 months.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import assume, given, settings, strategies as st

from ledger.core.collectives import (
    AccrualPortion, HeldUndistributed, distribute, distribution_section, fit, member_document, member_statement,
    render_member_csv, split_signed,
)
from ledger.core.distribution_rules import Deduction, DistributionRule, ManagementFee, Member
from ledger.core.envelope import render_envelope, verify_envelope
from ledger.core.license_file import parse_book
from ledger.core.pdf import render_pdf
from ledger.core.money import to_accrual_scale
from ledger.core.periods import last_instant
from ledger.core.statements import (
    StatementLine, build_statement, canonical_bytes, render_csv, render_document, settle, to_document,
)
from ledger.errors import LicenseFileError
from tests.ledger.keys import SIGNER

GOLDEN = Path(__file__).parents[1] / "golden" / "collective"
ROOT = "3b6f1c0e9d2a4857b1e0c6f5a9d3e2b7c4f8a1d6e0b9c3f7a2e5d8b1c4f7a0e3"

BOOK = """
[[holders]]
id = "cmo-north"
name = "Northern Rights Collective"
members = [
  { id = "m-ana", name = "Ana Lind" },
  { id = "m-ben", name = "Ben Okafor" },
  { id = "m-cai", name = "Cai Berg", payout_minimum = { EUR = 50 } },
]

[[sources]]
id = "src-ana"
holder = "cmo-north"

[[sources]]
id = "src-ben"
holder = "cmo-north"

[[sources]]
id = "src-pool"
holder = "cmo-north"

[[distributions]]
collective = "cmo-north"
version = 1
effective_from = 2026-04-01T00:00:00Z
management_fee = { percent = 10, cap = { EUR = 20, JPY = 1000 } }
deductions = [{ name = "cultural fund", percent = 2 }]
members.m-ana = { sources = ["src-ana"], shares = { src-pool = 40 } }
members.m-ben = { sources = ["src-ben"], shares = { src-pool = 30 } }
members.m-cai = { shares = { src-pool = 20 } }

[[distributions]]
collective = "cmo-north"
version = 2
effective_from = 2026-04-16T00:00:00Z
management_fee = { percent = 10, cap = { EUR = 20, JPY = 1000 } }
deductions = [{ name = "cultural fund", percent = 2 }]
members.m-ana = { sources = ["src-ana"], shares = { src-pool = 30 } }
members.m-ben = { sources = ["src-ben"], shares = { src-pool = 30 } }
members.m-cai = { shares = { src-pool = 30 } }
"""


def at(day: int) -> datetime:
    return datetime(2026, 4, day, tzinfo=timezone.utc)


def line(source: str, platform: str, kind: str, amount: str, quantity: str, rate: str) -> StatementLine:
    return StatementLine(period="2026-04", source_id=source, platform_id=platform, model_id=f"{platform}-7b", kind=kind,
                         unit="tokens" if kind == "training" else "answers", quantity=Decimal(quantity),
                         rate=Decimal(rate), per=1, amount=to_accrual_scale(Decimal(amount)), entries=1, license_id=f"lic-{source}",
                         license_version=1)


# Each statement line with the rule windows its usage fell in; src-pool's EUR line is cut at 16 April.
PORTIONS = {
    "EUR": [
        AccrualPortion(line=line("src-ana", "p-alpha", "training", "100", "1000", "0.1"), at=at(5)),
        AccrualPortion(line=line("src-ben", "p-alpha", "inference", "50", "500", "0.1"), at=at(10)),
        AccrualPortion(line=line("src-pool", "p-alpha", "training", "60", "600", "0.1"), at=at(8)),
        AccrualPortion(line=line("src-pool", "p-alpha", "training", "90", "900", "0.1"), at=at(20)),
    ],
    "JPY": [
        AccrualPortion(line=line("src-ana", "p-beta", "inference", "1234", "1234", "1"), at=at(3)),
        AccrualPortion(line=line("src-pool", "p-beta", "training", "1000", "1000", "1"), at=at(25)),
    ],
}
# The collective's statement lines: the two EUR src-pool portions are one line.
STATEMENT_LINES = {
    "EUR": [PORTIONS["EUR"][0].line, PORTIONS["EUR"][1].line,
            line("src-pool", "p-alpha", "training", "150", "1500", "0.1")],
    "JPY": [p.line for p in PORTIONS["JPY"]],
}
HELD = {"EUR": [HeldUndistributed(period="2026-02", amount=Decimal("5.500000000000"))], "JPY": []}


def close_golden_book() -> dict[str, bytes]:
    """Every file the book's April close gives: the collective's statements and each member's, signed."""
    book = parse_book(BOOK, "book.toml")
    collective = book.holders["cmo-north"]
    rules = book.distribution_rules("cmo-north")
    files = {}
    for currency in ("EUR", "JPY"):
        statement = build_statement(period="2026-04", holder_id="cmo-north", holder_name=collective.name,
                                    currency=currency, lines=STATEMENT_LINES[currency], carry_in=Decimal(0),
                                    payout_minimum=Decimal(0), close_root=ROOT)
        distribution = distribute(collective_id="cmo-north", members=collective.members, rules=rules,
                                  period="2026-04", currency=currency, portions=PORTIONS[currency],
                                  period_last_instant=last_instant("2026-04"))
        assert distribution.accrued == statement.accrued
        document = to_document(statement)
        document["distribution"] = distribution_section(distribution, HELD[currency])
        canonical = canonical_bytes(document)
        files[f"2026-04_cmo-north_{currency}.json"] = render_envelope(document, signature=SIGNER.sign(canonical),
                                                                      key_fingerprint=SIGNER.fingerprint)
        for share in distribution.members:
            member = member_statement(
                distribution=distribution, member=share, collective_name=collective.name,
                collective_statement_id=statement.statement_id,
                collective_content_hash=hashlib.sha256(canonical).hexdigest(), carry_in=Decimal(0),
                payout_minimum=collective.members[share.member_id].payout_minimum.get(currency, Decimal(0)),
                close_root=ROOT)
            member_doc = member_document(member)
            signed = canonical_bytes(member_doc)
            files[f"2026-04_cmo-north_{share.member_id}_{currency}.json"] = render_envelope(
                member_doc, signature=SIGNER.sign(signed), key_fingerprint=SIGNER.fingerprint)
            files[f"2026-04_cmo-north_{share.member_id}_{currency}.csv"] = render_member_csv(member_doc)
    return files


def statement_of(files: dict[str, bytes], name: str) -> dict:
    return json.loads(files[name])["statement"]


def test_golden_book_is_what_was_worked_out_by_hand():
    files = close_golden_book()
    eur = statement_of(files, "2026-04_cmo-north_EUR.json")
    assert eur["summary"]["accrued"] == "300.000000000000"
    section = eur["distribution"]
    assert section["management_fee"] == {"amount": "20.000000000000", "cap": "20", "capped": True}
    assert section["deductions"] == {"cultural fund": "6.000000000000"}
    assert section["rule_versions"] == [1, 2]
    by_member = {m["id"]: m for m in section["members"]}
    assert {k: (m["attributed"], m["management_fee"], m["deductions"]["cultural fund"], m["net"])
            for k, m in by_member.items()} == {
        "m-ana": ("151.000000000000", "10.066666666667", "3.020000000000", "137.913333333333"),
        "m-ben": ("95.000000000000", "6.333333333333", "1.900000000000", "86.766666666667"),
        "m-cai": ("39.000000000000", "2.600000000000", "0.780000000000", "35.620000000000"),
    }
    assert section["undistributed"] == {"amount": "13.700000000000", "held": [
        {"period": "2026-02", "amount": "5.500000000000", "age_months": 2},
        {"period": "2026-04", "amount": "13.700000000000", "age_months": 0}]}
    summaries = {m: statement_of(files, f"2026-04_cmo-north_{m}_EUR.json")["summary"] for m in by_member}
    assert {m: (s["payable"], s["carry_out"]) for m, s in summaries.items()} == {
        "m-ana": ("137.91", "0.003333333333"),
        "m-ben": ("86.77", "-0.003333333333"),
        "m-cai": ("0", "35.620000000000"),  # under Cai's payout minimum of EUR 50: carried whole
    }
    ana = statement_of(files, "2026-04_cmo-north_m-ana_EUR.json")
    assert [(l["source_id"], l["rule_version"], l["share"], l["amount"]) for l in ana["lines"]] == [
        ("src-ana", 1, "100", "100.000000000000"),
        ("src-pool", 1, "40", "24.000000000000"),
        ("src-pool", 2, "30", "27.000000000000"),
    ]
    assert ana["collective"]["content_hash"] == json.loads(files["2026-04_cmo-north_EUR.json"])["content_hash"]
    jpy = {m: statement_of(files, f"2026-04_cmo-north_{m}_JPY.json") for m in by_member}
    assert {m: (d["distribution"]["net"], d["summary"]["payable"], d["summary"]["carry_out"])
            for m, d in jpy.items()} == {
        "m-ana": ("1349.920000000000", "1350", "-0.080000000000"),
        "m-ben": ("264.000000000000", "264", "0.000000000000"),
        "m-cai": ("264.000000000000", "264", "0.000000000000"),
    }
    jpy_section = statement_of(files, "2026-04_cmo-north_JPY.json")["distribution"]
    assert jpy_section["management_fee"] == {"amount": "223.400000000000", "cap": "1000", "capped": False}
    assert jpy_section["undistributed"]["amount"] == "88.000000000000"


def test_golden_book_files_are_byte_identical():
    files = close_golden_book()
    assert sorted(files) == sorted(p.name for p in GOLDEN.iterdir())
    for name, data in files.items():
        assert data == (GOLDEN / name).read_bytes(), name


def test_collective_statement_keeps_the_holder_format_and_member_files_verify():
    files = close_golden_book()
    for name, data in files.items():
        if name.endswith(".json"):
            verified = verify_envelope(data, SIGNER.key.public_key(), name)
            assert verified.period == "2026-04"
    eur = statement_of(files, "2026-04_cmo-north_EUR.json")
    without = {k: v for k, v in eur.items() if k != "distribution"}
    plain = build_statement(period="2026-04", holder_id="cmo-north", holder_name="Northern Rights Collective",
                            currency="EUR", lines=STATEMENT_LINES["EUR"], carry_in=Decimal(0),
                            payout_minimum=Decimal(0), close_root=ROOT)
    assert render_document(without) == render_document(to_document(plain))
    assert render_csv(eur) == render_csv(to_document(plain))


def test_a_changed_member_statement_fails_verification():
    files = close_golden_book()
    data = files["2026-04_cmo-north_m-cai_EUR.json"]
    tampered = data.replace(b'"payable": "0"', b'"payable": "35.62"')
    assert tampered != data
    with pytest.raises(Exception, match="content_hash"):
        verify_envelope(tampered, SIGNER.key.public_key(), "tampered.json")


def pdf_text(envelope: dict) -> str:
    import pypdfium2 as pdfium

    pdf = render_pdf(envelope["statement"], content_hash=envelope["content_hash"],
                     key_fingerprint=envelope["signature"]["key_fingerprint"], signature=envelope["signature"]["value"])
    return " ".join(page.get_textpage().get_text_range() for page in pdfium.PdfDocument(pdf))


def test_member_pdf_and_csv_show_fee_and_deductions_each_on_its_own_line():
    files = close_golden_book()
    csv_text = files["2026-04_cmo-north_m-ana_EUR.csv"].decode()
    assert "2026-04,,,,,distribution,management_fee,,,,10.066666666667,,," in csv_text
    assert "2026-04,,,,,distribution,deduction:cultural fund,,,,3.020000000000,,," in csv_text
    member = " ".join(pdf_text(json.loads(files["2026-04_cmo-north_m-ana_EUR.json"])).split())
    for shown in ("Distribution by Northern Rights Collective", "Management fee -10.066666666667",
                  "Deduction: cultural fund -3.02", "Net, accrued to you this period 137.913333333333"):
        assert shown in member, shown
    collective = " ".join(pdf_text(json.loads(files["2026-04_cmo-north_EUR.json"])).split())
    for shown in ("Distribution to members", "Management fee (capped at 20.00) 20.00",
                  "Undistributed this period 13.70", "Undistributed of 2026-02, held 2 month(s) 5.50"):
        assert shown in collective, shown


# -- the property ------------------------------------------------------------------------

MEMBERS = {m: Member(member_id=m, name=m.upper(), payout_minimum={"EUR": Decimal("5"), "JPY": Decimal("300")})
           for m in ("m1", "m2", "m3")}
SOURCES = ("s1", "s2", "s3", "s4")


@st.composite
def rules(draw, start: datetime) -> DistributionRule:
    version = draw(st.integers(min_value=1, max_value=10_000))
    owners, pools = {}, {}
    for source in SOURCES:
        how = draw(st.sampled_from(["own", "pool", "none"]))
        if how == "own":
            owners[source] = draw(st.sampled_from(sorted(MEMBERS)))
        elif how == "pool":
            shares = draw(st.lists(st.decimals(min_value="0.0001", max_value="33.3333", places=4), min_size=1, max_size=3))
            pools[source] = {m: s for m, s in zip(sorted(MEMBERS), shares)}
    fee = draw(st.none() | st.builds(
        ManagementFee, percent=st.decimals(min_value="0.0001", max_value=40, places=4),
        cap=st.dictionaries(st.sampled_from(["EUR", "JPY"]), st.decimals(min_value="0.01", max_value=500, places=2))))
    deductions = tuple(Deduction(name=f"d{i}", percent=p) for i, p in enumerate(
        draw(st.lists(st.decimals(min_value="0.0001", max_value=10, places=4), max_size=2))))
    return DistributionRule(collective_id="c", version=version, effective_from=start, sources=owners, pools=pools,
                            management_fee=fee, deductions=deductions, content_hash="", terms={})


amounts = st.decimals(min_value=-200, max_value=2000, places=12, allow_nan=False, allow_infinity=False)


@settings(max_examples=120, deadline=None)
@given(data=st.data(), months=st.integers(min_value=1, max_value=4), currency=st.sampled_from(["EUR", "JPY"]))
def test_payouts_carries_fees_deductions_and_undistributed_add_up_to_accruals(data, months, currency):
    """Over any sequence of periods and rule changes: paid + carried + fees + deductions + undistributed == accrued."""
    accrued = paid = fees = deductions = undistributed = Decimal(0)
    carry = {m: Decimal(0) for m in MEMBERS}
    rule_list: list[DistributionRule] = []
    for month in range(months):
        period = f"2026-{month + 1:02d}"
        start = datetime(2026, month + 1, 1, tzinfo=timezone.utc)
        for day in sorted(data.draw(st.sets(st.integers(min_value=0, max_value=27), max_size=2))):
            rule_list.append(data.draw(rules(start + timedelta(days=day))))
        ordered = tuple(sorted(rule_list, key=lambda r: (r.effective_from, r.version)))
        portions = [AccrualPortion(
            line=StatementLine(period=period, source_id=data.draw(st.sampled_from(SOURCES)), platform_id="p",
                               model_id="m", kind="training", unit="tokens", quantity=Decimal(1), rate=Decimal(1),
                               per=1, amount=data.draw(amounts), entries=1, license_id="l", license_version=1),
            at=start + timedelta(days=data.draw(st.integers(min_value=0, max_value=27))))
            for _ in range(data.draw(st.integers(min_value=0, max_value=6)))]
        d = distribute(collective_id="c", members=MEMBERS, rules=ordered, period=period, currency=currency,
                       portions=portions, period_last_instant=last_instant(period))
        total = sum((p.line.amount for p in portions), Decimal(0))
        assert d.accrued == total
        assert sum((m.net for m in d.members), Decimal(0)) + d.management_fee + sum(
            (t.amount for t in d.deductions), Decimal(0)) + d.undistributed == total
        if d.fee_cap is not None and d.fee_capped:
            assert d.management_fee == d.fee_cap
        for m in d.members:
            assert sum((l.amount for l in m.lines), Decimal(0)) == m.attributed
            assert m.attributed - m.management_fee - sum((t.amount for t in m.deductions), Decimal(0)) == m.net
            assert m.net.as_tuple().exponent >= -12
        accrued += total
        fees += d.management_fee
        deductions += sum((t.amount for t in d.deductions), Decimal(0))
        undistributed += d.undistributed
        for member_id, member in MEMBERS.items():
            share = d.member(member_id)
            payable, carry[member_id] = settle((share.net if share else Decimal(0)) + carry[member_id], currency,
                                               member.payout_minimum[currency])
            paid += payable
    assert paid + sum(carry.values()) + fees + deductions + undistributed == accrued


@given(st.lists(st.fractions(min_value=-1000, max_value=1000, max_denominator=10**6), min_size=1, max_size=8),
       st.integers(min_value=-1, max_value=1))
def test_signed_split_sums_exactly_and_stays_within_one_quantum(parts, shift):
    quantum = Decimal("0.001")
    exact = {i: p for i, p in enumerate(parts)}
    assume(any(parts) or shift == 0)
    total_exact = sum(exact.values(), Fraction(0))
    total = (Decimal(round(total_exact * 1000)) + shift) * quantum  # a whole number of quanta near the exact sum
    fitted = fit(exact, Fraction(total))
    split = split_signed(total, fitted, quantum)
    assert sum(split.values()) == total
    for key, value in split.items():
        assert abs(Fraction(value) - fitted[key]) < Fraction(quantum)


# -- the license file -------------------------------------------------------------------


def test_collective_is_read_from_the_license_file():
    book = parse_book(BOOK, "book.toml")
    collective = book.holders["cmo-north"]
    assert collective.is_collective and sorted(collective.members) == ["m-ana", "m-ben", "m-cai"]
    assert collective.members["m-cai"].payout_minimum == {"EUR": Decimal(50)}
    v1, v2 = book.distribution_rules("cmo-north")
    assert v1.weights("src-pool") == {"m-ana": Decimal("0.4"), "m-ben": Decimal("0.3"), "m-cai": Decimal("0.2")}
    assert v2.weights("src-ana") == {"m-ana": Decimal(1)}
    assert v1.management_fee.cap == {"EUR": Decimal(20), "JPY": Decimal(1000)}
    assert book.member_of("m-ben")[0].holder_id == "cmo-north"
    assert book.member_of("cmo-north") is None


@pytest.mark.parametrize("change, message", [
    ('members.m-cai = { shares = { src-pool = 20 } }', None),
    ('members.m-cai = { shares = { src-pool = 40 } }', "must sum to at most 100"),
    ('members.m-cai = { sources = ["src-ana"] }', "already belongs to member m-ana"),
    ('members.m-zed = { sources = ["src-x"] }', "m-zed.*is not a member of collective cmo-north"),
    ('members.m-cai = { shares = { src-elsewhere = 5 } }', "belongs to holder h-other.*src-elsewhere"),
])
def test_bad_distribution_rules_are_refused_naming_what_and_where(change, message):
    text = BOOK.split("[[distributions]]")[0] + """
[[holders]]
id = "h-other"
[[sources]]
id = "src-elsewhere"
holder = "h-other"

[[distributions]]
collective = "cmo-north"
effective_from = 2026-04-01T00:00:00Z
members.m-ana = { sources = ["src-ana"], shares = { src-pool = 40 } }
members.m-ben = { sources = ["src-ben"], shares = { src-pool = 30 } }
""" + change + "\n"
    if message is None:
        parse_book(text, "ok.toml")
        return
    with pytest.raises(LicenseFileError, match=message):
        parse_book(text, "bad.toml")


def test_a_changed_rule_version_is_refused_when_merged():
    from ledger.core.licenses import merge_books
    book = parse_book(BOOK, "a.toml")
    changed = parse_book(BOOK.replace("src-pool = 20 }", "src-pool = 25 }"), "b.toml")
    with pytest.raises(LicenseFileError, match="distribution rule of collective cmo-north version 1"):
        merge_books(book, changed)
    assert merge_books(book, parse_book(BOOK, "c.toml")).distributions == book.distributions


def test_income_of_a_member_who_left_and_before_the_first_rule_is_undistributed():
    members = {"m1": Member(member_id="m1", name="One"), "m2": Member(member_id="m2", name="Two")}
    def rule(version, day, sources):
        return DistributionRule(collective_id="c", version=version, effective_from=at(day), sources=sources, pools={},
                                management_fee=None, deductions=(), content_hash="", terms={})
    rules = (rule(1, 5, {"s1": "m1", "s2": "m2"}), rule(2, 20, {"s1": "m1"}))  # m2 left on the 20th
    portions = [AccrualPortion(line=line("s2", "p", "training", "3", "3", "1"), at=at(2)),    # before any rule
                AccrualPortion(line=line("s2", "p", "training", "5", "5", "1"), at=at(10)),   # m2's
                AccrualPortion(line=line("s2", "p", "training", "7", "7", "1"), at=at(25)),   # after m2 left
                AccrualPortion(line=line("s1", "p", "training", "11", "11", "1"), at=at(25))]
    d = distribute(collective_id="c", members=members, rules=rules, period="2026-04", currency="EUR",
                   portions=portions, period_last_instant=last_instant("2026-04"))
    assert {m.member_id: m.net for m in d.members} == {"m1": Decimal(11), "m2": Decimal(5)}
    assert d.undistributed == Decimal(10) and d.management_fee == 0 and d.rule_versions == (1, 2)
