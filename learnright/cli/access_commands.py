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
    platform: Optional[str] = typer.Option(None, "--platform", help="A platform token: the licensed-model evidence"
                                           " and unlicensed use of this platform's own models."),
    member: Optional[str] = typer.Option(None, "--member",
                                         help="A member of a collective: reads only its own distribution statements."),
    expires_in: Optional[str] = typer.Option(None, "--expires-in", help="Lifetime, e.g. 90d, 12h, 2w (default: none)."),
    label: str = typer.Option("", "--label", help="A note to recognise the token by in `tokens list`."),
    db: Optional[Path] = DbOption,
) -> None:
    """Create a token and print it once: only its SHA-256 is stored.

    While `learnright serve` runs, the service creates it (its admin socket); the API takes it at once.
    """
    from learnright.admin.client import run
    from ledger.services.tokens import parse_duration

    settings = settings_for(db)
    if [auditor, bool(holder), bool(platform), bool(member)].count(True) != 1:
        raise ConfigError("give exactly one of --holder H or --auditor (or --platform P, or --member M)")
    if expires_in:
        parse_duration(expires_in)  # refused here, before anything is asked of the ledger
    scope = {"platform": platform} if platform else {"member": member} if member else {}
    issued = run(settings, "tokens_create", auditor=auditor, holder=holder, expires_in=expires_in, label=label, **scope)
    owner = issued["holder_id"] or issued.get("platform_id")
    typer.echo(f"created {issued['token_id']} ({issued['role']}{' ' + owner if owner else ''},"
               f" expires {issued['expires_at'] or 'never'}); shown once, keep it secret:", err=True)
    typer.echo(issued["token"])


@tokens_app.command("revoke")
def tokens_revoke(token_id: str, db: Optional[Path] = DbOption) -> None:
    """Revoke a token from now on (appended; the token's history stays); a running API refuses it at its next request."""
    from learnright.admin.client import run

    revoked = run(settings_for(db), "tokens_revoke", token_id=token_id)
    typer.echo(f"{revoked['token_id']} revoked at {revoked['revoked_at']}")


@tokens_app.command("list")
def tokens_list(db: Optional[Path] = DbOption) -> None:
    """List tokens: id, role, holder (or platform), state, created, expires (never the secrets)."""
    from learnright.admin.client import run

    records = run(settings_for(db), "tokens_list")["tokens"]
    typer.echo("token_id\trole\tholder\tstate\tcreated_at\texpires_at\tlabel")
    for r in records:
        typer.echo(f"{r['token_id']}\t{r['role']}\t{r['holder_id'] or r.get('platform_id') or '-'}\t{r['state']}\t{r['created_at']}\t"
                   f"{r['expires_at'] or '-'}\t{r['label']}")


@app.command("sql")
def sql_command(
    query: str = typer.Argument(..., help="Exactly one SELECT (DuckDB SQL); the audit_* views are documented in docs/api.md."),
    format: str = typer.Option("csv", "--format", help="csv, json or arrow (Arrow IPC stream)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write to this file instead of stdout."),
    snapshot: Optional[str] = typer.Option(
        None, "--snapshot", help="Query this snapshot id, or 'latest' (default: the latest snapshot if it holds all"
                                 " the ledger holds, else a new one published first; while the service holds the"
                                 " ledger, the latest)."),
    at_close: Optional[str] = typer.Option(
        None, "--at-close", help="Query the ledger as the close of this period (YYYY-MM) left it: a lake at that"
                                 " close's snapshot (DuckLake time travel), a file at the snapshot published then."),
    db: Optional[Path] = DbOption,
) -> None:
    """Run one read-only SELECT on a snapshot of the ledger, as an auditor (sandboxed: no files, no network,
    time and row limits).

    It never reads the ledger file itself, which holds the API tokens; stderr names the
    snapshot that answered, its time and the last close it covers (period and root).
    """
    from ledger.storage.snapshots import HELD, PUBLISHED, holding, latest_snapshot, read_snapshot, snapshot_for_query
    from ledger.storage.sql import SqlLimits, render, run_query

    settings = settings_for(db)
    limits = SqlLimits.from_settings(settings.sql)
    if format not in ("csv", "json", "arrow"):
        raise ConfigError(f"--format must be csv, json or arrow (got {format!r})")
    if at_close is not None:
        if snapshot is not None:
            raise ConfigError("--at-close and --snapshot each pick what answers; give one of them")
        location = settings.ledger_at
        if not isinstance(location, Path):  # a lake: time travel to the close's snapshot
            from ledger.storage.lake import lake_sandbox
            result = run_query(Path(str(location)), query, limits,
                               connect=lambda: lake_sandbox(location, at_close, limits))
            typer.echo(f"answered from the lake {location} at the close of {at_close}", err=True)
            _write(result, format, limits, out)
            return
        from ledger.storage.snapshots import snapshot_at_close
        snapshot = snapshot_at_close(settings.snapshots_dir, at_close).snapshot_id
    why = None
    if snapshot is None:
        picked, why = snapshot_for_query(settings.db, settings.snapshots_dir, now=datetime.now(timezone.utc),
                                         keep_last=settings.snapshots.keep_last)
        picks = iter([picked])  # if the service prunes it before it is held, the latest then answers
        pick = lambda: next(picks, None) or latest_snapshot(settings.snapshots_dir)  # noqa: E731
    elif snapshot == "latest":
        pick = lambda: latest_snapshot(settings.snapshots_dir)  # noqa: E731
    else:
        pick = lambda: read_snapshot(settings.snapshots_dir, snapshot)  # noqa: E731
    with holding(pick) as found:  # not pruned while the query reads it
        if found is None:
            raise ConfigError(f"no snapshot in {settings.snapshots_dir}")
        result = run_query(found.database, query, limits)
    note = {PUBLISHED: "; published now: the latest snapshot did not hold all the ledger holds",
            HELD: f"; {settings.db} is held by the running service, so this snapshot may lag it"}.get(why, "")
    close = "no close yet" if found.last_close is None else f"last close {found.last_close.describe()}"
    typer.echo(f"answered from snapshot {found.snapshot_id} (created {found.created_at.isoformat()}, entries up to"
               f" {found.last_entry_id}, {close}){note}", err=True)
    _write(result, format, limits, out)


def _write(result, format: str, limits, out: Optional[Path]) -> None:
    """Renders an auditor's answer to ``out`` or stdout; notes a cut on stderr."""
    from ledger.storage.sql import render

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

    While `learnright serve` holds the ledger, the service publishes it (its admin socket).
    """
    from learnright.admin.client import run

    settings = settings_for(db)
    directory = (into or settings.snapshots_dir).absolute()  # the service may run in another directory
    snapshot = run(settings, "snapshot", directory=str(directory), keep_last=settings.snapshots.keep_last)
    typer.echo(f"snapshot {snapshot['snapshot_id']}: {snapshot['database']} (entries up to {snapshot['last_entry_id']},"
               f" last hash {snapshot['chain_head'][:16]}...), Parquet in {snapshot['parquet']}")
