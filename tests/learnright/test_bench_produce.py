"""A tiny run of `make bench`'s produce benchmark: it prints its four lines and rewrites only its section."""

import re

import pytest

from ground.settings import Settings
from learnright.bench_produce import run
from learnright.bench_report import markers


@pytest.mark.broker
def test_bench_produce_smoke_prints_one_line_per_producer_and_rewrites_its_section(kafka_bootstrap, tmp_path):
    settings = Settings()
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={
        "bootstrap_servers": kafka_bootstrap, "partitions": 2})})
    report = tmp_path / "benchmarks.md"
    begin, end = markers("produce")
    report.write_text(f"# Benchmarks\n\nby hand\n\n{begin}\nold figures\n{end}\n\nprofile by hand\n")
    workdir = tmp_path / "work"
    workdir.mkdir()
    lines = []
    figures = run(settings, workdir=workdir, rounds=2, events=300, report=report, echo=lines.append)
    assert [f.name for f in figures] == ["produce-plain", "produce", "produce-per-event", "emit"]
    assert "bench produce-plain ratio=1.00 rate=" in "\n".join(lines)
    for name in ("produce-plain", "produce", "produce-per-event", "emit"):
        assert any(re.fullmatch(rf"bench {name} ratio=\d+\.\d\d rate=\d+/s", line) for line in lines), lines
    text = report.read_text()
    assert "old figures" not in text and text.startswith("# Benchmarks\n\nby hand\n\n")
    assert text.endswith(f"{end}\n\nprofile by hand\n")
    assert "## Producing" in text and "| produce-per-event |" in text and "worst" in text
