"""Resolving which broker to talk to: the configured one, or the project's own."""

from __future__ import annotations

from learnright import broker
from ground.errors import BrokerError
from ground.settings import Settings


def bootstrap_servers(settings: Settings) -> str:
    """``KAFKA_BOOTSTRAP_SERVERS`` (or the LEARNRIGHT_ key) if set, else the running project broker.

    The project broker's address is the one it recorded when it started (its state
    directory's ``broker.json``): 127.0.0.1 and ``broker.port`` for `learnright kafka up`,
    the same address the README's SDK example falls back to. Of a cluster
    (`kafka up --nodes 3`), the addresses of the nodes that run.

    Raises:
        BrokerError: neither is available.
    """
    if settings.kafka.bootstrap_servers:
        return settings.kafka.bootstrap_servers
    running = broker.running_bootstrap(settings.broker.state_dir)
    if running is not None:
        return running
    raise BrokerError(
        f"no Kafka broker: run `learnright kafka up` (it listens on 127.0.0.1:{settings.broker.port}),"
        " or set KAFKA_BOOTSTRAP_SERVERS to use an existing one"
        f" (looked for a running broker in {settings.broker.state_dir})"
    )


def with_bootstrap(settings: Settings) -> Settings:
    """``settings`` with the bootstrap servers filled in."""
    resolved = bootstrap_servers(settings)
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": resolved})})
