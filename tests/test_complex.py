"""Complex LogSumExp (src/logsumexp/_complex.py): SciPy 1.17's semantics on every namespace.

Regression tests named after SciPy's issues (gh-21610 wrapped phase, gh-21709 small imaginary
parts, gh-22601 infinities, gh-23548 signs); references from mpmath (50 digits) or, for the
special values, the direct ``log(sum(exp(z)))`` of NumPy's C99 complex functions (as SciPy's own
test does). Tolerances: 2 ulp of float64 on the parts (the real part of a dominant-term sum
relative to its own size, which the naive form loses entirely); complex64 results within 1 ulp
of float32 of the complex128 answer (accumulated in complex128 on a CPU).
"""

from __future__ import annotations

import itertools
import math

import mpmath
import numpy as np
import pytest

import logsumexp as lse

EPS64 = np.finfo(np.float64).eps
EPS32 = np.finfo(np.float32).eps
mpmath.mp.dps = 50


def mp_lse_complex(z, b=None) -> complex:
    """log(Σ b e^z) in 50 digits, principal branch."""
    b = np.ones(len(z)) if b is None else b
    total = mpmath.fsum(mpmath.mpc(complex(bi)) * mpmath.exp(mpmath.mpc(complex(zi))) for zi, bi in zip(z, b))
    return complex(mpmath.log(total))


def assert_parts_close(got: complex, want: complex, ulps: float = 2.0, scale: float | None = None) -> None:
    """Real and imaginary parts each within ``ulps`` float64 ulps of the reference (of ``scale``
    when given: an imaginary part near 0 is held to the phase's scale)."""
    for g, w in ((got.real, want.real), (got.imag, want.imag)):
        ref = abs(w) if scale is None else max(abs(w), scale)
        assert abs(g - w) <= ulps * EPS64 * max(ref, np.finfo(np.float64).tiny), (got, want)


def test_gh21610_imaginary_part_wrapped_to_principal_branch(backend):
    rng = np.random.default_rng(324984329582349862)
    z = rng.uniform(1, 40, (3, 20)) + 1j * rng.uniform(1, 40, (3, 20))
    got = backend.to_numpy(lse.logsumexp(backend.asarray(z), axis=1))
    assert got.dtype == np.complex128
    assert (np.abs(got.imag) <= math.pi).all()
    for i in range(3):
        assert_parts_close(complex(got[i]), mp_lse_complex(z[i]), ulps=4.0, scale=math.pi)


def test_gh21709_small_imaginary_part_keeps_relative_accuracy(backend):
    z = np.array([0.0, 2.2204460492503132e-17j])
    got = complex(backend.to_numpy(lse.logsumexp(backend.asarray(z))))
    want = mp_lse_complex(z)  # 0.6931471805599453 + 1.1102230246251566e-17j
    assert_parts_close(got, want, ulps=1.0)


def test_dominant_term_real_part_keeps_relative_accuracy(backend):
    """The max term out of the sum and log1p, as in the real case: log(1 + 999 e^-40 e^{ik})
    has a real part of ~4.2e-15 that the plain shift rounds to 0.6% off."""
    z = np.concatenate([[0.0 + 0.0j], -40.0 + 1j * np.linspace(-0.1, 0.1, 999)])
    got = complex(backend.to_numpy(lse.logsumexp(backend.asarray(z))))
    want = mp_lse_complex(z)
    assert abs(got.real - want.real) <= 2 * EPS64 * abs(want.real)
    assert abs(got.imag - want.imag) <= 2 * EPS64 * abs(want.imag) + 1e-30


_INFS = [
    -np.inf, np.inf, complex(-np.inf, 0.0), complex(-np.inf, np.inf), complex(np.inf, np.inf),
    complex(np.inf, -np.inf), complex(-np.inf, 2.3562), complex(np.inf, 3.9270), complex(np.inf, 0.7533),
]


@pytest.mark.parametrize("x,y", list(itertools.product(_INFS, repeat=2)), ids=str)
def test_gh22601_infinite_elements_follow_c99(x, y):
    z = np.array([x, y], dtype=np.complex128)
    with np.errstate(all="ignore"):
        want = np.log(np.sum(np.exp(z)))
    got = lse.logsumexp(z)
    np.testing.assert_array_equal(got, want)


def test_gh23548_sign_of_infinite_real_result(backend):
    val, sign = lse.logsumexp(backend.asarray(np.array([np.inf])), b=backend.asarray(np.array([-1.0])), return_sign=True)
    assert backend.to_numpy(val) == np.inf and backend.to_numpy(sign) == -1.0


