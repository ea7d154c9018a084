"""The Grafana dashboard and collector config stay in step with what the proxy exports."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from proxy.config.model import TelemetryConfig
from proxy.telemetry import Telemetry
from proxy.telemetry.metrics import MULTIPROC_ENV, samples_from_text
from tests.support.procs import ROOT
from tests.telemetry.helpers import make_config

GRAFANA = ROOT / "deploy" / "grafana" / "strangler.json"
COLLECTOR = ROOT / "deploy" / "otel-collector.yaml"
METRIC = re.compile(r"\bstrangler_[a-z_]+\b")


def exported_names(monkeypatch) -> tuple[set[str], dict[str, set[str]]]:
    """Every sample name (and its label names) a proxy exports once each event has happened."""
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    t = Telemetry(TelemetryConfig(), configure_logs=False)
    t.reconfigure(make_config())
    t.request_started()
    t.request_finished("customers", "canary", "extracted", "GET", 500, 0.01, 1)
    t.attempt_finished(None, "customers", 200)
    t.count("retry", upstream="customers", reason="timeout")
    t.count("retry_budget_exhausted", upstream="customers")
    t.count("fallback", route="customers", reason="timeout")
    t.breaker_changed("customers", "closed", "open")
    t.count("rejection", upstream="customers", reason="bulkhead_full")
    t.count("shadow_comparison", route="customers", result="match")
    t.count("shadow_drop", route="customers", reason="queue_full")
    t.reload_finished(True, version=1)
    labels: dict[str, set[str]] = {}
    for name, sample_labels, _ in samples_from_text(t.metrics_text().decode()):
        labels.setdefault(name, set()).update(sample_labels)
    return set(labels), labels


def grafana_exprs() -> list[str]:
    dash = json.loads(GRAFANA.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dash["annotations"]["list"] if "expr" in a]
    return exprs


def test_every_grafana_query_uses_metrics_and_labels_that_exist(monkeypatch):
    names, labels = exported_names(monkeypatch)
    exprs = grafana_exprs()
    assert len(exprs) >= 15
    used = set()
    for expr in exprs:
        for metric in METRIC.findall(expr):
            assert metric in names, f"{GRAFANA.name}: {metric} in {expr!r} is not exported"
            used.add(metric)
            for label in re.findall(r"(\w+)\s*(?:=~|!=|=)\s*\"", expr):
                if label not in ("le",):
                    assert label in labels[metric] | {"route"}, (
                        f"{GRAFANA.name}: label {label} of {metric} does not exist"
                    )
    # Every family the proxy exports appears on the dashboard.
    families = {re.sub(r"_(bucket|count|sum|total)$", "", n) for n in names}
    shown = {re.sub(r"_(bucket|count|sum|total)$", "", n) for n in used}
    assert families - shown == set()


def test_grafana_panels_have_unique_ids_and_a_route_variable():
    dash = json.loads(GRAFANA.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert "route" in {v["name"] for v in dash["templating"]["list"]}


def test_collector_pipeline_only_names_defined_components():
    conf = yaml.safe_load(COLLECTOR.read_text())
    for name, pipeline in conf["service"]["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in conf[kind], f"{COLLECTOR.name}: {name}.{kind}: {component}"
    assert conf["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    assert conf["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"


@pytest.mark.parametrize("path", [GRAFANA, COLLECTOR])
def test_deploy_files_are_present(path):
    assert path.stat().st_size > 500
