"""One realistic record of each event type, shared by the golden-bytes and interop tests.

Each is written with every schema version of its record; fields a version does not
have are ignored by the writer, so one example serves all versions.
"""

from datetime import datetime, timezone
from decimal import Decimal

UTC = timezone.utc

EXAMPLES: dict[str, dict] = {
    "TrainingUsage": {
        "event_id": "orbit-run42-shard-0007",
        "platform_id": "orbit",
        "model_id": "orbit-7b-legal",
        "run_id": "run-42",
        "source_id": "src-aurora-novels",
        "units": 2_100_000,
        "unit": "tokens",
        "occurred_at": datetime(2026, 10, 3, 12, 0, 0, 123456, tzinfo=UTC),
        "base_model_id": "orbit-7b",
        "metadata": {"shard": "7"},
        "source_revision": "2026-09-snapshot",
    },
    "InferenceUsage": {
        "event_id": "orbit-req-9",
        "platform_id": "orbit",
        "model_id": "orbit-7b",
        "request_id": "req-9",
        "occurred_at": datetime(2026, 10, 3, 12, 0, 1, tzinfo=UTC),
        "attributions": [
            {"source_id": "src-aurora-novels", "weight": Decimal("0.700000")},
            {"source_id": "src-kestrel-photos", "weight": Decimal("0.250000")},
        ],
        "output_units": 412,
    },
    "RevenueReport": {
        "event_id": "orbit-rev-2026-09",
        "platform_id": "orbit",
        "model_id": "orbit-7b",
        "period": "2026-09",
        "revenue": Decimal("184302.450000"),
        "currency": "USD",
        "occurred_at": datetime(2026, 10, 1, 6, 30, tzinfo=UTC),
    },
    "UsageCorrection": {
        "event_id": "orbit-fix-1",
        "platform_id": "orbit",
        "corrects_event_id": "orbit-req-9",
        "action": "REPLACE",
        "replacement_units": None,
        "replacement_attributions": [{"source_id": "src-aurora-novels", "weight": Decimal("0.500000")}],
        "reason": "attribution model v3 re-scored the answer",
        "occurred_at": datetime(2026, 10, 4, 9, 15, tzinfo=UTC),
    },
}


def expected(name: str, fields: set[str]) -> dict:
    """The example as a reader with ``fields`` sees it: only the fields it knows."""
    return {k: v for k, v in EXAMPLES[name].items() if k in fields}
