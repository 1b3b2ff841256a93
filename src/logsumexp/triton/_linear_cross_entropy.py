"""Fused linear + cross-entropy on the GPU: the loss of ``hidden @ weight.T (+ bias)`` without the full logits.

The tokens are cut into chunks whose logits fit a memory budget (256 MiB by default: 1024 tokens at
V = 128256 in bf16).  For each chunk, in the forward pass:

    logits  = h_c @ Wᵀ (+ b)                      one cuBLAS matmul into a reused chunk buffer
    loss_c, ∂loss/∂logits                          the fused cross-entropy kernel, gradient written over the logits
    ∂h_c    = ∂logits @ W                          cuBLAS
    ∂W     += ∂logitsᵀ @ h_c,   ∂b += Σ_rows ∂logits

so the FLOPs are the floor ``6·N·D·V`` (no recomputation) and the extra memory is one chunk of logits (two on a
GPU, see below) plus O(N) row statistics.  Backward only multiplies the three gradients by the upstream gradient
(skipped on the device when it is 1).  With ``reduction="none"`` the upstream gradient differs per row and is only
known in backward, so the forward computes the loss alone and backward recomputes each chunk's logits
(``8·N·D·V`` FLOPs in all).

Where the time goes (H200, N = 8192, D = 4096, V = 128256, 8 chunks: 42.6 ms in all): 36.4 ms in the three
products, 2.3 ms in the cross-entropy kernel, 0.3 ms zero-filling ``∂W``, the rest between launches.  So:

* ``∂W`` is not zero-filled: the first chunk writes it (``beta = 0``), the others accumulate.
* On a GPU, the memory-bound cross-entropy kernel of chunk ``i`` runs on a side stream while the main stream
  computes the (compute-bound) logits of chunk ``i + 1`` into a second buffer; chunk ``i``'s two gradient
  products wait for its kernel only.  Two chunk buffers instead of one.

Weight-gradient accumulation: by default ``∂W`` accumulates in ``weight``'s dtype straight into the returned
gradient (in bf16 each chunk's addition rounds to 8 bits of mantissa).  ``fp32_weight_grad=True`` accumulates
in a float32 buffer of ``V·D·4`` bytes (2 GiB at V = 128256, D = 4096), rounded once at the end; on CUDA the
product accumulates into it directly (cuBLAS with a float32 output, ``out_dtype``), elsewhere slice by slice.
It stays opt-in: the only measured cost (H200, the slice-by-slice form) was 1.48–1.60× the default's time,
over the 1.10× that would make it the default; the direct form is not yet measured.

Deterministic: cuBLAS products and the kernel use no atomics; the chunk order is fixed.
"""

from __future__ import annotations

from typing import Any

import torch

from .._options import CrossEntropyOptions
from ._common import acc_dtype
from ._cross_entropy import denominator, launch_ce, mean_scale, no_weight_gradient, reduce_loss, scale_rows_

__all__ = ["linear_cross_entropy_rows"]

# Logits per chunk: 256 MiB, 1024 tokens at V = 128256 in bf16 — the configuration measured on the H200
# (1.03× eager bf16 at N = 8192, 1.00× at N = 2048 and 32768); benchmarks/gpu.py sweeps other chunk sizes.
_CHUNK_BUDGET_BYTES = 256 * 2**20
_FP32_SLICE = 8192  # rows of W per float32 accumulation step where cuBLAS cannot write float32 directly
_DEFAULT_FP32_WEIGHT_GRAD = False  # measured at 1.48–1.60× the default's time (target: ≤ 1.10×), see above


