r"""Grouped softmax, log-softmax and LogSumExp on the GPU: kernels, launcher and autograd Function.

The rows of ``x`` [N, F] are grouped; group ``s`` owns rows ``ptr[s] .. ptr[s+1]`` (CSR, the layout graph
libraries keep). Ids in any order are first put in group order with a stable ``argsort`` (then the result is
put back): the sums are then taken in a fixed order, so the result does not depend on the scheduling, as it would
with atomic adds.

One program per group (and block of up to 128 columns) walks its rows in tiles of [BLOCK_R, BLOCK_F] twice. Pass 1 builds each column's
``(m, r)`` state in the rest form of ``_common`` (``r = Σ e^{x − m} − 1``, the maximum's term kept out so that a
dominant entry keeps its relative accuracy), pass 2 writes

    softmax_i = e^{x_i − m} / (1 + r),   log_softmax_i = (x_i − m) − log1p(r),   LSE = m + log1p(r)

(float32 accumulation, float64 for float64 data). The LogSumExp's gradient ``softmax_i · g[s]`` is pass 2 with a
scale (KIND 3). Backward of the normalised forms, from the output ``y``:

    softmax:      dx = y ⊙ (g − Σ_group g·y)          log_softmax:  dx = g − e^y ⊙ Σ_group g

Special groups: empty or all ``−inf`` → LSE ``−inf``, softmax 0, log-softmax ``−inf``, gradient 0; ``k`` entries
``+inf`` → ``1/k`` on them; a NaN makes only its group NaN.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from ._common import acc_dtype, as_int64, lse_block_stats, lse_from_state, lse_merge, softmax_entries

__all__ = ["segment_rows"]

_KINDS = {"softmax": 0, "log_softmax": 1, "lse": 2, "lse_grad": 3}
# A tile is BLOCK_R rows x BLOCK_F columns, at most _TILE entries: BLOCK_F the next power of two >= F up to
# _MAX_F (wider rows take several programs along grid axis 1), BLOCK_R the rest, between 16 and 128 (groups of
# graphs are short, a few to a few hundred edges: a taller tile would be mostly masked lanes). Not yet timed on a
# GPU (none was lent): these are the interpreter-tested defaults, to be measured.
_TILE = 2048
_MAX_F = 128


def _tile(F: int) -> tuple[int, int]:
    """(BLOCK_R, BLOCK_F) for F columns."""
    block_f = min(triton.next_power_of_2(max(F, 1)), _MAX_F)
    return min(max(16, _TILE // block_f), 128), block_f


@triton.jit
def _segment_fwd_kernel(
    X,  # *[N, F] input rows, contiguous, in group order
    PTR,  # *[S + 1] int64 CSR offsets: group s owns rows PTR[s] .. PTR[s+1]
    Y,  # *[N, F] output (KIND 0, 1, 3) or *[S, F] (KIND 2), the input dtype
    G,  # *[S, F] the gradient of each group's LSE (KIND 3 only; else unused)
    F,  # columns (carried axes, flattened)
    KIND: tl.constexpr,  # 0 softmax, 1 log_softmax, 2 LSE, 3 softmax times G[s] (the LSE's gradient)
    ACC: tl.constexpr,  # accumulation dtype: float32, float64 for float64 data
    BLOCK_R: tl.constexpr,  # rows per tile
    BLOCK_F: tl.constexpr,  # columns per tile: the next power of two >= F
):
    s = tl.program_id(0)
    start = tl.load(PTR + s)
    end = tl.load(PTR + s + 1)
    cols = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)  # this program's block of columns
    cmask = cols < F
    rows = tl.arange(0, BLOCK_R)
    m = tl.full((BLOCK_F,), float("-inf"), ACC)
    a = tl.full((BLOCK_F,), -1.0, ACC)  # identity of the rest form
    for r0 in range(start, end, BLOCK_R):
        r = r0 + rows
        mask = (r < end)[:, None] & cmask[None, :]
        offs = as_int64(r)[:, None] * F + cols[None, :]  # int64: N × F may pass 2³¹
        x = tl.load(X + offs, mask=mask, other=float("-inf")).to(ACC)
        m_b, a_b = lse_block_stats(x, True)
        m, a = lse_merge(m, a, m_b, a_b, True)
    if KIND == 2:
        tl.store(Y + as_int64(s) * F + cols, lse_from_state(m, a, True), mask=cmask)
    else:
        if KIND == 1:
            u = 1.0 + a  # log1p(r) by Goldberg's trick, as in _common.lse_from_state
            lg = tl.where(u == 1.0, a, tl.log(u) * (a / (u - 1.0)))
        if KIND == 3:
            gs = tl.load(G + as_int64(s) * F + cols, mask=cmask, other=0.0).to(ACC)
        for r0 in range(start, end, BLOCK_R):
            r = r0 + rows
            mask = (r < end)[:, None] & cmask[None, :]
            offs = as_int64(r)[:, None] * F + cols[None, :]
            x = tl.load(X + offs, mask=mask, other=float("-inf")).to(ACC)
            if KIND == 1:
                d = tl.where(x == m[None, :], 0.0, x - m[None, :])  # +inf entries: 0, not inf − inf
                y = tl.where(m[None, :] == float("-inf"), float("-inf"), d - lg[None, :])
            else:
                y = softmax_entries(x, m[None, :], a[None, :], True)
                if KIND == 3:
                    y = tl.where(y == 0.0, 0.0, y * gs[None, :])  # no part in the group: no gradient
            tl.store(Y + offs, y, mask=mask)


@triton.jit
def _segment_bwd_kernel(
    Yo,  # *[N, F] the forward's output (softmax or log_softmax), in group order
    G,  # *[N, F] upstream gradient
    PTR,  # *[S + 1] int64 CSR offsets
    DX,  # *[N, F] gradient written, the input dtype
    F,  # columns
    LOG: tl.constexpr,  # False: softmax, True: log_softmax
    ACC: tl.constexpr,  # accumulation dtype
    BLOCK_R: tl.constexpr,  # rows per tile
    BLOCK_F: tl.constexpr,  # columns per tile
):
    s = tl.program_id(0)
    start = tl.load(PTR + s)
    end = tl.load(PTR + s + 1)
    cols = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)  # this program's block of columns
    cmask = cols < F
    rows = tl.arange(0, BLOCK_R)
    acc = tl.zeros((BLOCK_F,), ACC)
    for r0 in range(start, end, BLOCK_R):  # pass 1: Σ g·y (softmax) or Σ g (log_softmax) per column
        r = r0 + rows
        mask = (r < end)[:, None] & cmask[None, :]
        offs = as_int64(r)[:, None] * F + cols[None, :]
        g = tl.load(G + offs, mask=mask, other=0.0).to(ACC)
        if LOG:
            acc += tl.sum(g, axis=0)
        else:
            y = tl.load(Yo + offs, mask=mask, other=0.0).to(ACC)
            acc += tl.sum(tl.where(y == 0.0, 0.0, g * y), axis=0)
    for r0 in range(start, end, BLOCK_R):  # pass 2: the gradient
        r = r0 + rows
        mask = (r < end)[:, None] & cmask[None, :]
        offs = as_int64(r)[:, None] * F + cols[None, :]
        g = tl.load(G + offs, mask=mask, other=0.0).to(ACC)
        y = tl.load(Yo + offs, mask=mask, other=0.0).to(ACC)
        if LOG:
            p = tl.exp(y)
            dx = tl.where(p == 0.0, g, g - p * acc[None, :])
        else:
            dx = tl.where(y == 0.0, 0.0, y * (g - acc[None, :]))
        tl.store(DX + offs, dx, mask=mask)


def _launch_fwd(kind: str, x: torch.Tensor, ptr: torch.Tensor, s: int, g: torch.Tensor | None = None) -> torch.Tensor:
    """One forward launch over sorted rows x [N, F] (contiguous) with CSR offsets ptr."""
    N, F = x.shape
    _, acc = acc_dtype(x)
    y = x.new_empty((s, F)) if kind == "lse" else torch.empty_like(x)
    if s == 0 or F == 0:
        return y
    gg = g.contiguous() if g is not None else y  # unused unless KIND 3
    br, bf = _tile(F)
    _segment_fwd_kernel[(s, triton.cdiv(F, bf))](x, ptr, y, gg, F, KIND=_KINDS[kind], ACC=acc, BLOCK_R=br, BLOCK_F=bf)
    return y


def _launch_bwd(y: torch.Tensor, g: torch.Tensor, ptr: torch.Tensor, s: int, log: bool) -> torch.Tensor:
    N, F = y.shape
    _, acc = acc_dtype(y)
    dx = torch.empty_like(y)
    if s == 0 or F == 0:
        return dx
    br, bf = _tile(F)
    _segment_bwd_kernel[(s, triton.cdiv(F, bf))](y, g.contiguous(), ptr, dx, F, LOG=log, ACC=acc, BLOCK_R=br, BLOCK_F=bf)
    return dx


class _SegmentRows(torch.autograd.Function):
    """The grouped function of sorted rows; backward by the kernels (no second derivative)."""

    @staticmethod
    def forward(ctx: Any, kind: str, x: torch.Tensor, ptr: torch.Tensor, s: int) -> torch.Tensor:  # type: ignore[override]
        y = _launch_fwd(kind, x, ptr, s)
        ctx.kind, ctx.s = kind, s
        ctx.save_for_backward(x if kind == "lse" else y, ptr)
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Any:  # type: ignore[override]
        saved, ptr = ctx.saved_tensors
        if ctx.kind == "lse":
            dx = _launch_fwd("lse_grad", saved, ptr, ctx.s, g)
        else:
            dx = _launch_bwd(saved, g, ptr, ctx.s, ctx.kind == "log_softmax")
        return None, dx, None, None


def segment_rows(
    kind: str, x: torch.Tensor, ids: torch.Tensor | None, ptr: torch.Tensor | None, num_segments: int
) -> torch.Tensor:
    """``kind`` ("softmax", "log_softmax", "lse") of the rows of ``x`` [N, F] grouped by ``ids`` (int64, any
    order, in range: not checked here) or CSR offsets ``ptr`` (int64 [S + 1]); differentiable. Returns [N, F]
    or, for "lse", [S, F], in x's dtype."""
    x = x.contiguous()
    if ptr is not None:
        return _SegmentRows.apply(kind, x, ptr.to(torch.int64).contiguous(), num_segments)
    if ids.numel() > 1 and bool((ids[1:] >= ids[:-1]).all()):
        order = None
        xs = x
    else:
        order = torch.argsort(ids, stable=True)
        xs = x.index_select(0, order)
    counts = torch.bincount(ids, minlength=num_segments)
    csr = torch.zeros(num_segments + 1, dtype=torch.int64, device=x.device)
    torch.cumsum(counts, 0, out=csr[1:])
    y = _SegmentRows.apply(kind, xs, csr, num_segments)
    if kind == "lse" or order is None:
        return y
    inv = torch.empty_like(order)
    inv[order] = torch.arange(order.numel(), device=order.device)
    return y.index_select(0, inv)
