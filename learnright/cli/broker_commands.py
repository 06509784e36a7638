"""`learnright kafka up|down|status`: the project's own broker."""

from __future__ import annotations

import typer

from learnright import broker as broker_runtime
from learnright.cli.groups import kafka_app, settings_for


@kafka_app.command("up")
def kafka_up() -> None:
    """Start the broker (resolving its jars with Maven on first use) and print its address."""
    settings = settings_for()
    state = broker_runtime.up(settings.broker.state_dir, version=settings.broker.kafka_version,
                              cache_dir=settings.broker.cache_dir, heap=settings.broker.heap,
                              timeout_s=settings.broker.start_timeout_s)
    typer.echo(f"Kafka {state.kafka_version} up at {state.bootstrap_servers} (pid {state.pid}, logs {state.log})")


@kafka_app.command("down")
def kafka_down() -> None:
    """Stop the broker started by `kafka up`."""
    ran = broker_runtime.down(settings_for().broker.state_dir)
    typer.echo("Kafka stopped" if ran else "no broker was running")


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the broker runs, where, and where its logs are."""
    settings = settings_for()
    state = broker_runtime.read_state(settings.broker.state_dir.resolve())
    if state is None or not broker_runtime.is_alive(state.pid):
        typer.echo("Kafka: not running")
        raise typer.Exit(1)
    typer.echo(f"Kafka {state.kafka_version}: running at {state.bootstrap_servers} (pid {state.pid}, logs {state.log})")
