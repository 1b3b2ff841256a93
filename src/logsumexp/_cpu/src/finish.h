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

#endif
