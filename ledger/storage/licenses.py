"""License documents in the ledger file: stored as applied, merged into one book when read.

Each document records the offsets the ledger had booked when it was applied
(``booked_offsets``): usage before them was priced without it, usage after with it,
which is where ``learnright rebuild`` applies it again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable, Sequence

from ledger.core import chain
from ledger.core.license_file import parse_book
from ledger.core.licenses import LicenseBook, build_book, merge_books
from ledger.core.records import LicenseDocument
from ledger.storage.collectives import record_declarations
from ledger.storage.connection import Db, now


BookKey = tuple[tuple[str, str], ...]
"""The (document hash, origin) of every license document, in the order applied: what a book is parsed from."""

_PARSED: dict[BookKey, LicenseBook] = {}
"""Books parsed in this process, by the documents they were parsed from (the last :data:`_KEEP`)."""
_KEEP = 2


def parsed_book(key: BookKey, bodies: Callable[[], Sequence[str]]) -> LicenseBook:
    """The book of the documents ``key`` names, parsed from ``bodies()`` (in ``key``'s order) unless this
    process parsed the same documents before.

    A document is identified by the SHA-256 of its body (and its origin, which errors name), so a
    cached book is exactly what parsing again would give; books are frozen values. Parsing a
    book of 10,000 licenses takes seconds, and every ledger opened by a long-running process (the
    service, its scheduler's closes) would otherwise pay it again.
    """
    book = _PARSED.get(key)
    if book is None:
        book = build_book({}, {}, ())
        for (_, origin), body in zip(key, bodies(), strict=True):
            book = merge_books(book, parse_book(body, origin))
        while len(_PARSED) >= _KEEP:
            del _PARSED[next(iter(_PARSED))]
        _PARSED[key] = book
    return book


class LicenseRepository:
    """The ``license_documents`` and ``license_versions`` tables."""

    def __init__(self, db: Db):
        self.db = db

    def load_book(self) -> LicenseBook:
        """Every license document applied so far, merged in the order applied.

        Parsed once per set of documents in a process (:func:`parsed_book`): the book is
        cached until one is added.
        """
        order = "ORDER BY applied_at, document_hash"
        key = tuple((document_hash, origin) for document_hash, origin in self.db.rows(
            f"SELECT document_hash, origin FROM license_documents {order}"))
        return parsed_book(key, lambda: [body for (body,) in self.db.rows(
            f"SELECT body FROM license_documents {order}")])

    def apply_licenses(self, body: str, origin: str) -> tuple[LicenseBook, int]:
        """Parses and stores a license document; returns the merged book and new versions.

        Re-applying the same document adds nothing. A document that changes an existing
        (license, version) is refused whole.
        """
        current = self.load_book()
        merged = merge_books(current, parse_book(body, origin))
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
            for v in added:
                con.execute(
                    "INSERT INTO license_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [v.license_id, v.version, v.source_id, v.platform_id, v.effective_from, v.currency,
                     json.dumps(v.terms, sort_keys=True), v.content_hash, document_hash],
                )
            record_declarations(self.db, current, merged, document_hash)
        return merged, len(added)

    def book_hash(self) -> str:
        """The identity of the book as applied so far (:func:`ledger.core.chain.book_hash`)."""
        return chain.book_hash(h for (h,) in self.db.rows("SELECT document_hash FROM license_documents"))

    def license_documents(self) -> list[LicenseDocument]:
        """Every license document, in the order applied."""
        rows = self.db.rows("SELECT document_hash, origin, body, applied_at, booked_offsets FROM license_documents"
                            " ORDER BY applied_at, document_hash")
        return [LicenseDocument(document_hash=document_hash, origin=origin, body=body, applied_at=applied_at,
                                booked_offsets=None if booked is None else
                                {(topic, partition): offset for topic, partition, offset in json.loads(booked)})
                for document_hash, origin, body, applied_at, booked in rows]
