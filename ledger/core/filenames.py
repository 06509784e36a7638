"""File names built from ids: safe on every file system, one name per id, bounded in length.

Holder, platform and currency ids come from license files and usage events, so they can
hold anything: a dot, a slash, ``..``, a control character, 10,000 characters. Every
file name made from an id is made here.

Guarantees:
  * Safe: a name holds only ``A-Z a-z 0-9 . _ - % ~``; it never holds a ``/``, never
    starts with a dot and is at most :data:`MAX_NAME` characters long.
  * Unchanged for ordinary ids: an id of ``[A-Za-z0-9._-]`` that does not start with a
    dot is used as it is (``2026-04_h-ann_USD.json``, ``2026-04_orbit.dsr.tsv``).
  * Injective: every other byte of the id's UTF-8 (``%`` and ``/`` included, and a
    leading ``.``) is written ``%XX`` (upper-case hex), so two ids never share an
    encoding. An encoding longer than :data:`MAX_PART` keeps its first characters and
    ends in ``~`` and 16 hex digits of the id's SHA-256: ``~`` appears in no other
    encoding, so only a hash collision could join two ids, and :func:`check_distinct`
    refuses that before anything is written.
  * Nothing is cut at a dot: the extension is appended, never substituted
    (``Path.with_suffix`` turned ``2026-10_acme.one_USD`` into ``2026-10_acme.json``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from ledger.errors import FileNameClashError

SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
"""Bytes an id keeps as they are (but a leading dot is encoded)."""
MAX_PART = 64
"""The longest encoding of one id used whole; longer ones are cut and end in a hash."""
MAX_NAME = 3 * MAX_PART + 8
"""No name made here is longer: three ids, two ``_`` and an extension (under the 255 bytes
of common file systems)."""
_KEEP = MAX_PART - 17  # characters of a long encoding kept before ``~`` and the hash


def name_part(value: str, *, separator: str = "") -> str:
    """``value`` as a piece of a file name (see the module docstring).

    Args:
        value: the id.
        separator: characters encoded in this part although they are safe elsewhere: the
            separator that must not occur in it for the whole name to split one way only.
    """
    data = value.encode("utf-8", "surrogatepass")
    extra = frozenset(separator.encode())
    encoded = "".join(
        chr(byte) if byte in SAFE and byte not in extra and not (i == 0 and byte == ord(".")) else f"%{byte:02X}"
        for i, byte in enumerate(data))
    if len(encoded) <= MAX_PART:
        return encoded
    keep = _KEEP
    while "%" in encoded[keep - 2:keep]:  # never end the kept part inside a %XX
        keep -= 1
    return f"{encoded[:keep]}~{hashlib.sha256(data).hexdigest()[:16]}"


def statement_file_name(period: str, holder_id: str, currency: str, extension: str) -> str:
    """``<period>_<holder>_<currency>.<extension>``, e.g. ``2026-04_h-ann_USD.json``.

    The period and the currency have ``_`` encoded, so the first and the last ``_`` split
    the name back into its three ids whatever the holder id holds.
    """
    return (f"{name_part(period, separator='_')}_{name_part(holder_id)}_{name_part(currency, separator='_')}"
            f".{extension}")


def member_statement_file_name(period: str, collective_id: str, member_id: str, currency: str, extension: str) -> str:
    """``<period>_<collective>_<member>_<currency>.<extension>``, e.g. ``2026-04_cmo-north_m-ana_EUR.json``.

    The period, the collective and the currency have ``_`` encoded, so the first two and
    the last ``_`` split the name back into its four ids whatever the member id holds.
    """
    return (f"{name_part(period, separator='_')}_{name_part(collective_id, separator='_')}_{name_part(member_id)}"
            f"_{name_part(currency, separator='_')}.{extension}")


def usage_report_name(period: str, platform_id: str) -> str:
    """``<period>_<platform>.dsr.tsv``, e.g. ``2026-04_orbit.dsr.tsv``."""
    return f"{name_part(period, separator='_')}_{name_part(platform_id)}.dsr.tsv"


def check_distinct(files: Iterable[tuple[str, str]]) -> None:
    """Refuses a set of files unless their names are distinct, also ignoring case.

    Names that differ only in case (holders ``Acme`` and ``acme``) are one file on macOS
    and Windows, where statement files are often opened or unpacked; they are refused too.

    Args:
        files: (file name, what the file holds) pairs, e.g. ``("2026-04_acme_USD.json",
            "statement st_1 of holder 'acme' in USD (json)")``.

    Raises:
        FileNameClashError: two names clash; the message names both files' contents.
    """
    seen: dict[str, tuple[str, str]] = {}
    for name, holds in files:
        first = seen.setdefault(name.casefold(), (name, holds))
        if first[1] != holds:
            same = "the same name" if first[0] == name else f"names that differ only in case ({first[0]} and {name})"
            raise FileNameClashError(
                f"{first[1]} and {holds} would be written under {same}: {name}; nothing was written")
