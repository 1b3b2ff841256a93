"""GPU benchmark of logsumexp.triton against torch eager, Liger-Kernel and Cut Cross-Entropy, in one run.

Jobs (issue 5), bf16 unless said, forward+backward unless said:

1. row LSE [8192, 128256] (forward)            limit: one read at the measured copy rate
2. softmax [8192, 128256] (forward)            limit: one read + one write
3. cross-entropy on logits [8192, 128256]      limit: one read + one write (gradient in place)
4. linear + cross-entropy, N = 2048, 8192, 32768, D = 4096, V = 128256
                                               limit: 6·N·D·V FLOPs at the measured bf16 matmul rate

Ceilings measured in the same run: device-to-device copy (bytes read + written per second) and an
8192³ bf16 matrix product on random data.  Times are medians of ``triton.testing.do_bench`` (CUDA events,
L2 flushed between repeats).  Peak extra memory is ``torch.cuda.max_memory_allocated`` during one call minus
the memory allocated just before it (inputs included in the baseline; returned gradients count as extra,
except where they live in the input's memory).  Loss relative error is against float64 on the same inputs.

    python benchmarks/gpu.py                 # on a CUDA machine: prints the table, writes docs/BENCHMARKS.md
    python benchmarks/gpu.py --out DIR       # also JSON and the markdown table under DIR
    TRITON_INTERPRET=1 python benchmarks/gpu.py --dry-run   # tiny sizes on the CPU: smoke test, writes nothing

A peer that is not installed is skipped with a printed reason.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import logsumexp.triton as lt  # noqa: E402

GiB = 2**30
ROWS: list[dict[str, Any]] = []


# ------------------------------------------------------------------------------------------ measurement
def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_ms(fn: Callable[[], Any], dry: bool, rep_ms: int = 200, grad_to_none: list | None = None) -> float:
    """Median milliseconds of fn(): triton.testing.do_bench on CUDA, one wall-clock call in a dry run."""
    if dry:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=max(25, rep_ms // 4), rep=rep_ms, grad_to_none=grad_to_none, return_mode="median"))


def peak_extra_gib(fn: Callable[[], Any], dry: bool) -> float | None:
    """Peak memory allocated during one call of fn beyond what was allocated before it (GiB)."""
    if dry:
        fn()
        return None
    sync()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn()
    sync()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return peak / GiB


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def record(job: str, impl: str, ms: float | None, rate: str = "", extra: float | None = None,
           err: str = "", note: str = "") -> None:
    row = dict(job=job, impl=impl, ms=ms, rate=rate, extra_gib=extra, err=err, note=note)
    ROWS.append(row)
    print(f"  {impl:34s} {'' if ms is None else f'{ms:9.3f} ms'}  {rate:16s} "
          f"{'' if extra is None else f'{extra:6.2f} GiB'}  {err} {note}", flush=True)


def guarded(job: str, impl: str, body: Callable[[], None]) -> None:
    """Run one measurement; an out-of-memory or a peer's failure is recorded, not fatal."""
    try:
        body()
    except torch.OutOfMemoryError:
        record(job, impl, None, note="out of memory")
    except Exception as exc:  # a peer's bug must not end the run
        record(job, impl, None, note=f"failed: {type(exc).__name__}: {str(exc)[:80]}")
        traceback.print_exc()
    finally:
        sync()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------ peers
def load_peers() -> dict[str, Any]:
    peers: dict[str, Any] = {}
    if not torch.cuda.is_available():
        print("peers skipped: Liger-Kernel and Cut Cross-Entropy need a CUDA device")
        return peers
    try:
        from liger_kernel.transformers.functional import liger_cross_entropy, liger_fused_linear_cross_entropy

        peers["liger_ce"] = liger_cross_entropy
        peers["liger_lce"] = liger_fused_linear_cross_entropy
    except ImportError as exc:
        print(f"Liger-Kernel skipped: not importable ({exc}); see ../shared/tools/peer-wheels")
    try:
        from cut_cross_entropy import linear_cross_entropy as cce

        peers["cce"] = cce
    except ImportError as exc:
        print(f"Cut Cross-Entropy skipped: not importable ({exc}); see ../shared/tools/peer-wheels")
    return peers


