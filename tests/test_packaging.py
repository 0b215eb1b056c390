"""The installed package finds its own data (target profiles, the toy zoo) without the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """vlsi_edge built as a wheel and installed (without dependencies) into a folder of its own."""
    work = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(work / "dist"), str(ROOT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((work / "dist").glob("vlsi_edge-*.whl"))
    site = work / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    return site


def run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}  # the wheel's vlsi_edge first, dependencies from this venv
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_wheel_holds_the_profiles_and_the_zoo(installed):
    package = installed / "vlsi_edge"
    assert sorted(p.name for p in (package / "deploy" / "profiles").glob("*.yaml")) == [
        "android-arm64.yaml", "linux-arm64.yaml", "x86_64.yaml"]
    assert (package / "zoo" / "models" / "student" / "model.safetensors").is_file()


def test_export_runs_from_an_empty_folder(installed, tmp_path):
    """`python -m vlsi_edge.export --target x86_64 --model zoo:student`, ONNX fp32 only to keep it short."""
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    proc = run_installed(installed, empty, "-m", "vlsi_edge.export", "--target", "x86_64", "--model", "zoo:student",
                         "--set", "formats=[onnx]", "--set", "onnx.schemes=[fp32]", "--set", "validation.size=5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = empty / "exports" / "student-x86_64"
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["artifacts"]) == ["onnx-fp32"] and manifest["validation"]["passed"]
    assert Path(manifest["model"]["source"]).is_relative_to(installed)  # the wheel's zoo, not the repository's
    where = run_installed(installed, empty, "-c", "import vlsi_edge; print(vlsi_edge.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(installed)
