/* The finish: a state's LogSumExp rounded once, and the exact recompute of slices that cancel.
 *
 * Unweighted: m + log1p(tail + tlo) with log1p in double-double and m added exactly, so that
 * only the terms' exps and the last rounding are errors. A value that cancels against its
 * maximum (m < 0, |value| < |m|/2: the log-normaliser of a nearly normalised distribution) has
 * an absolute error of about one rounding of |m|, many ulps of a value near 0: that slice is
 * recomputed with every x_i - m exact (TwoSum), every exp and the sum in double-double, and
 * log1p refined by a Newton step.
 */
#ifndef LSE_FINISH_H
#define LSE_FINISH_H

#include "fold.h"

static inline double elem(const char *base, int isz, int64_t i) {
    return isz == 8 ? ((const double *)base)[i] : (double)((const float *)base)[i];
}

/* sum_i w_i e^{x_i - m} over a slice with every term in double-double (w NULL: all 1, and the
 * first maximal entry left out, so that the result is the tail) */
static dd exact_sum(const char *base, int isz, int64_t s, int64_t L, const char *wbase, int wsz, double m) {
    dd S = {0.0, 0.0};
    int skipped = wbase != NULL;
    for (int64_t i = 0; i < L; i++) {
        double v = elem(base, isz, i * s);
        double w = wbase ? elem(wbase, wsz, i * s) : 1.0;
        if (v == -LSE_INF || w == 0.0) continue;
        if (!skipped && v == m) { skipped = 1; continue; }
        dd e = exp_dd(two_sum(v, -m));
        if (wbase) {
            dd p = two_prod(e.hi, w);
            p.lo += e.lo * w;
            e = fast_two_sum(p.hi, p.lo);
        }
        S = dd_add(S, e);
    }
    return S;
}

static inline int value_cancels(double m, double v) { return m < 0.0 && lse_fabs(v) < -0.5 * m; }

/* LogSumExp of an unweighted slice from its state (lead 1) */
static double finish_value(lse_state st, const char *base, int isz, int64_t s, int64_t L) {
    if (!lse_isfinite(st.m)) return st.m;
    double v = add_rounded(st.m, log1p_dd((dd){st.tail, st.tlo}));
    if (value_cancels(st.m, v))
        v = add_rounded(st.m, log1p_dd_exact(exact_sum(base, isz, s, L, NULL, 0, st.m)));
    return v;
}

/* log a for a > 0 (subnormal included), to ~2^-62, from log1p_dd */
static inline dd log_dd(double a) {
    double k = 0.0;
    if (a < 0x1p-1000) { a *= 0x1p600; k = -600.0; }
    dd l = log1p_dd(two_sum(a, -1.0));
    if (k != 0.0) l = dd_add(l, dd_add(dd_of(k * LN2_HI), two_prod(k, LN2_LO)));
    return l;
}

/* log|S| for a double-double S != 0 to ~2^-95 */
static inline dd log_abs_exact(dd S) {
    if (S.hi < 0) { S.hi = -S.hi; S.lo = -S.lo; }
    dd t = two_sum(S.hi, -1.0);
    t = fast_two_sum(t.hi, t.lo + S.lo);
    if (S.hi < 0x1p-900) return log_dd(S.hi);
    return log1p_dd_exact(t);
}

/* weighted LogSumExp and the sign of the sum, from a weighted state:
 * m + log|lead + tail|. While the lead is within a factor 2 of 1 and the total above 1/2,
 * log1p((lead - 1) + tail) in double-double (lead - 1 exact: Sterbenz) added to m rounded
 * once; elsewhere m + log|total|. Slices that cancel, the value against m (|v| < |m|/2) or the
 * signed terms against each other (|total| < |lead|/2), are recomputed exactly. */
