"""A stored statement document is ``json.dumps(indent=2, sort_keys=True)`` byte for byte, however it is rendered.

:func:`ledger.core.statements.render_document` renders through ``json``'s C encoder for
speed (issue 18); these tests hold it to the pure-Python output it replaced, on the golden
statements and on any JSON-shaped document, strings with quotes, newlines, braces and
non-ASCII included.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from ledger.core.statements import render_document

GOLDEN = Path(__file__).parents[1] / "golden"


def reference(document: object) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("20*.json")), ids=lambda p: p.name)
def test_golden_statements_render_to_their_stored_bytes(path):
    assert render_document(json.loads(path.read_bytes())) == path.read_bytes()


def test_a_string_that_looks_like_the_boundary_between_two_lines_stays_a_string():
    lines = [{"description": "},\n      {", "amount": "1"}, {"description": '"}, {"', "amount": "2"}]
    document = {"lines": lines, "empty": [], "none": {}, "holder": {"name": "Ünïcode \u2028"}}
    assert render_document(document) == reference(document)


SCALARS = st.one_of(st.text(), st.integers(), st.booleans(), st.none())
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=6), DOCUMENTS, max_size=5))
def test_any_document_renders_as_json_dumps_with_indent_does(document):
    assert render_document(document) == reference(document)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=6), SCALARS, min_size=1, max_size=5), max_size=5))
def test_lists_of_flat_objects_render_as_json_dumps_with_indent_does(lines):
    document = {"lines": lines}
    assert render_document(document) == reference(document)
