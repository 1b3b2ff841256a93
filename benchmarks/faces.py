"""Every face against its framework's own op, in the same run (issue 21): ours ÷ theirs.

One function per face returns rows ``(case, ours_seconds, theirs_seconds, note)``; ``main`` prints
them in one table (median times from interleaved rounds, ``_harness.time_interleaved``) and, with
``--write``, puts it into docs/BENCHMARKS.md between the face's markers, with the CPU and commit.

Faces today: JAX under ``jax.jit`` (``logsumexp`` vs ``jax.nn``); the torch face on CPU tensors
(vs torch's own ops); the array core handed torch tensors (vs torch); small NumPy calls (vs SciPy
and NumPy's two-line formula). Run::

    python benchmarks/faces.py [--face jax|torch|core-torch|numpy-small] [--quick] [--write]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ROOT, cpu_model, git_commit, markdown_table, time_interleaved, write_between_markers  # noqa: E402

Row = tuple[str, float, float, str]  # case, ours (s), theirs (s), note


# ------------------------------------------------------------------------------------------------
# JAX
# ------------------------------------------------------------------------------------------------
def jax_face(quick: bool) -> list[Row]:
    """jit-compiled LogSumExp, softmax and the gradient of LogSumExp, float32 in JAX's default
    configuration (no x64: both accumulate in float32), plus compile time; then the float64 (x64)
    dominant-term case, whose "times" column holds the two results instead."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import logsumexp as lse

    jax.config.update("jax_enable_x64", False)
    shapes = [(64, 1000)] + ([] if quick else [(4096, 32000)])
    ops: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
        "LogSumExp": (lambda v: lse.logsumexp(v, axis=-1), lambda v: jax.nn.logsumexp(v, axis=-1)),
        "softmax": (lambda v: lse.softmax(v), lambda v: jax.nn.softmax(v)),
        "grad LogSumExp": (
            jax.grad(lambda v: lse.logsumexp(v, axis=-1).sum()),
            jax.grad(lambda v: jax.nn.logsumexp(v, axis=-1).sum()),
        ),
    }
    rows: list[Row] = []
    for shape in shapes:
        x = jnp.asarray(np.random.default_rng(0).standard_normal(shape, dtype=np.float32))
        rounds = 5 if shape[0] * shape[1] > 10**7 else 15
        for name, (ours, theirs) in ops.items():
            fo, ft = jax.jit(ours), jax.jit(theirs)
            t = time_interleaved({"ours": lambda: fo(x).block_until_ready(), "theirs": lambda: ft(x).block_until_ready()},
                                 rounds=rounds)
            rows.append((f"jit {name} {list(shape)} float32", t["ours"].median, t["theirs"].median, ""))
    x = jnp.zeros((64, 1000), jnp.float32)
    for name, (ours, theirs) in ops.items():
        rows.append((f"compile {name} [64, 1000]", _compile_time(ours, x), _compile_time(theirs, x), "lower + compile, median of 5"))
    rows.append(_jax_dominant_row())
    return rows


