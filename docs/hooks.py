"""MkDocs hooks: the pages that are generated from the code, so they cannot drift from it.

A page asks for generated text with an HTML comment on a line of its own:

    <!-- generated: cli-options -->           the CLI's flags and variables (scaleset_client._cli.OPTIONS)
    <!-- generated: settings NAME -->          every field of a config dataclass: default and meaning
    <!-- generated: metrics -->                every family /metrics exports, rendered by the real code
    <!-- generated: api-reference -->          one mkdocstrings entry per name in scaleset_client.__all__
    <!-- include: PATH LANGUAGE -->            a repository file as a code block (examples/...)

The root files the docs link to (CONTRIBUTING.md, CHANGELOG.md, SECURITY.md) stay where they are
and are added to the site as they are; the development reports (BENCHMARKS.md, MUTATION.md,
COVERAGE.md) live under docs/.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ROOT_PAGES = ("CONTRIBUTING.md", "CHANGELOG.md", "SECURITY.md")

_DIRECTIVE = re.compile(r"^<!-- (generated|include): ([^>]*?) -->$", re.MULTILINE)

# Reference sections by the private module a public name lives in (``scaleset_client._LAZY``).
# A name from a module not listed here still gets an entry, under "Other".
_SECTIONS: dict[str, str] = {
    "_client": "Client",
    "_session": "Client",
    "_deadline": "Client",
    "_listener": "Listener",
    "_config": "Configuration",
    "_auth": "Credentials",
    "_tls": "Credentials",
    "_secrets": "Credentials",
    "_models": "Models",
    "_messages": "Models",
    "_health": "Health",
    "_breaker": "Circuit breakers",
    "_clock": "Clocks",
    "_errors": "Errors",
    "_version": "Version",
}
_SECTION_ORDER = ("Client", "Listener", "Configuration", "Credentials", "Models", "Health", "Circuit breakers",
                  "Clocks", "Errors", "Version", "Other")


def public_names() -> list[str]:
    """``scaleset_client.__all__``, as the package declares it today."""
    import scaleset_client

    return list(scaleset_client.__all__)


def api_reference() -> str:
    """One ``::: scaleset_client.NAME`` entry per public name, grouped by the module it comes from."""
    import scaleset_client

    lazy: dict[str, str] = getattr(scaleset_client, "_LAZY", {})
    groups: dict[str, list[str]] = {}
    for name in public_names():
        module = "_version" if name == "__version__" else lazy.get(name, "")
        groups.setdefault(_SECTIONS.get(module, "Other"), []).append(name)
    out: list[str] = []
    for section in _SECTION_ORDER:
        names = groups.get(section)
        if not names:
            continue
        out += [f"## {section}", ""]
        for name in sorted(names, key=lambda n: (n.startswith("_"), n.lower())):
            out += [f"::: scaleset_client.{name}", ""]
    out += ["## Testing kit", "", "`scaleset_client.testing`: the fake service, its faults and a fake clock, for "
            "offline tests ([Testing your scaler](testing.md)).", ""]
    out += [f"::: scaleset_client.testing.{name}\n" for name in testing_names()]
    out += ["::: scaleset_client.testing.pytest_plugin", "    options:", "      show_root_heading: true", ""]
    return "\n".join(out)


def testing_names() -> list[str]:
    """``scaleset_client.testing.__all__``."""
    import scaleset_client.testing

    return list(scaleset_client.testing.__all__)


def cli_options() -> str:
    """The CLI's one table of flags and environment variables."""
    from scaleset_client._cli import options_markdown

    return options_markdown()


def _field_docs(doc: str) -> dict[str, str]:
    """Parse a config docstring's definition list (``name[, name]`` then an indented meaning)."""
    meanings: dict[str, str] = {}
    lines = doc.expandtabs().splitlines()
    names: list[str] = []
    text: list[str] = []

    def flush() -> None:
        if names:
            for name in names:
                meanings[name] = " ".join(text)
        names.clear()
        text.clear()

    for line in lines[1:]:
        stripped = line.strip()
        if not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= 4 and re.fullmatch(r"[a-z_][a-z0-9_]*(, [a-z_][a-z0-9_]*)*", stripped):
            flush()
            names.extend(n.strip() for n in stripped.split(","))
        elif names:
            text.append(stripped)
    flush()
    return meanings


def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
        if dataclasses.is_dataclass(value):
            return f"`{type(value).__name__}()`"
    else:
        return "required"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1024 * 1024 and value % 1024 == 0:
        return f"`{value}` ({value // (1024 * 1024)} MiB)" if value % (1024 * 1024) == 0 else f"`{value}`"
    return f"`{value!r}`"


