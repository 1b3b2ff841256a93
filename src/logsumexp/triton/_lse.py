"""Row LogSumExp on the GPU: forward kernel, backward kernel ``g · softmax``, launcher and autograd Function.

    LSE(x) = m + log Σ_i exp(x_i − m),  m = max_i x_i,   ∂LSE/∂x_i = softmax(x)_i = exp(x_i − m) / s.

One program reads one row once, block by block: each block is reduced with its own maximum first (one ``exp``
per entry) and merged into the running state (see ``_common``).  The state is kept in the rest form
``(m, r)``, ``r = Σ_{i≠argmax} exp(x_i − m)``, and ``LSE = m + log1p(r)``: a dominant entry keeps the relative
accuracy of the small terms (``[0, −40 × 999]`` gives ``999·e⁻⁴⁰ ≈ 4.2e−15``, where ``m + log(1 + r)`` returns 0 in
float32 and is 6 % off in float64).  The ``(m, r)`` of every row (float32, float64 for float64 rows) is saved for
backward, which recomputes ``softmax`` from the input and never stores it.

Special values: an all ``−inf`` (or empty) row gives ``−inf`` and a zero gradient; ``k`` entries at ``+inf`` give
``+inf`` and a gradient of ``1/k`` on them; a NaN makes its row (only) NaN.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from ._common import acc_dtype, config, lse_block_stats, lse_from_state, lse_merge, softmax_entries

__all__ = ["logsumexp_rows"]


@triton.jit
def _lse_fwd_kernel(
    X,  # *[rows, n_cols] input, any float dtype, unit stride along a row
    stride_x,  # elements between the starts of two rows
    LSE,  # *[rows] output, in the input dtype
    M_OUT,  # *[rows] row maximum m in the accumulation dtype, saved for backward
    S_OUT,  # *[rows] r = Σ_{i≠argmax} exp(x_i − m) (the rest form) in the accumulation dtype, saved for backward
    n_cols,  # row length (any size; the last block is masked)
    ACC: tl.constexpr,  # accumulation dtype: float32, or float64 for float64 rows
    BLOCK: tl.constexpr,  # entries per loop step: 8192 on an H200 (the block-size sweep's best, see _common)
    STAGES: tl.constexpr,  # loads issued ahead by the loop (None: Triton's default, the measured form)
):
    row = tl.program_id(0).to(tl.int64)  # int64: row × stride may pass 2³¹
    x_row = X + row * stride_x
    cols = tl.arange(0, BLOCK)
    m = tl.full((), float("-inf"), ACC)
    r = tl.full((), -1.0, ACC)  # the rest form's identity
    for start in tl.range(0, n_cols, BLOCK, num_stages=STAGES):
        mask = start + cols < n_cols
        x = tl.load(x_row + start + cols, mask=mask, other=float("-inf")).to(ACC)
        m_b, r_b = lse_block_stats(x, True)
        m, r = lse_merge(m, r, m_b, r_b, True)
    tl.store(LSE + row, lse_from_state(m, r, True))
    tl.store(M_OUT + row, m)
    tl.store(S_OUT + row, r)


@triton.jit
def _lse_bwd_kernel(
    X,  # *[rows, n_cols] input of the forward pass
    stride_x,  # row stride of X
    G,  # *[rows] upstream gradient of the LSE (any float dtype)
    M,  # *[rows] row maxima from the forward pass (accumulation dtype)
    S,  # *[rows] row rests r = s − 1 from the forward pass (accumulation dtype)
    DX,  # *[rows, n_cols] output gradient, in the input dtype
    stride_dx,  # row stride of DX
    n_cols,  # row length
    ACC: tl.constexpr,  # accumulation dtype (float32, or float64 for float64 rows)
    BLOCK: tl.constexpr,  # entries per program along the row (grid axis 1 covers the row)
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(X + row * stride_x + cols, mask=mask, other=float("-inf")).to(ACC)
    g = tl.load(G + row).to(ACC)
    p = softmax_entries(x, tl.load(M + row), tl.load(S + row), True)
    # g·p with p == 0 must stay 0 even for g = ±inf (the "−inf entries vanish" rule)
    tl.store(DX + row * stride_dx + cols, tl.where(p == 0.0, 0.0, g * p), mask=mask)


def lse_forward(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(LSE in x2's dtype, m, s) of the rows of ``x2``; m and s in the accumulation dtype."""
    rows, n_cols = x2.shape
    acc, acc_tl = acc_dtype(x2)
    lse = torch.empty(rows, dtype=x2.dtype, device=x2.device)
    m = torch.empty(rows, dtype=acc, device=x2.device)
    s = torch.empty(rows, dtype=acc, device=x2.device)
    if rows:
        cfg = config("lse", n_cols)
        _lse_fwd_kernel[(rows,)](
            x2, x2.stride(0), lse, m, s, n_cols,
            ACC=acc_tl, BLOCK=cfg.block, STAGES=cfg.num_stages, num_warps=cfg.num_warps,
        )
    return lse, m, s


