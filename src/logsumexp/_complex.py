r"""LogSumExp of complex input: ``log Σ b_i e^{a_i}`` on the principal branch.

The magnitude of a term ``b_i e^{a_i}`` is ``|b_i| e^{Re a_i}``: the term whose ``a`` has the
largest real part dominates, exactly as the maximum does in the real case. So the same trick
applies: with ``k`` that term, ``z_k = a_k`` and ``m = b_k``,

.. math::

    \log \sum_i b_i e^{a_i} = z_k + \log m + \log\Big(1 + s\Big),
    \qquad s = \sum_{i \ne k} \frac{b_i}{m} e^{a_i - z_k},

where every term of ``s`` has modulus ≤ ``|b_i/m|`` (no overflow). ``log(1 + s)`` is evaluated
in real arithmetic: its real part as ``½·log1p(2 Re s + |s|²)`` while ``|s|`` is small (so a
dominant term keeps its relative accuracy, as ``log1p`` does in the real case; NumPy's complex
``log1p`` is ``log(1 + s)`` and loses it) and ``log |1 + s|`` otherwise; its imaginary part is
``atan2(Im s, 1 + Re s)``. The imaginary part of the result is wrapped to ``(−π, π]``.

Where that form is not finite (infinite or NaN entries, a sum that cancels to 0), the result is
the direct ``log(Σ b e^a)`` of the namespace, so the infinities follow its C99 complex ``exp``
and ``log`` (SciPy's gh-22601 rules). With ``return_sign`` the result is ``log|Σ|`` (real) and the
sign is the phase ``Σ/|Σ|`` (0 for a zero sum), as in SciPy.

Nothing here reaches the compiled kernels: it is plain Array API code, so it runs on every
namespace with complex dtypes (NumPy, PyTorch, JAX, Dask, CuPy, array-api-strict).
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

from . import _array_api as aa

Array = Any

# Below this |s| the real part of log(1 + s) is taken as ½·log1p(2 Re s + |s|²): no cancellation
# there (|2 Re s + |s|²| ≤ 2.25·|s|); above it log|1 + s| = log(hypot(1 + Re s, Im s)) is as exact.
_SMALL_S = 0.5


def is_complex_input(xp: Any, *values: Any) -> bool:
    """Whether any of ``values`` (arrays, scalars, nested sequences; None ignored) is complex."""
    for v in values:
        if v is None:
            continue
        if array_api_compat.is_array_api_obj(v):
            if xp.isdtype(v.dtype, "complex floating"):
                return True
        else:
            try:
                if np.iscomplexobj(v):
                    return True
            except (ValueError, TypeError):  # ragged or not numbers: as_array words the error
                continue
    return False


def logsumexp(
    xp: Any, a: Any, axis: aa.Axis, b: Any, keepdims: bool, return_sign: bool, where: Any, dtype: Any
) -> Any:
    """``logsumexp`` for complex ``a`` or ``b`` (see the module docstring for the rules)."""
    a, where = aa.unmask(a, where, "a")
    b, where = aa.unmask(b, where, "b")
    x = aa.as_array(xp, a, "a", complex_ok=True)
    w = None if b is None else aa.as_array(xp, b, "b", complex_ok=True)
    out_cdt = _result_dtype(xp, x, w, dtype)
    wide = _work_dtype(xp, x, out_cdt)
    x = xp.astype(x, wide)
    if w is not None:
        w = xp.astype(w, wide)
        shape = aa.broadcast_shape(xp, x, w)
        x = aa.broadcast_to_shape(xp, x, shape, "a", "the broadcast of a and b")
        w = aa.broadcast_to_shape(xp, w, shape, "b", "a")
        x = xp.where(w == 0, aa.scalar_like(xp, -math.inf, x), x)  # a zero weight removes its term
    x = aa.apply_where(xp, x, where)
    axes = aa.normalize_axis(aa.axis_for_0d(axis, x.ndim), x.ndim)
    x, w = _to_last_axis(xp, x, axes), None if w is None else _to_last_axis(xp, w, axes)
    with aa.quiet_fp():
        re, im, sign = _reduce_last(xp, x, w, return_sign)
    if return_sign:
        return _finish(xp, re, axes, keepdims, _real_dtype(xp, out_cdt)), _finish(xp, sign, axes, keepdims, out_cdt)
    return _finish(xp, _make_complex(xp, re, im), axes, keepdims, out_cdt)


def _result_dtype(xp: Any, x: Array, w: Array | None, dtype: Any) -> Any:
    """The complex dtype of the result: ``dtype`` if given, else the promotion of ``a`` and ``b``
    (integers counting as the namespace's default float)."""
    if dtype is not None:
        try:
            ok = xp.isdtype(dtype, "complex floating")
        except (TypeError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise TypeError(f"dtype must be a complex floating dtype of {xp.__name__} for complex input, got {dtype!r}")
        return dtype
    if w is None:
        dt = x.dtype if xp.isdtype(x.dtype, "complex floating") else aa.float_dtype(xp, x)
    else:  # the namespace's promotion (torch: complex64 with int32 is complex64)
        try:
            dt = xp.result_type(x.dtype, w.dtype)
        except TypeError:  # array-api-strict does not promote a float with an integer
            dt = xp.result_type(*(v.dtype if xp.isdtype(v.dtype, "complex floating") else aa.float_dtype(xp, v) for v in (x, w)))
    return _complex_dtype(xp, dt)


def _complex_dtype(xp: Any, dt: Any) -> Any:
    """The complex dtype with real parts of ``dt`` (float32 → complex64; complex stays)."""
    return xp.result_type(dt, xp.complex64)


def _real_dtype(xp: Any, cdt: Any) -> Any:
    """The real dtype of the parts of complex ``cdt`` (complex64 → float32)."""
    return xp.real(xp.empty((0,), dtype=cdt)).dtype


def _work_dtype(xp: Any, x: Array, out_cdt: Any) -> Any:
    """Accumulate in complex128 wherever float64 is the working dtype (every CPU), as the real case."""
    return _complex_dtype(xp, aa.work_dtype(xp, x, _real_dtype(xp, out_cdt)))


def _to_last_axis(xp: Any, x: Array, axes: tuple[int, ...]) -> Array:
    """``x`` with the reduced ``axes`` merged into one last axis (0-d input: one slice of one)."""
    keep = [d for d in range(x.ndim) if d not in axes]
    n = math.prod(x.shape[d] for d in axes)
    if list(axes) != list(range(len(keep), x.ndim)):
        x = xp.permute_dims(x, tuple(keep) + axes)
    return xp.reshape(x, tuple(x.shape[: len(keep)]) + (n,))


def _reduce_last(xp: Any, x: Array, w: Array | None, return_sign: bool) -> tuple[Array, Array, Array | None]:
    """Real part, wrapped imaginary part and (with ``return_sign``) the phase of the LSE of each
    slice along the last axis of ``x`` (complex, masked entries −inf)."""
    n = x.shape[-1]
    if n == 0:  # an empty sum: log 0 = −inf, sign 0
        re = xp.full(tuple(x.shape[:-1]), -math.inf, dtype=_real_dtype(xp, x.dtype), device=aa.device(x))
        return re, xp.zeros_like(re), (xp.zeros(re.shape, dtype=x.dtype, device=aa.device(x)) if return_sign else None)
    re, im = _stable(xp, x, w)
    ok = xp.isfinite(re) & xp.isfinite(im)
    # only the slices that need it see exp(x) (no overflow computed, so no warning, elsewhere)
    re_d, im_d, abs_d = _direct(xp, xp.where(ok[..., None], aa.scalar_like(xp, -math.inf, x), x), w, ok)
    re, im = xp.where(ok, re, re_d), xp.where(ok, im, im_d)
    im = wrap_radians(xp, im)
    sign = None
    if return_sign:
        phase = _make_complex(xp, xp.cos(im), xp.sin(im))
        zero = xp.where(ok, re == -math.inf, abs_d == 0)
        sign = xp.where(zero, xp.zeros_like(phase), phase)
        sign = xp.where(xp.isnan(re) | xp.isnan(im), xp.full_like(phase, math.nan), sign)
    return re, im, sign


def _stable(xp: Any, x: Array, w: Array | None) -> tuple[Array, Array]:
    """``z_k + log m + log(1 + s)`` per slice (module docstring), as real and imaginary parts."""
    top = aa.argmax_mask(xp, xp.real(x), -1)  # one entry per slice: the term of largest modulus
    zero = xp.zeros_like(x)
    z = xp.sum(xp.where(top, x, zero), axis=-1, keepdims=True)
    finite_z = xp.isfinite(z)
    safe_z = xp.where(finite_z, z, zero[..., :1])  # an infinite z_k: this form is replaced below
    # the leading term out of the sum; a slice with an infinite z_k is answered by _direct
    terms = xp.exp(xp.where(top | ~finite_z, aa.scalar_like(xp, -math.inf, x), x - safe_z))
    if w is None:
        m = xp.ones_like(z)
    else:
        m = xp.sum(xp.where(top, w, zero), axis=-1, keepdims=True)
        terms = terms * w
    s = xp.sum(terms, axis=-1, keepdims=True) / m  # |terms| ≤ |w|: no overflow
    re_1s, im_1s = _log1p_parts(xp, s)
    abs_m = xp.abs(m)
    re = xp.real(z) + aa.log_nonneg(xp, abs_m) + re_1s
    im = xp.imag(z) + xp.atan2(xp.imag(m), xp.real(m)) + im_1s
    nan = xp.full_like(re, math.nan)
    re = xp.where(finite_z, re, nan)
    return xp.squeeze(re, axis=-1), xp.squeeze(im, axis=-1)


def _log1p_parts(xp: Any, s: Array) -> tuple[Array, Array]:
    """Real and imaginary parts of ``log(1 + s)``, the real part accurate for small ``|s|``."""
    sr, si = xp.real(s), xp.imag(s)
    u = 1.0 + sr
    small = xp.abs(s) < _SMALL_S
    t = sr * (2.0 + sr) + si * si  # = |1 + s|² − 1, without the cancellation for small |s|
    re_small = 0.5 * xp.log1p(xp.where(small, t, xp.zeros_like(t)))
    re_big = aa.log_nonneg(xp, xp.hypot(xp.where(small, xp.ones_like(u), u), si))
    return xp.where(small, re_small, re_big), xp.atan2(si, u)


def _direct(xp: Any, x: Array, w: Array | None, skip: Array) -> tuple[Array, Array, Array]:
    """``log Σ b e^a`` as written (real part, imaginary part, and ``|Σ|``): the namespace's C99
    ``exp`` and ``log`` decide the infinite and NaN cases. Slices where ``skip`` (their entries
    already −inf) get the harmless log 1."""
    e = xp.exp(x)
    total = xp.sum(e if w is None else w * e, axis=-1)
    lg = xp.log(xp.where(skip, xp.ones_like(total), total))
    return xp.real(lg), xp.imag(lg), xp.abs(total)


def wrap_radians(xp: Any, theta: Array) -> Array:
    """``theta`` wrapped to ``(−π, π]``; values already strictly inside are returned exactly."""
    two_pi = 2.0 * math.pi
    wrapped = theta - two_pi * xp.ceil((theta - math.pi) / two_pi)
    return xp.where(xp.abs(theta) < math.pi, theta, wrapped)


def _make_complex(xp: Any, re: Array, im: Array) -> Array:
    """``re + i·im`` from two real arrays (``im`` finite or NaN): ``im·1j`` alone would turn an
    infinite real part into NaN, so the parts are added."""
    cdt = _complex_dtype(xp, re.dtype)
    return xp.astype(re, cdt) + xp.astype(im, cdt) * 1j


def _finish(xp: Any, out: Array, axes: tuple[int, ...], keepdims: bool, dtype: Any) -> Any:
    out = aa.restore_axes(xp, xp.astype(out, dtype), axes, keepdims)
    if aa.is_numpy(xp) and out.ndim == 0:
        return out[()]
    return out
