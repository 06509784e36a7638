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
        None, "--snapshot", help="Query this snapshot id, or 'latest' (default: the ledger file, or the latest"
                                 " snapshot when the service holds the file)."),
    db: Optional[Path] = DbOption,
) -> None:
    """Run one read-only SELECT on the ledger (sandboxed: no files, no network, time and row limits)."""
    from ledger.errors import LedgerLockedError
    from ledger.storage.snapshots import latest_snapshot, read_snapshot
    from ledger.storage.sql import SqlLimits, render, run_query

    settings = settings_for(db)
    limits = SqlLimits(time_limit_s=settings.sql.time_limit_s, row_limit=settings.sql.row_limit,
                       memory_limit=settings.sql.memory_limit)
    if format not in ("csv", "json", "arrow"):
        raise ConfigError(f"--format must be csv, json or arrow (got {format!r})")
    if snapshot is None:
        try:
            result = run_query(settings.db, query, limits)
        except LedgerLockedError as exc:
            found = latest_snapshot(settings.snapshots_dir)
            if found is None:
                raise LedgerLockedError(f"{settings.db} is held by the running service and {settings.snapshots_dir}"
                                        " has no snapshot; publish one with `learnright snapshot`"
                                        " (POST /v1/snapshots)") from exc
            typer.echo(f"{settings.db} is held by the service; querying snapshot {found.snapshot_id}", err=True)
            result = run_query(found.database, query, limits)
    else:
        found = latest_snapshot(settings.snapshots_dir) if snapshot == "latest" else read_snapshot(
            settings.snapshots_dir, snapshot)
        if found is None:
            raise ConfigError(f"no snapshot in {settings.snapshots_dir}")
        result = run_query(found.database, query, limits)
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
               f" chain head {snapshot.chain_head[:16]}...), Parquet in {snapshot.directory / 'parquet'}")
