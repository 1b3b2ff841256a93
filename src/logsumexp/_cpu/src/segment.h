/* Grouped states: rows of x (N rows of F contiguous entries) go to segment ids[i]; the state of
 * (segment s, column f) gathers x[i, f] for every row i with ids[i] = s, in row order.
 *
 * float64 data: two passes over the data, any order of the ids (sorted or not): the maxima
 * (scatter), then each entry's e^{x - m} added to its group in row order (TwoSum per add), with
 * the entries equal to the maximum counted apart (lead = their count, so the maximum's terms of
 * exactly 1 never swamp a small tail). float32 data: the terms summed in float64, one pass for
 * one column (the tail rescaled when the maximum grows), two for rows of F columns. The exps
 * are computed W at a time and added one by one in index order: the same bits on every target
 * and for any number of threads (threads own ranges of groups). Special groups (a NaN, +inf
 * entries) are finished apart: NaN, or m = +inf with lead = the count of +inf entries.
 * CSR offsets of long groups take the row kernels' fold instead (segment_csr_*, at the end).
 */
#ifndef LSE_SEGMENT_H
#define LSE_SEGMENT_H

#include <stdlib.h>

#include "softmax.h"

/* Entries are gathered (scalar loads through the ids) into buffers of SEG_BLK, then computed a
 * vector at a time: a vector load right after the W scalar stores that filled it stalls on
 * store forwarding (measured: 38 % of the write pass's samples on that one load). */
#define SEG_BLK 256

/* With ids in random order every entry's group is a cache miss (a state of 1e5 groups is 1.6-3.2
 * MB): the group of the row SEG_PF ahead is prefetched, so that its line is on the way while this
 * row is handled (measured: 44 % of the write pass's samples on the gather's load without it).
 * A prefetch changes no result. */
#define SEG_PF 32
#define SEG_PREFETCH(base, i, end, stride, rw) \
    do { if ((i) + SEG_PF < (end)) __builtin_prefetch((base) + ids[(i) + SEG_PF] * (stride), (rw), 1); } while (0)

/* add e^{d[l] + dl[l]} to the tail of state g[l] for l < n, in order (float64: TwoSum into
 * (tail, tlo)); st holds (m, lead, tail, tlo) per group, interleaved */
static inline void segment_add_terms(int isz, const double *d, const double *dl, const int64_t *g, int n,
                                     double *st) {
    vd dv = vload(d, n, -LSE_INF), hv, lv;
    if (isz == 8) {
        vexp_split54(dv, &hv, &lv);
        for (int l = 0; l < n; l++) {
            /* (hi + lo) 2^-54 into (tail, tlo) with TwoSum */
            double h = hv[l] * 0x1p-54, lo = lv[l] * 0x1p-54, *sk = st + 4 * g[l];
            lo += (h + lo) * dl[l]; /* e^{d + dl} = e^d (1 + dl) */
            dd e = fast_two_sum(h, lo);
            dd s = two_sum(sk[2], e.hi);
            sk[2] = s.hi;
            sk[3] += s.lo + e.lo;
        }
    } else {
        vd ev = vexp_lo(dv);
        for (int l = 0; l < n; l++) st[4 * g[l] + 2] += ev[l];
    }
}

/* The rows of [0, N) whose group lies in [glo, hi) among rows [i0, i0 + nb): their indices into
 * rb, in order, without a branch per row (threads own ranges of groups, so that every group's
 * sum is taken in row order by one thread: the same bits for any number of threads). */
static inline int segment_own_rows(const int64_t *ids, int64_t i0, int nb, int64_t glo, int64_t ghi, int64_t *rb) {
    int n = 0;
    uint64_t span = (uint64_t)(ghi - glo);
    for (int l = 0; l < nb; l++) {
        rb[n] = i0 + l;
        n += (uint64_t)(ids[i0 + l] - glo) < span;
    }
    return n;
}

