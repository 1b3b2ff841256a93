#!/usr/bin/env python
"""CPU benchmark: LogSumExp, softmax and cross-entropy on NumPy inputs, ours next to the peers.

Cases (issue 3, plus the foundation's 1e6 float64 check):

=====================  ======================================================================
lse 1e7 f64            ``logsumexp(x)`` over 1e7 float64
lse 1e7 f32            the same in float32
lse 1e6 f64            1e6 float64 (the foundation issue: the core path vs SciPy)
lse 4096x32000 f32     ``logsumexp(x, axis=-1)`` on a [4096, 32000] float32 matrix
lse n=1000 f64         one call on 1000 float64 (µs per call, dispatch included)
softmax 4096x32000     ``softmax(x, axis=-1)``, float32
CE 4096x32000          ``cross_entropy(x, target)`` forward (mean), float32, int64 targets
=====================  ======================================================================

Columns: one read (``x.max()``, the memory floor), copy (``x.copy()``, softmax only: one read
and a fresh output written, the floor of an op that returns a new array), ours (the compiled C
kernels, the best target this CPU supports), ours forced to the ``avx2`` and ``baseline`` targets
(``LOGSUMEXP_CPU``; where the CPU has them), ours with the compiled layer disabled (``logsumexp._cpu.disabled()``: the array core), NumPy shifted
(``m + log Σ exp(x − m)``), SciPy, torch (CPU, ``torch.from_numpy``: no copy),
``torch.compile(torch.logsumexp)`` and ``jax.jit`` (CPU, float64 enabled) where installed; a
missing peer is skipped with the reason printed. The implementations of a case are timed in
interleaved rounds (``_harness.time_interleaved``): each cell gives the median time per call, its
ratio to one read, and the ratio of the minima. Peak extra memory (ours, the fallback, NumPy
shifted, torch): resident high-water mark of one call in a fresh subprocess (``_harness``), as a
multiple of the input size (softmax counts its output). The full run takes a few minutes.

Usage::

    python benchmarks/cpu.py              # full run; writes docs/BENCHMARKS.md and docs/bench_cpu.png
    python benchmarks/cpu.py --quick      # tiny sizes, a few seconds; writes nothing unless --write
    python benchmarks/cpu.py --no-memory  # skip the subprocess memory probes

``logsumexp bench`` calls ``main``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import _harness as H  # noqa: E402

LIBS = [
    "one read", "copy", "ours", "ours avx2", "ours baseline", "ours (core)", "NumPy shifted", "SciPy", "torch",
    "torch.compile", "jax.jit",
]
# The memory probes (a fresh subprocess each) are taken for these only, to keep the run short.
MEMORY_LIBS = ("ours", "NumPy shifted", "torch")


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "lse", "softmax", "ce"
    shape: tuple[int, ...]
    quick_shape: tuple[int, ...]
    dtype: str
    axis: int | None
    per_call_us: bool = False  # report µs per call (small input) instead of ms


CASES = [
    Case("lse 1e7 f64", "lse", (10**7,), (10**5,), "float64", None),
    Case("lse 1e7 f32", "lse", (10**7,), (10**5,), "float32", None),
    Case("lse 1e6 f64", "lse", (10**6,), (10**4,), "float64", None),
    Case("lse 4096x32000 f32", "lse", (4096, 32000), (64, 3200), "float32", -1),
    Case("lse n=1000 f64", "lse", (1000,), (1000,), "float64", None, per_call_us=True),
    Case("softmax 4096x32000 f32", "softmax", (4096, 32000), (64, 3200), "float32", -1),
    Case("CE 4096x32000 f32", "ce", (4096, 32000), (64, 3200), "float32", -1),
]


def make_input(case: Case, quick: bool) -> dict[str, Any]:
    """The case's input (seeded), generated in its dtype without a float64 temporary."""
    shape = case.quick_shape if quick else case.shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.dtype(case.dtype).type)
    inp: dict[str, Any] = {"x": x}
    if case.kind == "ce":
        inp["t"] = rng.integers(0, shape[-1], shape[0])
    return inp


# --------------------------------------------------------------------------------------------
# The libraries: a function (case, input) -> zero-argument callable, or a string (skip reason)
# --------------------------------------------------------------------------------------------
def _one_read(case: Case, inp: dict[str, Any]) -> Callable[[], Any]:
    x = inp["x"]
    return lambda: x.max()


