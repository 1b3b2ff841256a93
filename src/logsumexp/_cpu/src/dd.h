/* Double-double arithmetic and the elementary functions of the kernels.
 *
 * A double-double (hi, lo) is the unevaluated sum hi + lo with |lo| <= ulp(hi)/2: about 106
 * bits. Every function here is plain IEEE-754 double arithmetic (+, -, *, /, compares and bit
 * casts): no libm call and no fused multiply-add (products are split the Dekker way), so that
 * x86-64 baseline, AVX2, AVX-512 and arm64 give the same bits. The build compiles with
 * -ffp-contract=off for the same reason: a contracted a*b + c rounds once where the others
 * round twice.
 */
#ifndef LSE_DD_H
#define LSE_DD_H

#include <stdint.h>
#include <string.h>

typedef struct { double hi, lo; } dd;

#define LSE_INF (__builtin_inf())
#define LSE_NAN (__builtin_nan(""))

static inline double f_from_bits(uint64_t u) { double d; memcpy(&d, &u, sizeof d); return d; }
static inline uint64_t bits_of(double d) { uint64_t u; memcpy(&u, &d, sizeof u); return u; }
static inline double lse_fabs(double a) { return f_from_bits(bits_of(a) & 0x7FFFFFFFFFFFFFFFull); }
static inline int lse_isfinite(double a) { return lse_fabs(a) < LSE_INF; }
/* 2^k for -1022 <= k <= 1023, exactly */
static inline double pow2i(int k) { return f_from_bits((uint64_t)(k + 1023) << 52); }

/* s = fl(a + b) and a + b = s + e exactly (Knuth: any magnitudes) */
static inline dd two_sum(double a, double b) {
    double s = a + b, bb = s - a;
    dd r = {s, (a - (s - bb)) + (b - bb)};
    return r;
}

/* the same for |a| >= |b| (Dekker) */
static inline dd fast_two_sum(double a, double b) {
    double s = a + b;
    dd r = {s, b - (s - a)};
    return r;
}

/* a = h + l with h holding the high 26 bits (Veltkamp); |a| < 2^995 */
static inline dd split(double a) {
    double t = 134217729.0 * a, h = t - (t - a);
    dd r = {h, a - h};
    return r;
}

/* p = fl(a*b) and a*b = p + e exactly (Dekker), without an FMA. Operands too large to split
 * (|a| or |b| >= 2^995, only huge weights) keep p alone. */
static inline dd two_prod(double a, double b) {
    double p = a * b;
    if (!(lse_fabs(a) < 0x1p995 && lse_fabs(b) < 0x1p995)) {
        dd r = {p, 0.0};
        return r;
    }
    dd as = split(a), bs = split(b);
    dd r = {p, ((as.hi * bs.hi - p) + as.hi * bs.lo + as.lo * bs.hi) + as.lo * bs.lo};
    return r;
}

static inline dd dd_add(dd a, dd b) {
    dd s = two_sum(a.hi, b.hi), t = two_sum(a.lo, b.lo);
    s.lo += t.hi;
    s = fast_two_sum(s.hi, s.lo);
    s.lo += t.lo;
    return fast_two_sum(s.hi, s.lo);
}

static inline dd dd_mul(dd a, dd b) {
    dd p = two_prod(a.hi, b.hi);
    p.lo += a.hi * b.lo + a.lo * b.hi;
    return fast_two_sum(p.hi, p.lo);
}

/* (a.hi + a.lo) / (b.hi + b.lo) to ~2^-104: quotient, exact remainder, correction */
static inline dd dd_div(dd a, dd b) {
    double q = a.hi / b.hi;
    dd p = two_prod(q, b.hi);
    double r = ((a.hi - p.hi) - p.lo + a.lo) - q * b.lo;
    return fast_two_sum(q, r / b.hi);
}

static inline dd dd_of(double a) { dd r = {a, 0.0}; return r; }

/* ln 2 in three parts: k*LN2_HI is exact for |k| < 2^20; the sum is ln 2 to 2^-140 */
#define LN2_HI 6.93147180369123816490e-01
#define LN2_LO 1.90821492927058770002e-10
#define LN2_LO2 1.1612227229362532e-26
#define LOG2E 1.4426950408889634

/* log(1 + t.hi + t.lo) as a double-double, for 1 + t > 0 (normal), to about 2^-58 relative.
 *
 * 1 + t = 2^k f with f in [sqrt(1/2), sqrt(2)) (exact scaling); log f = 2 atanh(u),
 * u = (f - 1)/(f + 1), |u| <= 0.172, formed in double-double (f - 1 exact: Sterbenz); then
 * log f = 2u + 2u (u^2/3 + u^4/5 + ...): the leading 2u keeps its double-double, the series
 * (below 1% of it) is summed in double. When t is tiny, k = 0 and u ~ t/2 keeps t's relative
 * accuracy (the property of log1p the Blanchard-Higham-Higham finish relies on). Measured against
 * mpmath: 2^-62 for t >= 0, 2^-58 for -1/2 < t < 0 (tests/test_cpu.py). */
