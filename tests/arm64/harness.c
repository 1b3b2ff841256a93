/* A standalone harness over the compiled CPU kernels' headers (no Python): it reads input
 * vectors, runs the kernels on them and writes every result as raw bytes, so that the same
 * inputs can be compared bit for bit across builds: x86-64 baseline, AVX2 + FMA, AVX-512 and
 * arm64 (cross-compiled, run under qemu-aarch64-static). tests/test_cpu_bits.py drives it and
 * also compares its x86 output with what the Python extension returns for the same inputs, so
 * the harness tests the shipped kernels.
 *
 * Usage: harness IN OUT
 *
 * IN (little-endian): int64 count; then per case int64 n, R, C (R*C == n: the vector read as an
 * R x C C-ordered matrix for the column kernel; C == 0: no column test), int64 t (the
 * cross-entropy target), n float64 x, n float64 w (weights).
 *
 * OUT, per case, first for float64 data then for float32 data (x and w converted):
 *   state of the slice (m, lead, tail + tlo) and its LogSumExp (finish_value)  4 doubles
 *   weighted LogSumExp and sign (finish_weighted)                               2 doubles
 *   LogSumExp of the reversed view (element stride -1)                          1 double
 *   LogSumExp of the even entries (element stride 2), n/2 rounded up            1 double
 *   softmax and log_softmax of the slice (write_normalized), in the data type   2n values
 *   per column c < C: state (m, lead, tail + tlo) and LogSumExp                 4C doubles
 * then, for the float32 data only, the cross-entropy row (ce_row with g = 1, target t):
 *   ok, loss, lse as doubles                                                    3 doubles
 *   the gradient row                                                            n floats
 */
#include <stdio.h>
#include <stdlib.h>

#include "cols.h"
#include "softmax.h"

static void put_d(FILE *f, double v) { fwrite(&v, sizeof v, 1, f); }

static void state_out(FILE *f, lse_state st, double value) {
    put_d(f, st.m);
    put_d(f, st.lead);
    put_d(f, st.tail + st.tlo);
    put_d(f, value);
}

/* every result for one case on data of item size isz (x, w already in that type) */
static void run_case(FILE *f, const char *x, const char *w, int isz, int64_t n, int64_t R, int64_t C, double *buf,
                     double *wbuf) {
    lse_state st = slice_state(x, isz, 1, n, NULL, 0, buf, NULL);
    state_out(f, st, finish_value(st, x, isz, 1, n));

    double val, sign;
    lse_state ws = slice_state(x, isz, 1, n, w, isz, buf, wbuf);
    finish_weighted(ws, x, isz, 1, n, w, isz, &val, &sign);
    put_d(f, val);
    put_d(f, sign);

    const char *last = x + (n - 1) * isz; /* element 0 of the reversed view */
    lse_state rs = slice_state(last, isz, -1, n, NULL, 0, buf, NULL);
    put_d(f, finish_value(rs, last, isz, -1, n));
    int64_t half = (n + 1) / 2;
    lse_state es = slice_state(x, isz, 2, half, NULL, 0, buf, NULL);
    put_d(f, finish_value(es, x, isz, 2, half));

    char *out = malloc((size_t)n * isz);
    for (int log = 0; log < 2; log++) {
        write_normalized(x, isz, 1, out, 1, 0, n, st, log, buf);
        fwrite(out, (size_t)isz, (size_t)n, f);
    }
    free(out);

    if (C > 0) {
        lse_state *cs = malloc((size_t)C * sizeof *cs);
        for (int64_t c0 = 0; c0 < C; c0 += COL_BLOCK) {
            int64_t c1 = C - c0 < COL_BLOCK ? C : c0 + COL_BLOCK;
            col_states(x, isz, C, R, c0, c1, cs + c0);
        }
        for (int64_t c = 0; c < C; c++) state_out(f, cs[c], finish_value(cs[c], x + c * isz, isz, C, R));
        free(cs);
    }
}

static int read_all(FILE *f, void *p, size_t size, size_t count) { return fread(p, size, count, f) == count; }

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s IN OUT\n", argv[0]);
        return 2;
    }
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    if (!in || !out) {
        perror("harness");
        return 2;
    }
    int64_t count;
    if (!read_all(in, &count, sizeof count, 1)) return 3;
    for (int64_t k = 0; k < count; k++) {
        int64_t hdr[4];
        if (!read_all(in, hdr, sizeof(int64_t), 4)) return 3;
        int64_t n = hdr[0], R = hdr[1], C = hdr[2], t = hdr[3];
        /* scratch: BLOCK doubles for the folds, a whole row for ce_row's exps (as module.c) */
        double *buf = malloc((size_t)(n > BLOCK ? n : BLOCK) * sizeof(double)), *wbuf = malloc(BLOCK * sizeof(double));
        double *x = malloc((size_t)n * sizeof(double)), *w = malloc((size_t)n * sizeof(double));
        if (!read_all(in, x, sizeof(double), (size_t)n) || !read_all(in, w, sizeof(double), (size_t)n)) return 3;
        float *xf = malloc((size_t)n * sizeof(float)), *wf = malloc((size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++) {
            xf[i] = (float)x[i];
            wf[i] = (float)w[i];
        }
        run_case(out, (const char *)x, (const char *)w, 8, n, R, C, buf, wbuf);
        run_case(out, (const char *)xf, (const char *)wf, 4, n, R, C, buf, wbuf);
        float loss = 0.0f, lse = 0.0f;
        int ok = ce_row(xf, n, t, 1, 1.0, 1, &loss, &lse, buf);
        put_d(out, (double)ok);
        put_d(out, (double)loss);
        put_d(out, (double)lse);
        fwrite(xf, sizeof(float), (size_t)n, out);
        free(x);
        free(w);
        free(xf);
        free(wf);
        free(buf);
        free(wbuf);
    }
    return fclose(out) == 0 ? 0 : 4;
}
