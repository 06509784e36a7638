"""deploy/prometheus/alerts.yml is a Prometheus 2.x rule file over metrics the service exports."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from ground.metrics import Metrics

ALERTS = Path(__file__).parents[2] / "deploy" / "prometheus" / "alerts.yml"
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def rules() -> list[dict]:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    found = []
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "limit", "rules"} and group["name"] and group["rules"]
        found.extend(group["rules"])
    return found


def exported() -> set[str]:
    """Every metric name the service exports, with the sample names of counters and histograms."""
    names: set[str] = set()
    for family in text_string_to_metric_families(Metrics().exposition().decode()):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
    return names


def test_every_rule_has_the_fields_prometheus_requires():
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"]), rule["alert"]
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        assert DURATION.match(rule["for"]), rule["for"]
        assert rule["labels"]["severity"] and rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["expr"]


def test_the_alerts_read_metrics_the_service_exports():
    names = exported()
    for rule in rules():
        for metric in re.findall(r"\blearnright_[a-z_]+", rule["expr"]):
            assert metric in names, f"{rule['alert']} reads {metric}, which ground/metrics.py does not export"


def test_a_stalled_consumer_alerts():
    by_name = {rule["alert"]: rule for rule in rules()}
    assert "learnright_consumer_stalled" in by_name["LearnrightConsumerStalled"]["expr"]
    assert "learnright_consumer_last_commit_timestamp_seconds" in by_name["LearnrightConsumerNotCommitting"]["expr"]
