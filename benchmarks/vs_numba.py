#!/usr/bin/env python
"""The compiled C kernels against the Numba kernels they replaced (commit 269a75c), same run.

Two worker processes, one per installation (this checkout's Python, and a Python whose
``logsumexp`` is 269a75c with Numba: ``--old-python``), run the cases of ``benchmarks/cpu.py``
(the same seeded inputs) on request. The driver asks them in alternating rounds, so that a
burst of load on the shared machine hits both alike, and reports the median time per call of
each and the ratio (ours ÷ Numba: below 1 is faster). Each worker warms up first (Numba compiles
on the first call, which is not timed here; ``benchmarks/startup.py`` measures that).

Set up the old installation once (any folder)::

    git worktree add /tmp/old269 269a75c
    python -m venv /tmp/oldvenv && /tmp/oldvenv/bin/pip install numpy scipy array-api-compat numba
    /tmp/oldvenv/bin/pip install --no-deps -e /tmp/old269

Usage::

    python benchmarks/vs_numba.py --old-python /tmp/oldvenv/bin/python [--rounds 7] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import _harness as H  # noqa: E402
import cpu  # noqa: E402


def worker() -> None:
    """Answer ``CASE N`` lines with the mean seconds per call of N calls (input made once)."""
    cache: dict[str, Any] = {}
    for line in sys.stdin:
        name, n = line.rsplit(" ", 1)
        if name not in cache:
            case = next(c for c in cpu.CASES if c.name == name)
            fn = cpu._ours(case, cpu.make_input(case, quick=False))
            fn()  # warm-up: Numba compiles (or loads its cache) here
            cache = {name: fn}  # one case's input at a time (the large ones are 0.5 GB)
        fn = cache[name]
        t0 = time.perf_counter()
        for _ in range(int(n)):
            fn()
        print((time.perf_counter() - t0) / int(n), flush=True)


class Worker:
    def __init__(self, python: str) -> None:
        self.p = subprocess.Popen([python, str(Path(__file__).resolve()), "--_worker"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)

    def ask(self, case: str, n: int) -> float:
        assert self.p.stdin is not None and self.p.stdout is not None
        self.p.stdin.write(f"{case} {n}\n")
        self.p.stdin.flush()
        return float(self.p.stdout.readline())

    def close(self) -> None:
        if self.p.stdin:
            self.p.stdin.close()
        self.p.wait(timeout=60)


def run(old_python: str, rounds: int, names: list[str]) -> list[list[str]]:
    ours, old = Worker(sys.executable), Worker(old_python)
    rows = []
    try:
        for name in names:
            case = next(c for c in cpu.CASES if c.name == name)
            n = 2000 if case.per_call_us else 3
            ours.ask(name, 1), old.ask(name, 1)  # warm-up (and Numba's compile) in both
            a: list[float] = []
            b: list[float] = []
            for r in range(rounds):
                pair = [(ours, a), (old, b)] if r % 2 == 0 else [(old, b), (ours, a)]
                for w, out in pair:
                    out.append(w.ask(name, n))
            ma, mb = statistics.median(a), statistics.median(b)
            unit, f = ("µs", 1e6) if case.per_call_us else ("ms", 1e3)
            rows.append([name, f"{ma * f:.2f} {unit}", f"{mb * f:.2f} {unit}", f"{ma / mb:.2f}×"])
            print(" | ".join(rows[-1]), file=sys.stderr)
    finally:
        ours.close()
        old.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old-python", required=False, help="the Python whose logsumexp is 269a75c with Numba")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--cases", default=None, help="comma-separated substrings selecting cases")
    p.add_argument("--write", action="store_true", help="write the table into docs/BENCHMARKS.md")
    p.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._worker:
        worker()
        return 0
    if not a.old_python:
        p.error("--old-python is required (see the module docstring)")
    names = [c.name for c in cpu.CASES if a.cases is None or any(s in c.name for s in a.cases.split(","))]
    rows = run(a.old_python, a.rounds, names)
    from logsumexp import _cpu

    text = "\n".join([
        f"Machine: {H.cpu_model()}; ours: commit {H.git_commit()}, C kernels, `{_cpu.target()}` target; "
        f"Numba: commit 269a75c. Median time per call over {a.rounds} alternating rounds, each implementation "
        "in its own worker process (warmed up: Numba's compile is not in these figures).",
        "",
        H.markdown_table(["case", "ours (C)", "Numba (269a75c)", "ours ÷ Numba"], rows),
    ])
    print(text)
    if a.write:
        H.write_between_markers(H.ROOT / "docs" / "BENCHMARKS.md", "vs-numba", text,
                                title="## CPU kernels in C against the Numba kernels of 269a75c: `benchmarks/vs_numba.py`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
