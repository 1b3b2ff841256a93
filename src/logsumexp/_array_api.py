"""Namespace discovery, dtype promotion and argument checks shared by every array-core function.

Every public function starts the same way (as SciPy and array-api-extra do): find the array
namespace of its inputs, turn Python lists and scalars into NumPy arrays, check the arguments, and
choose the *working* dtype in which the arithmetic is done. Keeping these steps here means every
function gives the same error for the same mistake.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import operator
from collections.abc import Iterator, Sequence
from typing import Any

import array_api_compat
import numpy as np

Array = Any  # any Python Array API array (NumPy, PyTorch, Dask, JAX, CuPy, array-api-strict)
Axis = int | Sequence[int] | None


_NUMPY_IS_ARRAY_API = tuple(int(p) for p in np.__version__.split(".")[:2]) >= (2, 1)


def namespace(*arrays: Any) -> Any:
    """The array namespace shared by ``arrays`` (``None`` entries and Python scalars are ignored).

    Python lists and scalars alone mean NumPy, as in SciPy.
    """
    real = [a for a in arrays if a is not None and array_api_compat.is_array_api_obj(a)]
    if _NUMPY_IS_ARRAY_API and all(type(a) is np.ndarray or isinstance(a, np.generic) for a in real):
        # NumPy >= 2.1 is an Array API namespace itself; array_api_compat's NumPy wrapper clones
        # every attribute of numpy on import (numpy.testing, f2py, random: ~0.1 s of a new process)
        return np
    if not real:
        return array_api_compat.array_namespace(np.empty(0))
    try:
        return array_api_compat.array_namespace(*real)
    except TypeError as err:
        # NumPy arrays next to Dask arrays (a class weight, a target) are wrapped, as Dask does
        dask_arrays = [a for a in real if array_api_compat.is_dask_array(a)]
        if dask_arrays and all(array_api_compat.is_dask_array(a) or isinstance(a, np.ndarray) for a in real):
            return array_api_compat.array_namespace(*dask_arrays)
        raise TypeError(f"inputs come from different array libraries: {err}") from None


def as_array(xp: Any, x: Any, name: str, *, complex_ok: bool = False) -> Array:
    """``x`` as an array of namespace ``xp`` (lists and scalars converted), numeric, and not
    complex unless ``complex_ok`` (only ``logsumexp`` takes complex input)."""
    if isinstance(x, np.ndarray) and is_dask(xp):
        x = xp.asarray(x)
    if not array_api_compat.is_array_api_obj(x):
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as err:
            raise TypeError(f"{name} must be an array or a nested sequence of numbers: {err}") from None
        if x.dtype == object or x.dtype.kind in "USV":
            raise TypeError(f"{name} must hold numbers, got an array of dtype {x.dtype}")
        x = xp.asarray(x)
    if xp.isdtype(x.dtype, "complex floating"):
        if complex_ok:
            return x
        raise TypeError(f"{name} must be real; complex input (dtype {x.dtype}) is not supported here")
    if not (xp.isdtype(x.dtype, "numeric") or xp.isdtype(x.dtype, "bool")):
        raise TypeError(f"{name} must be numeric, got dtype {x.dtype}")
    return x


def default_float(xp: Any) -> Any:
    """The namespace's default real floating dtype (what integers promote to)."""
    if array_api_compat.is_torch_namespace(xp):
        import torch

        return torch.get_default_dtype()
    try:
        return xp.__array_namespace_info__().default_dtypes()["real floating"]
    except (AttributeError, KeyError, TypeError):
        return xp.float64


def index_dtype(xp: Any) -> Any:
    """The namespace's default integer dtype for indices (what ``take_along_axis`` is sure to take).

    JAX without 64-bit mode has no int64: asking for it there warns and truncates, so the dtype
    is the namespace's own choice (int32 there, int64 on NumPy and PyTorch).
    """
    try:
        return xp.__array_namespace_info__().default_dtypes()["indexing"]
    except (AttributeError, KeyError, TypeError):
        return xp.int64


