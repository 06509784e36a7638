"""A 3-node KRaft cluster on loopback (`learnright kafka up --nodes 3`): replicated topics that outlive a stopped node.

One cluster serves the module: it takes some 25 seconds to start on a loaded machine.
"""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from typer.testing import CliRunner

from consumers.kafka_admin import ensure_topics
from ground.errors import BrokerError
from ground.settings import Settings
from learnright import broker
from learnright.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> broker.ClusterState:
    settings = Settings()
    state_dir = tmp_path_factory.mktemp("kafka-cluster")
    started = broker.up_cluster(state_dir, nodes=3, version=settings.broker.kafka_version,
                                cache_dir=settings.broker.cache_dir, heap="256m", timeout_s=180)
    try:
        yield started
    finally:
        broker.down(state_dir)


@pytest.fixture
def cli_env(cluster: broker.ClusterState, monkeypatch: pytest.MonkeyPatch) -> str:
    """The CLI pointed at the module's cluster, with a topic prefix of this test's own; returns the prefix."""
    prefix = f"c{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("LEARNRIGHT_BROKER__STATE_DIR", str(cluster.state_dir))
    monkeypatch.setenv("LEARNRIGHT_KAFKA__TOPIC_PREFIX", prefix)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("LEARNRIGHT_KAFKA__BOOTSTRAP_SERVERS", raising=False)
    return prefix


def replication(bootstrap: str, topic: str) -> tuple[set[int], str]:
    """(replica count of each partition, effective min.insync.replicas) of ``topic``.

    A broker that has not yet learnt of a just-created topic describes no partitions or no
    configs for it (seen on a loaded machine), so each is asked again (up to 30 s) until one answers.
    """
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        deadline = time.monotonic() + 30
        (described,) = admin.describe_topics([topic])
        while not described["partitions"] and time.monotonic() < deadline:
            time.sleep(0.2)
            (described,) = admin.describe_topics([topic])
        configs: dict = {}
        while "min.insync.replicas" not in configs and time.monotonic() < deadline:
            answer = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
            configs = answer["topic"].get(topic, {})
    finally:
        admin.close()
    return {len(partition["replica_nodes"]) for partition in described["partitions"]}, configs["min.insync.replicas"]["value"]


def read_all(bootstrap: str, topic: str, partitions: int, expected: int) -> list[bytes]:
    """The values of ``topic``, sorted, once ``expected`` records are read (or after 30 s, whatever was read)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(values) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                values.extend(record.value for record in records)
        return sorted(values)
    finally:
        consumer.close()


@pytest.mark.broker
def test_kafka_up_nodes_3_creates_the_usage_topics_with_3_replicas_2_in_sync(cluster, cli_env):
    """`kafka up --nodes 3` on the running cluster keeps it and creates the usage topics on it, replicated."""
    up = runner.invoke(app, ["kafka", "up", "--nodes", "3"])
    assert up.exit_code == 0, up.output
    assert f"cluster of 3 nodes up at {cluster.bootstrap_servers}" in up.output
    topics = Settings().kafka.topics
    assert topics.prefix == cli_env
    for topic in (*topics.usage, topics.dead_letter):
        assert replication(cluster.bootstrap_servers, topic) == ({3}, "2"), topic

    status = runner.invoke(app, ["kafka", "status"])
    assert status.exit_code == 0, status.output
    assert "3 of 3 nodes running" in status.output
    for node in cluster.nodes:
        assert f"node {node.node_id}: running at {node.address}" in status.output
    bootstrap = runner.invoke(app, ["kafka", "status", "--bootstrap"])
    assert bootstrap.output.strip() == cluster.bootstrap_servers

    with pytest.raises(BrokerError, match="already run there"):
        broker.up(cluster.state_dir, version=cluster.kafka_version, cache_dir=Settings().broker.cache_dir)


@pytest.mark.broker
def test_a_stopped_node_leaves_acks_all_writes_working_and_rejoins(cluster, cli_env):
    """min.insync.replicas=2 of 3: with one node down an acks=all write still succeeds; the node comes back."""
    topic = f"{cli_env}-replicated"
    ensure_topics(cluster.bootstrap_servers, (topic,), 2)
    assert replication(cluster.bootstrap_servers, topic) == ({3}, "2")
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers, acks="all", enable_idempotence=True,
                             request_timeout_ms=10_000)
    try:
        producer.send(topic, b"before", partition=0).get(timeout=60)

        assert broker.stop_node(cluster.state_dir, 1)
        assert [node.running for node in broker.node_statuses(cluster.state_dir)] == [False, True, True]
        status = runner.invoke(app, ["kafka", "status"])
        assert status.exit_code == 1 and "2 of 3 nodes running" in status.output
        assert f"node 1: stopped (was {cluster.node(1).address}" in status.output

        for partition in (0, 1):  # one of them was led by node 1, most likely
            producer.send(topic, f"while-down-{partition}".encode(), partition=partition).get(timeout=60)
        survivors = ",".join(node.address for node in cluster.nodes if node.node_id != 1)
        assert read_all(survivors, topic, 2, 3) == [b"before", b"while-down-0", b"while-down-1"]
    finally:
        producer.close()
        restarted = broker.start_node(cluster.state_dir, 1)

    assert restarted.bootstrap_servers == cluster.node(1).address
    assert all(node.running for node in broker.node_statuses(cluster.state_dir))
    broker.wait_in_sync(cluster.bootstrap_servers)  # node 1 caught up: every partition has 3 replicas in sync
    assert read_all(cluster.bootstrap_servers, topic, 2, 3) == [b"before", b"while-down-0", b"while-down-1"]


def test_replication_follows_the_node_count():
    """One node replicates nothing; from three on, 3 replicas of which 2 must hold an acks=all write."""
    assert broker.Replication.for_nodes(1) == broker.Replication(factor=1, min_insync=1)
    assert broker.Replication.for_nodes(2) == broker.Replication(factor=2, min_insync=1)
    assert broker.Replication.for_nodes(3) == broker.Replication(factor=3, min_insync=2)
    assert broker.Replication.for_nodes(5) == broker.Replication(factor=3, min_insync=2)
