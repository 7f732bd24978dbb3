"""The Grafana dashboard and the Prometheus alerts use only metrics a live stack exports.

A renamed metric or label would otherwise leave a dashboard blank and an alert silent, with
nothing failing anywhere.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "mes.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALICE = {"Authorization": "Bearer alice-secret-1"}
METRIC = re.compile(r"\bmes_[a-z0-9_]+\b")
SELECTOR = re.compile(r"\{([^}]*)\}")
MATCHER = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")


def dashboard_queries() -> list[str]:
    """Return every PromQL text of the dashboard: panel targets and template variables."""
    found: list[str] = []

    def walk(node, key=None):
        if isinstance(node, dict):
            for name, value in node.items():
                walk(value, name)
        elif isinstance(node, list):
            for value in node:
                walk(value, key)
        elif isinstance(node, str) and key in ("expr", "query", "definition"):
            found.append(node)
    walk(json.loads(DASHBOARD.read_text()))
    return found


def alert_queries() -> list[str]:
    """Return the expression of every alerting rule."""
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"]
             for rule in group["rules"]]
    assert all({"alert", "expr", "labels", "annotations"} <= set(rule) for rule in rules)
    return [rule["expr"] for rule in rules]


def exported(metrics_text: str) -> tuple[set[str], dict[str, set[str]]]:
    """Return the series names /metrics exports, and the label names seen on each."""
    names: set[str] = set()
    labels: dict[str, set[str]] = {}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count", ""),
                "gauge": ("",)}
    for family in text_string_to_metric_families(metrics_text):
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        for sample in family.samples:
            names.add(sample.name)
            labels.setdefault(sample.name, set()).update(sample.labels)
    return names, labels


def used_labels(query: str) -> set[str]:
    """Return the label names a query matches on or groups by (le is the histogram's)."""
    found = {name for body in SELECTOR.findall(query) for name in MATCHER.findall(body)}
    found |= {name.strip() for body in GROUPING.findall(query) for name in body.split(",")}
    return {name for name in found if name and name != "le"}


def test_dashboard_and_alerts_use_only_exported_metrics_and_labels(web):
    # A finished job gives the histograms and counters samples, so their labels show.
    response = requests.post(web + "/v1/inference", headers=ALICE, timeout=60,
                             json={"model": "smollm2:135m", "prompt": "dashboards", "wait_s": 30})
    assert response.status_code == 200, response.text
    names, labels = exported(requests.get(web + "/metrics", timeout=10).text)
    queries = dashboard_queries() + alert_queries()
    used = {name for query in queries for name in METRIC.findall(query)}
    assert len(used) >= 12, used  # the files cover the service, not a token metric or two
    assert used <= names, f"not exported by /metrics: {sorted(used - names)}"
    for query in queries:
        seen = set().union(*(labels.get(name, set()) for name in METRIC.findall(query)))
        if seen:  # only series with samples tell their labels
            assert used_labels(query) <= seen, (query, sorted(seen))


def test_every_documented_metric_is_on_the_dashboard_or_in_an_alert():
    operations = (ROOT / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"^\| `(mes_[a-z0-9_]+)` \|", operations, re.M))
    shown = {name for query in dashboard_queries() + alert_queries()
             for name in METRIC.findall(query)}
    bare = {re.sub(r"_(bucket|sum|count)$", "", name) for name in shown}
    missing = {name for name in documented if name not in bare}
    # Per-door job counts are the doors' own concern; everything else an operator watches.
    assert missing <= {"mes_door_jobs_total"}, sorted(missing)
