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

#include "finish.h"

static void segment_states(const char *x, int isz, int64_t N, int64_t F, const int64_t *ids, int64_t nseg,
                           double *m, double *lead, double *tail, double *tlo) {
    int64_t ns = nseg * F;
    for (int64_t k = 0; k < ns; k++) { m[k] = -LSE_INF; lead[k] = 0.0; tail[k] = 0.0; tlo[k] = 0.0; }
    int64_t total = N * F;
    /* pass 1: maxima; NaN entries mark their group (lead = NaN) */
    for (int64_t i = 0; i < N; i++) {
        double *mr = m + ids[i] * F, *lr = lead + ids[i] * F;
        for (int64_t f = 0; f < F; f++) {
            double v = elem(x, isz, i * F + f);
            mr[f] = v > mr[f] ? v : mr[f];
            lr[f] = v != v ? LSE_NAN : lr[f];
        }
    }
    /* pass 2: e^{x - m} a vector at a time, added in index order */
    double d[W], dl[W];
    int64_t g[W];
    for (int64_t j0 = 0; j0 < total; j0 += W) {
        int n = total - j0 < W ? (int)(total - j0) : W;
        for (int l = 0; l < n; l++) {
            int64_t j = j0 + l, k = ids[j / F] * F + j % F;
            double v = elem(x, isz, j), mk = m[k];
            g[l] = k;
            d[l] = lse_isfinite(mk) && v < mk ? v - mk : -LSE_INF; /* the max's own entries apart */
            dl[l] = lse_isfinite(mk) && v < mk && v > -LSE_INF ? two_sum(v, -mk).lo : 0.0; /* the rounding of v - m */
            lead[k] += lse_isfinite(mk) ? (v == mk) : (v == LSE_INF); /* NaN stays NaN */
        }
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
    for (int64_t k = 0; k < ns; k++) {
        if (lead[k] != lead[k]) { m[k] = LSE_NAN; tail[k] = LSE_NAN; tlo[k] = 0.0; continue; }
        if (m[k] == LSE_INF) { tail[k] = 0.0; tlo[k] = 0.0; continue; } /* lead: the +inf count */
        dd t = fast_two_sum(tail[k], tlo[k]);
        tail[k] = t.hi;
        tlo[k] = t.lo;
    }
}

#endif
