"""RSL import: which payment terms of an RSL 1.0 document become a Learnright license.

The worked example is ``golden/rsl/aurora.rsl.xml``: Aurora Press offers its novels
for AI input at 0.0025 USD per use, for training at 1.10 USD (per million tokens, as
the importer says: RSL has no unit), for crawling at 0.001 USD, for search with
attribution, and for anything under a subscription negotiated elsewhere. Only the
first two map; the rest are reported, and ``golden/rsl/aurora.toml`` pins the result.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ledger.errors import LicenseFileError
from ledger.core.license_file import parse_book
from ledger.core.licenses import Holder
from ledger.core.pricing import price
from ledger.core.rsl_import import ImportOptions, import_rsl
from ledger.core.usage import Attribution, InferenceUsage, TrainingUsage

GOLDEN = Path(__file__).parents[1] / "golden" / "rsl"
NOVELS = "https://aurora.example/novels/*"
OPTIONS = ImportOptions(
    holder_id="h-aurora", source_id="src-aurora-novels",
    effective_from=datetime(2026, 10, 1, tzinfo=timezone.utc),
    training_unit="tokens", training_per=1_000_000, content_url=NOVELS,
)


def rsl(licenses: str, url: str = "/") -> str:
    """A one-content RSL document around ``licenses``."""
    return f'<rsl xmlns="https://rslstandard.org/rsl"><content url="{url}">{licenses}</content></rsl>'


def paid(kind: str, amount: str = "0.01", currency: str = "USD", permits: str = "") -> str:
    permit = f'<permits type="usage">{permits}</permits>' if permits else ""
    return f'<license>{permit}<payment type="{kind}"><amount currency="{currency}">{amount}</amount></payment></license>'


SIMPLE = dataclasses.replace(OPTIONS, content_url=None)


def test_golden_document_converts_to_the_pinned_toml():
    result = import_rsl((GOLDEN / "aurora.rsl.xml").read_text(), "aurora.rsl.xml", OPTIONS)
    assert result.toml == (GOLDEN / "aurora.toml").read_text()
    assert (result.currency, result.training, result.inference) == ("USD", Decimal("1.10"), Decimal("0.0025"))


def test_converted_toml_prices_training_and_inference_as_the_rsl_amounts_say():
    book = parse_book((GOLDEN / "aurora.toml").read_text(), "aurora.toml")
    at = datetime(2026, 10, 3, 12, tzinfo=timezone.utc)
    training = TrainingUsage(event_id="t1", platform_id="orbit", model_id="orbit-7b", run_id="r1",
                             source_id="src-aurora-novels", units=2_100_000, unit="tokens", occurred_at=at)
    inference = InferenceUsage(event_id="i1", platform_id="orbit", model_id="orbit-7b", request_id="q1", occurred_at=at,
                               attributions=(Attribution(source_id="src-aurora-novels", weight=Decimal("0.7")),))
    (trained,) = price(training, book)
    (answered,) = price(inference, book)
    assert (trained.amount, trained.currency, trained.license_id) == (Decimal("2.31"), "USD", "rsl-src-aurora-novels")
    assert answered.amount == Decimal("0.00175")
    # Before effective_from nothing is in force: the import does not back-date terms.
    assert book.in_force("src-aurora-novels", "orbit", datetime(2026, 9, 30, tzinfo=timezone.utc)) is None


def test_every_term_that_does_not_map_is_reported_with_its_element():
    result = import_rsl((GOLDEN / "aurora.rsl.xml").read_text(), "aurora.rsl.xml", OPTIONS)
    reported = {item.where: item.reason for item in result.unmapped}
    assert set(reported) == {
        "content[2]",                              # the free content, not selected
        "content[1].license[1].permits[2]",        # user restriction
        "content[1].license[3].payment[1]",        # crawl
        "content[1].license[4].payment[1]",        # attribution
        "content[1].license[5].payment[1]",        # subscription
    }
    assert "per crawl" in reported["content[1].license[3].payment[1]"]
    assert "not priced" in reported["content[1].license[4].payment[1]"]
    assert "https://aurora.example/licensing" in reported["content[1].license[5].payment[1]"]


def test_free_content_alone_is_not_priced_and_says_why():
    text = (GOLDEN / "aurora.rsl.xml").read_text()
    with pytest.raises(LicenseFileError, match=r"content\[2\].*maps to a Learnright license.*'free': not priced"):
        import_rsl(text, "aurora.rsl.xml", dataclasses.replace(OPTIONS, content_url="https://aurora.example/free/*"))


def test_prohibited_training_gets_no_training_terms_even_if_another_license_prices_it():
    text = rsl('<license><prohibits type="usage">ai-train</prohibits></license>'
               + paid("training", "5.00") + paid("inference", "0.004"))
    result = import_rsl(text, "p.xml", dataclasses.replace(SIMPLE, training_unit=None, training_per=None))
    book = parse_book(result.toml)
    (version,) = book.versions
    assert version.training is None and version.inference.rate == Decimal("0.004")
    assert any("prohibited by content[1].license[1].prohibits[1]" in item.reason for item in result.unmapped)


def test_payment_outside_what_its_license_permits_is_not_imported():
    text = rsl(paid("training", "5.00", permits="search") + paid("use", "0.004", permits="ai-input"))
    result = import_rsl(text, "p.xml", SIMPLE)
    assert result.training is None and result.inference == Decimal("0.004")
    assert any("permits only 'search'" in item.reason for item in result.unmapped)


def test_training_payment_needs_the_unit_the_importer_gives():
    text = rsl(paid("training", "1.10"))
    with pytest.raises(LicenseFileError, match=r"payment\[1\] type 'training'.*pass --unit .* and --per"):
        import_rsl(text, "t.xml", dataclasses.replace(SIMPLE, training_unit=None, training_per=None))


def test_restating_a_known_holder_keeps_its_name_and_payout_minimum():
    known = Holder(holder_id="h-aurora", name="Aurora Press Ltd", payout_minimum={"USD": Decimal("10")})
    result = import_rsl(rsl(paid("inference", "0.002")), "k.xml", dataclasses.replace(SIMPLE, holder=known))
    holder = parse_book(result.toml).holders["h-aurora"]
    assert (holder.name, holder.payout_minimum) == ("Aurora Press Ltd", {"USD": Decimal("10")})


@pytest.mark.parametrize("text, message", [
    ("<rsl xmlns='https://rslstandard.org/rsl'><content url='/'>", r"bad\.xml is not well-formed XML"),
    ("<rsl xmlns='https://example.org/rsl'><content url='/'/></rsl>",
     r"root element <rsl xmlns=\"https://example.org/rsl\"> is not <rsl xmlns=\"https://rslstandard.org/rsl\"> in bad\.xml"),
    ("<rsl><content url='/'/></rsl>", r"root element <rsl> \(no namespace\) is not"),
    ('<?xml version="1.0"?><!DOCTYPE rsl [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
     '<rsl xmlns="https://rslstandard.org/rsl"><content url="&b;"/></rsl>', r"bad\.xml declares a DTD or entities"),
    (rsl(paid("inference", currency="USX")),
     r"^content\[1\]\.license\[1\]\.payment\[1\]\.amount currency 'USX' is not an ISO 4217 currency code in bad\.xml$"),
    (rsl('<license><payment type="use"><amount>1</amount></payment></license>'),
     r"payment\[1\]\.amount has no currency attribute in bad\.xml"),
    (rsl(paid("inference", "0.002") + paid("use", "0.003")),
     r"content\[1\]\.license\[1\]\.payment\[1\] and content\[1\]\.license\[2\]\.payment\[1\] both price inference"),
    (rsl(paid("inference", "0.002", "USD") + paid("training", "1", "EUR")),
     r"currency 'EUR' differs from .* currency 'USD'"),
    (rsl(paid("inference", "0.0000001")), r"value '0\.0000001' has more than 6 decimal places"),
    (rsl(paid("subscription", "99")), r"maps to a Learnright license: .*recurring flat fee"),
])
def test_bad_documents_name_the_element_attribute_and_value(text, message):
    with pytest.raises(LicenseFileError, match=message):
        import_rsl(text, "bad.xml", SIMPLE)


@pytest.mark.parametrize("junk", ["1e-3", "NaN", "Infinity", "1,50", "-0.5", "", "0.1f", "$1", "1.", ".5"])
def test_float_like_or_junk_amounts_are_refused_not_guessed(junk):
    with pytest.raises(LicenseFileError, match=rf"payment\[1\]\.amount value '{re.escape(junk)}' is not a plain decimal"):
        import_rsl(rsl(paid("inference", junk)), "junk.xml", SIMPLE)


def test_several_contents_need_a_choice():
    with pytest.raises(LicenseFileError, match=r"2 <content> elements .*--content URL"):
        import_rsl((GOLDEN / "aurora.rsl.xml").read_text(), "aurora.rsl.xml", SIMPLE)


def test_cli_import_rsl_writes_and_applies_the_license(tmp_path, monkeypatch):
    from learnright.cli import app
    from ledger.storage.store import Ledger

    runner = CliRunner()
    monkeypatch.chdir(GOLDEN)  # the TOML names its origin as given on the command line
    db, out = tmp_path / "ledger.duckdb", tmp_path / "aurora.toml"
    args = ["licenses", "import-rsl", "aurora.rsl.xml", "--holder", "h-aurora",
            "--source", "src-aurora-novels", "--content", NOVELS, "--effective-from", "2026-10-01T00:00:00Z",
            "--unit", "tokens", "--per", "1000000", "--db", str(db)]
    result = runner.invoke(app, args + ["--out", str(out), "--apply"])
    assert result.exit_code == 0, result.output
    assert out.read_text() == (GOLDEN / "aurora.toml").read_text()
    assert "5 RSL terms not imported" in result.output and "1 new license versions" in result.output
    with Ledger.open(db) as ledger:
        version = ledger.load_book().version("rsl-src-aurora-novels", 1)
    assert version.inference.rate == Decimal("0.0025") and version.training.unit_price == Decimal("0.0000011")

    bad = tmp_path / "bad.rsl.xml"
    bad.write_text(rsl(paid("inference", currency="USX")))
    refused = runner.invoke(app, ["licenses", "import-rsl", str(bad), "--holder", "h", "--source", "s"])
    assert refused.exit_code == 2
    assert f"payment[1].amount currency 'USX' is not an ISO 4217 currency code in {bad}" in refused.output
