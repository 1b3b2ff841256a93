"""softmax and log_softmax: the soft arg max, the gradient of LogSumExp."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _array_api as aa
from . import _cpu, _jax
from ._lse import TORCH_FACE, is_torch_tensor, torch_kernel_view
from ._reduce import normalized
from ._state import divide_by_temperature, shifted

Array = Any


def softmax(
    x: Any, axis: aa.Axis = -1, *, where: Any = None, temperature: float = 1.0, dtype: Any = None
) -> Any:
    r"""The soft arg max ``exp(x/T − LSE(x/T))`` along ``axis`` (the gradient of LogSumExp).

    .. math:: \operatorname{softmax}(x)_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}, \qquad m = \max_j x_j .

    Stability: the maximum is subtracted first, so no exponent is positive and the denominator
    is at least 1; the division form is the more accurate one (one rounding per entry).

    Special values per slice: all −inf, all masked or empty → all 0 (never NaN); ``k`` entries
    +inf → ``1/k`` on them, 0 elsewhere; any NaN → NaN in that slice only. Masked entries
    (``where`` False, or masked in a NumPy masked array) are 0. Accumulation in float64 on a CPU, at least float32 elsewhere.

    Parameters
    ----------
    x : array_like
    axis : int, tuple of ints or None
        Axes that sum to one. Default ``-1``: each slice along the last axis is one distribution
        (the ML convention, JAX's and PyTorch's). **This differs from** :func:`scipy.special.softmax`,
        whose default ``axis=None`` takes the whole array as one distribution: pass ``axis=None``
        for SciPy's behaviour. The two agree on 1-D input. A 0-d input is one slice of one entry,
        as in SciPy: ``softmax(3.0)`` is 1.0.
    where : array_like of bool, optional
        Entries that take part; the others get probability 0.
    temperature : float
        ``T > 0``; small T sharpens towards the arg max, large T flattens.
    dtype : dtype, optional
        Result dtype (default: the input's float dtype).

    Examples
    --------
    >>> import numpy as np
    >>> import logsumexp as lse
    >>> print(lse.softmax(np.array([1000.0, 1000.0, 1000.0])))
    [0.33333333 0.33333333 0.33333333]
    >>> print(lse.softmax(np.array([0.0, np.inf, np.inf])))
    [0.  0.5 0.5]
    >>> print(lse.softmax(np.array([-np.inf, -np.inf])))
    [0. 0.]
    >>> x = np.array([[0.0, 0.0], [0.0, 0.0]])
    >>> print(lse.softmax(x))              # default axis=-1: each row sums to 1
    [[0.5 0.5]
     [0.5 0.5]]
    >>> print(lse.softmax(x, axis=None))   # SciPy's default: the whole array sums to 1
    [[0.25 0.25]
     [0.25 0.25]]
    >>> print(lse.softmax(3.0))
    1.0
    """
    return _normalize(x, axis, where, temperature, dtype, log=False)


def log_softmax(
    x: Any, axis: aa.Axis = -1, *, where: Any = None, temperature: float = 1.0, dtype: Any = None
) -> Any:
    r"""``x/T − LSE(x/T)`` along ``axis``: the log-probabilities of the softmax.

    .. math:: \log\operatorname{softmax}(x)_i = (x_i - m) - \operatorname{log1p}\Big(\sum_{j \ne k} e^{x_j - m}\Big),
              \qquad m = x_k = \max_j x_j .

    Stability: as in :func:`logsumexp`, the maximum's own term (exactly 1) is kept out of the sum
    and ``log1p`` is used, so the dominant entry keeps full relative accuracy: at the 0 of
    ``[0, −40, −40, …]`` the result is ``−999·e^{−40}``, where ``x − LSE(x)`` returns 0.

    Special values per slice: all −inf, all masked or empty → all −inf; ``k`` entries +inf →
    ``−log k`` on them and −inf elsewhere; any NaN → NaN in that slice only.

    Parameters
    ----------
    x : array_like
    axis : int, tuple of ints or None
        Axes along which ``exp(result)`` sums to one. Default ``-1`` (the last axis, the ML
        convention). **This differs from** :func:`scipy.special.log_softmax`, whose default
        ``axis=None`` normalizes over the whole array: pass ``axis=None`` for SciPy's behaviour.
        A 0-d input is one slice of one entry, as in SciPy: ``log_softmax(3.0)`` is 0.0.
    where, temperature, dtype
        As in :func:`softmax`.

    Examples
    --------
    >>> import numpy as np
    >>> import logsumexp as lse
    >>> print(lse.log_softmax(np.array([1000.0, 1000.0, 1000.0])))   # -log 3 each
    [-1.09861229 -1.09861229 -1.09861229]
    >>> y = np.concatenate([[0.0], np.full(999, -40.0)])
    >>> print(f"{lse.log_softmax(y)[0]:.12e}")
    -4.244105901036e-15
    >>> print(lse.log_softmax(np.zeros((2, 2)), axis=None))   # SciPy's default: log(1/4) each
    [[-1.38629436 -1.38629436]
     [-1.38629436 -1.38629436]]
    """
    return _normalize(x, axis, where, temperature, dtype, log=True)


def _normalize(x: Any, axis: aa.Axis, where: Any, temperature: float, dtype: Any, log: bool) -> Any:
    """Validate once, then hand the masked, scaled input to the one reduction (``_reduce``)."""
    if where is None and dtype is None and type(temperature) in (float, int) and temperature == 1:
        if type(x) is np.ndarray and x.ndim and x.dtype.char in "fd":
            # The common NumPy call straight to the kernels: no namespace, promotion or masking
            # to work out (a masked array is not exactly np.ndarray); a small C-contiguous one
            # along its last axis without even the layout planning.
            if type(axis) is int and (axis == -1 or axis == x.ndim - 1):
                fast = _cpu.softmax_last(x, log)
                if fast is not None:
                    return fast
            fast = _cpu.softmax_axes(x, _one_axis(axis, x.ndim), log)
            if fast is not None:
                return fast
        elif is_torch_tensor(x):
            fast = _torch_softmax(x, axis, log)  # CPU float32/float64: the compiled kernels, no copy
            if fast is not None:
                return fast
    t = aa.check_temperature(temperature)
    x, where = aa.unmask(x, where, "x")
    xp = aa.namespace(x, where)
    arr = aa.as_array(xp, x, "x")
    out_dtype = aa.float_dtype(xp, arr, dtype)
    if not xp.isdtype(arr.dtype, "real floating"):
        arr = xp.astype(arr, out_dtype)
    arr = aa.apply_where(xp, arr, where)
    if arr.ndim == 0:  # one slice of one entry, as SciPy reads a 0-d input: softmax(3.0) is 1.0
        aa.normalize_axis(aa.axis_for_0d(axis, 0), 0)  # any other axis is refused as for 0-d
        out = _normalize(xp.reshape(arr, (1,)), 0, None, t, out_dtype, log)
        return _scalar(xp, xp.reshape(out, ()))
    axes = aa.normalize_axis(axis, arr.ndim)
    if t != 1.0 and 0 not in arr.shape:  # an empty input has nothing to scale
        arr = _scaled(xp, arr, axes, t)
    if axes and _jax.is_jax_array(arr):  # JAX: the native path (_jax.py)
        return _jax.softmax(arr, axes, log, out_dtype)
    return normalized(xp, arr, axes, log, out_dtype)


def _scalar(xp: Any, out: Array) -> Any:
    """A NumPy 0-d result as a NumPy scalar (as SciPy returns for a scalar input)."""
    return out[()] if aa.is_numpy(xp) else out


def _scaled(xp: Any, arr: Array, axes: tuple[int, ...], t: float) -> Array:
    """``(x − max)/T`` in the working dtype: the softmax of ``x/T`` without ever forming ``x/T``.

    The maximum is subtracted first and the differences (≤ 0) are divided afterwards, so a tiny
    temperature sends them to −inf (not ``inf − inf = NaN``) and keeps ties at the maximum at 0,
    and a huge one flattens them towards 0; the softmax is unchanged by the shift. Masked entries
    are already −inf and stay −inf.
    """
    wide = aa.work_dtype(xp, arr, arr.dtype)
    arr = xp.astype(arr, wide, copy=False)
    m = xp.max(arr, axis=axes, keepdims=True)
    with aa.quiet_fp():
        return divide_by_temperature(xp, shifted(xp, arr, m), t)


def _one_axis(axis: aa.Axis, ndim: int) -> tuple[int, ...]:
    """``axis`` as sorted non-negative axes: an in-range int directly, anything else through
    :func:`~logsumexp._array_api.normalize_axis` (which raises the core's errors)."""
    if type(axis) is int and -ndim <= axis < ndim:
        return (axis % ndim,)
    return aa.normalize_axis(axis, ndim)


def _torch_softmax(t: Any, axis: aa.Axis, log: bool) -> Any:
    """softmax / log_softmax of a torch tensor over ``axis`` from the kernels (or the torch face
    for one axis when a graph is needed), or None for the generic path."""
    view, graph = torch_kernel_view(t)
    if view is None and not (graph and "softmax" in TORCH_FACE):
        return None
    axes = aa.normalize_axis(axis, t.ndim)  # the core's own axis errors
    if not axes:
        return None
    if view is None:
        return TORCH_FACE["softmax"](t, axes[0], log) if len(axes) == 1 else None
    out = _cpu.softmax_axes(view, axes, log)
    if out is None:
        return None
    import torch

    return torch.from_numpy(out)
