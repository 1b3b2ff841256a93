/* The Python face of one compiled target: functions over buffers and integers, no NumPy C API.
 *
 * Arrays arrive as buffer objects (NumPy arrays): inputs read-only with any strides (the
 * pointer is element 0 and offsets, in elements, may be negative), outputs writable. The
 * Python layer (logsumexp/_cpu/__init__.py) plans the layout and checks everything: these
 * functions trust their arguments. Every kernel releases the GIL while it runs.
 *
 * This file is compiled once per target (target_*.c defines LSE_TARGET and the flags differ);
 * the module is named _kernels_<target>.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>

#include "cols.h"
#include "segment.h"
#include "softmax.h"
#include "kl.h"

#define STR2(x) #x
#define STR(x) STR2(x)
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)

/* ---------------------------------------------------------------- argument parsing */
#define MAX_BUFS 16
typedef struct {
    Py_buffer v[MAX_BUFS];
    int n;
} bufset;

static void release(bufset *bs) {
    for (int i = 0; i < bs->n; i++) PyBuffer_Release(&bs->v[i]);
    bs->n = 0;
}

/* fmt: 'r' read buffer, 'R' read buffer or None (NULL), 'w' writable buffer, 'n' int64,
 * 'd' double. Pointers are returned through the varargs. */
static int parse(PyObject *const *args, Py_ssize_t nargs, const char *fmt, bufset *bs, ...) {
    va_list ap;
    va_start(ap, bs);
    Py_ssize_t need = (Py_ssize_t)strlen(fmt);
    if (nargs != need) {
        va_end(ap);
        PyErr_Format(PyExc_TypeError, "expected %zd arguments, got %zd", need, nargs);
        return 0;
    }
    bs->n = 0;
    for (Py_ssize_t i = 0; i < need; i++) {
        PyObject *o = args[i];
        char f = fmt[i];
        if (f == 'r' || f == 'R' || f == 'w') {
            void **dst = va_arg(ap, void **);
            if (f == 'R' && o == Py_None) { *dst = NULL; continue; }
            int flags = f == 'w' ? (PyBUF_STRIDES | PyBUF_WRITABLE) : PyBUF_STRIDES;
            if (PyObject_GetBuffer(o, &bs->v[bs->n], flags) < 0) { va_end(ap); release(bs); return 0; }
            *dst = bs->v[bs->n].buf;
            bs->n++;
        } else if (f == 'n') {
            int64_t *dst = va_arg(ap, int64_t *);
            *dst = PyLong_AsLongLong(o);
            if (*dst == -1 && PyErr_Occurred()) { va_end(ap); release(bs); return 0; }
        } else if (f == 'd') {
            double *dst = va_arg(ap, double *);
            *dst = PyFloat_AsDouble(o);
            if (*dst == -1.0 && PyErr_Occurred()) { va_end(ap); release(bs); return 0; }
        }
    }
    va_end(ap);
    return 1;
}

static double *scratch(int64_t n) { return (double *)malloc((size_t)(n > 0 ? n : 1) * sizeof(double)); }

/* ---------------------------------------------------------------- state */
/* lse_items(x, isz, koff, s, item_row, item_a, item_b, w, wsz, om, olead, otail, otlo, lo, hi):
 * item t = elements [item_a[t], item_b[t]) of the slice at offset koff[item_row[t]] */
static PyObject *py_lse_items(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const char *x, *w;
    const int64_t *koff, *ir, *ia, *ib;
    double *om, *ol, *ot, *otl;
    int64_t isz, s, wsz, lo, hi;
    if (!parse(args, nargs, "rnrnrrrRnwwwwnn", &bs, &x, &isz, &koff, &s, &ir, &ia, &ib, &w, &wsz, &om, &ol, &ot,
               &otl, &lo, &hi))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    double *buf = scratch(BLOCK), *wbuf = scratch(BLOCK);
    for (int64_t t = lo; t < hi; t++) {
        int64_t off = koff[ir[t]] * isz;
        lse_state st = fold_range(x + off, (int)isz, s, ia[t], ib[t], w ? w + koff[ir[t]] * wsz : NULL, (int)wsz,
                                  buf, wbuf);
        om[t] = st.m; ol[t] = st.lead; ot[t] = st.tail; otl[t] = st.tlo;
    }
    free(buf);
    free(wbuf);
    Py_END_ALLOW_THREADS
    release(&bs);
    Py_RETURN_NONE;
}

