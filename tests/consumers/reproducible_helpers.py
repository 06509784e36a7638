"""One seeded log and what a ledger built from it shows: shared by the reproducibility tests.

The log (:func:`workload`) is a plan of Kafka records, each with its topic, partition,
key and Avro bytes, so the broker test produces exactly the records the property test
feeds by hand. It covers two months (March and April 2026) of platform orbit:

  * training, inference with one to three attributions, revenue reports;
  * a correction produced before its original, corrections after their originals,
    one of an event that is only priced once the late license is applied;
  * a duplicate (the same bytes again), a conflict (same event id, other units), an
    undecodable record and usage of a source no license file knows;
  * usage of ``src-late``, which the first license file declares without a license:
    quarantined ``no_license`` until :data:`LATE_BOOK` is applied.

:func:`outcome_of` gathers everything a user or an auditor sees of the closed months:
every file ``write_period_files`` writes, every close root and the ``verify`` report.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from consumers.batch import RawRecord
from consumers.replay import retry_before_close
from ground.topics import Topics
from ledger.core.port import LedgerStore
from ledger.core.usage import UsageEvent, to_record, validate
from ledger.services.close import close_period, write_period_files
from ledger.services.verify import VerifyReport, verify
from producers.emitter import partition_key
from producers.encoding import RECORD_NAME
from schemas import default_catalog, encode
from tests.ledger.keys import SIGNER

UTC = timezone.utc
MONTHS = ("2026-03", "2026-04")
NOW = datetime(2026, 5, 3, tzinfo=UTC)
"""The instant every close runs at: after both months and their grace days."""
RECORD_TIME_MS = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp() * 1000)
"""The Kafka timestamp of hand-made records: after every event's occurred_at."""
PARTITIONS = 2
UNDECODABLE = b"\x00not avro at all"

BOOK = """
format = 1

[[holders]]
id = "h-ann"
name = "Ann Writes"

[[holders]]
id = "h-kei"
name = "Kei Studio"
payout_minimum = { USD = 50 }

[[holders]]
id = "h-lea"
name = "Lea Late"

[[sources]]
id = "src-novels"
holder = "h-ann"

[[sources]]
id = "src-essays"
holder = "h-ann"

[[sources]]
id = "src-manga"
holder = "h-kei"

[[sources]]
id = "src-late"
holder = "h-lea"

[[licenses]]
id = "lic-novels"
source = "src-novels"
effective_from = 2026-01-01T00:00:00Z
currency = "USD"
pool = true
training = { rate = 1.00, per = 1000000, unit = "tokens", tiers = [
  { up_to = 5000000, rate = 1.00 },
  { rate = 0.50 },
] }
inference = { rate = 0.002 }

[[licenses]]
id = "lic-novels"
version = 2
source = "src-novels"
effective_from = 2026-03-16T00:00:00Z
currency = "USD"
pool = true
training = { rate = 2.00, per = 1000000, unit = "tokens", tiers = [
  { up_to = 5000000, rate = 2.00 },
  { rate = 1.00 },
] }
inference = { rate = 0.004 }

[[licenses]]
id = "lic-essays"
source = "src-essays"
platform = "orbit"
effective_from = 2026-01-01T00:00:00Z
currency = "EUR"
training = { rate = 0.50, per = 1000, unit = "words" }
minimum = { monthly = 20 }

[[licenses]]
id = "lic-manga"
source = "src-manga"
effective_from = 2026-01-01T00:00:00Z
currency = "JPY"
pool = true
training = { rate = 2, per = 1, unit = "pages" }
inference = { rate = 3 }

[[agreements]]
id = "agr-orbit"
platform = "orbit"
effective_from = 2026-01-01T00:00:00Z
pool = { percent = 5 }
model_royalty = { percent = 10, inherit = 0.5 }
"""
"""The license file every ledger gets before it consumes: src-late is declared, not licensed."""

LATE_BOOK = """
format = 1

[[holders]]
id = "h-lea"
name = "Lea Late"

[[sources]]
id = "src-late"
holder = "h-lea"

[[licenses]]
id = "lic-late"
source = "src-late"
effective_from = 2026-01-01T00:00:00Z
currency = "USD"
training = { rate = 3.00, per = 1000000, unit = "tokens" }
inference = { rate = 0.005 }
"""
"""The license of src-late, applied after the usage of src-late was quarantined."""

UNIT = {"src-novels": "tokens", "src-essays": "words", "src-manga": "pages", "src-late": "tokens",
        "src-ghost": "tokens"}
INFERRED = ("src-novels", "src-manga", "src-late")  # sources with inference terms (src-late: once licensed)


@dataclass(frozen=True, slots=True, kw_only=True)
class Planned:
    """One record of the log, as produced: where it goes and its bytes."""

    record_name: str
    """The record name (TrainingUsage, ...) whose topic it goes to."""
    partition: int
    key: bytes
    value: bytes
    what: str
    """What it stands for, for failure messages."""


