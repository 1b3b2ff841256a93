"""LogSumExp of NumPy float64 in the array core, rounded about once: split exps and an exact redo.

What the compiled kernels do, with NumPy's elementwise operations (``_cpu.disabled()``, or when
the kernels are not there). Two steps, both on top of the double-double finish of ``_dd``:

1. The tail ``Σ_{i≠k} e^{x_i − m}`` is summed from split terms ``e^d = 2^j + 2^j·y``
   (``_dd.exp_split``): the powers of two add exactly, so only the small parts ``2^j·y`` round,
   and the tail reaches ``value`` as a double-double ``(tail, tail_lo)``. NumPy's ``exp`` rounds
   each term once (up to 0.5 ulp), a rounding that equal terms share: 1.36 ulp on
   ``[0, −40×999]`` before, 0.36 after (n = 1000, five seeds; 0.50 at worst on any family).
2. A slice whose result cancels against its maximum (``m < 0``, ``|LSE| < |m|/2``: the
   log-normaliser of an almost normalised distribution, ``LSE ≈ 1e-9`` with ``m ≈ −5``) has an
   absolute error of about one rounding of ``log1p(tail) ≈ |m|``, 1e4-1e9 ulp of the result. Those
   slices only are recomputed with each ``x_i − m`` exact (TwoSum), each exp a double-double
   (``_dd.exp_dd``, 2^-100), a compensated sum, ``log1p`` refined by a Newton step and ``m``
   added exactly: within one rounding of the exact value (0.50 ulp at worst, from 2.5e8). Such a
   slice costs ~0.5 µs per element on long slices, 2-4 µs at n = 1000 (hundreds of NumPy
   calls per block); slices that do not cancel pay nothing for it.

Only unweighted input: a weight times ``2^j`` is no longer a power of two (weighted sums keep
the state path). Large inputs are processed a cache-sized block at a time, like the blocked
state loop of ``_reduce``; the maximum of each slice is taken first, over the whole slice, so
the blocks' tails add without rescaling.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _dd
from ._state import shifted

BlockTail = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

# Elements per block: 8 Ki float64 = 64 KiB per temporary. The split and exact terms take tens
# of elementwise passes, each a fresh temporary; from 128 KiB on (the array core's blocks are
# 1 MiB) each is a fresh mmap, page faults on every pass: exp_split took 125 ns per element at
# 12-16 Ki elements against 44 at 8 Ki (measured, NumPy 2.4; 2 Ki: 60, the calls' overhead).
BLOCK_ELEMENTS = 1 << 13


def lse_value(x: np.ndarray, ax: int, return_sign: bool = False) -> object:
    """LogSumExp of every slice of ``x`` along ``ax`` (axis dropped) in float64, with ``value``'s
    special values; ``BLOCK_ELEMENTS`` at a time. ``x`` unweighted, masked entries already −inf,
    at least one element per slice."""
    block = BLOCK_ELEMENTS
    x = np.moveaxis(x, ax, -1)
    batch, n = tuple(x.shape[:-1]), x.shape[-1]
    x = np.reshape(x, (math.prod(batch), n))
    m = np.max(x, axis=1).astype(np.float64)
    lead_at = np.argmax(x, axis=1)
    th, tl = _tails(x, m, lead_at, block, _split_tail)
    lead = (m != -math.inf).astype(np.float64)
    res = _dd.value(np, m, lead, th, return_sign, tail_lo=tl)
    out = res[0] if return_sign else res
    redo = np.flatnonzero(cancels(m, out))
    if redo.size:
        out[redo] = _exact(x[redo], m[redo], lead_at[redo], block)
    if return_sign:
        return np.reshape(out, batch), np.reshape(res[1], batch)
    return np.reshape(out, batch)


def cancels(m: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Where ``m + log1p(tail) = out`` cancelled (``m < 0``, ``|out| < |m|/2``): the sum's absolute
    error, about one rounding of ``log1p(tail) ≈ |m|``, is then more than ``out``'s half ulp."""
    return (m < 0.0) & np.isfinite(m) & (np.abs(out) < -0.5 * m)


