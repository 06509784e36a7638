"""`learnright postgres up|down|status`: a throwaway PostgreSQL cluster for the ledger's DuckLake catalog.

`up` listens on the fixed ``postgres.port`` (127.0.0.1:15432 unless
``LEARNRIGHT_POSTGRES__PORT`` says otherwise) and prints the libpq connection string of
the ledger's database, the part after ``ducklake:postgres:`` in ``LEARNRIGHT_LEDGER__URL``.
"""

from __future__ import annotations

import typer

from learnright import postgres as postgres_runtime
from learnright.cli.groups import postgres_app, settings_for


@postgres_app.command("up")
def postgres_up(
    keep: bool = typer.Option(False, "--keep",
                              help="Restart the cluster that ran in postgres.state_dir before, with its data,"
                                   " instead of a fresh one."),
) -> None:
    """Start PostgreSQL on 127.0.0.1:<postgres.port> with the ledger's database; print its connection string.

    Fresh unless ``--keep``: a new cluster (initdb) whose only database is
    ``postgres.database``, trusting connections from 127.0.0.1 without a password.
    """
    settings = settings_for().postgres
    state = postgres_runtime.up(settings.state_dir, port=settings.port, database=settings.database,
                                user=settings.user, bin_dir=settings.bin_dir, timeout_s=settings.start_timeout_s,
                                fresh=not keep)
    typer.echo(f"PostgreSQL up at 127.0.0.1:{state.port} (pid {state.pid}, logs {state.log})")
    typer.echo(state.dsn)


@postgres_app.command("down")
def postgres_down() -> None:
    """Stop the cluster started by `postgres up` (its data stays until the next fresh `up`)."""
    ran = postgres_runtime.down(settings_for().postgres.state_dir)
    typer.echo("PostgreSQL stopped" if ran else "no PostgreSQL was running")


@postgres_app.command("status")
def postgres_status(
    dsn: bool = typer.Option(False, "--dsn", help="Print only the connection string, for LEARNRIGHT_LEDGER__URL."),
) -> None:
    """Say whether the cluster runs, where, and where its log is; exit 1 if it does not run.

    With ``--dsn`` stdout holds the connection string alone; when the cluster does not
    run, stdout stays empty and the reason goes to stderr.
    """
    state = postgres_runtime.read_state(settings_for().postgres.state_dir)
    if state is None or not state.running:
        typer.echo("PostgreSQL: not running", err=dsn)
        raise typer.Exit(1)
    if dsn:
        typer.echo(state.dsn)
        return
    typer.echo(f"PostgreSQL: running at 127.0.0.1:{state.port} (pid {state.pid}, logs {state.log})")
    typer.echo(state.dsn)