typedef struct { float m; uint32_t c; double t; } seg_acc; /* a group's one-pass float32 state */

/* float32 data, groups [glo, ghi): the state with the terms in float64 (no rounding of x - m to
 * carry, no double-double tail), lead and tail in their own arrays, rows of F entries handled as
 * vectors over f. Every exp lane by lane and every sum in row order: the bits do not depend on
 * the vector width or on the split of the groups over threads. Finished as segment_states does. */
static void segment_states_f32(const float *x, int64_t N, int64_t F, const int64_t *ids, int64_t glo, int64_t ghi,
                               double *m, double *lead, double *tail, double *tlo) {
    for (int64_t k = glo * F; k < ghi * F; k++) { m[k] = -LSE_INF; lead[k] = 0.0; tail[k] = 0.0; }
    int64_t rb[SEG_BLK];
    seg_acc *acc = F == 1 ? (seg_acc *)malloc((size_t)(ghi - glo > 0 ? ghi - glo : 1) * sizeof(seg_acc)) : NULL;
    if (acc) {
        /* one entry a row (a graph's edges): ONE pass, each group's (max, count at the max, tail) on
         * 16 bytes (the max of float32 data is a float32), the tail rescaled when the max grows:
         *   x > m:  tail = (tail + count) e^{m - x}, m = x, count = 1;   x = m: count + 1;
         *   x < m:  tail += e^{x - m}
         * One exp per entry, e^{-|x - m|} against the max gathered for a block, computed W at a time;
         * an entry whose group's max moved within the block is redone alone. Every group is
         * summed in row order: the bits do not depend on the vector width or the threads. */
        for (int64_t k = 0; k < ghi - glo; k++) { acc[k].m = -__builtin_inff(); acc[k].c = 0; acc[k].t = 0.0; }
        double xb[SEG_BLK], mb[SEG_BLK], eb[SEG_BLK];
        for (int64_t i0 = 0; i0 < N; i0 += SEG_BLK) {
            int nb = segment_own_rows(ids, i0, N - i0 < SEG_BLK ? (int)(N - i0) : SEG_BLK, glo, ghi, rb);
            for (int l = 0; l < nb; l++) {
                if (l + SEG_PF < nb) __builtin_prefetch(acc + (ids[rb[l + SEG_PF]] - glo), 1, 1);
                xb[l] = (double)x[rb[l]];
                mb[l] = (double)acc[ids[rb[l]] - glo].m;
            }
            for (int l0 = 0; l0 < nb; l0 += W) {
                int n = nb - l0 < W ? nb - l0 : W;
                vd xv = vload(xb + l0, n, 0.0), mv = vload(mb + l0, n, 0.0);
                vstore(eb + l0, vexp_lo(vsel(vgt(xv, mv), mv - xv, xv - mv)), n); /* e^{-|x - m|} */
            }
            for (int l = 0; l < nb; l++) {
                seg_acc *p = acc + (ids[rb[l]] - glo);
                double v = xb[l], mk = (double)p->m;
                double e = mk == mb[l] ? eb[l] : exp_lo(v > mk ? mk - v : v - mk);
                if (v > mk) { p->t = (p->t + (double)p->c) * e; p->m = (float)v; p->c = 1; }
                else if (v == mk) p->c += 1;
                else p->t += e; /* a NaN entry lands here: e is NaN */
            }
        }
        for (int64_t k = 0; k < ghi - glo; k++) {
            m[glo + k] = (double)acc[k].m;
            lead[glo + k] = acc[k].m == -__builtin_inff() ? 0.0 : (double)acc[k].c;
            tail[glo + k] = acc[k].t;
        }
        free(acc);
    } else {
        /* rows of F (or F = 1 without memory for the scratch): ONE pass too, the same update as
         * vectors along f, on the output arrays themselves (a row's m, count and tail: 3 lines) */
        double xb[W];
        for (int64_t i0 = 0; i0 < N; i0 += SEG_BLK) {
            int nr = segment_own_rows(ids, i0, N - i0 < SEG_BLK ? (int)(N - i0) : SEG_BLK, glo, ghi, rb);
            for (int r = 0; r < nr; r++) {
                if (r + SEG_PF < nr) {
                    int64_t kp = ids[rb[r + SEG_PF]] * F;
                    __builtin_prefetch(m + kp, 1, 1);
                    __builtin_prefetch(tail + kp, 1, 1);
                    __builtin_prefetch(lead + kp, 1, 1);
                }
                int64_t i = rb[r], kb = ids[i] * F;
                for (int64_t f0 = 0; f0 < F; f0 += W) {
                    int n = F - f0 < W ? (int)(F - f0) : W;
                    for (int l = 0; l < n; l++) xb[l] = (double)x[i * F + f0 + l];
                    vd xv = vload(xb, n, 0.0), mv = vload(m + kb + f0, n, 0.0);
                    vd cv = vload(lead + kb + f0, n, 0.0), tv = vload(tail + kb + f0, n, 0.0);
                    vi gt = vgt(xv, mv), eq = veq(xv, mv);
                    vd e = vexp_lo(vsel(gt, mv - xv, xv - mv)); /* e^{-|x - m|} */
                    e = vsel(vne(xv, xv), xv, e);                /* a NaN entry: a NaN tail */
                    vstore(tail + kb + f0, vsel(gt, (tv + cv) * e, vsel(eq, tv, tv + e)), n);
                    vstore(lead + kb + f0, vsel(gt, vsplat(1.0), cv + vsel(eq, vsplat(1.0), vsplat(0.0))), n);
                    vstore(m + kb + f0, vsel(gt, xv, mv), n);
                }
            }
        }
        for (int64_t k = glo * F; k < ghi * F; k++) lead[k] = m[k] == -LSE_INF ? 0.0 : lead[k];
    }
    for (int64_t k = glo * F; k < ghi * F; k++) {
        tlo[k] = 0.0;
        if (lead[k] != lead[k] || tail[k] != tail[k]) { m[k] = LSE_NAN; tail[k] = LSE_NAN; lead[k] = LSE_NAN; }
        else if (m[k] == LSE_INF) tail[k] = 0.0; /* lead: the +inf count */
    }
}