/* merge_items(item_row, im, ilead, itail, itlo, om, olead, otail, otlo): items of a row are
 * consecutive and in order; rows without items get the empty state */
static PyObject *py_merge_items(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const int64_t *ir;
    const double *im, *il, *it, *itl;
    double *om, *ol, *ot, *otl;
    int64_t nitems, nrows;
    if (!parse(args, nargs, "rrrrrwwwwnn", &bs, &ir, &im, &il, &it, &itl, &om, &ol, &ot, &otl, &nitems, &nrows))
        return NULL;
    for (int64_t j = 0; j < nrows; j++) { om[j] = -LSE_INF; ol[j] = 0.0; ot[j] = 0.0; otl[j] = 0.0; }
    int64_t prev = -1;
    for (int64_t t = 0; t < nitems; t++) {
        int64_t j = ir[t];
        lse_state a = {om[j], ol[j], ot[j], otl[j]}, b = {im[t], il[t], it[t], itl[t]};
        lse_state r = j == prev ? merge_state(a, b) : b;
        om[j] = r.m; ol[j] = r.lead; ot[j] = r.tail; otl[j] = r.tlo;
        prev = j;
    }
    release(&bs);
    Py_RETURN_NONE;
}

/* col_items(x, isz, goff, s, L, item_g, item_c0, item_c1, ooff, om, olead, otail, otlo, lo, hi) */
static PyObject *py_col_items(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const char *x;
    const int64_t *goff, *ig, *ic0, *ic1, *ooff;
    double *om, *ol, *ot, *otl;
    int64_t isz, s, L, lo, hi;
    if (!parse(args, nargs, "rnrnnrrrrwwwwnn", &bs, &x, &isz, &goff, &s, &L, &ig, &ic0, &ic1, &ooff, &om, &ol, &ot,
               &otl, &lo, &hi))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    lse_state *st = (lse_state *)malloc(COL_BLOCK * sizeof(lse_state));
    for (int64_t t = lo; t < hi; t++) {
        int64_t g = ig[t], c0 = ic0[t], c1 = ic1[t];
        col_states(x + goff[g] * isz, (int)isz, s, L, c0, c1, st);
        for (int64_t c = c0; c < c1; c++) {
            int64_t o = ooff[g] + c;
            lse_state q = st[c - c0];
            om[o] = q.m; ol[o] = q.lead; ot[o] = q.tail; otl[o] = q.tlo;
        }
    }
    free(st);
    Py_END_ALLOW_THREADS
    release(&bs);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- values */
/* finish_rows(x, isz, koff, s, L, m, tail, tlo, out): unweighted values, lead 1 */
static PyObject *py_finish_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const char *x;
    const int64_t *koff;
    const double *m, *t, *tl;
    double *out;
    int64_t isz, s, L, nrows;
    if (!parse(args, nargs, "rnrnnrrrwn", &bs, &x, &isz, &koff, &s, &L, &m, &t, &tl, &out, &nrows)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t j = 0; j < nrows; j++) {
        lse_state st = {m[j], 1.0, t[j], tl[j]};
        out[j] = finish_value(st, x + koff[j] * isz, (int)isz, s, L);
    }
    Py_END_ALLOW_THREADS
    release(&bs);
    Py_RETURN_NONE;
}

/* lse_rows(x, isz, koff, L, out, lo, hi): unweighted values of rows [lo, hi) of L elements at unit
 * stride (row j at element offset koff[j]), state and finish in one call; rows of L <= LANES
 * W at a time (short_rows_values), longer ones one by one. Same bits as lse_items + finish_rows. */
