"""Grouped softmax / LogSumExp (issue 24): ours against the peers users would otherwise use, on a CPU.

Cases (float32 values, ids unsorted, as a graph's edges by target node):

* ``1e7 x 1 in 1e5 groups``       values [N], ids [N]
* ``1e6 edges x 8 heads``         values [E, 8], ids [E] (GAT attention logits), 1e5 target nodes

Rows (forward + backward of ``(softmax(x) * g).sum()`` or ``LSE(x) . g``):

* torch: ``logsumexp.torch.segment_softmax`` vs ``torch_geometric.utils.softmax`` (if installed);
  ``logsumexp.torch.segment_logsumexp`` vs a scatter(reduce="max")-based LSE (PyG's recipe:
  detached scatter max, exp, scatter sum, log).
* NumPy: ``logsumexp.segment_logsumexp`` (forward only; no autodiff).
* JAX (``jit``): the two-pass ``segment_max`` + ``segment_sum`` LSE, forward + ``grad`` (the peer of
  both our torch LSE and our own JAX path, which is plain jnp code under jit).
* torch_scatter's ``scatter_logsumexp`` where it imports (it has no wheel for torch 2.13 and is
  not built here).
* sorted ids: our LSE forward with CSR offsets (torch ``ptr``, NumPy ``indptr``) against one
  read of the data (``x.max()``) and a copy (``x.clone()``).

Medians of interleaved rounds; the machine and the commit are printed with the table.

    python benchmarks/segment.py [--quick] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import cpu_model, git_commit, markdown_table, time_interleaved  # noqa: E402


def cases(quick: bool) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    rng = np.random.default_rng(0)
    scale = 10 if quick else 1
    n, s = 10_000_000 // scale, 100_000 // scale
    e = 1_000_000 // scale
    return {
        f"{n:.0e} x 1, {s:.0e} groups": (rng.normal(size=n).astype(np.float32), rng.integers(0, s, n), s),
        f"{e:.0e} edges x 8 heads, {s:.0e} nodes": (rng.normal(size=(e, 8)).astype(np.float32), rng.integers(0, s, e), s),
    }


def torch_rows(x: np.ndarray, ids: np.ndarray, s: int) -> dict[str, object]:
    import torch

    from logsumexp import torch as lt

    src = torch.tensor(x, requires_grad=True)
    index = torch.tensor(ids)
    g_nodes = torch.randn((s, *x.shape[1:]))
    g_edges = torch.randn(x.shape)

    def fb(fn, g):
        def run():
            src.grad = None
            (fn() * g).sum().backward()

        return run

    def scatter_lse():
        # PyG's recipe for a grouped LSE: detached scatter max, exp, scatter sum, log
        idx = index.view((-1,) + (1,) * (src.dim() - 1)).expand(src.shape)
        m = torch.full((s, *src.shape[1:]), -torch.inf).scatter_reduce(0, idx, src.detach(), "amax", include_self=True)
        e = torch.exp(src - m.index_select(0, index))
        return m + torch.log(torch.zeros_like(m).index_add(0, index, e))

    rows = {
        "torch: ours segment_softmax": fb(lambda: lt.segment_softmax(src, index, num_nodes=s), g_edges),
        "torch: ours segment_logsumexp": fb(lambda: lt.segment_logsumexp(src, index, num_nodes=s), g_nodes),
        "torch: scatter-max LSE": fb(scatter_lse, g_nodes),
    }
    try:
        from torch_geometric.utils import softmax as pyg_softmax

        rows["torch: PyG softmax"] = fb(lambda: pyg_softmax(src, index, num_nodes=s), g_edges)
    except ImportError:
        pass
    try:
        from torch_scatter.composite import scatter_logsumexp

        rows["torch: torch_scatter scatter_logsumexp"] = fb(
            lambda: scatter_logsumexp(src, index, dim=0, dim_size=s), g_nodes
        )
    except ImportError:
        pass
    return rows


def sorted_rows(x: np.ndarray, ids: np.ndarray, s: int) -> dict[str, object]:
    """LSE forward over sorted ids (CSR offsets) against one read and one copy of the data."""
    import torch

    import logsumexp as lse
    from logsumexp import torch as lt

    order = np.argsort(ids, kind="stable")
    xs = np.ascontiguousarray(x[order])
    ptr = np.concatenate([[0], np.cumsum(np.bincount(ids, minlength=s))])
    ts, tp = torch.from_numpy(xs), torch.from_numpy(ptr)
    return {
        "sorted: torch ours segment_logsumexp(ptr) fwd": lambda: lt.segment_logsumexp(ts, ptr=tp),
        "sorted: torch ours segment_softmax(ptr) fwd": lambda: lt.segment_softmax(ts, ptr=tp),
        "sorted: numpy ours segment_logsumexp(indptr) fwd": lambda: lse.segment_logsumexp(xs, indptr=ptr),
        "sorted: one read x.max()": lambda: ts.max(),
        "sorted: copy x.clone()": lambda: ts.clone(),
    }


def jax_rows(x: np.ndarray, ids: np.ndarray, s: int) -> dict[str, object]:
    import jax
    import jax.numpy as jnp

    import logsumexp as lse

    xj, ij = jnp.asarray(x), jnp.asarray(ids)
    g = jnp.asarray(np.random.default_rng(1).normal(size=(s, *x.shape[1:])).astype(np.float32))

    def two_pass(v, i):
        m = jax.lax.stop_gradient(jax.ops.segment_max(v, i, s))
        return m + jnp.log(jax.ops.segment_sum(jnp.exp(v - m[i]), i, s))

    ours = jax.jit(jax.value_and_grad(lambda v, i: (lse.segment_logsumexp(v, i, s) * g).sum()))
    jax.block_until_ready(ref_warm := jax.jit(lambda v: v.max())(xj))  # noqa: F841  (XLA's thread pool up)
    ref = jax.jit(jax.value_and_grad(lambda v, i: (two_pass(v, i) * g).sum()))
    return {
        "jax jit: ours segment_logsumexp": lambda: jax.block_until_ready(ours(xj, ij)),
        "jax jit: segment_max + segment_sum": lambda: jax.block_until_ready(ref(xj, ij)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="sizes / 10")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import logsumexp as lse

    import os

    import torch

    load = os.getloadavg()
    print(f"# {cpu_model()}, commit {git_commit()}, median of {args.rounds} interleaved rounds (fwd+bwd)")
    print(f"# torch {torch.__version__} ({torch.get_num_threads()} threads), load average {load[0]:.1f} at start")
    jax_peer = "jax jit: segment_max + segment_sum"
    pairs = {
        "torch: ours segment_softmax": ["torch: PyG softmax"],
        "torch: ours segment_logsumexp": ["torch: scatter-max LSE", "torch: torch_scatter scatter_logsumexp", jax_peer],
        "jax jit: ours segment_logsumexp": [jax_peer],
        "sorted: torch ours segment_logsumexp(ptr) fwd": ["sorted: one read x.max()"],
        "sorted: numpy ours segment_logsumexp(indptr) fwd": ["sorted: one read x.max()"],
        "sorted: torch ours segment_softmax(ptr) fwd": ["sorted: copy x.clone()"],
    }
    for name, (x, ids, s) in cases(args.quick).items():
        fns = {"numpy: ours segment_logsumexp (fwd)": lambda x=x, ids=ids, s=s: lse.segment_logsumexp(x, ids, s)}
        fns.update(torch_rows(x, ids, s))
        fns.update(jax_rows(x, ids, s))
        fns.update(sorted_rows(x, ids, s))
        t = time_interleaved(fns, rounds=args.rounds, min_round=0.0)
        rows = []
        for k, v in t.items():
            ratio = ", ".join(
                f"{v.median / t[p].median:.2f}x {p.split(': ')[1]}" for p in pairs.get(k, []) if p in t
            )
            rows.append([k, f"{v.median * 1e3:.1f}", f"{v.best * 1e3:.1f}", ratio])
        print(f"\n## {name}\n")
        print(markdown_table(["function", "median ms", "min ms", "ratio of medians (ours / peer)"], rows))
    load = os.getloadavg()
    print(f"\n# load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end")


if __name__ == "__main__":
    main()
