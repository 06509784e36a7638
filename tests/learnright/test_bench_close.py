"""A small run of the close benchmark so it keeps working; it asserts the lines' shape, never a speed."""

import re

import pytest

from ground.errors import ConfigError
from ground.settings import Settings
from learnright.bench_close import FULL, LARGE, Size, run, size_for


def test_close_bench_smoke_prints_its_line_and_writes_only_its_section(tmp_path):
    report = tmp_path / "benchmarks.md"
    report.write_text("# Benchmarks\n\nwritten by hand\n")
    lines = []
    figures = run(Settings(), workdir=tmp_path, rounds=1, events=600, report=report, echo=lines.append)
    assert [figure.name for figure in figures] == ["close"]
    assert any(re.fullmatch(r"bench close ratio=\d+\.\d\d rate=\d+/s statements=12 seconds=\d+\.\d\d rss_mb=\d+ book_seconds=\d+\.\d\d", line)
               for line in lines), lines
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nwritten by hand\n")
    assert "<!-- bench:close begin -->" in text and "| close | 12 |" in text


def test_the_close_bench_sizes_come_from_the_smoke_count_or_the_environment():
    assert size_for(600) == Size(holders=6, events=600)
    assert size_for(None, {}) == FULL and FULL.statements == 4_000
    assert size_for(None, {"LEARNRIGHT_BENCH_CLOSE_SIZE": "large"}) == LARGE and LARGE.statements == 100_000
    assert size_for(None, {"LEARNRIGHT_BENCH_CLOSE_SIZE": "300x5000"}) == Size(holders=300, events=5_000)
    with pytest.raises(ConfigError, match=r"LEARNRIGHT_BENCH_CLOSE_SIZE='huge' is not a size"):
        size_for(None, {"LEARNRIGHT_BENCH_CLOSE_SIZE": "huge"})
