"""RL fine-tuning and distillation on the LM head, CPU: time (forward + backward) and peak extra memory.

Cases (peers in the same run, interleaved rounds):

* log-probs + entropy: ``logsumexp.torch.linear_log_probs(..., return_entropy=True)`` against TRL's path
  (``logits = h @ W.T``; ``trl.trainer.utils.selective_log_softmax``; ``entropy_from_logits``), both
  back-propagated with a per-token weight (the advantage) on the log-probs and 0.01 on the entropy;
* distillation: ``logsumexp.torch.linear_kl_div`` (forward KL) against eager ``F.kl_div`` on materialised
  student and teacher logits in float32 (frozen teacher), and the four products of eager's step timed
  alone (the floor that any implementation with the same products pays).

Peak extra memory is measured in a fresh process per case (``_harness.peak_extra_memory``). Usage::

    python benchmarks/rl.py [--n 4096] [--d 1024] [--v 128256] [--rounds 3] [--write]

``--write`` puts the tables into docs/BENCHMARKS.md between the ``rl`` markers.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _harness import ROOT, cpu_model, emit_probe, git_commit, markdown_table, peak_extra_memory, time_interleaved  # noqa: E402

import logsumexp.torch as L  # noqa: E402


def _trl():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.trainer import utils
    return utils


def make(n: int, d: int, v: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = (torch.randn(n, d, generator=g) * 0.5).to(dtype).requires_grad_()
    w = (torch.randn(v, d, generator=g) * d**-0.5).to(dtype).requires_grad_()
    ht = (torch.randn(n, d, generator=g) * 0.5).to(dtype)
    wt = (torch.randn(v, d, generator=g) * d**-0.5).to(dtype)
    y = torch.randint(0, v, (n,), generator=g)
    adv = torch.randn(n, generator=g)
    return h, w, ht, wt, y, adv


def cases(h, w, ht, wt, y, adv):
    """name → a function running forward + backward once (gradients of the student's h and W)."""

    def clear():
        h.grad = w.grad = None

    def ours_lp():
        clear()
        lp, ent = L.linear_log_probs(h, w, y, return_entropy=True)
        ((lp * adv).sum() + 0.01 * ent.sum()).backward()

    def trl_lp():
        clear()
        utils = _trl()
        logits = h @ w.T
        lp = utils.selective_log_softmax(logits, y)
        ent = utils.entropy_from_logits(logits)
        ((lp.float() * adv).sum() + 0.01 * ent.float().sum()).backward()

    def ours_kl():
        clear()
        L.linear_kl_div(h, w, ht, wt, kind="forward").backward()

    def eager_kl():
        clear()
        s = (h @ w.T).float()
        with torch.no_grad():
            t = (ht @ wt.T).float()
        F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="batchmean", log_target=True).backward()

    def gemm_floor():
        """The four products eager F.kl_div's step runs (student and teacher heads, then the student's
        two gradient products), in the input dtype, without anything between them: a floor for both."""
        with torch.no_grad():
            s = h @ w.T
            ht @ wt.T
            s @ w
            s.T @ h

    return {"linear_log_probs+entropy": ours_lp, "TRL selective_log_softmax+entropy": trl_lp,
            "linear_kl_div": ours_kl, "eager F.kl_div": eager_kl, "eager's 4 GEMMs alone (floor)": gemm_floor}


def child(args) -> None:
    dtype = getattr(torch, args.dtype)
    torch.set_num_threads(args.threads)
    fns = cases(*make(args.n, args.d, args.v, dtype))
    emit_probe(fns[args.case])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--v", type=int, default=128256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--child", default=None)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    if args.child:
        args.case = args.child
        child(args)
        return
    torch.set_num_threads(args.threads)
    rows = []
    for dt in args.dtypes.split(","):
        fns = cases(*make(args.n, args.d, args.v, getattr(torch, dt)))
        times = time_interleaved(fns, rounds=args.rounds, min_round=0.0)
        mem = {}
        for name in fns:
            res = peak_extra_memory([__file__, "--child", name, "--dtype", dt, "--n", str(args.n), "--d",
                                     str(args.d), "--v", str(args.v), "--threads", str(args.threads)])
            mem[name] = None if res is None else res["bytes"]
        pairs = (("linear_log_probs+entropy", "TRL selective_log_softmax+entropy"),
                 ("linear_kl_div", "eager's 4 GEMMs alone (floor)", "eager F.kl_div"))
        for *mine, peer in pairs:
            for name in (*mine, peer):
                ratio = times[name].median / times[peer].median
                mib = "n/a" if mem[name] is None else f"{mem[name] / 2**20:.0f}"
                rows.append([dt, name, f"{times[name].median * 1e3:.0f}", f"{ratio:.2f}", mib])
                print(rows[-1], flush=True)
    logits_mib = args.n * args.v * 4 / 2**20
    header = ["dtype", "implementation", "median ms (fwd+bwd)", "× peer", "peak extra MiB"]
    body = (f"N = {args.n} tokens, D = {args.d}, V = {args.v} ({logits_mib:.0f} MiB of float32 logits); "
            f"{cpu_model()}, {args.threads} threads, torch {torch.__version__}, commit {git_commit()}; "
            f"medians of {args.rounds} interleaved rounds; peak extra memory in a fresh process.\n\n"
            + markdown_table(header, rows))
    print(body)
    if args.write:
        from _harness import write_between_markers

        write_between_markers(ROOT / "docs" / "BENCHMARKS.md", "rl", body,
                              title="RL fine-tuning and distillation on the LM head (CPU)")


if __name__ == "__main__":
    main()
