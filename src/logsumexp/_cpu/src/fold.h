/* The state fold: the (max, lead, tail) state of one slice, read once from memory.
 *
 *     sum_i b_i e^{x_i} = e^m (lead + tail + tlo)
 *
 * m the slice maximum, lead the weight of the maximal entries (1 without weights: the one
 * maximal entry's term e^0 is kept out of the tail, Blanchard-Higham-Higham), tail + tlo the
 * rest as a double-double. Special states: empty or all -inf (-inf, 0, 0); +inf entries m = +inf
 * with lead + tail the sum of their weights; a NaN m = NaN.
 *
 * Why the result has the same bits on every machine: the slice is cut into items of ITEM
 * elements (whatever the thread count) and items into blocks of BLOCK elements; a block's
 * terms go to LANES virtual lanes (element i to lane i mod LANES, in index order), and lanes,
 * blocks and items are combined in a fixed order. The compiler may map the lanes onto 2, 4 or
 * 8 hardware lanes (SSE2, AVX2, AVX-512); it may not reorder a sum (no -ffast-math) nor
 * contract a product into an FMA (-ffp-contract=off).
 *
 * Accuracy: float64 terms are e^d = 2^k + 2^k y (exp_split54) added with TwoSum per lane, so a
 * block's sum is exact but for the exps' own ~0.1 ulp; blocks whose maximum raises the running
 * maximum rescale the sum by a double-double exp (exp_dd), which is rare (O(log n) times on
 * random data). float32 data: a float64 exp to 7.4e-14 and plain float64 lane sums (errors
 * ~1e-14, far below float32's 6e-8).
 */
#ifndef LSE_FOLD_H
#define LSE_FOLD_H

#include "exp.h"

#define BLOCK 2048
#define ITEM 65536 /* a multiple of BLOCK */

typedef struct { double m, lead, tail, tlo; } lse_state;

static const lse_state EMPTY_STATE = {-__builtin_inf(), 0.0, 0.0, 0.0};
static const lse_state NAN_STATE = {__builtin_nan(""), __builtin_nan(""), __builtin_nan(""), 0.0};

/* n elements of a slice (itemsize isz: 4 or 8, element stride s) as float64: a pointer into
 * the data itself (contiguous float64) or into buf (converted or gathered). */
static inline const double *load_block(const char *base, int isz, int64_t s, int64_t i0, int64_t n, double *buf) {
    if (isz == 8) {
        const double *p = (const double *)base + i0 * s;
        if (s == 1) return p;
        for (int64_t i = 0; i < n; i++) buf[i] = p[i * s];
    } else {
        const float *p = (const float *)base + i0 * s;
        if (s == 1)
            for (int64_t i = 0; i < n; i++) buf[i] = (double)p[i];
        else
            for (int64_t i = 0; i < n; i++) buf[i] = (double)p[i * s];
    }
    return buf;
}

/* the loops over the pieces of a set of 16 lanes are unrolled, so that the lanes' accumulators
 * stay in registers */
#define PIECES _Pragma("GCC unroll 8")
/* W elements from p (all there) */
static inline vd vfull(const double *p) { vd v; memcpy(&v, p, sizeof v); return v; }
/* lane l of a set of pieces (l < LANES) */
#define LANE(v, l) ((v)[(l) / W][(l) % W])

/* the largest non-NaN entry (-inf if none) */
static inline double block_max(const double *p, int64_t n) {
    vd mx[NPIECES];
    for (int k = 0; k < NPIECES; k++) mx[k] = vsplat(-LSE_INF);
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        PIECES for (int k = 0; k < NPIECES; k++) mx[k] = vmax(vfull(p + i + k * W), mx[k]);
    }
    if (i < n)
        PIECES for (int k = 0; k < NPIECES; k++) mx[k] = vmax(vload(p + i + k * W, n - i - k * W, -LSE_INF), mx[k]);
    double m = -LSE_INF;
    for (int l = 0; l < LANES; l++) m = LANE(mx, l) > m ? LANE(mx, l) : m;
    return m;
}

