"""A fixed statement-signing key for tests: signatures are deterministic, so they can be golden."""

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.core.signing import signer_of

SIGNER = signer_of(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
