"""Softmax and log-softmax on the GPU: forward and backward kernels, launchers and autograd Function.

    softmax(x)_i     = exp(x_i − m) / s,                 s = Σ_j exp(x_j − m),  m = max x
    log_softmax(x)_i = (x_i − m) − log1p(r),             r = s − 1 = Σ_{j ≠ argmax} exp(x_j − m)

Forward reads each row twice: pass 1 builds the online ``(m, s)`` state (block max first, one ``exp`` per entry),
pass 2 writes the output.  The second read is meant to come from L2, not device memory: the grid is persistent
(about one program per multiprocessor, each walking rows ``pid, pid + grid, …``), so only one row per program is
in flight (132 rows of 256 KB = 33 MB on an H200, inside its 60 MB L2), and pass 2 walks the row backwards so
that the blocks read last in pass 1 are read first.  With one program per row, every row is in flight at once
and the second read went to device memory (measured at the three-pass bound on an H200).  The division form
``e / s`` is the accurate one.  log_softmax uses the rest form ``log1p(r)`` so that the most likely class keeps
its relative accuracy (``−r`` instead of a rounded 0).

Backward (the saved output ``y``, upstream ``g``):
    softmax:      dx = y ⊙ (g − Σ g·y)          log_softmax:  dx = g − exp(y) · Σ g

Special values: an all ``−inf`` row gives softmax 0 / log_softmax ``−inf`` and no NaN; ``k`` entries at ``+inf``
share the mass (``1/k``, ``−log k``, other entries 0 / ``−inf``); a NaN makes only its row NaN.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from ._common import acc_dtype, as_int64, config, lse_block_stats, lse_merge, n_programs, softmax_entries

__all__ = ["softmax_rows"]


@triton.jit
def _softmax_fwd_kernel(
    X,  # *[rows, n_cols] input (fp32/fp16/bf16/fp64), unit stride along a row
    stride_x,  # row stride of X
    Y,  # *[rows, n_cols] output, in the input dtype
    stride_y,  # row stride of Y
    n_rows,  # number of rows (the persistent programs walk them)
    n_cols,  # row length (any size; the last block is masked)
    LOG: tl.constexpr,  # False: softmax; True: log_softmax
    ACC: tl.constexpr,  # accumulation dtype: float32, or float64 for float64 rows
    BLOCK: tl.constexpr,  # entries per loop step: 16384 on an H200 (see _common for the measurement)
):
    cols = tl.arange(0, BLOCK)
    n_blocks = tl.cdiv(n_cols, BLOCK)
    # persistent: program p handles rows p, p + P, p + 2P, … so that one row per program is in flight
    for row in range(tl.program_id(0), n_rows, tl.num_programs(0)):
        x_row = X + as_int64(row) * stride_x  # int64: row × stride may pass 2³¹
        y_row = Y + as_int64(row) * stride_y
        m = tl.full((), float("-inf"), ACC)
        if LOG:
            a = tl.full((), -1.0, ACC)  # identity of the rest form
        else:
            a = tl.zeros((), ACC)  # identity of the sum form
        for start in range(0, n_cols, BLOCK):
            mask = start + cols < n_cols
            x = tl.load(x_row + start + cols, mask=mask, other=float("-inf")).to(ACC)
            m_b, a_b = lse_block_stats(x, LOG)
            m, a = lse_merge(m, a, m_b, a_b, LOG)
        if LOG:
            # log1p(r) = log(u)·r/(u − 1), u = 1 + r (Goldberg): exact to a few ulp even for r ≪ 2⁻²⁴
            u = 1.0 + a
            lg = tl.where(u == 1.0, a, tl.log(u) * (a / (u - 1.0)))
        for i in range(0, n_blocks):
            start = (n_blocks - 1 - i) * BLOCK  # backwards: the blocks read last are the likeliest L2 hits
            mask = start + cols < n_cols
            x = tl.load(x_row + start + cols, mask=mask, other=float("-inf")).to(ACC)
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
    ACC: tl.constexpr,  # accumulation dtype: float32, or float64 for float64 rows
    BLOCK: tl.constexpr,  # entries per loop step (the elementwise default of _common; not yet swept)
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    acc = tl.zeros((BLOCK,), ACC)
    for start in range(0, n_cols, BLOCK):
        mask = start + cols < n_cols
        g = tl.load(G + row * stride_g + start + cols, mask=mask, other=0.0).to(ACC)
        if LOG:
            acc += g  # Σ g
        else:
            y = tl.load(Y + row * stride_y + start + cols, mask=mask, other=0.0).to(ACC)
            acc += tl.where(y == 0.0, 0.0, g * y)  # Σ g·y; entries with y = 0 add nothing, even g = inf
    dot = tl.sum(acc, axis=0)
    n_blocks = tl.cdiv(n_cols, BLOCK)
    for i in range(0, n_blocks):
        start = (n_blocks - 1 - i) * BLOCK
        mask = start + cols < n_cols
        g = tl.load(G + row * stride_g + start + cols, mask=mask, other=0.0).to(ACC)
        if LOG:
            y = tl.load(Y + row * stride_y + start + cols, mask=mask, other=float("-inf")).to(ACC)
            p = tl.exp(y)
            dx = g - tl.where(p == 0.0, 0.0, p * dot)
        else:
            y = tl.load(Y + row * stride_y + start + cols, mask=mask, other=0.0).to(ACC)
            dx = tl.where(y == 0.0, 0.0, y * (g - dot))
        tl.store(DX + row * stride_dx + start + cols, dx, mask=mask)


def softmax_forward(x2: torch.Tensor, log: bool) -> torch.Tensor:
    """softmax (or log_softmax) of the rows of ``x2``, in its dtype."""
    rows, n_cols = x2.shape
    y2 = torch.empty((rows, n_cols), dtype=x2.dtype, device=x2.device)
    if y2.numel():
        cfg = config("softmax", n_cols)
        _softmax_fwd_kernel[(n_programs(x2.device, rows, cfg),)](
            x2, x2.stride(0), y2, y2.stride(0), rows, n_cols,
            LOG=log, ACC=acc_dtype(x2)[1], BLOCK=cfg.block, num_warps=cfg.num_warps,
        )
    return y2


def softmax_backward(y2: torch.Tensor, g2: torch.Tensor, log: bool) -> torch.Tensor:
    """The input gradient from the saved output ``y2`` and the upstream ``g2`` (rows with unit stride)."""
    rows, n_cols = y2.shape
    dx = torch.empty((rows, n_cols), dtype=y2.dtype, device=y2.device)
    if dx.numel():
        if g2.stride(-1) != 1:
            g2 = g2.contiguous()
        cfg = config("elementwise", n_cols)
        _softmax_bwd_kernel[(rows,)](
            y2, y2.stride(0), g2, g2.stride(0), dx, dx.stride(0), n_cols,
            LOG=log, ACC=acc_dtype(y2)[1], BLOCK=cfg.block, num_warps=cfg.num_warps,
        )
    return dx


class _Softmax(torch.autograd.Function):
    # forward / setup_context kept apart, so that torch.func transforms can use the Function
    @staticmethod
    def forward(x2: torch.Tensor, log: bool) -> torch.Tensor:  # type: ignore[override]
        return softmax_forward(x2, log)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        ctx.log = inputs[1]
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):  # type: ignore[override]
        (y2,) = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True: the same formulas in differentiable torch operations on the saved output
            # (which carries this Function's graph), so that second derivatives follow
            g = grad.to(y2.dtype)
            if ctx.log:
                return g - torch.exp(y2) * g.sum(-1, keepdim=True), None
            return y2 * (g - (g * y2).sum(-1, keepdim=True)), None
        return softmax_backward(y2, grad, ctx.log), None


def softmax_rows(x: torch.Tensor, log: bool) -> torch.Tensor:
    """Softmax (``log=False``) or log-softmax (``log=True``) of each row of ``x`` [N, C]; [N, C] in x's dtype.

    softmax:     ``exp(x_i − m) / Σ_j exp(x_j − m)``: the shift by the row maximum ``m`` keeps every ``exp`` ≤ 1,
                 and the division form is the accurate one.
    log_softmax: ``(x_i − m) − log1p(Σ_{j≠argmax} exp(x_j − m))``: ``log1p`` of the non-maximal terms keeps the
                 relative accuracy of the largest entry (a confident prediction gives ``−r``, not 0).

    An all ``−inf`` row gives all 0 / all ``−inf`` (never NaN), ``k`` entries at ``+inf`` get ``1/k`` / ``−log k``
    each, and a NaN makes only its own row NaN.  Accumulates in float32 (float64 for float64 rows).
    Differentiable (``dx = y ⊙ (g − Σ g·y)``, ``dx = g − exp(y)·Σ g``), twice as well.

    The arguments are not checked (``logsumexp.torch.softmax`` / ``log_softmax`` validate and reshape to rows).

    Examples
    --------
    Needs a CUDA device (or the interpreter), so not run as a doctest:

    >>> import torch, logsumexp.triton as lt                                          # doctest: +SKIP
    >>> lt.softmax_rows(torch.tensor([[1000.0, 1000.0]], device="cuda"), log=False)  # doctest: +SKIP
    tensor([[0.5000, 0.5000]], device='cuda:0')
    """
    return _Softmax.apply(x, log)
