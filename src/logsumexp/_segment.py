r"""Grouped LogSumExp, softmax and log-softmax: the segments of axis 0 of one array.

Axis 0 of ``x`` is split into groups by ``segment_ids`` (any order) or ``indptr`` (CSR: group ``s``
is ``x[indptr[s]:indptr[s+1]]``); further axes are carried, as in ``jax.ops.segment_sum``. Each
group is reduced to the state of ``_state``,

    Σ_{i in s} b_i·e^{x_i} = e^{m_s}·(lead_s + tail_s),

with ``m_s`` the group's maximum, ``lead_s`` the terms AT the maximum (their count, or the sum of
their weights: ``e^{x_i − m} = 1`` exactly there) and ``tail_s`` every other term. The value is
``m + log1p((lead − 1) + tail)`` (Blanchard–Higham–Higham: a dominant maximum keeps its small
correction), the softmax ``e^{x_i − m} / (lead + tail)`` (the division form), the log-softmax
``(x_i − m) − log1p(...)``.

How the per-group sums are taken is the only thing that differs between array libraries, so it is
one small primitive per namespace (``_Primitives``: a segment max and a segment sum) with the
mathematics written once on top of it:

- NumPy: unweighted groups go to the compiled kernels end to end (``_cpu.segment_forward``: the
  state in two passes over ids in any order, then one write or the value, the groups whose value
  cancels recomputed exactly; CSR offsets of long groups: the row kernels' fold). Otherwise (weights,
  the compiled layer off) ``_numpy_segment_state`` (sort by id when not sorted, ``reduceat`` over the
  groups, the exps split as ``2^k + 2^k·expm1(r)`` so that the tail reaches the finish as a
  double-double), finished in NumPy.
- JAX: ``jax.ops.segment_max`` / ``segment_sum`` (``num_segments`` static), with a ``custom_jvp``
  that gives the contract's derivatives (zero, never NaN, on an all −inf group) to ``grad``,
  ``jvp``, ``vmap`` and higher orders.
- torch: ``scatter_reduce(amax)`` / ``index_add`` inside an ``autograd.Function``.
- other namespaces (array-api-strict, ...): the NumPy primitives on the host copy of the data
  (the standard has no scatter); the mathematics stays in the namespace's own operations.
- Dask: each chunk of axis 0 gives the states of every group, chunk states are merged with the
  state merge of ``_state`` (a tree), and the softmax is finished chunk by chunk.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from . import _array_api as aa
from . import _cpu, _dd
from ._state import State, merge, shifted, value

Array = Any

__all__ = ["segment_log_softmax", "segment_logsumexp", "segment_softmax"]


# ------------------------------------------------------------------------------------------------
# Public functions
# ------------------------------------------------------------------------------------------------
def segment_logsumexp(
    x: Any,
    segment_ids: Any = None,
    num_segments: int | None = None,
    *,
    indptr: Any = None,
    b: Any = None,
    indices_are_sorted: bool = False,
) -> Any:
    r"""LogSumExp of each group of the entries of ``x`` along axis 0.

    .. math:: \mathrm{out}[s] = \log \sum_{i:\ \mathrm{id}_i = s} b_i\, e^{x_i}
              = m_s + \operatorname{log1p}\Big(\sum_{i \ne k_s} b_i e^{x_i - m_s} + (b_{k_s} - 1)\Big)

    with ``m_s`` the group's maximum, attained at ``k_s``. Result shape ``(num_segments,
    *x.shape[1:])``; further axes are carried (each column reduced separately).

    Stability: the maximum is subtracted first (no exponent is positive), and its own term is kept
    out of the sum and added through ``log1p``, so a dominant entry keeps its small correction to
    full relative accuracy (``[0, −40 × 999]`` gives ``999·e^{−40}``, where ``log(sum)`` returns 0).
    float16/bfloat16 are accumulated in float32 at least, everything on a CPU in float64.

    Special values per group: empty or all −inf → −inf; ``k`` entries +inf → +inf; any NaN →
    NaN in that group only. Derivatives (JAX ``grad``/``jvp``/``vmap``, torch autograd) are the
    softmax of the group, 0 (never NaN) on an all −inf group, ``1/k`` on ``k`` +inf entries.

    Parameters
    ----------
    x : array_like, at least 1-d
    segment_ids : array_like of int, shape ``(x.shape[0],)``, optional
        The group of each entry, in any order. Exactly one of ``segment_ids`` and ``indptr``.
    num_segments : int, optional
        Number of groups (``max(segment_ids) + 1`` by default; must be given under ``jax.jit``,
        where it is static). Ids outside ``[0, num_segments)`` raise ``IndexError`` naming the first
        one and its position; under ``jax.jit`` they cannot be checked and are dropped, as
        ``jax.ops.segment_sum`` drops them (their softmax entries are then NaN).
    indptr : array_like of int, shape ``(num_segments + 1,)``, optional
        CSR offsets: group ``s`` is ``x[indptr[s]:indptr[s + 1]]`` (``indptr[0] = 0``,
        non-decreasing, ``indptr[-1] = x.shape[0]``).
    b : array_like, optional
        Weights broadcastable to ``x``'s shape; a weight 0 removes its term, even at ±inf. A group
        whose weighted sum is negative gives NaN.
    indices_are_sorted : bool
        A hint that ``segment_ids`` are non-decreasing (JAX uses it; elsewhere it is checked).

    Examples
    --------
    >>> import numpy as np
    >>> import logsumexp as lse
    >>> x = np.array([1000.0, 1000.0, 0.0, -np.inf, 5.0])
    >>> ids = np.array([0, 0, 1, 2, 1])
    >>> with np.errstate(all="ignore"):   # the naive form overflows in group 0
    ...     print(np.log(np.bincount(ids, np.exp(x))))
    [       inf 5.00671535       -inf]
    >>> print(lse.segment_logsumexp(x, ids, num_segments=4))
    [1000.69314718    5.00671535          -inf          -inf]
    >>> print(lse.segment_logsumexp(x, indptr=[0, 2, 5]))
    [1000.69314718    5.00671535]
    """
    plan = _plan(x, segment_ids, num_segments, indptr, b, indices_are_sorted)
    if aa.is_dask(plan.xp):
        return _dask_logsumexp(plan)
    return _run(plan, "lse")


def segment_softmax(
    x: Any,
    segment_ids: Any = None,
    num_segments: int | None = None,
    *,
    indptr: Any = None,
    indices_are_sorted: bool = False,
) -> Any:
    r"""Softmax of each group of the entries of ``x`` along axis 0: sums to 1 over each group.

    .. math:: \mathrm{out}_i = \frac{e^{x_i - m_s}}{\sum_{j:\ \mathrm{id}_j = s} e^{x_j - m_s}},
              \qquad s = \mathrm{id}_i,\ m_s = \max_{\mathrm{id}_j = s} x_j

    Result shape ``x.shape``. The maximum is subtracted first, the division form is used (one
    rounding per entry), accumulation in float64 on a CPU.

    Special values per group: all −inf → all 0 (never NaN); ``k`` entries +inf → ``1/k`` on them,
    0 elsewhere; any NaN → NaN in that group only. Derivatives (JAX, torch) follow the contract:
    zero on an all −inf group. Arguments as in :func:`segment_logsumexp`.

    Examples
    --------
    >>> import numpy as np
    >>> import logsumexp as lse
    >>> x = np.array([1000.0, 1000.0, 0.0, -np.inf, np.inf, np.inf])
    >>> print(lse.segment_softmax(x, [0, 0, 1, 2, 3, 3]))
    [0.5 0.5 1.  0.  0.5 0.5]
    """
    plan = _plan(x, segment_ids, num_segments, indptr, None, indices_are_sorted)
    if aa.is_dask(plan.xp):
        return _dask_normalized(plan, log=False)
    return _run(plan, "softmax")


def segment_log_softmax(
    x: Any,
    segment_ids: Any = None,
    num_segments: int | None = None,
    *,
    indptr: Any = None,
    indices_are_sorted: bool = False,
) -> Any:
    r"""``x_i − LSE(group of i)`` along axis 0: the log-probabilities of :func:`segment_softmax`.

    .. math:: \mathrm{out}_i = (x_i - m_s) - \operatorname{log1p}\Big(\sum_{j \ne k_s,\ \mathrm{id}_j = s} e^{x_j - m_s}\Big)

    The maximum's own term is kept out of the sum, so the dominant entry keeps full relative
    accuracy. Special values per group: all −inf → all −inf; ``k`` entries +inf → ``−log k`` on
    them, −inf elsewhere; NaN in that group only. Arguments as in :func:`segment_logsumexp`.

    Examples
    --------
    >>> import numpy as np
    >>> import logsumexp as lse
    >>> x = np.concatenate([[0.0], np.full(999, -40.0), [3.0]])
    >>> ids = np.concatenate([np.zeros(1000, int), [1]])
    >>> print(f"{lse.segment_log_softmax(x, ids)[0]:.12e}")
    -4.244105901036e-15
    """
    plan = _plan(x, segment_ids, num_segments, indptr, None, indices_are_sorted)
    if aa.is_dask(plan.xp):
        return _dask_normalized(plan, log=True)
    return _run(plan, "log_softmax")


# ------------------------------------------------------------------------------------------------
# Validation: one plan per call
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    """The checked arguments of one call: x in the working dtype, one id per entry of axis 0."""

    xp: Any
    x: Array  # (n, *rest), working dtype; entries of weight 0 already −inf
    ids: Array | None  # (n,) integer group of each entry (None: derived from indptr)
    indptr: Array | None  # (S + 1,) CSR offsets, when given
    num_segments: int
    w: Array | None  # weights of x's shape, working dtype
    out_dtype: Any
    sorted: bool
    x_in: Array | None = None  # NumPy float32 x as given: the compiled kernels read it (they sum in float64)


def _plan(x: Any, segment_ids: Any, num_segments: Any, indptr: Any, b: Any, sorted_hint: bool) -> _Plan:
    aa.refuse_masked(x=x, segment_ids=segment_ids, indptr=indptr, b=b)
    if (segment_ids is None) == (indptr is None):
        given = "both" if segment_ids is not None else "neither"
        raise ValueError(f"give exactly one of segment_ids and indptr (CSR offsets); got {given}")
    xp = aa.namespace(x, segment_ids, indptr, b)
    arr = aa.as_array(xp, x, "x")
    if arr.ndim == 0:
        raise ValueError("x must have at least one dimension (axis 0 is grouped), got a 0-d array")
    out_dtype = aa.float_dtype(xp, arr)
    x_in = arr if aa.is_numpy(xp) and arr.dtype == np.float32 and b is None else None
    arr = xp.astype(arr, aa.work_dtype(xp, arr, out_dtype))
    n = int(arr.shape[0])
    if indptr is not None:
        ptr, s = _check_indptr(xp, indptr, num_segments, n)
        ids, is_sorted = None, True
    else:
        ptr = None
        ids = _integer_vector(xp, segment_ids, "segment_ids", n)
        s = _num_segments(xp, ids, num_segments)
        _check_ids_in_range(xp, ids, s)
        is_sorted = bool(sorted_hint)
    w = None
    if b is not None:
        w = xp.astype(aa.as_array(xp, b, "b"), arr.dtype)
        w = aa.broadcast_to_shape(xp, w, tuple(arr.shape), "b", "x")
        arr = xp.where(w == 0, xp.asarray(-math.inf, dtype=arr.dtype), arr)
    return _Plan(xp, arr, ids, ptr, s, w, out_dtype, is_sorted, x_in)


def _integer_vector(xp: Any, a: Any, name: str, n: int | None) -> Array:
    arr = aa.as_array(xp, a, name)
    if not xp.isdtype(arr.dtype, "integral"):
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        want = "a 1-d array" if n is None else f"shape ({n},), one id per entry of x's axis 0"
        raise ValueError(f"{name} must be {want}; got shape {tuple(arr.shape)}")
    return arr


def _static_count(v: Any, name: str) -> int:
    if isinstance(v, bool) or not hasattr(v, "__index__"):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    k = operator.index(v)
    if k < 0:
        raise ValueError(f"{name} must be >= 0, got {k}")
    return k


def _num_segments(xp: Any, ids: Array, num_segments: Any) -> int:
    if num_segments is not None:
        return _static_count(num_segments, "num_segments")
    if ids.shape[0] == 0:
        return 0
    if aa.is_dask(xp):
        return int(xp.max(ids).compute()) + 1  # one pass over the ids, before the graph is built
    if not aa.is_concrete(xp, ids):
        raise ValueError(
            "num_segments must be given when segment_ids are traced (jax.jit, torch.func): "
            "the number of groups fixes the result's shape"
        )
    return max(int(xp.max(ids)) + 1, 0)


def _check_ids_in_range(xp: Any, ids: Array, s: int) -> None:
    """IndexError naming the first id outside [0, s) and its position (eager arrays only: under
    jax.jit they are dropped, as jax.ops does; Dask checks when computed is not possible cheaply)."""
    if ids.shape[0] == 0 or not aa.is_concrete(xp, ids):
        return
    bad = (ids < 0) | (ids >= s)
    if not aa.is_concrete(xp, bad):  # concrete ids inside jax.jit still give a traced comparison
        return
    if bool(xp.any(bad)):
        pos = int(xp.argmax(xp.astype(bad, xp.int8)))
        raise IndexError(
            f"segment_ids[{pos}] = {int(ids[pos])} is out of range for num_segments={s} "
            f"(ids must lie in [0, {s}))"
        )


def _check_indptr(xp: Any, indptr: Any, num_segments: Any, n: int) -> tuple[Array, int]:
    ptr = _integer_vector(xp, indptr, "indptr", None)
    if ptr.shape[0] < 1:
        raise ValueError("indptr must have at least one entry (indptr[0] = 0)")
    s = int(ptr.shape[0]) - 1
    if num_segments is not None and _static_count(num_segments, "num_segments") != s:
        raise ValueError(f"num_segments={num_segments} disagrees with len(indptr) - 1 = {s}")
    if aa.is_concrete(xp, ptr) and aa.is_concrete(xp, ptr[1:] < ptr[:-1]):
        first, last = int(ptr[0]), int(ptr[-1])
        if first != 0 or last != n:
            raise ValueError(f"indptr must start at 0 and end at x.shape[0] = {n}; got {first} ... {last}")
        if s and bool(xp.any(ptr[1:] < ptr[:-1])):
            pos = int(xp.argmax(xp.astype(ptr[1:] < ptr[:-1], xp.int8))) + 1
            raise ValueError(f"indptr must be non-decreasing; indptr[{pos}] = {int(ptr[pos])} < indptr[{pos - 1}]")
    return ptr, s


def _ids_from_indptr(xp: Any, ptr: Array, n: int) -> Array:
    """The group of each entry from CSR offsets: the last group starting at or before it."""
    pos = xp.arange(n, dtype=ptr.dtype, **_device_kw(ptr))
    return xp.searchsorted(ptr, pos, side="right") - 1


def _device_kw(a: Array) -> dict[str, Any]:
    return {"device": array_api_compat.device(a)}


# ------------------------------------------------------------------------------------------------
# The NumPy state (the hook a compiled kernel replaces)
# ------------------------------------------------------------------------------------------------
class SegmentState(NamedTuple):
    """Per group ``(m, lead, tail)`` of shape ``(S, *rest)``, float64; ``tail_lo`` the low part of a
    tail summed as a double-double (None when the tail is a plain float64 sum)."""

    m: np.ndarray
    lead: np.ndarray
    tail: np.ndarray
    tail_lo: np.ndarray | None = None


def _numpy_segment_state(x: np.ndarray, ids: np.ndarray, num_segments: int) -> SegmentState:
    """``(m, lead, tail[, tail_lo])`` of every group of ``x`` (float32 or float64, ``(n, *rest)``),
    unweighted, in float64. The one function a compiled one-pass kernel replaces.

    The entries are put in group order (a stable sort, skipped when the ids are already sorted)
    and each group is one ``reduceat`` segment: NumPy sums each segment pairwise. The exps are split
    as ``2^k + 2^k·expm1(r)`` (``_dd.exp_split``): the powers of two add exactly, so only the small
    parts round, and the tail comes back as a double-double. ``lead`` counts the entries at the
    maximum (1 without ties), whose terms are exactly 1 and are kept out of the tail.
    """
    fast = _cpu.segment_state(x, ids, num_segments) if _cpu.enabled() else None
    if fast is not None:  # the compiled two-pass kernel, ids in any order
        return SegmentState(*fast)
    ids = np.asarray(ids, dtype=np.intp)
    xs = np.asarray(x, dtype=np.float64)
    if ids.size > 1 and not bool(np.all(ids[1:] >= ids[:-1])):
        order = np.argsort(ids, kind="stable")
        xs, ids = xs[order], ids[order]
    counts = np.bincount(ids, minlength=num_segments)
    return _csr_state(xs, counts, num_segments)


def _csr_state(xs: np.ndarray, counts: np.ndarray, num_segments: int) -> SegmentState:
    """The state of groups stored one after another (group ``s`` has ``counts[s]`` rows)."""
    shape = (num_segments, *xs.shape[1:])
    m = np.full(shape, -math.inf)
    lead, tail, tail_lo = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    full = np.flatnonzero(counts)
    if xs.shape[0] == 0 or xs[0].size == 0:
        return SegmentState(m, lead, tail, tail_lo)
    starts = (np.cumsum(counts) - counts)[full]  # reduceat needs the starts of non-empty groups only
    mf = np.maximum.reduceat(xs, starts, axis=0)
    with aa.quiet_fp():
        mg = np.repeat(mf, counts[full], axis=0)
        d = shifted(np, xs, mg)
        hi, lo = _dd.exp_split(np, d)
    at_max = (d == 0.0) & (mg != -math.inf)  # the maximum's entries (+inf entries of a +inf group)
    hi[at_max] = 0.0
    lo[at_max] = 0.0
    th, tl = _dd.two_sum(np.add.reduceat(hi, starts, axis=0), np.add.reduceat(lo, starts, axis=0))
    m[full], tail[full], tail_lo[full] = mf, th, tl
    lead[full] = np.add.reduceat(at_max, starts, axis=0, dtype=np.float64)
    return SegmentState(m, lead, tail, tail_lo)


def _numpy_weighted_state(x: np.ndarray, w: np.ndarray, ids: np.ndarray, num_segments: int) -> SegmentState:
    """The weighted state (``lead`` = the weights at the maximum), float64, plain exps."""
    counts = np.bincount(ids, minlength=num_segments)
    if ids.size > 1 and not bool(np.all(ids[1:] >= ids[:-1])):
        order = np.argsort(ids, kind="stable")
        x, w = x[order], w[order]
    shape = (num_segments, *x.shape[1:])
    m, lead, tail = np.full(shape, -math.inf), np.zeros(shape), np.zeros(shape)
    full = np.flatnonzero(counts)
    if x.shape[0] == 0 or x[0].size == 0:
        return SegmentState(m, lead, tail)
    starts = (np.cumsum(counts) - counts)[full]
    mf = np.maximum.reduceat(x, starts, axis=0)
    with aa.quiet_fp():
        mg = np.repeat(mf, counts[full], axis=0)
        d = shifted(np, x, mg)
        e = np.exp(d) * w
    at_max = (d == 0.0) & (mg != -math.inf)
    m[full] = mf
    lead[full] = np.add.reduceat(np.where(at_max, w, 0.0), starts, axis=0)
    tail[full] = np.add.reduceat(np.where(at_max, 0.0, e), starts, axis=0)
    return SegmentState(m, lead, tail)


# ------------------------------------------------------------------------------------------------
# Per-namespace primitives: a segment max and a segment sum
# ------------------------------------------------------------------------------------------------
class _Primitives:
    """``seg_max`` / ``seg_sum`` of ``v`` (n, *rest) by ``ids`` (n,) into ``(S, *rest)``; an empty
    group's max is −inf and its sum 0. This base class works on the host (NumPy) copy."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def _host(self, a: Array) -> np.ndarray:
        return np.from_dlpack(a) if not isinstance(a, np.ndarray) else a

    def _back(self, a: np.ndarray, like: Array) -> Array:
        return self.xp.asarray(a, dtype=like.dtype, **_device_kw(like))

    def seg_max(self, v: Array, ids: Array, s: int, is_sorted: bool) -> Array:
        hv = self._host(v)
        out = np.full((s, *hv.shape[1:]), -math.inf, dtype=hv.dtype)
        with aa.quiet_fp():  # a NaN is kept (it poisons its group), not warned about
            np.maximum.at(out, self._host(ids).astype(np.intp), hv)
        return self._back(out, v)

    def seg_sum(self, v: Array, ids: Array, s: int, is_sorted: bool) -> Array:
        hv = self._host(v)
        out = np.zeros((s, *hv.shape[1:]), dtype=hv.dtype)
        np.add.at(out, self._host(ids).astype(np.intp), hv)
        return self._back(out, v)


