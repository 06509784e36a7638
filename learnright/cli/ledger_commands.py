"""Licenses, usage in, the close, quarantine and verification of the ledger."""

from __future__ import annotations

import dataclasses
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from ground.errors import BrokerError, ConfigError, LearnrightError
from learnright.cli.groups import DbOption, app, licenses_app, quarantine_app, settings_for


@licenses_app.command("apply")
def licenses_apply(file: Path = typer.Argument(..., exists=True, dir_okay=False), db: Optional[Path] = DbOption) -> None:
    """Apply a license TOML file: new versions are added, known ones kept, none edited.

    While `learnright serve` runs, the service applies it between two batches (its admin socket).
    """
    from learnright.admin.client import run

    applied = run(settings_for(db), "licenses_apply", text=file.read_text(), origin=str(file))
    typer.echo(f"{file}: {applied['added']} new license versions; {applied['versions']} versions, "
               f"{applied['sources']} sources, {applied['holders']} holders in the ledger")


@licenses_app.command("import-rsl")
def licenses_import_rsl(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="An RSL 1.0 XML document."),
    holder: str = typer.Option(..., "--holder", help="Holder id the license is written for."),
    source: str = typer.Option(..., "--source", help="Source id the license is written for."),
    platform: str = typer.Option("*", "--platform", help="One platform id, or * for every platform."),
    effective_from: Optional[str] = typer.Option(
        None, "--effective-from", help="ISO 8601 with a zone, e.g. 2026-10-01T00:00:00Z (default: today 00:00 UTC)."),
    license_id: Optional[str] = typer.Option(None, "--license-id", help="Default: rsl-<source>."),
    version: int = typer.Option(1, "--version", help="License version (a new one supersedes from --effective-from)."),
    unit: Optional[str] = typer.Option(None, "--unit", help="Unit a training payment is paid per (RSL has none), e.g. tokens."),
    per: Optional[int] = typer.Option(None, "--per", help="How many --unit a training amount is paid per, e.g. 1000000."),
    content: Optional[str] = typer.Option(None, "--content", help="Which <content url> to import when there are several."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the TOML here instead of printing it."),
    apply: bool = typer.Option(False, "--apply", help="Also apply the TOML to the ledger, as `licenses apply` does."),
    db: Optional[Path] = DbOption,
) -> None:
    """Convert the payment terms of an RSL document that map into a license TOML; report the rest."""
    from ledger.core.rsl_import import ImportOptions, import_rsl
    from ledger.storage.store import Ledger

    if effective_from is None:
        start = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        try:
            start = datetime.fromisoformat(effective_from)
        except ValueError:
            raise ConfigError(f"--effective-from {effective_from!r} is not an ISO 8601 date-time") from None
        if start.tzinfo is None:
            raise ConfigError(f"--effective-from {effective_from!r} has no time zone; add one, e.g. Z")
    options = ImportOptions(holder_id=holder, source_id=source, platform_id=platform, effective_from=start,
                            license_id=license_id, version=version, training_unit=unit, training_per=per,
                            content_url=content)
    text = file.read_text()
    if not apply:
        result = import_rsl(text, str(file), options)
        _write_license_toml(result, out)
    else:
        with Ledger.open(settings_for(db).ledger_at) as ledger:
            # Restate the ledger's holder and source as they are: applying replaces them.
            known = ledger.load_book()
            options = dataclasses.replace(options, holder=known.holders.get(holder), source=known.sources.get(source))
            result = import_rsl(text, str(file), options)
            _write_license_toml(result, out)
            book, added = ledger.apply_licenses(result.toml, str(out or f"{file} (RSL import)"))
    report = [f"{len(result.unmapped)} RSL terms not imported:"] + [f"  - {item}" for item in result.unmapped]
    typer.echo("\n".join(report) if result.unmapped else "every RSL payment term was imported",
               err=out is None)
    if apply:
        typer.echo(f"{file}: {added} new license versions; {len(book.versions)} versions, "
                   f"{len(book.sources)} sources, {len(book.holders)} holders in the ledger", err=out is None)


def _write_license_toml(result, out: Optional[Path]) -> None:
    if out is not None:
        out.write_text(result.toml)
        typer.echo(f"wrote {out}: license {result.license_id} in {result.currency}")
    else:
        typer.echo(result.toml, nl=False)


