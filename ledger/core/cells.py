"""Text cells that spreadsheets open safely: the OWASP rule against formula injection.

A platform controls ids such as ``model_id``; a CSV or TSV cell starting with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return is run as a formula by Excel, LibreOffice
and Google Sheets (``=HYPERLINK(...)``, ``+cmd|' /C calc'!A0``). Such a text cell gets a
leading apostrophe, which spreadsheets show as text and hide. Numbers are never passed
through here: an amount like ``-3.50`` is written as it is, so sums still work.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str) -> str:
    """``value`` as a spreadsheet cell that cannot start a formula.

    Guarantees: a value that does not start with one of :data:`FORMULA_STARTS` is
    returned unchanged; one that does is returned with a single ``'`` in front.
    """
    return "'" + value if value.startswith(FORMULA_STARTS) else value
