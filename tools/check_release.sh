#!/usr/bin/env bash
# Release check: build the sdist and the wheel, check their metadata, install the wheel into a
# clean virtual environment and run the demo and `scaleset-listen --help` from there.
#
#   bash tools/check_release.sh            # artifacts in dist/ (replaced), the rest in a temp dir
#
# Needs python3 (3.10+) and PyPI (build and twine go into a throw-away venv, never into .venv).
# Prints the wheel's size and every distribution the install pulled in.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/scaleset-release.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "== tools: build and twine (in $work/tools)"
"$PYTHON" -m venv "$work/tools"
"$work/tools/bin/pip" install -q --upgrade pip build twine

echo "== build: sdist and wheel into dist/"
rm -rf dist build/lib build/bdist.*
"$work/tools/bin/python" -m build --outdir dist . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
wheel=$(ls dist/*.whl)
sdist=$(ls dist/*.tar.gz)
echo "$sdist"
echo "$wheel"

echo "== twine check"
"$work/tools/bin/twine" check --strict dist/*

echo "== the wheel holds the package and nothing else"
"$work/tools/bin/python" - "$wheel" <<'PY'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
stray = [n for n in names if not n.startswith(("scaleset_client/", "scaleset_client-"))]
assert not stray, f"files outside the package: {stray}"
for needed in ("scaleset_client/py.typed", "scaleset_client/testing/pytest_plugin.py"):
    assert needed in names, f"missing from the wheel: {needed}"
print(f"{len(names)} files, all under scaleset_client/")
PY

echo "== install the wheel into a clean venv (in $work/clean)"
"$PYTHON" -m venv "$work/clean"
"$work/clean/bin/pip" install -q --upgrade pip
site=$("$work/clean/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
before=$("$work/clean/bin/pip" list --format=freeze | sort)
size_before=$(du -sk "$site" | cut -f1)
"$work/clean/bin/pip" install -q "$wheel"
after=$("$work/clean/bin/pip" list --format=freeze | sort)
size_after=$(du -sk "$site" | cut -f1)

echo "== scaleset-listen --help (from the clean venv)"
(cd "$work" && "$work/clean/bin/scaleset-listen" --help >"$work/help.txt")
head -3 "$work/help.txt"

echo "== the demo, against the installed package (not this checkout)"
cp examples/demo.py "$work/demo.py"
(cd "$work" && "$work/clean/bin/python" -I demo.py >"$work/demo.log") || { cat "$work/demo.log"; exit 1; }
tail -2 "$work/demo.log"

echo "== footprint"
echo "wheel: $(du -k "$wheel" | cut -f1) KiB ($(stat -c %s "$wheel") bytes); sdist: $(du -k "$sdist" | cut -f1) KiB"
echo "pulled in by 'pip install <wheel>':"
comm -13 <(echo "$before") <(echo "$after") | sed 's/^/  /'
echo "installed: $((size_after - size_before)) KiB in all, of which scaleset_client $(du -sk "$site/scaleset_client" | cut -f1) KiB"
echo "release check: OK"
