"""Usage events as validated values: what platforms report and the ledger prices.

The same validation runs in the producer SDK (before anything is sent) and in the
consumer (after decoding), so a record the SDK accepts is one the ledger accepts.
Validation collects every problem of a record; :func:`validate` raises the first.

Beyond the schema, :class:`UsageLimits` bounds what is plausible: ``occurred_at`` no
further than ``max_future_s`` after the event was reported (the caller says when: the
ledger passes the Kafka record's timestamp, so what it books depends on the log alone,
never on the clock), each source at most once per answer, at most ``max_attributions``
sources per answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Mapping

from ground.errors import ValidationError
from ledger.core.money import check_currency, money
from ledger.core.periods import NOT_A_PERIOD, is_period
from ledger.errors import AttributionLimitError, FutureEventError

MAX_WEIGHT = Decimal(1)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageLimits:
    """Bounds on plausible usage beyond what the schema says; the ledger and the SDK apply the same.

    The ledger's come from the ``consumer`` settings; the defaults here are theirs.
    """

    max_future_s: int = 3600
    """Seconds ``occurred_at`` may lie after the event was reported (clock skew between platform and broker)."""
    max_attributions: int = 256
    """Sources one answer (or one replacement of a correction) may name."""


DEFAULT_LIMITS = UsageLimits()


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
    if isinstance(value, str) and value and not value.isspace():  # what strip() would keep, unallocated
        return value
    problems.append(ValidationError(name, value, "must be a non-empty string"))
    return ""


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


def _millis_text(ms: int) -> str:
    """``ms`` after 1970 as ISO 8601 UTC (any ``ms`` an ``occurred_at`` can be after)."""
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _not_in_future(occurred_at: datetime, reported_ms: int | None, limits: UsageLimits,
                   problems: list[ValidationError]) -> None:
    """Refuses an ``occurred_at`` more than ``limits.max_future_s`` after ``reported_ms``.

    Compares exact integers (microseconds), as the native fast path does.
    """
    if reported_ms is None:
        return
    if reported_ms < 0:
        problems.append(ValidationError(
            "record timestamp", reported_ms,
            "must be a time (milliseconds since 1970) to bound occurred_at by; a Kafka record without one is refused"))
        return
    occurred_us = (occurred_at - _EPOCH) // timedelta(microseconds=1)
    if occurred_us > reported_ms * 1000 + limits.max_future_s * 1_000_000:
        problems.append(FutureEventError(
            "occurred_at", occurred_at.isoformat(),
            f"is more than {limits.max_future_s} s after the event was reported at {_millis_text(reported_ms)};"
            " usage is reported after it happens"))


def _attributions(value: Any, name: str, problems: list[ValidationError],
                  limits: UsageLimits = DEFAULT_LIMITS) -> tuple[Attribution, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        problems.append(ValidationError(name, value, "must be a non-empty list of {source_id, weight}"))
        return ()
    if len(value) > limits.max_attributions:  # before reading them: the limit bounds the work too
        problems.append(AttributionLimitError(
            name, f"{len(value)} sources", f"must name at most {limits.max_attributions} sources in one answer"))
        return ()
    result = []
    total = Decimal(0)
    first_at: dict[str, int] = {}
    for index, item in enumerate(value):  # ``where`` is spelled out only for a problem: this runs per answer
        if not isinstance(item, (dict, Mapping)):  # dict first: the typing check is slow per item
            problems.append(ValidationError(f"{name}[{index}]", item, "must be an object with source_id and weight"))
            continue
        source_id = item.get("source_id")
        if not isinstance(source_id, str) or not source_id or source_id.isspace():
            problems.append(ValidationError(f"{name}[{index}].source_id", source_id, "must be a non-empty string"))
        elif (first := first_at.setdefault(source_id, index)) != index:
            problems.append(ValidationError(f"{name}[{index}].source_id", source_id,
                                            f"repeats {name}[{first}].source_id; an answer names each source once"))
        try:
            weight = money(item.get("weight"), f"{name}[{index}].weight")
        except ValidationError as exc:
            problems.append(exc)
            continue
        if not (0 < weight <= MAX_WEIGHT):
            problems.append(ValidationError(f"{name}[{index}].weight", weight, "must be in (0, 1]"))
        if weight.as_tuple().exponent < -6:
            problems.append(ValidationError(f"{name}[{index}].weight", weight, "must have at most 6 decimal places"))
        total += weight
        result.append(Attribution(source_id=source_id, weight=weight))
    if total > MAX_WEIGHT:
        problems.append(ValidationError(name, str(total), "weights must sum to at most 1"))
    return tuple(result)


def _optional_text(record: Mapping[str, Any], name: str, problems: list[ValidationError]) -> Any:
    value = record.get(name)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        problems.append(ValidationError(name, value, "must be a non-empty string or absent"))
    return value


def _training(record: Mapping[str, Any], common: dict[str, Any], limits: UsageLimits,
              problems: list[ValidationError]) -> TrainingUsage:
    base = _optional_text(record, "base_model_id", problems)
    revision = _optional_text(record, "source_revision", problems)
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, (dict, Mapping)) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        problems.append(ValidationError("metadata", metadata, "must map strings to strings"))
        metadata = {}
    return TrainingUsage(
        **common,
        model_id=_text(record, "model_id", problems),
        run_id=_text(record, "run_id", problems),
        source_id=_text(record, "source_id", problems),
        units=_positive_int(record.get("units"), "units", problems),
        unit=_text(record, "unit", problems),
        base_model_id=base,
        metadata=dict(metadata),
        source_revision=revision,
    )


def _inference(record: Mapping[str, Any], common: dict[str, Any], limits: UsageLimits,
               problems: list[ValidationError]) -> InferenceUsage:
    output_units = record.get("output_units")
    if output_units is not None:
        _positive_int(output_units, "output_units", problems)
    return InferenceUsage(
        **common,
        model_id=_text(record, "model_id", problems),
        request_id=_text(record, "request_id", problems),
        attributions=_attributions(record.get("attributions"), "attributions", problems, limits),
        output_units=output_units,
    )


def _revenue(record: Mapping[str, Any], common: dict[str, Any], limits: UsageLimits,
             problems: list[ValidationError]) -> RevenueReport:
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
    return RevenueReport(
        **common, model_id=_text(record, "model_id", problems), period=period, revenue=revenue, currency=currency,
    )


def _correction(record: Mapping[str, Any], common: dict[str, Any], limits: UsageLimits,
                problems: list[ValidationError]) -> UsageCorrection:
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
        replacement = _attributions(attributions, "replacement_attributions", problems, limits)
    return UsageCorrection(
        **common,
        corrects_event_id=_text(record, "corrects_event_id", problems),
        action=action,
        replacement_units=units,
        replacement_attributions=replacement,
        reason=record.get("reason") or "",
    )


_BUILDERS: dict[str, Callable[..., UsageEvent]] = {
    "TrainingUsage": _training,
    "InferenceUsage": _inference,
    "RevenueReport": _revenue,
    "UsageCorrection": _correction,
}


def parse_event(
    kind: str, record: Mapping[str, Any], *, limits: UsageLimits = DEFAULT_LIMITS, reported_ms: int | None = None,
) -> tuple[UsageEvent | None, list[ValidationError]]:
    """Builds the event ``kind`` (a record name) from ``record``, collecting every problem.

    Args:
        limits: the bounds on plausible usage (:class:`UsageLimits`).
        reported_ms: when the event was reported, in milliseconds since 1970: the Kafka
            record's timestamp in the ledger, the clock just before sending in the SDK.
            ``occurred_at`` may lie at most ``limits.max_future_s`` after it; a negative
            value (Kafka's "no timestamp") is refused. None skips this check.

    Returns:
        ``(event, [])`` when valid, ``(None, problems)`` otherwise.
    """
    problems: list[ValidationError] = []
    if kind not in EVENT_CLASSES:
        return None, [ValidationError("type", kind, f"must be one of {', '.join(EVENT_CLASSES)}")]
    common: dict[str, Any] = {name: _text(record, name, problems) for name in ("event_id", "platform_id")}
    found = len(problems)
    common["occurred_at"] = _instant(record, "occurred_at", problems)
    if len(problems) == found:
        _not_in_future(common["occurred_at"], reported_ms, limits, problems)
    event = _BUILDERS[kind](record, common, limits, problems)
    return (None, problems) if problems else (event, [])


def validate(
    kind: str, record: Mapping[str, Any], *, limits: UsageLimits = DEFAULT_LIMITS, reported_ms: int | None = None,
) -> UsageEvent:
    """Like :func:`parse_event` but raises the first problem.

    Raises:
        ValidationError: naming the field and the bad value (:class:`FutureEventError` and
            :class:`AttributionLimitError` for the bounds of ``limits``).
    """
    event, problems = parse_event(kind, record, limits=limits, reported_ms=reported_ms)
    if problems:
        raise problems[0]
    return event


def limit_problems(
    event: UsageEvent, *, limits: UsageLimits = DEFAULT_LIMITS, reported_ms: int | None = None,
) -> list[ValidationError]:
    """What :func:`parse_event` would find against ``limits`` in an event built earlier.

    For an event validated some time before it is sent (a file's rows, say): the bound on
    ``occurred_at`` is checked against ``reported_ms`` now, and the attributions again.
    """
    problems: list[ValidationError] = []
    occurred_at = _instant({"occurred_at": event.occurred_at}, "occurred_at", problems)
    if not problems:
        _not_in_future(occurred_at, reported_ms, limits, problems)
    for name in ("attributions", "replacement_attributions"):
        attributions = getattr(event, name, None)
        if attributions is not None:
            _attributions([{"source_id": a.source_id, "weight": a.weight} for a in attributions], name, problems, limits)
    return problems


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
