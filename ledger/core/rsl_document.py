"""The RSL (Really Simple Licensing) 1.0 document, read into plain values.

Only the elements Learnright uses are read: per ``<content url>`` its ``<copyright>``
and ``<license>`` elements, and per license its ``<permits>``/``<prohibits>`` and
``<payment type>`` with ``<standard>``, ``<custom>`` and ``<amount currency>``. Amounts
are validated here; what they mean for a license version is decided in
:mod:`ledger.core.rsl_import`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
import xml.parsers.expat
from dataclasses import dataclass
from decimal import Decimal

from ground.errors import ValidationError
from ledger.errors import LicenseFileError
from ledger.core.money import check_currency, money

RSL_NAMESPACE = "https://rslstandard.org/rsl"
_NS = "{" + RSL_NAMESPACE + "}"

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

def parse_rsl(text: str, origin: str = "<string>") -> RslDocument:
    """Reads the RSL elements Learnright uses into plain values, validating amounts.

    A DTD is refused outright: an RSL document needs none, and refusing it rules out
    entity expansion and external entities before ElementTree sees the text.

    Raises:
        LicenseFileError: bad XML, a DTD, a wrong namespace, no ``<content>``, a
            content without url, a malformed amount or currency; naming the element,
            the attribute, the value and ``origin``.
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
