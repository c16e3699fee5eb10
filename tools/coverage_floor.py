"""Enforce the per-module branch-coverage floors of ``[tool.coverage_floors]`` in pyproject.toml.

Run after the test suite (which writes ``.coverage`` through pytest-cov, the CLI's subprocesses
included)::

    .venv/bin/python tools/coverage_floor.py            # print the table; exit 1 below a floor
    .venv/bin/python tools/coverage_floor.py --write    # and commit-ready: write it to docs/COVERAGE.md

Branch coverage here is branches taken / branches in the module (coverage.py's JSON summary),
stricter than the combined line+branch percentage in the terminal table. Exits 1 when a module is
below its floor or has no data (a floor on a module nothing imported must not pass silently).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import coverage

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    write = "--write" in (sys.argv[1:] if argv is None else argv)
    floors: dict[str, float] = tomllib.loads((ROOT / "pyproject.toml").read_text()).get("tool", {}).get(
        "coverage_floors", {})
    if not floors:
        print("no [tool.coverage_floors] in pyproject.toml", file=sys.stderr)
        return 1
    cov = coverage.Coverage(config_file=str(ROOT / "pyproject.toml"), data_file=str(ROOT / ".coverage"))
    cov.load()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coverage.json"
        cov.json_report(outfile=str(out), include=[str(ROOT / p) for p in floors])
        files = json.loads(out.read_text())["files"]
    failed = False
    rows: list[str] = []
    print(f"{'module':<32} {'branches':>9} {'taken':>6} {'branch %':>9} {'floor':>6}")
    for module, floor in sorted(floors.items()):
        summary = files.get(module, {}).get("summary")
        if summary is None:
            print(f"{module:<32} {'no data':>9}")
            failed = True
            continue
        total, taken = summary["num_branches"], summary["covered_branches"]
        percent = 100.0 * taken / total if total else 100.0
        ok = percent >= floor
        failed = failed or not ok
        print(f"{module:<32} {total:>9} {taken:>6} {percent:>8.1f}% {floor:>5.0f}%{'' if ok else '  BELOW'}")
        rows.append(f"| `{module}` | {total} | {taken} | {percent:.1f}% | {floor:.0f}% |")
    if write:
        _write(rows)
    return 1 if failed else 0


def _write(rows: list[str]) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    (ROOT / "docs" / "COVERAGE.md").write_text("\n".join([
        "# Branch coverage",
        "",
        "Branches taken by the whole suite (the CLI's subprocesses included) in the modules that carry a floor;",
        "CI fails below a floor (`[tool.coverage_floors]` in pyproject.toml). Regenerate with",
        "`python -m pytest && python tools/coverage_floor.py --write`.",
        "",
        f"Measured at {commit}, {time.strftime('%Y-%m-%d')}.",
        "",
        "| module | branches | taken | branch % | floor |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]))


if __name__ == "__main__":
    sys.exit(main())
