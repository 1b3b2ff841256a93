"""LogSumExp and its relatives: smoothmax/min, logaddexp, logsubexp, log1mexp, softplus."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _array_api as aa
from . import _cpu
from ._online import State, block_state, empty_state, merge, value

Array = Any

# A NumPy block of at most this many working-dtype elements is processed at a time: 128 Ki
# float64 = 1 MiB stays in L2, and it bounds the core's extra memory on large inputs.
_BLOCK_ELEMENTS = 1 << 17


def logsumexp(
    a: Any,
    axis: aa.Axis = None,
    b: Any = None,
    keepdims: bool = False,
    return_sign: bool = False,
    *,
    where: Any = None,
    dtype: Any = None,
) -> Any:
    r"""Compute ``log(sum(b * exp(a)))`` over ``axis`` without overflow and without losing small terms.

    Drop-in for :func:`scipy.special.logsumexp` (same signature and semantics) on any Array API
    array, plus ``where`` and ``dtype``.

    .. math::

        \mathrm{LSE}(a) = \log \sum_i b_i e^{a_i} = m + \log b_k + \operatorname{log1p}\Big(\sum_{i \ne k} \frac{b_i}{b_k} e^{a_i - m}\Big),
        \qquad m = a_k = \max_i a_i .

    Stability: subtracting the maximum ``m`` makes every exponent ≤ 0 (no overflow, and the largest
    term is exactly ``b_k``); keeping that term out of the sum and using ``log1p`` (Blanchard,
    Higham & Higham, IMA J. Numer. Anal. 2021) keeps full relative accuracy when the maximum
    dominates, e.g. ``[0, -40, -40, ...]``, where ``log(sum(exp(a - m)))`` rounds the answer to 0.

    Parameters
    ----------
    a : array_like
        Input (NumPy, PyTorch, Dask, JAX, CuPy, array-api-strict array, or a nested sequence).
    axis : int, tuple of ints or None
        Axes to reduce over (None: all).
    b : array_like, optional
        Weights broadcast against ``a``; may be negative or zero (a zero weight removes its term,
        even at ``a = ±inf``).
    keepdims : bool
        Keep the reduced axes with length 1.
    return_sign : bool
        Also return the sign of the sum; without it a negative sum gives NaN.
    where : array_like of bool, optional
        Only entries where True take part (masked entries vanish, like −inf).
    dtype : dtype, optional
        Dtype of the result (default: the input's float dtype; integers give the default float).

    Returns
    -------
    res : array
        ``log|sum(b * exp(a))|``; NumPy 0-d results are NumPy scalars, as in SciPy.
    sgn : array
        Only with ``return_sign``: the sign of the sum (+1, −1, 0, or NaN).

    Notes
    -----
    Special values per slice: only −inf, all masked, or empty → −inf; ``k`` entries +inf → +inf
    (with weights: the sign of the weights' sum on those entries, NaN when it is 0); any NaN → NaN.
    Accumulation: float16/bfloat16 in at least float32, and everything on a CPU in float64.

    Examples
    --------
    >>> import numpy as np
    >>> import logsumexp as lse
    >>> x = np.array([1000.0, 1000.0, 1000.0])
    >>> with np.errstate(over="ignore"):
    ...     print(np.log(np.sum(np.exp(x))))    # the naive formula overflows
    inf
    >>> print(lse.logsumexp(x))                 # 1000 + log 3
    1001.0986122886682
    >>> y = np.concatenate([[0.0], np.full(999, -40.0)])
    >>> print(f"{np.log(np.sum(np.exp(y - y.max()))):.12e}")   # the plain shift: 0.6% off
    4.218847493576e-15
    >>> print(f"{lse.logsumexp(y):.12e}")       # log1p(999 e^-40): every digit right
    4.244105901036e-15
    >>> lse.logsumexp([0.0, 0.0], b=[1.0, -2.0], return_sign=True)
    (np.float64(0.0), np.float64(-1.0))
    """
    if type(a) is np.ndarray and b is None and where is None and dtype is None and not return_sign:
        # The common NumPy call in one compiled step: the generic path's handful of 0-d array
        # operations would cost ~40 µs, ten times the kernel itself at n = 1000.
        fast = _fast_numpy_lse(a, axis, keepdims)
        if fast is not None:
            return fast
    xp = aa.namespace(a, b, where)
    if aa.is_dask(xp):
        return _dask_logsumexp(xp, a, axis, b, keepdims, return_sign, where, dtype)
    x, w, axes, out_dtype = _prepare_lse(xp, a, axis, b, where, dtype)
    state = lse_state(xp, x, axes, w)
    res = value(xp, state, return_sign)
    if return_sign:
        out, sign = res
        return _finish(xp, out, axes, keepdims, out_dtype), _finish(xp, sign, axes, keepdims, out_dtype)
    return _finish(xp, res, axes, keepdims, out_dtype)


def _dask_logsumexp(
    xp: Any, a: Any, axis: aa.Axis, b: Any, keepdims: bool, return_sign: bool, where: Any, dtype: Any
) -> Any:
    """Dask arrays take ``logsumexp.dask``: one pass over the chunks, each chunk reduced by the
    NumPy path (compiled kernels when available), the states merged along Dask's tree."""
    from . import dask as lsed

    x = aa.as_array(xp, a, "a")
    if where is not None:
        x = aa.apply_where(xp, xp.astype(x, aa.float_dtype(xp, x)), where)
    res = lsed.logsumexp(x, axis=axis, b=b, keepdims=keepdims, return_sign=return_sign)
    if dtype is None:
        return res
    out_dtype = aa.float_dtype(xp, x, dtype)
    return tuple(r.astype(out_dtype) for r in res) if return_sign else res.astype(out_dtype)


def _fast_numpy_lse(a: np.ndarray, axis: aa.Axis, keepdims: bool) -> Any:
    """The compiled unweighted LSE of a float32/float64 ndarray, or None to take the generic path."""
    if a.dtype.kind != "f" or a.dtype.itemsize < 4 or not _cpu.enabled():
        return None
    axes = aa.normalize_axis(axis, a.ndim)
    out = _cpu.lse_value(a, axes)
    if out is None:
        return None
    return np.expand_dims(out, axes) if keepdims else out


def _prepare_lse(
    xp: Any, a: Any, axis: aa.Axis, b: Any, where: Any, dtype: Any
) -> tuple[Array, Array | None, tuple[int, ...], Any]:
    """Check and promote logsumexp's arguments.

    Returns the input as a float array (its own float dtype, not yet widened), with masked and
    zero-weight entries set to −inf; the weights broadcast to the input's shape (or None); the
    reduced axes; and the result dtype.
    """
    x = aa.as_array(xp, a, "a")
    w = None if b is None else aa.as_array(xp, b, "b")
    out_dtype = aa.float_dtype(xp, x if w is None else _promoted(xp, x, w), dtype)
    if not xp.isdtype(x.dtype, "real floating"):
        x = xp.astype(x, out_dtype)
    if w is not None:
        shape = _broadcast_shape(xp, x, w)
        x = aa.broadcast_to_shape(xp, x, shape, "a", "the broadcast of a and b")
        w = aa.broadcast_to_shape(xp, w, shape, "b", "a")
        # weighted inputs are copied by the masking below anyway: promote both to the result dtype
        x, w = xp.astype(x, out_dtype), xp.astype(w, out_dtype)
        x = xp.where(w == 0, xp.asarray(-math.inf, dtype=x.dtype), x)
    x = aa.apply_where(xp, x, where)
    axes = aa.normalize_axis(axis, x.ndim)
    return x, w, axes, out_dtype


def _promoted(xp: Any, x: Array, w: Array) -> Array:
    """An empty array of the dtype that ``x`` and ``w`` promote to (ints → the default float)."""
    dt = [aa.float_dtype(xp, x), aa.float_dtype(xp, w)]
    return xp.empty((0,), dtype=xp.result_type(*dt))


def _broadcast_shape(xp: Any, x: Array, w: Array) -> tuple[int, ...]:
    try:
        return tuple(xp.broadcast_arrays(x, w)[0].shape)
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"b of shape {tuple(w.shape)} does not broadcast against a of shape {tuple(x.shape)}") from err


def lse_state(xp: Any, x: Array, axes: tuple[int, ...], w: Array | None) -> State:
    """The (max, lead, tail) state of every slice of ``x`` over ``axes``, in the working dtype.

    Tries the compiled CPU kernels first (NumPy float32/float64), then a cache-blocked NumPy loop
    for large NumPy inputs, then the generic Array API computation.
    """
    if aa.is_numpy(xp) and _cpu.enabled() and x.dtype.kind == "f" and x.dtype.itemsize >= 4:
        fast = _cpu.lse_state(x, axes, w)
        if fast is not None:
            return State(*fast)
    wide = aa.work_dtype(xp, x, x.dtype)
    x1, ax = aa.to_single_axis(xp, x, axes)
    w1 = None if w is None else aa.to_single_axis(xp, w, axes)[0]
    with aa.quiet_fp():
        if aa.is_numpy(xp):
            return _blocked_numpy_state(xp, x1, ax, w1, wide)
        w1 = None if w1 is None else xp.astype(w1, wide)
        return block_state(xp, xp.astype(x1, wide), ax, w1)


def _blocked_numpy_state(xp: Any, x: Array, ax: int, w: Array | None, wide: Any) -> State:
    """The state of a large NumPy input, a cache-sized block at a time (bounded extra memory).

    Rows are processed in groups; a row too long for one block is cut into column blocks whose
    states are merged, which is exactly the online (max, sum) algorithm.
    """
    x = xp.moveaxis(x, ax, -1)
    w = None if w is None else xp.moveaxis(w, ax, -1)
    batch, n = tuple(x.shape[:-1]), x.shape[-1]
    rows = math.prod(batch)
    x = xp.reshape(x, (rows, n))
    w = None if w is None else xp.reshape(w, (rows, n))
    out = empty_state(xp, (rows,), wide)
    row_step = max(1, _BLOCK_ELEMENTS // max(n, 1))
    col_step = min(n, _BLOCK_ELEMENTS) if n else 1
    for r0 in range(0, rows, row_step):
        r = slice(r0, min(rows, r0 + row_step))
        acc = None
        for c0 in range(0, max(n, 1), col_step):
            c = slice(c0, min(n, c0 + col_step))
            # C-contiguous copies: NumPy sums a contiguous last axis pairwise (error ~log n)
            wb = None if w is None else np.ascontiguousarray(w[r, c], dtype=wide)
            st = block_state(xp, np.ascontiguousarray(x[r, c], dtype=wide), 1, wb)
            acc = st if acc is None else merge(xp, acc, st)
        for dst, src in zip(out, acc):
            dst[r] = src
    return State(*(xp.reshape(a, batch) for a in out))


def _finish(xp: Any, out: Array, axes: tuple[int, ...], keepdims: bool, out_dtype: Any) -> Any:
    """Cast to the result dtype, restore kept axes, and turn NumPy 0-d arrays into scalars."""
    out = aa.restore_axes(xp, xp.astype(out, out_dtype), axes, keepdims)
    if aa.is_numpy(xp) and out.ndim == 0:
        return out[()]
    return out


def smoothmax(x: Any, axis: aa.Axis = None, *, temperature: float = 1.0, keepdims: bool = False) -> Any:
    r"""The smooth maximum ``T · LSE(x / T)``: ``max(x) ≤ smoothmax ≤ max(x) + T·log n``.

    As the temperature ``T`` goes to 0 it tends to ``max(x)``; its gradient is ``softmax(x / T)``.

    Examples
    --------
    >>> import logsumexp as lse
    >>> print(lse.smoothmax([1.0, 2.0, 3.0], temperature=0.01))
    3.0
    >>> print(round(float(lse.smoothmax([1.0, 2.0, 3.0])), 6))
    3.407606
    """
    t = aa.check_temperature(temperature)
    xp = aa.namespace(x)
    arr = aa.as_array(xp, x, "x")
    arr = xp.astype(arr, aa.float_dtype(xp, arr))
    out = logsumexp(arr / t if t != 1.0 else arr, axis=axis, keepdims=keepdims)
    return out * t if t != 1.0 else out


def smoothmin(x: Any, axis: aa.Axis = None, *, temperature: float = 1.0, keepdims: bool = False) -> Any:
    r"""The smooth minimum ``−T · LSE(−x / T)``: ``min(x) − T·log n ≤ smoothmin ≤ min(x)``.

    Examples
    --------
    >>> import logsumexp as lse
    >>> print(lse.smoothmin([1.0, 2.0, 3.0], temperature=0.01))
    1.0
    """
    xp = aa.namespace(x)
    arr = aa.as_array(xp, x, "x")
    arr = xp.astype(arr, aa.float_dtype(xp, arr))
    return -smoothmax(-arr, axis=axis, temperature=temperature, keepdims=keepdims)


def _elementwise_args(a: Any, b: Any | None = None) -> tuple[Any, Array, Array | None, Any]:
    xp = aa.namespace(a, b)
    x = aa.as_array(xp, a, "a" if b is not None else "x")
    y = None if b is None else aa.as_array(xp, b, "b")
    out_dtype = aa.float_dtype(xp, x if y is None else _promoted(xp, x, y))
    wide = aa.work_dtype(xp, x, out_dtype)
    x = xp.astype(x, wide)
    y = None if y is None else xp.astype(y, wide)
    return xp, x, y, out_dtype


def _finish_elementwise(xp: Any, out: Array, out_dtype: Any) -> Any:
    out = xp.astype(out, out_dtype)
    return out[()] if aa.is_numpy(xp) and out.ndim == 0 else out


def logaddexp(a: Any, b: Any) -> Any:
    r"""``log(e^a + e^b)`` elementwise, as ``max(a, b) + log1p(e^{−|a − b|})``.

    Equal infinities give themselves (``−inf`` and ``−inf`` → ``−inf``, not NaN); NaN propagates.

    Examples
    --------
    >>> import logsumexp as lse
    >>> print(lse.logaddexp(1000.0, 1000.0))   # 1000 + log 2
    1000.6931471805599
    >>> print(lse.logaddexp(float("-inf"), float("-inf")))
    -inf
    """
    xp, x, y, out_dtype = _elementwise_args(a, b)
    same = x == y  # also ±inf == ±inf, where x − y would be NaN
    diff = xp.where(same, 0.0, x) - xp.where(same, 0.0, y)
    out = xp.maximum(x, y) + xp.log1p(xp.exp(-xp.abs(diff)))
    out = xp.where(same, x + math.log(2.0), out)
    return _finish_elementwise(xp, out, out_dtype)


def log1mexp(x: Any) -> Any:
    r"""``log(1 − e^x)`` for ``x ≤ 0`` (Mächler 2012): ``log(−expm1(x))`` for ``x > −log 2``,
    ``log1p(−e^x)`` below, each where it is accurate. ``0 → −inf``, ``−inf → 0``, ``x > 0 → NaN``.

    Examples
    --------
    >>> import logsumexp as lse
    >>> print(lse.log1mexp(-1e-20))            # log(1e-20); log(1 - exp(x)) gives -inf
    -46.051701859880914
    >>> print(lse.log1mexp(-50.0))             # -e^-50; log(1 - exp(x)) gives 0
    -1.9287498479639178e-22
    """
    xp, v, _, out_dtype = _elementwise_args(x)
    return _finish_elementwise(xp, log1mexp_wide(xp, v), out_dtype)


def log1mexp_wide(xp: Any, v: Array) -> Array:
    """log1mexp of an array in its working dtype; each branch sees only inputs where it is
    accurate and cannot overflow, so no floating-point warning is raised (Dask computes later)."""
    near_zero = v > -math.log(2.0)
    hi = xp.where(near_zero & (v <= 0), v, -1.0)
    lo = xp.where(near_zero, -1.0, v)
    out = xp.where(near_zero, aa.log_nonneg(xp, -xp.expm1(hi)), xp.log1p(-xp.exp(lo)))
    return xp.where(v > 0, math.nan, out + 0.0)  # + 0.0: log1p(-0.0) is -0.0


def logsubexp(a: Any, b: Any) -> Any:
    r"""``log(e^a − e^b)`` elementwise for ``a ≥ b``, as ``a + log1mexp(b − a)``.

    ``a == b`` → ``−inf`` (also for ``−inf``); ``a < b`` → NaN (no real logarithm);
    ``a = +inf`` with finite ``b`` → ``+inf``.

    Examples
    --------
    >>> import logsumexp as lse
    >>> print(lse.logsubexp(1000.0, 999.0))    # 1000 + log(1 - e^-1)
    999.5413248546129
    """
    xp, x, y, out_dtype = _elementwise_args(a, b)
    same = x == y
    x0 = xp.where(same, 0.0, x)  # the diagonal is set below; this keeps ∞ − ∞ out of the way
    d = xp.where(same, 0.0, y) - x0  # ≤ 0 when a ≥ b
    out = x0 + log1mexp_wide(xp, d)  # d > 0 (a < b) gives NaN: no real logarithm
    # e^a − e^a = 0, but ∞ − ∞ has no value
    out = xp.where(same, aa.fill(xp, x == math.inf, math.nan, -math.inf, x), out)
    return _finish_elementwise(xp, out, out_dtype)


def softplus(x: Any) -> Any:
    r"""``log(1 + e^x)`` elementwise, as ``max(x, 0) + log1p(e^{−|x|})`` (no overflow, and
    accurate for large negative ``x`` where ``log(1 + e^x)`` rounds to 0).

    Examples
    --------
    >>> import logsumexp as lse
    >>> print(lse.softplus(1000.0))
    1000.0
    >>> print(lse.softplus(-50.0))
    1.9287498479639178e-22
    """
    xp, v, _, out_dtype = _elementwise_args(x)
    out = softplus_wide(xp, v)
    return _finish_elementwise(xp, out, out_dtype)


def softplus_wide(xp: Any, v: Array) -> Array:
    """softplus of an array already in its working dtype."""
    return xp.maximum(v, 0.0) + xp.log1p(xp.exp(-xp.abs(v)))
