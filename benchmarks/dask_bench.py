"""One-pass Dask LogSumExp against one read and the usual alternatives (issue 6).

On one in-memory Dask array (default 1e8 float64 in 10 chunks, threaded scheduler) it times:

* ``x.max()``                      one read of every chunk: the floor;
* ``logsumexp.dask.logsumexp(x)``  ours: one reduction over the (max, lead, tail) state;
* LSE of chunk LSEs                ``map_blocks`` of ``scipy.special.logsumexp`` per chunk, then the
                                   LSE of those (what one writes by hand);
* two-pass                         ``m = x.max(); m + log(exp(x − m).sum())``;
* ``scipy.special.logsumexp(x)``   SciPy's array-API path on the Dask array (``SCIPY_ARRAY_API=1``),
                                   when this SciPy supports it.

Each method is computed once to warm up (and to check that all agree), then the methods run in
turn, ``--repeats`` rounds; the table gives medians, the ratio to one read, and how many graph tasks
read each input chunk. With ``--write`` the table goes into docs/BENCHMARKS.md between the
``<!-- dask:start -->`` and ``<!-- dask:end -->`` markers (the rest of the file is left alone).

    python benchmarks/dask_bench.py                 # the real run: 1e8 float64, 10 chunks
    python benchmarks/dask_bench.py --n 1e6 --no-write   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("SCIPY_ARRAY_API", "1")  # before SciPy is imported: its Dask support needs it

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import numpy as np  # noqa: E402

import logsumexp  # noqa: E402
import logsumexp.dask as lsed  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- dask:start -->", "<!-- dask:end -->"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True, check=True)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def readers_per_chunk(result: Any, x: Any) -> str:
    """How many tasks of ``result``'s graph read each chunk of ``x`` (min–max over chunks)."""
    graph = dict(result.__dask_graph__())
    count = dict.fromkeys((k for k in graph if isinstance(k, tuple) and k[0] == x.name), 0)
    for task in graph.values():
        for dep in getattr(task, "dependencies", ()):
            if dep in count:
                count[dep] += 1
    lo, hi = min(count.values()), max(count.values())
    return str(lo) if lo == hi else f"{lo}–{hi}"


def methods(x: Any) -> dict[str, tuple[Callable[[], Any], Any]]:
    """name → (function computing the result, its lazy Dask graph)."""
    out: dict[str, tuple[Callable[[], Any], Any]] = {}
    one_read = x.max()
    out["one read: x.max()"] = (one_read.compute, one_read)
    ours = lsed.logsumexp(x)
    out["logsumexp.dask.logsumexp"] = (ours.compute, ours)

    import scipy
    import scipy.special as sp

    def chunk_lse(block: np.ndarray) -> np.ndarray:
        return np.atleast_1d(sp.logsumexp(block))

    per_chunk = x.map_blocks(chunk_lse, chunks=((1,) * x.numblocks[0],), dtype=x.dtype)
    out["LSE of chunk LSEs (SciPy per chunk)"] = (lambda: sp.logsumexp(per_chunk.compute()), per_chunk)
    m = x.max()
    two_pass = m + da.log(da.exp(x - m).sum())
    out["two-pass: m + log(exp(x − m).sum())"] = (two_pass.compute, two_pass)
    try:
        via_scipy = sp.logsumexp(x)
        if not isinstance(via_scipy, da.Array):
            raise TypeError(f"returned {type(via_scipy).__name__}, not a Dask array")
        out[f"scipy.special.logsumexp (SciPy {scipy.__version__}, array API)"] = (via_scipy.compute, via_scipy)
    except Exception as err:  # noqa: BLE001 - any failure means "not supported here"; say why
        print(f"skipping scipy.special.logsumexp on a Dask array: {type(err).__name__}: {err}", file=sys.stderr)
    return out