def _compile_time(fn: Callable[[Any], Any], x: Any, repeats: int = 5) -> float:
    """Median seconds to trace and compile ``fn`` at ``x``'s shape (a fresh jit wrapper each time)."""
    import jax

    out = []
    for _ in range(repeats):
        f = jax.jit(lambda v: fn(v))  # a new function object: nothing cached
        t0 = time.perf_counter()
        f.lower(x).compile()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def _jax_dominant_row() -> Row:
    """float64 (x64) LSE([log ½, log ½ + 1e−12]): ours, jax.nn, and the exact value (NumPy face)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import logsumexp as lse

    jax.config.update("jax_enable_x64", True)
    try:
        x = np.array([math.log(0.5), math.log(0.5) + 1e-12])
        ours = float(jax.jit(lambda v: lse.logsumexp(v))(jnp.asarray(x)))
        theirs = float(jax.jit(lambda v: jax.nn.logsumexp(v))(jnp.asarray(x)))
        exact = float(lse.logsumexp(x))
    finally:
        jax.config.update("jax_enable_x64", False)
    note = f"values, not times: NumPy face (exact) {exact:.6e}"
    return ("x64 LSE([log .5, log .5 + 1e-12])", ours, theirs, note)


# ------------------------------------------------------------------------------------------------
# torch CPU (the torch face), the array core on torch tensors, small NumPy calls
# ------------------------------------------------------------------------------------------------
def _pair_rows(cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]], rounds: int, note: str = "") -> list[Row]:
    """One row per case: ours and theirs timed in the same interleaved rounds."""
    rows: list[Row] = []
    for name, (ours, theirs) in cases.items():
        t = time_interleaved({"ours": ours, "theirs": theirs}, rounds=rounds)
        rows.append((name, t["ours"].median, t["theirs"].median, note))
    return rows


def _torch_shapes(quick: bool) -> list[tuple[int, int]]:
    return [(64, 1000)] + ([] if quick else [(4096, 32000)])


def _rounds(shape: tuple[int, ...]) -> int:
    return 3 if math.prod(shape) > 10**7 else 15


def torch_face(quick: bool) -> list[Row]:
    """``logsumexp.torch`` on CPU float32 tensors against torch's own ops (default threads on both
    sides): LogSumExp, softmax, log_softmax, cross-entropy forward (no grad) and forward + backward."""
    import torch
    import torch.nn.functional as F

    import logsumexp.torch as lt

    rows: list[Row] = []
    for shape in _torch_shapes(quick):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=g)
        t = torch.randint(0, shape[1], (shape[0],), generator=g)
        xg = x.clone().requires_grad_()

        def step(loss_fn: Callable[..., Any]) -> Callable[[], None]:
            def run() -> None:
                xg.grad = None
                loss_fn(xg, t).backward()
            return run

        label = f"{list(shape)} float32"
        cases = {
            f"LogSumExp {label}": (lambda: lt.logsumexp(x, -1), lambda: torch.logsumexp(x, -1)),
            f"softmax {label}": (lambda: lt.softmax(x, -1), lambda: torch.softmax(x, -1)),
            f"log_softmax {label}": (lambda: lt.log_softmax(x, -1), lambda: torch.log_softmax(x, -1)),
            f"cross-entropy forward {label}": (lambda: lt.cross_entropy(x, t), lambda: F.cross_entropy(x, t)),
            f"cross-entropy forward + backward {label}": (step(lt.cross_entropy), step(F.cross_entropy)),
        }
        if shape == (64, 1000):
            # the floor under the face: the compiled rows kernel alone on the tensor's memory
            from logsumexp import _cpu

            import numpy as np

            xn, tn = x.numpy(), t.numpy()
            rows_out, lse_out = np.empty(shape[0], np.float32), np.empty(shape[0], np.float32)
            cases[f"kernel alone: _cpu.lse_last {label} (vs torch.logsumexp)"] = (
                lambda: _cpu.lse_last(xn), lambda: torch.logsumexp(x, -1))
            cases[f"kernel alone: cross-entropy rows {label} (vs F.cross_entropy)"] = (
                lambda: _cpu.cross_entropy_grad_rows(xn.copy(), tn, None, -100, rows_out, lse_out),
                lambda: F.cross_entropy(x, t))
        rows += _pair_rows(cases, _rounds(shape))
        del xg
    return rows


def core_torch_face(quick: bool) -> list[Row]:
    """The array core (``logsumexp.logsumexp`` etc.) handed a CPU float32 torch tensor, against
    torch's own op."""
    import torch

    import logsumexp as lse

    rows: list[Row] = []
    for shape in _torch_shapes(quick):
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        label = f"{list(shape)} float32"
        cases = {
            f"lse.logsumexp(t, axis=-1) {label}": (lambda: lse.logsumexp(x, axis=-1), lambda: torch.logsumexp(x, -1)),
            f"lse.softmax(t) {label}": (lambda: lse.softmax(x), lambda: torch.softmax(x, -1)),
            f"lse.log_softmax(t) {label}": (lambda: lse.log_softmax(x), lambda: torch.log_softmax(x, -1)),
        }
        rows += _pair_rows(cases, _rounds(shape))
    return rows