def float_dtype(xp: Any, x: Array, dtype: Any = None) -> Any:
    """The dtype a result comes back in: ``dtype`` if given, else x's float dtype (integers → default)."""
    if dtype is not None:
        try:
            ok = xp.isdtype(dtype, "real floating")
        except (TypeError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise TypeError(f"dtype must be a real floating dtype of {xp.__name__}, got {dtype!r}")
        return dtype
    if xp.isdtype(x.dtype, "real floating"):
        return x.dtype
    return default_float(xp)


def promoted(xp: Any, x: Array, w: Array) -> Array:
    """An empty array of the float dtype that ``x`` and ``w`` promote to.

    The namespace's own promotion decides (torch and JAX: float32 with int32 is float32; NumPy:
    float64), as SciPy does; two integer (or bool) dtypes give the default float. A namespace
    that refuses to promote a float with an integer (array-api-strict) promotes the float with
    the default float instead.
    """
    try:
        dt = xp.result_type(x.dtype, w.dtype)
    except TypeError:
        dt = xp.result_type(float_dtype(xp, x), float_dtype(xp, w))
    if not xp.isdtype(dt, "real floating"):
        dt = default_float(xp)
    return xp.empty((0,), dtype=dt)


def broadcast_shape(xp: Any, x: Array, w: Array) -> tuple[int, ...]:
    """The shape ``x`` and the weights ``w`` broadcast to, or a ValueError naming both."""
    try:
        return tuple(xp.broadcast_arrays(x, w)[0].shape)
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"b of shape {tuple(w.shape)} does not broadcast against a of shape {tuple(x.shape)}") from err


def axis_for_0d(axis: Axis, ndim: int) -> Axis:
    """``axis`` for an input of ``ndim`` dimensions, where a 0-d input counts as one slice of one
    entry along axis 0 (or −1), as in SciPy: ``logsumexp(np.array(3.0), axis=0)`` is 3.0."""
    if ndim != 0:
        return axis
    items = axis if isinstance(axis, (tuple, list)) and len(axis) == 1 else (axis,)
    if _is_int(items[0]) and operator.index(items[0]) in (0, -1):
        return None
    return axis


def work_dtype(xp: Any, x: Array, out_dtype: Any) -> Any:
    """The dtype the arithmetic is done in.

    float16 and bfloat16 are accumulated in at least float32, and everything on a CPU is
    accumulated in float64 (one extra rounding at the very end instead of one per term; this is
    what makes float32 results correctly rounded). On an accelerator float32 stays float32.
    NumPy's long double (80-bit extended on x86) is computed in long double, as SciPy does.
    """
    if is_numpy(xp) and np.dtype(out_dtype).itemsize > 8:
        return out_dtype  # long double stays long double: its extra digits are computed, not invented
    if _on_cpu(xp, x) and _has_float64(xp, x):
        return xp.float64
    if out_dtype == getattr(xp, "float64", None):
        return out_dtype
    return xp.float32


def _on_cpu(xp: Any, x: Array) -> bool:
    if array_api_compat.is_torch_namespace(xp):
        return x.device.type == "cpu"
    if array_api_compat.is_cupy_namespace(xp):
        return False
    if array_api_compat.is_jax_namespace(xp):
        return _jax_on_cpu(x)
    return True


def _jax_on_cpu(x: Array) -> bool:
    """Whether a JAX array lives on the CPU. A tracer (inside ``jax.jit``, ``grad``, ``vmap``) has no
    device to ask: asking raises ConcretizationTypeError. It will run on the default backend."""
    import jax

    if isinstance(x, jax.core.Tracer):
        return jax.default_backend() == "cpu"
    return all(d.platform == "cpu" for d in x.devices()) if hasattr(x, "devices") else True


