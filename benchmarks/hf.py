"""One training step (forward + backward) of a small Hugging Face Llama with Llama 3's vocabulary:
the model's own loss against ``logsumexp.transformers.patch`` (and Liger-Kernel's patch on CUDA).

Model: ``LlamaForCausalLM``, 2 decoder layers, vocabulary 128256, random weights.

    --device cpu    float32, hidden 256, batch 1 × 512 tokens
    --device cuda   bfloat16, hidden 1024, batch 8 × 1024 tokens; peer: Liger-Kernel's Transformers patch
                    (fused linear cross-entropy only) when ``liger_kernel`` imports

Each implementation runs in a fresh subprocess (Liger patches the class globally; peak memory needs a
clean process). A step is ``loss = model(input_ids, labels=input_ids).loss; loss.backward()`` with the
gradients set to None before it, as optimizers leave them. Reported: the median (and minimum) seconds
per step over rounds after warm-up steps, and the peak extra memory of one step above what was
allocated before it (weights; the gradients are created by the step and count): on CUDA
``torch.cuda.max_memory_allocated``, on the CPU the resident-set high-water mark (``VmHWM − VmRSS``,
see ``_harness.memory_probe``). The loss of each implementation is printed next to the reference's.
The floor row is the same step without the head's logits (a loss on the hidden states, gradient
buffers for every weight): what a step costs before any cross-entropy, so that "above the floor" is
what each loss adds.

    python benchmarks/hf.py                   # CPU: prints the table, writes docs/BENCHMARKS.md
    python benchmarks/hf.py --device cuda     # on a GPU machine
    python benchmarks/hf.py --no-write        # print only

The commit is read from ``GIT_COMMIT`` when set, else from git.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _harness as H  # noqa: E402

GiB = 2**30
VOCAB = 128256
SHAPES = {
    # device: (hidden, intermediate, heads, kv heads, batch, sequence, dtype, warm-up steps, timed steps)
    "cpu": (256, 512, 4, 2, 1, 512, "float32", 1, 5),
    "cuda": (1024, 2816, 16, 8, 8, 1024, "bfloat16", 3, 20),
}
IMPLEMENTATIONS = {
    "floor": "decoder only: a loss on the hidden states, no logits (the floor)",
    "model": "the model's own loss (logits, float32 cross-entropy)",
    "logsumexp": "logsumexp.transformers.patch(model)",
    "liger": "Liger-Kernel apply_liger_kernel_to_llama (fused linear CE only)",
}


# ------------------------------------------------------------------------------------------ child side
def _build(device: str, impl: str) -> tuple[Any, Any]:
    import torch
    import transformers

    hidden, inter, heads, kv, batch, seq, dtype, _, _ = SHAPES[device]
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=2,
        num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=seq,
    )
    config._attn_implementation = "sdpa"
    model = transformers.LlamaForCausalLM(config).to(device=device, dtype=getattr(torch, dtype)).train()
    if impl == "logsumexp":
        from logsumexp.transformers import patch

        patch(model)
    elif impl == "liger":
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama(rope=False, rms_norm=False, swiglu=False, cross_entropy=False,
                                    fused_linear_cross_entropy=True, model=model)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (batch, seq), generator=g).to(device)
    return model, ids


def _child(device: str, impl: str) -> None:
    import torch

    model, ids = _build(device, impl)
    losses: list[float] = []

    def step() -> None:
        model.zero_grad(set_to_none=True)
        if impl == "floor":
            # Everything but the logits: the decoder's backward, and gradient buffers for every
            # weight (the head's included) as a real step creates them.
            hidden = model.model(input_ids=ids).last_hidden_state
            loss = hidden.float().square().mean() + 0.0 * model.lm_head.weight.float().sum()
        else:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        losses.append(loss.item())  # .item() also waits for the GPU

    *_, warmup, timed = SHAPES[device]
    for _ in range(warmup):
        step()
    model.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        peak = torch.cuda.max_memory_allocated() - base
        method = "cuda-max-allocated"
    else:
        probe = H.memory_probe(step)
        peak, method = probe["bytes"], probe["method"]
    times = []
    for _ in range(timed):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print("HFBENCH " + json.dumps({
        "median_s": statistics.median(times), "best_s": min(times), "rounds": timed,
        "peak_bytes": peak, "memory_method": method, "loss": losses[0],
    }), flush=True)


# ------------------------------------------------------------------------------------------ parent side
def _run_child(device: str, impl: str, timeout: float) -> dict[str, Any] | None:
    argv = [sys.executable, __file__, "--device", device, "--_child", impl]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"{impl}: timed out after {timeout:.0f} s", file=sys.stderr)
        return None
    for line in proc.stdout.splitlines():
        if line.startswith("HFBENCH "):
            return json.loads(line[len("HFBENCH "):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    print(f"{impl}: failed: {tail}", file=sys.stderr)
    return None


def _machine(device: str) -> str:
    if device == "cuda":
        import torch

        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"{H.cpu_model()} (torch {__import__('torch').__version__})"


def _commit() -> str:
    return os.environ.get("GIT_COMMIT") or H.git_commit()


def _implementations(device: str) -> list[str]:
    impls = ["floor", "model", "logsumexp"]
    if device == "cuda":
        try:
            import liger_kernel.transformers  # noqa: F401

            impls.append("liger")
        except ImportError as err:
            print(f"Liger-Kernel skipped: {err}", file=sys.stderr)
    return impls


def _table(device: str, results: dict[str, dict[str, Any]]) -> str:
    hidden, inter, heads, kv, batch, seq, dtype, _, timed = SHAPES[device]
    import transformers

    ref, floor = results.get("model"), results.get("floor")
    rows = []
    for impl, r in results.items():
        speed = f"{ref['median_s'] / r['median_s']:.2f}×" if ref and impl != "floor" else "–"
        above = f"{(r['peak_bytes'] - floor['peak_bytes']) / GiB:.3f}" if floor and impl != "floor" else "–"
        loss = "–" if impl == "floor" else f"{r['loss']:.6f}"
        rows.append([
            IMPLEMENTATIONS[impl], f"{r['median_s'] * 1e3:.1f}", f"{r['best_s'] * 1e3:.1f}", speed,
            f"{r['peak_bytes'] / GiB:.3f}", above, loss,
        ])
    head = ["implementation", "median ms", "best ms", "speed-up vs model", "peak extra GiB",
            "of which above the floor", "loss"]
    return (
        f"{device.upper()}: {_machine(device)}, transformers {transformers.__version__}, commit {_commit()}, "
        f"{platform.python_version()}. Llama, 2 layers, hidden {hidden}, intermediate {inter}, heads "
        f"{heads}/{kv}, vocabulary {VOCAB}, {dtype}, batch {batch} × {seq} tokens; median of {timed} steps; "
        f"peak extra memory by {next(iter(results.values()))['memory_method'] if results else '–'}.\n\n"
        + H.markdown_table(head, rows)
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--no-write", action="store_true", help="print only; do not write docs/BENCHMARKS.md")
    p.add_argument("--out", type=Path, default=ROOT / "docs", help="directory of BENCHMARKS.md")
    p.add_argument("--timeout", type=float, default=600, help="seconds per implementation (default 600)")
    p.add_argument("--_child", choices=list(IMPLEMENTATIONS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        _child(args.device, args._child)
        return 0
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda needs a CUDA GPU; none is visible")
    results: dict[str, dict[str, Any]] = {}
    impls = _implementations(args.device)
    progress = H.Progress(len(impls))
    for impl in impls:
        result = _run_child(args.device, impl, args.timeout)
        if result is not None:
            results[impl] = result
        progress.step(impl)
    progress.close()
    if not results:
        print("no implementation ran", file=sys.stderr)
        return 1
    text = _table(args.device, results)
    print(text)
    if not args.no_write:
        H.write_between_markers(args.out / "BENCHMARKS.md", f"hf-{args.device}", text,
                                title="## Hugging Face training step (`benchmarks/hf.py`)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