static void finish_weighted(lse_state st, const char *base, int isz, int64_t s, int64_t L,
                            const char *wbase, int wsz, double *val, double *sign) {
    double m = st.m, total = st.lead + st.tail, v;
    if (m != m || total != total) { *val = LSE_NAN; *sign = LSE_NAN; return; }
    if (m == -LSE_INF) { *val = -LSE_INF; *sign = 0.0; return; }
    if (0.5 <= st.lead && st.lead <= 2.0 && total > 0.5 && st.tail < LSE_INF) {
        dd th = two_sum(st.lead - 1.0, st.tail);
        dd l = log1p_dd((dd){th.hi, th.lo + st.tlo});
        v = lse_isfinite(m) ? add_rounded(m, l) : m + l.hi;
    } else {
        double a = lse_fabs(total);
        double log_sum = a == 0.0 ? -LSE_INF : a == LSE_INF ? LSE_INF : log_dd(a).hi;
        v = (m == LSE_INF && log_sum == -LSE_INF) ? LSE_NAN : m + log_sum;
    }
    double sg = v != v ? LSE_NAN : total > 0 ? 1.0 : total < 0 ? -1.0 : 0.0;
    int cancels = lse_isfinite(m) && lse_isfinite(total)
                  && ((lse_isfinite(v) && lse_fabs(v) < 0.5 * lse_fabs(m)) || lse_fabs(total) < 0.5 * lse_fabs(st.lead));
    if (cancels) {
        dd S = exact_sum(base, isz, s, L, wbase, wsz, m);
        if (S.hi == 0.0) { v = -LSE_INF; sg = 0.0; }
        else { v = add_rounded(m, log_abs_exact(S)); sg = S.hi > 0 ? 1.0 : -1.0; }
    }
    *val = v;
    *sign = sg;
}

/* ---------------------------------------------------------------- short rows, W at a time
 *
 * Rows of L <= LANES elements (e.g. [1000, 5]) pay the general fold's fixed cost per row (16
 * lanes, their double-double total, the bookkeeping of an item): here W rows are computed side
 * by side, one row per hardware lane, with exactly the general path's arithmetic. For such a row
 * the fold puts element i alone in virtual lane i, so its block sum is the lanes' (term, error)
 * pairs added in index order (empty lanes skipped: adding (0, 0) changes nothing), scaled by
 * 2^-54 and added to the count of entries at the maximum; these steps are repeated below, per
 * element, on vectors of rows. The maximum is found in index order with the same strict compare
 * (the first of equal entries wins, as in block_max). A row whose maximum or sum is not finite
 * (NaN, +inf, all -inf) and the rows left over after the last full set of W go through the
 * general path. Same bits as fold_range + finish_value, on every target (tests/test_cpu_fast.py).
 */

/* dd_add on vectors: the same operations, lane by lane */
static inline void vdd_add(vd ah, vd al, vd bh, vd bl, vd *rh, vd *rl) {
    vd sh = ah + bh, sb = sh - ah;
    vd sl = (ah - (sh - sb)) + (bh - sb);
    vd th = al + bl, tb = th - al;
    vd tl = (al - (th - tb)) + (bl - tb);
    sl += th;
    vd u = sh + sl;
    sl = sl - (u - sh);
    sh = u;
    sl += tl;
    u = sh + sl;
    *rl = sl - (u - sh);
    *rh = u;
}

/* element i of W rows starting at row j (offsets koff, in elements) as float64 */
static inline vd vcolumn(const char *x, int isz, const int64_t *koff, int64_t j, int64_t i) {
    vd v;
    for (int l = 0; l < W; l++) v[l] = elem(x, isz, koff[j + l] + i);
    return v;
}

/* the (m, S) of W short rows, S the fold's sum of e^{x_i - m} (count at m included) */
static inline void short_rows_fold(const char *x, int isz, const int64_t *koff, int64_t j, int64_t L, vd *m,
                                   vd *Sh, vd *Sl) {
    vd mv = vsplat(-LSE_INF);
    for (int64_t i = 0; i < L; i++) mv = vmax(vcolumn(x, isz, koff, j, i), mv);
    vd ah = vsplat(0.0), al = vsplat(0.0), cnt = vsplat(0.0);
    if (isz == 8) {
        for (int64_t i = 0; i < L; i++) {
            vd s = vsplat(0.0), c = vsplat(0.0);
            add_terms54(vcolumn(x, isz, koff, j, i), mv, &s, &c, &cnt);
            vd rh, rl;
            vdd_add(ah, al, s, c, &rh, &rl);
            vi keep = veq(s, vsplat(0.0)) & veq(c, vsplat(0.0)); /* an empty lane is skipped */
            ah = vsel(keep, ah, rh);
            al = vsel(keep, al, rl);
        }
        ah *= 0x1p-54;
        al *= 0x1p-54;
        vd bh, bl;
        vdd_add(cnt, vsplat(0.0), ah, al, &bh, &bl); /* dd_add(dd_of(count), tail) */
        ah = bh;
        al = bl;
    } else {
        vd s = vsplat(0.0);
        for (int64_t i = 0; i < L; i++) {
            vd t = vsplat(0.0);
            add_terms_lo(vcolumn(x, isz, koff, j, i), mv, &t, &cnt);
            s += t; /* lanes_sum in lane (= index) order */
        }
        vd sh = cnt + s, sb = sh - cnt; /* two_sum(count, sum) */
        al = (cnt - (sh - sb)) + (s - sb);
        ah = sh;
    }
    vdd_add(vsplat(0.0), vsplat(0.0), ah, al, Sh, Sl); /* the fold's S = (0, 0) + block sum */
    *m = mv;
}