def _has_float64(xp: Any, x: Array) -> bool:
    if array_api_compat.is_jax_namespace(xp):
        import jax

        return bool(jax.config.read("jax_enable_x64"))
    if not hasattr(xp, "float64"):
        return False
    if is_numpy(xp) or array_api_compat.is_torch_namespace(xp) or is_dask(xp):
        return True
    # others may have a device without float64 (array-api-strict's "no_float64"): ask the device
    try:
        return "float64" in xp.__array_namespace_info__().dtypes(device=device(x))
    except (AttributeError, TypeError, ValueError):
        return True


def is_lazy(xp: Any) -> bool:
    """Whether values cannot be inspected cheaply (Dask graphs, JAX tracing): no data-dependent branches."""
    return bool(array_api_compat.is_dask_namespace(xp) or array_api_compat.is_jax_namespace(xp))


def is_concrete(xp: Any, a: Array) -> bool:
    """Whether ``a``'s values can be read now: False for Dask graphs and for JAX tracers (inside
    ``jax.jit``), True for JAX arrays outside a trace and for every eager backend. An argument
    check that needs values (a target in range) runs on concrete arrays, even on JAX."""
    if array_api_compat.is_dask_namespace(xp):
        return False
    if array_api_compat.is_jax_namespace(xp):
        import jax

        return not isinstance(a, jax.core.Tracer)
    if array_api_compat.is_torch_namespace(xp):
        return not _torch_transformed(a)
    return True


def _torch_transformed(a: Array) -> bool:
    """Whether ``a`` is a tensor seen through ``torch.func`` (``vmap``, ``grad``): reading a value
    of a batched tensor (``bool``, ``item``) is refused there, so the check is left to the row."""
    import torch

    return bool(torch._C._functorch.is_functorch_wrapped_tensor(a))


def is_dask(xp: Any) -> bool:
    return bool(array_api_compat.is_dask_namespace(xp))


def is_numpy(xp: Any) -> bool:
    return bool(array_api_compat.is_numpy_namespace(xp))


def normalize_axis(axis: Axis, ndim: int, name: str = "axis") -> tuple[int, ...]:
    """``axis`` (int, sequence of ints or None = all) as a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    items = (axis,) if _is_int(axis) else axis
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"{name} must be an int, a tuple of ints or None, got {axis!r}") from None
    out = []
    for a in items:
        if not _is_int(a):
            raise TypeError(f"{name} must be an int, a tuple of ints or None, got {axis!r}")
        a = operator.index(a)
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(
                f"{name}={axis!r} is out of bounds for an array of dimension {ndim}"
            )
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}={axis!r} repeats an axis")
    return tuple(sorted(out))


def _is_int(a: Any) -> bool:
    return not isinstance(a, bool) and hasattr(a, "__index__")


def check_temperature(temperature: Any) -> float:
    """A positive finite temperature, as a float."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating, np.integer)):
        raise TypeError(f"temperature must be a real number, got {type(temperature).__name__}")
    t = float(temperature)
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    return t


def _is_masked(x: Any) -> bool:
    # no masked array can exist before numpy.ma is imported: do not import it for the check
    # (numpy.ma costs ~25 ms of a new process)
    return "numpy.ma" in sys.modules and isinstance(x, np.ma.MaskedArray)


def unmask(x: Any, where: Any, name: str) -> tuple[Any, Any]:
    """A NumPy masked array as (its data, ``where`` with its masked entries False); others unchanged.

    The data under a mask can be anything (a placeholder, a huge number): it must never be
    computed on, so a reduction reads the mask as ``where``.
    """
    if not _is_masked(x):
        return x, where
    mask = np.ma.getmaskarray(x)
    keep = ~mask if where is None else np.logical_and(~mask, np.asarray(where))
    return np.asarray(x.data), keep


