"""Softmax and log-softmax on the GPU: forward and backward kernels, launchers and autograd Functions.

    softmax(x)_i     = exp(x_i − m) / s,                 s = Σ_j exp(x_j − m),  m = max x
    log_softmax(x)_i = (x_i − m) − log1p(r),             r = s − 1 = Σ_{j ≠ argmax} exp(x_j − m)

Forward: one program per row, two passes over it (pass 1 the online ``(m, s)`` state, block max first and one
``exp`` per entry; pass 2 writes the output, walking the row backwards so that its most recently read blocks are
still in L2).  The division form ``e / s`` is the accurate one (DESIGN.md §3).  log_softmax uses the rest form
``log1p(r)`` so that the most likely class keeps its relative accuracy (``−r`` instead of a rounded 0).

Backward (the saved output ``y``, upstream ``g``):
    softmax:      dx = y ⊙ (g − Σ g·y)          log_softmax:  dx = g − exp(y) · Σ g

Special values: an all ``−inf`` row gives softmax 0 / log_softmax ``−inf`` and no NaN; ``k`` entries at ``+inf``
share the mass (``1/k``, ``−log k``, other entries 0 / ``−inf``); a NaN makes only its row NaN.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import (
    as_rows,
    check_float_tensor,
    check_launchable,
    lse_block_stats,
    lse_merge,
    normalize_dim,
    row_block,
    softmax_entries,
)

__all__ = ["softmax", "log_softmax"]


@triton.jit
def _softmax_fwd_kernel(
    X,  # *[rows, n_cols] input (fp32/fp16/bf16), unit stride along a row
    stride_x,  # row stride of X
    Y,  # *[rows, n_cols] output, in the input dtype
    stride_y,  # row stride of Y
    n_cols,  # row length (any size; the last block is masked)
    LOG: tl.constexpr,  # False: softmax; True: log_softmax
    BLOCK: tl.constexpr,  # entries per loop step (power of two; provisional until measured on a GPU)
):
    row = tl.program_id(0).to(tl.int64)  # int64 row offsets
    x_row = X + row * stride_x
    y_row = Y + row * stride_y
    cols = tl.arange(0, BLOCK)
    m = tl.full((), float("-inf"), tl.float32)
    if LOG:
        a = tl.full((), -1.0, tl.float32)  # identity of the rest form
    else:
        a = tl.zeros((), tl.float32)  # identity of the sum form
    for start in range(0, n_cols, BLOCK):
        mask = start + cols < n_cols
        x = tl.load(x_row + start + cols, mask=mask, other=float("-inf")).to(tl.float32)
        m_b, a_b = lse_block_stats(x, LOG)
        m, a = lse_merge(m, a, m_b, a_b, LOG)
    if LOG:
        # log1p(r) = log(u)·r/(u − 1), u = 1 + r (Goldberg): exact to a few ulp even for r ≪ 2⁻²⁴
        u = 1.0 + a
        lg = tl.where(u == 1.0, a, tl.log(u) * (a / (u - 1.0)))
    n_blocks = tl.cdiv(n_cols, BLOCK)
    for i in range(0, n_blocks):
        start = (n_blocks - 1 - i) * BLOCK  # backwards: the last blocks read are the likeliest L2 hits
        mask = start + cols < n_cols
        x = tl.load(x_row + start + cols, mask=mask, other=float("-inf")).to(tl.float32)
        if LOG:
            d = tl.where(x == m, 0.0, x - m)  # +inf entries: 0, not inf − inf
            y = tl.where(m == float("-inf"), float("-inf"), d - lg)
        else:
            y = softmax_entries(x, m, a, False)
        tl.store(y_row + start + cols, y, mask=mask)


@triton.jit
def _softmax_bwd_kernel(
    Y,  # *[rows, n_cols] forward output (softmax or log_softmax)
    stride_y,  # row stride of Y
    G,  # *[rows, n_cols] upstream gradient
    stride_g,  # row stride of G
    DX,  # *[rows, n_cols] input gradient, in the input dtype (may alias G)
    stride_dx,  # row stride of DX
    n_cols,  # row length
    LOG: tl.constexpr,  # False: softmax backward; True: log_softmax backward
    BLOCK: tl.constexpr,  # entries per loop step (provisional)
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    acc = tl.zeros((BLOCK,), tl.float32)
    for start in range(0, n_cols, BLOCK):
        mask = start + cols < n_cols
        g = tl.load(G + row * stride_g + start + cols, mask=mask, other=0.0).to(tl.float32)
        if LOG:
            acc += g  # Σ g
        else:
            y = tl.load(Y + row * stride_y + start + cols, mask=mask, other=0.0).to(tl.float32)
            acc += tl.where(y == 0.0, 0.0, g * y)  # Σ g·y; entries with y = 0 add nothing, even g = inf
    dot = tl.sum(acc, axis=0)
    n_blocks = tl.cdiv(n_cols, BLOCK)
    for i in range(0, n_blocks):
        start = (n_blocks - 1 - i) * BLOCK
        mask = start + cols < n_cols
        g = tl.load(G + row * stride_g + start + cols, mask=mask, other=0.0).to(tl.float32)
        if LOG:
            y = tl.load(Y + row * stride_y + start + cols, mask=mask, other=float("-inf")).to(tl.float32)
            p = tl.exp(y)
            dx = g - tl.where(p == 0.0, 0.0, p * dot)
        else:
            y = tl.load(Y + row * stride_y + start + cols, mask=mask, other=0.0).to(tl.float32)
            dx = tl.where(y == 0.0, 0.0, y * (g - dot))
        tl.store(DX + row * stride_dx + start + cols, dx, mask=mask)


class _Softmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int, log: bool) -> torch.Tensor:  # type: ignore[override]
        x2, moved = as_rows(x, dim)
        rows, n_cols = x2.shape
        y2 = torch.empty((rows, n_cols), dtype=x.dtype, device=x.device)
        if y2.numel():
            block, warps = row_block(n_cols, x2.element_size())
            _softmax_fwd_kernel[(rows,)](
                x2, x2.stride(0), y2, y2.stride(0), n_cols, LOG=log, BLOCK=block, num_warps=warps
            )
        ctx.save_for_backward(y2)
        ctx.dim, ctx.log, ctx.moved = dim, log, moved
        return y2.reshape(moved).movedim(-1, dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (y2,) = ctx.saved_tensors
        g2, _ = as_rows(grad, ctx.dim)
        rows, n_cols = y2.shape
        dx = torch.empty((rows, n_cols), dtype=y2.dtype, device=y2.device)
        if dx.numel():
            block, warps = row_block(n_cols, y2.element_size())
            _softmax_bwd_kernel[(rows,)](
                y2, y2.stride(0), g2, g2.stride(0), dx, dx.stride(0), n_cols,
                LOG=ctx.log, BLOCK=block, num_warps=warps,
            )
        return dx.reshape(ctx.moved).movedim(-1, ctx.dim), None, None


def _apply(x: torch.Tensor, dim: int, log: bool) -> torch.Tensor:
    check_float_tensor("x", x)
    dim = normalize_dim("dim", dim, x.ndim)
    check_launchable(x)
    if x.ndim == 0:
        return _Softmax.apply(x.reshape(1), 0, log).reshape(())
    return _Softmax.apply(x, dim, log)


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax ``exp(x_i − m) / Σ_j exp(x_j − m)`` along ``dim`` on the GPU (float32 accumulation).

    The shift by the row maximum ``m`` keeps every ``exp`` ≤ 1; the division form is the accurate one.
    An all ``−inf`` slice gives all 0 (never NaN), ``k`` entries at ``+inf`` get ``1/k`` each, and a NaN
    makes only its own slice NaN.  Returns the input dtype; differentiable (``dx = y ⊙ (g − Σ g·y)``).
    CPU tensors run only under ``TRITON_INTERPRET=1``.

    Examples
    --------
    Needs a CUDA device (or the interpreter), so not run as a doctest:

    >>> import torch, logsumexp.triton as lt                        # doctest: +SKIP
    >>> lt.softmax(torch.tensor([1000.0, 1000.0], device="cuda"))   # doctest: +SKIP
    tensor([0.5000, 0.5000], device='cuda:0')
    """
    return _apply(x, dim, False)


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Log-softmax ``(x_i − m) − log1p(Σ_{j≠argmax} exp(x_j − m))`` along ``dim`` on the GPU.

    ``log1p`` of the non-maximal terms keeps the relative accuracy of the largest entry (a confident
    prediction gives ``−r``, not 0).  An all ``−inf`` slice gives all ``−inf`` (never NaN), ``k`` entries at
    ``+inf`` give ``−log k`` there and ``−inf`` elsewhere, a NaN makes only its own slice NaN.  Returns the
    input dtype; differentiable (``dx = g − exp(y)·Σ g``).  CPU tensors run only under ``TRITON_INTERPRET=1``.

    Examples
    --------
    Needs a CUDA device (or the interpreter), so not run as a doctest:

    >>> import torch, logsumexp.triton as lt                            # doctest: +SKIP
    >>> lt.log_softmax(torch.tensor([20.0, 0.0, 0.0], device="cuda"))   # doctest: +SKIP
    tensor([-4.1223e-09, -2.0000e+01, -2.0000e+01], device='cuda:0')
    """
    return _apply(x, dim, True)