static inline int has_nan(const double *p, int64_t n) {
    int f = 0;
    for (int64_t i = 0; i < n; i++) f |= p[i] != p[i];
    return f;
}

/* the lanes' double-double sums (s[l] + c[l]) added in lane order */
static inline dd lanes_total(const vd *s, const vd *c) {
    dd acc = {0.0, 0.0};
    for (int l = 0; l < LANES; l++)
        /* an empty lane adds exactly nothing to a normalised double-double: skipped (short rows) */
        if (LANE(s, l) != 0.0 || LANE(c, l) != 0.0) acc = dd_add(acc, (dd){LANE(s, l), LANE(c, l)});
    return acc;
}

static inline double lanes_sum(const vd *s) {
    double t = 0.0;
    for (int l = 0; l < LANES; l++) t += LANE(s, l);
    return t;
}

/* the terms 2^54 e^{x - m} of entries below m added to the lanes (s, c); the entries equal to m
 * (terms of exactly 1) counted in cnt instead, so that a lane's sum holds only tail terms of
 * like size and none is lost next to a 1. x - m is rounded (d) and its rounding dl put back as
 * e^{d + dl} = e^d (1 + dl): at |x - m| = 100 that rounding alone is 7e-15 of the term. Each
 * term is added with TwoSum, its two roundings (hi + lo, and the sum) kept in c. */
static inline void add_terms54(vd x, vd m, vd *s, vd *c, vd *cnt) {
    vd d = x - m, bb = d - x;
    vd dl = (x - (d - bb)) + (-m - bb); /* TwoSum(x, -m) */
    vi top = veq(x, m);
    dl = vsel(veq(dl, dl), dl, vsplat(0.0)); /* x = -inf: the term is 0 anyway */
    d = vsel(top, vsplat(-LSE_INF), d);
    vd hi, lo;
    vexp_split54(d, &hi, &lo);
    lo = lo + (hi + lo) * dl;
    vd e = hi + lo, ee = lo - (e - hi);
    vd t = *s + e, bp = t - *s;
    *c += ((*s - (t - bp)) + (e - bp)) + ee;
    *s = t;
    *cnt += vsel(top, vsplat(1.0), vsplat(0.0));
}

/* sum of e^{x_i - m} over a block of float64 data, as a double-double (the count of entries at
 * m, exact, plus the tail); lanes past n are -inf (their terms are exactly 0) */
static inline dd block_sum_f64(const double *p, int64_t n, double m) {
    vd s[NPIECES], c[NPIECES], cnt[NPIECES], mv = vsplat(m);
    for (int k = 0; k < NPIECES; k++) s[k] = c[k] = cnt[k] = vsplat(0.0);
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        PIECES for (int k = 0; k < NPIECES; k++) add_terms54(vfull(p + i + k * W), mv, &s[k], &c[k], &cnt[k]);
    }
    if (i < n)
        PIECES for (int k = 0; k < NPIECES; k++)
            add_terms54(vload(p + i + k * W, n - i - k * W, -LSE_INF), mv, &s[k], &c[k], &cnt[k]);
    dd t = lanes_total(s, c);
    t.hi *= 0x1p-54;
    t.lo *= 0x1p-54;
    return dd_add(dd_of(lanes_sum(cnt)), t);
}

/* float32 data's terms e^{x - m} below m added to s, the entries equal to m counted in cnt */
static inline void add_terms_lo(vd x, vd m, vd *s, vd *cnt) {
    vi top = veq(x, m);
    *s += vsel(top, vsplat(0.0), vexp_lo(x - m));
    *cnt += vsel(top, vsplat(1.0), vsplat(0.0));
}

/* the same for float32 data (already widened in p): the terms below m in plain float64 lane
 * sums (errors ~1e-14 of the tail, far below float32's 6e-8), the entries equal to m counted
 * apart, so that the leading 1 never swamps a small tail */
