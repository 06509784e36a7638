"""A close killed half-way (SIGKILL inside its transaction) leaves nothing; the rerun gives the same files."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from ledger.services.close import close_period, statement_file
from ledger.storage.store import Ledger
from tests.ledger.keys import SIGNER
from tests.ledger.services.test_golden_book import BOOK, NOW, ingest

ROOT = Path(__file__).resolve().parents[3]

# Runs the close in another process and kills it (SIGKILL: no cleanup, no rollback) right
# after the statements' first row was written inside the close's transaction.
KILLED_CLOSE = """
import os, signal, sys
from ledger.services.close import close_period
from ledger.storage.store import Ledger
from tests.ledger.keys import SIGNER
from tests.ledger.services.test_golden_book import NOW

ledger = Ledger.open(sys.argv[1])
real = ledger.con
def execute_then_die(sql, *args):
    result = real.execute(sql, *args)
    if sql.startswith("INSERT INTO statements"):
        os.kill(os.getpid(), signal.SIGKILL)
    return result

class Connection:
    def __getattr__(self, name):
        return getattr(real, name)
    def execute(self, sql, *args):
        return execute_then_die(sql, *args)

ledger.con = Connection()
close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
print("not killed")
"""


def signed_files(ledger: Ledger) -> dict[str, bytes]:
    return {row.statement_id: statement_file(ledger, row.statement_id) for row in ledger.statement_rows(period="2026-04")}


def test_a_close_killed_mid_transaction_reruns_to_the_same_hashes_and_signatures(tmp_path):
    reference, crashed = tmp_path / "reference.duckdb", tmp_path / "crashed.duckdb"
    for path in (reference, crashed):
        with Ledger.open(path) as ledger:
            ledger.apply_licenses(BOOK, "golden-book.toml")
            ingest(ledger)
    with Ledger.open(reference) as ledger:
        close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
        expected = ledger.statement_rows(period="2026-04"), signed_files(ledger), ledger.get_close("2026-04").root

    killed = subprocess.run([sys.executable, "-c", KILLED_CLOSE, str(crashed)], cwd=ROOT, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr

    with Ledger.open(crashed) as ledger:
        assert ledger.get_close("2026-04") is None and ledger.statement_rows() == []
        assert ledger.query("SELECT count(*) FROM accruals WHERE kind = 'pool_share'") == [(0,)]
        assert ledger.query("SELECT count(*) FROM close_streams") == [(0,)]  # nor any of its commitment
        close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
        again = close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
        assert again.already_closed
        assert (ledger.statement_rows(period="2026-04"), signed_files(ledger),
                ledger.get_close("2026-04").root) == expected