def _copy(case: Case, inp: dict[str, Any]) -> Callable[[], Any] | str:
    """``x.copy()``: one read and one fresh output written (pages faulted in and zeroed by the
    kernel, then filled): the memory floor of softmax, which must return a new array."""
    if case.kind != "softmax":
        return "softmax only (the floor of an op that writes a fresh output)"
    x = inp["x"]
    return lambda: x.copy()


def _ours(case: Case, inp: dict[str, Any], core: bool = False, target: str | None = None) -> Callable[[], Any] | str:
    import logsumexp as lse
    from logsumexp import _cpu

    x, ax = inp["x"], case.axis
    if case.kind == "lse":
        fn = lambda: lse.logsumexp(x, axis=ax)  # noqa: E731
    elif case.kind == "softmax":
        fn = lambda: lse.softmax(x, axis=ax)  # noqa: E731
    else:
        t = inp["t"]
        fn = lambda: lse.cross_entropy(x, t)  # noqa: E731
    if target is not None:
        if target not in _cpu.supported_targets():
            return f"this CPU has no {target} target"
        import importlib

        mod = importlib.import_module(f"logsumexp._cpu._kernels_{target}")

        def on_target() -> Any:
            _cpu.kernels()
            saved, _cpu._kernels = _cpu._kernels, mod  # what LOGSUMEXP_CPU=target loads
            try:
                return fn()
            finally:
                _cpu._kernels = saved

        return on_target
    if not core:
        return fn

    def in_core() -> Any:
        with _cpu.disabled():
            return fn()

    return in_core


def _numpy_shifted(case: Case, inp: dict[str, Any]) -> Callable[[], Any]:
    x, ax = inp["x"], case.axis

    def lse_(v: np.ndarray, axis: int | None) -> Any:
        m = np.max(v, axis=axis, keepdims=True)
        return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(v - m), axis=axis))

    if case.kind == "lse":
        return lambda: lse_(x, ax)
    if case.kind == "softmax":

        def sm() -> Any:
            e = np.exp(x - np.max(x, axis=ax, keepdims=True))
            return e / np.sum(e, axis=ax, keepdims=True)

        return sm
    t = inp["t"]
    rows = np.arange(x.shape[0])
    return lambda: np.mean(lse_(x, -1) - x[rows, t])


def _scipy(case: Case, inp: dict[str, Any]) -> Callable[[], Any] | str:
    try:
        from scipy import special
    except ImportError:
        return "scipy is not installed"
    x, ax = inp["x"], case.axis
    if case.kind == "lse":
        return lambda: special.logsumexp(x, axis=ax)
    if case.kind == "softmax":
        return lambda: special.softmax(x, axis=ax)
    t = inp["t"]
    rows = np.arange(x.shape[0])
    return lambda: np.mean(special.logsumexp(x, axis=-1) - x[rows, t])


def _torch(case: Case, inp: dict[str, Any]) -> Callable[[], Any] | str:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    tx = torch.from_numpy(inp["x"])
    if case.kind == "lse":
        if case.axis is None:
            flat = tx.reshape(-1)
            return lambda: torch.logsumexp(flat, 0)
        return lambda: torch.logsumexp(tx, case.axis)
    if case.kind == "softmax":
        return lambda: torch.softmax(tx, case.axis)
    tt = torch.from_numpy(inp["t"])
    return lambda: torch.nn.functional.cross_entropy(tx, tt)


def _torch_compile(case: Case, inp: dict[str, Any]) -> Callable[[], Any] | str:
    """``torch.compile(torch.logsumexp)`` (Inductor's fused CPU kernel); LSE cases only."""
    if case.kind != "lse":
        return "torch.compile: LSE cases only"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    tx = torch.from_numpy(inp["x"])
    if case.axis is None:
        tx = tx.reshape(-1)
    dim = 0 if case.axis is None else case.axis
    f = torch.compile(lambda v: torch.logsumexp(v, dim), dynamic=False)
    return lambda: f(tx)


def _jax(case: Case, inp: dict[str, Any]) -> Callable[[], Any] | str:
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_platforms", "cpu")
        import jax.numpy as jnp
    except Exception as err:  # ImportError, or a broken install
        return f"jax is not usable ({type(err).__name__}: {err})"
    x = jax.device_put(inp["x"])
    ax = case.axis
    if case.kind == "lse":
        f = jax.jit(lambda v: jax.nn.logsumexp(v, axis=ax))
        return lambda: f(x).block_until_ready()
    if case.kind == "softmax":
        f = jax.jit(lambda v: jax.nn.softmax(v, axis=ax))
        return lambda: f(x).block_until_ready()
    t = jax.device_put(inp["t"])
    f = jax.jit(lambda v, tt: jnp.mean(jax.nn.logsumexp(v, axis=-1) - jnp.take_along_axis(v, tt[:, None], -1)[:, 0]))
    return lambda: f(x, t).block_until_ready()


