"""The ``gha_*`` metric families that actions-runner-controller's listener exports, so dashboards
and alerts written for ARC read a ``scaleset-listen`` unchanged (our ``scaleset_*`` families stay
as they are, beside them).

Why a module of its own: ARC's names, types, label sets and buckets are an outside contract. They
are written down once here, from ARC's source, and ``tests/fixtures/arc_metrics.json`` (written
from the same source, independently) checks what ``/metrics`` serves against them.

Where each fact comes from (actions/actions-runner-controller at commit 2ee6b3b8,
``cmd/ghalistener/metrics/metrics.go`` unless another file is named):

* label keys: lines 16-28; the ``gha`` subsystem prefix: 30-33; family names: 37-48.
* label sets: counters 163-183, gauges 184-257, histograms 258-280 (the defaults ARC installs
  when its chart configures no metrics; every family is on by default).
* bucket boundaries: ``defaultRuntimeBuckets``, 517-563 (both histograms, lines 267 and 278).
* scale-set labels (``enterprise``, ``organization``, ``repository``, ``name``, ``namespace``):
  310-316, filled from the configuration URL and the runner set's name and namespace in
  ``cmd/ghalistener/main.go`` 55-65; the URL is split in ``github/actions/actions.go`` 32-73
  (a repository URL gives ``organization`` = owner and ``repository`` = repository name; an
  enterprise URL gives only ``enterprise``).
* job labels: 78-100: ``enterprise`` from the configuration, ``organization`` from the message's
  ``ownerName``, ``repository`` from ``repositoryName``, ``job_name`` from ``jobDisplayName``,
  ``event_name`` from ``eventName``; ``job_result`` (completed jobs) from ``result``.
* values: min and max runners from the configuration (474-477, called once at start-up in
  ``main.go`` 101); assigned and running jobs, registered, busy and idle runners from the
  statistics (479-485); started jobs, and the startup duration ``runnerAssignTime`` minus
  ``scaleSetAssignTime`` in whole Unix seconds (487-493); completed jobs, and the execution
  duration ``finishTime`` minus ``runnerAssignTime`` in whole Unix seconds, both skipped when
  ``runnerAssignTime`` is unset (495-503); desired runners: what the scaler returned (505-507).
  The hooks are called by actions/scaleset (commit 6ce02590) ``listener/listener.go``: statistics
  261, job started 221, job completed 227, desired runners 168 and 237.

Where we differ from ARC, on purpose:

* Label values from the service are bounded (ARC's are not): ``job_name`` keeps the first
  ``job_name_limit`` distinct display names (50) and reports later ones as ``__overflow__``
  (matrix jobs and templated names would otherwise make one series per run); every job family
  keeps at most ``series_limit`` label sets (500), further combinations are counted in one set
  whose service-given labels are all ``__overflow__``; every value is cut to 128 characters.
  Totals stay right; only the breakdown is coarser past the limits.
* A duration is observed only when both of its timestamps are set (ARC subtracts the zero time
  and records a huge value), and a negative one (stamps out of order) counts as 0.
* ``gha_max_runners`` follows ``Listener.set_max_runners`` (ARC's is fixed at start-up).
* Several scale sets served by one process (``scaleset-listen --config``): every scale set's
  gauges come with its own scale-set labels, and the job families get the scale set's ``name``
  label too (``render_arc(..., name_jobs=True)``); ARC runs one listener per process, where the
  scrape target tells them apart.

``ArcFamily``, ``ScaleSetLabels`` and ``ArcSource`` are frozen value classes
(``_value_class.py``), not dataclasses: the CLI imports this module on every start, and a
dataclass costs the ``dataclasses`` import and a compile per class (issue 28).
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Sequence
from datetime import datetime

from ._messages import JobCompleted, JobMessage, JobStarted
from ._models import RunnerScaleSetStatistic
from ._value_class import ValueClass

__all__ = ["ARC_BUCKETS", "ARC_FAMILIES", "OVERFLOW", "ArcFamily", "ArcMetrics", "ArcSource", "ScaleSetLabels",
           "render_arc"]

OVERFLOW = "__overflow__"
"""The value a bounded label takes once its limit is reached."""

MAX_VALUE_LENGTH = 128
"""Longest label value kept from the service (longer ones are cut)."""

SCALE_SET_LABELS = ("enterprise", "organization", "repository", "name", "namespace")
STARTED_LABELS = ("enterprise", "organization", "repository", "job_name", "event_name")
COMPLETED_LABELS = (*STARTED_LABELS, "job_result")

ARC_BUCKETS: tuple[float, ...] = (
    0.01, 0.05, 0.1, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 18, 20, 25, 30, 40, 50, 60, 70, 80, 90,
    100, 110, 120, 150, 180, 210, 240, 300, 360, 420, 480, 540, 600, 900, 1200, 1800, 2400, 3000, 3600)
"""Upper bounds (seconds) of both duration histograms, as ARC's listener has them."""


