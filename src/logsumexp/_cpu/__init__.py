"""Compiled CPU fast path for NumPy inputs.

The array core calls these hooks after it has validated and promoted its arguments. Each hook
either returns a result with exactly the core's semantics or ``None`` to decline (numba missing,
unsupported dtype or layout, or the fast path is disabled), in which case the core computes the
result itself. Every test of the numerical contract runs on both paths (see ``disabled``).

Hooks
-----
``lse_state(x, axes, b)``
    The per-slice state ``(m, lead, tail)`` with ``Σ b_i e^{x_i} = e^m (lead + tail)``, reading
    the data once. Row kernel (innermost reduced axis contiguous, or any stride when no kept axis
    is contiguous): blocks of 2048 elements; contiguous unweighted blocks after the first in one
    pass (their max and their exp sum against the running max together, redone when the block
    reaches that max), other blocks as a block max then a vectorised exp sum from L1 (strided
    or weighted blocks are first gathered into a float64 L1 buffer). Whole contiguous
    unweighted rows also read the next row's maximum in those loops, so that the next row is
    folded against its true maximum from its first block. Column kernel
    (reduced axes strided, a kept axis contiguous, e.g. ``axis=0`` of a C-ordered matrix):
    tiles of 64 reduced rows × 1024 columns, vectorised across the columns, rescaled per column
    like the online (max, sum) merge. Both keep the maximal terms out of the tail with a
    select (Blanchard-Higham-Higham): unweighted, ``lead = 1`` (one maximal entry) and the other
    maximal entries add exactly 1 each to the tail; weighted, ``lead`` is the sum of the weights
    of all maximal entries (an exact split that needs no subtraction; the core only uses
    ``lead + tail`` and ``tail / lead``). Slices with ±inf, NaN or an overflowing tail are
    recomputed by an exact scalar loop with the special states of ``logsumexp._state``.
    Declines: a broadcast (stride-0) reduced axis; weights on a large column reduction.
``lse_value(x, axes)``
    the unweighted LogSumExp itself, in x's dtype: one compiled call for a 1-D array (the
    n = 1000 target), ``m + log1p(tail)`` from ``lse_state`` otherwise.
``softmax(x, axis, log)``
    softmax / log_softmax along ``axis`` (which must have unit stride, or -1: then the reversed
    view is used; other strides decline). Rows up to 65536 long: max, exps kept in a float64
    scratch row (L2) with their sum, then ``e_i / (1 + tail)`` (float32 output: times the
    float64 reciprocal) or ``(x_i - m) - log1p(tail)`` written in x's dtype. Longer rows: the
    state pass (split over threads when there are few rows), then a write pass.
``cross_entropy_grad_rows(z, target, g, ignore_index, rows_out, lse_out)``
    the torch face's fused linear cross-entropy chunk on float32 logits: per row the loss, the
    LSE and (with ``g``) the gradient written in place of the logits, one read of the row.

Accuracy. float64 data: the exp is summed as ``2^k`` plus ``2^k·y`` (``_kernels._exp_le0_split``;
sums of powers of two are exact, and no ``1 + y`` is rounded per term), in chunks of 256 per
vector lane set, blocks combined with a compensated sum whose low part is kept. ``lse_value``
finishes in double-double (``_kernels.lse_finish``: log1p of the tail as a double-double, the
maximum added exactly, one rounding): within 1 ulp on every family of benchmarks/accuracy.py
(worst 0.53 ulp, 200 vectors per family). A value that cancels against its maximum is recomputed for its
slice with every exp in double-double (``_kernels.lse_exact``): within 0.5 ulp at |LSE| ≈ 1e−9
where the plain finish was 1e9 ulp off. log_softmax (float64) is rounded once per entry.
float32 data: a cheaper float64 exp (relative error 7.4e-14, far below float32's 6e-8),
accumulated in float64 and rounded once: ≤ 0.50 ulp on every family.

Tool choice (measured, noisy: 2 shared cores of an Emerald Rapids Xeon, AVX-512)
--------------------------------------------------------------------------------
Numba, with an exp written in plain arithmetic (``_kernels._exp_le0``): LLVM vectorises it,
where a libm ``math.exp`` loop runs at 8-9x one read. 1e7 float64, one thread, the exp sum
alone: 12 ms with LLVM's default 256-bit vectors, 6 ms with 512-bit vectors
(``_kernels._wide``); one read (``x.max()``) is 3.1 ms. The whole one-thread LSE measured
~2.3x one read in float64 and ~4-5x in float32 (CPU time, loaded machine): the float64 exp is
the bound, not memory, so two threads are needed to approach the targets. Cache-blocked NumPy on a thread pool was probed at 3.3x one
read (an exp pass, a max pass and temporaries per block); the fused loop does one read and no
temporaries. Threads: a small ``ThreadPoolExecutor`` calling ``nogil`` kernels on disjoint work
items, rather than ``numba.prange``: no parallel-accelerator compile time (a CI cost), no
threading-layer dependency, the same compiled kernel serves the serial and the parallel path,
and long slices are split into items whose states are merged with the (max, sum) merge.
Inputs under ``PARALLEL_MIN`` elements stay on the calling thread.

Compilation is lazy (numba is imported on the first hook call, never at ``import logsumexp``)
and cached on disk (``cache=True``).

Without numba (it cannot be imported, or ``LOGSUMEXP_NO_NUMBA=1`` is set when this module is
imported, or inside ``numpy_fallback()``) the hooks answer from ``_numpy``: blocked NumPy, one
L2-sized buffer reused per block, never slower than NumPy's shifted formula. Weighted
reductions then decline (None) and the array core computes them.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import _numpy

_enabled = True
# LOGSUMEXP_NO_NUMBA=1 (read once, at import): the blocked NumPy fallback even where numba imports.
_no_numba = os.environ.get("LOGSUMEXP_NO_NUMBA", "").strip() not in ("", "0")

# Below this many elements one thread does everything. An estimate, NOT yet tuned on a quiet
# machine (the shared 2-core box gave meaningless timings at load 8): a thread hand-off costs
# tens of µs and the kernels take ~0.6-1 ns per element per core, so 2**18 elements (~200 µs
# of work) is about where a second thread starts to pay. Tune with benchmarks/cpu.py.
PARALLEL_MIN = 1 << 18
# Long slices are split into items of at least this many elements when there are fewer slices
# than threads.
SPLIT_MIN = 1 << 16


def enabled() -> bool:
    """Whether the compiled fast path may be used."""
    return _enabled


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run the block with the fast path switched off (the core computes everything)."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


# --------------------------------------------------------------------------------------------
# Lazy kernels and the thread pool
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def numpy_fallback() -> Iterator[None]:
    """Run the block on the blocked NumPy fallback, as on a machine without numba."""
    global _no_numba
    previous, _no_numba = _no_numba, True
    try:
        yield
    finally:
        _no_numba = previous


def backend() -> str:
    """Which implementation the hooks use now: "numba", "numpy" (the fallback) or "off"."""
    if not _enabled:
        return "off"
    return "numba" if _get_kernels() is not None else "numpy"


_kmod: Any = None  # not "_kernels": that name is the submodule
_kernels_failed = False
_lock = threading.Lock()
_pool: Any = None
_pool_pid = -1


def _get_kernels() -> Any:
    """The ``_kernels`` module, imported (and numba with it) on first use; None without numba."""
    global _kmod, _kernels_failed
    if _no_numba:
        return None
    if _kmod is None and not _kernels_failed:
        with _lock:
            if _kmod is None and not _kernels_failed:
                try:
                    from . import _kernels as k
                except ImportError:
                    _kernels_failed = True
                    return None
                _kmod = k
    return _kmod


def available() -> bool:
    """Whether the compiled kernels can be used (numba importable and the path enabled)."""
    return _enabled and _get_kernels() is not None


_thread_local = threading.local()


@contextlib.contextmanager
def serial() -> Iterator[None]:
    """Run the kernels of this thread on this thread only (no pool): for callers that are already
    parallel, such as Dask's worker threads, where a second level of threads oversubscribes the cores."""
    previous = getattr(_thread_local, "serial", False)
    _thread_local.serial = True
    try:
        yield
    finally:
        _thread_local.serial = previous


