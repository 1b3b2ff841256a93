"""Fused cross-entropy on the GPU: one kernel for loss and gradient, its launcher and the autograd Function.

For a row of logits ``x`` (after the optional soft cap ``x ← c·tanh(x/c)``), ``lse = LSE(x)``, ``p = softmax(x)``,
class weights ``w`` (all 1 without ``weight``), smoothing ``ε`` over ``C`` classes and z-loss coefficient ``z``:

* class target ``t``:  loss = (1−ε)·w_t·(lse − x_t) + (ε/C)·Σ_j w_j·(lse − x_j) + z·lse²
                       ∂loss/∂x_j = (a + 2z·lse)·p_j − (1−ε)·w_t·[j = t] − (ε/C)·w_j,   a = (1−ε)·w_t + (ε/C)·Σ_j w_j
* probabilities ``y``: with ỹ = (1−ε)·y + ε/C, loss = Σ_j w_j·ỹ_j·(lse − x_j) + z·lse²
                       ∂loss/∂x_j = (A + 2z·lse)·p_j − w_j·ỹ_j,   A = Σ_j w_j·ỹ_j
* soft cap: the gradient is multiplied by ∂x/∂x_raw = 1 − (x/c)².

``lse − x_t`` is computed as ``(m − x_t) + log1p(r)`` with ``m`` the row maximum and ``r`` the sum of the
*other* terms ``Σ_{j≠argmax} e^{x_j−m}``: a confident prediction (``t`` the argmax, loss ≪ 1) keeps its
relative accuracy, where ``lse − x_t`` in float32 returns 0.

Reductions follow torch: "sum" adds the rows; "mean" divides by ``Σ w_t`` over counted rows (class targets) or
by the number of rows (probabilities); ``num_items`` replaces that denominator; the z-loss term is added per
counted row and divided by the same denominator.  Rows whose target is ``ignore_index`` give loss 0 and
gradient 0; a batch with no counted row gives loss 0 (never NaN).

The kernel runs one program per row and reads the row twice: pass 1 builds the online ``(m, r)`` state and
the target terms; pass 2, when a gradient is wanted, walks the row backwards (its last blocks are the likeliest
to still be in L2) and writes the gradient, scaled by the reduction's ``1/denominator`` read from device memory
(no host synchronisation), into a fresh buffer or over the logits themselves (``inplace_backward=True``).
Backward then only multiplies by the upstream gradient, and skips even that, on the device, where it is 1.
Everything is deterministic: no atomics, the batch reduction is one ``torch.sum`` over per-row losses.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from .._options import CrossEntropyOptions
from ._common import (
    check_float_tensor,
    check_launchable,
    lse_block_stats,
    lse_merge,
    row_block,
)

__all__ = ["cross_entropy"]


@triton.jit
def _softcap(x, cap):
    """cap·tanh(x/cap) from one exp: tanh(u) = sign(u)·(1 − e)/(1 + e), e = e^{−2|u|} ≤ 1 never overflows.

    Absolute error a few ulp of ``cap`` (1 − e cancels for |u| ≪ 1); ±inf map to ±cap, NaN stays NaN.
    """
    u = x / cap
    e = tl.exp(-2.0 * tl.abs(u))
    t = (1.0 - e) / (1.0 + e)
    return cap * tl.where(u < 0.0, -t, t)


@triton.jit
def _ce_kernel(
    X,  # *[rows, n_cols] logits (fp32/fp16/bf16), unit stride along a row
    stride_x,  # row stride of X
    DX,  # *[rows, n_cols] gradient output in X's dtype; may be X itself (in place)
    stride_dx,  # row stride of DX
    T,  # *[rows] integer class targets, or *[rows, n_cols] float probabilities (PROB_TARGET)
    stride_t,  # row stride of T (probabilities) or element stride (class targets)
    W,  # *[n_cols] float32 class weights (read only when HAS_WEIGHT)
    LOSS,  # *[rows] float32 per-row loss, before the reduction's scaling
    LSE,  # *[rows] float32 per-row LSE of the (soft-capped) logits
    SCALE,  # *float32 gradient scale: 1/denominator ("mean"), 1 ("sum"), or per-row upstream gradients
    stride_scale,  # 0: one scale for all rows; 1: one per row
    n_cols,  # number of classes C (any size; the last block is masked)
    ignore_index,  # class target value whose rows are skipped
    eps,  # label smoothing ε (used when HAS_SMOOTHING)
    z_loss,  # z-loss coefficient (used when HAS_ZLOSS)
    cap,  # soft cap c > 0 (used when HAS_SOFTCAP)
    HAS_WEIGHT: tl.constexpr,  # class weights given
    PROB_TARGET: tl.constexpr,  # T holds probabilities instead of class indices
    HAS_SMOOTHING: tl.constexpr,  # ε > 0
    HAS_ZLOSS: tl.constexpr,  # z > 0
    HAS_SOFTCAP: tl.constexpr,  # soft cap set
    COMPUTE_GRAD: tl.constexpr,  # write the gradient (pass 2); off for inference
    BLOCK: tl.constexpr,  # entries per loop step (power of two; provisional until measured on a GPU)
):
    row = tl.program_id(0).to(tl.int64)  # int64: row × stride may pass 2³¹
    x_row = X + row * stride_x
    cols = tl.arange(0, BLOCK)
    n_f = n_cols * 1.0  # float C (n_cols may arrive as a specialised constant)

    if PROB_TARGET:
        counted = row >= 0  # every row counts (a tensor, so that tl.where accepts it)
    else:
        t = tl.load(T + row * stride_t).to(tl.int64)
        counted = t != ignore_index
        in_range = (t >= 0) & (t < n_cols)
        t_safe = tl.where(in_range, t, 0)
        x_t = tl.load(x_row + t_safe).to(tl.float32)
        if HAS_SOFTCAP:
            x_t = _softcap(x_t, cap)
        if HAS_WEIGHT:
            w_t = tl.load(W + t_safe)
        else:
            w_t = 1.0
        # an out-of-range target (not ignored) poisons its row with NaN instead of reading out of bounds
        w_t = tl.where(in_range | (~counted), w_t, float("nan"))

    # ---- pass 1: online (m, r) state in the rest form, plus the target sums --------------------------
    m = tl.full((), float("-inf"), tl.float32)
    r = tl.full((), -1.0, tl.float32)
    sum_w = tl.zeros((BLOCK,), tl.float32)  # Σ w_j (smoothing with weights) or Σ w_j·ỹ_j (probabilities)
    sum_wx = tl.zeros((BLOCK,), tl.float32)  # Σ w_j·x_j or Σ w_j·ỹ_j·x_j
    for start in range(0, n_cols, BLOCK):
        mask = start + cols < n_cols
        x = tl.load(x_row + start + cols, mask=mask, other=float("-inf")).to(tl.float32)
        if HAS_SOFTCAP:
            x = tl.where(mask, _softcap(x, cap), float("-inf"))
        m_b, r_b = lse_block_stats(x, True)
        m, r = lse_merge(m, r, m_b, r_b, True)
        if PROB_TARGET or HAS_SMOOTHING:
            if HAS_WEIGHT:
                w = tl.load(W + start + cols, mask=mask, other=0.0)
            else:
                w = tl.where(mask, 1.0, 0.0)
        if PROB_TARGET:
            y = tl.load(T + row * stride_t + start + cols, mask=mask, other=0.0).to(tl.float32)
            if HAS_SMOOTHING:
                y = (1.0 - eps) * y + eps / n_f
            wy = tl.where(mask, w * y, 0.0)
            sum_w += wy
            sum_wx += tl.where(wy == 0.0, 0.0, wy * x)  # 0·(−inf) adds 0, not NaN
        elif HAS_SMOOTHING:
            sum_w += w
            sum_wx += tl.where(w == 0.0, 0.0, w * x)

    u = 1.0 + r  # log1p(r) = log(u)·r/(u − 1) (Goldberg), exact to a few ulp for tiny r
    lg = tl.where(u == 1.0, r, tl.log(u) * (r / (u - 1.0)))
    lse = tl.where(m == float("-inf"), float("-inf"), m + lg)

    if PROB_TARGET:
        a = tl.sum(sum_w, axis=0)
        loss = a * lse - tl.sum(sum_wx, axis=0)
    else:
        nll = tl.where(x_t == m, 0.0, m - x_t) + lg  # (m − x_t) + log1p(r): keeps small losses accurate
        if HAS_SMOOTHING:
            ws = tl.sum(sum_w, axis=0)
            loss = (1.0 - eps) * w_t * nll + (eps / n_f) * (ws * lse - tl.sum(sum_wx, axis=0))
            a = (1.0 - eps) * w_t + (eps / n_f) * ws
        else:
            loss = w_t * nll
            a = w_t
    if HAS_ZLOSS:
        loss += z_loss * lse * lse
        a += 2.0 * z_loss * tl.where(m == float("-inf"), 0.0, lse)
    loss = tl.where(counted, loss, 0.0)
    tl.store(LOSS + row, loss)
    tl.store(LSE + row, lse)

    # ---- pass 2: gradient, written backwards ----------------------------------------------------------
    if COMPUTE_GRAD:
        dx_row = DX + row * stride_dx
        scale = tl.load(SCALE + row * stride_scale)
        coef = tl.where(counted, a * scale, 0.0)  # ignored rows: 0 (their logits may be anything)
        inv_s = tl.where(m == float("-inf"), 0.0, 1.0 / u)
        if not PROB_TARGET:
            hot = tl.where(counted, scale * (1.0 - eps) * w_t, 0.0)
        if HAS_SMOOTHING:
            smooth = tl.where(counted, scale * eps / n_f, 0.0)
        n_blocks = tl.cdiv(n_cols, BLOCK)
        for i in range(0, n_blocks):
            start = (n_blocks - 1 - i) * BLOCK
            mask = start + cols < n_cols
            x = tl.load(x_row + start + cols, mask=mask, other=float("-inf")).to(tl.float32)
            if HAS_SOFTCAP:
                x = _softcap(x, cap)
            p = tl.where(x == m, 1.0, tl.exp(x - m)) * inv_s
            g = coef * p  # coef is finite (the z-loss term is guarded for an all −inf row)
            if HAS_WEIGHT and (PROB_TARGET or HAS_SMOOTHING):
                w = tl.load(W + start + cols, mask=mask, other=0.0)
            else:
                w = 1.0
            if PROB_TARGET:
                y = tl.load(T + row * stride_t + start + cols, mask=mask, other=0.0).to(tl.float32)
                if HAS_SMOOTHING:
                    y = (1.0 - eps) * y + eps / n_f
                g -= scale * (w * y)
            else:
                t_loc = (t_safe - start).to(tl.int32)  # the target's lane in this block (int32 compare)
                g -= tl.where(cols == t_loc, hot, 0.0)
                if HAS_SMOOTHING:
                    g -= smooth * w
            if HAS_SOFTCAP:
                g *= 1.0 - (x / cap) * (x / cap)
            g = tl.where(counted, g, 0.0)
            tl.store(dx_row + start + cols, g, mask=mask)


@triton.jit
def _scale_rows_kernel(
    G,  # *[rows, n_cols] gradient, scaled in place
    stride_g,  # row stride of G
    S,  # *[rows] or *[1] upstream gradient
    stride_s,  # 1: one factor per row; 0: one factor for all rows
    n_cols,  # row length
    BLOCK: tl.constexpr,  # entries per program (grid axis 1 covers the row)
):
    row = tl.program_id(0).to(tl.int64)
    s = tl.load(S + row * stride_s).to(tl.float32)
    if s != 1.0:  # decided on the device: loss.backward() (upstream 1) costs one load per program
        cols = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < n_cols
        ptr = G + row * stride_g + cols
        g = tl.load(ptr, mask=mask, other=0.0).to(tl.float32)
        tl.store(ptr, tl.where(g == 0.0, 0.0, g * s), mask=mask)  # 0 stays 0 (ignored rows, s = inf)


@triton.jit
def _lse_grad_add_kernel(
    X,  # *[rows, n_cols] logits of the forward pass (intact: not used with inplace_backward)
    stride_x,  # row stride of X
    DX,  # *[rows, n_cols] gradient, updated in place: DX += g_lse · ∂LSE/∂x
    stride_dx,  # row stride of DX
    LSE,  # *[rows] float32 LSE of the (soft-capped) logits
    G_LSE,  # *[rows] float32 upstream gradient of the returned LSE
    n_cols,  # row length
    cap,  # soft cap (used when HAS_SOFTCAP)
    HAS_SOFTCAP: tl.constexpr,  # logits were soft-capped: chain factor 1 − (x/c)²
    BLOCK: tl.constexpr,  # entries per program (grid axis 1 covers the row)
):
    row = tl.program_id(0).to(tl.int64)
    g = tl.load(G_LSE + row)
    if g != 0.0:  # decided on the device: an unused LSE costs one load per program
        cols = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(X + row * stride_x + cols, mask=mask, other=float("-inf")).to(tl.float32)
        if HAS_SOFTCAP:
            x = _softcap(x, cap)
        lse = tl.load(LSE + row)
        p = tl.where(lse == float("-inf"), 0.0, tl.exp(x - lse))  # softmax = ∂LSE/∂x; all −inf row: 0
        d = tl.where(p == 0.0, 0.0, g * p)
        if HAS_SOFTCAP:
            d *= 1.0 - (x / cap) * (x / cap)
        ptr = DX + row * stride_dx + cols
        tl.store(ptr, tl.load(ptr, mask=mask, other=0.0).to(tl.float32) + d, mask=mask)


def scale_rows_(g2: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Multiply row i of the 2-D ``g2`` in place by ``s[i]`` (or all rows by the one-element ``s``)."""
    rows, n_cols = g2.shape
    if g2.numel():
        s = s.reshape(-1).contiguous()
        block, warps = row_block(min(n_cols, 4096), g2.element_size())
        grid = (rows, triton.cdiv(n_cols, block))
        _scale_rows_kernel[grid](g2, g2.stride(0), s, 1 if s.numel() > 1 else 0, n_cols, BLOCK=block, num_warps=warps)
    return g2


