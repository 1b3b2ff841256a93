r"""Per-token log-probabilities and entropy of the LM head, with or without the logits.

What RL fine-tuning (GRPO, PPO, DPO) needs from the head, for every token: ``log p(y) = z_y − LSE(z)``
with a gradient per token (the loss weights each token by its advantage), and the entropy
``H = −Σ p_i log p_i``. Both come from one pass over the row's ``(max, tail, B′)`` state:

- ``m = max z`` (one arg max ``k``), ``tail = Σ_{i≠k} e^{z_i − m}``, ``B′ = Σ_{i≠k} (z_i − m) e^{z_i − m} ≤ 0``;
- ``−log p(y) = (m − z_y) + log1p(tail)``: the cross-entropy row of :mod:`._cpu_impl`, computed by the
  same operations, so that ``log_probs`` is ``−cross_entropy(..., reduction="none")`` bit for bit;
- ``H = log1p(tail) − B′/(1 + tail)``: both terms are ≥ 0 (``B′`` is a sum of terms ≤ 0), so nothing
  cancels, and a confident row keeps its relative accuracy down to ``H ≈ 1e−30`` in float32, where
  the usual ``m + log A − B/A`` returns noise;
- ``∂H/∂z_i = −p_i (z_i − E[z])`` with ``E[z] − m = B′/(1 + tail)``: no ``log p`` is formed, so a
  probability of 0 (an entry at −inf) gets gradient 0, never ``0·(−inf) = NaN``;
- ``∂ log p(y)/∂z_i = [i = y] − p_i``.

Special rows (the contract's): an all −inf row has ``log p = −inf`` and ``H = 0`` with zero entropy
gradient; ``k`` entries at +inf share the mass (``H = log k``); NaN stays in its row.

The CPU arithmetic is chunked torch (``_cpu_impl``'s row chunks and special-row rewrite); CUDA
tensors go to ``logsumexp.triton._log_probs`` when Triton imports. Each computation is a
``torch.library`` operator with a fake and an autograd (the pattern of :mod:`._ops`), so
``torch.compile(fullgraph=True)`` and ``torch.func`` take it.
"""

# No ``from __future__ import annotations``: custom_op reads the real annotation objects.
import math
from types import ModuleType
from typing import Any, Optional

import torch
from torch import Tensor

from . import _checks
from . import _cpu_impl as C
from ._ops import _autograd, _building_graph, _call, _custom_op
from .._options import _check_int, _check_range

__all__ = ["linear_log_probs", "log_probs"]


# =========================================================================== row arithmetic


def chunk_log_probs(z: Tensor, tokens: Tensor, ignore_index: int, want_entropy: bool) -> tuple:
    """``(log p(y), H or None, E[z] − m)`` of one chunk of (temperature-scaled) logits ``z``.

    ``log p(y)`` is formed by the operations of ``_cpu_impl.chunk_forward`` for a plain class
    target (negated), so it equals ``−cross_entropy`` bit for bit; 0 on ignored tokens.
    """
    t, m, am = C.shifted(z)  # t = z − m, special rows rewritten (fresh tensor)
    valid = tokens != ignore_index
    tc = torch.where(valid, tokens, 0)
    z_t = z.gather(-1, tc.unsqueeze(-1)).squeeze(-1)
    e = torch.exp(t)
    # The arg max term (exactly 1) stays out of the tail: log1p keeps the small terms.
    e.scatter_(-1, am.unsqueeze(-1), 0.0)
    tail = e.sum(dim=-1)
    log1p_s = torch.log1p(tail)
    nll = torch.where(z_t == m, 0.0, m - z_t) + log1p_s
    nll = torch.where(m == -math.inf, math.inf, nll)
    logp = torch.where(valid, -nll, 0.0)
    # B' = Σ_{i≠k} t_i e^{t_i}: every term ≤ 0; an entry at −inf has e = 0 and adds 0 (not −inf·0).
    te = t.mul_(e).masked_fill_(e == 0, 0.0)
    ebar = te.sum(dim=-1) / (1.0 + tail)  # E[z] − m ≤ 0
    entropy = log1p_s - ebar if want_entropy else None
    return logp, entropy, ebar