@app.command()
def emit(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON Lines (.jsonl) or CSV (.csv) of usage events."),
    all_or_nothing: bool = typer.Option(False, "--all-or-nothing", help="Validate the whole file first; send nothing if any row is bad."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate only; send nothing and do not connect."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress",
                                            help="Progress bar on stderr (default: on a terminal, for 10,000+ rows)."),
    schema_registry_url: Optional[str] = typer.Option(
        None, "--schema-registry-url", envvar="LEARNRIGHT_SCHEMA_REGISTRY_URL",
        help="Confluent-compatible schema registry: records get Confluent framing instead of single-object."),
) -> None:
    """Validate every row of FILE, report each bad row by line and field, send the good ones.

    Exits 1 when any row was rejected, 2 when Kafka could not be reached or did not
    acknowledge a record.
    """
    from consumers.batch import usage_limits
    from consumers.kafka_admin import ensure_topics
    from learnright.runtime import bootstrap_servers
    from producers.emitter import UsageEmitter
    from producers.files import count_rows, send_file

    settings = settings_for()
    limits = usage_limits(settings.consumer)  # refuse here what the ledger would quarantine

    def connect() -> UsageEmitter:
        servers = bootstrap_servers(settings)
        ensure_topics(servers, settings.kafka.topics.usage, settings.kafka.partitions,
                      replication_factor=settings.kafka.replication_factor,
                      min_insync_replicas=settings.kafka.min_insync_replicas)
        return UsageEmitter(servers, topics=settings.kafka.topics, schema_registry_url=schema_registry_url,
                            limits=limits)

    def report(problem: LearnrightError) -> None:
        typer.secho(f"rejected: {problem}", fg=typer.colors.YELLOW, err=True)

    if progress is None:
        progress = sys.stderr.isatty() and count_rows(file) >= 10_000
    outcome = send_file(file, connect, report=report, all_or_nothing=all_or_nothing, dry_run=dry_run,
                        progress=progress, limits=limits)
    note = " (dry run: nothing sent)" if dry_run else (
        " (--all-or-nothing: nothing sent because rows were rejected)" if outcome.held_back else "")
    typer.echo(f"{file}: {outcome.sent} sent, {outcome.rejected} rejected ({outcome.rows} rows, {outcome.valid} valid){note}")
    if outcome.failure is not None:  # could not run to the end: exit 2, after the count of what was sent
        raise outcome.failure
    if outcome.rejected:
        raise typer.Exit(1)


@app.command()
def consume(
    until_idle: bool = typer.Option(False, "--until-idle", help="Exit once every partition is drained."),
    db: Optional[Path] = DbOption,
) -> None:
    """Consume the usage topics into the ledger."""
    from consumers.service import LedgerConsumer
    from learnright.runtime import with_bootstrap
    from ledger.storage.store import Ledger

    settings = with_bootstrap(settings_for(db))
    with Ledger.open(settings.ledger_at) as ledger:
        consumer = LedgerConsumer(settings, ledger)
        signal.signal(signal.SIGTERM, lambda *_: consumer.stop_event.set())
        try:
            stats = consumer.run(until_idle=until_idle)
        finally:
            consumer.close()
    typer.echo(f"consumed {stats.records} records: {stats.accepted} accepted ({stats.accruals} accruals), "
               f"{stats.duplicates} duplicates, {stats.quarantined} quarantined, into {settings.ledger_at}")


@app.command()
def serve(db: Optional[Path] = DbOption) -> None:
    """Run the ledger service: consume continuously, close months on schedule, serve the HTTP API.

    Logs are JSON lines on stderr. The API binds LEARNRIGHT_HTTP__HOST:LEARNRIGHT_HTTP__PORT
    (127.0.0.1:8080); a snapshot for auditors is published after each close.
    """
    from consumers.scheduler import LedgerService
    from ground.logs import configure_json_logging
    from learnright.runtime import with_bootstrap
    from learnright.server import serve as serve_all
    from ledger.storage.store import Ledger

    configure_json_logging()
    settings = with_bootstrap(settings_for(db))
    with Ledger.open(settings.ledger_at) as ledger:
        service = LedgerService(settings, ledger)
        signal.signal(signal.SIGTERM, lambda *_: service.stop())
        signal.signal(signal.SIGINT, lambda *_: service.stop())
        serve_all(settings, ledger, service, on_listening=lambda url: typer.echo(
            f"serving {settings.ledger_at} from {settings.kafka.bootstrap_servers}; API and holder page at {url}"
            " (docs at /docs); Ctrl-C stops"))