def refuse_masked(**arrays: Any) -> None:
    """TypeError for a NumPy masked array where the function has no way to leave entries out."""
    for name, x in arrays.items():
        if _is_masked(x):
            raise TypeError(
                f"{name} is a NumPy masked array; its masked entries cannot be left out here. "
                f"Pass {name}.filled(value) with the value you mean, or np.asarray({name}.data)"
            )


def broadcast_to_shape(xp: Any, arr: Array, shape: tuple[int, ...], name: str, target: str) -> Array:
    """``arr`` broadcast to ``shape``, or a ValueError naming both arguments."""
    try:
        return xp.broadcast_to(arr, shape)
    except (ValueError, RuntimeError) as err:
        raise ValueError(
            f"{name} of shape {tuple(arr.shape)} does not broadcast to {target}'s shape {shape}"
        ) from err


def apply_where(xp: Any, x: Array, where: Any, fill: float = -math.inf) -> Array:
    """``x`` with the entries where the mask ``where`` is False replaced by ``fill`` (−inf: they vanish)."""
    if where is None:
        return x
    mask = as_array(xp, where, "where")
    if not xp.isdtype(mask.dtype, "bool"):
        raise TypeError(f"where must be a boolean mask, got dtype {mask.dtype}")
    mask = broadcast_to_shape(xp, mask, tuple(x.shape), "where", "the input")
    return xp.where(mask, x, xp.asarray(fill, dtype=x.dtype))


def to_single_axis(xp: Any, x: Array, axes: tuple[int, ...]) -> tuple[Array, int]:
    """View ``x`` so that the reduction over ``axes`` is a reduction over one axis.

    One axis stays where it is (no copy); several are moved to the end and merged.
    """
    if len(axes) == 1:
        return x, axes[0]
    if x.ndim == 0:
        return xp.reshape(x, (1,)), 0
    keep = [d for d in range(x.ndim) if d not in axes]
    n = math.prod(x.shape[a] for a in axes)
    if keep:
        x = xp.permute_dims(x, tuple(keep) + axes)
    x = xp.reshape(x, tuple(x.shape[d] for d in range(len(keep))) + (n,))
    return x, len(keep)


def restore_axes(xp: Any, out: Array, axes: tuple[int, ...], keepdims: bool) -> Array:
    """Re-insert the reduced ``axes`` as length-1 dimensions when ``keepdims``."""
    if not keepdims:
        return out
    shape = list(out.shape)
    for a in axes:  # sorted, so each insertion lands at its final position
        shape.insert(a, 1)
    return xp.reshape(out, tuple(shape))


def log_nonneg(xp: Any, v: Array) -> Array:
    """``log(v)`` for ``v ≥ 0`` without a floating-point warning (``log 0 = −inf``, ``v < 0`` → NaN).

    Lazy backends (Dask) evaluate outside any ``errstate`` block, so the core avoids producing
    warnings in the first place rather than silencing them.
    """
    pos = v > 0
    out = xp.log(xp.where(pos, v, 1.0))
    return xp.where(pos, out, xp.where(v == 0, -math.inf, xp.full_like(v, math.nan)))


def device(x: Array) -> Any:
    """The device ``x`` lives on (every new array of a computation is made there)."""
    return array_api_compat.device(x)


def scalar_like(xp: Any, value: float, like: Array) -> Array:
    """``value`` as a 0-d array of ``like``'s dtype on ``like``'s device (a bare ``xp.asarray``
    lands on the default device, which ``where`` refuses to mix with another)."""
    return xp.asarray(value, dtype=like.dtype, device=device(like))


