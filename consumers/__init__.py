"""Ingestion: usage topics into the ledger, each valid event exactly once."""
