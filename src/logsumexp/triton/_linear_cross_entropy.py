"""Fused linear + cross-entropy on the GPU: the loss of ``hidden @ weight.T (+ bias)`` without the full logits.

The tokens are cut into chunks whose logits fit a memory budget (256 MiB by default: 1024 tokens at
V = 128256 in bf16).  For each chunk, in the forward pass:

    logits  = h_c @ Wᵀ (+ b)                      one cuBLAS matmul into a reused chunk buffer
    loss_c, ∂loss/∂logits                          the fused cross-entropy kernel, gradient written over the logits
    ∂h_c    = ∂logits @ W                          cuBLAS
    ∂W     += ∂logitsᵀ @ h_c,   ∂b += Σ_rows ∂logits

so the FLOPs are the floor ``6·N·D·V`` (no recomputation) and the extra memory is one chunk of logits
(plus O(N) float32 row statistics).  Backward only multiplies the three gradients by the upstream gradient
(skipped on the device when it is 1).  With ``reduction="none"`` the upstream gradient differs per row and is
only known in backward, so the forward computes the loss alone and backward recomputes each chunk's logits
(``8·N·D·V`` FLOPs in all).

Weight-gradient accumulation: by default ``∂W`` accumulates in ``weight``'s dtype straight into the returned
gradient (no extra memory; in bf16 each chunk's addition rounds to 8 bits of mantissa).  With
``fp32_weight_grad=True`` it accumulates in a float32 buffer of ``V·D·4`` bytes (2 GiB at V = 128256,
D = 4096) plus a ``8192·D·6``-byte slice temporary, and is rounded once at the end.

Deterministic: cuBLAS products and the kernel use no atomics; the chunk order is fixed.
"""

from __future__ import annotations

from typing import Any

import torch

from .._options import CrossEntropyOptions
from ._common import check_float_tensor, check_launchable
from ._cross_entropy import check_target_range, denominator, launch_ce, scale_rows_

__all__ = ["linear_cross_entropy"]

_CHUNK_BUDGET_BYTES = 256 * 2**20  # provisional: the probe reached 0.94x eager at 1024-token chunks
_FP32_SLICE = 8192  # rows of W per float32 accumulation step (bounds its temporary)


