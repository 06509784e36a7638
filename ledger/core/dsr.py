"""Per-platform usage reports in a DDEX-DSR-like tab-separated layout.

Pure: the statement documents of a closed month in, one report per platform out. Like a
DDEX DSR flat file, a report is a sequence of typed records, one per line, fields
separated by tabs, each record type preceded once by a ``#`` line naming its columns:

  ``HEAD``  one: message id (period, platform and the first 16 hex digits of the close
            root, so a rebuild from the Kafka log names the same message), creation
            time (the close), usage period and its first and last day, sender
            (Learnright) and recipient (the platform).
  ``SY01``  one per currency and usage kind: its number of detail records and total amount.
  ``RU01``  one per statement line of the platform: which summary it belongs to, the
            statement, holder, source, model, kind, month (an earlier one on a
            prior-period adjustment), quantity, unit, rate, amount, license, description.
  ``UL01``  one per unlicensed-use line of the platform (only in a report that has any,
            after the details): uses of a source after its license ended or was revoked,
            listed and never priced (:mod:`ledger.core.unlicensed`).
  ``FOOT``  one: counts of records (all, summary, detail) and the total per currency.

Amounts are exact decimals as in the statements; the platform reconciles against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Iterable

from ledger.core.cells import safe_text
from ledger.core.periods import last_instant

DSR_VERSION = "learnright-dsr/1"

HEAD_COLUMNS = ("RecordType", "MessageVersion", "MessageId", "MessageCreatedDateTime", "UsagePeriod",
                "UsageStartDate", "UsageEndDate", "SenderPartyId", "SenderName", "RecipientPartyId")
SUMMARY_COLUMNS = ("RecordType", "SummaryRecordId", "Currency", "UsageKind", "NumberOfDetailRecords", "TotalAmount")
DETAIL_COLUMNS = ("RecordType", "DetailRecordId", "SummaryRecordId", "StatementId", "RightsHolderId", "SourceId",
                  "ModelId", "UsageKind", "UsagePeriod", "PriorPeriodAdjustment", "Quantity", "Unit", "Rate", "Per",
                  "Amount", "Currency", "License", "Description")
UNLICENSED_COLUMNS = ("RecordType", "UnlicensedRecordId", "StatementId", "RightsHolderId", "SourceId", "ModelId",
                      "UsageKind", "UsagePeriod", "Quantity", "Unit", "NumberOfEvents", "Reason", "License",
                      "RevocationId")
FOOT_COLUMNS = ("RecordType", "NumberOfRecordsInFile", "NumberOfSummaryRecords", "NumberOfDetailRecords",
                "TotalAmountPerCurrency")


@dataclass(frozen=True, slots=True, kw_only=True)
class DsrReport:
    platform_id: str
    body: bytes
    detail_records: int


class _Number(str):
    """A field already formatted as a number: written as it is, never neutralized."""


def _field(value: object) -> str:
    """A field value with no tab or line break left in it, and no formula start in text."""
    if isinstance(value, _Number) or not isinstance(value, str):
        return str(value)
    return safe_text(" ".join(value.split()))


def _number(value: str | Decimal) -> str:
    """An exact decimal in plain notation (never ``0E-12``)."""
    return _Number(format(Decimal(value), "f"))


def _record(values: Iterable[object]) -> str:
    return "\t".join(_field(v) for v in values)


def platforms(documents: Iterable[dict]) -> tuple[str, ...]:
    """Every platform with a statement line or an unlicensed use in ``documents``."""
    return tuple(sorted({line["platform_id"] for document in documents
                         for line in (*document["lines"], *document.get("unlicensed_use", ()))}))


def render_dsr(*, period: str, platform_id: str, documents: Iterable[dict], created_at: datetime,
               close_root: str) -> DsrReport:
    """The report of ``platform_id`` over the statement ``documents`` of ``period``.

    Args:
        close_root: the root of the close of ``period`` (:func:`ledger.core.chain.close_root`);
            its first 16 hex digits end the message id.
    """
    details = sorted(
        ((document, line) for document in documents for line in document["lines"] if line["platform_id"] == platform_id),
        key=lambda item: (item[0]["currency"], item[1]["kind"], item[0]["holder"]["id"], item[1]["period"],
                          item[1]["source_id"], item[1]["model_id"], item[1]["license"], item[1]["rate"],
                          item[1]["description"]),
    )
    summaries: dict[tuple[str, str], list] = {}
    for document, line in details:
        bucket = summaries.setdefault((document["currency"], line["kind"]), [0, Decimal(0)])
        bucket[0] += 1
        bucket[1] += Decimal(line["amount"])
    summary_ids = {key: number for number, key in enumerate(sorted(summaries), start=1)}
    last_day = last_instant(period).day
    lines = [
        "#" + _record(HEAD_COLUMNS),
        _record(("HEAD", DSR_VERSION, f"{period}-{platform_id}-{close_root[:16]}", created_at.isoformat(), period,
                 f"{period}-01", f"{period}-{last_day:02d}", "learnright", "Learnright royalty ledger", platform_id)),
        "#" + _record(SUMMARY_COLUMNS),
    ]
    for key in sorted(summaries):
        count, total = summaries[key]
        lines.append(_record(("SY01", summary_ids[key], key[0], key[1], count, _number(total))))
    lines.append("#" + _record(DETAIL_COLUMNS))
    for number, (document, line) in enumerate(details, start=1):
        lines.append(_record((
            "RU01", number, summary_ids[(document["currency"], line["kind"])], document["statement_id"],
            document["holder"]["id"], line["source_id"], line["model_id"], line["kind"], line["period"],
            "Y" if line["prior_period_adjustment"] else "N", _number(line["quantity"]), line["unit"],
            _number(line["rate"]), line["per"], _number(line["amount"]), document["currency"], line["license"], line["description"],
        )))
    unlicensed = sorted(
        ((document, use) for document in documents for use in document.get("unlicensed_use", ())
         if use["platform_id"] == platform_id),
        key=lambda item: (item[0]["holder"]["id"], item[1]["period"], item[1]["source_id"], item[1]["model_id"],
                          item[1]["kind"], item[1]["license"], item[1]["reason"], item[1]["revocation_id"]))
    if unlicensed:
        lines.append("#" + _record(UNLICENSED_COLUMNS))
        for number, (document, use) in enumerate(unlicensed, start=1):
            lines.append(_record((
                "UL01", number, document["statement_id"], document["holder"]["id"], use["source_id"],
                use["model_id"], use["kind"], use["period"], _number(use["quantity"]), use["unit"], use["events"],
                use["reason"], use["license"], use["revocation_id"])))
    totals: dict[str, Decimal] = {}
    for (currency, _kind), (_count, total) in summaries.items():
        totals[currency] = totals.get(currency, Decimal(0)) + total
    records = 1 + len(summaries) + len(details) + len(unlicensed) + 1
    lines.append("#" + _record(FOOT_COLUMNS))
    lines.append(_record(("FOOT", records, len(summaries), len(details),
                          ";".join(f"{c}:{_number(totals[c])}" for c in sorted(totals)))))
    return DsrReport(platform_id=platform_id, body=("\n".join(lines) + "\n").encode(), detail_records=len(details))
