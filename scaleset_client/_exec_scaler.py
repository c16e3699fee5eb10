"""The CLI's scalers: ``ExecScaler`` runs a command per event (JSON on stdin), ``LogScaler`` logs.

An ``--exec`` command in flight when the listener stops gets a grace period, then its process
group is terminated and the message stays unacknowledged; a command that cannot run at all is
refused at start instead of failing every message.

An event's job is turned into JSON through its fields (``field_values``), not
``dataclasses.asdict``: the models are value classes, and importing ``dataclasses`` (with
``inspect``, ``ast`` and ``dis``) cost every CLI start, a cron run included (issue 28); and
``subprocess`` is imported when a command first runs, not by every start that logs only.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._errors import ScalerInterruptedError
from ._messages import JobCompleted, JobStarted
from ._value_class import ValueClass, field_values

if TYPE_CHECKING:
    import subprocess

    from ._listener import Listener

log = logging.getLogger("scaleset_client._cli")

def _jsonable(value: Any) -> Any:
    if isinstance(value, ValueClass):
        return {k: _jsonable(v) for k, v in field_values(value).items()}
    if hasattr(type(value), "__dataclass_fields__") and not isinstance(value, type):  # a dataclass of the caller's
        from dataclasses import asdict

        return {k: _jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


class ExecScaler:
    """Runs a command per event with the event as JSON on stdin; a failure raises (the message
    is then retried, and set aside after repeated failures).

    When ``stop`` is set while a command runs, it gets ``grace`` seconds to finish; then its
    process group is terminated (SIGTERM, SIGKILL 2 s later) and ``ScalerInterruptedError`` is
    raised, so the listener leaves the message unacknowledged."""

    def __init__(self, command: str, timeout: float = 300.0, *, stop: threading.Event | None = None,
                 grace: float = 10.0) -> None:
        self.command = command
        self.timeout = timeout
        self.stop = stop
        self.grace = grace
        self.listener: Listener | None = None  # set by main(): events then carry message_id and event_index

    def _run(self, event: dict[str, Any]) -> str:
        import subprocess  # here, not at the top: a start without --exec never needs it

        listener = self.listener
        ref = listener.current_event if listener is not None else None
        if ref is not None:  # what a scaler needs to de-duplicate the one event a crash may repeat
            event = {**event, "message_id": ref.message_id, "event_index": ref.index}
        if listener is not None:  # the bounds the scaler works within, as ARC's scalers get them
            event = {**event, "min_runners": listener.config.min_runners, "max_runners": listener.max_runners,
                     "scale_set_id": listener.scale_set_id,  # which one, for a command several scale sets share
                     "scale_set_name": listener.config.scale_set_name or ""}
        proc = subprocess.Popen(self.command, shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        data: bytes | None = json.dumps(event).encode()
        started = time.monotonic()
        stop_seen: float | None = None
        while True:
            try:
                out, err = proc.communicate(data, timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                data = None  # sent with the first call; a retry must not send it again
            now = time.monotonic()
            if self.stop is not None and self.stop.is_set():
                stop_seen = stop_seen if stop_seen is not None else now
                if now - stop_seen >= self.grace:
                    _terminate(proc)
                    raise ScalerInterruptedError(
                        f"--exec command did not finish within the {self.grace:g}s shutdown grace; it was "
                        "terminated and its message stays unacknowledged")
            if now - started >= self.timeout:
                _terminate(proc)
                raise RuntimeError(f"--exec command did not finish within {self.timeout:g}s; terminated")
        if proc.returncode != 0:
            raise RuntimeError(f"--exec command exited {proc.returncode}: "
                               f"{err.decode('utf-8', 'replace')[-300:].strip()}")
        return out.decode("utf-8", "replace")

    def handle_job_started(self, job: JobStarted) -> None:
        """Run the command with ``{"event": "job_started", "job": {...}}``."""
        self._run({"event": "job_started", "job": _jsonable(job)})

    def handle_job_completed(self, job: JobCompleted) -> None:
        """Run the command with ``{"event": "job_completed", "job": {...}}``."""
        self._run({"event": "job_completed", "job": _jsonable(job)})

    def handle_desired_runner_count(self, count: int) -> int:
        """Run the command with the count; its last output line is the runner count it now has."""
        out = self._run({"event": "desired_runner_count", "count": count}).strip().splitlines()
        try:
            return int(out[-1]) if out else count
        except ValueError:
            return count


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the command's process group, SIGKILL if it is still there 2 s later."""
    import subprocess  # loaded already: the command ran

    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.communicate(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class LogScaler:
    """The default scaler: logs what a real one would do."""

    def handle_job_started(self, job: JobStarted) -> None:
        """Log it."""
        log.info("job started: request %d on runner %s", job.runner_request_id, job.runner_name)

    def handle_job_completed(self, job: JobCompleted) -> None:
        """Log it."""
        log.info("job completed: request %d (%s) on runner %s", job.runner_request_id, job.result, job.runner_name)

    def handle_desired_runner_count(self, count: int) -> int:
        """Log it and report having ``count`` runners."""
        log.info("desired runners: %d", count)
        return count
