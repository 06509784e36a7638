"""The PDF statement: what a rights holder reads first.

Pure: a statement document (and the values of its signed envelope) in, PDF bytes out;
rendered with reportlab in invariant mode, so the same statement gives the same bytes.
Order: who, which month and currency; the summary (accrued, carry in, payable, carry
out); the summary per source; the lines of the month, each period term with how it was
computed; prior-period adjustments, each naming its month; unlicensed use (usage after
consent ended, never priced), when the statement lists any; then how to check the file
(content hash, the close root - or, for statements of format 4 and before, the chain
head and last entry at close - key fingerprint and signature).
Amounts are shown exactly, with at least the currency's minor unit of decimals.
"""

from __future__ import annotations

import io
from decimal import Decimal

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from ledger.core.money import minor_units
from ledger.core.periods import period_start
from ledger.core.statements import ledger_section

_STYLES = getSampleStyleSheet()
_BODY = ParagraphStyle("body", parent=_STYLES["BodyText"], fontSize=9, leading=11)
_SMALL = ParagraphStyle("small", parent=_BODY, fontSize=7.5, leading=9, textColor=colors.HexColor("#444444"))
_NOTE = ParagraphStyle("note", parent=_SMALL, leftIndent=4)
_CELL = ParagraphStyle("cell", parent=_BODY, fontSize=8, leading=9.5)
_CELL_RIGHT = ParagraphStyle("cellr", parent=_CELL, alignment=TA_RIGHT)
_H1 = ParagraphStyle("h1", parent=_STYLES["Title"], alignment=0, fontSize=18, spaceAfter=2)
_H2 = ParagraphStyle("h2", parent=_STYLES["Heading2"], fontSize=12, spaceBefore=10, spaceAfter=4)
_INK = colors.HexColor("#1f3a5f")
_RULE = colors.HexColor("#c8d0da")
_BAND = colors.HexColor("#f1f4f8")
_KINDS = {
    "training": "Training", "inference": "Inference", "tier_adjustment": "Tier adjustment",
    "minimum_topup": "Minimum guarantee top-up", "pool_share": "Revenue pool share", "model_royalty": "Model royalty",
}


def amount_text(value: str | Decimal, currency: str) -> str:
    """``1234.5000`` -> ``1,234.50`` for USD: exact, trailing zeros beyond the minor unit dropped."""
    amount = Decimal(value)
    places = max(minor_units(currency), -amount.normalize().as_tuple().exponent)
    return f"{amount:,.{places}f}"


def quantity_text(value: str | Decimal) -> str:
    quantity = Decimal(value).normalize()
    places = max(0, -quantity.as_tuple().exponent)
    return f"{quantity:,.{places}f}"


