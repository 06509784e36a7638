"""How an event becomes a Kafka record's bytes, and how large a record may be.

Kept apart from the emitter (which needs kafka-python) so that file validation
(`learnright emit --dry-run`) checks sizes exactly as a real send would, without a broker.
"""

from __future__ import annotations

from ground.errors import ValidationError
from ledger.core.usage import UsageEvent, to_record
from schemas import Catalog, encode

RECORD_NAME = {
    "training": "TrainingUsage",
    "inference": "InferenceUsage",
    "revenue": "RevenueReport",
    "correction": "UsageCorrection",
}

MAX_EVENT_BYTES = 1_000_000
"""Largest encoded event sent: below the producer's and broker's 1 MiB request limit
(``max_request_size`` 1,048,576) with room for the batch header, key and headers, so an
event that passes validation is never refused by Kafka for its size."""


def encode_event(event: UsageEvent, catalog: Catalog) -> bytes:
    """``event`` in Avro single-object encoding with the latest schema of its kind."""
    return encode(to_record(event), catalog.latest(RECORD_NAME[event.kind]))


def oversize_problem(event: UsageEvent, payload: bytes, where: str | None = None) -> ValidationError | None:
    """The problem of an event whose encoding ``payload`` is over :data:`MAX_EVENT_BYTES`, if it is."""
    if len(payload) <= MAX_EVENT_BYTES:
        return None
    return ValidationError("event", f"{len(payload)} bytes encoded", f"is larger than the limit of {MAX_EVENT_BYTES}"
                           " bytes a Kafka record may carry; split it into smaller events", where)