def _event(name: str, fields: dict[str, Any]) -> UsageEvent:
    return validate(name, {"platform_id": "orbit", **fields})


def _planned(event: UsageEvent, what: str = "") -> Planned:
    name = RECORD_NAME[event.kind]
    key = partition_key(event)
    return Planned(record_name=name, partition=zlib.crc32(key) % PARTITIONS, key=key,
                   value=encode(to_record(event), default_catalog().latest(name)), what=what or event.event_id)


def _when(rng: random.Random, month: int) -> datetime:
    return datetime(2026, month, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(28 * 24 * 60))


def _training(rng: random.Random, event_id: str, when: datetime, source: str | None = None,
              model: str | None = None) -> UsageEvent:
    source = source or rng.choice(("src-novels", "src-novels", "src-essays", "src-manga", "src-late"))
    model = model or rng.choice(("orbit-base", "orbit-legal", "orbit-vision"))
    units = {"tokens": rng.randint(1, 3_000_000), "words": rng.randint(1, 20_000),
             "pages": rng.randint(1, 300)}[UNIT[source]]
    return _event("TrainingUsage", {
        "event_id": event_id, "model_id": model, "run_id": f"run-{rng.randint(1, 9)}", "source_id": source,
        "units": units, "unit": UNIT[source], "occurred_at": when,
        "base_model_id": "orbit-base" if model == "orbit-legal" else None, "metadata": {},
    })


def _weights(rng: random.Random, sources: list[str]) -> list[dict[str, Any]]:
    """Weights in thousandths that sum to at most 1."""
    share = 1000 // len(sources)
    return [{"source_id": s, "weight": Decimal(rng.randint(1, share)).scaleb(-3)} for s in sources]


def _inference(rng: random.Random, event_id: str, when: datetime, *, licensed_only: bool = False) -> UsageEvent:
    pool = INFERRED[:2] if licensed_only else INFERRED
    sources = rng.sample(pool, rng.randint(1, len(pool)))
    return _event("InferenceUsage", {
        "event_id": event_id, "model_id": rng.choice(("orbit-base", "orbit-legal")), "request_id": f"q-{event_id}",
        "occurred_at": when, "attributions": _weights(rng, sources), "output_units": rng.randint(1, 900),
    })


