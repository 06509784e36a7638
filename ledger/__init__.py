"""The royalty ledger: money, licenses, pricing, storage, close and statements.

Pure core: ``money``, ``licenses``, ``usage``, ``pricing``, ``allocation``,
``statements``, ``chain``. Edges: ``store`` (DuckDB) and ``close`` (the service
function the CLI and the scheduler both call).
"""
