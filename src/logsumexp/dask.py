r"""One-pass LogSumExp, softmax and log-softmax for Dask arrays.

Lazy Dask arrays in, lazy Dask arrays out, like Dask's own reductions. Each function is a
:func:`dask.array.reduction` over the mergeable ``(max, lead, tail)`` state of
:mod:`logsumexp._state` (written once, shared by every reduction of the library):

* the *chunk* step computes the state of every slice of one input chunk with the array core's
  reduction (``logsumexp._reduce.lse_state``: the compiled CPU kernels when they are available,
  else the blocked NumPy path), so each input chunk is read exactly once;
* the *combine* steps (Dask's ``split_every`` tree) and the *aggregate* step fold the states of
  neighbouring chunks with the one merge of the library, ``_state.merge``:
  ``M = max(m1, m2)``, ``s = s1·e^{m1−M} + s2·e^{m2−M}``;
* the aggregate turns the merged state into ``m + log|lead| + log1p(tail/lead)``
  (``_state.value``), which keeps full relative accuracy when the maximum dominates.

This module is also the array core's backend for Dask arrays: ``logsumexp.logsumexp``,
``softmax``, ``cross_entropy`` and ``LSEState`` on a Dask array reach :func:`reduce_state` through
the backend registry of ``logsumexp._reduce`` (the package registers it; the core never imports
this module).

The alternatives read the data twice (``m = x.max(); m + log(exp(x − m).sum())`` has two
consumers per chunk, so every chunk is held in memory or read again between the passes) or lose
accuracy ("LSE of the chunk LSEs" takes a log per chunk and exponentiates it again: a rounding
per chunk, and a dominant term no longer keeps the log1p form's relative accuracy). Only
NumPy-backed Dask arrays are supported (Dask's default); the states travel between workers as
small float64 arrays (a dict of three arrays, or one structured array at the root).

This module needs ``dask[array]``; ``import logsumexp`` never imports it.

>>> import numpy as np, dask.array as da
>>> import logsumexp.dask as lsed
>>> x = da.from_array(np.full(10, 1000.0), chunks=3)
>>> r = lsed.logsumexp(x)          # lazy
>>> print(float(r.compute()))      # 1000 + log 10, although exp(1000) overflows
1002.302585092994
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np

try:
    import dask.array as da
except ImportError as err:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "logsumexp.dask needs the 'dask' package with its array module (dask[array]), which is "
        f"not installed ({err}); install it with: pip install 'logsumexp[dask]'"
    ) from err

from . import _array_api as aa
from . import _cpu
from . import _dd
from ._reduce import lse_state, mask_zero_weights
from ._state import State, merge, softmax_from_state, value

__all__ = ["cross_entropy", "log_softmax", "logsumexp", "softmax"]

# The state of every slice travels between tasks as one structured array in the core's working
# dtype on a CPU (float64, or long double for long double input, as the NumPy path computes it):
# a single Dask array that the value, the sign and the softmax pass can all read without
# re-reading the input.
_FIELDS = ("m", "lead", "tail")


def _work_dtype(*dtypes: np.dtype) -> np.dtype:
    """The working dtype of a graph: long double when an input is long double (its extra digits
    are computed, not invented from float64 ones), float64 otherwise."""
    wide = [d for d in dtypes if d is not None and d.kind == "f" and d.itemsize > 8]
    return np.dtype(np.longdouble) if wide else np.dtype(np.float64)


def _state_dtype(work: np.dtype) -> np.dtype:
    return np.dtype([(f, work) for f in _FIELDS])


# ---------------------------------------------------------------------------------------------
# The reduction: chunk → (combine →)* aggregate, all on the (max, lead, tail) state
# ---------------------------------------------------------------------------------------------
def _chunk_state(
    x: np.ndarray,
    w: np.ndarray | None = None,
    *,
    axis: tuple[int, ...],
    keepdims: bool,
    work: np.dtype = np.dtype(np.float64),
    computing_meta: bool = False,
) -> Any:
    """The state of every slice of one input chunk (reduced axes kept with length 1), in ``work``.

    ``_prepare_lse`` promotes integers and sets zero-weight entries to −inf, exactly as the
    array core does on a whole NumPy array; ``lse_state`` then reads the chunk once.
    """
    if computing_meta:  # Dask probes the function on an empty "meta" array
        return x
    x1, w1, axes = _chunk_input(x, w, axis)
    red = axes
    if not axes:  # axis=(): each element is its own slice; reduce over a new length-1 axis
        # (the CPU kernels' 1-D shortcut would otherwise reduce the whole chunk)
        x1, w1 = x1[..., None], None if w1 is None else w1[..., None]
        red = (x1.ndim - 1,)
    with aa.quiet_fp(), _cpu.serial():  # Dask's threads already use the cores
        st = lse_state(np, x1, red, w1)
    return {f: aa.restore_axes(np, np.asarray(a, dtype=work), axes, True) for f, a in zip(_FIELDS, st)}


def _chunk_input(x: np.ndarray, w: np.ndarray | None, axis: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None, tuple[int, ...]]:
    """A chunk as the reduction wants it: float (integers promote to float64), zero-weight entries −inf.

    The graph is built from already validated arrays; this is arithmetic preparation only.
    """
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    if w is not None:
        dt = np.result_type(x.dtype, w.dtype if w.dtype.kind == "f" else np.float64)
        x, w = x.astype(dt, copy=False), w.astype(dt, copy=False)
        x = mask_zero_weights(np, x, w)
    return x, w, aa.normalize_axis(axis, x.ndim)


def _leaves(parts: Any) -> Iterator[dict[str, np.ndarray]]:
    """The states in Dask's nested lists (one nesting level per reduced axis; a bare dict when
    no axis is reduced)."""
    if isinstance(parts, list):
        for p in parts:
            yield from _leaves(p)
    else:
        yield parts


def _merged(parts: Any) -> State:
    """Fold the states of neighbouring chunks with the library's one merge."""
    acc: State | None = None
    with aa.quiet_fp():  # −inf − (−inf) is computed, then discarded by merge's own select
        for d in _leaves(parts):
            s = State(d["m"], d["lead"], d["tail"])
            acc = s if acc is None else merge(np, acc, s)
    if acc is None:  # pragma: no cover - Dask always hands over at least one part
        raise ValueError("no state to merge")
    return acc