def run(n: int, chunks: int, repeats: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rng = np.random.default_rng(seed)
    a = np.empty(n)
    step = 1 << 22
    for i in range(0, n, step):  # filled in pieces: no second full-size temporary
        a[i : i + step] = rng.standard_normal(min(step, n - i))
    x = da.from_array(a, chunks=-(-n // chunks))
    meths = methods(x)
    reference = float(logsumexp.logsumexp(a))
    rows: list[dict[str, Any]] = []
    times: dict[str, list[float]] = {k: [] for k in meths}
    values: dict[str, float] = {}
    with dask.config.set(scheduler="threads"):
        for name, (fn, _) in meths.items():  # warm-up (numba compile, thread pools) and agreement
            values[name] = float(np.asarray(fn()))
        for _ in range(repeats):
            for name, (fn, _) in meths.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["one read: x.max()"])
    for name, (_, graph) in meths.items():
        med = statistics.median(times[name])
        is_lse = not name.startswith("one read")
        rows.append(
            {
                "method": name,
                "median_s": med,
                "ratio": med / base,
                "readers": readers_per_chunk(graph, x),
                "rel_err": abs(values[name] - reference) / abs(reference) if is_lse else None,
            }
        )
    info = {
        "n": n,
        "chunks": x.numblocks[0],
        "repeats": repeats,
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "commit": commit(),
        "versions": f"Python {platform.python_version()}, NumPy {np.__version__}, Dask {dask.__version__}",
        "cpu_kernels": _kernels_state(),
    }
    return rows, info


def _kernels_state() -> str:
    from logsumexp import _cpu

    return "compiled CPU kernels" if _cpu.available() else "pure NumPy core (no compiled kernels)"


def _count(n: int) -> str:
    """1e8 for powers of ten, else the number with thousands separators."""
    k = len(str(n)) - 1
    return f"1e{k}" if n == 10**k else f"{n:,}"


def table(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [
        f"One-pass LogSumExp (`logsumexp.dask.logsumexp`): {_count(info['n'])} float64 in {info['chunks']} chunks, in memory, Dask threaded scheduler; "
        f"median of {info['repeats']} rounds (methods interleaved). Machine: {info['cpu']}, "
        f"{info['cores']} cores. Commit {info['commit']}; {info['versions']}; chunk step on the "
        f"{info['cpu_kernels']}. `benchmarks/dask_bench.py`.",
        "",
        "| method | median (ms) | × one read | tasks reading each chunk | rel. error vs core |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        err = "—" if r["rel_err"] is None else f"{r['rel_err']:.1e}"
        lines.append(f"| {r['method']} | {r['median_s'] * 1e3:.1f} | {r['ratio']:.2f} | {r['readers']} | {err} |")
    lines += [
        "",
        "Target (CPU issue): ours ≤ 1.5× one read and ahead of the chunk-LSE and two-pass expressions. "
        "The two-pass graph has two consumers per chunk: the chunks are either held in memory "
        "between the passes or read again.",
    ]
    return "\n".join(lines)


def write_section(text: str, path: Path) -> None:
    """Put ``text`` between the dask markers of ``path``; nothing else in the file changes."""
    section = f"{START}\n{text}\n{END}"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if START in old and END in old and old.index(START) < old.index(END):
        new = old[: old.index(START)] + section + old[old.index(END) + len(END) :]
    else:
        new = old.rstrip("\n") + "\n\n## Dask (`benchmarks/dask_bench.py`)\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=float, default=1e8, help="number of float64 elements (default 1e8)")
    p.add_argument("--chunks", type=int, default=10, help="number of chunks (default 10)")
    p.add_argument("--repeats", type=int, default=7, help="timed rounds (default 7)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write", dest="write", action="store_true", default=True, help="write docs/BENCHMARKS.md (default)")
    p.add_argument("--no-write", dest="write", action="store_false", help="only print the table")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    args = p.parse_args(argv)
    if args.n < 1 or args.chunks < 1 or args.repeats < 1:
        p.error("--n, --chunks and --repeats must be at least 1")
    rows, info = run(int(args.n), args.chunks, args.repeats, args.seed)
    text = table(rows, info)
    print(text)
    if args.write:
        write_section(text, args.out)
        print(f"\nwritten to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