def chunk_log_probs_grad(
    z: Tensor, tokens: Tensor, ignore_index: int, ebar: Tensor,
    g_lp: Optional[Tensor], g_h: Optional[Tensor],
) -> Tensor:
    """Gradient with respect to ``z`` of ``Σ g_lp·log p(y) + Σ g_h·H`` for one chunk (fresh tensor).

    ``g_lp·([i = y] − p_i) − g_h·p_i (t_i − E[t])``, ``p = e^{t}/Σ e^{t}`` recomputed from the logits
    (``t = z − m`` with the special rows rewritten as in the forward pass). Entries with ``p = 0``
    get exactly 0 (their ``t`` may be −inf).
    """
    t, _, _ = C.shifted(z)
    p = torch.exp(t)
    s = p.sum(dim=-1, keepdim=True)
    p.div_(torch.where(s == 0, 1.0, s))  # an all −inf row: s = 0, p = 0
    valid = tokens != ignore_index
    gv = None if g_lp is None else torch.where(valid, g_lp, 0.0)
    if g_h is None:
        grad = p.mul_(-gv.unsqueeze(-1))
    else:
        coef = t.sub_(ebar.unsqueeze(-1)).mul_(g_h.unsqueeze(-1))
        if gv is not None:
            coef.add_(gv.unsqueeze(-1))
        grad = torch.where(p == 0, 0.0, p * coef).neg_()
    if gv is not None:
        tc = torch.where(valid, tokens, 0)
        grad.scatter_add_(-1, tc.unsqueeze(-1), gv.unsqueeze(-1).to(grad.dtype))
    return grad


def log_probs_grad_differentiable(
    z: Tensor, tokens: Tensor, ignore_index: int, g_lp: Optional[Tensor], g_h: Optional[Tensor],
) -> Tensor:
    """:func:`chunk_log_probs_grad` as one out-of-place expression (``torch.func``, second derivatives).

    ``p`` comes from the torch face's differentiable softmax (special rows included); ``t`` is read
    as 0 where it is not finite (those entries have ``p = 0``, or share a +inf maximum), so that no
    infinity reaches a product whose derivative would turn it into NaN.
    """
    from ._ops import logsumexp_last  # the differentiable LSE operator (second derivatives)

    lse = logsumexp_last(z)
    p = C.softmax_from_lse_differentiable(z, lse)
    m = z.detach().amax(dim=-1, keepdim=True)
    ok = torch.isfinite(z) & torch.isfinite(m) & (p > 0)
    t = torch.where(ok, z - torch.where(torch.isfinite(m), m, 0.0), 0.0)
    grad = torch.zeros_like(p)
    if g_h is not None:
        ebar = (p * t).sum(dim=-1, keepdim=True)
        grad = grad - g_h.unsqueeze(-1) * p * (t - ebar)
    if g_lp is not None:
        valid = tokens != ignore_index
        gv = torch.where(valid, g_lp, 0.0)
        tc = torch.where(valid, tokens, 0)
        hot = torch.zeros_like(p).scatter(-1, tc.unsqueeze(-1), gv.unsqueeze(-1))
        grad = grad + hot - gv.unsqueeze(-1) * p
    return grad


def _scaled(x: Tensor, temperature: float, acc: torch.dtype) -> Tensor:
    """``x / T`` in the accumulation dtype (``x`` itself, upcast, when ``T = 1``: no rounding added)."""
    z = x.to(acc)
    return z if temperature == 1.0 else z / temperature


