"""The package as a user installs it: ``python -m build`` makes an sdist and a wheel (the wheel
from the sdist, so the sdist carries the C sources), the wheel installs into a fresh venv with
nothing but NumPy and array-api-compat, and the installed package computes, shows its CPU target,
and runs ``logsumexp demo`` and ``logsumexp bench --help``.

Slow (a build and a venv: about a minute), and needs the registry for NumPy (as ``pip install``
does); skipped with that reason when the build front end is missing.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_build_install_and_run(tmp_path: Path) -> None:
    """One test (the build is the expensive part, and a module fixture would be built once per
    xdist worker): the sdist, the wheel, and the wheel in a fresh venv."""
    pytest.importorskip("build", reason="the 'build' front end (python -m build) is not installed")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], check=True,
                   capture_output=True, text=True, timeout=900)
    _sdist_carries_the_c_sources_and_the_license(dist)
    _wheel_has_one_extension_per_target_and_no_numba(dist)
    _wheel_installs_and_runs_in_a_fresh_venv(dist, tmp_path)


def _sdist_carries_the_c_sources_and_the_license(dist: Path) -> None:
    sdist = next(dist.glob("logsumexp-*.tar.gz"))
    names = tarfile.open(sdist).getnames()
    for part in ("src/logsumexp/_cpu/src/fold.h", "src/logsumexp/_cpu/src/module.c", "setup.py", "LICENSE"):
        assert any(n.endswith(part) for n in names), part


def _wheel_has_one_extension_per_target_and_no_numba(dist: Path) -> None:
    wheel = next(dist.glob("logsumexp-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    exts = sorted(n.split("/")[-1].split(".")[0] for n in names if n.startswith("logsumexp/_cpu/_kernels_"))
    assert "_kernels_baseline" in exts
    meta = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    requires = [line for line in text.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert sorted(r.split()[1].split(">")[0].split("=")[0] for r in requires) == ["array-api-compat", "numpy"]
    assert any(n.endswith("licenses/LICENSE") for n in names)


def _wheel_installs_and_runs_in_a_fresh_venv(dist: Path, tmp_path: Path) -> None:
    wheel = next(dist.glob("logsumexp-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=300)
    bin_ = tmp_path / "venv" / "bin"
    subprocess.run([str(bin_ / "python"), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=900)
    code = (
        "import numpy as np, logsumexp as lse; "
        "print(repr(float(lse.cross_entropy(np.array([[1000.0, 1000.0, 1000.0]]), np.array([0]))))); "
        "print(lse.show_config(print_out=False)['target'])"
    )
    out = subprocess.run([str(bin_ / "python"), "-c", code], check=True, capture_output=True, text=True,
                         cwd=tmp_path).stdout.split()
    assert out[0] == "1.0986122886681098"  # log 3, correctly rounded
    assert out[1] in ("baseline", "avx2", "avx512")
    demo = subprocess.run([str(bin_ / "logsumexp"), "demo"], check=True, capture_output=True, text=True, cwd=tmp_path)
    assert "1001.0986122886682" in demo.stdout
    helped = subprocess.run([str(bin_ / "logsumexp"), "bench", "--help"], check=True, capture_output=True, text=True,
                            cwd=tmp_path)
    assert "--quick" in helped.stdout
