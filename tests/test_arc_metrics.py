"""ARC-compatible metrics: ``/metrics`` serves every family of actions-runner-controller's listener
with ARC's type, labels and buckets (checked against ``fixtures/arc_metrics.json``, written from
ARC's source), fed from real messages; our ``scaleset_*`` families stay as they were; label values
from the service stay bounded; the example Grafana dashboard reads only what is exported.
"""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import scaleset_client as sc
from scaleset_client._arc_metrics import OVERFLOW
from scaleset_client._health_server import Metrics, serve_health
from scaleset_client.testing import FakeActionsService

from .helpers import RecordingScaler, job

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "arc_metrics.json").read_text(encoding="utf-8"))
DASHBOARD = ROOT / "examples" / "grafana" / "arc-dashboard.json"

# Our own families as they were before the ARC ones came: none may change or go.
SCALESET_FAMILIES = {
    "scaleset_build_info": "gauge", "scaleset_jobs_started": "counter", "scaleset_jobs_completed": "counter",
    "scaleset_statistics_updates": "counter", "scaleset_scaler_failures": "counter",
    "scaleset_messages_poisoned": "counter", "scaleset_state_cursor_ahead": "counter",
    "scaleset_desired_runners": "gauge", "scaleset_assigned_jobs": "gauge", "scaleset_running_jobs": "gauge",
    "scaleset_http_retries": "counter", "scaleset_http_requests": "counter", "scaleset_listener_live": "gauge",
    "scaleset_listener_ready": "gauge", "scaleset_messages_handled": "counter",
    "scaleset_scaler_consecutive_failures": "gauge", "scaleset_last_message_id": "gauge",
    "scaleset_last_poll_timestamp_seconds": "gauge", "scaleset_circuit_state": "gauge",
    "scaleset_circuit_open": "gauge",
}


def _parsed_name(name: str, kind: str) -> str:
    """The name prometheus_client's parser gives a family (it drops a counter's ``_total``)."""
    return name.removesuffix("_total") if kind == "counter" else name


def _families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def _stamp(seconds: str) -> str:
    return f"2025-03-04T05:{seconds}Z"


@dataclasses.dataclass
class Served:
    text: str
    org: str
    listener: sc.Listener
    desired: list[int]


