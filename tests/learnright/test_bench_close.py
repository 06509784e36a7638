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
    assert [figure.name for figure in figures] == ["close", "close-floor"]
    assert any(re.fullmatch(r"bench close ratio=\d+\.\d\d rate=\d+/s statements=12 seconds=\d+\.\d\d rss_mb=\d+ book_seconds=\d+\.\d\d", line)
               for line in lines), lines
    assert any(re.fullmatch(r"bench close-floor ratio=\d+\.\d\d rate=\d+/s seconds=\d+\.\d\d bare_cpu_seconds=\d+\.\d\d"
                            r" sign_cpu_seconds=\d+\.\d\d store_cpu_seconds=\d+\.\d\d", line) for line in lines), lines
    close, floor = figures
    assert 0 < floor.ratio <= 1  # the floor never takes less than the bare query itself
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nwritten by hand\n")
    assert "<!-- bench:close begin -->" in text and "| close | 12 |" in text
    assert re.search(r"the best\nratio any close could reach here is \*\*\d+\.\d\d\*\*", text)


def test_the_close_bench_sizes_come_from_the_smoke_count_or_the_environment():
    assert size_for(600) == Size(holders=6, events=600)
    assert size_for(None, {}) == FULL and FULL.statements == 4_000
    assert size_for(None, {"LEARNRIGHT_BENCH_CLOSE_SIZE": "large"}) == LARGE and LARGE.statements == 100_000
    assert size_for(None, {"LEARNRIGHT_BENCH_CLOSE_SIZE": "300x5000"}) == Size(holders=300, events=5_000)
    with pytest.raises(ConfigError, match=r"LEARNRIGHT_BENCH_CLOSE_SIZE='huge' is not a size"):
        size_for(None, {"LEARNRIGHT_BENCH_CLOSE_SIZE": "huge"})


def _rows(path, sql):
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _close_digest(path):
    """The statements, hashes, signatures and close rows a close of the bench month stores."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger.core.signing import signer_of
    from ledger.services.close import close_period
    from ledger.storage.store import Ledger
    from learnright.bench_close import NOW, PERIOD

    with Ledger.open(path) as ledger:
        close_period(ledger, PERIOD, now=NOW, signer=signer_of(Ed25519PrivateKey.from_private_bytes(bytes(range(32)))))
    return (_rows(path, "SELECT statement_id, content_hash, document, signature FROM statements ORDER BY statement_id"),
            _rows(path, "SELECT period, root, book_hash, statements, last_entry_id FROM period_closes"))


def test_a_replicated_month_is_what_booking_its_events_one_by_one_gives(tmp_path):
    """The SQL copies of a large size's base month are, row for row, the ledger that pricing and
    booking :func:`replica` events gives, and close to the same signed statements."""
    from itertools import chain

    from learnright.bench_close import book_month, build_ledger, month_events, replica, replication

    size = Size(holders=200, events=1_200)  # 200 holders: two or more of each rate class, so copies shift
    assert replication(size, replicate_above=500, base_events=400) == (400, 3)
    replicated, booked = tmp_path / "replicated.duckdb", tmp_path / "booked.duckdb"
    build_ledger(replicated, size, echo=lambda line: None, replicate_above=500, base_events=400)
    base = list(month_events(Size(holders=200, events=400)))
    book_month(booked, 200, chain(base, *([replica(e, copy=c, base_events=400, holders=200) for e in base]
                                          for c in (1, 2))))
    entries = "SELECT * EXCLUDE (batch_id) FROM accruals ORDER BY entry_id"
    events = "SELECT * EXCLUDE (batch_id) FROM usage_events ORDER BY kafka_partition, kafka_offset"
    offsets = "SELECT kafka_partition, max(next_offset) FROM consumer_offsets GROUP BY ALL ORDER BY ALL"
    for sql in (entries, events, offsets):
        assert _rows(replicated, sql) == _rows(booked, sql)
    assert len(_rows(replicated, entries)) > 1_200
    # The copies book against other holders: more distinct statement lines than the base alone has.
    lines = "SELECT count(*) FROM (SELECT DISTINCT source_id, model_id, kind FROM accruals)"
    assert _rows(replicated, lines)[0][0] > _rows(replicated, lines.replace("accruals", "accruals WHERE entry_id <= "
                                                                           "(SELECT max(entry_id) FROM accruals WHERE batch_id = 1)"))[0][0]
    assert _close_digest(replicated) == _close_digest(booked)


def test_only_months_above_the_threshold_are_replicated():
    from learnright.bench_close import replication

    assert replication(Size(holders=2_000, events=200_000)) is None
    assert replication(Size(holders=50_000, events=1_000_000)) is None
    assert replication(LARGE) == (500_000, 20)
    assert replication(Size(holders=10, events=1_000_001)) is None  # no even base divides it
