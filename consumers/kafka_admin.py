"""Creating topics on the broker: the ledger's topics exist before anyone uses them."""

from __future__ import annotations

from typing import Iterable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from ground.errors import BrokerError

TOPIC_CONFIGS = {"message.timestamp.type": "LogAppendTime"}
"""Configuration of every topic created here. The broker stamps each record with the time it
appended it, so the bound the ledger puts on ``occurred_at`` (the record's timestamp plus
``consumer.max_future_s``) is the broker's clock, not one a producer chooses."""


def ensure_topics(bootstrap_servers: str, topics: Iterable[str], partitions: int, client_id: str = "learnright", *,
                  replication_factor: int | None = None, min_insync_replicas: int | None = None) -> None:
    """Creates each missing topic with ``partitions`` partitions and :data:`TOPIC_CONFIGS`; existing ones are kept as they are.

    Returns once every partition of each created topic has a leader.

    Replication is the cluster's unless given: ``replication_factor`` None asks the broker
    for its ``default.replication.factor`` and ``min_insync_replicas`` None leaves the
    broker's ``min.insync.replicas`` in force. A single broker of the project's replicates
    nothing; a cluster of `learnright kafka up --nodes 3` gives 3 replicas and a minimum of
    2 in sync, so a topic created while one node is stopped still gets 3 replicas, or is
    refused, never silently fewer.

    Raises:
        BrokerError: the broker refused (fewer brokers than replicas, say) or could not be reached.
    """
    configs = dict(TOPIC_CONFIGS)
    if min_insync_replicas is not None:
        configs["min.insync.replicas"] = str(min_insync_replicas)
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id=client_id)
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name=t, num_partitions=partitions,
                            replication_factor=-1 if replication_factor is None else replication_factor,
                            topic_configs=dict(configs))
                   for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
            # A created topic reaches each broker's metadata a moment later (KRaft): wait until
            # every partition has a leader, so that a caller's first request finds it.
            admin.wait_for_topics([topic.name for topic in missing], timeout_ms=30_000)
    except KafkaError as exc:
        raise BrokerError(f"creating topics on {bootstrap_servers} failed: {exc}") from exc
    finally:
        admin.close()