/* The states of every group. The four numbers of a group are kept together in a scratch (one
 * cache line holds two groups): with ids in random order each entry then costs one miss, not
 * one per array (measured 1e7 float32 entries in 1e5 groups: 365-546 ms with four arrays). */
static void segment_states(const char *x, int isz, int64_t N, int64_t F, const int64_t *ids, int64_t nseg,
                           double *m, double *lead, double *tail, double *tlo) {
    int64_t ns = nseg * F;
    if (isz == 4) {
        segment_states_f32((const float *)x, N, F, ids, 0, nseg, m, lead, tail, tlo);
        return;
    }
    double *st = (double *)malloc((size_t)(ns > 0 ? ns : 1) * 4 * sizeof(double));
    if (!st) { for (int64_t k = 0; k < ns; k++) m[k] = lead[k] = tail[k] = tlo[k] = LSE_NAN; return; }
    for (int64_t k = 0; k < ns; k++) { st[4 * k] = -LSE_INF; st[4 * k + 1] = st[4 * k + 2] = st[4 * k + 3] = 0.0; }
    /* pass 1: maxima; NaN entries mark their group (lead = NaN) */
    for (int64_t i = 0; i < N; i++) {
        SEG_PREFETCH(st, i, N, 4 * F, 1);
        double *sr = st + 4 * ids[i] * F;
        for (int64_t f = 0; f < F; f++) {
            double v = elem(x, isz, i * F + f), *sk = sr + 4 * f;
            sk[0] = v > sk[0] ? v : sk[0];
            sk[1] = v != v ? LSE_NAN : sk[1];
        }
    }
    /* pass 2: e^{x - m} a vector at a time, added in index order (rows and columns counted, not
     * divided out of a flat index: a 64-bit division per entry cost more than its exp) */
    double d[SEG_BLK], dl[SEG_BLK];
    int64_t g[SEG_BLK];
    int n = 0;
    for (int64_t i = 0; i < N; i++) {
        SEG_PREFETCH(st, i, N, 4 * F, 1);
        int64_t kb = ids[i] * F;
        for (int64_t f = 0; f < F; f++) {
            int64_t k = kb + f;
            double v = elem(x, isz, i * F + f), mk = st[4 * k];
            g[n] = k;
            d[n] = lse_isfinite(mk) && v < mk ? v - mk : -LSE_INF; /* the max's own entries apart */
            dl[n] = lse_isfinite(mk) && v < mk && v > -LSE_INF ? two_sum(v, -mk).lo : 0.0; /* the rounding of v - m */
            st[4 * k + 1] += lse_isfinite(mk) ? (v == mk) : (v == LSE_INF); /* NaN stays NaN */
            if (++n == SEG_BLK || (i == N - 1 && f == F - 1)) {
                for (int l0 = 0; l0 < n; l0 += W)
                    segment_add_terms(isz, d + l0, dl + l0, g + l0, n - l0 < W ? n - l0 : W, st);
                n = 0;
            }
        }
    }
    for (int64_t k = 0; k < ns; k++) {
        double *sk = st + 4 * k;
        m[k] = sk[0]; lead[k] = sk[1]; tail[k] = sk[2]; tlo[k] = sk[3];
        if (lead[k] != lead[k]) { m[k] = LSE_NAN; tail[k] = LSE_NAN; tlo[k] = 0.0; continue; }
        if (m[k] == LSE_INF) { tail[k] = 0.0; tlo[k] = 0.0; continue; } /* lead: the +inf count */
        dd t = fast_two_sum(tail[k], tlo[k]);
        tail[k] = t.hi;
        tlo[k] = t.lo;
    }
    free(st);
}