static PyObject *py_lse_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const char *x;
    const int64_t *koff;
    double *out;
    int64_t isz, L, lo, hi;
    if (!parse(args, nargs, "rnrnwnn", &bs, &x, &isz, &koff, &L, &out, &lo, &hi)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    double *buf = scratch(BLOCK);
    if (L <= LANES) {
        short_rows_values(x, (int)isz, koff, L, lo, hi, out, buf);
    } else {
        for (int64_t j = lo; j < hi; j++) {
            const char *base = x + koff[j] * isz;
            out[j] = finish_value(slice_state(base, (int)isz, 1, L, NULL, 0, buf, NULL), base, (int)isz, 1, L);
        }
    }
    free(buf);
    Py_END_ALLOW_THREADS
    release(&bs);
    Py_RETURN_NONE;
}

/* finish_weighted_rows(x, isz, w, wsz, koff, s, L, m, lead, tail, tlo, val, sign, nrows) */
static PyObject *py_finish_weighted_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const char *x, *w;
    const int64_t *koff;
    const double *m, *ld, *t, *tl;
    double *val, *sg;
    int64_t isz, wsz, s, L, nrows;
    if (!parse(args, nargs, "rnrnrnnrrrrwwn", &bs, &x, &isz, &w, &wsz, &koff, &s, &L, &m, &ld, &t, &tl, &val, &sg,
               &nrows))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t j = 0; j < nrows; j++) {
        lse_state st = {m[j], ld[j], t[j], tl[j]};
        finish_weighted(st, x + koff[j] * isz, (int)isz, s, L, w + koff[j] * wsz, (int)wsz, &val[j], &sg[j]);
    }
    Py_END_ALLOW_THREADS
    release(&bs);
    Py_RETURN_NONE;
}

/* lse_1d(x, isz, n) -> float: the whole reduction of a contiguous 1-D array, one call */
static PyObject *py_lse_1d(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const char *x;
    int64_t isz, n;
    if (!parse(args, nargs, "rnn", &bs, &x, &isz, &n)) return NULL;
    double v;
    Py_BEGIN_ALLOW_THREADS
    double buf[BLOCK];
    lse_state st = slice_state(x, (int)isz, 1, n, NULL, 0, buf, NULL);
    v = finish_value(st, x, (int)isz, 1, n);
    Py_END_ALLOW_THREADS
    release(&bs);
    return PyFloat_FromDouble(v);
}

/* lse_1d_weighted(x, isz, w, wsz, n) -> (value, sign) */
static PyObject *py_lse_1d_weighted(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const char *x, *w;
    int64_t isz, wsz, n;
    if (!parse(args, nargs, "rnrnn", &bs, &x, &isz, &w, &wsz, &n)) return NULL;
    double v, sg;
    Py_BEGIN_ALLOW_THREADS
    double *buf = scratch(BLOCK), *wbuf = scratch(BLOCK);
    lse_state st = slice_state(x, (int)isz, 1, n, w, (int)wsz, buf, wbuf);
    finish_weighted(st, x, (int)isz, 1, n, w, (int)wsz, &v, &sg);
    free(buf);
    free(wbuf);
    Py_END_ALLOW_THREADS
    release(&bs);
    return Py_BuildValue("(dd)", v, sg);
}

