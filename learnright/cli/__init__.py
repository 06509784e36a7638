"""The `learnright` command. Each subcommand calls a service function; none holds logic.

Commands live in modules by audience: ``broker_commands`` (the project's Kafka),
``ledger_commands`` (licenses, usage in, close, quarantine, verify),
``statement_commands`` (statements and the signing key), ``access_commands`` (API
tokens, auditor SQL, snapshots) and ``tool_commands`` (bench, demo).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ground.errors import LearnrightError
from ground.settings import Settings

app = typer.Typer(help="Learnright: usage-metered royalty ledger.", no_args_is_help=True, pretty_exceptions_enable=False)
kafka_app = typer.Typer(help="Run the project's own Kafka broker (KRaft, 127.0.0.1).", no_args_is_help=True)
licenses_app = typer.Typer(help="Apply license files to the ledger.", no_args_is_help=True)
statements_app = typer.Typer(help="List, fetch and verify closed statements.", no_args_is_help=True)
keys_app = typer.Typer(help="The Ed25519 key that signs statements.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Inspect and replay records that could not be booked.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens for rights holders and auditors (stored as hashes).", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(licenses_app, name="licenses")
app.add_typer(statements_app, name="statements")
app.add_typer(keys_app, name="keys")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(tokens_app, name="tokens")

DbOption = typer.Option(None, "--db", help="Ledger file (default ./var/ledger.duckdb, or LEARNRIGHT_DB).")


def _settings(db: Optional[Path] = None) -> Settings:
    settings = Settings()
    return settings.model_copy(update={"db": db}) if db is not None else settings


def _fail(exc: LearnrightError) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def main() -> None:  # pragma: no cover - console entry point wrapper
    app()


# Registering the commands, in the order `learnright --help` lists them.
from learnright.cli import broker_commands, ledger_commands  # noqa: E402,F401
from learnright.cli import statement_commands, access_commands, tool_commands  # noqa: E402,F401,I001
