"""The project's fake service in its own process, so its CPU never counts against the client.

A ``RemoteFake`` starts ``FakeActionsService`` in a fresh interpreter (a subprocess: no threads,
sockets or ``__main__`` inherited) and forwards method calls and attribute reads over a local
socket pair:

    with RemoteFake(long_poll_hold=0.0) as fake:
        client = sc.Client(fake.config_url, token=fake.token)
        fake.call("push_message", scale_set_id, [...])
        fake.call("connections", "broker")   # TCP connections accepted, counted by the server
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent


def _child(fd: int, kwargs_json: str) -> None:
    """The server process: start the fake, then answer calls until told to stop."""
    from scaleset_client.testing import FakeActionsService

    conn = Connection(fd)
    fake = FakeActionsService(**json.loads(kwargs_json)).start()
    conn.send((fake.config_url, fake.token))
    try:
        while True:
            message = conn.recv()
            if message is None:
                break
            name, args, kw = message
            try:
                attr = getattr(fake, name)
                conn.send((True, attr(*args, **kw) if callable(attr) else attr))
            except Exception as exc:  # report, keep serving
                conn.send((False, f"{type(exc).__name__}: {exc}"))
    finally:
        fake.close()


class RemoteFake:
    """A ``FakeActionsService`` running in a child process; ``call`` reaches it by name.
    ``CHILD`` names the module whose ``_child`` the process runs (a subclass may serve another fake)."""

    CHILD = "bench._remote"

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = json.dumps(kwargs)  # plain values only (numbers, strings)
        self.config_url = ""
        self.token = ""
        self.pid = 0

    def __enter__(self) -> RemoteFake:
        # A socket pair, not a listening socket: if the child dies, recv() ends with EOFError
        # instead of waiting for a connection that never comes.
        ours, theirs = socket.socketpair()
        code = f"from {self.CHILD} import _child; _child({theirs.fileno()}, {self._kwargs!r})"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")])}
        self._proc = subprocess.Popen([sys.executable, "-c", code], cwd=_ROOT, env=env, pass_fds=[theirs.fileno()])
        theirs.close()
        self.pid = self._proc.pid
        self._conn = Connection(ours.detach())
        self.config_url, self.token = self._conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._conn.send(None)
            self._proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        self._conn.close()

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``fake.<name>(*args, **kwargs)`` (or read the attribute) in the server process."""
        self._conn.send((name, args, kwargs))
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"fake.{name} failed in the server process: {value}")
        return value
