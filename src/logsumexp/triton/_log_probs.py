"""Per-token log-probabilities and entropy on the GPU: kernels, launchers and autograd Functions.

For a row ``z = x / T`` with ``m = max z`` (one arg max ``k``), ``r = Σ_{i≠k} e^{z_i − m}`` (the rest form of
``_common``) and ``B′ = Σ_{i≠k} (z_i − m) e^{z_i − m} ≤ 0``:

* ``log p(y) = −((m − z_y) + log1p(r))``   (0 at ignored tokens)
* ``H = log1p(r) − B′/(1 + r)``            (two non-negative terms: no cancellation)
* ``∂/∂z_i = g_lp([i = y] − p_i) − g_H p_i (z_i − E[z])``, ``E[z] − m = B′/(1 + r)``, ``p_i = e^{z_i − m}/(1 + r)``.

The forward kernel reads each row twice: pass 1 builds ``(m, r)`` online (``lse_block_stats`` / ``lse_merge``),
pass 2 sums ``B′`` against the final maximum (only when the entropy is asked for). It stores the per-row
``m``, ``1 + r`` and ``E[z] − m`` (float32), from which the backward kernel writes the gradient in one more
read: the upstream gradient of each token is only known there. Nothing is validated here:
``logsumexp.torch.log_probs`` checks the arguments and reshapes to rows.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from ._common import acc_dtype, as_int64, config, exp_accurate, lse_block_stats, lse_merge

__all__ = ["linear_log_probs_rows", "log_probs_rows"]


@triton.jit
def _log_probs_fwd_kernel(
    X,  # *[rows, n_cols] logits (fp32/fp16/bf16/fp64), unit stride along a row
    stride_x,  # row stride of X
    Y,  # *[rows] int64 tokens
    LP,  # *[rows] log p(token), accumulation dtype
    ENT,  # *[rows] entropy (written when ENTROPY)
    M,  # *[rows] row maximum of z = x / T
    S,  # *[rows] 1 + r (the softmax denominator against M)
    EBAR,  # *[rows] E[z] − m (written when ENTROPY; only the entropy's gradient reads it)
    n_cols,  # vocabulary size (any; the last block is masked)
    ignore_index,  # token value that gives log p = 0
    temperature,  # T > 0
    ENTROPY: tl.constexpr,  # also compute B′, the entropy and E[z] − m
    ACC: tl.constexpr,  # accumulation dtype: float32, or float64 for float64 logits
    BLOCK: tl.constexpr,  # entries per loop step (the "lse" configuration of _common)
):
    row = as_int64(tl.program_id(0))
    x_row = X + row * stride_x
    cols = tl.arange(0, BLOCK)
    m = tl.full((), float("-inf"), ACC)
    r = tl.full((), -1.0, ACC)
    for start in range(0, n_cols, BLOCK):
        mask = start + cols < n_cols
        z = tl.load(x_row + start + cols, mask=mask, other=float("-inf")).to(ACC) / temperature
        m_b, r_b = lse_block_stats(z, True)
        m, r = lse_merge(m, r, m_b, r_b, True)
    r = tl.where(m == float("-inf"), 0.0, r)  # an all −inf row has no mass (its r is meaningless)
    u = 1.0 + r
    lg = tl.where(u == 1.0, r, tl.log(u) * (r / (u - 1.0)))  # log1p(r) (Goldberg), exact for tiny r
    y = tl.load(Y + row)
    counted = y != ignore_index
    y_safe = tl.where(counted & (y >= 0) & (y < n_cols), y, 0)
    z_y = tl.load(x_row + y_safe).to(ACC) / temperature
    nll = tl.where(z_y == m, 0.0, m - z_y) + lg
    nll = tl.where(m == float("-inf"), float("inf"), nll)
    tl.store(LP + row, tl.where(counted, -nll, 0.0))
    tl.store(M + row, m)
    tl.store(S + row, u)
    if ENTROPY:
        acc_b = tl.zeros((BLOCK,), ACC)
        for start in range(0, n_cols, BLOCK):
            mask = start + cols < n_cols
            z = tl.load(x_row + start + cols, mask=mask, other=float("-inf")).to(ACC) / temperature
            d = z - m
            e = exp_accurate(d)
            # the maximum's own term is 0·1; entries of probability 0 (−inf) add 0, never −inf·0
            acc_b += tl.where((z == m) | (e == 0.0), 0.0, d * e)
        b = tl.where(tl.abs(m) == float("inf"), 0.0, tl.sum(acc_b, axis=0))
        b = tl.where(m != m, m, b)  # NaN rows stay NaN
        ebar = b / u
        tl.store(EBAR + row, ebar)
        tl.store(ENT + row, lg - ebar)


@triton.jit
def _log_probs_bwd_kernel(
    X,  # *[rows, n_cols] logits of the forward pass
    stride_x,  # row stride of X
    DX,  # *[rows, n_cols] gradient output in X's dtype (or a float32 chunk buffer)
    stride_dx,  # row stride of DX
    Y,  # *[rows] int64 tokens
    G_LP,  # *[rows] upstream gradient of log p (read when HAS_GLP), accumulation dtype
    G_H,  # *[rows] upstream gradient of the entropy (read when HAS_GH)
    M,  # *[rows] saved row maximum
    S,  # *[rows] saved 1 + r
    EBAR,  # *[rows] saved E[z] − m
    n_cols,  # vocabulary size
    ignore_index,  # token value without log-prob gradient
    temperature,  # T > 0
    HAS_GLP: tl.constexpr,  # log p was used
    HAS_GH: tl.constexpr,  # the entropy was used
    ACC: tl.constexpr,  # accumulation dtype
    BLOCK: tl.constexpr,  # entries per program (grid axis 1 covers the row)
):
    row = as_int64(tl.program_id(0))
    cols = as_int64(tl.program_id(1)) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    z = tl.load(X + row * stride_x + cols, mask=mask, other=float("-inf")).to(ACC) / temperature
    m = tl.load(M + row)
    s = tl.load(S + row)
    y = tl.load(Y + row)
    counted = y != ignore_index
    d = tl.where(z == m, 0.0, z - m)  # exactly 0 on the maximum, also for the k entries at +inf
    p = tl.where(z == m, 1.0, tl.exp(d)) / s
    p = tl.where(m == float("-inf"), 0.0, p)  # an all −inf row: no mass, no gradient
    if HAS_GLP:
        gv = tl.where(counted, tl.load(G_LP + row), 0.0)
    else:
        gv = 0.0
    coef = gv + tl.zeros((BLOCK,), ACC)
    if HAS_GH:
        gh = tl.load(G_H + row)
        ebar = tl.load(EBAR + row)
        coef += tl.where(tl.abs(m) == float("inf"), 0.0, gh * (d - ebar))
    g = -tl.where(p == 0.0, 0.0, p * coef)
    g += tl.where(counted & (cols == y), gv, 0.0)
    tl.store(DX + row * stride_dx + cols, g / temperature, mask=mask)


def _forward(x2: torch.Tensor, tokens: torch.Tensor, ignore_index: int, temperature: float, entropy: bool):
    rows, n_cols = x2.shape
    acc, acc_tl = acc_dtype(x2)
    out = [torch.empty(rows, dtype=acc, device=x2.device) for _ in range(5)]
    lp, ent, m, s, ebar = out
    if not entropy:
        ebar.zero_()
    if rows:
        cfg = config("lse", n_cols)
        _log_probs_fwd_kernel[(rows,)](
            x2, x2.stride(0), tokens, lp, ent, m, s, ebar, n_cols, ignore_index, float(temperature),
            ENTROPY=entropy, ACC=acc_tl, BLOCK=cfg.block, num_warps=cfg.num_warps,
        )
    return lp, ent, m, s, ebar


def _backward(x2, tokens, g_lp, g_h, m, s, ebar, ignore_index, temperature, out):
    rows, n_cols = x2.shape
    acc, acc_tl = acc_dtype(x2)
    if rows and n_cols:
        cfg = config("elementwise", n_cols)
        dummy = m
        _log_probs_bwd_kernel[(rows, triton.cdiv(n_cols, cfg.block))](
            x2, x2.stride(0), out, out.stride(0), tokens,
            dummy if g_lp is None else g_lp.to(acc).contiguous(), dummy if g_h is None else g_h.to(acc).contiguous(),
            m, s, ebar, n_cols, ignore_index, float(temperature),
            HAS_GLP=g_lp is not None, HAS_GH=g_h is not None, ACC=acc_tl, BLOCK=cfg.block, num_warps=cfg.num_warps,
        )
    return out


def _differentiable(x2, tokens, g_lp, g_h, ignore_index, temperature):
    """The gradient as out-of-place torch operations (torch.func, create_graph): not the fast path."""
    acc = torch.float64 if x2.dtype == torch.float64 else torch.float32
    z = x2.to(acc) / temperature
    p = torch.softmax(z, -1)
    p = torch.where(torch.isnan(p) & ~torch.isnan(z).any(-1, keepdim=True), 0.0, p)  # all −inf rows
    grad = torch.zeros_like(z)
    if g_h is not None:
        t = torch.where(p > 0, z - z.detach().amax(-1, keepdim=True), 0.0)
        grad = grad - g_h.to(acc).unsqueeze(-1) * p * (t - (p * t).sum(-1, keepdim=True))
    if g_lp is not None:
        counted = tokens != ignore_index
        gv = torch.where(counted, g_lp.to(acc), 0.0)
        hot = torch.zeros_like(z).scatter(-1, torch.where(counted, tokens, 0).unsqueeze(-1), gv.unsqueeze(-1))
        grad = grad + hot - gv.unsqueeze(-1) * p
    return (grad / temperature).to(x2.dtype)


class _LogProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x2, tokens, ignore_index: int, temperature: float, entropy: bool):
        lp, ent, m, s, ebar = _forward(x2, tokens, ignore_index, temperature, entropy)
        ctx.save_for_backward(x2, tokens, m, s, ebar)
        ctx.opts = (ignore_index, temperature)
        ctx.set_materialize_grads(False)
        return lp, ent

    @staticmethod
    def backward(ctx: Any, g_lp, g_h):
        x2, tokens, m, s, ebar = ctx.saved_tensors
        if g_lp is None and g_h is None:
            return None, None, None, None, None
        if torch.is_grad_enabled():
            return _differentiable(x2, tokens, g_lp, g_h, *ctx.opts), None, None, None, None
        out = torch.empty_like(x2, memory_format=torch.contiguous_format)
        return _backward(x2, tokens, g_lp, g_h, m, s, ebar, *ctx.opts, out), None, None, None, None


def log_probs_rows(x2: torch.Tensor, tokens: torch.Tensor, ignore_index: int, temperature: float,
                   entropy: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``log p(token)`` and entropy of rows ``x2`` [N, V] (unit stride along a row), tokens [N] int64.

    Returns float32 (float64 for float64) ``(log p, entropy)``; the entropy is uninitialised unless asked
    for. Differentiable in ``x2`` for any upstream gradient of either output.

    Examples
    --------
    Needs a CUDA device (or the interpreter), so not run as a doctest:

    >>> import torch, logsumexp.triton._log_probs as K                            # doctest: +SKIP
    >>> x = torch.tensor([[30.0, 0.0, 0.0]], device="cuda")                       # doctest: +SKIP
    >>> K.log_probs_rows(x, torch.tensor([0], device="cuda"), -100, 1.0, True)    # doctest: +SKIP
    (tensor([-1.8715e-13], device='cuda:0'), tensor([5.8017e-12], device='cuda:0'))
    """
    return _LogProbs.apply(x2, tokens.contiguous(), ignore_index, temperature, entropy)