def log_probs_rows(
    logits: Tensor, tokens: Tensor, ignore_index: int, temperature: float, want_entropy: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Chunked forward over ``(N, V)`` rows: ``(log p, H or empty, E[z] − m)`` in the accumulation dtype."""
    n, v = logits.shape
    acc = C.acc_dtype(logits.dtype)
    logp = logits.new_empty(n, dtype=acc)
    ent = logits.new_empty(n if want_entropy else 0, dtype=acc)
    ebar = logits.new_empty(n, dtype=acc)
    for sl in C.row_chunks(n, v):
        lp, h, eb = chunk_log_probs(_scaled(logits[sl], temperature, acc), tokens[sl], ignore_index,
                                    want_entropy)
        logp[sl], ebar[sl] = lp, eb
        if want_entropy:
            ent[sl] = h
    return logp, ent, ebar


def log_probs_rows_backward(
    g_lp: Optional[Tensor], g_h: Optional[Tensor], logits: Tensor, tokens: Tensor, ebar: Tensor,
    ignore_index: int, temperature: float,
) -> Tensor:
    """Gradient of the logits, chunk by chunk, written in their dtype."""
    n, v = logits.shape
    acc = C.acc_dtype(logits.dtype)
    grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
    g_lp = None if g_lp is None else g_lp.to(acc)
    g_h = None if g_h is None else g_h.to(acc)
    for sl in C.row_chunks(n, v):
        g = chunk_log_probs_grad(
            _scaled(logits[sl], temperature, acc), tokens[sl], ignore_index, ebar[sl],
            None if g_lp is None else g_lp[sl], None if g_h is None else g_h[sl],
        )
        grad[sl] = g if temperature == 1.0 else g.div_(temperature)
    return grad


# =========================================================================== operators: logits


@_custom_op("logsumexp::log_probs_rows", mutates_args=())
def log_probs_rows_op(
    logits: Tensor, tokens: Tensor, ignore_index: int, temperature: float, entropy: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row log p(token), entropy (empty unless asked) and ``E[z] − m`` of ``(N, V)`` logits."""
    return log_probs_rows(logits, tokens, ignore_index, temperature, entropy)


@log_probs_rows_op.register_fake
def _(logits, tokens, ignore_index, temperature, entropy):
    acc = C.acc_dtype(logits.dtype)
    n = logits.shape[0]
    return (logits.new_empty(n, dtype=acc), logits.new_empty(n if entropy else 0, dtype=acc),
            logits.new_empty(n, dtype=acc))


@_custom_op("logsumexp::log_probs_rows_backward", mutates_args=())
def log_probs_rows_backward_op(
    g_lp: Optional[Tensor], g_h: Optional[Tensor], logits: Tensor, tokens: Tensor, ebar: Tensor,
    ignore_index: int, temperature: float,
) -> Tensor:
    """Gradient of ``Σ g_lp·log p + Σ g_h·H`` with respect to the logits (chunked)."""
    return log_probs_rows_backward(g_lp, g_h, logits, tokens, ebar, ignore_index, temperature)


@log_probs_rows_backward_op.register_fake
def _(g_lp, g_h, logits, tokens, ebar, ignore_index, temperature):
    return torch.empty_like(logits, memory_format=torch.contiguous_format)


class _LogProbsRows(torch.autograd.Function):
    """Saves the logits (by reference), the tokens and ``E[z] − m`` per row; backward recomputes ``p``."""

    @staticmethod
    def forward(*args: Any) -> Any:
        return _call(log_probs_rows_op, *args)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        logits, tokens, ignore_index, temperature, _ = inputs
        ctx.save_for_backward(logits, tokens, output[2])
        ctx.flat = (ignore_index, temperature)
        ctx.mark_non_differentiable(output[2])
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx: Any, g_lp: Optional[Tensor], g_h: Optional[Tensor], _g: Any) -> tuple:
        logits, tokens, ebar = ctx.saved_tensors
        nothing = (None,) * 4
        if not ctx.needs_input_grad[0] or (g_lp is None and g_h is None):
            return (None,) + nothing
        if g_h is not None and g_h.numel() == 0:
            g_h = None  # the entropy was not asked for: its output is an empty placeholder
        ignore_index, temperature = ctx.flat
        if _building_graph():
            acc = C.acc_dtype(logits.dtype)
            g = log_probs_grad_differentiable(
                _scaled(logits, temperature, acc), tokens, ignore_index,
                None if g_lp is None else g_lp.to(acc), None if g_h is None else g_h.to(acc),
            )
            return (g / temperature).to(logits.dtype), *nothing
        g = _call(log_probs_rows_backward_op, g_lp, g_h, logits, tokens, ebar, *ctx.flat)
        return g, *nothing


