r"""Vocabulary-parallel cross-entropy: the classes are split across a ``torch.distributed`` group.

In tensor-parallel language models the output projection is split along the vocabulary, so every
rank of the tensor-parallel group ends up with logits ``(*, V_r)`` for its own contiguous slice
``[vocab_start, vocab_start + V_r)`` of the ``V = Σ_r V_r`` classes, and the same targets.
:func:`vocab_parallel_cross_entropy` computes the loss of the *whole* vocabulary from these slices,
with every option of :func:`logsumexp.torch.cross_entropy` given its global meaning.

How (one collective forward, none backward)
-------------------------------------------
1. Locally, one chunk of rows at a time (so the float32 / float64 working copy is a few MiB, never
   the whole shard), each rank reduces its slice to the mergeable LogSumExp state
   (max, lead, tail):
   ``m_r = max_c z_c`` and ``tail_r = Σ_{c ≠ argmax} exp(z_c − m_r)`` (``lead_r = 1``), and also
   the target logit ``z_t`` (the owning rank only, 0 elsewhere) and, with label smoothing,
   ``a_r = Σ_{c ∈ r} w_c (m_r − z_c) ≥ 0``.
2. **One** ``all_gather`` of a small float64 ``[N + 3, 5]`` tensor per rank (those four columns,
   the target, and three rows of metadata: slice start and width, ``Σ_{c∈r} w_c``, the options).
3. Every rank merges the ``world`` states in rank order with the one merge of
   :mod:`logsumexp.torch._cpu_impl` (``M = max m_r``; equal maxima keep one lead and move the other into
   the tail, so exactly one maximal element is left out of the tail *globally*), and gets the
   same ``LSE = M + log1p(tail)`` bit for bit.
4. Backward needs **no** collective: the per-row global LSE was saved, so each rank's gradient is
   ``a·exp(z − LSE) − g(1−ε) w_t e_t − g (ε/V) w`` on its own slice.

With ``num_items_group`` the forward makes one more collective, an ``all_reduce(SUM)`` of one
number over the data-parallel group: at most two per training step. (Megatron-LM all-reduces
the row max first, then the target logit and the sum of exponentials — two or three
``all_reduce`` of ``[N]`` tensors depending on the version — and works on a float32 copy of the
slice. Gathering the local states instead means that no rank waits for the global maximum
before it exponentiates, and that every rank merges the same numbers in the same order.)

Stability
---------
``−log p_t = (M − z_t) + log1p(tail)``: nothing overflows (every exponent is ≤ 0), and because the
maximal term is kept out of the tail, a confident prediction keeps its relative accuracy
(``LSE − z_t`` would return 0 or noise). The smoothing term is
``Σ_c w_c (LSE − z_c) = W·log1p(tail) + Σ_r [W_r (M − m_r) + a_r]``, a sum of non-negative terms
(no cancellation), with ``W_r = Σ_{c∈r} w_c`` and ``W = Σ_r W_r``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from . import _cpu_impl as K
from .._options import CrossEntropyOptions, Reduction, target_out_of_range

__all__ = ["vocab_parallel_cross_entropy"]

# Columns of the per-row statistics each rank contributes to the gather (float64, exact for the
# integer target and for every float32 statistic).
_M, _TAIL, _ZT, _SMOOTH, _TARGET = range(5)
_COLS = 5
# Metadata appended as extra rows; entries from _FIRST_SHARED on must agree between the ranks.
_META = (
    "vocab_start",
    "width",
    "weight_slice_sum",
    "vocab_start given",
    "label_smoothing",
    "z_loss",
    "softcap",
    "ignore_index",
    "reduction",
    "weight given",
    "sum of weight",
    "num_items",
    "num_items_group given",
)
_START, _WIDTH, _WSUM, _GIVEN = range(4)
_FIRST_SHARED = 3
_META_ROWS = -(-len(_META) // _COLS)
_REDUCTION_CODE = {"none": 0.0, "sum": 1.0, "mean": 2.0}


@dataclass(frozen=True)
class VocabParallelOptions:
    """Everything the autograd Function needs besides the tensors (validated by the caller).

    ce:               the cross-entropy options (validated by :class:`CrossEntropyOptions`).
    group:            the tensor-parallel process group holding the vocabulary slices.
    rank, world:      this process's rank in ``group`` and the group's size.
    vocab_start:      first global class index of this rank's slice.
    start_given:      whether the caller passed ``vocab_start`` (else it is ``rank × width``).
    num_items_group:  data-parallel group over which the mean's denominator is summed, or None.
    """

    ce: CrossEntropyOptions
    group: Any
    rank: int
    world: int
    vocab_start: int
    start_given: bool
    num_items_group: Any = None


def vocab_parallel_cross_entropy(
    logits_shard: Tensor,
    target: Tensor,
    group: Any = None,
    vocab_start: int | None = None,
    *,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    num_items: float | Tensor | None = None,
    num_items_group: Any = None,
    return_lse: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Cross-entropy over a vocabulary split into contiguous slices across the ranks of ``group``.

    Every rank calls it with the logits of its slice and the same targets; every rank gets the
    same loss, that of ``cross_entropy(concatenated logits, target, ...)``, and the gradient of
    its own slice. Per counted row (``target != ignore_index``), with ``V`` the global
    vocabulary size, ``z`` the (softcapped) logits and ``w`` the class weights (1 by default):

    .. math::  \ell = w_t (1-\varepsilon)(\mathrm{LSE}(z) - z_t)
               + \tfrac{\varepsilon}{V} \sum_{c<V} w_c (\mathrm{LSE}(z) - z_c)
               + z_{\text{loss}}\,\mathrm{LSE}(z)^2

    where LSE and both sums run over the *whole* vocabulary (Megatron smooths over the local
    slice only, which gives a different loss for every tensor-parallel size).
    ``"mean"`` divides ``Σ ℓ`` by ``Σ w_t`` over counted rows (torch's weighted mean), by
    ``num_items``, or by the sum of that denominator over ``num_items_group``.

    Parameters
    ----------
    logits_shard : Tensor, shape ``(*, V_r)``
        This rank's logits; the classes are the **last** dimension (the tensor-parallel layout,
        ``[sequence, batch, V_r]`` or ``[tokens, V_r]``), floating dtype. Widths may differ
        between ranks (then pass ``vocab_start``); a rank may even hold 0 classes.
    target : Tensor, shape ``(*)``
        Global class indices in ``[0, V)`` or ``ignore_index``, identical on every rank of
        ``group`` (the number of rows must be the same on every rank).
    group : ProcessGroup, optional
        The tensor-parallel group (default: the world group).
    vocab_start : int, optional
        First global class of this rank's slice. Default ``rank × V_r``, which is right only for
        even slices in rank order; uneven slices need it on every rank (it is not derived by an
        extra collective). Any rank order is allowed as long as the slices tile ``[0, V)``.
    weight : Tensor, shape ``(V,)``, optional
        The full class-weight vector, the same on every rank; each rank uses its slice
        (``weight[c]`` for the target, ``Σ_c w_c`` over the whole vocabulary for smoothing).
    ignore_index, reduction, label_smoothing, z_loss, softcap, num_items, return_lse
        As in :func:`logsumexp.torch.cross_entropy`: ``softcap`` replaces every logit by
        ``softcap·tanh(x / softcap)`` locally before anything else; ``z_loss`` adds
        ``z_loss·LSE²`` per counted row; ``num_items`` (a number or a 0-d tensor) replaces the
        mean's denominator; ``return_lse`` also returns the global per-row LSE (shape of
        ``target``; float32, float64 for float64 logits), which is differentiable.
    num_items_group : ProcessGroup, optional
        Data-parallel token normalisation: the group of ranks that hold the *same* vocabulary slice
        of *different* batches. The mean's denominator (the number of counted targets, ``Σ w_t``
        with weights) is summed over it with one ``all_reduce``, and the local summed loss is
        divided by that global count, so that the losses of the data-parallel ranks add up to
        the mean over the global batch. Sum the gradients over that group (or multiply the loss
        by its size when the wrapper averages them, as DDP does). Needs ``reduction="mean"``;
        not with ``num_items``.

    Returns
    -------
    Tensor, or (Tensor, Tensor) with ``return_lse``
        The loss (0-d, or the shape of ``target`` for ``"none"``), in float32 (float64 for
        float64 logits), the same on every rank. Gradients flow to ``logits_shard`` only.

    Notes
    -----
    Layout: ``logits_shard`` is read as ``(rows, V_r)``; a non-contiguous shard is copied once
    (in its own dtype) by that reshape, a contiguous one never.

    Collectives: forward one ``all_gather`` of a ``[N + 3, 5]`` float64 tensor over ``group``
    (40 bytes per row and rank), plus one ``all_reduce`` of a single number over
    ``num_items_group`` when given; backward none. Memory: besides the gradient, O(rows)
    (the gathered statistics and the saved float LSE) and chunk-sized temporaries; the logits
    are saved by reference, not copied.

    Checks. Arguments are checked on each rank before the gather; an error raised on some ranks
    only leaves the others waiting in the gather until the group's timeout. Everything that
    needs the other ranks is checked after the gather, identically on every rank, on CPU
    tensors outside ``torch.compile`` (on a GPU it would synchronise the device, so it is
    skipped there): the slices must tile ``[0, V)`` (ValueError, e.g. uneven slices without
    ``vocab_start``), options, weights and targets must agree between ranks (ValueError), and a
    target outside ``[0, V)`` raises IndexError naming its value and position.

    Eager mode: the function is an ``autograd.Function`` around a ``torch.distributed`` call, not a
    ``torch.library`` operator, so ``torch.compile`` breaks the graph around it.

    Special values as :func:`logsumexp.torch.cross_entropy`: a batch with no counted row gives
    loss 0 and gradient 0; ``k`` logits at +inf (on any ranks) share the probability; NaN stays
    in its row; a row whose logits are all −inf has loss +inf.

    Examples
    --------
    Two processes (``torchrun --nproc-per-node 2``), each holding half of a 6-class vocabulary
    whose two maximal logits (1000, where ``exp`` overflows) sit on different ranks:

    >>> import torch
    >>> import torch.distributed as dist
    >>> from logsumexp.torch.distributed import vocab_parallel_cross_entropy
    >>> full = torch.tensor([[1000.0, 0.0, 0.0, 0.0, 0.0, 1000.0]])
    >>> # The rest needs an initialised process group of 2 ranks, so the doctest skips it:
    >>> dist.init_process_group("gloo")  # doctest: +SKIP
    >>> shard = full[:, 3 * dist.get_rank() :][:, :3]  # doctest: +SKIP
    >>> vocab_parallel_cross_entropy(shard, torch.tensor([0]))  # doctest: +SKIP
    tensor(0.6931)

    (``log 2`` on both ranks.)
    """
    opts = CrossEntropyOptions(
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        num_items=num_items,
        return_lse=return_lse,
    )
    x, t = _check_tensors(logits_shard, target)
    group, rank, world = _check_group("group", group)
    width = x.shape[-1]
    start_given = vocab_start is not None
    if vocab_start is None:
        vocab_start = rank * width
    elif isinstance(vocab_start, bool) or not isinstance(vocab_start, int):
        raise TypeError(f"vocab_start must be an int or None, got {type(vocab_start).__name__}")
    elif vocab_start < 0:
        raise ValueError(f"vocab_start must be >= 0, got {vocab_start}")
    if num_items_group is not None:
        if num_items is not None:
            raise ValueError("pass num_items or num_items_group, not both")
        if reduction != "mean":
            raise ValueError(
                f"num_items_group replaces the mean's denominator, so it needs reduction='mean', "
                f"got reduction={reduction!r}"
            )
        num_items_group = _check_group("num_items_group", num_items_group)[0]
    w = _check_weight(weight, vocab_start + width, None if start_given else world * width)
    plan = VocabParallelOptions(opts, group, rank, world, vocab_start, start_given, num_items_group)
    loss, lse = _VocabParallelCrossEntropy.apply(x, t, w, plan)
    return (loss, lse) if return_lse else loss


