"""Check the documentation: the site builds in strict mode, the reference covers the public API,
the CLI table is the generated one (no page keeps a copy), and every Python example runs or says why not.

    python tools/check_docs.py            # everything (needs the `docs` extra: pip install -e '.[docs]')
    python tools/check_docs.py --no-examples --site-dir site   # skip running the examples; keep the site

Python examples: every ```python block in README.md, CONTRIBUTING.md and docs/*.md runs against
the fake service (tests/test_docs_examples.py), unless an HTML comment on the line just before
it marks it:

    <!-- example: not run: REASON -->        skipped; the reason is required
    <!-- example: runs until stopped -->     runs until a 1 s deadline scope ends it (a loop)

Exit status: 0 when every check passes, 1 otherwise (each failure is printed).
"""

from __future__ import annotations

import argparse
import html
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EXAMPLE_FILES = ("README.md", "CONTRIBUTING.md", "docs/*.md")
MARKER = re.compile(r"^<!-- example: (?P<kind>not run|runs until stopped)(?::\s*(?P<reason>.*?))?\s*-->$")
_FENCE = re.compile(r"^(?P<fence>`{3,})(?P<info>[^`\n]*)$")
TABLE_START = re.compile(r"^<!-- options:start.*-->$", re.MULTILINE)
NOT_METRICS = {"scaleset_client", "scaleset_fake", "scaleset_fake_client"}  # the package, the pytest fixtures


@dataclass(frozen=True)
class Block:
    """One fenced ```python block of a Markdown file."""

    path: str  # relative to the repository
    line: int  # 1-based line of the opening fence
    code: str
    mode: str  # "run", "until stopped" or "skip"
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line}"


def markdown_files() -> list[Path]:
    out: list[Path] = []
    for pattern in EXAMPLE_FILES:
        out.extend(sorted(ROOT.glob(pattern)))
    return [p for p in out if p.is_file()]


def python_blocks(path: Path) -> tuple[list[Block], list[str]]:
    """The file's Python blocks, and the problems found with their markers."""
    rel = path.relative_to(ROOT).as_posix()
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i].strip())
        if not match:
            i += 1
            continue
        fence, info = match.group("fence"), match.group("info").strip().lower()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), len(lines))
        if info.split(None, 1)[:1] in (["python"], ["py"], ["pycon"]):
            previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.match(previous)
            mode, reason = "run", ""
            if marker:
                kind, reason = marker.group("kind"), (marker.group("reason") or "").strip()
                if kind == "not run":
                    mode = "skip"
                    if not reason:
                        problems.append(f"{rel}:{i + 1}: 'not run' example without a reason")
                else:
                    mode = "until stopped"
            elif previous.startswith("<!-- example"):
                problems.append(f"{rel}:{i + 1}: unknown example marker {previous!r}")
            blocks.append(Block(rel, i + 1, "\n".join(lines[i + 1:end]) + "\n", mode, reason))
        i = end + 1
    return blocks, problems


def all_blocks() -> tuple[list[Block], list[str]]:
    blocks: list[Block] = []
    problems: list[str] = []
    for path in markdown_files():
        found, wrong = python_blocks(path)
        blocks += found
        problems += wrong
    return blocks, problems


def cli_table() -> list[str]:
    """The CLI's flags and variables are shown in one place, generated: docs/cli.md asks the hooks
    for ``options_markdown()``; no page keeps a hand-made copy that could drift."""
    problems = []
    if "<!-- generated: cli-options -->" not in (ROOT / "docs" / "cli.md").read_text():
        problems.append("docs/cli.md: the generated CLI table (<!-- generated: cli-options -->) is missing")
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if TABLE_START.search(path.read_text()):
            problems.append(f"{path.relative_to(ROOT)}: a copy of the CLI table; link to docs/cli.md instead")
    return problems


def build(site_dir: Path) -> list[str]:
    """``mkdocs build --strict``: a warning (broken link, unresolved reference) fails it."""
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--clean", "--site-dir",
                          str(site_dir), "--config-file", str(ROOT / "mkdocs.yml")], cwd=ROOT,
                         capture_output=True, text=True)
    if run.returncode != 0:
        return ["mkdocs build --strict failed:\n" + run.stdout + run.stderr]
    return []


def reference(site_dir: Path) -> list[str]:
    """Every name in ``scaleset_client.__all__`` has an entry in the built API reference."""
    import scaleset_client

    page = site_dir / "reference" / "index.html"
    if not page.exists():
        return [f"{page}: the API reference page was not built"]
    ids = {html.unescape(i) for i in re.findall(r'id="([^"]+)"', page.read_text())}
    return [f"API reference: no entry for scaleset_client.{name}" for name in scaleset_client.__all__
            if f"scaleset_client.{name}" not in ids]


def metric_mentions() -> list[str]:
    """Every ``scaleset_*`` metric the prose names is one the health server exports."""
    sys.path.insert(0, str(ROOT / "docs"))
    import hooks  # docs/hooks.py

    exported = set(hooks.metric_names())
    problems = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name in sorted(set(re.findall(r"`(scaleset_[a-z_]+)", path.read_text()))):
            if name not in exported and name not in NOT_METRICS:
                problems.append(f"{path.relative_to(ROOT)}: names metric {name}, which /metrics does not export")
    return problems


def examples() -> list[str]:
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "--no-cov", "-p", "no:cacheprovider",
                          "tests/test_docs_examples.py"], cwd=ROOT)
    return [] if run.returncode == 0 else ["tests/test_docs_examples.py failed (output above)"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-examples", action="store_true", help="do not run the Python examples")
    parser.add_argument("--site-dir", help="build the site here (default: a temporary directory)")
    args = parser.parse_args(argv)

    problems = cli_table()
    blocks, marker_problems = all_blocks()
    problems += marker_problems
    skipped = [b for b in blocks if b.mode == "skip"]
    print(f"examples: {len(blocks)} Python blocks, {len(blocks) - len(skipped)} run, {len(skipped)} marked not run")
    problems += metric_mentions()
    with tempfile.TemporaryDirectory(prefix="scaleset-site-") as tmp:
        site = Path(args.site_dir).resolve() if args.site_dir else Path(tmp)
        built = build(site)
        problems += built
        if not built:
            problems += reference(site)
            print(f"site: built in strict mode ({len(list(site.rglob('*.html')))} HTML pages)")
    if not args.no_examples:
        problems += examples()
    for problem in problems:
        print("FAIL:", problem)
    print("docs: OK" if not problems else f"docs: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
