#!/usr/bin/env python
"""Start-up: what a new process pays to get its first answer, in a fresh venv from the wheel.

Builds the wheel of this checkout, installs it into a new virtual environment (with NumPy and
array-api-compat from the registry: what ``pip install logsumexp`` brings), then times whole
processes (wall clock, ``subprocess.run``):

- *first*: the first process after the install that imports logsumexp and calls ``logsumexp``,
  ``softmax`` and ``cross_entropy`` once each on small NumPy arrays;
- *later*: the same process again (median of the repeats);
- *NumPy*: a process that imports NumPy and runs NumPy's shifted formula on the same array;
- *command*: ``logsumexp lse 1000 1000 1000``.

Also the installed size of the venv's site-packages beyond pip itself. Repeats are interleaved
(ours, NumPy, command, ours, ...) so that load on a shared machine hits all alike.

Usage::

    python benchmarks/startup.py [--repeats 9] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import _harness as H  # noqa: E402

OURS = (
    "import numpy as np, logsumexp as lse\n"
    "x = np.arange(10.0)\n"
    "lse.logsumexp(x); lse.softmax(x); lse.cross_entropy(np.ones((2, 3)), np.array([0, 1]))\n"
)
NUMPY = "import numpy as np\nx = np.arange(10.0)\nm = x.max()\nm + np.log(np.sum(np.exp(x - m)))\n"


def _timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def run(repeats: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(t / "dist"), str(H.ROOT)],
                       check=True)
        wheel = next((t / "dist").glob("logsumexp-*.whl"))
        subprocess.run([sys.executable, "-m", "venv", str(t / "venv")], check=True)
        py = str(t / "venv" / "bin" / "python")
        site = Path(subprocess.check_output([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                            text=True).strip())
        before = _size_mb(site)
        subprocess.run([py, "-m", "pip", "install", "-q", str(wheel)], check=True)
        size = _size_mb(site) - before
        first = _timed([py, "-c", OURS])
        cmd = [str(t / "venv" / "bin" / "logsumexp"), "lse", "1000", "1000", "1000"]
        ours, numpy, command = [], [], []
        for _ in range(repeats):
            ours.append(_timed([py, "-c", OURS]))
            numpy.append(_timed([py, "-c", NUMPY]))
            command.append(_timed(cmd))
        med = {k: statistics.median(v) for k, v in (("ours", ours), ("numpy", numpy), ("command", command))}
        target = subprocess.check_output([py, "-c", "import logsumexp; print(logsumexp.show_config(False)['target'])"],
                                         text=True).strip()
        pkgs = subprocess.check_output([py, "-m", "pip", "list", "--format=freeze"], text=True).split()
    rows = [
        ["first process after install (logsumexp, softmax, cross_entropy)", f"{first:.3f} s",
         f"{first / med['numpy']:.2f}×"],
        ["later processes, the same calls (median)", f"{med['ours']:.3f} s", f"{med['ours'] / med['numpy']:.2f}×"],
        ["`logsumexp lse 1000 1000 1000` (median)", f"{med['command']:.3f} s", f"{med['command'] / med['numpy']:.2f}×"],
        ["NumPy imported, its shifted formula (median)", f"{med['numpy']:.3f} s", "1.00×"],
    ]
    return "\n".join([
        f"Machine: {H.cpu_model()}; kernels' target `{target}`; commit {H.git_commit()}; {repeats} interleaved "
        f"repeats. A fresh venv with the wheel installed: {', '.join(p for p in pkgs if not p.startswith('pip'))}; "
        f"{size:.1f} MB installed beyond pip.",
        "",
        H.markdown_table(["process", "wall time", "÷ NumPy process"], rows),
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--write", action="store_true", help="write the table into docs/BENCHMARKS.md")
    a = p.parse_args(argv)
    text = run(a.repeats)
    print(text)
    if a.write:
        H.write_between_markers(H.ROOT / "docs" / "BENCHMARKS.md", "startup", text,
                                title="## Start-up in a fresh venv: `benchmarks/startup.py`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
