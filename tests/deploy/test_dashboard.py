"""The Grafana dashboard and the alert rules query metrics that exist.

The services' metric names and labels are read from the registry that
``cxrwatch.core.metrics`` fills; kafka-exporter's and Triton's are the ones
their documentation lists. A renamed metric fails here instead of showing an
empty panel in production.
"""

import json
import re

# Importing every service registers all of cxrwatch's metrics, whatever else
# this pytest process imported before.
import cxrwatch.alerter.service
import cxrwatch.api.app
import cxrwatch.clinical.service
import cxrwatch.core.metrics
import cxrwatch.imaging.service
import cxrwatch.joiner.service
import cxrwatch.scorer.service  # noqa: F401
import prometheus_client

from tests.deploy.manifests import K8S, of_kind, rendered

DASHBOARD = K8S / "components" / "monitoring" / "cxrwatch-dashboard.json"

# name -> labels
EXTERNAL = {
    # kafka-exporter (Strimzi's Kafka Exporter)
    "kafka_consumergroup_lag": {"consumergroup", "topic", "partition"},
    "kafka_topic_partition_current_offset": {"topic", "partition"},
    # Triton Inference Server, port 8002
    "nv_inference_request_success": {"model", "version"},
    "nv_inference_request_failure": {"model", "version"},
    "nv_inference_queue_duration_us": {"model", "version"},
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def service_metrics() -> dict[str, set[str]]:
    """Sample names of cxrwatch's metrics with their label names."""
    found: dict[str, set[str]] = {}
    for family in prometheus_client.REGISTRY.collect():
        if not family.name.startswith("cxrwatch_"):
            continue
        collector = prometheus_client.REGISTRY._names_to_collectors[family.name]
        labels = set(collector._labelnames)
        if family.type == "counter":
            found[f"{family.name}_total"] = labels
        elif family.type == "histogram":
            for suffix in HISTOGRAM_SUFFIXES:
                found[family.name + suffix] = labels | (
                    {"le"} if suffix == "_bucket" else set()
                )
        else:
            found[family.name] = labels
    return found


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append(variable["definition"])
    return found


def rule_queries() -> list[str]:
    (rule,) = of_kind(rendered("prod"), "PrometheusRule")
    return [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]


METRIC = re.compile(r"\b((?:cxrwatch|kafka|nv)_[a-z_]+)\b")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
MATCHER = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)\s*\"")


def unknown_names(query: str, known: dict[str, set[str]]) -> list[str]:
    metrics = METRIC.findall(query)
    problems = [f"unknown metric {m}" for m in metrics if m not in known]
    labels = set().union(*(known.get(m, set()) for m in metrics))
    used = {
        label.strip()
        for group in GROUPING.findall(query)
        for label in group.split(",")
        if label.strip()
    }
    used |= set(MATCHER.findall(query))
    problems += [f"unknown label {label}" for label in used - labels]
    return problems


def test_every_query_names_known_metrics_and_labels() -> None:
    known = service_metrics() | EXTERNAL

    problems = {q: unknown_names(q, known) for q in queries() + rule_queries()}

    assert {q: p for q, p in problems.items() if p} == {}


def test_a_renamed_metric_is_caught() -> None:
    known = service_metrics() | EXTERNAL

    assert unknown_names("rate(cxrwatch_record_total[5m])", known)
    assert unknown_names("sum by (servce) (rate(cxrwatch_records_total[5m]))", known)


def test_the_dashboard_covers_every_service_metric_and_the_lag() -> None:
    used = {m for q in queries() for m in METRIC.findall(q)}
    families = {
        name.removesuffix("_bucket")
        for name in service_metrics()
        if not name.endswith(("_sum", "_count"))
    }

    assert families <= {m.removesuffix("_bucket") for m in used}
    assert "kafka_consumergroup_lag" in used


def test_the_dashboard_is_shipped_to_grafana() -> None:
    (config_map,) = [
        m
        for m in of_kind(rendered("prod"), "ConfigMap")
        if m["metadata"]["name"].startswith("cxrwatch-grafana-dashboard")
    ]

    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["cxrwatch-dashboard.json"])["uid"]
