"""The array core the way JAX users run it: under ``jax.jit``, ``jax.grad`` and ``jax.vmap``.

A device query on a tracer (ConcretizationTypeError) once broke every jitted call. The contract's
special values hold under autodiff too: an all −inf slice has a zero gradient (JAX's own
``jax.nn.logsumexp`` gives NaN there), ``k`` entries +inf share the gradient ``1/k``, a NaN makes the
gradient NaN in its slice only. Float64 needs ``jax_enable_x64`` (set by the fixture); float32 runs
both with it (accumulated in float64 on a CPU) and without it (accumulated in float32).
Jitted functions are built once per module and shapes kept small: every new shape compiles.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import numpy as np
import pytest
from _reference import mp_log_softmax, mp_lse

jax = pytest.importorskip("jax", reason="the JAX tests need the package 'jax'")
jnp = pytest.importorskip("jax.numpy", reason="the JAX tests need the package 'jax'")

import logsumexp as lse  # noqa: E402

INF, NAN = math.inf, math.nan
RTOL = {"float64": 1e-14, "float32": 3e-7}


@pytest.fixture(autouse=True)
def x64() -> Iterator[None]:
    """Float64 stays float64 (JAX's default silently gives float32)."""
    jax.config.update("jax_enable_x64", True)
    yield


@pytest.fixture
def no_x64() -> Iterator[None]:
    """JAX as configured by default: float32 only (the core then accumulates in float32)."""
    jax.config.update("jax_enable_x64", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", True)


# Built once: jax.jit caches the compiled program per shape and dtype.
@functools.cache
def jitted(name: str):
    programs = {
        "lse_rows": lambda v: lse.logsumexp(v, axis=1),
        "lse_grad": jax.grad(lambda v: lse.logsumexp(v, axis=1).sum()),
        "lse_value_and_grad": jax.value_and_grad(lambda v: lse.logsumexp(v)),
        "softmax": lambda v: lse.softmax(v),
        "log_softmax": lambda v: lse.log_softmax(v),
        "softmax_vjp": lambda v, c: jax.vjp(lse.softmax, v)[1](c)[0],
        "log_softmax_vjp": lambda v, c: jax.vjp(lse.log_softmax, v)[1](c)[0],
        "ce_none": lambda v, t: lse.cross_entropy(v, t, reduction="none"),
        "ce_grads": jax.grad(
            lambda v, w, t: lse.cross_entropy(v, t, weight=w, label_smoothing=0.1, ignore_index=1), argnums=(0, 1)
        ),
        "lse_where": lambda v, m: lse.logsumexp(v, axis=1, where=m),
    }
    return jax.jit(programs[name])


def rows(dtype: str = "float64") -> np.ndarray:
    return np.array([[0.5, -1.25, 3.0, 2.0], [1000.0, 1000.0, 1000.0, 1000.0], [-3.0, 0.0, 0.25, 10.0]], dtype=dtype)


# ------------------------------------------------------------------------------------------------
# jit, grad, vmap: values
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logsumexp_under_jit_matches_mpmath(dtype):
    x = rows(dtype)
    got = np.asarray(jitted("lse_rows")(jnp.asarray(x)))
    assert got.dtype == np.dtype(dtype)
    want = [float(mp_lse(r.astype(np.float64))) for r in x]
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logsumexp_gradient_under_jit_is_the_softmax(dtype):
    x = rows(dtype)
    got = np.asarray(jitted("lse_grad")(jnp.asarray(x)))
    want = np.array([[float(v) for v in np.exp(np.array(mp_log_softmax(r.astype(np.float64)), dtype=float))] for r in x])
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype])


def test_vmap_over_rows_equals_the_batched_call():
    x = jnp.asarray(rows())
    per_row = jax.jit(jax.vmap(lambda r: lse.logsumexp(r)))(x)
    np.testing.assert_array_equal(np.asarray(per_row), np.asarray(jitted("lse_rows")(x)))
    sm = jax.vmap(lambda r: lse.softmax(r))(x)
    np.testing.assert_allclose(np.asarray(sm), np.asarray(jitted("softmax")(x)), rtol=1e-15)