# --------------------------------------------------------------------------- argument checks


def _check_tensors(logits: object, target: object) -> tuple[Tensor, Tensor]:
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits_shard must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits_shard must have a floating dtype, got {logits.dtype}")
    if logits.ndim == 0:
        raise ValueError("logits_shard must have a class dimension (the last), got a 0-d tensor")
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(
            f"target must hold integer class indices (probability targets are not supported "
            f"across vocabulary slices), got {target.dtype}"
        )
    if tuple(target.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"target must have shape {tuple(logits.shape[:-1])} (logits_shard's shape without its "
            f"last, class dimension), got {tuple(target.shape)}"
        )
    if target.device != logits.device:
        raise ValueError(
            f"target must be on logits_shard's device {logits.device}, got {target.device}"
        )
    return logits, target


def _check_group(name: str, group: Any) -> tuple[Any, int, int]:
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            f"{name} needs torch.distributed initialised: call "
            f"torch.distributed.init_process_group first"
        )
    if group is None:
        group = dist.group.WORLD
    # new_group returns the int GroupMember.NON_GROUP_MEMBER on the processes outside the group.
    if type(group) is int and group == dist.GroupMember.NON_GROUP_MEMBER:
        raise ValueError(f"this process (global rank {dist.get_rank()}) is not a member of {name}")
    if not isinstance(group, dist.ProcessGroup):
        raise TypeError(
            f"{name} must be a torch.distributed ProcessGroup or None, got {type(group).__name__}"
        )
    rank = dist.get_rank(group)
    if rank < 0:
        raise ValueError(f"this process (global rank {dist.get_rank()}) is not a member of {name}")
    return group, rank, dist.get_world_size(group)


