"""Service functions over the ledger: the close, verification, API tokens.

They join the pure core to the storage edge. The CLI, the HTTP API and the scheduler
call these; none of them holds business logic of its own.
"""
