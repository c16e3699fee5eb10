"""The package's layers, read from its imports with ``ast`` (module level, ``TYPE_CHECKING`` and
function-local imports alike):

- **transport** (sockets, retries, breakers, deadlines, TLS) knows nothing of the service's
  operations or of the listener, so it can be tested and replaced alone;
- **the listener** reaches the transport only through the ``Client``: it may use the shared
  vocabulary (deadlines, breaker states, errors, the clock, jitter) but never the adapter, the
  connection pool, the classification of attempts, retries, TLS or the reachability looks;
- the **fake service** (``testing``) is never imported by the package outside ``testing``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import scaleset_client

PACKAGE = Path(scaleset_client.__file__).parent
TRANSPORT = {"_adapter", "_body", "_pools", "_connections", "_classify", "_retry", "_breaker", "_deadline", "_http",
             "_reachability", "_policy", "_tls", "_jitter"}
TRANSPORT_INTERNALS = {"_adapter", "_body", "_pools", "_connections", "_classify", "_retry", "_policy", "_tls",
                       "_reachability"}
SERVICE_AND_LISTENER = {"_client", "_calls", "_admin_api", "_session", "_registration", "_auth", "_listener",
                        "_listener_config", "_listener_state", "_exec_scaler", "_cli", "_health", "_health_server",
                        "_arc_metrics", "_resilience_store"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imported(name: str, path: Path) -> set[str]:
    """Every package module ``name`` imports, as its first part below the package (``_listener``
    for ``_listener.pacing``; ``testing`` for anything under it)."""
    package_parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.startswith("scaleset_client."):
                    targets = [node.module.split(".", 1)[1]]
            else:
                base = package_parts[: len(package_parts) - (node.level - 1)] if node.level > 1 else package_parts
                target = ".".join([*base, node.module] if node.module else base)
                targets = [target] if node.module else [".".join([*base, a.name]) for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".", 1)[1] for a in node.names if a.name.startswith("scaleset_client.")]
        out.update(t.split(".")[0] for t in targets if t)
    return out


MODULES = _modules()


def _layer_of(name: str) -> str:
    return name.split(".")[0] if name else ""


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _layer_of(n) in TRANSPORT))
def test_transport_imports_neither_the_service_nor_the_listener(name: str) -> None:
    assert _imported(name, MODULES[name]) & SERVICE_AND_LISTENER == set()


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _layer_of(n) in {"_listener", "_listener_config",
                                                                              "_listener_state"}))
def test_the_listener_reaches_the_transport_only_through_the_client(name: str) -> None:
    assert _imported(name, MODULES[name]) & TRANSPORT_INTERNALS == set()


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n and _layer_of(n) != "testing"))
def test_the_package_never_imports_its_fake(name: str) -> None:
    assert "testing" not in _imported(name, MODULES[name])


def test_the_reading_of_imports_sees_what_it_must() -> None:
    """The checks above would pass vacuously if imports were misread: the adapter's are known."""
    assert {"_deadline", "_breaker", "_classify"} <= _imported("_adapter", MODULES["_adapter"])
    assert {"_client", "_deadline"} <= _imported("_listener.pacing", MODULES["_listener.pacing"])
    assert {"_listener", "_client"} <= _imported("_cli", MODULES["_cli"])
