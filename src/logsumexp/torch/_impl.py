"""Whole-tensor CPU implementations behind the custom operators (loops over row chunks).

Each function takes plain tensors and one :class:`CrossEntropyOptions`; :mod:`._ops` registers
them as ``torch.library`` operators. Shapes here are already normalised by :mod:`._checks`:
logits ``(N, C)``, targets ``(N,)`` integers or ``(N, C)`` probabilities, hidden ``(N, D)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _kernels as K
from .._options import CrossEntropyOptions

# Memory budget of one chunk of logits in linear_cross_entropy: 64 MiB of float32 is 512 tokens
# at V = 32000, enough for the matrix products to run at full speed while the few chunk-sized
# temporaries (logits, shifted logits, softcapped logits) stay far below the full N × V matrix.
LCE_CHUNK_BYTES = 64 << 20


def _acc_weight(weight: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    return None if weight is None else weight.to(dtype)


def cross_entropy_rows(
    logits: Tensor, target: Tensor, weight: Tensor | None, opts: CrossEntropyOptions
) -> tuple[Tensor, Tensor]:
    """Per-row losses (0 on ignored rows) and per-row LSE, both in the accumulation dtype."""
    n, c = logits.shape
    acc = K.acc_dtype(logits.dtype)
    rows = logits.new_empty(n, dtype=acc)
    lse = logits.new_empty(n, dtype=acc)
    w = _acc_weight(weight, acc)
    for sl in K.row_chunks(n, c):
        z = K.capped(logits[sl], opts.softcap, acc)
        rows[sl], lse[sl] = K.chunk_forward(z, target[sl], w, opts)
    return rows, lse


def cross_entropy_rows_backward(
    g_rows: Tensor,
    g_lse: Tensor | None,
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None,
    lse: Tensor,
    opts: CrossEntropyOptions,
) -> Tensor:
    """Gradient with respect to the logits; softmax is recomputed from the saved LSE, chunk by chunk."""
    n, c = logits.shape
    acc = K.acc_dtype(logits.dtype)
    grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
    w = _acc_weight(weight, acc)
    g_rows = g_rows.to(acc)
    g_lse = None if g_lse is None else g_lse.to(acc)
    # Writing straight into the gradient saves a copy when no upcast or softcap is involved.
    direct = grad.dtype == acc and opts.softcap is None
    for sl in K.row_chunks(n, c):
        x = logits[sl]
        z = K.capped(x, opts.softcap, acc)
        out = grad[sl] if direct else (z if opts.softcap is not None else None)
        g_lse_sl = None if g_lse is None else g_lse[sl]
        g = K.chunk_grad(z, target[sl], w, lse[sl], g_rows[sl], g_lse_sl, opts, out=out)
        if opts.softcap is not None:
            K.softcap_grad_(g, x, opts.softcap)
        if not direct:
            grad[sl] = g
    return grad


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    target: Tensor,
    cls_weight: Tensor | None,
    g_rows: Tensor | None,
    opts: CrossEntropyOptions,
    wants: tuple[bool, bool] = (True, True),
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Rows and LSE of ``hidden @ weight.T + bias`` one chunk of tokens at a time.

    With ``g_rows`` (per-row or 0-d multipliers) it also returns the gradients of
    ``Σ g_rows · rows`` for hidden (if ``wants[0]``), and for weight (accumulated in float32, or
    float64) and bias (if ``wants[1]``: a frozen projection skips a third of the FLOPs);
    gradients not asked for come back empty.
    """
    n, d = hidden.shape
    v = weight.shape[0]
    acc = K.acc_dtype(hidden.dtype)
    rows = hidden.new_empty(n, dtype=acc)
    lse = hidden.new_empty(n, dtype=acc)
    want_h = g_rows is not None and wants[0]
    want_w = g_rows is not None and wants[1]
    # Distinct empty tensors: operator outputs may not alias one another.
    g_hidden = torch.empty_like(hidden) if want_h else hidden.new_empty(0)
    g_weight = hidden.new_zeros((v, d), dtype=acc) if want_w else hidden.new_empty(0)
    g_bias = hidden.new_zeros(v, dtype=acc) if want_w and bias is not None else hidden.new_empty(0)
    cw = _acc_weight(cls_weight, acc)
    step = max(1, LCE_CHUNK_BYTES // (v * torch.finfo(acc).bits // 8))
    for start in range(0, n, step):
        sl = slice(start, min(start + step, n))
        h = hidden[sl]
        raw = torch.addmm(bias, h, weight.t()) if bias is not None else h @ weight.t()
        raw = raw.to(acc)
        z = K.capped(raw, opts.softcap, acc)
        rows[sl], lse[sl] = K.chunk_forward(z, target[sl], cw, opts)
        if not (want_h or want_w):
            continue
        g = g_rows[sl] if g_rows.ndim else g_rows.to(acc).expand(sl.stop - sl.start)
        # The logits chunk is dead after this: its gradient overwrites it in place.
        gz = K.chunk_grad(z, target[sl], cw, lse[sl], g.to(acc), None, opts, out=z)
        if opts.softcap is not None:
            K.softcap_grad_(gz, raw, opts.softcap)
        if want_h:
            g_hidden[sl] = gz.to(weight.dtype) @ weight
        if want_w:
            g_weight.addmm_(gz.t(), h.to(acc))
        if want_w and bias is not None:
            g_bias += gz.sum(dim=0)
    return rows, lse, g_hidden, g_weight, g_bias


# --------------------------------------------------------------------------- LSE, softmax


def _rows2d(x: Tensor) -> Tensor:
    return x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x


def logsumexp_last(x: Tensor) -> Tensor:
    """LSE over the last dimension in the accumulation dtype (shape ``x.shape[:-1]``)."""
    acc = K.acc_dtype(x.dtype)
    x2 = _rows2d(x)
    out = x2.new_empty(x2.shape[0], dtype=acc)
    if x2.shape[-1] == 0:
        return out.fill_(-torch.inf).reshape(x.shape[:-1])
    for sl in K.row_chunks(*x2.shape):
        t, m, am = K.shifted(x2[sl].to(acc))
        out[sl] = m + torch.log1p(K.exp_rest_sum(t, am))
    return out.reshape(x.shape[:-1])


def softmax_last(x: Tensor, log: bool) -> Tensor:
    """Softmax (division form ``exp(t)/Σexp(t)``) or log-softmax (``t − log1p(Σ_{i≠k} exp t_i)``)."""
    acc = K.acc_dtype(x.dtype)
    x2 = _rows2d(x)
    out = x2.new_empty(x2.shape)
    if x2.numel() == 0:
        return out.reshape(x.shape)
    for sl in K.row_chunks(*x2.shape):
        t, _, am = K.shifted(x2[sl].to(acc))
        if log:
            rest = K.exp_rest_sum(t.clone(), am)
            out[sl] = t - torch.log1p(rest).unsqueeze(-1)
        else:
            t.exp_()
            s = t.sum(dim=-1, keepdim=True)
            # An all −inf row has s = 0 and t = 0: dividing by 1 keeps it all 0.
            out[sl] = t / torch.where(s == 0, 1.0, s)
    return out.reshape(x.shape)


def softmax_last_backward(g: Tensor, y: Tensor, log: bool) -> Tensor:
    """Softmax: ``y (g − Σ g y)``. Log-softmax: ``g − exp(y) Σ g``, 0 on all −inf rows."""
    acc = K.acc_dtype(y.dtype)
    g32, y32 = g.to(acc), y.to(acc)
    if not log:
        return (y32 * (g32 - (g32 * y32).sum(dim=-1, keepdim=True))).to(y.dtype)
    grad = g32 - y32.exp() * g32.sum(dim=-1, keepdim=True)
    dead = (y32 == -torch.inf).all(dim=-1, keepdim=True)
    return torch.where(dead, 0.0, grad).to(y.dtype)


def logsumexp_last_backward(g: Tensor, x: Tensor, lse: Tensor) -> Tensor:
    """``g · softmax(x)``, chunk by chunk, with softmax recomputed as ``exp(x − lse)``."""
    acc = K.acc_dtype(x.dtype)
    x2 = _rows2d(x)
    g1, l1 = g.reshape(-1).to(acc), lse.reshape(-1).to(acc)
    out = x2.new_empty(x2.shape)
    for sl in K.row_chunks(*x2.shape):
        p = K.softmax_from_lse(x2[sl].to(acc), l1[sl])
        out[sl] = p.mul_(g1[sl].unsqueeze(-1))
    return out.reshape(x.shape)
