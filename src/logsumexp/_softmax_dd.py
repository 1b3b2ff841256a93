"""softmax / log_softmax of NumPy float64 in the array core, each entry rounded about once.

What the compiled kernels' ``_softmax_row`` does, with NumPy's elementwise operations (the
array core: ``_cpu.disabled()``, or no kernels). The plain formulas ``(x_i − m) − log1p(t)`` and
``e^{x_i − m}/(1 + t)`` round ``x_i − m`` (carried through the exp it is ``|x_i − m|·2^-53``
relative: 32 ulp on softmax of N(0,1)·10), round ``log1p(t)`` and the tail ``t``. Here:

1. ``x_i − m = dh + dl`` exactly (TwoSum), and every exp is ``_dd.exp_split``'s
   ``2^j + 2^j·y`` with two roundings put back to first order (``_exp_split_fine``): ``dl``
   and the reduced argument's rounding; what is left is NumPy's ``expm1`` (~0.6 eps at worst);
2. the tail ``t = Σ_{i≠k} e^{x_i − m}`` is a double-double ``(th, tl)``: the powers of two
   summed apart (exactly), except those below 2^-37 of the block's largest tail term, which go
   whole into the low parts (a power of two more than 53 binades below the running sum would be
   rounded away: U(−700, 700)); the low parts summed exactly but for their last bits
   (``_exact_split_sum``);
3. log_softmax: ``log1p(t) = ch + cl`` (``_dd.log1p_dd``) and ``(dh − ch) + (e + (dl − cl))``
   with ``e`` the TwoSum error of ``dh − ch``: rounded once;
4. softmax: ``e_i = eh + el``, divided by ``T = 1 + t = Th + Tl``: ``q = eh/Th``,
   ``r = eh − q·Th`` exactly (Dekker's product: no FMA in NumPy), ``q + ((r + el) − q·Tl)/Th``.

Measured per entry (n = 400, 8 seeds; N(0,1), 0+U(−25,−15), [0,−40×999], U(−700,700),
1000+N(0,1), scales 1, 3, 10): log_softmax ≤ 0.59 ulp, softmax ≤ 1.02 ulp on normal entries
(the exp's ``expm1`` rounding plus the final one; before: 2.08 and 32.5 ulp).

Slices with a non-finite maximum or a NaN keep ``softmax_from_state`` (its special values).
Only unweighted input (softmax has no weights), a cache-sized block at a time.

Examples
--------
>>> import numpy as np
>>> from logsumexp._softmax_dd import normalized
>>> p = normalized(np.array([[0.0, -1.0, -2.0]]), 1, log=False)
>>> float(p.sum())
1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from . import _dd
from ._lse_dd import BLOCK_ELEMENTS, _drop_lead, _tails
from ._state import block_state, softmax_from_state

# a power of two at or above 2^-37 times the block's largest term is summed exactly: a block of
# at most 2^13 terms, each at most that largest one, stays within 2^13·2^37 = 2^50 < 2^53
_SMALL = 2.0**-37


def normalized(x: np.ndarray, ax: int, log: bool) -> np.ndarray:
    """softmax (or log_softmax with ``log``) of ``x`` along ``ax`` in float64, ``x``'s shape.

    ``x`` unweighted (masked entries −inf), at least one element per slice."""
    xm = np.moveaxis(x, ax, -1)
    batch, n = tuple(xm.shape[:-1]), xm.shape[-1]
    x2 = np.reshape(xm, (math.prod(batch), n))
    m = np.max(x2, axis=1).astype(np.float64)
    lead_at = np.argmax(x2, axis=1)
    ok = np.isfinite(m)
    th, tl = _tails(x2, np.where(ok, m, 0.0), np.where(ok, lead_at, -1), BLOCK_ELEMENTS, _tail_thresholded)
    ok &= np.isfinite(th)
    out = np.empty((x2.shape[0], n))
    if log:
        ch, cl = _dd.log1p_dd(np, np.where(ok, th, 0.0), np.where(ok, tl, 0.0))
        _by_blocks(x2, out, _log_entries, m, ch, cl)
    else:
        big, big_lo = _dd.two_sum(1.0, np.where(ok, th, 0.0))
        _by_blocks(x2, out, _exp_entries, m, big, big_lo + np.where(ok, tl, 0.0), *_dd._split(big))
    special = np.flatnonzero(~ok)
    if special.size:
        out[special] = _special_rows(x2[special], log)
    return np.moveaxis(np.reshape(out, batch + (n,)), -1, ax)


def _special_rows(x: np.ndarray, log: bool) -> np.ndarray:
    """Rows with a ±inf maximum or a NaN: the state path's special values (1/k at k +inf entries)."""
    xw = x.astype(np.float64)
    s = block_state(np, xw, 1)
    return softmax_from_state(np, xw, s.m[:, None], s.tail[:, None], log)