def chunk_rows(n_rows: int, n_cls: int, itemsize: int, chunk_size: int | None) -> int:
    """Tokens per chunk: ``chunk_size`` when given, else as many as fit the budget, in whole 128-row tiles."""
    if chunk_size is not None:
        return max(1, min(chunk_size, max(n_rows, 1)))
    rows = max(1, _CHUNK_BUDGET_BYTES // max(n_cls * itemsize, 1))
    if rows >= 128:
        rows -= rows % 128  # whole matmul tiles
    return max(1, min(rows, max(n_rows, 1)))


_two_buffers_everywhere = False  # tests set it: the two-buffer schedule then runs (serially) on the CPU too
_direct_fp32: bool | None = None  # whether this torch's cuBLAS path takes out_dtype=float32 (found on first use)


def _add_product_fp32(gw: torch.Tensor, a: torch.Tensor, b: torch.Tensor, first: bool) -> None:
    """``gw (float32) = [gw +] a @ b`` for low-precision ``a``, ``b``, rounding the product once, in float32."""
    global _direct_fp32
    if gw.is_cuda and _direct_fp32 is not False:
        try:
            if first:
                torch.mm(a, b, out_dtype=torch.float32, out=gw)
            else:
                torch.addmm(gw, a, b, out_dtype=torch.float32, out=gw)
            _direct_fp32 = True
            return
        except (RuntimeError, TypeError):  # an older torch: no float32 output for a bf16 product
            _direct_fp32 = False  # the slice-by-slice form below computes the same sum, more slowly
    for v0 in range(0, gw.shape[0], _FP32_SLICE):
        v1 = min(v0 + _FP32_SLICE, gw.shape[0])
        part = torch.mm(a[v0:v1], b).to(torch.float32)
        if first:
            gw[v0:v1] = part
        else:
            gw[v0:v1] += part


class _Streams:
    """The main stream and a side stream for the cross-entropy kernels (CUDA only; a no-op elsewhere)."""

    def __init__(self, device: torch.device) -> None:
        self.on = device.type == "cuda" and not torch.compiler.is_compiling()
        if self.on:
            self.main = torch.cuda.current_stream(device)
            self.side = torch.cuda.Stream(device)

    def event(self) -> Any:
        if not self.on:
            return None
        e = torch.cuda.Event()
        e.record(torch.cuda.current_stream())
        return e

    def wait(self, event: Any) -> None:
        if event is not None:
            torch.cuda.current_stream().wait_event(event)

    def side_context(self) -> Any:
        import contextlib

        return torch.cuda.stream(self.side) if self.on else contextlib.nullcontext()


def _run(
    h2: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    t2: torch.Tensor,
    class_weight: torch.Tensor | None,
    opts: CrossEntropyOptions,
    fp32_weight_grad: bool,
    chunk: int,
    need: tuple[bool, bool, bool],
    scale: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]]:
    """One sweep over the token chunks: per-row loss and LSE, and the gradients flagged in ``need``.

    scale: one factor for all rows, or one per row (``reduction="none"`` recomputation), accumulation dtype.
    """
    n_rows, _ = h2.shape
    n_cls = weight.shape[0]
    dev = h2.device
    acc, _ = acc_dtype(h2)
    loss = torch.empty(n_rows, dtype=acc, device=dev)
    lse = torch.empty(n_rows, dtype=acc, device=dev)
    want_grad = any(need)
    gh = torch.empty_like(h2) if need[0] else None
    gw = None
    if need[1]:  # not zero-filled: the first chunk writes it
        gw = torch.empty(weight.shape, dtype=torch.float32 if fp32_weight_grad else weight.dtype, device=dev)
    gb = torch.zeros(n_cls, dtype=acc, device=dev) if (bias is not None and need[2]) else None
    streams = _Streams(dev)
    # two buffers let chunk i's kernel overlap chunk i + 1's product (the tests force them on the CPU too)
    n_bufs = 2 if (streams.on or _two_buffers_everywhere) else 1
    bufs = [torch.empty((min(chunk, max(n_rows, 1)), n_cls), dtype=h2.dtype, device=dev) for _ in range(n_bufs)]
    wt = weight.t()
    pending: tuple[Any, ...] | None = None  # (logits, h_c, c0, c1, event) of the chunk whose gradient is due

    def finish(item: tuple[Any, ...], first: bool) -> None:
        logits, h_c, c0, c1, done = item
        streams.wait(done)  # its cross-entropy kernel (side stream) has written the gradient
        if gh is not None:
            torch.mm(logits, weight, out=gh[c0:c1])
        if gw is not None:
            if fp32_weight_grad:
                _add_product_fp32(gw, logits.t(), h_c, first)
            elif first:
                torch.mm(logits.t(), h_c, out=gw)
            else:
                gw.addmm_(logits.t(), h_c)
        if gb is not None:
            gb.add_(logits.sum(dim=0, dtype=acc))

    n_done = 0
    for i, c0 in enumerate(range(0, n_rows, chunk)):
        c1 = min(c0 + chunk, n_rows)
        h_c = h2[c0:c1]
        logits = bufs[i % n_bufs][: c1 - c0]
        if bias is None:
            torch.mm(h_c, wt, out=logits)
        else:
            torch.addmm(bias, h_c, wt, out=logits)
        ready = streams.event()
        s_c = scale if scale.numel() == 1 else scale[c0:c1]
        with streams.side_context():
            streams.wait(ready)
            loss_c, lse_c = launch_ce(logits, t2[c0:c1], class_weight, opts, logits if want_grad else None, s_c)
            loss[c0:c1] = loss_c
            lse[c0:c1] = lse_c
            done = streams.event()
        if pending is not None:  # the previous chunk's products, after this chunk's forward product was issued
            finish(pending, n_done == 0)
            n_done += 1
        pending = (logits, h_c, c0, c1, done) if want_grad else None
        if not want_grad or n_bufs == 1:
            streams.wait(done)  # one buffer (or no gradient): it must be free before the next chunk's product
            if pending is not None:
                finish(pending, n_done == 0)
                n_done += 1
                pending = None
    if pending is not None:
        finish(pending, n_done == 0)
    if streams.on:
        streams.main.wait_stream(streams.side)  # loss and lse were written on the side stream
    if gw is not None and gw.dtype != weight.dtype:
        gw = gw.to(weight.dtype)
    if gb is not None and bias is not None:
        gb = gb.to(bias.dtype)
    return loss, lse, (gh, gw, gb)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        h2: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        t2: torch.Tensor,
        class_weight: torch.Tensor | None,
        opts: CrossEntropyOptions,
        fp32_weight_grad: bool,
        chunk: int,
        need: tuple[bool, bool, bool],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        acc, _ = acc_dtype(h2)
        cw = None if class_weight is None else class_weight.detach().to(acc).contiguous()
        denom = denominator(t2, cw, opts, h2.shape[0], acc, h2.device)
        scale = mean_scale(denom).reshape(1) if opts.reduction == "mean" else denom.reshape(1)
        grad_now = any(need) and opts.reduction != "none"
        flags = need if grad_now else (False, False, False)
        loss, lse, grads = _run(h2, weight, bias, t2, cw, opts, fp32_weight_grad, chunk, flags, scale)
        ctx.grads = grads if grad_now else None
        ctx.recompute = any(need) and opts.reduction == "none"
        if ctx.recompute:
            ctx.save_for_backward(h2, weight, bias, t2, cw)
            ctx.args = (opts, fp32_weight_grad, chunk, need)
        ctx.used = False
        ctx.mark_non_differentiable(lse)
        return reduce_loss(loss, denom, opts.reduction), lse

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, grad_lse: torch.Tensor | None):  # type: ignore[override]
        if ctx.used:
            raise RuntimeError("logsumexp.triton.linear_cross_entropy_rows: backward can run once per forward")
        ctx.used = True
        if ctx.recompute:
            h2, weight, bias, t2, cw = ctx.saved_tensors
            opts, fp32_wg, chunk, need = ctx.args
            per_row = grad_loss.reshape(-1).contiguous()  # reduction="none": one upstream factor per row
            _, _, grads = _run(h2, weight, bias, t2, cw, opts, fp32_wg, chunk, need, per_row)
        else:
            grads = ctx.grads
            ctx.grads = None
            for gr in grads:
                if gr is not None:
                    scale_rows_(gr.reshape(1, -1) if gr.ndim == 1 else gr, grad_loss.reshape(1))
        gh, gw, gb = grads
        return gh, gw, gb, None, None, None, None, None, None