def test_vmap_on_special_rows_equals_the_batched_call():
    """+inf, all −inf and NaN rows under vmap (the shift selects, it never branches on values)."""
    x = jnp.asarray([[1.0, 2.0, INF], [INF, 0.5, INF], [-INF] * 3, [0.5, -1.0, 3.0], [NAN, 0.0, 1.0]])
    for fn in (lambda r: lse.logsumexp(r, axis=-1), lse.softmax, lse.log_softmax):
        got = np.asarray(jax.jit(jax.vmap(fn))(x))
        np.testing.assert_array_equal(got, np.asarray(jax.jit(fn)(x)))
    grad = np.asarray(jax.jit(jax.vmap(jax.grad(lambda r: lse.logsumexp(r, axis=-1))))(x))
    np.testing.assert_allclose(grad, np.asarray(lse.softmax(x)), rtol=1e-15)


def test_vmap_of_cross_entropy_over_a_leading_batch_axis():
    x = jnp.asarray(np.stack([rows(), rows()[::-1]]))
    t = jnp.asarray(np.array([[2, 0, 3], [1, 1, 0]]))
    got = jax.vmap(lambda v, tt: lse.cross_entropy(v, tt, reduction="none"))(x, t)
    want = np.stack([np.asarray(jitted("ce_none")(x[i], t[i])) for i in range(2)])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-15)


def test_softmax_and_log_softmax_under_jit_match_mpmath():
    """(jax.nn.log_softmax itself is 36 ulp off at the dominant entry of the last row.)"""
    x = rows()
    want = np.array([[float(v) for v in mp_log_softmax(r)] for r in x])
    np.testing.assert_allclose(np.asarray(jitted("log_softmax")(jnp.asarray(x))), want, rtol=1e-14)
    np.testing.assert_allclose(np.asarray(jitted("softmax")(jnp.asarray(x))), np.exp(want), rtol=1e-14)


def test_softmax_and_log_softmax_vjps_against_jax_nn():
    x = jnp.asarray(rows())
    c = jnp.asarray(np.arange(12.0).reshape(3, 4) / 7.0)
    for name, ref in (("softmax_vjp", jax.nn.softmax), ("log_softmax_vjp", jax.nn.log_softmax)):
        want = jax.vjp(ref, x)[1](c)[0]
        np.testing.assert_allclose(np.asarray(jitted(name)(x, c)), np.asarray(want), rtol=1e-12, atol=1e-14)


def test_cross_entropy_gradients_for_logits_and_class_weights_against_a_plain_formula():
    """The plain formula (torch's definition) differentiated by JAX on finite logits."""
    x = jnp.asarray(rows())
    w = jnp.asarray([0.5, 2.0, 1.0, 0.0])
    t = jnp.asarray([2, 1, 3])  # row 1 is ignored (ignore_index=1)

    def plain(v, ww):
        logp = jax.nn.log_softmax(v)
        eps, C = 0.1, v.shape[1]
        valid = t != 1
        tt = jnp.where(valid, t, 0)
        nll = -jnp.take_along_axis(logp, tt[:, None], axis=1)[:, 0] * ww[tt]
        smooth = -(logp * ww).sum(axis=1)
        loss = jnp.where(valid, (1 - eps) * nll + eps / C * smooth, 0.0)
        return loss.sum() / jnp.where(valid, ww[tt], 0.0).sum()

    gx, gw = jitted("ce_grads")(x, w, t)
    wx, ww = jax.grad(plain, argnums=(0, 1))(x, w)
    np.testing.assert_allclose(np.asarray(gx), np.asarray(wx), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.asarray(gw), np.asarray(ww), rtol=1e-12, atol=1e-15)


