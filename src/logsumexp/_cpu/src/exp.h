/* Branch-free exponentials for arguments d <= 0 (or -inf, NaN), written in plain arithmetic so
 * that loops calling them vectorise, and so that every target rounds them alike.
 *
 * d = k ln2 + r with k = round(d log2 e) (the 1.5*2^52 trick, which rounds to nearest on every
 * IEEE machine), |r| <= ln2/2 (Cody-Waite, two-part ln 2); e^r = 1 + r + r^2 Q(r); 2^k is set
 * through the exponent bits.
 */
#ifndef LSE_EXP_H
#define LSE_EXP_H

#include "dd.h"

/* Q(r) = (e^r - 1 - r)/r^2 on |r| <= ln2/2, degree 9 (Chebyshev-node interpolation at 50
 * digits): 1 + r + r^2 Q(r) is within 1.7e-17 relative (0.08 ulp) of e^r. */
#define Q0 0.5000000000000001
#define Q1 0.16666666666666669
#define Q2 0.041666666666624164
#define Q3 0.008333333333330065
#define Q4 0.0013888888917196719
#define Q5 0.00019841269863040545
#define Q6 2.4801521322368692e-05
#define Q7 2.7557268480310024e-06
#define Q8 2.7620075879983367e-07
#define Q9 2.5100375832561234e-08
/* 1.5*2^52 rounds to an integer in the low mantissa bits; + 1077 = 1023 + 54 makes those bits
 * the biased exponent of 2^(k+54) */
#define SHIFT54 (6755399441055744.0 + 1077.0)
#define SHIFT0 (6755399441055744.0 + 1023.0)

/* The sums of the kernels run in LANES = 16 virtual lanes (element i of a block to lane i mod 16),
 * whatever the machine: that fixes the order of every addition. The arithmetic itself is
 * written on GCC vectors of the hardware's own width W (8 doubles on AVX-512, 4 on AVX2, 2 on
 * SSE2 and NEON), so a set of 16 lanes is 16/W vectors ("pieces"); wider generic vectors would
 * be kept in memory by GCC and their comparisons lowered lane by lane. Each operation is the
 * same elementwise IEEE operation on every width, so every target computes every lane alike.
 * Comparisons give lane masks of all ones or zeros. */
#define LANES 16
#if defined(__AVX512F__)
#define W 8
#elif defined(__AVX__)
#define W 4
#else
#define W 2
#endif
#define NPIECES (LANES / W)
typedef double vd __attribute__((vector_size(W * 8)));
typedef int64_t vi __attribute__((vector_size(W * 8)));

static inline vd vsplat(double a) { vd v; for (int l = 0; l < W; l++) v[l] = a; return v; }
static inline vi vlt(vd a, vd b) { return (vi)(a < b); }
static inline vi vgt(vd a, vd b) { return (vi)(a > b); }
static inline vi veq(vd a, vd b) { return (vi)(a == b); }
static inline vi vne(vd a, vd b) { return (vi)(a != b); }
static inline vd vsel(vi mask, vd a, vd b) { return (vd)(((vi)a & mask) | ((vi)b & ~mask)); }
static inline vd vmax(vd a, vd b) { return vsel(vgt(a, b), a, b); } /* a NaN in a is ignored */
/* n elements from p (n may exceed W: W are read), the other lanes set to pad */
static inline vd vload(const double *p, int64_t n, double pad) {
    vd v;
    if (n >= W) { memcpy(&v, p, sizeof v); return v; }
    v = vsplat(pad);
    for (int64_t l = 0; l < n; l++) v[l] = p[l];
    return v;
}

/* e^d * 2^54 = hi + lo with hi = 2^(k+54) (a power of two: sums of them are exact within 53
 * binades) and lo = hi*y (|y| < 0.42), so that the rounding of 1 + y is never made. Both are
 * normal numbers for d >= -746; below that (and for -inf) both are exactly 0. A NaN d gives a
 * NaN lo. The 2^54 keeps terms that would be subnormal normal: the sum is scaled back once. */
static inline void vexp_split54(vd d, vd *hi, vd *lo) {
    vi tiny = vlt(d, vsplat(-746.0));
    d = vsel(tiny, vsplat(-746.0), d);
    vd t = d * LOG2E + SHIFT54;
    vd kf = t - SHIFT54;
    vd r = (d - kf * LN2_HI) - kf * LN2_LO;
    vd q = vsplat(Q9);
    q = q * r + Q8;
    q = q * r + Q7;
    q = q * r + Q6;
    q = q * r + Q5;
    q = q * r + Q4;
    q = q * r + Q3;
    q = q * r + Q2;
    q = q * r + Q1;
    q = q * r + Q0;
    vd y = r + r * r * q;
    vd sc = (vd)((vi)t << 52);
    sc = vsel(tiny, vsplat(0.0), sc);
    *hi = sc;
    *lo = y * sc;
}

static inline void exp_split54(double d, double *hi, double *lo) {
    vd h, l;
    vexp_split54(vsplat(d), &h, &l);
    *hi = h[0];
    *lo = l[0];
}

/* For float32 data (results rounded to float32, 6e-8): Q of degree 7, relative error 1.05e-13
 * (measured against mpmath, tests/test_cpu.py);
 * one-part ln 2; 0 below -708 (terms below 1e-307 vanish next to a leading term of 1). */
#define P0 0.4999999999995511
#define P1 0.16666666666662586
#define P2 0.04166666678626573
#define P3 0.00833333334420298
#define P4 0.0013888839110572009
#define P5 0.00019841224599656011
#define P6 2.4867870179687727e-05
#define P7 2.7617564785876086e-06
#define LN2 0.6931471805599453

static inline vd vexp_lo(vd d) {
    vi tiny = vlt(d, vsplat(-708.0));
    d = vsel(tiny, vsplat(-708.0), d);
    vd t = d * LOG2E + SHIFT0;
    vd kf = t - SHIFT0;
    vd r = d - kf * LN2;
    vd r2 = r * r, r4 = r2 * r2;
    vd p01 = P0 + P1 * r, p23 = P2 + P3 * r, p45 = P4 + P5 * r, p67 = P6 + P7 * r;
    /* Estrin's scheme: a short dependency chain (float32 data's block sums were latency-bound on
     * Horner's). The float64 exp above keeps Horner's: Estrin's rounding pushed softmax entries
     * past 1 ulp (1.04, tests/test_softmax_dd.py) */
    vd q = (p01 + p23 * r2) + (p45 + p67 * r2) * r4;
    vd p = 1.0 + (r + r2 * q);
    vd e = p * (vd)((vi)t << 52);
    return vsel(tiny, vsplat(0.0), e);
}

static inline double exp_lo(double d) { return vexp_lo(vsplat(d))[0]; }

#endif
