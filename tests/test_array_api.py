"""Namespace discovery, dtype promotion and argument checks (src/logsumexp/_array_api.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import logsumexp as lse
from logsumexp import _array_api as aa

INF, NAN = math.inf, math.nan


def test_lists_and_scalars_mean_numpy():
    assert aa.is_numpy(aa.namespace([1.0, 2.0]))
    assert aa.is_numpy(aa.namespace(3.0, None))
    assert aa.is_numpy(aa.namespace())


def test_namespace_of_each_backend(backend):
    xp = aa.namespace(backend.asarray(np.zeros(2)), None, 1.0)
    # NumPy >= 2.1 is its own Array API namespace (array_api_compat's wrapper costs a new process
    # ~0.1 s of imports): either is NumPy for the core
    assert xp is backend.xp or backend.name == "jax" or (aa.is_numpy(xp) and aa.is_numpy(backend.xp))
    assert aa.is_lazy(xp) == backend.lazy


def test_mixing_array_libraries_raises_type_error(backend):
    if backend.name in ("numpy", "numpy-core"):
        pytest.skip("needs a second array library than NumPy; covered by the other backends")
    if backend.name == "dask":
        pytest.skip("Dask wraps NumPy arrays (see test_numpy_weights_next_to_a_dask_array_are_wrapped)")
    with pytest.raises(TypeError, match="different array libraries"):
        lse.logsumexp(backend.asarray(np.zeros(3)), b=np.ones(3))


def test_numpy_weights_next_to_a_dask_array_are_wrapped():
    """As Dask's own functions do: a NumPy class weight or target next to Dask logits is wrapped."""
    da = pytest.importorskip("dask.array", reason="needs the package 'dask'")
    x = np.array([[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]])
    got = lse.logsumexp(da.from_array(x, chunks=1), axis=1, b=np.array([1.0, 2.0, 0.5]))
    np.testing.assert_allclose(got.compute(), lse.logsumexp(x, axis=1, b=np.array([1.0, 2.0, 0.5])), rtol=1e-15)
    torch = pytest.importorskip("torch", reason="a second non-NumPy library: 'torch'")
    with pytest.raises(TypeError, match="different array libraries"):
        lse.logsumexp(da.from_array(x, chunks=1), b=torch.ones(3))


def test_as_array_converts_lists_and_rejects_bad_input():
    xp = aa.namespace()
    assert aa.as_array(xp, [1, 2], "a").dtype == np.int64
    for bad, word in ([["x"], "numbers"], [[object()], "numbers"], [[[1], [1, 2]], "nested sequence"]):
        with pytest.raises(TypeError, match=f"a must .*{word}"):
            aa.as_array(xp, bad, "a")
    with pytest.raises(TypeError, match="real"):
        aa.as_array(xp, np.array([1j]), "a")


def test_float_dtype_and_default_float(backend):
    xp = backend.xp
    x32 = backend.asarray(np.zeros(1, np.float32))
    assert aa.float_dtype(xp, x32) == x32.dtype
    xi = backend.asarray(np.zeros(1, np.int64))
    assert aa.float_dtype(xp, xi) == aa.default_float(xp)
    assert aa.float_dtype(xp, xi, backend.dtype("float32")) == backend.dtype("float32")
    with pytest.raises(TypeError, match="dtype"):
        aa.float_dtype(xp, xi, backend.dtype("int64"))
    with pytest.raises(TypeError, match="dtype"):
        aa.float_dtype(xp, xi, "not a dtype")


def test_cpu_accumulation_is_float64(backend):
    """float16/bfloat16/float32 on a CPU are accumulated in float64."""
    xp = backend.xp
    for dt in backend.float_dtypes:
        x = backend.asarray(np.zeros(1), dt)
        assert aa.work_dtype(xp, x, x.dtype) == xp.float64


@pytest.mark.parametrize("axis,ndim,want", [
    (None, 3, (0, 1, 2)), (0, 3, (0,)), (-1, 3, (2,)), ((2, 0), 3, (0, 2)), ([1, -1], 3, (1, 2)),
    ((), 2, ()), (np.int64(1), 2, (1,)), (None, 0, ()), (0, 1, (0,)),
])
def test_normalize_axis(axis, ndim, want):
    assert aa.normalize_axis(axis, ndim) == want


@pytest.mark.parametrize("axis,exc", [(3, np.exceptions.AxisError), (-4, np.exceptions.AxisError),
                                      ((0, 0), ValueError), ((1, -2), ValueError), (1.0, TypeError),
                                      (True, TypeError), ("0", TypeError), ((0, None), TypeError)])
def test_normalize_axis_errors_name_the_argument(axis, exc):
    with pytest.raises(exc, match="axis"):
        aa.normalize_axis(axis, 3)


def test_empty_axis_tuple_reduces_nothing(backend):
    x = np.array([[0.0, -INF], [INF, 1.0]])
    got = backend.to_numpy(lse.logsumexp(backend.asarray(x), axis=()))
    np.testing.assert_array_equal(got, x)


@pytest.mark.parametrize("t", [1, 0.5, np.float32(2.0), np.int64(3), 1e-300])
def test_check_temperature_accepts_positive_reals(t):
    assert aa.check_temperature(t) == float(t)


@pytest.mark.parametrize("t,exc", [(0, ValueError), (-1.0, ValueError), (INF, ValueError), (NAN, ValueError),
                                   (True, TypeError), ("1", TypeError), (None, TypeError), (1j, TypeError)])
def test_check_temperature_rejects(t, exc):
    with pytest.raises(exc, match="temperature"):
        aa.check_temperature(t)


def test_log_nonneg_emits_no_warning_and_maps_specials(backend):
    v = backend.asarray(np.array([0.0, 1.0, -1.0, INF, math.e]))
    got = backend.to_numpy(aa.log_nonneg(backend.xp, v))
    np.testing.assert_array_equal(got[:4], [-INF, 0.0, NAN, INF])
    assert abs(got[4] - 1.0) <= 2.3e-16


def test_apply_where_fills_masked_entries(backend):
    x = backend.asarray(np.array([[1.0, 2.0], [3.0, 4.0]]))
    got = backend.to_numpy(aa.apply_where(backend.xp, x, backend.asarray(np.array([True, False]))))
    np.testing.assert_array_equal(got, [[1.0, -INF], [3.0, -INF]])
    assert aa.apply_where(backend.xp, x, None) is x


def test_to_single_axis_and_restore_axes_round_trip(backend):
    x = np.arange(24.0).reshape(2, 3, 4)
    xp = backend.xp
    flat, ax = aa.to_single_axis(xp, backend.asarray(x), (0, 2))
    flat = backend.to_numpy(flat)
    assert ax == 1 and flat.shape == (3, 8)
    np.testing.assert_array_equal(np.sort(flat, axis=1), np.sort(np.moveaxis(x, 1, 0).reshape(3, 8), axis=1))
    same, ax = aa.to_single_axis(xp, backend.asarray(x), (1,))
    assert ax == 1 and tuple(same.shape) == (2, 3, 4)
    out = aa.restore_axes(xp, backend.asarray(np.zeros(3)), (0, 2), True)
    assert tuple(out.shape) == (1, 3, 1)


def test_broadcast_error_names_both_arguments(backend):
    with pytest.raises(ValueError, match="where of shape .* input"):
        aa.broadcast_to_shape(backend.xp, backend.asarray(np.ones(3)), (2, 4), "where", "the input")
