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
    "StatementClosed": {
        "statement_id": "st_630cb121de0644b7b281",
        "period": "2026-09",
        "holder_id": "h-aurora",
        "holder_name": "Aurora Press",
        "currency": "USD",
        "accrued": Decimal("142.703200000000"),
        "carry_in": Decimal("0.000000000000"),
        "payable": Decimal("142.700000000000"),
        "carry_out": Decimal("0.003200000000"),
        "format_version": 4,
        "content_hash": "a1b516618fe783fa4b4c2d459bf76ce03e2efc634c20ead65b4378a22a75182d",
        "chain_head": "ad1df200a830fc9f4cd7d727f37351a1e4205d2bad6e657d65dfebcaa5f8d745",
        "last_entry_id": 21,
        "close_root": "3b6f1c0e9d2a4857b1e0c6f5a9d3e2b7c4f8a1d6e0b9c3f7a2e5d8b1c4f7a0e3",
        "signature": "4XiCYsWzft/s9guR5jDpWRxNrH/53yX1Ary6gipwUO6uk5rAKwXUc7mgBcq4Zi4qGVhW3RCH/fuKMxJ9ZvZnAQ==",
        "key_fingerprint": "sha256:56475aa75463474c0285df5dbf2bcab73da651358839e9b77481b2eab107708c",
        "closed_at": datetime(2026, 10, 3, 0, 0, 0, 412000, tzinfo=UTC),
    },
}


def expected(name: str, fields: set[str]) -> dict:
    """The example as a reader with ``fields`` sees it: only the fields it knows."""
    return {k: v for k, v in EXAMPLES[name].items() if k in fields}