/* ---------------------------------------------------------------- softmax, cross-entropy */
/* softmax_rows(x, isz, xkoff, xs, L, out, okoff, os, log, lo, hi) */
static PyObject *py_softmax_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const char *x;
    char *out;
    const int64_t *xk, *ok;
    int64_t isz, xs, L, os, log, lo, hi;
    if (!parse(args, nargs, "rnrnnwrnnnn", &bs, &x, &isz, &xk, &xs, &L, &out, &ok, &os, &log, &lo, &hi)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    /* float32 softmax of unit-stride rows up to ITEM: one exp per entry (exps_f32_row) */
    int one_exp = isz == 4 && !log && xs == 1 && L <= ITEM;
    double *buf = scratch(one_exp ? L : BLOCK);
    int64_t j = lo;
    if (!one_exp && xs == 1 && L <= LANES) {
        /* short unit-stride rows: their states W at a time (short_rows_states: fold_range's bits) */
        lse_state st[W];
        for (; j + W <= hi; j += W) {
            short_rows_states(x, (int)isz, xk, j, L, st, buf);
            if (write_short_rows(x, (int)isz, xk, j, L, out, ok, os, st, (int)log)) continue;
            for (int l = 0; l < W; l++)
                write_normalized(x + xk[j + l] * isz, (int)isz, 1, out + ok[j + l] * isz, os, 0, L, st[l], (int)log,
                                 buf);
        }
    }
    for (; j < hi; j++) {
        const char *base = x + xk[j] * isz;
        if (one_exp) {
            lse_state st = exps_f32_row((const float *)base, L, buf);
            if (lse_isfinite(st.m) && lse_isfinite(st.tail)) {
                double rcp = 1.0 / (1.0 + st.tail);
                float *o = (float *)(out + ok[j] * isz);
                for (int64_t i = 0; i < L; i++) o[i * os] = (float)(buf[i] * rcp);
                continue;
            }
        }
        lse_state st = slice_state(base, (int)isz, xs, L, NULL, 0, buf, NULL);
        write_normalized(base, (int)isz, xs, out + ok[j] * isz, os, 0, L, st, (int)log, buf);
    }
    free(buf);
    Py_END_ALLOW_THREADS
    release(&bs);
    Py_RETURN_NONE;
}

/* softmax_write_items(x, isz, xkoff, xs, out, okoff, os, item_row, item_a, item_b, m, lead, tail, tlo, log, lo, hi) */
static PyObject *py_softmax_write_items(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const char *x;
    char *out;
    const int64_t *xk, *ok, *ir, *ia, *ib;
    const double *m, *ld, *t, *tl;
    int64_t isz, xs, os, log, lo, hi;
    if (!parse(args, nargs, "rnrnwrnrrrrrrrnnn", &bs, &x, &isz, &xk, &xs, &out, &ok, &os, &ir, &ia, &ib, &m, &ld, &t,
               &tl, &log, &lo, &hi))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    double *buf = scratch(BLOCK);
    for (int64_t q = lo; q < hi; q++) {
        int64_t j = ir[q];
        lse_state st = {m[j], ld[j], t[j], tl[j]};
        write_normalized(x + xk[j] * isz, (int)isz, xs, out + ok[j] * isz, os, ia[q], ib[q], st, (int)log, buf);
    }
    free(buf);
    Py_END_ALLOW_THREADS
    release(&bs);
    Py_RETURN_NONE;
}

/* ce_rows(z, L, target, g, ignore, rows_out, lse_out, ok, lo, hi): float32 z [n, L] in place */
static PyObject *py_ce_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    float *z, *rows, *lses;
    const int64_t *tg;
    const float *g;
    char *okb;
    int64_t L, ignore, lo, hi;
    if (!parse(args, nargs, "wnrRnwwwnn", &bs, &z, &L, &tg, &g, &ignore, &rows, &lses, &okb, &lo, &hi)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    double *buf = scratch(L > BLOCK ? L : BLOCK);
    for (int64_t j = lo; j < hi; j++) {
        int valid = tg[j] != ignore;
        okb[j] = (char)ce_row(z + j * L, L, valid ? tg[j] : 0, valid, g ? (double)g[j] : 0.0, g != NULL, &rows[j],
                              &lses[j], buf);
    }
    free(buf);
    Py_END_ALLOW_THREADS
    release(&bs);
    Py_RETURN_NONE;
}

