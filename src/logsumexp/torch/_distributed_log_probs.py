r"""Vocabulary-parallel per-token log-probabilities and entropy (the vocabulary split across a group).

Each rank holds the logits ``(*, V_r)`` of its contiguous slice of the vocabulary, as in
:func:`logsumexp.torch.vocab_parallel_cross_entropy`, and the same tokens. Every rank gets the
log-probabilities and entropies of the *whole* vocabulary and the gradient of its own slice.

How (one collective forward, none backward)
-------------------------------------------
1. Locally, chunk by chunk, each rank reduces its slice (``z = logits / T``) to the mergeable state
   ``(m_r, tail_r, B_r)``: ``m_r = max``, ``tail_r = Σ_{i≠k_r} e^{z_i − m_r}``,
   ``B_r = Σ_{i≠k_r} (z_i − m_r) e^{z_i − m_r} ≤ 0``, and the token's logit on the rank that owns it.
2. One ``all_gather`` of a float64 ``[N + 1, 5]`` tensor per rank (the state, the token's logit, the
   token, and one row of metadata). (A sum all-reduce cannot merge states whose maxima differ
   without a first all-reduce of the maximum; the gather is one collective.)
3. Every rank merges the states in rank order with the torch face's merge of ``(max, lead, tail)``
   (:func:`._cpu_impl.merge`) and ``B′ = Σ_r e^{m_r − M} (B_r + (m_r − M)(lead_r + tail_r))``, a sum
   of terms ≤ 0 (no cancellation); then ``log p(y) = −((M − z_y) + log1p(tail))`` and
   ``H = log1p(tail) − B′/(1 + tail)``, bit for bit the same on every rank.
4. Backward is local: ``p = e^{z − M}/(1 + tail)`` from the saved global state, and the gradient
   ``g_lp([i = y] − p_i) − g_H p_i (z_i − E[z])`` of the slice.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor

from . import _cpu_impl as K
from ._checks import floating, positive_int, tensor
from .distributed import _all_gather, _check_group, _check_tensors, _fix_special_rows, _merge_ranks, _position
from .._options import _check_int, _check_range, target_out_of_range

__all__ = ["vocab_parallel_linear_log_probs", "vocab_parallel_log_probs"]

_M, _TAIL, _B, _ZY, _TOKEN = range(5)
_META = ("vocab_start", "width", "ignore_index", "temperature", "return_entropy")


def vocab_parallel_log_probs(
    logits_shard: Tensor,
    tokens: Tensor,
    group: Any = None,
    vocab_start: int | None = None,
    *,
    temperature: float = 1.0,
    ignore_index: int = -100,
    return_entropy: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r""":func:`logsumexp.torch.log_probs` over a vocabulary split into contiguous slices across ``group``.

    Every rank calls it with the logits of its slice ``(*, V_r)`` (the vocabulary last) and the same
    tokens ``(*)``; every rank gets the same per-token ``log p(y)`` (0 at ignored tokens) and, with
    ``return_entropy``, entropy of the whole vocabulary, in float32 (float64 for float64), and the
    gradient of its own slice for any upstream gradient of either. ``group`` and ``vocab_start``
    as in :func:`logsumexp.torch.vocab_parallel_cross_entropy` (default ``rank × V_r``; uneven
    slices need it). Formulas and special values as :func:`logsumexp.torch.log_probs`: the maximum's
    term is kept out of the global tail (one arg max over all ranks), so a confident token keeps its
    relative accuracy, and the entropy ``log1p(tail) − B′/(1 + tail)`` has no cancellation.

    Collectives: forward one ``all_gather`` of ``[N + 1, 5]`` float64 per rank; backward none.
    Checked after the gather (eager CPU, identically on every rank): the slices tile ``[0, V)``, the
    options and tokens agree (ValueError), a token outside ``[0, V)`` raises the ``IndexError`` of
    :func:`logsumexp.torch.cross_entropy`. Eager only (an ``autograd.Function`` around a collective).

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import vocab_parallel_log_probs
    >>> # Needs an initialised process group; with two ranks holding halves of [1000, 0 | 0, 1000]:
    >>> vocab_parallel_log_probs(torch.tensor([[1000.0, 0.0]]), torch.tensor([0]))  # doctest: +SKIP
    tensor([-0.6931])
    """
    _check_int("ignore_index", ignore_index)
    _check_range("temperature", temperature, "finite and > 0", lambda v: v > 0.0)
    if not isinstance(return_entropy, bool):
        raise TypeError(f"return_entropy must be a bool, got {type(return_entropy).__name__}")
    x, t = _check_tensors(logits_shard, tokens)
    group, rank, world = _check_group("group", group)
    vocab_start = _check_vocab_start(vocab_start, rank * x.shape[-1])
    plan = (group, world, vocab_start, ignore_index, float(temperature), return_entropy)
    lp, ent = _VocabParallelLogProbs.apply(x, t, plan)
    return (lp, ent) if return_entropy else lp


def vocab_parallel_linear_log_probs(
    hidden: Tensor,
    weight_shard: Tensor,
    tokens: Tensor,
    group: Any = None,
    vocab_start: int | None = None,
    *,
    bias: Tensor | None = None,
    temperature: float = 1.0,
    ignore_index: int = -100,
    return_entropy: bool = False,
    chunk_size: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    r""":func:`vocab_parallel_log_probs` of ``hidden @ weight_shard.T + bias``, never forming the logits.

    The weight-shard form (Megatron's vocabulary-parallel LM head): every rank holds the same
    ``hidden`` ``(..., D)`` and tokens ``(...)``, and the rows ``(V_r, D)`` of the output layer (and
    ``bias`` ``(V_r,)``) of its contiguous slice of the vocabulary, starting at ``vocab_start``
    (default ``rank × V_r``; uneven slices need it). Every rank gets the same per-token ``log p(y)``
    (0 at ignored tokens) and, with ``return_entropy``, entropy over the *whole* vocabulary, in
    float32 (float64 for float64), for any upstream gradient of either output:

    - ``weight_shard`` and ``bias`` get their own slice's gradient (accumulated in float32);
    - ``hidden`` gets the *full* gradient ``Σ_r ∂/∂hidden`` on every rank: backward sums the ranks'
      partial products with one ``all_reduce`` (in float32), so ``hidden`` must not also pass
      through a "copy to the tensor-parallel region" whose backward all-reduces it again.

    Formulas, stability and special values as :func:`logsumexp.torch.linear_log_probs`: each rank
    reduces its logits, ``chunk_size`` tokens at a time (default: the chunk of
    :func:`logsumexp.torch.linear_cross_entropy`), to the state ``(m_r, tail_r, B_r)`` with the
    maximum's term kept out of the tail, the states are merged exactly as in
    :func:`vocab_parallel_log_probs`, and ``H = log1p(tail) − B′/(1 + tail)`` has no cancellation.
    The product is taken in the input dtype, as the model's head takes it; backward recomputes
    each chunk's logits (``8·N·D·V_r`` FLOPs per rank in all) and never holds more than one chunk.

    Collectives: forward one ``all_gather`` of ``[N + 1, 5]`` float64 per rank; backward one
    ``all_reduce`` of ``[N, D]`` when ``hidden`` needs its gradient. Checked after the gather
    (eager CPU, identically on every rank): the slices tile ``[0, V)``, the options and tokens
    agree (ValueError); a token outside ``[0, V)`` raises the ``IndexError`` of
    :func:`logsumexp.torch.cross_entropy`. Eager only.

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import vocab_parallel_linear_log_probs
    >>> # Needs an initialised process group; two ranks, each holding 3 of the 6 rows of the head:
    >>> h = torch.tensor([[1.0, 0.0]])
    >>> w = torch.tensor([[20.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # rank 0; rank 1: zeros
    >>> lp, ent = vocab_parallel_linear_log_probs(h, w, torch.tensor([0]),
    ...                                           return_entropy=True)  # doctest: +SKIP
    >>> lp  # −log1p(5·e^{−20}) on both ranks  # doctest: +SKIP
    tensor([-1.0306e-08])
    """
    _check_int("ignore_index", ignore_index)
    _check_range("temperature", temperature, "finite and > 0", lambda v: v > 0.0)
    if not isinstance(return_entropy, bool):
        raise TypeError(f"return_entropy must be a bool, got {type(return_entropy).__name__}")
    chunk_size = positive_int("chunk_size", chunk_size)
    h, w, b, t = _check_linear(hidden, weight_shard, bias, tokens)
    group, rank, world = _check_group("group", group)
    vocab_start = _check_vocab_start(vocab_start, rank * w.shape[0])
    plan = (group, world, vocab_start, ignore_index, float(temperature), return_entropy, chunk_size or 0)
    lp, ent = _VocabParallelLinearLogProbs.apply(h, w, b, t, plan)
    return (lp, ent) if return_entropy else lp


def _check_vocab_start(vocab_start: object, default: int) -> int:
    if vocab_start is None:
        return default
    if isinstance(vocab_start, bool) or not isinstance(vocab_start, int):
        raise TypeError(f"vocab_start must be an int or None, got {type(vocab_start).__name__}")
    if vocab_start < 0:
        raise ValueError(f"vocab_start must be >= 0, got {vocab_start}")
    return vocab_start


def _check_linear(hidden: object, weight: object, bias: object, tokens: object) -> tuple:
    """``hidden (..., D)``, ``weight_shard (V_r, D)`` (``V_r`` may be 0), ``bias (V_r,)``, tokens ``(...)``."""
    h = floating("hidden", hidden)
    w = floating("weight_shard", weight)
    if h.ndim == 0:
        raise ValueError("hidden must have a feature dimension (the last), got a 0-d tensor")
    if w.ndim != 2 or w.shape[1] != h.shape[-1]:
        raise ValueError(f"weight_shard must have shape (V_r, {h.shape[-1]}) for hidden {tuple(h.shape)}, "
                         f"got {tuple(w.shape)}")
    if w.dtype != h.dtype:
        raise TypeError(f"weight_shard must have hidden's dtype {h.dtype}, got {w.dtype}")
    if bias is not None:
        b = floating("bias", bias)
        if b.shape != (w.shape[0],) or b.dtype != h.dtype:
            raise ValueError(f"bias must have shape ({w.shape[0]},) and dtype {h.dtype}, "
                             f"got {tuple(b.shape)} {b.dtype}")
    t = tensor("tokens", tokens)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"tokens must hold integer token ids, got {t.dtype}")
    if tuple(t.shape) != tuple(h.shape[:-1]):
        raise ValueError(f"tokens must have shape {tuple(h.shape[:-1])} (hidden's shape without its last "
                         f"dimension), got {tuple(t.shape)}")
    for name, other in (("weight_shard", w), ("bias", bias), ("tokens", t)):
        if other is not None and other.device != h.device:
            raise ValueError(f"{name} must be on hidden's device {h.device}, got {other.device}")
    return h, w, bias, t


def _local_state(x: Tensor, t: Tensor, start: int, ignore_index: int, temperature: float, out: Tensor) -> None:
    """Fill ``out`` ([n, 5] float64) with this slice's (m, tail, B), the owned token's logit, the token."""
    n, width = x.shape
    acc = K.acc_dtype(x.dtype)
    out[:, _TOKEN] = t
    if width == 0:  # no classes: the identity state (−inf, lead 0, tail 0, B 0)
        out[:, _M] = -math.inf
        return
    owner = (t != ignore_index) & (t >= start) & (t < start + width)
    loc = torch.where(owner, t - start, 0).unsqueeze(-1)
    for sl in K.row_chunks(n, width):
        z = x[sl].to(acc)
        z = z if temperature == 1.0 else z / temperature
        shifted, m, am = K.shifted(z)
        e = torch.exp(shifted)
        e.scatter_(-1, am.unsqueeze(-1), 0.0)  # the local arg max stays out of the tail
        out[sl, _TAIL] = e.sum(dim=-1)
        out[sl, _B] = shifted.mul_(e).masked_fill_(e == 0, 0.0).sum(dim=-1)
        out[sl, _M] = m
        out[sl, _ZY] = torch.where(owner[sl], z.gather(-1, loc[sl]).squeeze(-1), 0.0)


def _merge_b(m: Tensor, tail: Tensor, b: Tensor, big: Tensor) -> Tensor:
    """``B′ = Σ_r e^{m_r − M} (B_r + (m_r − M)(lead_r + tail_r))``: every term ≤ 0; a rank holding the
    maximum adds its ``B_r`` (``m_r − M`` read as 0, also at ±inf), an empty rank adds 0."""
    lead = (m != -math.inf).to(m.dtype)
    same = m == big
    gap = torch.where(same, 0.0, m - torch.where(same, 0.0, big))
    scale = torch.exp(gap)
    term = b + torch.where(same | (lead == 0), 0.0, gap * (lead + tail))
    return torch.where(scale == 0, 0.0, scale * term).sum(dim=0)


class _VocabParallelLogProbs(torch.autograd.Function):
    """Forward: local states, one gather, merge. Backward: local, from the saved global state."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, tokens: Tensor, plan: tuple) -> tuple[Tensor, Tensor]:
        group, world, start, ignore_index, temperature, want_entropy = plan
        x = logits.reshape(tokens.numel(), logits.shape[-1])
        t = tokens.reshape(-1).long()
        n, width = x.shape
        acc = K.acc_dtype(x.dtype)
        mine = torch.zeros(n + 1, 5, dtype=torch.float64, device=x.device)
        _local_state(x, t, start, ignore_index, temperature, mine[:n])
        lp, ent, saved = _gather_and_merge(mine, t, tokens.shape, plan, width, acc)
        ctx.save_for_backward(x, t, *saved)
        ctx.plan = plan
        ctx.logits_shape = logits.shape
        ctx.set_materialize_grads(False)
        if not want_entropy:
            ctx.mark_non_differentiable(ent)
        return lp.reshape(tokens.shape), ent.reshape(tokens.shape)

    @staticmethod
    def backward(ctx: Any, g_lp: Tensor | None, g_h: Tensor | None):
        if not ctx.needs_input_grad[0]:
            return None, None, None
        x, t, big, s, ebar, lse = ctx.saved_tensors
        _, _, start, ignore_index, temperature, _ = ctx.plan
        n, width = x.shape
        acc = big.dtype
        grad = torch.zeros(x.shape, dtype=x.dtype, device=x.device)
        if (g_lp is None and g_h is None) or width == 0 or n == 0:
            return grad.reshape(ctx.logits_shape), None, None
        coefs = _grad_coefs(t, start, width, ignore_index, g_lp, g_h, big, s, lse, acc)
        for sl in K.row_chunks(n, width):
            grad[sl] = _shard_grad(_scaled(x[sl], temperature, acc), sl, coefs, big, s, ebar, lse,
                                   temperature)
        return grad.reshape(ctx.logits_shape), None, None


class _VocabParallelLinearLogProbs(torch.autograd.Function):
    """Forward: chunked local states of ``hidden @ Wᵀ + b``, one gather, merge. Backward: the chunks'
    logits recomputed, the slice's gradients, one all-reduce of hidden's."""

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, bias: Tensor | None, tokens: Tensor,
                plan: tuple) -> tuple[Tensor, Tensor]:
        group, world, start, ignore_index, temperature, want_entropy, chunk_rows = plan
        h = hidden.reshape(tokens.numel(), hidden.shape[-1])
        t = tokens.reshape(-1).long()
        n, width = h.shape[0], weight.shape[0]
        acc = K.acc_dtype(h.dtype)
        mine = torch.zeros(n + 1, 5, dtype=torch.float64, device=h.device)
        for sl in _token_chunks(n, width, acc, chunk_rows):
            _local_state(_head(h[sl], weight, bias), t[sl], start, ignore_index, temperature, mine[sl])
        lp, ent, saved = _gather_and_merge(mine, t, tokens.shape, plan, width, acc)
        ctx.save_for_backward(h, weight, bias, t, *saved)
        ctx.plan = plan
        ctx.hidden_shape = hidden.shape
        ctx.set_materialize_grads(False)
        if not want_entropy:
            ctx.mark_non_differentiable(ent)
        return lp.reshape(tokens.shape), ent.reshape(tokens.shape)

    @staticmethod
    def backward(ctx: Any, g_lp: Tensor | None, g_h: Tensor | None):
        h, weight, bias, t, big, s, ebar, lse = ctx.saved_tensors
        group, world, start, ignore_index, temperature, _, chunk_rows = ctx.plan
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        n, width = h.shape[0], weight.shape[0]
        acc = big.dtype
        g_hidden = torch.zeros(h.shape, dtype=acc, device=h.device) if need_h else None
        g_weight = torch.zeros(weight.shape, dtype=acc, device=h.device) if need_w else None
        g_bias = torch.zeros(width, dtype=acc, device=h.device) if need_b else None
        if (g_lp is not None or g_h is not None) and width > 0 and n > 0:
            coefs = _grad_coefs(t, start, width, ignore_index, g_lp, g_h, big, s, lse, acc)
            for sl in _token_chunks(n, width, acc, chunk_rows):
                gz = _shard_grad(_scaled(_head(h[sl], weight, bias), temperature, acc), sl, coefs,
                                 big, s, ebar, lse, temperature)
                if need_h:  # the product in the input dtype, as the forward's
                    g_hidden[sl] = gz.to(weight.dtype) @ weight
                if need_w:
                    g_weight.addmm_(gz.t(), h[sl].to(acc))
                if need_b:
                    g_bias += gz.sum(dim=0)
        if need_h:
            # Each rank holds Σ over its own classes only; the full gradient is the sum over ranks.
            # Every rank takes part (a rank with no classes or no upstream gradient adds zeros).
            dist.all_reduce(g_hidden, op=dist.ReduceOp.SUM, group=group)
            g_hidden = g_hidden.to(h.dtype).reshape(ctx.hidden_shape)
        return (g_hidden, None if g_weight is None else g_weight.to(weight.dtype),
                None if g_bias is None else g_bias.to(bias.dtype), None, None)


def _token_chunks(n: int, width: int, acc: torch.dtype, chunk_rows: int):
    """Slices of ``chunk_rows`` tokens (default: the linear cross-entropy's logits budget)."""
    step = chunk_rows or max(1, K.LCE_CHUNK_BYTES // (max(width, 1) * torch.finfo(acc).bits // 8))
    for begin in range(0, n, step):
        yield slice(begin, min(begin + step, n))


def _head(h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """One chunk's logits of this slice, in the input dtype (as the model's head computes them)."""
    return torch.addmm(bias, h, weight.t()) if bias is not None else h @ weight.t()


def _gather_and_merge(mine: Tensor, t: Tensor, shape: torch.Size, plan: tuple, width: int,
                      acc: torch.dtype) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """This rank's local states ``mine[:N]`` with its header row ``mine[N]`` (slice start, width and
    the options, which every rank must agree on), gathered from every rank and merged."""
    group, world, start, ignore_index, temperature, want_entropy = plan[:6]
    mine[-1] = torch.tensor([start, width, ignore_index, temperature, float(want_entropy)], dtype=torch.float64)
    gathered = _all_gather(mine, _Plan(group, world))
    return _merge_gathered(gathered, t, shape, ignore_index, world, acc, check=mine.device.type == "cpu")


def _merge_gathered(gathered: Tensor, t: Tensor, shape: torch.Size, ignore_index: int, world: int,
                    acc: torch.dtype, check: bool) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """Every rank's ``[N + 1, 5]`` rows → ``(log p, H, saved)``, identically on every rank.

    ``saved`` is what backward needs, in ``acc``: the global maximum, ``1 + tail``, ``E[z] − M``
    and the LSE (for the special rows).
    """
    n = t.shape[0]
    stats, meta = gathered[:, :n], gathered[:, n]
    if check:
        _check_gathered(stats, meta, t, shape, ignore_index, world)
    m_r, tail_r = stats[..., _M], stats[..., _TAIL]
    state = _merge_ranks(m_r, tail_r)
    big, tail = state.m, state.tail
    b = _merge_b(m_r, tail_r, stats[..., _B], big)
    log1p_s = torch.log1p(tail)
    valid = t != ignore_index
    z_y = stats[..., _ZY].sum(dim=0)  # one owner, zeros elsewhere: exact
    nll = torch.where(z_y == big, 0.0, big - z_y) + log1p_s
    nll = torch.where(big == -math.inf, math.inf, nll)
    lp = torch.where(valid, -nll, 0.0)
    ebar = b / (1.0 + tail)
    ent = torch.where(torch.isnan(big), math.nan, log1p_s - ebar)
    lse = torch.where(big == -math.inf, -math.inf, big + log1p_s)
    saved = (big.to(acc), (1.0 + tail).to(acc), ebar.to(acc), lse.to(acc))
    return lp.to(acc), ent.to(acc), saved


class _Coefs(NamedTuple):
    """Per-token factors of the slice's gradient, computed once per backward pass."""

    gv: Tensor  # upstream gradient of log p (0 on ignored tokens)
    gh: Tensor | None  # upstream gradient of the entropy
    loc: Tensor  # [N, 1] the token's column in this slice (0 where another rank owns it)
    hot: Tensor  # [N, 1] gv where this rank owns the token, else 0
    top: Tensor  # the number of +inf logits of a row whose maximum is +inf (the shared mass)
    special: bool  # some row's LSE is not finite


def _grad_coefs(t: Tensor, start: int, width: int, ignore_index: int, g_lp: Tensor | None,
                g_h: Tensor | None, big: Tensor, s: Tensor, lse: Tensor, acc: torch.dtype) -> _Coefs:
    n = t.shape[0]
    valid = t != ignore_index
    gv = torch.zeros(n, dtype=acc, device=t.device) if g_lp is None else \
        torch.where(valid, g_lp.reshape(-1).to(acc), 0.0)
    gh = None if g_h is None else g_h.reshape(-1).to(acc)
    owner = valid & (t >= start) & (t < start + width)
    loc = torch.where(owner, t - start, 0).unsqueeze(-1)
    hot = torch.where(owner, gv, 0.0).unsqueeze(-1)
    top = torch.where(big == math.inf, s, 0.0)
    return _Coefs(gv, gh, loc, hot, top, bool((~torch.isfinite(lse)).any()))


def _shard_grad(z: Tensor, sl: slice, c: _Coefs, big: Tensor, s: Tensor, ebar: Tensor, lse: Tensor,
                temperature: float) -> Tensor:
    """Gradient of rows ``sl`` of the slice's logits (``z`` = those rows / T, in ``acc``), in ``acc``:
    ``g_lp([i = y] − p_i) − g_H p_i (z_i − E[z])``, divided by ``T``."""
    shifted = z - big[sl].unsqueeze(-1)
    p = torch.exp(shifted).div_(s[sl].unsqueeze(-1))
    if c.special:
        _fix_special_rows(p, z, lse[sl], c.top[sl])
    gv = c.gv[sl].unsqueeze(-1)
    coef = gv.expand_as(p)
    if c.gh is not None:
        coef = coef + c.gh[sl].unsqueeze(-1) * (shifted - ebar[sl].unsqueeze(-1))
        # Rows whose maximum is infinite: their entropy has no gradient (the +inf entries
        # share the mass); NaN rows stay NaN through p.
        coef = torch.where(torch.isinf(big[sl]).unsqueeze(-1), gv, coef)
    g = torch.where(p == 0, 0.0, p * coef).neg_()
    g.scatter_add_(-1, c.loc[sl], c.hot[sl])
    return g if temperature == 1.0 else g.div_(temperature)


def _scaled(x: Tensor, temperature: float, acc: torch.dtype) -> Tensor:
    """``x / T`` in ``acc`` (``x`` upcast, no rounding added, when ``T = 1``): as ``_local_state``."""
    z = x.to(acc)
    return z if temperature == 1.0 else z / temperature


class _Plan:
    """What ``distributed._all_gather`` reads: the group and its size."""

    def __init__(self, group: Any, world: int) -> None:
        self.group, self.world = group, world


def _check_gathered(stats: Tensor, meta: Tensor, t: Tensor, shape: torch.Size, ignore_index: int,
                    world: int) -> None:
    """Checks that need every rank's data; every rank sees the same data, so all raise alike."""
    for j in (2, 3, 4):
        if not bool((meta[:, j] == meta[0, j]).all()):
            raise ValueError(f"{_META[j]} must be the same on every rank of the group, got "
                             f"{meta[:, j].tolist()} (ranks 0..{world - 1})")
    starts, widths = [int(v) for v in meta[:, 0].tolist()], [int(v) for v in meta[:, 1].tolist()]
    end = 0
    for s, w in sorted(zip(starts, widths)):
        if s != end:
            raise ValueError(f"the vocabulary slices [vocab_start, vocab_start + width) of ranks 0..{world - 1}, "
                             f"{[(a, a + b) for a, b in zip(starts, widths)]}, must tile [0, {sum(widths)}) "
                             f"without gaps or overlaps (uneven slices need vocab_start)")
        end = s + w
    tokens = stats[..., _TOKEN]
    differ = (tokens != tokens[0]).any(dim=0)
    if bool(differ.any()):
        i = int(differ.nonzero()[0])
        raise ValueError(f"tokens must be the same on every rank of the group, but at position "
                         f"{_position(i, shape)} the ranks hold {[int(v) for v in tokens[:, i].tolist()]}")
    bad = (t != ignore_index) & ((t < 0) | (t >= end))
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise target_out_of_range(int(t[i]), _position(i, shape), end, ignore_index)