def _check_weight(weight: object, needed: int, expected: int | None) -> Tensor | None:
    if weight is None:
        return None
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight must be a torch.Tensor or None, got {type(weight).__name__}")
    if not weight.is_floating_point():
        raise TypeError(f"weight must have a floating dtype, got {weight.dtype}")
    if weight.ndim != 1:
        raise ValueError(
            f"weight must be the full 1-d vector of class weights (V,), "
            f"got shape {tuple(weight.shape)}"
        )
    if expected is not None and weight.shape[0] != expected:
        raise ValueError(
            f"weight must have one entry per class of the whole vocabulary, {expected} "
            f"(world size × local width), got {weight.shape[0]}"
        )
    if weight.shape[0] < needed:
        raise ValueError(
            f"weight must have one entry per class of the whole vocabulary, at least "
            f"vocab_start + width = {needed}, got {weight.shape[0]}"
        )
    return weight


# --------------------------------------------------------------------------- autograd Function


class _VocabParallelCrossEntropy(torch.autograd.Function):
    """Forward: local states, one gather, merge. Backward: local, from the saved global LSE."""

    @staticmethod
    def forward(
        ctx: Any, logits: Tensor, target: Tensor, weight: Tensor | None, plan: VocabParallelOptions
    ):
        opts = plan.ce
        x = logits.reshape(target.numel(), logits.shape[-1])  # (-1, 0) would be ambiguous
        t = target.reshape(-1).long()
        n, width = x.shape
        acc = K.acc_dtype(x.dtype)
        start = plan.vocab_start
        w_local = None if weight is None else weight[start : start + width].to(acc)

        mine = torch.zeros(n + _META_ROWS, _COLS, dtype=torch.float64, device=x.device)
        _local_statistics(x, t, w_local, start, opts, acc, mine[:n])
        mine[n:].view(-1)[: len(_META)] = _metadata(plan, width, w_local, weight, x.device)

        gathered = _all_gather(mine, plan)  # [world, n + meta rows, cols]
        stats, meta = gathered[:, :n], gathered[:, n:].reshape(plan.world, -1)[:, : len(_META)]
        if x.device.type == "cpu" and not torch.compiler.is_compiling():
            _check_gathered(stats, meta, t, target.shape, weight, plan)

        m_r = stats[..., _M]
        state = _merge_ranks(m_r, stats[..., _TAIL])
        lse = K.state_value(state)
        log1p_tail = torch.log1p(state.tail)
        big = state.m

        valid = t != opts.ignore_index
        tc = torch.where(valid, t, 0)
        z_t = stats[..., _ZT].sum(dim=0)  # one owner, zeros elsewhere: exact
        # (M − z_t) is exactly 0 for a maximal target; the test also covers M = z_t = +inf.
        nll = torch.where(z_t == big, 0.0, big - z_t) + log1p_tail
        nll = torch.where(big == -math.inf, math.inf, nll)
        eps = opts.label_smoothing
        w_t = None if weight is None else weight.to(torch.float64)[tc]
        rows = nll if eps == 0 else nll * (1.0 - eps)
        if w_t is not None:
            rows = torch.where(w_t == 0, 0.0, rows * w_t)
        n_classes = meta[:, _WIDTH].sum()
        w_sum = meta[:, _WSUM].sum()
        if eps:
            w_r = meta[:, _WSUM].unsqueeze(-1)
            # W_r (M − m_r) ≥ 0; a slice of weight 0 or holding the maximum adds exactly 0
            # (also where M = m_r = ±inf, which would give inf − inf).
            gap = torch.where((w_r == 0) | (m_r == big), 0.0, w_r * (big - m_r))
            smooth = w_sum * log1p_tail + (gap + stats[..., _SMOOTH]).sum(dim=0)
            rows = rows + (eps / n_classes) * smooth
        if opts.z_loss:
            rows = rows + opts.z_loss * lse.square()
        rows = torch.where(valid, rows, 0.0)

        den = _denominator(valid, w_t, plan)
        if opts.reduction == "none":
            loss = rows.reshape(target.shape)
        elif opts.reduction == "sum":
            loss = rows.sum()
        else:
            # Only a sum of exactly 0 (nothing counted, or cancelling weights) gives loss 0; any
            # other sum divides, negative or NaN included, as torch does.
            counted = den != 0
            total = rows.sum()
            loss = torch.where(counted, total / torch.where(counted, den, 1.0), torch.zeros_like(total))
        # The global max and sum, so that backward forms softmax = e^{z − M} / s: from the LSE,
        # e^{z − LSE} would carry LSE's own rounding (|LSE|·eps) into every probability. On +inf
        # rows s counts the +inf logits over all ranks, which share the probability.
        lse_acc = lse.to(acc)
        ctx.save_for_backward(x, t, weight, lse_acc, big.to(acc), (1.0 + state.tail).to(acc), den)
        ctx.plan = plan
        ctx.n_classes = n_classes
        ctx.w_sum = w_sum
        ctx.logits_shape = logits.shape
        ctx.set_materialize_grads(False)
        return loss.to(acc), lse_acc.reshape(target.shape)

    @staticmethod
    def backward(ctx: Any, g_loss: Tensor | None, g_lse: Tensor | None):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        x, t, weight, lse, big, s, den = ctx.saved_tensors
        top = torch.where(big == math.inf, s, 0.0)
        plan: VocabParallelOptions = ctx.plan
        opts = plan.ce
        n, width = x.shape
        acc = lse.dtype
        grad = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        if (g_loss is None and g_lse is None) or width == 0:
            return grad.zero_().reshape(ctx.logits_shape), None, None, None
        eps = opts.label_smoothing
        valid = t != opts.ignore_index
        tc = torch.where(valid, t, 0)
        if g_loss is None:
            g = torch.zeros(n, dtype=acc, device=x.device)
        elif opts.reduction == "none":
            g = g_loss.reshape(-1).to(acc)
        elif opts.reduction == "sum":
            g = g_loss.to(acc).expand(n)
        else:
            den = den.to(acc)
            g = torch.where(den != 0, g_loss.to(acc) / torch.where(den != 0, den, 1.0), 0.0).expand(n)
        gv = torch.where(valid, g, 0.0)
        start = plan.vocab_start
        w_t = 1.0 if weight is None else weight.to(acc)[tc]
        n_classes, w_sum = ctx.n_classes.to(acc), ctx.w_sum.to(acc)
        # d rows / d z = a·softmax(z) − g (1−ε) w_t e_t − g (ε/V) w   (softmax over all V classes)
        a = gv * ((1.0 - eps) * w_t)
        if eps:  # without smoothing a weight no row targets (NaN included) must not reach a
            a = a + gv * ((eps / n_classes) * w_sum)
        if opts.z_loss:
            a = a + (2.0 * opts.z_loss) * gv * torch.where(torch.isfinite(lse), lse, 0.0)
        if g_lse is not None:
            a = a + g_lse.reshape(-1).to(acc)
        hot = -(1.0 - eps) * gv * w_t
        owner = valid & (t >= start) & (t < start + width)
        loc = torch.where(owner, t - start, 0).unsqueeze(-1)
        hot = torch.where(owner, hot, 0.0).unsqueeze(-1)
        smooth = None
        if eps:
            w_local = None if weight is None else weight[start : start + width].to(acc)
            smooth = (gv * (eps / n_classes)).unsqueeze(-1)
            smooth = smooth if w_local is None else smooth * w_local
        special = bool((~torch.isfinite(lse)).any())  # one host read per call, not per chunk
        # 1/s folded into the row multiplier (one pass less); special rows get their softmax whole.
        scale = torch.where(torch.isfinite(lse), a / s, a)
        direct = grad.dtype == acc and opts.softcap is None
        for sl in K.row_chunks(n, width):
            z = K.capped(x[sl], opts.softcap, acc)  # may be x itself: never written to
            p = torch.sub(z, big[sl].unsqueeze(-1), out=grad[sl] if direct else None).exp_()
            if special:
                _fix_special_rows(p, z, lse[sl], top[sl])
            p.mul_(scale[sl].unsqueeze(-1))
            p.scatter_add_(-1, loc[sl], hot[sl].to(p.dtype))
            if smooth is not None:
                p.sub_(smooth[sl])
            if opts.softcap is not None:
                K.softcap_grad_(p, x[sl], opts.softcap)
            if not direct:
                grad[sl] = p
        return grad.reshape(ctx.logits_shape), None, None, None


