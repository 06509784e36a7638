"""The PDF of licensed-model evidence: the verdict first, then each model's sources.

Pure: an evidence document and its signature in, PDF bytes out; reportlab in invariant
mode, so the same evidence gives the same bytes. The signed JSON is what is checked
(``learnright evidence verify``); the PDF names its content hash and signature.
"""

from __future__ import annotations

import io

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from ledger.core.pdf import quantity_text

_STYLES = getSampleStyleSheet()
_BODY = ParagraphStyle("evidence-body", parent=_STYLES["BodyText"], fontSize=9, leading=11)
_SMALL = ParagraphStyle("evidence-small", parent=_BODY, fontSize=7.5, leading=9, textColor=colors.HexColor("#444444"))
_CELL = ParagraphStyle("evidence-cell", parent=_BODY, fontSize=7.5, leading=9)
_H1 = ParagraphStyle("evidence-h1", parent=_STYLES["Title"], alignment=0, fontSize=17, spaceAfter=2)
_H2 = ParagraphStyle("evidence-h2", parent=_STYLES["Heading2"], fontSize=12, spaceBefore=10, spaceAfter=4)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _table(rows: list[list[str]], widths: list[float]) -> Table:
    table = Table([[Paragraph(_escape(str(cell)), _CELL) for cell in row] for row in rows], colWidths=widths,
                  repeatRows=1)
    table.setStyle(TableStyle([
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#1f3a5f")),
        ("TEXTCOLOR", (0, 0), (-1, 0), colors.white),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#c8d0da")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]))
    return table


def render_evidence_pdf(document: dict, *, content_hash: str, key_fingerprint: str, signature: str) -> bytes:
    """The evidence as a PDF: verdict, lineage, then per model each source with its licenses and unlicensed use."""
    verdict = document["verdict"]
    answer = "YES" if verdict["all_training_licensed"] else "NO"
    story: list = [
        Paragraph("Licensed-model evidence", _H1),
        Paragraph(f"Model <b>{_escape(document['model_id'])}</b> of platform <b>{_escape(document['platform_id'])}</b>,"
                  f" as of {document['as_of']}. Evidence {document['evidence_id']}.", _BODY),
        Paragraph(f"Lineage: {_escape(' &lt;- '.join(document['lineage']))}", _BODY),
        Spacer(1, 4 * mm),
        Paragraph(f"Every training use licensed: <b>{answer}</b> ({verdict['unlicensed_training_events']} unlicensed"
                  f" training events across {verdict['models']} models and {verdict['sources']} sources)", _H2),
    ]
    for model in document["models"]:
        base = f" (fine-tune of {model['base_model_id']})" if model["base_model_id"] else ""
        story.append(Paragraph(f"Model {_escape(model['model_id'])}{_escape(base)}", _H2))
        if not model["sources"]:
            story.append(Paragraph("No training of this model was reported.", _BODY))
            continue
        rows = [["Source", "Holder", "License in force", "Units", "Events", "First use", "Last use"]]
        for source in model["sources"]:
            for use in source["licenses"]:
                rows.append([source["source_id"], source["holder_name"], use["license"],
                             f"{quantity_text(use['units'])} {use['unit']}", str(use["events"]), use["first_use"],
                             use["last_use"]])
            for use in source["unlicensed"]:
                rows.append([source["source_id"], source["holder_name"],
                             f"UNLICENSED ({use['reason']}{', ' + use['revocation_id'] if use['revocation_id'] else ''};"
                             f" was {use['license']})", f"{quantity_text(use['units'])} {use['unit']}",
                             str(use["events"]), use["first_use"], use["last_use"]])
        story.append(_table(rows, [24 * mm, 24 * mm, 34 * mm, 26 * mm, 13 * mm, 26 * mm, 26 * mm]))
    story += [Paragraph("Checking this evidence", _H2), Paragraph(
        f"{_escape(document['limits'])} License book {document['ledger']['book_hash']}; latest close root"
        f" {document['ledger']['close_root'] or '-'}. Content hash (SHA-256 of the canonical evidence) {content_hash}."
        f" Signed with Ed25519 key {key_fingerprint}; signature {signature}. Check the JSON file with"
        " <font face='Courier'>learnright evidence verify FILE --public-key KEY.pem</font>.", _SMALL)]
    out = io.BytesIO()
    pdf = SimpleDocTemplate(out, pagesize=A4, leftMargin=14 * mm, rightMargin=14 * mm, topMargin=16 * mm,
                            bottomMargin=16 * mm, title=f"Licensed-model evidence {document['model_id']}",
                            author="Learnright", creator="Learnright", invariant=True)
    pdf.build(story)
    return out.getvalue()