def argmax_mask(xp: Any, x: Array, axis: int) -> Array:
    """True at one maximal entry of each slice of ``x`` along ``axis`` (the first, or the first
    NaN, as ``argmax`` picks), False elsewhere; shaped like ``x``."""
    n = x.shape[axis]
    shape = [1] * x.ndim
    shape[axis] = n
    try:
        k = xp.argmax(x, axis=axis, keepdims=True)
    except ValueError:
        # array-api-strict's argmax returns int64 even on a device without it ("no_x64"): the
        # first index at the maximum (or at a NaN) in the device's own index dtype instead
        idx = xp.reshape(xp.arange(n, device=device(x)), tuple(shape))
        top = (x == xp.max(x, axis=axis, keepdims=True)) | xp.isnan(x)
        k = xp.min(xp.where(top, idx, xp.full_like(idx, n)), axis=axis, keepdims=True)
        return idx == k
    return xp.reshape(xp.arange(n, dtype=k.dtype, device=device(x)), tuple(shape)) == k


def fill(xp: Any, cond: Array, a: float, b: float, like: Array) -> Array:
    """``a`` where ``cond`` else ``b``, in ``like``'s dtype and shape (two scalars in one ``where``
    are not allowed by every namespace)."""
    return xp.where(cond, a, xp.full_like(like, b))


@contextlib.contextmanager
def quiet_fp() -> Iterator[None]:
    """Silence NumPy's floating-point warnings: −inf − (−inf), 0/0 and log(0) are handled by
    explicit selects afterwards, so the intermediate NaN/inf values are expected."""
    with np.errstate(all="ignore"):
        yield


# ------------------------------------------------------------------------------------------------
# Automatic differentiation where the Array API has no word for it (JAX and torch; others have none)
# ------------------------------------------------------------------------------------------------
def has_autodiff(xp: Any, x: Array) -> bool:
    """Whether a gradient may be taken through ``x``: always on JAX (tracing is invisible), on
    torch when the tensor requires one; never elsewhere."""
    if array_api_compat.is_jax_namespace(xp):
        return True
    return bool(array_api_compat.is_torch_namespace(xp) and getattr(x, "requires_grad", False))


def stop_gradient(xp: Any, x: Array) -> Array:
    """``x`` as a constant for automatic differentiation (JAX, torch); ``x`` itself elsewhere."""
    if array_api_compat.is_jax_namespace(xp):
        import jax

        return jax.lax.stop_gradient(x)
    if array_api_compat.is_torch_namespace(xp):
        return x.detach()
    return x


def finite_with_unit_derivative(xp: Any, x: Array) -> Array:
    """``x`` with its infinities replaced by 0, whose derivative is nevertheless 1 everywhere.

    No composition of smooth functions is finite at ``x = inf`` with a non-zero derivative
    there, so the derivative is given explicitly (``jax.custom_jvp``, a torch
    ``autograd.Function``). It lets a surrogate carry the derivative of an entry at +inf, where
    the value of the function is finite (the cross-entropy of a row with +inf logits).
    """
    if array_api_compat.is_jax_namespace(xp):
        return _jax_finite_with_unit_derivative()(x)
    if array_api_compat.is_torch_namespace(xp):
        return _torch_finite_with_unit_derivative().apply(x)
    return xp.where(xp.isinf(x), xp.zeros_like(x), x)


@functools.cache
def _jax_finite_with_unit_derivative() -> Any:
    import jax
    import jax.numpy as jnp

    @jax.custom_jvp
    def finite(x: Any) -> Any:
        return jnp.where(jnp.isinf(x), jnp.zeros_like(x), x)

    @finite.defjvp
    def _finite_jvp(primals: Any, tangents: Any) -> Any:
        return finite(primals[0]), tangents[0]

    return finite


@functools.cache
def _torch_finite_with_unit_derivative() -> Any:
    import torch

    class Finite(torch.autograd.Function):
        generate_vmap_rule = True  # forward is plain torch code: torch.func.vmap can batch it

        @staticmethod
        def forward(x: Any) -> Any:
            return torch.where(torch.isinf(x), torch.zeros_like(x), x)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            pass

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            return grad

        @staticmethod
        def jvp(ctx: Any, tangent: Any) -> Any:
            return tangent

    return Finite
