"""License documents in the ledger file: stored as applied, merged into one book when read.

Each document records the offsets the ledger had booked when it was applied
(``booked_offsets``): usage before them was priced without it, usage after with it,
which is where ``learnright rebuild`` applies it again.

Beside each document the ledger keeps its parsed form (``license_document_forms``, schema
13; :mod:`ledger.core.license_forms`): what ``tomllib`` made of its text, as JSON. Reading a
book decodes the forms instead of parsing the TOML again (a second or more for 10,000
licenses) and checks them into a book as a fresh parse is; a document without a form is
parsed from its TOML.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa

from ground.collection import collection_paused
from ledger.core import chain
from ledger.core.license_file import book_of, read_document
from ledger.core.license_forms import FORM_VERSION, document_form, document_of_form
from ledger.core.licenses import LicenseBook, build_book, merge_books
from ledger.core.records import FormOfDocument, LicenseDocument, LicenseDocumentForm
from ledger.storage.arrow_rows import TIMESTAMP
from ledger.storage.collectives import record_declarations
from ledger.storage.connection import Db, now


BookKey = tuple[tuple[str, str], ...]
"""The (document hash, origin) of every license document, in the order applied: what a book is parsed from."""

_PARSED: dict[BookKey, LicenseBook] = {}
"""Books parsed in this process, by the documents they were parsed from (the last :data:`_KEEP`)."""
_KEEP = 2
_ORDER = "ORDER BY applied_at, document_hash"


def parsed_book(key: BookKey, documents: Callable[[], Iterable[dict[str, Any]]], *, keep: bool = True) -> LicenseBook:
    """The book of the documents ``key`` names, made from ``documents()`` (each as parsed, in ``key``'s
    order: :func:`ledger.core.license_file.read_document`) unless this process made it before.

    A document is identified by the SHA-256 of its body (and its origin, which errors name), so a
    cached book is exactly what parsing again would give; books are frozen values. Making a
    book of 10,000 licenses takes about half a second even from stored forms (seconds from the
    TOML), and every ledger opened by a long-running process (the service, its scheduler's
    closes) would otherwise pay it again. ``keep`` False: a book made here is not kept (one made
    before is still returned, and kept).
    """
    book = _PARSED.get(key)
    if book is None:
        with collection_paused():  # millions of objects that live on: see ground.collection
            book = build_book({}, {}, ())
            for (_, origin), document in zip(key, documents(), strict=True):
                book = merge_books(book, book_of(document, origin))
        if keep:
            _remember(key, book)
    return book


def _remember(key: BookKey, book: LicenseBook) -> None:
    """Keeps ``book`` as the book of ``key``, dropping the oldest beyond :data:`_KEEP`."""
    _PARSED.pop(key, None)
    while len(_PARSED) >= _KEEP:
        del _PARSED[next(iter(_PARSED))]
    _PARSED[key] = book


class LicenseRepository:
    """The ``license_documents`` and ``license_versions`` tables."""

    def __init__(self, db: Db):
        self.db = db

    def load_book(self, *, keep: bool = True) -> LicenseBook:
        """Every license document applied so far, merged in the order applied.

        Made once per set of documents in a process (:func:`parsed_book`): the book is
        cached until one is added. Each document is decoded from its stored parsed form,
        or parsed from its TOML where it has none (:meth:`_documents`). ``keep`` False: a book
        made by this call is not cached (a close that is its process's only use of it frees it).

        Raises:
            LicenseFileError: a document's form is of a version newer than this Learnright reads,
                or a document does not make a book.
        """
        key = self._book_key()
        return parsed_book(key, lambda: self._documents(key), keep=keep)

    def _documents(self, key: BookKey) -> Iterator[dict[str, Any]]:
        """The documents of ``key`` as parsed, one at a time: from the newest stored form, else from the TOML."""
        for document_hash, origin in key:
            form = self.db.rows("SELECT form_version, parsed FROM license_document_forms WHERE document_hash = ?"
                                " ORDER BY form_version DESC LIMIT 1", [document_hash])
            if form:
                (version, parsed), = form
                yield document_of_form(parsed, version, origin)
            else:
                body = self.db.value("SELECT body FROM license_documents WHERE document_hash = ? LIMIT 1",
                                     [document_hash])
                yield read_document(body, origin)

    def _book_key(self) -> BookKey:
        return tuple((document_hash, origin) for document_hash, origin in self.db.rows(
            f"SELECT document_hash, origin FROM license_documents {_ORDER}"))

    def apply_licenses(self, body: str, origin: str) -> tuple[LicenseBook, int]:
        """Parses and stores a license document; returns the merged book and new versions.

        Re-applying the same document adds nothing. A document that changes an existing
        (license, version) is refused whole. A new document is stored with its parsed form
        (:func:`ledger.core.license_forms.document_form`), which later reads decode.
        """
        before = self._book_key()
        current = self.load_book()
        document = read_document(body, origin)
        form = document_form(document)  # before book_of, which consumes the document
        merged = merge_books(current, book_of(document, origin))
        known = {(v.license_id, v.version) for v in current.versions}
        added = [v for v in merged.versions if (v.license_id, v.version) not in known]
        document_hash = hashlib.sha256(body.encode()).hexdigest()
        con = self.db.con
        with self.db.transaction():
            exists = con.execute("SELECT 1 FROM license_documents WHERE document_hash = ?", [document_hash]).fetchall()
            if not exists:
                booked = con.execute("SELECT topic, kafka_partition, max(next_offset) FROM consumer_offsets"
                                     " GROUP BY ALL ORDER BY ALL").fetchall()
                con.execute("INSERT INTO license_documents (document_hash, origin, body, applied_at, booked_offsets)"
                            " VALUES (?, ?, ?, ?, ?)",
                            [document_hash, origin, body, now(), json.dumps([list(row) for row in booked])])
                if form is not None:
                    con.execute("INSERT INTO license_document_forms (document_hash, form_version, parsed)"
                                " VALUES (?, ?, ?)", [document_hash, FORM_VERSION, form])
            if added:  # one Arrow insert: a row-wise INSERT costs milliseconds a version (10,000 in a large book)
                self.db.insert("license_versions", pa.table({
                    "license_id": [v.license_id for v in added],
                    "version": pa.array([v.version for v in added], pa.int32()),
                    "source_id": [v.source_id for v in added],
                    "platform_id": [v.platform_id for v in added],
                    "effective_from": pa.array([v.effective_from for v in added], TIMESTAMP),
                    "currency": [v.currency for v in added],
                    "terms": [json.dumps(v.terms, sort_keys=True) for v in added],
                    "content_hash": [v.content_hash for v in added],
                    "document_hash": [document_hash] * len(added),
                }))
            record_declarations(self.db, current, merged, document_hash)
        if self._book_key() == (*before, (document_hash, origin)):
            # What parsing the documents again would give (the same merge of the same books, in
            # the same order): the next load_book finds it parsed.
            _remember(self._book_key(), merged)
        return merged, len(added)

    def book_hash(self) -> str:
        """The identity of the book as applied so far (:func:`ledger.core.chain.book_hash`)."""
        return chain.book_hash(h for (h,) in self.db.rows("SELECT document_hash FROM license_documents"))

    def license_documents(self) -> list[LicenseDocument]:
        """Every license document, in the order applied."""
        rows = self.db.rows("SELECT document_hash, origin, body, applied_at, booked_offsets FROM license_documents"
                            " ORDER BY applied_at, document_hash")
        return [_document(row) for row in rows]

    def forms_with_documents(self) -> Iterator[FormOfDocument]:
        """Every stored parsed form with its document, by document hash then form version, one pair read at a time
        (a form and its document may each be tens of MB; sorting them whole would gather them all)."""
        keys = self.db.rows("SELECT document_hash, form_version FROM license_document_forms ORDER BY ALL")
        for document_hash, version in keys:
            ((parsed,),) = self.db.rows("SELECT parsed FROM license_document_forms WHERE document_hash = ?"
                                        " AND form_version = ?", [document_hash, version])
            documents = self.db.rows("SELECT document_hash, origin, body, applied_at, booked_offsets"
                                     " FROM license_documents WHERE document_hash = ?", [document_hash])
            yield FormOfDocument(form=LicenseDocumentForm(document_hash=document_hash, form_version=version,
                                                          parsed=parsed),
                                 document=_document(documents[0]) if documents else None)


def _document(row: tuple) -> LicenseDocument:
    """A ``license_documents`` row (document_hash, origin, body, applied_at, booked_offsets) as its record."""
    document_hash, origin, body, applied_at, booked = row
    return LicenseDocument(document_hash=document_hash, origin=origin, body=body, applied_at=applied_at,
                           booked_offsets=None if booked is None else
                           {(topic, partition): offset for topic, partition, offset in json.loads(booked)})
