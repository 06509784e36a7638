"""The pure core of the ledger: plain functions over frozen values.

Money, periods, usage events, licenses, pricing, allocation, period terms, the hash
chain, statements and their signed envelope, and the renderers of the files people open
(PDF, DSR); and the storage port (:mod:`ledger.core.port`) with the rows that cross it
(:mod:`ledger.core.records`). Nothing here touches DuckDB, Kafka, HTTP, the clock or the
environment; a test of it needs no broker and no file. It imports only ``ground`` and itself.
"""
