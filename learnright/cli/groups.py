"""The `learnright` command's groups and what every command shares.

The command modules register on the groups defined here; ``learnright/cli/__init__.py``
imports them in the order ``learnright --help`` lists them. Nothing here imports a
command module, so there is no cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import click
import typer
from typer.core import TyperGroup

from ground.errors import LearnrightError
from ground.settings import LedgerSettings, Settings


class LearnrightGroup(TyperGroup):
    """The root group: any command that raises a :class:`LearnrightError` ends here.

    Its message goes to stderr as ``error: <message>`` (red on a terminal) and the
    command exits 2. A command that answers an error in its own way (a FAIL verdict,
    a warning with exit 1) catches it before it gets here.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LearnrightError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from exc


app = typer.Typer(help="Learnright: usage-metered royalty ledger.", no_args_is_help=True, pretty_exceptions_enable=False,
                  cls=LearnrightGroup)
kafka_app = typer.Typer(help="Run the project's own Kafka broker, or a cluster of them (KRaft, 127.0.0.1).",
                        no_args_is_help=True)
postgres_app = typer.Typer(help="Run a throwaway PostgreSQL cluster (Debian's, 127.0.0.1) for the ledger's catalog.",
                           no_args_is_help=True)
licenses_app = typer.Typer(help="Apply license files to the ledger.", no_args_is_help=True)
statements_app = typer.Typer(help="List, fetch and verify closed statements.", no_args_is_help=True)
keys_app = typer.Typer(help="The Ed25519 key that signs statements.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Inspect and replay records that could not be booked.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens for rights holders and auditors (stored as hashes).", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(postgres_app, name="postgres")
app.add_typer(licenses_app, name="licenses")
app.add_typer(statements_app, name="statements")
app.add_typer(keys_app, name="keys")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(tokens_app, name="tokens")

DbOption = typer.Option(None, "--db", help="Ledger file (default ./var/ledger.duckdb, or LEARNRIGHT_DB).")


def settings_for(db: Optional[Path] = None) -> Settings:
    """The settings from the environment, with ``--db`` in place of the ledger when given.

    ``--db`` names a ledger file, so it also sets a lake (``ledger.url``) aside.
    """
    settings = Settings()
    return settings.model_copy(update={"db": db, "ledger": LedgerSettings()}) if db is not None else settings
