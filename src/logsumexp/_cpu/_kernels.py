"""Numba kernels of the CPU fast path. Imported lazily (numba is optional and slow to import).

Everything here works on a *flat* view of an array's memory: ``x`` is a 1-D contiguous array
that starts at the array's lowest address, and slices are described by element offsets. The
layout planning (which offsets, which kernel) and the Python entry points are in
``__init__.py``.

Why the code looks the way it does (measured on the project's 2-core Emerald Rapids machine,
noisy, 1e7 float64, one read ``x.max()`` = 3.1 ms):

* ``math.exp`` is a libm call that LLVM cannot vectorise: a plain loop ran at 8-9x one read.
  ``_exp_le0`` below is a branch-free exp written in plain arithmetic (range reduction, a
  polynomial, and the power of two set through the float's bits), which LLVM vectorises:
  12 ms/1e7 with 256-bit vectors, 6 ms with 512-bit ones (hence ``_wide``).
* The sum needs ``fastmath={'reassoc'}`` to be vectorised (lanes summed separately). No other
  fast-math flag is used: 'nnan'/'ninf' would let LLVM drop the special-value handling.
* The maximum is taken on integer keys of the float bits (monotone map), because LLVM only
  vectorises a floating-point max reduction under 'nnan'. A positive NaN maps above +inf,
  so it surfaces as a NaN maximum; a negative NaN makes the exp sum NaN. Either way the slice
  goes to the exact scalar path ``_special_state``.
* Slices are processed in blocks of ``BLOCK`` elements. Contiguous unweighted blocks after
  the first are folded in one pass against the running maximum, their own maximum taken in
  the same loop (``_fold_block_below``); a block that reaches the running maximum, and every
  other block, is folded in two passes: the block's max, then its exp sum from L1 (strided or
  weighted blocks are first gathered into a float64 L1 buffer). The input is read from memory
  once either way. The block sums are combined with a
  compensated sum, so that long slices keep the ulp targets.
* The exp is the bound, not memory: in L1 the exp sum alone runs at ~0.53 ns/element and the
  whole block fold at ~0.78 ns/element on one core (AVX-512, loaded machine), where one read
  is ~0.3 ns/element (float64) or ~0.15 (float32).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# Elements per block: 2048 float64 = 16 KiB, well inside the 48 KiB L1d, so the max pass and
# the exp pass read the block from L1. (512 and 2048 measured within noise of each other.)
BLOCK = 2048

# The exp sum of a block is taken CHUNK elements at a time: each chunk is one vectorised
# reduction (LLVM keeps 32 partial sums, so ~8 sequential adds per lane), the chunk sums are
# added in order, and blocks are combined with a compensated sum. One vectorised reduction
# over the whole block (64 adds per lane) left 2.1 ulp on [0, -40 x 2047]; identical terms are
# the worst case for sequential rounding.
CHUNK = 256

_CACHE = True  # compiled code is cached next to this file (numba's __pycache__)


# --------------------------------------------------------------------------------------------
# Bit casts and the 512-bit vector hint
# --------------------------------------------------------------------------------------------
@intrinsic
def _f2i(typingctx, x):  # type: ignore[no-untyped-def]
    """The bits of a float64 as an int64 (an LLVM bitcast: no rounding, NaN kept)."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _i2f(typingctx, x):  # type: ignore[no-untyped-def]
    """The float64 with the given bits."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _wide(typingctx):  # type: ignore[no-untyped-def]
    """Ask LLVM for 512-bit vectors in the calling function.

    On AVX-512 machines LLVM's default tuning prefers 256-bit vectors; the exp loop is
    compute-bound and ran 2x faster with 512-bit ones (12 ms -> 6 ms per 1e7). The hint is a
    function attribute, harmless on machines without AVX-512. llvmlite has no API for
    string attributes, so it is added to the attribute set directly; if that ever fails the
    code is simply compiled without the hint.
    """

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        try:
            set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        except Exception:  # pragma: no cover - llvmlite internals changed
            pass
        return context.get_dummy_value()

    return types.none(), codegen


_ABS = 0x7FFFFFFFFFFFFFFF


@njit(inline="always")
def _key(v):  # type: ignore[no-untyped-def]
    """An int64 key with key(a) < key(b) iff a < b for non-NaN floats (sign-magnitude fix)."""
    b = _f2i(v)
    return b ^ ((b >> 63) & _ABS)


@njit(inline="always")
def _unkey(k):  # type: ignore[no-untyped-def]
    return _i2f(k ^ ((k >> 63) & _ABS))



# --------------------------------------------------------------------------------------------
# exp for arguments <= 0
# --------------------------------------------------------------------------------------------
_LOG2E = 1.4426950408889634
# ln 2 split so that k*_LN2HI is exact for |k| < 2**11 (fdlibm's constants).
_LN2HI = 6.93147180369123816490e-01
_LN2LO = 1.90821492927058770002e-10
# Adding 1.5*2**52 rounds d*log2(e) to an integer k held in the low mantissa bits; the extra
# 1077 = 1023 + 54 makes those bits the biased exponent of 2**(k+54) (see the scaling below).
_SHIFT = 6755399441055744.0 + 1077.0
_TWOM54 = 2.0**-54
# Q(r) = (e^r - 1 - r)/r^2 on |r| <= ln2/2: degree 9, Chebyshev-node interpolation computed
# with mpmath at 50 digits. Max relative error of 1 + r + r^2 Q(r) against e^r: 1.7e-17
# (0.08 ulp); degree 8 gives 1e-15 (too coarse for the 1.5-ulp LSE target).
_Q0 = 0.5000000000000001
_Q1 = 0.16666666666666669
_Q2 = 0.041666666666624164
_Q3 = 0.008333333333330065
_Q4 = 0.0013888888917196719
_Q5 = 0.00019841269863040545
_Q6 = 2.4801521322368692e-05
_Q7 = 2.7557268480310024e-06
_Q8 = 2.7620075879983367e-07
_Q9 = 2.5100375832561234e-08


@njit(fastmath={"contract"}, cache=_CACHE)
def _exp_le0(d):  # type: ignore[no-untyped-def]
    """e^d for d <= 0, -inf or NaN, branch-free so that loops calling it vectorise.

    d = k ln2 + r with k = round(d log2 e), |r| <= ln2/2, r computed exactly but for one
    rounding (Cody-Waite with a two-part ln 2); e^r = 1 + r + r^2 Q(r) with the polynomial
    above, the final ``1 + (...)`` being the only large rounding: under 1 ulp in total
    (tests/test_cpu.py checks against mpmath). The power of two is set through the bits:
    2**(k+54) is always a normal number for k >= -1076, and the product with 2**-54 rounds
    once, so subnormal results are correctly scaled too. d is clamped at -746 (e^-746 rounds
    to 0), which also turns -inf into 0; NaN passes the clamp and the arithmetic unchanged.
    Not inlined at the Numba level on purpose: its instructions keep their own fast-math
    flags ('contract' only) when LLVM inlines it into loops compiled with 'reassoc'.
    """
    d = -746.0 if d < -746.0 else d
    t = d * _LOG2E + _SHIFT
    kf = t - _SHIFT
    r = (d - kf * _LN2HI) - kf * _LN2LO
    q = _Q9
    q = q * r + _Q8
    q = q * r + _Q7
    q = q * r + _Q6
    q = q * r + _Q5
    q = q * r + _Q4
    q = q * r + _Q3
    q = q * r + _Q2
    q = q * r + _Q1
    q = q * r + _Q0
    p = 1.0 + (r + r * r * q)
    return p * _i2f(_f2i(t) << 52) * _TWOM54


@njit(fastmath={"contract"}, cache=_CACHE)
def _exp_le0_split(d):  # type: ignore[no-untyped-def]
    """e^d = hi + lo for d <= 0, -inf or NaN, without rounding 1 + y: hi = 2^k, lo = 2^k·y.

    The same arithmetic as _exp_le0, but the final ``1 + y`` (the rounding that makes
    _exp_le0 up to ~0.9 ulp) is never formed: sums accumulate hi and lo separately. Sums of
    powers of two within 53 binades are exact, and lo carries ~0.3 of the value, so the sum of
    many terms keeps ~0.2 ulp per term instead of ~0.9: on 0 ∪ U(−25, −15) the LSE went from
    2.2 to under 1 ulp. A NaN d gives a NaN lo (hi may be anything finite); -inf gives 0, 0.
    """
    d = -746.0 if d < -746.0 else d
    t = d * _LOG2E + _SHIFT
    kf = t - _SHIFT
    r = (d - kf * _LN2HI) - kf * _LN2LO
    q = _Q9
    q = q * r + _Q8
    q = q * r + _Q7
    q = q * r + _Q6
    q = q * r + _Q5
    q = q * r + _Q4
    q = q * r + _Q3
    q = q * r + _Q2
    q = q * r + _Q1
    q = q * r + _Q0
    y = r + r * r * q
    sc = _i2f(_f2i(t) << 52)
    return sc * _TWOM54, (y * sc) * _TWOM54


@njit(fastmath={"contract"}, cache=_CACHE)
def _exp_le0_split_2p54(d):  # type: ignore[no-untyped-def]
    """_exp_le0_split(d) times 2^54 (exactly): (2^(k+54), 2^(k+54)·y), both normal numbers for
    d >= -746. For loops that sum the terms and scale the sums by 2^-54 once: the same sums
    bit for bit where the terms are normal (scaling by a power of two is exact), more accurate
    where they are subnormal (one rounding of the sum instead of one per term), and two
    multiplications fewer per term. Below -746 (and for -inf) both parts are exactly 0 (a
    select on the clamp's comparison): scaled, 2^(k+54) would no longer round to 0 per term."""
    tiny = d < -746.0
    d = -746.0 if tiny else d
    t = d * _LOG2E + _SHIFT
    kf = t - _SHIFT
    r = (d - kf * _LN2HI) - kf * _LN2LO
    q = _Q9
    q = q * r + _Q8
    q = q * r + _Q7
    q = q * r + _Q6
    q = q * r + _Q5
    q = q * r + _Q4
    q = q * r + _Q3
    q = q * r + _Q2
    q = q * r + _Q1
    q = q * r + _Q0
    y = r + r * r * q
    sc = _i2f(_f2i(t) << 52)
    sc = 0.0 if tiny else sc
    return sc, y * sc


# For float32 data (results rounded to float32) a cheaper exp suffices: Q of degree 7 (relative
# error 7.4e-14), one-part ln 2, and no subnormal scaling: d is clamped at -708 so that 2**k
# stays normal (terms below 1e-307 are far below float32's resolution of a sum whose leading
# term is 1, and are returned as 0). Degree 5 (2.2e-10) was measured 10% faster but lost up to
# 0.1 float32 ulp where the LSE is near 0 (m + log1p(tail) cancelling), so 7 it is.
_SHIFT_LO = 6755399441055744.0 + 1023.0
_LN2 = 0.6931471805599453
_P0 = 0.4999999999995511
_P1 = 0.16666666666662586
_P2 = 0.04166666678626573
_P3 = 0.00833333334420298
_P4 = 0.0013888839110572009
_P5 = 0.00019841224599656011
_P6 = 2.4867870179687727e-05
_P7 = 2.7617564785876086e-06


@njit(fastmath={"contract"}, cache=_CACHE)
def _exp_le0_lo(d):  # type: ignore[no-untyped-def]
    """e^d for d <= 0, -inf or NaN, to 7.4e-14 relative (for float32 data); see _exp_le0.

    Below -708 the result is 0 (a select on the clamp's own comparison: one masked move), so
    that -inf entries give exactly 0 even when multiplied by a huge weight.
    """
    tiny = d < -708.0
    d = -708.0 if tiny else d
    t = d * _LOG2E + _SHIFT_LO
    kf = t - _SHIFT_LO
    r = d - kf * _LN2
    q = _P7
    q = q * r + _P6
    q = q * r + _P5
    q = q * r + _P4
    q = q * r + _P3
    q = q * r + _P2
    q = q * r + _P1
    q = q * r + _P0
    p = 1.0 + (r + r * r * q)
    return 0.0 if tiny else p * _i2f(_f2i(t) << 52)


@njit(fastmath={"contract"}, cache=_CACHE)
def exp_le0_array(d, out, lo):  # type: ignore[no-untyped-def]
    """out[i] = e^{d[i]} by _exp_le0 (or _exp_le0_lo when ``lo``), for the tests."""
    if lo:
        for i in range(d.size):
            out[i] = _exp_le0_lo(d[i])
    else:
        for i in range(d.size):
            out[i] = _exp_le0(d[i])


# --------------------------------------------------------------------------------------------
# One block: load, max, exp sum
# --------------------------------------------------------------------------------------------
@njit(inline="always")
def _load(x, b, has_b, base, stride, n, buf, wbuf):  # type: ignore[no-untyped-def]
    """Copy n elements x[base + i*stride] to buf as float64 (b == 0 -> -inf) and b to wbuf.

    The elements are taken through slices indexed by the loop counter: an index computed as
    ``base + i*stride`` would get Numba's negative-index wraparound select, which stops LLVM
    from vectorising the loop (measured: 2.5 ns/element instead of 0.2).
    """
    if stride == 1:
        xs = x[base : base + n]
        if has_b:
            bs = b[base : base + n]
            for i in range(n):
                w = np.float64(bs[i])
                wbuf[i] = w
                v = np.float64(xs[i])
                buf[i] = v if w != 0.0 else -np.inf
        else:
            for i in range(n):
                buf[i] = np.float64(xs[i])
    else:
        stop = base + (n - 1) * stride + 1
        xa = x[base:stop:stride]
        if has_b:
            ba = b[base:stop:stride]
            for i in range(n):
                w = np.float64(ba[i])
                wbuf[i] = w
                v = np.float64(xa[i])
                buf[i] = v if w != 0.0 else -np.inf
        else:
            for i in range(n):
                buf[i] = np.float64(xa[i])


@njit(inline="always")
def _block_max(buf, n):  # type: ignore[no-untyped-def]
    k = -(2**63)
    for i in range(n):
        ki = _key(np.float64(buf[i]))
        k = ki if ki > k else k
    return _unkey(k)


@njit(fastmath={"reassoc", "contract"}, cache=_CACHE)
def _fold_block(buf, wbuf, has_b, lo, n, m, lead, tail, comp):  # type: ignore[no-untyped-def]
    """Fold one block (buf[:n], float32 or float64) into the running state (m, lead, tail + comp).

    Returns (m, lead, tail, comp, add, add2): the caller adds ``add`` and ``add2`` (the block's
    tail terms: the hi and the lo parts, kept apart so that their sum is not rounded) to
    (tail, comp) with a compensated sum, outside this function, whose 'reassoc' would undo the
    compensation. Without the chunks and the compensation [0, -40 x 40960] was 2.6 ulp off; now 0.44.

    The block's maximum bm is found first; if it exceeds m, the old state is rescaled by
    e^{m - bm} (its lead joins the tail). Terms equal to the maximum are kept out of the exp
    sum with a select, never subtracted afterwards (Blanchard-Higham-Higham):
    unweighted, the first of them becomes the lead 1 and the others add exactly 1 each to the
    tail; weighted, the lead is the sum of their weights (the split lead/tail only has to be
    exact, and this one needs no subtraction). ``lo`` selects the float32-grade exp. Non-finite
    m or a NaN tail are sorted out by the caller (``_special_state``). The four loops differ
    only in the weight and the exp: written out so that each is a plain vectorisable loop.
    """
    _wide()
    bm = _block_max(buf, n)
    if bm > m:
        c = _exp_le0(m - bm)  # m = -inf (empty state) gives 0
        tail = ((tail + comp) + lead) * c
        comp = 0.0
        lead = 0.0
        m = bm
    # s: the float32-grade exps, or the hi parts (powers of two: their sums are exact within 53
    # binades); s2: the lo parts. Kept apart until the block's total.
    s = 0.0
    s2 = 0.0
    if has_b:
        sl = 0.0
        if lo:
            for a in range(0, n, CHUNK):
                sc = 0.0
                bc = buf[a : min(a + CHUNK, n)]
                wc = wbuf[a : min(a + CHUNK, n)]
                for i in range(bc.size):
                    d = np.float64(bc[i]) - m
                    e = wc[i] * _exp_le0_lo(d)
                    at_max = d == 0.0
                    sc += 0.0 if at_max else e
                    sl += wc[i] if at_max else 0.0
                s += sc
        else:
            for a in range(0, n, CHUNK):
                sc = 0.0
                sc2 = 0.0
                bc = buf[a : min(a + CHUNK, n)]
                wc = wbuf[a : min(a + CHUNK, n)]
                for i in range(bc.size):
                    d = np.float64(bc[i]) - m
                    hi, lo_ = _exp_le0_split(d)
                    at_max = d == 0.0
                    sc += 0.0 if at_max else wc[i] * hi
                    sc2 += 0.0 if at_max else wc[i] * lo_
                    sl += wc[i] if at_max else 0.0
                s += sc
                s2 += sc2
        if lead == 0.0 and sl != 0.0:
            lead = sl
            sl = 0.0
        return m, lead, tail, comp, s + sl, s2
    elif bm < m:
        # No entry of this block equals the running maximum: no select, no count (the common
        # case once the maximum has been seen; ~10% fewer vector operations).
        if lo:
            for a in range(0, n, CHUNK):
                sc = 0.0
                bc = buf[a : min(a + CHUNK, n)]
                for i in range(bc.size):
                    sc += _exp_le0_lo(np.float64(bc[i]) - m)
                s += sc
        else:
            for a in range(0, n, CHUNK):
                sc = 0.0
                sc2 = 0.0
                bc = buf[a : min(a + CHUNK, n)]
                for i in range(bc.size):
                    hi, lo_ = _exp_le0_split(np.float64(bc[i]) - m)
                    sc += hi
                    sc2 += lo_
                s += sc
                s2 += sc2
        return m, lead, tail, comp, s, s2
    else:
        cnt = 0
        if lo:
            for a in range(0, n, CHUNK):
                sc = 0.0
                bc = buf[a : min(a + CHUNK, n)]
                for i in range(bc.size):
                    d = np.float64(bc[i]) - m
                    e = _exp_le0_lo(d)
                    at_max = d == 0.0
                    sc += 0.0 if at_max else e
                    cnt += 1 if at_max else 0
                s += sc
        else:
            for a in range(0, n, CHUNK):
                sc = 0.0
                sc2 = 0.0
                bc = buf[a : min(a + CHUNK, n)]
                for i in range(bc.size):
                    d = np.float64(bc[i]) - m
                    hi, lo_ = _exp_le0_split(d)
                    at_max = d == 0.0
                    sc += 0.0 if at_max else hi
                    sc2 += 0.0 if at_max else lo_
                    cnt += 1 if at_max else 0
                s += sc
                s2 += sc2
        if cnt > 0 and lead == 0.0:
            lead = 1.0
            cnt -= 1
        return m, lead, tail, comp, s + cnt, s2


@njit(fastmath={"reassoc", "contract"}, cache=_CACHE)
def _fold_block_below(xb, lo, n, m):  # type: ignore[no-untyped-def]
    """One pass over a contiguous unweighted block (float32 or float64) that assumes every entry
    is below the running maximum m (finite): returns (bm, s, s2), the block's maximum and the
    sums of its exps taken against m (s2: the lo parts for float64, as in _fold_block's
    ``bm < m`` branch, which this reproduces term for term).

    Valid only when bm < m: otherwise (a new or an equal maximum, a positive NaN) the caller
    discards s and s2 and folds the block again with _fold_block. The maximum and the exps are
    taken in the same loop, so the block is read once, straight from memory (no L1 copy, float32
    widened in registers). One thread, 1e7 N(0,1), medians of interleaved rounds on the loaded
    2-core AMD EPYC: float64 13.3 -> 7.8 ms, float32 15.4 -> 6.5 ms against the max pass from
    memory followed by the exp pass from L1 (float32 also through the widening copy). Random
    data raise the maximum in O(log n) blocks (9 of 4883 for 1e7), so the second fold is rare;
    an increasing input pays it on every block (at most 2x).
    """
    _wide()
    k = -(2**63)
    s = 0.0
    s2 = 0.0
    # Full chunks as loops of constant length CHUNK, then the remainder: with a variable
    # inner bound (min(a + CHUNK, n)) LLVM's code for this loop ran ~3x slower (measured).
    full = n - n % CHUNK
    if lo:
        for a in range(0, full, CHUNK):
            sc = 0.0
            xc = xb[a : a + CHUNK]
            for i in range(CHUNK):
                v = np.float64(xc[i])
                ki = _key(v)
                k = ki if ki > k else k
                sc += _exp_le0_lo(v - m)
            s += sc
        sc = 0.0
        for i in range(full, n):
            v = np.float64(xb[i])
            ki = _key(v)
            k = ki if ki > k else k
            sc += _exp_le0_lo(v - m)
        s += sc
    else:
        for a in range(0, full, CHUNK):
            sc = 0.0
            sc2 = 0.0
            xc = xb[a : a + CHUNK]
            for i in range(CHUNK):
                v = np.float64(xc[i])
                ki = _key(v)
                k = ki if ki > k else k
                hi, lo_ = _exp_le0_split_2p54(v - m)
                sc += hi
                sc2 += lo_
            s += sc
            s2 += sc2
        sc = 0.0
        sc2 = 0.0
        for i in range(full, n):
            v = np.float64(xb[i])
            ki = _key(v)
            k = ki if ki > k else k
            hi, lo_ = _exp_le0_split_2p54(v - m)
            sc += hi
            sc2 += lo_
        s += sc
        s2 += sc2
        # the terms were taken times 2^54 (see _exp_le0_split_2p54)
        s *= _TWOM54
        s2 *= _TWOM54
    return _unkey(k), s, s2


@njit(fastmath={"reassoc", "contract"}, cache=_CACHE)
def _fold_block_below_next(xb, nb, lo, n, m):  # type: ignore[no-untyped-def]
    """_fold_block_below that also returns the maximum of nb[:n], the same block of the next row:
    (bm, nbm, s, s2, ties_out). The next row's maximum is thus read from memory while this row's
    exps are computed (the loop is bound by the exp, so the extra stream and key max come almost
    free), and the next row starts with its true maximum. For float32 data (``lo``) the entries
    equal to m are left out of s (ties_out True), so that a block holding the row's maximum
    (bm == m) is valid too and the caller only counts those entries: no block is folded twice.
    [2048, 1000] float32, one thread: 8.3 -> 3.3 ns per element (every row's only block was
    folded twice); the select costs ~7% per block, so 1-D slices (_fold_block_below) go without.
    float64 data keep the second fold of that block (ties_out False)."""
    _wide()
    k = -(2**63)
    nk = -(2**63)
    s = 0.0
    s2 = 0.0
    # Full chunks as loops of constant length CHUNK, then the remainder: with a variable
    # inner bound (min(a + CHUNK, n)) LLVM's code for this loop ran ~3x slower (measured).
    full = n - n % CHUNK
    if lo:
        for a in range(0, full, CHUNK):
            sc = 0.0
            xc = xb[a : a + CHUNK]
            nc = nb[a : a + CHUNK]
            for i in range(CHUNK):
                v = np.float64(xc[i])
                ki = _key(v)
                k = ki if ki > k else k
                kn = _key(np.float64(nc[i]))
                nk = kn if kn > nk else nk
                sc += 0.0 if v == m else _exp_le0_lo(v - m)
            s += sc
        sc = 0.0
        for i in range(full, n):
            v = np.float64(xb[i])
            ki = _key(v)
            k = ki if ki > k else k
            kn = _key(np.float64(nb[i]))
            nk = kn if kn > nk else nk
            sc += 0.0 if v == m else _exp_le0_lo(v - m)
        s += sc
    else:
        for a in range(0, full, CHUNK):
            sc = 0.0
            sc2 = 0.0
            xc = xb[a : a + CHUNK]
            nc = nb[a : a + CHUNK]
            for i in range(CHUNK):
                v = np.float64(xc[i])
                ki = _key(v)
                k = ki if ki > k else k
                kn = _key(np.float64(nc[i]))
                nk = kn if kn > nk else nk
                hi, lo_ = _exp_le0_split_2p54(v - m)
                sc += hi
                sc2 += lo_
            s += sc
            s2 += sc2
        sc = 0.0
        sc2 = 0.0
        for i in range(full, n):
            v = np.float64(xb[i])
            ki = _key(v)
            k = ki if ki > k else k
            kn = _key(np.float64(nb[i]))
            nk = kn if kn > nk else nk
            hi, lo_ = _exp_le0_split_2p54(v - m)
            sc += hi
            sc2 += lo_
        s += sc
        s2 += sc2
        # the terms were taken times 2^54 (see _exp_le0_split_2p54)
        s *= _TWOM54
        s2 *= _TWOM54
    return _unkey(k), _unkey(nk), s, s2, lo




@njit(cache=_CACHE)
def _count_equal(xb, m):  # type: ignore[no-untyped-def]
    """#{i : xb[i] == m}."""
    c = 0
    for i in range(xb.size):
        c += 1 if np.float64(xb[i]) == m else 0
    return c


@njit(inline="always")
def _two_sum_acc(s, c, v):  # type: ignore[no-untyped-def]
    """Neumaier's compensated step: s + v with its rounding error added to c (no fast-math)."""
    t = s + v
    if abs(s) >= abs(v):
        c += (s - t) + v
    else:
        c += (v - t) + s
    return t, c


@njit(cache=_CACHE)
def _range_state_dd(x, b, has_b, base, L, s, roff, fa, fb, buf, wbuf):  # type: ignore[no-untyped-def]
    """State of the flat reduced indices [fa, fb) of one slice, its tail as a double-double
    (m, lead, tail, comp): the compensated block sum's running value and its error term.

    The slice's element f (0 <= f < len(roff)*L) lives at base + roff[f // L] + (f % L)*s.
    """
    lo = x.itemsize == 4
    m = -np.inf
    lead = 0.0
    tail = 0.0
    comp = 0.0
    f = fa
    while f < fb:
        ro = f // L
        li = f - ro * L
        seg = min(fb - f, L - li, BLOCK)
        start = base + roff[ro] + li * s
        fused = False
        if s == 1 and not has_b and math.isfinite(m):
            # Contiguous unweighted, a maximum already seen: max and exp sum in one pass, kept
            # when every entry is below m; otherwise (a new or tied maximum, inf, NaN: rare
            # after the first blocks) the block is folded again below with the full bookkeeping.
            bm, add, add2 = _fold_block_below(x[start : start + seg], lo, seg, m)
            fused = bm < m
        if not fused:
            if s == 1 and not has_b and not lo:
                # Contiguous unweighted float64: fold straight from x (no copy; the max pass
                # brings the block into L1 for the exp pass). float32 blocks are widened into
                # the float64 L1 buffer first: each element is converted once, and the max and
                # exp passes then run on float64 lanes, instead of converting in both passes.
                m, lead, tail, comp, add, add2 = _fold_block(x[start : start + seg], wbuf, False, lo, seg, m, lead, tail, comp)
            else:
                _load(x, b, has_b, start, s, seg, buf, wbuf)
                m, lead, tail, comp, add, add2 = _fold_block(buf, wbuf, has_b, lo, seg, m, lead, tail, comp)
        tail, comp = _two_sum_acc(tail, comp, add)
        tail, comp = _two_sum_acc(tail, comp, add2)
        f += seg
    return m, lead, tail, comp


@njit(cache=_CACHE)
def _row_state_next(x, base, L, m0, nbase, has_next, buf, wbuf):  # type: ignore[no-untyped-def]
    """State of one contiguous unweighted row x[base : base + L] as _range_state_dd gives it,
    (m, lead, tail, comp), plus the maximum of the next row x[nbase : nbase + L] when
    ``has_next`` (else -inf), taken block by block in the same loops.

    ``m0`` is this row's maximum when known (the previous row's call returned it) or -inf. With
    a finite m0 every block is folded in one pass against it, and only the blocks holding
    entries equal to m0 (their bm is not below it) are folded again by _fold_block, which takes
    the first of them as the lead 1 and counts the others: the same state as folding blocks in
    order. A non-finite m0 (a NaN or inf in the row) is ignored: the row is folded as usual.
    """
    lo = x.itemsize == 4
    m = -np.inf
    lead = 0.0
    tail = 0.0
    comp = 0.0
    nkey = -(2**63)
    known = math.isfinite(m0)
    f = 0
    while f < L:
        seg = min(L - f, BLOCK)
        start = base + f
        mm = m if math.isfinite(m) else (m0 if known else m)
        fused = False
        if math.isfinite(mm):
            if has_next:
                bm, nbm, add, add2, ties_out = _fold_block_below_next(x[start : start + seg], x[nbase + f : nbase + f + seg], lo, seg, mm)
                kn = _key(nbm)
                nkey = kn if kn > nkey else nkey
            else:
                bm, add, add2 = _fold_block_below(x[start : start + seg], lo, seg, mm)
                ties_out = False
            fused = bm < mm or (bm == mm and ties_out)
            if fused:
                m = mm
                if bm == mm:
                    # the block holds the row's maximum: its exp sum left those entries out;
                    # the first is the lead 1, the others add exactly 1 each (BHH)
                    cnt = _count_equal(x[start : start + seg], mm)
                    lead, cnt = (1.0, cnt - 1) if lead == 0.0 else (lead, cnt)
                    tail, comp = _two_sum_acc(tail, comp, np.float64(cnt))
        elif has_next:
            kn = _key(_block_max(x[nbase + f : nbase + f + seg], seg))
            nkey = kn if kn > nkey else nkey
        if not fused:
            if not lo:
                m, lead, tail, comp, add, add2 = _fold_block(x[start : start + seg], wbuf, False, lo, seg, mm, lead, tail, comp)
            else:
                _load(x, x, False, start, 1, seg, buf, wbuf)
                m, lead, tail, comp, add, add2 = _fold_block(buf, wbuf, False, lo, seg, mm, lead, tail, comp)
        tail, comp = _two_sum_acc(tail, comp, add)
        tail, comp = _two_sum_acc(tail, comp, add2)
        f += seg
    return m, lead, tail, comp, _unkey(nkey)


@njit(cache=_CACHE)
def _range_state(x, b, has_b, base, L, s, roff, fa, fb, buf, wbuf):  # type: ignore[no-untyped-def]
    """State of the flat reduced indices [fa, fb) of one slice.

    The slice's element f (0 <= f < len(roff)*L) lives at base + roff[f // L] + (f % L)*s.
    """
    m, lead, tail, comp = _range_state_dd(x, b, has_b, base, L, s, roff, fa, fb, buf, wbuf)
    return m, lead, tail + comp


@njit(cache=_CACHE)
def _special_state(x, b, has_b, base, L, s, roff, fa, fb):  # type: ignore[no-untyped-def]
    """Exact scalar state of flat indices [fa, fb) (slices with inf, NaN, or overflowing tail).

    NaN (with nonzero weight) anywhere: m = NaN. All -inf or empty: (-inf, 0, 0). Some +inf:
    m = +inf, lead = weight of the first +inf, tail = sum of the other +inf weights.
    Otherwise the two-pass state with math.exp.
    """
    m = -np.inf
    for f in range(fa, fb):
        ro = f // L
        j = base + roff[ro] + (f - ro * L) * s
        w = np.float64(b[j]) if has_b else 1.0
        if w == 0.0:
            continue
        v = np.float64(x[j])
        if v != v:
            return np.nan, np.nan, np.nan
        if v > m:
            m = v
    if m == -np.inf:
        return m, 0.0, 0.0
    lead = 0.0
    tail = 0.0
    first = True
    for f in range(fa, fb):
        ro = f // L
        j = base + roff[ro] + (f - ro * L) * s
        w = np.float64(b[j]) if has_b else 1.0
        if w == 0.0:
            continue
        v = np.float64(x[j])
        if v == m:
            if first:
                lead = w
                first = False
            else:
                tail += w
        elif m != np.inf:
            tail += w * math.exp(v - m)
    return m, lead, tail


@njit(inline="always")
def _merge(m1, l1, t1, m2, l2, t2):  # type: ignore[no-untyped-def]
    """Merge of two states (see logsumexp._state): equal maxima scale by exactly 1."""
    if m2 > m1:
        c = 1.0 if m1 == m2 else math.exp(m1 - m2)
        return m2, l2, t2 + (l1 + t1) * c
    c = 1.0 if m1 == m2 else math.exp(m2 - m1)
    if m1 != m1 or m2 != m2:
        return np.nan, np.nan, np.nan
    return m1, l1, t1 + (l2 + t2) * c


@njit(nogil=True, cache=_CACHE)
def lse_items(x, b, has_b, koff, L, s, roff, item_j, item_a, item_b, om, olead, otail, otlo, lo, hi):  # type: ignore[no-untyped-def]
    """States of work items lo..hi-1: item t covers flat indices [item_a[t], item_b[t]) of
    slice item_j[t] (at koff[item_j[t]]). A whole slice is one item; a long slice is split in
    several items (one per thread) merged afterwards by ``merge_items``. ``otlo`` receives the
    rounding error of ``otail`` (the compensated sum's low part: a double-double tail).
    Items whose state is not finite are recomputed by the exact scalar path, on their own
    range (the merge then combines special states correctly).
    """
    buf = np.empty(BLOCK)
    wbuf = np.empty(BLOCK if has_b else 1)
    # Whole contiguous unweighted rows: each row's call also reads the next row's maximum
    rows = s == 1 and not has_b and roff.size == 1
    m_next = -np.inf
    for t in range(lo, hi):
        base = koff[item_j[t]]
        whole = rows and item_a[t] == 0 and item_b[t] == L
        if whole:
            nxt = t + 1 < hi and item_a[t + 1] == 0 and item_b[t + 1] == L
            nbase = koff[item_j[t + 1]] if nxt else base
            m, lead, th, tc, m_next = _row_state_next(x, base, L, m_next, nbase, nxt, buf, wbuf)
        else:
            m, lead, th, tc = _range_state_dd(x, b, has_b, base, L, s, roff, item_a[t], item_b[t], buf, wbuf)
            m_next = -np.inf
        tail, tlo = _two_sum(th, tc)
        if not (math.isfinite(m) and math.isfinite(tail) and math.isfinite(lead) and math.isfinite(tlo)):
            m, lead, tail = _special_state(x, b, has_b, base, L, s, roff, item_a[t], item_b[t])
            tlo = 0.0
        om[t] = m
        olead[t] = lead
        otail[t] = tail
        otlo[t] = tlo


@njit(nogil=True, cache=_CACHE)
def merge_items(item_j, im, ilead, itail, itlo, om, olead, otail, otlo):  # type: ignore[no-untyped-def]
    """Merge consecutive items of the same slice into the per-slice outputs (the tails' low
    parts scaled alongside: the merge's own roundings are not recovered)."""
    t = 0
    n = item_j.size
    while t < n:
        j = item_j[t]
        m, lead, tail, tlo = im[t], ilead[t], itail[t], itlo[t]
        t += 1
        while t < n and item_j[t] == j:
            m2 = im[t]
            if m2 > m:
                tlo = itlo[t] + tlo * math.exp(m - m2)
            else:
                tlo = tlo + itlo[t] * (1.0 if m == m2 else math.exp(m2 - m))
            m, lead, tail = _merge(m, lead, tail, m2, ilead[t], itail[t])
            t += 1
        om[j] = m
        olead[j] = lead
        otail[j] = tail
        otlo[j] = tlo if math.isfinite(tlo) else 0.0


_ZERO_OFF = np.zeros(1, dtype=np.int64)


@njit(cache=_CACHE)
def lse_1d(x):  # type: ignore[no-untyped-def]
    """State of a whole contiguous 1-D array (the small-input path: one call, no planning)."""
    # Contiguous and unweighted: _range_state folds float64 straight from x, the buffers are
    # unused (a 1-element one avoids a 16 KiB allocation per call); float32 is widened in buf.
    buf = np.empty(min(x.size, BLOCK) if x.itemsize == 4 else 1)
    n = x.size
    m, lead, tail = _range_state(x, x, False, 0, n, 1, _ZERO_OFF, 0, n, buf, buf)
    if not (math.isfinite(m) and math.isfinite(tail)):
        m, lead, tail = _special_state(x, x, False, 0, n, 1, _ZERO_OFF, 0, n)
    return m, lead, tail


@njit(inline="always")
def _log1p(t):  # type: ignore[no-untyped-def]
    """log1p(t), through log(1 + t) when 1 + t is exact: libm's log is correctly rounded more
    often than its log1p (log1p(2.0) is 1 ulp below log 3 in glibc), and equal there otherwise."""
    u = 1.0 + t
    if u - 1.0 == t:
        return math.log(u)
    return math.log1p(t)


@njit(cache=_CACHE)
def lse_1d_value(x):  # type: ignore[no-untyped-def]
    """LogSumExp of a whole contiguous 1-D array: m + log1p(tail) (lead = 1) finished in
    double-double and rounded once, or m itself for the special states (-inf empty/all -inf,
    +inf, NaN). A result that cancels against m (see ``cancels``) is recomputed by ``lse_exact``.
    One compiled call for small inputs."""
    buf = np.empty(min(x.size, BLOCK) if x.itemsize == 4 else 1)
    n = x.size
    m, lead, tail, comp = _range_state_dd(x, x, False, 0, n, 1, _ZERO_OFF, 0, n, buf, buf)
    if not (math.isfinite(m) and math.isfinite(tail) and math.isfinite(comp)):
        m, lead, tail = _special_state(x, x, False, 0, n, 1, _ZERO_OFF, 0, n)
        if not math.isfinite(m):
            return m
        comp = 0.0
    out = lse_finish(m, tail, comp)
    if cancels(m, out):
        return lse_exact(x)
    return out


# --------------------------------------------------------------------------------------------
# softmax / log_softmax rows
# --------------------------------------------------------------------------------------------
@njit(fastmath={"contract"}, cache=_CACHE)
def _write_range(x, xs, xbase, out, os, obase, a, n, m, lead, tail, log):  # type: ignore[no-untyped-def]
    """Write softmax (or log_softmax) of elements a..a+n-1 of one row with row state (m, lead, tail).

    Unweighted rows have lead = 1 (finite m), so the sum is s = 1 + tail:
    softmax_i = e^{x_i - m} / s (division, the more accurate form),
    log_softmax_i = (x_i - m) - log1p(tail) (BHH: the dominant entry keeps its relative accuracy).
    Special rows: m = -inf -> 0 / -inf; m = +inf -> 1/k on the k = lead + tail +inf entries,
    0 elsewhere (log: -log k / -inf); NaN (m or tail) -> NaN.
    """
    _wide()
    # Slices indexed by the loop counter (see _load: no wraparound select, so LLVM vectorises).
    xa = x[xbase + a * xs : xbase + (a + n - 1) * xs + 1 : xs]
    oa = out[obase + a * os : obase + (a + n - 1) * os + 1 : os]
    if m != m or tail != tail:
        for i in range(n):
            oa[i] = np.nan
    elif m == -np.inf:
        v = -np.inf if log else 0.0
        for i in range(n):
            oa[i] = v
    elif m == np.inf:
        k = lead + tail
        hit = -math.log(k) if log else 1.0 / k
        miss = -np.inf if log else 0.0
        for i in range(n):
            oa[i] = hit if np.float64(xa[i]) == np.inf else miss
    elif log:
        c = _log1p(tail)
        if xs == 1 and os == 1:
            xc = x[xbase + a : xbase + a + n]
            oc = out[obase + a : obase + a + n]
            for i in range(n):
                oc[i] = (np.float64(xc[i]) - m) - c
        else:
            for i in range(n):
                oa[i] = (np.float64(xa[i]) - m) - c
    else:
        tot = 1.0 + tail
        if xs == 1 and os == 1:
            xc = x[xbase + a : xbase + a + n]
            oc = out[obase + a : obase + a + n]
            if x.itemsize == 4:
                for i in range(n):
                    oc[i] = _exp_le0_lo(np.float64(xc[i]) - m) / tot
            else:
                for i in range(n):
                    oc[i] = _exp_le0(np.float64(xc[i]) - m) / tot
        else:
            for i in range(n):
                oa[i] = _exp_le0(np.float64(xa[i]) - m) / tot


# Rows up to this length keep their exps in a float64 scratch row (512 KiB, inside the 2 MiB
# L2) between the sum and the normalisation, so each exp is computed once; longer rows compute
# it twice (state pass, write pass). Measured on [1024, 32000] float32 (one core, noisy):
# softmax 7.5x -> 5x one read.
SCRATCH_MAX = 1 << 16


@njit(fastmath={"contract"}, cache=_CACHE)
def _exp_le0_split_exact(v, m):  # type: ignore[no-untyped-def]
    """(hi, lo, d): _exp_le0_split(d) for d = fl(v − m), with the rounding dl of that difference
    (TwoSum) put back into the low part: e^{d + dl} ≈ (hi + lo)(1 + dl). |dl| ≤ |d|·2^-53, so this
    matters for terms far below m, which only count where they make up the whole tail.
    'contract' only, and d formed here: with d taken from a 'reassoc' loop the inlined TwoSum was
    folded (the tail of an N(0,1)·10 row came out 1.2 ulp off instead of 0.1)."""
    d = v - m
    bb = d - v
    dl = (v - (d - bb)) + (-m - bb)
    dl = dl if dl == dl else 0.0  # v = −inf: the term is 0 anyway
    hi, lo_ = _exp_le0_split(d)
    return hi, lo_ + (hi + lo_) * dl, d


@njit(fastmath={"contract"}, cache=_CACHE)
def _max_below(xr, m):  # type: ignore[no-untyped-def]
    """The largest entry of xr below m (−inf if none), on the integer keys (vectorised)."""
    _wide()
    km = _key(m)
    k = -(2**63)
    for i in range(xr.size):
        ki = _key(np.float64(xr[i]))
        ki = ki if ki < km else -(2**63)
        k = ki if ki > k else k
    return -np.inf if k == -(2**63) else _unkey(k)


@njit(fastmath={"reassoc", "contract"}, cache=_CACHE)
def _row_expsum(xr, scratch, m, store, thr):  # type: ignore[no-untyped-def]
    """(Σ_{x_i != m} e^{x_i - m}, #{x_i == m}) of one contiguous row with finite max m, storing
    the exps in scratch when ``store`` (float32 only). The maximal terms are selected out, never
    subtracted.

    float64: the sum in two parts, the powers of two 2^k of _exp_le0_split and the rest. A
    power of two more than 53 binades below a lane's running sum would be rounded away (on
    U(−700, 700) rows those losses, all of one sign, made the tail 1.2 ulp small and
    log_softmax's top entry 1.05 ulp off), so terms whose 2^k is below ``thr`` (2^-37 times
    the largest tail term, see _softmax_row) go whole into the second part instead, where each
    rounds once, relative to that part's own size. Without ``store`` (the float64 rows: log_softmax,
    and softmax, which takes its exps again) each term also gets the rounding of x_i − m back
    (_exp_le0_split_exact): a tail made of terms far below m (a 7-entry N(0,1)·10 row whose tail
    is 1.6e-16) was 18 ulp off through it, and log_softmax's top entry −log1p(tail) with it."""
    _wide()
    n = xr.size
    s = 0.0
    s2 = 0.0  # float64 data: the lo parts of _exp_le0_split (see _fold_block)
    cnt = 0
    if xr.itemsize == 4:
        if store:
            for i in range(n):
                d = np.float64(xr[i]) - m
                e = _exp_le0_lo(d)
                scratch[i] = e
                z = d == 0.0
                s += 0.0 if z else e
                cnt += 1 if z else 0
        else:
            for i in range(n):
                d = np.float64(xr[i]) - m
                e = _exp_le0_lo(d)
                z = d == 0.0
                s += 0.0 if z else e
                cnt += 1 if z else 0
    else:  # float64 rows never store: softmax takes its exps again (_softmax_dd)
        for i in range(n):
            hi, lo_, d = _exp_le0_split_exact(np.float64(xr[i]), m)
            z = d == 0.0
            small = hi < thr
            s += 0.0 if (z or small) else hi
            s2 += 0.0 if z else (lo_ + hi if small else lo_)
            cnt += 1 if z else 0
    return s, s2, cnt


@njit(fastmath={"contract"}, cache=_CACHE)
def _row_tail(xr, scratch, m, store, thr):  # type: ignore[no-untyped-def]
    """(tail, comp): Σ_{i≠k} e^{x_i − m} of one contiguous row with finite max m as a
    double-double (the entries equal to m but one count 1 each), the exps stored in scratch when
    ``store`` (float32 rows); ``thr`` as in _row_expsum.

    Block sums combined with a compensated sum (as in _range_state): one vectorised sum over a
    32000-long row adds ~1000 terms per lane sequentially. float64 rows in CHUNK pieces: each
    piece's sums are one vectorised reduction, and the pieces are combined with the compensated
    sum here (inside _row_expsum, 'reassoc' would undo it); 2048 at once left the 999 equal terms
    of [0, −40×999] with a tail 2.7e-16 off (1.64 ulp on log_softmax's top entry), 256 at once
    0.40 ulp."""
    n = xr.size
    tail = 0.0
    comp = 0.0
    cnt = 0
    step = CHUNK if xr.itemsize == 8 else BLOCK
    for a in range(0, n, step):
        b = min(a + step, n)
        sb, sb2, cb = _row_expsum(xr[a:b], scratch[a:b] if store else scratch, m, store, thr)
        tail, comp = _two_sum_acc(tail, comp, sb)
        tail, comp = _two_sum_acc(tail, comp, sb2)
        cnt += cb
    return _two_sum_acc(tail, comp, np.float64(cnt - 1))


@njit(fastmath={"contract"}, cache=_CACHE)
def _softmax_row(xr, outr, scratch, log):  # type: ignore[no-untyped-def]
    """softmax / log_softmax of one contiguous row into a contiguous output row; False (nothing
    written) for a special row (non-finite max, NaN), which the caller then handles.

    No 'reassoc' here: (x_i - m) - log1p(tail) must stay in that order (BHH). For float32
    output the division by the sum is a multiplication by its float64 reciprocal (two float64
    roundings, far below float32's; vector division is ~8x slower); float64 output divides.
    """
    _wide()
    n = xr.size
    m = _block_max(xr, n)
    if not math.isfinite(m):
        return False
    # float32 rows keep their exps for the write; float64 softmax recomputes them in two parts
    store = not log and xr.itemsize == 4
    thr = 0.0
    if xr.itemsize == 8:
        # 2^-37 times the largest tail term e^{m2 − m}: the powers of two at or above it sum
        # exactly within a block (2048 terms ≤ 2^11 times the largest), see _row_expsum
        thr = _exp_le0(_max_below(xr, m) - m) * 2.0**-37
    tail, comp = _row_tail(xr, scratch, m, store, thr)
    if tail != tail or comp != comp:
        return False
    if log and outr.itemsize == 8:
        # float64: log1p(tail) as a double-double and (x_i − m) − c with the difference x_i − m
        # kept exact (TwoSum), so each entry is rounded once
        ch, cl = log1p_dd(tail, comp)
        _log_softmax_dd(xr, outr, m, ch, cl)
        return True
    if not log and outr.itemsize == 8:
        th, tl = _two_sum(1.0, tail)
        _softmax_dd(xr, outr, m, th, tl + comp)
        return True
    tail += comp  # float32 from here on
    if log:
        c = _log1p(tail)
        for i in range(n):
            outr[i] = (np.float64(xr[i]) - m) - c
    else:
        r = 1.0 / (1.0 + tail)
        for i in range(n):
            outr[i] = scratch[i] * r
    return True


@njit(fastmath={"contract"}, cache=_CACHE)
def _softmax_dd(xr, outr, m, th, tl):  # type: ignore[no-untyped-def]
    """outr[i] = e^{x_i − m} / (th + tl) for float64, rounded once but for the exp's own ~0.1 ulp.

    Each exp is taken again (cheaper than storing two parts) as _exp_le0_split's 2^k + 2^k·y,
    added into a double-double (eh, el) (Fast2Sum: |2^k·y| < 2^k); the rounding dl of x_i − m
    (TwoSum) is put back as e·(1 + dl) (for x_i far below m it is |x_i − m|·2^-53 relative: 30
    ulp at x_i − m = −60); the division by the double-double sum is exact but for the final
    rounding (remainder by FMA). N(0,1)·s rows, s = 1, 3, 10: 4.7-32 ulp (plain) -> 2.0 (stored
    exp, shift put back) -> see tests/test_accuracy_cpu.py. 'contract' only: the error terms
    must stay."""
    _wide()
    for i in range(xr.size):
        v = xr[i]
        dh = v - m
        bb = dh - v
        dl = (v - (dh - bb)) + (-m - bb)  # TwoSum(v, −m)
        dl = dl if dl == dl else 0.0  # v = −inf: e = 0 already
        hi, lo_ = _exp_le0_split(dh)
        eh = hi + lo_
        el = _fma(eh, dl, lo_ - (eh - hi))
        q = eh / th
        r = _fma(-q, th, eh)
        outr[i] = q + ((r + el) - q * tl) / th


@njit(cache=_CACHE)
def _log_softmax_dd(xr, outr, m, ch, cl):  # type: ignore[no-untyped-def]
    """outr[i] = (xr[i] − m) − (ch + cl) rounded once (no fast-math: the error terms must stay)."""
    for i in range(xr.size):
        v = xr[i]
        dh = v - m
        bb = dh - v
        dl = (v - (dh - bb)) + (-m - bb)  # TwoSum(v, −m)
        dl = dl if dl == dl else 0.0  # v = −inf: the entry is −inf
        s = dh - ch
        b2 = s - dh
        e = (dh - (s - b2)) + (-ch - b2)  # TwoSum(dh, −ch)
        outr[i] = s if s == -np.inf else s + (e + (dl - cl))  # −inf entries: no inf − inf


@njit(nogil=True, cache=_CACHE)
def softmax_rows(x, xkoff, L, xs, out, okoff, os, log, lo, hi):  # type: ignore[no-untyped-def]
    """Rows lo..hi-1, each read from memory once. Contiguous rows up to SCRATCH_MAX: max, exps
    (kept in a scratch row) and sum, then the normalised write. Otherwise (and for special
    rows): the blocked state pass (the row stays in L2), then the write pass."""
    fast = xs == 1 and os == 1 and L <= SCRATCH_MAX
    scratch = np.empty(L if fast else 1)
    buf = np.empty(BLOCK)
    for j in range(lo, hi):
        base = xkoff[j]
        if fast and _softmax_row(x[base : base + L], out[okoff[j] : okoff[j] + L], scratch, log):
            continue
        m, lead, tail = _range_state(x, x, False, base, L, xs, _ZERO_OFF, 0, L, buf, buf)
        if not (math.isfinite(m) and math.isfinite(tail)):
            m, lead, tail = _special_state(x, x, False, base, L, xs, _ZERO_OFF, 0, L)
        _write_range(x, xs, base, out, os, okoff[j], 0, L, m, lead, tail, log)


@njit(nogil=True, cache=_CACHE)
def softmax_write_items(x, xkoff, xs, out, okoff, os, item_j, item_a, item_b, sm, slead, stail, log, lo, hi):  # type: ignore[no-untyped-def]
    """Second phase for long rows split across threads: write items lo..hi-1 given row states."""
    for t in range(lo, hi):
        j = item_j[t]
        a = item_a[t]
        _write_range(x, xs, xkoff[j], out, os, okoff[j], a, item_b[t] - a, sm[j], slead[j], stail[j], log)


# --------------------------------------------------------------------------------------------
# Column reductions: the reduced axis is strided while a kept axis is contiguous
# --------------------------------------------------------------------------------------------
# Rows of the reduced axis per tile of the column kernel: 64 rows × up to 1024 columns of
# float32 is 256 KiB, inside L2 between the max pass and the exp pass over the tile.
@njit(nogil=True, cache=_CACHE)
def ce_grad_rows(z, L, target, g, ignore, rows_out, lse_out, ok, lo, hi):  # type: ignore[no-untyped-def]
    """Cross-entropy of float32 logit rows lo..hi-1 of z (rows of length L, contiguous) against
    class targets, and, in place of each row, the gradient of Σ_j g[j]·loss_j:

        loss_j = log1p(tail) + (m − z_t)   (0 where target == ignore),   lse_j = m + log1p(tail)
        z_i ← g_j · e^{z_i − m} / (1 + tail),   then z_t ← z_t − g_j

    with m the row max and tail = Σ_{i≠argmax} e^{z_i − m} (Blanchard-Higham-Higham: the loss of a
    confident row keeps its small value). One read of the row from memory: the max, then the
    exps from L2 into a float64 scratch row with their sum (float64 exp and accumulation), then
    the scaled write. ``g`` empty: the loss and lse only, z is not written. A row with a
    non-finite max (inf, NaN) is left untouched with ok[j] = False for the caller's exact path."""
    scratch = np.empty(L)
    grad = g.size > 0
    for j in range(lo, hi):
        zr = z[j * L : (j + 1) * L]
        m = _block_max(zr, L)
        if not math.isfinite(m):
            ok[j] = False
            continue
        tail, comp = _row_tail(zr, scratch, m, True, 0.0)
        tail += comp
        t = target[j]
        valid = t != ignore
        zt = np.float64(zr[t if valid else 0])
        lp = _log1p(tail)
        lse_out[j] = m + lp
        rows_out[j] = ((0.0 if zt == m else m - zt) + lp) if valid else 0.0
        ok[j] = True
        if grad:
            gj = np.float64(g[j]) if valid else 0.0
            r = gj / (1.0 + tail)
            for i in range(L):
                zr[i] = scratch[i] * r
            if valid:
                zr[t] = np.float64(zr[t]) - gj


COL_ROWS = 64


@njit(nogil=True, cache=_CACHE)
def col_items(x, koff, ooff, ocs, L, s, roff, item_g, item_c0, item_c1, om, olead, otail, otlo, lo, hi):  # type: ignore[no-untyped-def]
    """States of column blocks lo..hi-1 (e.g. axis=0 of a C-ordered matrix), vectorised across
    the contiguous columns.

    Item t covers columns [item_c0[t], item_c1[t]) of group item_g[t]: column c's reduced
    element f is at koff[g] + c + roff[f // L] + (f % L)*s. The reduced elements are taken
    COL_ROWS at a time (a tile that stays in L2): the tile's column maxima (integer keys, as in
    _block_max), the rescale of the columns whose maximum rose (the old lead joins the tail),
    then the tile's exp sums with the maximal terms selected out and counted (the first one
    becomes the lead 1, the others add 1 each). The inner loops run along a contiguous row of
    columns: elementwise, so they vectorise without fast-math. Special columns take the exact
    scalar path.
    """
    nmax = 0
    for t in range(lo, hi):
        nmax = max(nmax, item_c1[t] - item_c0[t])
    mkey = np.empty(nmax, dtype=np.int64)
    mf = np.empty(nmax)
    lead = np.empty(nmax)
    tail = np.empty(nmax)
    comp = np.empty(nmax)
    cnt = np.empty(nmax, dtype=np.int64)
    n_red = roff.size * L
    lo32 = x.itemsize == 4
    for t in range(lo, hi):
        g = item_g[t]
        c0 = item_c0[t]
        nc = item_c1[t] - c0
        base = koff[g] + c0
        for c in range(nc):
            mf[c] = -np.inf
            lead[c] = 0.0
            tail[c] = 0.0
            comp[c] = 0.0
        for f0 in range(0, n_red, COL_ROWS):
            f1 = min(f0 + COL_ROWS, n_red)
            for c in range(nc):
                mkey[c] = -(2**63)
                cnt[c] = 0
            for f in range(f0, f1):
                ro = f // L
                p = base + roff[ro] + (f - ro * L) * s
                _col_max(x[p : p + nc], mkey, nc)
            _col_rescale(mkey, mf, lead, tail, comp, nc)
            for f in range(f0, f1):
                ro = f // L
                p = base + roff[ro] + (f - ro * L) * s
                _col_sum(x[p : p + nc], mf, tail, comp, cnt, nc, lo32)
            for c in range(nc):
                k = cnt[c]
                if k > 0 and lead[c] == 0.0:
                    lead[c] = 1.0
                    k -= 1
                tail[c], comp[c] = _two_sum_acc(tail[c], comp[c], np.float64(k))
        for c in range(nc):
            m = mf[c]
            ld = lead[c]
            tl, tlo = _two_sum(tail[c], comp[c])
            if not (math.isfinite(m) and math.isfinite(tl) and math.isfinite(tlo)):
                m, ld, tl = _special_state(x, x, False, base + c, L, s, roff, 0, n_red)
                tlo = 0.0
            j = ooff[g] + (c0 + c) * ocs
            om[j] = m
            olead[j] = ld
            otail[j] = tl
            otlo[j] = tlo


@njit(fastmath={"contract"}, cache=_CACHE)
def _col_rescale(mkey, mf, lead, tail, comp, n):  # type: ignore[no-untyped-def]
    """Columns whose tile maximum exceeds the running one: rescale (lead joins the tail)."""
    _wide()
    for c in range(n):
        bm = _unkey(mkey[c])
        up = bm > mf[c]
        sc = _exp_le0(mf[c] - bm)  # -inf - bm -> 0; unused where not up
        tail[c] = ((tail[c] + comp[c]) + lead[c]) * sc if up else tail[c]
        comp[c] = 0.0 if up else comp[c]
        lead[c] = 0.0 if up else lead[c]
        mf[c] = bm if up else mf[c]


@njit(cache=_CACHE)
def _col_max(row, mkey, n):  # type: ignore[no-untyped-def]
    _wide()
    for c in range(n):
        k = _key(np.float64(row[c]))
        mkey[c] = k if k > mkey[c] else mkey[c]


@njit(fastmath={"contract"}, cache=_CACHE)
def _col_sum(row, mf, tail, comp, cnt, n, lo):  # type: ignore[no-untyped-def]
    """Add one reduced row's terms to the column sums, each with Knuth's TwoSum (branch-free,
    elementwise across columns, so it vectorises; no multiplication, so 'contract' cannot
    fuse it away). A column sum is a sequential sum over the reduced axis: plain, it lost
    22 ulp on 300 terms of e^-40; compensated, the error stays at the terms' own rounding."""
    _wide()
    if lo:
        for c in range(n):
            d = np.float64(row[c]) - mf[c]
            e = _exp_le0_lo(d)
            z = d == 0.0
            y = 0.0 if z else e
            a = tail[c]
            t = a + y
            bp = t - a
            comp[c] += (a - (t - bp)) + (y - bp)
            tail[c] = t
            cnt[c] += 1 if z else 0
    else:
        for c in range(n):
            d = np.float64(row[c]) - mf[c]
            hi, lo_ = _exp_le0_split(d)
            z = d == 0.0
            y = 0.0 if z else hi
            a = tail[c]
            t = a + y
            bp = t - a
            comp[c] += ((a - (t - bp)) + (y - bp)) + (0.0 if z else lo_)
            tail[c] = t
            cnt[c] += 1 if z else 0


# --------------------------------------------------------------------------------------------
# Double-double finish: m + log1p(tail) rounded once
# --------------------------------------------------------------------------------------------
# A double-double (hi, lo) is the unevaluated sum hi + lo with |lo| <= ulp(hi)/2: ~106 bits.
# No fast-math anywhere below: reassociation or contraction would undo the error terms.
@intrinsic
def _fma(typingctx, a, b, c):  # type: ignore[no-untyped-def]
    """a*b + c with one rounding (llvm.fma: the hardware FMA, or libm's fma without one)."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        d = ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
        return builder.call(fn, args)

    return types.float64(types.float64, types.float64, types.float64), codegen


@njit(inline="always")
def _two_sum(a, b):  # type: ignore[no-untyped-def]
    """(s, e) with s = fl(a + b) and a + b = s + e exactly (Knuth; any magnitudes)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@njit(inline="always")
def _fast_two_sum(a, b):  # type: ignore[no-untyped-def]
    """(s, e) with a + b = s + e exactly, for |a| >= |b| (Dekker)."""
    s = a + b
    return s, b - (s - a)


@njit(inline="always")
def _two_prod(a, b):  # type: ignore[no-untyped-def]
    """(p, e) with p = fl(a*b) and a*b = p + e exactly (the FMA recovers the rounding)."""
    p = a * b
    return p, _fma(a, b, -p)


@njit(inline="always")
def _dd_add(ah, al, bh, bl):  # type: ignore[no-untyped-def]
    s, e = _two_sum(ah, bh)
    t, f = _two_sum(al, bl)
    e += t
    s, e = _fast_two_sum(s, e)
    e += f
    return _fast_two_sum(s, e)


@njit(inline="always")
def _dd_mul(ah, al, bh, bl):  # type: ignore[no-untyped-def]
    p, e = _two_prod(ah, bh)
    e += ah * bl + al * bh
    return _fast_two_sum(p, e)


@njit(inline="always")
def _dd_div(ah, al, bh, bl):  # type: ignore[no-untyped-def]
    """(ah + al)/(bh + bl) to ~2^-104: a quotient, its remainder (exact products), a correction."""
    q = ah / bh
    p, e = _two_prod(q, bh)
    r = ((ah - p) - e + al) - q * bl
    return _fast_two_sum(q, r / bh)


_LN2_HI = 6.93147180369123816490e-01  # 32 trailing zero bits: k*_LN2_HI is exact for |k| < 2**20
_LN2_LO = 1.90821492927058770002e-10  # _LN2_HI + _LN2_LO is ln 2 to 2^-86
_LN2_LO2 = 1.1612227229362532e-26  # ln 2 − _LN2_HI − _LN2_LO (mpmath, 60 digits): ln 2 to 2^-140


@njit(cache=_CACHE)
def log1p_dd(th, tl):  # type: ignore[no-untyped-def]
    """log(1 + th + tl) as a double-double, for 1 + th + tl > 0, to about 2^-62 relative.

    1 + t = 2^k·f with f in [√½, √2] (exact scaling); log f = 2·atanh(u), u = (f − 1)/(f + 1)
    (|u| ≤ 0.172) formed in double-double (f − 1 is exact: Sterbenz), then
    log f = 2u + 2u·(u²/3 + u⁴/5 + …): the leading 2u keeps its double-double, the series, below
    1% of it, is summed in double. log(1 + t) = k·ln 2 + log f with ln 2 in two parts.
    When t is tiny, k = 0 and u ≈ t/2 keeps t's relative accuracy (the Blanchard–Higham–Higham
    property of log1p). Used once per slice: its cost does not show next to the sum.
    """
    sh, sl = _two_sum(1.0, th)
    sh, sl = _fast_two_sum(sh, sl + tl)
    _, k = math.frexp(sh)  # sh = f·2^k, f in [0.5, 1)
    if sh * 2.0 ** (-k) < 0.7071067811865476:
        k -= 1
    sc = 2.0 ** (-k)
    fh = sh * sc
    fl = sl * sc
    nh, nl = _fast_two_sum(fh - 1.0, fl) if abs(fh - 1.0) >= abs(fl) else _fast_two_sum(fl, fh - 1.0)
    dh, dl = _two_sum(fh, 1.0)
    dh, dl = _fast_two_sum(dh, dl + fl)
    uh, ul = _dd_div(nh, nl, dh, dl)
    u2 = uh * uh
    # Σ_{j≥1} u^{2j}/(2j+1) to 2^-64 relative of 2u (u² ≤ 0.0295: 12 terms)
    q = 1.0 / 25.0
    q = q * u2 + 1.0 / 23.0
    q = q * u2 + 1.0 / 21.0
    q = q * u2 + 1.0 / 19.0
    q = q * u2 + 1.0 / 17.0
    q = q * u2 + 1.0 / 15.0
    q = q * u2 + 1.0 / 13.0
    q = q * u2 + 1.0 / 11.0
    q = q * u2 + 1.0 / 9.0
    q = q * u2 + 1.0 / 7.0
    q = q * u2 + 1.0 / 5.0
    q = q * u2 + 1.0 / 3.0
    rest = 2.0 * uh * (u2 * q)
    lh, ll = _fast_two_sum(2.0 * uh, 2.0 * ul + rest)
    if k != 0:
        kf = float(k)
        ah, al = _two_prod(kf, _LN2_LO)
        lh, ll = _dd_add(kf * _LN2_HI, al + kf * _LN2_LO2, lh, ll)
        lh, ll = _dd_add(lh, ll, ah, 0.0)
    return lh, ll


@njit(cache=_CACHE)
def lse_finish(m, th, tl):  # type: ignore[no-untyped-def]
    """m + log1p(th + tl) rounded once (a finite m, lead 1): the double-double log1p added to m
    with an exact sum, so only the terms' exps and this last rounding are errors."""
    lh, ll = log1p_dd(th, tl)
    s, e = _two_sum(m, lh)
    return s + (e + ll)


@njit(cache=_CACHE)
def weighted_value(m, lead, tail, tlo):  # type: ignore[no-untyped-def]
    """(m + log|lead + tail + tlo|, lead + tail) of one weighted state, as ``logsumexp._dd.value``
    computes it: while the lead is within a factor 2 of 1 and the total above 1/2, ``log1p`` of
    ``(lead − 1) + tail`` as a double-double (``lead − 1`` exact, Sterbenz) added to a finite m
    rounded once; elsewhere ``m + log|total|``. +inf entries whose weights cancel give NaN."""
    total = lead + tail
    if 0.5 <= lead <= 2.0 and total > 0.5 and tail < math.inf:
        th, tl = _two_sum(lead - 1.0, tail)
        lh, ll = log1p_dd(th, tl + tlo)
        if math.isfinite(m):
            s, e = _two_sum(m, lh)
            return s + (e + ll), total
        log_sum = lh
    else:
        a = abs(total)
        log_sum = -math.inf if a == 0.0 else math.log(a)
    if m == math.inf and log_sum == -math.inf:
        return math.nan, total
    return m + log_sum, total


@njit(cache=_CACHE)
def lse_1d_weighted(x, b):  # type: ignore[no-untyped-def]
    """(m, lead, total, value) of Σ b_i e^{x_i} over whole contiguous 1-D x and b of one length
    (zero weights take no part, even at ±inf or NaN): the blocked weighted state, the exact scalar
    state for special slices, finished by ``weighted_value``. One compiled call for small inputs."""
    n = x.size
    buf = np.empty(min(n, BLOCK))
    wbuf = np.empty(min(n, BLOCK))
    m, lead, tail, comp = _range_state_dd(x, b, True, 0, n, 1, _ZERO_OFF, 0, n, buf, wbuf)
    if not (math.isfinite(m) and math.isfinite(lead) and math.isfinite(tail) and math.isfinite(comp)):
        m, lead, tail = _special_state(x, b, True, 0, n, 1, _ZERO_OFF, 0, n)
        comp = 0.0
    v, total = weighted_value(m, lead, tail, comp)
    return m, lead, total, v


@njit(inline="always")
def cancels(m, out):  # type: ignore[no-untyped-def]
    """Whether m + log1p(tail) = out cancelled: |out| < |m|/2 with m < 0. The sum's absolute error
    is then about one rounding of log1p(tail) ≈ |m|, more than the 0.5 ulp of out left for it."""
    return m < 0.0 and abs(out) < -0.5 * m


# 1/j! as double-doubles, j = 0..11 (exact rationals split in two doubles at import)
def _inv_factorials() -> np.ndarray:
    from fractions import Fraction

    out = np.empty((12, 2))
    f = Fraction(1)
    for j in range(12):
        if j:
            f /= j
        hi = float(f)
        out[j, 0] = hi
        out[j, 1] = float(f - Fraction(hi))
    return out


_INV_FACT = _inv_factorials()
_EXP_SQUARINGS = 8


@njit(cache=_CACHE)
def exp_dd(dh, dl):  # type: ignore[no-untyped-def]
    """e^(dh + dl) as a double-double, to about 2^-95 relative, for dh <= 709; 0 below -745.

    dh + dl = k ln 2 + r (r in double-double, ln 2 in two parts: k·_LN2_HI is exact), then
    e^{r/256} − 1 by its Taylor series to degree 11 in double-double (|r/256| < 0.0014), squared
    back eight times as (1 + s)² − 1 = 2s + s² (keeps the small s to full relative accuracy),
    and e^r·2^k scaled exactly. About 500 flops: only for the slices that cancel.
    """
    if dh < -745.2:
        return 0.0, 0.0
    k = math.floor(dh * 1.4426950408889634 + 0.5)
    kf = float(k)
    rh = dh - kf * _LN2_HI  # exact: both near each other (Sterbenz), or k = 0
    ph, pl = _two_prod(kf, _LN2_LO)
    rh, rl = _dd_add(rh, dl, -ph, -(pl + kf * _LN2_LO2))
    sc = 2.0 ** -_EXP_SQUARINGS
    rh *= sc
    rl *= sc
    c = _INV_FACT
    sh, sl = c[11, 0], c[11, 1]
    for j in range(10, 0, -1):
        sh, sl = _dd_mul(sh, sl, rh, rl)
        sh, sl = _dd_add(sh, sl, c[j, 0], c[j, 1])
    sh, sl = _dd_mul(sh, sl, rh, rl)  # e^r' − 1
    for _ in range(_EXP_SQUARINGS):
        qh, ql = _dd_mul(sh, sl, sh, sl)
        sh, sl = _dd_add(2.0 * sh, 2.0 * sl, qh, ql)
    eh, el = _dd_add(1.0, 0.0, sh, sl)
    # 2^k in two steps: k may reach -1075 (2^k itself subnormal or 0)
    k1 = k // 2
    s1 = 2.0**k1
    s2 = 2.0 ** (k - k1)
    return (eh * s1) * s2, (el * s1) * s2


@njit(cache=_CACHE)
def log1p_dd_exact(th, tl):  # type: ignore[no-untyped-def]
    """log(1 + th + tl) to about 2^-95 relative: log1p_dd (2^-57) and one Newton step,
    L = L0 + ((1 + t)·e^{−L0} − 1), with e^{−L0} from exp_dd (the step's own error is
    (…)²/2, below 2^-110)."""
    l0h, l0l = log1p_dd(th, tl)
    eh, el = exp_dd(-l0h, -l0l)
    yh, yl = _two_sum(1.0, th)
    yh, yl = _fast_two_sum(yh, yl + tl)
    ph, pl = _dd_mul(yh, yl, eh, el)
    dh, dl = _dd_add(ph, pl, -1.0, 0.0)
    return _dd_add(l0h, l0l, dh, dl)


@njit(cache=_CACHE)
def lse_exact(x):  # type: ignore[no-untyped-def]
    """LogSumExp of a contiguous 1-D slice (finite maximum) with every exp and the sum in
    double-double: m + log1p(Σ_{i≠k} e^{x_i − m}) where each x_i − m is exact (TwoSum), each
    exp carried to 2^-95, the sum compensated, the log1p refined by a Newton step and m added
    exactly. Within one rounding of the exact value even when it cancels to near 0 (an
    almost-normalised distribution: m < 0 and log1p(...) ≈ −m). ~0.2 µs per element."""
    n = x.size
    kmax = 0
    m = np.float64(x[0])
    for i in range(1, n):
        v = np.float64(x[i])
        if v > m:
            m = v
            kmax = i
    sh = 0.0
    sl = 0.0
    for i in range(n):
        if i == kmax:
            continue
        dh, dl = _two_sum(np.float64(x[i]), -m)
        eh, el = exp_dd(dh, dl)
        sh, sl = _dd_add(sh, sl, eh, el)
    lh, ll = log1p_dd_exact(sh, sl)
    r, e = _two_sum(m, lh)
    return r + (e + ll)


@njit(cache=_CACHE)
def finish_values(m, tail, tlo, out):  # type: ignore[no-untyped-def]
    """out[j] = lse_finish(m[j], tail[j], tlo[j]) for finite m[j], else m[j]; returns the indices of
    the slices that cancel (``cancels``), for an exact recomputation by the caller."""
    n = m.size
    flag = np.zeros(n, dtype=np.bool_)
    cnt = 0
    for j in range(n):
        mj = m[j]
        if math.isfinite(mj):
            v = lse_finish(mj, tail[j], tlo[j])
            out[j] = v
            if cancels(mj, v):
                flag[j] = True
                cnt += 1
        else:
            out[j] = mj
    idx = np.empty(cnt, dtype=np.int64)
    c = 0
    for j in range(n):
        if flag[j]:
            idx[c] = j
            c += 1
    return idx
