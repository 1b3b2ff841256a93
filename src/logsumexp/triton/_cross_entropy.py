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

The kernel reads each row twice: pass 1 builds the online ``(m, r)`` state and the target terms; pass 2, when a
gradient is wanted, walks the row backwards and writes the gradient.  The grid is persistent (about one program
per multiprocessor, each walking rows ``pid, pid + grid, …``) so that a program's row is still in L2 when pass 2
reads it again (132 rows of 256 KB = 33 MB on an H200, inside its 60 MB L2; with a program per row every row
is in flight and the second read went to device memory).  The gradient is scaled by the reduction's
``1/denominator`` read from device memory (no host synchronisation) and written into a fresh buffer or over the
logits themselves (``inplace_backward=True``).
Backward then only multiplies by the upstream gradient, and skips even that, on the device, where it is 1.
Everything is deterministic: no atomics, the batch reduction is one ``torch.sum`` over per-row losses.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import triton
import triton.language as tl

from .._options import CrossEntropyOptions
from ._common import acc_dtype, as_int64, config, lse_block_stats, lse_merge, n_programs
from ._lse import logsumexp_rows as _logsumexp_rows
from ._softmax import softmax_rows as _softmax_rows

__all__ = ["cross_entropy_rows"]


@triton.jit
def _softcap(x, cap):
    """cap·tanh(x/cap) from one exp: tanh(u) = sign(u)·(1 − e)/(1 + e), e = e^{−2|u|} ≤ 1 never overflows.

    Absolute error a few ulp of ``cap`` (1 − e cancels for |u| ≪ 1); ±inf map to ±cap, NaN stays NaN.
    """
    u = x / cap
    e = tl.exp(-2.0 * tl.abs(u))
    t = (1.0 - e) / (1.0 + e)
    return cap * tl.where(u < 0.0, -t, t)


def _to_float32(value: float) -> float:
    """``value`` rounded to the nearest float32 (ties to even), in plain Python: no tensor, nothing to trace."""
    if value == 0.0 or not math.isfinite(value):
        return value
    mantissa, exponent = math.frexp(value)
    return math.ldexp(round(mantissa * 2.0**24) / 2.0**24, exponent)


def _split(value: float) -> tuple[float, float]:
    """(float32(value), value − float32(value)): Triton passes Python floats as float32 scalars, so a float64
    option travels as two float32 parts, joined in the kernel (exact to ~2⁻⁴⁸ relative)."""
    hi = _to_float32(float(value))
    return hi, _to_float32(float(value) - hi)


@triton.jit
def _joined(hi, lo, ACC: tl.constexpr):
    """The option ``hi + lo`` in the accumulation dtype (float32: ``hi`` itself, as ``lo`` is below its ulp)."""
    return tl.full((), 0.0, ACC) + hi + lo