def test_where_mask_is_traced_under_jit():
    x = jnp.asarray(rows())
    m = jnp.asarray(np.array([[True, False, True, True], [False] * 4, [True] * 4]))
    got = np.asarray(jitted("lse_where")(x, m))
    want = [float(mp_lse([0.5, 3.0, 2.0])), -INF, float(mp_lse(rows()[2]))]
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_out_of_range_target_under_jit_gives_nan_rows():
    """A traced target cannot raise IndexError: its row is NaN instead (never a plausible loss)."""
    got = np.asarray(jitted("ce_none")(jnp.asarray(rows()), jnp.asarray([0, 9, 3])))
    assert math.isnan(got[1]) and np.isfinite(got[[0, 2]]).all()


# ------------------------------------------------------------------------------------------------
# Special values under autodiff
# ------------------------------------------------------------------------------------------------
def test_all_neginf_row_has_zero_gradient_not_nan():
    x = jnp.asarray([[-INF, -INF, -INF], [0.0, 1.0, 2.0]])
    g = np.asarray(jitted("lse_grad")(x))
    np.testing.assert_array_equal(g[0], [0.0, 0.0, 0.0])
    assert np.isfinite(g[1]).all()


def test_empty_and_all_neginf_value_and_grad():
    v, g = jitted("lse_value_and_grad")(jnp.asarray([-INF, -INF]))
    assert float(v) == -INF
    np.testing.assert_array_equal(np.asarray(g), [0.0, 0.0])


def test_posinf_entries_share_the_gradient_equally():
    x = jnp.asarray([[INF, 0.0, INF, -INF], [1.0, INF, 2.0, 3.0]])
    np.testing.assert_array_equal(np.asarray(jitted("lse_rows")(x)), [INF, INF])
    np.testing.assert_array_equal(np.asarray(jitted("lse_grad")(x)), [[0.5, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0]])


def test_nan_makes_the_gradient_nan_in_its_row_only():
    x = jnp.asarray([[0.0, NAN, 1.0], [0.0, 1.0, 2.0]])
    g = np.asarray(jitted("lse_grad")(x))
    assert np.isnan(g[0]).all()
    np.testing.assert_allclose(g[1], np.asarray(jax.nn.softmax(x[1])), rtol=1e-15)


def test_tied_maxima_share_the_gradient_equally():
    g = np.asarray(jitted("lse_grad")(jnp.asarray([[7.0, 7.0, 7.0], [-1e300, 1e300, 0.0]])))
    np.testing.assert_allclose(g, [[1 / 3] * 3, [0.0, 1.0, 0.0]], rtol=1e-15)


