"""LogSumExp and the smooth maximum and minimum: validate, reduce (``_reduce``), finish."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _array_api as aa
from . import _jax
from . import _complex
from ._reduce import fast_numpy_lse, fast_numpy_lse_weighted, lse_state, lse_value
from ._state import divide_by_temperature, shifted, times_temperature, value
from . import _cpu

Array = Any


def logsumexp(
    a: Any,
    axis: aa.Axis = None,
    b: Any = None,
    keepdims: bool = False,
    return_sign: bool = False,
    *,
    where: Any = None,
    dtype: Any = None,
) -> Any:
    r"""Compute ``log(sum(b * exp(a)))`` over ``axis`` without overflow and without losing small terms.

    Drop-in for :func:`scipy.special.logsumexp` (same signature and semantics) on any Array API
    array, plus ``where`` and ``dtype``.

    .. math::

        \mathrm{LSE}(a) = \log \sum_i b_i e^{a_i} = m + \log b_k + \operatorname{log1p}\Big(\sum_{i \ne k} \frac{b_i}{b_k} e^{a_i - m}\Big),
        \qquad m = a_k = \max_i a_i .

    Stability: subtracting the maximum ``m`` makes every exponent ≤ 0 (no overflow, and the largest
    term is exactly ``b_k``); keeping that term out of the sum and using ``log1p`` (Blanchard,
    Higham & Higham, IMA J. Numer. Anal. 2021) keeps full relative accuracy when the maximum
    dominates, e.g. ``[0, -40, -40, ...]``, where ``log(sum(exp(a - m)))`` rounds the answer to 0.

    Parameters
    ----------
    a : array_like
        Input (NumPy, PyTorch, Dask, JAX, CuPy, array-api-strict array, or a nested sequence).
    axis : int, tuple of ints or None
        Axes to reduce over (None: all).
    b : array_like, optional
        Weights broadcast against ``a``; may be negative or zero (a zero weight removes its term,
        even at ``a = ±inf``).
    keepdims : bool
        Keep the reduced axes with length 1.
    return_sign : bool
        Also return the sign of the sum; without it a negative sum gives NaN.
    where : array_like of bool, optional
        Only entries where True take part (masked entries vanish, like −inf).
    dtype : dtype, optional
        Dtype of the result (default: the input's float dtype; integers give the default float).

    Returns
    -------
    res : array
        ``log|sum(b * exp(a))|``; NumPy 0-d results are NumPy scalars, as in SciPy.
    sgn : array
        Only with ``return_sign``: the sign of the sum (+1, −1, 0, or NaN).

    Notes
    -----
    Special values per slice: only −inf, all masked, or empty → −inf; ``k`` entries +inf → +inf
    (with weights: the sign of the weights' sum on those entries, NaN when it is 0); any NaN → NaN.
    Accumulation: float16/bfloat16 in at least float32, and everything on a CPU in float64.

    Examples
    --------
    >>> import numpy as np
    >>> import logsumexp as lse
    >>> x = np.array([1000.0, 1000.0, 1000.0])
    >>> with np.errstate(over="ignore"):
    ...     print(np.log(np.sum(np.exp(x))))    # the naive formula overflows
    inf
    >>> print(lse.logsumexp(x))                 # 1000 + log 3
    1001.0986122886682
    >>> y = np.concatenate([[0.0], np.full(999, -40.0)])
    >>> print(f"{np.log(np.sum(np.exp(y - y.max()))):.12e}")   # the plain shift: 0.6% off
    4.218847493576e-15
    >>> print(f"{lse.logsumexp(y):.12e}")       # log1p(999 e^-40): every digit right
    4.244105901036e-15
    >>> lse.logsumexp([0.0, 0.0], b=[1.0, -2.0], return_sign=True)
    (np.float64(0.0), np.float64(-1.0))
    """
    if type(a) is np.ndarray and where is None and dtype is None and a.dtype.kind != "c":
        # The common NumPy calls in one compiled step (a masked array is not exactly np.ndarray).
        axis = aa.axis_for_0d(axis, a.ndim)
        if b is None:
            fast = None if return_sign else fast_numpy_lse(a, axis, keepdims)
        else:
            weights_ok = type(b) is np.ndarray and b.dtype.kind != "c"
            fast = fast_numpy_lse_weighted(a, b, axis, keepdims, return_sign) if weights_ok else None
        if fast is not None:
            return fast
    elif b is None and where is None and dtype is None and not return_sign and is_torch_tensor(a):
        fast = _torch_lse(a, axis, keepdims)  # CPU float32/float64: the compiled kernels, no copy
        if fast is not None:
            return fast
    xp = aa.namespace(a, b, where)
    if _complex.is_complex_input(xp, a, b):  # never reaches the compiled kernels
        return _complex.logsumexp(xp, a, axis, b, keepdims, return_sign, where, dtype)
    x, w, axes, out_dtype = _prepare_lse(xp, a, axis, b, where, dtype)
    if w is None and not return_sign and axes and _jax.is_jax_array(x):  # JAX: the native path (_jax.py)
        return _jax.logsumexp(x, axes, keepdims, out_dtype)
    res = lse_value(xp, x, axes, w, return_sign)
    if return_sign:
        out, sign = res
        return _finish(xp, out, axes, keepdims, out_dtype), _finish(xp, sign, axes, keepdims, out_dtype)
    return _finish(xp, res, axes, keepdims, out_dtype)


def _prepare_lse(
    xp: Any, a: Any, axis: aa.Axis, b: Any, where: Any, dtype: Any
) -> tuple[Array, Array | None, tuple[int, ...], Any]:
    """Check and promote logsumexp's arguments.

    Returns the input as a float array (its own float dtype, not yet widened), with masked and
    zero-weight entries set to −inf; the weights broadcast to the input's shape (or None); the
    reduced axes; and the result dtype. Masked entries of a NumPy masked array (in ``a`` or ``b``)
    take no part, as with ``where``.
    """
    a, where = aa.unmask(a, where, "a")
    b, where = aa.unmask(b, where, "b")
    x = aa.as_array(xp, a, "a")
    w = None if b is None else aa.as_array(xp, b, "b")
    out_dtype = aa.float_dtype(xp, x if w is None else aa.promoted(xp, x, w), dtype)
    if not xp.isdtype(x.dtype, "real floating"):
        x = xp.astype(x, out_dtype)
    if w is not None:
        shape = aa.broadcast_shape(xp, x, w)
        x = aa.broadcast_to_shape(xp, x, shape, "a", "the broadcast of a and b")
        w = aa.broadcast_to_shape(xp, w, shape, "b", "a")
        # weighted inputs are copied by the masking below anyway: promote both to the result dtype
        x, w = xp.astype(x, out_dtype), xp.astype(w, out_dtype)
        x = xp.where(w == 0, aa.scalar_like(xp, -math.inf, x), x)  # a zero weight removes its term, even at ±inf
    x = aa.apply_where(xp, x, where)
    axes = aa.normalize_axis(aa.axis_for_0d(axis, x.ndim), x.ndim)
    return x, w, axes, out_dtype


def _finish(xp: Any, out: Array, axes: tuple[int, ...], keepdims: bool, out_dtype: Any) -> Any:
    """Cast to the result dtype, restore kept axes, and turn NumPy 0-d arrays into scalars."""
    out = aa.restore_axes(xp, xp.astype(out, out_dtype), axes, keepdims)
    if aa.is_numpy(xp) and out.ndim == 0:
        return out[()]
    return out


def smoothmax(x: Any, axis: aa.Axis = None, *, temperature: float = 1.0, keepdims: bool = False) -> Any:
    r"""The smooth maximum ``T · LSE(x / T)``: ``max(x) ≤ smoothmax ≤ max(x) + T·log n``.

    .. math:: \operatorname{smoothmax}_T(x) = m + T \operatorname{log1p}\Big(\sum_{i \ne k} e^{(x_i - m)/T}\Big),
              \qquad m = x_k = \max_i x_i .

    Computed in this form, so the bounds hold by construction, in floating point too: the sum is of
    terms ≤ 1, so ``log1p`` of it lies in ``[0, log n]``, and ``m`` is added exactly once (``T·LSE(x/T)``
    rounds ``m/T·T`` and can land an ulp below the maximum). One entry gives exactly ``m``. As
    ``T → 0`` it tends to ``max(x)``; its gradient is ``softmax(x / T)``.

    Special values per slice: all −inf or empty → −inf; any +inf → +inf; any NaN → NaN. Masked
    entries of a NumPy masked array take no part.

    Examples
    --------
    >>> import logsumexp as lse
    >>> print(lse.smoothmax([1.0, 2.0, 3.0], temperature=0.01))
    3.0
    >>> print(round(float(lse.smoothmax([1.0, 2.0, 3.0])), 6))
    3.407606
    >>> print(lse.smoothmax([1.0, 2.0], temperature=1e-300))   # never below the maximum
    2.0
    """
    return _smooth(x, axis, temperature, keepdims, sign=1.0)


def smoothmin(x: Any, axis: aa.Axis = None, *, temperature: float = 1.0, keepdims: bool = False) -> Any:
    r"""The smooth minimum ``−T · LSE(−x / T)``: ``min(x) − T·log n ≤ smoothmin ≤ min(x)``.

    Computed as ``m − T·log1p(Σ_{i≠k} e^{(m − x_i)/T})`` with ``m = min(x)``, so the bounds hold
    exactly (see :func:`smoothmax`).

    Examples
    --------
    >>> import logsumexp as lse
    >>> print(lse.smoothmin([1.0, 2.0, 3.0], temperature=0.01))
    1.0
    """
    return _smooth(x, axis, temperature, keepdims, sign=-1.0)


def _smooth(x: Any, axis: aa.Axis, temperature: float, keepdims: bool, sign: float) -> Any:
    """``sign · smoothmax(sign · x)`` as ``m + T·log1p(tail)``: two reductions, the first for the
    extremum ``m``, the second for the tail of the scaled shifted values ``(x − m)/T ≤ 0``."""
    t = aa.check_temperature(temperature)
    x, where = aa.unmask(x, None, "x")
    xp = aa.namespace(x)
    arr = aa.as_array(xp, x, "x")
    arr = -xp.astype(arr, aa.float_dtype(xp, arr)) if sign < 0 else arr  # before masking: −inf stays −inf
    arr, _, axes, out_dtype = _prepare_lse(xp, arr, axis, None, where, None)
    if math.prod(arr.shape) == 0:  # the empty rules: −inf for smoothmax, +inf for smoothmin
        empty = logsumexp(arr, axis=axes, keepdims=keepdims)
        return -empty if sign < 0 else empty
    m = aa.restore_axes(xp, lse_state(xp, arr, axes, None).m, axes, True)
    with aa.quiet_fp():
        d = shifted(xp, xp.astype(arr, m.dtype), m)  # ≤ 0; infinite maxima made harmless
        d = divide_by_temperature(xp, d, t)  # (x − m)/T, never x/T: no overflow for tiny T
        log_rest = value(xp, lse_state(xp, d, axes, None))  # log1p(tail): max of d is 0
        out = xp.reshape(m, tuple(log_rest.shape)) + times_temperature(xp, log_rest, t)
        out = -out if sign < 0 else out
    return _finish(xp, out, axes, keepdims, out_dtype)


# ------------------------------------------------------------------------------------------------
# torch tensors (issue 21): CPU float32/float64 through the compiled kernels, without a copy
# ------------------------------------------------------------------------------------------------
# The torch face's differentiable LogSumExp / softmax, registered by ``logsumexp.torch`` when it is
# imported (the core never imports the face): keys "logsumexp" (t, axes, keepdims) and "softmax"
# (t, axis, log). Without them a tensor that needs a graph takes the generic Array API path.
TORCH_FACE: dict[str, Callable[..., Any]] = {}


def register_torch_face(name: str, fn: Callable[..., Any]) -> None:
    """Let the array core hand torch tensors that need a graph to the torch face's ``name``."""
    TORCH_FACE[name] = fn


def is_torch_tensor(a: Any) -> bool:
    """``a`` is exactly a torch.Tensor or Parameter (no subclass: fake and traced tensors are
    subclasses), read without importing torch (it is imported wherever such a tensor exists)."""
    torch = sys.modules.get("torch")
    return torch is not None and type(a) in (torch.Tensor, torch.nn.Parameter)


def torch_kernel_view(t: Any) -> tuple[np.ndarray | None, bool]:
    """(NumPy view of ``t``'s memory or None, whether a graph must be recorded) for a CPU
    float32/float64 tensor the compiled kernels can read in place; (None, False) otherwise
    (another dtype or device, 0-d or empty, a ``torch.func`` wrapper, a traced call)."""
    import torch  # only reached for a torch tensor: torch is already imported

    if (
        t.dtype not in (torch.float32, torch.float64) or not t.is_cpu or t.layout != torch.strided
        or t.ndim == 0 or t.numel() == 0 or torch._C._functorch.is_functorch_wrapped_tensor(t)
        or torch.compiler.is_compiling() or not _cpu.enabled()
    ):
        return None, False
    graph = (t.requires_grad and torch.is_grad_enabled()) or torch.autograd.forward_ad._current_level >= 0
    if graph:
        return None, True
    try:
        return t.detach().numpy(), False
    except (RuntimeError, TypeError):  # a negative- or conjugate-bit view: torch refuses a view
        return None, False


def _torch_lse(t: Any, axis: aa.Axis, keepdims: bool) -> Any:
    """LogSumExp of a torch tensor over ``axis`` from the kernels (or the torch face when a graph
    is needed), or None for the generic path."""
    view, graph = torch_kernel_view(t)
    if view is None and not (graph and "logsumexp" in TORCH_FACE):
        return None
    axes = aa.normalize_axis(axis, t.ndim)  # the core's own axis errors
    if not axes:
        return None
    if view is None:
        return TORCH_FACE["logsumexp"](t, axes, keepdims)
    out = _cpu.lse_value(view, axes)
    if out is None:
        return None
    import torch

    res = torch.from_numpy(np.asarray(out))
    return res.reshape([1 if d in axes else n for d, n in enumerate(t.shape)]) if keepdims else res