def _chunk_rows(n_rows: int, n_cls: int, itemsize: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        return max(1, min(chunk_size, max(n_rows, 1)))
    rows = max(1, _CHUNK_BUDGET_BYTES // max(n_cls * itemsize, 1))
    if rows >= 128:
        rows -= rows % 128  # whole matmul tiles
    return max(1, min(rows, max(n_rows, 1)))


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
        grad_enabled: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n_rows = h2.shape[0]
        # needs_input_grad ignores torch.no_grad(): the caller's grad mode comes in as an argument
        need = tuple(bool(f and grad_enabled) for f in ctx.needs_input_grad[:3])
        denom = denominator(t2, class_weight, opts, n_rows, h2.device)
        scale = (1.0 / denom).reshape(1) if opts.reduction == "mean" else denom.reshape(1)
        grad_now = any(need) and opts.reduction != "none"
        flags = need if grad_now else (False, False, False)
        loss, lse, grads = _run(h2, weight, bias, t2, class_weight, opts, fp32_weight_grad, chunk, flags, scale)
        ctx.grads = grads if grad_now else None
        ctx.recompute = (any(need) and opts.reduction == "none")
        if ctx.recompute:
            ctx.save_for_backward(h2, weight, bias, t2, class_weight)
            ctx.args = (opts, fp32_weight_grad, chunk, need)
        ctx.used = False
        if opts.reduction == "sum":
            out = loss.sum()
        elif opts.reduction == "mean":
            out = loss.sum() / denom
        else:
            out = loss
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, grad_lse: torch.Tensor | None):  # type: ignore[override]
        if ctx.used:
            raise RuntimeError("logsumexp.triton.linear_cross_entropy: backward can run once per forward")
        ctx.used = True
        g = grad_loss.to(torch.float32)
        if ctx.recompute:
            h2, weight, bias, t2, class_weight = ctx.saved_tensors
            opts, fp32_wg, chunk, need = ctx.args
            per_row = g.reshape(-1).contiguous()  # reduction="none": one upstream factor per row
            _, _, grads = _run(h2, weight, bias, t2, class_weight, opts, fp32_wg, chunk, need, per_row)
        else:
            grads = ctx.grads
            ctx.grads = None
            for gr in grads:
                if gr is not None:
                    scale_rows_(gr.reshape(gr.shape[0], -1) if gr.ndim == 2 else gr.reshape(1, -1), g.reshape(1))
        gh, gw, gb = grads
        return gh, gw, gb, None, None, None, None, None, None


def _run(
    h2: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    t2: torch.Tensor,
    class_weight: torch.Tensor | None,
    opts: CrossEntropyOptions,
    fp32_weight_grad: bool,
    chunk: int,
    need: tuple[bool, ...],
    scale: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]]:
    """One sweep over the token chunks: per-row loss and LSE, and the gradients flagged in ``need``.

    scale: one float32 factor for all rows, or one per row (``reduction="none"`` recomputation).
    """
    n_rows, _ = h2.shape
    n_cls = weight.shape[0]
    dev = h2.device
    loss = torch.empty(n_rows, dtype=torch.float32, device=dev)
    lse = torch.empty(n_rows, dtype=torch.float32, device=dev)
    want_grad = any(need)
    gh = torch.empty_like(h2) if need[0] else None
    gw = None
    if need[1]:
        gw = torch.zeros(weight.shape, dtype=torch.float32 if fp32_weight_grad else weight.dtype, device=dev)
    gb = torch.zeros(n_cls, dtype=torch.float32, device=dev) if (bias is not None and need[2]) else None
    buf = torch.empty((min(chunk, max(n_rows, 1)), n_cls), dtype=h2.dtype, device=dev)
    wt = weight.t()
    for c0 in range(0, n_rows, chunk):
        c1 = min(c0 + chunk, n_rows)
        h_c = h2[c0:c1]
        logits = buf[: c1 - c0]
        if bias is None:
            torch.mm(h_c, wt, out=logits)
        else:
            torch.addmm(bias, h_c, wt, out=logits)
        s_c = scale if scale.numel() == 1 else scale[c0:c1]
        loss_c, lse_c = launch_ce(logits, t2[c0:c1], class_weight, opts, logits if want_grad else None, s_c)
        loss[c0:c1] = loss_c
        lse[c0:c1] = lse_c
        if not want_grad:
            continue
        if gh is not None:
            torch.mm(logits, weight, out=gh[c0:c1])
        if gw is not None:
            if fp32_weight_grad:
                # float32 accumulation over slices of W's rows: the bf16 product of one slice is rounded once
                for v0 in range(0, n_cls, _FP32_SLICE):
                    v1 = min(v0 + _FP32_SLICE, n_cls)
                    gw[v0:v1] += torch.mm(logits[:, v0:v1].t(), h_c).to(torch.float32)
            else:
                gw.addmm_(logits.t(), h_c)
        if gb is not None:
            gb += logits.sum(dim=0, dtype=torch.float32)
    if gw is not None and gw.dtype != weight.dtype:
        gw = gw.to(weight.dtype)
    if gb is not None and bias is not None:
        gb = gb.to(bias.dtype)
    return loss, lse, (gh, gw, gb)


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    class_weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    num_items: float | None = None,
    return_lse: bool = False,
    fp32_weight_grad: bool = False,
    chunk_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``hidden @ weight.T + bias`` against ``target``, never holding the full logits.

    ``hidden`` [..., D], ``weight`` [V, D], ``bias`` [V] or None, ``target`` [...] class indices (or [..., V]
    probabilities); the cross-entropy options are those of :func:`logsumexp.triton.cross_entropy`
    (``class_weight`` is its per-class ``weight``).  Tokens go through in chunks of ``chunk_size`` rows
    (default: the rows whose logits fit in 256 MiB; provisional until measured): cuBLAS for the three
    products, the fused cross-entropy kernel with the gradient written over each chunk's logits.  Extra memory
    is one chunk of logits; FLOPs are ``6·N·D·V`` (forward and backward, no recomputation, except with
    ``reduction="none"``, which recomputes the logits in backward).

    ``fp32_weight_grad=True`` accumulates the weight gradient in float32 (costs ``V·D·4`` bytes more);
    the default accumulates in ``weight``'s dtype.  The loss is float32; the LSE that ``return_lse=True``
    adds is not differentiable here (its logits are gone after the forward pass).  Needs CUDA tensors (CPU tensors
    only under ``TRITON_INTERPRET=1``).

    Examples
    --------
    Needs a CUDA device (or the interpreter), so not run as a doctest:

    >>> import torch, logsumexp.triton as lt                                   # doctest: +SKIP
    >>> h = torch.randn(8, 16, device="cuda"); w = torch.randn(1000, 16, device="cuda")  # doctest: +SKIP
    >>> lt.linear_cross_entropy(h, w, torch.randint(0, 1000, (8,), device="cuda"))      # doctest: +SKIP
    tensor(..., device='cuda:0')
    """
    opts = CrossEntropyOptions(
        ignore_index=ignore_index,
        reduction=reduction,  # type: ignore[arg-type]
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        num_items=num_items,
        return_lse=return_lse,
    )
    check_float_tensor("hidden", hidden)
    check_float_tensor("weight", weight)
    if hidden.ndim < 1:
        raise ValueError("hidden must have at least one dimension (its last is D), got a 0-d tensor")
    if weight.ndim != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"weight must have shape (V, {hidden.shape[-1]}) to match hidden's last dimension, got {tuple(weight.shape)}"
        )
    if weight.dtype != hidden.dtype:
        raise TypeError(f"weight must have hidden's dtype {hidden.dtype}, got {weight.dtype}")
    n_cls = weight.shape[0]
    if n_cls == 0:
        raise ValueError("weight must have at least one row (class), got 0")
    if bias is not None:
        check_float_tensor("bias", bias)
        if bias.shape != (n_cls,):
            raise ValueError(f"bias must have shape ({n_cls},), got {tuple(bias.shape)}")
        if bias.dtype != hidden.dtype:
            raise TypeError(f"bias must have hidden's dtype {hidden.dtype}, got {bias.dtype}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    lead = tuple(hidden.shape[:-1])
    if target.is_floating_point():
        if tuple(target.shape) != lead + (n_cls,):
            raise ValueError(f"probability target must have shape {lead + (n_cls,)}, got {tuple(target.shape)}")
        t2 = target.reshape(-1, n_cls)
        if t2.stride(-1) != 1:
            t2 = t2.contiguous()
    elif target.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        if tuple(target.shape) != lead:
            raise ValueError(f"class target must have shape {lead} (hidden's leading dimensions), got {tuple(target.shape)}")
        t2 = target.reshape(-1)
    else:
        raise TypeError(f"target must hold integer class indices or float probabilities, got {target.dtype}")
    if class_weight is not None:
        if not isinstance(class_weight, torch.Tensor) or not class_weight.is_floating_point():
            raise TypeError(f"class_weight must be a floating-point torch.Tensor or None, got {type(class_weight).__name__}")
        if class_weight.shape != (n_cls,):
            raise ValueError(f"class_weight must have shape ({n_cls},), got {tuple(class_weight.shape)}")
        class_weight = class_weight.to(torch.float32).contiguous()
    for name, flag in (("return_lse", return_lse), ("fp32_weight_grad", fp32_weight_grad)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    check_launchable(*(t for t in (hidden, weight, bias, target, class_weight) if t is not None))
    check_target_range(t2, n_cls, ignore_index)
    h2 = hidden.reshape(-1, hidden.shape[-1])
    if not h2.is_contiguous():
        h2 = h2.contiguous()
    chunk = _chunk_rows(h2.shape[0], n_cls, h2.element_size(), chunk_size)
    loss, lse = _LinearCrossEntropy.apply(h2, weight, bias, t2, class_weight, opts, fp32_weight_grad, chunk, torch.is_grad_enabled())
    if reduction == "none":
        loss = loss.reshape(lead)
    if return_lse:
        return loss, lse.reshape(lead)
    return loss
