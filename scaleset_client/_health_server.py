"""The CLI's ``/livez``, ``/readyz`` and ``/metrics``: counters fed by the listener's hooks, and a
small stdlib HTTP server started only with ``--health-port``.

Metrics follow Prometheus' text format: HELP and TYPE on every family, units in names, states
as values (a transition never starts a new series). Beside our ``scaleset_*`` families, the
``gha_*`` families of actions-runner-controller's listener (``_arc_metrics``), so ARC dashboards
and alerts keep working.

Several scale sets in one process (``scaleset-listen --config``): one ``Metrics`` serves them
all. ``Metrics.add_scale_set(name)`` gives each listener a recorder of its own; ``render`` then
writes each family once, with a sample per scale set labelled ``scale_set="NAME"`` (the client's
own families, HTTP attempts and breakers, stay unlabelled: the client is shared), and each scale
set's ``gha_*`` labels. ``/readyz`` and ``/livez`` answer for all of them, a line each.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._arc_metrics import ArcMetrics, ArcSource, ScaleSetLabels, escape, render_arc
from ._messages import JobCompleted, JobStarted
from ._models import RunnerScaleSetStatistic
from ._version import __version__

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

    from ._client import Client
    from ._listener import Listener

_CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2, "forced_open": 3}


class Metrics:
    """Counters and gauges for /metrics, fed through the listener's MetricsRecorder hooks, in the
    Prometheus text format: HELP and TYPE on every family, units in names, states as values.

    The ARC-compatible ``gha_*`` families come too. Their scale-set labels are read when
    rendering, from the listener's configuration (``scale_set_name``, ``min_runners``, the
    current ``max_runners``) and the client's configuration URL (enterprise, organization,
    repository), so nothing needs wiring; ``namespace`` (ARC's Kubernetes namespace) is given
    here. ``job_name_limit`` and ``series_limit`` bound the job families' label values (see
    ``_arc_metrics``).

    Several listeners: ``add_scale_set(name)`` returns a ``Metrics`` for one of them (give it
    to that ``Listener``, and set its ``listener`` attribute once the listener exists); from
    then on this one renders theirs, each labelled, instead of its own."""

    def __init__(self, *, namespace: str = "", job_name_limit: int = 50, series_limit: int = 500) -> None:
        self.namespace = namespace
        self.arc = ArcMetrics(job_name_limit=job_name_limit, series_limit=series_limit)
        self.scale_set: str | None = None  # the label value, for a recorder made by add_scale_set
        self.listener: Listener | None = None  # a scale set's listener, once it exists
        self.ended = ""  # why a scale set's run ended while the process goes on ("" while it runs)
        self._scale_sets: list[Metrics] = []
        self._lock = threading.Lock()
        self.counters = {"jobs_started": 0, "jobs_completed": 0, "statistics_updates": 0, "scaler_failures": 0,
                         "messages_poisoned": 0, "state_cursor_ahead": 0}
        self.gauges: dict[str, float] = {"desired_runners": 0, "assigned_jobs": 0, "running_jobs": 0}
        self.circuits: dict[str, str] = {}

    def add_scale_set(self, name: str) -> Metrics:
        """A recorder for one of several listeners served together, labelled ``scale_set=name``
        (and, in the ``gha_*`` families, with its own scale-set labels); names are unique."""
        child = Metrics(namespace=self.namespace, job_name_limit=self.arc.job_name_limit,
                        series_limit=self.arc.series_limit)
        child.scale_set = name
        with self._lock:
            if any(known.scale_set == name for known in self._scale_sets):
                raise ValueError(f"scale set {name!r} is already added")
            self._scale_sets.append(child)
        return child

    @property
    def scale_sets(self) -> list[Metrics]:
        """The recorders ``add_scale_set`` returned, in order (empty: one listener, unlabelled)."""
        with self._lock:
            return list(self._scale_sets)

    def record_statistics(self, statistics: RunnerScaleSetStatistic) -> None:
        """Statistics were applied."""
        with self._lock:
            self.counters["statistics_updates"] += 1
            self.gauges["assigned_jobs"] = statistics.total_assigned_jobs
            self.gauges["running_jobs"] = statistics.total_running_jobs
        self.arc.record_statistics(statistics)

    def record_job_started(self, job: JobStarted) -> None:
        """A job-started event was handled."""
        with self._lock:
            self.counters["jobs_started"] += 1
        self.arc.record_job_started(job)

    def record_job_completed(self, job: JobCompleted) -> None:
        """A job-completed event was handled."""
        with self._lock:
            self.counters["jobs_completed"] += 1
        self.arc.record_job_completed(job)

    def record_desired_runners(self, count: int) -> None:
        """The scaler reported ``count`` runners."""
        with self._lock:
            self.gauges["desired_runners"] = count
        self.arc.record_desired_runners(count)

    def record_circuit_state(self, origin: str, state: str) -> None:
        """A breaker changed state."""
        with self._lock:
            self.circuits[origin] = state

    def record_scaler_failure(self, message_id: int, error: BaseException) -> None:
        """The scaler raised."""
        with self._lock:
            self.counters["scaler_failures"] += 1

    def record_poisoned(self, message_id: int) -> None:
        """A message was set aside."""
        with self._lock:
            self.counters["messages_poisoned"] += 1

    def record_cursor_ahead(self, cursor: int, message_id: int) -> None:
        """The state file's cursor was ahead of the service."""
        with self._lock:
            self.counters["state_cursor_ahead"] += 1

    def render(self, listener: Listener | None, client: Client | None) -> str:
        """The exposition text; before start-up finished, only what is known then. With scale sets
        added (``add_scale_set``), theirs, each with its own listener; ``listener`` is unused."""
        children = self.scale_sets
        if children:
            return _render([(child, child.listener) for child in children], client, labelled=True)
        return _render([(self, listener)], client, labelled=False)

    def snapshot(self) -> tuple[dict[str, int], dict[str, float]]:
        """Copies of the counters and the gauges."""
        with self._lock:
            return dict(self.counters), dict(self.gauges)

    def arc_source(self, listener: Listener | None, client: Client | None) -> ArcSource:
        """The ARC gauges' labels, minimum and maximum: known once the listener exists."""
        if listener is None:
            return ArcSource(self.arc, None)
        github = client.config if client is not None else None
        labels = ScaleSetLabels(
            enterprise=github.enterprise if github is not None else "",
            organization=(github.organization or github.owner) if github is not None else "",
            repository=github.repository if github is not None else "",
            name=listener.config.scale_set_name or self.scale_set or "",
            namespace=self.namespace)
        return ArcSource(self.arc, labels, int(getattr(listener.config, "min_runners", 0)), listener.max_runners)