def _serve_a_run(fake: FakeActionsService, client: sc.Client, scale_set: sc.RunnerScaleSet,
                 metrics: Metrics) -> Served:
    """A listener handles one started and one completed job with real stamps; /metrics is read
    over a socket."""
    common = {"ownerName": fake.org, "repositoryName": "api", "jobDisplayName": "build", "eventName": "push",
              "jobWorkflowRef": f"{fake.org}/api/.github/workflows/ci.yml@refs/heads/main"}
    # Startup: 05:06:00.9 to 05:06:08.1, 8 whole Unix seconds as ARC counts (7.2 s really).
    fake.push_message(scale_set.id, [job("JobStarted", 1, **common, scaleSetAssignTime=_stamp("06:00.9000000"),
                                         runnerAssignTime=_stamp("06:08.1000000"))])
    # Execution: 05:06:08.1 to 05:07:10.5, 62 whole seconds.
    fake.push_message(scale_set.id, [job("JobCompleted", 1, **common, result="succeeded",
                                         scaleSetAssignTime=_stamp("06:00.9000000"),
                                         runnerAssignTime=_stamp("06:08.1000000"),
                                         finishTime=_stamp("07:10.5000000"))],
                      statistics={"totalAssignedJobs": 3, "totalRunningJobs": 2, "totalRegisteredRunners": 5,
                                  "totalBusyRunners": 2, "totalIdleRunners": 3})
    has_min = "min_runners" in {f.name for f in dataclasses.fields(sc.ListenerConfig)}
    config = sc.ListenerConfig(scale_set.id, 7, scale_set_name=scale_set.name,
                               **({"min_runners": 2} if has_min else {}))  # type: ignore[arg-type]
    listener = sc.Listener(client, config, metrics=metrics)
    scaler = RecordingScaler()
    listener.run(scaler, until_idle=True)
    server = serve_health("127.0.0.1", 0, listener, client, metrics)
    try:
        text = _get(f"http://127.0.0.1:{server.server_address[1]}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    return Served(text, fake.org, listener, scaler.desired)


def test_every_arc_family_is_served_with_arcs_type_labels_and_buckets(
        fake: FakeActionsService, client: sc.Client, scale_set: sc.RunnerScaleSet) -> None:
    served = _serve_a_run(fake, client, scale_set, Metrics(namespace="ci"))
    families = _families(served.text)
    buckets = [float(b) for b in FIXTURE["default_buckets"]] + [float("inf")]
    for name, spec in FIXTURE["families"].items():
        family = families.get(_parsed_name(name, spec["type"]))
        assert family is not None, f"{name} is not served"
        assert family.type == spec["type"], name
        assert f"# HELP {name} " in served.text and f"# TYPE {name} {spec['type']}" in served.text, name
        assert family.samples, f"{name} has no sample after a run that feeds it"
        for sample in family.samples:
            expected = set(spec["labels"]) | ({"le"} if sample.name.endswith("_bucket") else set())
            assert set(sample.labels) == expected, (name, sample)
        if spec["type"] == "histogram":
            bounds = [float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")]
            assert bounds == buckets, name


def test_arc_values_come_from_the_statistics_the_configuration_and_the_job_stamps(
        fake: FakeActionsService, client: sc.Client, scale_set: sc.RunnerScaleSet) -> None:
    served = _serve_a_run(fake, client, scale_set, Metrics(namespace="ci"))
    families = _families(served.text)

    def one(name: str) -> Sample:
        samples: list[Sample] = families[name].samples
        assert len(samples) == 1, name
        return samples[0]

    scale_set_labels = {"enterprise": "", "organization": served.org, "repository": "", "name": scale_set.name,
                        "namespace": "ci"}
    gauges = {"gha_assigned_jobs": 3, "gha_running_jobs": 2, "gha_registered_runners": 5, "gha_busy_runners": 2,
              "gha_idle_runners": 3, "gha_max_runners": 7,
              "gha_min_runners": getattr(served.listener.config, "min_runners", 0),
              "gha_desired_runners": served.desired[-1]}
    for name, value in gauges.items():
        assert one(name).labels == scale_set_labels, name
        assert one(name).value == value, name
    job_labels = {"enterprise": "", "organization": served.org, "repository": "api", "job_name": "build",
                  "event_name": "push"}
    assert one("gha_started_jobs").labels == job_labels and one("gha_started_jobs").value == 1
    assert one("gha_completed_jobs").labels == {**job_labels, "job_result": "succeeded"}
    assert one("gha_completed_jobs").value == 1

    def histogram(name: str) -> dict[str, float]:
        return {s.labels.get("le", s.name.rsplit("_", 1)[1]): s.value for s in families[name].samples}

    startup = histogram("gha_job_startup_duration_seconds")
    assert (startup["sum"], startup["count"], startup["7"], startup["8"]) == (8, 1, 0, 1)
    execution = histogram("gha_job_execution_duration_seconds")
    assert (execution["sum"], execution["count"], execution["60"], execution["70"]) == (62, 1, 0, 1)
    # Ours are unchanged: every family, its type, and what it counted.
    ours = {name: f.type for name, f in families.items() if name.startswith("scaleset_")}
    assert ours == SCALESET_FAMILIES
    assert families["scaleset_jobs_started"].samples[0].value == 1
    assert families["scaleset_jobs_completed"].samples[0].value == 1


def _started(name: str = "build", repository: str = "api", **stamps: Any) -> sc.JobStarted:
    return sc.JobStarted(runner_request_id=1, repository_name=repository, owner_name="octo", job_display_name=name,
                         event_name="push", **stamps)


def test_before_the_listener_exists_every_arc_family_is_declared_without_a_gauge_value() -> None:
    families = _families(Metrics().render(None, None))
    for name, spec in FIXTURE["families"].items():
        assert families[_parsed_name(name, spec["type"])].type == spec["type"]
        if spec["type"] == "gauge":
            assert families[name].samples == [], name


def test_a_duration_needs_both_stamps_and_a_job_that_never_reached_a_runner_is_not_completed() -> None:
    metrics = Metrics()
    metrics.record_job_started(_started())  # no stamps: counted, not observed (ARC would observe 0)
    metrics.record_job_completed(sc.JobCompleted(result="canceled", owner_name="octo"))  # no runner: as ARC
    text = metrics.render(None, None)
    families = _families(text)
    assert [s.value for s in families["gha_started_jobs"].samples] == [1]
    assert families["gha_job_startup_duration_seconds"].samples == []
    assert families["gha_completed_jobs"].samples == []
    assert families["scaleset_jobs_completed"].samples[0].value == 1  # ours counts every event


def test_label_values_from_the_service_are_bounded() -> None:
    metrics = Metrics(job_name_limit=3, series_limit=5)
    for i in range(100):
        metrics.record_job_started(_started(f"test (matrix {i})", repository=f"repo-{i % 7}"))
    weird = 'a"b\\c\nd' + "x" * 500
    metrics.record_job_started(_started(weird))
    samples = _families(metrics.render(None, None))["gha_started_jobs"].samples
    assert sum(s.value for s in samples) == 101  # totals stay right
    assert len(samples) <= 5 + 1  # the limit, plus the overflow set
    names = {s.labels["job_name"] for s in samples}
    assert names <= {"test (matrix 0)", "test (matrix 1)", "test (matrix 2)", OVERFLOW}
    assert any(s.labels["repository"] == OVERFLOW for s in samples)

    clipped = Metrics(job_name_limit=10)
    clipped.record_job_started(_started(weird, repository=weird))
    [sample] = _families(clipped.render(None, None))["gha_started_jobs"].samples
    assert sample.labels["job_name"] == sample.labels["repository"] == weird[:128]  # escaped, parsed back

    no_names = Metrics(job_name_limit=0)
    no_names.record_job_started(_started("anything"))
    [sample] = _families(no_names.render(None, None))["gha_started_jobs"].samples
    assert sample.labels["job_name"] == ""


_METRIC = re.compile(r"\b((?:gha|scaleset)_[a-z0-9_]+)\b")
_SELECTOR = re.compile(r"\b(gha_[a-z0-9_]+)\{([^}]*)\}")
_BY = re.compile(r"\bby\s*\(([^)]*)\)")


def _strings(node: Any, key: str) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and isinstance(v, str):
                yield v
            yield from _strings(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item, key)


def test_the_grafana_dashboard_reads_only_exported_arc_families_and_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["title"] and dashboard["panels"]
    exported = {(name if f.type != "counter" else name + "_total"): {"type": f.type, "labels": set()}
                for name, f in _families(Metrics().render(None, None)).items() if name.startswith("gha_")}
    for name, spec in FIXTURE["families"].items():
        exported[name]["labels"] = set(spec["labels"])
    queries = [*_strings(dashboard, "expr"), *_strings(dashboard.get("templating", {}), "query")]
    assert len(list(_strings(dashboard, "expr"))) >= 6
    seen: set[str] = set()

    def family_of(metric: str) -> str:
        base = re.sub(r"_(bucket|sum|count)$", "", metric)
        if base in exported and exported[base]["type"] == "histogram":
            return base
        assert metric in exported, f"the dashboard reads {metric}, which /metrics does not serve"
        return metric

    for query in queries:
        families = {family_of(m) for m in _METRIC.findall(query)}
        seen |= families
        labels = set().union(*(exported[f]["labels"] for f in families)) | {"le"}
        for metric, matchers in _SELECTOR.findall(query):
            for label in re.findall(r"([a-z_]+)\s*=~?", matchers):
                assert label in exported[family_of(metric)]["labels"], (query, label)
        for group in _BY.findall(query):
            for label in filter(None, (x.strip() for x in group.split(","))):
                assert label in labels, (query, label)
        for metric, label in re.findall(r"label_values\((gha_[a-z0-9_]+)[^,]*,\s*([a-z_]+)\)", query):
            assert label in exported[family_of(metric)]["labels"], (query, label)
    assert seen and all(name.startswith("gha_") for name in seen)


def test_scale_set_labels_come_from_the_configuration_url_as_arc_splits_it() -> None:
    # ARC (github/actions/actions.go 32-73): one segment is an organization, owner/repo gives both,
    # enterprises/NAME gives only the enterprise.
    shapes = {"https://github.com/octo": ("", "octo", ""), "https://github.com/octo/api": ("", "octo", "api"),
              "https://github.com/enterprises/big": ("big", "", "")}
    for url, (enterprise, organization, repository) in shapes.items():
        client = sc.Client(url, token="ghp_unused")
        try:
            listener = sc.Listener(client, sc.ListenerConfig(4, 9, scale_set_name="linux"))
            text = Metrics(namespace="arc-runners").render(listener, client)
        finally:
            client.close()
        [sample] = _families(text)["gha_max_runners"].samples
        assert sample.labels == {"enterprise": enterprise, "organization": organization, "repository": repository,
                                 "name": "linux", "namespace": "arc-runners"}, url
        assert sample.value == 9
