/* Grouped states: rows of x (N rows of F contiguous entries) go to segment ids[i]; the state of
 * (segment s, column f) gathers x[i, f] for every row i with ids[i] = s, in row order.
 *
 * Two passes over the data, any order of the ids (sorted or not): the maxima (scatter), then
 * each entry's e^{x - m} added to its group in row order (TwoSum per add for float64 data), with
 * the entries equal to the maximum counted apart (lead = their count, so the maximum's terms of
 * exactly 1 never swamp a small tail). The exps are computed W at a time and added one by
 * one in index order: the same bits on every target. Special groups (a NaN, +inf entries) are
 * finished apart: NaN, or m = +inf with lead = the count of +inf entries.
 */
#ifndef LSE_SEGMENT_H
#define LSE_SEGMENT_H

#include "softmax.h"

/* add e^{d[l] + dl[l]} to tail[g[l]] for l < n, in order (float64: TwoSum into (tail, tlo)) */
static inline void segment_add_terms(int isz, const double *d, const double *dl, const int64_t *g, int n,
                                     double *tail, double *tlo) {
    vd dv = vload(d, n, -LSE_INF), hv, lv;
    if (isz == 8) {
        vexp_split54(dv, &hv, &lv);
        for (int l = 0; l < n; l++) {
            /* (hi + lo) 2^-54 into (tail, tlo) with TwoSum */
            double h = hv[l] * 0x1p-54, lo = lv[l] * 0x1p-54;
            lo += (h + lo) * dl[l]; /* e^{d + dl} = e^d (1 + dl) */
            dd e = fast_two_sum(h, lo);
            dd s = two_sum(tail[g[l]], e.hi);
            tail[g[l]] = s.hi;
            tlo[g[l]] += s.lo + e.lo;
        }
    } else {
        vd ev = vexp_lo(dv);
        for (int l = 0; l < n; l++) tail[g[l]] += ev[l];
    }
}

static void segment_states(const char *x, int isz, int64_t N, int64_t F, const int64_t *ids, int64_t nseg,
                           double *m, double *lead, double *tail, double *tlo) {
    int64_t ns = nseg * F;
    for (int64_t k = 0; k < ns; k++) { m[k] = -LSE_INF; lead[k] = 0.0; tail[k] = 0.0; tlo[k] = 0.0; }
    /* pass 1: maxima; NaN entries mark their group (lead = NaN) */
    for (int64_t i = 0; i < N; i++) {
        double *mr = m + ids[i] * F, *lr = lead + ids[i] * F;
        for (int64_t f = 0; f < F; f++) {
            double v = elem(x, isz, i * F + f);
            mr[f] = v > mr[f] ? v : mr[f];
            lr[f] = v != v ? LSE_NAN : lr[f];
        }
    }
    /* pass 2: e^{x - m} a vector at a time, added in index order (rows and columns counted, not
     * divided out of a flat index: a 64-bit division per entry cost more than its exp) */
    double d[W], dl[W];
    int64_t g[W];
    int n = 0;
    for (int64_t i = 0; i < N; i++) {
        int64_t kb = ids[i] * F;
        for (int64_t f = 0; f < F; f++) {
            int64_t k = kb + f;
            double v = elem(x, isz, i * F + f), mk = m[k];
            g[n] = k;
            d[n] = lse_isfinite(mk) && v < mk ? v - mk : -LSE_INF; /* the max's own entries apart */
            dl[n] = lse_isfinite(mk) && v < mk && v > -LSE_INF ? two_sum(v, -mk).lo : 0.0; /* the rounding of v - m */
            lead[k] += lse_isfinite(mk) ? (v == mk) : (v == LSE_INF); /* NaN stays NaN */
            if (++n == W || (i == N - 1 && f == F - 1)) {
                segment_add_terms(isz, d, dl, g, n, tail, tlo);
                n = 0;
            }
        }
    }
    for (int64_t k = 0; k < ns; k++) {
        if (lead[k] != lead[k]) { m[k] = LSE_NAN; tail[k] = LSE_NAN; tlo[k] = 0.0; continue; }
        if (m[k] == LSE_INF) { tail[k] = 0.0; tlo[k] = 0.0; continue; } /* lead: the +inf count */
        dd t = fast_two_sum(tail[k], tlo[k]);
        tail[k] = t.hi;
        tlo[k] = t.lo;
    }
}

