"""Statements: one per rights holder, currency and closed month.

Pure: built from aggregated accrual lines and the carry of the previous statement.
Rounding happens here and only here (via :func:`ledger.core.money.round_to_minor`), once
per holder and currency; the residual, a negative balance or an amount under the
holder's payout minimum is carried, so payable + carry_out = accrued + carry_in, always.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
from dataclasses import dataclass
from decimal import Decimal
from itertools import chain
from operator import attrgetter
from typing import Callable, Iterable

from ledger.core.cells import safe_text
from ledger.core.money import round_to_minor, wide_precision
from ledger.core.unlicensed import UnlicensedLine, statement_section

# 2: lines carry ``description`` (how a period term was computed; empty for usage lines).
# 3: the content hash is the SHA-256 of the canonical bytes (:func:`canonical_bytes`, RFC 8785
#    JSON), which are what the Ed25519 signature covers; the file a holder downloads is the
#    signed envelope of :func:`render_envelope`.
# 4: amounts in plain notation (no exponents such as 0E-12).
# 5: the ledger section is the close root (ledger.core.chain.close_root), reproducible from the
#    Kafka log; formats up to 4 carried the chain head and last entry id.
FORMAT_VERSION = 5
# Statements of a format before this one were stored unsigned and hashed as rendered text.
FIRST_SIGNED_FORMAT = 3
# From this format on, the ledger section is {"close_root": ...}; before, {"chain_head", "last_entry_id"}.
FIRST_CLOSE_ROOT_FORMAT = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementLine:
    """Accruals of one source, platform, model, usage kind and rate, summed.

    ``period`` differs from the statement's period on a prior-period adjustment: usage
    of an already closed month that arrived after its close. A period term (tier
    adjustment, minimum top-up, pool share, model royalty) is a line of its own whose
    ``description`` says how it was computed.
    """

    period: str
    source_id: str
    platform_id: str
    model_id: str
    kind: str
    unit: str
    quantity: Decimal
    rate: Decimal
    per: int
    amount: Decimal
    entries: int
    license_id: str
    license_version: int
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement:
    statement_id: str
    period: str
    holder_id: str
    holder_name: str
    currency: str
    lines: tuple[StatementLine, ...]
    accrued: Decimal
    carry_in: Decimal
    payable: Decimal
    carry_out: Decimal
    close_root: str
    """The commitment of the close that built the statement (:func:`ledger.core.chain.close_root`)."""
    format_version: int = FORMAT_VERSION
    unlicensed: tuple[UnlicensedLine, ...] = ()
    """Uses of the holder's sources after consent ended (not money); the document's optional
    ``unlicensed_use`` member, present only when this is non-empty."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerSection:
    """What a stored statement document says it covers of the ledger, in either shape.

    Format 5 on: ``close_root`` (``chain_head`` and ``last_entry_id`` are None). Formats
    up to 4: ``chain_head`` and ``last_entry_id`` at close (``close_root`` is None); they
    depended on batch boundaries, so two ledgers built from the same log differ in them.
    """

    close_root: str | None = None
    chain_head: str | None = None
    last_entry_id: int | None = None


def ledger_section(document: dict) -> LedgerSection:
    """The ``ledger`` member of a statement document of any format, read by the rule of its version.

    Raises:
        KeyError: the document lacks the member its format requires (not a stored statement).
    """
    ledger = document["ledger"]
    if document["format_version"] >= FIRST_CLOSE_ROOT_FORMAT:
        return LedgerSection(close_root=ledger["close_root"])
    return LedgerSection(chain_head=ledger["chain_head"], last_entry_id=ledger["last_entry_id"])


def statement_id(period: str, holder_id: str, currency: str) -> str:
    """Deterministic, opaque id: closing the same month twice names the same statement."""
    digest = hashlib.sha256(f"{period}\x1f{holder_id}\x1f{currency}".encode()).hexdigest()
    return f"st_{digest[:20]}"


def settle(total: Decimal, currency: str, payout_minimum: Decimal) -> tuple[Decimal, Decimal]:
    """Splits ``total`` (accrued + carry in) into (payable, carry out).

    Payable is ``total`` rounded half-even to the minor unit, or zero when that is
    negative or under ``payout_minimum``. Carry out is the exact rest.
    """
    rounded = round_to_minor(total, currency)
    payable = rounded if rounded > 0 and rounded >= payout_minimum else Decimal(0)
    return payable, total - payable