class _JaxPrimitives(_Primitives):
    def seg_max(self, v: Array, ids: Array, s: int, is_sorted: bool) -> Array:
        import jax

        return jax.ops.segment_max(v, ids, s, indices_are_sorted=is_sorted)

    def seg_sum(self, v: Array, ids: Array, s: int, is_sorted: bool) -> Array:
        import jax

        return jax.ops.segment_sum(v, ids, s, indices_are_sorted=is_sorted)


class _TorchPrimitives(_Primitives):
    def _index(self, ids: Array, v: Array) -> Array:
        return ids.reshape((-1,) + (1,) * (v.ndim - 1)).expand(v.shape)

    def seg_max(self, v: Array, ids: Array, s: int, is_sorted: bool) -> Array:
        import torch

        out = torch.full((s, *v.shape[1:]), -math.inf, dtype=v.dtype, device=v.device)
        return out.scatter_reduce(0, self._index(ids.long(), v), v, "amax", include_self=True)

    def seg_sum(self, v: Array, ids: Array, s: int, is_sorted: bool) -> Array:
        import torch

        out = torch.zeros((s, *v.shape[1:]), dtype=v.dtype, device=v.device)
        return out.index_add(0, ids.long(), v)


def _primitives(xp: Any) -> _Primitives:
    if array_api_compat.is_jax_namespace(xp):
        return _JaxPrimitives(xp)
    if array_api_compat.is_torch_namespace(xp):
        return _TorchPrimitives(xp)
    return _Primitives(xp)