# ------------------------------------------------------------------------------------------ ceilings
def ceilings(dry: bool) -> dict[str, float]:
    if dry:
        return {"copy_GBps": float("nan"), "bf16_TFLOPs": float("nan")}
    n = 2 * GiB  # bytes per buffer: far past the L2
    a = torch.empty(n // 2, dtype=torch.bfloat16, device="cuda").uniform_()
    b = torch.empty_like(a)
    ms = median_ms(lambda: b.copy_(a), False)
    copy = 2 * n / (ms * 1e-3) / 1e9
    del a, b
    m = 8192
    x = torch.randn(m, m, dtype=torch.bfloat16, device="cuda")
    y = torch.randn(m, m, dtype=torch.bfloat16, device="cuda")
    ms = median_ms(lambda: x @ y, False)
    tflops = 2 * m**3 / (ms * 1e-3) / 1e12
    del x, y
    print(f"ceilings: copy {copy:.0f} GB/s (read + write), bf16 matmul {tflops:.0f} TFLOP/s")
    return {"copy_GBps": copy, "bf16_TFLOPs": tflops}


# ------------------------------------------------------------------------------------------ jobs
def job_lse(n: int, v: int, dev: str, dry: bool, ceil: dict[str, float]) -> None:
    job = f"row LSE [{n}, {v}] fwd"
    print(job)
    x = torch.randn(n, v, device=dev, dtype=torch.bfloat16) * 4
    nbytes = x.numel() * x.element_size()
    ref = torch.logsumexp(x.double(), -1) if not dry else torch.logsumexp(x.double(), -1)
    limit = nbytes / (ceil["copy_GBps"] * 1e9) * 1e3
    record(job, "limit (one read at copy rate)", limit)
    for name, fn in (
        ("logsumexp.triton", lambda: lt.logsumexp(x, dim=-1)),
        ("torch bf16", lambda: torch.logsumexp(x, -1)),
        ("torch fp32 upcast", lambda: torch.logsumexp(x.float(), -1)),
    ):
        def body(name=name, fn=fn):
            ms = median_ms(fn, dry)
            record(job, name, ms, f"{nbytes / ms / 1e6:.0f} GB/s", peak_extra_gib(fn, dry), f"{rel_err(fn(), ref):.1e}")
        guarded(job, name, body)
    del ref


def job_softmax(n: int, v: int, dev: str, dry: bool, ceil: dict[str, float]) -> None:
    job = f"softmax [{n}, {v}] fwd"
    print(job)
    x = torch.randn(n, v, device=dev, dtype=torch.bfloat16) * 4
    nbytes = 2 * x.numel() * x.element_size()
    record(job, "limit (read + write)", nbytes / (ceil["copy_GBps"] * 1e9) * 1e3)
    for name, fn in (
        ("logsumexp.triton", lambda: lt.softmax(x, -1)),
        ("torch bf16", lambda: torch.softmax(x, -1)),
        ("torch fp32 upcast", lambda: torch.softmax(x.float(), -1).to(torch.bfloat16)),
    ):
        def body(name=name, fn=fn):
            ms = median_ms(fn, dry)
            record(job, name, ms, f"{nbytes / ms / 1e6:.0f} GB/s", peak_extra_gib(fn, dry))
        guarded(job, name, body)


def job_ce(n: int, v: int, dev: str, dry: bool, ceil: dict[str, float], peers: dict[str, Any]) -> None:
    job = f"CE on logits [{n}, {v}] fwd+bwd"
    print(job)
    g = torch.Generator(device=dev).manual_seed(0)
    x0 = (torch.randn(n, v, device=dev, generator=g) * 4).to(torch.bfloat16)
    t = torch.randint(0, v, (n,), device=dev, generator=g)
    nbytes = 2 * x0.numel() * x0.element_size()
    with torch.no_grad():
        ref = F.cross_entropy(x0.double(), t)  # float64 on the same logits
    record(job, "limit (read + write)", nbytes / (ceil["copy_GBps"] * 1e9) * 1e3)
    x = x0.clone().requires_grad_()

    impls: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [
        ("logsumexp.triton in place", lambda a: lt.cross_entropy(a, t, inplace_backward=True)),
        ("logsumexp.triton", lambda a: lt.cross_entropy(a, t)),
        ("torch bf16", lambda a: F.cross_entropy(a, t)),
        ("torch fp32 upcast", lambda a: F.cross_entropy(a.float(), t)),
    ]
    if "liger_ce" in peers:
        impls.append(("Liger-Kernel", lambda a: peers["liger_ce"](a, t)))
    for name, f in impls:
        def body(name=name, f=f):
            def step():
                loss = f(x)
                loss.backward()
                return loss

            ms = median_ms(step, dry, grad_to_none=[x])
            with torch.no_grad():
                x.copy_(x0)  # in-place variants overwrote x with gradients
            x.grad = None
            extra = peak_extra_gib(step, dry)
            x.grad = None
            with torch.no_grad():
                x.copy_(x0)
            loss = f(x).detach()
            record(job, name, ms, f"{nbytes / ms / 1e6:.0f} GB/s", extra,
                   f"{rel_err(loss.float(), ref):.1e}", f"loss {loss.dtype}".replace("torch.", ""))
            with torch.no_grad():
                x.copy_(x0)
        guarded(job, name, body)


def job_linear_ce(n: int, d: int, v: int, dev: str, dry: bool, ceil: dict[str, float], peers: dict[str, Any],
                  accuracy: bool) -> None:
    job = f"linear+CE N={n} D={d} V={v} fwd+bwd"
    print(job)
    g = torch.Generator(device=dev).manual_seed(1)
    h = (torch.randn(n, d, device=dev, generator=g)).to(torch.bfloat16).requires_grad_()
    w = (torch.randn(v, d, device=dev, generator=g) * d**-0.5).to(torch.bfloat16).requires_grad_()
    t = torch.randint(0, v, (n,), device=dev, generator=g)
    flops = 6.0 * n * d * v
    record(job, "limit (6NDV at matmul rate)", flops / (ceil["bf16_TFLOPs"] * 1e12) * 1e3)
    refs = None
    if accuracy:
        h64 = h.detach().double().requires_grad_()
        w64 = w.detach().double().requires_grad_()
        loss64 = F.cross_entropy(h64 @ w64.T, t)
        loss64.backward()
        refs = (loss64.detach(), h64.grad, w64.grad)
        del h64, w64

    impls: list[tuple[str, Callable[[], torch.Tensor]]] = [
        ("logsumexp.triton", lambda: lt.linear_cross_entropy(h, w, t)),
        ("logsumexp.triton fp32 dW", lambda: lt.linear_cross_entropy(h, w, t, fp32_weight_grad=True)),
        ("torch bf16", lambda: F.cross_entropy(h @ w.T, t)),
        ("torch fp32 upcast", lambda: F.cross_entropy((h @ w.T).float(), t)),
    ]
    if "liger_lce" in peers:
        impls.append(("Liger-Kernel", lambda: peers["liger_lce"](h, w, t)))
    if "cce" in peers:
        impls.append(("Cut Cross-Entropy", lambda: peers["cce"](h, w, t)))
    for name, f in impls:
        def body(name=name, f=f):
            def step():
                loss = f()
                loss.backward()
                return loss

            ms = median_ms(step, dry, rep_ms=1000, grad_to_none=[h, w])
            h.grad = w.grad = None
            extra = peak_extra_gib(step, dry)
            err = ""
            if refs is not None:
                h.grad = w.grad = None
                loss = step().detach()
                err = (f"loss {rel_err(loss.float(), refs[0]):.1e} dh {rel_err(h.grad, refs[1]):.1e} "
                       f"dW {rel_err(w.grad, refs[2]):.1e}")
            h.grad = w.grad = None
            record(job, name, ms, f"{flops / ms / 1e9:.0f} TFLOP/s", extra, err)
        guarded(job, name, body)


def job_sweep(n: int, v: int, dev: str, dry: bool, ceil: dict[str, float]) -> None:
    """Block-size sweep of the row LSE and in-place CE kernels (the defaults are provisional until this runs)."""
    from logsumexp.triton import _common

    x0 = torch.randn(n, v, device=dev, dtype=torch.bfloat16) * 4
    t = torch.randint(0, v, (n,), device=dev)
    x = x0.clone().requires_grad_()
    configs = [(b, w) for b in (2048, 4096, 8192, 16384) for w in (4, 8, 16)] if not dry else [(256, 2), (512, 4)]
    for kind in ("lse", "ce"):
        job = f"sweep {kind} [{n}, {v}]"
        print(job)
        nbytes = x0.numel() * x0.element_size() * (1 if kind == "lse" else 2)
        for block, warps in configs:
            _common.set_block_override(block, warps)

            def step():
                if kind == "lse":
                    return lt.logsumexp(x0, dim=-1)
                loss = lt.cross_entropy(x, t, inplace_backward=True)
                loss.backward()
                return loss

            def body(step=step):
                ms = median_ms(step, dry, rep_ms=100, grad_to_none=[x])
                record(job, f"BLOCK={block} warps={warps}", ms, f"{nbytes / ms / 1e6:.0f} GB/s")
            guarded(job, f"BLOCK={block} warps={warps}", body)
        _common.set_block_override(None)


# ------------------------------------------------------------------------------------------ report
def table(meta: dict[str, Any]) -> str:
    lines = [
        f"Card: **{meta['card']}**; commit `{meta['commit']}`; torch {meta['torch']}, triton {meta['triton']}; "
        f"{meta['date']}. Ceilings measured in this run: copy {meta['copy_GBps']:.0f} GB/s (read + write), "
        f"bf16 matmul {meta['bf16_TFLOPs']:.0f} TFLOP/s. Medians of `triton.testing.do_bench`; extra = peak "
        "memory beyond the inputs during one call; error = relative error against float64 on the same inputs.",
        "",
        "| job | implementation | median ms | rate | time ÷ ours | peak extra GiB | rel. error | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ours: dict[str, float] = {}
    for r in ROWS:
        if r["impl"] == "logsumexp.triton in place" or (r["impl"] == "logsumexp.triton" and r["job"] not in ours):
            if r["ms"]:
                ours[r["job"]] = r["ms"]
    for r in ROWS:
        ms = "" if r["ms"] is None else f"{r['ms']:.3f}"
        ratio = f"{r['ms'] / ours[r['job']]:.2f}" if r["ms"] and r["job"] in ours else ""
        extra = "" if r["extra_gib"] is None else f"{r['extra_gib']:.2f}"
        lines.append(f"| {r['job']} | {r['impl']} | {ms} | {r['rate']} | {ratio} | {extra} | {r['err']} | {r['note']} |")
    return "\n".join(lines)


def write_docs(md: str) -> None:
    path = ROOT / "docs" / "BENCHMARKS.md"
    start, end = "<!-- gpu:start -->", "<!-- gpu:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{md}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n## GPU (`benchmarks/gpu.py`)\n\n" + block + "\n"
    path.write_text(text)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes, no timings written (runs in the interpreter)")
    ap.add_argument("--out", type=Path, default=None, help="folder for results.json and table.md")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/BENCHMARKS.md")
    ap.add_argument("--jobs", default="lse,softmax,ce,lce,sweep",
                    help="comma-separated subset of lse,softmax,ce,lce,sweep")
    ap.add_argument("--lce-n", default="2048,8192,32768", help="token counts for linear + CE")
    args = ap.parse_args(argv)
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA device (use --dry-run with TRITON_INTERPRET=1 for a smoke test)")
        return 2
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    jobs = set(args.jobs.split(","))
    n, v, d = (8192, 128256, 4096) if not dry else (4, 1531, 32)
    lce_ns = [int(s) for s in args.lce_n.split(",")] if not dry else [16]
    import triton

    ceil = ceilings(dry)
    peers = load_peers()
    if "lse" in jobs:
        job_lse(n, v, dev, dry, ceil)
    if "softmax" in jobs:
        job_softmax(n, v, dev, dry, ceil)
    if "ce" in jobs:
        job_ce(n, v, dev, dry, ceil, peers)
    if "lce" in jobs:
        for i, nn in enumerate(lce_ns):
            job_linear_ce(nn, d, v, dev, dry, ceil, peers, accuracy=(i == 0))
    if "sweep" in jobs:
        job_sweep(n, v, dev, dry, ceil)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        commit += "+uncommitted changes" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = os.environ.get("GIT_COMMIT", "unknown (no git)")
    meta = dict(
        card=torch.cuda.get_device_name() if dev == "cuda" else "CPU (interpreter dry run)",
        commit=commit, torch=torch.__version__, triton=triton.__version__,
        date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), **ceil,
    )
    md = table(meta)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(dict(meta=meta, rows=ROWS), indent=1))
        (args.out / "table.md").write_text(md + "\n")
    if not dry and not args.no_docs:
        write_docs(md)
    print()
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