/* ---------------------------------------------------------------- the torch face's fused kernels
 *
 * need_log: 0 no log (the softmax), 1 the double-double log, 2 log1p_fast (float32 data).
 * segment_consts: from a group's state, den = lead + tail (double-double), c = log(den) (double-
 * double: log1p((lead - 1) + tail) so that a dominant maximum keeps its small correction) and the
 * group's LogSumExp v = m + c rounded once (float64) or in float64 (float32 data).
 * Special groups: all -inf or empty (den 1, c 0, v -inf); k entries +inf (den k, c log k, v +inf);
 * NaN (v NaN).
 */
/* log1p(t) for t >= 0 in plain double (a few ulp): the constants of float32 data, whose results
 * are rounded to float32 (the double-double log1p_dd costs ~80 ns a group: 62 ms for 8e5 groups).
 * log(u) of u = 1 + t from u = 2^k f, f in [sqrt(1/2), sqrt(2)), log f = 2 atanh((f-1)/(f+1)) (f - 1 exact),
 * then Goldberg's correction log(u) t / (u - 1) for the rounding of u; t below half an ulp of 1: t. */
static inline double log1p_fast(double t) {
    double u = 1.0 + t;
    if (u == 1.0) return t;
    if (!(u < LSE_INF)) return u;
    int k = (int)((bits_of(u) >> 52) & 0x7FF) - 1023;
    double f = f_from_bits((bits_of(u) & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull); /* [1, 2) */
    if (f > 1.4142135623730951) { f *= 0.5; k += 1; }
    double s = (f - 1.0) / (f + 1.0), s2 = s * s;
    double q = 1.0 / 21.0;
    q = q * s2 + 1.0 / 19.0;
    q = q * s2 + 1.0 / 17.0;
    q = q * s2 + 1.0 / 15.0;
    q = q * s2 + 1.0 / 13.0;
    q = q * s2 + 1.0 / 11.0;
    q = q * s2 + 1.0 / 9.0;
    q = q * s2 + 1.0 / 7.0;
    q = q * s2 + 1.0 / 5.0;
    q = q * s2 + 1.0 / 3.0;
    double kf = (double)k;
    double lg = (kf * LN2_HI + 2.0 * s) + (kf * LN2_LO + 2.0 * s * (s2 * q));
    return lg * (t / (u - 1.0));
}

static void segment_consts(const double *m, const double *lead, const double *tail, const double *tlo, int need_log,
                           double *dhi, double *dlo, double *chi, double *clo, double *v, int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; k++) { /* groups apart: threads split them */
        double mk = m[k];
        dd den = {1.0, 0.0}, c = {0.0, 0.0};
        if (mk == LSE_INF) {
            den.hi = lead[k] + tail[k]; /* the count of +inf entries (the CSR fold splits it) */
            if (need_log) c = log_dd(den.hi);
        } else if (lse_isfinite(mk)) {
            den = two_sum(lead[k], tail[k]);
            den = fast_two_sum(den.hi, den.lo + tlo[k]);
            dd t = two_sum(lead[k] - 1.0, tail[k]); /* lead - 1 is exact (a small count) */
            if (need_log == 2) c.hi = log1p_fast(t.hi + (t.lo + tlo[k])); /* float32 data */
            else if (need_log) c = log1p_dd(fast_two_sum(t.hi, t.lo + tlo[k]));
        }
        dhi[k] = den.hi; dlo[k] = den.lo; chi[k] = c.hi; clo[k] = c.lo;
        /* the log (~100 cycles a group: 160 ms for 8e5 groups) only where it is used */
        v[k] = !need_log ? LSE_NAN : lse_isfinite(mk) ? add_rounded(mk, c) : mk;
    }
}

