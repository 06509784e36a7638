"""A small run of `make bench` so the benchmark keeps working; it asserts shape, not speed."""

import re

import pytest

from learnright.bench import run_bench
from ground.settings import Settings

pytestmark = pytest.mark.broker


def test_bench_smoke_prints_ratio_lines_and_writes_the_report(kafka_bootstrap, tmp_path):
    settings = Settings()
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": kafka_bootstrap})})
    lines = []
    result = run_bench(settings, events=2_000, rounds=1, report=tmp_path / "benchmarks.md", echo=lines.append)
    assert result.events == 2_000 and result.ratio > 0
    assert any(re.fullmatch(r"bench ingest ratio=\d+\.\d\d rate=\d+/s", line) for line in lines), lines
    assert any(line.startswith("bench raw-consume ratio=1.00") for line in lines)
    assert any(re.fullmatch(r"bench raw-consume-whole-fetches ratio=\d+\.\d\d rate=\d+/s", line) for line in lines), lines
    report = (tmp_path / "benchmarks.md").read_text()
    assert "| ingest" in report and "| raw-consume-whole-fetches" in report