def linear_cross_entropy_rows(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    bias: torch.Tensor | None,
    class_weight: torch.Tensor | None,
    opts: CrossEntropyOptions,
    fp32_weight_grad: bool | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``hidden @ weight.T + bias`` against ``target``, never holding the full logits.

    hidden [N, D], weight [V, D], bias [V] or None, target [N] class indices (or [N, V] probabilities),
    class_weight [V] or None, opts the validated cross-entropy options (those of :func:`cross_entropy_rows`).
    Returns the loss (float32; float64 for float64 inputs), plus the per-row LSE [N] (not differentiable here:
    its logits are gone after the forward pass) when ``opts.return_lse``.

    Tokens go through in chunks of ``chunk_size`` rows (None: the rows whose logits fit in 256 MiB): cuBLAS for
    the three products, the fused cross-entropy kernel with the gradient written over each chunk's logits.
    FLOPs are ``6·N·D·V`` (forward and backward, no recomputation, except with ``reduction="none"``, which
    recomputes the logits in backward).  ``fp32_weight_grad=True`` accumulates the weight gradient in float32
    (``V·D·4`` bytes more); None means this backend's default, off (its measured cost is over 1.10×).
    A ``class_weight`` that requires grad is refused (RuntimeError).  The arguments are not checked:
    ``logsumexp.torch.linear_cross_entropy`` validates them and reshapes to rows.

    Examples
    --------
    Needs a CUDA device (or the interpreter), so not run as a doctest:

    >>> import torch, logsumexp.triton as lt                                          # doctest: +SKIP
    >>> from logsumexp._options import CrossEntropyOptions                            # doctest: +SKIP
    >>> h = torch.randn(8, 16, device="cuda"); w = torch.randn(1000, 16, device="cuda")  # doctest: +SKIP
    >>> t = torch.randint(0, 1000, (8,), device="cuda")                               # doctest: +SKIP
    >>> lt.linear_cross_entropy_rows(h, w, t, None, None, CrossEntropyOptions())      # doctest: +SKIP
    tensor(..., device='cuda:0')
    """
    no_weight_gradient(class_weight, "class_weight")
    if fp32_weight_grad is None:
        fp32_weight_grad = _DEFAULT_FP32_WEIGHT_GRAD
    grad_mode = torch.is_grad_enabled()
    need = (
        hidden.requires_grad and grad_mode,
        weight.requires_grad and grad_mode,
        bias is not None and bias.requires_grad and grad_mode,
    )
    chunk = chunk_rows(hidden.shape[0], weight.shape[0], hidden.element_size(), chunk_size)
    loss, lse = _LinearCrossEntropy.apply(hidden, weight, bias, target, class_weight, opts, fp32_weight_grad, chunk, need)
    return (loss, lse) if opts.return_lse else loss