/* segment_states(x, isz, N, F, ids, nseg, m, lead, tail, tlo): see segment.h */
static PyObject *py_segment_states(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const char *x;
    const int64_t *ids;
    double *m, *ld, *t, *tl;
    int64_t isz, N, F, nseg;
    if (!parse(args, nargs, "rnnnrnwwww", &bs, &x, &isz, &N, &F, &ids, &nseg, &m, &ld, &t, &tl)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    segment_states(x, (int)isz, N, F, ids, nseg, m, ld, t, tl);
    Py_END_ALLOW_THREADS
    release(&bs);
    Py_RETURN_NONE;
}

/* log1p_rows(tail, tlo, out, n): log1p of double-double tails, rounded once (the kernels' own
 * log1p_dd, not libm's): the cross-entropy loss's log1p of the array core */
static PyObject *py_log1p_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const double *t, *tl;
    double *out;
    int64_t n;
    if (!parse(args, nargs, "rrwn", &bs, &t, &tl, &out, &n)) return NULL;
    for (int64_t j = 0; j < n; j++) {
        if (!(t[j] >= 0.0 && t[j] < LSE_INF)) { out[j] = t[j] != t[j] ? t[j] : t[j] < 0 ? LSE_NAN : t[j]; continue; }
        dd l = log1p_dd((dd){t[j], tl[j]});
        out[j] = l.hi + l.lo;
    }
    release(&bs);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- tests and configuration */
/* elementary(which, d, hi, lo): 0 exp_split54(d)*2^-54 as (hi, lo); 1 exp_lo(d); 2 log1p_dd(d);
 * 3 exp_dd(d); 4 log1p_dd_exact(d) — for the accuracy tests against mpmath */
static PyObject *py_elementary(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const double *d;
    double *oh, *ol;
    int64_t which, n;
    if (!parse(args, nargs, "nrwwn", &bs, &which, &d, &oh, &ol, &n)) return NULL;
    for (int64_t i = 0; i < n; i++) {
        dd r = {0.0, 0.0};
        if (which == 0) { exp_split54(d[i], &r.hi, &r.lo); r.hi *= 0x1p-54; r.lo *= 0x1p-54; }
        else if (which == 1) r.hi = exp_lo(d[i]);
        else if (which == 2) r = log1p_dd(dd_of(d[i]));
        else if (which == 3) r = exp_dd(dd_of(d[i]));
        else r = log1p_dd_exact(dd_of(d[i]));
        oh[i] = r.hi;
        ol[i] = r.lo;
    }
    release(&bs);
    Py_RETURN_NONE;
}

/* cpu_features() -> tuple of the feature names this CPU has, of those the targets need */
static PyObject *py_cpu_features(PyObject *self, PyObject *unused) {
    PyObject *t = PyList_New(0);
    if (!t) return NULL;
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
    __builtin_cpu_init();
    const char *names[] = {"sse2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl"};
    int have[] = {__builtin_cpu_supports("sse2"), __builtin_cpu_supports("avx"), __builtin_cpu_supports("avx2"),
                  __builtin_cpu_supports("fma"), __builtin_cpu_supports("avx512f"),
                  __builtin_cpu_supports("avx512dq"), __builtin_cpu_supports("avx512bw"),
                  __builtin_cpu_supports("avx512vl")};
    for (size_t i = 0; i < sizeof have / sizeof have[0]; i++)
        if (have[i]) {
            PyObject *s = PyUnicode_FromString(names[i]);
            PyList_Append(t, s);
            Py_DECREF(s);
        }
#elif defined(__aarch64__)
    PyObject *s = PyUnicode_FromString("neon");
    PyList_Append(t, s);
    Py_DECREF(s);
#endif
    PyObject *r = PyList_AsTuple(t);
    Py_DECREF(t);
    return r;
}

/* kl_rows(a, b, L, reverse, g, grad_a, grad_b, rows_out, ok, lo, hi): float32 a, b [n, L] in place (kl.h) */
static PyObject *py_kl_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    float *a, *b, *rows;
    const float *g;
    char *okb;
    int64_t L, reverse, grad_a, grad_b, lo, hi;
    if (!parse(args, nargs, "wwnnRnnwwnn", &bs, &a, &b, &L, &reverse, &g, &grad_a, &grad_b, &rows, &okb, &lo, &hi))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    double *ea = scratch(L), *eb = scratch(L);
    for (int64_t j = lo; j < hi; j++)
        okb[j] = (char)kl_row(a + j * L, b + j * L, L, (int)reverse, g ? (double)g[j] : 0.0, g && grad_a, g && grad_b,
                              &rows[j], ea, eb);
    free(ea);
    free(eb);
    Py_END_ALLOW_THREADS
    release(&bs);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- segments: the torch face's fused kernels
 * (segment.h): constants per group from the states, the forward write over rows [lo, hi), the
 * backward's per-group sums and its write over rows [lo, hi) */
static PyObject *py_segment_consts(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const double *m, *ld, *t, *tl;
    double *dh, *dl, *ch, *cl, *v;
    int64_t need_log, lo, hi;
    if (!parse(args, nargs, "rrrrnwwwwwnn", &bs, &m, &ld, &t, &tl, &need_log, &dh, &dl, &ch, &cl, &v, &lo, &hi))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    segment_consts(m, ld, t, tl, (int)need_log, dh, dl, ch, cl, v, lo, hi);
    Py_END_ALLOW_THREADS
    release(&bs);
    Py_RETURN_NONE;
}

static PyObject *py_segment_write(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const char *x;
    const int64_t *ids;
    const double *pk;
    char *out;
    int64_t isz, F, ps, kind, lo, hi;
    if (!parse(args, nargs, "rnnrrnnwnn", &bs, &x, &isz, &F, &ids, &pk, &ps, &kind, &out, &lo, &hi)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    segment_write(x, (int)isz, F, ids, pk, (int)ps, (int)kind, out, lo, hi);
    Py_END_ALLOW_THREADS
    release(&bs);
    Py_RETURN_NONE;
}

static PyObject *py_segment_bwd_sums(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const char *y, *g;
    const int64_t *ids;
    double *S;
    int64_t isz, N, F, log, lo, hi;
    if (!parse(args, nargs, "rrnnnrnwnn", &bs, &y, &g, &isz, &N, &F, &ids, &log, &S, &lo, &hi)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    segment_bwd_sums(y, g, (int)isz, N, F, ids, (int)log, S, lo, hi);
    Py_END_ALLOW_THREADS
    release(&bs);
    Py_RETURN_NONE;
}

/* segment_states32(x, N, F, ids, m, lead, tail, tlo, lo, hi): float32 states of groups [lo, hi) */
static PyObject *py_segment_states32(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const float *x;
    const int64_t *ids;
    double *m, *ld, *t, *tl;
    int64_t N, F, lo, hi;
    if (!parse(args, nargs, "rnnrwwwwnn", &bs, &x, &N, &F, &ids, &m, &ld, &t, &tl, &lo, &hi)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    segment_states_f32(x, N, F, ids, lo, hi, m, ld, t, tl);
    Py_END_ALLOW_THREADS
    release(&bs);
    Py_RETURN_NONE;
}

static PyObject *py_segment_bwd_write(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const char *y, *g;
    const int64_t *ids;
    const double *S;
    char *gx;
    int64_t isz, F, log, lo, hi;
    if (!parse(args, nargs, "rrnnrrnwnn", &bs, &y, &g, &isz, &F, &ids, &S, &log, &gx, &lo, &hi)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    segment_bwd_write(y, g, (int)isz, F, ids, S, (int)log, gx, lo, hi);
    Py_END_ALLOW_THREADS
    release(&bs);
    Py_RETURN_NONE;
}

static PyObject *py_segment_csr_states(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const char *x;
    const int64_t *ptr;
    double *m, *ld, *t, *tl, *v;
    int64_t isz, F, lo, hi;
    if (!parse(args, nargs, "rnnrwwwwwnn", &bs, &x, &isz, &F, &ptr, &m, &ld, &t, &tl, &v, &lo, &hi)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    segment_csr_states(x, (int)isz, F, ptr, m, ld, t, tl, v, lo, hi);
    Py_END_ALLOW_THREADS
    release(&bs);
    Py_RETURN_NONE;
}

static PyObject *py_segment_csr_write(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    bufset bs;
    const char *x;
    const int64_t *ptr;
    const double *m, *ld, *t, *tl;
    char *out;
    int64_t isz, F, log, lo, hi;
    if (!parse(args, nargs, "rnnrrrrrnwnn", &bs, &x, &isz, &F, &ptr, &m, &ld, &t, &tl, &log, &out, &lo, &hi))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    segment_csr_write(x, (int)isz, F, ptr, m, ld, t, tl, (int)log, out, lo, hi);
    Py_END_ALLOW_THREADS
    release(&bs);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"lse_items", (PyCFunction)(void (*)(void))py_lse_items, METH_FASTCALL, "states of slice items"},
    {"merge_items", (PyCFunction)(void (*)(void))py_merge_items, METH_FASTCALL, "merge item states per row"},
    {"col_items", (PyCFunction)(void (*)(void))py_col_items, METH_FASTCALL, "states of column blocks"},
    {"finish_rows", (PyCFunction)(void (*)(void))py_finish_rows, METH_FASTCALL, "unweighted values"},
    {"lse_rows", (PyCFunction)(void (*)(void))py_lse_rows, METH_FASTCALL, "row values in one call"},
    {"finish_weighted_rows", (PyCFunction)(void (*)(void))py_finish_weighted_rows, METH_FASTCALL, "weighted values"},
    {"lse_1d", (PyCFunction)(void (*)(void))py_lse_1d, METH_FASTCALL, "1-D value in one call"},
    {"lse_1d_weighted", (PyCFunction)(void (*)(void))py_lse_1d_weighted, METH_FASTCALL, "1-D weighted value"},
    {"softmax_rows", (PyCFunction)(void (*)(void))py_softmax_rows, METH_FASTCALL, "softmax rows"},
    {"softmax_write_items", (PyCFunction)(void (*)(void))py_softmax_write_items, METH_FASTCALL, "softmax items"},
    {"ce_rows", (PyCFunction)(void (*)(void))py_ce_rows, METH_FASTCALL, "cross-entropy rows"},
    {"segment_states", (PyCFunction)(void (*)(void))py_segment_states, METH_FASTCALL, "grouped states"},
    {"log1p_rows", (PyCFunction)(void (*)(void))py_log1p_rows, METH_FASTCALL, "log1p of tails"},
    {"elementary", (PyCFunction)(void (*)(void))py_elementary, METH_FASTCALL, "elementary functions"},
    {"cpu_features", py_cpu_features, METH_NOARGS, "CPU features"},
    {"kl_rows", (PyCFunction)(void (*)(void))py_kl_rows, METH_FASTCALL, "forward / reverse KL rows"},
    {"segment_consts", (PyCFunction)(void (*)(void))py_segment_consts, METH_FASTCALL, "segment constants"},
    {"segment_write", (PyCFunction)(void (*)(void))py_segment_write, METH_FASTCALL, "segment forward write"},
    {"segment_bwd_sums", (PyCFunction)(void (*)(void))py_segment_bwd_sums, METH_FASTCALL, "segment backward sums"},
    {"segment_bwd_write", (PyCFunction)(void (*)(void))py_segment_bwd_write, METH_FASTCALL, "segment backward write"},
    {"segment_states32", (PyCFunction)(void (*)(void))py_segment_states32, METH_FASTCALL, "float32 group states"},
    {"segment_csr_states", (PyCFunction)(void (*)(void))py_segment_csr_states, METH_FASTCALL, "CSR group states"},
    {"segment_csr_write", (PyCFunction)(void (*)(void))py_segment_csr_write, METH_FASTCALL, "CSR softmax write"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, "_kernels_" STR(LSE_TARGET), "logsumexp CPU kernels (" STR(LSE_TARGET) ")", -1, methods,
};

PyMODINIT_FUNC CAT(PyInit__kernels_, LSE_TARGET)(void) {
    PyObject *m = PyModule_Create(&moddef);
    if (m) {
        PyModule_AddStringConstant(m, "TARGET", STR(LSE_TARGET));
        PyModule_AddIntConstant(m, "ITEM", ITEM);
        PyModule_AddIntConstant(m, "COL_BLOCK", COL_BLOCK);
    }
    return m;
}