_LINE_ORDER = attrgetter("period", "source_id", "platform_id", "model_id", "kind", "rate", "license_id",
                         "license_version", "unit", "per", "description", "amount")
"""How a statement orders its lines after its own month's come first: what makes the line order, and so
the bytes, a function of the lines alone."""


@wide_precision
def build_statement(
    *,
    period: str,
    holder_id: str,
    holder_name: str,
    currency: str,
    lines: Iterable[StatementLine],
    carry_in: Decimal,
    payout_minimum: Decimal,
    close_root: str,
    unlicensed: Iterable[UnlicensedLine] = (),
) -> Statement:
    # Ordered by (l.period != period, _LINE_ORDER...): sorted by _LINE_ORDER (one C-level key per
    # line), then the statement's own month first, each part keeping that order.
    by_fields = sorted(lines, key=_LINE_ORDER)
    ordered = (*(line for line in by_fields if line.period == period),
               *(line for line in by_fields if line.period != period))
    accrued = sum((line.amount for line in ordered), Decimal(0))
    payable, carry_out = settle(accrued + carry_in, currency, payout_minimum)
    return Statement(
        statement_id=statement_id(period, holder_id, currency),
        period=period,
        holder_id=holder_id,
        holder_name=holder_name,
        currency=currency,
        lines=ordered,
        accrued=accrued,
        carry_in=carry_in,
        payable=payable,
        carry_out=carry_out,
        close_root=close_root,
        unlicensed=tuple(unlicensed),
    )


def source_summary(statement: Statement) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for line in statement.lines:
        totals[line.source_id] = totals.get(line.source_id, Decimal(0)) + line.amount
    return dict(sorted(totals.items()))


def _plain(amount: Decimal) -> str:
    """An amount as a person reads it: positional notation, every stored digit kept."""
    return format(amount, "f")


def to_document(statement: Statement) -> dict:
    """The statement as a JSON-ready document; amounts as strings, never floats.

    ``unlicensed_use`` is added only when the statement lists unlicensed use, so the bytes
    (and signature) of every statement without it are what they were before it existed.
    """
    document = {
        "format_version": statement.format_version,
        "statement_id": statement.statement_id,
        "period": statement.period,
        "holder": {"id": statement.holder_id, "name": statement.holder_name},
        "currency": statement.currency,
        "summary": {
            "accrued": _plain(statement.accrued),
            "carry_in": _plain(statement.carry_in),
            "payable": _plain(statement.payable),
            "carry_out": _plain(statement.carry_out),
        },
        "by_source": {source: _plain(amount) for source, amount in source_summary(statement).items()},
        # Keys in sorted order: every encoder sorts them anyway (the bytes do not depend on this
        # order), and sorting keys that are in order already is one pass, not a sort, per line.
        "lines": [
            {
                "amount": format(line.amount, "f"),
                "description": line.description,
                "entries": line.entries,
                "kind": line.kind,
                "license": f"{line.license_id} v{line.license_version}",
                "model_id": line.model_id,
                "per": line.per,
                "period": line.period,
                "platform_id": line.platform_id,
                "prior_period_adjustment": line.period != statement.period,
                "quantity": format(line.quantity, "f"),
                "rate": format(line.rate, "f"),
                "source_id": line.source_id,
                "unit": line.unit,
            }
            for line in statement.lines
        ],
        "ledger": {"close_root": statement.close_root},
    }
    if statement.unlicensed:
        document["unlicensed_use"] = statement_section(statement.unlicensed)
    return document


def render_json(statement: Statement) -> bytes:
    return render_document(to_document(statement))


def render_document(document: dict) -> bytes:
    """A statement document as stored and shown: the bytes of ``json.dumps(document, indent=2, sort_keys=True)``
    and a newline, exactly.

    ``json`` falls back to its pure-Python encoder whenever ``indent`` is set, about ten
    times slower than its C encoder; a close renders thousands of documents. Here every
    object or array whose members are all scalars (a statement's lines, its summary) is
    encoded by the C encoder, its item separator carrying the newline and indentation,
    and only the few containers above them are joined in Python.
    """
    return (_indented(document, "") + "\n").encode()


@functools.lru_cache(maxsize=16)
def _flat_encoder(inner: str) -> Callable[[object], str]:
    """The C-encoded form of a container of scalars whose members sit at indentation ``inner``."""
    return json.JSONEncoder(sort_keys=True, separators=(",\n" + inner, ": ")).encode


