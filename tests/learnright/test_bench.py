"""A small run of `make bench` so the benchmark keeps working; it asserts shape, not speed."""

import re

import pytest

from ground.errors import ConfigError
from learnright.bench import COMPARE_HEADING, BenchResult, export_revision, run_bench, run_suites, write_report
from learnright.bench_report import Figure, markers, write_section
from ground.settings import Settings


@pytest.mark.broker
def test_bench_smoke_prints_ratio_lines_and_writes_the_report(kafka_bootstrap, tmp_path):
    settings = Settings()
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": kafka_bootstrap})})
    lines = []
    result = run_bench(settings, events=2_000, rounds=1, report=tmp_path / "benchmarks.md", echo=lines.append)
    assert result.events == 2_000 and result.ratio > 0
    assert any(re.fullmatch(r"bench ingest ratio=\d+\.\d\d rate=\d+/s cpu_us_per_event=\d+\.\d", line)
               for line in lines), lines
    assert any(line.startswith("bench raw-consume ratio=1.00") for line in lines)
    assert any(re.fullmatch(r"bench raw-consume-whole-fetches ratio=\d+\.\d\d rate=\d+/s", line) for line in lines), lines
    assert any(re.fullmatch(r"bench duckdb-append ratio=\d+\.\d\d rate=\d+/s cpu_us_per_event=\d+\.\d", line)
               for line in lines), lines
    report = (tmp_path / "benchmarks.md").read_text()
    assert "| ingest" in report and "| raw-consume-whole-fetches" in report and "| duckdb-append" in report
    assert re.search(r"The pipeline's process used [\d,]+\.\d us of CPU per event", report)
    assert re.search(r"DuckDB alone appended ingest's rows at [\d,]+/s .* ingest ran at \d+\.\d\d of that rate", report)


def test_bench_against_an_unknown_revision_is_refused_before_anything_is_exported(tmp_path):
    dest = tmp_path / "revision"
    with pytest.raises(ConfigError, match=r"unknown revision 'no-such-rev-4f1c'"):
        export_revision("no-such-rev-4f1c", dest, cache_dir=tmp_path / "cache", echo=lambda line: None)
    with pytest.raises(ConfigError, match=r"'--output=x' is not a revision"):
        export_revision("--output=x", dest, cache_dir=tmp_path / "cache", echo=lambda line: None)
    assert not dest.exists()


def test_make_bench_rewrites_only_the_ingest_section_and_keeps_the_rows_of_bench_against(tmp_path):
    report = tmp_path / "benchmarks.md"
    rows = f"{COMPARE_HEADING}\n\n| written (UTC) | REV |\n| --- | --- |\n| 2026-11-25 10:00 | HEAD~1 |\n"
    begin, end = markers("ingest")
    report.write_text(f"# Benchmarks\n\nby hand\n\n{begin}\nold figures\n{end}\n\n{rows}")
    results = tuple(BenchResult(name=name, events=10, seconds=1.0, baseline_seconds=1.0)
                    for name in ("raw-consume", "raw-consume-whole-fetches", "ingest"))
    write_report(report, results, rounds=1)
    text = report.read_text()
    assert "old figures" not in text and "| ingest" in text and text.startswith("# Benchmarks\n\nby hand\n\n")
    assert text.endswith(rows)


def test_an_unknown_benchmark_is_refused_by_name_before_any_broker_starts():
    with pytest.raises(ConfigError, match=r"unknown benchmark\(s\) nope; choose from ingest, close"):
        run_suites(Settings(), suites=("ingest", "nope"), events=10, rounds=1, report=None)


def test_a_run_of_only_the_close_benchmark_starts_no_broker(tmp_path, monkeypatch):
    import learnright.bench as bench

    def no_broker(*_args, **_kwargs):
        raise AssertionError("the close benchmark never talks to Kafka, so no broker is started for it")

    monkeypatch.setattr(bench, "running_broker", no_broker)
    lines = []
    figures = run_suites(Settings(), suites=("close",), events=600, rounds=1, report=None, echo=lines.append)
    assert [figure.name for figure in figures] == ["close", "close-floor"]
    assert any(line.startswith("bench close ratio=") for line in lines), lines


def test_a_figure_line_carries_its_extra_measures_in_order_and_a_section_is_replaced_in_place(tmp_path):
    figure = Figure(name="close", ratio=1.234, rate=812.4, extra=(("rss_mb", "412"), ("seconds", "4.93")))
    assert figure.line() == "bench close ratio=1.23 rate=812/s rss_mb=412 seconds=4.93"
    report = tmp_path / "b.md"
    write_section(report, "close", "first")
    write_section(report, "produce", "p")
    write_section(report, "close", "second")
    assert report.read_text() == ("<!-- bench:close begin -->\nsecond\n<!-- bench:close end -->\n\n"
                                  "<!-- bench:produce begin -->\np\n<!-- bench:produce end -->\n")


@pytest.mark.broker
@pytest.mark.postgres
def test_bench_scale_smoke_prints_the_three_variants_and_rewrites_only_its_part_of_the_report(
        kafka_bootstrap, postgres_dsn, tmp_path):
    from learnright.bench_scale import BEGIN, END, run_scale

    settings = Settings()
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": kafka_bootstrap})})
    report = tmp_path / "scaling.md"
    report.write_text(f"# Scaling\n\nplan\n\n{BEGIN}\nold figures\n{END}\n\nmore plan\n")
    lines = []
    results = run_scale(settings, events=300, rounds=1, report=report, echo=lines.append, postgres_dsn=postgres_dsn)
    assert [r.name for r in results] == ["ingest-file", "ingest-lake-1-writer", "ingest-lake-2-writers"]
    for name in ("ingest-file", "ingest-lake-1-writer", "ingest-lake-2-writers"):
        assert any(re.fullmatch(rf"bench {name} ratio=\d+\.\d\d rate=\d+/s", line) for line in lines), lines
    text = report.read_text()
    assert "old figures" not in text and "| ingest-lake-2-writers | 300 |" in text
    assert text.startswith("# Scaling\n\nplan\n\n") and text.endswith(f"{END}\n\nmore plan\n")