def _tail_thresholded(xb: np.ndarray, m: np.ndarray, lead_col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The block's tail as ``_lse_dd``'s split sum, with the powers of two below ``_SMALL`` times
    the largest one moved whole into the low parts (where they round relative to that sum, not
    vanish 53 binades below the powers' running sum)."""
    hi, lo = _exp_split_fine(*_shift(xb, m))
    _drop_lead(lead_col, hi, lo)
    small = hi < np.max(hi, axis=1, keepdims=True) * _SMALL
    lo += np.where(small, hi, 0.0)
    hi[small] = 0.0
    # the low parts compensated: their plain sum's rounding (~eps·Σ|lo|, a third of an ulp of
    # the tail) is what is left of the tail's error, and a row's top log_softmax entry −log1p(t)
    # or any softmax entry e_i/(1 + t) carries it whole (N(0,1)·10: 0.77 ulp before)
    lh, ll = _exact_split_sum(lo)
    sh, sl = _dd.two_sum(np.sum(hi, axis=1), lh)
    return _dd.fast_two_sum(sh, sl + ll)


def _exact_split_sum(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Σ v`` per row as ``(exact part, rest)`` (Rump, Ogita & Oishi's extraction): with
    ``σ = 2^(⌈log2 max|v|⌉ + ⌈log2 n⌉ + 1)``, ``q = (σ + v) − σ`` keeps ``v``'s bits above
    ``eps·σ``, and those add exactly (``n`` of them stay below ``σ``); the remainders ``v − q``
    (exact, below ``eps·σ``) add with an error ~``n·eps²·σ``. Cheaper than a TwoSum tree."""
    n = v.shape[1]
    _, e = np.frexp(np.max(np.abs(v), axis=1, keepdims=True))  # max|v| < 2^e
    sigma = np.ldexp(1.0, e + max(1, n).bit_length() + 1)
    q = v + sigma
    q -= sigma
    rest = v - q
    return np.sum(q, axis=1), np.sum(rest, axis=1)


def _exp_split_fine(dh: np.ndarray, dl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``e^{dh + dl} = hi + lo`` with ``hi = 2^k`` as ``_dd.exp_split``, and the two roundings it
    leaves in put back to first order: ``x − m``'s (``dl``: ``|x − m|·2^-53`` relative) and the
    reduced argument's (``r = a − k·ln2_lo`` with ``a`` exact, its error up to 2^-55 relative: a
    quarter ulp of a tail that one term dominates, e.g. log_softmax's top entry on U(−700, 700)
    0.88 ulp before), as ``lo += (hi + lo)·(dl + r_err)``. ``dh ≤ 0``; ``dl`` finite."""
    d = np.maximum(dh, -746.0)
    t = d * _dd._LOG2E
    t += _dd._SHIFT
    k = t - _dd._SHIFT
    hi = (t.view(np.int64) << 52).view(np.float64)  # 2^(k + 54), see _dd._exp_split_numpy
    hi *= 2.0**-54
    a = k * -_dd._LN2_HI
    a += d  # d − k·ln2_hi, exact
    r, err = _dd.two_sum(a, k * -_dd._LN2_LO)  # r and its rounding error (|a| < |b| can happen)
    a = err + dl
    lo = np.expm1(r)
    lo *= hi
    a *= hi + lo
    lo += a
    return hi, lo


def _by_blocks(x: np.ndarray, out: np.ndarray, entries: Callable[..., np.ndarray], *row_args: np.ndarray) -> None:
    """``out[r, c] = entries(x[r, c] as float64, *(a[r, None] for a in row_args))`` a cache-sized
    block at a time (bounded temporaries)."""
    rows, n = x.shape
    row_step = max(1, BLOCK_ELEMENTS // max(n, 1))
    col_step = max(1, min(n, BLOCK_ELEMENTS))
    for r0 in range(0, rows, row_step):
        r = slice(r0, min(rows, r0 + row_step))
        args = tuple(a[r, None] for a in row_args)
        for c0 in range(0, n, col_step):
            c = slice(c0, c0 + col_step)
            out[r, c] = entries(np.asarray(x[r, c], dtype=np.float64), *args)


def _shift(xb: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x − m = dh + dl`` exactly (TwoSum); ``dl = 0`` where ``dh = −inf`` (a −inf entry, or
    ``x − m`` overflowing: the TwoSum error is NaN there, the entry's result 0 or −inf)."""
    dh, dl = _dd.two_sum(xb, -m)
    return dh, np.where(dh == -math.inf, 0.0, dl)


def _log_entries(xb: np.ndarray, m: np.ndarray, ch: np.ndarray, cl: np.ndarray) -> np.ndarray:
    """``(x − m) − (ch + cl)`` rounded once: ``dh − ch`` by TwoSum, then the three low parts."""
    dh, dl = _shift(xb, m)
    s, e = _dd.two_sum(dh, -ch)
    return np.where(s == -math.inf, s, s + (e + (dl - cl)))


def _exp_entries(
    xb: np.ndarray, m: np.ndarray, big: np.ndarray, big_lo: np.ndarray, big_h: np.ndarray, big_l: np.ndarray
) -> np.ndarray:
    """``e^{x − m} / (big + big_lo)``: the exp as ``eh + el`` (split, plus ``eh·dl`` for the
    shift's rounding), the quotient ``q`` and its exact remainder ``eh − q·big`` (Dekker's
    product with ``big = big_h + big_l`` split once per row), one correction. In place where
    it can: every pass is a full block."""
    hi, el = _exp_split_fine(*_shift(xb, m))
    eh = hi + el
    el -= eh - hi  # Fast2Sum(hi, lo): |lo| < hi
    q = eh / big
    p = q * big
    qh, ql = _dd._split(q)
    err = qh * big_h
    err -= p
    err += qh * big_l
    err += ql * big_h
    err += ql * big_l  # q·big = p + err exactly
    r = eh - p
    r -= err  # eh − q·big, exact
    r += el
    r -= q * big_lo
    r /= big
    r += q
    return r


__all__ = ["normalized"]
