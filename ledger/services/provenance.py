"""Licensed-model evidence and the AI Act training-content summary: the service functions the CLI and API call.

The summary draft is :mod:`ledger.core.ai_act`; the evidence :mod:`ledger.core.evidence`.

Guarantees:
  * Evidence is signed with the statement key, over the canonical bytes of its document,
    exactly as statements are (:mod:`ledger.core.evidence`); the same ledger and ``as_of``
    give the same bytes.
  * A model is named by (platform, model): a platform token reads only its own platform's
    models, and another platform's model answers exactly like an unknown one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from ground.errors import TerminalError
from ledger.core.ai_act import build_summary
from ledger.core.evidence import build_evidence, lineage_of, render_evidence
from ledger.core.evidence_pdf import render_evidence_pdf
from ledger.core.port import LedgerStore
from ledger.core.signing import Signer
from ledger.core.statements import canonical_bytes


class UnknownModelError(TerminalError):
    """No usage of the model was reported (by this platform), or its platform is ambiguous."""

    code = "model_unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class EvidenceFiles:
    """The signed JSON evidence file, its PDF, and the document both render."""

    document: dict
    json: bytes
    pdf: bytes


def platform_of(ledger: LedgerStore, model_id: str, platform_id: str | None) -> str:
    """The platform of ``model_id``: ``platform_id`` if it reported the model, else the only one that did.

    Raises:
        UnknownModelError: nobody (or not ``platform_id``) reported the model, or several platforms did.
    """
    platforms = ledger.model_platforms(model_id)
    if platform_id is not None:
        if platform_id not in platforms:
            raise UnknownModelError(f"no model {model_id!r}")
        return platform_id
    if not platforms:
        raise UnknownModelError(f"no model {model_id!r}: no platform reported usage of it")
    if len(platforms) > 1:
        raise UnknownModelError(f"model {model_id!r} is reported by several platforms ({', '.join(platforms)});"
                                " name one with --platform")
    return platforms[0]


def evidence_document(ledger: LedgerStore, *, platform_id: str, model_id: str, as_of: datetime) -> dict:
    """The unsigned evidence document of a model of ``platform_id`` and its lineage, up to ``as_of``."""
    book = ledger.load_book()
    latest = ledger.latest_close()
    return build_evidence(
        platform_id=platform_id, model_id=model_id, as_of=as_of, lineage=ledger.model_lineage(),
        uses=ledger.training_uses(platform_id, as_of), unlicensed=ledger.unlicensed_uses(platform_id=platform_id),
        holder_names={h.holder_id: h.name for h in book.holders.values()}, book_hash=ledger.book_hash(),
        close_root=(latest.root or latest.chain_head) if latest is not None else None)


def model_evidence(ledger: LedgerStore, *, platform_id: str, model_id: str, as_of: datetime,
                   signer: Signer) -> EvidenceFiles:
    """The signed evidence of ``model_id`` (of ``platform_id``) as of ``as_of``: JSON and PDF.

    Raises:
        UnknownModelError: the platform reported no usage of the model.
    """
    if platform_id not in ledger.model_platforms(model_id):
        raise UnknownModelError(f"no model {model_id!r}")
    return sign_evidence(evidence_document(ledger, platform_id=platform_id, model_id=model_id, as_of=as_of), signer)


def sign_evidence(document: dict, signer: Signer) -> EvidenceFiles:
    """Signs an evidence document as statements are signed and renders its JSON file and PDF.

    The CLI reads the document through a running service's admin socket and signs it with
    the local statement key; the HTTP API signs with the service's key.
    """
    canonical = canonical_bytes(document)
    signature = signer.sign(canonical)
    return EvidenceFiles(
        document=document,
        json=render_evidence(document, signature=signature, key_fingerprint=signer.fingerprint),
        pdf=render_evidence_pdf(document, content_hash=hashlib.sha256(canonical).hexdigest(),
                                key_fingerprint=signer.fingerprint, signature=signature))


def model_summary(ledger: LedgerStore, *, platform_id: str, model_id: str, as_of: datetime) -> dict:
    """The AI Act training-content summary draft of a model of ``platform_id`` and its lineage, as of ``as_of``.

    Raises:
        UnknownModelError: the platform reported no usage of the model.
    """
    if platform_id not in ledger.model_platforms(model_id):
        raise UnknownModelError(f"no model {model_id!r}")
    book = ledger.load_book()
    return build_summary(
        platform_id=platform_id, model_id=model_id, as_of=as_of, lineage=ledger.model_lineage(),
        uses=ledger.training_uses(platform_id, as_of), unlicensed=ledger.unlicensed_uses(platform_id=platform_id),
        revocations=book.revocations, holder_names={h.holder_id: h.name for h in book.holders.values()},
        source_titles={s.source_id: s.title for s in book.sources.values()})


__all__ = ["EvidenceFiles", "UnknownModelError", "evidence_document", "lineage_of", "model_evidence", "platform_of",
           "model_summary", "sign_evidence"]
