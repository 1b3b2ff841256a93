"""Double-double arithmetic on any Array API namespace: the finish of a LogSumExp state rounded once.

A double-double is an unevaluated sum ``hi + lo`` of two arrays of the working dtype with
``|lo| ≤ ulp(hi)/2``: about twice the working precision. Only additions, subtractions,
multiplications and divisions are used, elementwise, so every function here runs unchanged on
NumPy, PyTorch, JAX, CuPy, Dask or array-api-strict arrays (no FMA is assumed: exact products
use Veltkamp's splitting). No fast-math may reorder them: the error terms are differences that
reassociation would fold to 0 (XLA and Inductor keep IEEE semantics by default).

The exps of a LogSumExp's terms come in two kinds (``_lse_dd`` uses them on NumPy float64):
``exp_split`` gives ``e^d`` as ``2^k + 2^k·expm1(r)`` so that sums of many terms round only
their small parts, and ``exp_dd`` gives ``e^(dh + dl)`` as a double-double to ~2^-100, with
``log1p_dd_exact`` and ``sum_dd`` for the slices whose result cancels against their maximum.
These also use ``expm1``, ``floor``, ``round`` and ``take`` (all in the standard).

The point is the last step of a LogSumExp, ``m + log1p(t)`` with ``t`` the sum of the terms
other than the maximal one (Blanchard–Higham–Higham): done in working precision it rounds
three times (the tail, log1p, the addition), up to ~1.5 ulp after the exps' own errors.
``value`` computes ``log1p`` as a double-double (``log1p_dd``) and adds ``m`` exactly, so the
result is rounded once.

Examples
--------
>>> import numpy as np
>>> from logsumexp._dd import two_sum, log1p_dd
>>> s, e = two_sum(np.float64(1.0), np.float64(1e-20))
>>> float(s), float(e)
(1.0, 1e-20)
>>> hi, lo = log1p_dd(np, np.asarray(1.0), np.asarray(0.0))   # log 2 to ~2^-110
>>> float(hi), float(lo)
(0.6931471805599453, 2.3190468138462996e-17)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _array_api as aa

Array = Any

# ln 2 in three parts: _LN2_HI has 32 trailing zero bits, so k·_LN2_HI is exact for |k| < 2**20
# (fdlibm's split); the three sum to ln 2 within 2^-140.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LN2_LO2 = 1.1612227229362532e-26
_SPLITTER = 134217729.0  # 2**27 + 1: Veltkamp's constant for float64
_LOG2E = 1.4426950408889634
# exp_dd: e^d = 2^k·2^{j/32}·e^r with |r| ≤ ln 2/64; e^r − 1 to degree 11 (truncation 2^-107),
# degrees 1-5 in double-double, 6-11 (under 2^-48 of the sum) in working precision: 2^-101.9
# measured
_EXP_TABLE = 32
_EXP_DEGREE = 11
_EXP_DD_DEGREE = 5
# 2^{j/32}, j = 0..31, as double-doubles (Python's decimal at 50 digits, split in two doubles;
# tests/test_dd.py checks them against mpmath)
_EXP2_TABLE = (
    (1.0, 0.0),
    (1.0218971486541166, 5.109225028973444e-17),
    (1.0442737824274138, 8.551889705537965e-17),
    (1.0671404006768237, -7.899853966841582e-17),
    (1.0905077326652577, -3.046782079812471e-17),
    (1.1143867425958924, 1.0410278456845571e-16),
    (1.1387886347566916, 8.912812676025408e-17),
    (1.1637248587775775, 3.8292048369240935e-17),
    (1.189207115002721, 3.982015231465646e-17),
    (1.215247359980469, -7.712630692681488e-17),
    (1.241857812073484, 4.658027591836937e-17),
    (1.2690509571917332, 2.667932131342186e-18),
    (1.2968395546510096, 2.5382502794888315e-17),
    (1.3252366431597413, -2.8587312100388614e-17),
    (1.3542555469368927, 7.70094837980299e-17),
    (1.383909881963832, -6.770511658794786e-17),
    (1.4142135623730951, -9.667293313452913e-17),
    (1.4451808069770467, -3.0237581349939873e-17),
    (1.4768261459394993, -3.483994556892796e-17),
    (1.5091644275934228, -1.016455327754295e-16),
    (1.5422108254079407, 7.949834809697621e-17),
    (1.5759808451078865, -1.0136916471278304e-17),
    (1.6104903319492543, 2.4707192569797888e-17),
    (1.645755478153965, -1.0125679913674773e-16),
    (1.681792830507429, 8.199010020581497e-17),
    (1.718619298122478, -1.851380418263111e-17),
    (1.7562521603732995, 2.960140695448873e-17),
    (1.7947090750031072, 1.8227458427912087e-17),
    (1.8340080864093424, 3.283107224245627e-17),
    (1.8741676341103, -6.122763413004143e-17),
    (1.9152065613971474, -1.0619946056195963e-16),
    (1.9571441241754002, 8.960767791036668e-17),
)


def two_sum(a: Array, b: Array) -> tuple[Array, Array]:
    """``(s, e)`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly (Knuth; any magnitudes)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def fast_two_sum(a: Array, b: Array) -> tuple[Array, Array]:
    """``(s, e)`` with ``a + b = s + e`` exactly, for ``|a| ≥ |b|`` (or ``a`` a power of two
    at least as large in exponent; Dekker)."""
    s = a + b
    return s, b - (s - a)


def _split(a: Array) -> tuple[Array, Array]:
    """a = hi + lo with hi holding the top 26 bits (Veltkamp): their products are exact."""
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def two_prod(a: Array, b: Array) -> tuple[Array, Array]:
    """``(p, e)`` with ``p = fl(a·b)`` and ``a·b = p + e`` exactly (Dekker, no FMA; |a|, |b| < 1e300)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def dd_add(ah: Array, al: Array, bh: Array, bl: Array) -> tuple[Array, Array]:
    """(ah + al) + (bh + bl) as a double-double (the accurate variant: both error terms kept)."""
    s, e = two_sum(ah, bh)
    t, f = two_sum(al, bl)
    s, e = fast_two_sum(s, e + t)
    return fast_two_sum(s, e + f)


def dd_mul(ah: Array, al: Array, bh: Array, bl: Array) -> tuple[Array, Array]:
    """(ah + al)·(bh + bl) as a double-double: the exact product of the high parts, the cross terms."""
    p, e = two_prod(ah, bh)
    return fast_two_sum(p, e + (ah * bl + al * bh))


def dd_div(ah: Array, al: Array, bh: Array, bl: Array) -> tuple[Array, Array]:
    """(ah + al) / (bh + bl) as a double-double: the quotient, its exact remainder, a correction."""
    q = ah / bh
    p, e = two_prod(q, bh)
    r = (((ah - p) - e) + al) - q * bl
    return fast_two_sum(q, r / bh)


def log1p_dd(xp: Any, th: Array, tl: Array) -> tuple[Array, Array]:
    """``log(1 + th + tl)`` as a double-double (``1 + th + tl > 0``), to about 2^-57 relative.

    ``1 + t = 2^k·f`` with ``f`` in [√½, √2] (k from log2, the scaling by a power of two exact);
    ``log f = 2·atanh(u)`` with ``u = (f − 1)/(f + 1)``, ``|u| ≤ 0.172``, formed in double-double
    (``f − 1`` is exact by Sterbenz's lemma); ``log f = 2u + 2u·(u²/3 + u⁴/5 + …)``, the series
    (under 1% of 2u) in working precision. Then ``k·ln 2`` is added with ln 2 in three parts. When
    t is tiny, k = 0 and ``u ≈ t/2`` keeps t's relative accuracy, as log1p does.
    """
    sh, sl = two_sum(1.0, th)
    sh, sl = fast_two_sum(sh, sl + tl)
    safe = xp.where(sh > 0, sh, 1.0)
    k = xp.round(xp.log2(safe))  # f = sh·2^-k lies in [√½, √2] up to log2's rounding
    scale = 2.0 ** (-k)
    fh = sh * scale
    fl = sl * scale
    nh, nl = two_sum(fh - 1.0, fl)
    dh, dl = two_sum(fh, 1.0)
    dh, dl = fast_two_sum(dh, dl + fl)
    uh, ul = dd_div(nh, nl, dh, dl)
    u2 = uh * uh
    q = 1.0 / 25.0
    for j in range(23, 1, -2):  # Σ u^{2i}/(2i+1), i ≥ 1, to 2^-64 relative of 2u (u² ≤ 0.0295)
        q = q * u2 + 1.0 / j
    lh, ll = fast_two_sum(2.0 * uh, 2.0 * ul + 2.0 * uh * (u2 * q))
    ah, al = two_prod(k, xp.asarray(_LN2_LO, dtype=k.dtype))
    lh, ll = dd_add(k * _LN2_HI, al + k * _LN2_LO2, lh, ll)
    lh, ll = dd_add(lh, ll, ah, 0.0 * ah)
    return lh, ll


def _inv_factorials(n: int) -> tuple[tuple[float, float], ...]:
    """1/j! as double-doubles, j = 0..n (exact rationals split in two doubles)."""
    from fractions import Fraction

    out, f = [], Fraction(1)
    for j in range(n + 1):
        f = f / j if j else f
        out.append((float(f), float(f - Fraction(float(f)))))
    return tuple(out)


_INV_FACT = _inv_factorials(_EXP_DEGREE)
_EXP2_NP = tuple(np.array(part) for part in zip(*_EXP2_TABLE))


def exp_split(xp: Any, d: Array) -> tuple[Array, Array]:
    """``e^d = hi + lo`` for ``d ≤ 0`` (−inf, NaN too) with ``hi = 2^k`` and ``lo = 2^k·expm1(r)``:
    ``1 + expm1(r)`` is never rounded.

    ``d = k·ln 2 + r``, ``k = round(d/ln 2)``, ``|r| ≤ ln 2/2``, ``r = (d − k·_LN2_HI) − k·_LN2_LO``
    with the first difference exact (fdlibm's reduction). The point is the sum of many terms: a
    sum of powers of two within 53 binades is exact, so summing the ``hi`` and the ``lo`` parts
    apart leaves only the roundings of ``lo`` (≈ 0.3 of the value): about 0.25 ulp per term
    instead of ``exp``'s ~0.5 (the compiled kernels' ``_exp_le0_split``). The rounding of ``r``
    (about 2^-55 relative to ``2^k``) is left in: carrying ``r`` as a double-double changed no
    family's worst error (measured, 12 seeds). ``d`` is clamped at −746 (``2^k`` then underflows
    to 0, −inf included); NaN stays NaN in ``lo``.
    """
    if aa.is_numpy(xp):
        return _exp_split_numpy(d)
    d = xp.where(d < -746.0, -746.0, d)
    k = xp.round(d * _LOG2E)
    hi = 2.0**k
    return hi, hi * xp.expm1((d - k * _LN2_HI) - k * _LN2_LO)


_SHIFT = 6755399441055744.0 + 1077.0  # 1.5·2^52 + 1077: adding it rounds to an integer, k + 1077 in the low bits


def _exp_split_numpy(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``exp_split`` on NumPy, the same numbers bit for bit (a NaN's ``hi`` aside) in half the time:
    ``k`` by the shift trick (``d·log2 e + _SHIFT`` rounds to an integer like ``round``), ``2^k``
    from the bits (``k + 1077`` shifted into the exponent field is ``2^(k+54)``, a normal number
    down to k = −1076; times 2^-54 it rounds once, so subnormal and zero results are right), and
    in-place passes (fewer temporaries). ``np.round`` and ``2.0 ** k`` cost twice as much."""
    d = np.maximum(d, -746.0)
    t = d * _LOG2E
    t += _SHIFT
    kf = t - _SHIFT
    hi = (t.view(np.int64) << 52).view(np.float64)
    hi *= 2.0**-54
    r = kf * -_LN2_HI
    r += d  # d − k·_LN2_HI, exact
    kf *= _LN2_LO
    r -= kf
    np.expm1(r, out=r)
    r *= hi
    return hi, r


def exp_dd(xp: Any, dh: Array, dl: Array) -> tuple[Array, Array]:
    """``e^(dh + dl)`` as a double-double, to about 2^-100 relative, for ``dh ≤ 709``; 0 below −745.2.

    ``dh + dl = (32k + j)·ln 2/32 + r`` with ``0 ≤ j < 32`` and ``|r| ≤ ln 2/64`` (``r`` in
    double-double, ln 2/32 in three parts: ``n·_LN2_HI/32`` is exact), so
    ``e^d = 2^k·2^{j/32}·(1 + (e^r − 1))`` with ``2^{j/32}`` from a double-double table and
    ``e^r − 1 = r·P(r)`` by its Taylor series to degree 11: the terms of degree 6 and above are
    under 2^-48 of the sum, so they are summed in working precision and only degrees 1-5 in
    double-double. ``2^k`` is applied exactly in two halves (``2^k`` may be subnormal). ~250
    elementwise operations per value (the compiled kernels' ``exp_dd``, degree 11 in
    double-double and eight squarings, would take three times as many: every one a pass here).
    """
    tiny = dh < -745.2
    dh = xp.where(tiny, 0.0, dh)
    n = xp.floor(dh * (_LOG2E * _EXP_TABLE) + 0.5)
    k = xp.floor(n / _EXP_TABLE)
    ph, pl = two_prod(n, _LN2_LO / _EXP_TABLE)  # dividing by 32 is exact
    rh, rl = dd_add(dh - n * (_LN2_HI / _EXP_TABLE), dl, -ph, -(pl + n * (_LN2_LO2 / _EXP_TABLE)))
    sh, sl = _expm1_series(rh, rl)
    th, tl = _exp2_table(xp, n - k * _EXP_TABLE, dh)
    ph, pl = dd_mul(th, tl, sh, sl)
    eh, el = dd_add(th, tl, ph, pl)  # 2^{j/32}·e^r
    k1 = xp.floor(k / 2.0)
    s1, s2 = 2.0**k1, 2.0 ** (k - k1)
    return xp.where(tiny, 0.0, (eh * s1) * s2), xp.where(tiny, 0.0, (el * s1) * s2)


def _expm1_series(rh: Array, rl: Array) -> tuple[Array, Array]:
    """``e^r − 1`` for ``|r| ≤ ln 2/64`` as a double-double: ``r·P(r)``, the high orders plainly."""
    c = _INV_FACT
    q = rh * c[_EXP_DEGREE][0] + c[_EXP_DEGREE - 1][0]
    for j in range(_EXP_DEGREE - 2, _EXP_DD_DEGREE, -1):  # the small high-order terms
        q = q * rh + c[j][0]
    sh, sl = q, 0.0 * q
    for j in range(_EXP_DD_DEGREE, 0, -1):
        sh, sl = dd_mul(sh, sl, rh, rl)
        s, e = two_sum(sh, c[j][0])  # no cancellation (|r·P| ≪ 1/j!): one TwoSum suffices
        sh, sl = fast_two_sum(s, e + (sl + c[j][1]))
    return dd_mul(sh, sl, rh, rl)


def _exp2_table(xp: Any, j: Array, like: Array) -> tuple[Array, Array]:
    """``2^{j/32}`` as a double-double for integral float ``j`` in [0, 31] (a gather)."""
    if aa.is_numpy(xp):
        idx = j.astype(np.intp)
        return _EXP2_NP[0][idx], _EXP2_NP[1][idx]
    import array_api_compat

    cx = array_api_compat.array_namespace(like)  # the standard's take and astype (torch itself lacks astype)
    idx = cx.reshape(cx.astype(j, cx.int64), (-1,))
    out = []
    for part in zip(*_EXP2_TABLE):
        t = cx.asarray(part, dtype=like.dtype, device=array_api_compat.device(like))
        out.append(cx.reshape(cx.take(t, idx), tuple(j.shape)))
    return out[0], out[1]


def log1p_dd_exact(xp: Any, th: Array, tl: Array) -> tuple[Array, Array]:
    """``log(1 + th + tl)`` to about 2^-95 (absolute; relative where the result is not tiny):
    ``log1p_dd`` (2^-57 relative) and one Newton step ``L = L0 + ((1 + t)·e^{−L0} − 1)`` with
    ``e^{−L0}`` from ``exp_dd`` (the step's own error is about the square of L0's, below 2^-110).
    For ``t ≥ −1/2``, ``log(1 + t) ≤ 709``. A tiny result keeps log1p_dd's relative 2^-57."""
    l0h, l0l = log1p_dd(xp, th, tl)
    eh, el = exp_dd(xp, -l0h, -l0l)
    yh, yl = two_sum(1.0, th)
    yh, yl = fast_two_sum(yh, yl + tl)
    ph, pl = dd_mul(yh, yl, eh, el)
    return dd_add(l0h, l0l, *dd_add(ph, pl, -1.0, 0.0))


def sum_dd(xp: Any, h: Array, l: Array) -> tuple[Array, Array]:
    """``Σ (h + l)`` along the last axis as a double-double: halves folded with an exact TwoSum,
    the low parts and the TwoSum errors added plainly (their own error is ~n·eps² of the sum)."""
    while h.shape[-1] > 1:
        n = h.shape[-1]
        half = n // 2
        s, e = two_sum(h[..., :half], h[..., half : 2 * half])
        lo = (l[..., :half] + l[..., half : 2 * half]) + e
        if n % 2:
            s, lo = xp.concat([s, h[..., -1:]], axis=-1), xp.concat([lo, l[..., -1:]], axis=-1)
        h, l = s, lo
    return fast_two_sum(h[..., 0], l[..., 0])


def add_rounded(xp: Any, m: Array, lh: Array, ll: Array) -> Array:
    """``m + (lh + ll)`` rounded once (m finite): an exact TwoSum, then the low parts."""
    s, e = two_sum(m, lh)
    return s + (e + ll)


def value(
    xp: Any, m: Array, lead: Array, tail: Array, return_sign: bool = False, tail_lo: Array | None = None
) -> Array | tuple[Array, Array]:
    """LogSumExp of a ``(max, lead, tail)`` state, ``m + log|lead + tail|``, rounded once where
    the lead is near 1; the same special values and sign rules as the working-precision finish.
    ``tail_lo``: a low part of the tail, where the tail was summed as a double-double.

    While the lead is within a factor 2 of 1 and the total above 1/2, ``t = (lead − 1) + tail``
    is formed exactly as a double-double (``lead − 1`` is exact there, Sterbenz) and the result
    is ``m + log1p_dd(t)`` added exactly (``add_rounded``); without weights ``lead = 1`` and this
    is the dominant-term form ``m + log1p(tail)`` of Blanchard, Higham & Higham. Elsewhere (a
    leading weight far from 1) ``m + log|total|`` in working precision. A negative total is NaN
    unless ``return_sign``; +inf entries whose weights cancel give NaN.

    Examples
    --------
    >>> import numpy as np
    >>> m, lead, tail = np.array([0.0]), np.array([1.0]), np.array([2.0])
    >>> print(value(np, m, lead, tail))   # log 3
    [1.09861229]
    """
    total = lead + tail
    near_one = (lead >= 0.5) & (lead <= 2.0) & (total > 0.5) & (tail < math.inf)
    if m.dtype != xp.float64:
        # the splitting constant and ln 2's parts are float64's; float32 states (accelerators)
        # keep the working-precision finish, far below their own tolerance anyway
        log_sum = xp.where(
            near_one,
            xp.log1p(xp.where(near_one, (lead - 1.0) + tail, 0.0)),
            aa.log_nonneg(xp, xp.abs(total)),
        )
        rounded_once = None
    else:
        th, tl = two_sum(xp.where(near_one, lead - 1.0, 0.0), xp.where(near_one, tail, 0.0))
        if tail_lo is not None:
            tl = tl + xp.where(near_one, tail_lo, 0.0)
        lh, ll = log1p_dd(xp, th, tl)
        log_sum = xp.where(near_one, lh, aa.log_nonneg(xp, xp.abs(total)))
        finite_m = xp.isfinite(m)
        rounded_once = xp.where(near_one & finite_m, add_rounded(xp, xp.where(finite_m, m, 0.0), lh, ll), math.nan)
    m_inf_nan = xp.where((m == math.inf) & (log_sum == -math.inf), math.nan, m)
    out = m_inf_nan + log_sum
    if rounded_once is not None:
        out = xp.where(xp.isnan(rounded_once), out, rounded_once)
    if return_sign:
        return out, xp.where(xp.isnan(out), math.nan, xp.sign(total))
    return xp.where(total < 0, math.nan, out)


__all__ = [
    "add_rounded", "dd_add", "dd_div", "dd_mul", "exp_dd", "exp_split", "fast_two_sum", "log1p_dd",
    "log1p_dd_exact", "sum_dd", "two_prod", "two_sum", "value",
]
