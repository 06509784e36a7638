"""The PDF statement renders, its pages turn into images, and it shows the totals a holder checks."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pypdfium2 as pdfium

from ledger.core.pdf import render_pdf
from ledger.core.statements import content_hash, to_document
from ledger.services.close import close_period, statement_pdf, write_statement_files
from ledger.storage.store import Ledger
from tests.ledger.core.test_statements import FORMAT_4_HEAD, ROOT, STORED_FORMAT_4, april_statement
from tests.ledger.keys import SIGNER
from tests.ledger.services.test_golden_book import BOOK, NOW, ingest
from tests.ledger.storage.test_store import batch_of


def pages(pdf: bytes, out: Path, name: str) -> tuple[list[str], list[Path]]:
    """Each page's text, and each page rendered to a PNG image."""
    document = pdfium.PdfDocument(pdf)
    texts, images = [], []
    for number, page in enumerate(document):
        texts.append(page.get_textpage().get_text_range())
        image = page.render(scale=1.5).to_pil()
        path = out / f"{name}-{number + 1}.png"
        image.save(path)
        images.append(path)
    document.close()
    return texts, images


def assert_not_blank(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        grey = image.convert("L")
        dark = sum(grey.histogram()[:128])
        assert grey.size[0] > 800 and dark > 0.01 * grey.size[0] * grey.size[1], f"{path} looks blank"


def test_the_pdf_shows_summary_sources_lines_and_how_terms_were_computed(tmp_path):
    with Ledger.open(tmp_path / "ledger.duckdb") as ledger:
        ledger.apply_licenses(BOOK, "golden-book.toml")
        ingest(ledger)
        close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
        files = write_statement_files(ledger, "2026-04", tmp_path / "out")
        statement = json.loads((tmp_path / "out" / "2026-04_h-ann_USD.json").read_text())
    assert sorted(p.suffix for p in files if p.stem == "2026-04_h-ann_USD") == [".csv", ".json", ".pdf"]
    texts, images = pages((tmp_path / "out" / "2026-04_h-ann_USD.pdf").read_bytes(), tmp_path, "ann")
    text = "\n".join(texts)
    first = texts[0]
    # The summary comes first, with the figures of the signed statement.
    assert first.index("Ann Writes") < first.index("Payable") < first.index("By source") < first.index("Lines of April 2026")
    assert "Accrued this period 142.7032" in first and "Payable 142.70" in first
    assert "Carried out to the next statement 0.0032" in first and "Carried in from the previous statement 0.00" in first
    assert "src-novels 122.7032 0.00 122.7032" in first and "src-essays 20.00 0.00 20.00" in first
    assert "Tier adjustment" in text and "accrued at the first tier USD 1.80" in text
    assert "Revenue pool share" in text and "Model royalty" in text
    assert statement["content_hash"] in text.replace("\r\n", "").replace("\n", "")
    for image in images:
        assert_not_blank(image)


def test_prior_period_adjustments_have_their_own_section_naming_their_month(tmp_path, license_book_text):
    when_may = datetime(2026, 5, 3, tzinfo=timezone.utc)
    with Ledger.open(tmp_path / "ledger.duckdb") as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        book = ledger.load_book()
        ledger.append_batch(batch_of(book, [1_000_000]))
        close_period(ledger, "2026-04", now=datetime(2026, 6, 1, tzinfo=timezone.utc), signer=SIGNER)
        ledger.append_batch(batch_of(book, [2_000_000], first=1, offset=1))  # late April usage
        ledger.append_batch(batch_of(book, [1_000_000], first=2, offset=2, when=when_may))
        close_period(ledger, "2026-05", now=datetime(2026, 6, 1, tzinfo=timezone.utc), signer=SIGNER)
        (may,) = ledger.statement_rows(period="2026-05")
        pdf = statement_pdf(ledger, may.statement_id)
    (text,), (image,) = pages(pdf, tmp_path, "may")
    assert "Period May 2026 (2026-05)" in text and "Payable 3.60" in text
    section = text[text.index("Prior-period adjustments\r\n") if "Prior-period adjustments\r\n" in text
                   else text.index("Prior-period adjustments\n"):]
    assert "2026-04 src-novels" in section and "2.40" in section
    assert "src-novels 1.20 2.40 3.60" in text  # by source: this period, adjustments, total
    assert_not_blank(image)


def test_the_same_statement_renders_to_the_same_bytes(tmp_path):
    with Ledger.open(tmp_path / "ledger.duckdb") as ledger:
        ledger.apply_licenses(BOOK, "golden-book.toml")
        ingest(ledger)
        close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
        sid = ledger.statement_rows(period="2026-04", holder_id="h-kei")[0].statement_id
        assert statement_pdf(ledger, sid) == statement_pdf(ledger, sid)


def flat(text: str) -> str:
    """Page text with line breaks and runs of spaces made single spaces."""
    return " ".join(text.split())


def test_a_format_5_statement_shows_its_close_root_and_no_entry_id(tmp_path):
    statement = april_statement()
    pdf = render_pdf(to_document(statement), content_hash=content_hash(statement), key_fingerprint=SIGNER.fingerprint,
                     signature="c2lnbmF0dXJl")
    (text,), (image,) = pages(pdf, tmp_path, "format5")
    assert "Format version 5." in flat(text) and f"Close root {ROOT}." in flat(text)
    assert "chain head" not in text and "(entry" not in text
    assert_not_blank(image)


def test_a_stored_format_4_statement_still_shows_its_chain_head_and_last_entry(tmp_path):
    envelope = json.loads(STORED_FORMAT_4.read_bytes())
    pdf = render_pdf(envelope["statement"], content_hash=envelope["content_hash"],
                     key_fingerprint=envelope["signature"]["key_fingerprint"], signature=envelope["signature"]["value"])
    texts, _ = pages(pdf, tmp_path, "format4")
    text = flat("\n".join(texts))
    assert f"Ledger chain head at close {FORMAT_4_HEAD} (entry 21)." in text and "Close root" not in text
    assert "Format version 4." in text and "Payable 142.70" in text