def month_name(period: str) -> str:
    return period_start(period).strftime("%B %Y")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _grid(rows: list[list], widths: list[float], *, header: bool = True, total_row: bool = False,
          bands: list[int] | None = None, spans: list[int] | None = None) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1 if header else 0)
    style = [
        ("FONTSIZE", (0, 0), (-1, -1), 8.5),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, _RULE),
        ("TOPPADDING", (0, 0), (-1, -1), 2.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
    ]
    if header:
        style += [("BACKGROUND", (0, 0), (-1, 0), _INK), ("TEXTCOLOR", (0, 0), (-1, 0), colors.white),
                  ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold")]
    if total_row:
        style += [("FONTNAME", (0, -1), (-1, -1), "Helvetica-Bold"), ("LINEABOVE", (0, -1), (-1, -1), 1, _INK),
                  ("BACKGROUND", (0, -1), (-1, -1), _BAND)]
    for row in spans or ():
        style += [("SPAN", (0, row), (-1, row)), ("LINEBELOW", (0, row - 1), (-1, row - 1), 0, colors.white)]
    for row in bands or ():
        style.append(("BACKGROUND", (0, row), (-1, row), _BAND))
    table.setStyle(TableStyle(style))
    return table


def _lines_table(lines: list[dict], currency: str, with_period: bool) -> Table:
    head = (["Month"] if with_period else []) + ["Source", "Platform", "Model", "Kind", "Quantity", "Rate", "Amount"]
    rows: list[list] = [head]
    spans: list[int] = []
    for line in lines:
        unit = f" {line['unit']}" if line["unit"] else ""
        per = f" / {int(line['per']):,}" if int(line["per"]) != 1 else ""
        rate = f"{quantity_text(line['rate'])}{per}" if Decimal(line["rate"]) else ""
        row = ([line["period"]] if with_period else []) + [
            Paragraph(_escape(line["source_id"]), _CELL), Paragraph(_escape(line["platform_id"]), _CELL),
            Paragraph(_escape(line["model_id"]), _CELL), Paragraph(_KINDS.get(line["kind"], line["kind"]), _CELL),
            Paragraph(f"{quantity_text(line['quantity'])}{_escape(unit)}", _CELL_RIGHT),
            Paragraph(rate, _CELL_RIGHT), Paragraph(amount_text(line["amount"], currency), _CELL_RIGHT),
        ]
        rows.append(row)
        if line.get("description"):
            rows.append([Paragraph(f"How computed: {_escape(line['description'])} ({_escape(line['license'])})",
                                   _NOTE)] + [""] * (len(head) - 1))
            spans.append(len(rows) - 1)
    total = sum((Decimal(line["amount"]) for line in lines), Decimal(0))
    rows.append(["Total"] + [""] * (len(head) - 2) + [amount_text(total, currency)])
    widths = [16 * mm, 27 * mm, 17 * mm, 22 * mm, 26 * mm, 26 * mm, 19 * mm, 21 * mm]  # 174 mm: the frame
    if not with_period:
        widths = [30 * mm, 19 * mm, 24 * mm, 30 * mm, 28 * mm, 21 * mm, 22 * mm]
    table = _grid(rows, widths, total_row=True, spans=spans)
    table.setStyle(TableStyle([("ALIGN", (-1, -1), (-1, -1), "RIGHT")]))
    return table


def _distribution(document: dict, currency: str) -> list:
    """The distribution section: a member's fee and deductions, or a collective's split among its members."""
    distribution = document["distribution"]
    if "attributed" in distribution:  # a member's distribution statement
        collective = document["collective"]
        rows = [["Distribution", currency], ["Attributed to you (the lines below)",
                                             amount_text(distribution["attributed"], currency)],
                ["Management fee", "-" + amount_text(distribution["management_fee"], currency)]]
        rows += [[f"Deduction: {_escape(name)}", "-" + amount_text(amount, currency)]
                 for name, amount in sorted(distribution["deductions"].items())]
        rows.append(["Net, accrued to you this period", amount_text(distribution["net"], currency)])
        table = _grid(rows, [110 * mm, 50 * mm], total_row=True)
        table.setStyle(TableStyle([("ALIGN", (1, 0), (1, -1), "RIGHT")]))
        return [Paragraph(f"Distribution by {_escape(collective['name'])}", _H2), table, Spacer(1, 2 * mm),
                Paragraph(f"From the collective's statement {collective['statement_id']}, content hash"
                          f" {collective['content_hash']}.", _SMALL)]
    rows = [["Member", "Attributed", "Management fee", "Deductions", "Net"]]
    for member in distribution["members"]:
        deducted = sum((Decimal(a) for a in member["deductions"].values()), Decimal(0))
        rows.append([Paragraph(f"{_escape(member['name'])} ({_escape(member['id'])})", _CELL),
                     amount_text(member["attributed"], currency), amount_text(member["management_fee"], currency),
                     amount_text(deducted, currency), amount_text(member["net"], currency)])
    table = _grid(rows, [54 * mm, 30 * mm, 30 * mm, 30 * mm, 30 * mm])
    table.setStyle(TableStyle([("ALIGN", (1, 0), (-1, -1), "RIGHT")]))
    fee = distribution["management_fee"]
    totals = [["Taken and held", currency],
              ["Management fee" + (f" (capped at {amount_text(fee['cap'], currency)})" if fee["capped"] else ""),
               amount_text(fee["amount"], currency)]]
    totals += [[f"Deduction: {_escape(name)}", amount_text(amount, currency)]
               for name, amount in sorted(distribution["deductions"].items())]
    totals.append(["Undistributed this period", amount_text(distribution["undistributed"]["amount"], currency)])
    totals += [[f"Undistributed of {held['period']}, held {held['age_months']} month(s)",
                amount_text(held["amount"], currency)]
               for held in distribution["undistributed"]["held"] if held["period"] != document["period"]]
    held = _grid(totals, [110 * mm, 50 * mm])
    held.setStyle(TableStyle([("ALIGN", (1, 0), (1, -1), "RIGHT")]))
    return [Paragraph("Distribution to members", _H2), table, Spacer(1, 2 * mm), held]


def render_pdf(document: dict, *, content_hash: str, key_fingerprint: str, signature: str) -> bytes:
    """One statement as a PDF, summary first."""
    currency = document["currency"]
    summary = document["summary"]
    period = document["period"]
    story: list = [
        Paragraph("Royalty statement", _H1),
        Paragraph(f"<b>{_escape(document['holder']['name'])}</b> ({_escape(document['holder']['id'])})", _BODY),
        Paragraph(f"Period <b>{month_name(period)}</b> ({period}) &nbsp;&nbsp; Currency <b>{currency}</b>"
                  f" &nbsp;&nbsp; Statement {document['statement_id']}", _BODY),
        Spacer(1, 5 * mm),
    ]
    payable = amount_text(summary["payable"], currency)
    rows = [
        ["Summary", currency],
        ["Accrued this period", amount_text(summary["accrued"], currency)],
        ["Carried in from the previous statement", amount_text(summary["carry_in"], currency)],
        ["Carried out to the next statement", amount_text(summary["carry_out"], currency)],
        ["Payable", payable],
    ]
    table = _grid(rows, [110 * mm, 50 * mm], total_row=True)
    table.setStyle(TableStyle([("ALIGN", (1, 0), (1, -1), "RIGHT"), ("FONTSIZE", (0, -1), (-1, -1), 11)]))
    story += [table, Spacer(1, 2 * mm), Paragraph(
        "Payable is accrued plus carry in, rounded once to the currency's minor unit (half-even); the rest,"
        " a negative balance or an amount under your payout minimum, is carried to the next statement.", _SMALL)]
    if "distribution" in document:  # collectives only: every other statement renders as before
        story += _distribution(document, currency)

    current = [l for l in document["lines"] if not l["prior_period_adjustment"]]
    prior = [l for l in document["lines"] if l["prior_period_adjustment"]]
    by_source: dict[str, list[Decimal]] = {}
    for line in document["lines"]:
        bucket = by_source.setdefault(line["source_id"], [Decimal(0), Decimal(0)])
        bucket[1 if line["prior_period_adjustment"] else 0] += Decimal(line["amount"])
    source_rows = [["Source", "This period", "Prior-period adjustments", "Total"]]
    for source in sorted(by_source):
        this, earlier = by_source[source]
        source_rows.append([source, amount_text(this, currency), amount_text(earlier, currency),
                            amount_text(this + earlier, currency)])
    source_rows.append(["All sources", amount_text(sum(v[0] for v in by_source.values()), currency),
                        amount_text(sum(v[1] for v in by_source.values()), currency),
                        amount_text(document.get("distribution", {}).get("attributed", summary["accrued"]), currency)])
    sources = _grid(source_rows, [64 * mm, 32 * mm, 40 * mm, 32 * mm], total_row=True)
    sources.setStyle(TableStyle([("ALIGN", (1, 0), (-1, -1), "RIGHT")]))
    story += [KeepTogether([Paragraph("By source", _H2), sources])]

    story.append(Paragraph(f"Lines of {month_name(period)}", _H2))
    story.append(_lines_table(current, currency, with_period=False) if current
                 else Paragraph("No usage was booked for this month.", _BODY))
    if prior:
        story.append(Paragraph("Prior-period adjustments", _H2))
        story.append(Paragraph("Usage of months already closed that reached the ledger after their close; the closed"
                               " statements are unchanged, and these lines are settled here.", _SMALL))
        story.append(Spacer(1, 2 * mm))
        story.append(_lines_table(prior, currency, with_period=True))

    unlicensed = document.get("unlicensed_use", ())
    if unlicensed:
        story.append(Paragraph("Unlicensed use (not priced)", _H2))
        story.append(Paragraph("Usage of your sources after their license ended or you revoked it. It is not paid"
                               " and not money; it is listed here, and on the platform's usage report, so that you"
                               " can act on it.", _SMALL))
        story.append(Spacer(1, 2 * mm))
        rows = [["Month", "Source", "Platform", "Model", "Kind", "Quantity", "Events", "Why"]]
        for use in unlicensed:
            why = f"revoked ({use['revocation_id']})" if use["reason"] == "revoked" else f"{use['license']} ended"
            rows.append([Paragraph(_escape(str(cell)), _CELL) for cell in (
                use["period"], use["source_id"], use["platform_id"], use["model_id"], use["kind"],
                f"{quantity_text(use['quantity'])} {use['unit']}", use["events"], why)])
        story.append(_grid(rows, [16 * mm, 26 * mm, 20 * mm, 24 * mm, 17 * mm, 30 * mm, 13 * mm, 28 * mm]))

    ledger = ledger_section(document)
    covers = (f"Close root {ledger.close_root}." if ledger.close_root is not None
              else f"Ledger chain head at close {ledger.chain_head} (entry {ledger.last_entry_id}).")
    story += [Paragraph("Checking this statement", _H2), Paragraph(
        f"Format version {document['format_version']}. Content hash (SHA-256 of the canonical statement)"
        f" {content_hash}. {covers}"
        f" Signed with Ed25519 key {key_fingerprint}; signature {signature}. The JSON file of this statement"
        " carries the same values: check it with <font face='Courier'>learnright statements verify FILE"
        " --public-key KEY.pem</font>.", _SMALL)]

    def footer(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(colors.HexColor("#666666"))
        canvas.drawString(18 * mm, 10 * mm, f"{document['holder']['name']} - {period} {currency} - {document['statement_id']}")
        canvas.drawRightString(A4[0] - 18 * mm, 10 * mm, f"page {doc.page}")
        canvas.restoreState()

    out = io.BytesIO()
    pdf = SimpleDocTemplate(out, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm,
                            bottomMargin=18 * mm, title=f"Royalty statement {period} {document['holder']['name']} {currency}",
                            author="Learnright", creator="Learnright", invariant=True)
    pdf.build(story, onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()
