"""The compiled CPU layer: NumPy float16/32/64 reductions in C, one path per job.

The kernels (``src/*.h``, one C source compiled per instruction-set target by ``setup.py``) are
loaded from the extension module of the best target this CPU supports: ``avx512``, ``avx2``
(with FMA) or ``baseline`` (x86-64's SSE2, or arm64's NEON). ``LOGSUMEXP_CPU`` forces one.
Every target gives the same bits: the kernels fix the number of virtual lanes (16) and the
order of every sum, and are compiled without reassociation or contraction into FMA.

The array core calls the hooks below after it has validated and promoted its arguments. A hook
returns a result with exactly the core's semantics, or ``None`` to decline (no extension built,
another dtype, or the layer switched off by :func:`disabled`), and the core then computes the
result itself with its generic Array API code.

Hooks: :func:`lse_state` (the (max, lead, tail) state of each slice), :func:`lse_value` (the
unweighted LogSumExp, rounded once), :func:`lse_weighted` (weighted LogSumExp and sign),
:func:`softmax_axes` (softmax / log_softmax), :func:`lse_last` and :func:`softmax_last` (C-contiguous
rows along the last axis in one kernel call, no layout planning: the small calls; rows of at most 16
entries W at a time), :func:`cross_entropy_grad_rows` (the torch face's
fused cross-entropy chunk), :func:`kl_grad_rows` (its forward / reverse KL chunk). The layout planning (which slices, which offsets, rows or columns,
how many threads) is here; the arithmetic is in C.

Threads: the kernels release the GIL; inputs of at least ``PARALLEL_MIN`` elements are split
over ``num_threads()`` threads of a small pool. A slice longer than the kernels' ``ITEM`` is
always cut into the same items, merged in the same order, so the thread count does not change a
bit either.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

TARGETS = ("baseline", "avx2", "avx512")  # in order of preference, best last
# the CPU features each target's build assumes (names of the kernels' cpu_features())
_REQUIRES = {
    "baseline": (),
    "avx2": ("avx2", "fma"),
    "avx512": ("avx512f", "avx512dq", "avx512bw", "avx512vl"),
}

# Below this many elements one thread does everything: a hand-off to the pool costs tens of µs,
# the kernels ~1-3 ns per element per core.
PARALLEL_MIN = 1 << 18
# A strided reduction (or softmax along a strided axis) larger than this is first copied into
# contiguous rows: one copy is cheaper than reading each element through its own cache line.
_STRIDED_COPY_MIN = 1 << 16

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_enabled = True
_lock = threading.Lock()
_kernels: Any = None
_target: str | None = None
_load_error: str | None = None
_threads: int | None = None


class CPUTargetError(ValueError):
    """``LOGSUMEXP_CPU`` names a target that does not exist, or that this CPU or build lacks."""


def _import_target(name: str) -> Any:
    return importlib.import_module(f"logsumexp._cpu._kernels_{name}")


def _choose() -> tuple[Any, str | None, str | None]:
    """(module, target, why-not) for this process: the forced target or the best supported."""
    try:
        base = _import_target("baseline")
    except ImportError as err:
        return None, None, f"the compiled kernels are not built ({err})"
    features = set(base.cpu_features())
    supported = [t for t in TARGETS if set(_REQUIRES[t]) <= features]
    forced = os.environ.get("LOGSUMEXP_CPU", "").strip().lower()
    if forced:
        if forced not in TARGETS:
            raise CPUTargetError(f"LOGSUMEXP_CPU={forced!r} is not a CPU target: expected one of {', '.join(TARGETS)}")
        if forced not in supported:
            missing = sorted(set(_REQUIRES[forced]) - features)
            raise CPUTargetError(
                f"LOGSUMEXP_CPU={forced!r}: this CPU lacks {', '.join(missing)}; "
                f"targets it supports: {', '.join(supported)}"
            )
        try:
            return _import_target(forced), forced, None
        except ImportError as err:
            raise CPUTargetError(f"LOGSUMEXP_CPU={forced!r}: this build has no {forced} kernels ({err})") from err
    for name in reversed(supported):
        try:
            return _import_target(name), name, None
        except ImportError:
            continue
    return base, "baseline", None


def kernels() -> Any:
    """The loaded kernel module (chosen on first use), or None where none is built."""
    global _kernels, _target, _load_error
    if _kernels is None and _load_error is None:
        with _lock:
            if _kernels is None and _load_error is None:
                mod, name, why = _choose()
                _kernels, _target, _load_error = mod, name, why
    return _kernels


def target() -> str | None:
    """The instruction-set target in use ("baseline", "avx2", "avx512"), or None."""
    kernels()
    return _target


def supported_targets() -> tuple[str, ...]:
    """The targets this CPU can run and this build contains."""
    try:
        base = _import_target("baseline")
    except ImportError:
        return ()
    features = set(base.cpu_features())
    out = []
    for t in TARGETS:
        if set(_REQUIRES[t]) <= features:
            try:
                _import_target(t)
            except ImportError:
                continue
            out.append(t)
    return tuple(out)


def info() -> dict[str, Any]:
    """What the compiled layer uses: target, the CPU's features, threads, or why it is off."""
    k = kernels()
    return {
        "compiled": k is not None,
        "target": _target,
        "supported_targets": supported_targets(),
        "cpu_features": tuple(k.cpu_features()) if k is not None else (),
        "threads": num_threads(),
        "enabled": _enabled,
        "detail": _load_error or f"C kernels, {_target} target",
    }


