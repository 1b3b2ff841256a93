"""The benchmark an installed package carries: ``logsumexp bench`` away from a source checkout.

The full benchmark (``benchmarks/cpu.py``: memory probes, torch, JAX, plots) lives in the
repository; this one needs nothing but NumPy (SciPy if installed) and answers the question a new
user has: on this machine, how does ``logsumexp`` compare with what I would write myself? The
cases are the CPU benchmark's, timed in interleaved rounds (each implementation once per round,
the order rotated), medians reported with the ratio to one read of the input (``x.max()``).
A thin shell over the public API: no mathematics here.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _cases(quick: bool) -> list[tuple[str, str, tuple[int, ...], str, int | None]]:
    big = (64, 3200) if quick else (4096, 32000)
    n = 10**5 if quick else 10**7
    return [
        ("lse 1e7 f64" if not quick else "lse 1e5 f64", "lse", (n,), "float64", None),
        ("lse 1e7 f32" if not quick else "lse 1e5 f32", "lse", (n,), "float32", None),
        (f"lse {big[0]}x{big[1]} f32", "lse", big, "float32", -1),
        ("lse n=1000 f64", "lse", (1000,), "float64", None),
        (f"softmax {big[0]}x{big[1]} f32", "softmax", big, "float32", -1),
        (f"CE {big[0]}x{big[1]} f32", "ce", big, "float32", -1),
    ]


def _implementations(kind: str, x: np.ndarray, axis: int | None, t: np.ndarray | None) -> dict[str, Callable[[], Any]]:
    import logsumexp as lse

    def shifted_lse(v: np.ndarray, ax: int | None) -> Any:
        m = np.max(v, axis=ax, keepdims=True)
        return np.squeeze(m, axis=ax) + np.log(np.sum(np.exp(v - m), axis=ax))

    fns: dict[str, Callable[[], Any]] = {"one read": lambda: x.max()}
    if kind == "lse":
        fns["logsumexp"] = lambda: lse.logsumexp(x, axis=axis)
        fns["NumPy shifted"] = lambda: shifted_lse(x, axis)
    elif kind == "softmax":
        fns["logsumexp"] = lambda: lse.softmax(x, axis=axis)

        def np_softmax() -> Any:
            e = np.exp(x - np.max(x, axis=axis, keepdims=True))
            return e / np.sum(e, axis=axis, keepdims=True)

        fns["NumPy shifted"] = np_softmax
    else:
        rows = np.arange(x.shape[0])
        fns["logsumexp"] = lambda: lse.cross_entropy(x, t)
        fns["NumPy shifted"] = lambda: np.mean(shifted_lse(x, -1) - x[rows, t])
    try:
        from scipy import special
    except ImportError:
        return fns
    if kind == "lse":
        fns["SciPy"] = lambda: special.logsumexp(x, axis=axis)
    elif kind == "softmax":
        fns["SciPy"] = lambda: special.softmax(x, axis=axis)
    return fns


def _time(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    numbers = {}
    for name, fn in fns.items():
        fn()
        t0 = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-9)
        numbers[name] = max(1, int(0.05 / one))
    per_call: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            for _ in range(numbers[name]):
                fns[name]()
            per_call[name].append((time.perf_counter() - t0) / numbers[name])
    return {name: statistics.median(v) for name, v in per_call.items()}


def run(quick: bool = False, rounds: int = 5, write: Callable[[str], None] = print) -> int:
    """Time the cases and write a table (ms per call, or µs for n = 1000; × one read)."""
    import logsumexp as lse

    cfg = lse.show_config(print_out=False)
    write(f"logsumexp {lse.__version__}, CPU kernels: {cfg['target']} target, {cfg['threads']} threads"
          + (" (--quick sizes)" if quick else ""))
    rng = np.random.default_rng(0)
    for name, kind, shape, dtype, axis in _cases(quick):
        x = rng.standard_normal(shape, dtype=np.dtype(dtype).type)
        t = rng.integers(0, shape[-1], shape[0]) if kind == "ce" else None
        times = _time(_implementations(kind, x, axis, t), rounds)
        base = times["one read"]
        small = x.size <= 1000
        cells = []
        for lib, sec in times.items():
            val = f"{sec * 1e6:.2f} µs" if small else f"{sec * 1e3:.2f} ms"
            cells.append(f"{lib} {val}" + ("" if lib == "one read" or small else f" ({sec / base:.2f}×)"))
        write(f"  {name:<22} " + " | ".join(cells))
    return 0
