"""The benchmark and the demo."""

from __future__ import annotations

from pathlib import Path

import typer

from learnright.cli.groups import app, settings_for


@app.command()
def bench(
    events: int = typer.Option(1_000_000, help="Usage events to fill the topic with."),
    rounds: int = typer.Option(2, help="Alternating rounds of baseline and pipeline; the best of each counts."),
    report: str = typer.Option("docs/benchmarks.md", help="Where to write the figures ('' for nowhere)."),
) -> None:
    """Measure the ingestion pipeline against raw kafka-python consumption, side by side."""
    from learnright.bench import run_bench

    run_bench(settings_for(), events=events, rounds=rounds, report=Path(report) if report else None, echo=typer.echo)


@app.command()
def demo(
    events: int = typer.Option(20_000, help="Synthetic events to emit."),
    workdir: Path = typer.Option(Path("var/demo"), help="Where the demo's ledger, broker and statements go."),
) -> None:
    """The main job end to end: broker, licenses, a month of usage, consume, close, statements."""
    from learnright.demo import run_demo

    run_demo(settings_for(), workdir=workdir, events=events, echo=typer.echo)
