"""``import scaleset_client`` is cheap, and every public name still resolves (PEP 562, issue 14)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest

import scaleset_client as sc


def test_every_public_name_resolves_and_from_import_works() -> None:
    for name in sc.__all__:
        assert getattr(sc, name) is not None, name
    from scaleset_client import Client, Listener, ScalesetError  # noqa: F401  (the from-import form)

    assert set(dir(sc)) >= set(sc.__all__)
    # Private implementation modules behind a flat face: every public class answers to its
    # public name, and pickles by it.
    classes = [getattr(sc, name) for name in sc.__all__ if isinstance(getattr(sc, name), type)]
    assert classes and all(cls.__module__ == "scaleset_client" for cls in classes)
    assert all(not module.startswith(("scaleset_client.", "scaleset_client/")) or module.split(".")[-1]
               .startswith("_") or module == "scaleset_client.testing"
               for module in (m for m in sys.modules if m.startswith("scaleset_client.")
                              and m.count(".") == 1))
    error = pickle.loads(pickle.dumps(sc.SessionConflictError("taken", status=409)))
    assert type(error) is sc.SessionConflictError and error.status == 409


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        sc.NoSuchThing  # noqa: B018


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return set(out.split())


def test_bare_import_loads_no_client_code_and_first_use_loads_it() -> None:
    bare = _modules_after("import scaleset_client")
    assert not {"scaleset_client._client", "scaleset_client._listener", "scaleset_client._models",
                "requests"} & bare
    used = _modules_after("import scaleset_client as sc; sc.Client")
    assert {"scaleset_client._client", "scaleset_client._models", "requests"} <= used
    assert "scaleset_client._listener" not in used


def test_a_cron_run_loads_neither_dataclasses_nor_its_imports() -> None:
    """A whole ``scaleset-listen --once`` run (empty queue) in a fresh interpreter: ``dataclasses``
    pulls ``inspect``, ``ast`` and ``dis`` in, a cost every cron minute would pay (issue 28); nor
    what only some runs need: ``subprocess`` (``--exec``), the ``--config`` reader, the health
    report (``Client.health``), ``argparse`` (``--help``, an unusual command line), the state
    file's modules (no ``--state-file``), the client certificate's (no ``--client-cert``) and the
    metrics' (no ``--health-port``: nothing would read them)."""
    from scaleset_client.testing import FakeActionsService

    heavy = ["dataclasses", "inspect", "ast", "dis", "subprocess", "argparse", "fcntl", "scaleset_client._cli_config",
             "scaleset_client._health", "scaleset_client._state", "scaleset_client._state_owner",
             "scaleset_client._tls", "scaleset_client._health_server", "scaleset_client._arc_metrics"]
    code = ("import atexit, runpy, sys\n"
            f"atexit.register(lambda: print('LOADED', sorted(set({heavy!r}) & set(sys.modules))))\n"
            "sys.argv = ['scaleset-listen', *sys.argv[1:]]\n"
            "runpy.run_module('scaleset_client', run_name='__main__', alter_sys=True)\n")
    # without coverage in the child: its start-up hook (a .pth) imports ``dataclasses`` itself
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_PROCESS_")}
    with FakeActionsService(long_poll_hold=0.05) as fake:
        child_env["GITHUB_TOKEN"] = fake.token
        done = subprocess.run([sys.executable, "-c", code, "--url", fake.config_url, "--scale-set-name", "cron",
                               "--once"], capture_output=True, text=True, timeout=60, env=child_env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert fake.count("get_message") >= 1, "the run polled the queue"
    assert "LOADED []" in done.stdout, done.stdout[-500:]
