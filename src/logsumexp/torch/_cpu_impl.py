"""The torch face's own arithmetic: chunked pure-torch row statistics, cross-entropy and gradients.

These functions run behind the operators of :mod:`logsumexp.torch._ops` on CPU tensors (and on
CUDA tensors when the Triton kernels cannot be imported); :mod:`logsumexp.torch.distributed` uses
the same chunk code for its row statistics and :func:`merge` for combining ranks. They work on 2-D
``(rows, classes)`` tensors one chunk of rows at a time, so that every temporary is a bounded
block; only the per-row statistics (max, LSE) are O(rows). float16/bfloat16/float32 are computed in
float32, float64 in float64 (the array core accumulates float32 in float64; this face keeps
float32, the precision of training).

CPU float32/float64 tensors that hold data (not fake, functional or functorch-wrapped, not inside
a trace) go to the compiled kernels of :mod:`logsumexp._cpu` instead, through zero-copy NumPy
views (:mod:`._compiled`): LogSumExp, softmax, log-softmax, the plain cross-entropy rows and
their gradient, each row read once and summed in float64. The chunked torch code below is what
every other case runs, and what the kernels' special rows fall back to.

Stability:

- LSE is ``m + log1p(Σ_{i≠argmax} exp(x_i − m))`` with ``m = max(x)``: nothing overflows, and the
  term that dominates keeps its relative accuracy (Blanchard, Higham & Higham 2021).
- The negative log-likelihood of class ``t`` is ``(m − x_t) + log1p(Σ_{i≠argmax} exp(x_i − m))``:
  for a confident prediction the first term is 0 and the loss keeps full relative accuracy,
  where ``LSE − x_t`` would round to 0.
- Rows whose maximum is not finite are rewritten before ``exp``: an all −inf row has no mass
  (LSE −inf, softmax 0), ``k`` entries at +inf share the mass (LSE +inf, softmax ``1/k`` there),
  NaN stays NaN in its own row.
- ``0 · (−inf)`` never appears: a class of weight 0 or of target probability 0 contributes 0.

Functions whose name ends in ``_differentiable`` are written with out-of-place torch operations
only; the operators' backward passes use them when a graph of the gradient is being built
(``create_graph=True``, ``torch.func``), so that second derivatives exist.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from .. import _cpu
from .._options import CrossEntropyOptions
from . import _compiled

# 16 MiB of float32 per chunk temporary: out of L2 (2 MiB per core) but well inside the L3 of the
# Xeon we measured on. Against 2**18-element chunks (L2-sized) it issues 16x fewer small parallel
# regions, which measured 2-5x faster on a loaded 2-core machine ([8192, 32000] float32). The
# backward writes straight into the gradient, so this costs no extra peak memory there.
CHUNK_ELEMENTS = 1 << 22

# Tokens per chunk of linear_cross_entropy, as a budget in bytes of its one chunk buffer of logits.
# The step is bound by its three matrix products; each chunk's products are thin (K = tokens per
# chunk for the weight's gradient), and thin products run below the BLAS's peak. Measured (CPU
# seconds, N=2048, D=512, V=32000 float32, medians of interleaved rounds on the project's loaded
# 2-core machine): the three products alone took 3.09 / 2.57 / 2.37 / 2.31 s at 128 / 256 / 512 /
# 1024 tokens per chunk, and the whole step (2 threads) 3.9 / 3.0 / 2.9 s at 128 / 256 / 512.
# 512 tokens (64 MiB at V = 32000) takes nearly all of the gain; its buffer is the step's only
# temporary of that size (torch 2.13's chunked loss needed more extra memory in the same runs).
LCE_CHUNK_BYTES = 64 << 20


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float64 stays float64, everything else is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def row_chunks(n_rows: int, n_cols: int, elements: int | None = None) -> Iterator[slice]:
    """Slices of consecutive rows holding about ``elements`` entries each (at least one row)."""
    step = max(1, (elements or CHUNK_ELEMENTS) // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


# --------------------------------------------------------------------------- row statistics


def shifted(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``(t, m, argmax)`` with ``t = z − m`` per row, special rows rewritten (fresh tensor)."""
    m, am = z.max(dim=-1)
    t = z - m.unsqueeze(-1)
    bad = ~torch.isfinite(m)
    if bool(bad.any()):
        # inf − inf and −inf − (−inf) are NaN: a +inf row keeps 0 on its +inf entries and −inf
        # elsewhere (they share the mass); an all −inf row gets −inf everywhere (no mass).
        rows = bad.nonzero().squeeze(-1)
        mb = m[rows].unsqueeze(-1)
        zb = z[rows]
        fixed = torch.where((zb == mb) & (mb == math.inf), 0.0, -math.inf).to(t.dtype)
        t[rows] = torch.where(torch.isnan(mb), mb, fixed)
    return t, m, am


def exp_rest_sum(t: Tensor, am: Tensor) -> Tensor:
    """``Σ_{i≠argmax} exp(t_i)``, overwriting ``t`` by ``exp(t)`` (argmax entry set to 0)."""
    t.exp_()
    # The argmax term is exp(0) = 1 exactly; leaving it out of the sum is what lets log1p keep
    # the small terms (1 + 4e-9 rounds to 1 in float32).
    t.scatter_(-1, am.unsqueeze(-1), 0.0)
    return t.sum(dim=-1)


