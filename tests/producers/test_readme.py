"""The README's SDK example (a training loop, an inference service) runs as written."""

import re
from pathlib import Path

import pytest

from consumers.kafka_admin import ensure_topics
from ground.topics import Topics
from tests.producers.conftest import read_topics

pytestmark = pytest.mark.broker
README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_example_emits_one_training_and_one_inference_event(kafka_bootstrap):
    section = README.read_text().split("## Emitting usage", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert '"127.0.0.1:9092"' in code
    topics = Topics(prefix="learnright")  # the SDK's default, as the example uses it
    ensure_topics(kafka_bootstrap, topics.usage, 1)
    before = {(r.topic, r.partition, r.offset) for r in read_topics(kafka_bootstrap, topics.usage)}

    exec(compile(code.replace('"127.0.0.1:9092"', repr(kafka_bootstrap)), str(README), "exec"), {})

    new = [r for r in read_topics(kafka_bootstrap, topics.usage) if (r.topic, r.partition, r.offset) not in before]
    assert sorted(r.name for r in new) == ["InferenceUsage", "TrainingUsage"]
    inference = next(r.record for r in new if r.name == "InferenceUsage")
    assert {a["source_id"]: str(a["weight"]) for a in inference["attributions"]} == {
        "src-aurora-novels": "0.700000", "src-kestrel-photos": "0.300000"}
