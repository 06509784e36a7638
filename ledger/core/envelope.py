"""The signed JSON file a rights holder downloads, and how it is checked.

Layout (members in this order, two-space indentation, UTF-8, a final newline)::

    {
      "envelope_version": 1,
      "format_version": 3,                      # of the statement inside
      "statement_id": "st_...",
      "chain_head": "<ledger chain head at close>",
      "content_hash": "<hex SHA-256 of the signed bytes>",
      "signed_bytes": "RFC 8785 (JCS) canonical JSON of the statement member",
      "signature": {"algorithm": "Ed25519", "key_fingerprint": "sha256:<hex>", "value": "<base64>"},
      "statement": { ... the statement document, keys sorted ... }
    }

The signature covers exactly the canonical bytes of ``statement``; every other member
but ``signature`` repeats a value from inside it (and is checked against it), so nothing
outside the signed bytes can change what the file says. :func:`verify_envelope` also
refuses a file whose bytes differ from the canonical rendering of its own content, so
changing any single byte of a downloaded statement fails the check.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.core.signing import ALGORITHM, SignatureError, fingerprint_of, verify_signature
from ledger.core.statements import ENVELOPE_VERSION, FIRST_SIGNED_FORMAT, FORMAT_VERSION, canonical_bytes

SIGNED_BYTES = "RFC 8785 (JCS) canonical JSON of the statement member"
MEMBERS = ("envelope_version", "format_version", "statement_id", "chain_head", "content_hash", "signed_bytes",
           "signature", "statement")


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedStatement:
    """What a successful check vouches for."""

    statement_id: str
    period: str
    holder_id: str
    currency: str
    payable: str
    content_hash: str
    key_fingerprint: str
    format_version: int


def _sorted(value):
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def render_envelope(document: dict, *, signature: str, key_fingerprint: str) -> bytes:
    """The downloadable file of a signed statement ``document``."""
    envelope = {
        "envelope_version": ENVELOPE_VERSION,
        "format_version": document["format_version"],
        "statement_id": document["statement_id"],
        "chain_head": document["ledger"]["chain_head"],
        "content_hash": hashlib.sha256(canonical_bytes(document)).hexdigest(),
        "signed_bytes": SIGNED_BYTES,
        "signature": {"algorithm": ALGORITHM, "key_fingerprint": key_fingerprint, "value": signature},
        "statement": _sorted(document),
    }
    return (json.dumps(envelope, indent=2, ensure_ascii=False) + "\n").encode()


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    found: dict = {}
    for key, value in pairs:
        if key in found:
            raise SignatureError(f"member {key!r} appears twice in one object; a signed statement names each once")
        found[key] = value
    return found


def _no_floats(text: str):
    raise SignatureError(f"number {text} is not an integer; amounts in a statement are strings")


def verify_envelope(data: bytes, public_key: Ed25519PublicKey, where: str) -> VerifiedStatement:
    """Checks a downloaded statement file: layout, versions, content hash, chain head, signature.

    Raises:
        SignatureError: anything does not check out; the message says what, with which value.
    """
    try:
        envelope = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_float=_no_floats)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureError(f"{where} is not a JSON statement file: {exc}") from exc
    if not isinstance(envelope, dict) or tuple(envelope) != MEMBERS:
        found = tuple(envelope) if isinstance(envelope, dict) else type(envelope).__name__
        raise SignatureError(f"{where} does not have the members of a statement envelope: expected {MEMBERS}, got {found}")
    version = envelope["envelope_version"]
    if version != ENVELOPE_VERSION:
        newer = " (written by a newer Learnright; upgrade to check it)" if isinstance(version, int) and version > ENVELOPE_VERSION else ""
        raise SignatureError(f"{where}: envelope_version {version!r} is not {ENVELOPE_VERSION}{newer}")
    statement = envelope["statement"]
    if not isinstance(statement, dict):
        raise SignatureError(f"{where}: member 'statement' is not an object")
    format_version = statement.get("format_version")
    if not isinstance(format_version, int) or format_version < FIRST_SIGNED_FORMAT:
        raise SignatureError(f"{where}: statement format_version {format_version!r} is not a signed format"
                             f" (signed formats are {FIRST_SIGNED_FORMAT}..{FORMAT_VERSION})")
    if format_version > FORMAT_VERSION:
        raise SignatureError(f"{where}: statement format_version {format_version} is newer than this Learnright"
                             f" knows ({FORMAT_VERSION}); upgrade to check it")
    digest = hashlib.sha256(canonical_bytes(statement)).hexdigest()
    if envelope["content_hash"] != digest:
        raise SignatureError(f"{where}: content_hash {envelope['content_hash']!r} does not match the statement,"
                             f" whose canonical bytes hash to {digest}: the statement or its hash was changed")
    ledger = statement.get("ledger") or {}
    for member, inside in (("format_version", format_version), ("statement_id", statement.get("statement_id")),
                           ("chain_head", ledger.get("chain_head"))):
        if envelope[member] != inside:
            raise SignatureError(f"{where}: {member} {envelope[member]!r} differs from the signed statement's {inside!r}")
    signature = envelope["signature"]
    if not isinstance(signature, dict) or set(signature) != {"algorithm", "key_fingerprint", "value"}:
        raise SignatureError(f"{where}: member 'signature' must hold algorithm, key_fingerprint and value")
    if signature["algorithm"] != ALGORITHM or envelope["signed_bytes"] != SIGNED_BYTES:
        raise SignatureError(f"{where}: signed with {signature['algorithm']!r} over {envelope['signed_bytes']!r};"
                             f" this Learnright checks {ALGORITHM} over {SIGNED_BYTES!r}")
    expected_key = fingerprint_of(public_key)
    if signature["key_fingerprint"] != expected_key:
        raise SignatureError(f"{where} was signed with key {signature['key_fingerprint']}, but the public key given"
                             f" is {expected_key}; fetch the key the statement names")
    verify_signature(public_key, canonical_bytes(statement), str(signature["value"]), where)
    rendered = render_envelope(statement, signature=signature["value"], key_fingerprint=signature["key_fingerprint"])
    if rendered != data:
        at = next((i for i, (a, b) in enumerate(zip(rendered, data)) if a != b), min(len(rendered), len(data)))
        raise SignatureError(f"{where} differs from the canonical file of its signed content at byte {at}:"
                             " its layout was altered after download (the signed content itself checks out)")
    return VerifiedStatement(
        statement_id=statement["statement_id"], period=statement.get("period", ""),
        holder_id=(statement.get("holder") or {}).get("id", ""), currency=statement.get("currency", ""),
        payable=(statement.get("summary") or {}).get("payable", ""), content_hash=digest,
        key_fingerprint=expected_key, format_version=format_version,
    )
