/* A standalone harness over the KL kernel (src/logsumexp/_cpu/src/kl.h), for the bits test of
 * tests/test_kl_compiled.py: the same input rows through every build (x86-64 baseline, AVX2 + FMA,
 * AVX-512, arm64 under qemu-aarch64-static) must give the same bytes, and the x86 build the bytes
 * that the Python extension gives.
 *
 * Usage: kl_harness IN OUT. IN (little-endian): int64 n, int64 L, then n*L float32 a, n*L float32 b,
 * n float32 g. OUT, for reverse = 0 then 1: n float32 rows, n float32 ok (0/1), n*L float32 a and
 * n*L float32 b after the kernel (the gradients of both sides, or the untouched rows).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kl.h"

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    if (!in || !out) return 3;
    int64_t n, L;
    if (fread(&n, 8, 1, in) != 1 || fread(&L, 8, 1, in) != 1) return 4;
    size_t nl = (size_t)(n * L);
    float *a0 = malloc(nl * 4), *b0 = malloc(nl * 4), *g = malloc((size_t)n * 4);
    float *a = malloc(nl * 4), *b = malloc(nl * 4), *rows = malloc((size_t)n * 4), *ok = malloc((size_t)n * 4);
    double *ea = malloc((size_t)L * 8), *eb = malloc((size_t)L * 8);
    if (fread(a0, 4, nl, in) != nl || fread(b0, 4, nl, in) != nl || fread(g, 4, (size_t)n, in) != (size_t)n) return 5;
    for (int reverse = 0; reverse < 2; reverse++) {
        memcpy(a, a0, nl * 4);
        memcpy(b, b0, nl * 4);
        for (int64_t j = 0; j < n; j++) {
            rows[j] = 0.0f;
            ok[j] = (float)kl_row(a + j * L, b + j * L, L, reverse, (double)g[j], 1, 1, &rows[j], ea, eb);
        }
        fwrite(rows, 4, (size_t)n, out);
        fwrite(ok, 4, (size_t)n, out);
        fwrite(a, 4, nl, out);
        fwrite(b, 4, nl, out);
    }
    fclose(out);
    fclose(in);
    return 0;
}