def _combine(parts: Any, *, axis: tuple[int, ...], keepdims: bool, computing_meta: bool = False) -> Any:
    """An inner node of the ``split_every`` tree: merged state, still a dict."""
    if computing_meta:
        return parts
    return dict(zip(_FIELDS, _merged(parts)))


def _aggregate_value(
    parts: Any, *, axis: tuple[int, ...], keepdims: bool, out_dtype: np.dtype, computing_meta: bool = False
) -> np.ndarray:
    """The root of the tree for ``logsumexp``: merged state → LSE, in the result dtype."""
    if computing_meta:
        return np.empty((0,) * (parts.ndim if keepdims else parts.ndim - len(axis)), dtype=out_dtype)
    st = _merged(parts)
    with aa.quiet_fp():
        out = np.asarray(value(np, st)).astype(out_dtype, copy=False)
    out = out if keepdims else np.squeeze(out, axis=axis)
    return out[()] if out.ndim == 0 else out  # a NumPy scalar, as Dask's own reductions give


def _aggregate_state(
    parts: Any, *, axis: tuple[int, ...], keepdims: bool, work: np.dtype, computing_meta: bool = False
) -> np.ndarray:
    """The root of the tree for the sign and softmax: the merged state as a structured array."""
    if computing_meta:
        return np.empty((0,) * parts.ndim, dtype=_state_dtype(work))
    st = _merged(parts)
    out = np.empty(st.m.shape, dtype=_state_dtype(work))
    for f, a in zip(_FIELDS, st):
        out[f] = a
    return out


def _reduce(
    x: da.Array,
    axes: tuple[int, ...],
    w: da.Array | None,
    split_every: Any,
    aggregate: Any,
    keepdims: bool,
    meta: np.ndarray,
) -> da.Array:
    work = _work_dtype(x.dtype, None if w is None else w.dtype)
    return da.reduction(
        x,
        partial(_chunk_state, work=work),
        aggregate,
        axis=axes,
        keepdims=keepdims,
        dtype=meta.dtype,
        split_every=split_every,
        combine=_combine,
        concatenate=False,  # the intermediates are dicts of three arrays, merged by _merged
        weights=w,
        meta=meta,
        name="logsumexp",
    )