def test_complex_return_sign_is_the_phase(backend):
    z = np.array([1 + 1j, 2 - 1j, -2 + 3j])
    res, sign = lse.logsumexp(backend.asarray(z), return_sign=True)
    res, sign = backend.to_numpy(res), complex(backend.to_numpy(sign))
    total = complex(mpmath.fsum(mpmath.exp(mpmath.mpc(complex(v))) for v in z))
    assert res.dtype == np.float64
    assert abs(float(res) - math.log(abs(total))) <= 2 * EPS64 * abs(math.log(abs(total)))
    assert abs(sign - total / abs(total)) <= 4 * EPS64


def test_complex_sum_that_cancels_is_minus_inf_with_sign_zero():
    res, sign = lse.logsumexp(np.array([0.0 + 0j, 0.0 + 0j]), b=np.array([1.0, -1.0]), return_sign=True)
    assert res == -np.inf and sign == 0


def test_negative_real_weights_give_the_imaginary_pi():
    """A negative sum is log|S| + iπ in complex (NaN only for real results)."""
    got = complex(lse.logsumexp(np.array([0.0 + 0j, 0.0 + 0j]), b=np.array([1.0, -3.0])))
    assert_parts_close(got, complex(math.log(2.0), math.pi))


def test_complex_weights_with_real_input():
    a, b = np.array([1.0, 2.0]), np.array([1j, 2.0 - 1j])
    assert_parts_close(complex(lse.logsumexp(a, b=b)), mp_lse_complex(a, b), scale=math.pi)


def test_complex64_is_accumulated_wide_and_returned_as_complex64(backend):
    z = np.array([1000 + 1j, 1000 - 2j, 999.5 + 0.5j], dtype=np.complex64)
    got = backend.to_numpy(lse.logsumexp(backend.asarray(z)))
    assert got.dtype == np.complex64
    want = mp_lse_complex(z.astype(np.complex128))
    assert abs(complex(got) - want) <= EPS32 * abs(want)


def test_complex_where_keepdims_and_axes(backend):
    z = np.arange(12).reshape(2, 3, 2) * (0.5 + 0.25j)
    mask = np.ones(z.shape, dtype=bool)
    mask[0, 1, 0] = False
    got = backend.to_numpy(lse.logsumexp(backend.asarray(z), axis=(0, 2), keepdims=True, where=backend.asarray(mask)))
    assert got.shape == (1, 3, 1)
    for j in range(3):
        keep = z[:, j, :][mask[:, j, :]]
        assert_parts_close(complex(got[0, j, 0]), mp_lse_complex(keep), ulps=4.0, scale=math.pi)


def test_complex_empty_is_minus_inf():
    got = lse.logsumexp(np.zeros((2, 0), dtype=complex), axis=1)
    np.testing.assert_array_equal(got, np.full(2, complex(-np.inf, 0.0)))


def test_complex_dtype_argument_must_be_complex():
    with pytest.raises(TypeError, match="dtype"):
        lse.logsumexp(np.array([1j]), dtype=np.float64)
    assert lse.logsumexp(np.array([1j]), dtype=np.complex64).dtype == np.complex64


def test_complex_gradient_matches_autograd_of_the_naive_formula():
    """torch: d Re LSE(z) / dz (torch's conjugate Wirtinger convention) equals that of the naive
    log(sum(exp(z))) on moderate inputs, i.e. conj(softmax(z))."""
    torch = pytest.importorskip("torch", reason="needs the package 'torch'")
    z0 = torch.tensor([1 + 1j, 2 - 1j, -2 + 3j], dtype=torch.complex128)
    z1 = z0.clone().requires_grad_(True)
    lse.logsumexp(z1).real.backward()
    z2 = z0.clone().requires_grad_(True)
    torch.log(torch.sum(torch.exp(z2))).real.backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=4 * EPS64, atol=0)


def test_complex_gradient_on_jax():
    jax = pytest.importorskip("jax", reason="needs the package 'jax'")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    z = jnp.asarray([1 + 1j, 2 - 1j, -2 + 3j])
    got = jax.grad(lambda v: jnp.real(lse.logsumexp(v)))(z)
    want = jax.grad(lambda v: jnp.real(jnp.log(jnp.sum(jnp.exp(v)))))(z)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=4 * EPS64, atol=0)


def test_softmax_of_complex_input_raises_type_error():
    with pytest.raises(TypeError, match="complex"):
        lse.softmax(np.array([1j, 2.0]))
    with pytest.raises(TypeError, match="complex"):
        lse.log_softmax(np.array([1j, 2.0]))
