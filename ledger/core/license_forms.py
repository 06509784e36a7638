"""The parsed form of a license document: what ``tomllib`` made of it, as plain JSON.

A cold ``learnright close`` (no running service) reads the license book from the ledger. For a
book of 10,000 licenses ``tomllib`` (pure Python) takes 1-1.6 s of the 2 s that costs, and the
checks and values of :func:`ledger.core.license_file.book_of` the rest. So the ledger stores,
beside each document it applies, the document as ``tomllib`` parsed it, written as JSON, and a
reader decodes that (``json.loads`` is C) instead of parsing the TOML again. ``tomllib`` stays
the parser of record: the form is derived from its output only, the checks and the book are
made from the decoded document exactly as from a freshly parsed one, and a document without a
form is parsed from its TOML.

Guarantees:
  * Exact: decoding a form gives back the parsed document value for value and type for type.
    JSON has strings, integers, booleans, arrays and objects, which TOML's values are or hold;
    TOML's floats (read as :class:`~decimal.Decimal`), date-times, dates and times are tagged
    objects ``{"$": "decimal", "v": "0.0025"}`` whose ``v`` is the value's own exact text
    (``str`` of the decimal, keeping its exponent; ``isoformat`` of the date-time, keeping its
    offset and microseconds). A TOML table with a key ``"$"`` is written as
    ``{"$": "table", "v": [[key, value], ...]}``, so no table of the document reads as a tag.
    :func:`document_form` checks that its form decodes to what it encodes, and declines
    (returns None) otherwise, which leaves the document to be parsed from its TOML.
  * Deterministic: the form is a function of the document's text alone (keys in the
    document's order, as ``tomllib`` gives them; no whitespace).
  * Versioned: a form carries :data:`FORM_VERSION`; a reader refuses a newer one, naming it.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from ledger.errors import LicenseFileError

FORM_VERSION = 1
"""The version of the form :func:`document_form` writes; :func:`document_of_form` reads it and older ones."""

TAG = "$"
_DECIMAL, _DATETIME, _DATE, _TIME, _TABLE = "decimal", "datetime", "date", "time", "table"
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def document_form(document: dict[str, Any]) -> str | None:
    """The form of ``document`` (a ``tomllib`` parse with ``parse_float=Decimal``), or None if it
    would not decode to exactly ``document``: then the document is read from its TOML.

    Raises:
        LicenseFileError: ``document`` holds a value no TOML parse gives (not a TOML value).
    """
    form = _ENCODE(_tagged(document))
    if _ENCODE(_tagged(_decoded(form))) != form:
        return None
    return form


def document_of_form(form: str, version: int, origin: str) -> dict[str, Any]:
    """The parsed document a form of ``version`` holds; ``origin`` names the document in errors.

    Raises:
        LicenseFileError: ``version`` is newer than :data:`FORM_VERSION` (a newer Learnright
            wrote it), or the form is not a form of a document.
    """
    if version > FORM_VERSION:
        raise LicenseFileError(f"{origin}: its stored parsed form is version {version}, written by a newer"
                               f" Learnright; this one reads versions up to {FORM_VERSION}. Upgrade Learnright.")
    try:
        document = _decoded(form)
    except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
        raise LicenseFileError(f"{origin}: its stored parsed form (version {version}) cannot be read: {exc}") from exc
    if not isinstance(document, dict):
        raise LicenseFileError(f"{origin}: its stored parsed form (version {version}) is not a table")
    return document


def _tagged(value: Any) -> Any:
    """``value`` with every value JSON lacks written as a tagged object."""
    if isinstance(value, dict):
        if TAG in value:
            return {TAG: _TABLE, "v": [[key, _tagged(item)] for key, item in value.items()]}
        return {key: _tagged(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_tagged(item) for item in value]
    if isinstance(value, (str, int)):  # bool is an int
        return value
    if isinstance(value, Decimal):
        return {TAG: _DECIMAL, "v": str(value)}
    if isinstance(value, datetime):  # before date: a datetime is a date
        return {TAG: _DATETIME, "v": value.isoformat()}
    if isinstance(value, date):
        return {TAG: _DATE, "v": value.isoformat()}
    if isinstance(value, time):
        return {TAG: _TIME, "v": value.isoformat()}
    raise LicenseFileError(f"a parsed license document holds {type(value).__name__} {value!r}, which no TOML"
                           " document gives")


_UNTAG = {
    _DECIMAL: Decimal,
    _DATETIME: datetime.fromisoformat,
    _DATE: date.fromisoformat,
    _TIME: time.fromisoformat,
}


def _decoded(form: str) -> Any:
    """The value a form stands for. Equal scalars of one form (a rate, a start, a currency that
    thousands of licenses share) are one object: they are immutable, and a book keeps them."""
    shared: dict[Any, Any] = {}

    def untagged(item: dict[str, Any]) -> Any:  # called by json.loads for each object, innermost first
        tag = item.get(TAG)
        if tag is None:
            for key, value in item.items():
                if type(value) is str:
                    item[key] = shared.setdefault(value, value)
            return item
        if tag == _TABLE:
            return dict(item["v"])
        text = item["v"]
        value = shared.get((tag, text))
        if value is None:
            value = shared[(tag, text)] = _UNTAG[tag](text)
        return value

    return json.loads(form, object_hook=untagged)
