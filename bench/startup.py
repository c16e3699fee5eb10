"""Cron start-up: the CPU of importing the package, and of a whole ``--once`` run, against requests.

Each measurement is a fresh interpreter, alternating ours and the baseline (ours, base, base,
ours, ...), ``pairs`` of each per run; a run's figure is the median of its processes. Children
read byte-compiled modules, as from an installed wheel: a private ``PYTHONPYCACHEPREFIX``,
warmed once, even where the environment sets ``PYTHONDONTWRITEBYTECODE`` (which would make
every run recompile this package's sources but not requests', whose wheel install compiled it).

- import: CPU time of the import statement alone, measured inside the child (interpreter
  start-up excluded), ``import scaleset_client`` against ``import requests``; and the import
  with ``sc.Client`` and ``sc.Listener`` resolved, which is what any real use loads.
- cron: the whole process (start-up, imports, calls), ``python -m scaleset_client --once`` with
  an empty queue against ``bench._cron_bare`` making the same five requests with bare requests,
  both against the fake service in its own process; CPU from ``RUSAGE_CHILDREN``.

    python -m bench.startup
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import scaleset_client as sc

from ._remote import RemoteFake
from ._util import Row, bench_main, median, spread

_ROOT = Path(__file__).resolve().parent.parent


_CACHE = tempfile.mkdtemp(prefix="bench-pycache-")
_ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        "PYTHONPYCACHEPREFIX": _CACHE, "PYTHONPATH": str(_ROOT)}


def _import_cpu(statement: str) -> float:
    code = f"import time\nt = time.process_time()\n{statement}\nprint(time.process_time() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=_ROOT,
                         env=_ENV)
    return float(out.stdout.split()[-1])


def _child_cpu(argv: list[str], env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, env=env, cwd=_ROOT, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _alternate(ours: Callable[[], float], base: Callable[[], float], runs: int, pairs: int
               ) -> tuple[list[float], list[float], list[float]]:
    mine, theirs, ratios = [], [], []
    ours()  # warm: byte-compile into the private cache
    base()
    for _ in range(runs):
        a: list[float] = []
        b: list[float] = []
        for i in range(pairs):
            for fn, sink in ((ours, a), (base, b)) if i % 2 == 0 else ((base, b), (ours, a)):
                sink.append(fn())
        mine.append(median(a) * 1e3)
        theirs.append(median(b) * 1e3)
        ratios.append(median(a) / median(b))
    return mine, theirs, ratios


def run(quick: bool = False) -> list[Row]:
    runs, pairs = (2, 1) if quick else (5, 4)
    rows = []
    for label, statement in (("import scaleset_client", "import scaleset_client"),
                             ("import scaleset_client; sc.Client; sc.Listener",
                              "import scaleset_client as sc\nsc.Client\nsc.Listener")):
        mine, theirs, ratios = _alternate(lambda s=statement: _import_cpu(s),  # type: ignore[misc]
                                          lambda: _import_cpu("import requests"), runs, pairs)
        rows.append(Row("startup", f"CPU ms: {label} vs import requests ({runs} runs x {pairs})",
                        spread(mine, "{:.1f}"), spread(theirs, "{:.1f}"), spread(ratios, "{:.2f}"), "<= 1.15",
                        median(ratios) <= 1.15))
    with RemoteFake(long_poll_hold=0.0) as fake:
        with sc.Client(fake.config_url, token=fake.token) as client:
            scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="cron")).id
        env = {**_ENV, "GITHUB_TOKEN": fake.token}
        ours = [sys.executable, "-m", "scaleset_client", "--url", fake.config_url, "--scale-set-id", str(scale_set),
                "--once", "--log-level", "WARNING"]
        bare = [sys.executable, "-m", "bench._cron_bare", fake.config_url, fake.token, str(scale_set)]
        mine, theirs, ratios = _alternate(lambda: _child_cpu(ours, env), lambda: _child_cpu(bare, env), runs, pairs)
    rows.append(Row("startup", f"CPU ms: whole `--once` run, empty queue, vs the same 5 calls with bare requests "
                    f"({runs} runs x {pairs})", spread(mine, "{:.0f}"), spread(theirs, "{:.0f}"),
                    spread(ratios, "{:.2f}"), "<= 1.15", median(ratios) <= 1.15))
    return rows


if __name__ == "__main__":
    sys.exit(bench_main(run))