def get_fn(lib: str, case: Case, inp: dict[str, Any]) -> Callable[[], Any] | str:
    if lib == "one read":
        return _one_read(case, inp)
    if lib == "copy":
        return _copy(case, inp)
    if lib == "ours":
        return _ours(case, inp)
    if lib == "ours (core)":
        return _ours(case, inp, core=True)
    if lib.startswith("ours ") and lib != "ours (core)":
        return _ours(case, inp, target=lib.split()[1])
    if lib == "torch.compile":
        return _torch_compile(case, inp)
    if lib == "NumPy shifted":
        return _numpy_shifted(case, inp)
    if lib == "SciPy":
        return _scipy(case, inp)
    if lib == "torch":
        return _torch(case, inp)
    if lib == "jax.jit":
        return _jax(case, inp)
    raise ValueError(f"unknown library {lib!r}")


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
def _probe_child(case_name: str, lib: str, quick: bool) -> None:
    """Subprocess side of the memory measurement (``--_probe CASE LIB``)."""
    case = next(c for c in CASES if c.name == case_name)
    inp = make_input(case, quick)
    fn = get_fn(lib, case, inp)
    if isinstance(fn, str):
        raise SystemExit(fn)
    H.emit_probe(fn)


def _fmt_time(seconds: float, us: bool) -> str:
    return f"{seconds * 1e6:.2f} µs" if us else f"{seconds * 1e3:.2f} ms"


def run(cases: list[Case], libs: list[str], quick: bool, repeats: int, memory: bool) -> dict[str, Any]:
    """Time (interleaved rounds per case) and probe the memory of every (case, library)."""
    times: dict[tuple[str, str], H.Timing] = {}
    mem: dict[tuple[str, str], dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    mem_libs = [lib for lib in libs if lib in MEMORY_LIBS] if memory else []
    bar = H.Progress(len(cases) * (1 + len(mem_libs)))
    for case in cases:
        inp = make_input(case, quick)
        nbytes = inp["x"].nbytes
        bar.step(f"{case.name}: {len(libs)} implementations, {repeats} interleaved rounds")
        fns: dict[str, Callable[[], Any]] = {}
        for lib in libs:
            fn = get_fn(lib, case, inp)
            if isinstance(fn, str):
                skipped.setdefault(lib, fn)
            else:
                fns[lib] = fn
        with contextlib.redirect_stdout(sys.stderr):
            got = H.time_interleaved(fns, rounds=repeats, min_round=0.05 if case.per_call_us else 0.0)
        times.update({(case.name, lib): t for lib, t in got.items()})
        for lib in mem_libs:
            bar.step(f"{case.name}: {lib} (memory)")
            if case.per_call_us or lib not in fns:
                continue
            argv = [str(Path(__file__).resolve()), "--_probe", case.name, lib] + (["--quick"] if quick else [])
            res = H.peak_extra_memory(argv)
            if res is not None:
                res["ratio"] = res["bytes"] / nbytes
                mem[(case.name, lib)] = res
        del inp, fns
    bar.close()
    # a library skipped for some cases only (torch.compile: LSE only) still has a column
    timed_libs = {lib for (_, lib) in times}
    skipped = {lib: why for lib, why in skipped.items() if lib not in timed_libs}
    for lib, why in skipped.items():
        print(f"skipped {lib}: {why}", file=sys.stderr)
    return {"times": times, "mem": mem, "skipped": skipped}


def report(cases: list[Case], libs: list[str], res: dict[str, Any], quick: bool) -> tuple[str, dict[tuple[str, str], float]]:
    """The Markdown report (machine line, time table, memory table, notes) and the ratio map."""
    times, mem = res["times"], res["mem"]
    shown = [lib for lib in libs if lib not in res["skipped"]]
    ratios: dict[tuple[str, str], float] = {}
    rows = []
    for case in cases:
        base = times.get((case.name, "one read"))
        row = [case.name]
        for lib in shown:
            t = times.get((case.name, lib))
            if t is None:
                row.append("—")
                continue
            cell = _fmt_time(t.median, case.per_call_us)
            if case.per_call_us:
                cell += f" (min {_fmt_time(t.best, True)})"
            elif base is not None and lib != "one read":
                r = t.median / base.median
                ratios[(case.name, lib)] = r
                cell += f" ({r:.2f}×; min {t.best / base.best:.2f}×)"
            elif lib == "one read":
                cell += f" (min {_fmt_time(t.best, False)})"
            row.append(cell)
        rows.append(row)
    import numpy

    versions = [f"numpy {numpy.__version__}"]
    for mod in ("scipy", "torch", "jax"):
        with contextlib.suppress(Exception):
            versions.append(f"{mod} {__import__(mod).__version__}")
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Machine: {H.cpu_model()}; *ours*: `{_target()}` target; commit {H.git_commit()}; {when}; {', '.join(versions)}"
        + ("; **--quick sizes**" if quick else "") + ".",
        "",
        f"Median time per call over {next(iter(times.values())).rounds if times else 0} interleaved rounds"
        " (every implementation once per round, the order rotated); in parentheses the ratio of the"
        " medians to one read of the input (`x.max()`, one core) and the ratio of the minima.",
        "",
        H.markdown_table(["case"] + shown, rows),
    ]
    if mem:
        mrows = []
        for case in cases:
            if case.per_call_us:
                continue
            row = [case.name]
            for lib in shown:
                m = mem.get((case.name, lib))
                row.append("—" if m is None else f"{m['ratio']:.3f}× ({m['bytes'] / 2**20:.1f} MiB)")
            mrows.append(row)
        methods = sorted({m["method"] for m in mem.values()})
        lines += [
            "",
            "Peak extra memory of one call, as a multiple of the input size (method: "
            + ", ".join(methods)
            + "; resident high-water mark in a fresh process after a warm-up call; softmax includes"
            " its output, 1×).",
            "",
            H.markdown_table(["case"] + shown, mrows),
        ]
    lines += ["", NOTES]
    return "\n".join(lines), ratios