static inline dd block_sum_f32(const double *p, int64_t n, double m) {
    vd s[NPIECES], cnt[NPIECES], mv = vsplat(m);
    for (int k = 0; k < NPIECES; k++) s[k] = cnt[k] = vsplat(0.0);
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        PIECES for (int k = 0; k < NPIECES; k++) add_terms_lo(vfull(p + i + k * W), mv, &s[k], &cnt[k]);
    }
    if (i < n)
        PIECES for (int k = 0; k < NPIECES; k++)
            add_terms_lo(vload(p + i + k * W, n - i - k * W, -LSE_INF), mv, &s[k], &cnt[k]);
    return two_sum(lanes_sum(cnt), lanes_sum(s));
}

/* weighted: sum of w_i e^{x_i - m} (double-double) and the weights of the entries equal to m */
static inline dd block_wsum(const double *p, const double *w, int64_t n, double m, int isz, double *lead) {
    vd s[NPIECES], c[NPIECES], ld[NPIECES], mv = vsplat(m);
    for (int k = 0; k < NPIECES; k++) s[k] = c[k] = ld[k] = vsplat(0.0);
    for (int64_t i = 0; i < n; i += LANES)
        for (int k = 0; k < NPIECES; k++) {
            int64_t o = i + k * W;
            vd x = vload(p + o, n - o, -LSE_INF), wi = vload(w + o, n - o, 0.0), e;
            if (isz == 8) {
                vd hi, lo;
                vexp_split54(x - mv, &hi, &lo);
                e = (hi + lo) * 0x1p-54;
            } else {
                e = vexp_lo(x - mv);
            }
            vd term = wi * e;
            vd t = s[k] + term, bp = t - s[k];
            c[k] += (s[k] - (t - bp)) + (term - bp);
            s[k] = t;
            ld[k] += vsel(veq(x, mv), wi, vsplat(0.0));
        }
    *lead = lanes_sum(ld);
    return lanes_total(s, c);
}

/* exact scalar state of a special slice (a NaN, +inf entries, or nothing finite) */
static lse_state special_state(const char *base, int isz, int64_t s, int64_t a, int64_t b,
                               const char *wbase, int wsz) {
    int pinf = 0;
    double lead = 0.0, tail = 0.0;
    for (int64_t i = a; i < b; i++) {
        double v = isz == 8 ? ((const double *)base)[i * s] : (double)((const float *)base)[i * s];
        double w = 1.0;
        if (wbase) w = wsz == 8 ? ((const double *)wbase)[i * s] : (double)((const float *)wbase)[i * s];
        if (w == 0.0) continue;
        if (v != v || w != w) return NAN_STATE;
        if (v == LSE_INF) {
            if (!pinf) lead = w; else tail += w;
            pinf = 1;
        }
    }
    if (pinf) return (lse_state){LSE_INF, lead, tail, 0.0};
    return EMPTY_STATE; /* all -inf (only called when no finite maximum was found) */
}

/* a weighted slice whose compensated sum is not finite: NaN if an entry or weight is NaN,
 * else the plain sum of w_i e^{x_i - m} (infinite, or NaN where infinite terms cancel) */
static lse_state plain_weighted_state(const char *base, int isz, int64_t s, int64_t a, int64_t b,
                                      const char *wbase, int wsz, double m) {
    double lead = 0.0, sum = 0.0;
    for (int64_t i = a; i < b; i++) {
        double v = isz == 8 ? ((const double *)base)[i * s] : (double)((const float *)base)[i * s];
        double w = wsz == 8 ? ((const double *)wbase)[i * s] : (double)((const float *)wbase)[i * s];
        if (w == 0.0) continue;
        if (v != v || w != w) return NAN_STATE;
        if (v == m) lead += w;
        else sum += w * exp_lo(v - m); /* rare: infinite weights or sums */
    }
    return (lse_state){m, lead, sum, 0.0};
}

