"""`learnright kafka up|down|status`: the project's own broker.

`up` listens on the fixed ``broker.port`` (127.0.0.1:19092 unless
``LEARNRIGHT_BROKER__PORT`` says otherwise), so a client written against the default
address, or one that asks ``learnright kafka status --bootstrap``, finds it.
"""

from __future__ import annotations

import typer

from learnright import broker as broker_runtime
from learnright.cli.groups import kafka_app, settings_for


@kafka_app.command("up")
def kafka_up() -> None:
    """Start the broker on 127.0.0.1:<broker.port> (resolving its jars with Maven on first use); print its address.

    The usage and dead-letter topics of ``kafka.topic_prefix`` are created right away, so
    that a producer can send before the ledger service first runs (the broker creates no
    topic by itself).
    """
    from consumers.kafka_admin import ensure_topics

    settings = settings_for()
    state = broker_runtime.up(settings.broker.state_dir, version=settings.broker.kafka_version,
                              cache_dir=settings.broker.cache_dir, heap=settings.broker.heap,
                              timeout_s=settings.broker.start_timeout_s, port=settings.broker.port)
    topics = settings.kafka.topics
    ensure_topics(state.bootstrap_servers, (*topics.usage, topics.dead_letter), settings.kafka.partitions)
    typer.echo(f"Kafka {state.kafka_version} up at {state.bootstrap_servers} (pid {state.pid}, logs {state.log})")


@kafka_app.command("down")
def kafka_down() -> None:
    """Stop the broker started by `kafka up`."""
    ran = broker_runtime.down(settings_for().broker.state_dir)
    typer.echo("Kafka stopped" if ran else "no broker was running")


@kafka_app.command("status")
def kafka_status(
    bootstrap: bool = typer.Option(False, "--bootstrap",
                                   help="Print only the broker's address (host:port), for KAFKA_BOOTSTRAP_SERVERS."),
) -> None:
    """Say whether the broker runs, where, and where its logs are; exit 1 if it does not run.

    With ``--bootstrap`` stdout holds the address alone, so that
    ``export KAFKA_BOOTSTRAP_SERVERS=$(learnright kafka status --bootstrap)`` works; when
    no broker runs, stdout stays empty and the reason goes to stderr.
    """
    settings = settings_for()
    state = broker_runtime.read_state(settings.broker.state_dir.resolve())
    if state is None or not broker_runtime.is_alive(state.pid):
        typer.echo("Kafka: not running", err=bootstrap)
        raise typer.Exit(1)
    if bootstrap:
        typer.echo(state.bootstrap_servers)
        return
    typer.echo(f"Kafka {state.kafka_version}: running at {state.bootstrap_servers} (pid {state.pid}, logs {state.log})")
