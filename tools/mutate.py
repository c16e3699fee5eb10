"""Mutation testing for scaleset_client: which promises would no test notice breaking?

One command::

    .venv/bin/python tools/mutate.py breaker retry            # print the table
    .venv/bin/python tools/mutate.py breaker retry --write    # and update docs/MUTATION.md

For each module it parses the source, makes one small change at a time (a mutant: ``<`` for
``<=``, ``and`` for ``or``, a constant off by one, a statement dropped, ...) and runs that
module's fast test files against it with ``pytest -x``. A mutant the tests fail on is killed;
one they pass on survived. A survivor either shows a promise no test pins, or is equivalent
(no observer could tell it from the original): those are listed in ``tools/mutants-equivalent.txt``
by id with the reason, and leave the score's denominator.

Each mutant runs only the tests that execute a line of its statement: the baseline run records,
under coverage.py with one context per test, which tests run each line (lines run at import run
them all; a mutant no test reaches survives without a run). ``--every-test`` runs every mapped
file instead; both gave the same results on breaker, retry and classify (see MUTATION.md).

Why a script of our own: it runs each mutant in a forked child that already has pytest,
requests and hypothesis imported and loads the mutant from memory through an import hook, so
nothing is written to the worktree, a mutant costs a fraction of a second, and the ids are
stable (a hash of the function, the change and the source text, not of line numbers), so the
list of equivalent mutants survives edits elsewhere in the file. Tests that start the CLI in a
subprocess do not see the mutant (the hook lives in the child only); the mapped test files are
in-process ones.

What is not mutated: docstrings, annotations, ``__all__``, and the arguments of ``log.*`` calls,
also through a logger attribute such as ``client._log.warning`` (log wording is not a promise;
whether something is logged at all is covered by dropping calls elsewhere). Mutants are
deterministic: hypothesis runs derandomized without its example database.
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import importlib
import importlib.abc
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = ROOT / "tools" / "mutants-equivalent.txt"
# Survivors that are not equivalent but have no practical test (say why); they still count against the score.
KNOWN_SURVIVORS_FILE = ROOT / "tools" / "mutants-known-survivors.txt"
REPORT = ROOT / "docs" / "MUTATION.md"
NOT_LOADED = 9  # a child's exit code: the tests ran, but not against the mutant

_LISTENER_TESTS = [  # the listener's fast test files, in the order they run
    "tests/test_listener_cursor.py", "tests/test_listener_standby.py", "tests/test_listener_renewal.py",
    "tests/test_listener_desired_count.py", "tests/test_listener_pacing.py", "tests/test_listener_delivery.py",
    "tests/test_listener_trouble.py", "tests/test_listener.py", "tests/test_listener_health.py",
    "tests/test_listener_run.py", "tests/test_listener_metrics.py", "tests/test_deleted_scale_set.py",
    "tests/test_seam.py", "tests/test_recovery.py", "tests/test_large_messages.py", "tests/test_state_file.py",
    "tests/test_deadlines.py"]
# The scale-on-time tests measure the real catch-up bounds (about 30 s in all): for the parts that
# decide which figure the scaler is on and when it is asked.
_SCALE_ON_TIME = "tests/test_scale_on_time.py"

# Where the listener's end-to-end tests (once all in tests/test_listener.py) live now: the session and
# state modules run them too.
_LISTENER_END_TO_END = [
    "tests/test_listener.py", "tests/test_listener_delivery.py", "tests/test_listener_desired_count.py",
    "tests/test_listener_standby.py", "tests/test_listener_trouble.py", "tests/test_listener_health.py",
    "tests/test_listener_run.py", "tests/test_listener_cursor.py", "tests/test_state_file.py"]

# A call's way through the adapter, filed by behaviour: the tests once in test_adapter_*.py and
# test_coverage_adapter.py (MUTATION.md's last section says where each went).
_CALL_TESTS = [
    "tests/test_retry_hints.py", "tests/test_retry_deadlines.py", "tests/test_attempts.py",
    "tests/test_transport_errors.py", "tests/test_breaker_calls.py", "tests/test_interrupts.py"]


def _first(*files: str | list[str]) -> list[str]:
    """The files in the order given, each once (a module's own tests first, then the shared ones)."""
    out: list[str] = []
    for item in files:
        for name in [item] if isinstance(item, str) else item:
            if name not in out:
                out.append(name)
    return out


# module -> (source file, fast test files in the order they run; -x stops at the first failure).
MODULES: dict[str, tuple[str, list[str]]] = {
    "breaker": ("scaleset_client/_breaker.py",
                ["tests/test_breaker.py", "tests/test_breaker_half_open.py", "tests/test_breaker_operator.py",
                 "tests/test_breaker_snapshot.py", "tests/test_resilience.py"]),
    "retry": ("scaleset_client/_retry.py",
              ["tests/test_retry.py", "tests/test_transport.py", "tests/test_resilience.py",
               "tests/test_breaker_half_open.py"]),
    "adapter": ("scaleset_client/_adapter.py",
                _first(_CALL_TESTS, "tests/test_retry.py",
                       "tests/test_resilience.py", "tests/test_breaker_half_open.py", "tests/test_recovery.py",
                       "tests/test_transport.py", "tests/test_deadlines.py", "tests/test_large_messages.py",
                       "tests/test_tls_chain.py")),
    # The body of an answer, read within the call's time and the size cap; the pool managers.
    "body": ("scaleset_client/_body.py",
             _first("tests/test_large_messages.py", "tests/test_transport.py", "tests/test_transport_errors.py",
                    "tests/test_breaker_calls.py", "tests/test_session_queue.py", _CALL_TESTS)),
    "pools": ("scaleset_client/_pools.py",
              _first("tests/test_tls_chain.py", "tests/test_connections.py", "tests/test_connection_sockets.py",
                     "tests/test_client_certificates.py", "tests/test_interrupts.py", "tests/test_cron_path.py")),
    "connections": ("scaleset_client/_connections.py",
                    _first("tests/test_connections.py", "tests/test_connection_sockets.py",
                           "tests/test_interrupts.py", "tests/test_attempts.py", _CALL_TESTS,
                           "tests/test_deadlines.py", "tests/test_transport.py",
                           "tests/test_resilience.py", "tests/test_breaker_half_open.py")),
    # The Deadline scope and its watchdog; the listener's pacer reads MIN_ATTEMPT_TIME from it.
    "deadline": ("scaleset_client/_deadline.py",
                 ["tests/test_deadline_scopes.py", "tests/test_interrupts.py", "tests/test_retry_deadlines.py",
                  "tests/test_deadlines.py", "tests/test_listener_pacing.py", "tests/test_listener_run.py"]),
    "classify": ("scaleset_client/_classify.py",
                 ["tests/test_classify_table.py", "tests/test_transport.py", "tests/test_resilience.py",
                  "tests/test_breaker_half_open.py",
                  "tests/test_attempts.py", "tests/test_transport_errors.py",
                  "tests/test_large_messages.py"]),
    # Every pause's backoff and jitter: a call's retries, throttle pauses and waits past a break, the
    # breaker's break, the reachability looks, the listener's pauses.
    "jitter": ("scaleset_client/_jitter.py",
               ["tests/test_jitter.py", "tests/test_retry.py", "tests/test_retry_hints.py",
                "tests/test_retry_deadlines.py", "tests/test_breaker_calls.py", "tests/test_breaker.py",
                "tests/test_listener_pacing.py", "tests/test_listener_standby.py", "tests/test_listener_trouble.py",
                "tests/test_recovery.py"]),
    # The listener is a package (scaleset_client/_listener/): the loop and delivery in __init__.py,
    # and its parts, each reached through a running listener as well as by its own tests.
    "listener": ("scaleset_client/_listener/__init__.py", _first(_LISTENER_TESTS, _SCALE_ON_TIME)),
    "listener_pacing": ("scaleset_client/_listener/pacing.py",
                        _first("tests/test_listener_pacing.py", _LISTENER_TESTS, _SCALE_ON_TIME)),
    "listener_sessions": ("scaleset_client/_listener/sessions.py",
                          _first("tests/test_listener_standby.py", "tests/test_listener_renewal.py",
                                 "tests/test_deleted_scale_set.py", _LISTENER_TESTS)),
    "listener_healing": ("scaleset_client/_listener/healing.py",
                         ["tests/test_deleted_scale_set.py"]),
    "listener_statistics": ("scaleset_client/_listener/statistics.py",
                            _first("tests/test_statistics_tracker.py", "tests/test_listener_desired_count.py",
                                   "tests/test_listener_metrics.py", _LISTENER_TESTS, _SCALE_ON_TIME)),
    "listener_memory": ("scaleset_client/_listener/memory.py",
                        _first("tests/test_listener_cursor.py", "tests/test_state_file.py",
                               "tests/test_deleted_scale_set.py", "tests/test_state_owner.py",
                               "tests/test_client_state_file.py", _LISTENER_TESTS)),
    "listener_failures": ("scaleset_client/_listener/failures.py",
                          _first("tests/test_listener_delivery.py", "tests/test_large_messages.py",
                                 "tests/test_listener_health.py", "tests/test_listener_metrics.py", _LISTENER_TESTS)),
    # A message's jobs, read a column at a time (or job by job when one is unusual).
    "messages": ("scaleset_client/_messages.py",
                 ["tests/test_parse_equivalence.py", "tests/test_models.py", "tests/test_large_messages.py",
                  "tests/test_fuzz.py"]),
    "listener_poll_errors": ("scaleset_client/_listener/poll_errors.py",
                             _first("tests/test_poll_errors.py", "tests/test_listener_trouble.py",
                                    _LISTENER_TESTS)),
    "session": ("scaleset_client/_session.py",
                ["tests/test_session_queue.py", "tests/test_session_renewal.py", "tests/test_session.py",
                 "tests/test_recovery.py",
                 *_LISTENER_END_TO_END]),
    "state": ("scaleset_client/_state.py",
              ["tests/test_state_store.py", "tests/test_cursor_record.py", "tests/test_state_lock.py",
               "tests/test_client_state_file.py", "tests/test_state_owner.py",
               *_LISTENER_END_TO_END]),
    # The state file's one writer per process, and the client's section it writes (issue 23).
    "state_owner": ("scaleset_client/_state_owner.py",
                    ["tests/test_state_owner.py", "tests/test_client_state_file.py", "tests/test_state_lock.py",
                     *_LISTENER_END_TO_END]),
    "resilience_store": ("scaleset_client/_resilience_store.py",
                         ["tests/test_client_state_file.py", "tests/test_state_owner.py",
                          "tests/test_state_lock.py"]),
}
# The CLI's tests (tests/test_cli*.py) start subprocesses, which never see the mutant: not mapped.

_CMP_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In,
}
_BIN_SWAP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
    ast.Mod: ast.Mult, ast.Pow: ast.Mult,
}
_LOG_NAMES = {"log", "logger", "logging"}
_LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


