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


def ensure_topics(bootstrap_servers: str, topics: Iterable[str], partitions: int, client_id: str = "learnright") -> None:
    """Creates each missing topic with ``partitions`` partitions and :data:`TOPIC_CONFIGS`; existing ones are kept as they are.

    Raises:
        BrokerError: the broker refused or could not be reached.
    """
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id=client_id)
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name=t, num_partitions=partitions, replication_factor=1, topic_configs=dict(TOPIC_CONFIGS))
                   for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    except KafkaError as exc:
        raise BrokerError(f"creating topics on {bootstrap_servers} failed: {exc}") from exc
    finally:
        admin.close()