def _inline(text: str) -> str:
    """Docstring markup (``code``) as Markdown in a table cell."""
    return re.sub(r"``([^`]+)``", r"`\1`", text).replace("|", "/")


def settings_table(name: str) -> str:
    """Every field of a public config dataclass, its default, and its meaning from the docstring."""
    import scaleset_client

    cls = getattr(scaleset_client, name)
    doc = cls.__doc__ or ""
    meanings = _field_docs(doc)
    summary = doc.strip().splitlines()[0] if doc.strip() else ""
    lines = [summary, "", "| setting | default | meaning |", "|---|---|---|"]
    missing = []
    first: dict[str, str] = {}  # meaning -> the first field that showed it
    for field in dataclasses.fields(cls):
        meaning = meanings.get(field.name)
        if meaning is None:
            # described inside another entry (``jitter`` in open_duration's): point there
            owner = next((n for n, m in meanings.items() if f"``{field.name}``" in m), None)
            if owner is None:
                missing.append(field.name)
                meaning = "*(not described in the docstring)*"
            else:
                meaning = f"see `{owner}`"
        elif meaning in first:
            meaning = f"see `{first[meaning]}`"
        else:
            first[meaning] = field.name
        lines.append(f"| `{field.name}` | {_default(field)} | {_inline(meaning)} |")
    if missing:
        lines += ["", f"Not described in `{name}`'s docstring: " + ", ".join(f"`{m}`" for m in missing) + "."]
    return "\n".join(lines) + "\n"


def metrics_table() -> str:
    """Every family the health server exports, from the real renderer (a listener that has not run)."""
    from scaleset_client import Client, Listener, ListenerConfig
    from scaleset_client._health_server import Metrics

    client = Client("https://github.com/example-org", token="unused-nothing-is-sent")
    try:
        client.circuit_breakers.get("https://broker.example", "long_poll")
        text = Metrics().render(Listener(client, ListenerConfig(1, 1)), client)
    finally:
        client.close()
    families: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            families.setdefault(name, {})["help"] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            families.setdefault(name, {})["type"] = kind
        elif line and not line.startswith("#"):
            match = re.match(r"([a-z_]+)\{([^}]*)\}", line)
            if match:
                labels = ",".join(re.findall(r"(\w+)=", match.group(2)))
                families.setdefault(match.group(1), {})["labels"] = labels
    lines = ["| family | type | labels | meaning |", "|---|---|---|---|"]
    for name, info in families.items():
        labels = info.get("labels", "")
        lines.append(f"| `{name}` | {info.get('type', '')} | {f'`{labels}`' if labels else '-'} | "
                     f"{info.get('help', '').replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def metric_names() -> list[str]:
    """The exported family names, for tools/check_docs.py."""
    return re.findall(r"^\| `([a-z_]+)` \|", metrics_table(), re.MULTILINE)


def include(argument: str) -> str:
    """A repository file as a fenced code block, titled with its path."""
    path, _, language = argument.partition(" ")
    text = (ROOT / path).read_text()
    fence = "````" if "```" in text else "```"
    return f"`{path}`:\n\n{fence}{language.strip()}\n{text.rstrip()}\n{fence}\n"


def expand(markdown: str) -> str:
    """Replace every directive on a page with the text it asks for."""

    def one(match: re.Match[str]) -> str:
        kind, argument = match.group(1), match.group(2).strip()
        if kind == "include":
            return include(argument)
        if argument == "cli-options":
            return cli_options()
        if argument == "metrics":
            return metrics_table()
        if argument == "api-reference":
            return api_reference()
        if argument.startswith("settings "):
            return settings_table(argument.split(None, 1)[1])
        raise ValueError(f"unknown directive: {match.group(0)}")

    return _DIRECTIVE.sub(one, markdown)


# --- MkDocs event hooks ------------------------------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for name in ROOT_PAGES:
        if (ROOT / name).exists() and files.get_file_from_path(name) is None:
            files.append(File.generated(config, name, abs_src_path=str(ROOT / name)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri in ROOT_PAGES:
        # A root page links to docs/X.md as GitHub shows it; on the site it sits beside X.md.
        markdown = markdown.replace("](docs/", "](")
    return expand(markdown)


def on_startup(command: str, dirty: bool) -> None:
    # The reference and the tables import the package from this checkout, not an installed copy.
    importlib.invalidate_caches()