# --------------------------------------------------------------------------- pieces


def _local_statistics(
    x: Tensor,
    t: Tensor,
    w_local: Tensor | None,
    start: int,
    opts: CrossEntropyOptions,
    acc: torch.dtype,
    out: Tensor,
) -> None:
    """Fill ``out`` ([n, cols], float64) with this slice's max, tail, target logit, smoothing sum."""
    n, width = x.shape
    out[:, _TARGET] = t
    if width == 0:  # an empty slice holds no mass: the identity state (−inf, lead 0, tail 0)
        out[:, _M] = -math.inf
        return
    valid = t != opts.ignore_index
    owner = valid & (t >= start) & (t < start + width)
    loc = torch.where(owner, t - start, 0).unsqueeze(-1)
    has_zero_weight = w_local is not None and bool((w_local == 0).any())
    for sl in K.row_chunks(n, width):
        z = K.capped(x[sl], opts.softcap, acc)  # chunk-sized working copy (or x itself: read only)
        shifted, m, argmax = K.shifted(z)  # z − m ≤ 0 per row, special rows rewritten
        if opts.label_smoothing:
            # a_r = Σ w_c (m_r − z_c) ≥ 0; a class of weight 0 adds 0 even at z_c = −inf.
            if w_local is None:
                out[sl, _SMOOTH] = -shifted.sum(dim=-1)
            elif has_zero_weight:
                out[sl, _SMOOTH] = -torch.where(w_local == 0, 0.0, shifted * w_local).sum(dim=-1)
            else:
                out[sl, _SMOOTH] = -(shifted @ w_local)
        out[sl, _TAIL] = K.exp_rest_sum(shifted, argmax)  # the argmax term stays out of the sum
        out[sl, _M] = m
        z_t = z.gather(-1, loc[sl]).squeeze(-1)
        out[sl, _ZT] = torch.where(owner[sl], z_t, 0.0)


