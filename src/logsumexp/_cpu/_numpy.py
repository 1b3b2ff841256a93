"""Blocked NumPy fallback of the CPU hooks, for machines where numba cannot be imported.

The same hooks as the compiled kernels (``lse_state``, ``lse_value``, ``softmax``), with the same
semantics, in plain NumPy. What makes it fast is what NumPy's two-line shifted formula
``m + log(sum(exp(x − m)))`` lacks: the data is cut into blocks of ``BLOCK`` elements that stay
in L2, and each block is shifted, exponentiated and summed in one reused buffer, so no
temporary the size of the input is written to memory and read back. Each block is folded into
the running per-row state with the online (max, sum) merge.

Accuracy: the leading term (one entry equal to the row maximum, its exp exactly 1) is set to 0
in the buffer before the sum, so the state is ``(m, 1, tail)`` with ``tail`` the sum of the other
terms (Blanchard–Higham–Higham) and the value ``m + log1p(tail)`` keeps a dominant maximum's
small correction. float64 data: float64 exps, summed pairwise. float32 data: NumPy's float32
exp (twice the SIMD lanes: a float64 exp made this path slower than the shifted formula on
float32), summed in float64. Measured against mpmath (20 vectors of 1000 per family): at most
0.73 float32 ulp, on [0, −40×999] where 999 equal terms share the float32 exp's rounding; 0.51
or less on the other families. (The compiled path keeps a float64 exp for float32: 0.50.)

Special rows (an infinite or NaN maximum) are rare; they are recomputed exactly by
``_special_rows`` after the blocked pass.
"""

from __future__ import annotations

import math

import numpy as np

# Elements per block: 2**16 float64 = 512 KiB, inside current L2 caches (the buffer is written
# by the subtraction and read back by exp and sum); two 32000-wide rows per block, so the ~15
# µs of NumPy calls per block stay a few % of its exp time.
BLOCK = 1 << 16

# softmax rows per block: this many bytes of input (its output block, written in place, is as
# large and must stay in L2 for the sum and the normalisation that follow the exp); measured
# against 256 KiB and 1 MiB blocks on [4096, 32000] float32 (1033 and 962 ms, this 919).
_SOFTMAX_BLOCK_BYTES = 512 << 10

# Below this many elements a 1-D contiguous input is one block without the row machinery (the
# n = 1000 call: five NumPy calls, ~5 µs).
_SMALL = BLOCK


