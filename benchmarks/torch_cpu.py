"""CPU benchmark of the torch face against eager PyTorch (issue targets, forward + backward).

Jobs (float32):
  ce   cross_entropy(logits, t)                    vs F.cross_entropy(logits, t)      on [N, V]
  lce  linear_cross_entropy(h, W, t)               vs F.cross_entropy(h @ W.T, t)     N, D, V

Every case runs in its own subprocess so that memory figures do not mix. Time: median over
``--repeats`` forward+backward steps after one warm-up step. Memory: ``_harness.memory_probe`` —
the peak resident set size of one step (VmHWM, reset through /proc/self/clear_refs) minus the
resident size just before it. It counts everything the step allocates and touches, temporaries
and the returned gradients, but not the inputs; torch's CPU allocator returns large blocks to the
OS, so it is what the step really needs. Where the reset is unavailable the harness falls back to
tracemalloc, which cannot see torch's allocations: the table then says "n/a".

    python benchmarks/torch_cpu.py            # issue sizes (slow: minutes on 2 cores)
    python benchmarks/torch_cpu.py --quick    # tiny sizes, smoke test
    python benchmarks/torch_cpu.py --write    # also write the table into docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared harness, run as a script
from _harness import cpu_model, git_commit, memory_probe, write_between_markers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "BENCHMARKS.md"
FULL = dict(ce=dict(n=8192, v=32000), lce=dict(n=8192, d=512, v=32000))
QUICK = dict(ce=dict(n=256, v=1000), lce=dict(n=256, d=64, v=1000))
CASES = [("ce", "ours"), ("ce", "torch"), ("lce", "ours"), ("lce", "torch")]


# --------------------------------------------------------------------------- one case (child)


def _make_step(job: str, impl: str, sizes: dict):
    import torch
    import torch.nn.functional as F

    import logsumexp.torch as L

    g = torch.Generator().manual_seed(0)
    n, v = sizes["n"], sizes["v"]
    t = torch.randint(0, v, (n,), generator=g)
    if job == "ce":
        x = torch.randn(n, v, generator=g).requires_grad_()
        fn = L.cross_entropy if impl == "ours" else F.cross_entropy

        def step():
            fn(x, t).backward()

        return step, [x]
    h = torch.randn(n, sizes["d"], generator=g).requires_grad_()
    w = (torch.randn(v, sizes["d"], generator=g) * 0.05).requires_grad_()

    def step():
        loss = L.linear_cross_entropy(h, w, t) if impl == "ours" else F.cross_entropy(h @ w.T, t)
        loss.backward()

    return step, [h, w]


def run_case(job: str, impl: str, sizes: dict, repeats: int) -> dict:
    import torch

    step, leaves = _make_step(job, impl, sizes)

    def zero_grad():
        # Outside the timed step: freeing the old gradient inside it would hide the new one.
        for leaf in leaves:
            leaf.grad = None

    step()  # warm-up: lazy imports and first-call set-up are not the step's memory
    zero_grad()
    probe = memory_probe(step)
    extra_mib = probe["bytes"] / 2**20 if probe["method"] == "rss-hwm" else None
    times = []
    for _ in range(repeats):
        zero_grad()
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return dict(job=job, impl=impl, ms=1e3 * statistics.median(times), extra_mib=extra_mib,
                threads=torch.get_num_threads())


# --------------------------------------------------------------------------- driver (parent)


def _child(job: str, impl: str, sizes: dict, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--case", json.dumps([job, impl, sizes, repeats])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(results: list[dict], sizes: dict, header: str) -> str:
    mib = lambda n, v: n * v * 4 / 2**20  # noqa: E731 - MiB of one float32 [n, v] matrix
    lines = [header, "",
             "| job | implementation | median ms | ratio to torch | peak extra MiB | target |",
             "|---|---|---|---|---|---|"]
    targets = {"ce": f"time ≤ 1.0×, memory ≤ gradient + 1% ({1.01 * mib(sizes['ce']['n'], sizes['ce']['v']):.0f} MiB)",
               "lce": "time ≤ 1.2×, memory ≤ 400 MiB"}
    names = {"ce": "cross_entropy [{n}, {v}]", "lce": "linear_cross_entropy N={n} D={d} V={v}"}
    for job in ("ce", "lce"):
        ref = next(r for r in results if r["job"] == job and r["impl"] == "torch")
        for r in (x for x in results if x["job"] == job):
            impl = "logsumexp.torch" if r["impl"] == "ours" else (
                "F.cross_entropy" if job == "ce" else "F.cross_entropy(h @ W.T, t)")
            ratio = f"{r['ms'] / ref['ms']:.2f}×"
            mem = "n/a" if r["extra_mib"] is None else f"{r['extra_mib']:.0f}"
            lines.append(f"| {names[job].format(**sizes[job])} | {impl} | {r['ms']:.1f} | {ratio} | "
                         f"{mem} | {targets[job] if r['impl'] == 'ours' else ''} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--repeats", type=int, default=None, help="timed steps per case (default 5, quick 3)")
    p.add_argument("--write", action="store_true", help=f"write the table into {DOC.relative_to(ROOT)}")
    p.add_argument("--case", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:
        job, impl, sizes, repeats = json.loads(args.case)
        print(json.dumps(run_case(job, impl, sizes, repeats)))
        return
    if args.quick and args.write:
        p.error("--write records the issue sizes only; drop --quick")
    sizes = QUICK if args.quick else FULL
    repeats = args.repeats or (3 if args.quick else 5)
    results = []
    for job, impl in CASES:
        results.append(_child(job, impl, sizes[job], repeats))
        print(f"  {job:4s} {impl:6s} {results[-1]['ms']:9.1f} ms  {results[-1]['extra_mib']} MiB",
              file=sys.stderr)
    import torch

    header = (f"### torch face on CPU (float32, forward + backward)\n\n"
              f"{cpu_model()}, {results[0]['threads']} torch threads, torch {torch.__version__}, "
              f"commit {git_commit()}, median of {repeats} steps. Peak extra memory: peak RSS during "
              f"the second step minus RSS before it (temporaries and returned gradients, not inputs).")
    table = _table(results, sizes, header)
    print(table)
    if args.write:
        write_between_markers(DOC, "torch_cpu", table)


if __name__ == "__main__":
    main()