@triton.jit
def _ce_kernel(
    X,  # *[rows, n_cols] logits (fp32/fp16/bf16), unit stride along a row
    stride_x,  # row stride of X
    DX,  # *[rows, n_cols] gradient output in X's dtype; may be X itself (in place)
    stride_dx,  # row stride of DX
    T,  # *[rows] integer class targets, or *[rows, n_cols] float probabilities (PROB_TARGET)
    stride_t,  # row stride of T (probabilities) or element stride (class targets)
    W,  # *[n_cols] class weights in the accumulation dtype (read only when HAS_WEIGHT)
    LOSS,  # *[rows] per-row loss in the accumulation dtype, before the reduction's scaling
    LSE,  # *[rows] per-row LSE of the (soft-capped) logits, accumulation dtype
    SCALE,  # *gradient scale (accumulation dtype): 1/denominator ("mean"), 1 ("sum" and "none")
    stride_scale,  # 0: one scale for all rows; 1: one per row
    n_rows,  # number of rows (the persistent programs walk them)
    n_cols,  # number of classes C (any size; the last block is masked)
    ignore_index,  # class target value whose rows are skipped
    eps,  # label smoothing ε (used when HAS_SMOOTHING), its float32 part
    eps_lo,  # ε − float32(ε): with ``eps`` it gives ε to ~48 bits for float64 rows (see _split)
    z_loss,  # z-loss coefficient (used when HAS_ZLOSS), its float32 part
    z_loss_lo,  # its remainder
    cap,  # soft cap c > 0 (used when HAS_SOFTCAP), its float32 part
    cap_lo,  # its remainder
    HAS_WEIGHT: tl.constexpr,  # class weights given
    PROB_TARGET: tl.constexpr,  # T holds probabilities instead of class indices
    HAS_SMOOTHING: tl.constexpr,  # ε > 0
    HAS_ZLOSS: tl.constexpr,  # z > 0
    HAS_SOFTCAP: tl.constexpr,  # soft cap set
    COMPUTE_GRAD: tl.constexpr,  # write the gradient (pass 2); off for inference
    ACC: tl.constexpr,  # accumulation dtype: float32, or float64 for float64 logits
    BLOCK: tl.constexpr,  # entries per loop step: 8192 on an H200 (see _common for the measurement)
):
    # persistent: program p handles rows p, p + P, p + 2P, …, so that one row per program is in flight and
    # pass 2 re-reads it from L2
    eps_acc = _joined(eps, eps_lo, ACC)
    z_acc = _joined(z_loss, z_loss_lo, ACC)
    cap_acc = _joined(cap, cap_lo, ACC)
    for row32 in range(tl.program_id(0), n_rows, tl.num_programs(0)):
        _ce_row(
            as_int64(row32), X, stride_x, DX, stride_dx, T, stride_t, W, LOSS, LSE, SCALE, stride_scale,
            n_cols, ignore_index, eps_acc, z_acc, cap_acc,
            HAS_WEIGHT, PROB_TARGET, HAS_SMOOTHING, HAS_ZLOSS, HAS_SOFTCAP, COMPUTE_GRAD, ACC, BLOCK,
        )


