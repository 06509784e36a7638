"""A small run of the consumer benchmark so it keeps working; it asserts the lines' shape, never a time."""

import re

import pytest

from ground.settings import Settings
from learnright.bench_consumer import backlog_records, event_number, run, templates
from schemas import default_catalog
from schemas.wire import decode_canonical


def test_the_backlog_is_distinct_events_that_decode_as_the_sdk_wrote_them():
    pool = templates(count=8)
    topics = Settings().kafka.topics
    records = list(backlog_records(pool, topics, 0, 20))
    catalog = default_catalog()
    ids = []
    for number, (topic, key, value) in enumerate(records):
        decoded = decode_canonical(value, catalog)
        ids.append(decoded.record["event_id"])
        assert event_number(decoded.record["event_id"]) == number
        assert key.endswith(decoded.record["event_id"].encode()) and topic == topics.for_event(decoded.name)
    assert len(set(ids)) == 20


@pytest.mark.broker
def test_consumer_bench_smoke_prints_its_three_lines_and_rewrites_its_section(kafka_bootstrap, tmp_path):
    settings = Settings()
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": kafka_bootstrap})})
    report = tmp_path / "benchmarks.md"
    report.write_text("# Benchmarks\n\nby hand\n")
    lines: list[str] = []
    figures = run(settings, workdir=tmp_path, rounds=1, events=600, report=report, echo=lines.append)
    assert [figure.name for figure in figures] == ["consumer-rss", "ingest-with-auditor", "latency"]
    shapes = [
        r"bench consumer-rss ratio=\d+\.\d\d rate=\d+/s rss_mb=\d+ events=600",
        r"bench ingest-with-auditor ratio=\d+\.\d\d rate=\d+/s without=\d+/s queries=\d+ timeouts=\d+",
        r"bench latency ratio=\d+\.\d\d rate=\d+/s p99_ms=-?\d+ p50_ms=-?\d+",
    ]
    for shape in shapes:
        assert any(re.fullmatch(shape, line) for line in lines), (shape, lines)
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nby hand\n")
    assert "<!-- bench:consumer begin -->" in text and "| consumer-rss" in text and "| latency" in text
