"""The benchmark and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from learnright.cli.groups import app, settings_for


@app.command()
def bench(
    events: Optional[int] = typer.Option(
        None, help="Usage events to fill the ingest topic with (default 1,000,000); given, it also sizes every"
                   " other benchmark (a smoke run)."),
    rounds: int = typer.Option(2, help="Alternating rounds of baseline and pipeline; the best of each counts."),
    only: str = typer.Option("", help="Comma-separated benchmarks to run (default: all of "
                                      "ingest, close, produce, consumer, storage)."),
    report: str = typer.Option("docs/benchmarks.md", help="Where to write the figures ('' for nowhere)."),
    against: Optional[str] = typer.Option(
        None, "--against", metavar="REV",
        help="Instead: run this git revision's pipeline (e.g. HEAD~1) and the working tree's side by side,"
             " and add the comparison to the report."),
) -> None:
    """Measure every figure of the job side by side (one `bench NAME ratio=R rate=N/s` line each), or the
    ingestion pipeline against an earlier revision."""
    from learnright.bench import SUITES, run_compare, run_suites

    target = Path(report) if report else None
    if against is not None:
        run_compare(settings_for(), against=against, events=events or 1_000_000, rounds=rounds, report=target,
                    echo=typer.echo)
    else:
        suites = tuple(name.strip() for name in only.split(",") if name.strip()) or SUITES
        run_suites(settings_for(), suites=suites, events=events, rounds=rounds, report=target, echo=typer.echo)


@app.command("bench-scale")
def bench_scale(
    events: int = typer.Option(200_000, help="Usage events to fill the topics with."),
    rounds: int = typer.Option(2, help="Rounds of the three variants in turn; the best of each counts."),
    report: str = typer.Option("docs/scaling.md", help="Where to write the figures ('' for nowhere)."),
) -> None:
    """Ingest into one ledger file, a lake with one writer and a lake with two, side by side (needs PostgreSQL)."""
    from learnright.bench_scale import run_scale

    run_scale(settings_for(), events=events, rounds=rounds, report=Path(report) if report else None, echo=typer.echo)


@app.command()
def demo(
    events: int = typer.Option(20_000, help="Synthetic events to emit."),
    workdir: Path = typer.Option(Path("var/demo"), help="Where the demo's ledger, broker and statements go."),
) -> None:
    """The main job end to end: broker, licenses, a month of usage, consume, close, statements."""
    from learnright.demo import run_demo

    run_demo(settings_for(), workdir=workdir, events=events, echo=typer.echo)
