"""The `learnright` command. Each subcommand calls a service function; none holds logic.

Commands live in modules by audience: ``broker_commands`` (the project's Kafka),
``postgres_commands`` (the project's PostgreSQL),
``ledger_commands`` (licenses, usage in, close, quarantine, verify),
``statement_commands`` (statements and the signing key), ``access_commands`` (API
tokens, auditor SQL, snapshots), ``tool_commands`` (bench, demo) and ``consent_commands``
(revocation, unlicensed use, licensed-model evidence, the AI Act summary). They register on
the typer groups of ``groups``, which also holds what they share: the ``--db`` option,
the settings, and the one place a :class:`~ground.errors.LearnrightError` becomes
``error: <message>`` on stderr and exit code 2.
"""

from __future__ import annotations

# Registering the commands on the groups of `learnright.cli.groups`, in the order
# `learnright --help` lists them.
from learnright.cli import broker_commands, postgres_commands, ledger_commands  # noqa: F401
from learnright.cli import statement_commands, access_commands, tool_commands  # noqa: F401,I001
from learnright.cli import consent_commands  # noqa: F401
from learnright.cli.groups import app

__all__ = ["app"]
