"""Vocab-parallel cross-entropy on gloo (2 processes on this machine): time, memory, exactness.

Peers in the same run, forward + backward of the mean loss of [N, V] logits split in two slices:
  ours       logsumexp.torch.vocab_parallel_cross_entropy (1 all_gather forward, 0 backward)
  megatron   the Megatron-LM scheme written out here: a float32 copy of the slice, all_reduce of
             the row max, of the target logit and of the sum of exponentials (3 collectives),
             the softmax kept for backward
and, on rank 0, single-process F.cross_entropy on the whole [N, V] logits (no communication).

Time: median over rounds (benchmarks/_harness.time_call), rank 0's figure (the ranks run in
lockstep). Memory: peak resident growth of one step on rank 0 (harness memory_probe) while the
previous step's gradient is released and the new one allocated: the extra memory beyond the
gradient (Megatron's float32 softmax, F.cross_entropy's log-softmax output). Exactness: float64
loss and gradient against F.cross_entropy on the concatenation.

    python benchmarks/vocab_parallel.py            # N=4096, V=32000, float32
    python benchmarks/vocab_parallel.py --quick    # tiny sizes, smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _harness as H  # noqa: E402


def _megatron_style():
    import torch
    import torch.distributed as dist

    class MegatronStyle(torch.autograd.Function):
        @staticmethod
        def forward(ctx, shard, target, start):
            x = shard.float()  # the float32 copy of the whole slice
            m = x.max(dim=-1).values
            dist.all_reduce(m, op=dist.ReduceOp.MAX)
            x = x - m.unsqueeze(-1)
            outside = (target < start) | (target >= start + x.shape[-1])
            idx = torch.where(outside, 0, target - start)
            pred = torch.where(outside, 0.0, x.gather(-1, idx.unsqueeze(-1)).squeeze(-1))
            dist.all_reduce(pred)
            x.exp_()
            s = x.sum(dim=-1)
            dist.all_reduce(s)
            x.div_(s.unsqueeze(-1))  # softmax, kept for backward
            ctx.save_for_backward(x, idx, outside)
            return (torch.log(s) - pred).mean()

        @staticmethod
        def backward(ctx, g):
            p, idx, outside = ctx.saved_tensors
            grad = p * (g / p.shape[0])
            hot = torch.where(outside, 0.0, -g / p.shape[0]).unsqueeze(-1)
            grad.scatter_add_(-1, idx.unsqueeze(-1), hot.to(grad.dtype))
            return grad, None, None

    return MegatronStyle.apply


def worker(rank: int, store: str, n: int, v: int, repeats: int) -> None:
    import datetime

    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from logsumexp.torch.distributed import vocab_parallel_cross_entropy

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=2,
        timeout=datetime.timedelta(seconds=120),
    )
    g = torch.Generator().manual_seed(0)
    full = torch.randn(n, v, generator=g) * 4
    target = torch.randint(0, v, (n,), generator=g)
    w = v // 2
    start = rank * w
    shard = full[:, start : start + w].clone().requires_grad_()
    megatron = _megatron_style()

    def ours():
        shard.grad = None
        vocab_parallel_cross_entropy(shard, target).backward()
        return shard.grad

    def peer():
        shard.grad = None
        megatron(shard, target, start).backward()
        return shard.grad

    out = {}
    for name, fn in (("ours", ours), ("megatron", peer)):
        t = H.time_call(fn, repeats=repeats, min_round=0.0)
        dist.barrier()
        mem = H.memory_probe(fn)
        dist.barrier()
        out[name] = {"s": t.median, "mem": mem["bytes"], "method": mem["method"]}
    if rank == 0:
        xf = full.clone().requires_grad_()

        def single():
            xf.grad = None
            F.cross_entropy(xf, target).backward()
            return xf.grad

        t = H.time_call(single, repeats=repeats, min_round=0.0)
        out["single process F.cross_entropy"] = {
            "s": t.median,
            "mem": H.memory_probe(single)["bytes"],
        }
    # Exactness in float64 against the single-process loss and gradient.
    x64 = full.double()
    s64 = x64[:, start : start + w].clone().requires_grad_()
    loss = vocab_parallel_cross_entropy(s64, target)
    loss.backward()
    ref_x = x64.clone().requires_grad_()
    ref = F.cross_entropy(ref_x, target)
    ref.backward()
    err = max(
        abs(loss.item() - ref.item()),
        (s64.grad - ref_x.grad[:, start : start + w]).abs().max().item(),
    )
    out["err64"] = err
    if rank == 0:
        print("RESULT " + json.dumps(out), flush=True)
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--v", type=int, default=32000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    n, v = (256, 1000) if a.quick else (a.n, a.v)
    with tempfile.TemporaryDirectory(prefix="vpce-bench-") as tmp:
        env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
        argv = [sys.executable, __file__, "--worker"]
        procs = [
            subprocess.Popen(
                [*argv, str(r), f"{tmp}/store", str(n), str(v), str(a.repeats)],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            for r in range(2)
        ]
        logs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        sys.exit("a worker failed")
    res = json.loads(next(line for line in logs[0].splitlines() if line.startswith("RESULT "))[7:])
    err = res.pop("err64")
    base = res["single process F.cross_entropy"]["s"]
    rows = [
        [name, f"{r['s'] * 1e3:.1f}", f"{r['s'] / base:.2f}", f"{r['mem'] / 2**20:.0f}"]
        for name, r in res.items()
    ]
    print(
        f"vocab-parallel CE, forward+backward, N={n}, V={v} float32, 2 gloo processes "
        f"(V/2 each, 1 thread each); {H.cpu_model()}; commit {H.git_commit()}"
    )
    print(
        H.markdown_table(
            ["", "ms / step (rank 0)", "× single process", "peak MiB beyond the gradient (rank 0)"],
            rows,
        )
    )
    print(
        f"float64 max abs error of ours against single-process F.cross_entropy "
        f"(loss and gradient): {err:.1e}"
    )


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        main()