def enabled() -> bool:
    """Whether the compiled layer may be used (built, and not switched off)."""
    return _enabled and kernels() is not None


def available() -> bool:
    """The same as :func:`enabled`."""
    return enabled()


def backend() -> str:
    """Which implementation the hooks use: "compiled" or "off" (the generic core computes)."""
    return "compiled" if enabled() else "off"


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run the block with the compiled layer off: the generic array core computes everything."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


# --------------------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------------------
_thread_local = threading.local()
_pool: Any = None
_pool_pid = -1


def set_num_threads(n: int | None) -> None:
    """Threads for large inputs (None: ``LOGSUMEXP_NUM_THREADS`` or the CPUs this process may use)."""
    global _threads
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"set_num_threads: n must be an int or None, got {type(n).__name__}")
        if n < 1:
            raise ValueError(f"set_num_threads: n must be at least 1, got {n}")
    _threads = n


@contextlib.contextmanager
def serial() -> Iterator[None]:
    """Run this thread's kernels on this thread only: for callers that are already parallel
    (Dask's worker threads), where a second level of threads oversubscribes the cores."""
    previous = getattr(_thread_local, "serial", False)
    _thread_local.serial = True
    try:
        yield
    finally:
        _thread_local.serial = previous


def num_threads() -> int:
    """Threads used for large inputs: 1 inside ``serial()``; else ``set_num_threads``,
    ``LOGSUMEXP_NUM_THREADS`` or the CPUs this process may use."""
    if getattr(_thread_local, "serial", False):
        return 1
    if _threads is not None:
        return _threads
    env = os.environ.get("LOGSUMEXP_NUM_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    return _cpus()


_affinity: tuple[int, int] = (-1, 1)  # (pid, CPUs this process may use): a system call saved per call


def _cpus() -> int:
    global _affinity
    pid = os.getpid()
    if _affinity[0] != pid:
        try:
            n = max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not Linux
            n = max(1, os.cpu_count() or 1)
        _affinity = (pid, n)
    return _affinity[1]


def _run(fn: Any, n_items: int, work: int, *args: Any) -> None:
    """Call ``fn(*args, lo, hi)`` over [0, n_items), split over the threads when ``work``
    (elements) is large enough to pay for them."""
    global _pool, _pool_pid
    nthreads = min(num_threads(), n_items) if work >= PARALLEL_MIN else 1
    if nthreads <= 1:
        fn(*args, 0, n_items)
        return
    # a pool inherited through fork() has no threads in the child: make a new one there
    if _pool is None or _pool_pid != os.getpid() or _pool._max_workers < nthreads:
        with _lock:
            if _pool is None or _pool_pid != os.getpid() or _pool._max_workers < nthreads:
                from concurrent.futures import ThreadPoolExecutor

                _pool = ThreadPoolExecutor(max_workers=nthreads, thread_name_prefix="logsumexp")
                _pool_pid = os.getpid()
    bounds = [n_items * i // nthreads for i in range(nthreads + 1)]
    futures = [_pool.submit(fn, *args, bounds[i], bounds[i + 1]) for i in range(1, nthreads)]
    fn(*args, bounds[0], bounds[1])  # the calling thread takes the first range
    for f in futures:
        f.result()


# --------------------------------------------------------------------------------------------
# Layout planning
# --------------------------------------------------------------------------------------------
class _Rows:
    """Slices of ``x`` as rows: slice j starts at element offset ``koff[j]`` (from element 0,
    negative allowed) and has ``L`` elements ``s`` apart."""

    __slots__ = ("x", "koff", "L", "s", "shape")

    def __init__(self, x: np.ndarray, koff: np.ndarray, L: int, s: int, shape: tuple[int, ...]) -> None:
        self.x, self.koff, self.L, self.s, self.shape = x, koff, L, s, shape


def _elem_strides(x: np.ndarray) -> list[int] | None:
    if any(st % x.itemsize for st in x.strides):
        return None
    return [st // x.itemsize for st in x.strides]


def _offsets(dims: list[tuple[int, int]]) -> np.ndarray:
    """Element offsets of every index tuple over dims = [(size, stride)], C order."""
    off = np.zeros(1, dtype=np.int64)
    for n, s in dims:
        off = (off[:, None] + np.arange(n, dtype=np.int64) * s).reshape(-1)
    return off


def _merge_reduced(dims: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Reduced (size, stride) dims in axis order, neighbours merged where memory allows."""
    out: list[tuple[int, int]] = []
    for n, s in dims:
        if n == 1:
            continue
        if out and out[-1][1] == n * s:
            out[-1] = (out[-1][0] * n, s)
        else:
            out.append((n, s))
    return out or [(1, 1)]


def _as_rows(x: np.ndarray, axes: tuple[int, ...]) -> _Rows:
    """The slices of ``x`` over ``axes`` as rows, copying only when the reduced axes do not
    collapse into one, or a large reduction would be read through a stride."""
    kept = [d for d in range(x.ndim) if d not in axes]
    shape = tuple(x.shape[d] for d in kept)
    st = _elem_strides(x)
    red = None if st is None else _merge_reduced([(x.shape[d], st[d]) for d in axes])
    if red is None or len(red) > 1 or (red[0][1] != 1 and x.size >= _STRIDED_COPY_MIN):
        x = np.ascontiguousarray(np.moveaxis(x, axes, tuple(range(x.ndim - len(axes), x.ndim))))
        L = math.prod(x.shape[len(kept):])
        return _Rows(x, np.arange(math.prod(shape), dtype=np.int64) * L, L, 1, shape)
    L, s = red[0]
    return _Rows(x, _offsets([(x.shape[d], st[d]) for d in kept]), L, s, shape)


def _column_plan(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, int, int, int] | None:
    """(goff, C, L, s) when the reduction is a column reduction: the reduced axes collapse into
    one strided (L, s) and the last kept axis is contiguous (C columns); goff are the offsets of
    the other kept axes. None otherwise."""
    kept = [d for d in range(x.ndim) if d not in axes]
    st = _elem_strides(x)
    if not kept or st is None:
        return None
    red = _merge_reduced([(x.shape[d], st[d]) for d in axes])
    c = kept[-1]
    if len(red) != 1 or st[c] != 1 or x.shape[c] < 16 or red[0][1] in (0, 1):
        return None
    return _offsets([(x.shape[d], st[d]) for d in kept[:-1]]), x.shape[c], red[0][0], red[0][1]


def _widen16(x: np.ndarray) -> np.ndarray | None:
    """float16 as float32 (exact); float32/float64 as they are; None for other dtypes."""
    if x.dtype in _FLOATS:
        return x
    if x.dtype == np.float16:
        return x.astype(np.float32)
    return None


def _ready(x: Any) -> np.ndarray | None:
    """x if the compiled layer takes it (widened from float16), else None."""
    if not _enabled or type(x) is not np.ndarray or kernels() is None:
        return None
    return _widen16(x)


def _item_split(n_rows: int, L: int, item: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, start, stop) of every item: rows cut at multiples of ``item`` elements."""
    per = max(1, -(-L // item))
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), per)
    starts = np.tile(np.arange(per, dtype=np.int64) * item, n_rows)
    stops = np.minimum(starts + item, L)
    return rows, starts, stops


def _states(rows: _Rows, w: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """(m, lead, tail, tlo) of every row (float64, flat)."""
    k = _kernels
    n = rows.koff.size
    ir, ia, ib = _item_split(n, rows.L, k.ITEM)
    out = tuple(np.empty(ir.size) for _ in range(4))
    wsz = 0 if w is None else w.itemsize
    _run(k.lse_items, ir.size, n * rows.L, rows.x, rows.x.itemsize, rows.koff, rows.s, ir, ia, ib, w, wsz, *out)
    if ir.size == n:
        return out
    merged = tuple(np.empty(n) for _ in range(4))
    k.merge_items(ir, *out, *merged, ir.size, n)
    return merged


def _column_states(x: np.ndarray, plan: tuple[np.ndarray, int, int, int]) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """(m, lead, tail, tlo) of every column slice and the slices' start offsets (for the exact
    recompute), in C order of the kept axes."""
    k = _kernels
    goff, C, L, s = plan
    starts = np.arange(0, C, k.COL_BLOCK, dtype=np.int64)
    ig = np.repeat(np.arange(goff.size, dtype=np.int64), starts.size)
    c0 = np.tile(starts, goff.size)
    c1 = np.minimum(c0 + k.COL_BLOCK, C)
    ooff = np.arange(goff.size, dtype=np.int64) * C
    out = tuple(np.empty(goff.size * C) for _ in range(4))
    _run(k.col_items, ig.size, goff.size * C * L, x, x.itemsize, goff, s, L, ig, c0, c1, ooff, *out)
    koff = (goff[:, None] + np.arange(C, dtype=np.int64)).reshape(-1)
    return out, koff


def _plan_states(x: np.ndarray, axes: tuple[int, ...]) -> tuple[tuple[np.ndarray, ...], _Rows]:
    """States of every slice, and the rows (data, offsets, length, stride) they came from."""
    shape = tuple(n for d, n in enumerate(x.shape) if d not in axes)
    plan = _column_plan(x, axes)
    if plan is not None:
        st, koff = _column_states(x, plan)
        return st, _Rows(x, koff, plan[2], plan[3], shape)
    rows = _as_rows(x, axes)
    return _states(rows), rows


# --------------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------------
def lse_state(
    x: np.ndarray, axes: tuple[int, ...], b: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The (max, lead, tail) state of each slice of ``x`` over ``axes`` (float64, the shape of x
    without ``axes``; ``Σ b_i e^{x_i} = e^m (lead + tail)``), or None. ``axes`` are distinct,
    sorted, non-negative; ``b`` None or weights of x's shape."""
    st = _state4(x, axes, b)
    if st is None:
        return None
    m, lead, tail, tlo = st
    return m, lead, tail + tlo


def row_log1p(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """(m, log1p(tail)) of every slice of ``x`` over ``axes`` (float64), the log1p from the
    double-double tail rounded once (the kernels' own, not the platform's): the cross-entropy
    rows of the array core. None where the compiled layer declines."""
    st = _state4(x, axes, None)
    if st is None:
        return None
    m, _, tail, tlo = (np.ascontiguousarray(a, dtype=np.float64) for a in st)
    out = np.empty_like(tail)
    _kernels.log1p_rows(tail, tlo, out, tail.size)
    return m, out


def _state4(x: np.ndarray, axes: tuple[int, ...], b: np.ndarray | None) -> tuple[np.ndarray, ...] | None:
    xr = _ready(x)
    if xr is None or (b is not None and (type(b) is not np.ndarray or b.shape != x.shape)):
        return None
    shape = tuple(n for d, n in enumerate(x.shape) if d not in axes)
    if not axes:
        return None
    if b is None:
        st, _ = _plan_states(xr, axes)
    else:
        rows, w = _weighted_rows(xr, b, axes)
        st = _states(rows, w)
    return tuple(a.reshape(shape) for a in st)


def _weighted_rows(x: np.ndarray, b: np.ndarray, axes: tuple[int, ...]) -> tuple[_Rows, np.ndarray]:
    """x and its weights as contiguous rows of one layout (so one offset serves both)."""
    last = tuple(range(x.ndim - len(axes), x.ndim))
    xc = np.ascontiguousarray(np.moveaxis(x, axes, last))
    w = b if b.dtype in _FLOATS else b.astype(np.float64)
    wc = np.ascontiguousarray(np.moveaxis(w, axes, last))
    L = math.prod(xc.shape[x.ndim - len(axes):])
    n = xc.size // L if L else math.prod(xc.shape[: x.ndim - len(axes)])
    shape = xc.shape[: x.ndim - len(axes)]
    return _Rows(xc, np.arange(n, dtype=np.int64) * L, L, 1, shape), wc


def lse_1d_small(x: np.ndarray) -> Any:
    """LogSumExp of a contiguous 1-D float32/float64 ndarray below ``PARALLEL_MIN`` elements in
    one compiled call (n = 1000: nothing else in front of the kernel), or None."""
    k = _kernels if _enabled else None
    if k is None or x.dtype.char not in "fd" or not 0 < x.size < PARALLEL_MIN or not x.flags.c_contiguous:
        return None
    return x.dtype.type(k.lse_1d(x, x.itemsize, x.size))


def lse_last(x: np.ndarray) -> np.ndarray | None:
    """Unweighted LogSumExp along the last axis of a C-contiguous float32/float64 ndarray of at
    least 2 dimensions, rows of at most ``ITEM`` elements, in x's dtype (x's shape without the last
    axis): state and finish in one kernel call per thread range, no layout planning; short rows
    (≤ 16 entries) several at a time. Same bits as :func:`lse_value`; None where it does not apply."""
    out = _lse_rows64(x)
    return out if out is None or x.dtype == np.float64 else out.astype(x.dtype)


def _lse_rows64(x: np.ndarray) -> np.ndarray | None:
    """:func:`lse_last`'s values before the one rounding to x's dtype (float64)."""
    k = _kernels if _enabled else None
    if k is None or x.dtype.char not in "fd" or not x.flags.c_contiguous or x.ndim < 2 or not x.size:
        return None
    L = x.shape[-1]
    if L > k.ITEM or not hasattr(k, "lse_rows"):
        return None
    n = x.size // L
    out = np.empty(n)
    _run(k.lse_rows, n, x.size, x, x.itemsize, _row_offsets(n, L), L, out)
    return out.reshape(x.shape[:-1])


def lse_value(x: np.ndarray, axes: tuple[int, ...]) -> Any:
    """Unweighted LogSumExp of ``x`` over ``axes`` in x's dtype, each value rounded once from
    the double-double finish (slices that cancel against their maximum recomputed exactly), or
    None. A NumPy scalar for a full reduction, else an array of x's shape without ``axes``."""
    xr = _ready(x)
    if xr is None or not axes:
        return None
    if xr.ndim == 1 and xr.flags.c_contiguous and xr.size < PARALLEL_MIN:
        if xr.size == 0:
            return x.dtype.type(-math.inf)
        return x.dtype.type(_kernels.lse_1d(xr, xr.itemsize, xr.size))
    if xr.ndim >= 2 and axes == (xr.ndim - 1,):
        rows_out = _lse_rows64(xr)  # contiguous rows: no planning, short rows several at a time
        if rows_out is not None:
            return rows_out.astype(x.dtype, copy=False)  # rounded once (float16 data included)
    (m, _, tail, tlo), rows = _plan_states(xr, axes)
    val = np.empty(m.size)
    _kernels.finish_rows(rows.x, rows.x.itemsize, rows.koff, rows.s, rows.L, m, tail, tlo, val, m.size)
    out = val.reshape(rows.shape).astype(x.dtype, copy=False)
    return out[()] if out.ndim == 0 else out


def lse_weighted(x: np.ndarray, b: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """(value, sign) of the weighted LogSumExp per slice (float64, x's shape without ``axes``),
    or None: ``m + log|Σ b_i e^{x_i − m}|`` from the weighted state, slices that cancel (the
    value against m, or signed weights against each other) recomputed exactly. ``b`` has x's
    shape; entries of weight 0 take no part."""
    xr = _ready(x)
    if xr is None or not axes or type(b) is not np.ndarray or b.shape != x.shape:
        return None
    rows, w = _weighted_rows(xr, b, axes)
    k = _kernels
    n = rows.koff.size
    if rows.L == 0:
        return np.full(rows.shape, -math.inf), np.zeros(rows.shape)
    if n == 1 and rows.L < PARALLEL_MIN:
        v, s = k.lse_1d_weighted(rows.x, rows.x.itemsize, w, w.itemsize, rows.L)
        return np.full(rows.shape, v), np.full(rows.shape, s)
    m, lead, tail, tlo = _states(rows, w)
    val, sign = np.empty(n), np.empty(n)
    k.finish_weighted_rows(rows.x, rows.x.itemsize, w, w.itemsize, rows.koff, 1, rows.L, m, lead, tail, tlo, val, sign, n)
    return val.reshape(rows.shape), sign.reshape(rows.shape)


def softmax_axes(x: np.ndarray, axes: tuple[int, ...], log: bool) -> np.ndarray | None:
    """softmax (or log_softmax) of ``x`` over a non-empty tuple of ``axes``, in x's dtype, or
    None. Each entry ``e^{x_i − m} / (1 + tail)`` or ``(x_i − m) − log1p(tail)`` from the row's
    state (float64: rounded about once). One unit-stride (or small) axis is computed in place of
    the output's rows; otherwise the reduced axes are moved last in one contiguous copy."""
    xr = _ready(x)
    if xr is None or not axes:
        return None
    if x.dtype == np.float16:
        # float64 entries, rounded once to float16: float32 entries rounded again to float16 were
        # off by one float16 ulp in ~1 of 15,000 entries (double rounding)
        xr = x.astype(np.float64)
    if len(axes) == 1 and axes[0] == xr.ndim - 1:
        fast = softmax_last(xr, log)  # small C-contiguous rows: one kernel call, no planning
        if fast is not None:
            return fast if fast.dtype == x.dtype else fast.astype(x.dtype)
    if xr.size == 0:
        return np.empty_like(x)
    st = _elem_strides(xr)
    one = len(axes) == 1 and st is not None and (st[axes[0]] == 1 or xr.size < _STRIDED_COPY_MIN)
    if one:
        out = _softmax_rows(xr, axes[0], log)
    else:
        last = tuple(range(xr.ndim - len(axes), xr.ndim))
        moved = np.ascontiguousarray(np.moveaxis(xr, axes, last))
        flat = _softmax_rows(moved.reshape(-1, math.prod(xr.shape[d] for d in axes)), 1, log)
        out = np.moveaxis(flat.reshape(moved.shape), last, axes)
    return out if out.dtype == x.dtype else out.astype(x.dtype)


_last_koff: tuple[int, int, np.ndarray] = (-1, -1, np.zeros(0, dtype=np.int64))


def _row_offsets(n: int, L: int) -> np.ndarray:
    """Element offsets ``j·L`` of ``n`` contiguous rows, read-only, kept for the last (n, L): a
    loop of small calls on one shape builds them once."""
    global _last_koff
    last = _last_koff  # one read: another thread may replace it, never mutate it
    if last[0] == n and last[1] == L:
        return last[2]
    koff = np.arange(n, dtype=np.int64) * L
    koff.setflags(write=False)
    _last_koff = (n, L, koff)
    return koff


def softmax_last(x: np.ndarray, log: bool) -> np.ndarray | None:
    """softmax (or log_softmax) of a C-contiguous float32/float64 ndarray along its last axis,
    below ``PARALLEL_MIN`` elements, in one kernel call with no layout planning (the small calls,
    where planning cost more than the kernel); None otherwise. Same values as :func:`softmax_axes`."""
    k = _kernels if _enabled else None
    if k is None or x.dtype.char not in "fd" or not x.flags.c_contiguous or not 0 < x.size < PARALLEL_MIN or not x.ndim:
        return None
    L = x.shape[-1]
    n = x.size // L
    koff = _row_offsets(n, L)
    out = np.empty_like(x)
    k.softmax_rows(x, x.itemsize, koff, 1, L, out, koff, 1, int(log), 0, n)
    return out


def softmax(x: np.ndarray, axis: int, log: bool) -> np.ndarray | None:
    """softmax (or log_softmax) along one ``axis``: see :func:`softmax_axes`."""
    if type(x) is not np.ndarray or x.ndim == 0:
        return None
    return softmax_axes(x, (axis % x.ndim,), log)


def _softmax_rows(x: np.ndarray, axis: int, log: bool) -> np.ndarray:
    k = _kernels
    out = np.empty_like(x) if (x.flags.c_contiguous or x.flags.f_contiguous) else np.empty(x.shape, x.dtype)
    xs, os_ = _elem_strides(x), _elem_strides(out)
    kept = [d for d in range(x.ndim) if d != axis]
    xk = _offsets([(x.shape[d], xs[d]) for d in kept])  # type: ignore[index]
    ok = _offsets([(x.shape[d], os_[d]) for d in kept])  # type: ignore[index]
    L, n = x.shape[axis], xk.size
    work = n * L
    if n >= min(num_threads(), 2) or L <= k.ITEM or work < PARALLEL_MIN:
        _run(k.softmax_rows, n, work, x, x.itemsize, xk, xs[axis], L, out, ok, os_[axis], int(log))  # type: ignore[index]
        return out
    # few long rows: the rows' states over all threads (items merged), then the write
    rows = _Rows(x, xk, L, xs[axis], (n,))  # type: ignore[index]
    m, lead, tail, tlo = _states(rows)
    ir, ia, ib = _item_split(n, L, k.ITEM)
    _run(k.softmax_write_items, ir.size, work, x, x.itemsize, xk, xs[axis], out, ok, os_[axis], ir, ia, ib,  # type: ignore[index]
         m, lead, tail, tlo, int(log))
    return out


def cross_entropy_grad_rows(
    z: np.ndarray, target: np.ndarray, g: np.ndarray | None, ignore_index: int, rows_out: np.ndarray, lse_out: np.ndarray
) -> np.ndarray | None:
    """Cross-entropy rows of float32 logits ``z`` (C-contiguous [n, C], written in place with the
    gradient of ``Σ g_j·loss_j`` when ``g`` is given) against int64 class ``target``;
    ``rows_out`` and ``lse_out`` (float32, [n]) receive the losses and the LSEs. Returns a bool
    mask of the rows done (False: a non-finite maximum, the row untouched, for the caller's
    exact path), or None when the kernels are not there or the inputs do not fit.

        loss_j = log1p(tail) + (m − z_t)   (0 where target == ignore_index),   lse_j = m + log1p(tail)
        z_i ← g_j · e^{z_i − m} / (1 + tail),   then z_t ← z_t − g_j
    """
    k = kernels() if _enabled else None
    if k is None or z.dtype != np.float32 or z.ndim != 2 or not z.flags.c_contiguous or not z.flags.writeable:
        return None
    n, C = z.shape
    if n == 0 or C == 0 or target.shape != (n,) or target.dtype != np.int64:
        return None
    if not 0 <= int(target.min()) <= int(target.max()) < C:  # the common case in two reductions
        valid = target[target != ignore_index]
        if valid.size and (int(valid.min()) < 0 or int(valid.max()) >= C):
            return None  # out of range: the caller's checks speak, never an unchecked index here
    gg = None if g is None else np.ascontiguousarray(g, dtype=np.float32)
    if gg is not None and gg.size != n:
        return None
    ok = np.empty(n, dtype=np.bool_)
    _run(k.ce_rows, n, n * C, z, C, target, gg, ignore_index, rows_out, lse_out, ok)
    return ok


def kl_grad_rows(
    a: np.ndarray, b: np.ndarray, reverse: bool, g: np.ndarray | None, grad_a: bool, grad_b: bool, rows_out: np.ndarray
) -> np.ndarray | None:
    """Forward (``KL(q ‖ p)``) or reverse (``KL(p ‖ q)``) KL rows of float32 student logits ``a`` and
    teacher logits ``b`` (C-contiguous [n, V], ``p = softmax(a)``, ``q = softmax(b)``) into
    ``rows_out`` (float32 [n]); with ``g``, the gradients of ``Σ g_j·KL_j`` written in place of ``a``
    (if ``grad_a``) and ``b`` (if ``grad_b``). Returns a bool mask of the rows done (False: a
    non-finite maximum or KL, the rows untouched, for the caller's exact path), or None when the
    kernels are not there or the inputs do not fit. See ``src/kl.h`` for the arithmetic."""
    k = kernels() if _enabled else None
    if k is None or not hasattr(k, "kl_rows"):
        return None
    if a.dtype != np.float32 or b.dtype != np.float32 or a.ndim != 2 or a.shape != b.shape:
        return None
    if not (a.flags.c_contiguous and b.flags.c_contiguous and a.flags.writeable and b.flags.writeable):
        return None
    n, V = a.shape
    if n == 0 or V == 0 or rows_out.shape != (n,) or rows_out.dtype != np.float32 or not rows_out.flags.c_contiguous:
        return None
    gg = None if g is None else np.ascontiguousarray(g, dtype=np.float32)
    if gg is not None and gg.shape != (n,):
        return None
    ok = np.empty(n, dtype=np.bool_)
    _run(k.kl_rows, n, n * V, a, b, V, int(reverse), gg, int(grad_a), int(grad_b), rows_out, ok)
    return ok


def segment_state(x: np.ndarray, ids: np.ndarray, num_segments: int) -> tuple[np.ndarray, ...] | None:
    """(m, lead, tail, tlo) of every group of axis 0 of ``x`` (float16/32/64; further axes carried),
    rows going to group ``ids[i]`` (int, in [0, num_segments): the caller checked), or None.
    ``lead`` counts the entries at the maximum (their terms are exactly 1), ``tail + tlo`` the
    rest; special groups as in ``_state``. Two passes over the data, ids in any order."""
    xr = _ready(x)
    if xr is None or xr.ndim == 0:
        return None
    xr = np.ascontiguousarray(xr)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    F = math.prod(xr.shape[1:])
    shape = (num_segments, *xr.shape[1:])
    out = tuple(np.empty(num_segments * F) for _ in range(4))
    _segment_states(_kernels, xr.reshape(xr.shape[0], F), ids, num_segments, out)
    return tuple(a.reshape(shape) for a in out)


def elementary(which: str, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kernels' elementary functions on float64 ``d``, as (hi, lo), for the accuracy tests:
    "exp" (the split exp of the float64 fold), "exp_lo" (the float32 data's exp), "log1p_dd",
    "exp_dd", "log1p_dd_exact"."""
    code = {"exp": 0, "exp_lo": 1, "log1p_dd": 2, "exp_dd": 3, "log1p_dd_exact": 4}[which]
    d = np.ascontiguousarray(d, dtype=np.float64)
    hi, lo = np.empty_like(d), np.empty_like(d)
    kernels().elementary(code, d, hi, lo, d.size)
    return hi, lo


# --------------------------------------------------------------------------------------------
# Segments: the torch face's fused forward and backward (segment.h)
# --------------------------------------------------------------------------------------------
SEGMENT_KINDS = {"softmax": 0, "log_softmax": 1, "lse_grad": 2}


def _segment_kernels(*arrays: np.ndarray) -> Any:
    """The kernels if they take these 2-d C-contiguous float32/float64 arrays of one dtype, else None."""
    k = kernels() if _enabled else None
    if k is None or not hasattr(k, "segment_write"):
        return None
    dt = arrays[0].dtype
    if dt not in _FLOATS or any(a.dtype != dt or a.ndim != 2 or not a.flags.c_contiguous for a in arrays):
        return None
    return k


def segment_forward(x: np.ndarray, ids: np.ndarray, num_segments: int, kind: str) -> tuple[np.ndarray, np.ndarray] | None:
    """softmax / log_softmax (``kind``, x's shape and dtype) or LogSumExp (``"lse"``: float64,
    ``(num_segments, F)``) of the groups of the rows of ``x`` (N, F), C-contiguous float32/64,
    rows to ``ids`` (int64, checked in range by the caller); with the group constants
    ``(5, num_segments, F)`` float64 (m, lead + tail as hi and lo, log(lead + tail) as hi and lo)
    that the LogSumExp's backward takes. None where the kernels do not apply."""
    k = _segment_kernels(x)
    if k is None:
        return None
    N, F = x.shape
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    ns = num_segments * F
    st = [np.empty(ns) for _ in range(4)]
    _segment_states(k, x, ids, num_segments, st)
    consts = np.empty((5, num_segments, F))
    v = np.empty((num_segments, F))
    # a log per group costs about 50 entries' work: threads split the groups as for that many entries
    need_log = 0 if kind == "softmax" else 2 if x.dtype == np.float32 else 1  # float32: a plain double log
    _run(k.segment_consts, ns, 50 * ns, *st, need_log, consts[1], consts[2], consts[3], consts[4], v)
    consts[0] = st[0].reshape(num_segments, F)
    if kind == "lse":
        _segment_fix_cancelling(x, ids, consts[0], v)
        return v, consts
    out = np.empty_like(x)
    pk = _segment_pack(consts, kind, None, narrow=x.dtype == np.float32)
    _run(k.segment_write, N, N * F, x, x.itemsize, F, ids, pk, pk.shape[1], SEGMENT_KINDS[kind], out)
    return out, consts


def _segment_pack(consts: np.ndarray, kind: str, g: np.ndarray | None, narrow: bool = False) -> np.ndarray:
    """(m, hi, lo, g) of every group side by side, what segment_write reads: (hi, lo) the total
    lead + tail (softmax, the LogSumExp's gradient) or its log (log-softmax); ``narrow``: (m, hi)
    only, enough for a float32 result (hi alone is within 2^-53 of the total)."""
    pk = np.empty((consts[0].size, 2 if narrow and g is None else 4))
    pk[:, 0] = consts[0].ravel()
    pk[:, 1] = consts[3 if kind == "log_softmax" else 1].ravel()
    if pk.shape[1] == 4:
        pk[:, 2] = consts[4 if kind == "log_softmax" else 2].ravel()
        pk[:, 3] = 0.0 if g is None else g.ravel()
    return pk


def segment_lse_grad(x: np.ndarray, ids: np.ndarray, consts: np.ndarray, g: np.ndarray) -> np.ndarray | None:
    """``softmax(x)_i · g[ids[i]]`` (0 where the softmax is 0) from the forward's constants: the
    gradient of the groups' LogSumExp; ``g`` (num_segments, F) is taken in float64."""
    k = _segment_kernels(x)
    if k is None:
        return None
    N, F = x.shape
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    c = np.asarray(consts, dtype=np.float64)
    g64 = np.asarray(g, dtype=np.float64)
    out = np.empty_like(x)
    if x.dtype == np.float32:  # (m, g / total): half the table, e^{x − m}·(g/total) rounded to float32
        pk = np.empty((c[0].size, 2))
        pk[:, 0] = c[0].ravel()
        with np.errstate(all="ignore"):
            np.divide(g64.ravel(), c[1].ravel(), out=pk[:, 1])
        _run(k.segment_write, N, N * F, x, x.itemsize, F, ids, pk, 2, 4, out)
        return out
    pk = _segment_pack(c, "lse_grad", g64)
    _run(k.segment_write, N, N * F, x, x.itemsize, F, ids, pk, 4, SEGMENT_KINDS["lse_grad"], out)
    return out


def segment_backward(y: np.ndarray, g: np.ndarray, ids: np.ndarray, num_segments: int, log: bool) -> np.ndarray | None:
    """The gradient of segment softmax (``y (g − Σ_group g y)``) or log-softmax
    (``g − e^y Σ_group g``) from its output ``y`` and the upstream ``g`` (both (N, F), one dtype),
    the per-group sums in float64."""
    k = _segment_kernels(y, g)
    if k is None:
        return None
    N, F = y.shape
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    S = np.empty(num_segments * F)
    _run(k.segment_bwd_sums, num_segments, N * F, y, g, y.itemsize, N, F, ids, int(log), S)
    gx = np.empty_like(y)
    _run(k.segment_bwd_write, N, N * F, y, g, y.itemsize, F, ids, S, int(log), gx)
    return gx


def segment_forward_csr(x: np.ndarray, ptr: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`segment_forward` for sorted rows: group ``s`` owns rows ``ptr[s] .. ptr[s+1]`` of ``x``
    (N, F) (``ptr`` int64, checked by the caller). Each column of a group is folded and finished by
    the row kernels (the LogSumExp with their cancelling recompute), groups split over the threads."""
    k = _segment_kernels(x)
    if k is None:
        return None
    N, F = x.shape
    ptr = np.ascontiguousarray(ptr, dtype=np.int64)
    S = ptr.size - 1
    st = [np.empty(S * F) for _ in range(4)]
    v = np.empty((S, F))
    _run(k.segment_csr_states, S, N * F, x, x.itemsize, F, ptr, *st, v)
    consts = np.empty((5, S, F))
    scratch = np.empty((S, F))
    _run(k.segment_consts, S * F, 50 * S * F, *st, int(kind == "log_softmax"), *consts[1:], scratch)
    consts[0] = st[0].reshape(S, F)
    if kind == "lse":
        return v, consts
    out = np.empty_like(x)
    _run(k.segment_csr_write, S, N * F, x, x.itemsize, F, ptr, *st, int(kind == "log_softmax"), out)
    return out, consts


def segment_csr_state(x: np.ndarray, ptr: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """(m, lead, tail, tlo, value) of every CSR group of axis 0 of ``x`` (float32/64, further axes
    carried), each (S, *rest) float64, or None where the kernels do not apply."""
    xr = _ready(x)
    if xr is None or xr.ndim == 0:
        return None
    rest = xr.shape[1:]
    x2 = np.ascontiguousarray(xr).reshape(xr.shape[0], -1) if xr.shape[0] else np.zeros((0, math.prod(rest)), xr.dtype)
    k = _segment_kernels(x2)
    if k is None:
        return None
    ptr = np.ascontiguousarray(ptr, dtype=np.int64)
    S, F = ptr.size - 1, x2.shape[1]
    out = [np.empty(S * F) for _ in range(5)]
    _run(k.segment_csr_states, S, x2.size, x2, x2.itemsize, F, ptr, *out)
    return tuple(a.reshape((S, *rest)) for a in out)


def _segment_states(k: Any, x: np.ndarray, ids: np.ndarray, num_segments: int, out: list[np.ndarray]) -> None:
    """The states of the groups of the rows of ``x`` (N, F) into ``out`` (m, lead, tail, tlo): float32
    over threads that own ranges of groups (each group's sum in row order: the same bits for any
    number of threads), float64 in one call."""
    N, F = x.shape
    if x.dtype == np.float32 and hasattr(k, "segment_states32"):
        _run(k.segment_states32, num_segments, N * F, x, N, F, ids, *out)
    else:
        k.segment_states(x, x.itemsize, N, F, ids, num_segments, *out)


def _segment_fix_cancelling(x: np.ndarray, ids: np.ndarray, m: np.ndarray, v: np.ndarray) -> None:
    """Recompute in place the values ``v`` (S, F) that cancel against their maximum (m < 0,
    |v| < |m|/2: a nearly normalised group, whose value is many ulps of a number near 0 when
    rounded from the state): the rows of those groups are put in group order and finished by
    the row kernels' exact recompute (every x − m exact, every exp and the sum in double-double)."""
    with np.errstate(invalid="ignore"):
        bad = (m < 0) & (np.abs(v) < -0.5 * m)
    if not bad.any():
        return
    groups = np.flatnonzero(bad.any(axis=1))
    rows = np.flatnonzero(np.isin(ids, groups))
    rows = rows[np.argsort(ids[rows], kind="stable")]
    counts = np.bincount(np.searchsorted(groups, ids[rows]), minlength=groups.size)
    ptr = np.concatenate([[0], np.cumsum(counts)])
    st = segment_csr_state(np.ascontiguousarray(x[rows]), ptr)
    if st is not None:
        v[groups] = np.where(bad[groups], st[4], v[groups])