def _state(x: da.Array, axes: tuple[int, ...], w: da.Array | None, split_every: Any) -> da.Array:
    """The merged state of every slice, keepdims, one chunk along each reduced axis."""
    work = _work_dtype(x.dtype, None if w is None else w.dtype)
    meta = np.empty((0,) * x.ndim, dtype=_state_dtype(work))
    return _reduce(x, axes, w, split_every, partial(_aggregate_state, work=work), True, meta)


# ---------------------------------------------------------------------------------------------
# Argument handling
# ---------------------------------------------------------------------------------------------
def _as_dask(a: Any, name: str) -> da.Array:
    """``a`` as a NumPy-backed Dask array of real numbers (NumPy arrays and lists are wrapped)."""
    if not isinstance(a, da.Array):
        try:
            a = da.asarray(np.asarray(a) if not hasattr(a, "dtype") else a)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a Dask array or array_like of numbers: {err}") from None
    meta = getattr(a, "_meta", None)
    if type(meta) is not np.ndarray:
        raise TypeError(
            f"{name} must be a NumPy-backed Dask array; its chunks are {type(meta).__name__} objects"
        )
    if a.dtype.kind not in "biuf":
        kind = "complex" if a.dtype.kind == "c" else "non-numeric"
        raise TypeError(f"{name} must hold real numbers, got a {kind} Dask array of dtype {a.dtype}")
    return a


def _float_dtype(*dtypes: np.dtype) -> np.dtype:
    """The result dtype: the inputs' promoted float dtype (integers and bools → float64)."""
    floats = [d if d.kind == "f" else np.dtype(np.float64) for d in dtypes]
    return np.dtype(np.result_type(*floats))


def _broadcast(x: da.Array, w: da.Array) -> tuple[da.Array, da.Array]:
    """``x`` and the weights broadcast to one shape, the weights in ``x``'s chunks (so that the
    chunk step sees matching blocks and ``x`` is never rechunked)."""
    try:
        shape = np.broadcast_shapes(x.shape, w.shape)
    except ValueError:
        raise ValueError(f"b of shape {w.shape} does not broadcast against a of shape {x.shape}") from None
    if x.shape != shape:
        x = da.broadcast_to(x, shape)
    if w.shape != shape:
        w = da.broadcast_to(w, shape)
    if w.chunks != x.chunks:
        w = w.rechunk(x.chunks)
    return x, w


# ---------------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------------
def logsumexp(
    x: Any,
    axis: aa.Axis = None,
    b: Any = None,
    keepdims: bool = False,
    return_sign: bool = False,
    *,
    where: Any = None,
    split_every: int | dict[int, int] | None = None,
) -> da.Array | tuple[da.Array, da.Array]:
    r"""``log(sum(b * exp(x)))`` over ``axis`` of a Dask array, in one pass over the data.

    .. math::

        \mathrm{LSE}(x) = \log \sum_i b_i e^{x_i} = m + \log b_k
        + \operatorname{log1p}\Big(\sum_{i \ne k} \frac{b_i}{b_k} e^{x_i - m}\Big),
        \qquad m = x_k = \max_i x_i .

    One pass: every input chunk is read once, by a task that computes the ``(m, lead, tail)``
    state of its slices (``Σ b·e^x = e^m (lead + tail)``); Dask's tree reduction then merges the
    states of neighbouring chunks (``M = max(m1, m2)``, each side scaled by ``e^{m − M}``) and
    the last task evaluates the formula above. No maximum has to be known in advance, so there
    is no second pass, and nothing overflows: every exponent is ≤ 0.

    Same semantics as :func:`logsumexp.logsumexp` (and :func:`scipy.special.logsumexp`) on the
    computed array, to a couple of ulp (the chunks are summed in a different order).

    Parameters
    ----------
    x : dask.array.Array
        Input (NumPy-backed; a NumPy array or a list is wrapped in one chunk).
    axis : int, tuple of ints or None
        Axes to reduce over (None: all).
    b : dask.array.Array or array_like, optional
        Weights broadcast against ``x`` (rechunked to ``x``'s chunks); may be negative or zero
        (a zero weight removes its term, even at ``x = ±inf``).
    keepdims : bool
        Keep the reduced axes with length 1.
    return_sign : bool
        Also return the sign of the sum (+1, −1, 0 or NaN); without it a negative sum gives NaN.
        Both results are maps of one reduction: computed together (``dask.compute(res, sgn)``)
        they read the input once.
    where : dask.array.Array or array_like of bool, optional
        Only entries where True take part (the others vanish, like −inf); broadcast against
        ``x`` and rechunked to its chunks, as in :func:`logsumexp.logsumexp`.
    split_every : int or dict, optional
        Fan-in of Dask's tree reduction (as in Dask's own reductions).

    Returns
    -------
    res : dask.array.Array
        Lazy; the input's float dtype (integers give float64), accumulated in float64 (long
        double input in long double, as on NumPy).
    sgn : dask.array.Array
        Only with ``return_sign``.

    Notes
    -----
    Special values per slice (the library's numerical contract), wherever they sit among the chunks: only −inf or
    empty → −inf; ``k`` entries +inf → +inf; any NaN → NaN. A chunk that holds only −inf
    contributes the identity state ``(−inf, 0, 0)``. No floating-point warning is raised.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import logsumexp.dask as lsed
    >>> x = da.from_array(np.array([[0.0, 1000.0, 1000.0], [-np.inf, -np.inf, -np.inf]]), chunks=(1, 2))
    >>> r = lsed.logsumexp(x, axis=1)
    >>> type(r).__name__
    'Array'
    >>> print(r.compute())          # [1000 + log 2, -inf]
    [1000.69314718          -inf]
    >>> res, sgn = lsed.logsumexp(da.zeros(4, chunks=2), b=np.array([1.0, 1.0, -1.0, -2.0]),
    ...                           return_sign=True)
    >>> print(res.compute(), sgn.compute())     # log|1 + 1 - 1 - 2| = 0, sign -1
    0.0 -1.0
    >>> print(lsed.logsumexp(da.zeros(4, chunks=2), where=np.array([True, True, False, False])).compute())
    0.6931471805599453
    """
    arr = _as_dask(x, "x")
    w = None if b is None else _as_dask(b, "b")
    out_dtype = _float_dtype(arr.dtype) if w is None else _float_dtype(arr.dtype, w.dtype)
    if w is not None:
        arr, w = _broadcast(arr, w)
    if where is not None:
        arr = _masked(arr, where, out_dtype)
    axes = aa.normalize_axis(aa.axis_for_0d(axis, arr.ndim), arr.ndim)
    return _lse_graph(arr, axes, w, keepdims, return_sign, split_every, out_dtype)