def _metadata(
    plan: VocabParallelOptions,
    width: int,
    w_local: Tensor | None,
    weight: Tensor | None,
    device: torch.device,
) -> Tensor:
    """The per-rank entries of ``_META`` as a float64 vector (the weight sums stay on the device)."""
    opts = plan.ce
    if isinstance(opts.num_items, Tensor):
        num_items = -2.0  # a device value: not compared (reading it would synchronise)
    else:
        num_items = -1.0 if opts.num_items is None else float(opts.num_items)
    head = torch.tensor(
        [
            plan.vocab_start,
            width,
            0.0,
            float(plan.start_given),
            opts.label_smoothing,
            opts.z_loss,
            0.0 if opts.softcap is None else opts.softcap,
            opts.ignore_index,
            _REDUCTION_CODE[opts.reduction],
            float(weight is not None),
            0.0,
            num_items,
            float(plan.num_items_group is not None),
        ],
        dtype=torch.float64,
        device=device,
    )
    head[_WSUM] = width if w_local is None else w_local.to(torch.float64).sum()
    if weight is not None:
        head[_META.index("sum of weight")] = weight.to(torch.float64).sum()
    return head


def _all_gather(mine: Tensor, plan: VocabParallelOptions) -> Tensor:
    """The one collective of the forward pass: every rank's ``mine``, stacked in rank order."""
    out = torch.empty(
        (plan.world * mine.shape[0], mine.shape[1]), dtype=mine.dtype, device=mine.device
    )
    # all_gather_single is torch ≥ 2.10's name (all_gather_into_tensor is deprecated there).
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(out, mine.contiguous(), group=plan.group)
    return out.reshape(plan.world, *mine.shape)


