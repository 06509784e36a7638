"""Consent and provenance: revoking a source, unlicensed use, licensed-model evidence, the AI Act summary."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from learnright.cli.groups import DbOption, app, licenses_app, settings_for


@licenses_app.command("revoke")
def licenses_revoke(
    source: str = typer.Argument(..., help="The source whose consent ends."),
    effective_at: str = typer.Option(..., "--effective-at", help="ISO 8601 with a zone, not in the past,"
                                     " e.g. 2026-10-01T00:00:00Z."),
    reason: str = typer.Option(..., "--reason", help="Why consent ends (kept with the revocation)."),
    platform: str = typer.Option("*", "--platform", help="One platform id, or * for every platform."),
    evidence_url: Optional[str] = typer.Option(None, "--evidence-url", help="Where the evidence is (an RSL document"
                                               " that prohibits, a letter)."),
    evidence_sha256: Optional[str] = typer.Option(None, "--evidence-sha256", help="SHA-256 (hex) of the evidence."),
    db: Optional[Path] = DbOption,
) -> None:
    """Revoke a source for one platform or all, from an instant on: appended, never edited (operators).

    Usage after it is booked as unlicensed use, never priced. While `learnright serve` runs,
    the service appends it between two batches (its admin socket).
    """
    from learnright.admin.client import run

    revoked = run(settings_for(db), "licenses_revoke", source_id=source, platform_id=platform,
                  effective_at=effective_at, reason=reason, evidence_url=evidence_url,
                  evidence_sha256=evidence_sha256)
    typer.echo(f"{revoked['revocation_id']}: {revoked['source_id']} revoked for platform {revoked['platform_id']}"
               f" from {revoked['effective_at']}")


@app.command("unlicensed")
def unlicensed(period: Optional[str] = typer.Option(None, "--period", help="YYYY-MM (default: every month)."),
               db: Optional[Path] = DbOption) -> None:
    """List unlicensed use: usage of sources after their license ended or was revoked (booked, never priced)."""
    from learnright.admin.client import run

    rows = run(settings_for(db), "unlicensed_list", period=period)["unlicensed_use"]
    typer.echo("period\tholder\tsource\tplatform\tmodel\tkind\tquantity\tunit\tevents\treason\tlicense\trevocation")
    for r in rows:
        typer.echo(f"{r['period']}\t{r['holder_id']}\t{r['source_id']}\t{r['platform_id']}\t{r['model_id']}"
                   f"\t{r['kind']}\t{r['quantity']}\t{r['unit']}\t{r['events']}\t{r['reason']}\t{r['license']}"
                   f"\t{r['revocation_id'] or '-'}")
    typer.echo(f"{len(rows)} lines of unlicensed use")


models_app = typer.Typer(help="What the ledger proves about a model's training: evidence, the AI Act summary.",
                         no_args_is_help=True)
evidence_app = typer.Typer(help="Check licensed-model evidence files.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(evidence_app, name="evidence")


@models_app.command("evidence")
def models_evidence(
    model: str = typer.Argument(..., help="The model id, as the platform reports it."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="ISO 8601 with a zone (default: now)."),
    platform: Optional[str] = typer.Option(None, "--platform", help="The platform, when several report this model id."),
    out: Path = typer.Option(Path("."), "--out", help="Directory for <model>.evidence.json and .pdf."),
    db: Optional[Path] = DbOption,
) -> None:
    """Write signed evidence for MODEL and every base model in its lineage: sources, licenses, verdict.

    The JSON is signed with the statement key like a statement; check it with `learnright evidence verify`.
    """
    from learnright.admin.client import run
    from ledger.core.filenames import name_part
    from ledger.core.signing import load_or_create_key
    from ledger.services.provenance import sign_evidence

    settings = settings_for(db)
    document = run(settings, "models_evidence", model_id=model, platform_id=platform, as_of=as_of)["evidence"]
    files = sign_evidence(document, load_or_create_key(settings.signing_key))
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{name_part(document['platform_id'], separator='_')}_{name_part(model)}"
    (out / f"{stem}.evidence.json").write_bytes(files.json)
    (out / f"{stem}.evidence.pdf").write_bytes(files.pdf)
    verdict = document["verdict"]
    typer.echo(f"{out / (stem + '.evidence.json')}: every training use licensed: {verdict['answer']}"
               f" ({verdict['unlicensed_training_events']} unlicensed training events, {verdict['models']} models,"
               f" {verdict['sources']} sources)")


@evidence_app.command("verify")
def evidence_verify(
    file: Path = typer.Argument(..., help="A licensed-model evidence JSON file."),
    public_key: Optional[Path] = typer.Option(
        None, "--public-key", help="The published public key (PEM); default: the public half of the local signing key."),
) -> None:
    """Check an evidence file: layout, content hash, Ed25519 signature, every byte. Exits 1 when anything changed."""
    from ground.errors import ConfigError, LearnrightError
    from ledger.core.evidence import verify_evidence
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
        checked = verify_evidence(data, key, str(file))
    except LearnrightError as exc:
        typer.secho(f"FAIL {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(f"OK {file}: evidence {checked.evidence_id} for model {checked.model_id} of {checked.platform_id}"
               f" as of {checked.as_of}, every training use licensed:"
               f" {'yes' if checked.all_training_licensed else 'no'}, content hash {checked.content_hash},"
               f" signed by {checked.key_fingerprint}")


@models_app.command("summary")
def models_summary(
    model: str = typer.Argument(..., help="The model id, as the platform reports it."),
    format: str = typer.Option("md", "--format", help="md (Markdown) or json."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="ISO 8601 with a zone (default: now)."),
    platform: Optional[str] = typer.Option(None, "--platform", help="The platform, when several report this model id."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write to this file (default: standard output)."),
    db: Optional[Path] = DbOption,
) -> None:
    """Draft the AI Act public summary of training content for MODEL: what the ledger knows, gaps labelled.

    Marked as a draft for the provider to complete: licensed sources and their holders ranked by
    share of training volume, the collection period, how opt-outs were honoured.
    """
    import sys

    from ground.errors import ConfigError
    from learnright.admin.client import run
    from ledger.core.ai_act import render_json, render_markdown

    if format not in ("md", "json"):
        raise ConfigError(f"--format must be md or json (got {format!r})")
    summary = run(settings_for(db), "models_summary", model_id=model, platform_id=platform, as_of=as_of)["summary"]
    body = render_markdown(summary) if format == "md" else render_json(summary)
    if out is not None:
        out.write_bytes(body)
    else:
        sys.stdout.write(body.decode())
