"""Closed statements and the key that signs them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ground.errors import ConfigError, LearnrightError
from learnright.cli.groups import DbOption, keys_app, settings_for, statements_app


@statements_app.command("list")
def statements_list(
    period: Optional[str] = typer.Option(None, "--period"),
    holder: Optional[str] = typer.Option(None, "--holder"),
    db: Optional[Path] = DbOption,
) -> None:
    """List closed statements: id, period, holder, currency, payable, carry (through the running service if any)."""
    from learnright.admin.client import run

    rows = run(settings_for(db), "statements_list", period=period, holder=holder)["statements"]
    typer.echo("statement_id\tperiod\tholder\tcurrency\taccrued\tpayable\tcarry_out")
    for r in rows:
        typer.echo(f"{r['statement_id']}\t{r['period']}\t{r['holder_id']}\t{r['currency']}\t{r['accrued']}"
                   f"\t{r['payable']}\t{r['carry_out']}")


@statements_app.command("get")
def statements_get(
    statement_id: str,
    format: str = typer.Option("json", "--format", help="json or csv"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write to this file instead of stdout."),
    db: Optional[Path] = DbOption,
) -> None:
    """Print (or write) one statement: JSON is the signed file a holder checks with `statements verify`.

    While `learnright serve` runs, the service reads it (its admin socket).
    """
    import base64

    from learnright.admin.client import run

    if format not in ("json", "csv"):
        raise ConfigError(f"--format must be json or csv (got {format!r})")
    settings = settings_for(db)
    found = run(settings, "statements_get", statement_id=statement_id, format=format)
    body = base64.b64decode(found["body"]) if found["found"] else None
    if body is None:
        typer.secho(f"error: no statement {statement_id!r} in {settings.ledger_at}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    if out:
        out.write_bytes(body)
    else:
        sys.stdout.write(body.decode())


@statements_app.command("verify")
def statements_verify(
    file: Path = typer.Argument(..., help="A downloaded JSON statement."),
    public_key: Optional[Path] = typer.Option(
        None, "--public-key", help="The published public key (PEM); default: the public half of the local signing key."),
) -> None:
    """Check a JSON statement: format version, content hash, close root, Ed25519 signature, every byte.

    A statement of format 5 on repeats its close root outside the signed bytes (envelope 2);
    an older one (formats 3 and 4, envelope 1) its chain head at close: either is checked
    against the signed statement. Exits 1, naming what does not match, when anything was changed.
    """
    from ledger.core.envelope import verify_envelope
    from ledger.core.signing import load_key, parse_public_key

    try:
        if public_key is not None:
            key = parse_public_key(public_key.read_bytes(), str(public_key))
        else:
            key = load_key(settings_for().signing_key).key.public_key()
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    try:
        checked = verify_envelope(data, key, str(file))
    except LearnrightError as exc:
        typer.secho(f"FAIL {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    covers = (f"close root {checked.close_root}" if checked.close_root is not None
              else f"chain head {checked.chain_head}")
    typer.echo(f"OK {file}: statement {checked.statement_id} ({checked.period}, {checked.holder_id},"
               f" {checked.currency} {checked.payable} payable), format {checked.format_version},"
               f" {covers}, content hash {checked.content_hash}, signed by {checked.key_fingerprint}")


@statements_app.command("publish")
def statements_publish(db: Optional[Path] = DbOption) -> None:
    """Send the pending StatementClosed events (those Kafka has not acknowledged yet)."""
    from consumers.publisher import publish_statements
    from learnright.runtime import bootstrap_servers
    from ledger.storage.store import Ledger

    settings = settings_for(db)
    with Ledger.open(settings.ledger_at) as ledger:
        outcome = publish_statements(ledger, settings, bootstrap=bootstrap_servers)
    typer.echo(f"published {len(outcome.published)} StatementClosed events to {outcome.topic}")


@keys_app.command("create")
def keys_create() -> None:
    """Create the statement signing key (mode 0600) at LEARNRIGHT_SIGNING_KEY; an existing key is kept."""
    from ledger.core.signing import create_key

    settings = settings_for()
    signer = create_key(settings.signing_key)
    typer.echo(f"created {settings.signing_key} ({signer.fingerprint}); publish `learnright keys public`")


@keys_app.command("public")
def keys_public() -> None:
    """Print the public key (PEM) that holders check statements with, created on first use."""
    from ledger.core.signing import load_or_create_key

    settings = settings_for()
    signer = load_or_create_key(settings.signing_key)
    typer.echo(f"# statement signing key {signer.fingerprint}", err=True)
    sys.stdout.write(signer.public_pem())
