"""`learnright emit FILE`, as a platform's operator runs it, against the real broker."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from learnright.broker import free_port
from learnright.cli import app
from schemas.registry import SchemaRegistry
from tests.producers.conftest import read_topics
from tests.schemas.registry_stub import RegistryStub

pytestmark = pytest.mark.broker

GOOD = {"type": "training", "event_id": "e1", "platform_id": "orbit", "model_id": "orbit-7b", "run_id": "run-42",
        "source_id": "src-novels", "units": 2100000, "unit": "tokens", "occurred_at": "2026-10-03T12:00:00Z"}
INFERENCE = {"type": "inference", "event_id": "e2", "platform_id": "orbit", "model_id": "orbit-7b",
             "request_id": "req-9", "occurred_at": "2026-10-03T12:00:01+00:00",
             "attributions": [{"source_id": "src-novels", "weight": 0.7}, {"source_id": "src-photos", "weight": "0.3"}]}
REVENUE = {"type": "revenue", "event_id": "e3", "platform_id": "orbit", "model_id": "orbit-7b",
           "period": "2026-09", "revenue": 1843.20, "currency": "USD", "occurred_at": "2026-10-01T00:00:00Z"}

# line -> (row, what the rejection must say)
MIXED = {
    1: (GOOD, None),
    2: (INFERENCE, None),
    3: (dict(GOOD, event_id="bad-units", units=-3), "units must be > 0 (got -3) in line 3 of usage.jsonl"),
    4: (REVENUE, None),
    5: ({k: v for k, v in GOOD.items() if k != "run_id"} | {"event_id": "no-run"},
        "run_id must be a non-empty string (got None) in line 5 of usage.jsonl"),
    6: (dict(REVENUE, event_id="bad-ccy", currency="EURO"),
        "currency is not an ISO 4217 currency code (got 'EURO') in line 6 of usage.jsonl"),
    7: (dict(GOOD, event_id="naive", occurred_at="2026-10-03T12:00:00"),
        "occurred_at must be timezone-aware (UTC); naive timestamps are refused"),
    8: (dict(INFERENCE, event_id="heavy", attributions=[{"source_id": "src-novels", "weight": "1.2"}]),
        "attributions[0].weight must be in (0, 1] (got Decimal('1.2')) in line 8 of usage.jsonl"),
    9: (dict(GOOD, event_id="typo", type="trainig"), "type must be one of"),
}


def write_jsonl(path: Path, rows) -> Path:
    # Numbers stay as written: the reader parses them as exact decimals.
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def run(make_settings):
    """``run(*args)``: invoke the CLI with this test's broker and topics; returns (result, settings)."""
    settings = make_settings()

    def invoke(*args: str, bootstrap: str | None = None):
        env = {"LEARNRIGHT_KAFKA__BOOTSTRAP_SERVERS": bootstrap or settings.kafka.bootstrap_servers,
               "LEARNRIGHT_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix}
        return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)

    invoke.settings = settings
    invoke.landed = lambda: [r.record["event_id"] for r in
                             read_topics(settings.kafka.bootstrap_servers, settings.kafka.topics.usage)]
    return invoke


def test_sends_good_rows_reports_each_bad_one_by_line_and_field(run, tmp_path):
    path = write_jsonl(tmp_path / "usage.jsonl", [row for row, _ in MIXED.values()])

    result = run("emit", str(path))

    assert result.exit_code == 1, "a rejected row makes the command fail"
    for line, (_, message) in MIXED.items():
        if message:
            assert message in result.stderr, f"line {line} not reported as {message!r}:\n{result.stderr}"
            assert f"line {line} of usage.jsonl" in result.stderr
    reported = {int(m) for m in re.findall(r"in line (\d+) of usage.jsonl", result.stderr)}
    assert reported == {3, 5, 6, 7, 8, 9}, "good rows are not reported; a row may have several problems"
    assert "3 sent, 6 rejected (9 rows, 3 valid)" in result.stdout
    assert sorted(run.landed()) == ["e1", "e2", "e3"]


def test_all_or_nothing_sends_nothing_when_a_row_is_bad(run, tmp_path):
    path = write_jsonl(tmp_path / "usage.jsonl", [GOOD, dict(GOOD, event_id="bad", units=0), INFERENCE])

    result = run("emit", "--all-or-nothing", str(path))

    assert result.exit_code == 1
    assert "units must be > 0 (got 0) in line 2 of usage.jsonl" in result.stderr
    assert "0 sent, 1 rejected (3 rows, 2 valid) (--all-or-nothing: nothing sent" in result.stdout
    assert run.landed() == []