static inline vd vabs(vd a) { return (vd)((vi)a & (vi)vsplat(f_from_bits(0x7FFFFFFFFFFFFFFFull))); }
static inline vi vge(vd a, vd b) { return (vi)(a >= b); }

/* two_prod on vectors (the same guard: operands too large to split keep the product alone) */
static inline void vtwo_prod(vd a, vd b, vd *ph, vd *pl) {
    vd p = a * b;
    vi ok = vlt(vabs(a), vsplat(0x1p995)) & vlt(vabs(b), vsplat(0x1p995));
    vd at = 134217729.0 * a, ah = at - (at - a), al = a - ah;
    vd bt = 134217729.0 * b, bh = bt - (bt - b), bl = b - bh;
    vd e = (((ah * bh - p) + ah * bl) + al * bh) + al * bl;
    *ph = p;
    *pl = vsel(ok, e, vsplat(0.0));
}

/* 2^e for vectors of integers -1022 <= e <= 1023, exactly (pow2i) */
static inline vd vpow2i(vi e) { return (vd)((e + 1023) << 52); }

/* log1p_dd on vectors, for tails t >= 0 (1 + t normal): the same operations, lane by lane */
static inline void vlog1p_dd(vd th, vd tl, vd *rh, vd *rl) {
    vd one = vsplat(1.0);
    vd sh = one + th, sb = sh - one;
    vd sl = (one - (sh - sb)) + (th - sb);
    vd b = sl + tl, u = sh + b;
    sl = b - (u - sh);
    sh = u;
    vi k = (((vi)sh >> 52) & 0x7FF) - 1023;
    vd f1 = sh * vpow2i(-(k / 2)) * vpow2i(-(k - k / 2));
    k -= (vi)(f1 >= vsplat(1.4142135623730951)); /* a true compare is -1 */
    vd s1 = vpow2i(-(k / 2)), s2 = vpow2i(-(k - k / 2));
    vd fh = sh * s1 * s2, fl = sl * s1 * s2;
    vd d = fh - 1.0;
    vd nh = d + fl;
    vd nl = vsel(vge(vabs(d), vabs(fl)), fl - (nh - d), d - (nh - fl));
    vd dh = fh + 1.0, db = dh - fh;
    vd dl = (fh - (dh - db)) + (1.0 - db);
    b = dl + fl;
    u = dh + b;
    dl = b - (u - dh);
    dh = u;
    /* dd_div(num, den) */
    vd q = nh / dh, ph, pl;
    vtwo_prod(q, dh, &ph, &pl);
    vd r = (((nh - ph) - pl) + nl) - q * dl;
    vd c = r / dh;
    vd uh = q + c, ul = c - (uh - q);
    vd u2 = uh * uh;
    vd p = vsplat(1.0 / 25.0);
    p = p * u2 + 1.0 / 23.0;
    p = p * u2 + 1.0 / 21.0;
    p = p * u2 + 1.0 / 19.0;
    p = p * u2 + 1.0 / 17.0;
    p = p * u2 + 1.0 / 15.0;
    p = p * u2 + 1.0 / 13.0;
    p = p * u2 + 1.0 / 11.0;
    p = p * u2 + 1.0 / 9.0;
    p = p * u2 + 1.0 / 7.0;
    p = p * u2 + 1.0 / 5.0;
    p = p * u2 + 1.0 / 3.0;
    vd rest = 2.0 * uh * (u2 * p);
    vd a = 2.0 * uh, bb = 2.0 * ul + rest;
    vd lh = a + bb, ll = bb - (lh - a);
    /* k != 0: + k ln 2 in three parts */
    vd kf = __builtin_convertvector(k, vd), ah, al;
    vtwo_prod(kf, vsplat(LN2_LO), &ah, &al);
    vd hh = kf * LN2_HI, hl = al + kf * LN2_LO2, xh, xl;
    vdd_add(hh, hl, lh, ll, &xh, &xl);
    vdd_add(xh, xl, ah, vsplat(0.0), &xh, &xl);
    vi nz = vne(kf, vsplat(0.0));
    *rh = vsel(nz, xh, lh);
    *rl = vsel(nz, xl, ll);
}

