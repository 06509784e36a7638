"""The storage edge: the only code that talks to DuckDB.

The ledger file, its migrations, the Arrow conversion of rows, published snapshots and
the auditor's SQL sandbox. Everything above reaches the ledger through this package.
"""