@triton.jit
def _ce_row(
    row, X, stride_x, DX, stride_dx, T, stride_t, W, LOSS, LSE, SCALE, stride_scale,
    n_cols, ignore_index, eps, z_loss, cap,
    HAS_WEIGHT: tl.constexpr, PROB_TARGET: tl.constexpr, HAS_SMOOTHING: tl.constexpr, HAS_ZLOSS: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr, COMPUTE_GRAD: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr,
):
    """Loss, LSE and (COMPUTE_GRAD) gradient of one row ``row`` (int64); the arguments are _ce_kernel's."""
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
        x_t = tl.load(x_row + t_safe).to(ACC)
        if HAS_SOFTCAP:
            x_t = _softcap(x_t, cap)
        if HAS_WEIGHT:
            w_t = tl.load(W + t_safe)
        else:
            w_t = 1.0
        # an out-of-range target (not ignored) poisons its row with NaN instead of reading out of bounds
        w_t = tl.where(in_range | (~counted), w_t, float("nan"))

    # ---- pass 1: online (m, r) state in the rest form, plus the target sums --------------------------
    m = tl.full((), float("-inf"), ACC)
    r = tl.full((), -1.0, ACC)
    sum_w = tl.zeros((BLOCK,), ACC)  # Σ w_j (smoothing with weights) or Σ w_j·ỹ_j over x_j < +inf (probabilities)
    sum_wx = tl.zeros((BLOCK,), ACC)  # Σ w_j·x_j or Σ w_j·ỹ_j·x_j over x_j < +inf
    sum_w_inf = tl.zeros((BLOCK,), ACC)  # probabilities: Σ w_j·ỹ_j over x_j = +inf (they share p = 1/k)
    for start in range(0, n_cols, BLOCK):
        mask = start + cols < n_cols
        x = tl.load(x_row + start + cols, mask=mask, other=float("-inf")).to(ACC)
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
            y = tl.load(T + row * stride_t + start + cols, mask=mask, other=0.0).to(ACC)
            if HAS_SMOOTHING:
                y = (1.0 - eps) * y + eps / n_f
            wy = tl.where(mask, w * y, 0.0)
            # +inf logits are kept apart: Σ ỹ·LSE − Σ ỹ·x would be inf − inf = NaN on their row
            at_inf = x == float("inf")
            sum_w_inf += tl.where(at_inf, wy, 0.0)
            sum_w += tl.where(at_inf, 0.0, wy)
            sum_wx += tl.where((wy == 0.0) | at_inf, 0.0, wy * x)  # 0·(−inf) adds 0, not NaN
        elif HAS_SMOOTHING:
            sum_w += w
            sum_wx += tl.where(w == 0.0, 0.0, w * x)

    u = 1.0 + r  # log1p(r) = log(u)·r/(u − 1) (Goldberg), exact to a few ulp for tiny r
    lg = tl.where(u == 1.0, r, tl.log(u) * (r / (u - 1.0)))
    lse = tl.where(m == float("-inf"), float("-inf"), m + lg)

    if PROB_TARGET:
        a_off = tl.sum(sum_w, axis=0)  # target mass on the logits below +inf
        a_inf = tl.sum(sum_w_inf, axis=0)  # target mass on the k logits at +inf (0 on a finite row)
        a = a_off + a_inf
        loss = a * lse - tl.sum(sum_wx, axis=0)
        # a row with k logits at +inf: those have −log p = log k = lg (the rest form counts each +inf as 1),
        # the others p = 0, so any mass there makes the loss +inf, and none adds 0
        loss = tl.where(m == float("inf"), a_inf * lg + tl.where(a_off > 0.0, float("inf"), 0.0), loss)
        # an all −inf row: every p is 0 (−log p = +inf), so the loss is +inf with any mass, 0 without
        loss = tl.where(m == float("-inf"), tl.where(a > 0.0, float("inf"), 0.0), loss)
    else:
        nll = tl.where(x_t == m, 0.0, m - x_t) + lg  # (m − x_t) + log1p(r): keeps small losses accurate
        nll = tl.where(x_t == float("-inf"), float("inf"), nll)  # a target of probability 0, even in an all −inf row
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
            x = tl.load(x_row + start + cols, mask=mask, other=float("-inf")).to(ACC)
            if HAS_SOFTCAP:
                x = _softcap(x, cap)
            p = tl.where(x == m, 1.0, tl.exp(x - m)) * inv_s
            g = coef * p  # coef is finite (the z-loss term is guarded for an all −inf row)
            if HAS_WEIGHT and (PROB_TARGET or HAS_SMOOTHING):
                w = tl.load(W + start + cols, mask=mask, other=0.0)
            else:
                w = 1.0
            if PROB_TARGET:
                y = tl.load(T + row * stride_t + start + cols, mask=mask, other=0.0).to(ACC)
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
    S,  # *[rows] or *[1] upstream gradient, in the accumulation dtype
    stride_s,  # 1: one factor per row; 0: one factor for all rows
    n_cols,  # row length
    BLOCK: tl.constexpr,  # entries per loop step (the elementwise default of _common)
):
    # One program per row: with the usual upstream gradient 1 (loss.backward()) each program does one load and
    # stops, where a program per block of every row (the profile's 0.158 ms at [8192, 128256]) did thousands.
    row = tl.program_id(0).to(tl.int64)
    s = tl.load(S + row * stride_s)  # in the accumulation dtype (float32, float64 for float64 gradients)
    if s != 1.0:  # decided on the device, no host synchronisation
        cols = tl.arange(0, BLOCK)
        for start in range(0, n_cols, BLOCK):
            mask = start + cols < n_cols
            ptr = G + row * stride_g + start + cols
            g = tl.load(ptr, mask=mask, other=0.0)
            # 0 stays 0 (ignored rows, even for s = inf); the product is rounded once, in G's dtype or float32
            tl.store(ptr, tl.where(g == 0.0, 0.0, g.to(s.dtype) * s), mask=mask)