_HELPS = {
    "jobs_started": "Job-started events handed to the scaler.",
    "jobs_completed": "Job-completed events handed to the scaler.",
    "statistics_updates": "Statistics applied (only newer ones are).",
    "scaler_failures": "Times the scaler failed on a message (the message stays unacknowledged).",
    "messages_poisoned": "Messages set aside (acknowledged unhandled) after repeated failures.",
    "state_cursor_ahead": "Times the state file's cursor was ahead of the service and was reset.",
}
_GAUGE_HELPS = {"desired_runners": "Runners the scaler reported after the last desired count.",
                "assigned_jobs": "Jobs assigned to the scale set (the scaling signal).",
                "running_jobs": "Jobs running on the scale set's runners."}


def _render(sources: Sequence[tuple[Metrics, Listener | None]], client: Client | None, *, labelled: bool) -> str:
    """Every family once, with a sample per source: unlabelled for one listener, labelled
    ``scale_set`` for several. Families that need a listener appear once one exists."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: Sequence[tuple[str, float]]) -> None:
        out.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])
        out.extend(f"{name}{labels} {value:.17g}" for labels, value in samples)

    def tag(metrics: Metrics) -> str:
        return f'{{scale_set="{escape(metrics.scale_set or "")}"}}' if labelled else ""

    import platform  # on the first scrape, not at every start: it costs ~1 ms to import

    family("scaleset_build_info", "gauge", "Version of scaleset-listen and Python (always 1).",
           [(f'{{version="{__version__}",python="{platform.python_version()}"}}', 1)])
    taken = [(metrics, listener, *metrics.snapshot()) for metrics, listener in sources]
    for name, help_text in _HELPS.items():
        family(f"scaleset_{name}_total", "counter", help_text, [(tag(m), c[name]) for m, _, c, _ in taken])
    for name, help_text in _GAUGE_HELPS.items():
        family(f"scaleset_{name}", "gauge", help_text, [(tag(m), g[name]) for m, _, _, g in taken])
    family("scaleset_http_retries_total", "counter", "HTTP attempts that were retries of a failed attempt.",
           [("", client.retries_sent if client is not None else 0)])
    if client is not None:
        family("scaleset_http_requests_total", "counter", "HTTP attempts sent, retries included.",
               [("", client.attempts_sent)])
    healths = [(metrics, listener, listener.health() if listener is not None else None)
               for metrics, listener in sources]
    running = [(m, lis, h) for m, lis, h in healths if lis is not None and h is not None]
    family("scaleset_listener_live", "gauge", "1 while the loop makes progress (an outage never makes it 0).",
           [(tag(m), int(h.live) if h is not None else 1) for m, _, h in healths])
    family("scaleset_listener_ready", "gauge", "1 with an active session, a working broker and scaler.",
           [(tag(m), int(h.ready) if h is not None else 0) for m, _, h in healths])
    if running:
        family("scaleset_messages_handled_total", "counter", "Messages handled and acknowledged.",
               [(tag(m), lis.handled_messages) for m, lis, _ in running])
        family("scaleset_scaler_consecutive_failures", "gauge",
               "Scaler failures in a row; at the poison threshold or above, /readyz is 503.",
               [(tag(m), h.scaler_failures) for m, _, h in running])
        family("scaleset_last_message_id", "gauge", "Id of the last message handled (the cursor).",
               [(tag(m), h.last_message_id) for m, _, h in running])
        family("scaleset_last_poll_timestamp_seconds", "gauge", "Unix time of the last answered poll.",
               [(tag(m), h.last_poll_time or 0) for m, _, h in running])
        if client is not None:
            samples_state: list[tuple[str, float]] = []
            samples_open: list[tuple[str, float]] = []
            for breaker in client.circuit_breakers.all():
                labels = f'{{origin="{breaker.origin}",operation_class="{breaker.operation_class}"}}'
                state = breaker.state.value
                samples_state.append((labels, _CIRCUIT_VALUES.get(state, -1)))
                samples_open.append((labels, int(state in ("open", "forced_open"))))
            family("scaleset_circuit_state", "gauge",
                   "Circuit breaker state: 0 closed, 1 half_open, 2 open, 3 forced_open.", samples_state)
            family("scaleset_circuit_open", "gauge", "1 while the circuit refuses calls (open or forced_open).",
                   samples_open)
    out.extend(render_arc([m.arc_source(lis, client) for m, lis in sources], name_jobs=labelled))
    return "\n".join(out) + "\n"


class _Probe:
    """What the health server reports: nothing but "starting" until the listener exists."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.listener: Listener | None = None
        self.client: Client | None = None

    def answer(self, path: str) -> tuple[int, str]:
        listener = self.listener
        if path == "/metrics":
            return 200, self.metrics.render(listener, self.client)
        if path not in ("/livez", "/readyz"):
            return 404, "not found"
        scale_sets = self.metrics.scale_sets
        if scale_sets:
            answers = [(m.scale_set, *_one_answer(path, m.listener, m.ended)) for m in scale_sets]
            worst = max(status for _, status, _ in answers)
            return worst, "\n".join(f"{name}: {text}" for name, _, text in answers)
        return _one_answer(path, listener, "")