/* s * e^{d}, d = a - b exactly (a double-double exp: the rescale adds no error that shows) */
static inline dd rescale(dd s, double a, double b) {
    if (a == -LSE_INF) return dd_of(0.0);
    return dd_mul(s, exp_dd(two_sum(a, -b)));
}

/* The state of elements [a, b) of a slice; buf, wbuf: BLOCK doubles of scratch. */
static lse_state fold_range(const char *base, int isz, int64_t s, int64_t a, int64_t b,
                            const char *wbase, int wsz, double *buf, double *wbuf) {
    double m = -LSE_INF, lead = 0.0;
    dd S = {0.0, 0.0};
    for (int64_t i = a; i < b; i += BLOCK) {
        int64_t n = b - i < BLOCK ? b - i : BLOCK;
        const double *p = load_block(base, isz, s, i, n, buf);
        const double *w = NULL;
        if (wbase) {
            w = load_block(wbase, wsz, s, i, n, wbuf);
            if (p != buf) { memcpy(buf, p, (size_t)n * sizeof(double)); p = buf; }
            for (int64_t j = 0; j < n; j++) buf[j] = w[j] == 0.0 ? -LSE_INF : buf[j];
        }
        double mb = block_max(p, n);
        if (mb == LSE_INF) return special_state(base, isz, s, a, b, wbase, wsz);
        if (mb == -LSE_INF) {
            if (has_nan(p, n) || (w && has_nan(w, n))) return NAN_STATE;
            continue;
        }
        if (mb > m) {
            S = rescale(S, m, mb);
            m = mb;
            lead = 0.0;
        }
        if (w) {
            double lb;
            dd ws = block_wsum(p, w, n, m, isz, &lb);
            S = dd_add(S, ws);
            lead += lb;
        } else {
            S = dd_add(S, isz == 8 ? block_sum_f64(p, n, m) : block_sum_f32(p, n, m));
        }
    }
    if (m == -LSE_INF) return EMPTY_STATE;
    if (S.hi != S.hi || S.lo != S.lo) {
        /* a NaN entry; or, weighted, infinite weights or a sum past the float64 range: the
         * plain sum gives what the mathematics gives (+-inf, or NaN where infinities cancel) */
        if (!wbase) return NAN_STATE;
        return plain_weighted_state(base, isz, s, a, b, wbase, wsz, m);
    }
    if (!wbase) lead = 1.0;
    dd t = two_sum(S.hi, -lead);
    t = fast_two_sum(t.hi, t.lo + S.lo);
    return (lse_state){m, lead, t.hi, t.lo};
}

/* the merge: M = max(m1, m2), each side scaled by e^{m - M}; equal maxima (infinite ones
 * included) scale by exactly 1 */
static inline lse_state merge_state(lse_state a, lse_state b) {
    if (a.m != a.m || b.m != b.m) return NAN_STATE;
    if (b.m > a.m) { lse_state t = a; a = b; b = t; }
    if (b.m == -LSE_INF) return a;
    dd bt = two_sum(b.lead, b.tail);
    bt = fast_two_sum(bt.hi, bt.lo + b.tlo);
    if (a.m != b.m) {
        if (a.m == LSE_INF) return a;
        bt = dd_mul(bt, exp_dd(two_sum(b.m, -a.m)));
    }
    dd t = dd_add((dd){a.tail, a.tlo}, bt);
    a.tail = t.hi;
    a.tlo = t.lo;
    return a;
}

/* the state of a whole slice of length L: items of ITEM elements folded, merged in order (the
 * same items and order as the threaded path, so the same bits) */
static lse_state slice_state(const char *base, int isz, int64_t s, int64_t L, const char *wbase, int wsz,
                             double *buf, double *wbuf) {
    lse_state st = EMPTY_STATE;
    for (int64_t a = 0; a < L; a += ITEM) {
        int64_t b = L - a < ITEM ? L : a + ITEM;
        lse_state it = fold_range(base, isz, s, a, b, wbase, wsz, buf, wbuf);
        st = a == 0 ? it : merge_state(st, it);
    }
    return st;
}

#endif