def _masked(arr: da.Array, where: Any, out_dtype: np.dtype) -> da.Array:
    """``arr`` (as float) with −inf where the boolean mask ``where`` is False: those entries vanish."""
    mask = _as_dask(where, "where")
    if mask.dtype.kind != "b":
        raise TypeError(f"where must be a boolean mask, got dtype {mask.dtype}")
    try:
        mask = da.broadcast_to(mask, arr.shape) if mask.shape != arr.shape else mask
    except ValueError:
        raise ValueError(f"where of shape {mask.shape} does not broadcast to the input's shape {arr.shape}") from None
    if mask.chunks != arr.chunks:
        mask = mask.rechunk(arr.chunks)
    if arr.dtype.kind != "f":
        arr = arr.astype(out_dtype)
    return da.where(mask, arr, -np.inf)


def _lse_graph(
    arr: da.Array, axes: tuple[int, ...], w: da.Array | None, keepdims: bool, return_sign: bool,
    split_every: Any, out_dtype: np.dtype,
) -> Any:
    """The one-pass LogSumExp graph of validated, broadcast arrays (value, or value and sign)."""
    if not return_sign:
        out_ndim = arr.ndim if keepdims else arr.ndim - len(axes)
        meta = np.empty((0,) * out_ndim, dtype=out_dtype)
        agg = partial(_aggregate_value, out_dtype=out_dtype)
        return _reduce(arr, axes, w, split_every, agg, keepdims, meta)
    # One reduction to the merged state; the value and the sign are two small elementwise maps
    # over it (the state has one chunk along the reduced axes, which are dropped unless keepdims).
    st = _state(arr, axes, w, split_every)
    drop = () if keepdims else axes
    kw = {
        "dtype": out_dtype,
        "meta": np.empty((0,) * (arr.ndim - len(drop)), dtype=out_dtype),
        "drop_axis": drop,
        "out_dtype": out_dtype,
        "squeeze": drop,
    }
    res = da.map_blocks(_value_block, st, sign=False, **kw)
    sgn = da.map_blocks(_value_block, st, sign=True, **kw)
    return res, sgn