/* ---------------------------------------------------------------- the torch face's fused kernels
 *
 * segment_consts: from a group's state, den = lead + tail (double-double), c = log(den) (double-
 * double: log1p((lead - 1) + tail) so that a dominant maximum keeps its small correction) and the
 * group's LogSumExp v = m + c rounded once (float64) or in float64 (float32 data).
 * Special groups: all -inf or empty (den 1, c 0, v -inf); k entries +inf (den k, c log k, v +inf);
 * NaN (v NaN).
 */
static void segment_consts(const double *m, const double *lead, const double *tail, const double *tlo, int64_t ns,
                           double *dhi, double *dlo, double *chi, double *clo, double *v) {
    for (int64_t k = 0; k < ns; k++) {
        double mk = m[k];
        dd den = {1.0, 0.0}, c = {0.0, 0.0};
        if (mk == LSE_INF) {
            den.hi = lead[k];
            c = log_dd(lead[k]);
        } else if (lse_isfinite(mk)) {
            den = two_sum(lead[k], tail[k]);
            den = fast_two_sum(den.hi, den.lo + tlo[k]);
            dd t = two_sum(lead[k] - 1.0, tail[k]); /* lead - 1 is exact (a small count) */
            c = log1p_dd(fast_two_sum(t.hi, t.lo + tlo[k]));
        }
        dhi[k] = den.hi; dlo[k] = den.lo; chi[k] = c.hi; clo[k] = c.lo;
        v[k] = lse_isfinite(mk) ? add_rounded(mk, c) : mk;
    }
}

/* the finished values of n (< W) gathered entries x (group constants gathered alongside), kind
 * 0 softmax, 1 log-softmax, 2 softmax times gk (the LogSumExp's gradient; 0 where the softmax
 * is 0, even for an infinite gk). Groups with a finite maximum only: the caller patches the rest. */
static inline vd segment_entries(int isz, int kind, vd xv, vd mv, vd dh0, vd dl0, vd ch, vd cl, vd gk) {
    vd dh = xv - mv, bb = dh - xv;
    vd dl = (xv - (dh - bb)) + (-mv - bb); /* TwoSum(x, -m): x - m = dh + dl exactly */
    dl = vsel(veq(dl, dl), dl, vsplat(0.0)); /* x = -inf: the entry is -inf */
    vd out;
    if (kind == 1) {
        if (isz == 4) return dh - ch;
        vd r = dh - ch, b2 = r - dh;
        vd e = (dh - (r - b2)) + (-ch - b2); /* TwoSum(dh, -c) */
        return vsel(veq(r, vsplat(-LSE_INF)), r, r + (e + (dl - cl)));
    }
    if (isz == 4) {
        out = vexp_lo(dh) / dh0;
    } else {
        vd hi, lo;
        vexp_split54(dh, &hi, &lo);
        hi *= 0x1p-54;
        lo *= 0x1p-54;
        vd eh = hi + lo;
        vd el = (lo - (eh - hi)) + eh * dl; /* e^{dh + dl} = (hi + lo)(1 + dl) */
        /* the quotient by den = d0 + d1, corrected by its exact remainder (Dekker) */
        vd q = eh / dh0;
        vd dt = 134217729.0 * dh0, dsh = dt - (dt - dh0), dsl = dh0 - dsh;
        vd qt = 134217729.0 * q, qh = qt - (qt - q), ql = q - qh;
        vd pq = q * dh0;
        vd perr = ((qh * dsh - pq) + qh * dsl + ql * dsh) + ql * dsl;
        vd r = (eh - pq) - perr;
        out = q + ((r + el) - q * dl0) / dh0;
    }
    if (kind == 2) out = vsel(veq(out, vsplat(0.0)), out, out * gk);
    return out;
}

/* the same for an entry of a group whose maximum is not finite (NaN, all -inf, +inf entries) */
static inline double segment_special(int kind, double x, double mk, double den, double c, double gk) {
    if (mk != mk) return LSE_NAN;
    int on = mk == LSE_INF && x == LSE_INF; /* one of the k +inf entries: 1/k */
    if (kind == 1) return on ? -c : -LSE_INF;
    if (!on) return 0.0;
    return kind == 2 ? gk / den : 1.0 / den;
}

