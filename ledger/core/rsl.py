"""Import the payment terms of an RSL (Really Simple Licensing) 1.0 document.

RSL is a publisher's offer: per ``<content url>``, one or more ``<license>`` elements
say which uses are permitted or prohibited and what each costs (``<payment type>`` with
an ``<amount currency>``). Learnright prices only uses it meters per event, so only two
payment types map onto a license version: a per-use payment (``inference``, also read
as ``use``) becomes ``inference = { rate }``, and a ``training`` payment becomes
``training = { rate, per, unit }``. RSL has no unit for training payments, so the
importer must say what the amount is paid per (``--unit``, ``--per``); nothing guesses
it. ``free`` and ``attribution`` are reported as not priced (a Learnright rate must be
> 0), and every other term (``crawl``, ``purchase``, ``subscription``, ``royalty``,
amounts with no rate, ``user``/``geo`` restrictions) is listed as unmapped, never
dropped silently. A usage that any license of the content prohibits gets no term.

Pure: text in, TOML text and a report out; the caller reads files and the ledger.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
import xml.parsers.expat
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from ground.errors import ValidationError
from ledger.errors import LicenseFileError
from ledger.core.licenses import ANY_PLATFORM, FORMAT_VERSION, Holder, Source, parse_book
from ledger.core.money import ACCRUAL_SCALE, check_currency, money

RSL_NAMESPACE = "https://rslstandard.org/rsl"
_NS = "{" + RSL_NAMESPACE + "}"

INFERENCE_PAYMENTS = frozenset({"inference", "use"})
TRAINING_PAYMENTS = frozenset({"training"})
NOT_PRICED_PAYMENTS = frozenset({"free", "attribution"})
# Why each payment type Learnright knows of but cannot price does not map.
UNMAPPED_PAYMENTS = {
    "crawl": "a fee per crawl; Learnright meters training and inference use, not fetches",
    "purchase": "a one-time purchase; Learnright prices use per event, not flat fees",
    "subscription": "a recurring flat fee; Learnright prices use per event, not subscriptions",
    "royalty": "a revenue royalty whose rate lives outside the document; use a platform [[agreements]] entry",
    "contribution": "a voluntary contribution; Learnright prices use per event",
}
# RSL usage values that cover each Learnright kind; prohibiting any of them prohibits the kind.
TRAINING_USAGES = frozenset({"ai-train", "train-ai", "ai-all", "all"})
INFERENCE_USAGES = frozenset({"ai-input", "ai-use", "ai-all", "all"})
INFERENCE_RATE_PLACES = ACCRUAL_SCALE - 6  # what parse_book allows for inference.rate

_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


@dataclass(frozen=True, slots=True, kw_only=True)
class RslAmount:
    where: str
    currency: str
    value: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class RslPayment:
    where: str
    type: str
    amounts: tuple[RslAmount, ...]
    standard: str | None
    custom: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RslUsage:
    """One ``<permits>`` or ``<prohibits>``: its ``type`` (usage, user, geo) and values."""

    where: str
    element: str
    type: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RslLicense:
    where: str
    permits: tuple[RslUsage, ...]
    prohibits: tuple[RslUsage, ...]
    payments: tuple[RslPayment, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RslContent:
    where: str
    url: str
    copyright: str | None
    licenses: tuple[RslLicense, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RslDocument:
    origin: str
    contents: tuple[RslContent, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportOptions:
    """What the RSL document cannot say: whose source this is and how Learnright names it.

    Attributes:
        holder_id, source_id: the ids the license version is written for.
        effective_from: aware datetime from which the version prices use.
        platform_id: one platform, or ``"*"`` for every platform.
        license_id: defaults to ``rsl-<source_id>``.
        training_unit, training_per: what a training amount is paid per; RSL has no
            unit, so a training payment cannot be imported without both.
        content_url: which ``<content>`` to import when the document has several.
        holder, source: the ledger's current entries, restated as they are so that
            applying the document does not replace their name or payout minimum.
    """

    holder_id: str
    source_id: str
    effective_from: datetime
    platform_id: str = ANY_PLATFORM
    license_id: str | None = None
    version: int = 1
    training_unit: str | None = None
    training_per: int | None = None
    content_url: str | None = None
    holder: Holder | None = None
    source: Source | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Unmapped:
    """An RSL term that is not in the TOML, where it is and why."""

    where: str
    term: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.term}: {self.reason}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RslImport:
    """The license document (``parse_book`` accepts it) and every term left out of it."""

    toml: str
    license_id: str
    currency: str
    training: Decimal | None
    inference: Decimal | None
    unmapped: tuple[Unmapped, ...]


def import_rsl(text: str, origin: str, options: ImportOptions) -> RslImport:
    """Parses an RSL document and converts the payment terms that map.

    Raises:
        LicenseFileError: bad XML, a DTD, a wrong namespace, a malformed amount or
            currency, conflicting terms, or nothing that maps; naming the element,
            the attribute, the value and ``origin``.
    """
    return convert(parse_rsl(text, origin), options)


# -- parsing ----------------------------------------------------------------------------


def parse_rsl(text: str, origin: str = "<string>") -> RslDocument:
    """Reads the RSL elements Learnright uses into plain values, validating amounts.

    A DTD is refused outright: an RSL document needs none, and refusing it rules out
    entity expansion and external entities before ElementTree sees the text.

    Raises:
        LicenseFileError: as :func:`import_rsl`.
    """
    _refuse_dtd(text, origin)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise LicenseFileError(f"{origin} is not well-formed XML: {exc}") from exc
    if root.tag != _NS + "rsl":
        raise LicenseFileError(
            f"root element {_show_tag(root.tag)} is not <rsl xmlns=\"{RSL_NAMESPACE}\"> in {origin}"
        )
    contents = tuple(_content(element, f"content[{i}]", origin) for i, element in enumerate(_children(root, "content"), 1))
    if not contents:
        raise LicenseFileError(f"rsl has no <content> element in {origin}")
    return RslDocument(origin=origin, contents=contents)


def _refuse_dtd(text: str, origin: str) -> None:
    def refuse(*_args: object) -> None:
        raise LicenseFileError(f"{origin} declares a DTD or entities; an RSL document must not")

    scanner = xml.parsers.expat.ParserCreate()
    scanner.StartDoctypeDeclHandler = refuse
    scanner.EntityDeclHandler = refuse
    scanner.ExternalEntityRefHandler = refuse
    try:
        scanner.Parse(text, True)
    except xml.parsers.expat.ExpatError as exc:
        raise LicenseFileError(f"{origin} is not well-formed XML: {exc}") from exc


def _show_tag(tag: str) -> str:
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return f"<{local} xmlns=\"{namespace}\">"
    return f"<{tag}> (no namespace)"


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return element.findall(_NS + name)


def _text(element: ET.Element | None) -> str | None:
    if element is None or element.text is None or not element.text.strip():
        return None
    return element.text.strip()


def _content(element: ET.Element, where: str, origin: str) -> RslContent:
    url = element.get("url")
    if not url or not url.strip():
        raise LicenseFileError(f"{where} url {url!r} must be a URL or path in {origin}")
    licenses = tuple(
        _license(item, f"{where}.license[{i}]", origin) for i, item in enumerate(_children(element, "license"), 1)
    )
    return RslContent(where=where, url=url.strip(), copyright=_text(element.find(_NS + "copyright")), licenses=licenses)


def _license(element: ET.Element, where: str, origin: str) -> RslLicense:
    def usages(name: str) -> tuple[RslUsage, ...]:
        found = []
        for i, item in enumerate(_children(element, name), 1):
            here = f"{where}.{name}[{i}]"
            kind = (item.get("type") or "usage").strip()
            values = tuple(v.strip() for v in (item.text or "").replace(",", " ").split() if v.strip())
            found.append(RslUsage(where=here, element=name, type=kind, values=values))
        return tuple(found)

    payments = tuple(
        _payment(item, f"{where}.payment[{i}]", origin) for i, item in enumerate(_children(element, "payment"), 1)
    )
    return RslLicense(where=where, permits=usages("permits"), prohibits=usages("prohibits"), payments=payments)


def _payment(element: ET.Element, where: str, origin: str) -> RslPayment:
    # RSL's default payment type is free.
    kind = (element.get("type") or "free").strip()
    amounts = tuple(
        _amount(item, f"{where}.amount" if i == 1 else f"{where}.amount[{i}]", origin)
        for i, item in enumerate(_children(element, "amount"), 1)
    )
    return RslPayment(
        where=where, type=kind, amounts=amounts,
        standard=_text(element.find(_NS + "standard")), custom=_text(element.find(_NS + "custom")),
    )


def _amount(element: ET.Element, where: str, origin: str) -> RslAmount:
    currency = element.get("currency")
    if currency is None:
        raise LicenseFileError(f"{where} has no currency attribute in {origin}")
    try:
        check_currency(currency.strip())
    except ValidationError:
        raise LicenseFileError(f"{where} currency {currency!r} is not an ISO 4217 currency code in {origin}") from None
    raw = element.text or ""
    # A plain decimal only: exponents, signs, separators, NaN and Infinity are refused, not guessed.
    if not _PLAIN_DECIMAL.fullmatch(raw.strip()):
        raise LicenseFileError(
            f"{where} value {raw!r} is not a plain decimal amount such as 0.0025 in {origin}"
        )
    return RslAmount(where=where, currency=currency.strip(), value=money(raw.strip(), where))


# -- conversion -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Term:
    kind: str  # "training" or "inference"
    payment: RslPayment
    amount: RslAmount


def convert(document: RslDocument, options: ImportOptions) -> RslImport:
    """Turns the mapped payment terms of one ``<content>`` into one license version.

    One version, because Learnright prices a source on a platform by exactly one
    version in force; so at most one training and one inference term, in one currency.

    Raises:
        LicenseFileError: as :func:`import_rsl`.
    """
    origin = document.origin
    content, unmapped = _select_content(document, options.content_url)
    terms: list[_Term] = []
    # A prohibition in any license of the content counts: never price a use the publisher forbids.
    prohibited: dict[str, RslUsage] = {}
    for usage in (u for lic in content.licenses for u in lic.prohibits if u.type == "usage"):
        for kind, covering in (("training", TRAINING_USAGES), ("inference", INFERENCE_USAGES)):
            if covering & set(usage.values):
                prohibited.setdefault(kind, usage)
    if not content.licenses:
        unmapped.append(Unmapped(where=content.where, term="no <license>", reason="nothing is offered, so nothing is priced"))
    for lic in content.licenses:
        for usage in lic.permits + lic.prohibits:
            if usage.type != "usage":
                unmapped.append(Unmapped(
                    where=usage.where, term=f"{usage.element} type {usage.type!r} {' '.join(usage.values)!r}",
                    reason="Learnright does not enforce user or geographic restrictions",
                ))
        if not lic.payments:
            unmapped.append(Unmapped(where=lic.where, term="no <payment> (RSL: free)", reason="not priced"))
        for payment in lic.payments:
            term = _map_payment(lic, payment, prohibited, unmapped)
            if term is not None:
                terms.append(term)
    training = _single(terms, "training", origin)
    inference = _single(terms, "inference", origin)
    if training is None and inference is None:
        details = "; ".join(str(u) for u in unmapped) or "no payment terms"
        raise LicenseFileError(f"no payment term of {content.where} (url {content.url!r}) in {origin} maps to a"
                               f" Learnright license: {details}")
    if training is not None and inference is not None and training.amount.currency != inference.amount.currency:
        raise LicenseFileError(
            f"{training.amount.where} currency {training.amount.currency!r} differs from {inference.amount.where}"
            f" currency {inference.amount.currency!r} in {origin}; a Learnright license version has one currency"
        )
    if training is not None and (options.training_unit is None or options.training_per is None):
        raise LicenseFileError(
            f"{training.payment.where} type 'training' prices training, but RSL gives no unit for it in {origin}:"
            f" pass --unit (e.g. tokens) and --per (e.g. 1000000) to say what {training.amount.value}"
            f" {training.amount.currency} is paid per"
        )
    if inference is not None and inference.amount.value.as_tuple().exponent < -INFERENCE_RATE_PLACES:
        raise LicenseFileError(
            f"{inference.amount.where} value '{_decimal(inference.amount.value)}' has more than {INFERENCE_RATE_PLACES}"
            f" decimal places (the most a Learnright inference rate has) in {origin}"
        )
    chosen = training or inference
    result = RslImport(
        toml=_render(content, training, inference, tuple(unmapped), options, origin),
        license_id=options.license_id or f"rsl-{options.source_id}",
        currency=chosen.amount.currency,
        training=None if training is None else training.amount.value,
        inference=None if inference is None else inference.amount.value,
        unmapped=tuple(unmapped),
    )
    # The output must be a license document Learnright accepts; check it here, not at apply time.
    parse_book(result.toml, f"TOML converted from {origin}")
    return result


def _select_content(document: RslDocument, url: str | None) -> tuple[RslContent, list[Unmapped]]:
    urls = [c.url for c in document.contents]
    if url is None:
        if len(document.contents) > 1:
            raise LicenseFileError(
                f"{document.origin} has {len(urls)} <content> elements ({', '.join(repr(u) for u in urls)});"
                " choose the one for this source with --content URL"
            )
        return document.contents[0], []
    matching = [c for c in document.contents if c.url == url]
    if not matching:
        raise LicenseFileError(
            f"--content {url!r} names no <content url> of {document.origin} (it has {', '.join(repr(u) for u in urls)})"
        )
    others = [
        Unmapped(where=c.where, term=f"content url {c.url!r}", reason="another content; import it with --content for its source")
        for c in document.contents if c is not matching[0]
    ]
    return matching[0], others


def _map_payment(
    lic: RslLicense, payment: RslPayment, prohibited: dict[str, RslUsage], unmapped: list[Unmapped]
) -> _Term | None:
    term = f"payment type {payment.type!r}" + "".join(
        f" {a.value} {a.currency}" for a in payment.amounts
    )

    def leave(reason: str) -> None:
        unmapped.append(Unmapped(where=payment.where, term=term, reason=reason))

    if payment.type in NOT_PRICED_PAYMENTS:
        leave("not priced (a Learnright rate must be > 0)")
        return None
    if payment.type in INFERENCE_PAYMENTS:
        kind, covering = "inference", INFERENCE_USAGES
    elif payment.type in TRAINING_PAYMENTS:
        kind, covering = "training", TRAINING_USAGES
    else:
        reason = UNMAPPED_PAYMENTS.get(payment.type, "not an RSL payment type Learnright knows")
        where_terms = payment.standard or payment.custom
        leave(reason + (f"; the terms are at {where_terms}" if where_terms else ""))
        return None
    if kind in prohibited:
        usage = prohibited[kind]
        leave(f"{kind} is prohibited by {usage.where} ({' '.join(usage.values)}), so no {kind} terms are written")
        return None
    permitted = [u for u in lic.permits if u.type == "usage"]
    if permitted and not any(covering & set(u.values) for u in permitted):
        values = " ".join(v for u in permitted for v in u.values)
        leave(f"{lic.where} permits only {values!r}, not {kind}")
        return None
    if not payment.amounts:
        where_terms = payment.standard or payment.custom
        leave("no <amount>" + (f"; the terms are at {where_terms}" if where_terms else ""))
        return None
    if len(payment.amounts) > 1:
        leave("several amounts; a Learnright license version has one rate in one currency")
        return None
    amount = payment.amounts[0]
    if amount.value == 0:
        leave("amount 0 is not priced (a Learnright rate must be > 0)")
        return None
    return _Term(kind=kind, payment=payment, amount=amount)


def _single(terms: list[_Term], kind: str, origin: str) -> _Term | None:
    found = [t for t in terms if t.kind == kind]
    if len(found) > 1:
        raise LicenseFileError(
            f"{found[0].payment.where} and {found[1].payment.where} both price {kind} in {origin};"
            " a Learnright license version has one rate per kind"
        )
    return found[0] if found else None


# -- rendering --------------------------------------------------------------------------


def _string(value: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, with non-ASCII kept as is."""
    return json.dumps(value, ensure_ascii=False)


