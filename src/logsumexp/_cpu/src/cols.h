/* Column reductions: the reduced axis is strided while a kept axis is contiguous (axis=0 of a
 * C-ordered matrix). Each column's terms are added in reduced-index order (the lane is the
 * column), a tile of COL_ROWS reduced rows at a time: the tile's column maxima, a rescale of the
 * columns whose maximum rose (double-double exp, rare), then the sums, vectorised across
 * columns. The same bits on every target for the same reasons as the row fold.
 */
#ifndef LSE_COLS_H
#define LSE_COLS_H

#include "fold.h"

#define COL_ROWS 64
#define COL_BLOCK 1024

/* states of columns [c0, c1) (c1 - c0 <= COL_BLOCK) of the slices x[r*s + c], r < L; the
 * columns in groups of W (each column is its own lane: the width changes no sum), padded with -inf */
#define NG (COL_BLOCK / W)
static void col_states(const char *base, int isz, int64_t s, int64_t L, int64_t c0, int64_t c1, lse_state *out) {
    int64_t C = c1 - c0, G = (C + W - 1) / W;
    vd m[NG], S[NG], cc[NG], mt[NG], cnt[NG];
    vi bad[NG];
    double row[COL_BLOCK];
    double scale = isz == 8 ? 0x1p-54 : 1.0; /* float64 sums are kept x 2^54 (exp_split54) */
    for (int64_t g = 0; g < G; g++) {
        m[g] = vsplat(-LSE_INF); S[g] = vsplat(0.0); cc[g] = vsplat(0.0); cnt[g] = vsplat(0.0);
        bad[g] = (vi)vsplat(0.0);
    }
    for (int64_t r0 = 0; r0 < L; r0 += COL_ROWS) {
        int64_t r1 = L - r0 < COL_ROWS ? L : r0 + COL_ROWS;
        for (int64_t g = 0; g < G; g++) mt[g] = vsplat(-LSE_INF);
        for (int64_t r = r0; r < r1; r++) {
            const double *p = load_block(base, isz, 1, r * s + c0, C, row);
            for (int64_t g = 0; g < G; g++) {
                vd v = vload(p + g * W, C - g * W, -LSE_INF);
                mt[g] = vmax(v, mt[g]);
                bad[g] |= vne(v, v) | veq(v, vsplat(LSE_INF));
            }
        }
        for (int64_t g = 0; g < G; g++)
            for (int l = 0; l < W; l++)
                if (mt[g][l] > m[g][l]) { /* the column's maximum rose: rescale its sum (rare) */
                    /* the entries at the old maximum join the sum (float64 sums are kept x 2^54) */
                    dd base = dd_add(two_sum(cnt[g][l], S[g][l] * scale), dd_of(cc[g][l] * scale));
                    dd t = rescale(base, m[g][l], mt[g][l]);
                    cnt[g][l] = 0.0;
                    S[g][l] = t.hi / scale;
                    cc[g][l] = t.lo / scale;
                    m[g][l] = mt[g][l];
                }
        for (int64_t r = r0; r < r1; r++) {
            const double *p = load_block(base, isz, 1, r * s + c0, C, row);
            for (int64_t g = 0; g < G; g++) {
                vd v = vload(p + g * W, C - g * W, -LSE_INF);
                vi none = veq(m[g], vsplat(-LSE_INF)); /* nothing above -inf yet: no terms */
                vd d = vsel(none, vsplat(-LSE_INF), v - m[g]);
                if (isz == 8) add_terms54(vsel(none, vsplat(-LSE_INF), v), vsel(none, vsplat(0.0), m[g]), &S[g], &cc[g], &cnt[g]);
                else {
                    vi top = veq(v, m[g]);
                    S[g] += vsel(top, vsplat(0.0), vexp_lo(d));
                    cnt[g] += vsel(top, vsplat(1.0), vsplat(0.0));
                }
            }
        }
    }
    for (int64_t c = 0; c < C; c++) {
        int64_t g = c / W, l = c % W;
        if (bad[g][l]) { out[c] = special_state(base + (c0 + c) * isz, isz, s, 0, L, NULL, 0); continue; }
        if (m[g][l] == -LSE_INF) { out[c] = EMPTY_STATE; continue; }
        dd t = two_sum(cnt[g][l] - 1.0, S[g][l] * scale);
        t = fast_two_sum(t.hi, t.lo + cc[g][l] * scale);
        out[c] = (lse_state){m[g][l], 1.0, t.hi, t.lo};
    }
}

#endif
