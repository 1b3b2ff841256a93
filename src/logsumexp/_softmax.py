"""softmax and log_softmax: the soft arg max, the gradient of LogSumExp."""

from __future__ import annotations

from typing import Any

from . import _array_api as aa
from . import _jax
from ._reduce import normalized
from ._state import divide_by_temperature, shifted

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
    (``where`` False, or masked in a NumPy masked array) are 0. Accumulation in float64 on a CPU, at least float32 elsewhere.

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
    """Validate once, then hand the masked, scaled input to the one reduction (``_reduce``)."""
    t = aa.check_temperature(temperature)
    x, where = aa.unmask(x, where, "x")
    xp = aa.namespace(x, where)
    arr = aa.as_array(xp, x, "x")
    out_dtype = aa.float_dtype(xp, arr, dtype)
    if not xp.isdtype(arr.dtype, "real floating"):
        arr = xp.astype(arr, out_dtype)
    arr = aa.apply_where(xp, arr, where)
    axes = aa.normalize_axis(axis, arr.ndim)
    if t != 1.0 and 0 not in arr.shape:  # an empty input has nothing to scale
        arr = _scaled(xp, arr, axes, t)
    if axes and _jax.is_jax_array(arr):  # JAX: the native path (_jax.py)
        return _jax.softmax(arr, axes, log, out_dtype)
    return normalized(xp, arr, axes, log, out_dtype)


def _scaled(xp: Any, arr: Array, axes: tuple[int, ...], t: float) -> Array:
    """``(x − max)/T`` in the working dtype: the softmax of ``x/T`` without ever forming ``x/T``.

    The maximum is subtracted first and the differences (≤ 0) are divided afterwards, so a tiny
    temperature sends them to −inf (not ``inf − inf = NaN``) and keeps ties at the maximum at 0,
    and a huge one flattens them towards 0; the softmax is unchanged by the shift. Masked entries
    are already −inf and stay −inf.
    """
    wide = aa.work_dtype(xp, arr, arr.dtype)
    arr = xp.astype(arr, wide, copy=False)
    m = xp.max(arr, axis=axes, keepdims=True)
    with aa.quiet_fp():
        return divide_by_temperature(xp, shifted(xp, arr, m), t)
