"""The files of a closed month, for holders and platforms whose ids hold dots, slashes and the like.

The book below has one source and license per holder; every holder's source is used once
on every platform in April 2026:

    holders    acme.one, acme.two (``Path.with_suffix`` gave both 2026-04_acme.json), ../up
    platforms  orbit/eu (a slash: the usage report's path had a directory in it), orbit
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ledger.core.pricing import price
from ledger.core.records import EventRow, IngestBatch
from ledger.core.usage import TrainingUsage
from ledger.errors import FileNameClashError
from ledger.services.close import close_period, write_period_files
from ledger.storage.store import Ledger
from tests.ledger.keys import SIGNER

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
HOLDERS = ("acme.one", "acme.two", "../up")
PLATFORMS = ("orbit/eu", "orbit")


def book_text(holders: tuple[str, ...]) -> str:
    """One USD source and license (1 per item) per holder; ids written as TOML strings."""
    parts = ["format = 1"]
    for n, holder in enumerate(holders):
        quoted = json.dumps(holder, ensure_ascii=False)
        parts.append(f'[[holders]]\nid = {quoted}\nname = "Holder {n}"\n'
                     f'[[sources]]\nid = "src-{n}"\nholder = {quoted}\n'
                     f'[[licenses]]\nid = "lic-{n}"\nsource = "src-{n}"\neffective_from = 2026-01-01T00:00:00Z\n'
                     f'currency = "USD"\ntraining = {{ rate = 1, per = 1, unit = "items" }}\n')
    return "\n".join(parts)


def closed_ledger(path: Path, holders: tuple[str, ...] = HOLDERS, platforms: tuple[str, ...] = PLATFORMS) -> Path:
    """A ledger with ``holders`` x ``platforms`` usage in April 2026, closed and signed."""
    with Ledger.open(path) as ledger:
        ledger.apply_licenses(book_text(holders), "hostile.toml")
        book = ledger.load_book()
        events, accruals = [], []
        for n in range(len(holders)):
            for platform in platforms:
                when = datetime(2026, 4, 10, tzinfo=timezone.utc)
                event = TrainingUsage(event_id=f"e{len(events)}", platform_id=platform, model_id="m", run_id="r",
                                      source_id=f"src-{n}", units=10 + n, unit="items", occurred_at=when)
                accruals.extend(replace(a, stream="t/0", position=len(events)) for a in price(event, book))
                events.append(EventRow(platform_id=platform, event_id=event.event_id, event_type="TrainingUsage",
                                       content_hash=f"h{len(events)}", model_id="m", occurred_at=when,
                                       period="2026-04", topic="t", partition=0, offset=len(events)))
        ledger.append_batch(IngestBatch(events=tuple(events), accruals=tuple(accruals),
                                        offsets={("t", 0): len(events)}))
        close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
    return path


def test_every_holder_and_platform_gets_its_own_files_inside_the_directory(tmp_path):
    path = closed_ledger(tmp_path / "ledger.duckdb")
    out = tmp_path / "files" / "out"
    with Ledger.open(path) as ledger:
        files = write_period_files(ledger, "2026-04", out)
    # Exactly the files written are returned, each one once, all directly in `out` and nowhere else.
    assert sorted(files) == sorted(p for p in (tmp_path / "files").rglob("*") if p.is_file())
    assert all(p.parent == out for p in files)
    assert len(set(files)) == 3 * len(HOLDERS) + len(PLATFORMS)
    assert {p.name for p in files if p.suffix == ".json"} == {
        "2026-04_acme.one_USD.json", "2026-04_acme.two_USD.json", "2026-04_%2E.%2Fup_USD.json"}
    assert {p.name for p in files if p.name.endswith(".dsr.tsv")} == {
        "2026-04_orbit%2Feu.dsr.tsv", "2026-04_orbit.dsr.tsv"}
    for holder, source, name in (("acme.one", "src-0", "2026-04_acme.one_USD"),
                                 ("acme.two", "src-1", "2026-04_acme.two_USD")):
        assert json.loads((out / f"{name}.json").read_text())["statement"]["holder"]["id"] == holder
        assert (out / f"{name}.pdf").read_bytes().startswith(b"%PDF")
        assert {row.split(",")[2] for row in (out / f"{name}.csv").read_text().splitlines()[1:3]} == {source}
    assert (out / "2026-04_orbit%2Feu.dsr.tsv").read_text().splitlines()[1].endswith("\torbit/eu")


def test_holders_whose_names_differ_only_in_case_are_refused_before_any_file_is_written(tmp_path):
    path = closed_ledger(tmp_path / "ledger.duckdb", holders=("Acme", "acme"), platforms=("orbit",))
    out = tmp_path / "out"
    with Ledger.open(path) as ledger, pytest.raises(FileNameClashError) as refused:
        write_period_files(ledger, "2026-04", out)
    message = str(refused.value)
    assert "holder 'Acme'" in message and "holder 'acme'" in message and "differ only in case" in message
    assert "nothing was written" in message
    assert not out.exists()