def softmax_rows(z: Tensor, out: Tensor | None = None, scale: Tensor | None = None) -> Tensor:
    """``exp(z − m) / s`` per row, recomputed from the logits alone (``m`` the row max,
    ``s = Σ exp(z − m)``), times the per-row ``scale`` if given (folded into ``1/s``: one pass
    over the chunk less); may write ``out``, which may be ``z`` itself.

    Why not ``exp(z − LSE)`` from the saved LSE: the rounding of ``LSE`` itself, about
    ``|LSE|·eps`` absolute, becomes a relative error of every probability (2e-5 in float32 at
    ``z = ±1000``), whereas ``z − m`` is exact near the maximum and ``s ≥ 1`` carries a relative
    error of a few eps. The backward reads the chunk anyway; what this adds is a row max and a
    row sum per chunk, no exponential and no saved tensor beyond the per-row LSE.
    Special rows follow :func:`shifted`: a +inf row gives 1/k on its k +inf entries, an all −inf
    row 0 everywhere (its ``s = 0`` is read as 1), a NaN row NaN.
    """
    if z.shape[-1] == 0:  # no classes: nothing to normalise (and no maximum to take)
        return z.new_empty(z.shape) if out is None else out
    p = None if z.requires_grad and torch.is_grad_enabled() else _compiled.softmax_last(z, log=False)
    if p is not None:  # the compiled kernels: one read of z, the same special rows
        if scale is not None:
            return torch.mul(p, scale.unsqueeze(-1).to(p.dtype), out=out) if out is not None else p.mul_(scale.unsqueeze(-1))
        return p if out is None else out.copy_(p)
    m = z.amax(dim=-1, keepdim=True)
    bad = ~torch.isfinite(m)
    special = None
    if bool(bad.any()):
        # The shifted values of the special rows, read before ``out`` (possibly z) is written, as
        # in shifted(): a +inf row 0 on its +inf entries and −inf elsewhere (after exp and the
        # division by k, 1/k each), an all −inf row −inf (no mass), a NaN row NaN.
        rows = bad.squeeze(-1).nonzero().squeeze(-1)
        mb = m[rows]
        fixed = torch.where((z[rows] == mb) & (mb == math.inf), 0.0, -math.inf).to(z.dtype)
        special = rows, torch.where(torch.isnan(mb), mb, fixed)
    out = torch.sub(z, m, out=out) if out is not None else z - m
    if special is not None:
        out[special[0]] = special[1].to(out.dtype)
    out.exp_()
    s = out.sum(dim=-1, keepdim=True)
    s = torch.where(s == 0, 1.0, s)
    return out.div_(s) if scale is None else out.mul_(scale.unsqueeze(-1) / s)


def _softmax_value(z: Tensor) -> Tensor:
    """:func:`softmax_rows` without host reads (the values only: no gradient flows through them)."""
    if z.shape[-1] == 0:
        return z.detach().new_empty(z.shape)
    with torch.no_grad():
        z = z.detach()
        m = z.amax(dim=-1, keepdim=True)
        posinf = m == math.inf
        t = torch.where(posinf, torch.where(z == math.inf, 0.0, -math.inf), z - torch.where(torch.isfinite(m), m, 0.0))
        t = torch.where(m == -math.inf, -math.inf, t).exp()
        s = t.sum(dim=-1, keepdim=True)
        return t / torch.where(s == 0, 1.0, s)


def softmax_from_lse_differentiable(z: Tensor, lse: Tensor) -> Tensor:
    """``exp(z − lse)`` per row with the special-value rules of :func:`softmax_rows`, without
    in-place writes or host reads (a graph can be built on it).

    Non-finite rows are shifted by 0 and read as 0 before ``exp``, so that no ``inf`` reaches an
    operation whose derivative would turn the masked branch into ``0 · inf = NaN``.
    """
    finite = torch.isfinite(lse).unsqueeze(-1)
    p = torch.exp(torch.where(finite, z, 0.0) - torch.where(finite, lse.unsqueeze(-1), 0.0))
    hot = (z == math.inf).to(z.dtype)
    share = hot / hot.sum(dim=-1, keepdim=True).clamp_min(1.0)
    fixed = torch.where(lse.unsqueeze(-1) == math.inf, share, torch.zeros_like(share))
    fixed = torch.where(torch.isnan(lse).unsqueeze(-1), lse.unsqueeze(-1), fixed)
    p = torch.where(finite, p, fixed)
    # The value of exp(z − m)/s (see softmax_rows), the derivatives of exp(z − LSE): adding
    # p − p.detach(), exactly 0 where p is finite, keeps the graph and replaces the rounding of LSE.
    return _softmax_value(z) + (p - p.detach())


class RowState(NamedTuple):
    """The mergeable LogSumExp state of rows: ``Σ e^{x} = e^m (lead + tail)``.

    ``lead`` is the maximal term (1, or 0 for an empty / all −inf row) and ``tail`` the sum of the
    others, so that ``LSE = m + log1p((lead − 1) + tail)`` keeps a dominant maximum's small
    correction. The merge below is associative and commutative with identity ``(−inf, 0, 0)``.
    """

    m: Tensor
    lead: Tensor
    tail: Tensor


def _scale(m: Tensor, big: Tensor) -> Tensor:
    # e^{m − M}, exactly 1 where m == M: equal infinite maxima never form inf − inf.
    same = m == big
    return torch.exp(torch.where(same, 0.0, m) - torch.where(same, 0.0, big))


def merge(a: RowState, b: RowState) -> RowState:
    """The state of the union of two disjoint sets of terms.

    ``M = max(m_a, m_b)``; the side holding the maximum keeps its lead, the other side's lead moves
    into the tail, so exactly one maximal term stays out of the tail. A NaN poisons the row.
    """
    big = torch.maximum(a.m, b.m)
    ca, cb = _scale(a.m, big), _scale(b.m, big)
    first = a.m >= b.m
    lead = torch.where(first, a.lead, b.lead)
    tail = torch.where(first, a.tail * ca + (b.lead + b.tail) * cb, b.tail * cb + (a.lead + a.tail) * ca)
    big = torch.where(torch.isnan(a.m) | torch.isnan(b.m), math.nan, big)
    return RowState(big, lead, tail)