@triton.jit
def _lse_grad_add_kernel(
    X,  # *[rows, n_cols] logits of the forward pass (intact: not used with inplace_backward)
    stride_x,  # row stride of X
    DX,  # *[rows, n_cols] gradient, updated in place: DX += g_lse · ∂LSE/∂x
    stride_dx,  # row stride of DX
    LSE,  # *[rows] LSE of the (soft-capped) logits, accumulation dtype
    G_LSE,  # *[rows] upstream gradient of the returned LSE, accumulation dtype
    n_cols,  # row length
    cap,  # soft cap (used when HAS_SOFTCAP), its float32 part
    cap_lo,  # its remainder (see _split)
    HAS_SOFTCAP: tl.constexpr,  # logits were soft-capped: chain factor 1 − (x/c)²
    ACC: tl.constexpr,  # accumulation dtype: float32, or float64 for float64 logits
    BLOCK: tl.constexpr,  # entries per program (grid axis 1 covers the row)
):
    row = tl.program_id(0).to(tl.int64)
    cap = _joined(cap, cap_lo, ACC)
    g = tl.load(G_LSE + row)
    if g != 0.0:  # decided on the device: an unused LSE costs one load per program
        cols = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(X + row * stride_x + cols, mask=mask, other=float("-inf")).to(ACC)
        if HAS_SOFTCAP:
            x = _softcap(x, cap)
        lse = tl.load(LSE + row)
        p = tl.where(lse == float("-inf"), 0.0, tl.exp(x - lse))  # softmax = ∂LSE/∂x; all −inf row: 0
        d = tl.where(p == 0.0, 0.0, g * p)
        if HAS_SOFTCAP:
            d *= 1.0 - (x / cap) * (x / cap)
        ptr = DX + row * stride_dx + cols
        tl.store(ptr, tl.load(ptr, mask=mask, other=0.0).to(ACC) + d, mask=mask)