/* the states of W short rows starting at row j (as fold_range gives them: special rows through
 * fold_range itself); buf: BLOCK doubles of scratch */
static void short_rows_states(const char *x, int isz, const int64_t *koff, int64_t j, int64_t L, lse_state *st,
                              double *buf) {
    vd m, Sh, Sl;
    short_rows_fold(x, isz, koff, j, L, &m, &Sh, &Sl);
    vd th = Sh - 1.0, tb = th - Sh; /* two_sum(S.hi, -1), then fast_two_sum(t.hi, t.lo + S.lo) */
    vd tl = (Sh - (th - tb)) + (-1.0 - tb);
    vd b = tl + Sl, u = th + b;
    tl = b - (u - th);
    th = u;
    for (int l = 0; l < W; l++) {
        if (lse_isfinite(m[l]) && Sh[l] == Sh[l] && Sl[l] == Sl[l])
            st[l] = (lse_state){m[l], 1.0, th[l], tl[l]};
        else
            st[l] = fold_range(x + koff[j + l] * isz, isz, 1, 0, L, NULL, 0, buf, NULL);
    }
}

/* LogSumExp of rows [lo, hi) (row j at element offset koff[j], unit stride, length L <= LANES)
 * into out[j], rounded once as finish_value; buf: BLOCK doubles of scratch */
static void short_rows_values(const char *x, int isz, const int64_t *koff, int64_t L, int64_t lo, int64_t hi,
                              double *out, double *buf) {
    int64_t j = lo;
    for (; j + W <= hi; j += W) {
        vd m, Sh, Sl;
        short_rows_fold(x, isz, koff, j, L, &m, &Sh, &Sl);
        /* the state's tail: two_sum(S.hi, -1), then fast_two_sum(t.hi, t.lo + S.lo) */
        vd th = Sh - 1.0, tb = th - Sh;
        vd tl = (Sh - (th - tb)) + (-1.0 - tb);
        vd b = tl + Sl, u = th + b;
        tl = b - (u - th);
        th = u;
        /* finish_value's common case: m + log1p(tail), rounded once (add_rounded) */
        vd lh, ll;
        vlog1p_dd(th, tl, &lh, &ll); /* special lanes compute garbage here, redone below */
        vd vh = m + lh, vb = vh - m;
        vd vl = (m - (vh - vb)) + (lh - vb);
        vd v = vh + (vl + ll);
        for (int l = 0; l < W; l++) {
            double ml = m[l];
            if (lse_isfinite(ml) && Sh[l] == Sh[l] && Sl[l] == Sl[l] && !value_cancels(ml, v[l])) {
                out[j + l] = v[l];
                continue;
            }
            const char *base = x + koff[j + l] * isz;
            lse_state st = {ml, 1.0, th[l], tl[l]};
            if (!(lse_isfinite(ml) && Sh[l] == Sh[l] && Sl[l] == Sl[l]))
                st = fold_range(base, isz, 1, 0, L, NULL, 0, buf, NULL);
            out[j + l] = finish_value(st, base, isz, 1, L);
        }
    }
    for (; j < hi; j++) {
        const char *base = x + koff[j] * isz;
        out[j] = finish_value(fold_range(base, isz, 1, 0, L, NULL, 0, buf, NULL), base, isz, 1, L);
    }
}

#endif