def state_value(s: RowState) -> Tensor:
    """``m + log1p((lead − 1) + tail)``: −inf for the empty state, +inf / NaN carried by ``m``."""
    return s.m + torch.log1p((s.lead - 1.0) + s.tail)


# --------------------------------------------------------------------------- cross-entropy chunks


def capped(x: Tensor, softcap: float | None, dtype: torch.dtype) -> Tensor:
    """Chunk upcast to ``dtype``, with ``softcap · tanh(x / softcap)`` applied when set."""
    z = x.to(dtype)
    if softcap is None:
        return z
    th = torch.tanh(z / softcap)
    # In place unless a graph records it (tanh's backward needs its output unchanged).
    return th * softcap if th.requires_grad else th.mul_(softcap)


def _nonzero_weighted_sum(t: Tensor, w: Tensor | None) -> Tensor:
    """``Σ_c w_c t_c`` per row where a class of weight 0 adds 0 even if ``t_c = −inf``."""
    if w is None:
        return t.sum(dim=-1)
    if w.ndim == 1 and not bool((w == 0).any()):
        return t @ w
    return torch.where(w == 0, 0.0, t * w).sum(dim=-1)


def chunk_forward(
    z: Tensor, target: Tensor, weight: Tensor | None, opts: CrossEntropyOptions
) -> tuple[Tensor, Tensor]:
    """Per-row losses and LSE of one chunk of (softcapped) logits ``z`` in the accumulation dtype.

    Class targets: ``w_t (1−ε)(LSE − z_t) + (ε/C) Σ_c w_c (LSE − z_c) + z_loss·LSE²``, ignored rows 0.
    Probability targets ``q``: ``Σ_c w_c q'_c (LSE − z_c) + z_loss·LSE²`` with ``q' = (1−ε) q + ε/C``.
    """
    n_cls = z.shape[-1]
    eps = opts.label_smoothing
    t, m, am = shifted(z)
    if target.is_floating_point():
        return _prob_rows(t, m, am, target.to(z.dtype), weight, opts)
    smooth_sum = _nonzero_weighted_sum(t, weight) if eps > 0 else None
    log1p_s = torch.log1p(exp_rest_sum(t, am))
    lse = m + log1p_s
    valid = target != opts.ignore_index
    tc = torch.where(valid, target, 0)
    z_t = z.gather(-1, tc.unsqueeze(-1)).squeeze(-1)
    # (m − z_t) is exactly 0 for the arg max; the equality test also covers m = z_t = +inf.
    nll = torch.where(z_t == m, 0.0, m - z_t) + log1p_s
    nll = torch.where(m == -math.inf, math.inf, nll)
    coef = (1.0 - eps) * (weight[tc] if weight is not None else torch.ones_like(nll))
    # A target of weight 0 (class weight 0, or ε = 1) adds 0 even when its −log p is +inf.
    rows = torch.where(coef == 0, 0.0, nll * coef)
    if smooth_sum is not None:
        total_w = float(n_cls) if weight is None else weight.sum()
        smooth = total_w * log1p_s - smooth_sum
        rows = rows + (eps / n_cls) * smooth
    if opts.z_loss:
        rows = rows + opts.z_loss * lse.square()
    return torch.where(valid, rows, 0.0), lse


def _smoothed(q: Tensor, weight: Tensor | None, eps: float) -> Tensor:
    """``w ∘ ((1 − ε) q + ε / C)``: the weight of ``−log p_c`` in a probability-target row."""
    if eps:
        q = q * (1.0 - eps) + eps / q.shape[-1]
    return q * weight if weight is not None else q


def _prob_rows(
    t: Tensor, m: Tensor, am: Tensor, q: Tensor, weight: Tensor | None, opts: CrossEntropyOptions
) -> tuple[Tensor, Tensor]:
    wq = _smoothed(q, weight, opts.label_smoothing)
    # −log p_c = log1p(s) − t_c; 0 · (+inf) where q'_c = 0 counts as 0.
    neg_t = torch.where(wq == 0, 0.0, wq * t).sum(dim=-1)
    log1p_s = torch.log1p(exp_rest_sum(t, am))
    rows = wq.sum(dim=-1) * log1p_s - neg_t
    lse = m + log1p_s
    if opts.z_loss:
        rows = rows + opts.z_loss * lse.square()
    return rows, lse