def _comment(value: object) -> str:
    """Text for a TOML comment: control characters (a newline would end it) become spaces."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", str(value))


def _decimal(value: Decimal) -> str:
    return format(value, "f")


def _datetime(value: datetime) -> str:
    if value.tzinfo is None:
        raise LicenseFileError(f"--effective-from {value.isoformat()} has no time zone; give one, e.g. Z")
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _render(
    content: RslContent, training: _Term | None, inference: _Term | None, unmapped: tuple[Unmapped, ...],
    options: ImportOptions, origin: str,
) -> str:
    holder, source = options.holder, options.source
    if source is not None and source.holder_id != options.holder_id:
        raise LicenseFileError(
            f"source {options.source_id!r} belongs to holder {source.holder_id!r} in the ledger, not {options.holder_id!r}"
        )
    name = holder.name if holder is not None else (content.copyright or options.holder_id)
    chosen = training or inference
    lines = [
        _comment(f"# Converted from the RSL document {origin}, {content.where} (url {content.url})."),
        "# Only per-use payment terms map to Learnright; see the end for what did not.",
        f"format = {FORMAT_VERSION}",
        "",
        "[[holders]]",
        f"id = {_string(options.holder_id)}",
        f"name = {_string(name)}",
    ]
    if holder is not None and holder.payout_minimum:
        minimums = ", ".join(f"{code} = {_decimal(v)}" for code, v in sorted(holder.payout_minimum.items()))
        lines.append(f"payout_minimum = {{ {minimums} }}")
    lines += [
        "",
        "[[sources]]",
        f"id = {_string(options.source_id)}",
        f"holder = {_string(options.holder_id)}",
        f"title = {_string(source.title if source is not None else content.url)}",
        "",
        "[[licenses]]",
        f"id = {_string(options.license_id or 'rsl-' + options.source_id)}",
        f"version = {options.version}",
        f"source = {_string(options.source_id)}",
        f"platform = {_string(options.platform_id)}",
        f"effective_from = {_datetime(options.effective_from)}",
        f"currency = {_string(chosen.amount.currency)}",
    ]
    if training is not None:
        lines.append(_comment(f"# from {training.payment.where} type {training.payment.type!r}; unit and per given at import"))
        lines.append(
            f"training = {{ rate = {_decimal(training.amount.value)}, per = {options.training_per},"
            f" unit = {_string(options.training_unit)} }}"
        )
    if inference is not None:
        lines.append(_comment(f"# from {inference.payment.where} type {inference.payment.type!r}"))
        lines.append(f"inference = {{ rate = {_decimal(inference.amount.value)} }}")
    if unmapped:
        lines += ["", "# Not imported:"]
        lines += [_comment(f"# - {item}") for item in unmapped]
    return "\n".join(lines) + "\n"
