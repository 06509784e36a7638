"""License documents in the ledger: each stored with its parsed form, which a read of the book decodes."""

import pytest

from ledger.core.license_file import parse_book, read_document
from ledger.core.license_forms import FORM_VERSION, document_form
from ledger.errors import LicenseFileError
from ledger.storage import licenses
from ledger.storage.store import Ledger


def not_parsed(text, origin="<string>"):
    raise AssertionError(f"{origin} was parsed from its TOML")


def test_a_book_is_read_from_the_stored_forms_without_parsing_the_toml(tmp_path, license_book_text, monkeypatch):
    extra = license_book_text.replace('id = "lic-novels"', 'id = "lic-novels-2"', 1)
    with Ledger.open(tmp_path / "ledger.duckdb") as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        applied, _ = ledger.apply_licenses(extra, "more.toml")
        ledger.apply_licenses(extra, "more-again.toml")  # the same document: nothing stored twice
        forms = ledger.con.execute("SELECT f.document_hash, f.form_version, f.parsed, d.body"
                                   " FROM license_document_forms f JOIN license_documents d USING (document_hash)"
                                   " ORDER BY d.applied_at").fetchall()
        licenses._PARSED.clear()  # what another process reads from the same ledger
        monkeypatch.setattr(licenses, "read_document", not_parsed)
        read = ledger.load_book()
    assert [(version, parsed) for _, version, parsed, _ in forms] == [
        (FORM_VERSION, document_form(read_document(body))) for body in (license_book_text, extra)]
    assert read == applied and read is not applied


def test_a_document_without_its_form_is_parsed_from_its_toml(tmp_path, license_book_text):
    with Ledger.open(tmp_path / "ledger.duckdb") as ledger:
        applied, _ = ledger.apply_licenses(license_book_text, "book.toml")
        ledger.con.execute("DELETE FROM license_document_forms")
        licenses._PARSED.clear()
        assert ledger.load_book() == applied == parse_book(license_book_text, "book.toml")


def test_a_form_newer_than_this_learnright_is_refused(tmp_path, license_book_text):
    with Ledger.open(tmp_path / "ledger.duckdb") as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        ledger.con.execute("UPDATE license_document_forms SET form_version = ?", [FORM_VERSION + 1])
        licenses._PARSED.clear()
        with pytest.raises(LicenseFileError, match=rf"book.toml: its stored parsed form is version {FORM_VERSION + 1},"
                                                   " written by a newer Learnright"):
            ledger.load_book()