def _indented(value: object, pad: str) -> str:
    """``value`` as ``json.dumps(indent=2, sort_keys=True)`` writes it at indentation ``pad``."""
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = pad + "  "
        if _SCALARS.issuperset(map(type, value.values())):
            return "{\n" + inner + _flat_encoder(inner)(value)[1:-1] + "\n" + pad + "}"
        return ("{\n" + ",\n".join(inner + _SCALAR(key) + ": " + _indented(member, inner)
                                     for key, member in sorted(value.items()))
                + "\n" + pad + "}")
    if isinstance(value, list):
        if not value:
            return "[]"
        inner = pad + "  "
        if all(type(member) is dict and member for member in value) and _SCALARS.issuperset(
                map(type, chain.from_iterable(map(dict.values, value)))):
            # Every member a non-empty object of scalars (a statement's lines): one C call for all.
            # A raw newline never occurs inside an encoded string, so "},<separator>{" is only
            # ever the boundary between two members.
            deeper = inner + "  "
            separator = ",\n" + deeper
            encoded = _flat_encoder(deeper)(value)[2:-2].replace(
                "}" + separator + "{", "\n" + inner + "},\n" + inner + "{" + separator[1:])
            return "[\n" + inner + "{" + separator[1:] + encoded + "\n" + inner + "}\n" + pad + "]"
        return "[\n" + ",\n".join(inner + _indented(member, inner) for member in value) + "\n" + pad + "]"
    return _SCALAR(value)


_SCALAR = json.JSONEncoder().encode
_SCALARS = frozenset({str, int, bool, float, type(None)})
"""Types ``json`` writes as one token, the same way with or without ``indent``."""


def canonical_bytes(document: dict) -> bytes:
    """The bytes a statement's content hash and signature cover.

    RFC 8785 (JSON Canonicalization Scheme) of the document: keys sorted, no insignificant
    whitespace, UTF-8, strings escaped minimally. A document holds only strings, integers,
    booleans, lists and objects with ASCII keys (amounts are strings), for which this is
    exactly what any JCS implementation produces.
    """
    return _CANONICAL_JSON(document).encode()


_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
"""``json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, its encoder made once."""


def rendered(document: dict) -> tuple[bytes, bytes]:
    """``(canonical_bytes(document), render_document(document))``, byte for byte, each container encoded once.

    A close writes every statement both ways; encoding each container of scalars once, with
    separators that carry a marker no encoded string can hold (``json`` writes the control
    characters U+0000 and U+0001 inside a string as escapes), gives both: the canonical form is
    the text without the markers, the indented form the text with each marked separator spelt
    with its newline and indentation. A container whose text is not plain ASCII (without DEL),
    where the two forms escape differently, is encoded twice as before.
    """
    canonical, indented = _both(document, "")
    return canonical.encode(), (indented + "\n").encode()


def _both(value: object, pad: str) -> tuple[str, str]:
    """``value`` as :data:`_CANONICAL_JSON` and as :func:`_indented` at indentation ``pad`` write it."""
    if isinstance(value, dict):
        if not value:
            return "{}", "{}"
        inner = pad + "  "
        if _SCALARS.issuperset(map(type, value.values())):
            text = _MARKED(value)
            if not _escaped_alike(text):
                return _CANONICAL_JSON(value), _indented(value, pad)
            return (_unmarked(text),
                    "{\n" + inner + text[1:-1].replace(_ITEM, ",\n" + inner).replace(_KEY, ": ") + "\n" + pad + "}")
        members = [(key, *_both(member, inner)) for key, member in sorted(value.items())]
        return ("{" + ",".join(_CANONICAL_JSON(key) + ":" + canonical for key, canonical, _ in members) + "}",
                "{\n" + ",\n".join(inner + _SCALAR(key) + ": " + indented for key, _, indented in members)
                + "\n" + pad + "}")
    if isinstance(value, list):
        if not value:
            return "[]", "[]"
        inner = pad + "  "
        if all(type(member) is dict and member for member in value) and _SCALARS.issuperset(
                map(type, chain.from_iterable(map(dict.values, value)))):
            text = _MARKED(value)
            if not _escaped_alike(text):
                return _CANONICAL_JSON(value), _indented(value, pad)
            # As _indented: "},<item marker>{" is only ever the boundary between two members.
            deeper = inner + "  "
            body = text[2:-2].replace("}" + _ITEM + "{", "\n" + inner + "},\n" + inner + "{\n" + deeper)
            return (_unmarked(text), "[\n" + inner + "{\n" + deeper + body.replace(_ITEM, ",\n" + deeper)
                    .replace(_KEY, ": ") + "\n" + inner + "}\n" + pad + "]")
        members = [_both(member, inner) for member in value]
        return ("[" + ",".join(canonical for canonical, _ in members) + "]",
                "[\n" + ",\n".join(inner + indented for _, indented in members) + "\n" + pad + "]")
    return _CANONICAL_JSON(value), _SCALAR(value)


