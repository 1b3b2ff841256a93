"""CPU benchmark of the torch face against PyTorch's own losses (float32, forward + backward).

Jobs and peers:
  ce   cross_entropy(logits, t)          vs F.cross_entropy(logits, t)                       on [N, V]
  lce  linear_cross_entropy(h, W, t)     vs torch 2.13's chunked F.linear_cross_entropy(h, W, t,
                                            options=torch.nn.LinearCrossEntropyOptions())
                                         and F.cross_entropy(h @ W.T, t) (the full logits)     N, D, V

Time: for each job, one subprocess builds the inputs once and runs the implementations in
interleaved rounds (A, B, C, A, B, C, ...), so that a machine that slows down or speeds up during
the run affects every peer alike; reported are the median and the minimum over the rounds, after
one warm-up step each, and the ratio of medians to the reference peer (torch's chunked loss for
lce, F.cross_entropy for ce). The process's CPU seconds per step (all threads) are reported too:
on a shared machine they move less with the other load than the wall-clock time does.

Memory: every implementation runs once more in a fresh subprocess of its own:
``_harness.memory_probe`` gives the peak extra resident memory of one step (peak RSS during the
step minus RSS before it: temporaries and the returned gradients, not the inputs), and the
process's peak RSS (VmHWM) is reported as well (interpreter, torch, inputs and the step).

    python benchmarks/torch_cpu.py            # issue sizes (a few minutes on 2 cores)
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
PEERS = {"ce": ["ours", "torch"], "lce": ["ours", "torch_chunked", "torch"]}
REFERENCE = {"ce": "torch", "lce": "torch_chunked"}
NAMES = {
    ("ce", "ours"): "logsumexp.torch.cross_entropy",
    ("ce", "torch"): "F.cross_entropy",
    ("lce", "ours"): "logsumexp.torch.linear_cross_entropy",
    ("lce", "torch_chunked"): "F.linear_cross_entropy (chunked options)",
    ("lce", "torch"): "F.cross_entropy(h @ W.T, t)",
}
TARGETS = {
    ("ce", "ours"): "time ≤ 1.0×, extra ≤ gradient + 1%",
    ("lce", "ours"): "time ≤ 0.9×, memory ≤ torch's chunked",
}


# --------------------------------------------------------------------------- children


def _available(job: str, impl: str) -> bool:
    import torch.nn.functional as F

    return not (job == "lce" and impl == "torch_chunked" and not hasattr(F, "linear_cross_entropy"))


def _make_step(job: str, impl: str, sizes: dict):
    """Inputs and one forward + backward step; returns (step, leaves whose .grad it sets)."""
    import torch
    import torch.nn.functional as F

    import logsumexp.torch as L

    g = torch.Generator().manual_seed(0)
    n, v = sizes["n"], sizes["v"]
    t = torch.randint(0, v, (n,), generator=g)
    if job == "ce":
        x = torch.randn(n, v, generator=g).requires_grad_()
        fn = L.cross_entropy if impl == "ours" else F.cross_entropy
        return (lambda: fn(x, t).backward()), [x]
    h = torch.randn(n, sizes["d"], generator=g).requires_grad_()
    w = (torch.randn(v, sizes["d"], generator=g) * 0.05).requires_grad_()
    if impl == "ours":
        loss = lambda: L.linear_cross_entropy(h, w, t)  # noqa: E731
    elif impl == "torch_chunked":
        opts = torch.nn.LinearCrossEntropyOptions()
        loss = lambda: F.linear_cross_entropy(h, w, t, options=opts)  # noqa: E731
    else:
        loss = lambda: F.cross_entropy(h @ w.T, t)  # noqa: E731
    return (lambda: loss().backward()), [h, w]


def _clear(leaves) -> None:
    # Outside the timed step: freeing the old gradient inside it would hide the new one.
    for leaf in leaves:
        leaf.grad = None


def time_job(job: str, impls: list[str], sizes: dict, rounds: int) -> dict:
    """Interleaved rounds of every implementation of one job in this process."""
    import torch

    steps = {impl: _make_step(job, impl, sizes) for impl in impls}
    for step, leaves in steps.values():  # warm-up: lazy imports, first-call set-up
        step()
        _clear(leaves)
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    cpu: dict[str, list[float]] = {impl: [] for impl in impls}
    for _ in range(rounds):
        for impl, (step, leaves) in steps.items():
            c0, t0 = time.process_time(), time.perf_counter()
            step()
            times[impl].append(time.perf_counter() - t0)
            cpu[impl].append(time.process_time() - c0)
            _clear(leaves)
    return dict(threads=torch.get_num_threads(), times=times, cpu=cpu)


def memory_case(job: str, impl: str, sizes: dict) -> dict:
    step, leaves = _make_step(job, impl, sizes)
    step()
    _clear(leaves)
    probe = memory_probe(step)
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    extra = probe["bytes"] / 2**20 if probe["method"] == "rss-hwm" else None
    return dict(extra_mib=extra, peak_rss_mib=hwm / 1024)


# --------------------------------------------------------------------------- driver


def _child(kind: str, payload: list) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps([kind, *payload])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=1200)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(results: dict, sizes: dict, header: str) -> str:
    lines = [header, "",
             "| job | implementation | median ms | min ms | time ratio | median CPU s (ratio) | "
             "peak extra MiB | peak RSS MiB | target |",
             "|---|---|---|---|---|---|---|---|---|"]
    jobs = {"ce": "cross_entropy [{n}, {v}]", "lce": "linear + cross-entropy N={n} D={d} V={v}"}
    for job, per_impl in results.items():
        ref = statistics.median(per_impl[REFERENCE[job]]["times"])
        ref_cpu = statistics.median(per_impl[REFERENCE[job]]["cpu"])
        for impl, r in per_impl.items():
            med, low = statistics.median(r["times"]), min(r["times"])
            cpu = statistics.median(r["cpu"])
            extra = "n/a" if r["extra_mib"] is None else f"{r['extra_mib']:.0f}"
            lines.append(
                f"| {jobs[job].format(**sizes[job])} | {NAMES[job, impl]} | {1e3 * med:.0f} | "
                f"{1e3 * low:.0f} | {med / ref:.2f}× | {cpu:.2f} ({cpu / ref_cpu:.2f}×) | {extra} | "
                f"{r['peak_rss_mib']:.0f} | "
                f"{TARGETS.get((job, impl), '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5, quick 3)")
    p.add_argument("--write", action="store_true", help=f"write the table into {DOC.relative_to(ROOT)}")
    p.add_argument("--jobs", nargs="+", choices=list(PEERS), default=list(PEERS), help="jobs to run")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, *payload = json.loads(args.child)
        print(json.dumps(time_job(*payload) if kind == "time" else memory_case(*payload)))
        return
    if args.write and (args.quick or set(args.jobs) != set(PEERS)):
        p.error("--write records every job at the issue sizes; drop --quick and --jobs")
    sizes = QUICK if args.quick else FULL
    rounds = args.rounds or (3 if args.quick else 5)
    results: dict[str, dict[str, dict]] = {}
    threads = None
    for job in args.jobs:
        impls = [i for i in PEERS[job] if _available(job, i)]
        timed = _child("time", [job, impls, sizes[job], rounds])
        threads = timed["threads"]
        results[job] = {}
        for impl in impls:
            mem = _child("memory", [job, impl, sizes[job]])
            results[job][impl] = dict(times=timed["times"][impl], cpu=timed["cpu"][impl], **mem)
            print(f"  {job:4s} {impl:14s} {1e3 * statistics.median(timed['times'][impl]):9.1f} ms  "
                  f"extra {mem['extra_mib']} MiB  peak RSS {mem['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    import torch

    header = (
        f"### torch face on CPU (float32, forward + backward)\n\n"
        f"{cpu_model()}, {threads} torch threads, torch {torch.__version__}, commit {git_commit()}; "
        f"{rounds} interleaved rounds per job (median and minimum of the step time; ratio of medians "
        f"to torch's chunked loss for linear + cross-entropy, to F.cross_entropy otherwise). Memory in "
        f"a fresh process per implementation: peak extra = peak RSS during one step minus RSS before "
        f"it (temporaries and the returned gradients, not the inputs); peak RSS = the whole process. "
        f"CPU s: process CPU time per step, all threads."
    )
    table = _table(results, sizes, header)
    print(table)
    if args.write:
        write_between_markers(DOC, "torch_cpu", table)


if __name__ == "__main__":
    main()
