"""A close that runs out of DuckDB's memory under ``close.memory_limit``: stored nothing, then closed again
with the ledger's own limit, to the same bytes; out of memory with that limit too, a clear error."""

import logging
import shutil

import duckdb
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.core.signing import signer_of
from ledger.errors import CloseMemoryError
from ledger.services.close import close_period
from ledger.services.verify import verify
from ledger.storage.store import Ledger
from learnright.bench_close import NOW, PERIOD, Size, build_ledger

TOO_SMALL = "8MB"
"""Far under what this month's close needs (it ran out at 8, 12, 16 and 24MB alike, by hand): the sorted
lines and the uncommitted statements of 1,000 statements over 50,000 events do not fit."""

SIGNER = signer_of(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    """A booked, unclosed month of 500 holders (1,000 statements) over 50,000 events."""
    path = tmp_path_factory.mktemp("close-memory") / "month.duckdb"
    build_ledger(path, Size(holders=500, events=50_000), echo=lambda line: None)
    return path


def _stored(ledger):
    return (ledger.con.execute("SELECT statement_id, content_hash, document, signature FROM statements"
                               " ORDER BY statement_id").fetchall(),
            ledger.con.execute("SELECT period, root, book_hash, statements, last_entry_id FROM period_closes").fetchall())


def _copy(month, tmp_path, name):
    copy = tmp_path / f"{name}.duckdb"
    shutil.copyfile(month, copy)
    return copy


def test_a_close_out_of_memory_under_its_limit_closes_again_with_the_ledgers_own_to_the_same_bytes(
        month, tmp_path, caplog):
    with Ledger.open(_copy(month, tmp_path, "unlimited")) as ledger:
        close_period(ledger, PERIOD, now=NOW, signer=SIGNER)
        expected = _stored(ledger)

    with Ledger.open(_copy(month, tmp_path, "limited")) as ledger, caplog.at_level(logging.WARNING):
        outcome = close_period(ledger, PERIOD, now=NOW, signer=SIGNER, memory_limit=TOO_SMALL)
        assert len(outcome.statement_ids) == 1_000 and outcome.closed_periods == (PERIOD,)
        assert _stored(ledger) == expected
        assert verify(ledger).ok, verify(ledger).problems  # no entry id skipped by the failed attempt
    warned = [r.getMessage() for r in caplog.records if r.name == "ledger.services.close"]
    assert len(warned) == 1 and f"ran out of memory under close.memory_limit {TOO_SMALL}" in warned[0], warned
    assert "Out of Memory Error" in warned[0] and "raise close.memory_limit" in warned[0]


class SmallMachineLedger(Ledger):
    """A ledger on a machine whose engine default is no roomier than the close's limit: the retry fails too."""

    def engine_memory_limit(self) -> str:
        return TOO_SMALL


def test_a_close_out_of_memory_under_the_engines_default_too_stores_nothing_and_says_so(month, tmp_path):
    with SmallMachineLedger.open(_copy(month, tmp_path, "starved")) as ledger:
        with pytest.raises(CloseMemoryError, match=rf"closing {PERIOD} ran out of memory under close.memory_limit"
                           rf" {TOO_SMALL} and again under {TOO_SMALL}; nothing of it was stored:"
                           r" Out of Memory Error") as raised:
            close_period(ledger, PERIOD, now=NOW, signer=SIGNER, memory_limit=TOO_SMALL)
        assert raised.value.code == "close_out_of_memory"
        assert isinstance(raised.value.__cause__, duckdb.OutOfMemoryException)
        assert ledger.get_close(PERIOD) is None and not ledger.statement_rows(period=PERIOD)

        close_period(ledger, PERIOD, now=NOW, signer=SIGNER, memory_limit="256MB")  # with room, the same ledger closes
        assert verify(ledger).ok


def test_a_close_under_the_ledgers_own_small_limit_is_closed_again_under_the_engines_default(month, tmp_path, caplog):
    with Ledger.open(_copy(month, tmp_path, "own-limit")) as ledger, caplog.at_level(logging.WARNING):
        roomy = ledger.engine_memory_limit()
        assert ledger.limit_memory(roomy)  # a size limit_memory accepts, as DuckDB writes it
        # as `serve` sets the consumer's, before a close without a limit of its own; it replaces the one just set
        assert ledger.limit_memory(TOO_SMALL) == roomy
        outcome = close_period(ledger, PERIOD, now=NOW, signer=SIGNER)
        assert len(outcome.statement_ids) == 1_000
        assert ledger.limit_memory(TOO_SMALL) == TOO_SMALL  # the ledger's own limit, restored after the retry
    warned = [r.getMessage() for r in caplog.records if r.name == "ledger.services.close"]
    assert len(warned) == 1 and "ran out of memory under the ledger's own memory limit" in warned[0], warned
    assert f"Closing it again under {roomy}, the storage engine's default" in warned[0]
