"""Accuracy of the grouped LogSumExp and softmax (issue 24) against mpmath, per group, float64.

Families of groups (ids in random order; every group's reference is mpmath at 50 digits, the maximum's term
kept out of the sum so that the reference keeps its own relative accuracy):

* ``normal``     x ~ 10·N(0, 1), group sizes 1 .. 200
* ``dominant``   one entry at 0, the rest at −40 .. −30 (LSE ≈ k·e^−35: the maximum dominates)
* ``near zero``  x = log(Dirichlet(1)) + 1e-9 per group (LSE ≈ 1e-9: it cancels against the maximum; the
                 axis report's family)
* ``wide``       x ~ U(−700, 700)

Rows: ours through NumPy with ids and with CSR offsets (``indptr``), the torch face on CPU tensors (the
compiled kernels) with ``index`` and with ``ptr``, JAX under ``jit`` (plain jnp operations), and the peers on the
same inputs: a scatter(reduce="max")-based LSE in torch (PyG's recipe: ``m + log(scatter_sum(exp(x − m)))``) and
PyTorch Geometric's ``utils.softmax`` (the softmax entries).

    python benchmarks/segment_accuracy.py [--write]     (--write: the section of docs/ACCURACY.md)
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import mpmath
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ROOT, cpu_model, git_commit, markdown_table, write_between_markers  # noqa: E402

MP = mpmath.mp
MP.dps = 50


def family(name: str, rng: np.random.Generator, groups: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """(x, ids) with ``groups`` groups of the family, ids shuffled."""
    xs, ids = [], []
    for g in range(groups):
        n = int(rng.integers(1, 201))
        if name == "normal":
            v = rng.normal(size=n) * 10
        elif name == "dominant":
            v = rng.uniform(-40.0, -30.0, n)
            v[0] = 0.0
        elif name == "near zero":
            v = np.log(rng.dirichlet(np.ones(n))) + 1e-9
        else:
            v = rng.uniform(-700.0, 700.0, n)
        xs.append(v)
        ids.append(np.full(n, g))
    x, i = np.concatenate(xs), np.concatenate(ids)
    order = rng.permutation(x.size)
    return x[order], i[order]


def mp_lse(v: np.ndarray) -> mpmath.mpf:
    k = int(np.argmax(v))
    m = MP.mpf(float(v[k]))
    rest = MP.fsum(MP.exp(MP.mpf(float(t)) - m) for j, t in enumerate(v) if j != k)
    return m + MP.log1p(rest)


def ulps(got: float, exact: mpmath.mpf) -> float:
    if math.isnan(got):
        return math.inf
    if exact == 0:
        return 0.0 if got == 0 else math.inf
    return float(abs(MP.mpf(got) - exact) / MP.mpf(float(np.spacing(abs(float(exact))))))


def lse_rows() -> dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]]:
    import torch

    import logsumexp as lse
    from logsumexp import torch as lt

    def ptr_of(ids: np.ndarray, s: int) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(np.bincount(ids, minlength=s))])

    def sorted_call(fn: Callable) -> Callable:
        def run(x: np.ndarray, ids: np.ndarray, s: int) -> np.ndarray:
            order = np.argsort(ids, kind="stable")
            return fn(x[order], ptr_of(ids, s))

        return run

    def scatter_max_lse(x: np.ndarray, ids: np.ndarray, s: int) -> np.ndarray:
        src, index = torch.tensor(x), torch.tensor(ids)
        m = torch.full((s,), -math.inf, dtype=src.dtype).scatter_reduce(0, index, src, "amax", include_self=True)
        e = torch.exp(src - m.index_select(0, index))
        return (m + torch.log(torch.zeros_like(m).index_add(0, index, e))).numpy()

    rows = {
        "ours NumPy (ids)": lambda x, ids, s: lse.segment_logsumexp(x, ids, s),
        "ours NumPy (indptr)": sorted_call(lambda xs, p: lse.segment_logsumexp(xs, indptr=p)),
        "ours torch CPU (index)": lambda x, ids, s: lt.segment_logsumexp(torch.tensor(x), torch.tensor(ids), num_nodes=s).numpy(),
        "ours torch CPU (ptr)": sorted_call(lambda xs, p: lt.segment_logsumexp(torch.tensor(xs), ptr=torch.tensor(p)).numpy()),
    }
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        rows["ours JAX jit (jnp)"] = lambda x, ids, s: np.asarray(
            jax.jit(lambda v, i: lse.segment_logsumexp(v, i, s))(jnp.asarray(x), jnp.asarray(ids))
        )
    except ImportError:
        pass
    rows["peer: scatter(max)-based LSE (torch)"] = scatter_max_lse
    return rows


def softmax_rows() -> dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]]:
    import torch

    import logsumexp as lse
    from logsumexp import torch as lt

    rows = {
        "ours NumPy (ids)": lambda x, ids, s: lse.segment_softmax(x, ids, s),
        "ours torch CPU (index)": lambda x, ids, s: lt.segment_softmax(torch.tensor(x), torch.tensor(ids), num_nodes=s).numpy(),
    }
    try:
        from torch_geometric.utils import softmax as pyg_softmax

        rows["peer: PyG utils.softmax"] = lambda x, ids, s: pyg_softmax(torch.tensor(x), torch.tensor(ids), num_nodes=s).numpy()
    except ImportError:
        pass
    return rows


def measure(seed: int = 0) -> tuple[str, str]:
    rng = np.random.default_rng(seed)
    fams = {name: family(name, rng) for name in ("normal", "dominant", "near zero", "wide")}
    exact_lse = {name: [mp_lse(x[ids == g]) for g in range(int(ids.max()) + 1)] for name, (x, ids) in fams.items()}
    lse_table, sm_table = [], []
    for label, fn in lse_rows().items():
        cells = []
        for name, (x, ids) in fams.items():
            s = int(ids.max()) + 1
            got = fn(x, ids, s)
            errs = [ulps(float(got[g]), exact_lse[name][g]) for g in range(s)]
            cells.append(f"{max(errs):.2f} / {np.median(errs):.2f}")
        lse_table.append([label, *cells])
    for label, fn in softmax_rows().items():
        cells = []
        for name, (x, ids) in fams.items():
            s = int(ids.max()) + 1
            got = fn(x, ids, s)
            worst = []
            for g in range(s):
                sel = np.flatnonzero(ids == g)
                ref = exact_lse[name][g]
                worst.append(max(ulps(float(got[i]), MP.exp(MP.mpf(float(x[i])) - ref)) for i in sel))
            cells.append(f"{max(worst):.2f} / {np.median(worst):.2f}")
        sm_table.append([label, *cells])
    head = ["float64, 60 groups per family", *fams]
    return markdown_table(head, lse_table), markdown_table(head, sm_table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write the section of docs/ACCURACY.md")
    args = ap.parse_args()
    lse_md, sm_md = measure()
    body = (
        f"`python benchmarks/segment_accuracy.py --write` (issue 24), {cpu_model()}, commit {git_commit()}. "
        "Error of each group's result against mpmath (50 digits), in ulps of the exact value, "
        "max / median over the groups; ids in random order. Softmax: the worst entry of each group.\n\n"
        f"LogSumExp per group:\n\n{lse_md}\n\nsoftmax, worst entry per group:\n\n{sm_md}\n"
    )
    print(body)
    if args.write:
        write_between_markers(
            ROOT / "docs" / "ACCURACY.md", "segment-accuracy", body, title="## Grouped reductions (segments)"
        )


if __name__ == "__main__":
    main()