def _one_answer(path: str, listener: Listener | None, ended: str) -> tuple[int, str]:
    """/livez or /readyz for one listener. A run that ended while others go on (``ended``) is not
    ready, and still live: restarting the process would not cure it, and would stop the others."""
    if ended:
        return (200, f"ok (ended: {ended})") if path == "/livez" else (503, f"ended: {ended}")
    if listener is None:
        return (200, "ok (starting)") if path == "/livez" else (503, "starting: no session yet")
    health = listener.health()
    if path == "/livez":
        return (200 if health.live else 503), ("ok" if health.live else health.reason)
    return (200 if health.ready else 503), ("ok" if health.ready else health.reason)


def serve_health(address: str, port: int, listener: Listener | None, client: Client | None, metrics: Metrics
                 ) -> ThreadingHTTPServer:
    """Serve /livez, /readyz and /metrics from a daemon thread; the returned server's ``probe``
    attribute takes the listener and client once they exist. Raises OSError when the port is taken."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # only with --health-port

    probe = _Probe(metrics)
    probe.listener, probe.client = listener, client

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            status, body = probe.answer(self.path)
            data = (body + ("\n" if not body.endswith("\n") else "")).encode()
            self.send_response(status)
            ctype = "text/plain; version=0.0.4; charset=utf-8" if self.path == "/metrics" else "text/plain"
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    server.probe = probe  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, name="scaleset-health", daemon=True).start()
    return server
