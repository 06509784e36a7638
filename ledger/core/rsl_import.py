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
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from ledger.errors import LicenseFileError
from ledger.core.license_file import FORMAT_VERSION, parse_book
from ledger.core.licenses import ANY_PLATFORM, Holder, Source
from ledger.core.money import ACCRUAL_SCALE
from ledger.core.rsl_document import RslAmount, RslContent, RslDocument, RslLicense, RslPayment, RslUsage, parse_rsl

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
        LicenseFileError: no ``<content>`` chosen, conflicting terms, a training term
            without ``training_unit`` and ``training_per``, an inference rate with too
            many places, options that contradict the ledger, or nothing that maps.
    """
    origin = document.origin
    content, unmapped = _select_content(document, options.content_url)
    terms = _mapped_terms(content, unmapped)
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


def _mapped_terms(content: RslContent, unmapped: list[Unmapped]) -> list[_Term]:
    """The payment terms of ``content`` that map; every other term is added to ``unmapped``."""
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
    return terms


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