def launch_ce(
    x2: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    opts: CrossEntropyOptions,
    dx: torch.Tensor | None,
    scale: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the fused kernel on rows ``x2`` [rows, C]; returns float32 (per-row loss, per-row LSE).

    dx:    gradient buffer [rows, C] (may be ``x2`` itself) or None for no gradient.
    scale: float32 gradient scale, one element (all rows) or ``rows`` elements (one per row).
    """
    rows, n_cols = x2.shape
    loss = torch.empty(rows, dtype=torch.float32, device=x2.device)
    lse = torch.empty(rows, dtype=torch.float32, device=x2.device)
    if rows == 0:
        return loss, lse
    prob = target.is_floating_point()
    block, warps = row_block(n_cols, x2.element_size())
    _ce_kernel[(rows,)](
        x2, x2.stride(0),
        dx if dx is not None else x2, dx.stride(0) if dx is not None else 0,
        target, target.stride(0),
        weight if weight is not None else loss,  # any pointer: not read without HAS_WEIGHT
        loss, lse,
        scale, 1 if scale.numel() > 1 else 0,
        n_cols, opts.ignore_index,
        float(opts.label_smoothing), float(opts.z_loss), float(opts.softcap or 1.0),
        HAS_WEIGHT=weight is not None,
        PROB_TARGET=prob,
        HAS_SMOOTHING=opts.label_smoothing > 0.0,
        HAS_ZLOSS=opts.z_loss > 0.0,
        HAS_SOFTCAP=opts.softcap is not None,
        COMPUTE_GRAD=dx is not None,
        BLOCK=block,
        num_warps=warps,
    )
    return loss, lse


def denominator(
    target: torch.Tensor, weight: torch.Tensor | None, opts: CrossEntropyOptions, rows: int, device: torch.device
) -> torch.Tensor:
    """The "mean" denominator as a float32 device scalar, 1 where it would be 0 (computed without a host sync)."""
    if opts.num_items is not None:
        if isinstance(opts.num_items, torch.Tensor):  # a device count (e.g. all-reduced): no host sync
            return opts.num_items.detach().to(device=device, dtype=torch.float32).reshape(())
        return torch.tensor(float(opts.num_items), dtype=torch.float32, device=device)
    if opts.reduction != "mean":
        return torch.ones((), dtype=torch.float32, device=device)
    if target.is_floating_point():
        return torch.tensor(float(max(rows, 1)), dtype=torch.float32, device=device)
    counted = target != opts.ignore_index
    if weight is None:
        d = counted.sum(dtype=torch.float32)
    else:
        idx = torch.where(counted, target, 0).clamp(0, weight.numel() - 1)
        d = torch.where(counted, weight[idx], 0.0).sum(dtype=torch.float32)
    return torch.where(d == 0.0, torch.ones_like(d), d)  # no counted row: loss 0/1 = 0, never NaN


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x2: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        opts: CrossEntropyOptions,
        inplace: bool,
        grad_enabled: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows = x2.shape[0]
        denom = denominator(target, weight, opts, rows, x2.device)
        # needs_input_grad ignores torch.no_grad(): the caller's grad mode comes in as an argument
        need_grad = ctx.needs_input_grad[0] and grad_enabled
        dx = None
        if need_grad:
            dx = x2 if inplace else torch.empty_like(x2)
        scale = (1.0 / denom).reshape(1) if opts.reduction == "mean" else denom.reshape(1)
        loss_rows, lse = launch_ce(x2, target, weight, opts, dx, scale)
        ctx.dx = dx
        ctx.reduction = opts.reduction
        ctx.opts = opts
        # The returned LSE is differentiable when the logits survive the forward pass (not in place):
        # its gradient g_lse · softmax is added in backward from the saved logits.
        lse_grad = dx is not None and opts.return_lse and not inplace
        ctx.set_materialize_grads(False)
        if lse_grad:
            ctx.save_for_backward(x2, lse)
        if opts.reduction == "none":
            loss = loss_rows
        elif opts.reduction == "sum":
            loss = loss_rows.sum()
        else:
            loss = loss_rows.sum() / denom
        if not lse_grad:
            ctx.mark_non_differentiable(lse)
        return loss, lse

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor | None, grad_lse: torch.Tensor | None):  # type: ignore[override]
        dx = ctx.dx
        if dx is None:
            raise RuntimeError(
                "logsumexp.triton.cross_entropy: backward can run once per forward (the gradient was computed "
                "in the forward pass and is handed over, possibly in the logits' own memory)"
            )
        ctx.dx = None
        if grad_loss is None:  # only the LSE was used
            grad_loss = torch.zeros((), dtype=torch.float32, device=dx.device)
        scale_rows_(dx, grad_loss.to(torch.float32))
        if grad_lse is not None and ctx.saved_tensors:
            x2, lse = ctx.saved_tensors
            rows, n_cols = x2.shape
            if dx.numel():
                block, warps = row_block(min(n_cols, 4096), x2.element_size())
                _lse_grad_add_kernel[(rows, triton.cdiv(n_cols, block))](
                    x2, x2.stride(0), dx, dx.stride(0), lse, grad_lse.to(torch.float32).reshape(-1).contiguous(),
                    n_cols, float(ctx.opts.softcap or 1.0),
                    HAS_SOFTCAP=ctx.opts.softcap is not None, BLOCK=block, num_warps=warps,
                )
        return dx, None, None, None, None, None


def check_ce_args(
    input: torch.Tensor, target: object, weight: object
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Validate shapes and dtypes (TypeError / ValueError naming the argument); returns (input, target, weight)."""
    check_float_tensor("input", input)
    if input.ndim == 0:
        raise ValueError("input must have a class dimension (shape [C], [N, C] or [N, C, d1, ...]), got a 0-d tensor")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    c_dim = 0 if input.ndim == 1 else 1
    n_cls = input.shape[c_dim]
    if n_cls == 0:
        raise ValueError("input must have at least one class, got a class dimension of size 0")
    if target.is_floating_point():
        if target.shape != input.shape:
            raise ValueError(
                f"probability target must have input's shape {tuple(input.shape)}, got {tuple(target.shape)}"
            )
    elif target.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        expected = input.shape[:c_dim] + input.shape[c_dim + 1 :]
        if target.shape != expected:
            raise ValueError(f"class target must have shape {tuple(expected)}, got {tuple(target.shape)}")
    else:
        raise TypeError(f"target must hold integer class indices or float probabilities, got {target.dtype}")
    if weight is not None:
        if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
            raise TypeError(f"weight must be a floating-point torch.Tensor or None, got {type(weight).__name__}")
        if weight.shape != (n_cls,):
            raise ValueError(f"weight must have shape ({n_cls},) (one per class), got {tuple(weight.shape)}")
        weight = weight.to(torch.float32).contiguous()
    return input, target, weight


def check_target_range(target: torch.Tensor, n_cls: int, ignore_index: int) -> None:
    """IndexError naming the first out-of-range class target and its position; CPU tensors only (no sync on GPU)."""
    if target.is_floating_point() or target.device.type != "cpu" or target.numel() == 0:
        return
    bad = (target != ignore_index) & ((target < 0) | (target >= n_cls))
    if bool(bad.any()):
        pos = tuple(int(i) for i in bad.nonzero()[0])
        raise IndexError(f"target {int(target[pos])} at position {pos} is out of range for {n_cls} classes")


def to_rows(input: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """[C] / [N, C] / [N, C, d...] logits to [rows, C] (class stride 1) and targets to [rows] / [rows, C]."""
    if input.ndim == 1:
        x2, out_shape = input.unsqueeze(0), ()
        t2 = target.reshape(1, -1) if target.is_floating_point() else target.reshape(1)
    elif input.ndim == 2:
        x2, t2, out_shape = input, target, (input.shape[0],)
    else:
        x2 = input.movedim(1, -1).reshape(-1, input.shape[1])
        t2 = target.movedim(1, -1).reshape(-1, input.shape[1]) if target.is_floating_point() else target.reshape(-1)
        out_shape = (input.shape[0],) + tuple(input.shape[2:])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    if t2.is_floating_point() and t2.stride(-1) != 1:
        t2 = t2.contiguous()
    return x2, t2, out_shape


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
    num_items: float | None = None,
    return_lse: bool = False,
    inplace_backward: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of logits ``input`` against ``target`` in one fused Triton kernel (loss and gradient).

    A drop-in for ``torch.nn.functional.cross_entropy`` (class dimension 1 for N-d input, class indices or
    probabilities, ``weight``, ``ignore_index``, ``label_smoothing``, all reductions) plus ``z_loss``
    (``z·LSE²`` per counted row), ``softcap`` (``c·tanh(x/c)`` first), ``num_items`` (divide the sum by this
    count) and ``return_lse`` (also return the float32 per-row LSE; differentiable, except with
    ``inplace_backward=True``, where the logits it would need in backward are gone).

    The loss of a row is ``(m − x_t) + log1p(Σ_{j≠argmax} e^{x_j−m})``: the maximum is taken out of the sum
    so nothing overflows, and ``log1p`` keeps a confident prediction's small loss accurate.  The loss is
    float32 whatever the input dtype; the gradient has the input's dtype.

    The gradient is computed in the forward pass (when ``input`` requires it) and written into a fresh buffer,
    or, with ``inplace_backward=True``, over ``input`` itself: no extra memory, but ``input``'s values are
    gone after the call (do not use them, nor let another autograd node save them).  Backward multiplies by
    the upstream gradient (skipped on the device when it is 1) and may run once.

    Special values: ignored rows give 0 loss and 0 gradient whatever their logits; a batch with no counted
    row gives loss 0 (torch returns NaN); an out-of-range class target raises IndexError for CPU tensors and
    gives a NaN loss for its row on CUDA (checking it there would cost a host sync).

    Needs CUDA tensors (CPU tensors only under ``TRITON_INTERPRET=1``).

    Examples
    --------
    Needs a CUDA device (or the interpreter), so not run as a doctest:

    >>> import torch, logsumexp.triton as lt                              # doctest: +SKIP
    >>> x = torch.tensor([[20.0, 0.0, 0.0]], device="cuda")               # doctest: +SKIP
    >>> lt.cross_entropy(x, torch.tensor([0], device="cuda"))             # doctest: +SKIP
    tensor(4.1223e-09, device='cuda:0')
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
    if not isinstance(inplace_backward, bool):
        raise TypeError(f"inplace_backward must be a bool, got {type(inplace_backward).__name__}")
    input, target, weight = check_ce_args(input, target, weight)
    check_launchable(*(t for t in (input, target, weight) if t is not None))
    n_cls = input.shape[0 if input.ndim == 1 else 1]
    check_target_range(target, n_cls, ignore_index)
    x2, t2, out_shape = to_rows(input, target)
    loss, lse = _CrossEntropy.apply(x2, t2, weight, opts, inplace_backward, torch.is_grad_enabled())
    if reduction == "none":
        loss = loss.reshape(out_shape)
    if return_lse:
        return loss, lse.reshape(out_shape)
    return loss