class ArcFamily(ValueClass):
    """One ARC family: its full name (counters end in ``_total``), type, labels and help text."""

    __slots__ = ()

    name: str
    type: str
    labels: tuple[str, ...]
    help: str


ARC_FAMILIES: tuple[ArcFamily, ...] = (
    ArcFamily("gha_assigned_jobs", "gauge", SCALE_SET_LABELS, "Jobs assigned to the scale set (ARC name)."),
    ArcFamily("gha_running_jobs", "gauge", SCALE_SET_LABELS, "Jobs running or about to run (ARC name)."),
    ArcFamily("gha_registered_runners", "gauge", SCALE_SET_LABELS, "Runners registered to the scale set (ARC name)."),
    ArcFamily("gha_busy_runners", "gauge", SCALE_SET_LABELS, "Registered runners that run a job (ARC name)."),
    ArcFamily("gha_idle_runners", "gauge", SCALE_SET_LABELS, "Registered runners without a job (ARC name)."),
    ArcFamily("gha_min_runners", "gauge", SCALE_SET_LABELS, "Configured minimum of runners (ARC name)."),
    ArcFamily("gha_max_runners", "gauge", SCALE_SET_LABELS, "Capacity advertised to the service (ARC name)."),
    ArcFamily("gha_desired_runners", "gauge", SCALE_SET_LABELS,
              "Runners the scaler reported after the last desired count (ARC name)."),
    ArcFamily("gha_started_jobs_total", "counter", STARTED_LABELS, "Jobs started on the scale set's runners "
              "(ARC name; job_name bounded, see the docs)."),
    ArcFamily("gha_completed_jobs_total", "counter", COMPLETED_LABELS, "Jobs that ran on a runner and finished "
              "(ARC name; job_name bounded, see the docs)."),
    ArcFamily("gha_job_startup_duration_seconds", "histogram", STARTED_LABELS,
              "Seconds from the scale set's assignment to a runner's (scaleSetAssignTime to runnerAssignTime)."),
    ArcFamily("gha_job_execution_duration_seconds", "histogram", COMPLETED_LABELS,
              "Seconds a job ran on its runner (runnerAssignTime to finishTime)."),
)
"""Every ARC family, in the order ``/metrics`` lists them."""

_STATISTIC_GAUGES = (("gha_assigned_jobs", "total_assigned_jobs"), ("gha_running_jobs", "total_running_jobs"),
                     ("gha_registered_runners", "total_registered_runners"),
                     ("gha_busy_runners", "total_busy_runners"), ("gha_idle_runners", "total_idle_runners"))


class ScaleSetLabels(ValueClass):
    """The five labels of ARC's scale-set gauges, known from the configuration (not the service).

    ``enterprise``, ``organization`` and ``repository`` come from the configuration URL (a
    repository URL: the owner as ``organization``); ``name`` is the scale set's name;
    ``namespace`` is the Kubernetes namespace in ARC, anything the operator likes here ("")."""

    __slots__ = ()

    enterprise: str = ""
    organization: str = ""
    repository: str = ""
    name: str = ""
    namespace: str = ""

    def values(self) -> tuple[str, ...]:
        """In ``SCALE_SET_LABELS`` order."""
        return (self.enterprise, self.organization, self.repository, self.name, self.namespace)


def escape(value: str) -> str:
    """A label value as the text format wants it: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value: float) -> str:
    """A sample value or bucket bound as Go's client writes it: ``1`` not ``1.0``, ``+Inf``."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def whole_seconds_between(start: datetime | None, end: datetime | None) -> int | None:
    """``end`` minus ``start`` as ARC counts it (each cut to its Unix second), never negative;
    None when either is unset (the service sends the zero time, which parses as None)."""
    if start is None or end is None:
        return None
    return max(0, math.floor(end.timestamp()) - math.floor(start.timestamp()))


