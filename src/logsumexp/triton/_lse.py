"""Row LogSumExp on the GPU: forward kernel, backward kernel ``g · softmax``, launcher and autograd Function.

    LSE(x) = m + log Σ_i exp(x_i − m),  m = max_i x_i,   ∂LSE/∂x_i = softmax(x)_i = exp(x_i − m) / s.

One program reads one row once, block by block: each block is reduced with its own maximum first (one ``exp``
per entry) and merged into the running ``(m, s)`` state (see ``_common``).  The float32 ``(m, s)`` of every row
is saved for backward, which recomputes ``softmax`` from the input and never stores it.

Special values (DESIGN.md §2): an all ``−inf`` (or empty) row gives ``−inf`` and a zero gradient; ``k`` entries
at ``+inf`` give ``+inf`` and a gradient of ``1/k`` on them; a NaN makes its row (only) NaN.
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
    lse_from_state,
    lse_merge,
    normalize_dim,
    row_block,
    softmax_entries,
)

__all__ = ["logsumexp"]


@triton.jit
def _lse_fwd_kernel(
    X,  # *[rows, n_cols] input, any float dtype, unit stride along a row
    stride_x,  # elements between the starts of two rows
    LSE,  # *[rows] output, in the output dtype
    M_OUT,  # *[rows] float32: row maximum m, saved for backward
    S_OUT,  # *[rows] float32: s = Σ exp(x − m), saved for backward
    n_cols,  # row length (any size; the last block is masked)
    BLOCK: tl.constexpr,  # entries per loop step (power of two, provisional until measured)
):
    row = tl.program_id(0).to(tl.int64)  # int64: row × stride may pass 2³¹
    x_row = X + row * stride_x
    cols = tl.arange(0, BLOCK)
    m = tl.full((), float("-inf"), tl.float32)
    s = tl.zeros((), tl.float32)
    for start in range(0, n_cols, BLOCK):
        mask = start + cols < n_cols
        x = tl.load(x_row + start + cols, mask=mask, other=float("-inf")).to(tl.float32)
        m_b, s_b = lse_block_stats(x, False)
        m, s = lse_merge(m, s, m_b, s_b, False)
    tl.store(LSE + row, lse_from_state(m, s, False))
    tl.store(M_OUT + row, m)
    tl.store(S_OUT + row, s)


@triton.jit
def _lse_bwd_kernel(
    X,  # *[rows, n_cols] input of the forward pass
    stride_x,  # row stride of X
    G,  # *[rows] upstream gradient of the LSE (any float dtype)
    M,  # *[rows] float32 row maxima from the forward pass
    S,  # *[rows] float32 row sums from the forward pass
    DX,  # *[rows, n_cols] output gradient, in the input dtype
    stride_dx,  # row stride of DX
    n_cols,  # row length
    BLOCK: tl.constexpr,  # entries per program along the row (grid axis 1 covers the row)
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(X + row * stride_x + cols, mask=mask, other=float("-inf")).to(tl.float32)
    g = tl.load(G + row).to(tl.float32)
    p = softmax_entries(x, tl.load(M + row), tl.load(S + row), False)
    # g·p with p == 0 must stay 0 even for g = ±inf (the "−inf entries vanish" rule)
    tl.store(DX + row * stride_dx + cols, tl.where(p == 0.0, 0.0, g * p), mask=mask)


def _lse_rows(x2: torch.Tensor, out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows, n_cols = x2.shape
    lse = torch.empty(rows, dtype=out_dtype, device=x2.device)
    m = torch.empty(rows, dtype=torch.float32, device=x2.device)
    s = torch.empty(rows, dtype=torch.float32, device=x2.device)
    if rows:
        block, warps = row_block(n_cols, x2.element_size())
        _lse_fwd_kernel[(rows,)](x2, x2.stride(0), lse, m, s, n_cols, BLOCK=block, num_warps=warps)
    return lse, m, s


class _LogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int, keepdim: bool) -> torch.Tensor:  # type: ignore[override]
        x2, moved = as_rows(x, dim)
        lse, m, s = _lse_rows(x2, x.dtype)
        ctx.save_for_backward(x2, m, s)
        ctx.dim, ctx.keepdim, ctx.moved, ctx.shape = dim, keepdim, moved, x.shape
        out = lse.reshape(moved[:-1])
        return out.unsqueeze(dim) if keepdim else out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x2, m, s = ctx.saved_tensors
        g = grad.squeeze(ctx.dim) if ctx.keepdim else grad
        g = g.reshape(-1).contiguous()
        rows, n_cols = x2.shape
        dx = torch.empty((rows, n_cols), dtype=x2.dtype, device=x2.device)
        if dx.numel():
            block, warps = row_block(n_cols, x2.element_size())
            grid = (rows, triton.cdiv(n_cols, block))
            _lse_bwd_kernel[grid](x2, x2.stride(0), g, m, s, dx, dx.stride(0), n_cols, BLOCK=block, num_warps=warps)
        return dx.reshape(ctx.moved).movedim(-1, ctx.dim), None, None


def logsumexp(x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
    """LogSumExp of ``x`` along ``dim`` on the GPU (CPU tensors only under ``TRITON_INTERPRET=1``).

    ``LSE(x) = m + log Σ exp(x_i − m)`` with ``m = max(x)``: the shift by the maximum means no term
    overflows, and the largest term is exactly 1.  Accumulates in float32; returns the input dtype.
    Differentiable: the gradient is ``g · softmax(x)``, recomputed from ``x`` and the saved float32 row
    statistics.

    Special values: an all ``−inf`` (or empty) slice gives ``−inf`` with gradient 0 (never NaN); ``k``
    entries at ``+inf`` give ``+inf`` with gradient ``1/k`` on them; a NaN makes only its own slice NaN.

    Parameters
    ----------
    x : torch.Tensor
        float32, float16 or bfloat16, on a CUDA device.
    dim : int
        The dimension to reduce.
    keepdim : bool
        Keep ``dim`` with size 1.

    Examples
    --------
    Needs a CUDA device (or ``TRITON_INTERPRET=1`` set before import), so not run as a doctest:

    >>> import torch, logsumexp.triton as lt                        # doctest: +SKIP
    >>> lt.logsumexp(torch.tensor([[1000.0, 1000.0]], device="cuda"), dim=-1)  # doctest: +SKIP
    tensor([1000.6931], device='cuda:0')
    """
    check_float_tensor("x", x)
    if not isinstance(keepdim, bool):
        raise TypeError(f"keepdim must be a bool, got {type(keepdim).__name__}")
    dim = normalize_dim("dim", dim, x.ndim)
    check_launchable(x)
    if x.ndim == 0:
        x = x.reshape(1)
        return _LogSumExp.apply(x, 0, False)
    return _LogSumExp.apply(x, dim, keepdim)
