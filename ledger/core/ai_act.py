"""A draft of the EU AI Act public summary of training content, from what the ledger knows.

Article 53(1)(d) of the AI Act requires a provider of a general-purpose model to publish
a summary of the content used to train it, following the template the Commission
published in July 2025. This module fills in the parts the ledger can vouch for and
leaves every other part as a labelled gap for the provider to complete:

  * 1. General information: the model and its lineage (the provider, modalities and
    overall size are gaps; the units the ledger saw are given).
  * 2. List of data sources: section 2.2.1, data licensed from rightsholders, is the
    ledger's own: the licensed sources and their holders, ranked by share of training
    volume (per unit), and the collection period (first and last training use). The
    other source kinds (public datasets, crawling, user and synthetic data) are gaps.
  * 3. Data processing aspects: 3.1, how opt-outs were honoured: the revocations in
    force for the sources used and the usage booked as unlicensed (never priced) after
    them. Removal of illegal content is a gap.

It is marked as a draft throughout. Pure: rows in, a document and its Markdown out; the
same ledger and ``as_of`` give the same bytes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Iterable, Mapping

from ledger.core.evidence import TrainingUse, lineage_of
from ledger.core.licenses import ANY_PLATFORM, Revocation
from ledger.core.unlicensed import UnlicensedUse

FORMAT_VERSION = 1
TEMPLATE = "EU AI Act, Article 53(1)(d): Template for the Public Summary of Training Content (European Commission, July 2025)"
DRAFT = ("DRAFT prepared from the Learnright royalty ledger for the provider to complete and check. It covers only"
         " training the platform reported to the ledger; every part marked GAP must be completed by the provider.")

GAPS = {
    "1.1": "Provider name and contact details: not known to the ledger.",
    "1.2": "Model name and version as placed on the market, date of placement: not known to the ledger.",
    "1.3": "Modalities, overall size of the training data per modality and its characteristics (languages,"
           " domains): the ledger knows only the units reported per licensed source (below).",
    "2.1": "Publicly available datasets: not known to the ledger.",
    "2.2.2": "Private datasets obtained otherwise than by licence from rightsholders: not known to the ledger.",
    "2.3": "Data crawled and scraped from online sources (crawlers, period, top domains): not known to the ledger.",
    "2.4": "User data: not known to the ledger.",
    "2.5": "Synthetic data: not known to the ledger.",
    "2.6": "Other sources of data: not known to the ledger.",
    "3.1": "Measures to respect reservations of rights expressed outside the ledger (robots.txt, TDM"
           " reservation protocols, other machine-readable opt-outs) during collection: not known to the ledger.",
    "3.2": "Measures to avoid or remove illegal content: not known to the ledger.",
}


def _units(value: Decimal) -> str:
    """Units as a person reads them: ``729``, not ``729.000000000000`` (exact, never an exponent)."""
    return format(value.normalize(), "f")


def _share(part: Decimal, whole: Decimal) -> str:
    """A share as a percentage with two decimals, rounded half-even from the exact fraction."""
    percent = Fraction(part) * 100 / Fraction(whole)
    return f"{Decimal(percent.numerator) / Decimal(percent.denominator):.2f}"


def build_summary(*, platform_id: str, model_id: str, as_of: datetime, lineage: Mapping[tuple[str, str], str],
                  uses: Iterable[TrainingUse], unlicensed: Iterable[UnlicensedUse], revocations: Iterable[Revocation],
                  holder_names: Mapping[str, str], source_titles: Mapping[str, str]) -> dict:
    """The summary draft of ``model_id`` and its lineage as of ``as_of`` (uses read up to it by the caller)."""
    chain = lineage_of(platform_id, model_id, lineage)
    uses = [u for u in uses if u.platform_id == platform_id and u.model_id in chain]
    flagged = [u for u in unlicensed if u.platform_id == platform_id and u.model_id in chain and u.occurred_at <= as_of]
    units: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    holders: dict[str, str] = {}
    for use in uses:
        units[(use.unit, use.source_id)] += use.units
        holders[use.source_id] = use.holder_id
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for (unit, _), value in units.items():
        totals[unit] += value
    ranked = sorted(((unit, source) for (unit, source), value in units.items() if value > 0),
                    key=lambda key: (key[0], -units[key], key[1]))
    sources = [
        {"rank": rank, "source_id": source, "title": source_titles.get(source, ""), "holder_id": holders[source],
         "holder_name": holder_names.get(holders[source], holders[source]), "unit": unit,
         "units": _units(units[(unit, source)]), "share_percent": _share(units[(unit, source)], totals[unit])}
        for rank, (unit, source) in enumerate(ranked, start=1)
    ]
    used = {u.source_id for u in uses} | {u.source_id for u in flagged}
    in_force = sorted((r for r in revocations if r.source_id in used and r.effective_at <= as_of
                       and r.platform_id in (platform_id, ANY_PLATFORM)),
                      key=lambda r: (r.effective_at, r.revocation_id))
    grouped: dict[tuple, list[UnlicensedUse]] = defaultdict(list)
    for use in flagged:
        grouped[(use.source_id, use.kind, use.unit, use.reason, use.revocation_id)].append(use)
    period = ([min(u.first_use for u in uses).isoformat(), max(u.last_use for u in uses).isoformat()]
              if uses else ["", ""])
    return {
        "format_version": FORMAT_VERSION,
        "draft": True,
        "notice": DRAFT,
        "template": TEMPLATE,
        "as_of": as_of.isoformat(),
        "general_information": {
            "provider": {"gap": GAPS["1.1"]},
            "model": {"model_id": model_id, "platform_id": platform_id, "lineage": list(chain),
                      "gap": GAPS["1.2"]},
            "training_data": {"units_reported": {unit: _units(total) for unit, total in sorted(totals.items())},
                              "gap": GAPS["1.3"]},
        },
        "data_sources": {
            "public_datasets": {"gap": GAPS["2.1"]},
            "licensed_from_rightsholders": {
                "sources": sources,
                "collection_period": {"first_use": period[0], "last_use": period[1]},
                "ranking": "by share of the training units of the model and its base models, per unit",
            },
            "other_private_datasets": {"gap": GAPS["2.2.2"]},
            "crawled_and_scraped": {"gap": GAPS["2.3"]},
            "user_data": {"gap": GAPS["2.4"]},
            "synthetic_data": {"gap": GAPS["2.5"]},
            "other_sources": {"gap": GAPS["2.6"]},
        },
        "data_processing": {
            "opt_outs": {
                "revocations_in_force": [
                    {"revocation_id": r.revocation_id, "source_id": r.source_id, "platform_id": r.platform_id,
                     "effective_at": r.effective_at.isoformat(), "reason": r.reason,
                     "evidence_url": r.evidence_url or "", "evidence_sha256": r.evidence_sha256 or ""}
                    for r in in_force],
                "usage_after_opt_out": [
                    {"source_id": source, "kind": kind, "unit": unit, "reason": reason, "revocation_id": revocation,
                     "units": _units(sum((u.quantity for u in items), Decimal(0))),
                     "events": len({(u.model_id, u.event_id) for u in items}),
                     "treatment": "booked as unlicensed use: not priced, listed on the holder's statement and the"
                                  " platform's usage report"}
                    for (source, kind, unit, reason, revocation), items in sorted(grouped.items())],
                "gap": GAPS["3.1"],
            },
            "illegal_content": {"gap": GAPS["3.2"]},
        },
    }


def render_json(summary: dict) -> bytes:
    """The summary as indented JSON with sorted keys and a final newline."""
    return (json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _gap(text: str) -> str:
    return f"> **GAP (provider to complete):** {text}"


def render_markdown(summary: dict) -> bytes:
    """The summary as Markdown, following the template's section numbers; gaps stand out as quoted GAP lines."""
    general, sources, processing = summary["general_information"], summary["data_sources"], summary["data_processing"]
    model = general["model"]
    licensed = sources["licensed_from_rightsholders"]
    opt_outs = processing["opt_outs"]
    out = [
        f"# Public summary of training content: {model['model_id']} (DRAFT)",
        "",
        f"**{summary['notice']}**",
        "",
        f"Template: {summary['template']}. Ledger state as of {summary['as_of']}.",
        "",
        "## 1. General information",
        "",
        "### 1.1 Provider identification",
        "",
        _gap(general["provider"]["gap"]),
        "",
        "### 1.2 Model identification",
        "",
        f"Model `{model['model_id']}` of platform `{model['platform_id']}`; lineage (fine-tune first):"
        f" {' <- '.join('`' + m + '`' for m in model['lineage'])}.",
        "",
        _gap(model["gap"]),
        "",
        "### 1.3 Modalities, overall training data size and other characteristics",
        "",
        "Units of licensed training reported to the ledger: "
        + (", ".join(f"{v} {u}" for u, v in general["training_data"]["units_reported"].items()) or "none") + ".",
        "",
        _gap(general["training_data"]["gap"]),
        "",
        "## 2. List of data sources",
        "",
        "### 2.1 Publicly available datasets",
        "",
        _gap(sources["public_datasets"]["gap"]),
        "",
        "### 2.2 Private non-publicly available datasets obtained from third parties",
        "",
        "#### 2.2.1 Datasets commercially licensed by rightsholders or their representatives",
        "",
        f"Collection period: {licensed['collection_period']['first_use'] or '-'} to"
        f" {licensed['collection_period']['last_use'] or '-'}. Sources ranked {licensed['ranking']}.",
        "",
    ]
    if licensed["sources"]:
        out += _table(["rank", "source", "title", "rightsholder", "units", "unit", "share of unit (%)"],
                      [[s["rank"], s["source_id"], s["title"], f"{s['holder_name']} ({s['holder_id']})", s["units"],
                        s["unit"], s["share_percent"]] for s in licensed["sources"]])
    else:
        out.append("No licensed training was reported to the ledger.")
    out += [
        "",
        "#### 2.2.2 Private datasets obtained from other third parties",
        "",
        _gap(sources["other_private_datasets"]["gap"]),
        "",
        "### 2.3 Data crawled and scraped from online sources",
        "",
        _gap(sources["crawled_and_scraped"]["gap"]),
        "",
        "### 2.4 User data",
        "",
        _gap(sources["user_data"]["gap"]),
        "",
        "### 2.5 Synthetic data",
        "",
        _gap(sources["synthetic_data"]["gap"]),
        "",
        "### 2.6 Other sources of data",
        "",
        _gap(sources["other_sources"]["gap"]),
        "",
        "## 3. Data processing aspects",
        "",
        "### 3.1 Respect of reservation of rights from the text and data mining exception or limitation",
        "",
        "Rightsholders withdraw consent in the ledger by revocation; usage after a revocation is booked as"
        " unlicensed use, never priced, and listed to the rightsholder and the platform.",
        "",
    ]
    if opt_outs["revocations_in_force"]:
        out += _table(["revocation", "source", "platform", "effective at", "reason", "evidence"],
                      [[r["revocation_id"], r["source_id"], r["platform_id"], r["effective_at"], r["reason"],
                        (r["evidence_url"] + (f" (SHA-256 {r['evidence_sha256']})" if r["evidence_sha256"] else ""))
                        or "-"] for r in opt_outs["revocations_in_force"]])
    else:
        out.append("No revocation of a source used by this model is in force.")
    out.append("")
    if opt_outs["usage_after_opt_out"]:
        out.append("Usage after consent ended:")
        out.append("")
        out += _table(["source", "kind", "units", "unit", "events", "reason", "revocation", "treatment"],
                      [[u["source_id"], u["kind"], u["units"], u["unit"], u["events"], u["reason"],
                        u["revocation_id"] or "-", u["treatment"]] for u in opt_outs["usage_after_opt_out"]])
    else:
        out.append("No usage of this model's sources was booked after consent ended.")
    out += [
        "",
        _gap(opt_outs["gap"]),
        "",
        "### 3.2 Removal of illegal content",
        "",
        _gap(processing["illegal_content"]["gap"]),
        "",
    ]
    return "\n".join(out).encode()