def reduce_value(x: da.Array, axes: tuple[int, ...], w: da.Array | None, return_sign: bool) -> Any:
    """The array core's backend entry for a LogSumExp value (and sign), reduced axes dropped,
    in the working dtype (float64, long double for long double): the state is turned into the
    value inside the reduction's last task."""
    if w is not None and w.chunks != x.chunks:
        w = w.rechunk(x.chunks)
    work = _work_dtype(x.dtype, None if w is None else w.dtype)
    return _lse_graph(x, axes, w, False, return_sign, None, work)


def normalized(x: da.Array, axes: tuple[int, ...], log: bool, out_dtype: Any) -> da.Array:
    """The array core's backend entry for softmax / log_softmax (masked entries already −inf)."""
    return _normalize_graph(x, axes, None, log, np.dtype(out_dtype))


def reduce_state(x: da.Array, axes: tuple[int, ...], w: da.Array | None) -> State:
    """The array core's backend entry: the merged (max, lead, tail) state of every slice of ``x``
    over ``axes``, reduced axes dropped, as three lazy Dask arrays in the working dtype (float64,
    long double for long double input; one pass over ``x``).

    ``x`` and ``w`` come validated and broadcast from the core (masked and zero-weight entries −inf).
    """
    if w is not None and w.chunks != x.chunks:
        w = w.rechunk(x.chunks)
    st = _state(x, axes, w, None)
    out_ndim = x.ndim - len(axes)
    work = _work_dtype(x.dtype, None if w is None else w.dtype)
    meta = np.empty((0,) * out_ndim, dtype=work)
    return State(*(
        da.map_blocks(_field_block, st, field=f, squeeze=axes, drop_axis=axes, dtype=work, meta=meta)
        for f in _FIELDS
    ))


def _field_block(st: np.ndarray, *, field: str, squeeze: tuple[int, ...]) -> np.ndarray:
    return np.squeeze(np.ascontiguousarray(st[field]), axis=squeeze)


def _value_block(st: np.ndarray, *, out_dtype: np.dtype, sign: bool, squeeze: tuple[int, ...]) -> Any:
    """The LSE (or its sign) of each merged state of one block, reduced axes dropped."""
    with aa.quiet_fp():
        res, sgn = value(np, State(st["m"], st["lead"], st["tail"]), return_sign=True)
    out = np.squeeze(np.asarray(sgn if sign else res).astype(out_dtype, copy=False), axis=squeeze)
    return out[()] if out.ndim == 0 else out


def softmax(x: Any, axis: aa.Axis = -1, *, split_every: int | dict[int, int] | None = None) -> da.Array:
    r"""The soft arg max ``exp(x − LSE(x))`` along ``axis`` of a Dask array (lazy).

    .. math:: \operatorname{softmax}(x)_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}, \qquad m = \max_j x_j .

    Two reads of the input, and no more: a softmax writes every element, so after the one-pass
    reduction of :func:`logsumexp` has produced the ``(m, tail)`` state of each slice, a second,
    elementwise pass over the chunks (``map_blocks`` with the small state broadcast to them)
    computes ``e^{x − m} / (1 + tail)``. The reduction itself never makes a separate max pass.

    Special values per slice: all −inf or empty → all 0 (never NaN); ``k`` entries +inf →
    ``1/k`` on them, 0 elsewhere; any NaN → NaN in that slice only.

    Parameters
    ----------
    x : dask.array.Array
    axis : int or tuple of ints
        Axes that sum to one (default: the last).
    split_every : int or dict, optional
        Fan-in of Dask's tree reduction.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import logsumexp.dask as lsed
    >>> x = da.from_array(np.array([1000.0, 1000.0, np.inf, np.inf]), chunks=1)
    >>> print(lsed.softmax(x).compute())
    [0.  0.  0.5 0.5]
    >>> print(lsed.softmax(da.from_array(np.full(4, 1000.0), chunks=3)).compute())
    [0.25 0.25 0.25 0.25]
    """
    return _normalize(x, axis, split_every, log=False)


