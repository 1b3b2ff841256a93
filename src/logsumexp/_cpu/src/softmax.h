/* softmax and log_softmax of one slice from its state, and the cross-entropy rows of the torch
 * face's fused linear cross-entropy (float32 logits, gradient written in place).
 *
 *     softmax_i = e^{x_i - m} / (lead + tail),   log_softmax_i = (x_i - m) - log1p(tail)
 *
 * The division form (not a multiplication by e^{-LSE}) is the more accurate one. float64:
 * each entry rounded about once (x_i - m kept exact by TwoSum and its rounding put back; the
 * exp as 2^k + 2^k y; the quotient by the double-double sum corrected by its exact remainder).
 * float32: float64 arithmetic rounded once to float32.
 * Special rows: all -inf gives 0 / -inf; k entries +inf give 1/k there and 0 elsewhere
 * (-log k / -inf); a NaN makes its row NaN.
 */
#ifndef LSE_SOFTMAX_H
#define LSE_SOFTMAX_H

#include "finish.h"

/* o[i] = e^{p[i] - m} * r (float32 quality), i < n; o may be p */
static inline void exp_scaled(const double *p, double *o, int64_t n, double m, double r) {
    int64_t i = 0;
    for (; i + W <= n; i += W) {
        vd e = vexp_lo(vload(p + i, W, 0.0) - m) * r;
        memcpy(o + i, &e, sizeof e);
    }
    if (i < n) {
        vd e = vexp_lo(vload(p + i, n - i, -LSE_INF) - m) * r;
        for (int64_t l = 0; i + l < n; l++) o[i + l] = e[l];
    }
}

static inline void vstore(double *o, vd v, int64_t n) {
    if (n >= W) memcpy(o, &v, sizeof v);
    else for (int64_t l = 0; l < n; l++) o[l] = v[l];
}

static inline void put(char *obase, int osz, int64_t i, double v) {
    if (osz == 8) ((double *)obase)[i] = v;
    else ((float *)obase)[i] = (float)v;
}

static void write_special(const char *base, int isz, int64_t s, char *obase, int64_t os, int64_t a, int64_t b,
                          lse_state st, int log) {
    double fill = st.m != st.m ? LSE_NAN : log ? -LSE_INF : 0.0;
    double at_inf = fill;
    if (st.m == LSE_INF) {
        double k = st.lead + st.tail; /* the count of +inf entries */
        at_inf = log ? -log_dd(k).hi : 1.0 / k;
    }
    for (int64_t i = a; i < b; i++) {
        double v = elem(base, isz, i * s);
        put(obase, isz, i * os, v == LSE_INF ? at_inf : fill);
    }
}

