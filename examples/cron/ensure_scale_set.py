"""Run by cron: make sure the scale set exists and carries the labels it should, with no daemon.

    * * * * *  /opt/scaleset/venv/bin/python /opt/scaleset/ensure_scale_set.py >> /var/log/scaleset/ensure.log 2>&1

A new process every minute, so what the last run learned about the service lives in the client's
state file (``Client(state_file=...)``): breaker states, rate-limit holds and retry budgets. When
the last run opened the breaker on a down service, this run is refused before it sends anything
(``CircuitOpenError``) and exits 4, a deliberate skip, instead of adding its own requests to the
outage. A label change is a partial update: only ``labels`` is sent, settings stay as they are.

Environment: ``GITHUB_TOKEN``, ``SCALESET_CONFIG_URL``, ``SCALESET_NAME``, optionally
``SCALESET_LABELS`` (comma separated; default: the name), ``SCALESET_RUNNER_GROUP`` (default
"default") and ``SCALESET_CLIENT_STATE`` (default ``/var/lib/scaleset/ensure.json``).
Exit codes: 0 done, 4 skipped (service known down or rate-limited), 1 anything else.
"""

from __future__ import annotations

import os
import sys

import scaleset_client as sc

SKIPPED = 4
# Runs are a minute apart, so a break shorter than that would end before the next run starts and each
# run would probe the down service afresh: open for 2 minutes, doubling up to 15 while it stays down.
RESILIENCE = sc.ResilienceConfig(
    circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=3, open_duration=120.0, max_open_duration=900.0),
    retry=sc.RetryConfig(max_attempts=3))


def ensure(client: sc.Client, group_name: str, name: str, labels: list[str]) -> str:
    """Create the scale set, or put its labels right; return what was done."""
    group = client.get_runner_group_by_name(group_name)
    wanted = [sc.Label(name=label) for label in labels]
    current = client.get_runner_scale_set(group.id, name)
    if current is None:
        created = client.create_runner_scale_set(sc.RunnerScaleSet(name=name, runner_group_id=group.id, labels=wanted))
        return f"created scale set {name!r} (id {created.id})"
    if sorted(label.name for label in current.labels) == sorted(labels):
        return f"scale set {name!r} (id {current.id}) is as it should be"
    client.update_runner_scale_set(current.id, sc.RunnerScaleSet(labels=wanted))
    return f"updated the labels of scale set {name!r} (id {current.id})"


def main() -> int:
    name = os.environ["SCALESET_NAME"]
    labels = [label.strip() for label in os.environ.get("SCALESET_LABELS", name).split(",") if label.strip()]
    state = os.environ.get("SCALESET_CLIENT_STATE", "/var/lib/scaleset/ensure.json")
    with sc.Client(os.environ["SCALESET_CONFIG_URL"], token=os.environ["GITHUB_TOKEN"], resilience=RESILIENCE,
                   state_file=state) as client:
        try:
            print(ensure(client, os.environ.get("SCALESET_RUNNER_GROUP", "default"), name, labels))
        except sc.TransientError as exc:  # a breaker open from this or an earlier run, a 429, a 5xx storm
            print(f"skipped: {exc}", file=sys.stderr)
            return SKIPPED
        except sc.ScalesetError as exc:
            print(f"failed: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
