"""Plain TOML: the one-key-per-line subset that generated license books are written in, read fast.

``tomllib`` is pure Python: a 10,000-license book (3 MB) takes it 2.5-3 s, which a close
without a running service pays before anything else. Generated books use a small part of
TOML: ``[[array]]`` headers and ``key = value`` lines whose values are basic strings without
escapes, integers, decimals, booleans, UTC date-times (``...Z``), one-line inline tables and
one-line arrays of those. :func:`loads` reads exactly that subset, a line at a time, with one
compiled regular expression per value (C), about ten times faster.

Guaranteed: :func:`loads` returns what ``tomllib.loads(text, parse_float=Decimal)`` returns
(the same keys, values, types and decimal digits), or None when the text uses anything
outside the subset (escapes, comments after a value, ``[table]`` headers, dotted keys,
multi-line values, other date-time forms, a key given twice...). The caller then parses with
``tomllib``, which also reports the errors of an invalid document, so the subset never has
to judge one: whatever it is not sure of, it declines.
"""

from __future__ import annotations

import io
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

_KEY = r"[A-Za-z0-9_-]+"
_SCALAR = (r'"(?P<s>[^"\\\x00-\x1f\x7f]*)"'
           r"|(?P<b>true|false)"
           r"|(?P<d>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z)"
           r"|(?P<f>-?(?:0|[1-9][0-9]*)\.[0-9]+)"
           r"|(?P<i>-?(?:0|[1-9][0-9]*))")
_KEY_SCALAR = re.compile(rf"(?P<key>{_KEY})[ \t]*=[ \t]*(?:{_SCALAR})[ \t]*")
"""A whole ``key = scalar`` line (stripped), the common case."""
_KEY_OPEN = re.compile(rf"(?P<key>{_KEY})[ \t]*=[ \t]*")
"""The ``key = `` before a compound value (inline table or array)."""
_ITEM = re.compile(rf"[ \t]*(?P<key>{_KEY})[ \t]*=[ \t]*(?:{_SCALAR})[ \t]*(?P<end>[,}}])")
"""One ``key = scalar`` of an inline table and the comma or brace after it."""
_ELEMENT = re.compile(rf"[ \t]*(?:{_SCALAR})[ \t]*(?P<end>[,\]])")
"""One scalar element of an array and the comma or bracket after it."""
_HEADER = re.compile(rf"\[\[[ \t]*(?P<key>{_KEY})[ \t]*\]\]")
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]|\r")
"""Control characters (refused by TOML, reported by tomllib) and CR line ends: left to tomllib."""
_WHITESPACE = " \t"


class _Decline(Exception):
    """The text leaves the subset: tomllib must read it."""


def loads(text: str) -> dict[str, Any] | None:
    """``tomllib.loads(text, parse_float=Decimal)`` for plain TOML; None for anything else (then ask tomllib)."""
    if _UNSAFE.search(text) is not None:
        return None
    root: dict[str, Any] = {}
    arrays: set[str] = set()  # root keys made by [[key]] headers
    table = root
    try:
        for line in io.StringIO(text):  # a line at a time: a list of every line would cost more than the data
            line = line.rstrip("\n").strip(_WHITESPACE)
            if not line or line[0] == "#":
                continue
            if line[0] == "[":
                header = _HEADER.fullmatch(line)
                if header is None:
                    raise _Decline
                key = header["key"]
                if key not in arrays:
                    if key in root:
                        raise _Decline
                    root[key] = []
                    arrays.add(key)
                table = {}
                root[key].append(table)
                continue
            match = _KEY_SCALAR.fullmatch(line)
            if match is not None:
                key, kind = match["key"], match.lastgroup
                value = match["s"] if kind == "s" else int(match["i"]) if kind == "i" else _scalar(match)
            else:
                key, value = _compound(line)
            if key in table:
                raise _Decline
            table[key] = value
    except _Decline:
        return None
    return root


def _scalar(match: re.Match[str]) -> Any:
    """The value of a :data:`_SCALAR` match, as tomllib makes it."""
    kind = match.lastgroup if match.lastgroup != "end" else _kind(match)
    text = match[kind]
    if kind == "s":
        return text
    if kind == "i":
        return int(text)
    if kind == "f":
        return Decimal(text)
    if kind == "b":
        return text == "true"
    try:
        return datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
                        int(text[17:19]), tzinfo=timezone.utc)
    except ValueError:  # not a calendar date or time: tomllib says so
        raise _Decline from None


def _kind(match: re.Match[str]) -> str:
    """Which scalar group of ``match`` matched (its last group is the separator after it)."""
    for kind in ("s", "b", "d", "f", "i"):
        if match[kind] is not None:
            return kind
    raise _Decline


def _compound(line: str) -> tuple[str, Any]:
    """``key = { ... }`` or ``key = [ ... ]`` on one line."""
    opened = _KEY_OPEN.match(line)
    if opened is None:
        raise _Decline
    at = opened.end()
    if line.startswith("{", at):
        value, at = _inline_table(line, at + 1)
    elif line.startswith("[", at):
        value, at = _array(line, at + 1)
    else:
        raise _Decline
    if line[at:].strip(_WHITESPACE):
        raise _Decline
    return opened["key"], value


def _inline_table(line: str, at: int) -> tuple[dict[str, Any], int]:
    """The inline table whose ``{`` ends at ``at``, and where it ends; scalar values only."""
    table: dict[str, Any] = {}
    if line[at:].lstrip(_WHITESPACE).startswith("}"):
        return table, line.index("}", at) + 1
    while True:
        item = _ITEM.match(line, at)
        if item is None or item["key"] in table:
            raise _Decline
        table[item["key"]] = _scalar(item)
        at = item.end()
        if item["end"] == "}":
            return table, at


def _array(line: str, at: int) -> tuple[list[Any], int]:
    """The one-line array whose ``[`` ends at ``at``, and where it ends: scalars and inline tables."""
    values: list[Any] = []
    while True:
        rest = line[at:].lstrip(_WHITESPACE)
        at = len(line) - len(rest)
        if rest.startswith("]"):  # empty, or after a trailing comma
            return values, at + 1
        if rest.startswith("{"):
            table, at = _inline_table(line, at + 1)
            values.append(table)
            tail = line[at:].lstrip(_WHITESPACE)
            at = len(line) - len(tail)
            if tail.startswith("]"):
                return values, at + 1
            if not tail.startswith(","):
                raise _Decline
            at += 1
            continue
        element = _ELEMENT.match(line, at)
        if element is None:
            raise _Decline
        values.append(_scalar(element))
        at = element.end()
        if element["end"] == "]":
            return values, at
