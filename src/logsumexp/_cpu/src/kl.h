/* Forward and reverse KL rows of two float32 logit rows (the torch face's linear_kl_div and
 * kl_div_logits chunks), with the gradients of g * KL written in place of the rows.
 *
 * With a the student's row (p = softmax(a)) and b the teacher's (q = softmax(b)):
 *     forward:  KL(q || p) = sum_i q_i c_i,  c_i = log q_i - log p_i;
 *               d/da = g (p - q),            d/db = g q (c - KL);
 *     reverse:  KL(p || q) = sum_i p_i c_i,  c_i = log p_i - log q_i;
 *               d/da = g p (c - KL),         d/db = g (q - p).
 *
 * Each row's exps come once from exps_f32_row (softmax.h: the max, then e^{x - m} in a float64
 * scratch row, summed with the entries at the max counted apart, so that log1p keeps the tail).
 * c_i = ((b_i - m_b) - (a_i - m_a)) - (log1p(tail_b) - log1p(tail_a)) in float64: a difference of
 * two float32 values is exact in float64, so c_i carries the roundings of its row constants only,
 * and the terms are taken per entry (no sum q log q - sum q log p of two large sums).
 * p_i = e_i / (1 + tail), computed as e_i * (1 / (1 + tail)) in float64 (two roundings of 2^-53,
 * invisible in the float32 result). KL is summed in the 16 virtual lanes of fold.h (lane i mod 16,
 * in order, then the lanes in order): the same bits on every target.
 * A term whose weight (q_i, resp. p_i) is 0 adds 0, whatever c_i (it may be +-inf there).
 * Rows left to the caller (returns 0, nothing written): a maximum or tail that is not finite
 * (+-inf or NaN logits), or a KL that is not finite (e.g. p_i = 0 < q_i in the forward KL).
 */
#ifndef LSE_KL_H
#define LSE_KL_H

#include "softmax.h"

/* c_i and the weight w_i (the distribution the KL is taken under) of entry i */
static inline void kl_terms(const float *a, const float *b, const double *ea, const double *eb, int64_t i,
                            double ma, double mb, double delta, double ra, double rb, int reverse, double *c,
                            double *w) {
    double d = (((double)b[i] - mb) - ((double)a[i] - ma)) - delta; /* log q_i - log p_i */
    *c = reverse ? -d : d;
    *w = reverse ? ea[i] * ra : eb[i] * rb;
}

/* One pair of rows of length L; ea, eb: L doubles each of scratch. Returns 1 when done. */
static int kl_row(float *a, float *b, int64_t L, int reverse, double g, int grad_a, int grad_b, float *row_out,
                  double *ea, double *eb) {
    lse_state sa = exps_f32_row(a, L, ea);
    if (!lse_isfinite(sa.m) || !lse_isfinite(sa.tail)) return 0;
    lse_state sb = exps_f32_row(b, L, eb);
    if (!lse_isfinite(sb.m) || !lse_isfinite(sb.tail)) return 0;
    double ca = log1p_dd((dd){sa.tail, sa.tlo}).hi, cb = log1p_dd((dd){sb.tail, sb.tlo}).hi;
    double ra = 1.0 / (1.0 + sa.tail), rb = 1.0 / (1.0 + sb.tail);
    double delta = cb - ca, ma = sa.m, mb = sb.m;
    double acc[LANES];
    for (int l = 0; l < LANES; l++) acc[l] = 0.0;
    for (int64_t i0 = 0; i0 < L; i0 += LANES) {
        int n = L - i0 < LANES ? (int)(L - i0) : LANES;
        for (int l = 0; l < n; l++) {
            double c, w;
            kl_terms(a, b, ea, eb, i0 + l, ma, mb, delta, ra, rb, reverse, &c, &w);
            acc[l] += w == 0.0 ? 0.0 : w * c;
        }
    }
    double kl = 0.0;
    for (int l = 0; l < LANES; l++) kl += acc[l];
    if (!lse_isfinite(kl)) return 0;
    *row_out = (float)kl;
    if (!(grad_a || grad_b)) return 1;
    for (int64_t i = 0; i < L; i++) {
        double c, w;
        kl_terms(a, b, ea, eb, i, ma, mb, delta, ra, rb, reverse, &c, &w);
        double p = ea[i] * ra, q = eb[i] * rb;
        double gw = w == 0.0 ? 0.0 : g * (w * (c - kl)); /* the gradient on the weight's side */
        double gd = g * (reverse ? q - p : p - q);         /* the gradient on the other side */
        if (grad_a) a[i] = (float)(reverse ? gw : gd);
        if (grad_b) b[i] = (float)(reverse ? gd : gw);
    }
    return 1;
}

#endif
