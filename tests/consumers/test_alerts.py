"""deploy/prometheus/alerts.yml is a Prometheus 2.x rule file over metrics the service exports."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from ground.metrics import Metrics
from ledger.core.records import LedgerTotals

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
    metrics = Metrics()
    metrics.watch_outbox(lambda: 0)
    metrics.watch_signing_key(ALERTS)
    metrics.watch_ledger(lambda: LedgerTotals(accrued=(), last_closed_at=datetime(2026, 5, 3, tzinfo=timezone.utc)))
    for family in text_string_to_metric_families(metrics.exposition().decode()):
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


def test_every_alert_has_a_runbook():
    runbook = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    for rule in rules():
        assert f"### {rule['alert']}" in runbook, f"docs/operations.md has no runbook for {rule['alert']}"