def test_all_or_nothing_sends_everything_when_every_row_is_good(run, tmp_path):
    path = write_jsonl(tmp_path / "usage.jsonl", [GOOD, INFERENCE, REVENUE])

    result = run("emit", "--all-or-nothing", str(path))

    assert result.exit_code == 0, result.stderr
    assert "3 sent, 0 rejected" in result.stdout
    assert sorted(run.landed()) == ["e1", "e2", "e3"]


def test_dry_run_validates_without_connecting(run, tmp_path):
    """Pointed at a port nobody listens on: a dry run still works, and sends nothing."""
    path = write_jsonl(tmp_path / "usage.jsonl", [GOOD, dict(GOOD, event_id="bad", units=-1)])
    nowhere = f"127.0.0.1:{free_port()}"

    result = run("emit", "--dry-run", str(path), bootstrap=nowhere)

    assert result.exit_code == 1
    assert "units must be > 0 (got -1) in line 2" in result.stderr
    assert "0 sent, 1 rejected (2 rows, 1 valid) (dry run: nothing sent)" in result.stdout
    clean = write_jsonl(tmp_path / "clean.jsonl", [GOOD])
    assert run("emit", "--dry-run", str(clean), bootstrap=nowhere).exit_code == 0
    assert run.landed() == []


def test_implausible_rows_are_refused_by_the_dry_run_with_their_line(run, tmp_path):
    far = dict(GOOD, event_id="far", occurred_at="9999-12-31T00:00:00Z")
    twice = dict(INFERENCE, event_id="twice", attributions=[{"source_id": "src-novels", "weight": "0.1"}] * 2)
    many = dict(INFERENCE, event_id="many", attributions=[{"source_id": f"s{n}", "weight": "0.000001"} for n in range(257)])
    path = write_jsonl(tmp_path / "usage.jsonl", [GOOD, far, twice, many])

    result = run("emit", "--dry-run", str(path), bootstrap=f"127.0.0.1:{free_port()}")

    assert result.exit_code == 1
    assert re.search(r"occurred_at is more than 3600 s after the event was reported at .*"
                     r" \(got '9999-12-31T00:00:00\+00:00'\) in line 2 of usage.jsonl", result.stderr), result.stderr
    assert ("attributions[1].source_id repeats attributions[0].source_id; an answer names each source once"
            " (got 'src-novels') in line 3 of usage.jsonl") in result.stderr
    assert ("attributions must name at most 256 sources in one answer (got '257 sources') in line 4 of usage.jsonl"
            in result.stderr)
    assert "0 sent, 3 rejected (4 rows, 1 valid)" in result.stdout


def test_csv_rows_are_numbered_as_the_file_shows_them(run, tmp_path):
    path = tmp_path / "usage.csv"
    path.write_text(
        "type,event_id,platform_id,model_id,run_id,request_id,source_id,units,unit,attributions,occurred_at\n"
        "training,c1,orbit,orbit-7b,run-1,,src-novels,1200,tokens,,2026-10-03T12:00:00Z\n"
        "training,c2,orbit,orbit-7b,run-1,,src-novels,twelve,tokens,,2026-10-03T12:00:00Z\n"
        "inference,c3,orbit,orbit-7b,,req-1,,,,src-novels:0.6;src-photos:0.4,2026-10-03T12:00:00Z\n"
        "inference,c4,orbit,orbit-7b,,req-2,,,,src-novels:0.6;src-photos:0.5,2026-10-03T12:00:00Z\n"
    )

    result = run("emit", str(path))

    assert result.exit_code == 1
    assert "units must be an integer (got 'twelve') in line 3 of usage.csv" in result.stderr
    assert "attributions weights must sum to at most 1 (got '1.1') in line 5 of usage.csv" in result.stderr
    assert "2 sent, 2 rejected" in result.stdout
    assert sorted(run.landed()) == ["c1", "c3"]


def test_a_large_file_shows_progress_and_every_row_arrives_once(run, tmp_path):
    rows = [dict(GOOD, event_id=f"big-{n}", units=n + 1) for n in range(12_000)]
    path = write_jsonl(tmp_path / "big.jsonl", rows)

    result = run("emit", "--progress", str(path))

    assert result.exit_code == 0, result.stderr
    assert "12000/12000" in result.stderr, "tqdm reports rows done of rows in the file"
    assert "12000 sent, 0 rejected" in result.stdout
    counts = Counter(run.landed())
    assert len(counts) == 12_000 and set(counts.values()) == {1}


def test_a_configured_schema_registry_switches_to_confluent_framing(run, tmp_path):
    path = write_jsonl(tmp_path / "usage.jsonl", [GOOD, INFERENCE])
    settings = run.settings
    with RegistryStub() as stub:
        result = run("emit", "--schema-registry-url", stub.url, str(path))
        assert result.exit_code == 0, result.stderr
        with SchemaRegistry(stub.url) as registry:
            records = read_topics(settings.kafka.bootstrap_servers, settings.kafka.topics.usage, registry)
    assert sorted(r.record["event_id"] for r in records) == ["e1", "e2"]
    assert all(r.value[:1] == b"\x00" for r in records)


