"""The built wheel: typed, with the test kit, without tests or benchmarks, two runtime dependencies."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    return zipfile.ZipFile(next(out.glob("scaleset_client-*.whl")))


def test_wheel_ships_the_package_typed_with_its_test_kit_and_nothing_else(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    assert "scaleset_client/py.typed" in names and "scaleset_client/testing/fake_service.py" in names
    assert not [n for n in names if n.startswith(("tests/", "examples/", "bench/"))]


def test_wheel_metadata_declares_two_runtime_dependencies_and_the_app_extra(wheel: zipfile.ZipFile) -> None:
    meta_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    meta = wheel.read(meta_name).decode()
    runtime = [line for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert sorted(line.split(":", 1)[1].strip().split("<")[0].split(">")[0] for line in runtime) == [
        "requests", "urllib3"]
    assert 'Requires-Dist: cryptography>=42; extra == "app"' in meta
    assert "License-Expression: MIT" in meta and "Requires-Python: >=3.10" in meta
    entry = wheel.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    assert "scaleset-listen = scaleset_client._cli:main" in entry
