"""Golden: the AI Act training-content summary draft of every model of the demo.

The demo's book (examples/licenses.toml) and a month of its synthetic usage (seed 7,
300 events from orbit and nimbus, April 2026), booked without a broker as the consumer
books it. For each of the four demo models the Markdown and JSON drafts are pinned in
tests/ledger/golden/ai_act/. Set LEARNRIGHT_UPDATE_GOLDEN=1 to rewrite them after a
deliberate change.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from consumers.batch import RawRecord, build_batch
from learnright.demo import LICENSES, PLATFORMS
from ledger.core.ai_act import render_json, render_markdown
from ledger.services.provenance import model_summary
from ledger.storage.store import Ledger
from producers.encoding import encode_event
from producers.synthetic import month_usage
from schemas import default_catalog
from tests.ledger.services.test_consent import revoked_ledger  # noqa: F401 - a fixture

GOLDEN = Path(__file__).parents[1] / "golden" / "ai_act"
AS_OF = datetime(2026, 5, 1, tzinfo=timezone.utc)
MODELS = [(platform, f"{platform}-model-{n}") for platform in PLATFORMS for n in (1, 2)]


@pytest.fixture(scope="module")
def demo_ledger(tmp_path_factory):
    catalog = default_catalog()
    with Ledger.open(tmp_path_factory.mktemp("demo") / "ledger.duckdb") as ledger:
        book, _ = ledger.apply_licenses(LICENSES.read_text(), "examples/licenses.toml")
        usage = month_usage(
            period="2026-04", platforms=PLATFORMS, events=300,
            training_units={v.source_id: v.training.unit for v in book.versions if v.training is not None},
            inference_sources=sorted({v.source_id for v in book.versions if v.inference is not None}))
        records = [RawRecord(topic="usage", partition=0, offset=n, timestamp=int(e.occurred_at.timestamp() * 1000),
                             key=None, value=encode_event(e, catalog)) for n, e in enumerate(usage)]
        batch = build_batch(records, ledger.load_book(), ledger, catalog)
        assert batch.quarantined == ()
        ledger.append_batch(batch)
        yield ledger


@pytest.mark.parametrize("platform, model", MODELS)
def test_the_ai_act_summary_draft_of_each_demo_model_is_pinned(demo_ledger, platform, model):
    summary = model_summary(demo_ledger, platform_id=platform, model_id=model, as_of=AS_OF)
    assert summary["draft"] is True and summary["data_sources"]["licensed_from_rightsholders"]["sources"]
    for suffix, body in (("md", render_markdown(summary)), ("json", render_json(summary))):
        golden = GOLDEN / f"{platform}_{model}.{suffix}"
        if os.environ.get("LEARNRIGHT_UPDATE_GOLDEN"):
            golden.write_bytes(body)
        assert body == golden.read_bytes(), f"{golden.name} drifted; LEARNRIGHT_UPDATE_GOLDEN=1 rewrites it"
    markdown = render_markdown(summary).decode()
    assert markdown.startswith(f"# Public summary of training content: {model} (DRAFT)")
    assert markdown.count("**GAP (provider to complete):**") == 11  # every part the ledger cannot know


def test_the_summary_says_how_opt_outs_were_honoured(revoked_ledger):
    ledger, _ = revoked_ledger
    summary = model_summary(ledger, platform_id="orbit", model_id="orbit-base", as_of=datetime(2026, 5, 1, tzinfo=timezone.utc))
    opt_outs = summary["data_processing"]["opt_outs"]
    (revocation,) = opt_outs["revocations_in_force"]
    assert (revocation["source_id"], revocation["evidence_url"]) == ("src-novels", "https://ann.example/rsl.xml")
    assert [(u["source_id"], u["kind"], u["units"], u["events"]) for u in opt_outs["usage_after_opt_out"]] == [
        ("src-novels", "inference", "0.5", 1), ("src-novels", "training", "900000", 1)]
    ranked = summary["data_sources"]["licensed_from_rightsholders"]["sources"]
    assert [(s["source_id"], s["share_percent"]) for s in ranked] == [("src-novels", "75.00"), ("src-poems", "25.00")]
    assert "| src-novels | training | 900000 | tokens | 1 | revoked |" in render_markdown(summary).decode()
