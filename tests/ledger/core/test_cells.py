"""Formula injection: text a platform controls never starts a formula in a CSV or TSV a person opens."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

import pytest

from ledger.core.cells import safe_text
from ledger.core.dsr import render_dsr
from ledger.core.statements import render_csv

HOSTILE = ('=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3", "\t=1", "\r=1")


def document(model_id: str) -> dict:
    line = {"period": "2026-04", "prior_period_adjustment": False, "source_id": "src-a", "platform_id": "orbit",
            "model_id": model_id, "kind": "inference", "unit": "answers", "quantity": "-1.000000000000",
            "rate": "0.002500000000", "per": 1, "amount": "-0.002500000000", "entries": 1, "license": "lic-a v1",
            "description": "a correction"}
    return {"statement_id": "st_1", "period": "2026-04", "currency": "USD", "holder": {"id": "h-a"},
            "lines": [line], "summary": {"accrued": "-0.002500000000", "carry_in": "0", "payable": "0.00",
                                         "carry_out": "-0.002500000000"}}


@pytest.mark.parametrize("text", HOSTILE)
def test_a_formula_start_gets_an_apostrophe_and_nothing_else_changes(text):
    assert safe_text(text) == "'" + text
    assert safe_text("orbit-7b") == "orbit-7b" and safe_text("") == ""


@pytest.mark.parametrize("text", HOSTILE)
def test_csv_statements_neutralize_text_cells_but_keep_negative_amounts(text):
    rows = list(csv.DictReader(io.StringIO(render_csv(document(text)).decode(), newline="")))
    line, *summaries = rows
    assert line["model_id"] == "'" + text.replace("\r", "\n")  # a lone CR would end the row unquoted
    assert (line["amount"], line["quantity"]) == ("-0.002500000000", "-1.000000000000")
    assert [s["amount"] for s in summaries if s["unit"] == "carry_out"] == ["-0.002500000000"]


def test_dsr_reports_neutralize_text_fields_but_keep_negative_amounts():
    report = render_dsr(period="2026-04", platform_id="orbit", documents=[document("=1+1")],
                        created_at=datetime(2026, 5, 3, tzinfo=timezone.utc), close_root="0" * 64)
    detail = next(r for r in csv.reader(report.body.decode().splitlines(), delimiter="\t",
                                        quoting=csv.QUOTE_NONE) if r[0] == "RU01")
    assert "'=1+1" in detail and "=1+1" not in detail
    assert "-0.002500000000" in detail
