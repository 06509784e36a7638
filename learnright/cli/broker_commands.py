"""`learnright kafka up|down|status`: the project's own broker, or cluster.

`up` listens on the fixed ``broker.port`` (127.0.0.1:19092 unless
``LEARNRIGHT_BROKER__PORT`` says otherwise), so a client written against the default
address, or one that asks ``learnright kafka status --bootstrap``, finds it. With
``--nodes 3`` node i listens on ``broker.port + i - 1`` and the three form one KRaft
cluster (see :mod:`learnright.broker`).
"""

from __future__ import annotations

from typing import Optional

import typer

from learnright import broker as broker_runtime
from learnright.cli.groups import kafka_app, settings_for


@kafka_app.command("up")
def kafka_up(
    nodes: Optional[int] = typer.Option(
        None, "--nodes", min=1, max=9,
        help="Nodes to start (default broker.nodes, 1): 3 starts a KRaft cluster whose topics keep 3 replicas,"
             " min.insync.replicas=2, so any one node may stop."),
) -> None:
    """Start the broker on 127.0.0.1:<broker.port> (resolving its jars with Maven on first use); print its address.

    The usage and dead-letter topics of ``kafka.topic_prefix`` are created right away, so
    that a producer can send before the ledger service first runs (the broker creates no
    topic by itself); on a cluster they get its replication (3 replicas, 2 in sync).
    """
    from consumers.kafka_admin import ensure_topics

    settings = settings_for()
    count = settings.broker.nodes if nodes is None else nodes
    options = dict(version=settings.broker.kafka_version, cache_dir=settings.broker.cache_dir,
                   heap=settings.broker.heap, timeout_s=settings.broker.start_timeout_s, port=settings.broker.port)
    if count == 1:
        state = broker_runtime.up(settings.broker.state_dir, **options)
        bootstrap, version = state.bootstrap_servers, state.kafka_version
        summary = f"Kafka {version} up at {bootstrap} (pid {state.pid}, logs {state.log})"
    else:
        cluster = broker_runtime.up_cluster(settings.broker.state_dir, nodes=count, **options)
        bootstrap, version = cluster.bootstrap_servers, cluster.kafka_version
        summary = f"Kafka {version} cluster of {count} nodes up at {bootstrap}"
    topics = settings.kafka.topics
    ensure_topics(bootstrap, (*topics.usage, topics.dead_letter), settings.kafka.partitions,
                  replication_factor=settings.kafka.replication_factor,
                  min_insync_replicas=settings.kafka.min_insync_replicas)
    typer.echo(summary)
    if count > 1:
        _echo_nodes(broker_runtime.node_statuses(settings.broker.state_dir))


@kafka_app.command("down")
def kafka_down() -> None:
    """Stop the broker, or every node of the cluster, started by `kafka up`."""
    ran = broker_runtime.down(settings_for().broker.state_dir)
    typer.echo("Kafka stopped" if ran else "no broker was running")


@kafka_app.command("status")
def kafka_status(
    bootstrap: bool = typer.Option(False, "--bootstrap",
                                   help="Print only the running nodes' addresses (host:port,...), for KAFKA_BOOTSTRAP_SERVERS."),
) -> None:
    """Say whether the broker (each node of a cluster) runs, where, and where its logs are; exit 1 unless all run.

    With ``--bootstrap`` stdout holds the addresses of the nodes that run, alone, so that
    ``export KAFKA_BOOTSTRAP_SERVERS=$(learnright kafka status --bootstrap)`` works; when
    none runs, stdout stays empty, the reason goes to stderr and the exit status is 1.
    """
    settings = settings_for()
    state_dir = settings.broker.state_dir
    statuses = broker_runtime.node_statuses(state_dir)
    running = [node for node in statuses if node.running]
    if not running:
        typer.echo("Kafka: not running", err=bootstrap)
        if len(statuses) > 1:
            _echo_nodes(statuses, err=bootstrap)
        raise typer.Exit(1)
    if bootstrap:
        typer.echo(",".join(node.address for node in running))
        return
    cluster = broker_runtime.read_cluster(state_dir.resolve())
    if cluster is None:
        state = broker_runtime.read_state(state_dir.resolve())
        typer.echo(f"Kafka {state.kafka_version}: running at {state.bootstrap_servers} (pid {state.pid}, logs {state.log})")
        return
    typer.echo(f"Kafka {cluster.kafka_version} cluster: {len(running)} of {len(statuses)} nodes running")
    _echo_nodes(statuses)
    if len(running) < len(statuses):
        raise typer.Exit(1)


def _echo_nodes(statuses: tuple[broker_runtime.NodeStatus, ...], err: bool = False) -> None:
    for node in statuses:
        state = f"running at {node.address} (pid {node.pid}" if node.running else f"stopped (was {node.address}"
        typer.echo(f"  node {node.node_id}: {state}, logs {node.log})", err=err)