def lse_backward(x2: torch.Tensor, m: torch.Tensor, s: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``g[:, None] · softmax(x2)`` from the saved row statistics, in x2's dtype (one read, one write)."""
    rows, n_cols = x2.shape
    dx = torch.empty((rows, n_cols), dtype=x2.dtype, device=x2.device)
    if dx.numel():
        cfg = config("elementwise", n_cols)
        grid = (rows, triton.cdiv(n_cols, cfg.block))
        _lse_bwd_kernel[grid](
            x2, x2.stride(0), g.reshape(-1).contiguous(), m, s, dx, dx.stride(0), n_cols,
            ACC=acc_dtype(x2)[1], BLOCK=cfg.block, num_warps=cfg.num_warps,
        )
    return dx


class _LogSumExp(torch.autograd.Function):
    # forward / setup_context kept apart, so that torch.func transforms can use the Function
    @staticmethod
    def forward(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return lse_forward(x2)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
        (x2,) = inputs
        _, m, s = output
        ctx.mark_non_differentiable(m, s)
        ctx.save_for_backward(x2, m, s)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, _gm: Any, _gs: Any):  # type: ignore[override]
        x2, m, s = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True: a differentiable composite (softmax is itself a Function with a backward)
            from ._softmax import softmax_rows

            return grad.to(x2.dtype).unsqueeze(-1) * softmax_rows(x2, False)
        return lse_backward(x2, m, s, grad)


def logsumexp_rows(x: torch.Tensor) -> torch.Tensor:
    """LogSumExp of each row of ``x`` [N, C] (unit stride along a row): [N] in ``x``'s dtype, differentiable.

    ``LSE(x) = m + log Σ exp(x_i − m)`` with ``m = max(x)``: the shift by the maximum means no term overflows and
    the largest term is exactly 1.  Accumulates in float32 (float64 for float64 rows).  The gradient
    ``g · softmax(x)`` is recomputed in backward from ``x`` and the saved row statistics (one read, one write);
    second derivatives go through :func:`softmax_rows`.

    Special values: an all ``−inf`` (or empty) row gives ``−inf`` with gradient 0 (never NaN); ``k`` entries at
    ``+inf`` give ``+inf`` with gradient ``1/k`` on them; a NaN makes only its own row NaN.

    The arguments are not checked (``logsumexp.torch.logsumexp`` validates them and reshapes to rows).  Runs on
    CUDA tensors, or on CPU tensors through Triton's interpreter (``TRITON_INTERPRET=1`` set before import).

    Examples
    --------
    Needs a CUDA device (or the interpreter), so not run as a doctest:

    >>> import torch, logsumexp.triton as lt                                            # doctest: +SKIP
    >>> lt.logsumexp_rows(torch.tensor([[1000.0, 1000.0]], device="cuda"))             # doctest: +SKIP
    tensor([1000.6931], device='cuda:0')
    """
    return _LogSumExp.apply(x)[0]