# ------------------------------------------------------------------------------------------------
# The mathematics, once, on top of the primitives
# ------------------------------------------------------------------------------------------------
def _generic_state(xp: Any, x: Array, ids: Array, s: int, w: Array | None, is_sorted: bool) -> State:
    """The (m, lead, tail) state of every group from a segment max and two segment sums."""
    prim = _primitives(xp)
    m = prim.seg_max(x, ids, s, is_sorted)
    d, e = _shifted_exp(xp, x, m, ids)
    at_max = (d == 0.0) & (xp.take(m, ids, axis=0) != -math.inf)
    one = xp.ones_like(x) if w is None else w
    lead = prim.seg_sum(xp.where(at_max, one, xp.zeros_like(x)), ids, s, is_sorted)
    terms = e if w is None else e * w
    tail = prim.seg_sum(xp.where(at_max, xp.zeros_like(x), terms), ids, s, is_sorted)
    return State(m, lead, tail)


def _shifted_exp(xp: Any, x: Array, m: Array, ids: Array) -> tuple[Array, Array]:
    """``d = x − m[id]`` (infinite maxima made harmless by ``shifted``) and ``e^d``."""
    with aa.quiet_fp():
        d = shifted(xp, x, xp.take(m, ids, axis=0))
        return d, xp.exp(d)