/* out[i, f] for rows [lo, hi): kind as in segment_entries; g (kind 2) the gradient of each
 * group's LogSumExp, float64, of the constants' shape. Entries are independent: threads split rows. */
static void segment_write(const char *x, int isz, int64_t F, const int64_t *ids, const double *m, const double *dhi,
                          const double *dlo, const double *chi, const double *clo, const double *g, int kind,
                          char *out, int64_t lo, int64_t hi) {
    double xb[W], mb[W], b0[W], b1[W], b2[W], b3[W], gb[W];
    int64_t jb[W];
    int n = 0;
    for (int64_t i = lo; i < hi; i++) {
        int64_t base = ids[i] * F;
        for (int64_t f = 0; f < F; f++) {
            int64_t k = base + f, j = i * F + f;
            jb[n] = j;
            xb[n] = elem(x, isz, j); mb[n] = m[k];
            b0[n] = dhi[k]; b1[n] = dlo[k]; b2[n] = chi[k]; b3[n] = clo[k];
            gb[n] = kind == 2 ? g[k] : 0.0;
            if (++n == W || (i == hi - 1 && f == F - 1)) {
                /* padding lanes: a harmless finite group */
                vd r = segment_entries(isz, kind, vload(xb, n, 0.0), vload(mb, n, 0.0), vload(b0, n, 1.0),
                                       vload(b1, n, 0.0), vload(b2, n, 0.0), vload(b3, n, 0.0), vload(gb, n, 0.0));
                for (int l = 0; l < n; l++) {
                    double o = lse_isfinite(mb[l]) ? r[l] : segment_special(kind, xb[l], mb[l], b0[l], b2[l], gb[l]);
                    put(out, isz, jb[l], o);
                }
                n = 0;
            }
        }
    }
}

/* The backward of the normalised forms, from the forward's output y and the gradient g (both of
 * x's dtype and layout), summed per group in float64 in row order:
 *   softmax      gx = y (g - S[id]),  S = sum_group g y   (0 where y = 0: no part, no gradient)
 *   log_softmax  gx = g - e^y S[id],  S = sum_group g
 * segment_bwd_sums: S for every group (serial: a scatter); segment_bwd_write: rows [lo, hi). */
static void segment_bwd_sums(const char *y, const char *g, int isz, int64_t N, int64_t F, const int64_t *ids,
                             int64_t ns, int log, double *S) {
    for (int64_t k = 0; k < ns; k++) S[k] = 0.0;
    for (int64_t i = 0; i < N; i++) {
        double *Sr = S + ids[i] * F;
        for (int64_t f = 0; f < F; f++) {
            double gv = elem(g, isz, i * F + f), yv = elem(y, isz, i * F + f);
            Sr[f] += log ? gv : (yv == 0.0 ? 0.0 : yv * gv);
        }
    }
}

static void segment_bwd_write(const char *y, const char *g, int isz, int64_t F, const int64_t *ids, const double *S,
                              int log, char *gx, int64_t lo, int64_t hi) {
    double yb[W], gb[W], sb[W];
    int64_t jb[W];
    int n = 0;
    for (int64_t i = lo; i < hi; i++) {
        const double *Sr = S + ids[i] * F;
        for (int64_t f = 0; f < F; f++) {
            int64_t j = i * F + f;
            jb[n] = j;
            yb[n] = elem(y, isz, j); gb[n] = elem(g, isz, j); sb[n] = Sr[f];
            if (++n == W || (i == hi - 1 && f == F - 1)) {
                vd yv = vload(yb, n, 0.0), gv = vload(gb, n, 0.0), sv = vload(sb, n, 0.0), r;
                if (log) {
                    vd p;
                    if (isz == 8) {
                        vd h, l;
                        vexp_split54(yv, &h, &l);
                        p = (h + l) * 0x1p-54;
                    } else {
                        p = vexp_lo(yv);
                    }
                    r = vsel(veq(p, vsplat(0.0)), gv, gv - p * sv);
                } else {
                    r = vsel(veq(yv, vsplat(0.0)), vsplat(0.0), yv * (gv - sv));
                }
                for (int l = 0; l < n; l++) put(gx, isz, jb[l], r[l]);
                n = 0;
            }
        }
    }
}

#endif