def numpy_small_face(quick: bool) -> list[Row]:
    """Small float64 NumPy calls, where the Python in front of the kernels shows: softmax against
    SciPy's, and many short rows of LogSumExp against NumPy's two-line shifted formula."""
    import numpy as np
    from scipy import special

    import logsumexp as lse

    rng = np.random.default_rng(0)

    def two_line(v: Any) -> Any:
        m = v.max(axis=1, keepdims=True)
        return (m + np.log(np.exp(v - m).sum(axis=1, keepdims=True)))[:, 0]

    cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {}
    for n in (10, 100, 1000):
        v = rng.standard_normal(n)
        cases[f"softmax n = {n} (vs SciPy)"] = (lambda v=v: lse.softmax(v), lambda v=v: special.softmax(v))
    w = rng.standard_normal((1000, 5))
    cases["softmax [1000, 5] axis 1 (vs SciPy)"] = (lambda: lse.softmax(w, axis=1), lambda: special.softmax(w, axis=1))
    cases["logsumexp [1000, 5] axis 1 (vs NumPy two-line)"] = (lambda: lse.logsumexp(w, axis=1), lambda: two_line(w))
    return _pair_rows(cases, 15)


FACES: dict[str, Callable[[bool], list[Row]]] = {
    "jax": jax_face, "torch": torch_face, "core-torch": core_torch_face, "numpy-small": numpy_small_face,
}
TITLES = {
    "jax": ("Faces: JAX", "jax.nn"),
    "torch": ("Faces: torch CPU (`logsumexp.torch`)", "torch"),
    "core-torch": ("Faces: the array core on torch tensors", "torch"),
    "numpy-small": ("Faces: small NumPy calls", "SciPy / NumPy"),
}


# ------------------------------------------------------------------------------------------------
# The shared table
# ------------------------------------------------------------------------------------------------
def _fmt_time(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s >= 1e-3 else f"{s * 1e6:.0f} µs"


def table(rows: list[Row], theirs: str) -> str:
    body = []
    for case, ours, other, note in rows:
        if note.startswith("values"):
            body.append([case, f"{ours:.6e}", f"{other:.6e}", "", note])
        else:
            body.append([case, _fmt_time(ours), _fmt_time(other), f"{ours / other:.2f}×", note])
    return markdown_table(["case", "ours", theirs, "ours ÷ theirs", "note"], body)


def _set_threads(n: int) -> None:
    """The same thread count for both sides of the torch rows (torch's intra-op pool, our kernels)."""
    import logsumexp as lse

    lse.set_num_threads(n)
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(n)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--face", choices=sorted(FACES), action="append", help="faces to run (default: all)")
    ap.add_argument("--quick", action="store_true", help="small shapes only")
    ap.add_argument("--write", action="store_true", help="write the tables into docs/BENCHMARKS.md")
    ap.add_argument("--threads", type=int, help="torch's and logsumexp's CPU threads (default: their own)")
    args = ap.parse_args(argv)
    if args.threads:
        _set_threads(args.threads)
    machine, commit = cpu_model(), git_commit()
    for face in args.face or list(FACES):
        title, theirs = TITLES[face]
        threads = f", {args.threads} thread(s) on both sides" if args.threads else ""
        marker = f"faces-{face}" + (f"-t{args.threads}" if args.threads else "")
        text = (f"### {title}{threads}\n\n{machine}; commit `{commit}`; medians of interleaved rounds.\n\n"
                + table(FACES[face](args.quick), theirs))
        print(text, "\n", flush=True)
        if args.write:
            write_between_markers(ROOT / "docs" / "BENCHMARKS.md", marker, text,
                                  title="## Faces: each against its framework's own op (`benchmarks/faces.py`)")


if __name__ == "__main__":
    main()