def _shift_error(xp: Any, x: Array, mg: Array) -> Array:
    """The rounding error of ``x − m`` (TwoSum), 0 where either is infinite: ``e^{x − m}`` is
    then ``e^d·(1 + err)`` to first order. Without it an entry 60 below its maximum loses 16 ulp
    (``ulp(60)/2`` of absolute error in the exponent); with it the softmax is within ~1.5 ulp."""
    with aa.quiet_fp():
        _, err = _dd.two_sum(x, -mg)
    return xp.where(xp.isfinite(err), err, xp.zeros_like(err))


def _log_total(xp: Any, st: State) -> Array:
    """``log(lead + tail)`` with the log1p form near a lead of 1; 0 for an all −inf group (so that
    ``d − log_total`` stays −inf, not NaN), NaN for a NaN group."""
    total = st.lead + st.tail
    near_one = (st.lead >= 0.5) & (st.lead <= 2.0) & (total > 0.5) & (st.tail < math.inf)
    with aa.quiet_fp():
        out = xp.where(
            near_one,
            xp.log1p(xp.where(near_one, (st.lead - 1.0) + st.tail, 0.0)),
            aa.log_nonneg(xp, xp.where(total == 0, 1.0, total)),
        )
    return xp.where(xp.isnan(st.m), math.nan, out)


