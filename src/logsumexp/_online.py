"""The (max, lead, tail) state of a LogSumExp reduction, its merge, and ``LSEState``.

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
blocked NumPy loop, the compiled CPU kernels, ``LSEState`` and the Dask reduction all use it.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from . import _array_api as aa

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
    out_shape = tuple(s for d, s in enumerate(x.shape) if d != axis)
    if n == 0:
        return empty_state(xp, out_shape, x.dtype, _device(xp, x))
    m = xp.max(x, axis=axis, keepdims=True)
    e = xp.exp(shifted(xp, x, m))
    if b is not None:
        e = e * b
    leader = _index_along(xp, x, axis) == xp.argmax(x, axis=axis, keepdims=True)
    tail = pairwise_sum(xp, xp.where(leader, 0.0, e), axis)
    m = xp.squeeze(m, axis=axis)
    if b is None:
        lead = xp.astype(m != -math.inf, x.dtype)
    else:
        lead = pairwise_sum(xp, xp.where(leader, e, 0.0), axis)
    return State(m, lead, tail)


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
    posinf = m == math.inf
    lazy = aa.is_lazy(xp)
    if lazy or bool(xp.any(posinf)):
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


def _index_along(xp: Any, x: Array, axis: int) -> Array:
    """0, 1, …, n−1 along ``axis``, shaped to broadcast against ``x``."""
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    idx = xp.arange(x.shape[axis], device=_device(xp, x))
    return xp.reshape(idx, tuple(shape))


def _device(xp: Any, x: Array) -> Any:
    import array_api_compat

    return array_api_compat.device(x)


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
    total = s.lead + s.tail
    near_one = (s.lead >= 0.5) & (s.lead <= 2.0) & (total > 0.5) & (s.tail < math.inf)
    log_sum = xp.where(
        near_one,
        xp.log1p(xp.where(near_one, (s.lead - 1.0) + s.tail, 0.0)),
        aa.log_nonneg(xp, xp.abs(total)),
    )
    # +inf entries whose weights cancel: ∞·0 has no value (NaN, without an inf − inf warning)
    m = xp.where((s.m == math.inf) & (log_sum == -math.inf), math.nan, s.m)
    out = m + log_sum
    if return_sign:
        return out, xp.where(xp.isnan(out), math.nan, xp.sign(total))
    return xp.where(total < 0, math.nan, out)


class LSEState:
    """A mergeable, picklable running LogSumExp: fold chunks in as they come, read the value any time.

    The state is the triple ``(max, lead, tail)`` with ``Σ b_i·e^{x_i} = e^max·(lead + tail)``
    (see the module docstring): merging two states is exact up to rounding, associative and
    commutative, so chunks may be folded in any order, on any process, and combined later.

    Parameters
    ----------
    axis : int, tuple of ints or None
        The axes that ``update`` reduces over; the other dimensions are kept (None: reduce all).

    Examples
    --------
    >>> import numpy as np
    >>> from logsumexp import LSEState
    >>> s = LSEState()
    >>> float(s.value)
    -inf
    >>> s.update(np.array([1000.0, 1000.0]))
    LSEState(axis=None, shape=())
    >>> s.update(np.array([1000.0]))
    LSEState(axis=None, shape=())
    >>> float(s.value)  # 1000 + log 3, although exp(1000) overflows
    1001.0986122886682
    >>> a, b = LSEState().update(np.zeros(2)), LSEState().update(np.zeros(3))
    >>> float(a.merge(b).value) == float(np.log(5))
    True
    """

    def __init__(self, axis: aa.Axis = None) -> None:
        self.axis = axis
        self._state: State | None = None  # None: the identity, shape not yet known
        self._xp: Any = None

    def update(self, chunk: Any, b: Any = None) -> LSEState:
        """Fold ``chunk`` (optionally weighted by ``b``) into the state; returns ``self``."""
        from ._lse import _prepare_lse, lse_state  # _lse builds on this module

        xp = aa.namespace(chunk, b)
        x, weights, axes, _ = _prepare_lse(xp, chunk, self.axis, b, None, None)
        # the same reduction as logsumexp: compiled kernels or cache-blocked NumPy when possible
        self._absorb(xp, lse_state(xp, x, axes, weights))
        return self

    def merge(self, other: LSEState) -> LSEState:
        """A new state holding the terms of both ``self`` and ``other``."""
        if not isinstance(other, LSEState):
            raise TypeError(f"other must be an LSEState, got {type(other).__name__}")
        out = LSEState(self.axis)
        out._xp, out._state = self._xp, self._state
        if other._state is not None:
            out._absorb(other._xp, other._state)
        return out

    def _absorb(self, xp: Any, new: State) -> None:
        if self._state is None:
            self._xp, self._state = xp, new
            return
        if tuple(self._state.m.shape) != tuple(new.m.shape):
            raise ValueError(
                f"chunk reduces to shape {tuple(new.m.shape)}, but the state has shape "
                f"{tuple(self._state.m.shape)}"
            )
        with aa.quiet_fp():
            self._state = merge(self._xp, self._state, _convert(self._xp, new))

    @property
    def value(self) -> Any:
        """The LogSumExp of everything folded in so far (−inf before any update)."""
        if self._state is None:
            return np.float64(-math.inf)
        out = value(self._xp, self._state)
        return out[()] if aa.is_numpy(self._xp) and out.ndim == 0 else out

    @property
    def state(self) -> State | None:
        """The raw (max, lead, tail) arrays, or None before the first update."""
        return self._state

    def __repr__(self) -> str:
        shape = None if self._state is None else tuple(self._state.m.shape)
        return f"LSEState(axis={self.axis!r}, shape={shape})"

    def __getstate__(self) -> dict[str, Any]:
        state = None
        if self._state is not None:
            state = self._state
            if aa.is_numpy(self._xp):
                state = tuple(np.asarray(a) for a in state)
            elif aa.is_lazy(self._xp) and hasattr(state.m, "compute"):
                # a Dask graph holds functions that do not pickle: ship the computed state
                import dask

                state = tuple(np.asarray(a) for a in dask.compute(*state))
        return {"axis": self.axis, "state": state}

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.axis = d["axis"]
        self._state = None if d["state"] is None else State(*d["state"])
        self._xp = aa.namespace(*self._state) if self._state is not None else None


def _convert(xp: Any, s: State) -> State:
    return State(*(xp.asarray(a) for a in s))


__all__ = ["LSEState", "State", "block_state", "empty_state", "merge", "value"]
