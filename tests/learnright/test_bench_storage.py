"""A small run of the storage benchmark: its line and its report section have their shape."""

import re

import pytest

from ground.settings import Settings
from learnright import bench_storage
from learnright.bench import SUITES


@pytest.mark.broker
def test_storage_bench_prints_bytes_per_event_and_writes_its_breakdown(kafka_bootstrap, tmp_path):
    settings = Settings()
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": kafka_bootstrap})})
    report = tmp_path / "benchmarks.md"
    report.write_text("# Benchmarks\n\nby hand\n")
    lines = []
    figures = bench_storage.run(settings, workdir=tmp_path, rounds=1, events=500, report=report, echo=lines.append)
    assert [f.name for f in figures] == ["storage"]
    shape = r"bench storage ratio=\d+\.\d\d rate=\d+/s bytes_per_event=\d+\.\d used_bytes_per_event=\d+\.\d"
    assert any(re.fullmatch(shape, line) for line in lines), lines
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nby hand\n\n<!-- bench:storage begin -->\n## Storage")
    assert "| `accruals` (" in text and "| `usage_events` (500 rows) |" in text and "| file on disk |" in text
    assert not list(tmp_path.glob("storage-*.duckdb")), "the measured ledger is removed"


def test_make_bench_runs_the_storage_benchmark():
    assert "storage" in SUITES