NOTES = """Notes. *ours* is the compiled C layer (`logsumexp._cpu`, `src/logsumexp/_cpu/src/`), the best
target of this CPU; *ours avx2* and *ours baseline* force those targets (the same bits, other
speeds). Each slice is read once, in blocks of 2048 (the block's max, then its exp sum from L1;
a block that raises the running max rescales the sum by a double-double exp), with 16 virtual
lanes whose order is fixed, the exp written in plain arithmetic (no libm), the maximum kept out of
the sum (Blanchard-Higham-Higham), float64 terms added with TwoSum per lane, float32 data
accumulated in float64, and large inputs split over a thread pool (rows, or items of 65536
elements of one long slice, merged in a fixed order). No reassociation and no FMA: the targets
give the same bits, and the float64 fold pays for its accuracy (~5 cycles per element on one
AVX-512 core). *ours (core)* is the generic Array API path (`logsumexp._cpu.disabled()`).
*torch.compile* is `torch.compile(torch.logsumexp)` (LSE cases only).
"""


def _target() -> str:
    from logsumexp import _cpu

    return str(_cpu.target())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test); writes nothing unless --write")
    p.add_argument("--write", action="store_true", help="write docs even with --quick")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--no-memory", action="store_true", help="skip the memory probes (subprocesses)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per cell (default 7, quick 3)")
    p.add_argument("--cases", default=None, help="comma-separated substrings selecting cases")
    p.add_argument("--libs", default=None, help="comma-separated library names (default: all)")
    p.add_argument("--out", type=Path, default=H.ROOT / "docs", help="directory of BENCHMARKS.md and the plot")
    p.add_argument("--_probe", nargs=2, metavar=("CASE", "LIB"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._probe:
        _probe_child(a._probe[0], a._probe[1], a.quick)
        return 0
    cases = CASES if a.cases is None else [c for c in CASES if any(s in c.name for s in a.cases.split(","))]
    libs = LIBS if a.libs is None else ["one read"] + [lib for lib in a.libs.split(",") if lib != "one read"]
    repeats = a.repeats or (3 if a.quick else 7)
    res = run(cases, libs, a.quick, repeats, memory=not a.no_memory)
    text, ratios = report(cases, libs, res, a.quick)
    print(text)
    if a.no_write or (a.quick and not a.write):
        return 0
    md = a.out / "BENCHMARKS.md"
    H.write_between_markers(md, "cpu", text, title="## CPU (NumPy inputs): `benchmarks/cpu.py`")
    png = a.out / "bench_cpu.png"
    plotted = [c.name for c in cases if not c.per_call_us]
    if H.bar_plot(png, plotted, [lib for lib in libs if lib != "one read" and lib not in res["skipped"]], ratios,
                  title=f"CPU: time / one read — {H.cpu_model()}" + (" (--quick sizes)" if a.quick else "")):
        print(f"wrote {md} and {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
