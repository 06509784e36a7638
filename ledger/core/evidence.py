"""Licensed-model evidence: what the ledger can prove about a model's training data, signed.

For a model and every base model in its lineage, each training source with its holder,
units, events, first and last use, the license id and version in force at each use,
and any unlicensed use; then a verdict: was every training use licensed? Certification
schemes (Fairly Trained's "Licensed Model") ask for exactly this documentation.

Signed the same way as statements (:mod:`ledger.core.envelope`): Ed25519 by the
statement key over the RFC 8785 canonical bytes (:func:`ledger.core.statements.canonical_bytes`)
of the ``evidence`` member, in an envelope whose other members repeat values of the
signed document. :func:`verify_evidence` refuses a file in which any single byte changed.

Pure: rows in, a document and its bytes out. The same ledger and ``as_of`` give the
same bytes (no clock: ``as_of`` is an input).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Iterable, Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.core.signing import ALGORITHM, SignatureError, check_layout, check_signed_file
from ledger.core.statements import canonical_bytes
from ledger.core.unlicensed import UnlicensedUse

FORMAT_VERSION = 1
ENVELOPE_VERSION = 1
KIND = "learnright.licensed_model_evidence"
SIGNED_BYTES = "RFC 8785 (JCS) canonical JSON of the evidence member"
MEMBERS = ("envelope_version", "kind", "format_version", "evidence_id", "verdict", "content_hash", "signed_bytes",
           "signature", "evidence")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingUse:
    """Priced training of one model on one source under one license version, summed.

    ``units`` is net of corrections; ``events`` counts the training events booked (not
    their reversals); ``first_use`` and ``last_use`` bound their ``occurred_at``.
    """

    platform_id: str
    model_id: str
    source_id: str
    holder_id: str
    license_id: str
    license_version: int
    unit: str
    units: Decimal
    events: int
    first_use: datetime
    last_use: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedEvidence:
    """What a successful check of an evidence file vouches for."""

    evidence_id: str
    platform_id: str
    model_id: str
    as_of: str
    all_training_licensed: bool
    content_hash: str
    key_fingerprint: str


def lineage_of(platform_id: str, model_id: str, lineage: Mapping[tuple[str, str], str]) -> tuple[str, ...]:
    """``model_id`` then its base, the base's base...; a loop is cut where it repeats."""
    chain = [model_id]
    while (base := lineage.get((platform_id, chain[-1]))) is not None and base not in chain:
        chain.append(base)
    return tuple(chain)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _num(value: Decimal) -> str:
    return format(value, "f")


def _span(licensed: Sequence[TrainingUse], refused: Sequence[UnlicensedUse]) -> tuple[str, str]:
    """The first and last use among ``licensed`` (summed rows) and ``refused`` (single uses), as ISO 8601."""
    firsts = [u.first_use for u in licensed] + [u.occurred_at for u in refused]
    lasts = [u.last_use for u in licensed] + [u.occurred_at for u in refused]
    return _iso(min(firsts)), _iso(max(lasts))


def _sources(uses: Sequence[TrainingUse], unlicensed: Sequence[UnlicensedUse],
             holder_names: Mapping[str, str]) -> list[dict]:
    """One entry per source: its holder, totals, each license version in force at its uses, its unlicensed use."""
    by_source: dict[str, tuple[list[TrainingUse], list[UnlicensedUse]]] = {}
    for use in uses:
        by_source.setdefault(use.source_id, ([], []))[0].append(use)
    for use in unlicensed:
        by_source.setdefault(use.source_id, ([], []))[1].append(use)
    entries = []
    for source_id in sorted(by_source):
        licensed, refused = by_source[source_id]
        holder_id = (licensed or refused)[0].holder_id
        first, last = _span(licensed, refused)
        licenses = [
            {"license": f"{u.license_id} v{u.license_version}", "unit": u.unit, "units": _num(u.units),
             "events": u.events, "first_use": _iso(u.first_use), "last_use": _iso(u.last_use)}
            for u in sorted(licensed, key=lambda u: (u.first_use, u.license_id, u.license_version, u.unit))
        ]
        grouped: dict[tuple, list[UnlicensedUse]] = {}
        for use in refused:
            grouped.setdefault((use.reason, use.license_id, use.license_version, use.revocation_id, use.unit),
                               []).append(use)
        unlicensed_entries = [
            {"reason": reason, "license": f"{license_id} v{version}", "revocation_id": revocation_id, "unit": unit,
             "units": _num(sum((u.quantity for u in items), Decimal(0))), "events": len({u.event_id for u in items}),
             "first_use": _span((), items)[0], "last_use": _span((), items)[1]}
            for (reason, license_id, version, revocation_id, unit), items in sorted(grouped.items())
        ]
        entries.append({
            "source_id": source_id, "holder_id": holder_id, "holder_name": holder_names.get(holder_id, holder_id),
            "events": sum(u.events for u in licensed) + len({u.event_id for u in refused}),
            "first_use": first, "last_use": last, "licenses": licenses, "unlicensed": unlicensed_entries,
        })
    return entries