def _finish_normalized(xp: Any, x: Array, ids: Array, st: State, log: bool) -> Array:
    """softmax or log_softmax of each entry from its group's state."""
    d, e = _shifted_exp(xp, x, st.m, ids)
    if log:
        out = d - xp.take(_log_total(xp, st), ids, axis=0)
    else:
        total = st.lead + st.tail
        if e.dtype == xp.float64:
            e = e + e * _shift_error(xp, x, xp.take(st.m, ids, axis=0))
        out = e / xp.take(xp.where(total == 0, 1.0, total), ids, axis=0)  # an all −inf group: 0/1
    return xp.where(xp.isnan(xp.take(st.m, ids, axis=0)), math.nan, out)


def _value(xp: Any, st: State) -> Array:
    """The state's LogSumExp; float64 takes the double-double finish (rounded once), which is
    per group, not per entry, so cheap (it is never differentiated: the rules are custom)."""
    with aa.quiet_fp():
        if st.m.dtype == xp.float64 and not array_api_compat.is_jax_namespace(xp):
            # not on JAX: under jax.jit, XLA's simplifier folds the double-double error terms
            # (measured: 4.2188e-15 for log1p(4.2441e-15), 0.6 % off), where plain log1p is right
            return _dd.value(xp, st.m, st.lead, st.tail)
        return value(xp, st)


def _forward(xp: Any, kind: str, x: Array, ids: Array, s: int, w: Array | None, is_sorted: bool) -> Array:
    """The values (no autodiff rule) of one of the three functions in the working dtype."""
    st = _generic_state(xp, x, ids, s, w, is_sorted)
    if kind == "lse":
        return _value(xp, st)
    return _finish_normalized(xp, x, ids, st, kind == "log_softmax")


