"""Pure-torch kernels of the torch face: row statistics, cross-entropy rows and their gradients.

These are the CPU implementations behind the custom operators of :mod:`logsumexp.torch._ops`.
They work on 2-D ``(rows, classes)`` tensors, one chunk of rows at a time, so that every temporary
is a few hundred KiB and stays in cache; only the per-row statistics (max, LSE) are O(rows).

Stability (DESIGN.md §2-3):

- LSE is ``m + log1p(Σ_{i≠argmax} exp(x_i − m))`` with ``m = max(x)``: nothing overflows, and the
  term that dominates keeps its relative accuracy (Blanchard, Higham & Higham 2021).
- The negative log-likelihood of class ``t`` is ``(m − x_t) + log1p(Σ_{i≠argmax} exp(x_i − m))``:
  for a confident prediction the first term is 0 and the loss keeps full relative accuracy,
  where ``LSE − x_t`` would round to 0.
- Rows whose maximum is not finite are rewritten before ``exp``: an all −inf row has no mass
  (LSE −inf, softmax 0), ``k`` entries at +inf share the mass (LSE +inf, softmax ``1/k`` there),
  NaN stays NaN in its own row.
- ``0 · (−inf)`` never appears: a class of weight 0 or of target probability 0 contributes 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from .._options import CrossEntropyOptions

# 16 MiB of float32 per chunk temporary: out of L2 (2 MiB per core) but well inside the 300 MiB
# L3 of the Xeon we measured on. Against 2**18-element chunks (L2-sized) it issues 16× fewer small
# parallel regions, which measured 2-5× faster on a loaded 2-core machine ([8192, 32000] fp32).
# The backward writes straight into the gradient, so this costs no extra peak memory there.
CHUNK_ELEMENTS = 1 << 22


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float64 stays float64, everything else is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def row_chunks(n_rows: int, n_cols: int) -> Iterator[slice]:
    """Slices of consecutive rows holding about ``CHUNK_ELEMENTS`` entries each (at least one row)."""
    step = max(1, CHUNK_ELEMENTS // max(n_cols, 1))
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


def softmax_from_lse(z: Tensor, lse: Tensor, out: Tensor | None = None) -> Tensor:
    """``exp(z − lse)`` per row, with the special-row rules of DESIGN.md §2 (may write ``out``)."""
    out = torch.sub(z, lse.unsqueeze(-1), out=out) if out is not None else z - lse.unsqueeze(-1)
    out.exp_()
    bad = ~torch.isfinite(lse)
    if bool(bad.any()):
        rows = bad.nonzero().squeeze(-1)
        lb = lse[rows].unsqueeze(-1)
        hot = (z[rows] == math.inf).to(out.dtype)
        share = hot / hot.sum(dim=-1, keepdim=True).clamp_min(1.0)
        # −inf row: no mass; +inf row: 1/k on its +inf entries; NaN row: NaN.
        fixed = torch.where(lb == math.inf, share, torch.zeros_like(share))
        out[rows] = torch.where(torch.isnan(lb), lb, fixed)
    return out


# --------------------------------------------------------------------------- cross-entropy


def capped(x: Tensor, softcap: float | None, dtype: torch.dtype) -> Tensor:
    """Chunk upcast to ``dtype``, with ``softcap · tanh(x / softcap)`` applied when set."""
    z = x.to(dtype)
    if softcap is None:
        return z
    return torch.tanh(z / softcap).mul_(softcap)


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
    if target.is_floating_point():
        wq = _smoothed(target.to(z.dtype), weight, eps)
        a = g_rows * wq.sum(dim=-1)
        fixed: Tensor | None = wq
    else:
        valid = target != opts.ignore_index
        tc = torch.where(valid, target, 0)
        gv = torch.where(valid, g_rows, 0.0)
        w_t = weight[tc] if weight is not None else 1.0
        total_w = float(n_cls) if weight is None else weight.sum()
        a = gv * ((1.0 - eps) * w_t + (eps / n_cls) * total_w)
        fixed = None
    if opts.z_loss:
        a = a + (2.0 * opts.z_loss) * torch.where(torch.isfinite(lse), lse, 0.0) * _counted(
            target, g_rows, opts
        )
    if g_lse is not None:
        a = a + g_lse
    grad = softmax_from_lse(z, lse, out=out)
    grad.mul_(a.unsqueeze(-1))
    if fixed is not None:
        grad.sub_(g_rows.unsqueeze(-1) * fixed)
        return grad
    grad.scatter_add_(-1, tc.unsqueeze(-1), (-(1.0 - eps) * gv * w_t).unsqueeze(-1).to(grad.dtype))
    if eps and weight is None:
        grad.sub_((gv * (eps / n_cls)).unsqueeze(-1))
    elif eps:
        grad.addr_(gv.to(grad.dtype), weight, alpha=-eps / n_cls)  # rank-1 update, no temporary
    return grad


def _counted(target: Tensor, g_rows: Tensor, opts: CrossEntropyOptions) -> Tensor:
    """``g`` on counted rows, 0 on ignored ones (probability rows always count)."""
    if target.is_floating_point():
        return g_rows
    return torch.where(target != opts.ignore_index, g_rows, 0.0)


def softcap_grad_(grad: Tensor, x: Tensor, softcap: float) -> Tensor:
    """Chain rule through ``c·tanh(x/c)``: multiply ``grad`` in place by ``1 − tanh²(x/c)``."""
    th = torch.tanh(x.to(grad.dtype) / softcap)
    return grad.mul_(th.square_().neg_().add_(1.0))
