"""softmax and log_softmax: the soft arg max, the gradient of LogSumExp."""

from __future__ import annotations

import math
from typing import Any

from . import _array_api as aa
from . import _cpu
from ._lse import _BLOCK_ELEMENTS, lse_state
from ._online import shifted

Array = Any


def softmax(
    x: Any, axis: aa.Axis = -1, *, where: Any = None, temperature: float = 1.0, dtype: Any = None
) -> Any:
    r"""The soft arg max ``exp(x/T − LSE(x/T))`` along ``axis`` (the gradient of LogSumExp).

    .. math:: \operatorname{softmax}(x)_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}, \qquad m = \max_j x_j .

    Stability: the maximum is subtracted first, so no exponent is positive and the denominator
    is at least 1; the division form is the more accurate one (one rounding per entry).

    Special values per slice: all −inf, all masked or empty → all 0 (never NaN); ``k`` entries
    +inf → ``1/k`` on them, 0 elsewhere; any NaN → NaN in that slice only. Masked entries
    (``where`` False) are 0. Accumulation in float64 on a CPU, at least float32 elsewhere.

    Parameters
    ----------
    x : array_like
    axis : int or tuple of ints
        Axes that sum to one (default: the last, the ML convention).
    where : array_like of bool, optional
        Entries that take part; the others get probability 0.
    temperature : float
        ``T > 0``; small T sharpens towards the arg max, large T flattens.
    dtype : dtype, optional
        Result dtype (default: the input's float dtype).

    Examples
    --------
    >>> import numpy as np
    >>> import logsumexp as lse
    >>> print(lse.softmax(np.array([1000.0, 1000.0, 1000.0])))
    [0.33333333 0.33333333 0.33333333]
    >>> print(lse.softmax(np.array([0.0, np.inf, np.inf])))
    [0.  0.5 0.5]
    >>> print(lse.softmax(np.array([-np.inf, -np.inf])))
    [0. 0.]
    """
    return _normalize(x, axis, where, temperature, dtype, log=False)


def log_softmax(
    x: Any, axis: aa.Axis = -1, *, where: Any = None, temperature: float = 1.0, dtype: Any = None
) -> Any:
    r"""``x/T − LSE(x/T)`` along ``axis``: the log-probabilities of the softmax.

    .. math:: \log\operatorname{softmax}(x)_i = (x_i - m) - \operatorname{log1p}\Big(\sum_{j \ne k} e^{x_j - m}\Big),
              \qquad m = x_k = \max_j x_j .

    Stability: as in :func:`logsumexp`, the maximum's own term (exactly 1) is kept out of the sum
    and ``log1p`` is used, so the dominant entry keeps full relative accuracy: at the 0 of
    ``[0, −40, −40, …]`` the result is ``−999·e^{−40}``, where ``x − LSE(x)`` returns 0.

    Special values per slice: all −inf, all masked or empty → all −inf; ``k`` entries +inf →
    ``−log k`` on them and −inf elsewhere; any NaN → NaN in that slice only.

    Examples
    --------
    >>> import numpy as np
    >>> import logsumexp as lse
    >>> print(lse.log_softmax(np.array([1000.0, 1000.0, 1000.0])))   # -log 3 each
    [-1.09861229 -1.09861229 -1.09861229]
    >>> y = np.concatenate([[0.0], np.full(999, -40.0)])
    >>> print(f"{lse.log_softmax(y)[0]:.12e}")
    -4.244105901036e-15
    """
    return _normalize(x, axis, where, temperature, dtype, log=True)


def _normalize(x: Any, axis: aa.Axis, where: Any, temperature: float, dtype: Any, log: bool) -> Any:
    t = aa.check_temperature(temperature)
    xp = aa.namespace(x, where)
    arr = aa.as_array(xp, x, "x")
    out_dtype = aa.float_dtype(xp, arr, dtype)
    if not xp.isdtype(arr.dtype, "real floating"):
        arr = xp.astype(arr, out_dtype)
    if t != 1.0:
        arr = arr / t
    arr = aa.apply_where(xp, arr, where)
    axes = aa.normalize_axis(axis, arr.ndim)
    if aa.is_dask(xp):  # one pass for the (max, tail) state, one to write: logsumexp.dask
        from . import dask as lsed

        out = (lsed.log_softmax if log else lsed.softmax)(arr, axis=axes)
        return out if out.dtype == out_dtype else out.astype(out_dtype)
    if aa.is_numpy(xp) and _cpu.enabled() and len(axes) == 1 and arr.dtype.kind == "f" and arr.dtype.itemsize >= 4:
        fast = _cpu.softmax(arr, axes[0], log)
        if fast is not None:
            return xp.astype(fast, out_dtype, copy=False)
    if math.prod(arr.shape) == 0:
        return xp.astype(arr, out_dtype)
    state = lse_state(xp, arr, axes, None)
    m, tail = (aa.restore_axes(xp, a, axes, True) for a in (state.m, state.tail))
    wide = m.dtype
    with aa.quiet_fp():
        if aa.is_numpy(xp) and arr.size > _BLOCK_ELEMENTS:
            return _blocked_numpy(xp, arr, m, tail, axes, wide, out_dtype, log)
        return xp.astype(from_state(xp, xp.astype(arr, wide), m, tail, log), out_dtype)


def from_state(xp: Any, x: Array, m: Array, tail: Array, log: bool) -> Array:
    """softmax (or log_softmax) of ``x`` given its slices' max ``m`` and ``tail`` (keepdims).

    ``softmax = e^{x − m} / (1 + tail)``: the denominator is the whole sum (the leading term is
    exactly 1), so an all −inf slice gives 0/1 = 0 rather than 0/0. ``log_softmax = (x − m) −
    log1p(tail)``. A NaN slice is NaN everywhere, whichever entry the arg max picked.
    """
    xs = shifted(xp, x, m)
    out = xs - xp.log1p(tail) if log else xp.exp(xs) / (1.0 + tail)
    return xp.where(xp.isnan(m), math.nan, out)


def _blocked_numpy(
    xp: Any, x: Array, m: Array, tail: Array, axes: tuple[int, ...], wide: Any, out_dtype: Any, log: bool
) -> Array:
    """``from_state`` on a large NumPy array, a cache-sized block along axis 0 at a time."""
    out = xp.empty(x.shape, dtype=out_dtype)
    step = max(1, _BLOCK_ELEMENTS * x.shape[0] // x.size)
    reduced = 0 in axes  # then m and tail have length 1 on axis 0 and apply to every block
    for i in range(0, x.shape[0], step):
        r = slice(i, i + step)
        mb, tb = (m, tail) if reduced else (m[r], tail[r])
        out[r] = from_state(xp, xp.astype(x[r], wide), mb, tb, log)
    return out