def _run(plan: _Plan, kind: str) -> Array:
    xp = plan.xp
    if aa.is_numpy(xp):
        return _numpy_run(plan, kind)
    ids = plan.ids if plan.ids is not None else _ids_from_indptr(xp, plan.indptr, int(plan.x.shape[0]))
    if array_api_compat.is_jax_namespace(xp):
        out = _jax_fn(kind, plan.num_segments, plan.sorted, plan.w is not None)(plan.x, ids, *_w(plan))
    elif array_api_compat.is_torch_namespace(xp) and aa.has_autodiff(xp, plan.x) | _requires_grad(plan.w):
        out = _torch_function().apply(kind, plan.num_segments, plan.x, ids, plan.w)
    else:
        out = _forward(xp, kind, plan.x, ids, plan.num_segments, plan.w, plan.sorted)
    return xp.astype(out, plan.out_dtype)


def _w(plan: _Plan) -> tuple[Array, ...]:
    return () if plan.w is None else (plan.w,)


def _requires_grad(w: Array | None) -> bool:
    return bool(getattr(w, "requires_grad", False))


# ------------------------------------------------------------------------------------------------
# NumPy
# ------------------------------------------------------------------------------------------------
def _numpy_ids(plan: _Plan) -> np.ndarray:
    if plan.ids is not None:
        return np.asarray(plan.ids, dtype=np.intp)
    return np.repeat(np.arange(plan.num_segments), np.diff(np.asarray(plan.indptr)))


def _numpy_run(plan: _Plan, kind: str) -> np.ndarray:
    csr = _numpy_csr_state(plan)
    if csr is not None and kind == "lse":
        return np.asarray(csr[4], dtype=plan.out_dtype)  # the row kernels' value, rounded once
    ids = _numpy_ids(plan)
    s = plan.num_segments
    xk = plan.x_in if plan.x_in is not None else plan.x  # what the kernels read (no float64 copy)
    if plan.w is None and csr is None:
        out = _numpy_kernel_run(xk, ids, s, kind)
        if out is not None:
            return np.asarray(out, dtype=plan.out_dtype)
    if csr is not None:
        st = SegmentState(*csr[:4])
    elif plan.w is not None:
        st = _numpy_weighted_state(plan.x, plan.w, ids, s)
    else:
        st = SegmentState(*_numpy_segment_state(xk, ids, s))
    with aa.quiet_fp():
        if kind == "lse":
            out = _dd.value(np, st.m, st.lead, st.tail, tail_lo=st.tail_lo)
        else:
            out = _numpy_normalized(plan.x, ids, st, kind == "log_softmax")
    return np.asarray(out, dtype=plan.out_dtype)


def _numpy_kernel_run(x: np.ndarray, ids: np.ndarray, s: int, kind: str) -> np.ndarray | None:
    """softmax / log_softmax / LogSumExp of unweighted groups by the compiled kernels (the state,
    then one write: the division by the double-double total corrected by its remainder, x − m kept
    exact; the value ``m + log1p`` in double-double, the groups that cancel recomputed exactly),
    float32 summed in float64; None where they do not apply."""
    if not _cpu.enabled() or x.dtype not in (np.float32, np.float64) or x.shape[0] == 0:
        return None
    x2 = np.ascontiguousarray(x).reshape(x.shape[0], -1)
    res = _cpu.segment_forward(x2, ids, s, kind)
    if res is None:
        return None
    return res[0].reshape((s, *x.shape[1:]) if kind == "lse" else x.shape)


def _numpy_csr_state(plan: _Plan) -> tuple[np.ndarray, ...] | None:
    """(m, lead, tail, tail_lo, value) of unweighted CSR groups from the compiled row fold (each
    group's columns are slices of the rows' kernels: one read, threads over groups), or None."""
    if plan.indptr is None or plan.w is not None or not _cpu.enabled():
        return None
    if plan.x.shape[0] < _CSR_MIN_MEAN * plan.num_segments:
        return None  # short groups: the ids kernel (its rows stream in order)
    return _cpu.segment_csr_state(plan.x_in if plan.x_in is not None else plan.x, np.asarray(plan.indptr))


# the row fold pays a slice's set-up per group and column: below ~32 rows a group on average the
# ids kernel is faster (1e6 x 8 in 1e5 groups, 10 rows each: 264 ms by the fold, 37x one read)
_CSR_MIN_MEAN = 32


def _numpy_normalized(x: np.ndarray, ids: np.ndarray, st: SegmentState, log: bool) -> np.ndarray:
    """softmax / log_softmax entries; the log form takes ``log1p`` of the double-double tail and
    subtracts it from ``x − m`` with one rounding."""
    base = State(st.m, st.lead, st.tail)
    if not log:
        if st.tail_lo is not None:  # the total rounded once from its three parts
            hi, lo = _dd.two_sum(st.lead, st.tail)
            base = State(st.m, np.zeros_like(hi), hi + (lo + st.tail_lo))
        return _finish_normalized(np, x, ids, base, False)
    d, _ = _shifted_exp(np, x, st.m, ids)
    total = st.lead + st.tail
    near_one = (st.lead >= 0.5) & (st.lead <= 2.0) & (total > 0.5) & (st.tail < math.inf)
    th, tl = _dd.two_sum(np.where(near_one, st.lead - 1.0, 0.0), np.where(near_one, st.tail, 0.0))
    if st.tail_lo is not None:
        tl = tl + np.where(near_one, st.tail_lo, 0.0)
    lh, ll = _dd.log1p_dd(np, th, tl)
    lh = np.where(near_one, lh, _log_total(np, base))
    ll = np.where(near_one, ll, 0.0)
    lhg, llg = lh[ids], ll[ids]
    dl = _shift_error(np, x, st.m[ids])  # x − m = d + dl exactly
    hi, lo = _dd.two_sum(d, -lhg)
    out = np.where(np.isfinite(hi), hi + ((lo + dl) - llg), d - lhg)
    return np.where(np.isnan(st.m[ids]), math.nan, out)