def _row_multiplier(
    target: Tensor, weight: Tensor | None, lse: Tensor, g_rows: Tensor, g_lse: Tensor | None,
    opts: CrossEntropyOptions, n_cls: int,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """``a`` (the softmax's factor per row), the probability weights ``w∘q'`` (or None), the
    counted rows' multiplier ``g_v`` and the safe target index, for the gradient formula."""
    eps = opts.label_smoothing
    if target.is_floating_point():
        wq = _smoothed(target.to(lse.dtype), weight, eps)
        gv, tc = g_rows, target
        a = g_rows * wq.sum(dim=-1)
    else:
        valid = target != opts.ignore_index
        tc = torch.where(valid, target, 0)
        gv = torch.where(valid, g_rows, 0.0)
        w_t = weight[tc] if weight is not None else 1.0
        a = gv * ((1.0 - eps) * w_t)
        if eps:
            # Only with smoothing: a class weight that no row targets (NaN included) must not
            # reach the gradient through 0 · Σ w.
            total_w = float(n_cls) if weight is None else weight.sum()
            a = a + gv * ((eps / n_cls) * total_w)
        wq = None
    if opts.z_loss:
        a = a + (2.0 * opts.z_loss) * torch.where(torch.isfinite(lse), lse, 0.0) * gv
    if g_lse is not None:
        a = a + g_lse
    return a, wq, gv, tc


def chunk_grad(
    z: Tensor,
    target: Tensor,
    weight: Tensor | None,
    lse: Tensor,
    g_rows: Tensor,
    g_lse: Tensor | None,
    opts: CrossEntropyOptions,
    out: Tensor | None = None,
) -> Tensor:
    """Gradient of ``Σ g_rows·rows + Σ g_lse·lse`` for one chunk, with respect to ``z``.

    Class targets: ``a·p − g (1−ε) w_t e_t − g (ε/C) w`` with
    ``a = g ((1−ε) w_t + (ε/C) Σ w + 2 z_loss LSE) + g_lse`` and ``p = softmax(z)``.
    ``out`` may be ``z`` itself (the gradient then overwrites the logits chunk).
    """
    n_cls = z.shape[-1]
    eps = opts.label_smoothing
    a, wq, gv, tc = _row_multiplier(target, weight, lse, g_rows, g_lse, opts, n_cls)
    grad = softmax_rows(z, out=out, scale=a)
    if wq is not None:
        grad.sub_(g_rows.unsqueeze(-1) * wq)
        return grad
    w_t = weight[tc] if weight is not None else 1.0
    grad.scatter_add_(-1, tc.unsqueeze(-1), (-(1.0 - eps) * gv * w_t).unsqueeze(-1).to(grad.dtype))
    if eps and weight is None:
        grad.sub_((gv * (eps / n_cls)).unsqueeze(-1))
    elif eps:
        grad.addr_(gv.to(grad.dtype), weight, alpha=-eps / n_cls)  # rank-1 update, no temporary
    return grad


def chunk_grad_differentiable(
    z: Tensor, target: Tensor, weight: Tensor | None, lse: Tensor, g_rows: Tensor,
    g_lse: Tensor | None, opts: CrossEntropyOptions,
) -> Tensor:
    """:func:`chunk_grad` with out-of-place operations only (for second derivatives)."""
    n_cls = z.shape[-1]
    eps = opts.label_smoothing
    a, wq, gv, tc = _row_multiplier(target, weight, lse, g_rows, g_lse, opts, n_cls)
    grad = softmax_from_lse_differentiable(z, lse) * a.unsqueeze(-1)
    if wq is not None:
        return grad - g_rows.unsqueeze(-1) * wq
    w_t = weight[tc] if weight is not None else 1.0
    hot = torch.zeros_like(grad).scatter(-1, tc.unsqueeze(-1), ((1.0 - eps) * gv * w_t).unsqueeze(-1))
    grad = grad - hot
    if eps:
        w = torch.ones_like(lse[:1]) if weight is None else weight
        grad = grad - (gv * (eps / n_cls)).unsqueeze(-1) * w
    return grad


def softcap_grad_(grad: Tensor, x: Tensor, softcap: float) -> Tensor:
    """Chain rule through ``c·tanh(x/c)``: multiply ``grad`` in place by ``1 − tanh²(x/c)``."""
    th = torch.tanh(x.to(grad.dtype) / softcap)
    return grad.mul_(th.square_().neg_().add_(1.0))


# --------------------------------------------------------------------------- whole tensors


def _acc_weight(weight: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    return None if weight is None else weight.to(dtype)


def cross_entropy_rows(
    logits: Tensor, target: Tensor, weight: Tensor | None, opts: CrossEntropyOptions
) -> tuple[Tensor, Tensor]:
    """Per-row losses (0 on ignored rows) and per-row LSE, both in the accumulation dtype."""
    fast = _compiled_rows(logits, target, weight, opts)
    if fast is not None:
        return fast
    n, c = logits.shape
    acc = acc_dtype(logits.dtype)
    rows = logits.new_empty(n, dtype=acc)
    lse = logits.new_empty(n, dtype=acc)
    w = _acc_weight(weight, acc)
    for sl in row_chunks(n, c):
        z = capped(logits[sl], opts.softcap, acc)
        rows[sl], lse[sl] = chunk_forward(z, target[sl], w, opts)
    return rows, lse


def _compiled_rows(
    logits: Tensor, target: Tensor, weight: Tensor | None, opts: CrossEntropyOptions
) -> tuple[Tensor, Tensor] | None:
    """Class-target rows without softcap or label smoothing from the compiled kernels' row state
    (one read of the logits, float64 state), or None where the kernels do not apply.

    ``−log p_t = (m − z_t) + log1p(lead − 1 + tail)``: 0 + the log1p term for the arg max, so a
    confident prediction keeps its relative accuracy; an all −inf row (lead 0, tail 0) gives
    +inf, a row with ``k`` entries at +inf ``log k`` on them (``z_t = m``) and +inf elsewhere,
    a NaN row NaN. The rest is O(rows) work in float64, rounded once to the accumulation dtype.
    """
    if target.is_floating_point() or opts.softcap is not None or opts.label_smoothing:
        return None
    if weight is None and not opts.z_loss and logits.dtype == torch.float32 and _compiled.takes(logits):
        # The plain rows in one compiled call (loss and LSE per row; special rows left to torch).
        rows = logits.new_empty(logits.shape[0])
        lse = logits.new_empty(logits.shape[0])
        if _compiled_chunk(logits, target, None, opts, rows, lse):
            return rows, lse
    st = _compiled.state_last(logits)
    if st is None:
        return None
    m, lead, tail = st
    log1p_s = torch.log1p((lead - 1.0) + tail)
    lse = m + log1p_s
    valid = target != opts.ignore_index
    tc = torch.where(valid, target, 0)
    z_t = logits.detach().gather(-1, tc.unsqueeze(-1)).squeeze(-1).to(torch.float64)
    nll = torch.where(z_t == m, 0.0, m - z_t) + log1p_s
    nll = torch.where(m == -math.inf, math.inf, nll)
    if weight is not None:
        w_t = weight.detach().to(torch.float64)[tc]
        nll = torch.where(w_t == 0, 0.0, nll * w_t)  # weight 0 adds 0 even where −log p = +inf
    if opts.z_loss:
        nll = nll + opts.z_loss * lse.square()
    acc = acc_dtype(logits.dtype)
    return nll.masked_fill_(~valid, 0.0).to(acc), lse.to(acc)


def cross_entropy_rows_backward(
    g_rows: Tensor,
    g_lse: Tensor | None,
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None,
    lse: Tensor,
    opts: CrossEntropyOptions,
    out: Tensor | None = None,
) -> Tensor:
    """Gradient with respect to the logits; softmax is recomputed as ``exp(z − m)/s``, chunk by chunk.

    ``out`` may be the logits themselves (an in-place backward: each chunk is read before it is
    overwritten by its gradient).
    """
    fast = _compiled_backward(g_rows, g_lse, logits, target, weight, opts, out)
    if fast is not None:
        return fast
    n, c = logits.shape
    acc = acc_dtype(logits.dtype)
    grad = torch.empty_like(logits, memory_format=torch.contiguous_format) if out is None else out
    w = _acc_weight(weight, acc)
    g_rows = g_rows.to(acc)
    g_lse = None if g_lse is None else g_lse.to(acc)
    # Writing straight into the gradient saves a copy when no upcast or softcap is involved.
    direct = grad.dtype == acc and opts.softcap is None
    for sl in row_chunks(n, c):
        x = logits[sl]
        z = capped(x, opts.softcap, acc)
        chunk_out = grad[sl] if direct else (z if opts.softcap is not None else None)
        g_lse_sl = None if g_lse is None else g_lse[sl]
        g = chunk_grad(z, target[sl], w, lse[sl], g_rows[sl], g_lse_sl, opts, out=chunk_out)
        if opts.softcap is not None:
            softcap_grad_(g, x, opts.softcap)
        if not direct:
            grad[sl] = g
    return grad


def _compiled_backward(
    g_rows: Tensor, g_lse: Tensor | None, logits: Tensor, target: Tensor, weight: Tensor | None,
    opts: CrossEntropyOptions, out: Tensor | None,
) -> Tensor | None:
    """The plain float32 rows' gradient (class targets; no weights, smoothing, z-loss, softcap or
    LSE gradient) from the compiled kernel, in place in the gradient buffer: the logits copied
    into it (or the logits themselves for ``out=logits``), then ``g·softmax − g·e_t`` per row in
    one read and one write (:func:`_compiled_chunk`; special rows through :func:`chunk_grad`).
    None where that does not apply."""
    if (
        weight is not None or opts.label_smoothing or opts.z_loss
        or opts.softcap is not None or target.is_floating_point() or logits.dtype != torch.float32
        or not _compiled.takes(logits) or g_rows.dtype != torch.float32
    ):
        return None
    # autograd hands an unused LSE output a gradient of zeros: read it (eager CPU: one cheap pass
    # over N values, no device) rather than give up the kernel for every plain loss.
    if g_lse is not None and bool(g_lse.any()):
        return None
    grad = torch.empty_like(logits, memory_format=torch.contiguous_format) if out is None else out
    if grad is not logits:
        grad.copy_(logits)
    n = logits.shape[0]
    rows, lse = grad.new_empty(n), grad.new_empty(n)  # the kernel's by-products, unused here
    if _compiled_chunk(grad, target, g_rows.contiguous(), opts, rows, lse):
        return grad
    return None  # declined before writing anything: the chunked path computes


def cross_entropy_rows_backward_differentiable(
    g_rows: Tensor, g_lse: Tensor | None, logits: Tensor, target: Tensor, weight: Tensor | None,
    lse: Tensor, opts: CrossEntropyOptions,
) -> Tensor:
    """The same gradient as one out-of-place expression (no chunks), for second derivatives."""
    acc = acc_dtype(logits.dtype)
    z = capped(logits, opts.softcap, acc)
    w = _acc_weight(weight, acc)
    g = chunk_grad_differentiable(z, target, w, lse, g_rows.to(acc), None if g_lse is None else
                                  g_lse.to(acc), opts)
    if opts.softcap is not None:
        g = g * (1.0 - torch.tanh(logits.to(acc) / opts.softcap) ** 2)
    return g.to(logits.dtype)


def _neg_log_p(lse: Tensor, z: Tensor, logits: Tensor, keepdim: bool = False) -> Tensor:
    """``LSE − z``, with ``+inf − +inf`` read as ``log k``: the k entries of a row at +inf share its
    probability (p = 1/k), so their −log p is finite although both terms are infinite."""
    k = torch.isposinf(logits).sum(dim=-1, keepdim=keepdim).to(lse.dtype)
    both_inf = torch.isposinf(lse) & torch.isposinf(z)
    return torch.where(both_inf, torch.log(k.clamp_min(1.0)), lse - torch.where(both_inf, 0.0, z))


def class_weight_grad(
    g_rows: Tensor, logits: Tensor, target: Tensor, weight: Tensor, lse: Tensor,
    opts: CrossEntropyOptions,
) -> Tensor:
    """Gradient of ``Σ g_rows·rows`` with respect to the class weights (out-of-place, chunked).

    ``∂row/∂w_c = (1−ε)·nll·[t = c] + (ε/C)(LSE − z_c)`` for class targets and
    ``q'_c (LSE − z_c)`` for probabilities; rows with multiplier 0 (ignored rows) and classes of
    probability 0 add exactly 0, even where ``LSE − z_c`` is infinite.
    """
    n, n_cls = logits.shape
    acc = lse.dtype
    eps = opts.label_smoothing
    g = g_rows.to(acc)
    grad = torch.zeros(n_cls, dtype=acc, device=logits.device)
    if not target.is_floating_point():
        valid = target != opts.ignore_index
        tc = torch.where(valid, target, 0)
        z_t = capped(logits.gather(-1, tc.unsqueeze(-1)).squeeze(-1), opts.softcap, acc)
        nll = _neg_log_p(lse, z_t, logits)
        term = torch.where(valid & (g != 0), g * (1.0 - eps) * nll, 0.0)
        grad = grad.index_add(0, tc, term)
        g = torch.where(valid, g, 0.0) * (eps / n_cls)
        if not eps:
            return grad.to(weight.dtype)
    for sl in row_chunks(n, n_cls):
        neg_log_p = _neg_log_p(lse[sl].unsqueeze(-1), capped(logits[sl], opts.softcap, acc), logits[sl], keepdim=True)
        coef = g[sl].unsqueeze(-1)
        if target.is_floating_point():
            coef = coef * _smoothed(target[sl].to(acc), None, eps)
        grad = grad + torch.where(coef == 0, 0.0, coef * neg_log_p).sum(dim=0)
    return grad.to(weight.dtype)


def probability_target_grad(
    g_rows: Tensor, logits: Tensor, weight: Tensor | None, lse: Tensor, opts: CrossEntropyOptions
) -> Tensor:
    """``∂rows/∂q_c = −(1 − ε) w_c log p_c`` for probability targets (one full-size temporary)."""
    z = capped(logits, opts.softcap, lse.dtype)
    neg_log_p = lse.unsqueeze(-1) - z
    if weight is not None:
        neg_log_p = neg_log_p * weight.to(z.dtype)
    grad = (1.0 - opts.label_smoothing) * g_rows.to(z.dtype).unsqueeze(-1) * neg_log_p
    return grad.to(logits.dtype)


# --------------------------------------------------------------------------- linear + cross-entropy


class LinearGrads(NamedTuple):
    """What one pass of :func:`linear_cross_entropy` returns (gradients not asked for are empty)."""

    rows: Tensor
    lse: Tensor
    hidden: Tensor
    weight: Tensor
    bias: Tensor
    class_weight: Tensor


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    target: Tensor,
    cls_weight: Tensor | None,
    g_rows: Tensor | None,
    opts: CrossEntropyOptions,
    wants: tuple[bool, bool, bool] = (True, True, False),
    chunk_rows: int | None = None,
) -> LinearGrads:
    """Rows and LSE of ``hidden @ weight.T + bias`` one chunk of tokens at a time.

    With ``g_rows`` (per-row or 0-d multipliers) it also returns the gradients of
    ``Σ g_rows · rows`` for hidden (if ``wants[0]``), weight (accumulated in float32, or float64)
    and bias (if ``wants[1]``: a frozen projection skips a third of the FLOPs), and the class
    weights (if ``wants[2]``). ``chunk_rows`` tokens per chunk (default: ``LCE_CHUNK_BYTES`` of
    logits).

    One chunk buffer of logits is reused for every chunk, and in the common case (logits in the
    accumulation dtype, class targets, no softcap) every step of the chunk happens in place in it:
    logits → shifted logits → exponentials → gradient, the softmax taken as ``e / (1 + tail)``
    from the forward's own exponentials (no second ``exp``). The gradient of the weight is
    accumulated with ``addmm_`` into one buffer.
    """
    n, d = hidden.shape
    v = weight.shape[0]
    acc = acc_dtype(hidden.dtype)
    rows = hidden.new_empty(n, dtype=acc)
    lse = hidden.new_empty(n, dtype=acc)
    want_h = g_rows is not None and wants[0]
    want_w = g_rows is not None and wants[1]
    want_cw = g_rows is not None and wants[2] and cls_weight is not None
    # Distinct empty tensors: operator outputs may not alias one another.
    g_hidden = torch.empty_like(hidden) if want_h else hidden.new_empty(0)
    g_weight = hidden.new_zeros((v, d), dtype=acc) if want_w else hidden.new_empty(0)
    g_bias = hidden.new_zeros(v, dtype=acc) if want_w and bias is not None else hidden.new_empty(0)
    g_cls = hidden.new_zeros(v, dtype=acc) if want_cw else hidden.new_empty(0)
    cw = _acc_weight(cls_weight, acc)
    step = chunk_rows or max(1, LCE_CHUNK_BYTES // (v * torch.finfo(acc).bits // 8))
    in_place = (
        hidden.dtype == acc and weight.dtype == acc and opts.softcap is None
        and not target.is_floating_point() and not want_cw
    )
    buf = hidden.new_empty((min(step, n), v), dtype=acc) if in_place else None
    w_t = weight.t()
    for start in range(0, n, step):
        sl = slice(start, min(start + step, n))
        h = hidden[sl]
        g = None
        if g_rows is not None:
            g = (g_rows[sl] if g_rows.ndim else g_rows.expand(sl.stop - sl.start)).to(acc)
        if buf is not None:
            z = buf[: sl.stop - sl.start]
            torch.addmm(bias, h, w_t, out=z) if bias is not None else torch.mm(h, w_t, out=z)
            gz = _fused_chunk(z, target[sl], cw, g, opts, rows[sl], lse[sl])
        else:
            gz = _general_chunk(h, weight, bias, target[sl], cw, g, opts, acc, rows[sl], lse[sl],
                                g_cls if want_cw else None)
        if gz is None:
            continue
        if want_h:
            torch.mm(gz.to(weight.dtype), weight, out=g_hidden[sl])
        if want_w:
            g_weight.addmm_(gz.t(), h.to(acc))
            if bias is not None:
                g_bias += gz.sum(dim=0)
    return LinearGrads(rows, lse, g_hidden, g_weight, g_bias, g_cls)


def _general_chunk(h, weight, bias, target, cw, g, opts, acc, rows_out, lse_out, g_cls):
    """One chunk through :func:`chunk_forward` / :func:`chunk_grad` (softcap, probabilities,
    16-bit inputs, class-weight gradients): the logits chunk is overwritten by its gradient."""
    raw = torch.addmm(bias, h, weight.t()) if bias is not None else h @ weight.t()
    raw = raw.to(acc)
    z = capped(raw, opts.softcap, acc)
    rows_out[:], lse_out[:] = chunk_forward(z, target, cw, opts)
    if g is None:
        return None
    if g_cls is not None:
        uncapped = CrossEntropyOptions(ignore_index=opts.ignore_index,
                                       label_smoothing=opts.label_smoothing)
        g_cls += class_weight_grad(g, z, target, cw, lse_out, uncapped)
    gz = chunk_grad(z, target, cw, lse_out, g, None, opts, out=z)
    if opts.softcap is not None:
        softcap_grad_(gz, raw, opts.softcap)
    return gz


def _fused_chunk(z, target, cw, g, opts, rows_out, lse_out):
    """Loss rows, LSE and (with ``g``) the logits' gradient of one chunk, all in place in ``z``.

    Rows with a non-finite maximum go through :func:`chunk_forward` / :func:`chunk_grad`
    instead, which rewrite them by the special-value rules.
    """
    n_cls = z.shape[-1]
    eps = opts.label_smoothing
    if not eps and cw is None and not opts.z_loss and _compiled_chunk(z, target, g, opts, rows_out, lse_out):
        return None if g is None else z
    valid = target != opts.ignore_index
    tc = torch.where(valid, target, 0)
    m, am = z.max(dim=-1)
    if not bool(torch.isfinite(m).all()):
        rows_out[:], lse_out[:] = chunk_forward(z, target, cw, opts)
        return None if g is None else chunk_grad(z, target, cw, lse_out, g, None, opts, out=z)
    z_t = z.gather(-1, tc.unsqueeze(-1)).squeeze(-1)
    z.sub_(m.unsqueeze(-1))  # t = z − m ≤ 0
    smooth_sum = _nonzero_weighted_sum(z, cw) if eps > 0 else None
    z.exp_()
    # The argmax term (exactly 1) stays out of the sum: log1p keeps the small terms.
    z.scatter_(-1, am.unsqueeze(-1), 0.0)
    tail = z.sum(dim=-1)
    log1p_s = torch.log1p(tail)
    lse = torch.add(m, log1p_s, out=lse_out)
    nll = torch.where(z_t == m, 0.0, m - z_t) + log1p_s
    w_t = cw[tc] if cw is not None else None
    coef = (1.0 - eps) * (w_t if w_t is not None else 1.0)
    rows = nll * coef if w_t is None else torch.where(coef == 0, 0.0, nll * coef)
    if smooth_sum is not None:
        total_w = float(n_cls) if cw is None else cw.sum()
        rows = rows + (eps / n_cls) * (total_w * log1p_s - smooth_sum)
    if opts.z_loss:
        rows = rows + opts.z_loss * lse.square()
    rows_out.copy_(rows.masked_fill_(~valid, 0.0))
    if g is None:
        return None
    a, _, gv, _ = _row_multiplier(target, cw, lse, g, None, opts, n_cls)
    # softmax = e / (1 + tail) off the arg max and 1 / (1 + tail) on it; a·softmax in place.
    a_over = a / (1.0 + tail)
    z.mul_(a_over.unsqueeze(-1))
    z.scatter_(-1, am.unsqueeze(-1), a_over.unsqueeze(-1))
    hot = -(1.0 - eps) * gv * (w_t if w_t is not None else 1.0)
    z.scatter_add_(-1, tc.unsqueeze(-1), hot.unsqueeze(-1))
    if eps and cw is None:
        z.sub_((gv * (eps / n_cls)).unsqueeze(-1))
    elif eps:
        z.addr_(gv, cw, alpha=-eps / n_cls)
    return z


def _np(t: Tensor):
    """The NumPy view of a CPU tensor's memory (detached first only where it needs to be)."""
    return (t.detach() if t.requires_grad else t).numpy()


def _compiled_chunk(z: Tensor, target: Tensor, g: Tensor | None, opts: CrossEntropyOptions,
                    rows_out: Tensor, lse_out: Tensor) -> bool:
    """The plain chunk (class targets, no class weights, smoothing or z-loss) through the compiled
    CPU kernel (``logsumexp._cpu.cross_entropy_grad_rows``): each row read once from memory, its
    exps from L2 (float64 exp and sum), the gradient written in place; False (nothing done) when
    the kernel declines. Rows with an infinite or NaN maximum, left untouched by the kernel, go
    through :func:`chunk_forward` / :func:`chunk_grad`. Against the in-place torch chunk, one
    [524, 32000] float32 chunk: 57-61 -> 27 ms (two threads, Intel Xeon 2.0 GHz), where the
    torch chunk makes six passes over the 64 MiB buffer."""
    if z.dtype != torch.float32 or target.dtype != torch.int64 or not z.is_cpu or not z.is_contiguous():
        return False
    if not (rows_out.is_contiguous() and lse_out.is_contiguous() and rows_out.dtype == lse_out.dtype == torch.float32):
        return False
    ok = _cpu.cross_entropy_grad_rows(
        _np(z), _np(target.contiguous()), None if g is None else _np(g), opts.ignore_index, _np(rows_out), _np(lse_out),
    )
    if ok is None:
        return False
    if not ok.all():
        bad = torch.from_numpy(~ok).nonzero().squeeze(-1)
        zb, tb = z[bad], target[bad]
        rb, lb = chunk_forward(zb, tb, None, opts)
        rows_out[bad], lse_out[bad] = rb.to(rows_out.dtype), lb.to(lse_out.dtype)
        if g is not None:
            z[bad] = chunk_grad(zb, tb, None, lb, g[bad], None, opts, out=zb)
    return True


# --------------------------------------------------------------------------- LSE, softmax


def _rows2d(x: Tensor) -> Tensor:
    return x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x


def logsumexp_last(x: Tensor) -> Tensor:
    """LSE over the last dimension in the accumulation dtype (shape ``x.shape[:-1]``)."""
    fast = _compiled.lse_last(x)  # float32/float64 CPU: the compiled kernels, rounded once
    if fast is not None:
        return fast
    acc = acc_dtype(x.dtype)
    x2 = _rows2d(x)
    out = x2.new_empty(x2.shape[0], dtype=acc)
    if x2.shape[-1] == 0:
        return out.fill_(-torch.inf).reshape(x.shape[:-1])
    for sl in row_chunks(*x2.shape):
        t, m, am = shifted(x2[sl].to(acc))
        out[sl] = m + torch.log1p(exp_rest_sum(t, am))
        _refine_cancelled(x2[sl], m, out[sl])
    return out.reshape(x.shape[:-1])


def _refine_cancelled(x: Tensor, m: Tensor, lse: Tensor) -> None:
    """Recompute, in place, the rows whose final sum ``m + log1p(tail)`` cancelled.

    ``log1p(tail) ≥ 0`` carries an absolute error of about ``eps``; when the result is much smaller
    than ``|m|`` (``m < 0``, the sum near 1: ``[log .5, log .5 + 1e-12]`` gives ``5.0001e-13``), that
    error becomes a large relative one (2e-4 there). Those rows, rare, go to the array core's float64
    LogSumExp (double-double finish, ≤ 1 ulp), through NumPy on the CPU; other devices keep the
    torch value (a host round trip per call would cost more than the rare row is worth).
    """
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return
    cancelled = torch.isfinite(lse) & torch.isfinite(m) & (4.0 * lse.abs() < m.abs())
    if not bool(cancelled.any()):
        return
    from .._lse import logsumexp as core_logsumexp

    rows = cancelled.nonzero().squeeze(-1)
    exact = core_logsumexp(x[rows].detach().to(torch.float64).numpy(), axis=-1)
    lse[rows] = torch.from_numpy(exact).to(lse.dtype)


def logsumexp_last_backward(g: Tensor, x: Tensor, lse: Tensor) -> Tensor:
    """``g · softmax(x)``, chunk by chunk, with softmax recomputed as ``exp(x − m)/s``
    (:func:`softmax_rows`; ``lse`` is not needed for the value, only kept for the signature)."""
    acc = acc_dtype(x.dtype)
    x2 = _rows2d(x)
    g1 = g.reshape(-1).to(acc)
    out = x2.new_empty(x2.shape)
    for sl in row_chunks(*x2.shape):
        out[sl] = softmax_rows(x2[sl].to(acc), scale=g1[sl])
    return out.reshape(x.shape)


def logsumexp_last_backward_differentiable(g: Tensor, x: Tensor, lse: Tensor) -> Tensor:
    """:func:`logsumexp_last_backward` out of place (for second derivatives)."""
    acc = acc_dtype(x.dtype)
    p = softmax_from_lse_differentiable(x.to(acc), lse.to(acc))
    return (p * g.to(acc).unsqueeze(-1)).to(x.dtype)


def softmax_last(x: Tensor, log: bool) -> Tensor:
    """Softmax (division form ``exp(t)/Σexp(t)``) or log-softmax (``t − log1p(Σ_{i≠k} exp t_i)``)."""
    fast = _compiled.softmax_last(x, log)  # float32/float64 CPU: the compiled kernels
    if fast is not None:
        return fast.contiguous()  # the kernels keep x's layout; the operator promises rows
    acc = acc_dtype(x.dtype)
    x2 = _rows2d(x)
    out = x2.new_empty(x2.shape)
    if x2.numel() == 0:
        return out.reshape(x.shape)
    for sl in row_chunks(*x2.shape):
        t, _, am = shifted(x2[sl].to(acc))
        if log:
            rest = exp_rest_sum(t.clone(), am)
            out[sl] = t - torch.log1p(rest).unsqueeze(-1)
        else:
            t.exp_()
            s = t.sum(dim=-1, keepdim=True)
            # An all −inf row has s = 0 and t = 0: dividing by 1 keeps it all 0.
            out[sl] = t / torch.where(s == 0, 1.0, s)
    return out.reshape(x.shape)


def softmax_last_backward(g: Tensor, y: Tensor, log: bool) -> Tensor:
    """Softmax: ``y (g − Σ g y)``. Log-softmax: ``g − exp(y) Σ g``, 0 on all −inf rows.

    Out of place, so it is its own differentiable form (second derivatives flow through ``y``).
    """
    acc = acc_dtype(y.dtype)
    g32, y32 = g.to(acc), y.to(acc)
    if not log:
        return (y32 * (g32 - (g32 * y32).sum(dim=-1, keepdim=True))).to(y.dtype)
    grad = g32 - y32.exp() * g32.sum(dim=-1, keepdim=True)
    dead = (y32 == -torch.inf).all(dim=-1, keepdim=True)
    return torch.where(dead, 0.0, grad).to(y.dtype)