/* entries [a, b) of a slice with state st into the output slice (same dtype as the input) */
static void write_normalized(const char *base, int isz, int64_t s, char *obase, int64_t os, int64_t a, int64_t b,
                             lse_state st, int log, double *buf) {
    if (!lse_isfinite(st.m)) { write_special(base, isz, s, obase, os, a, b, st, log); return; }
    double m = st.m;
    dd c = log ? log1p_dd((dd){st.tail, st.tlo}) : dd_of(0.0); /* log_softmax only */
    dd den = two_sum(st.lead, st.tail);                       /* softmax: lead + tail */
    den = fast_two_sum(den.hi, den.lo + st.tlo);
    dd dsp = split(den.hi);
    double rcp = 1.0 / (st.lead + st.tail);
    for (int64_t i0 = a; i0 < b; i0 += BLOCK) {
        int64_t n = b - i0 < BLOCK ? b - i0 : BLOCK;
        const double *p = load_block(base, isz, s, i0, n, buf);
        double *o = buf; /* results in buf, then stored (p may be buf: entry i read before written) */
        if (log && isz == 8) {
            for (int64_t i = 0; i < n; i += W) {
                vd v = vload(p + i, n - i, 0.0);
                vd dh = v - m, bb = dh - v;
                vd dl = (v - (dh - bb)) + (-m - bb); /* TwoSum(v, -m) */
                dl = vsel(veq(dl, dl), dl, vsplat(0.0)); /* v = -inf: the entry is -inf */
                vd r = dh - c.hi, b2 = r - dh;
                vd e = (dh - (r - b2)) + (-c.hi - b2); /* TwoSum(dh, -c) */
                vstore(o + i, vsel(veq(r, vsplat(-LSE_INF)), r, r + (e + (dl - c.lo))), n - i);
            }
        } else if (log) {
            for (int64_t i = 0; i < n; i++) o[i] = (p[i] - m) - c.hi;
        } else if (isz == 8) {
            for (int64_t i = 0; i < n; i += W) {
                vd v = vload(p + i, n - i, 0.0);
                vd dh = v - m, bb = dh - v;
                vd dl = (v - (dh - bb)) + (-m - bb);
                dl = vsel(veq(dl, dl), dl, vsplat(0.0));
                vd hi, lo;
                vexp_split54(dh, &hi, &lo);
                hi *= 0x1p-54;
                lo *= 0x1p-54;
                /* e^{dh + dl} = (hi + lo)(1 + dl): eh and the roundings in el */
                vd eh = hi + lo;
                vd el = (lo - (eh - hi)) + eh * dl;
                /* the quotient by den = d0 + d1, corrected by its exact remainder (Dekker) */
                vd q = eh / den.hi;
                vd qt = 134217729.0 * q, qh = qt - (qt - q), ql = q - qh;
                vd pq = q * den.hi;
                vd perr = ((qh * dsp.hi - pq) + qh * dsp.lo + ql * dsp.hi) + ql * dsp.lo;
                vd r = (eh - pq) - perr;
                vstore(o + i, q + ((r + el) - q * den.lo) / den.hi, n - i);
            }
        } else {
            exp_scaled(p, o, n, m, rcp);
        }
        for (int64_t i = 0; i < n; i++) put(obase, isz, (i0 + i) * os, o[i]);
    }
}

/* W short unit-stride rows (row j + l at element offset xk[j + l], output at ok[j + l], output
 * stride os) from their states, one row per hardware lane: every operation of write_normalized's
 * float64 softmax and log_softmax (and float32 log_softmax) on vectors of rows, the per-row
 * constants (the denominator, its split, log1p of the tail) as vectors too, so the bits are
 * write_normalized's. Returns 0 (nothing written) when a row of the set is special (a maximum that
 * is not finite) or the case is float32 softmax (exps_f32_row's path): the caller writes those rows
 * one by one. */
static int write_short_rows(const char *x, int isz, const int64_t *xk, int64_t j, int64_t L, char *out,
                            const int64_t *ok, int64_t os, const lse_state *st, int log) {
    if (isz == 4 && !log) return 0;
    vd m, ld, th, tl;
    for (int l = 0; l < W; l++) {
        if (!lse_isfinite(st[l].m)) return 0;
        m[l] = st[l].m; ld[l] = st[l].lead; th[l] = st[l].tail; tl[l] = st[l].tlo;
    }
    vd ch = vsplat(0.0), cl = vsplat(0.0), dh = vsplat(0.0), dl = vsplat(0.0), sh = vsplat(0.0), sl = vsplat(0.0);
    if (log) {
        vlog1p_dd(th, tl, &ch, &cl); /* c = log1p_dd(tail) */
    } else {
        /* den = two_sum(lead, tail), then fast_two_sum(den.hi, den.lo + tlo); dsp = split(den.hi) */
        vd s0 = ld + th, b0 = s0 - ld;
        vd e0 = (ld - (s0 - b0)) + (th - b0);
        vd b1 = e0 + tl;
        dh = s0 + b1;
        dl = b1 - (dh - s0);
        vd t = 134217729.0 * dh;
        sh = t - (t - dh);
        sl = dh - sh;
    }
    for (int64_t i = 0; i < L; i++) {
        vd v = vcolumn(x, isz, xk, j, i), o;
        if (log && isz == 4) {
            o = (v - m) - ch;
        } else {
            vd d = v - m, bb = d - v;
            vd dd_ = (v - (d - bb)) + (-m - bb); /* TwoSum(v, -m) */
            dd_ = vsel(veq(dd_, dd_), dd_, vsplat(0.0));
            if (log) {
                vd r = d - ch, b2 = r - d;
                vd e = (d - (r - b2)) + (-ch - b2); /* TwoSum(d, -c) */
                o = vsel(veq(r, vsplat(-LSE_INF)), r, r + (e + (dd_ - cl)));
            } else {
                vd hi, lo;
                vexp_split54(d, &hi, &lo);
                hi *= 0x1p-54;
                lo *= 0x1p-54;
                vd eh = hi + lo;
                vd el = (lo - (eh - hi)) + eh * dd_;
                vd q = eh / dh;
                vd qt = 134217729.0 * q, qh = qt - (qt - q), ql = q - qh;
                vd pq = q * dh;
                vd perr = ((qh * sh - pq) + qh * sl + ql * sh) + ql * sl;
                vd r = (eh - pq) - perr;
                o = q + ((r + el) - q * dl) / dh;
            }
        }
        for (int l = 0; l < W; l++) put(out + ok[j + l] * isz, isz, i * os, o[l]);
    }
    return 1;
}