# ------------------------------------------------------------------------------------------------
# Derivatives: one rule, written with the primitives, wrapped for JAX and torch
# ------------------------------------------------------------------------------------------------
def _times(p: Array, t: Array, xp: Any) -> Array:
    """``p·t`` with 0 where ``p == 0`` (an entry that takes no part passes no derivative, even
    an infinite one)."""
    return xp.where(p == 0.0, xp.zeros_like(p), p * t)


def _tangent(
    xp: Any, kind: str, p: Array, q: Array | None, dx: Array, dw: Array | None, w: Array | None,
    ids: Array, s: int, is_sorted: bool,
) -> Array:
    """The directional derivative of ``kind`` at ``x`` along ``dx`` (and ``dw``): ``p`` the softmax,
    ``q = e^{x − LSE}`` the unweighted terms over the weighted total (weights only)."""
    prim = _primitives(xp)
    if kind == "lse":
        if w is None:
            return prim.seg_sum(_times(p, dx, xp), ids, s, is_sorted)
        t = _times(q, w * dx, xp) + (0.0 if dw is None else _times(q, dw, xp))
        return prim.seg_sum(t, ids, s, is_sorted)
    mean = xp.take(prim.seg_sum(_times(p, dx, xp), ids, s, is_sorted), ids, axis=0)
    if kind == "softmax":
        return _times(p, dx - mean, xp)
    return dx - mean


def _weighted_q(xp: Any, x: Array, ids: Array, s: int, w: Array, is_sorted: bool) -> Array:
    """``e^{x_i − LSE_s}`` for weighted groups (the derivative of the LSE with respect to ``b_i``)."""
    st = _generic_state(xp, x, ids, s, w, is_sorted)
    d, e = _shifted_exp(xp, x, st.m, ids)
    total = st.lead + st.tail
    q = e / xp.take(xp.where(total == 0, 1.0, total), ids, axis=0)
    return xp.where(xp.isnan(xp.take(st.m, ids, axis=0)), math.nan, q)


@functools.cache
def _jax_fn(kind: str, s: int, is_sorted: bool, weighted: bool) -> Any:
    """``f(x, ids[, w])`` for JAX with a ``custom_jvp`` giving the contract's derivatives; the JVP
    is written with the custom softmax itself, so second derivatives follow the same rules."""
    import jax
    import jax.numpy as jnp

    xp = array_api_compat.array_namespace(jnp.zeros(0))

    @jax.custom_jvp
    def softmax(x: Array, ids: Array) -> Array:
        return _forward(xp, "softmax", x, ids, s, None, is_sorted)

    @softmax.defjvp
    def _softmax_jvp(primals: Any, tangents: Any) -> Any:
        x, ids = primals
        p = softmax(x, ids)
        return p, _tangent(xp, "softmax", p, None, tangents[0], None, None, ids, s, is_sorted)

    if kind == "softmax" and not weighted:
        return softmax

    @jax.custom_jvp
    def fn(x: Array, ids: Array, *w: Array) -> Array:
        return _forward(xp, kind, x, ids, s, w[0] if w else None, is_sorted)

    @fn.defjvp
    def _fn_jvp(primals: Any, tangents: Any) -> Any:
        x, ids, *w = primals
        out = fn(x, ids, *w)
        p = softmax(x, ids)
        if w:
            q = _weighted_q(xp, x, ids, s, w[0], is_sorted)
            dw = tangents[2]
            dw = None if dw.dtype == jax.dtypes.float0 else dw
            return out, _tangent(xp, kind, p, q, tangents[0], dw, w[0], ids, s, is_sorted)
        return out, _tangent(xp, kind, p, None, tangents[0], None, None, ids, s, is_sorted)

    return fn


@functools.cache
def _torch_function() -> Any:
    """The torch ``autograd.Function`` of the array core: forward without autodiff, backward the
    transpose of ``_tangent`` (differentiable again: it is built from torch operations and the
    softmax Function itself)."""
    import torch

    xp = array_api_compat.array_namespace(torch.zeros(0))

    class SegmentFn(torch.autograd.Function):
        @staticmethod
        def forward(kind: str, s: int, x: Array, ids: Array, w: Array | None) -> Array:  # type: ignore[override]
            return _forward(xp, kind, x, ids, s, w, False)

        @staticmethod
        def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Array) -> None:
            kind, s, x, ids, w = inputs
            ctx.kind, ctx.s = kind, s
            ctx.save_for_backward(x, ids, w, output)

        @staticmethod
        def backward(ctx: Any, g: Array) -> Any:  # type: ignore[override]
            x, ids, w, out = ctx.saved_tensors
            kind, s = ctx.kind, ctx.s
            p = SegmentFn.apply("softmax", s, x, ids, None)
            prim = _primitives(xp)
            gw = None
            if kind == "lse":
                gg = torch.index_select(g, 0, ids)
                if w is None:
                    gx = _times(p, gg, xp)
                else:
                    q = _weighted_q(xp, x, ids, s, w, False)
                    gx, gw = _times(q, gg * w, xp), _times(q, gg, xp)
            elif kind == "softmax":
                gx = _times(p, g - torch.index_select(prim.seg_sum(_times(p, g, xp), ids, s, False), 0, ids), xp)
            else:
                gx = g - _times(p, torch.index_select(prim.seg_sum(g, ids, s, False), 0, ids), xp)
            return None, None, gx, None, gw

    return SegmentFn