/* the finished values of n (< W) gathered entries x, kind 0 softmax, 1 log-softmax, 2 softmax
 * times gk (the LogSumExp's gradient; 0 where the softmax is 0, even for an infinite gk), 4 the
 * same for float32 data with hi = gk / total (a table of two numbers a group); (hi, lo)
 * the group's lead + tail (kinds 0, 2) or its log (kind 1). Groups with a finite maximum only:
 * the caller patches the rest. */
static inline vd segment_entries(int isz, int kind, vd xv, vd mv, vd hi0, vd lo0, vd gk) {
    vd dh = xv - mv, bb = dh - xv;
    vd dl = (xv - (dh - bb)) + (-mv - bb); /* TwoSum(x, -m): x - m = dh + dl exactly */
    dl = vsel(veq(dl, dl), dl, vsplat(0.0)); /* x = -inf: the entry is -inf */
    vd out;
    if (kind == 1) {
        if (isz == 4) return dh - hi0;
        vd r = dh - hi0, b2 = r - dh;
        vd e = (dh - (r - b2)) + (-hi0 - b2); /* TwoSum(dh, -c) */
        return vsel(veq(r, vsplat(-LSE_INF)), r, r + (e + (dl - lo0)));
    }
    if (kind == 4) { /* e^{x - m} times (g / total), float32 data: 0 where the exp is 0 */
        vd e = vexp_lo(dh);
        return vsel(veq(e, vsplat(0.0)), e, e * hi0);
    }
    if (isz == 4) {
        out = vexp_lo(dh) / hi0;
    } else {
        vd hi, lo;
        vexp_split54(dh, &hi, &lo);
        hi *= 0x1p-54;
        lo *= 0x1p-54;
        vd eh = hi + lo;
        vd el = (lo - (eh - hi)) + eh * dl; /* e^{dh + dl} = (hi + lo)(1 + dl) */
        /* the quotient by den = hi0 + lo0, corrected by its exact remainder (Dekker) */
        vd q = eh / hi0;
        vd dt = 134217729.0 * hi0, dsh = dt - (dt - hi0), dsl = hi0 - dsh;
        vd qt = 134217729.0 * q, qh = qt - (qt - q), ql = q - qh;
        vd pq = q * hi0;
        vd perr = ((qh * dsh - pq) + qh * dsl + ql * dsh) + ql * dsl;
        vd r = (eh - pq) - perr;
        out = q + ((r + el) - q * lo0) / hi0;
    }
    if (kind == 2) out = vsel(veq(out, vsplat(0.0)), out, out * gk);
    return out;
}