def _correction(rng: random.Random, event_id: str, original: UsageEvent, *, void: bool) -> UsageEvent:
    fields: dict[str, Any] = {"event_id": event_id, "corrects_event_id": original.event_id,
                              "occurred_at": original.occurred_at + timedelta(hours=rng.randint(1, 48)),
                              "reason": "meter re-read"}
    if void:
        fields["action"] = "VOID"
    elif original.kind == "training":
        fields.update(action="REPLACE", replacement_units=max(1, original.units // 2))
    else:
        licensed = [a.source_id for a in original.attributions if a.source_id != "src-late"] or ["src-novels"]
        fields.update(action="REPLACE", replacement_attributions=_weights(rng, licensed))
    return _event("UsageCorrection", fields)


def _revenue(event_id: str, model: str, period: str, amount: str, when: datetime) -> UsageEvent:
    return _event("RevenueReport", {"event_id": event_id, "model_id": model, "period": period,
                                    "revenue": Decimal(amount), "currency": "USD", "occurred_at": when})


def workload(seed: int, size: int) -> tuple[Planned, ...]:
    """The log: ``size`` ordinary usage events over March and April plus every special case, in produce order."""
    rng = random.Random(seed)
    # Produced first: a correction whose original comes last of all.
    awaited = _inference(rng, "i-awaited", _when(rng, 4), licensed_only=True)
    plan = [_planned(_correction(rng, "c-before-original", awaited, void=False), "correction before its original")]
    usage: list[UsageEvent] = []
    for n in range(size):
        when = _when(rng, 3 + n % 2)
        event = _training(rng, f"t{n}", when) if rng.random() < 0.4 else _inference(rng, f"i{n}", when)
        usage.append(event)
        plan.append(_planned(event))
    # Training of the fine-tune orbit-legal (its royalties inherit from orbit-base); one of src-late to correct later.
    lineage = _training(rng, "t-legal", _when(rng, 3), "src-essays", "orbit-legal")
    late = _training(rng, "t-late", _when(rng, 4), "src-late")
    plan += [_planned(lineage), _planned(late)]
    trained = [e for e in usage if e.kind == "training" and e.source_id != "src-late"]
    duplicate, conflicted = trained[0], trained[1]
    plan.append(_planned(duplicate, "duplicate: the same event again"))
    plan.append(_planned(_event("TrainingUsage", {**to_record(conflicted), "units": conflicted.units + 1}),
                         "conflict: same event id, other units"))
    plan.append(_planned(_training(rng, "t-ghost", _when(rng, 3), "src-ghost"), "usage of an unknown source"))
    plan.append(Planned(record_name="TrainingUsage", partition=0, key=b"src-novels", value=UNDECODABLE,
                        what="undecodable"))
    corrected = rng.sample([e for e in usage if e not in (duplicate, conflicted)
                            and all(a.source_id != "src-late" for a in getattr(e, "attributions", ()))
                            and getattr(e, "source_id", "") != "src-late"], 8)
    plan += [_planned(_correction(rng, f"c{n}", original, void=n % 3 == 0)) for n, original in enumerate(corrected)]
    plan.append(_planned(_correction(rng, "c-late", late, void=False), "correction of an unlicensed event"))
    plan += [
        _planned(_revenue("r-2026-03", "orbit-base", "2026-03", "12000.00", datetime(2026, 4, 1, 6, tzinfo=UTC))),
        _planned(_revenue("r-2026-04", "orbit-base", "2026-04", "15500.50", datetime(2026, 5, 1, 6, tzinfo=UTC))),
        _planned(_revenue("r-2026-04-legal", "orbit-legal", "2026-04", "800.00", datetime(2026, 5, 1, 7, tzinfo=UTC))),
        _planned(awaited, "the original of the correction produced first"),
    ]
    return tuple(plan)


def topic_of(prefix: str, record_name: str) -> str:
    return Topics(prefix=prefix).for_event(record_name)


def raw_records(plan: tuple[Planned, ...], prefix: str = "repro") -> list[RawRecord]:
    """The plan as Kafka would hold it, in produce order: offsets count up per topic-partition."""
    records, next_offset = [], {}
    for item in plan:
        topic = topic_of(prefix, item.record_name)
        offset = next_offset.get((topic, item.partition), 0)
        next_offset[(topic, item.partition)] = offset + 1
        records.append(RawRecord(topic=topic, partition=item.partition, offset=offset, timestamp=RECORD_TIME_MS,
                                 key=item.key, value=item.value))
    return records


def close_months(ledger: LedgerStore) -> None:
    """Closes both months in order at :data:`NOW` with the test key, retrying the quarantine before each."""
    for period in MONTHS:
        retry_before_close(ledger)  # as every close path does
        close_period(ledger, period, now=NOW, signer=SIGNER)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What one ledger shows of the closed months."""

    entries: frozenset[tuple[str, str]]
    """(entry key, entry hash) of every entry."""
    roots: dict[str, str]
    files: dict[str, bytes]
    """Every file of every closed month, by ``<period>/<name>``."""
    report: VerifyReport
    open_quarantine: tuple[tuple[str, str], ...]
    """(error code, what) of the records still quarantined, sorted."""


def outcome_of(ledger: LedgerStore, directory: Path, plan: tuple[Planned, ...] | None = None) -> Outcome:
    """Writes every file of :data:`MONTHS` under ``directory`` and gathers what the ledger shows."""
    files: dict[str, bytes] = {}
    for period in MONTHS:
        for path in write_period_files(ledger, period, directory / period):
            files[f"{period}/{path.name}"] = path.read_bytes()
    whats = {} if plan is None else {(p.record_name, p.partition, p.value): p.what for p in plan}
    quarantined = []
    for row in ledger.open_quarantine():
        name = next((n for n in RECORD_NAME.values() if row.topic.endswith(topic_of("", n))), "?")
        quarantined.append((row.error_code, whats.get((name, row.partition, row.value), f"{row.topic}@{row.offset}")))
    return Outcome(
        entries=frozenset(ledger.query("SELECT entry_key, entry_hash FROM audit_ledger")),
        roots={period: ledger.get_close(period).root for period in MONTHS},
        files=files,
        report=verify(ledger),
        open_quarantine=tuple(sorted(quarantined)),
    )


def differences(expected: Outcome, actual: Outcome) -> list[str]:
    """What differs between two outcomes, most telling first; empty when they are byte-identical."""
    found = []
    if expected.entries != actual.entries:
        missing, extra = sorted(expected.entries - actual.entries), sorted(actual.entries - expected.entries)
        found.append(f"entries differ: {len(missing)} missing (first {missing[:3]}), {len(extra)} extra"
                     f" (first {extra[:3]})")
    if expected.roots != actual.roots:
        found.append(f"close roots differ: {expected.roots} != {actual.roots}")
    if expected.report != actual.report:
        found.append(f"verify reports differ: {expected.report} != {actual.report}")
    if expected.files.keys() != actual.files.keys():
        found.append(f"file names differ: {sorted(expected.files.keys() ^ actual.files.keys())}")
    changed = sorted(name for name in expected.files.keys() & actual.files.keys()
                     if expected.files[name] != actual.files[name])
    if changed:
        found.append(f"{len(changed)} files differ: {changed}")
    if expected.open_quarantine != actual.open_quarantine:
        found.append(f"open quarantine differs: {expected.open_quarantine} != {actual.open_quarantine}")
    return found