def test_bytes_that_are_not_utf8_are_a_bad_row_with_its_line(run, tmp_path):
    jsonl = tmp_path / "usage.jsonl"
    jsonl.write_bytes(json.dumps(GOOD).encode() + b"\n"
                      + json.dumps(dict(GOOD, event_id="x")).encode().replace(b"orbit-7b", b"caf\xe9") + b"\n"
                      + json.dumps(dict(GOOD, event_id="e9")).encode() + b"\n")
    result = run("emit", str(jsonl))
    assert result.exit_code == 1
    assert "row is not UTF-8 text (save the file as UTF-8) (got 'byte 0xe9 at column" in result.stderr
    assert "in line 2 of usage.jsonl" in result.stderr
    assert "2 sent, 1 rejected (3 rows, 2 valid)" in result.stdout
    latin = tmp_path / "usage.csv"
    latin.write_bytes(
        b"type,event_id,platform_id,model_id,run_id,source_id,units,unit,occurred_at\n"
        b"training,l1,orbit,caf\xe9,run-1,src-novels,1200,tokens,2026-10-03T12:00:00Z\n"
        b"training,l2,orbit,orbit-7b,run-1,src-novels,1200,tokens,2026-10-03T12:00:00Z\n")
    result = run("emit", str(latin))
    assert result.exit_code == 1
    assert "byte 0xe9 at column 4" in result.stderr and "in line 2 of usage.csv" in result.stderr
    assert "1 sent, 1 rejected (2 rows, 1 valid)" in result.stdout
    assert sorted(run.landed()) == ["e1", "e9", "l2"]


def test_a_row_past_the_record_size_limit_is_refused_by_the_dry_run_too(run, tmp_path):
    path = write_jsonl(tmp_path / "usage.jsonl", [GOOD, dict(GOOD, event_id="huge", run_id="r" * 5_000_000)])
    for args in (("--dry-run",), ()):
        result = run("emit", *args, str(path))
        assert result.exit_code == 1, result.output
        assert re.search(r"event is larger than the limit of 1000000 bytes a Kafka record may carry; split it into"
                         r" smaller events \(got '500\d{4} bytes encoded'\) in line 2 of usage.jsonl", result.stderr)
    assert "1 sent, 1 rejected (2 rows, 1 valid)" in result.stdout
    assert run.landed() == ["e1"]


def test_a_broker_that_cannot_be_reached_still_ends_with_the_count_line_and_exit_2(run, tmp_path):
    path = write_jsonl(tmp_path / "usage.jsonl", [GOOD])
    nowhere = f"127.0.0.1:{free_port()}"
    result = run("emit", str(path), bootstrap=nowhere)
    assert result.exit_code == 2, "could not run: not the exit code of rejected rows"
    assert re.search(r"usage.jsonl: 0 sent, 0 rejected \(\d rows, \d valid\)", result.stdout)
    assert f"error: cannot reach Kafka at {nowhere}" in result.stderr


EVENTS_DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"
README = EVENTS_DOC.parents[1] / "README.md"


def test_the_documented_rows_of_each_event_type_are_sent_as_written(run, tmp_path):
    """docs/events.md "JSON Lines rows", copied into a file byte for byte: every row is valid and arrives."""
    section = EVENTS_DOC.read_text().split("### JSON Lines rows", 1)[1]
    rows = re.search(r"```jsonl\n(.*?)```", section, re.S).group(1)
    assert {json.loads(line)["type"] for line in rows.splitlines()} == {"training", "inference", "revenue", "correction"}
    readme_rows = re.search(r"```jsonl\n(.*?)```", README.read_text(), re.S).group(1)
    assert set(readme_rows.splitlines()) <= set(rows.splitlines()), "the README's row is one of these, unchanged"
    path = tmp_path / "usage.jsonl"
    path.write_text(rows)

    result = run("emit", str(path))

    assert result.exit_code == 0, result.stderr
    assert "5 sent, 0 rejected (5 rows, 5 valid)" in result.stdout
    landed = {r.record["event_id"]: r for r in read_topics(run.settings.kafka.bootstrap_servers,
                                                              run.settings.kafka.topics.usage)}
    assert {k: r.name for k, r in landed.items()} == {
        "e1": "TrainingUsage", "e2": "InferenceUsage", "e3": "RevenueReport", "e4": "UsageCorrection",
        "e5": "UsageCorrection"}
    assert str(landed["e3"].record["revenue"]) == "1843.200000"  # the JSON number, exact
    assert [str(a["weight"]) for a in landed["e2"].record["attributions"]] == ["0.700000", "0.300000"]