# ------------------------------------------------------------------------------------------------
# float32 without x64 (JAX's default configuration)
# ------------------------------------------------------------------------------------------------
def test_float32_without_x64_under_jit_and_grad(no_x64):
    x = jnp.asarray(rows("float32"))
    f = jax.jit(jax.value_and_grad(lambda v: lse.logsumexp(v, axis=1).sum()))
    v, g = f(x)
    assert v.dtype == jnp.float32 and g.dtype == jnp.float32
    want = sum(float(mp_lse(r.astype(np.float64))) for r in rows("float32"))
    assert float(v) == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(np.asarray(g).sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("target_dtype", ["int32", "int64"])
def test_cross_entropy_index_targets_without_x64_do_not_warn(no_x64, target_dtype):
    """Integer targets once went through ``astype(int64)``, which JAX without x64 answers with a
    UserWarning (an error here: warnings are errors) in eager calls, under jit and under grad.
    Values and gradients match the NumPy float64 core within float32 accuracy."""
    x = rows("float32")
    t = np.array([2, 0, 3], dtype=target_dtype)
    w = np.array([1.0, 0.5, 2.0, 0.25], dtype=np.float32)

    def loss(v, cw):
        return lse.cross_entropy(v, jnp.asarray(t), weight=cw, label_smoothing=0.1)

    want = lse.cross_entropy(x.astype(np.float64), t, weight=w.astype(np.float64), label_smoothing=0.1)
    want_grad = lse.cross_entropy_grad(x.astype(np.float64), t, weight=w.astype(np.float64), label_smoothing=0.1)
    eager = loss(jnp.asarray(x), jnp.asarray(w))
    value, (gx, gw) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(jnp.asarray(x), jnp.asarray(w))
    per_row = jax.jit(lambda v: lse.cross_entropy(v, jnp.asarray(t), reduction="none"))(jnp.asarray(x))
    assert value.dtype == jnp.float32 and gx.dtype == jnp.float32 and per_row.dtype == jnp.float32
    assert float(eager) == pytest.approx(want, rel=1e-6)
    assert float(value) == pytest.approx(want, rel=1e-6)
    want_rows = lse.cross_entropy(x.astype(np.float64), t, reduction="none")
    np.testing.assert_allclose(np.asarray(per_row), want_rows, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(gx), want_grad, rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(np.asarray(gw)))


@pytest.mark.parametrize("t", [1e-50, 1e-300, 1e300])
def test_temperature_outside_float32_range_without_x64(no_x64, t):
    """Without x64 the core works in float32, where 1e-50 rounds to 0 and 1e300 to inf: the
    temperature's limits hold under jit (arg max or uniform, never 0/0 = NaN), and so do the
    gradients (finite)."""
    x = jnp.asarray([[1.0, 2.0, -INF, 0.5], [3.0, 3.0, -1.0, -INF]], dtype=jnp.float32)
    p = np.asarray(jax.jit(lambda v: lse.softmax(v, temperature=t))(x))
    smax = np.asarray(jax.jit(lambda v: lse.smoothmax(v, axis=1, temperature=t))(x))
    if t < 1:
        np.testing.assert_array_equal(p, [[0, 1, 0, 0], [0.5, 0.5, 0, 0]])
        np.testing.assert_array_equal(smax, [2.0, 3.0])
    else:
        np.testing.assert_allclose(p, [[1 / 3, 1 / 3, 0, 1 / 3], [1 / 3, 1 / 3, 1 / 3, 0]], rtol=3e-7)
        np.testing.assert_array_equal(smax, [INF, INF])  # m + T·log 3 is above float32's range
    grad = np.asarray(jax.jit(jax.grad(lambda v: lse.log_softmax(v, temperature=t)[:, 0].sum()))(x))
    assert np.all(np.isfinite(grad))


def test_tiny_temperature_gradient_under_jit_is_finite():
    """softmax(x/T) with T = 1e-320: the gradient of the log-probability of the arg max is 0 (the
    rows are one-hot), not NaN, under jax.grad and jit."""
    x = jnp.asarray([[1.0, 2.0, 0.5]])
    grad = np.asarray(jax.jit(jax.grad(lambda v: lse.log_softmax(v, temperature=1e-320)[0, 1]))(x))
    np.testing.assert_array_equal(grad, [[0.0, 0.0, 0.0]])


def test_out_of_range_target_outside_jit_raises_numpys_index_error():
    """A concrete target is checked as on NumPy, with the same message (a NaN row used to come back
    silently, jit or not); under jax.grad of a function of the logits the target stays concrete."""
    x, t = np.zeros((3, 4)), np.array([0, 7, -100])
    with pytest.raises(IndexError) as numpy_error:
        lse.cross_entropy(x, t)
    for call in (
        lambda: lse.cross_entropy(jnp.asarray(x), jnp.asarray(t)),
        lambda: lse.cross_entropy(jnp.asarray(x), jnp.asarray(t), reduction="none"),
        lambda: lse.cross_entropy_grad(jnp.asarray(x), jnp.asarray(t)),
        lambda: jax.grad(lambda v: lse.cross_entropy(v, jnp.asarray(t)))(jnp.asarray(x)),
    ):
        with pytest.raises(IndexError) as jax_error:
            call()
        assert str(jax_error.value) == str(numpy_error.value)


def test_out_of_range_target_under_jit_gives_a_nan_row():
    """Inside jax.jit the target is a tracer: no exception is possible, so the bad row's loss and
    gradient are NaN (and the mean NaN), the other rows exact."""
    x, t = jnp.asarray(np.zeros((3, 4))), jnp.asarray(np.array([0, 7, -100]))
    rows = np.asarray(jitted("ce_none")(x, t))
    np.testing.assert_allclose(rows[[0, 2]], [math.log(4), 0.0], rtol=1e-15)
    assert math.isnan(rows[1])
    assert math.isnan(float(jax.jit(lambda v, u: lse.cross_entropy(v, u))(x, t)))
    grad = np.asarray(jax.jit(jax.grad(lambda v, u: lse.cross_entropy(v, u, reduction="sum")))(x, t))
    np.testing.assert_allclose(grad[0], [-0.75, 0.25, 0.25, 0.25], rtol=1e-15)
    assert np.all(np.isnan(grad[1])) and np.all(grad[2] == 0)


_POSINF_X = np.array([[0.0, INF, INF, 1.0], [0.0, INF, 2.0, -INF], [0.5, -1.0, 2.0, 0.0]])


@pytest.mark.parametrize("target", [[1, 2, 0], [0, 1, 3]], ids=["on_inf_and_finite", "off_inf"])
def test_cross_entropy_gradient_on_posinf_rows_is_softmax_minus_onehot(target):
    """k logits at +inf: the softmax is 1/k there, and the gradient of the loss is softmax − onehot
    (as lse.cross_entropy_grad gives), never 0 or NaN. The loss of such a row is computed from
    constants, so it was 0 under jax.grad; the float64 reference is the NumPy gradient."""
    t = np.array(target)
    w = np.array([1.0, 2.0, 0.5, 1.5])
    for weight, reduction in ((None, "mean"), (w, "mean"), (w, "sum")):
        want = lse.cross_entropy_grad(_POSINF_X, t, weight=weight, reduction=reduction)
        assert np.all(np.isfinite(want))

        def loss(v, u, cls_w, reduction=reduction):
            return lse.cross_entropy(v, u, weight=cls_w, reduction=reduction)

        cls_w = None if weight is None else jnp.asarray(weight)
        got = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(_POSINF_X), jnp.asarray(t), cls_w))
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-17)