def _tails(x: np.ndarray, m: np.ndarray, lead_at: np.ndarray, block: int, tail: BlockTail) -> tuple[np.ndarray, np.ndarray]:
    """``Σ_{i≠k} e^{x_i − m}`` per row as a double-double, ``tail(x_block, m, lead_col)`` per
    block (``lead_col``: the leading entry's column in the block, outside it for other blocks)."""
    # C-contiguous float64 copies: NumPy sums a contiguous last axis pairwise
    return _row_block_sums(
        x.shape, block,
        lambda r, c: tail(np.ascontiguousarray(x[r, c], dtype=np.float64), m[r, None], lead_at[r] - c.start),
    )


def _row_block_sums(
    shape: tuple[int, ...], block: int, block_sum: Callable[[slice, slice], tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a (rows, n) array, the double-double sum over blocks of about ``block``
    elements of ``block_sum(row_slice, column_slice)`` (one double-double per row of the block)."""
    rows, n = shape
    th, tl = np.zeros(rows), np.zeros(rows)
    row_step = max(1, block // max(n, 1))
    col_step = max(1, min(n, block))
    for r0 in range(0, rows, row_step):
        r = slice(r0, min(rows, r0 + row_step))
        for c0 in range(0, n, col_step):
            bh, bl = block_sum(r, slice(c0, c0 + col_step))
            th[r], tl[r] = _dd.dd_add(th[r], tl[r], bh, bl)
    return th, tl


def _drop_lead(lead_col: np.ndarray, *terms: np.ndarray) -> None:
    """Set the leading entry's terms to 0 (in place), in the rows whose leader is in this block."""
    width = terms[0].shape[1]
    flat = (np.arange(lead_col.size) * width + lead_col)[(lead_col >= 0) & (lead_col < width)]
    for t in terms:
        np.put(t, flat, 0.0)  # flat indices: cheaper than a pair of index arrays


def _split_tail(xb: np.ndarray, m: np.ndarray, lead_col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The block's tail from split exps: the ``2^j`` parts sum exactly (within 53 binades), the
    small parts round; the two sums joined by an exact TwoSum."""
    hi, lo = _dd.exp_split(np, shifted(np, xb, m))
    _drop_lead(lead_col, hi, lo)
    return _dd.two_sum(np.sum(hi, axis=1), np.sum(lo, axis=1))


def _exact_tail(xb: np.ndarray, m: np.ndarray, lead_col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The block's tail to ~2^-95 (finite ``m``): ``x_i − m`` exact as a TwoSum, each exp a
    double-double, the sum compensated. The leading entry and −inf entries give 0."""
    dh, dl = _dd.two_sum(xb, -m)
    off = xb == -math.inf
    eh, el = _dd.exp_dd(np, np.where(off, 0.0, dh), np.where(off, 0.0, dl))
    eh, el = np.where(off, 0.0, eh), np.where(off, 0.0, el)
    _drop_lead(lead_col, eh, el)
    return _dd.sum_dd(np, eh, el)


def _exact(x: np.ndarray, m: np.ndarray, lead_at: np.ndarray, block: int) -> np.ndarray:
    """``m + log1p(tail)`` with the tail and log1p to ~2^-95, ``m`` added exactly: rounded once."""
    th, tl = _tails(x, m, lead_at, block, _exact_tail)
    lh, ll = _dd.log1p_dd_exact(np, th, tl)
    return _dd.add_rounded(np, m, lh, ll)


def redo_weighted(
    x: np.ndarray, w: np.ndarray, axes: tuple[int, ...], m: np.ndarray, lead: np.ndarray, tail: np.ndarray,
    res: object, return_sign: bool,
) -> object:
    """``res`` (a weighted LogSumExp from the state ``(m, lead, tail)``, with its sign when
    ``return_sign``) with the slices that cancel recomputed exactly (``_exact_weighted``).

    Two cancellations lose the state's relative accuracy. The value against the maximum: ``m +
    log|lead + tail|`` with ``|value| < |m|/2`` (either sign of ``m``: a weight can pull the sum
    below 1 as well as above), where the finish's absolute error, about one rounding of ``|m|``,
    is 1e4-1e9 ulp of a value near 1e-4-1e-9 (a log-evidence or mixture normaliser that is
    almost 0). And signed weights against each other: ``|lead + tail| < |lead|/2``, where the
    total's relative error grows as the terms cancel (and a small positive total computed
    negative gave NaN). Other slices are returned unchanged; NumPy float arrays ``x`` and ``w``
    of one shape, zero weights already −inf in ``x``.
    """
    vals = res[0] if return_sign else res  # type: ignore[index]
    m, lead, tail, v = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (m, lead, tail, vals))
    total = lead + tail
    redo = np.flatnonzero(weighted_cancels(m, lead, total, v))
    if not redo.size:
        return res
    out = np.array(vals)  # copies: the caller's arrays are not written
    sign = np.array(res[1]) if return_sign else None  # type: ignore[index]
    flat = out.reshape(-1)
    last = tuple(range(x.ndim - len(axes), x.ndim))
    xr = np.reshape(np.moveaxis(x, axes, last), (m.size, -1))[redo]
    wr = np.reshape(np.moveaxis(w, axes, last), (m.size, -1))[redo]
    val, sgn = _exact_weighted(xr, wr, m[redo])
    flat[redo] = val if return_sign else np.where(sgn < 0, math.nan, val)
    if sign is None:
        return out[()] if out.ndim == 0 else out
    sign.reshape(-1)[redo] = sgn
    return (out[()], sign[()]) if out.ndim == 0 else (out, sign)


def _weighted_block_sum(xb: np.ndarray, wb: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Σ w_i e^{x_i − m}`` per row of a block as a double-double (−inf entries give 0)."""
    xb, wb = np.asarray(xb, dtype=np.float64), np.asarray(wb, dtype=np.float64)
    off = xb == -math.inf
    dh, dl = _dd.two_sum(xb, -m)
    eh, el = _dd.exp_dd(np, np.where(off, 0.0, dh), np.where(off, 0.0, dl))
    ph, pl = _dd.two_prod(eh, wb)
    return _dd.sum_dd(np, np.where(off, 0.0, ph), np.where(off, 0.0, pl + el * wb))


def weighted_cancels(m: Any, lead: Any, total: Any, v: Any) -> Any:
    """Where a weighted value ``v = m + log|total|`` (``total = lead + tail``) must be recomputed
    (see ``redo_weighted``): finite ``m`` and total, and ``|v| < |m|/2`` (v finite) or
    ``|total| < |lead|/2``. Written with operators that work alike on Python floats (the one-call
    path, ``_reduce.fast_numpy_lse_weighted``) and on NumPy arrays; a NaN compares False."""
    inf = math.inf
    value_cancels = (abs(v) < inf) & (abs(v) < 0.5 * abs(m))
    terms_cancel = abs(total) < 0.5 * abs(lead)
    return (abs(m) < inf) & (abs(total) < inf) & (value_cancels | terms_cancel)


def _exact_weighted(x: np.ndarray, w: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(m + log|S|, sign S)`` per row, ``S = Σ w_i e^{x_i − m}`` (finite ``m``), rounded once:
    each ``x_i − m`` exact (TwoSum), each exp a double-double (``_dd.exp_dd``), each product with
    its weight exact (TwoProd), the sum compensated, ``log|S| = log1p(|S| − 1)`` to ~2^-95 and
    ``m`` added exactly. −inf entries (zero weights) give 0. ``BLOCK_ELEMENTS`` at a time."""
    sh, sl = _row_block_sums(x.shape, BLOCK_ELEMENTS, lambda r, c: _weighted_block_sum(x[r, c], w[r, c], m[r, None]))
    sign = np.sign(sh)
    zero = sh == 0.0
    th, tl = _dd.two_sum(np.where(zero, 1.0, np.abs(sh)), -1.0)
    lh, ll = _dd.log1p_dd_exact(np, th, tl + np.where(zero, 0.0, sign * sl))
    return np.where(zero, -math.inf, _dd.add_rounded(np, m, lh, ll)), sign


__all__ = ["cancels", "lse_value", "redo_weighted", "weighted_cancels"]