_ITEM, _KEY = ",\x00", ":\x01"
_MARKED = json.JSONEncoder(sort_keys=True, separators=(_ITEM, _KEY), ensure_ascii=False).encode
"""Compact JSON whose separators carry a marker (U+0000 after an item's comma, U+0001 after a key's colon)."""


def _escaped_alike(text: str) -> bool:
    """Whether ``text`` (as ``ensure_ascii=False`` writes it) is what ``ensure_ascii=True`` writes: ASCII without DEL."""
    return text.isascii() and "\x7f" not in text


def _unmarked(text: str) -> str:
    return text.replace("\x00", "").replace("\x01", "")


_LINE_KEYS = ("amount", "description", "entries", "kind", "license", "model_id", "per", "period", "platform_id",
              "prior_period_adjustment", "quantity", "rate", "source_id", "unit")
"""A document line's members (:func:`to_document`), in the sorted order both renderings write them."""
_CANONICAL_LINE = ("{{" + ",".join(f'"{key}":{{}}' for key in _LINE_KEYS) + "}}").format
_INDENTED_LINE = ("    {{\n" + ",\n".join(f'      "{key}": {{}}' for key in _LINE_KEYS) + "\n    }}").format
_QUOTED = json.encoder.encode_basestring
"""A string as ``json`` writes it with ``ensure_ascii=False`` (C); the same as with ``ensure_ascii=True`` for ASCII without DEL."""


def statement_renderings(statement: Statement) -> tuple[bytes, bytes]:
    """``rendered(to_document(statement))``, byte for byte, written straight from the statement.

    A close renders every statement both ways (100,000 of them a month at scale). The document's
    shape is fixed, so each line is written by two templates from its values, each string escaped
    once, instead of building the line's object and encoding it generically: about 30% less of
    a statement's work in a close (docs/benchmarks.md). Where the shortcut could differ from the generic rendering
    (unlicensed use listed, a string not plain ASCII or holding DEL, a count that is not an
    ``int``), the statement is rendered generically: the bytes are the same either way.
    """
    try:
        fast = None if statement.unlicensed else _renderings(statement)
    except TypeError:  # a value json would write as other than a string (None: null)
        fast = None
    return fast if fast is not None else rendered(to_document(statement))