_log_probs_rows = _autograd(log_probs_rows_op, _LogProbsRows)


# =========================================================================== operators: linear


def _chunk_step(n_rows: int, v: int, acc: torch.dtype, chunk_rows: int) -> int:
    """Tokens per chunk: ``chunk_rows``, else the linear cross-entropy's logits budget."""
    if chunk_rows:
        return chunk_rows
    return max(1, C.LCE_CHUNK_BYTES // (max(v, 1) * torch.finfo(acc).bits // 8))


def _chunk_logits(h: Tensor, weight: Tensor, bias: Optional[Tensor], temperature: float,
                  acc: torch.dtype) -> Tensor:
    """One chunk's logits ``h @ Wᵀ + b`` (the product in the input dtype, as the model's head
    computes it), then upcast and divided by the temperature."""
    raw = torch.addmm(bias, h, weight.t()) if bias is not None else h @ weight.t()
    return _scaled(raw, temperature, acc)


def linear_log_probs_rows(
    hidden: Tensor, weight: Tensor, bias: Optional[Tensor], tokens: Tensor, ignore_index: int,
    temperature: float, want_entropy: bool, chunk_rows: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Forward of the linear form, one chunk of tokens at a time: never more than a chunk of logits."""
    n = hidden.shape[0]
    v = weight.shape[0]
    acc = C.acc_dtype(hidden.dtype)
    logp = hidden.new_empty(n, dtype=acc)
    ent = hidden.new_empty(n if want_entropy else 0, dtype=acc)
    ebar = hidden.new_empty(n, dtype=acc)
    step = _chunk_step(n, v, acc, chunk_rows)
    for start in range(0, n, step):
        sl = slice(start, min(start + step, n))
        z = _chunk_logits(hidden[sl], weight, bias, temperature, acc)
        lp, h, eb = chunk_log_probs(z, tokens[sl], ignore_index, want_entropy)
        logp[sl], ebar[sl] = lp, eb
        if want_entropy:
            ent[sl] = h
    return logp, ent, ebar


def linear_log_probs_rows_backward(
    g_lp: Optional[Tensor], g_h: Optional[Tensor], hidden: Tensor, weight: Tensor,
    bias: Optional[Tensor], tokens: Tensor, ebar: Tensor, ignore_index: int, temperature: float,
    grad_hidden: bool, grad_weight: bool, chunk_rows: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of hidden, weight (accumulated in float32, float64 for float64) and bias.

    The upstream gradient differs per token and is only known here, so each chunk's logits are
    recomputed (one product more than the forward pass: ``8·N·D·V`` FLOPs in all).
    """
    n, d = hidden.shape
    v = weight.shape[0]
    acc = C.acc_dtype(hidden.dtype)
    g_lp = None if g_lp is None else g_lp.to(acc)
    g_h = None if g_h is None else g_h.to(acc)
    g_hidden = torch.empty_like(hidden) if grad_hidden else hidden.new_empty(0)
    g_weight = hidden.new_zeros((v, d), dtype=acc) if grad_weight else hidden.new_empty(0)
    g_bias = hidden.new_zeros(v, dtype=acc) if grad_weight and bias is not None else hidden.new_empty(0)
    step = _chunk_step(n, v, acc, chunk_rows)
    for start in range(0, n, step):
        sl = slice(start, min(start + step, n))
        h = hidden[sl]
        z = _chunk_logits(h, weight, bias, temperature, acc)
        gz = chunk_log_probs_grad(z, tokens[sl], ignore_index, ebar[sl],
                                  None if g_lp is None else g_lp[sl], None if g_h is None else g_h[sl])
        if temperature != 1.0:
            gz.div_(temperature)
        if grad_weight and bias is not None:
            g_bias += gz.sum(dim=0)
        if grad_hidden:
            torch.mm(gz.to(weight.dtype), weight, out=g_hidden[sl])
        if grad_weight:  # in float32 in place: a bf16 product plus its add into the sum cost 3x (issue 23)
            g_weight.addmm_(gz.t(), h.to(acc))
    return g_hidden, g_weight.to(weight.dtype) if grad_weight else g_weight, \
        g_bias.to(bias.dtype) if g_bias.numel() else g_bias


@_custom_op("logsumexp::linear_log_probs", mutates_args=())
def linear_log_probs_op(
    hidden: Tensor, weight: Tensor, bias: Optional[Tensor], tokens: Tensor, ignore_index: int,
    temperature: float, entropy: bool, chunk_rows: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token log p, entropy (empty unless asked) and ``E[z] − m`` of ``hidden @ weight.T + bias``."""
    return linear_log_probs_rows(hidden, weight, bias, tokens, ignore_index, temperature, entropy,
                                 chunk_rows)


@linear_log_probs_op.register_fake
def _(hidden, weight, bias, tokens, ignore_index, temperature, entropy, chunk_rows):
    acc = C.acc_dtype(hidden.dtype)
    n = hidden.shape[0]
    return (hidden.new_empty(n, dtype=acc), hidden.new_empty(n if entropy else 0, dtype=acc),
            hidden.new_empty(n, dtype=acc))


@_custom_op("logsumexp::linear_log_probs_backward", mutates_args=())
def linear_log_probs_backward_op(
    g_lp: Optional[Tensor], g_h: Optional[Tensor], hidden: Tensor, weight: Tensor,
    bias: Optional[Tensor], tokens: Tensor, ebar: Tensor, ignore_index: int, temperature: float,
    grad_hidden: bool, grad_weight: bool, chunk_rows: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of hidden, weight and bias (empty where not asked for); logits recomputed per chunk."""
    return linear_log_probs_rows_backward(g_lp, g_h, hidden, weight, bias, tokens, ebar, ignore_index,
                                          temperature, grad_hidden, grad_weight, chunk_rows)


@linear_log_probs_backward_op.register_fake
def _(g_lp, g_h, hidden, weight, bias, tokens, ebar, ignore_index, temperature, grad_hidden,
      grad_weight, chunk_rows):
    gh = torch.empty_like(hidden) if grad_hidden else hidden.new_empty(0)
    gw = torch.empty_like(weight) if grad_weight else hidden.new_empty(0)
    gb = torch.empty_like(bias) if grad_weight and bias is not None else hidden.new_empty(0)
    return gh, gw, gb


class _LinearLogProbs(torch.autograd.Function):
    """Saves the inputs by reference and ``E[z] − m``; backward recomputes each chunk's logits."""

    @staticmethod
    def forward(*args: Any) -> Any:
        return _call(linear_log_probs_op, *args)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        hidden, weight, bias, tokens, ignore_index, temperature, _, chunk_rows = inputs
        ctx.save_for_backward(hidden, weight, bias, tokens, output[2])
        ctx.flat = (ignore_index, temperature)
        ctx.chunk_rows = chunk_rows
        ctx.mark_non_differentiable(output[2])
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx: Any, g_lp: Optional[Tensor], g_h: Optional[Tensor], _g: Any) -> tuple:
        hidden, weight, bias, tokens, ebar = ctx.saved_tensors
        need = ctx.needs_input_grad
        rest = (None,) * 5
        if g_h is not None and g_h.numel() == 0:
            g_h = None
        if g_lp is None and g_h is None:
            return (None, None, None) + rest
        ignore_index, temperature = ctx.flat
        if _building_graph():
            # torch.func / create_graph: one differentiable expression (this builds the [N, V] logits).
            acc = C.acc_dtype(hidden.dtype)
            z = _scaled(torch.nn.functional.linear(hidden, weight, bias), temperature, acc)
            gz = log_probs_grad_differentiable(
                z, tokens, ignore_index, None if g_lp is None else g_lp.to(acc),
                None if g_h is None else g_h.to(acc),
            ) / temperature
            gh = (gz.to(weight.dtype) @ weight) if need[0] else None
            gw = (gz.t() @ hidden.to(acc)).to(weight.dtype) if need[1] else None
            gb = gz.sum(dim=0).to(bias.dtype) if bias is not None and need[2] else None
            return (gh, gw, gb) + rest
        gh, gw, gb = _call(linear_log_probs_backward_op, g_lp, g_h, hidden, weight, bias, tokens, ebar,
                           ignore_index, temperature, need[0], need[1] or need[2], ctx.chunk_rows)
        return (gh if need[0] else None, gw if need[1] else None,
                gb if need[2] and bias is not None else None) + rest


_linear_log_probs = _autograd(linear_log_probs_op, _LinearLogProbs)


# =========================================================================== the face


def _load_triton() -> Optional[ModuleType]:
    """``logsumexp.triton._log_probs`` on a machine with CUDA where Triton imports, else None.

    Looked up once, at import, so that the dispatch is a read of a module global under ``torch.compile``.
    """
    if not torch.cuda.is_available():
        return None
    try:
        from ..triton import _log_probs as face
    except ImportError:
        return None
    return face


_TRITON: Optional[ModuleType] = _load_triton()


def _options(ignore_index: object, temperature: object, return_entropy: object) -> None:
    _check_int("ignore_index", ignore_index)
    _check_range("temperature", temperature, "finite and > 0", lambda v: v > 0.0)
    if not isinstance(return_entropy, bool):
        raise TypeError(f"return_entropy must be a bool, got {type(return_entropy).__name__}")


def _token_rows(tokens: object, expected: tuple, what: str) -> Tensor:
    t = _checks.tensor("tokens", tokens)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"tokens must hold integer token ids, got {t.dtype}")
    if tuple(t.shape) != expected:
        raise ValueError(f"tokens must have shape {expected} ({what}), got {tuple(t.shape)}")
    return t


def log_probs(
    logits: Tensor,
    tokens: Tensor,
    *,
    temperature: float = 1.0,
    ignore_index: int = -100,
    return_entropy: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Per-token log-probability ``log p(y) = z_y − LSE(z)`` and, if asked, the entropy, ``z = logits / T``.

    ``logits`` is ``(..., V)`` (the vocabulary last, as a causal LM returns it), ``tokens`` ``(...)``
    integer ids; the result has the shape of ``tokens``, in float32 (float64 for float64 logits),
    whatever the logits' dtype (TRL's ``selective_log_softmax`` plus ``entropy_from_logits``, in one
    pass and without a ``[N, V]`` temporary). No reduction: the caller weights the tokens.

    Stability: ``−log p(y) = (m − z_y) + log1p(Σ_{i≠k} e^{z_i − m})`` with ``m = z_k = max z``, and
    ``H = log1p(tail) − B′/(1 + tail)`` with ``B′ = Σ_{i≠k} (z_i − m) e^{z_i − m} ≤ 0``: two
    non-negative terms, no cancellation (relative accuracy down to ``H ≈ 1e−30`` in float32).
    Gradients: ``∂ log p(y)/∂z_i = [i = y] − p_i``, ``∂H/∂z_i = −p_i (z_i − E[z])`` (never ``log 0``),
    for any upstream gradient of either output, then divided by ``T``.

    Special values: a token equal to ``ignore_index`` gives log-probability 0 and no gradient from
    it (its entropy is still computed: it does not depend on the token); an all −inf row gives
    ``log p = −inf`` and entropy 0 with zero gradients; ``k`` logits at +inf share the mass
    (``H = log k``); NaN stays in its row. The log-probabilities are ``−cross_entropy(logits / T,
    tokens, reduction="none")`` bit for bit on CPU. A token out of ``[0, V)`` raises the
    ``IndexError`` of :func:`logsumexp.torch.cross_entropy` (eager CPU).

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import log_probs
    >>> x = torch.tensor([[30.0, 0.0, 0.0]])
    >>> y = torch.tensor([0])
    >>> torch.log_softmax(x, -1)[0, 0].item()            # rounds to 0
    0.0
    >>> lp, h = log_probs(x, y, return_entropy=True)
    >>> f"{lp.item():.4e}  {h.item():.4e}"               # −2e^{−30}, 62e^{−30}
    '-1.8715e-13  5.8017e-12'
    """
    _options(ignore_index, temperature, return_entropy)
    x = _checks.floating("logits", logits)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"logits must have a vocabulary dimension (the last) of size >= 1, got shape "
                         f"{tuple(x.shape)}")
    t = _token_rows(tokens, tuple(x.shape[:-1]), "the logits' shape without the vocabulary")
    v = x.shape[-1]
    _checks.target_range(t, v, ignore_index)
    rows, trows = x.reshape(-1, v), t.reshape(-1).long()
    if _TRITON is not None and rows.is_cuda:
        lp, h = _TRITON.log_probs_rows(rows.contiguous(), trows, ignore_index, temperature, return_entropy)
    else:
        lp, h, _ = _log_probs_rows(rows, trows, ignore_index, temperature, return_entropy)
    lp = lp.reshape(t.shape)
    return (lp, h.reshape(t.shape)) if return_entropy else lp


def linear_log_probs(
    hidden: Tensor,
    weight: Tensor,
    tokens: Tensor,
    *,
    bias: Tensor | None = None,
    temperature: float = 1.0,
    ignore_index: int = -100,
    return_entropy: bool = False,
    chunk_size: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    r""":func:`log_probs` of ``hidden @ weight.T + bias`` without the ``[N, V]`` logits.

    ``hidden`` ``(..., D)``, ``weight`` ``(V, D)``, ``bias`` ``(V,)``, ``tokens`` ``(...)``. The tokens
    are processed in chunks of ``chunk_size`` (default: about 64 MiB of float32 logits per chunk,
    the budget of :func:`logsumexp.torch.linear_cross_entropy`); each chunk's product is taken in
    the input dtype (as the model's head does) and everything after it in float32. Backward
    recomputes each chunk's logits (the upstream gradient differs per token), so forward +
    backward cost ``8·N·D·V`` FLOPs and one chunk of logits of extra memory; the weight's gradient
    is accumulated in float32. Formulas, special values and errors as :func:`log_probs`.

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import linear_log_probs
    >>> g = torch.Generator().manual_seed(0)
    >>> h = torch.randn(5, 8, generator=g, requires_grad=True)
    >>> w = torch.randn(11, 8, generator=g, requires_grad=True)
    >>> y = torch.tensor([1, 2, 3, 4, 10])
    >>> lp, ent = linear_log_probs(h, w, y, return_entropy=True, chunk_size=2)
    >>> ref = torch.log_softmax(h @ w.T, -1).gather(-1, y[:, None]).squeeze(-1)
    >>> torch.allclose(lp, ref)
    True
    >>> (lp.sum() + ent.sum()).backward(); w.grad.shape
    torch.Size([11, 8])
    """
    _options(ignore_index, temperature, return_entropy)
    chunk_size = _checks.positive_int("chunk_size", chunk_size)
    h = _checks.floating("hidden", hidden)
    if h.ndim == 0:
        raise ValueError("hidden must have a feature dimension (the last), got a 0-d tensor")
    t = _token_rows(tokens, tuple(h.shape[:-1]), "hidden's shape without its last dimension")
    h2, w, b, trows, shape = _checks.linear_rows(h, weight, bias, t)
    _checks.target_range(t, w.shape[0], ignore_index)
    if _TRITON is not None and h2.is_cuda:
        lp, ent = _TRITON.linear_log_probs_rows(h2.contiguous(), w, b, trows, ignore_index, temperature,
                                                return_entropy, chunk_size)
    else:
        lp, ent, _ = _linear_log_probs(h2, w, b, trows, ignore_index, temperature, return_entropy,
                                       chunk_size or 0)
    lp = lp.reshape(shape)
    return (lp, ent.reshape(shape)) if return_entropy else lp
