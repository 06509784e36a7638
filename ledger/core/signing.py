"""Ed25519 signatures of statements, and the key file that makes them.

What is signed: the canonical bytes of a statement document (see
:func:`ledger.core.statements.canonical_bytes`), the same bytes whose SHA-256 is the
statement's content hash. Ed25519 is deterministic, so signing the same statement with
the same key gives the same signature: a close that rolled back and ran again stores
byte-identical statements.

A key is named by its fingerprint, ``sha256:`` + the hex SHA-256 of the 32 raw public
key bytes, so a holder can tell which published key a statement needs.

The private key lives in one PEM (PKCS#8) file, created with mode 0600 and never
overwritten; the public key is published as PEM (SubjectPublicKeyInfo).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ground.errors import ConfigError, TerminalError

ALGORITHM = "Ed25519"


class SignatureError(TerminalError):
    """A statement's signature, hash or key does not check out; the message says which."""

    code = "signature_invalid"


@dataclass(frozen=True, slots=True, kw_only=True)
class Signer:
    """A private signing key with its fingerprint; build it with :func:`load_or_create_key` or :func:`signer_of`."""

    key: Ed25519PrivateKey
    fingerprint: str

    def sign(self, message: bytes) -> str:
        """The base64 (standard alphabet, padded) Ed25519 signature of ``message``."""
        return base64.b64encode(self.key.sign(message)).decode()

    def public_pem(self) -> str:
        return public_key_pem(self.key.public_key())


def fingerprint_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def signer_of(key: Ed25519PrivateKey) -> Signer:
    return Signer(key=key, fingerprint=fingerprint_of(key.public_key()))


def generate_signer() -> Signer:
    """A fresh key held in memory only (tests, and the first step of :func:`create_key`)."""
    return signer_of(Ed25519PrivateKey.generate())


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def parse_public_key(pem: bytes, where: str) -> Ed25519PublicKey:
    """Reads a published public key (PEM).

    Raises:
        ConfigError: ``pem`` is not an Ed25519 public key; ``where`` names its origin.
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ConfigError(f"{where} is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{where} holds a {type(key).__name__}, not an Ed25519 public key")
    return key


def verify_signature(public_key: Ed25519PublicKey, message: bytes, signature: str, where: str) -> None:
    """Checks an Ed25519 signature given in base64.

    Raises:
        SignatureError: the signature is malformed or does not match ``message``.
    """
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"signature of {where} is not base64 (got {signature[:24]!r}): {exc}") from exc
    try:
        public_key.verify(raw, message)
    except InvalidSignature:
        raise SignatureError(
            f"signature of {where} does not match its content under key {fingerprint_of(public_key)}:"
            " the statement was changed after it was signed, or it was signed with another key"
        ) from None


# -- the key file (I/O) --------------------------------------------------------------------


def check_signed_file(envelope: dict, signed: bytes, public_key: Ed25519PublicKey, *, signed_bytes: str,
                      what: str, where: str) -> str:
    """Checks the ``signature`` member of a signed file (statement, evidence) over its ``signed``
    canonical bytes with ``public_key``; returns the key's fingerprint.

    Raises:
        SignatureError: the member is malformed, names another algorithm, byte rule or key,
            or the signature does not verify.
    """
    signature = envelope["signature"]
    if not isinstance(signature, dict) or set(signature) != {"algorithm", "key_fingerprint", "value"}:
        raise SignatureError(f"{where}: member 'signature' must hold algorithm, key_fingerprint and value")
    if signature["algorithm"] != ALGORITHM or envelope["signed_bytes"] != signed_bytes:
        raise SignatureError(f"{where}: signed with {signature['algorithm']!r} over {envelope['signed_bytes']!r};"
                             f" this Learnright checks {ALGORITHM} over {signed_bytes!r}")
    expected_key = fingerprint_of(public_key)
    if signature["key_fingerprint"] != expected_key:
        raise SignatureError(f"{where} was signed with key {signature['key_fingerprint']}, but the public key given"
                             f" is {expected_key}; fetch the key the {what} names")
    verify_signature(public_key, signed, str(signature["value"]), where)
    return expected_key


def check_layout(rendered: bytes, data: bytes, where: str, altered: str) -> None:
    """Refuses a file whose bytes differ from the canonical rendering of its signed content.

    Raises:
        SignatureError: naming the first differing byte; ``altered`` says what changed.
    """
    if rendered != data:
        at = next((i for i, (a, b) in enumerate(zip(rendered, data)) if a != b), min(len(rendered), len(data)))
        raise SignatureError(f"{where} differs from the canonical file of its signed content at byte {at}:"
                             f" {altered} (the signed content itself checks out)")


def load_key(path: Path) -> Signer:
    """Loads the private key at ``path``.

    Raises:
        ConfigError: the file is missing, unreadable or not an Ed25519 private key.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"statement signing key {path} cannot be read ({exc.strerror}); create one with"
            " `learnright keys create` or point LEARNRIGHT_SIGNING_KEY at it"
        ) from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"statement signing key {path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"statement signing key {path} holds a {type(key).__name__}, not an Ed25519 key")
    return signer_of(key)


def create_key(path: Path) -> Signer:
    """Writes a new private key to ``path`` with mode 0600; an existing file is never replaced.

    Raises:
        ConfigError: ``path`` exists already or cannot be written.
    """
    signer = generate_signer()
    pem = signer.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"statement signing key {path} exists already; it is never overwritten") from None
    except OSError as exc:
        raise ConfigError(f"cannot create statement signing key {path}: {exc.strerror}") from exc
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    return signer


def load_or_create_key(path: Path) -> Signer:
    """The key at ``path``, created (mode 0600) on first use."""
    return load_key(path) if path.exists() else create_key(path)
