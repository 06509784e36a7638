"""Learnright: a usage-metered royalty ledger.

Packages by stage: ``schemas`` (the wire contract), ``producers`` (the SDK platforms
use), ``consumers`` (ingestion into the ledger), ``ledger`` (money, licenses, pricing,
storage, close, statements). This package holds what crosses them: errors, settings,
the broker runtime and the CLI.
"""

__version__ = "0.1.0"