def _merge_ranks(m: Tensor, tail: Tensor) -> K.RowState:
    """Fold the ranks' (max, lead, tail) states, in rank order, with the torch face's one merge."""
    state = K.RowState(m[0], (m[0] != -math.inf).to(m.dtype), tail[0])  # world >= 1
    for r in range(1, m.shape[0]):
        state = K.merge(state, K.RowState(m[r], (m[r] != -math.inf).to(m.dtype), tail[r]))
    return state


def _denominator(valid: Tensor, w_t: Tensor | None, plan: VocabParallelOptions) -> Tensor:
    """What "mean" divides by (float64, 0-d): num_items, or Σ w_t over counted rows, summed over
    num_items_group when given."""
    opts = plan.ce
    if opts.num_items is not None:
        return torch.as_tensor(opts.num_items, dtype=torch.float64, device=valid.device).clone()
    den = valid.sum(dtype=torch.float64) if w_t is None else torch.where(valid, w_t, 0.0).sum()
    if plan.num_items_group is not None and opts.reduction == "mean":
        dist.all_reduce(den, op=dist.ReduceOp.SUM, group=plan.num_items_group)
    return den


def _fix_special_rows(p: Tensor, z: Tensor, lse: Tensor, top: Tensor) -> None:
    """Softmax rows whose LSE is not finite: −inf → 0, +inf → 1/k on the k +inf logits, NaN → NaN."""
    rows = (~torch.isfinite(lse)).nonzero().squeeze(-1)
    if rows.numel() == 0:
        return
    lb = lse[rows].unsqueeze(-1)
    share = (z[rows] == math.inf).to(p.dtype) / top[rows].clamp_min(1.0).unsqueeze(-1)
    fixed = torch.where(lb == math.inf, share, torch.zeros_like(share))
    p[rows] = torch.where(torch.isnan(lb), lb, fixed)


