"""Creating topics on the broker: the ledger's topics exist before anyone uses them."""

from __future__ import annotations

from typing import Iterable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from ground.errors import BrokerError


def ensure_topics(bootstrap_servers: str, topics: Iterable[str], partitions: int, client_id: str = "learnright") -> None:
    """Creates each missing topic with ``partitions`` partitions; existing ones are kept.

    Raises:
        BrokerError: the broker refused or could not be reached.
    """
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id=client_id)
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name=t, num_partitions=partitions, replication_factor=1) for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    except KafkaError as exc:
        raise BrokerError(f"creating topics on {bootstrap_servers} failed: {exc}") from exc
    finally:
        admin.close()