@pytest.mark.parametrize("options", [{"label_smoothing": 0.2}, {"probabilities": True}], ids=["smoothing", "probabilities"])
def test_cross_entropy_gradient_on_posinf_rows_with_smoothing_or_probabilities(options):
    """The same contract with label smoothing and with probability targets (mass only on the +inf
    entries, so the loss is finite): (Σ coef)·softmax − coef, the NumPy cross_entropy_grad."""
    x = np.array([[0.0, INF, INF, 1.0], [0.5, -1.0, 2.0, 0.0]])
    if options.get("probabilities"):
        t, kw = np.array([[0.0, 0.25, 0.75, 0.0], [0.1, 0.2, 0.3, 0.4]]), {}
    else:
        t, kw = np.array([1, 3]), options
    want = lse.cross_entropy_grad(x, t, **kw)
    got = np.asarray(jax.jit(jax.grad(lambda v, u: lse.cross_entropy(v, u, **kw)))(jnp.asarray(x), jnp.asarray(t)))
    if kw:  # smoothing: every class has a coefficient, so the +inf row's loss is +inf; its gradient is finite
        assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-17)


# ------------------------------------------------------------------------------------------------
# The JAX-native path (_jax.py): taken, accurate in float64, special values under every transform
# ------------------------------------------------------------------------------------------------
def _primitives(fn, *args) -> set[str]:
    """Every primitive in the jaxpr of ``fn`` (custom_jvp bodies included)."""
    found: set[str] = set()

    def walk(jaxpr) -> None:
        for eqn in jaxpr.eqns:
            found.add(eqn.primitive.name)
            for p in eqn.params.values():
                for sub in p if isinstance(p, (list, tuple)) else [p]:
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        walk(inner)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


