"""The package's shape, read from its source with ``ast``: no import cycle, no reaching into privates.

Why: a cycle hidden behind ``TYPE_CHECKING`` or a function-local import still couples the modules
(neither can be read, tested or replaced alone), and a module that reads another object's
``_private`` attributes is coupled to code it does not own. Both checks parse the source, so
they count every import a reader sees: module level, ``if TYPE_CHECKING:`` blocks and imports
inside functions alike.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import scaleset_client

PACKAGE = Path(scaleset_client.__file__).parent
NAME = "scaleset_client"

# The few reads of another object's privates that stay, keyed by (module, attribute), each with why.
_DEADLINE_CHAIN = ("a Deadline walks its chain of enclosing Deadlines (same class, same module); "
                   "deadline.py is outside the call seam's files")
ALLOWED_PRIVATE: dict[tuple[str, str], str] = {
    # requests internals we must touch
    ("scaleset_client._calls", "_cookies"):
        "requests reads PreparedRequest._cookies when it sees a redirect; a request prepared without "
        "requests' full preparation must carry an empty jar there",
    ("scaleset_client._adapter", "_content"):
        "requests.Response keeps its body in _content: the adapter reads the body itself, capped and "
        "interruptible, and stores it there so response.content works",
    ("scaleset_client._adapter", "_content_consumed"):
        "set with _content, so requests does not read the already drained stream again",
    # the same class reading another instance of itself
    ("scaleset_client._secrets", "_value"): "Secret.__eq__ compares with another Secret (same class)",
    ("scaleset_client._deadline", "_cancelled"): _DEADLINE_CHAIN,
    ("scaleset_client._deadline", "_cancel_on"): _DEADLINE_CHAIN,
    ("scaleset_client._deadline", "_detached"): _DEADLINE_CHAIN,
    ("scaleset_client._deadline", "_parent"): _DEADLINE_CHAIN,
    ("scaleset_client._deadline", "_lock"): _DEADLINE_CHAIN,
    ("scaleset_client._deadline", "_ids"): _DEADLINE_CHAIN,
    ("scaleset_client._deadline", "_callbacks"): _DEADLINE_CHAIN,
    ("scaleset_client._deadline", "_reset"):
        "the module registers its own watchdog's fork hook (os.register_at_fork) at import",
}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``testing/`` included)."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join([NAME, *parts])] = path
    return found


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``module`` imports anywhere in its source (TYPE_CHECKING and functions too)."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    targets: set[str] = set()

    def add(name: str) -> None:
        # The longest known module named by the import (``a.b.c`` where ``c`` is a class: ``a.b``).
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            targets.add(name)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == NAME or alias.name.startswith(NAME + "."):
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source != NAME and not source.startswith(NAME + "."):
                continue
            for alias in node.names:  # ``from . import _wire`` imports the module ``_wire``
                candidate = f"{source}.{alias.name}"
                add(candidate if candidate in known else source)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``a -> b -> ... -> a``, or None (iterative DFS, three colours)."""
    colour = dict.fromkeys(graph, 0)  # 0 unseen, 1 on the stack, 2 done
    for start in sorted(graph):
        if colour[start]:
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        colour[start] = 1
        while stack:
            node, pending = stack[-1]
            if not pending:
                colour[node] = 2
                stack.pop()
                continue
            nxt = pending.pop(0)
            if colour.get(nxt, 2) == 1:
                path = [n for n, _ in stack]
                return [*path[path.index(nxt):], nxt]
            if colour.get(nxt) == 0:
                colour[nxt] = 1
                stack.append((nxt, sorted(graph[nxt])))
    return None


def _private_reads(module: str, path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """Each ``<expr>._name`` where ``<expr>`` is not ``self``, ``cls`` or ``super()``, in line order."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level > 0 and node.module:  # not "from . import _mod"
            # ``from ._config import _check`` reads another module's private name the same way
            found += [(node.lineno, f"{path.relative_to(root)}:{node.lineno}: import {alias.name}")
                      for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
            continue
        if not isinstance(node, ast.Attribute):
            continue
        attr = node.attr
        if not attr.startswith("_") or (attr.startswith("__") and attr.endswith("__")):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
            continue
        if (module, attr) in ALLOWED_PRIVATE:
            continue
        found.append((node.lineno, f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}"))
    return [text for _, text in sorted(found)]


def test_the_import_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checker itself: a TYPE_CHECKING import and function-local imports are edges, and a
    cycle is reported as its path."""
    probe = tmp_path / "a.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .b import B\n"
        "def f():\n    from . import c\n    import scaleset_client.d.e\n    import os\n",
        encoding="utf-8")
    known = {f"{NAME}.a", f"{NAME}.b", f"{NAME}.c", f"{NAME}.d"}
    assert _imports(f"{NAME}.a", probe, known) == {f"{NAME}.b", f"{NAME}.c", f"{NAME}.d"}
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_private_check_sees_a_chain_through_self(tmp_path: Path) -> None:
    """``self._client._log`` is another object's private; ``self._log`` and ``super()._x`` are not."""
    probe = tmp_path / "m.py"
    probe.write_text("class A(B):\n    def f(self):\n        self._log\n        super()._x\n"
                     "        self._client._log\n        other._value\n        obj.__class__\n"
                     "from ._config import _check, check\nfrom . import _wire\n", encoding="utf-8")
    found = _private_reads(f"{NAME}.m", probe, root=tmp_path)
    assert found == ["m.py:5: self._client._log", "m.py:6: other._value", "m.py:8: import _check"]


def test_the_package_has_no_import_cycle() -> None:
    graph = _graph()
    assert f"{NAME}._client" in graph and f"{NAME}._session" in graph  # the walk found the package
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_reads_another_objects_privates() -> None:
    violations = [v for name, path in _modules().items() for v in _private_reads(name, path)]
    assert not violations, "private attributes of other objects read:\n" + "\n".join(violations)


@pytest.mark.parametrize("key", sorted(ALLOWED_PRIVATE))
def test_every_allowed_private_is_still_needed(key: tuple[str, str]) -> None:
    """An allow-list entry nothing uses any more is removed, so the list stays short and true."""
    module, attr = key
    path = _modules()[module]
    uses = [n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(n, ast.Attribute) and n.attr == attr
            and not (isinstance(n.value, ast.Name) and n.value.id in ("self", "cls"))]
    assert uses, f"{module} no longer touches .{attr}: drop it from ALLOWED_PRIVATE"