# --------------------------------------------------------------------------- checks after the gather


def _check_gathered(
    stats: Tensor,
    meta: Tensor,
    t: Tensor,
    target_shape: torch.Size,
    weight: Tensor | None,
    plan: VocabParallelOptions,
) -> None:
    """Checks that need every rank's data; each rank sees the same data, so all raise alike."""
    for j in range(_FIRST_SHARED, len(_META)):
        col = meta[:, j]
        # NaN equals NaN here: a NaN class weight is the same on every rank (it reaches the loss
        # only through a row that targets it, as in torch).
        same = (col == col[0]) | (torch.isnan(col) & torch.isnan(col[0]))
        if not bool(same.all()):
            raise ValueError(
                f"{_META[j]} must be the same on every rank of the group, got {col.tolist()} "
                f"(ranks 0..{plan.world - 1})"
            )
    starts = [int(v) for v in meta[:, _START].tolist()]
    widths = [int(v) for v in meta[:, _WIDTH].tolist()]
    if not bool(meta[0, _GIVEN]) and len(set(widths)) > 1:
        raise ValueError(
            f"the vocabulary slices have uneven widths {widths} (ranks 0..{plan.world - 1}): "
            f"pass vocab_start (the first class of each rank's slice) on every rank"
        )
    end = 0
    for s, w in sorted(zip(starts, widths, strict=True)):
        if s != end:
            slices = [(s_, s_ + w_) for s_, w_ in zip(starts, widths, strict=True)]
            raise ValueError(
                f"the vocabulary slices [vocab_start, vocab_start + width) of ranks "
                f"0..{plan.world - 1}, "
                f"{slices}, must tile [0, {sum(widths)}) without gaps or overlaps"
            )
        end = s + w
    n_classes = end
    if weight is not None and weight.shape[0] != n_classes:
        raise ValueError(
            f"weight must have one entry per class of the whole vocabulary, {n_classes}, "
            f"got {weight.shape[0]}"
        )
    targets = stats[..., _TARGET]
    differ = (targets != targets[0]).any(dim=0)
    if bool(differ.any()):
        i = int(differ.nonzero()[0])
        raise ValueError(
            f"target must be the same on every rank of the group, but at position "
            f"{_position(i, target_shape)} the ranks hold {[int(v) for v in targets[:, i].tolist()]}"
        )
    bad = (t != plan.ce.ignore_index) & ((t < 0) | (t >= n_classes))
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise target_out_of_range(int(t[i]), _position(i, target_shape), n_classes,
                                  plan.ce.ignore_index)


def _position(flat: int, shape: torch.Size) -> tuple[int, ...]:
    out = []
    for size in reversed(tuple(shape)):
        out.append(flat % size)
        flat //= size
    return tuple(reversed(out))