@pytest.mark.parametrize("op", ["logsumexp", "softmax", "log_softmax", "cross_entropy", "lse_grad"])
def test_the_jax_native_path_is_taken(op):
    """The generic state (``_state.block_state``) picks a leader with argmax; the native path has
    none and goes through a custom_jvp. A JAX array sent to the generic path fails this."""
    x = jnp.asarray(rows())
    fn = {
        "logsumexp": lambda v: lse.logsumexp(v, axis=1),
        "softmax": lse.softmax,
        "log_softmax": lse.log_softmax,
        "cross_entropy": lambda v: lse.cross_entropy(v, jnp.asarray([0, 1, 2])),
        "lse_grad": jax.grad(lambda v: lse.logsumexp(v, axis=1).sum()),
    }[op]
    prims = _primitives(fn, x)
    assert "custom_jvp_call" in prims, sorted(prims)
    assert not prims & {"argmax", "while", "scan"}, sorted(prims)


def test_two_nearly_equal_terms_keep_the_digits_of_a_result_near_zero():
    """LSE([log ½, log ½ + 1e−12]) ≈ 5.0e−13 cancels m ≈ −0.69 against log 2: jax.nn (and the plain
    shift) give 4.999334e−13 (1.6e−4 off); the near-max term summed as expm1 and log 2 in two
    parts give the NumPy face's 5.000121e−13."""
    x = np.array([math.log(0.5), math.log(0.5) + 1e-12])
    want = float(mp_lse(x))
    got = float(jax.jit(lambda v: lse.logsumexp(v))(jnp.asarray(x)))
    assert got == pytest.approx(want, rel=1e-13, abs=0)
    assert float(jax.nn.logsumexp(jnp.asarray(x))) != pytest.approx(want, rel=1e-6, abs=0)  # the case bites


def test_dominant_maximum_keeps_its_correction_in_float64():
    """[0, −40 × 999]: LSE = log1p(999 e^−40), log_softmax at 0 its negative, and the cross-entropy
    of the confident prediction the same, each to full relative accuracy (log(Σ) rounds them to 0)."""
    x = np.concatenate([[0.0], np.full(999, -40.0)])
    want = float(mp_lse(x))
    jx = jnp.asarray(x)
    assert float(jax.jit(lambda v: lse.logsumexp(v))(jx)) == pytest.approx(want, rel=1e-14, abs=0)
    assert float(jax.jit(lse.log_softmax)(jx)[0]) == pytest.approx(-want, rel=1e-14, abs=0)
    ce = jax.jit(lambda v: lse.cross_entropy(v[None], jnp.asarray([0])))(jx)
    assert float(ce) == pytest.approx(want, rel=1e-14, abs=0)


SPECIAL = np.array([[INF, 0.0, INF, -INF], [-INF, -INF, -INF, -INF], [NAN, 0.0, 1.0, 2.0], [0.5, -1.0, 3.0, 3.0]])


@pytest.mark.parametrize("config", ["x64", "float32_default"])
def test_special_rows_values_and_gradients_in_both_precisions(config, request):
    """The contract's special rows through the float64 (accurate) and float32 (jax.nn-like) paths,
    under jit and grad: +inf rows give +inf and the gradient 1/k; all −inf give −inf and 0; NaN
    stays in its row; softmax and log_softmax likewise."""
    if config == "float32_default":
        request.getfixturevalue("no_x64")
    dtype = "float64" if config == "x64" else "float32"
    x = jnp.asarray(SPECIAL.astype(dtype))
    v = np.asarray(jax.jit(lambda u: lse.logsumexp(u, axis=1))(x))
    g = np.asarray(jax.jit(jax.grad(lambda u: lse.logsumexp(u, axis=1).sum()))(x))
    assert v[0] == INF and v[1] == -INF and math.isnan(v[2])
    assert v[3] == pytest.approx(float(mp_lse(SPECIAL[3])), rel=RTOL[dtype])
    np.testing.assert_array_equal(g[0], [0.5, 0.0, 0.5, 0.0])
    np.testing.assert_array_equal(g[1], [0.0] * 4)
    assert np.isnan(g[2]).all()
    p3 = np.exp(np.array(mp_log_softmax(SPECIAL[3]), dtype=float))
    np.testing.assert_allclose(g[3], p3, rtol=RTOL[dtype])
    sm = np.asarray(jax.jit(lse.softmax)(x))
    ls = np.asarray(jax.jit(lse.log_softmax)(x))
    np.testing.assert_array_equal(sm[:2], [[0.5, 0.0, 0.5, 0.0], [0.0] * 4])
    np.testing.assert_array_equal(ls[:2], np.array([[-math.log(2), -INF, -math.log(2), -INF], [-INF] * 4], dtype=dtype))
    assert np.isnan(sm[2]).all() and np.isnan(ls[2]).all()
    np.testing.assert_allclose(sm[3], p3, rtol=RTOL[dtype])