def num_threads() -> int:
    """Threads used for large inputs: 1 inside ``serial()``, else ``LOGSUMEXP_NUM_THREADS`` or the
    CPUs this process may use."""
    if getattr(_thread_local, "serial", False):
        return 1
    env = os.environ.get("LOGSUMEXP_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _run(fn: Any, n_items: int, nthreads: int, *args: Any) -> None:
    """Call ``fn(*args, lo, hi)`` over [0, n_items) split into ``nthreads`` contiguous ranges."""
    global _pool, _pool_pid
    if nthreads <= 1 or n_items <= 1:
        fn(*args, 0, n_items)
        return
    nthreads = min(nthreads, n_items)
    # A pool inherited through fork() has no threads in the child: make a new one there.
    if _pool is None or _pool_pid != os.getpid():
        with _lock:
            if _pool is None or _pool_pid != os.getpid():
                from concurrent.futures import ThreadPoolExecutor

                _pool = ThreadPoolExecutor(max_workers=num_threads(), thread_name_prefix="logsumexp")
                _pool_pid = os.getpid()
    bounds = [n_items * i // nthreads for i in range(nthreads + 1)]
    futures = [_pool.submit(fn, *args, bounds[i], bounds[i + 1]) for i in range(1, nthreads)]
    fn(*args, bounds[0], bounds[1])  # the calling thread takes the first range
    for f in futures:
        f.result()


# --------------------------------------------------------------------------------------------
# Layout planning
# --------------------------------------------------------------------------------------------
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# A weighted reduction whose innermost reduced stride is not 1 while a kept axis has a smaller
# stride would read the data once per slice with a stride (the column kernel is unweighted); the
# core's vectorised NumPy is better there, so the hook declines above this size.
_STRIDED_MAX_BYTES = 1 << 20


def _flat(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int], list[bool]]:
    """x with negative-stride axes flipped, its memory as a 1-D contiguous array starting at its
    lowest address, its element strides, and which axes were flipped."""
    flipped = [s < 0 for s in x.strides]
    if any(flipped):
        x = x[tuple(slice(None, None, -1) if f else slice(None) for f in flipped)]
    st = [s // x.itemsize for s in x.strides]
    span = 1 + sum((n - 1) * s for n, s in zip(x.shape, st))
    flat = np.lib.stride_tricks.as_strided(x, shape=(span,), strides=(x.itemsize,), writeable=False)
    return x, flat, st, flipped


def _offsets(dims: list[tuple[int, int, bool]]) -> np.ndarray:
    """Element offsets of all index tuples over dims = [(size, stride, reversed)], C order."""
    off = np.zeros(1, dtype=np.int64)
    for n, s, rev in dims:
        idx = np.arange(n, dtype=np.int64)
        if rev:
            idx = idx[::-1]
        off = (off[:, None] + idx * s).ravel()
    return off


def _collapse(dims: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge (size, stride) dims, sorted by decreasing stride, that are contiguous in memory."""
    out: list[tuple[int, int]] = []
    for n, s in sorted(dims, key=lambda d: -d[1]):
        if n == 1:
            continue
        if out and out[-1][1] == n * s:
            out[-1] = (out[-1][0] * n, s)
        else:
            out.append((n, s))
    return out


def _split(n_slices: int, n_red: int, nthreads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Work items (slice, start, stop): one per slice, or each slice cut in parts when there
    are fewer slices than threads."""
    parts = 1
    if n_slices < nthreads:
        parts = max(1, min(-(-nthreads // n_slices), n_red // SPLIT_MIN))
    j = np.repeat(np.arange(n_slices, dtype=np.int64), parts)
    cuts = np.arange(parts + 1, dtype=np.int64) * n_red // parts
    a = np.tile(cuts[:-1], n_slices)
    b = np.tile(cuts[1:], n_slices)
    return j, a, b


# --------------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------------
def lse_state(
    x: np.ndarray, axes: tuple[int, ...], b: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The (max, lead, tail) state of each slice of ``x`` reduced over ``axes``, or None (see
    ``_state_dd``, whose tail's low part it drops)."""
    st = _state_dd(x, axes, b)
    return None if st is None else st[:3]


def _state_dd(
    x: np.ndarray, axes: tuple[int, ...], b: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The (max, lead, tail) state of each slice of ``x`` reduced over ``axes``, or None.

    ``x`` is a float32/float64 ndarray (any strides); ``axes`` are distinct non-negative ints,
    sorted; ``b`` is None or a float ndarray of x's shape. The state arrays are float64 with the
    shape of x without ``axes``; ``Σ b_i e^{x_i} = e^m (lead + tail)`` (see the module docstring
    and ``logsumexp._state``). Without numba the blocked NumPy fallback answers (unweighted
    only). Declines (None) when disabled, for other dtypes, for weights without numba,
    and for large reductions along a strided axis while a kept axis is contiguous.
    A fourth array holds the tail's rounding error (tail + tail_lo is a double-double).
    """
    if not _enabled or type(x) is not np.ndarray or x.dtype not in _FLOATS:
        return None
    k = _get_kernels()
    if k is None:
        st = _numpy.lse_state(x, axes, b)
        return None if st is None else (*st, np.zeros_like(st[2]))
    # Small contiguous 1-D arrays (the n = 1000 case): no planning, one compiled call. Larger
    # ones take the general path, which splits them over the threads.
    if b is None and axes == (0,) and x.ndim == 1 and x.flags.c_contiguous and 0 < x.size < PARALLEL_MIN:
        # A read-only view, like every other array handed to the kernels: one compiled type.
        v = x.view()
        v.flags.writeable = False
        m, lead, tail = k.lse_1d(v)
        return np.array(m), np.array(lead), np.array(tail), np.array(0.0)
    ndim = x.ndim
    if any(s % x.itemsize for s in x.strides):
        return None
    axes_set = set(axes)
    out_shape = tuple(n for d, n in enumerate(x.shape) if d not in axes_set)
    n_red = 1
    for d in axes_set:
        n_red *= x.shape[d]
    n_out = 1
    for n in out_shape:
        n_out *= n
    if n_red == 0 or n_out == 0:
        return (
            np.full(out_shape, -np.inf),
            np.zeros(out_shape),
            np.zeros(out_shape),
            np.zeros(out_shape),
        )
    has_b = b is not None
    if b is not None:
        if type(b) is not np.ndarray or b.shape != x.shape:
            return None
        if b.dtype not in _FLOATS:
            b = b.astype(np.float64)
        if [s // b.itemsize for s in b.strides] != [s // x.itemsize for s in x.strides] or any(
            s % b.itemsize for s in b.strides
        ):
            if not x.flags.c_contiguous:
                return None
            b = np.ascontiguousarray(b)
    x2, flat, st, flipped = _flat(x)
    if b is not None:
        _, bflat, _, _ = _flat(b)
    else:
        bflat = flat[:1]
    red = _collapse([(x2.shape[d], st[d]) for d in axes_set])
    if any(st_ == 0 for _, st_ in red):
        return None  # a broadcast (stride-0) reduced axis: rare; the core handles it
    if not red:
        red = [(1, 1)]
    L, s = red[-1]
    kept = [d for d in range(ndim) if d not in axes_set]
    if s != 1:
        unit = [d for d in kept if x2.shape[d] > 1 and st[d] == 1]
        if unit and not has_b:
            return _column_state(k, x2, flat, st, flipped, kept, unit[0], red, out_shape)
        if x.nbytes > _STRIDED_MAX_BYTES and any(x2.shape[d] > 1 and st[d] < s for d in kept):
            return None
    roff = _offsets([(n, st_, False) for n, st_ in red[:-1]])
    koff = _offsets([(x2.shape[d], st[d], flipped[d]) for d in kept])
    total = n_out * n_red
    nthreads = num_threads() if total >= PARALLEL_MIN else 1
    om, olead, otail, otlo = (np.empty(n_out) for _ in range(4))
    j, a, e = _split(n_out, n_red, nthreads)
    if j.size == n_out:
        _run(k.lse_items, n_out, nthreads, flat, bflat, has_b, koff, L, s, roff, j, a, e, om, olead, otail, otlo)
    else:
        im, ilead, itail, itlo = (np.empty(j.size) for _ in range(4))
        _run(k.lse_items, j.size, nthreads, flat, bflat, has_b, koff, L, s, roff, j, a, e, im, ilead, itail, itlo)
        k.merge_items(j, im, ilead, itail, itlo, om, olead, otail, otlo)
    return tuple(a_.reshape(out_shape) for a_ in (om, olead, otail, otlo))  # type: ignore[return-value]


# Columns per item of the column kernel: 1024 (4-8 KiB rows, long enough that the per-row
# call overhead vanishes; 64-row tiles of them stay in L2 — see _kernels.COL_ROWS).
_COL_BLOCK = 1024


def _column_state(
    k: Any, x2: np.ndarray, flat: np.ndarray, st: list[int], flipped: list[bool], kept: list[int],
    dc: int, red: list[tuple[int, int]], out_shape: tuple[int, ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """lse_state when the reduced axes are strided and kept axis ``dc`` is contiguous (e.g.
    axis=0 of a C-ordered matrix): the column kernel, vectorised across ``dc``."""
    L, s = red[-1]
    roff = _offsets([(n, st_, False) for n, st_ in red[:-1]])
    n_red = roff.size * L
    # Output element strides (C order over the kept axes).
    ostr: dict[int, int] = {}
    acc = 1
    for d in reversed(kept):
        ostr[d] = acc
        acc *= x2.shape[d]
    outer = [d for d in kept if d != dc]
    koff = _offsets([(x2.shape[d], st[d], flipped[d]) for d in outer])
    ooff = _offsets([(x2.shape[d], ostr[d], False) for d in outer])
    C = x2.shape[dc]
    ocs = ostr[dc]
    if flipped[dc]:  # column c of the flipped view is output index C − 1 − c
        ooff = ooff + (C - 1) * ocs
        ocs = -ocs
    cb = _COL_BLOCK
    starts = np.arange(0, C, cb, dtype=np.int64)
    g = np.repeat(np.arange(koff.size, dtype=np.int64), starts.size)
    c0 = np.tile(starts, koff.size)
    c1 = np.minimum(c0 + cb, C)
    n_out = koff.size * C
    om, olead, otail, otlo = (np.empty(n_out) for _ in range(4))
    nthreads = num_threads() if n_out * n_red >= PARALLEL_MIN else 1
    _run(k.col_items, g.size, nthreads, flat, koff, ooff, ocs, L, s, roff, g, c0, c1, om, olead, otail, otlo)
    return tuple(a_.reshape(out_shape) for a_ in (om, olead, otail, otlo))  # type: ignore[return-value]


def lse_1d_small(x: np.ndarray) -> np.floating | None:
    """LogSumExp of a small contiguous 1-D float32/float64 ndarray (fewer than ``PARALLEL_MIN``
    elements) in one compiled call, or None: the n = 1000 call with nothing else in front of
    the kernel (each Python-level check costs ~0.1-0.8 µs on a 2.0 GHz Xeon; the kernel ~4 µs).
    The same value as ``lse_value(x, (0,))``."""
    k = _kmod if (_enabled and not _no_numba) else None
    if k is None or x.dtype.char not in "fd" or not 0 < x.size < PARALLEL_MIN or not x.flags.c_contiguous:
        return None
    # x itself, not a read-only view as elsewhere: Numba dispatches a writeable array ~0.7 µs
    # faster, and making the view costs ~0.9 µs more; the price is a second compiled signature.
    return x.dtype.type(k.lse_1d_value(x))


def lse_1d_weighted(x: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float] | None:
    """``(m, lead, total, value)`` of the weighted LogSumExp of a small contiguous 1-D float32 or
    float64 ndarray with contiguous weights of the same dtype and length, in one compiled call
    (``_kernels.lse_1d_weighted``; value in float64), or None. The caller checks the value for
    cancellation (the exact recompute lives in the array core)."""
    k = _kmod if (_enabled and not _no_numba) else None
    if (
        k is None or x.dtype.char not in "fd" or b.dtype != x.dtype or b.shape != x.shape
        or not 0 < x.size < PARALLEL_MIN or not (x.flags.c_contiguous and b.flags.c_contiguous)
    ):
        return None
    return k.lse_1d_weighted(x, b)  # type: ignore[no-any-return]


def lse_value(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray | np.floating | None:
    """Unweighted LogSumExp of ``x`` over ``axes`` in x's dtype (float64 accumulation), or None.

    The whole of ``logsumexp(x, axis)`` for a plain NumPy float array with no ``b``, ``where``,
    ``dtype`` or ``return_sign``: ``m + log1p(tail)`` per slice (the lead is 1), with log1p in
    double-double and m added exactly, so that the value is rounded once (``_kernels.lse_finish``),
    ``m`` itself for the special states (−inf, +inf, NaN). A value that cancels against its
    maximum (|value| < |m|/2, m < 0: log-normalisers of nearly normalised distributions) is
    recomputed for that slice alone with every exp in double-double (``_kernels.lse_exact``,
    ~0.3 µs per element), so that it keeps its relative accuracy however close to 0 it is. A full reduction of a
    contiguous 1-D array is one compiled call (n = 1000 in ~2 µs); the result is then a NumPy
    scalar, otherwise an array of x's shape without ``axes``. The array core calls this first so
    that small calls skip its argument handling.
    """
    if not _enabled or type(x) is not np.ndarray or x.dtype not in _FLOATS:
        return None
    k = _get_kernels()
    if k is None:
        return _numpy.lse_value(x, axes)
    if axes == (0,) and x.ndim == 1:
        small = lse_1d_small(x)
        if small is not None:
            return small
    st = _state_dd(x, axes, None)
    if st is None:
        return None
    m, _, tail, tlo = st
    m1 = np.ascontiguousarray(m).reshape(-1)
    val = np.empty(m1.size)
    redo = k.finish_values(m1, np.ascontiguousarray(tail).reshape(-1), np.ascontiguousarray(tlo).reshape(-1), val)
    if redo.size:
        # slices whose value cancels against their maximum: every exp in double-double
        kept = [d for d in range(x.ndim) if d not in axes]
        rows = np.moveaxis(x, list(axes), list(range(x.ndim - len(axes), x.ndim)))
        rows = rows.reshape(m1.size, -1) if kept else rows.reshape(1, -1)
        for j in redo:
            val[j] = k.lse_exact(np.ascontiguousarray(rows[j]))
    out = val.reshape(m.shape).astype(x.dtype, copy=False)
    return out[()] if out.ndim == 0 else out


def softmax_axes(x: np.ndarray, axes: tuple[int, ...], log: bool) -> np.ndarray | None:
    """softmax (or log_softmax) of ``x`` over any non-empty tuple of ``axes``, or None.

    One axis of unit stride: ``softmax``. Otherwise (a strided axis, several axes) the reduced
    axes are moved last and copied into contiguous rows for the row kernel, and the result is
    returned as a view in x's axis order: one copy of the input, against the array core's
    several temporaries, and the row kernel's accuracy (float64: log_softmax within 0.51 ulp,
    softmax within 1 ulp per normal entry; the core rounds x_i − max, up to ~32 ulp on
    softmax(N(0,1)·10, axis=0)).
    """
    if len(axes) == 1:
        out = softmax(x, axes[0], log)
        if out is not None:
            return out
    if not _enabled or type(x) is not np.ndarray or x.dtype not in _FLOATS or x.ndim == 0:
        return None
    if _get_kernels() is None:
        return None
    if x.size == 0:
        return np.empty_like(x)
    perm = [d for d in range(x.ndim) if d not in axes] + list(axes)
    xt = np.ascontiguousarray(np.transpose(x, perm))
    n_red = math.prod(x.shape[d] for d in axes)
    out = softmax(xt.reshape(-1, n_red), 1, log)
    if out is None:
        return None
    return np.transpose(out.reshape(xt.shape), np.argsort(perm))


def softmax(x: np.ndarray, axis: int, log: bool) -> np.ndarray | None:
    """softmax (or log_softmax when ``log``) of float32/float64 ``x`` along ``axis``, or None.

    ``softmax_i = e^{x_i - m} / (1 + tail)`` and ``log_softmax_i = (x_i - m) - log1p(tail)``
    with the row state of ``lse_state`` (accumulated in float64), returned in x's dtype, with the
    special values of the numerical contract: an all −inf row gives 0 / −inf, k entries +inf give 1/k
    there and 0 elsewhere (−log k / −inf), a NaN makes its row NaN. Declines (None) when
    disabled, for other dtypes, or (compiled path) when ``axis`` is not the unit-stride axis;
    without numba the blocked NumPy fallback answers.
    """
    if not _enabled or type(x) is not np.ndarray or x.dtype not in _FLOATS:
        return None
    ndim = x.ndim
    if ndim == 0:
        return None
    k = _get_kernels()
    if k is None:
        return _numpy.softmax(x, axis % ndim, log)
    axis = axis % ndim
    L = x.shape[axis]
    if x.size == 0:
        return np.empty_like(x)
    if L > 1 and x.strides[axis] == -x.itemsize:
        # A reversed axis: softmax of the forward view, returned as a reversed view.
        rev = tuple(slice(None, None, -1) if d == axis else slice(None) for d in range(ndim))
        out = softmax(x[rev], axis, log)
        return None if out is None else out[rev]
    if L > 1 and x.strides[axis] != x.itemsize:
        return None
    if any(s % x.itemsize for s in x.strides):
        return None
    if x.flags.c_contiguous or x.flags.f_contiguous:
        out = np.empty_like(x)
    else:
        out = np.empty(x.shape, dtype=x.dtype)
    x2, flat, st, flipped = _flat(x)
    ost = [s_ // out.itemsize for s_ in out.strides]
    oflat = np.lib.stride_tricks.as_strided(out, shape=(1 + sum((n - 1) * s_ for n, s_ in zip(out.shape, ost)),), strides=(out.itemsize,))
    kept = [d for d in range(ndim) if d != axis]
    xkoff = _offsets([(x2.shape[d], st[d], flipped[d]) for d in kept])
    okoff = _offsets([(out.shape[d], ost[d], False) for d in kept])
    xs, os_ = st[axis], ost[axis]
    n_rows = xkoff.size
    total = n_rows * L
    nthreads = num_threads() if total >= PARALLEL_MIN else 1
    if n_rows >= nthreads:
        _run(k.softmax_rows, n_rows, nthreads, flat, xkoff, L, xs, oflat, okoff, os_, log)
        return out
    # Few long rows: states of row parts on all threads, merged, then the write on all threads.
    j, a, e = _split(n_rows, L, nthreads)
    im, ilead, itail, itlo = (np.empty(j.size) for _ in range(4))
    roff = np.zeros(1, dtype=np.int64)
    _run(k.lse_items, j.size, nthreads, flat, flat[:1], False, xkoff, L, xs, roff, j, a, e, im, ilead, itail, itlo)
    sm, slead, stail, stlo = (np.empty(n_rows) for _ in range(4))
    k.merge_items(j, im, ilead, itail, itlo, sm, slead, stail, stlo)
    _run(k.softmax_write_items, j.size, nthreads, flat, xkoff, xs, oflat, okoff, os_, j, a, e, sm, slead, stail, log)
    return out


def cross_entropy_grad_rows(
    z: np.ndarray, target: np.ndarray, g: np.ndarray | None, ignore_index: int, rows_out: np.ndarray, lse_out: np.ndarray
) -> np.ndarray | None:
    """Cross-entropy rows of float32 logits ``z`` (C-contiguous [n, C], written in place) against
    int64 class ``target``, and (``g`` given) the gradient of ``Σ g_j·loss_j`` in place of z;
    ``rows_out`` and ``lse_out`` (float32, [n]) receive the losses and the LSEs. Returns a bool
    mask of the rows done (False: a non-finite maximum, the row untouched, for the caller's exact
    path), or None when the compiled kernels are not there or the inputs do not fit (the caller
    then computes everything itself). The torch face's fused linear cross-entropy chunk; see
    ``_kernels.ce_grad_rows`` for the formulas. Targets must be valid (the caller checked them).
    """
    if not _enabled or _no_numba:
        return None
    k = _get_kernels()
    if k is None or z.dtype != np.float32 or z.ndim != 2 or not z.flags.c_contiguous or not z.flags.writeable:
        return None
    n, C = z.shape
    if n == 0 or C == 0 or target.shape != (n,) or target.dtype != np.int64:
        return None
    valid = target[target != ignore_index]
    if valid.size and (int(valid.min()) < 0 or int(valid.max()) >= C):
        return None  # out of range: the caller's checks speak, never an unchecked index here
    gg = np.empty(0, dtype=np.float32) if g is None else np.ascontiguousarray(g, dtype=np.float32)
    if gg.size not in (0, n):
        return None
    ok = np.empty(n, dtype=np.bool_)
    nthreads = num_threads() if n * C >= PARALLEL_MIN else 1
    _run(k.ce_grad_rows, n, nthreads, z.reshape(-1), C, target, gg, ignore_index, rows_out, lse_out, ok)
    return ok
