"""Usage events as validated values: what platforms report and the ledger prices.

The same validation runs in the producer SDK (before anything is sent) and in the
consumer (after decoding), so a record the SDK accepts is one the ledger accepts.
Validation collects every problem of a record; :func:`validate` raises the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Mapping

from ground.errors import ValidationError
from ledger.core.money import check_currency, money
from ledger.core.periods import NOT_A_PERIOD, is_period

MAX_WEIGHT = Decimal(1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Attribution:
    source_id: str
    weight: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingUsage:
    event_id: str
    platform_id: str
    model_id: str
    run_id: str
    source_id: str
    units: int
    unit: str
    occurred_at: datetime
    base_model_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    source_revision: str | None = None  # schema v2

    kind = "training"


@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceUsage:
    event_id: str
    platform_id: str
    model_id: str
    request_id: str
    occurred_at: datetime
    attributions: tuple[Attribution, ...]
    output_units: int | None = None

    kind = "inference"


@dataclass(frozen=True, slots=True, kw_only=True)
class RevenueReport:
    event_id: str
    platform_id: str
    model_id: str
    period: str
    revenue: Decimal
    currency: str
    occurred_at: datetime

    kind = "revenue"


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageCorrection:
    event_id: str
    platform_id: str
    corrects_event_id: str
    action: str
    occurred_at: datetime
    replacement_units: int | None = None
    replacement_attributions: tuple[Attribution, ...] | None = None
    reason: str = ""

    kind = "correction"


UsageEvent = TrainingUsage | InferenceUsage | RevenueReport | UsageCorrection

# Optional fields added by a later schema version. :func:`to_record` leaves them out
# while absent, so an event's record (and the ledger's content hash of it) is the same
# whichever schema version carried it; the Avro writer fills in the schema default.
ADDED_LATER: dict[str, tuple[str, ...]] = {"training": ("source_revision",)}

EVENT_CLASSES: dict[str, type] = {
    "TrainingUsage": TrainingUsage,
    "InferenceUsage": InferenceUsage,
    "RevenueReport": RevenueReport,
    "UsageCorrection": UsageCorrection,
}


def _text(record: Mapping[str, Any], name: str, problems: list[ValidationError]) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value.strip():
        problems.append(ValidationError(name, value, "must be a non-empty string"))
        return ""
    return value


def _positive_int(value: Any, name: str, problems: list[ValidationError]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(ValidationError(name, value, "must be an integer"))
        return 0
    if value <= 0:
        problems.append(ValidationError(name, value, "must be > 0"))
    return value


def _instant(record: Mapping[str, Any], name: str, problems: list[ValidationError]) -> datetime:
    value = record.get(name)
    if not isinstance(value, datetime):
        problems.append(ValidationError(name, value, "must be a timestamp"))
        return datetime.min.replace(tzinfo=timezone.utc)
    if value.tzinfo is None or value.utcoffset() is None:
        problems.append(ValidationError(name, value, "must be timezone-aware (UTC); naive timestamps are refused"))
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _attributions(value: Any, name: str, problems: list[ValidationError]) -> tuple[Attribution, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        problems.append(ValidationError(name, value, "must be a non-empty list of {source_id, weight}"))
        return ()
    result = []
    total = Decimal(0)
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(item, (dict, Mapping)):  # dict first: the typing check is slow per item
            problems.append(ValidationError(where, item, "must be an object with source_id and weight"))
            continue
        source_id = item.get("source_id")
        if not isinstance(source_id, str) or not source_id.strip():
            problems.append(ValidationError(f"{where}.source_id", source_id, "must be a non-empty string"))
        try:
            weight = money(item.get("weight"), f"{where}.weight")
        except ValidationError as exc:
            problems.append(exc)
            continue
        if not (0 < weight <= MAX_WEIGHT):
            problems.append(ValidationError(f"{where}.weight", weight, "must be in (0, 1]"))
        if weight.as_tuple().exponent < -6:
            problems.append(ValidationError(f"{where}.weight", weight, "must have at most 6 decimal places"))
        total += weight
        result.append(Attribution(source_id=source_id, weight=weight))
    if total > MAX_WEIGHT:
        problems.append(ValidationError(name, str(total), "weights must sum to at most 1"))
    return tuple(result)


def parse_event(kind: str, record: Mapping[str, Any]) -> tuple[UsageEvent | None, list[ValidationError]]:
    """Builds the event ``kind`` (a record name) from ``record``, collecting every problem.

    Returns:
        ``(event, [])`` when valid, ``(None, problems)`` otherwise.
    """
    problems: list[ValidationError] = []
    if kind not in EVENT_CLASSES:
        return None, [ValidationError("type", kind, f"must be one of {', '.join(EVENT_CLASSES)}")]
    common = {name: _text(record, name, problems) for name in ("event_id", "platform_id")}
    occurred_at = _instant(record, "occurred_at", problems)
    event: UsageEvent
    if kind == "TrainingUsage":
        base = record.get("base_model_id")
        if base is not None and (not isinstance(base, str) or not base.strip()):
            problems.append(ValidationError("base_model_id", base, "must be a non-empty string or absent"))
        revision = record.get("source_revision")
        if revision is not None and (not isinstance(revision, str) or not revision.strip()):
            problems.append(ValidationError("source_revision", revision, "must be a non-empty string or absent"))
        metadata = record.get("metadata") or {}
        if not isinstance(metadata, (dict, Mapping)) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            problems.append(ValidationError("metadata", metadata, "must map strings to strings"))
            metadata = {}
        event = TrainingUsage(
            **common,
            model_id=_text(record, "model_id", problems),
            run_id=_text(record, "run_id", problems),
            source_id=_text(record, "source_id", problems),
            units=_positive_int(record.get("units"), "units", problems),
            unit=_text(record, "unit", problems),
            occurred_at=occurred_at,
            base_model_id=base,
            metadata=dict(metadata),
            source_revision=revision,
        )
    elif kind == "InferenceUsage":
        output_units = record.get("output_units")
        if output_units is not None:
            _positive_int(output_units, "output_units", problems)
        event = InferenceUsage(
            **common,
            model_id=_text(record, "model_id", problems),
            request_id=_text(record, "request_id", problems),
            occurred_at=occurred_at,
            attributions=_attributions(record.get("attributions"), "attributions", problems),
            output_units=output_units,
        )
    elif kind == "RevenueReport":
        revenue = Decimal(0)
        try:
            revenue = money(record.get("revenue"), "revenue")
            if revenue < 0:
                problems.append(ValidationError("revenue", revenue, "must be >= 0"))
        except ValidationError as exc:
            problems.append(exc)
        currency = record.get("currency")
        try:
            check_currency(currency)
        except ValidationError as exc:
            problems.append(exc)
        period = record.get("period")
        if not is_period(period):
            problems.append(ValidationError("period", period, NOT_A_PERIOD))
        event = RevenueReport(
            **common,
            model_id=_text(record, "model_id", problems),
            period=period,
            revenue=revenue,
            currency=currency,
            occurred_at=occurred_at,
        )
    else:
        action = record.get("action")
        units = record.get("replacement_units")
        attributions = record.get("replacement_attributions")
        replacement: tuple[Attribution, ...] | None = None
        if action not in ("VOID", "REPLACE"):
            problems.append(ValidationError("action", action, "must be VOID or REPLACE"))
        elif action == "REPLACE" and (units is None) == (attributions is None):
            problems.append(
                ValidationError("action", action, "REPLACE needs exactly one of replacement_units or replacement_attributions")
            )
        if units is not None:
            _positive_int(units, "replacement_units", problems)
        if attributions is not None:
            replacement = _attributions(attributions, "replacement_attributions", problems)
        event = UsageCorrection(
            **common,
            corrects_event_id=_text(record, "corrects_event_id", problems),
            action=action,
            occurred_at=occurred_at,
            replacement_units=units,
            replacement_attributions=replacement,
            reason=record.get("reason") or "",
        )
    return (None, problems) if problems else (event, [])


def validate(kind: str, record: Mapping[str, Any]) -> UsageEvent:
    """Like :func:`parse_event` but raises the first problem.

    Raises:
        ValidationError: naming the field and the bad value.
    """
    event, problems = parse_event(kind, record)
    if problems:
        raise problems[0]
    return event


def to_record(event: UsageEvent) -> dict[str, Any]:
    """The Avro record of ``event`` (field names as in the schema)."""
    record = {name: getattr(event, name) for name in event.__dataclass_fields__}
    for key in ("attributions", "replacement_attributions"):
        if record.get(key) is not None:
            record[key] = [{"source_id": a.source_id, "weight": a.weight} for a in record[key]]
    if "metadata" in record:
        record["metadata"] = dict(record["metadata"])
    for name in ADDED_LATER.get(event.kind, ()):
        if record[name] is None:
            del record[name]
    return record
