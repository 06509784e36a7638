"""A real Prometheus (Debian's) scrapes a real `learnright serve`: the alerts fire, the dashboard has data.

The rules are those of deploy/prometheus/alerts.yml with short `for:` durations and a
15-minute threshold cut to 5 seconds, so that the test waits seconds instead of minutes;
the expressions are otherwise the shipped ones. The consumer is blocked for real: the
dead-letter topic refuses the poison record's letter (tests/consumers/helpers.py), so the
batch holding it fails again and again while the record waits in Kafka.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from ground.settings import Settings
from tests.consumers.helpers import produce_poison_then_valid, refuse_dead_letters
from tests.learnright.test_serve import emit, running, service_settings, wait_for

pytestmark = [pytest.mark.broker,
              pytest.mark.skipif(not shutil.which("prometheus"), reason="needs Debian's prometheus (make prometheus)")]
DEPLOY = Path(__file__).parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "learnright.json"

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fast_rules() -> dict:
    """alerts.yml with `for: 1s` and LearnrightConsumerNotCommitting's 900 s cut to 5 s."""
    document = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for group in document["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["for"] = "1s"
            if rule["alert"] == "LearnrightConsumerNotCommitting":
                assert "> 900)" in rule["expr"]
                rule["expr"] = rule["expr"].replace("> 900)", "> 5)")
    return document


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expression) of every dashboard target, with Grafana's `$__rate_interval` as 30s."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"].replace("$__rate_interval", "30s"))
            for panel in dashboard["panels"] for target in panel["targets"]]


class Prometheus:
    def __init__(self, tmp_path: Path, target: str, token: str):
        tmp_path.mkdir()
        (tmp_path / "token").write_text(token)
        (tmp_path / "alerts.yml").write_text(yaml.safe_dump(fast_rules()))
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "alerts.yml")],
            "scrape_configs": [{"job_name": "learnright", "metrics_path": "/metrics",
                                "authorization": {"type": "Bearer", "credentials_file": str(tmp_path / "token")},
                                "static_configs": [{"targets": [target]}]}],
        }))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = (tmp_path / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"], stdout=self.log, stderr=subprocess.STDOUT)

    def get(self, path: str, **params) -> dict:
        answer = httpx.get(self.url + path, params=params, timeout=10)
        answer.raise_for_status()
        return answer.json()["data"]

    def query(self, expr: str) -> list:
        return self.get("/api/v1/query", query=expr)["result"]

    def alerts(self, state: str) -> set[str]:
        return {alert["labels"]["alertname"] for alert in self.get("/api/v1/alerts")["alerts"]
                if alert["state"] == state}

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/-/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def test_prometheus_sees_the_consumer_stop_progressing_and_every_dashboard_panel_has_data(
        make_settings, license_book_text, tmp_path):
    settings: Settings = service_settings(make_settings, tmp_path)
    refuse_dead_letters(settings)  # a small letter (no_license) fits; the poison's does not
    emit(settings, 0, 10, unknown=2)
    with running(settings, license_book_text) as (url, auditor, ledger):
        prometheus = Prometheus(tmp_path / "prometheus", url.removeprefix("http://"), auditor)
        try:
            wait_for(prometheus.ready, what="Prometheus to start")
            wait_for(lambda: prometheus.query('up{job="learnright"} == 1'), what="Prometheus to scrape the service")
            wait_for(lambda: prometheus.query("learnright_events_quarantined_total"),
                     what="Prometheus to see the ingested events")
            wait_for(lambda: prometheus.query("learnright_last_successful_close_timestamp_seconds"),
                     what="Prometheus to see the close the service made on start")
            sql = lambda text: httpx.post(f"{url}/v1/sql", json={"sql": text},  # noqa: E731
                                          headers={"Authorization": f"Bearer {auditor}"})
            assert sql("SELECT count(*) FROM usage_events").status_code == 200
            assert sql("DELETE FROM usage_events").status_code == 400  # a refusal the dashboard counts
            assert "LearnrightConsumerNotCommitting" not in prometheus.alerts("firing")  # nothing waits yet

            def empty_panels() -> set[str]:
                return {expr for _, expr in dashboard_exprs() if not prometheus.query(expr)}

            wait_for(lambda: empty_panels() == set(), what="every dashboard expression to return data")

            produce_poison_then_valid(settings)  # the consumer is blocked on the poison from here on
            wait_for(lambda: "LearnrightConsumerNotCommitting" in prometheus.alerts("firing"), timeout_s=120,
                     what="LearnrightConsumerNotCommitting to fire")
            wait_for(lambda: "LearnrightConsumerStalled" in prometheus.alerts("firing"), timeout_s=120,
                     what="LearnrightConsumerStalled to fire")
            assert empty_panels() == set()
        finally:
            prometheus.stop()