class _Histogram:
    """Cumulative counts per ``ARC_BUCKETS`` bound (plus +Inf), the sum and the count."""

    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(ARC_BUCKETS) + 1)  # per bucket, not yet cumulative
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(ARC_BUCKETS, value)] += 1  # a value on a bound falls in that bucket (le)
        self.total += value
        self.count += 1


class ArcMetrics:
    """Records the listener's hooks into ARC's families and renders them in the text format.

    Thread-safe: the listener's thread records, HTTP threads render. The scale-set labels are
    given at render time, since the configuration is known only once the listener exists; job
    series are kept without ``enterprise`` (a constant) and get it then too."""

    def __init__(self, *, job_name_limit: int = 50, series_limit: int = 500) -> None:
        if job_name_limit < 0 or series_limit < 1:
            raise ValueError("job_name_limit must be 0 or more and series_limit 1 or more")
        self.job_name_limit = job_name_limit
        self.series_limit = series_limit
        self._lock = threading.Lock()
        self._gauges: dict[str, float] = {}
        self._job_names: set[str] = set()
        self._counters: dict[str, dict[tuple[str, ...], int]] = {
            "gha_started_jobs_total": {}, "gha_completed_jobs_total": {}}
        self._histograms: dict[str, dict[tuple[str, ...], _Histogram]] = {
            "gha_job_startup_duration_seconds": {}, "gha_job_execution_duration_seconds": {}}

    # -- recording --------------------------------------------------------------------------------
    def record_statistics(self, statistics: RunnerScaleSetStatistic) -> None:
        """Jobs and runners as the service counts them."""
        with self._lock:
            for family, attr in _STATISTIC_GAUGES:
                self._gauges[family] = getattr(statistics, attr)

    def record_desired_runners(self, count: int) -> None:
        """What the scaler reported having after a desired count."""
        with self._lock:
            self._gauges["gha_desired_runners"] = count

    def record_job_started(self, job: JobStarted) -> None:
        """Count the job, and observe its startup time when both stamps are set."""
        startup = whole_seconds_between(job.scale_set_assign_time, job.runner_assign_time)
        with self._lock:
            key = self._key("gha_started_jobs_total", self._job_values(job))
            counts = self._counters["gha_started_jobs_total"]
            counts[key] = counts.get(key, 0) + 1
            if startup is not None:
                self._observe("gha_job_startup_duration_seconds", key, startup)

    def record_job_completed(self, job: JobCompleted) -> None:
        """Count the job and observe its execution time; as ARC, a job that never reached a runner
        (no ``runnerAssignTime``: cancelled while queued) is not counted here."""
        if job.runner_assign_time is None:
            return
        execution = whole_seconds_between(job.runner_assign_time, job.finish_time)
        with self._lock:
            key = self._key("gha_completed_jobs_total", (*self._job_values(job), _clip(job.result)))
            counts = self._counters["gha_completed_jobs_total"]
            counts[key] = counts.get(key, 0) + 1
            if execution is not None:
                self._observe("gha_job_execution_duration_seconds", key, execution)

    def _job_values(self, job: JobMessage) -> tuple[str, ...]:
        """organization, repository, job_name, event_name (``enterprise`` is added at render)."""
        return (_clip(job.owner_name), _clip(job.repository_name), self._job_name(_clip(job.job_display_name)),
                _clip(job.event_name))

    def _job_name(self, name: str) -> str:
        """The first ``job_name_limit`` distinct names as they are, later ones ``OVERFLOW``."""
        if self.job_name_limit == 0:
            return ""
        if name in self._job_names:
            return name
        if len(self._job_names) < self.job_name_limit:
            self._job_names.add(name)
            return name
        return OVERFLOW

    def _key(self, family: str, values: tuple[str, ...]) -> tuple[str, ...]:
        """``values``, or the overflow set once the family holds ``series_limit`` label sets."""
        held = self._counters[family]
        if values in held or len(held) < self.series_limit:
            return values
        return (OVERFLOW,) * len(values)

    def _observe(self, family: str, key: tuple[str, ...], value: float) -> None:
        series = self._histograms[family]
        if key not in series:
            series[key] = _Histogram()
        series[key].observe(value)

    # -- rendering --------------------------------------------------------------------------------
    def render(self, scale_set: ScaleSetLabels | None, min_runners: int | None, max_runners: int | None
               ) -> list[str]:
        """Exposition lines for every ARC family (HELP and TYPE always; samples once known).
        ``scale_set`` None: the listener does not exist yet, so no gauge has a value."""
        return render_arc([ArcSource(self, scale_set, min_runners, max_runners)])

    def snapshot(self) -> tuple[dict[str, float], dict[str, dict[tuple[str, ...], int]],
                                dict[str, dict[tuple[str, ...], tuple[list[int], float, int]]]]:
        """Copies of the gauges, the counters' series and the histograms' (counts, sum, count)."""
        with self._lock:
            gauges = dict(self._gauges)
            counters = {name: dict(series) for name, series in self._counters.items()}
            histograms = {name: {key: (list(h.counts), h.total, h.count) for key, h in series.items()}
                          for name, series in self._histograms.items()}
        return gauges, counters, histograms