# ------------------------------------------------------------------------------------------------
# Dask: chunk states merged with the state merge
# ------------------------------------------------------------------------------------------------
def _dask_block_state(xb: np.ndarray, idb: np.ndarray, s: int, wb: np.ndarray | None = None) -> np.ndarray:
    """The (m, lead, tail) of every group within one chunk, stacked on a new first axis (3, S, ...)."""
    idb = np.asarray(idb, dtype=np.intp)
    if idb.size and (idb.min() < 0 or idb.max() >= s):
        pos = int(np.argmax((idb < 0) | (idb >= s)))
        raise IndexError(f"segment_ids: a chunk holds id {int(idb[pos])}, out of range for num_segments={s}")
    if wb is None:
        st = SegmentState(*_numpy_segment_state(xb, idb, s))
        tail = st.tail if st.tail_lo is None else st.tail + st.tail_lo
    else:
        st = _numpy_weighted_state(np.asarray(xb, dtype=np.float64), np.asarray(wb, dtype=np.float64), idb, s)
        tail = st.tail
    return np.stack([st.m, st.lead, tail])


def _dask_merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with aa.quiet_fp():
        st = merge(np, State(a[0], a[1], a[2]), State(b[0], b[1], b[2]))
    return np.stack(list(st))


def _dask_states(plan: _Plan) -> Any:
    """The merged (3, S, *rest) state of the whole array: one state per chunk of axis 0, merged in
    a binary tree (the merge is associative and commutative)."""
    import dask.array as da

    x = plan.x
    s = plan.num_segments
    ids = plan.ids if plan.ids is not None else _ids_from_indptr(plan.xp, plan.indptr, int(x.shape[0]))
    ids = da.asarray(ids).rechunk((x.chunks[0],))
    rest = "".join(chr(ord("j") + k) for k in range(x.ndim - 1))
    per_chunk = _per_chunk(x, ids, plan.w, s, rest)
    level = [per_chunk[k] for k in range(per_chunk.shape[0])]
    while len(level) > 1:
        nxt = [da.map_blocks(_dask_merge, a, b, dtype=np.float64) for a, b in zip(level[::2], level[1::2])]
        level = nxt + ([level[-1]] if len(level) % 2 else [])
    return level[0]


def _per_chunk(x: Any, ids: Any, w: Any, s: int, rest: str) -> Any:
    """(chunks of axis 0, 3, S, *rest) states, one per chunk of axis 0 (rest chunks kept)."""
    import dask.array as da

    idx = "i" + rest
    args: list[Any] = [x, idx, ids, "i"]
    if w is not None:
        args += [da.asarray(w).rechunk(x.chunks), idx]

    def block(xb: np.ndarray, ib: np.ndarray, *wb: np.ndarray) -> np.ndarray:
        return _dask_block_state(xb, ib, s, *wb)[None]

    return da.blockwise(
        block, "itu" + rest, *args, new_axes={"t": 3, "u": s}, adjust_chunks={"i": 1},
        dtype=np.float64, meta=np.empty((0,) * (x.ndim + 2)),
    )


def _dask_logsumexp(plan: _Plan) -> Any:
    import dask.array as da

    st = _dask_states(plan)

    def finish(a: np.ndarray) -> np.ndarray:
        with aa.quiet_fp():
            return np.asarray(value(np, State(a[0], a[1], a[2])), dtype=plan.out_dtype)

    return da.map_blocks(finish, st, drop_axis=0, dtype=plan.out_dtype)


def _dask_normalized(plan: _Plan, log: bool) -> Any:
    """softmax / log_softmax chunk by chunk of axis 0, each chunk given the whole merged state."""
    import dask.array as da

    st = _dask_states(plan).rechunk({1: -1})  # every group's state in one block along S
    x = plan.x
    ids = plan.ids if plan.ids is not None else _ids_from_indptr(plan.xp, plan.indptr, int(x.shape[0]))
    ids = da.asarray(ids).rechunk((x.chunks[0],))
    rest = "".join(chr(ord("j") + k) for k in range(x.ndim - 1))

    def block(xb: np.ndarray, ib: np.ndarray, sb: np.ndarray) -> np.ndarray:
        state = State(sb[0], sb[1], sb[2])
        out = _finish_normalized(np, np.asarray(xb, dtype=np.float64), np.asarray(ib, dtype=np.intp), state, log)
        return np.asarray(out, dtype=plan.out_dtype)

    return da.blockwise(
        block, "i" + rest, x, "i" + rest, ids, "i", st, "tu" + rest,
        dtype=plan.out_dtype, concatenate=True, meta=np.empty((0,) * x.ndim, dtype=plan.out_dtype),
    )

