"""The ``Content-Disposition`` of every download, safe for any file name (RFC 6266, RFC 5987).

A file name is built from ids the ledger accepts (a holder id may be ``h-東京`` or hold a
quote), but an HTTP header is ASCII: the exact name travels percent-encoded as
``filename*=UTF-8''...``, which every current browser and ``curl -J`` prefer, and an
ASCII ``filename="..."`` fallback serves older clients.
"""

from __future__ import annotations

from urllib.parse import quote

__all__ = ["content_disposition"]

UNSAFE_IN_FALLBACK = frozenset('"\\%/')
"""Characters the ASCII fallback replaces besides controls and non-ASCII: the quoted string's own
quote and escape, ``%`` (some clients percent-decode the fallback) and ``/`` (a path separator)."""


def content_disposition(filename: str) -> str:
    """``attachment`` with ``filename`` exactly (UTF-8, percent-encoded) and an ASCII fallback.

    The fallback keeps printable ASCII and replaces every other character with ``_``, so
    the header is always ASCII and always parses. Percent-encoding leaves only RFC 5987
    ``attr-char`` unescaped.
    """
    fallback = "".join("_" if not " " <= c <= "~" or c in UNSAFE_IN_FALLBACK else c for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