/* the same for an entry of a group whose maximum is not finite (NaN, all -inf, +inf entries);
 * a: the count k of +inf entries (kinds 0, 2) or log k (kind 1) */
static inline double segment_special(int kind, double x, double mk, double a, double gk) {
    if (mk != mk) return LSE_NAN;
    int on = mk == LSE_INF && x == LSE_INF; /* one of the k +inf entries: 1/k */
    if (kind == 1) return on ? -a : -LSE_INF;
    if (!on) return 0.0;
    if (kind == 4) return a; /* g / k */
    return kind == 2 ? gk / a : 1.0 / a;
}

/* out[i, f] for rows [lo, hi): kind as in segment_entries; pk the packed constants of each
 * group, ps = 4 or 2 together (one miss per entry for ids in random order): (m, hi, lo, g), or
 * (m, hi) where lo and g are not used (float32 softmax / log-softmax: a table half the size, that
 * stays in L2 for 1e5 groups), with (hi, lo)
 * lead + tail (kinds 0, 2) or log(lead + tail) (kind 1), g the gradient of the group's LogSumExp
 * (kind 2). Entries are independent: threads split rows. */
static void segment_write(const char *x, int isz, int64_t F, const int64_t *ids, const double *pk, int ps, int kind,
                          char *out, int64_t lo, int64_t hi) {
    double xb[SEG_BLK], mb[SEG_BLK], b0[SEG_BLK], b1[SEG_BLK], gb[SEG_BLK], rb[SEG_BLK];
    int64_t jb[SEG_BLK];
    int n = 0;
    for (int64_t i = lo; i < hi; i++) {
        SEG_PREFETCH(pk, i, hi, ps * F, 0);
        const double *pr = pk + ps * ids[i] * F;
        for (int64_t f = 0; f < F; f++) {
            const double *p = pr + ps * f;
            int64_t j = i * F + f;
            jb[n] = j;
            xb[n] = elem(x, isz, j); mb[n] = p[0]; b0[n] = p[1];
            b1[n] = ps == 4 ? p[2] : 0.0;
            gb[n] = ps == 4 ? p[3] : 0.0;
            if (++n == SEG_BLK || (i == hi - 1 && f == F - 1)) {
                for (int l0 = 0; l0 < n; l0 += W) {
                    int c = n - l0 < W ? n - l0 : W; /* padding lanes: a harmless finite group */
                    vd r = segment_entries(isz, kind, vload(xb + l0, c, 0.0), vload(mb + l0, c, 0.0),
                                           vload(b0 + l0, c, 1.0), vload(b1 + l0, c, 0.0), vload(gb + l0, c, 0.0));
                    vstore(rb + l0, r, c);
                }
                for (int l = 0; l < n; l++) {
                    double o = lse_isfinite(mb[l]) ? rb[l] : segment_special(kind, xb[l], mb[l], b0[l], gb[l]);
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
                             int log, double *S, int64_t glo, int64_t ghi) {
    for (int64_t k = glo * F; k < ghi * F; k++) S[k] = 0.0;
    int64_t rb[SEG_BLK];
    for (int64_t i0 = 0; i0 < N; i0 += SEG_BLK) { /* the groups [glo, ghi) of this thread, rows in order */
        int n = segment_own_rows(ids, i0, N - i0 < SEG_BLK ? (int)(N - i0) : SEG_BLK, glo, ghi, rb);
        for (int l = 0; l < n; l++) {
            if (l + SEG_PF < n) __builtin_prefetch(S + ids[rb[l + SEG_PF]] * F, 1, 1);
            int64_t i = rb[l];
            double *Sr = S + ids[i] * F;
            for (int64_t f = 0; f < F; f++) {
                double gv = elem(g, isz, i * F + f), yv = elem(y, isz, i * F + f);
                Sr[f] += log ? gv : (yv == 0.0 ? 0.0 : yv * gv);
            }
        }
    }
}

static void segment_bwd_write(const char *y, const char *g, int isz, int64_t F, const int64_t *ids, const double *S,
                              int log, char *gx, int64_t lo, int64_t hi) {
    double yb[SEG_BLK], gb[SEG_BLK], sb[SEG_BLK], rb[SEG_BLK];
    int64_t jb[SEG_BLK];
    int n = 0;
    for (int64_t i = lo; i < hi; i++) {
        SEG_PREFETCH(S, i, hi, F, 0);
        const double *Sr = S + ids[i] * F;
        for (int64_t f = 0; f < F; f++) {
            int64_t j = i * F + f;
            jb[n] = j;
            yb[n] = elem(y, isz, j); gb[n] = elem(g, isz, j); sb[n] = Sr[f];
            if (++n == SEG_BLK || (i == hi - 1 && f == F - 1)) {
                for (int l0 = 0; l0 < n; l0 += W) {
                    int c = n - l0 < W ? n - l0 : W;
                    vd yv = vload(yb + l0, c, 0.0), gv = vload(gb + l0, c, 0.0), sv = vload(sb + l0, c, 0.0), r;
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
                    vstore(rb + l0, r, c);
                }
                for (int l = 0; l < n; l++) put(gx, isz, jb[l], rb[l]);
                n = 0;
            }
        }
    }
}

/* ---------------------------------------------------------------- CSR groups (sorted ids)
 *
 * Group s owns rows ptr[s] .. ptr[s+1]: column f of it is a slice of stride F, folded by the row
 * kernels' own fold (fold.h: 16 virtual lanes, the same bits on every target, items of ITEM
 * merged in order) and finished by their finish (the value with the cancelling recompute; the
 * softmax write of softmax.h). Groups are independent: threads split them. The state has the
 * rows' convention (lead 1, the other ties in the tail), which segment_consts reads alike. */
static void segment_csr_states(const char *x, int isz, int64_t F, const int64_t *ptr, double *m, double *lead,
                               double *tail, double *tlo, double *v, int64_t lo, int64_t hi) {
    double *buf = (double *)malloc(BLOCK * sizeof(double));
    if (!buf) return;
    for (int64_t s = lo; s < hi; s++) {
        int64_t L = ptr[s + 1] - ptr[s];
        for (int64_t f = 0; f < F; f++) {
            const char *base = x + (ptr[s] * F + f) * isz;
            lse_state st = L > 0 ? slice_state(base, isz, F, L, NULL, 0, buf, NULL) : EMPTY_STATE;
            int64_t k = s * F + f;
            m[k] = st.m; lead[k] = st.lead; tail[k] = st.tail; tlo[k] = st.tlo;
            v[k] = L > 0 ? finish_value(st, base, isz, F, L) : -LSE_INF;
        }
    }
    free(buf);
}

static void segment_csr_write(const char *x, int isz, int64_t F, const int64_t *ptr, const double *m,
                              const double *lead, const double *tail, const double *tlo, int log, char *out,
                              int64_t lo, int64_t hi) {
    double *buf = (double *)malloc(BLOCK * sizeof(double));
    if (!buf) return;
    for (int64_t s = lo; s < hi; s++) {
        int64_t L = ptr[s + 1] - ptr[s];
        for (int64_t f = 0; f < F && L > 0; f++) {
            int64_t k = s * F + f, off = (ptr[s] * F + f) * isz;
            lse_state st = {m[k], lead[k], tail[k], tlo[k]};
            write_normalized(x + off, isz, F, out + off, F, 0, L, st, log, buf);
        }
    }
    free(buf);
}

#endif
