"""The storage edge: the only code that talks to DuckDB.

The DuckDB adapter of the storage port (:class:`ledger.core.port.LedgerStore`):
:class:`ledger.storage.store.Ledger`, a facade over one repository per aggregate
(licenses, ingest, quarantine, closes, period inputs, statements, tokens, audit) sharing
one connection (:mod:`ledger.storage.connection`). Beside it: the file's migrations, the
Arrow conversion of rows, published snapshots and the auditor's SQL sandbox. Code above
types against the port and gets the rows of :mod:`ledger.core.records`.
"""
