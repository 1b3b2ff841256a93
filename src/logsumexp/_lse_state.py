"""``LSEState``: a running, mergeable LogSumExp over chunks that arrive one at a time."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _array_api as aa
from ._lse import _prepare_lse
from ._reduce import lse_state
from ._state import State, merge, value


class LSEState:
    """A mergeable, picklable running LogSumExp: fold chunks in as they come, read the value any time.

    The state is the triple ``(max, lead, tail)`` with ``Σ b_i·e^{x_i} = e^max·(lead + tail)``,
    where ``lead`` is the term of one index attaining the maximum and ``tail`` the sum of the
    others: merging two states (``M = max(m1, m2)``, each side scaled by ``e^{m − M}``) is exact up
    to rounding, associative and commutative, so chunks may be folded in any order, on any
    process, and combined later. Each chunk is reduced by the same code as :func:`logsumexp`.

    Weights may be negative, with :func:`scipy.special.logsumexp`'s ``return_sign`` semantics:
    :attr:`value` is ``log|Σ b_i e^{x_i}|`` and :attr:`sign` the sign of the sum (+1, −1, 0, or NaN).
    The value comes back in the chunks' float dtype (float32 chunks give float32; integers the
    default float), accumulated as :func:`logsumexp` accumulates (float64 on a CPU).

    Accuracy near 0: a value that cancels against the maximum (the log-normaliser of an almost
    normalised stream, e.g. ``1e-9`` with ``max ≈ −5``) keeps an absolute error of about one
    rounding of ``max`` (~1e-15 here): :func:`logsumexp` recomputes such slices exactly from the
    data, which a state no longer has. Take :func:`logsumexp` of the whole array when that
    relative accuracy matters.

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
    >>> d = LSEState().update(np.zeros(2), b=np.array([1.0, -3.0]))   # 1 − 3 = −2
    >>> print(d.value, d.sign)
    0.6931471805599453 -1.0
    """

    def __init__(self, axis: aa.Axis = None) -> None:
        self.axis = axis
        self._state: State | None = None  # None: the identity, shape not yet known
        self._xp: Any = None
        self._dtype: Any = None  # the result dtype: the chunks' promoted float dtype
        self._reduction: tuple[int, tuple[int, ...]] | None = None  # (chunk ndim, reduced axes)

    def update(self, chunk: Any, b: Any = None) -> LSEState:
        """Fold ``chunk`` (optionally weighted by ``b``) into the state; returns ``self``.

        Masked entries of a NumPy masked array take no part."""
        xp = aa.namespace(chunk, b)
        x, weights, axes, out_dtype = _prepare_lse(xp, chunk, self.axis, b, None, None)
        self._absorb(xp, lse_state(xp, x, axes, weights), out_dtype)
        self._reduction = self._reduction or (x.ndim, axes)
        return self

    def merge(self, other: LSEState) -> LSEState:
        """Fold the terms of ``other`` into this state, in place, and return ``self`` (as
        :meth:`update` does), so ``for st in states: total.merge(st)`` accumulates.

        ``other`` is left unchanged. Both must reduce the same way: states whose chunks were
        reduced over different axes, or that keep different shapes, raise ValueError. To keep
        ``self`` too, merge into a fresh state: ``LSEState(a.axis).merge(a).merge(b)``.
        """
        if not isinstance(other, LSEState):
            raise TypeError(f"other must be an LSEState, got {type(other).__name__}")
        self._check_same_reduction(other)
        if other._state is not None:
            self._absorb(other._xp, other._state, other._dtype)
            self._reduction = self._reduction or other._reduction
        return self

    def _check_same_reduction(self, other: LSEState) -> None:
        """ValueError unless ``self`` and ``other`` reduce the same axes of chunks of one rank."""
        mine, theirs = self._reduction, other._reduction
        if mine is not None and theirs is not None:
            same = mine == theirs
        else:  # at most one side has seen a chunk: compare the axes as given, read at its rank
            ndim = (mine or theirs or (None, None))[0]
            same = _axes_key(self.axis, ndim) == _axes_key(other.axis, ndim)
        if not same:
            raise ValueError(
                f"cannot merge LSEState(axis={other.axis!r}) {_describe(other)} into "
                f"LSEState(axis={self.axis!r}) {_describe(self)}: they reduce different axes"
            )

    def _absorb(self, xp: Any, new: State, dtype: Any) -> None:
        if self._state is None:
            self._xp, self._state, self._dtype = xp, new, dtype
            return
        if tuple(self._state.m.shape) != tuple(new.m.shape):
            raise ValueError(
                f"chunk reduces to shape {tuple(new.m.shape)}, but the state has shape "
                f"{tuple(self._state.m.shape)}"
            )
        with aa.quiet_fp():
            self._state = merge(self._xp, self._state, _convert(self._xp, new))
        self._dtype = _promote(self._xp, self._dtype, dtype)

    def _value_and_sign(self) -> tuple[Any, Any]:
        if self._state is None:
            return np.float64(-math.inf), np.float64(0.0)
        with aa.quiet_fp():
            out, sign = value(self._xp, self._state, return_sign=True)
        return self._finish(out), self._finish(sign)

    def _finish(self, a: Any) -> Any:
        a = self._xp.astype(a, self._dtype) if self._dtype is not None else a
        return a[()] if aa.is_numpy(self._xp) and a.ndim == 0 else a

    @property
    def value(self) -> Any:
        """``log|Σ b·e^x|`` of everything folded in so far (−inf before any update)."""
        return self._value_and_sign()[0]

    @property
    def sign(self) -> Any:
        """The sign of ``Σ b·e^x`` (+1, −1, 0 for an empty or all −inf sum, NaN with a NaN)."""
        return self._value_and_sign()[1]

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
        return {"axis": self.axis, "state": state, "dtype": self._dtype, "reduction": self._reduction}

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.axis = d["axis"]
        self._reduction = d.get("reduction")
        self._state = None if d["state"] is None else State(*d["state"])
        self._xp = aa.namespace(*self._state) if self._state is not None else None
        self._dtype = d.get("dtype")


def _axes_key(axis: aa.Axis, ndim: int | None) -> Any:
    """``axis`` normalized for chunks of rank ``ndim`` (unknown: as a tuple of ints, or None)."""
    if ndim is not None:
        try:
            return aa.normalize_axis(aa.axis_for_0d(axis, ndim), ndim)
        except (TypeError, ValueError, IndexError):
            return ("invalid", repr(axis))
    if axis is None:
        return None
    return (axis,) if isinstance(axis, int) else tuple(axis)


def _describe(s: LSEState) -> str:
    if s._reduction is None:
        return "(no chunk yet)"
    ndim, axes = s._reduction
    return f"(chunks of {ndim} dimensions reduced over axes {axes}, kept shape {tuple(s._state.m.shape)})"


def _convert(xp: Any, s: State) -> State:
    return State(*(xp.asarray(a) for a in s))


def _promote(xp: Any, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return a if b is None else b
    try:
        return xp.result_type(a, b)
    except (TypeError, ValueError):
        return a