def _renderings(statement: Statement) -> tuple[bytes, bytes] | None:
    """:func:`statement_renderings` by templates; None where they could differ from the generic rendering.

    Raises:
        TypeError: a value that should be a string is not.
    """
    period, quoted = statement.period, _QUOTED
    canonical_lines, indented_lines = [], []
    for line in statement.lines:
        if type(line.entries) is not int or type(line.per) is not int:
            return None
        values = ('"' + format(line.amount, "f") + '"', quoted(line.description), line.entries, quoted(line.kind),
                  quoted(f"{line.license_id} v{line.license_version}"), quoted(line.model_id), line.per,
                  quoted(line.period), quoted(line.platform_id), "false" if line.period == period else "true",
                  '"' + format(line.quantity, "f") + '"', '"' + format(line.rate, "f") + '"',
                  quoted(line.source_id), quoted(line.unit))
        canonical_lines.append(_CANONICAL_LINE(*values))
        indented_lines.append(_INDENTED_LINE(*values))
    sources = [(quoted(source), '"' + _plain(amount) + '"') for source, amount in source_summary(statement).items()]
    head = (quoted(statement.currency), statement.format_version, quoted(statement.holder_id),
            quoted(statement.holder_name), quoted(statement.close_root))
    tail = (quoted(statement.period), quoted(statement.statement_id), _plain(statement.accrued),
            _plain(statement.carry_in), _plain(statement.carry_out), _plain(statement.payable))
    canonical = ('{"by_source":{' + ",".join(f"{source}:{amount}" for source, amount in sources) + "}"
                 + ',"currency":{},"format_version":{},"holder":{{"id":{},"name":{}}},"ledger":{{"close_root":{}}}'
                   .format(*head)
                 + ',"lines":[' + ",".join(canonical_lines) + "]"
                 + ',"period":{},"statement_id":{},"summary":{{"accrued":"{}","carry_in":"{}","carry_out":"{}",'
                   '"payable":"{}"}}}}'.format(*tail))
    if type(statement.format_version) is not int or not _escaped_alike(canonical):
        return None
    indented = ('{\n  "by_source": '
                + ("{\n" + ",\n".join(f"    {source}: {amount}" for source, amount in sources) + "\n  }"
                   if sources else "{}")
                + ',\n  "currency": {},\n  "format_version": {},\n  "holder": {{\n    "id": {},\n    "name": {}\n  }},'
                  '\n  "ledger": {{\n    "close_root": {}\n  }}'.format(*head)
                + ',\n  "lines": ' + ("[\n" + ",\n".join(indented_lines) + "\n  ]" if indented_lines else "[]")
                + ',\n  "period": {},\n  "statement_id": {},\n  "summary": {{\n    "accrued": "{}",\n'
                  '    "carry_in": "{}",\n    "carry_out": "{}",\n    "payable": "{}"\n  }}\n}}\n'.format(*tail))
    return canonical.encode(), indented.encode()


def content_hash(statement: Statement) -> str:
    """Hex SHA-256 of the canonical bytes: what makes a closed statement immutable."""
    return hashlib.sha256(canonical_bytes(to_document(statement))).hexdigest()


def stored_document_hash(document_text: str) -> str:
    """The content hash of a stored document, by the rule of its format version."""
    document = json.loads(document_text)
    if document.get("format_version", 0) < FIRST_SIGNED_FORMAT:
        return hashlib.sha256(document_text.encode()).hexdigest()
    return hashlib.sha256(canonical_bytes(document)).hexdigest()


CSV_COLUMNS = (
    "period", "prior_period_adjustment", "source_id", "platform_id", "model_id", "kind", "unit",
    "quantity", "rate", "per", "amount", "entries", "license", "description",
)


CSV_NUMBER_COLUMNS = frozenset({"quantity", "rate", "per", "amount", "entries"})


def _csv_cell(column: str, value: object) -> object:
    if not isinstance(value, str) or column in CSV_NUMBER_COLUMNS:
        return value
    # csv.writer quotes a cell holding "\n" but not one holding a lone "\r", which a
    # reader would take for the end of the row: carriage returns become line feeds.
    return safe_text(value).replace("\r\n", "\n").replace("\r", "\n")


def _unlicensed_text(use: dict) -> str:
    how = f"revoked ({use['revocation_id']})" if use["reason"] == "revoked" else "license ended"
    return f"unlicensed use, not priced: {how}; {use['events']} events"


def render_csv(document: dict) -> bytes:
    """A statement document as CSV: lines first, then unlicensed use (kind = unlicensed_<kind>, no amount) if
    any, then summary rows (kind = summary).

    Text cells that could start a spreadsheet formula are neutralized
    (:func:`ledger.core.cells.safe_text`); number columns are written as they are.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for line in document["lines"]:
        writer.writerow([_csv_cell(c, line.get(c, "")) for c in CSV_COLUMNS])
    for use in document.get("unlicensed_use", ()):  # not money: no rate, per or amount
        row = dict.fromkeys(CSV_COLUMNS, "")
        row.update(period=use["period"], prior_period_adjustment=use["period"] != document["period"],
                   source_id=use["source_id"], platform_id=use["platform_id"], model_id=use["model_id"],
                   kind="unlicensed_" + use["kind"], unit=use["unit"], quantity=use["quantity"], entries=use["events"],
                   license=use["license"], description=_unlicensed_text(use))
        writer.writerow([_csv_cell(c, row[c]) for c in CSV_COLUMNS])
    for key in ("accrued", "carry_in", "payable", "carry_out"):
        summary = dict.fromkeys(CSV_COLUMNS, "")
        summary.update(period=document["period"], kind="summary", unit=key, amount=document["summary"][key])
        writer.writerow([_csv_cell(c, summary[c]) for c in CSV_COLUMNS])
    return out.getvalue().encode()
