"""Elementwise relatives of LogSumExp: logaddexp, logsubexp, log1mexp, softplus.

Each is computed in the working dtype (float64 on a CPU) in the form that neither overflows nor
loses the small terms, and comes back in the input's float dtype. NumPy masked arrays are refused
(an elementwise result would have to invent values under the mask).
"""

from __future__ import annotations

import math
from typing import Any

from . import _array_api as aa

Array = Any


def _elementwise_args(a: Any, b: Any | None = None) -> tuple[Any, Array, Array | None, Any]:
    if b is None:
        aa.refuse_masked(x=a)
    else:
        aa.refuse_masked(a=a, b=b)
    xp = aa.namespace(a, b)
    x = aa.as_array(xp, a, "a" if b is not None else "x")
    y = None if b is None else aa.as_array(xp, b, "b")
    out_dtype = aa.float_dtype(xp, x if y is None else aa.promoted(xp, x, y))
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