static inline dd log1p_dd(dd t) {
    dd s = two_sum(1.0, t.hi);
    s = fast_two_sum(s.hi, s.lo + t.lo);
    int k = (int)((bits_of(s.hi) >> 52) & 0x7FF) - 1023;
    /* 2^-k in two exact steps: 2^-1023 itself is not a normal number */
    double f1 = s.hi * pow2i(-(k / 2)) * pow2i(-(k - k / 2)); /* in [1, 2) */
    if (f1 >= 1.4142135623730951) k += 1;
    double s1 = pow2i(-(k / 2)), s2 = pow2i(-(k - k / 2));
    double fh = s.hi * s1 * s2, fl = s.lo * s1 * s2;
    double d = fh - 1.0;
    dd num = lse_fabs(d) >= lse_fabs(fl) ? fast_two_sum(d, fl) : fast_two_sum(fl, d);
    dd den = two_sum(fh, 1.0);
    den = fast_two_sum(den.hi, den.lo + fl);
    dd u = dd_div(num, den);
    double u2 = u.hi * u.hi;
    double q = 1.0 / 25.0;
    q = q * u2 + 1.0 / 23.0;
    q = q * u2 + 1.0 / 21.0;
    q = q * u2 + 1.0 / 19.0;
    q = q * u2 + 1.0 / 17.0;
    q = q * u2 + 1.0 / 15.0;
    q = q * u2 + 1.0 / 13.0;
    q = q * u2 + 1.0 / 11.0;
    q = q * u2 + 1.0 / 9.0;
    q = q * u2 + 1.0 / 7.0;
    q = q * u2 + 1.0 / 5.0;
    q = q * u2 + 1.0 / 3.0;
    double rest = 2.0 * u.hi * (u2 * q);
    dd l = fast_two_sum(2.0 * u.hi, 2.0 * u.lo + rest);
    if (k != 0) {
        double kf = (double)k;
        dd a = two_prod(kf, LN2_LO);
        dd h = {kf * LN2_HI, a.lo + kf * LN2_LO2};
        l = dd_add(h, l);
        l = dd_add(l, dd_of(a.hi));
    }
    return l;
}

/* 1/j! as double-doubles, j = 0..11 */
static const double INV_FACT[12][2] = {
    {1.0, 0.0}, {1.0, 0.0}, {0.5, 0.0},
    {0.16666666666666666, 9.25185853854297e-18},
    {0.041666666666666664, 2.3129646346357427e-18},
    {0.008333333333333333, 1.1564823173178714e-19},
    {0.001388888888888889, -5.300543954373577e-20},
    {0.0001984126984126984, 1.7209558293420705e-22},
    {2.48015873015873e-05, 2.1511947866775882e-23},
    {2.7557319223985893e-06, -1.858393274046472e-22},
    {2.755731922398589e-07, 2.3767714622250297e-23},
    {2.505210838544172e-08, -1.448814070935912e-24},
};

/* e^(d.hi + d.lo) as a double-double, to about 2^-95 relative, for d.hi <= 709; 0 below -745.2.
 * d = k ln2 + r (r in double-double), e^{r/256} - 1 by its Taylor series to degree 11 in
 * double-double, squared back eight times as (1 + s)^2 - 1 = 2s + s^2 (small s keeps its
 * relative accuracy), times 2^k in two exact steps. ~500 flops: for rare rescales and for the
 * slices that cancel. */
static inline dd exp_dd(dd d) {
    if (d.hi < -745.2) return dd_of(0.0);
    double kr = d.hi * LOG2E + 0.5;
    int k = (int)kr;
    if ((double)k > kr) k -= 1; /* floor */
    double kf = (double)k;
    double rh = d.hi - kf * LN2_HI; /* exact: Sterbenz, or k = 0 */
    dd p = two_prod(kf, LN2_LO);
    dd r = dd_add((dd){rh, d.lo}, (dd){-p.hi, -(p.lo + kf * LN2_LO2)});
    r.hi *= 0x1p-8;
    r.lo *= 0x1p-8;
    dd s = {INV_FACT[11][0], INV_FACT[11][1]};
    for (int j = 10; j > 0; j--) {
        s = dd_mul(s, r);
        s = dd_add(s, (dd){INV_FACT[j][0], INV_FACT[j][1]});
    }
    s = dd_mul(s, r); /* e^{r/256} - 1 */
    for (int j = 0; j < 8; j++) {
        dd sq = dd_mul(s, s);
        s = dd_add((dd){2.0 * s.hi, 2.0 * s.lo}, sq);
    }
    dd e = dd_add(dd_of(1.0), s);
    int k1 = k / 2;
    double s1 = pow2i(k1), s2 = pow2i(k - k1);
    dd out = {(e.hi * s1) * s2, (e.lo * s1) * s2};
    return out;
}

/* log(1 + t) to about 2^-95: log1p_dd and one Newton step L0 + ((1 + t) e^{-L0} - 1) */
static inline dd log1p_dd_exact(dd t) {
    dd l0 = log1p_dd(t);
    dd e = exp_dd((dd){-l0.hi, -l0.lo});
    dd y = two_sum(1.0, t.hi);
    y = fast_two_sum(y.hi, y.lo + t.lo);
    dd p = dd_mul(y, e);
    dd dlt = dd_add(p, dd_of(-1.0));
    return dd_add(l0, dlt);
}

/* m + (l.hi + l.lo) rounded once (m finite) */
static inline double add_rounded(double m, dd l) {
    dd s = two_sum(m, l.hi);
    return s.hi + (s.lo + l.lo);
}

#endif
