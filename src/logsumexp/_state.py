"""The (max, lead, tail) state of a LogSumExp reduction: block_state, merge, value, softmax_from_state.

This is the one array-core definition of the mathematics every reduction shares; it knows nothing
about which backend computes a block (that choice is made once, in ``_reduce``).

A slice's state describes its exponential sum as

    Σ_i b_i·e^{x_i} = e^m · (lead + tail)

where ``m`` is the slice's maximum, ``lead = b_k·e^{x_k − m}`` is the term of ONE index k that
attains the maximum (so ``lead = b_k``, or 1 without weights), and ``tail`` is the sum of all other
terms. Keeping the leading term out of the sum is the Blanchard–Higham–Higham trick: the value is
``m + log|lead| + log1p(tail / lead)``, and when the maximum dominates (tail ≪ lead) log1p keeps
the small correction to full relative accuracy, where ``log(1 + tail)`` would round it away.

Special states: an empty or all −inf slice is ``(−inf, 0, 0)`` (the identity of the merge); a
slice with +inf entries has ``m = +inf`` and counts only the +inf entries (``lead + tail`` is the
sum of their weights); a slice with a NaN has ``m = NaN``.

Two states merge as ``M = max(m1, m2)``; each side is scaled by ``e^{m − M}``, where equal maxima
(±inf included) scale by exactly 1, which is the guard against ``−inf − (−inf)``. The merge is
associative and commutative (up to rounding) with identity ``(−inf, 0, 0)``. The array core's
blocked NumPy loop, ``LSEState`` and the Dask reduction use this merge; the compiled CPU kernels
(``_cpu``) implement the same state and merge in compiled code.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from . import _array_api as aa
from . import _dd

Array = Any


class State(NamedTuple):
    """(max, lead, tail) arrays of equal shape, in the working dtype."""

    m: Array
    lead: Array
    tail: Array


def empty_state(xp: Any, shape: tuple[int, ...], dtype: Any, device: Any = None) -> State:
    """The identity state ``(−inf, 0, 0)`` for slices of the given shape."""
    kw = {} if device is None else {"device": device}
    return State(
        xp.full(shape, -math.inf, dtype=dtype, **kw),
        xp.zeros(shape, dtype=dtype, **kw),
        xp.zeros(shape, dtype=dtype, **kw),
    )


def block_state(xp: Any, x: Array, axis: int, b: Array | None = None) -> State:
    """The state of each slice of ``x`` (working dtype) along ``axis``; ``b`` weights of x's shape.

    Entries with ``b == 0`` must already be −inf (the caller's job: they vanish, even at ±inf).
    """
    n = x.shape[axis]
    if n == 0:
        # The identity state, computed from x (a sum over nothing is 0) rather than created, so
        # that an autograd graph (torch) reaches the input and gives it its empty gradient.
        zero = xp.sum(x, axis=axis)
        return State(zero - math.inf, zero, zero)
    m = xp.max(x, axis=axis, keepdims=True)
    leader = aa.argmax_mask(xp, x, axis)
    if not aa.is_numpy(xp):  # NumPy has no autodiff: the plain max is the same number
        m = _differentiable_max(xp, x, m, leader, axis)
    e = xp.exp(shifted(xp, x, m))
    if b is not None:
        e = e * b
    tail = pairwise_sum(xp, xp.where(leader, 0.0, e), axis)
    m = xp.squeeze(m, axis=axis)
    if b is None:
        lead = xp.astype(m != -math.inf, x.dtype)
    else:
        lead = pairwise_sum(xp, xp.where(leader, e, 0.0), axis)
    return State(m, lead, tail)


def _differentiable_max(xp: Any, x: Array, m: Array, leader: Array, axis: int) -> Array:
    """The slice maximum ``m`` again, built so that automatic differentiation (JAX, torch) gives
    the contract's gradients. The forward values are unchanged.

    - Finite maximum: taken from the leading entry alone. The leading term is kept out of the sum,
      so its entry's derivative flows only through the maximum; a backend's ``max`` shares that
      derivative among tied maxima, which would give ``[1/9, 4/9, 4/9]`` for ``LSE([a, a, a])``.
    - +inf maximum: ``max`` itself, whose equal share among the +inf entries is the softmax.
    - NaN in the slice: a NaN whose derivative is NaN for every entry of that slice only (each
      select passes a zero cotangent to the other slices, so no NaN leaks out).
    """
    lead_x = xp.sum(xp.where(leader, x, 0.0), axis=axis, keepdims=True)
    out = xp.where(m == math.inf, m, lead_x)
    bad = xp.isnan(m)
    poisoned = xp.sum(xp.where(bad, x, 0.0), axis=axis, keepdims=True) * math.nan
    return xp.where(bad, poisoned, out)


def pairwise_sum(xp: Any, e: Array, axis: int) -> Array:
    """Σ along ``axis`` with an error bound that grows like log n, whatever the memory layout.

    A reduction along the last (contiguous) axis is left to the backend (NumPy sums it pairwise,
    torch with a cascade). Along another axis NumPy adds row after row, an error growing like
    n·eps (10 ulp on 1000 dominated terms), so the halves are added explicitly instead: log2(n)
    elementwise additions, about twice the work of one sum.
    """
    if axis == e.ndim - 1 or e.shape[axis] <= 8:
        return xp.sum(e, axis=axis)
    e = xp.moveaxis(e, axis, -1)
    while e.shape[-1] > 8:
        n = e.shape[-1]
        h = n // 2
        halves = e[..., :h] + e[..., h : 2 * h]
        e = xp.concat([halves, e[..., 2 * h :]], axis=-1) if n % 2 else halves
    return xp.sum(e, axis=-1)


def shifted(xp: Any, x: Array, m: Array) -> Array:
    """``x − m`` per slice (``m`` the slice max, keepdims), with the infinite maxima made harmless.

    All −inf slices are shifted by 0 (they stay −inf, so their terms vanish). In a slice whose max
    is +inf, +inf entries become 0 (inf − inf taken as 0: they share the mass equally) and every
    finite entry −inf (relative to an infinite maximum it is nothing). NaN slices stay NaN.
    """
    # A select, not ``if any(m == inf)``: a Python branch on values breaks torch.func.vmap and
    # jax.jit (no value to branch on). Only NumPy, which no transform wraps, skips the select's
    # elementwise pass when no slice has a +inf maximum (the blocked NumPy loop comes here).
    posinf = m == math.inf
    lazy = aa.is_lazy(xp)
    if not aa.is_numpy(xp) or bool(xp.any(posinf)):
        x = xp.where(posinf, aa.fill(xp, x == math.inf, 0.0, -math.inf, x), x)
    shift = xp.where(xp.isfinite(m), m, 0.0)
    if not lazy:
        return x - shift
    # Lazy backends compute outside any errstate block, so keep warnings from arising at all:
    # x − m overflows to −inf when m > 0 is huge and x very negative (the result is −inf anyway),
    # and a NaN slice is NaN whatever d is (0 keeps exp() from overflowing there).
    fmax = float(np.finfo(np.float32 if x.dtype == xp.float32 else np.float64).max)
    under = x < xp.where(shift > 0, shift, 0.0) - fmax
    d = xp.where(under, 0.0, x) - shift
    d = xp.where(under, -math.inf, d)
    return xp.where(xp.isnan(m), 0.0, d)


def divide_by_temperature(xp: Any, d: Array, t: float) -> Array:
    """``d / T`` for shifted values ``d = x − max ≤ 0`` (NaN in a NaN slice), in ``d``'s dtype.

    Dividing the shifted values, never ``x`` itself, is what keeps tiny and huge temperatures
    right: ``x / T`` overflows to ±inf for ``T = 1e-320`` (and ``inf − inf`` gives NaN), while
    ``d / T`` is 0 at the maxima (ties stay tied) and tends to −inf elsewhere, the limit
    ``T → 0``. A temperature outside the dtype's range (it would round to 0 or to inf, e.g.
    ``1e-50`` or ``1e300`` in float32) takes its limit explicitly: ``0/0``, ``−inf/inf`` and
    ``−inf·0`` are never formed, so no NaN (nor a warning) appears where the answer is 0 or −inf.
    """
    if t == 1.0:
        return d
    info = xp.finfo(d.dtype)
    if t > float(info.max):  # T → ∞: every entry that takes part (d > −inf) becomes 0
        return xp.where((d == -math.inf) | xp.isnan(d), d, xp.zeros_like(d))
    if t < float(info.smallest_normal) * float(info.eps):  # below the smallest subnormal: T → 0
        return xp.where(d < 0, xp.full_like(d, -math.inf), d)  # 0 stays 0, NaN stays NaN
    if aa.is_numpy(xp):
        # NumPy keeps subnormals and runs inside the caller's errstate block: an overflow of the
        # plain division is the −inf it should be. One pass.
        return xp.divide(d, t)
    if t < float(info.smallest_normal):
        # A subnormal T is flushed to 0 by backends that flush subnormals (XLA on a CPU, GPUs),
        # and 0/0 is NaN: scale d and T by the same power of two (exact) so that T is normal.
        scale = 2.0 ** math.ceil(math.log2(float(info.smallest_normal) / t))
        d = _below_to_neginf(xp, d, -float(info.max) / scale) * scale
        t = t * scale
    if t < 1.0:
        # Differences that would overflow go to −inf first: a lazy backend (Dask) divides outside
        # any errstate block, so the overflow must not happen at all.
        d = _below_to_neginf(xp, d, -float(info.max) * t)
    # −inf stays −inf explicitly: XLA divides as d · (1/T), and a huge T's subnormal reciprocal is
    # flushed to 0, giving −inf · 0 = NaN.
    return xp.where(d == -math.inf, d, d / t)


def _below_to_neginf(xp: Any, d: Array, limit: float) -> Array:
    return xp.where(d < limit, xp.full_like(d, -math.inf), d)


def times_temperature(xp: Any, v: Array, t: float) -> Array:
    """``T · v`` for a log-sum ``v ≥ 0`` (−inf for an empty slice, NaN), with the limits of
    :func:`divide_by_temperature` when ``T`` is outside the dtype's range (``0 · inf`` and
    ``inf · 0`` are not formed: ``T · 0 = 0`` for any ``T``, ``T · (±inf) = ±inf``)."""
    if t == 1.0:
        return v
    info = xp.finfo(v.dtype)
    if t > float(info.max):
        return xp.where(v > 0, xp.full_like(v, math.inf), v)  # 0, −inf and NaN stay
    if t < float(info.smallest_normal) * float(info.eps):
        return xp.where(xp.isfinite(v), xp.zeros_like(v), v)
    if t > 1.0:  # a product above the largest float is +inf, without an overflow warning
        v = xp.where(v > float(info.max) / t, xp.full_like(v, math.inf), v)
    # ±inf stays as it is: a backend that flushes a subnormal T to 0 would give −inf · 0 = NaN.
    return xp.where(xp.isfinite(v), v * t, v)


def _scale(xp: Any, m: Array, big: Array) -> Array:
    """e^{m − M}, exactly 1 where m == M (so that ±inf maxima do not give inf − inf, nor a
    warning: the difference is never formed there)."""
    same = m == big
    return xp.exp(xp.where(same, 0.0, m) - xp.where(same, 0.0, big))


def merge(xp: Any, s1: State, s2: State) -> State:
    """The state of the union of two disjoint sets of terms (associative, commutative)."""
    big = xp.maximum(s1.m, s2.m)
    c1, c2 = _scale(xp, s1.m, big), _scale(xp, s2.m, big)
    first = s1.m >= s2.m
    lead = xp.where(first, s1.lead, s2.lead)
    tail = xp.where(
        first,
        s1.tail * c1 + (s2.lead + s2.tail) * c2,
        s2.tail * c2 + (s1.lead + s1.tail) * c1,
    )
    # max() drops a NaN on some backends; keep it, so a NaN anywhere poisons the slice.
    big = xp.where(xp.isnan(s1.m) | xp.isnan(s2.m), math.nan, big)
    return State(big, lead, tail)


def value(xp: Any, s: State, return_sign: bool = False) -> Array | tuple[Array, Array]:
    """LogSumExp of a state, ``m + log|lead + tail|``, with SciPy's sign rules.

    While the lead is within a factor 2 of 1 (and the total above 1/2) the logarithm is taken as
    ``log1p((lead − 1) + tail)``: without weights ``lead`` is exactly 1, so this is
    ``log1p(tail)`` and a dominant maximum keeps its small correction to full relative accuracy
    (Blanchard–Higham–Higham); with weights ``lead − 1`` is exact there (Sterbenz). Elsewhere
    (a small or large leading weight) ``log|total|`` is as accurate. No division
    and no warning (Dask evaluates it later). A negative total is NaN unless ``return_sign``.
    """
    if aa.is_numpy(xp) and s.m.dtype == np.float64:
        # NumPy has no automatic differentiation to preserve, so float64 takes the double-double
        # finish: log1p of the compensated sum carried in two parts and added to m rounded once.
        return _dd.value(xp, s.m, s.lead, s.tail, return_sign)
    total = s.lead + s.tail
    near_one = (s.lead >= 0.5) & (s.lead <= 2.0) & (total > 0.5) & (s.tail < math.inf)
    log_sum = xp.where(
        near_one,
        xp.log1p(xp.where(near_one, (s.lead - 1.0) + s.tail, 0.0)),
        aa.log_nonneg(xp, xp.abs(total)),
    )
    # +inf entries whose weights cancel: ∞·0 has no value (NaN, without an inf − inf warning).
    # An all −inf (or empty) slice takes −inf as a constant rather than from m: under automatic
    # differentiation (JAX, torch) m's derivative would hand the whole cotangent to the tied
    # maxima, where the contract wants a zero gradient; a +inf maximum keeps m, so its gradient
    # is shared equally by the +inf entries, as the softmax is.
    m = xp.where(s.m == -math.inf, xp.full_like(s.m, -math.inf), s.m)
    m = xp.where((s.m == math.inf) & (log_sum == -math.inf), math.nan, m)
    out = m + log_sum
    if return_sign:
        return out, xp.where(xp.isnan(out), math.nan, xp.sign(total))
    return xp.where(total < 0, math.nan, out)


def softmax_from_state(xp: Any, x: Array, m: Array, tail: Array, log: bool) -> Array:
    """softmax (or log_softmax) of ``x`` given its slices' max ``m`` and ``tail`` (keepdims), unweighted.

    ``softmax = e^{x − m} / (1 + tail)``: the denominator is the whole sum (the leading term is
    exactly 1), so an all −inf slice gives 0/1 = 0 rather than 0/0. ``log_softmax = (x − m) −
    log1p(tail)``, which keeps the dominant entry's tiny value to full relative accuracy. A NaN
    slice is NaN everywhere, whichever entry the arg max picked.
    """
    xs = shifted(xp, x, m)
    out = xs - xp.log1p(tail) if log else xp.exp(xs) / (1.0 + tail)
    return xp.where(xp.isnan(m), math.nan, out)


__all__ = [
    "State", "block_state", "divide_by_temperature", "empty_state", "merge", "softmax_from_state",
    "times_temperature", "value",
]