# Tokens per chunk of the linear form: logits of 256 MiB (the linear cross-entropy's budget) in float32.
_CHUNK_BYTES = 256 * 2**20


def _chunk_logits(h, weight, bias):
    return torch.addmm(bias, h, weight.t()) if bias is not None else h @ weight.t()


class _LinearLogProbs(torch.autograd.Function):
    """Forward: per chunk of tokens, one product and the forward kernel. Backward: per chunk, the product
    again, the backward kernel into a float32 chunk buffer, then the two gradient products."""

    @staticmethod
    def forward(ctx: Any, h, weight, bias, tokens, ignore_index, temperature, entropy, step):
        n = h.shape[0]
        acc, _ = acc_dtype(h)
        lp = torch.empty(n, dtype=acc, device=h.device)
        ent = torch.empty(n, dtype=acc, device=h.device)
        stats = [torch.empty(n, dtype=acc, device=h.device) for _ in range(3)]
        for start in range(0, n, step):
            sl = slice(start, min(start + step, n))
            z = _chunk_logits(h[sl], weight, bias)
            out = _forward(z, tokens[sl], ignore_index, temperature, entropy)
            lp[sl], ent[sl] = out[0], out[1]
            for dst, src in zip(stats, out[2:]):
                dst[sl] = src
        ctx.save_for_backward(h, weight, bias, tokens, *stats)
        ctx.opts = (ignore_index, temperature, step)
        ctx.set_materialize_grads(False)
        return lp, ent

    @staticmethod
    def backward(ctx: Any, g_lp, g_h):
        h, weight, bias, tokens, m, s, ebar = ctx.saved_tensors
        ignore_index, temperature, step = ctx.opts
        need = ctx.needs_input_grad
        if g_lp is None and g_h is None:
            return (None,) * 8
        acc, _ = acc_dtype(h)
        gh = torch.empty_like(h) if need[0] else None
        gw = torch.zeros(weight.shape, dtype=acc, device=h.device) if need[1] else None
        gb = torch.zeros(weight.shape[0], dtype=acc, device=h.device) if need[2] and bias is not None else None
        n = h.shape[0]
        for start in range(0, n, step):
            sl = slice(start, min(start + step, n))
            z = _chunk_logits(h[sl], weight, bias)
            gz = torch.empty(z.shape, dtype=acc, device=z.device)
            _backward(z, tokens[sl], None if g_lp is None else g_lp[sl], None if g_h is None else g_h[sl],
                      m[sl], s[sl], ebar[sl], ignore_index, temperature, gz)
            if gh is not None:
                gh[sl] = gz.to(weight.dtype) @ weight
            if gw is not None:
                gw.addmm_(gz.t(), h[sl].to(acc))
            if gb is not None:
                gb += gz.sum(dim=0)
        return (gh, None if gw is None else gw.to(weight.dtype), None if gb is None else gb.to(bias.dtype),
                None, None, None, None, None)


def linear_log_probs_rows(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, tokens: torch.Tensor,
                          ignore_index: int, temperature: float, entropy: bool,
                          chunk_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``log_probs_rows(h @ weight.T + bias, ...)`` one chunk of tokens at a time (``chunk_size`` tokens, default
    256 MiB of float32 logits): never the ``[N, V]`` logits. Backward recomputes each chunk's product."""
    v = weight.shape[0]
    step = chunk_size or max(1, _CHUNK_BYTES // (4 * max(v, 1)))
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (h, weight, bias)) \
            and torch._C._are_functorch_transforms_active():
        raise RuntimeError("the Triton linear_log_probs has no torch.func support; use log_probs on the logits")
    return _LinearLogProbs.apply(h, weight, bias, tokens.contiguous(), ignore_index, temperature, entropy,
                                 max(1, min(step, max(h.shape[0], 1))))