def _rows(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
    """x as a 2-D (rows, n) array with the reduced axes last (a view when the layout allows),
    and the shape of the kept axes."""
    kept = [d for d in range(x.ndim) if d not in axes]
    out_shape = tuple(x.shape[d] for d in kept)
    n = 1
    for d in axes:
        n *= x.shape[d]
    x2 = np.transpose(x, kept + list(axes)) if kept + list(axes) != list(range(x.ndim)) else x
    return np.reshape(x2, (-1, n) if n else (math.prod(out_shape), 0)), out_shape


def _fold(
    xb: np.ndarray, buf: np.ndarray, m: np.ndarray, tail: np.ndarray, first: bool
) -> None:
    """Fold the block xb (rows × cols) into the running (m, 1, tail) per row, in place."""
    r = xb.shape[0]
    idx = np.argmax(xb, axis=1)  # a NaN is returned as the maximum: the row becomes special
    rows = np.arange(r)
    bm = xb[rows, idx]
    e = np.subtract(xb, bm[:, None], out=buf[:r, : xb.shape[1]])
    np.exp(e, out=e)
    e[rows, idx] = 0.0
    tb = np.add.reduce(e, axis=1, dtype=np.float64)
    bm = bm.astype(np.float64)
    # an all −inf block is the empty state (−inf, 0, 0), not the NaN that −inf − (−inf) gave
    tb[bm == -np.inf] = 0.0
    if first:
        m[:] = bm
        tail[:] = tb
        return
    up = bm > m
    c = np.exp(np.where(up, m - bm, bm - m))  # ≤ 1; equal maxima scale by exactly 1
    tail[:] = np.where(up, tb + (1.0 + tail) * c, tail + (1.0 + tb) * c)
    m[:] = np.where(up, bm, m)


def _special_rows(x2: np.ndarray, m: np.ndarray, lead: np.ndarray, tail: np.ndarray) -> None:
    """Exact states of the rows whose maximum is ±inf or NaN (or whose tail is not finite)."""
    bad = np.flatnonzero(~(np.isfinite(m) & np.isfinite(tail)))
    for j in bad:
        row = x2[j].astype(np.float64)
        if np.isnan(row).any():
            m[j], lead[j], tail[j] = np.nan, np.nan, np.nan
            continue
        mx = row.max() if row.size else -np.inf
        if mx == -np.inf:
            m[j], lead[j], tail[j] = -np.inf, 0.0, 0.0
        elif mx == np.inf:
            m[j], lead[j], tail[j] = np.inf, 1.0, float(np.count_nonzero(row == np.inf) - 1)
        else:  # a finite maximum with an overflowing tail: more than 1e308 terms, never in practice
            m[j], lead[j] = mx, 1.0


def lse_state(
    x: np.ndarray, axes: tuple[int, ...], b: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The (max, lead, tail) float64 state of each slice of ``x`` over ``axes`` (unweighted), or
    None for weights (the array core handles those)."""
    if b is not None:
        return None
    x2, out_shape = _rows(x, axes)
    rows, n = x2.shape
    m = np.full(rows, -np.inf)
    tail = np.zeros(rows)
    if n and rows:
        lead = np.ones(rows)
        col_step = min(n, BLOCK)
        row_step = min(rows, max(1, BLOCK // n))
        buf = np.empty((row_step, col_step), dtype=x2.dtype)
        # −inf − (−inf) in all −inf blocks, inf − inf in +inf ones: those rows are recomputed
        with np.errstate(invalid="ignore", over="ignore"):
            for r0 in range(0, rows, row_step):
                r1 = min(rows, r0 + row_step)
                for c0 in range(0, n, col_step):
                    _fold(x2[r0:r1, c0 : c0 + col_step], buf, m[r0:r1], tail[r0:r1], c0 == 0)
        _special_rows(x2, m, lead, tail)
    else:
        lead = np.zeros(rows)
    return m.reshape(out_shape), lead.reshape(out_shape), tail.reshape(out_shape)


def lse_value(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray | np.floating:
    """Unweighted LogSumExp over ``axes`` in x's dtype: ``m + log1p(tail)``, ``m`` for special rows."""
    if axes == (0,) and x.ndim == 1 and 0 < x.size <= _SMALL:
        # One block: argmax, the shifted exps (the leading one zeroed), their sum; no state
        # arrays. Method calls and ufuncs with out=: each NumPy call costs ~0.4-1.5 µs here.
        i = x.argmax()
        mx = float(x[i])
        if math.isfinite(mx):
            # x − mx ≤ 0: no overflow; underflow is silent by NumPy's default
            e = np.subtract(x, x[i])
            np.exp(e, out=e)
            e[i] = 0.0
            return x.dtype.type(mx + math.log1p(float(np.add.reduce(e, dtype=np.float64))))
    m, _, tail = lse_state(x, axes, None)  # type: ignore[misc]
    with np.errstate(all="ignore"):
        out = np.where(np.isfinite(m), m + np.log1p(tail), m).astype(x.dtype, copy=False)
    return out[()] if out.ndim == 0 else out


def softmax(x: np.ndarray, axis: int, log: bool) -> np.ndarray:
    """softmax / log_softmax of ``x`` along ``axis`` in x's dtype (float64 arithmetic):
    ``e^{x_i − m} / (1 + tail)`` and ``(x_i − m) − log1p(tail)`` from the row state, with the
    special rows of the contract (all −inf: 0 / −inf; k entries +inf: 1/k there, 0 elsewhere,
    or −log k / −inf; NaN: the row NaN).

    Rows up to ``BLOCK`` long: one read, a block of rows at a time, computed in the output
    block itself (``_softmax_short_rows``). Longer rows: the state pass, then a write pass.
    """
    xm = np.moveaxis(x, axis, -1)
    n = xm.shape[-1]
    out = np.empty(xm.shape, dtype=x.dtype)
    if xm.size == 0:
        return np.moveaxis(out, -1, axis)
    x2 = xm.reshape(-1, n)
    o2 = out.reshape(-1, n)  # a view: out is C-contiguous
    rows = x2.shape[0]
    with np.errstate(all="ignore"):
        if n <= BLOCK:
            m = _softmax_short_rows(x2, o2, log)
        else:
            m, _, tail = lse_state(x2, (1,), None)  # type: ignore[misc]
            c = np.log1p(tail) if log else 1.0 + tail
            buf = np.empty((1, BLOCK))
            for j in range(rows):
                for c0 in range(0, n, BLOCK):
                    xb = x2[j : j + 1, c0 : c0 + BLOCK]
                    e = np.subtract(xb, m[j], out=buf[:, : xb.shape[1]], dtype=np.float64)
                    _normalise(e, c[j], log, x.dtype)
                    o2[j : j + 1, c0 : c0 + BLOCK] = e
    for j in np.flatnonzero(~np.isfinite(m)):  # argmax returns a NaN as the maximum
        o2[j] = _special_row(x2[j], m[j], log)
    return np.moveaxis(out, -1, axis)


def _normalise(e: np.ndarray, c: float, log: bool, dtype: np.dtype) -> None:
    """In place: d − c (log, d = x − m and c = log1p(tail)) or e^d / c (c = 1 + tail); float32
    output multiplies by the float64 reciprocal (two float64 roundings, far below float32's),
    float64 divides (the more accurate form)."""
    if log:
        np.subtract(e, c, out=e)
        return
    np.exp(e, out=e)
    if dtype == np.float64:
        np.divide(e, c, out=e)
    else:
        np.multiply(e, 1.0 / c, out=e)


def _softmax_short_rows(x2: np.ndarray, o2: np.ndarray, log: bool) -> np.ndarray:
    """Rows up to BLOCK long, ``_SOFTMAX_BLOCK_BYTES`` of rows at a time, each read once: the
    shifted values and their exps are formed in the output block itself (it stays in L2 for the
    sum and the normalisation), so nothing is copied. Returns the row maxima (the caller
    overwrites the special rows: a non-finite maximum).

    [4096, 32000] float32, Intel Xeon 2.0 GHz: 1121 -> 919 ms median against a two-row scratch
    block copied into the output (NumPy's shifted formula: 1795 ms in the same run)."""
    rows, n = x2.shape
    row_step = min(rows, max(1, _SOFTMAX_BLOCK_BYTES // (n * x2.itemsize)))
    ebuf = np.empty((row_step, n), dtype=x2.dtype) if log else None
    m = np.empty(rows)
    for r0 in range(0, rows, row_step):
        r1 = min(rows, r0 + row_step)
        r = r1 - r0
        xb = x2[r0:r1]
        idx = xb.argmax(axis=1)
        at = np.arange(r)
        bm = xb[at, idx]
        d = np.subtract(xb, bm[:, None], out=o2[r0:r1])
        e = np.exp(d, out=d if ebuf is None else ebuf[:r])
        e[at, idx] = 0.0  # the leading term out of the sum (Blanchard–Higham–Higham)
        tail = np.add.reduce(e, axis=1, dtype=np.float64)
        m[r0:r1] = bm
        if log:
            np.subtract(d, np.log1p(tail)[:, None], out=d, casting="same_kind")
        else:
            e[at, idx] = 1.0
            s = (1.0 + tail)[:, None]
            if o2.dtype == np.float64:
                np.divide(e, s, out=e)
            else:
                np.multiply(e, 1.0 / s, out=e, casting="same_kind")
    return m


def _special_row(row: np.ndarray, m: float, log: bool) -> np.ndarray:
    """softmax / log_softmax of a row with a NaN, all −inf, or k entries +inf."""
    if m != m:
        return np.full(row.shape, np.nan)
    if m == -np.inf:
        return np.full(row.shape, -np.inf if log else 0.0)
    hit = row == np.inf
    k = float(np.count_nonzero(hit))
    if log:
        return np.where(hit, -math.log(k), -np.inf)
    return np.where(hit, 1.0 / k, 0.0)