def log_softmax(x: Any, axis: aa.Axis = -1, *, split_every: int | dict[int, int] | None = None) -> da.Array:
    r"""``x − LSE(x)`` along ``axis`` of a Dask array (lazy): the log-probabilities of the softmax.

    .. math:: \log\operatorname{softmax}(x)_i = (x_i - m) - \operatorname{log1p}\Big(\sum_{j \ne k} e^{x_j - m}\Big),
              \qquad m = x_k = \max_j x_j .

    As for :func:`softmax`: one reduction pass for the state, then one elementwise pass that
    must read the input again because it writes every element. ``log1p`` keeps the dominant
    entry's value to full relative accuracy.

    Special values per slice: all −inf or empty → all −inf; ``k`` entries +inf → ``−log k`` on
    them and −inf elsewhere; any NaN → NaN in that slice only.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import logsumexp.dask as lsed
    >>> x = da.from_array(np.array([[1000.0, 1000.0, 1000.0]]), chunks=(1, 2))
    >>> print(lsed.log_softmax(x).compute())     # -log 3 each
    [[-1.09861229 -1.09861229 -1.09861229]]
    """
    return _normalize(x, axis, split_every, log=True)


def _normalize(x: Any, axis: aa.Axis, split_every: Any, log: bool) -> da.Array:
    arr = _as_dask(x, "x")
    out_dtype = _float_dtype(arr.dtype)
    axes = aa.normalize_axis(axis, arr.ndim)
    return _normalize_graph(arr, axes, split_every, log, out_dtype)


def _normalize_graph(arr: da.Array, axes: tuple[int, ...], split_every: Any, log: bool, out_dtype: Any) -> da.Array:
    """One reduction for the state, then one elementwise pass over the chunks."""
    st = _state(arr, axes, None, split_every)
    return da.map_blocks(
        _normalize_block,
        arr,
        st,
        log=log,
        out_dtype=out_dtype,
        dtype=out_dtype,
        meta=np.empty((0,) * arr.ndim, dtype=out_dtype),
    )


def _normalize_block(x: np.ndarray, st: np.ndarray, *, log: bool, out_dtype: np.dtype) -> np.ndarray:
    """softmax / log_softmax of one chunk, given the merged state of its slices (broadcast).

    float64: the rounding dl of x_i − m (TwoSum) is put back, as ``+ dl`` (log_softmax) or
    ``·(1 + dl)`` (softmax): x_i far below m would otherwise carry |x_i − m|·2^-53 relative
    error through the exp (8 ulp on N(0,1)·30 rows), an error the exact reference does not have.
    """
    xw = x.astype(st["m"].dtype, copy=False)
    with aa.quiet_fp():
        out = np.asarray(softmax_from_state(np, xw, st["m"], st["tail"], log))
        if xw.dtype == np.float64:
            m = st["m"]
            dh, dl = _dd.two_sum(xw, -m)
            dl = np.where(np.isfinite(dh) & np.isfinite(m), dl, 0.0)
            out = out + dl if log else out + out * dl
    return out.astype(out_dtype, copy=False)


def cross_entropy(
    logits: Any,
    target: Any,
    axis: int = -1,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    num_items: float | None = None,
) -> da.Array:
    r"""Cross-entropy of a Dask array of logits (lazy): :func:`logsumexp.cross_entropy`'s
    signature and semantics (class indices or probabilities, ``weight``, ``ignore_index``,
    ``label_smoothing``, ``num_items``, the three reductions), on Dask.

    .. math:: \ell_i = \mathrm{LSE}(x_i) - x_{i t_i}
              = (m_i - x_{i t_i}) + \operatorname{log1p}\Big(\sum_{j \ne k} e^{x_{ij} - m_i}\Big).

    The row statistics ``(m, tail)`` come from the same one-pass reduction as :func:`logsumexp`
    (each chunk's state, merged along the class axis, no separate max pass); the target's logit
    is read from the same chunk tasks, so each input chunk is computed once. A class index out
    of range cannot raise inside a lazy graph: that row's loss is NaN (and so is the mean).

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import logsumexp.dask as lsed
    >>> x = da.from_array(np.array([[1000.0, 1000.0, 1000.0], [0.0, 0.0, 0.0]]), chunks=(1, 2))
    >>> print(float(lsed.cross_entropy(x, np.array([0, 2])).compute()))    # log 3
    1.0986122886681098
    """
    from ._cross_entropy import cross_entropy as core_cross_entropy

    arr = _as_dask(logits, "logits")
    tgt = _as_dask(target, "target")
    w = None if weight is None else np.asarray(weight.compute() if isinstance(weight, da.Array) else weight)
    out = core_cross_entropy(
        arr, tgt, axis, weight=w, ignore_index=ignore_index, reduction=reduction,
        label_smoothing=label_smoothing, num_items=num_items,
    )
    return out if isinstance(out, da.Array) else da.asarray(out)