/* float32 rows up to ITEM long: the row's max, then every exp once, kept in a float64 scratch
 * row (L2) while it is summed (the entries at the max counted apart, as in block_sum_f32), then
 * scaled. One exp per entry where the general path (state, then write) takes two. Returns the
 * state; a row whose max is not finite is left to the caller (st.m not finite, nothing written). */
static lse_state exps_f32_row(const float *x, int64_t L, double *scratch) {
    double m = -LSE_INF;
    for (int64_t i0 = 0; i0 < L; i0 += BLOCK) {
        int64_t n = L - i0 < BLOCK ? L - i0 : BLOCK;
        const double *p = load_block((const char *)x, 4, 1, i0, n, scratch + i0);
        double mb = block_max(p, n);
        m = mb > m ? mb : m;
    }
    if (!lse_isfinite(m)) return (lse_state){m, 0.0, 0.0, 0.0};
    /* lane l of every BLOCK-aligned set of 16: the same lanes as block_sum_f32 */
    vd s[NPIECES], cnt[NPIECES], mv = vsplat(m);
    for (int k = 0; k < NPIECES; k++) s[k] = cnt[k] = vsplat(0.0);
    for (int64_t i = 0; i < L; i += LANES)
        for (int k = 0; k < NPIECES; k++) {
            int64_t o = i + k * W, n = L - o;
            vd v = vload(scratch + o, n, -LSE_INF);
            vi top = veq(v, mv);
            vd e = vexp_lo(v - mv);
            s[k] += vsel(top, vsplat(0.0), e);
            cnt[k] += vsel(top, vsplat(1.0), vsplat(0.0));
            if (n > 0) vstore(scratch + o, e, n);
        }
    double t = lanes_sum(s), c = lanes_sum(cnt);
    dd tail = two_sum(c - 1.0, t);
    if (t != t) return NAN_STATE;
    return (lse_state){m, 1.0, tail.hi, tail.lo};
}

/* Cross-entropy of a float32 logit row z (contiguous, length L) against class t, and with
 * g != 0 the gradient of g * loss written in place of the row:
 *     loss = log1p(tail) + (m - z_t),  lse = m + log1p(tail),
 *     z_i <- g e^{z_i - m} / (1 + tail),  then z_t <- z_t - g.
 * Returns 0 (row untouched) when the row's maximum is not finite. */
static int ce_row(float *z, int64_t L, int64_t t, int valid, double g, int grad, float *loss, float *lse,
                  double *buf) {
    lse_state st = exps_f32_row(z, L, buf); /* buf: L doubles, the exps */
    if (!lse_isfinite(st.m) || !lse_isfinite(st.tail)) return 0;
    double m = st.m;
    double lp = log1p_dd((dd){st.tail, st.tlo}).hi;
    double zt = valid ? (double)z[t] : m;
    *lse = (float)(m + lp);
    *loss = valid ? (float)((zt == m ? 0.0 : m - zt) + lp) : 0.0f;
    if (grad) {
        double r = (valid ? g : 0.0) / (1.0 + st.tail);
        for (int64_t i = 0; i < L; i++) z[i] = (float)(buf[i] * r);
        if (valid) z[t] = (float)((double)z[t] - g);
    }
    return 1;
}

#endif
