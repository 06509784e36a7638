"""Topic names, derived from one prefix so each test (or tenant) gets its own set."""

from __future__ import annotations

from dataclasses import dataclass

# Record name -> topic suffix. One topic per event type keeps each stream's schema
# evolution and retention separate; the single-object header still names the schema.
TOPIC_OF = {
    "TrainingUsage": "usage.training",
    "InferenceUsage": "usage.inference",
    "RevenueReport": "usage.revenue",
    "UsageCorrection": "usage.corrections",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Topics:
    prefix: str

    def for_event(self, record_name: str) -> str:
        return f"{self.prefix}.{TOPIC_OF[record_name]}"

    @property
    def usage(self) -> tuple[str, ...]:
        """Every topic the ledger consumes."""
        return tuple(f"{self.prefix}.{suffix}" for suffix in TOPIC_OF.values())

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.deadletter"

    @property
    def statements(self) -> str:
        return f"{self.prefix}.statements.closed"