def build_evidence(*, platform_id: str, model_id: str, as_of: datetime, lineage: Mapping[tuple[str, str], str],
                   uses: Iterable[TrainingUse], unlicensed: Iterable[UnlicensedUse],
                   holder_names: Mapping[str, str], book_hash: str, close_root: str | None) -> dict:
    """The evidence document of ``model_id`` and its lineage: training uses up to ``as_of``, then the verdict.

    Args:
        uses: priced training of the platform's models up to ``as_of`` (the reader filters by time).
        unlicensed: unlicensed uses of the platform (training ones up to ``as_of`` are counted).
        book_hash: the license book (revocations included) the evidence was read against.
        close_root: the root of the latest close, tying the evidence to the signed statements.
    """
    chain = lineage_of(platform_id, model_id, lineage)
    uses = [u for u in uses if u.platform_id == platform_id]
    refused = [u for u in unlicensed
               if u.platform_id == platform_id and u.kind == "training" and u.occurred_at <= as_of]
    models = []
    for index, name in enumerate(chain):
        models.append({
            "model_id": name, "base_model_id": chain[index + 1] if index + 1 < len(chain) else "",
            "sources": _sources([u for u in uses if u.model_id == name], [u for u in refused if u.model_id == name],
                                holder_names),
        })
    in_chain = [u for u in refused if u.model_id in chain]
    licensed = not in_chain
    verdict = {"all_training_licensed": licensed, "answer": "yes" if licensed else "no",
               "unlicensed_training_events": len({(u.model_id, u.event_id) for u in in_chain}),
               "models": len(chain), "sources": len({s["source_id"] for m in models for s in m["sources"]})}
    identity = json.dumps([platform_id, model_id, _iso(as_of), book_hash, close_root or ""])
    return {
        "format_version": FORMAT_VERSION, "kind": KIND,
        "evidence_id": "ev_" + hashlib.sha256(identity.encode()).hexdigest()[:20],
        "platform_id": platform_id, "model_id": model_id, "as_of": _iso(as_of), "lineage": list(chain),
        "models": models, "ledger": {"book_hash": book_hash, "close_root": close_root or ""},
        "limits": "Covers training the platform reported to Learnright up to as_of. Units are net of corrections."
                  " Runs are not recorded by the ledger: events are counted instead.",
        "verdict": verdict,
    }


def render_evidence(document: dict, *, signature: str, key_fingerprint: str) -> bytes:
    """The signed evidence file: members in :data:`MEMBERS` order, two-space indentation, a final newline."""
    envelope = {
        "envelope_version": ENVELOPE_VERSION, "kind": KIND, "format_version": document["format_version"],
        "evidence_id": document["evidence_id"], "verdict": document["verdict"]["answer"],
        "content_hash": hashlib.sha256(canonical_bytes(document)).hexdigest(), "signed_bytes": SIGNED_BYTES,
        "signature": {"algorithm": ALGORITHM, "key_fingerprint": key_fingerprint, "value": signature},
        "evidence": _sorted(document),
    }
    return (json.dumps(envelope, indent=2, ensure_ascii=False) + "\n").encode()


def _sorted(value):
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    found: dict = {}
    for key, value in pairs:
        if key in found:
            raise SignatureError(f"member {key!r} appears twice in one object; signed evidence names each once")
        found[key] = value
    return found


def _no_floats(text: str):
    raise SignatureError(f"number {text} is not an integer; quantities in evidence are strings")


def verify_evidence(data: bytes, public_key: Ed25519PublicKey, where: str) -> VerifiedEvidence:
    """Checks an evidence file: layout, version, content hash, repeated members, signature, every byte.

    Raises:
        SignatureError: anything does not check out; the message says what, with which value.
    """
    try:
        envelope = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_float=_no_floats)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureError(f"{where} is not a JSON evidence file: {exc}") from exc
    if not isinstance(envelope, dict) or tuple(envelope) != MEMBERS:
        got = tuple(envelope) if isinstance(envelope, dict) else type(envelope).__name__
        raise SignatureError(f"{where} does not have the members of an evidence file: expected {MEMBERS}, got {got}")
    if envelope["envelope_version"] != ENVELOPE_VERSION or envelope["kind"] != KIND:
        raise SignatureError(f"{where}: envelope_version {envelope['envelope_version']!r} of kind"
                             f" {envelope['kind']!r} is not version {ENVELOPE_VERSION} of {KIND}")
    document = envelope["evidence"]
    if not isinstance(document, dict) or document.get("format_version") != FORMAT_VERSION:
        version = document.get("format_version") if isinstance(document, dict) else None
        newer = " (written by a newer Learnright; upgrade to check it)" if isinstance(version, int) and version > FORMAT_VERSION else ""
        raise SignatureError(f"{where}: evidence format_version {version!r} is not {FORMAT_VERSION}{newer}")
    digest = hashlib.sha256(canonical_bytes(document)).hexdigest()
    if envelope["content_hash"] != digest:
        raise SignatureError(f"{where}: content_hash {envelope['content_hash']!r} does not match the evidence,"
                             f" whose canonical bytes hash to {digest}: the evidence or its hash was changed")
    verdict = document.get("verdict")
    for member, inside in (("format_version", document.get("format_version")),
                           ("evidence_id", document.get("evidence_id")),
                           ("verdict", verdict.get("answer") if isinstance(verdict, dict) else None)):
        if envelope[member] != inside:
            raise SignatureError(f"{where}: {member} {envelope[member]!r} differs from the signed evidence's {inside!r}")
    expected_key = check_signed_file(envelope, canonical_bytes(document), public_key, signed_bytes=SIGNED_BYTES,
                                     what="evidence", where=where)
    signature = envelope["signature"]
    check_layout(render_evidence(document, signature=signature["value"], key_fingerprint=signature["key_fingerprint"]),
                 data, where, "its layout was altered")
    return VerifiedEvidence(evidence_id=document["evidence_id"], platform_id=document.get("platform_id", ""),
                            model_id=document.get("model_id", ""), as_of=document.get("as_of", ""),
                            all_training_licensed=verdict.get("all_training_licensed") is True,
                            content_hash=digest, key_fingerprint=expected_key)