@app.command()
def close(
    period: str = typer.Option(..., "--period", help="Month to close, YYYY-MM."),
    db: Optional[Path] = DbOption,
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the statements (JSON, CSV, PDF) and DSR reports here."),
    publish: bool = typer.Option(True, "--publish/--no-publish",
                                 help="Publish StatementClosed events after the close (pending ones stay in the outbox)."),
    catch_up: bool = typer.Option(True, "--catch-up/--no-catch-up",
                                  help="First book everything in the usage topics (as `consume --until-idle`);"
                                       " --no-catch-up closes at what the ledger has booked already."),
) -> None:
    """Close a month: sign and store its statements (idempotent; earlier open months close first).

    First books what Kafka holds (when a broker is configured or the project's own
    runs) and retries the quarantined records whose cause may be gone (a correction's
    original, a license, a source), so the close's cut-off covers the log as it is now.
    Then publishes a StatementClosed event per new statement, and a snapshot for auditors.
    Exits 1 when the close succeeded but Kafka did not take the events: they stay pending
    for the next publish.

    While `learnright serve` runs, the service does all of this between two batches (its
    admin socket), after booking what Kafka held when the close was asked for.
    """
    from consumers.publisher import publish_statements
    from consumers.replay import closes_now
    from learnright.admin.client import find_service
    from learnright.admin.errors import error_from_json
    from learnright.admin.operations import Tools, close_month
    from learnright.runtime import bootstrap_servers
    from ledger.core.signing import load_or_create_key
    from ledger.storage.store import Ledger

    settings = settings_for(db)
    client = find_service(settings)
    if client is not None:
        with client:
            answer = client.call("close", {"period": period, "out": str(out.absolute()) if out else None,
                                           "publish": publish, "catch_up": catch_up})
        if answer["caught_up"]:
            typer.echo("caught up before closing: the running service booked what Kafka held when the close was"
                       " asked for")
        elif not catch_up and not answer["already_closed"]:
            typer.echo("--no-catch-up: closing at what the ledger has booked, not at the end of the usage topics")
    else:
        signer = load_or_create_key(settings.signing_key)
        now = datetime.now(timezone.utc)
        with Ledger.open(settings.ledger_at) as ledger:
            if closes_now(ledger, period, now):
                typer.echo(_catch_up(settings, ledger, catch_up))
            answer = close_month(
                ledger, Tools.for_settings(settings), period=period, now=now, signer=signer, out=out,
                publish=(lambda: publish_statements(ledger, settings, bootstrap=bootstrap_servers)) if publish else None,
                snapshots_dir=settings.snapshots_dir, keep_last=settings.snapshots.keep_last)
    retried, files, problem = answer["retried"], answer["files"], answer["problem"]
    if retried["attempted"]:
        typer.echo(f"retried {retried['attempted']} quarantined records before the close: {retried['booked']} booked,"
                   f" {retried['still_quarantined']} still quarantined")
    state = "was already closed" if answer["already_closed"] else f"closed ({', '.join(answer['closed_periods'])})"
    typer.echo(f"{period} {state}: {answer['statements']} statements" + (f", {len(files)} files in {out}:" if files else ""))
    for path in files:  # exactly the files written, one per line
        typer.echo(f"  {path}")
    if publish and problem is None:
        typer.echo(f"published {answer['published']} StatementClosed events to"
                   f" {answer['topic'] or settings.kafka.topics.statements}")
    if answer["snapshot"] is not None:
        typer.echo(f"published snapshot {answer['snapshot']['snapshot_id']} for auditors:"
                   f" {answer['snapshot']['database']}")
    if problem is not None:
        typer.secho(f"warning: {answer['pending']} StatementClosed events are pending, not lost: {problem['message']}."
                    " `learnright statements publish` or `learnright serve` sends them", fg=typer.colors.YELLOW, err=True)
    if answer["unwritten"] is not None:
        raise error_from_json(answer["unwritten"])
    if problem is not None:
        raise typer.Exit(1)


def _catch_up(settings, ledger, catch_up: bool) -> str:
    """Books what the usage topics hold before a close, unless told not to; says what it did."""
    from consumers.service import consume_until_idle
    from learnright.runtime import bootstrap_servers

    if not catch_up:
        return "--no-catch-up: closing at what the ledger has booked, not at the end of the usage topics"
    try:
        servers = bootstrap_servers(settings)
    except BrokerError:
        return "no Kafka broker configured (nor the project's own running): closing at what the ledger has booked"
    stats = consume_until_idle(
        settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": servers})}),
        ledger)
    return (f"caught up before closing: consumed {stats.records} records: {stats.accepted} accepted"
            f" ({stats.accruals} accruals), {stats.duplicates} duplicates, {stats.quarantined} quarantined")


