"""The README's SDK example (a training loop, an inference service) runs as written.

The example finds its broker the way a new user's copy of it would: from
``KAFKA_BOOTSTRAP_SERVERS``, else the fixed address `learnright kafka up` listens on.
It is executed unchanged; only the environment differs between the tests.
"""

import json
import os
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from consumers.kafka_admin import ensure_topics
from ground.settings import BrokerSettings
from ground.topics import Topics
from tests.producers.conftest import read_topics

README = Path(__file__).resolve().parents[2] / "README.md"
LEARNRIGHT = Path(sys.executable).parent / "learnright"
TOPICS = Topics(prefix="learnright")  # the SDK's and the settings' default, as the example uses it


def readme_example() -> str:
    section = README.read_text().split("## Emitting usage", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_example_and_read_what_it_sent(bootstrap: str) -> list:
    """Executes the example unchanged; returns the records it added to the usage topics."""
    before = {(r.topic, r.partition, r.offset) for r in read_topics(bootstrap, TOPICS.usage)}
    exec(compile(readme_example(), str(README), "exec"), {})
    return [r for r in read_topics(bootstrap, TOPICS.usage) if (r.topic, r.partition, r.offset) not in before]


def assert_one_training_and_one_inference(new: list) -> None:
    assert sorted(r.name for r in new) == ["InferenceUsage", "TrainingUsage"]
    inference = next(r.record for r in new if r.name == "InferenceUsage")
    assert {a["source_id"]: str(a["weight"]) for a in inference["attributions"]} == {
        "src-aurora-novels": "0.700000", "src-kestrel-photos": "0.300000"}


def test_the_example_falls_back_to_the_address_kafka_up_listens_on():
    fallback = re.search(r'os\.environ\.get\("KAFKA_BOOTSTRAP_SERVERS", "([^"]+)"\)', readme_example())
    assert fallback is not None, "the example must read KAFKA_BOOTSTRAP_SERVERS"
    assert fallback.group(1) == f"127.0.0.1:{BrokerSettings().port}" == "127.0.0.1:19092"


@pytest.mark.broker
def test_the_readme_example_emits_one_training_and_one_inference_event(kafka_bootstrap, monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    ensure_topics(kafka_bootstrap, TOPICS.usage, 1)
    assert_one_training_and_one_inference(run_example_and_read_what_it_sent(kafka_bootstrap))


@pytest.fixture
def session_broker_dir(kafka_bootstrap, tmp_path_factory) -> Path:
    """The state directory of the session's broker, which tests/conftest.py started like `kafka up` does."""
    for record in tmp_path_factory.getbasetemp().glob("kafka*/broker.json"):
        if json.loads(record.read_text())["bootstrap_servers"] == kafka_bootstrap:
            return record.parent
    pytest.skip("the session uses an outside broker (KAFKA_BOOTSTRAP_SERVERS); `kafka status` reports the project's own")


@pytest.mark.broker
def test_kafka_up_then_the_example_with_the_address_status_prints(session_broker_dir, kafka_bootstrap, monkeypatch):
    """The first hour: `learnright kafka up`, `export KAFKA_BOOTSTRAP_SERVERS=$(learnright kafka status --bootstrap)`, run.

    `kafka up` finds the session's broker already running in its state directory and
    only creates the topics; a fresh start on the fixed port is test_cli's.
    """
    monkeypatch.setenv("LEARNRIGHT_BROKER__STATE_DIR", str(session_broker_dir))
    monkeypatch.setenv("LEARNRIGHT_KAFKA__TOPIC_PREFIX", prefix := f"t{uuid.uuid4().hex[:10]}")
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "LEARNRIGHT_KAFKA__BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)

    def learnright(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(LEARNRIGHT), *args], capture_output=True, text=True, timeout=300)

    up = learnright("kafka", "up")
    assert up.returncode == 0 and f"up at {kafka_bootstrap} " in up.stdout, up.stdout + up.stderr
    topics = Topics(prefix=prefix)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert set(admin.list_topics()) >= {*topics.usage, topics.dead_letter}  # a producer can send right away
    finally:
        admin.close()

    status = learnright("kafka", "status", "--bootstrap")
    assert (status.returncode, status.stdout) == (0, f"{kafka_bootstrap}\n"), status.stderr
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", status.stdout.strip())
    ensure_topics(kafka_bootstrap, TOPICS.usage, 1)  # the example's default prefix, on a broker shared by the session
    assert_one_training_and_one_inference(run_example_and_read_what_it_sent(kafka_bootstrap))


def test_kafka_status_bootstrap_prints_nothing_on_stdout_when_no_broker_runs(tmp_path):
    env = {**os.environ, "LEARNRIGHT_BROKER__STATE_DIR": str(tmp_path / "kafka")}
    stopped = subprocess.run([str(LEARNRIGHT), "kafka", "status", "--bootstrap"], capture_output=True, text=True,
                             env=env, timeout=60)
    assert (stopped.returncode, stopped.stdout) == (1, "") and "not running" in stopped.stderr


@pytest.mark.broker
def test_kafka_up_on_a_taken_port_says_what_to_do(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**os.environ, "LEARNRIGHT_BROKER__STATE_DIR": str(tmp_path / "kafka"),
               "LEARNRIGHT_BROKER__PORT": str(port)}
        up = subprocess.run([str(LEARNRIGHT), "kafka", "up"], capture_output=True, text=True, env=env, timeout=300)
    assert up.returncode == 2 and f"port {port} on 127.0.0.1 is in use" in up.stderr, up.stdout + up.stderr
    assert "LEARNRIGHT_BROKER__PORT" in up.stderr
    assert not (tmp_path / "kafka" / "broker.json").exists()  # nothing was started
