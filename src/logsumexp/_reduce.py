"""The one place where the array core chooses who computes a reduction.

Every reduction of the array core (logsumexp, softmax, log_softmax, cross-entropy, LSEState) asks
this module for the (max, lead, tail) state of its slices, or for a softmax, and gets it from the
first backend that accepts the input, in this order:

1. the compiled CPU kernels (``_cpu``: NumPy float16/32/64; a hook returns a result or None);
2. a registered *collection backend* for arrays the core must not compute as a whole (Dask: a
   graph reduced chunk by chunk, in one pass over the data);
3. the generic Array API computation of ``_state`` (PyTorch, JAX, CuPy, array-api-strict, NumPy
   long double, and NumPy where the extension is not built).

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
from . import _cpu
from ._state import State, block_state, softmax_from_state, value

Array = Any

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
    return aa.is_numpy(xp) and _cpu.enabled() and x.dtype.kind == "f" and x.dtype.itemsize <= 8


def fast_numpy_lse(a: np.ndarray, axis: aa.Axis, keepdims: bool) -> Any:
    """The compiled unweighted LSE of a float16/32/64 ndarray in one call, or None.

    The common NumPy call skips the generic path's handful of 0-d array operations, which cost
    about ten times the kernel itself on a thousand values.
    """
    if a.ndim == 1 and (axis is None or axis == 0 or axis == -1) and not keepdims:
        small = _cpu.lse_1d_small(a)  # n = 1000: straight to the kernel
        if small is not None:
            return small
    if a.ndim >= 2 and type(axis) is int and (axis == -1 or axis == a.ndim - 1):
        rows = _cpu.lse_last(a)  # C-contiguous float32/float64 rows: one kernel call
        if rows is not None:
            return rows[..., None] if keepdims else rows
    if a.dtype.kind != "f" or a.ndim == 0 or not _cpu.enabled():
        return None
    axes = aa.normalize_axis(axis, a.ndim)
    out = _cpu.lse_value(a, axes)
    if out is None:
        return None
    return np.expand_dims(out, axes) if keepdims else out


def fast_numpy_lse_weighted(a: np.ndarray, b: np.ndarray, axis: aa.Axis, keepdims: bool, return_sign: bool) -> Any:
    """The compiled weighted LSE of a 1-D float32/float64 ndarray with weights of its dtype and
    shape, in one call (a 1000-element call: a few µs against ~0.5 ms through the general
    argument handling), or None."""
    if a.ndim != 1 or keepdims or not (axis is None or axis == 0 or axis == -1):
        return None
    if a.dtype.char not in "fd" or b.dtype != a.dtype or b.shape != a.shape or a.size == 0:
        return None
    res = _cpu.lse_weighted(a, b, (0,))
    if res is None:
        return None
    v, sign = (a.dtype.type(r[()]) for r in res)
    if return_sign:
        return v, sign
    return a.dtype.type(math.nan) if sign < 0 else v


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
    if axes and _compiled_ok(xp, x):
        if w is None:
            out = _cpu.lse_value(x, axes)
            if out is not None:
                if not return_sign:
                    return out
                # unweighted: the sum is positive, or 0 for an empty / all −inf slice, or NaN
                sign = np.where(np.isnan(out), out, np.where(out == -math.inf, 0.0, 1.0)).astype(out.dtype)
                return out, sign
        else:
            res = _cpu.lse_weighted(x, w, axes)
            if res is not None:
                val, sign = res
                if return_sign:
                    return val, sign
                with aa.quiet_fp():
                    return np.where(sign < 0, math.nan, val)
    backend = _collection_backend(xp)
    if backend is not None:  # the value is computed inside the backend's reduction
        x, w, axes = _no_reduced_axis(x, w, axes)
        return backend.reduce_value(x, axes, w, return_sign)
    state = lse_state(xp, x, axes, w)
    with aa.quiet_fp():
        return value(xp, state, return_sign)


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
    w1 = None if w is None else xp.astype(aa.to_single_axis(xp, w, axes)[0], wide)
    with aa.quiet_fp():
        return block_state(xp, xp.astype(x1, wide), ax, w1)


def normalized(xp: Any, x: Array, axes: tuple[int, ...], log: bool, out_dtype: Any) -> Array:
    """softmax (``log=False``) or log_softmax of ``x`` over ``axes``, in ``out_dtype``.

    ``x`` is a float array (masked entries already −inf, temperature applied): the compiled
    kernels for NumPy float16/32/64, the collection backend for Dask, the generic
    ``softmax_from_state`` elsewhere.
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
    state = lse_state(xp, x, axes, None)
    m, tail = (aa.restore_axes(xp, a, axes, True) for a in (state.m, state.tail))
    with aa.quiet_fp():
        return xp.astype(softmax_from_state(xp, xp.astype(x, m.dtype), m, tail, log), out_dtype)