@app.command()
def rebuild(
    db: Optional[Path] = DbOption,
    into: Optional[Path] = typer.Option(None, "--into", help="Build the scratch ledger in this new file and keep it"
                                        " (default: a temporary file, removed after)."),
) -> None:
    """Rebuild the ledger from the usage topics and compare every close: roots, statements, entries.

    Replays the topics from their earliest offsets into a scratch ledger, applying the
    same license documents where they were applied and closing at each close's cut-off.
    Reports each close as a match or its first divergence (statement, line, entry).
    Exits 0 when nothing diverges, 1 on a divergence, 3 when a close could not be
    rebuilt because Kafka no longer holds its records. The live ledger is only read:
    point --db at a snapshot while `learnright serve` holds the file.
    """
    import tempfile

    from consumers.rebuild import DIVERGES, rebuild as rebuild_ledger
    from learnright.runtime import with_bootstrap
    from ledger.core.signing import generate_signer, load_key
    from ledger.storage.store import Ledger

    settings = with_bootstrap(settings_for(db))
    if into is not None and into.exists():
        raise ConfigError(f"--into {into} exists already; the rebuild needs a new file")
    if settings.signing_key.exists():
        signer = load_key(settings.signing_key)
    else:
        signer = generate_signer()
        typer.echo(f"no signing key at {settings.signing_key}: the rebuilt statements are signed with a throwaway"
                   " key (signatures are not compared; content hashes and roots are)")
    with tempfile.TemporaryDirectory(prefix="learnright-rebuild-") as scratch_dir:
        target = into or Path(scratch_dir) / "rebuild.duckdb"
        with Ledger.open(settings.ledger_at, read_only=True) as live, Ledger.open(target) as scratch:
            report = rebuild_ledger(settings, live, scratch, signer)
    for check in report.closes:
        for line in check.lines():
            typer.secho(line, fg=typer.colors.RED if check.verdict == DIVERGES else None)
    diverged = sum(check.verdict == DIVERGES for check in report.closes)
    closes = f"{len(report.closes)} close" + ("" if len(report.closes) == 1 else "s")
    typer.echo(f"{settings.ledger_at}: {closes} rebuilt from {report.records} records"
               f" ({', '.join(settings.kafka.topics.usage)}): {diverged} diverge"
               + (f"; scratch ledger kept at {into}" if into else ""))
    if report.diverged:
        raise typer.Exit(1)
    if report.incomplete:
        raise typer.Exit(3)


@quarantine_app.command("list")
def quarantine_list(db: Optional[Path] = DbOption) -> None:
    """List open quarantined records: where they were read, why they were refused."""
    from learnright.admin.client import run

    rows = run(settings_for(db), "quarantine_list")["records"]
    typer.echo("id\ttopic[partition]@offset\tcode\terror\treason")
    for r in rows:
        typer.echo(f"{r['quarantine_id']}\t{r['topic']}[{r['partition']}]@{r['offset']}\t{r['error_code']}"
                   f"\t{r['error_class']}\t{r['reason']}")
    typer.echo(f"{len(rows)} open")


@quarantine_app.command("replay")
def quarantine_replay(
    ids: Optional[list[int]] = typer.Argument(None, help="Quarantine ids to replay (default: all open)."),
    error: Optional[str] = typer.Option(None, "--error", help="Only records refused with this error code, as"
                                        " `quarantine list` shows it (no_license); a class name works too."),
    db: Optional[Path] = DbOption,
) -> None:
    """Replay quarantined records into the ledger, once, after their cause is fixed.

    While `learnright serve` runs, the service replays them between two batches (its admin socket).
    """
    from learnright.admin.client import run

    outcome = run(settings_for(db), "quarantine_replay", ids=ids or None, error=error)
    still_quarantined = outcome["still_quarantined"]
    for still in still_quarantined:
        typer.secho(f"still quarantined {still['quarantine_id']}: {still['error_code']} ({still['error_class']}):"
                    f" {still['reason']}", fg=typer.colors.YELLOW)
    typer.echo(f"replayed {outcome['attempted']}: {outcome['booked']} booked, {outcome['duplicates']} duplicates, "
               f"{len(still_quarantined)} still quarantined")


@app.command("verify")
def verify_command(db: Optional[Path] = DbOption) -> None:
    """Recompute every entry's hash and every close's root, name the first broken place, reconcile statements."""
    from ledger.storage.store import Ledger
    from ledger.services.verify import verify

    settings = settings_for(db)
    with Ledger.open(settings.ledger_at, read_only=True) as ledger:
        report = verify(ledger)
    for problem in report.problems:
        typer.secho(f"FAIL {problem}", fg=typer.colors.RED)
    verdict = "OK" if report.ok else f"{len(report.problems)} problems"
    typer.echo(f"{settings.ledger_at}: {report.entries} entries, {report.closes} closes, last close root"
               f" {report.root or '-'}, {report.statements} statements: {verdict}")
    if not report.ok:
        raise typer.Exit(1)