@dataclass
class Mutant:
    module: str
    index: int  # position of the node in the visit order (valid for this parse only)
    kind: str
    line: int
    where: str  # enclosing function
    before: str
    after: str
    ident: str = ""
    result: str = ""  # killed | survived | timeout | equivalent (survived, listed) | error
    seconds: float = 0.0
    first_line: int = 0  # the lines the mutant's enclosing statement spans: the tests that run any of
    last_line: int = 0  # them are the only ones that can tell the mutant apart
    unreached: bool = False  # no test runs its lines, so it survived without a run


def _is_docstring(parents: list[ast.AST], node: ast.AST) -> bool:
    if not parents or not isinstance(parents[-1], ast.Expr) or len(parents) < 2:
        return False
    owner = parents[-2]
    body = getattr(owner, "body", None)
    return isinstance(owner, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and bool(
        body) and body[0] is parents[-1]


def _is_log_call(node: ast.AST) -> bool:
    """``log.warning(...)``, a logger held as an attribute (``client._log.warning(...)``) and one
    fetched in place (``logging.getLogger(__name__).exception(...)``)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    owner = node.func.value
    if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Attribute) and owner.func.attr == "getLogger":
        return node.func.attr in _LOG_METHODS  # logging.getLogger(__name__).warning(...)
    return ((isinstance(owner, ast.Name) and owner.id in _LOG_NAMES)
            or (isinstance(owner, ast.Attribute) and owner.attr.lstrip("_") in _LOG_NAMES
                and node.func.attr in _LOG_METHODS))


class _Mutator(ast.NodeTransformer):
    """Walks the tree in one fixed order. Collect mode lists the mutants; apply mode changes the
    node at ``target`` and leaves the rest alone (same order, so indexes match)."""

    def __init__(self, source: str, target: int | None = None) -> None:
        self.source = source
        self.target = target
        self.counter = 0
        self.found: list[tuple[int, str, ast.AST, str, str, tuple[int, int]]] = []
        self.parents: list[ast.AST] = []
        self.applied = False

    # A candidate: (kind, builder of the replacement node). In apply mode the builder runs.
    def _offer(self, node: ast.AST, kind: str, build: Callable[[], ast.AST]) -> ast.AST:
        index = self.counter
        self.counter += 1
        if self.target is None:
            mutated = ast.copy_location(build(), node)
            in_fstring = any(isinstance(p, ast.JoinedStr) for p in self.parents)
            before = ast.unparse(node) if in_fstring else (ast.get_source_segment(self.source, node)
                                                             or ast.unparse(node))
            self.found.append((index, kind, node, before, ast.unparse(mutated), self._span(node)))
            return node
        if index == self.target:
            self.applied = True
            return ast.copy_location(build(), node)
        return node

    def _span(self, node: ast.AST) -> tuple[int, int]:
        """From the first line of the statement that holds ``node`` to the node's last line."""
        holder = node if isinstance(node, ast.stmt) else next(
            (p for p in reversed(self.parents) if isinstance(p, ast.stmt)), node)
        first = min(getattr(holder, "lineno", 0), getattr(node, "lineno", 0))
        return first, getattr(node, "end_lineno", None) or getattr(node, "lineno", 0)

    def visit(self, node: ast.AST) -> ast.AST:  # type: ignore[override]
        skip = (_is_log_call(node)
                or (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                         for t in node.targets))
                or isinstance(node, (ast.ImportFrom, ast.Import)))
        if skip:
            return node
        self.parents.append(node)
        try:
            new = self._children(node)
        finally:
            self.parents.pop()
        return self._mutations(new)

    def _children(self, node: ast.AST) -> ast.AST:
        for name, value in ast.iter_fields(node):
            if name in ("annotation", "returns", "type_comment"):
                continue
            if isinstance(value, list):
                out = []
                for item in value:
                    if isinstance(item, ast.AST):
                        if isinstance(item, ast.Constant) and _is_docstring(self.parents, item):
                            out.append(item)
                            continue
                        item = self.visit(item)
                    out.append(item)
                setattr(node, name, out)
            elif isinstance(value, ast.AST):
                if isinstance(value, ast.Constant) and _is_docstring(self.parents, value):
                    continue
                setattr(node, name, self.visit(value))
        return node

    def _mutations(self, node: ast.AST) -> ast.AST:
        offer = self._offer
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                swap = _CMP_SWAP.get(type(op))
                if swap is not None:
                    def build(i: int = i, swap: type[ast.cmpop] = swap, orig: ast.Compare = node) -> ast.AST:
                        new = copy.deepcopy(orig)
                        new.ops[i] = swap()
                        return new
                    node = offer(node, "compare", build)  # type: ignore[assignment]
        elif isinstance(node, ast.BinOp):
            bswap = _BIN_SWAP.get(type(node.op))
            if bswap is not None:
                node = offer(node, "arith", lambda: ast.BinOp(copy.deepcopy(node.left), bswap(),  # type: ignore
                                                              copy.deepcopy(node.right)))  # type: ignore
        elif isinstance(node, ast.AugAssign):
            orig = node
            aswap = _BIN_SWAP.get(type(node.op))
            if aswap is not None:
                node = offer(node, "arith", lambda: ast.AugAssign(copy.deepcopy(orig.target), aswap(),  # type: ignore
                                                                  copy.deepcopy(orig.value)))
            node = offer(node, "drop", lambda: ast.Pass())  # type: ignore[assignment]
        elif isinstance(node, ast.BoolOp):
            other = ast.Or if isinstance(node.op, ast.And) else ast.And
            node = offer(node, "logic", lambda: ast.BoolOp(other(), copy.deepcopy(node.values)))  # type: ignore
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            node = offer(node, "unary", lambda: copy.deepcopy(node.operand))  # type: ignore
        elif isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):
                node = offer(node, "constant", lambda: ast.Constant(not value))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                node = offer(node, "constant", lambda: ast.Constant(value + 1))
            elif isinstance(value, str):
                node = offer(node, "string", lambda: ast.Constant("XX" + value + "XX"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("min", "max"):
            other_name = "max" if node.func.id == "min" else "min"
            node = offer(node, "minmax", lambda: ast.Call(ast.Name(other_name, ast.Load()),  # type: ignore
                                                          copy.deepcopy(node.args),  # type: ignore
                                                          copy.deepcopy(node.keywords)))  # type: ignore
        elif isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            node = offer(node, "return", lambda: ast.Return(ast.Constant(None)))
        elif isinstance(node, ast.Assign) and node.value is not None and all(
                isinstance(t, (ast.Name, ast.Attribute, ast.Subscript)) for t in node.targets) and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            node = offer(node, "assign", lambda: ast.Assign(copy.deepcopy(node.targets),  # type: ignore
                                                            ast.Constant(None)))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            node = offer(node, "drop-call", lambda: ast.Pass())
        elif isinstance(node, ast.Break):
            node = offer(node, "loop", lambda: ast.Continue())
        elif isinstance(node, ast.Continue):
            node = offer(node, "loop", lambda: ast.Break())
        return node


def _collect(module: str, path: Path) -> list[Mutant]:
    source = path.read_text()
    tree = ast.parse(source)
    mutator = _Mutator(source)
    qual = _qualnames(tree)
    mutator.visit(tree)
    mutants: list[Mutant] = []
    seen: dict[str, int] = {}
    for index, kind, node, before, after, (first, last) in mutator.found:
        where = qual.get(id(node), "<module>")
        key = f"{module}|{where}|{kind}|{before}|{after}"
        n = seen.get(key, 0)
        seen[key] = n + 1
        ident = hashlib.sha1(f"{key}|{n}".encode()).hexdigest()[:8]
        mutants.append(Mutant(module, index, kind, getattr(node, "lineno", 0), where,
                              " ".join(before.split()), " ".join(after.split()), ident,
                              first_line=first, last_line=last))
    return mutants


def _qualnames(tree: ast.AST) -> dict[int, str]:
    names: dict[int, str] = {}

    def walk(node: ast.AST, stack: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = [*stack, child.name]
                names[id(child)] = ".".join(inner)
                walk(child, inner)
            else:
                names[id(child)] = ".".join(stack) or "<module>"
                walk(child, stack)

    walk(tree, [])
    return names


def _mutant_code(path: Path, index: int) -> object:
    source = path.read_text()
    tree = ast.parse(source)
    mutator = _Mutator(source, target=index)
    tree = mutator.visit(tree)
    if not mutator.applied:
        raise RuntimeError(f"mutant {index} not found in {path}")
    ast.fix_missing_locations(tree)
    return compile(tree, str(path), "exec", dont_inherit=True)


class _MutantLoader(importlib.abc.Loader):
    def __init__(self, code: object) -> None:
        self.code = code

    def create_module(self, spec: object) -> None:
        return None

    def exec_module(self, module: object) -> None:
        exec(self.code, module.__dict__)  # type: ignore[attr-defined]


class _MutantFinder(importlib.abc.MetaPathFinder):
    def __init__(self, fullname: str, path: Path, code: object) -> None:
        self.fullname, self.path, self.code = fullname, path, code

    def find_spec(self, fullname: str, path: object, target: object = None) -> object:
        if fullname != self.fullname:
            return None
        # A package (its __init__.py) keeps its search path, so its relative imports of its parts work.
        locations = [str(self.path.parent)] if self.path.name == "__init__.py" else None
        return importlib.util.spec_from_file_location(fullname, str(self.path), loader=_MutantLoader(self.code),
                                                      submodule_search_locations=locations)


def _pytest_args(tests: list[str]) -> list[str]:
    # --assert=plain: when the package is imported from another tree than the installed one
    # (PYTHONPATH in a worktree), its pytest11 entry point marks all of ``scaleset_client`` for
    # assertion rewriting, and pytest's rewrite hook sits ahead of the mutant's finder: it can load
    # the module from disk, and the mutant then survives untested. _child checks which loader won.
    return [*tests, "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--timeout=60", "--assert=plain",
            "-W", "ignore::pytest.PytestUnraisableExceptionWarning"]


def _module_name(path: Path) -> str:
    """The import name of a source file: ``scaleset_client/_listener/__init__.py`` is ``scaleset_client._listener``."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _child(module_path: Path, index: int | None, tests: list[str], verbose: bool,
           map_file: Path | None = None) -> None:
    """In the forked child: install the mutant (if any), run pytest, exit with its code. With
    ``map_file`` (the baseline run), also record which tests run each line of the module."""
    os.setpgid(0, 0)
    if not verbose:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    code = 3
    fullname = _module_name(module_path)
    try:
        if index is not None:
            sys.meta_path.insert(0, _MutantFinder(fullname, module_path, _mutant_code(module_path, index)))
        import hypothesis
        hypothesis.settings.register_profile("mutate", database=None, derandomize=True)
        hypothesis.settings.load_profile("mutate")
        import pytest
        code = int(pytest.main(_pytest_args(tests))) if map_file is None else _run_mapping(
            module_path, fullname, tests, map_file)
        if index is not None and code in (3, 4):  # pytest could not start: is it the mutant's doing?
            try:
                importlib.import_module(fullname)
            except Exception:
                code = 1  # the mutant breaks the package's import: every test would fail
        if index is not None and fullname in sys.modules and not isinstance(
                getattr(sys.modules[fullname], "__loader__", None), _MutantLoader):
            code = NOT_LOADED  # something else loaded the module: the run says nothing of the mutant
    finally:
        sys.stdout.flush()
        os._exit(code)


def _run_mapping(module_path: Path, fullname: str, tests: list[str], map_file: Path) -> int:
    """Run the tests under coverage.py with one dynamic context per test (switched for every thread
    at once, so a line a listener's thread runs is charged to the test that started it), and write
    ``{"order": [test ids in run order], "lines": {line: [test ids]}}``. Lines run while no test
    was running (the import) are charged to "", which makes a mutant there run every test.

    The module is imported before the first test: the package imports its modules lazily (on
    first use of a name), so otherwise its import-time lines (constants, defaults, class bodies)
    would be charged to whichever test happened to use it first, and a mutant there would run
    that one test only."""
    import coverage
    import pytest

    cov = coverage.Coverage(data_file=None, include=[str(module_path)], branch=False, config_file=False)
    order: list[str] = []
    seconds: dict[str, float] = {}

    class _PerTest:
        def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
            order.append(nodeid)
            cov.switch_context(nodeid)

        def pytest_runtest_logreport(self, report: Any) -> None:
            seconds[report.nodeid] = seconds.get(report.nodeid, 0.0) + report.duration

    cov.start()
    try:
        importlib.import_module(fullname)
        code = int(pytest.main(_pytest_args(tests), plugins=[_PerTest()]))
    finally:
        cov.stop()
    lines = cov.get_data().contexts_by_lineno(str(module_path))
    # The fastest tests first: -x stops at the first failure, and most mutants fail a quick test.
    order.sort(key=lambda t: seconds.get(t, 0.0))
    map_file.write_text(json.dumps({"order": order, "lines": {str(k): v for k, v in lines.items()}}))
    return code


def _select(mutant: Mutant, coverage_map: dict[str, Any] | None, tests: list[str]) -> list[str] | None:
    """The tests that run any line of the mutant's statement, fastest first; ``tests`` (all of
    the module's files) when one of those lines runs at import; None when no test runs them."""
    if coverage_map is None:
        return tests
    reached: set[str] = set()
    for line in range(mutant.first_line, mutant.last_line + 1):
        reached.update(coverage_map["lines"].get(str(line), ()))
    if "" in reached:
        return tests
    if not reached:
        return None
    return [t for t in coverage_map["order"] if t in reached]


@dataclass
class _Running:
    mutant: Mutant | None
    pid: int
    started: float
    limit: float


@dataclass
class _Pool:
    jobs: int
    verbose: bool
    running: list[_Running] = field(default_factory=list)

    def start(self, path: Path, mutant: Mutant | None, tests: list[str], limit: float,
              map_file: Path | None = None) -> None:
        pid = os.fork()
        if pid == 0:
            _child(path, None if mutant is None else mutant.index, tests, self.verbose, map_file)
        self.running.append(_Running(mutant, pid, time.monotonic(), limit))

    def reap(self) -> Iterator[tuple[_Running, int | None]]:
        """Yield (finished job, exit code or None on timeout) as they end."""
        while self.running:
            for job in list(self.running):
                pid, status = os.waitpid(job.pid, os.WNOHANG)
                if pid:
                    self.running.remove(job)
                    yield job, os.waitstatus_to_exitcode(status)
                elif time.monotonic() - job.started > job.limit:
                    try:
                        os.killpg(job.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    os.waitpid(job.pid, 0)
                    self.running.remove(job)
                    yield job, None
            if len(self.running) < self.jobs:
                return
            time.sleep(0.01)


def _load_equivalents(path: Path = EQUIVALENT_FILE) -> dict[tuple[str, str], str]:
    known: dict[tuple[str, str], str] = {}
    if not path.exists():
        return known
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        module, ident, reason = [*line.split(None, 2), "", ""][:3]
        known[(module, ident)] = reason.strip()
    return known


def sample(mutants: list[Mutant], size: int | None) -> list[Mutant]:
    """A stable pseudo-random sample: the ``size`` mutants with the smallest ids (ids are hashes), so
    the same source gives the same sample and a test added later is judged on the same mutants."""
    if size is None or size >= len(mutants):
        return mutants
    chosen = {m.ident for m in sorted(mutants, key=lambda m: m.ident)[:size]}
    return [m for m in mutants if m.ident in chosen]


def run_module(module: str, jobs: int, verbose: bool, only: set[str] | None,
               quiet: set[str] | None = None, size: int | None = None,
               select: bool = True) -> tuple[list[Mutant], float, int]:
    rel, test_files = MODULES[module]
    path = ROOT / rel
    tests = [t for t in test_files if (ROOT / t).exists()]
    coverage_map: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory() as scratch:
        map_file = Path(scratch) / "map.json" if select else None
        pool = _Pool(1, verbose)
        started = time.monotonic()
        pool.start(path, None, tests, 900, map_file)
        for _, code in pool.reap():
            if code != 0:
                raise SystemExit(f"{module}: the tests fail without any mutant (exit {code}); fix them first")
        baseline = time.monotonic() - started
        if map_file is not None:
            coverage_map = json.loads(map_file.read_text())
    limit = max(15.0, 3 * baseline + 10)
    mutants = _collect(module, path)
    generated = len(mutants)
    mutants = sample(mutants, size)
    if only:
        mutants = [m for m in mutants if m.ident in only]
    pool = _Pool(jobs, verbose)
    done = 0
    for mutant in mutants:
        chosen = _select(mutant, coverage_map, tests)
        if chosen is None:
            mutant.unreached = True
            done += _finish(None, 0, done, len(mutants), quiet or set(), mutant)
            continue
        pool.start(path, mutant, chosen, limit)
        if len(pool.running) >= jobs:
            for job, code in pool.reap():
                done += _finish(job, code, done, len(mutants), quiet or set())
    pool.jobs = 1
    for job, code in pool.reap():
        done += _finish(job, code, done, len(mutants), quiet or set())
    return mutants, baseline, generated


def recheck(module: str, jobs: int, verbose: bool, equivalents: dict[tuple[str, str], str],
            run: bool = True) -> str:
    """Run again only the survivors MUTATION.md lists for ``module`` (after tests were added for
    them) and update its row and section: a survivor now killed moves to the killed count, one now
    listed as equivalent to the equivalents. The source must be unchanged since the full run (the
    ids say so: a survivor no longer generated stops the recheck). With ``run=False``
    (``--reclassify``) nothing is run: survivors listed as equivalent since move over, no others."""
    text = REPORT.read_text()
    start, end = f"<!-- module:{module} -->", f"<!-- /module:{module} -->"
    section = text[text.index(start):text.index(end)]
    row = next(line for line in text.splitlines() if line.endswith(f"<!-- row:{module} -->"))
    survivors = re.findall(r"^- `([0-9a-f]{8})` L", section.split("Equivalent (")[0], re.M)
    cells = [c.strip() for c in row.split("|")]
    equivalent, killed_cell, surviving = int(cells[3]), cells[4], int(cells[5])
    killed, timeouts = (int(x) for x in re.findall(r"\d+", killed_cell)[:2])
    if surviving != len(survivors):
        raise SystemExit(f"{module}: the row says {surviving} survivors, the section lists {len(survivors)}")
    if run:
        mutants, _, _ = run_module(module, jobs, verbose, set(survivors))
    else:
        mutants = [m for m in _collect(module, ROOT / MODULES[module][0]) if m.ident in set(survivors)]
        for mutant in mutants:
            mutant.result = "survived"
    if {m.ident for m in mutants} != set(survivors):
        raise SystemExit(f"{module}: some listed survivors are no longer generated (the source changed): "
                         "run the module in full")
    now_killed = [m for m in mutants if m.result in ("killed", "timeout")]
    now_equivalent = [m for m in mutants if m.result == "survived" and (module, m.ident) in equivalents]
    still = [m for m in mutants if m not in now_killed and m not in now_equivalent]
    killed += len(now_killed)
    timeouts += sum(m.result == "timeout" for m in now_killed)
    equivalent += len(now_equivalent)
    total = int(cells[2].split()[0])
    score = 100.0 * killed / (total - equivalent)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    produced = (f"{cells[7]}; its {len(survivors)} survivors rechecked (`python tools/mutate.py {module} --recheck`) "
                f"at {commit}: {len(now_killed)} killed by tests added since, {len(now_equivalent)} found equivalent"
                if run else f"{cells[7]}; then {len(now_equivalent)} of its {len(survivors)} survivors listed as "
                f"equivalent (`python tools/mutate.py {module} --reclassify`, nothing run)")
    new_row = (f"| {cells[1]} | {cells[2]} | {equivalent} | {killed} ({timeouts} by timeout) | {len(still)} "
               f"| {score:.1f}% | {produced} | <!-- row:{module} -->")
    known = _load_equivalents(KNOWN_SURVIVORS_FILE)
    head, _, rest = section.partition("Surviving, not equivalent")
    eq_part = rest[rest.index("Equivalent ("):]
    eq_count = int(re.match(r"Equivalent \((\d+)\)", eq_part).group(1))  # type: ignore[union-attr]
    eq_part = eq_part.replace(f"Equivalent ({eq_count})", f"Equivalent ({eq_count + len(now_equivalent)})", 1)
    eq_part = eq_part.rstrip("\n") + "".join(
        f"\n- `{m.ident}` L{m.line} `{m.where}` ({m.kind}): `{m.before}` → `{m.after}` — "
        f"{equivalents[(module, m.ident)]}" for m in now_equivalent) + "\n"
    lines = [f"Surviving, not equivalent ({len(still)}):" if still else "Surviving, not equivalent: none."]
    lines += [f"- `{m.ident}` L{m.line} `{m.where}` ({m.kind}): `{m.before}` → `{m.after}`"
              + (f" — not tested: {known[(module, m.ident)]}" if (module, m.ident) in known else "")
              for m in still]
    new_section = head + "\n".join(lines) + "\n\n" + eq_part
    latest = REPORT.read_text()  # re-read: another module's run may have written it meanwhile
    REPORT.write_text(latest.replace(section, new_section).replace(row, new_row))
    return new_row


def _finish(job: _Running | None, code: int | None, done: int, total: int, quiet: set[str],
            unrun: Mutant | None = None) -> int:
    mutant = unrun if job is None else job.mutant
    assert mutant is not None
    mutant.seconds = 0.0 if job is None else time.monotonic() - job.started
    if code == NOT_LOADED:
        raise SystemExit(f"mutant {mutant.ident} was not the module the tests imported (another import hook "
                         "loaded it from disk); no result of this run can be trusted")
    # 1: a test failed (or the mutant broke the package's import, see _child); 2: collection failed.
    # Anything else (a usage error such as a test id not found) is the tool's error, not a kill.
    mutant.result = "timeout" if code is None else "survived" if code == 0 else "killed" if code in (1, 2) else (
        "error")
    if mutant.result in ("survived", "error") and not (mutant.result == "survived" and mutant.ident in quiet):
        print(f"  [{done + 1}/{total}] {mutant.result}{' (no test runs it)' if mutant.unreached else ''}: "
              f"{mutant.ident} L{mutant.line} {mutant.where}: {mutant.before} -> {mutant.after}",
              file=sys.stderr, flush=True)
    return 1


def _table_row(module: str, mutants: list[Mutant], generated: int = 0) -> tuple[str, int, int]:
    total = len(mutants)
    shown = f"{total} (sample of {generated})" if generated > total else str(total)
    equivalent = sum(m.result == "equivalent" for m in mutants)
    killed = sum(m.result in ("killed", "timeout") for m in mutants)
    timeouts = sum(m.result == "timeout" for m in mutants)
    survived = sum(m.result in ("survived", "error") for m in mutants)
    scored = total - equivalent
    score = 100.0 * killed / scored if scored else 100.0
    row = (f"| `{MODULES[module][0]}` | {shown} | {equivalent} | {killed} ({timeouts} by timeout) | {survived} "
           f"| {score:.1f}% |")
    return row, survived, scored


def _section(module: str, mutants: list[Mutant], equivalents: dict[tuple[str, str], str], baseline: float,
             elapsed: float, generated: int = 0) -> str:
    sampled = (f" (a stable sample of the {generated} generated: `--sample {len(mutants)}`)"
               if generated > len(mutants) else "")
    unreached = sum(m.unreached for m in mutants)
    out = [f"<!-- module:{module} -->", f"### {module}", "",
           f"Tests: {', '.join(f'`{t}`' for t in MODULES[module][1] if (ROOT / t).exists())}; "
           f"baseline {baseline:.1f} s, {len(mutants)} mutants{sampled} in {elapsed:.0f} s"
           + (f" ({unreached} on lines no mapped test runs, not run)" if unreached else "") + ".", ""]
    survivors = [m for m in mutants if m.result in ("survived", "error")]
    eq = [m for m in mutants if m.result == "equivalent"]
    out.append(f"Surviving, not equivalent ({len(survivors)}):" if survivors else "Surviving, not equivalent: none.")
    known = _load_equivalents(KNOWN_SURVIVORS_FILE)
    out += [f"- `{m.ident}` L{m.line} `{m.where}` ({m.kind}): `{m.before}` → `{m.after}`"
            + (f" — not tested: {known[(module, m.ident)]}" if (module, m.ident) in known
               else " — no mapped test runs this line" if m.unreached else "")
            for m in survivors]
    out += ["", f"Equivalent ({len(eq)}), with the reason no observer can tell them from the original:"]
    out += [f"- `{m.ident}` L{m.line} `{m.where}` ({m.kind}): `{m.before}` → `{m.after}` — "
            f"{equivalents[(module, m.ident)]}" for m in eq]
    out.append(f"<!-- /module:{module} -->")
    return "\n".join(out)


def _write_report(results: dict[str, tuple[list[Mutant], float, float, int]], equivalents: dict[tuple[str, str], str],
                  command: str) -> None:
    sections: dict[str, str] = {}
    rows: dict[str, str] = {}
    after = ""  # the hand-written sections after the last module's (where the tests came from): kept
    if REPORT.exists():
        text = REPORT.read_text()
        ends = [m.end() for m in re.finditer(r"<!-- /module:[\w]+ -->", text)]
        heading = text.find("\n## ", ends[-1]) if ends else -1
        after = text[heading:].strip() if heading != -1 else ""
        for module in MODULES:
            start, end = f"<!-- module:{module} -->", f"<!-- /module:{module} -->"
            if start in text and end in text:
                sections[module] = text[text.index(start):text.index(end) + len(end)]
            marker = f"<!-- row:{module} -->"
            for line in text.splitlines():
                if line.endswith(marker):
                    rows[module] = line
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    for module, (mutants, baseline, elapsed, generated) in results.items():
        sections[module] = _section(module, mutants, equivalents, baseline, elapsed, generated)
        rows[module] = (_table_row(module, mutants, generated)[0]
                        + f" `{command}` at {commit}, {time.strftime('%Y-%m-%d')} | <!-- row:{module} -->")
    lines = [
        "# Mutation testing",
        "",
        "Which promises would no test notice breaking? `tools/mutate.py` changes one thing at a time in a module",
        "(an operator, a constant, a dropped statement, ...) and runs that module's fast tests against it. Score =",
        "killed / (mutants - equivalent). Equivalent mutants are listed in `tools/mutants-equivalent.txt` with the",
        "reason no observer can tell them apart; targets: 95% for breaker and retry, 90% for the rest.",
        "",
        "Regenerate a module's row and section: `.venv/bin/python tools/mutate.py <module>... --write`. After",
        "adding tests, `--recheck` runs only the listed survivors; after listing equivalents, `--reclassify`",
        "moves them over without running anything. Both refuse when the module's source changed.",
        "",
        "| module | mutants | equivalent | killed | surviving | score | produced by |",
        "|---|---|---|---|---|---|---|",
        *[rows[m] for m in MODULES if m in rows],
        "",
        "## Survivors and equivalents by module",
        "",
        *[sections[m] + "\n" for m in MODULES if m in sections],
        *([after, ""] if after else []),
    ]
    REPORT.write_text("\n".join(lines).rstrip() + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help=f"modules to mutate (default: all of {', '.join(MODULES)})")
    parser.add_argument("--jobs", "-j", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument("--write", action="store_true", help="update MUTATION.md with the result")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--only", nargs="+", metavar="ID", help="run only these mutant ids")
    parser.add_argument("--sample", type=int, metavar="N",
                        help="run a stable sample of N mutants per module (the smallest ids), for slow modules")
    parser.add_argument("--show", metavar="ID", help="print the mutant's source diff and exit")
    parser.add_argument("--verbose", action="store_true", help="show pytest output of each run")
    parser.add_argument("--reclassify", action="store_true",
                        help="move survivors MUTATION.md lists that are now in the equivalents file to the "
                             "equivalents, without running anything")
    parser.add_argument("--recheck", action="store_true",
                        help="run again only the survivors MUTATION.md lists and update the module's row and section")
    parser.add_argument("--every-test", action="store_true",
                        help="run every mapped test file against each mutant, not only the tests that run its lines")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    modules = args.modules or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s): {', '.join(unknown)}")
    if args.list or args.show:
        for module in modules:
            for m in _collect(module, ROOT / MODULES[module][0]):
                if args.show and m.ident != args.show:
                    continue
                print(f"{module} {m.ident} L{m.line} {m.where} ({m.kind}): {m.before} -> {m.after}")
        return 0
    # Warm the imports every child needs, once (but not the package under test).
    for name in ("pytest", "requests", "urllib3", "hypothesis", "cryptography", "jwt", "trustme"):
        try:
            __import__(name)
        except ImportError:
            pass
    equivalents = _load_equivalents()
    known_survivors = _load_equivalents(KNOWN_SURVIVORS_FILE)
    if args.recheck or args.reclassify:
        for module in modules:
            print(recheck(module, max(1, args.jobs), args.verbose, equivalents, run=args.recheck), flush=True)
        return 0
    results: dict[str, tuple[list[Mutant], float, float, int]] = {}
    failed = False
    for module in modules:
        started = time.monotonic()
        print(f"{module}: running ...", file=sys.stderr, flush=True)
        mutants, baseline, generated = run_module(module, max(1, args.jobs), args.verbose,
                                                  set(args.only or []) or None,
                                                  {i for (mod, i) in equivalents if mod == module}, args.sample,
                                                  select=not args.every_test)
        for m in mutants:
            if (module, m.ident) in equivalents:
                if m.result == "survived":
                    m.result = "equivalent"
                else:
                    print(f"  note: {m.ident} is listed as equivalent but was {m.result}", file=sys.stderr)
        generated_ids = {m.ident for m in mutants}
        for what, listed_in in (("equivalent", equivalents), ("a known survivor", known_survivors)):
            stale = {i for (mod, i) in listed_in if mod == module} - generated_ids
            if stale and not args.only and not args.sample:
                print(f"  note: listed as {what} but no longer generated: {', '.join(sorted(stale))}",
                      file=sys.stderr)
        results[module] = (mutants, baseline, time.monotonic() - started, generated)
        row, survived, _ = _table_row(module, mutants, generated)
        print(row, flush=True)
        failed = failed or survived > 0
        if args.write and not args.only:  # after each module, so a long run cut short keeps what it finished
            command = f"python tools/mutate.py {module}" + (f" --sample {args.sample}" if args.sample else "")
            _write_report({module: results[module]}, equivalents, command)
            print(f"wrote {REPORT.relative_to(ROOT)} ({module})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