def test_softmax_and_log_softmax_gradients_on_an_all_neginf_row_are_finite():
    """vjp of softmax there is 0; of log_softmax the cotangent itself minus 0·Σ (never NaN)."""
    x = jnp.asarray([[-INF, -INF, -INF], [0.0, 1.0, 2.0]])
    c = jnp.asarray([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    gs = np.asarray(jitted("softmax_vjp")(x, c))
    gl = np.asarray(jitted("log_softmax_vjp")(x, c))
    np.testing.assert_array_equal(gs[0], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(gl[0], [1.0, 2.0, 3.0])
    p = np.exp(np.array(mp_log_softmax([0.0, 1.0, 2.0]), dtype=float))
    np.testing.assert_allclose(gl[1], 1.0 - 3.0 * p, rtol=1e-14)  # c − softmax·Σc


def test_hessian_is_diag_p_minus_p_outer_p_with_special_rows():
    """jax.hessian (forward over reverse through the custom_jvp rules): diag(p) − p pᵀ on a finite
    row; −inf entries have zero rows and columns; an all −inf slice has a zero Hessian; NaN only
    in a NaN slice's block."""
    row = np.array([0.5, -1.0, 3.0, -INF])
    h = np.asarray(jax.jit(jax.hessian(lambda v: lse.logsumexp(v)))(jnp.asarray(row)))
    p = np.exp(np.array(mp_log_softmax(row), dtype=float))
    np.testing.assert_allclose(h, np.diag(p) - np.outer(p, p), rtol=1e-14, atol=1e-16)
    np.testing.assert_array_equal(h[3], 0.0)
    x = jnp.asarray([[-INF, -INF], [NAN, 1.0], [0.0, 0.0]])
    hb = np.asarray(jax.jit(jax.hessian(lambda v: lse.logsumexp(v, axis=1).sum()))(x))  # (3, 2, 3, 2)
    np.testing.assert_array_equal(hb[0, :, 0, :], 0.0)
    assert np.isnan(hb[1]).all()  # the NaN slice's gradient is NaN, so is its derivative in any direction
    np.testing.assert_allclose(hb[2, :, 2, :], [[0.25, -0.25], [-0.25, 0.25]], rtol=1e-15)
    for i, j in ((0, 1), (0, 2), (2, 0), (2, 1)):  # jax.nn's Hessian is NaN in blocks (0, j) too
        np.testing.assert_array_equal(hb[i, :, j, :], 0.0)


def test_axes_keepdims_where_temperature_and_empty_against_the_numpy_face():
    """The native path over a tuple of axes, with keepdims, a where mask, a temperature and an empty
    reduction gives the NumPy face's values (float64, 1e−14)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 5)) * 10
    mask = rng.random((3, 4, 5)) > 0.3
    cases = [
        lambda a, m: lse.logsumexp(a, axis=(0, 2), keepdims=True),
        lambda a, m: lse.logsumexp(a, axis=1, where=m),
        lambda a, m: lse.softmax(a, axis=(1, 2), temperature=0.3),
        lambda a, m: lse.log_softmax(a, axis=0),
    ]
    for call in cases:
        want = np.asarray(call(x, mask))
        got = np.asarray(jax.jit(call)(jnp.asarray(x), jnp.asarray(mask)))
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-300)
    empty = jnp.zeros((2, 0))
    np.testing.assert_array_equal(np.asarray(lse.logsumexp(empty, axis=1)), [-INF, -INF])
    assert lse.softmax(empty).shape == (2, 0)
