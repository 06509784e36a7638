"""Reading usage rows from files for `learnright emit`: JSON Lines and CSV.

Every row is validated; problems come back as values with their line number, so a
user sees every bad row at once. Numbers are read as exact decimals, never floats.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

from learnright.errors import ValidationError
from ledger.usage import UsageEvent, parse_event

TYPE_ALIASES = {
    "training": "TrainingUsage", "TrainingUsage": "TrainingUsage",
    "inference": "InferenceUsage", "InferenceUsage": "InferenceUsage",
    "revenue": "RevenueReport", "RevenueReport": "RevenueReport",
    "correction": "UsageCorrection", "UsageCorrection": "UsageCorrection",
}
_TIMESTAMPS = ("occurred_at",)
_INTEGERS = ("units", "output_units", "replacement_units")


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    line: int
    event: UsageEvent | None
    problems: tuple[ValidationError, ...]


def _timestamp(value: Any, field: str) -> Any:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(field, value, "is not an ISO 8601 timestamp") from None
    return value


def row_to_event(fields: dict[str, Any]) -> tuple[UsageEvent | None, list[ValidationError]]:
    kind = TYPE_ALIASES.get(fields.pop("type", None) or "")
    if kind is None:
        return None, [ValidationError("type", fields.get("type"), f"must be one of {', '.join(sorted(set(TYPE_ALIASES)))}")]
    problems = []
    for name in _TIMESTAMPS:
        if name in fields:
            try:
                fields[name] = _timestamp(fields[name], name)
            except ValidationError as exc:
                problems.append(exc)
    if problems:
        return None, problems
    return parse_event(kind, fields)


def read_jsonl(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            where = f"line {number} of {path.name}"
            try:
                fields = json.loads(text, parse_float=Decimal)
            except json.JSONDecodeError as exc:
                yield Row(line=number, event=None, problems=(ValidationError("row", text.strip()[:60], f"is not JSON: {exc.msg}", where),))
                continue
            if not isinstance(fields, dict):
                yield Row(line=number, event=None, problems=(ValidationError("row", fields, "must be a JSON object", where),))
                continue
            event, problems = row_to_event(fields)
            yield Row(line=number, event=event, problems=tuple(p.at(where) for p in problems))


def read_csv(path: Path) -> Iterator[Row]:
    """CSV with a header row; ``attributions`` as ``source:weight;source:weight``."""
    with path.open(encoding="utf-8", newline="") as handle:
        for number, raw in enumerate(csv.DictReader(handle), start=2):
            where = f"line {number} of {path.name}"
            fields: dict[str, Any] = {k: v for k, v in raw.items() if k and v not in (None, "")}
            problems = []
            for name in _INTEGERS:
                if name in fields:
                    try:
                        fields[name] = int(fields[name])
                    except ValueError:
                        problems.append(ValidationError(name, fields[name], "must be an integer", where))
            for name in ("attributions", "replacement_attributions"):
                if name in fields:
                    pairs = [p.rsplit(":", 1) for p in fields[name].split(";") if p]
                    fields[name] = [{"source_id": s, "weight": w} for s, w in (p if len(p) == 2 else (p[0], None) for p in pairs)]
            if problems:
                yield Row(line=number, event=None, problems=tuple(problems))
                continue
            event, found = row_to_event(fields)
            yield Row(line=number, event=event, problems=tuple(p.at(where) for p in found))


def read_rows(path: Path) -> Iterator[Row]:
    if path.suffix.lower() == ".csv":
        return read_csv(path)
    return read_jsonl(path)