def scale_rows_(g2: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Multiply row i of the 2-D ``g2`` in place by ``s[i]`` (or every row by the one-element ``s``).

    The factor is compared with 1 on the device, so the usual ``loss.backward()`` costs one load per row.
    """
    rows, n_cols = g2.shape
    if g2.numel():
        s = s.reshape(-1).to(acc_dtype(g2)[0]).contiguous()
        cfg = config("elementwise", n_cols)
        _scale_rows_kernel[(rows,)](
            g2, g2.stride(0), s, 1 if s.numel() > 1 else 0, n_cols, BLOCK=cfg.block, num_warps=cfg.num_warps
        )
    return g2


def launch_ce(
    x2: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    opts: CrossEntropyOptions,
    dx: torch.Tensor | None,
    scale: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the fused kernel on rows ``x2`` [rows, C]; returns (per-row loss, per-row LSE) in the accumulation dtype.

    weight: class weights already in the accumulation dtype, contiguous (or None).
    dx:     gradient buffer [rows, C] (may share ``x2``'s memory) or None for no gradient.
    scale:  gradient scale in the accumulation dtype, one element (all rows) or ``rows`` elements.
    """
    rows, n_cols = x2.shape
    acc, acc_tl = acc_dtype(x2)
    loss = torch.empty(rows, dtype=acc, device=x2.device)
    lse = torch.empty(rows, dtype=acc, device=x2.device)
    if rows == 0:
        return loss, lse
    if target.is_floating_point() and target.stride(-1) != 1:
        target = target.contiguous()
    cfg = config("ce", n_cols)
    _ce_kernel[(n_programs(x2.device, rows, cfg),)](
        x2, x2.stride(0),
        dx if dx is not None else x2, dx.stride(0) if dx is not None else 0,
        target, target.stride(0),
        weight if weight is not None else loss,  # any pointer: not read without HAS_WEIGHT
        loss, lse,
        scale, 1 if scale.numel() > 1 else 0,
        rows, n_cols, opts.ignore_index,
        *_split(opts.label_smoothing), *_split(opts.z_loss), *_split(opts.softcap or 1.0),
        HAS_WEIGHT=weight is not None,
        PROB_TARGET=target.is_floating_point(),
        HAS_SMOOTHING=opts.label_smoothing > 0.0,
        HAS_ZLOSS=opts.z_loss > 0.0,
        HAS_SOFTCAP=opts.softcap is not None,
        COMPUTE_GRAD=dx is not None,
        ACC=acc_tl,
        BLOCK=cfg.block,
        num_warps=cfg.num_warps,
    )
    return loss, lse


def denominator(
    target: torch.Tensor, weight: torch.Tensor | None, opts: CrossEntropyOptions, rows: int, dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """The "mean" denominator as a 0-d device tensor (computed without a host sync).

    ``num_items`` when given; else the number of rows (probabilities), or ``Σ w_t`` over the counted rows (class
    targets; the count of counted rows without weights), whatever its sign.  "sum" and "none" give 1.  A
    denominator of exactly 0 (nothing counted, or cancelling weights) means loss 0 and gradient 0: see
    :func:`mean_scale` and :func:`reduce_loss`.
    """
    if opts.num_items is not None:
        if isinstance(opts.num_items, torch.Tensor):  # a device count (e.g. all-reduced): no host sync
            return opts.num_items.detach().to(device=device, dtype=dtype).reshape(())
        return torch.full((), float(opts.num_items), dtype=dtype, device=device)  # a fill: no copy, no sync
    if opts.reduction != "mean":
        return torch.ones((), dtype=dtype, device=device)
    if target.is_floating_point():
        return torch.full((), float(max(rows, 1)), dtype=dtype, device=device)
    counted = target != opts.ignore_index
    if weight is None:
        d = counted.sum(dtype=dtype)
    else:
        idx = torch.where(counted, target, 0).clamp(0, weight.numel() - 1)
        d = torch.where(counted, weight[idx], 0.0).sum(dtype=dtype)
    return d


def _nonzero(denom: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(denom != 0, denom with 0 read as 1)``: a select instead of 0/0, so no NaN enters either branch."""
    ok = denom != 0.0  # NaN != 0: a NaN weight sum divides, and the loss is NaN as in torch
    return ok, torch.where(ok, denom, torch.ones_like(denom))


def mean_scale(denom: torch.Tensor) -> torch.Tensor:
    """``1 / denom``, and 0 where the denominator is exactly 0 (nothing counted: gradient 0, never NaN)."""
    ok, safe = _nonzero(denom)
    return torch.where(ok, 1.0 / safe, torch.zeros_like(denom))


def reduce_loss(loss_rows: torch.Tensor, denom: torch.Tensor, reduction: str) -> torch.Tensor:
    """The per-row losses reduced as asked: as they are ("none"), summed, or summed over the denominator
    (0 where it is exactly 0; any other sum divides, negative or NaN included, as in torch)."""
    if reduction == "none":
        return loss_rows
    total = loss_rows.sum()
    if reduction == "sum":
        return total
    ok, safe = _nonzero(denom)
    return torch.where(ok, total / safe, torch.zeros_like(total))


class _CrossEntropy(torch.autograd.Function):
    """Loss (and LSE) in the forward pass, the gradient computed there too and handed over in backward.

    forward returns ``(loss, lse, dx)``; ``dx`` is non-differentiable and only saved for backward (the row
    function drops it), so that backward returns a tensor nobody else holds: autograd then hands it to the
    producer, or installs it as a leaf's ``.grad``, without copying it (it copies a gradient that has other
    references or a layout other than the input's).  In place, ``dx`` is a new tensor object over the logits'
    own memory (``detach()``), never the input object itself, which the caller still holds.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        x2: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        opts: CrossEntropyOptions,
        inplace: bool,
        compute_grad: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        acc, _ = acc_dtype(x2)
        w = None if weight is None else weight.detach().to(acc).contiguous()
        denom = denominator(target, w, opts, x2.shape[0], acc, x2.device)
        dx = None
        if compute_grad:
            dx = x2.detach() if inplace else torch.empty_like(x2)
            if inplace and not torch.compiler.is_compiling():
                # the logits are about to be overwritten: a node that saved them now fails loudly in backward
                torch.autograd.graph.increment_version(x2)
        scale = mean_scale(denom).reshape(1) if opts.reduction == "mean" else denom.reshape(1)
        loss_rows, lse = launch_ce(x2, target, w, opts, dx, scale)
        return reduce_loss(loss_rows, denom, opts.reduction), lse, dx

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
        x2, _, _, opts, inplace, compute_grad = inputs
        _, lse, dx = output
        ctx.set_materialize_grads(False)
        ctx.opts = opts
        ctx.used = False
        # The returned LSE is differentiable when the logits survive the forward pass (not in place):
        # its gradient g_lse · softmax is added in backward from the saved logits.
        ctx.lse_grad = compute_grad and opts.return_lse and not inplace
        # one call: each call of mark_non_differentiable replaces the previous one's set
        ctx.mark_non_differentiable(*[t for t in (dx, None if ctx.lse_grad else lse) if t is not None])
        # The logits are kept for backward only where they are needed (they would otherwise be free after the
        # forward pass): for the LSE's gradient, and under torch.func transforms, whose backward runs in grad
        # mode and gets the gradient as a differentiable expression of the logits.
        keep = not inplace and (ctx.lse_grad or torch._C._are_functorch_transforms_active())
        x_saved, target, weight = (inputs[0], inputs[1], inputs[2]) if keep else (None, None, None)
        ctx.save_for_backward(dx, x_saved, lse if ctx.lse_grad else None, target, weight)

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor | None, grad_lse: torch.Tensor | None, _: Any):  # type: ignore[override]
        if torch.is_grad_enabled():  # create_graph=True, or a torch.func transform
            dx, x2, _, target, weight = ctx.saved_tensors
            if x2 is None:
                raise RuntimeError(
                    "logsumexp.triton.cross_entropy_rows has no second derivative under backward(create_graph=True) "
                    "(its gradient is computed in the forward pass, and the logits were not kept); torch.func "
                    "transforms are supported without inplace_backward"
                )
            g = differentiable_grad(x2, target, weight, ctx.opts, grad_loss, grad_lse if ctx.lse_grad else None)
            return g, None, None, None, None, None
        if ctx.used:
            raise RuntimeError(
                "logsumexp.triton.cross_entropy_rows: backward can run once per forward (the gradient was "
                "computed in the forward pass and is handed over, possibly in the logits' own memory)"
            )
        ctx.used = True
        dx, x2, lse, _, _ = ctx.saved_tensors
        if grad_loss is None:  # only the LSE was used
            grad_loss = torch.zeros((), dtype=dx.dtype, device=dx.device)
        scale_rows_(dx, grad_loss)
        if grad_lse is not None and ctx.lse_grad:
            rows, n_cols = x2.shape
            if dx.numel():
                cfg = config("elementwise", n_cols)
                _lse_grad_add_kernel[(rows, triton.cdiv(n_cols, cfg.block))](
                    x2, x2.stride(0), dx, dx.stride(0), lse, grad_lse.to(lse.dtype).reshape(-1).contiguous(),
                    n_cols, *_split(ctx.opts.softcap or 1.0),
                    HAS_SOFTCAP=ctx.opts.softcap is not None, ACC=acc_dtype(x2)[1],
                    BLOCK=cfg.block, num_warps=cfg.num_warps,
                )
        return dx, None, None, None, None, None


def differentiable_grad(
    x2: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    opts: CrossEntropyOptions,
    grad_loss: torch.Tensor | None,
    grad_lse: torch.Tensor | None,
) -> torch.Tensor:
    """The kernel's gradient written as differentiable torch operations on the logits (for torch.func transforms
    and second derivatives): the formulas of this module's docstring, with softmax and LSE from the row
    Functions (which have second derivatives).  One pass of torch operations per term: not the fast path."""
    acc = torch.float64 if x2.dtype == torch.float64 else torch.float32
    x = x2.to(acc)
    cap = opts.softcap
    z = x if cap is None else cap * torch.tanh(x / cap)
    n, c = z.shape
    p = _softmax_rows(z, False)
    lse = _logsumexp_rows(z)
    lse_finite = torch.where(lse == float("-inf"), torch.zeros_like(lse), lse)  # the kernel's guard
    w = None if weight is None else weight.detach().to(acc)
    denom = denominator(target, w, opts, n, acc, z.device)
    eps, zl = float(opts.label_smoothing), float(opts.z_loss)
    if target.is_floating_point():
        y = target.to(acc)
        if eps:
            y = (1.0 - eps) * y + eps / c
        wy = y if w is None else y * w
        g = (wy.sum(-1) + 2.0 * zl * lse_finite).unsqueeze(-1) * p - wy
    else:
        counted = target != opts.ignore_index
        t_safe = torch.where(counted, target, torch.zeros_like(target)).to(torch.int64)
        w_t = torch.ones(n, dtype=acc, device=z.device) if w is None else w[t_safe]
        hot = torch.zeros_like(z).scatter(1, t_safe.unsqueeze(-1), ((1.0 - eps) * w_t).unsqueeze(-1))
        coef = (1.0 - eps) * w_t + 2.0 * zl * lse_finite
        if eps:  # only with smoothing: a weight no row targets (NaN included) must not reach the gradient
            coef = coef + (eps / c) * (float(c) if w is None else w.sum())
        g = coef.unsqueeze(-1) * p - hot
        if eps:
            g = g - (eps / c) * (torch.ones_like(z) if w is None else w)
        g = torch.where(counted.unsqueeze(-1), g, torch.zeros_like(g))
    if grad_loss is None:
        g = torch.zeros_like(g)
    else:
        up = grad_loss.to(acc)
        if opts.reduction == "mean":
            up = up * mean_scale(denom)
        g = g * (up.unsqueeze(-1) if opts.reduction == "none" else up)
    if grad_lse is not None:
        g = g + grad_lse.to(acc).unsqueeze(-1) * p
    if cap is not None:
        g = g * (1.0 - (z / cap) ** 2)
    return g.to(x2.dtype)


def no_weight_gradient(weight: torch.Tensor | None, name: str) -> None:
    """Refuse a class weight that asks for a gradient (the kernels differentiate the logits only)."""
    if weight is not None and weight.requires_grad and torch.is_grad_enabled():
        raise RuntimeError(
            f"the Triton cross-entropy does not compute a gradient for {name} (as torch's cross_entropy does "
            f"not); pass {name}.detach() or a tensor without requires_grad"
        )


def cross_entropy_rows(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    opts: CrossEntropyOptions,
    inplace_backward: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of each row of ``logits`` [N, C] against ``target`` in one fused kernel (loss and gradient).

    target: [N] integer class indices, or [N, C] probabilities; weight: [C] class weights or None;
    opts: the validated options (``opts.reduction == "none"`` gives [N] losses).  Returns the loss (float32;
    float64 for float64 logits), plus the per-row LSE [N] when ``opts.return_lse``.

    The loss of a row is ``(m − x_t) + log1p(Σ_{j≠argmax} e^{x_j−m})``: the maximum is taken out of the sum so
    nothing overflows, and ``log1p`` keeps a confident prediction's small loss accurate (``lse − x_t`` in
    float32 returns 0 there).  Options: class weights, ``ignore_index``, label smoothing, probabilities, z-loss
    (``z·LSE²`` per counted row), soft cap (``c·tanh(x/c)`` first), ``num_items`` (divide the sum by it).

    The gradient is computed in the forward pass when ``logits`` requires it (and grad mode is on), into a fresh
    buffer, or, with ``inplace_backward=True``, over ``logits`` itself: no extra memory, and no copy on the way to
    ``logits.grad`` (a leaf) or to the producer of ``logits``; but ``logits``' values are gone after the call
    (its version counter is bumped, so a node that saved it fails loudly).  Backward multiplies by the upstream
    gradient (skipped on the device when it is 1) and may run once.  Under torch.func transforms (``grad``, ``vjp``,
    nested for second derivatives) the gradient is built from differentiable torch operations instead; plain
    ``backward(create_graph=True)`` is refused (RuntimeError), as the logits are not kept.  The returned LSE is
    differentiable except in place.  A ``weight`` that requires grad is refused (RuntimeError), as torch does.

    Special values: ignored rows give 0 loss and 0 gradient whatever their logits; a batch with no counted row
    gives loss 0 (never NaN); an out-of-range class target (the caller checks them) gives a NaN loss for its
    row.  The arguments are not checked: ``logsumexp.torch.cross_entropy`` validates and reshapes to rows.

    Examples
    --------
    Needs a CUDA device (or the interpreter), so not run as a doctest:

    >>> import torch, logsumexp.triton as lt                                      # doctest: +SKIP
    >>> from logsumexp._options import CrossEntropyOptions                        # doctest: +SKIP
    >>> x = torch.tensor([[20.0, 0.0, 0.0]], device="cuda")                       # doctest: +SKIP
    >>> lt.cross_entropy_rows(x, torch.tensor([0], device="cuda"), None, CrossEntropyOptions())  # doctest: +SKIP
    tensor(4.1223e-09, device='cuda:0')
    """
    no_weight_gradient(weight, "weight")
    compute_grad = logits.requires_grad and torch.is_grad_enabled()
    loss, lse, _ = _CrossEntropy.apply(logits, target, weight, opts, inplace_backward, compute_grad)
    return (loss, lse) if opts.return_lse else loss
