"""The `learnright` command. Each subcommand calls a service function; none holds logic."""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from learnright import broker as broker_runtime
from learnright.errors import ConfigError, LearnrightError
from learnright.settings import Settings

app = typer.Typer(help="Learnright: usage-metered royalty ledger.", no_args_is_help=True, pretty_exceptions_enable=False)
kafka_app = typer.Typer(help="Run the project's own Kafka broker (KRaft, 127.0.0.1).", no_args_is_help=True)
licenses_app = typer.Typer(help="Apply license files to the ledger.", no_args_is_help=True)
statements_app = typer.Typer(help="List, fetch and verify closed statements.", no_args_is_help=True)
keys_app = typer.Typer(help="The Ed25519 key that signs statements.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Inspect and replay records that could not be booked.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(licenses_app, name="licenses")
app.add_typer(statements_app, name="statements")
app.add_typer(keys_app, name="keys")
app.add_typer(quarantine_app, name="quarantine")

DbOption = typer.Option(None, "--db", help="Ledger file (default ./var/ledger.duckdb, or LEARNRIGHT_DB).")


def _settings(db: Optional[Path] = None) -> Settings:
    settings = Settings()
    return settings.model_copy(update={"db": db}) if db is not None else settings


def _fail(exc: LearnrightError) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def main() -> None:  # pragma: no cover - console entry point wrapper
    app()


@kafka_app.command("up")
def kafka_up() -> None:
    """Start the broker (resolving its jars with Maven on first use) and print its address."""
    settings = _settings()
    try:
        state = broker_runtime.up(settings.broker.state_dir, version=settings.broker.kafka_version,
                                  cache_dir=settings.broker.cache_dir, heap=settings.broker.heap,
                                  timeout_s=settings.broker.start_timeout_s)
    except LearnrightError as exc:
        _fail(exc)
    typer.echo(f"Kafka {state.kafka_version} up at {state.bootstrap_servers} (pid {state.pid}, logs {state.log})")


@kafka_app.command("down")
def kafka_down() -> None:
    """Stop the broker started by `kafka up`."""
    ran = broker_runtime.down(_settings().broker.state_dir)
    typer.echo("Kafka stopped" if ran else "no broker was running")


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the broker runs, where, and where its logs are."""
    settings = _settings()
    state = broker_runtime.read_state(settings.broker.state_dir.resolve())
    if state is None or not broker_runtime.is_alive(state.pid):
        typer.echo("Kafka: not running")
        raise typer.Exit(1)
    typer.echo(f"Kafka {state.kafka_version}: running at {state.bootstrap_servers} (pid {state.pid}, logs {state.log})")


@licenses_app.command("apply")
def licenses_apply(file: Path = typer.Argument(..., exists=True, dir_okay=False), db: Optional[Path] = DbOption) -> None:
    """Apply a license TOML file: new versions are added, known ones kept, none edited."""
    from ledger.store import Ledger

    settings = _settings(db)
    try:
        with Ledger.open(settings.db) as ledger:
            book, added = ledger.apply_licenses(file.read_text(), str(file))
    except LearnrightError as exc:
        _fail(exc)
    typer.echo(f"{file}: {added} new license versions; {len(book.versions)} versions, "
               f"{len(book.sources)} sources, {len(book.holders)} holders in the ledger")


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
    from ledger.rsl import ImportOptions, import_rsl
    from ledger.store import Ledger

    try:
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
            with Ledger.open(_settings(db).db) as ledger:
                # Restate the ledger's holder and source as they are: applying replaces them.
                known = ledger.load_book()
                options = dataclasses.replace(options, holder=known.holders.get(holder), source=known.sources.get(source))
                result = import_rsl(text, str(file), options)
                _write_license_toml(result, out)
                book, added = ledger.apply_licenses(result.toml, str(out or f"{file} (RSL import)"))
    except LearnrightError as exc:
        _fail(exc)
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
    from learnright.admin import ensure_topics
    from learnright.runtime import bootstrap_servers
    from producers.emitter import UsageEmitter
    from producers.files import count_rows, send_file

    settings = _settings()

    def connect() -> UsageEmitter:
        servers = bootstrap_servers(settings)
        ensure_topics(servers, settings.kafka.topics.usage, settings.kafka.partitions)
        return UsageEmitter(servers, topics=settings.kafka.topics, schema_registry_url=schema_registry_url)

    def report(problem: LearnrightError) -> None:
        typer.secho(f"rejected: {problem}", fg=typer.colors.YELLOW, err=True)

    if progress is None:
        progress = sys.stderr.isatty() and count_rows(file) >= 10_000
    try:
        outcome = send_file(file, connect, report=report, all_or_nothing=all_or_nothing, dry_run=dry_run,
                            progress=progress)
    except LearnrightError as exc:
        _fail(exc)
    note = " (dry run: nothing sent)" if dry_run else (
        " (--all-or-nothing: nothing sent because rows were rejected)" if outcome.held_back else "")
    typer.echo(f"{file}: {outcome.sent} sent, {outcome.rejected} rejected ({outcome.rows} rows, {outcome.valid} valid){note}")
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
    from ledger.store import Ledger

    try:
        settings = with_bootstrap(_settings(db))
        with Ledger.open(settings.db) as ledger:
            consumer = LedgerConsumer(settings, ledger)
            signal.signal(signal.SIGTERM, lambda *_: consumer.stop_event.set())
            try:
                stats = consumer.run(until_idle=until_idle)
            finally:
                consumer.close()
    except LearnrightError as exc:
        _fail(exc)
    typer.echo(f"consumed {stats.records} records: {stats.accepted} accepted ({stats.accruals} accruals), "
               f"{stats.duplicates} duplicates, {stats.quarantined} quarantined, into {settings.db}")


@app.command()
def serve(db: Optional[Path] = DbOption) -> None:
    """Run the ledger service: consume continuously, close months on schedule, serve the HTTP API.

    Logs are JSON lines on stderr. The API binds LEARNRIGHT_HTTP__HOST:LEARNRIGHT_HTTP__PORT
    (127.0.0.1:8080); a snapshot for auditors is published after each close.
    """
    from consumers.scheduler import LedgerService
    from learnright.logs import configure_json_logging
    from learnright.runtime import with_bootstrap
    from learnright.server import serve as serve_all
    from ledger.store import Ledger

    configure_json_logging()
    try:
        settings = with_bootstrap(_settings(db))
        with Ledger.open(settings.db) as ledger:
            service = LedgerService(settings, ledger)
            signal.signal(signal.SIGTERM, lambda *_: service.stop())
            signal.signal(signal.SIGINT, lambda *_: service.stop())
            serve_all(settings, ledger, service, on_listening=lambda url: typer.echo(
                f"serving {settings.db} from {settings.kafka.bootstrap_servers}; API and holder page at {url}"
                " (docs at /docs); Ctrl-C stops"))
    except LearnrightError as exc:
        _fail(exc)


@app.command()
def close(
    period: str = typer.Option(..., "--period", help="Month to close, YYYY-MM."),
    db: Optional[Path] = DbOption,
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the statements (JSON, CSV, PDF) and DSR reports here."),
    publish: bool = typer.Option(True, "--publish/--no-publish",
                                 help="Publish StatementClosed events after the close (pending ones stay in the outbox)."),
) -> None:
    """Close a month: sign and store its statements (idempotent; earlier open months close first).

    Then publishes a StatementClosed event per new statement. Exits 1 when the close
    succeeded but Kafka did not take the events: they stay pending for the next publish.
    """
    from consumers.publisher import publish_statements
    from ledger.close import close_period, write_period_files
    from ledger.signing import load_or_create_key
    from ledger.store import Ledger

    settings = _settings(db)
    problem = None
    try:
        signer = load_or_create_key(settings.signing_key)
        with Ledger.open(settings.db) as ledger:
            outcome = close_period(ledger, period, now=datetime.now(timezone.utc), signer=signer)
            files = write_period_files(ledger, period, out) if out else []
            if publish:
                try:
                    published = publish_statements(ledger, settings).published
                except LearnrightError as exc:
                    problem = exc
            pending = len(ledger.unpublished_statements())
    except LearnrightError as exc:
        _fail(exc)
    state = "was already closed" if outcome.already_closed else f"closed ({', '.join(outcome.closed_periods)})"
    typer.echo(f"{period} {state}: {len(outcome.statement_ids)} statements" + (f", {len(files)} files in {out}" if files else ""))
    if publish and problem is None:
        typer.echo(f"published {len(published)} StatementClosed events to {settings.kafka.topics.statements}")
    if problem is not None:
        typer.secho(f"warning: {pending} StatementClosed events are pending, not lost: {problem}."
                    " `learnright statements publish` or `learnright serve` sends them", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(1)


@statements_app.command("list")
def statements_list(
    period: Optional[str] = typer.Option(None, "--period"),
    holder: Optional[str] = typer.Option(None, "--holder"),
    db: Optional[Path] = DbOption,
) -> None:
    """List closed statements: id, period, holder, currency, payable, carry."""
    from ledger.money import at_minor_unit
    from ledger.store import Ledger

    settings = _settings(db)
    try:
        with Ledger.open(settings.db, read_only=True) as ledger:
            rows = ledger.statement_rows(period=period, holder_id=holder)
    except LearnrightError as exc:
        _fail(exc)
    typer.echo("statement_id\tperiod\tholder\tcurrency\taccrued\tpayable\tcarry_out")
    for sid, p, h, currency, accrued, _carry_in, payable, carry_out, _hash in rows:
        typer.echo(f"{sid}\t{p}\t{h}\t{currency}\t{accrued.normalize():f}\t{at_minor_unit(payable, currency):f}"
                   f"\t{carry_out.normalize():f}")


@statements_app.command("get")
def statements_get(
    statement_id: str,
    format: str = typer.Option("json", "--format", help="json or csv"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write to this file instead of stdout."),
    db: Optional[Path] = DbOption,
) -> None:
    """Print (or write) one statement: JSON is the signed file a holder checks with `statements verify`."""
    from ledger.close import statement_file
    from ledger.statements import render_csv
    from ledger.store import Ledger

    if format not in ("json", "csv"):
        typer.secho(f"error: --format must be json or csv (got {format!r})", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    settings = _settings(db)
    try:
        with Ledger.open(settings.db, read_only=True) as ledger:
            found = ledger.statement_document(statement_id)
            body = None if found is None else (
                statement_file(ledger, statement_id) if format == "json" else render_csv(json.loads(found[0])))
    except LearnrightError as exc:
        _fail(exc)
    if body is None:
        typer.secho(f"error: no statement {statement_id!r} in {settings.db}", fg=typer.colors.RED, err=True)
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
    """Check a JSON statement: format version, content hash, chain head, Ed25519 signature, every byte.

    Exits 1, naming what does not match, when anything was changed.
    """
    from ledger.envelope import verify_envelope
    from ledger.signing import load_key, parse_public_key

    try:
        if public_key is not None:
            key = parse_public_key(public_key.read_bytes(), str(public_key))
        else:
            key = load_key(_settings().signing_key).key.public_key()
        data = file.read_bytes()
    except OSError as exc:
        _fail(LearnrightError(f"cannot read {exc.filename}: {exc.strerror}"))
    except LearnrightError as exc:
        _fail(exc)
    try:
        checked = verify_envelope(data, key, str(file))
    except LearnrightError as exc:
        typer.secho(f"FAIL {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(f"OK {file}: statement {checked.statement_id} ({checked.period}, {checked.holder_id},"
               f" {checked.currency} {checked.payable} payable), format {checked.format_version},"
               f" content hash {checked.content_hash}, signed by {checked.key_fingerprint}")


@statements_app.command("publish")
def statements_publish(db: Optional[Path] = DbOption) -> None:
    """Send the pending StatementClosed events (those Kafka has not acknowledged yet)."""
    from consumers.publisher import publish_statements
    from ledger.store import Ledger

    settings = _settings(db)
    try:
        with Ledger.open(settings.db) as ledger:
            outcome = publish_statements(ledger, settings)
    except LearnrightError as exc:
        _fail(exc)
    typer.echo(f"published {len(outcome.published)} StatementClosed events to {outcome.topic}")


@keys_app.command("create")
def keys_create() -> None:
    """Create the statement signing key (mode 0600) at LEARNRIGHT_SIGNING_KEY; an existing key is kept."""
    from ledger.signing import create_key

    settings = _settings()
    try:
        signer = create_key(settings.signing_key)
    except LearnrightError as exc:
        _fail(exc)
    typer.echo(f"created {settings.signing_key} ({signer.fingerprint}); publish `learnright keys public`")


@keys_app.command("public")
def keys_public() -> None:
    """Print the public key (PEM) that holders check statements with, created on first use."""
    from ledger.signing import load_or_create_key

    settings = _settings()
    try:
        signer = load_or_create_key(settings.signing_key)
    except LearnrightError as exc:
        _fail(exc)
    typer.echo(f"# statement signing key {signer.fingerprint}", err=True)
    sys.stdout.write(signer.public_pem())


@quarantine_app.command("list")
def quarantine_list(db: Optional[Path] = DbOption) -> None:
    """List open quarantined records: where they were read, why they were refused."""
    from ledger.store import Ledger

    settings = _settings(db)
    try:
        with Ledger.open(settings.db, read_only=True) as ledger:
            rows = ledger.open_quarantine()
    except LearnrightError as exc:
        _fail(exc)
    typer.echo("id\ttopic[partition]@offset\terror\treason")
    for qid, topic, partition, offset, _key, _value, _headers, error_class, reason, *_ in rows:
        typer.echo(f"{qid}\t{topic}[{partition}]@{offset}\t{error_class}\t{reason}")
    typer.echo(f"{len(rows)} open")


@quarantine_app.command("replay")
def quarantine_replay(
    ids: Optional[list[int]] = typer.Argument(None, help="Quarantine ids to replay (default: all open)."),
    error_class: Optional[str] = typer.Option(None, "--error", help="Only records refused with this error class."),
    db: Optional[Path] = DbOption,
) -> None:
    """Replay quarantined records into the ledger, once, after their cause is fixed."""
    from consumers.replay import replay_quarantine
    from ledger.store import Ledger

    settings = _settings(db)
    try:
        with Ledger.open(settings.db) as ledger:
            outcome = replay_quarantine(ledger, ids or None, error_class=error_class)
    except LearnrightError as exc:
        _fail(exc)
    for qid, error, reason in outcome.still_quarantined:
        typer.secho(f"still quarantined {qid}: {error}: {reason}", fg=typer.colors.YELLOW)
    typer.echo(f"replayed {outcome.attempted}: {outcome.booked} booked, {outcome.duplicates} duplicates, "
               f"{len(outcome.still_quarantined)} still quarantined")


@app.command("verify")
def verify_command(db: Optional[Path] = DbOption) -> None:
    """Recompute the hash chain, find the first broken link, reconcile statements to the ledger."""
    from ledger.store import Ledger
    from ledger.verify import verify

    settings = _settings(db)
    try:
        with Ledger.open(settings.db, read_only=True) as ledger:
            report = verify(ledger)
    except LearnrightError as exc:
        _fail(exc)
    for problem in report.problems:
        typer.secho(f"FAIL {problem}", fg=typer.colors.RED)
    verdict = "OK" if report.ok else f"{len(report.problems)} problems"
    typer.echo(f"{settings.db}: {report.entries} entries, chain head {report.chain_head}, "
               f"{report.statements} statements: {verdict}")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def bench(
    events: int = typer.Option(1_000_000, help="Usage events to fill the topic with."),
    rounds: int = typer.Option(2, help="Alternating rounds of baseline and pipeline; the best of each counts."),
    report: str = typer.Option("docs/benchmarks.md", help="Where to write the figures ('' for nowhere)."),
) -> None:
    """Measure the ingestion pipeline against raw kafka-python consumption, side by side."""
    from learnright.bench import run_bench

    try:
        run_bench(_settings(), events=events, rounds=rounds, report=Path(report) if report else None, echo=typer.echo)
    except LearnrightError as exc:
        _fail(exc)


@app.command()
def demo(
    events: int = typer.Option(20_000, help="Synthetic events to emit."),
    workdir: Path = typer.Option(Path("var/demo"), help="Where the demo's ledger, broker and statements go."),
) -> None:
    """The main job end to end: broker, licenses, a month of usage, consume, close, statements."""
    from learnright.demo import run_demo

    try:
        run_demo(_settings(), workdir=workdir, events=events, echo=typer.echo)
    except LearnrightError as exc:
        _fail(exc)


# -- issue 7: API tokens, auditor SQL, snapshots -----------------------------------------

tokens_app = typer.Typer(help="API tokens for rights holders and auditors (stored as hashes).", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")


@tokens_app.command("create")
def tokens_create(
    holder: Optional[str] = typer.Option(None, "--holder", help="The rights holder whose statements it reads."),
    auditor: bool = typer.Option(False, "--auditor", help="An auditor token: SQL and snapshots, every holder."),
    expires_in: Optional[str] = typer.Option(None, "--expires-in", help="Lifetime, e.g. 90d, 12h, 2w (default: none)."),
    label: str = typer.Option("", "--label", help="A note to recognise the token by in `tokens list`."),
    db: Optional[Path] = DbOption,
) -> None:
    """Create a token and print it once: only its SHA-256 is stored."""
    from ledger.store import Ledger
    from ledger.tokens import AUDITOR, HOLDER, create_token, parse_duration

    settings = _settings(db)
    try:
        if auditor == bool(holder):
            raise ConfigError("give exactly one of --holder H or --auditor")
        lifetime = parse_duration(expires_in) if expires_in else None
        with Ledger.open(settings.db) as ledger:
            issued = create_token(ledger, role=AUDITOR if auditor else HOLDER, holder_id=holder,
                                  now=datetime.now(timezone.utc), expires_in=lifetime, label=label)
    except LearnrightError as exc:
        _fail(exc)
    record = issued.record
    expiry = record.expires_at.isoformat() if record.expires_at else "never"
    typer.echo(f"created {record.token_id} ({record.role}{' ' + record.holder_id if record.holder_id else ''},"
               f" expires {expiry}); shown once, keep it secret:", err=True)
    typer.echo(issued.token)


@tokens_app.command("revoke")
def tokens_revoke(token_id: str, db: Optional[Path] = DbOption) -> None:
    """Revoke a token from now on (appended; the token's history stays)."""
    from ledger.store import Ledger
    from ledger.tokens import revoke_token

    settings = _settings(db)
    try:
        with Ledger.open(settings.db) as ledger:
            record = revoke_token(ledger, token_id, now=datetime.now(timezone.utc))
    except LearnrightError as exc:
        _fail(exc)
    typer.echo(f"{record.token_id} revoked at {record.revoked_at.isoformat()}")


@tokens_app.command("list")
def tokens_list(db: Optional[Path] = DbOption) -> None:
    """List tokens: id, role, holder, state, created, expires (never the secrets)."""
    from ledger.store import Ledger
    from ledger.tokens import list_tokens

    settings = _settings(db)
    now = datetime.now(timezone.utc)
    try:
        with Ledger.open(settings.db, read_only=True) as ledger:
            records = list_tokens(ledger)
    except LearnrightError as exc:
        _fail(exc)
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
    from ledger.snapshots import latest_snapshot, read_snapshot
    from ledger.sql import SqlLimits, render, run_query

    settings = _settings(db)
    limits = SqlLimits(time_limit_s=settings.sql.time_limit_s, row_limit=settings.sql.row_limit,
                       memory_limit=settings.sql.memory_limit)
    try:
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
    except LearnrightError as exc:
        _fail(exc)
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
    from ledger.snapshots import publish_snapshot
    from ledger.store import Ledger

    settings = _settings(db)
    directory = into or settings.snapshots_dir
    try:
        with Ledger.open(settings.db) as ledger:
            snapshot = publish_snapshot(ledger, directory, now=datetime.now(timezone.utc))
    except LearnrightError as exc:
        _fail(exc)
    typer.echo(f"snapshot {snapshot.snapshot_id}: {snapshot.database} (entries up to {snapshot.last_entry_id},"
               f" chain head {snapshot.chain_head[:16]}...), Parquet in {snapshot.directory / 'parquet'}")