class ArcSource(ValueClass):
    """One scale set's ARC metrics and what is known of it at render time (see ``ArcMetrics.render``)."""

    __slots__ = ()

    metrics: ArcMetrics
    scale_set: ScaleSetLabels | None
    min_runners: int | None = None
    max_runners: int | None = None


def render_arc(sources: Sequence[ArcSource], *, name_jobs: bool = False) -> list[str]:
    """Exposition lines for every ARC family, each family once with the samples of every source.

    One source is ARC's own shape. With several (scale sets served by one process), the gauges
    differ by their scale-set labels already; the job families do not carry them in ARC (one
    listener per process there), so ``name_jobs`` adds the scale set's ``name`` label to them,
    which keeps their series apart (a label more: ARC's queries and dashboards still match)."""
    snapshots = []
    for source in sources:
        gauges, counters, histograms = source.metrics.snapshot()
        if source.scale_set is not None:
            if source.min_runners is not None:
                gauges["gha_min_runners"] = source.min_runners
            if source.max_runners is not None:
                gauges["gha_max_runners"] = source.max_runners
        snapshots.append((source.scale_set, gauges, counters, histograms))
    out: list[str] = []
    for family in ARC_FAMILIES:
        out.append(f"# HELP {family.name} {family.help}")
        out.append(f"# TYPE {family.name} {family.type}")
        job_labels = (*family.labels, "name") if name_jobs else family.labels
        for scale_set, gauges, counters, histograms in snapshots:
            enterprise = scale_set.enterprise if scale_set is not None else ""
            extra: tuple[str, ...] = (scale_set.name if scale_set is not None else "",) if name_jobs else ()
            if family.type == "gauge":
                if scale_set is not None and family.name in gauges:
                    out.append(f"{family.name}{_labels(family.labels, scale_set.values())} "
                               f"{number(gauges[family.name])}")
            elif family.type == "counter":
                for key, value in sorted(counters[family.name].items()):
                    out.append(f"{family.name}{_labels(job_labels, (enterprise, *key, *extra))} {number(value)}")
            else:
                named = ArcFamily(family.name, family.type, job_labels, family.help)
                for key, (counts, total, count) in sorted(histograms[family.name].items()):
                    out.extend(_histogram_lines(named, (enterprise, *key, *extra), counts, total, count))
    return out


def _clip(value: str) -> str:
    return value[:MAX_VALUE_LENGTH]


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{name}="{escape(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}"


def _histogram_lines(family: ArcFamily, values: tuple[str, ...], counts: list[int], total: float, count: int
                     ) -> list[str]:
    lines = []
    cumulative = 0
    for bound, in_bucket in zip((*ARC_BUCKETS, math.inf), counts, strict=True):
        cumulative += in_bucket
        le = 'le="' + number(bound) + '"'
        lines.append(f"{family.name}_bucket{_labels(family.labels, values, le)} {cumulative}")
    lines.append(f"{family.name}_sum{_labels(family.labels, values)} {number(total)}")
    lines.append(f"{family.name}_count{_labels(family.labels, values)} {count}")
    return lines
