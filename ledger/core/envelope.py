"""The signed JSON file a rights holder downloads, and how it is checked.

Layout (members in this order, two-space indentation, UTF-8, a final newline)::

    {
      "envelope_version": 2,
      "format_version": 5,                      # of the statement inside
      "statement_id": "st_...",
      "close_root": "<the close root the statement carries>",
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

The envelope version follows from the statement's format: statements of format 5 on get
envelope 2, which repeats ``close_root``; those of formats 3 and 4 keep envelope 1, which
repeats ``chain_head`` in the same place, so files already handed out re-render, and
verify, byte for byte as before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.core.signing import ALGORITHM, SignatureError, check_layout, check_signed_file
from ledger.core.statements import FIRST_CLOSE_ROOT_FORMAT, FIRST_SIGNED_FORMAT, FORMAT_VERSION, canonical_bytes

ENVELOPE_VERSION = 2  # 2: repeats close_root (statement formats 5 on); 1 repeated chain_head (formats 3 and 4)
SIGNED_BYTES = "RFC 8785 (JCS) canonical JSON of the statement member"
# The member each envelope version repeats from the statement's ``ledger`` section.
REPEATED = {1: "chain_head", 2: "close_root"}


def members(version: int) -> tuple[str, ...]:
    """The members of an envelope of ``version``, in the order they are written."""
    return ("envelope_version", "format_version", "statement_id", REPEATED[version], "content_hash", "signed_bytes",
            "signature", "statement")


def envelope_version_of(format_version: int) -> int:
    """The envelope a statement of ``format_version`` is handed out in."""
    return 2 if format_version >= FIRST_CLOSE_ROOT_FORMAT else 1


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
    close_root: str | None
    """The close root the statement carries (format 5 on); None for older formats."""
    chain_head: str | None
    """The chain head at close an older statement (formats 3 and 4) carries; None from format 5 on."""


def _sorted(value):
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def render_envelope(document: dict, *, signature: str, key_fingerprint: str) -> bytes:
    """The downloadable file of a signed statement ``document``, in the envelope its format gets."""
    version = envelope_version_of(document["format_version"])
    repeated = REPEATED[version]
    envelope = {
        "envelope_version": version,
        "format_version": document["format_version"],
        "statement_id": document["statement_id"],
        repeated: document["ledger"][repeated],
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
    """Checks a downloaded statement file: layout, versions, content hash, repeated members, signature.

    Envelope 1 (statement formats 3 and 4) repeats the chain head, envelope 2 (format 5
    on) the close root; either is compared with the value inside the signed statement.

    Raises:
        SignatureError: anything does not check out; the message says what, with which value.
    """
    try:
        envelope = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_float=_no_floats)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureError(f"{where} is not a JSON statement file: {exc}") from exc
    if not isinstance(envelope, dict):
        raise SignatureError(f"{where} is not a statement envelope: it holds a JSON {type(envelope).__name__}, not an object")
    version = envelope.get("envelope_version")
    if type(version) is not int or version not in REPEATED:
        newer = (" (written by a newer Learnright; upgrade to check it)"
                 if type(version) is int and version > ENVELOPE_VERSION else "")
        raise SignatureError(f"{where}: envelope_version {version!r} is not one of"
                             f" {', '.join(map(str, sorted(REPEATED)))}{newer}")
    expected_members = members(version)
    if tuple(envelope) != expected_members:
        raise SignatureError(f"{where} does not have the members of a version {version} statement envelope:"
                             f" expected {expected_members}, got {tuple(envelope)}")
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
    if version != envelope_version_of(format_version):
        raise SignatureError(f"{where}: envelope_version {version} does not fit statement format_version"
                             f" {format_version}, which is handed out in envelope {envelope_version_of(format_version)}")
    ledger = statement.get("ledger")
    repeated = REPEATED[version]
    commitment = ledger.get(repeated) if isinstance(ledger, dict) else None
    if not isinstance(commitment, str):
        raise SignatureError(f"{where}: the signed statement's ledger section {ledger!r} has no {repeated},"
                             f" which a format {format_version} statement carries")
    for member, inside in (("format_version", format_version), ("statement_id", statement.get("statement_id")),
                           (repeated, commitment)):
        if envelope[member] != inside:
            raise SignatureError(f"{where}: {member} {envelope[member]!r} differs from the signed statement's {inside!r}")
    expected_key = check_signed_file(envelope, canonical_bytes(statement), public_key, signed_bytes=SIGNED_BYTES,
                                     what="statement", where=where)
    signature = envelope["signature"]
    check_layout(render_envelope(statement, signature=signature["value"], key_fingerprint=signature["key_fingerprint"]),
                 data, where, "its layout was altered after download")
    return VerifiedStatement(
        statement_id=statement["statement_id"], period=statement.get("period", ""),
        holder_id=(statement.get("holder") or {}).get("id", ""), currency=statement.get("currency", ""),
        payable=(statement.get("summary") or {}).get("payable", ""), content_hash=digest,
        key_fingerprint=expected_key, format_version=format_version,
        close_root=commitment if repeated == "close_root" else None,
        chain_head=commitment if repeated == "chain_head" else None,
    )
