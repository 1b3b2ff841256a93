"""The one place where the array core chooses who computes a reduction.

Every reduction of the array core (logsumexp, softmax, log_softmax, cross-entropy, LSEState) asks
this module for the (max, lead, tail) state of its slices, or for a softmax, and gets it from the
first backend that accepts the input, in this order:

1. the compiled CPU kernels (``_cpu``: NumPy float32/float64; a hook returns a result or None);
2. a registered *collection backend* for arrays the core must not compute as a whole (Dask: a
   graph reduced chunk by chunk, in one pass over the data);
3. a cache-blocked NumPy loop (large NumPy inputs: bounded extra memory);
4. the generic Array API computation of ``_state`` (PyTorch, JAX, CuPy, array-api-strict, ...).

Callers have validated and promoted their arguments already: backends do arithmetic only.

Collection backends plug in with :func:`register_backend`. The Dask backend lives above the core
(``logsumexp.dask``) and the core never imports it; the package's top level registers a loader
that imports it on the first Dask array seen (a Dask user has Dask imported already).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _array_api as aa
from . import _cpu, _lse_dd, _softmax_dd
from ._state import State, block_state, empty_state, merge, softmax_from_state, value

Array = Any

# A NumPy block of at most this many working-dtype elements is processed at a time: 128 Ki
# float64 = 1 MiB stays in L2, and it bounds the core's extra memory on large inputs.
BLOCK_ELEMENTS = 1 << 17

# name → loader returning the backend module; the module provides, reduced axes dropped, float64:
#   reduce_state(x, axes, w) -> State
#   reduce_value(x, axes, w, return_sign) -> value, or (value, sign)
#   normalized(x, axes, log, out_dtype) -> softmax or log_softmax
_BACKEND_LOADERS: dict[str, Callable[[], Any]] = {}


def register_backend(name: str, loader: Callable[[], Any]) -> None:
    """Register how to reach the collection backend ``name`` (today only "dask")."""
    _BACKEND_LOADERS[name] = loader


def _collection_backend(xp: Any) -> Any:
    if not aa.is_dask(xp):
        return None
    loader = _BACKEND_LOADERS.get("dask")
    if loader is None:  # only when the package's top level was bypassed
        raise TypeError("Dask arrays need the logsumexp.dask backend: import logsumexp.dask first")
    return loader()


def _compiled_ok(xp: Any, x: Array) -> bool:
    return aa.is_numpy(xp) and _cpu.enabled() and x.dtype.kind == "f" and x.dtype.itemsize >= 4


def fast_numpy_lse(a: np.ndarray, axis: aa.Axis, keepdims: bool) -> Any:
    """The compiled unweighted LSE of a float32/float64 ndarray in one call, or None.

    The common NumPy call skips the generic path's handful of 0-d array operations, which cost
    about ten times the kernel itself on a thousand values.
    """
    if a.ndim == 1 and (axis is None or axis == 0 or axis == -1) and not keepdims:
        small = _cpu.lse_1d_small(a)  # n = 1000: straight to the kernel
        if small is not None:
            return small
    if a.dtype.kind != "f" or a.dtype.itemsize < 4 or not _cpu.enabled():
        return None
    axes = aa.normalize_axis(axis, a.ndim)
    out = _cpu.lse_value(a, axes)
    if out is None:
        return None
    return np.expand_dims(out, axes) if keepdims else out


def fast_numpy_lse_weighted(a: np.ndarray, b: np.ndarray, axis: aa.Axis, keepdims: bool, return_sign: bool) -> Any:
    """The compiled weighted LSE of a 1-D float32/float64 ndarray with weights of its dtype and
    shape, in one call, or None (then the general path answers: other shapes, dtypes, or a slice
    that cancels, which it recomputes exactly). A 1000-element call went from ~0.5 ms through the
    general path (argument preparation, the state hook, the NumPy double-double finish) to a few µs.
    """
    if a.ndim != 1 or keepdims or not (axis is None or axis == 0 or axis == -1):
        return None
    st = _cpu.lse_1d_weighted(a, b)
    if st is None:
        return None
    m, lead, total, v = st
    if _lse_dd.weighted_cancels(m, lead, total, v):
        return None  # answered by the general path, which recomputes the slice exactly
    dt = a.dtype.type
    if return_sign:
        sign = math.nan if v != v else (1.0 if total > 0 else -1.0 if total < 0 else 0.0)
        return dt(v), dt(sign)
    return dt(math.nan if total < 0 else v)


def mask_zero_weights(xp: Any, x: Array, w: Array) -> Array:
    """``x`` with the entries of weight 0 set to −inf: a zero weight removes its term, even at ±inf."""
    return xp.where(w == 0, xp.asarray(-math.inf, dtype=x.dtype), x)


def _no_reduced_axis(x: Array, w: Array | None, axes: tuple[int, ...]) -> tuple[Array, Array | None, tuple[int, ...]]:
    """Nothing reduced (0-d input, ``axis=()``): each entry becomes a slice of length 1."""
    if axes:
        return x, w, axes
    return x[..., None], None if w is None else w[..., None], (x.ndim,)


def lse_value(xp: Any, x: Array, axes: tuple[int, ...], w: Array | None, return_sign: bool) -> Any:
    """LogSumExp (and its sign with ``return_sign``) of every slice of ``x`` over ``axes``, reduced
    axes dropped, in the working dtype; same input conventions as :func:`lse_state`."""
    backend = _collection_backend(xp)
    if backend is not None:  # the value is computed inside the backend's reduction
        x, w, axes = _no_reduced_axis(x, w, axes)
        return backend.reduce_value(x, axes, w, return_sign)
    if _dd_numpy_ok(xp, x, axes, w):
        x1, ax = aa.to_single_axis(xp, x, axes)
        with aa.quiet_fp():
            return _lse_dd.lse_value(x1, ax, return_sign)
    state = lse_state(xp, x, axes, w)
    with aa.quiet_fp():
        res = value(xp, state, return_sign)
        if w is not None and aa.is_numpy(xp) and bool(axes):
            # slices that cancel (a value near 0 against its maximum, or signed weights against
            # each other) are recomputed exactly from the data, which is still at hand here
            res = _lse_dd.redo_weighted(x, w, axes, state.m, state.lead, state.tail, res, return_sign)
        return res


def _dd_numpy_ok(xp: Any, x: Array, axes: tuple[int, ...], w: Array | None) -> bool:
    """Whether the array core's NumPy float64 LSE (``_lse_dd``) computes this one: unweighted,
    not taken by the compiled kernels, something to reduce in every slice."""
    return (
        w is None
        and aa.is_numpy(xp)
        and not _compiled_ok(xp, x)
        and aa.work_dtype(xp, x, x.dtype) == np.float64
        and bool(axes)
        and all(x.shape[a] > 0 for a in axes)
    )


def lse_state(xp: Any, x: Array, axes: tuple[int, ...], w: Array | None) -> State:
    """The (max, lead, tail) state of every slice of ``x`` over ``axes`` (reduced axes dropped).

    ``x`` is a float array with masked and zero-weight entries already −inf; ``w`` the weights of
    its shape or None. The state is in the working dtype (float64 on a CPU).
    """
    if _compiled_ok(xp, x):
        fast = _cpu.lse_state(x, axes, w)
        if fast is not None:
            return State(*fast)
    backend = _collection_backend(xp)
    if backend is not None:
        x, w, axes = _no_reduced_axis(x, w, axes)
        return backend.reduce_state(x, axes, w)
    wide = aa.work_dtype(xp, x, x.dtype)
    x1, ax = aa.to_single_axis(xp, x, axes)
    w1 = None if w is None else aa.to_single_axis(xp, w, axes)[0]
    with aa.quiet_fp():
        if aa.is_numpy(xp):
            return _blocked_numpy_state(xp, x1, ax, w1, wide)
        w1 = None if w1 is None else xp.astype(w1, wide)
        return block_state(xp, xp.astype(x1, wide), ax, w1)


def _blocked_numpy_state(xp: Any, x: Array, ax: int, w: Array | None, wide: Any) -> State:
    """The state of a large NumPy input, a cache-sized block at a time (bounded extra memory).

    Rows are processed in groups; a row too long for one block is cut into column blocks whose
    states are merged, which is exactly the online (max, sum) algorithm.
    """
    x = xp.moveaxis(x, ax, -1)
    w = None if w is None else xp.moveaxis(w, ax, -1)
    batch, n = tuple(x.shape[:-1]), x.shape[-1]
    rows = math.prod(batch)
    x = xp.reshape(x, (rows, n))
    w = None if w is None else xp.reshape(w, (rows, n))
    out = empty_state(xp, (rows,), wide)
    row_step = max(1, BLOCK_ELEMENTS // max(n, 1))
    col_step = min(n, BLOCK_ELEMENTS) if n else 1
    for r0 in range(0, rows, row_step):
        r = slice(r0, min(rows, r0 + row_step))
        acc = None
        for c0 in range(0, max(n, 1), col_step):
            c = slice(c0, min(n, c0 + col_step))
            # C-contiguous copies: NumPy sums a contiguous last axis pairwise (error ~log n)
            wb = None if w is None else np.ascontiguousarray(w[r, c], dtype=wide)
            st = block_state(xp, np.ascontiguousarray(x[r, c], dtype=wide), 1, wb)
            acc = st if acc is None else merge(xp, acc, st)
        for dst, src in zip(out, acc):
            dst[r] = src
    return State(*(xp.reshape(a, batch) for a in out))


def normalized(xp: Any, x: Array, axes: tuple[int, ...], log: bool, out_dtype: Any) -> Array:
    """softmax (``log=False``) or log_softmax of ``x`` over ``axes``, in ``out_dtype``.

    ``x`` is a float array (masked entries already −inf, temperature applied). NumPy float64 input
    without the compiled kernels goes to ``_softmax_dd`` (each entry rounded about once); float16
    and float32, long double and the other namespaces keep ``softmax_from_state``.
    """
    if axes and _compiled_ok(xp, x):
        fast = _cpu.softmax_axes(x, axes, log)
        if fast is not None:
            return xp.astype(fast, out_dtype, copy=False)
    if math.prod(x.shape) == 0:
        return xp.astype(x, out_dtype)
    backend = _collection_backend(xp)
    if backend is not None:  # one reduction, then one elementwise pass over the chunks
        return backend.normalized(x, axes, log, out_dtype)
    # NumPy float64: each entry rounded about once. Narrower inputs, also worked in float64 here,
    # are rounded to their dtype far above that error (within 0.51 ulp as before), and the
    # double-double entries cost ~5x: 26 s against 3.9 s for softmax of a [4096, 32000] float32.
    if _dd_numpy_ok(xp, x, axes, None) and x.dtype == np.float64:
        x1, ax = aa.to_single_axis(xp, x, axes)
        with aa.quiet_fp():
            out = _softmax_dd.normalized(x1, ax, log)
        return xp.astype(_from_single_axis(out, x.shape, axes), out_dtype, copy=False)
    state = lse_state(xp, x, axes, None)
    m, tail = (aa.restore_axes(xp, a, axes, True) for a in (state.m, state.tail))
    wide = m.dtype
    with aa.quiet_fp():
        if aa.is_numpy(xp) and x.size > BLOCK_ELEMENTS:
            return _blocked_numpy_normalized(xp, x, m, tail, axes, wide, out_dtype, log)
        return xp.astype(softmax_from_state(xp, xp.astype(x, wide), m, tail, log), out_dtype)


def _from_single_axis(out: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    """Undo ``aa.to_single_axis`` on an array of its output's shape: split the merged axis back
    into ``axes`` and put them where they were (a view where NumPy can)."""
    if len(axes) == 1:
        return out
    keep = [d for d in range(len(shape)) if d not in axes]
    order = keep + list(axes)
    out = np.reshape(out, tuple(shape[d] for d in order))
    return np.transpose(out, np.argsort(order))


def _blocked_numpy_normalized(
    xp: Any, x: Array, m: Array, tail: Array, axes: tuple[int, ...], wide: Any, out_dtype: Any, log: bool
) -> Array:
    """``softmax_from_state`` on a large NumPy array (long double: float64 work takes
    ``_softmax_dd``), a cache-sized block along axis 0 at a time."""
    out = xp.empty(x.shape, dtype=out_dtype)
    step = max(1, BLOCK_ELEMENTS * x.shape[0] // x.size)
    reduced = 0 in axes  # then m and tail have length 1 on axis 0 and apply to every block
    for i in range(0, x.shape[0], step):
        r = slice(i, i + step)
        mb, tb = (m, tail) if reduced else (m[r], tail[r])
        out[r] = softmax_from_state(xp, xp.astype(x[r], wide), mb, tb, log)
    return out
