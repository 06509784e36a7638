"""API tokens, auditor SQL and snapshots."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from ground.errors import ConfigError
from learnright.cli.groups import DbOption, app, settings_for, tokens_app


@tokens_app.command("create")
def tokens_create(
    holder: Optional[str] = typer.Option(None, "--holder", help="The rights holder whose statements it reads."),
    auditor: bool = typer.Option(False, "--auditor", help="An auditor token: SQL and snapshots, every holder."),
    expires_in: Optional[str] = typer.Option(None, "--expires-in", help="Lifetime, e.g. 90d, 12h, 2w (default: none)."),
    label: str = typer.Option("", "--label", help="A note to recognise the token by in `tokens list`."),
    db: Optional[Path] = DbOption,
) -> None:
    """Create a token and print it once: only its SHA-256 is stored."""
    from ledger.storage.store import Ledger
    from ledger.services.tokens import AUDITOR, HOLDER, create_token, parse_duration

    settings = settings_for(db)
    if auditor == bool(holder):
        raise ConfigError("give exactly one of --holder H or --auditor")
    lifetime = parse_duration(expires_in) if expires_in else None
    with Ledger.open(settings.db) as ledger:
        issued = create_token(ledger, role=AUDITOR if auditor else HOLDER, holder_id=holder,
                              now=datetime.now(timezone.utc), expires_in=lifetime, label=label)
    record = issued.record
    expiry = record.expires_at.isoformat() if record.expires_at else "never"
    typer.echo(f"created {record.token_id} ({record.role}{' ' + record.holder_id if record.holder_id else ''},"
               f" expires {expiry}); shown once, keep it secret:", err=True)
    typer.echo(issued.token)


@tokens_app.command("revoke")
def tokens_revoke(token_id: str, db: Optional[Path] = DbOption) -> None:
    """Revoke a token from now on (appended; the token's history stays)."""
    from ledger.storage.store import Ledger
    from ledger.services.tokens import revoke_token

    settings = settings_for(db)
    with Ledger.open(settings.db) as ledger:
        record = revoke_token(ledger, token_id, now=datetime.now(timezone.utc))
    typer.echo(f"{record.token_id} revoked at {record.revoked_at.isoformat()}")


@tokens_app.command("list")
def tokens_list(db: Optional[Path] = DbOption) -> None:
    """List tokens: id, role, holder, state, created, expires (never the secrets)."""
    from ledger.storage.store import Ledger
    from ledger.services.tokens import list_tokens

    settings = settings_for(db)
    now = datetime.now(timezone.utc)
    with Ledger.open(settings.db, read_only=True) as ledger:
        records = list_tokens(ledger)
    typer.echo("token_id\trole\tholder\tstate\tcreated_at\texpires_at\tlabel")
    for r in records:
        typer.echo(f"{r.token_id}\t{r.role}\t{r.holder_id or '-'}\t{r.state(now)}\t{r.created_at.isoformat()}\t"
                   f"{r.expires_at.isoformat() if r.expires_at else '-'}\t{r.label}")


@app.command("sql")
def sql_command(
    query: str = typer.Argument(..., help="Exactly one SELECT (DuckDB SQL); the audit_* views are documented in docs/api.md."),
    format: str = typer.Option("csv", "--format", help="csv, json or arrow (Arrow IPC stream)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write to this file instead of stdout."),
    snapshot: Optional[str] = typer.Option(
        None, "--snapshot", help="Query this snapshot id, or 'latest' (default: the latest snapshot if it holds all"
                                 " the ledger holds, else a new one published first; while the service holds the"
                                 " ledger, the latest)."),
    db: Optional[Path] = DbOption,
) -> None:
    """Run one read-only SELECT on a snapshot of the ledger, as an auditor (sandboxed: no files, no network,
    time and row limits).

    It never reads the ledger file itself, which holds the API tokens; stderr names the
    snapshot that answered.
    """
    from ledger.storage.snapshots import HELD, PUBLISHED, latest_snapshot, read_snapshot, snapshot_for_query
    from ledger.storage.sql import SqlLimits, render, run_query

    settings = settings_for(db)
    limits = SqlLimits.from_settings(settings.sql)
    if format not in ("csv", "json", "arrow"):
        raise ConfigError(f"--format must be csv, json or arrow (got {format!r})")
    why = None
    if snapshot is None:
        found, why = snapshot_for_query(settings.db, settings.snapshots_dir, now=datetime.now(timezone.utc))
    else:
        found = latest_snapshot(settings.snapshots_dir) if snapshot == "latest" else read_snapshot(
            settings.snapshots_dir, snapshot)
        if found is None:
            raise ConfigError(f"no snapshot in {settings.snapshots_dir}")
    result = run_query(found.database, query, limits)
    note = {PUBLISHED: "; published now: the latest snapshot did not hold all the ledger holds",
            HELD: f"; {settings.db} is held by the running service, so this snapshot may lag it"}.get(why, "")
    typer.echo(f"answered from snapshot {found.snapshot_id} (created {found.created_at.isoformat()}, entries up to"
               f" {found.last_entry_id}){note}", err=True)
    body = render(result, format)
    if result.truncated:
        typer.echo(f"note: cut at the row limit of {limits.row_limit} rows", err=True)
    if out:
        out.write_bytes(body)
    elif format == "arrow":
        sys.stdout.buffer.write(body)
    else:
        sys.stdout.write(body.decode())


@app.command("snapshot")
def snapshot_command(
    db: Optional[Path] = DbOption,
    into: Optional[Path] = typer.Option(None, "--into", help="Snapshots directory (default var/snapshots)."),
) -> None:
    """Publish a read-only snapshot (DuckDB file + Parquet per table) for auditors.

    While `learnright serve` holds the ledger, ask the service instead: POST /v1/snapshots.
    """
    from ledger.storage.snapshots import publish_snapshot
    from ledger.storage.store import Ledger

    settings = settings_for(db)
    directory = into or settings.snapshots_dir
    with Ledger.open(settings.db) as ledger:
        snapshot = publish_snapshot(ledger, directory, now=datetime.now(timezone.utc))
    typer.echo(f"snapshot {snapshot.snapshot_id}: {snapshot.database} (entries up to {snapshot.last_entry_id},"
               f" last hash {snapshot.chain_head[:16]}...), Parquet in {snapshot.directory / 'parquet'}")
