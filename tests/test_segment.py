"""Grouped LogSumExp, softmax and log-softmax (``segment_*``): the array core on every backend, the
torch face (autograd, ``torch.compile``), and PyTorch Geometric as a client where it is installed.

Values are checked per group against mpmath (50 digits) on groups of the accuracy families (dominant
groups included), given in shuffled order with empty groups between them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _reference import mp_log_softmax, mp_lse, mp_softmax, ulp_error

import logsumexp as lse
from logsumexp import _segment

NUM = 48  # groups 2s hold data, odd groups are empty


def _groups(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(24):
        n = int(rng.integers(1, 120))
        out.append(
            [
                lambda: rng.normal(size=n),
                lambda: 1000 + rng.normal(size=n),
                lambda: np.concatenate([[0.0], np.full(n, -40.0)]),  # dominant: LSE = n·e^-40
                lambda: np.concatenate([[0.0], rng.uniform(-25, -15, n)]),
                lambda: rng.uniform(-30, 30, n),
                lambda: -1000 + rng.normal(size=n),
            ][k % 6]()
        )
    return out


def _shuffled(groups: list[np.ndarray], seed: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.concatenate([np.full(len(g), 2 * s) for s, g in enumerate(groups)])
    x = np.concatenate(groups)
    p = np.random.default_rng(seed).permutation(len(x))
    return x[p], ids[p]


@pytest.fixture(scope="module")
def family_case():
    groups = _groups(0)
    x, ids = _shuffled(groups, 1)
    lse_ref = [mp_lse(g) for g in groups]
    ls_ref, sm_ref = {}, {}
    for s in range(len(groups)):
        sel = np.flatnonzero(ids == 2 * s)
        ls_ref[s] = (sel, mp_log_softmax(list(x[sel])), mp_softmax(list(x[sel])))
    return x, ids, lse_ref, ls_ref


# Float64 bounds, in ulp. NumPy: the tail summed pairwise per group from split exps (double-double)
# and the finish rounded once: <= 1 ulp (measured 0.99). The other backends sum the tail with their
# scatter-add, in input order, in plain float64: groups of ~100 equal terms (the [0, -40 x n] family)
# lose up to ~n/10 roundings there (measured 12.2 ulp; 51 ulp for n = 999). Softmax: e^(x-m) corrected
# for the rounding of x - m, then divided: four roundings (measured 2.7 ulp NumPy).
LSE_ULP = {"numpy": 1.0, "numpy-core": 1.0}
OTHER_ULP = 13.0
SOFTMAX_ULP_NUMPY = 3.0


def _bound(backend, numpy_bound):
    return numpy_bound if backend.name in ("numpy", "numpy-core") else OTHER_ULP + backend.ulp_slack


def test_logsumexp_per_group_matches_mpmath(backend, family_case):
    x, ids, ref, _ = family_case
    out = backend.to_numpy(backend.call(lse.segment_logsumexp, backend.asarray(x), backend.asarray(ids), num_segments=NUM))
    assert out.shape == (NUM,) and out.dtype == np.float64
    assert np.all(out[1::2] == -np.inf)  # empty groups
    worst = max(ulp_error(out[2 * s], r, "float64") for s, r in enumerate(ref))
    assert worst <= _bound(backend, 1.0)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_normalized_per_group_matches_mpmath(backend, family_case, log):
    x, ids, _, per_group = family_case
    fn = lse.segment_log_softmax if log else lse.segment_softmax
    out = backend.to_numpy(backend.call(fn, backend.asarray(x), backend.asarray(ids), num_segments=NUM))
    assert out.shape == x.shape
    worst = 0.0
    for sel, ls, sm in per_group.values():
        exact = ls if log else sm
        worst = max(worst, max(ulp_error(a, b, "float64") for a, b in zip(out[sel], exact)))
    assert worst <= _bound(backend, 1.0 if log else SOFTMAX_ULP_NUMPY)


def test_dominant_group_keeps_relative_accuracy(backend):
    x = np.concatenate([[0.0], np.full(999, -40.0), [3.0]])
    ids = np.concatenate([np.zeros(1000, int), [1]])
    out = backend.to_numpy(backend.call(lse.segment_logsumexp, backend.asarray(x), backend.asarray(ids), num_segments=2))
    # naive log(sum) returns exactly 0 here; the answer is log1p(999 e^-40) ~ 4.2e-15. Off NumPy the
    # 999 equal terms are added one after another by the scatter-add (measured 51 ulp: 1.2e-14 relative)
    bound = 1.0 if backend.name in ("numpy", "numpy-core") else 64.0 + backend.ulp_slack
    assert ulp_error(out[0], mp_lse(x[:1000]), "float64") <= bound
    ls = backend.to_numpy(backend.call(lse.segment_log_softmax, backend.asarray(x), backend.asarray(ids), num_segments=2))
    assert ls[0] < 0 and ulp_error(ls[0], mp_log_softmax(list(x[:1000]))[0], "float64") <= bound


SPECIAL_X = np.array([-np.inf, 1.0, np.inf, -np.inf, np.nan, 2.0, np.inf, 5.0, -np.inf, 0.0])
SPECIAL_IDS = np.array([0, 4, 2, 0, 3, 4, 2, 2, 5, 3])
# groups: 0 all -inf, 1 empty, 2 two +inf and 5, 3 NaN, 4 finite, 5 one -inf


def test_special_groups(backend):
    x, ids = backend.asarray(SPECIAL_X), backend.asarray(SPECIAL_IDS)
    out = backend.to_numpy(backend.call(lse.segment_logsumexp, x, ids, num_segments=6))
    assert out[0] == -np.inf and out[1] == -np.inf and out[2] == np.inf and np.isnan(out[3])
    assert out[4] == pytest.approx(np.logaddexp(1.0, 2.0), rel=1e-15) and out[5] == -np.inf
    sm = backend.to_numpy(backend.call(lse.segment_softmax, x, ids, num_segments=6))
    np.testing.assert_array_equal(sm[[0, 3, 8]], [0.0, 0.0, 0.0])  # all -inf groups: 0, never NaN
    np.testing.assert_array_equal(sm[[2, 6, 7]], [0.5, 0.5, 0.0])  # two +inf entries share
    assert np.isnan(sm[[4, 9]]).all() and not np.isnan(np.delete(sm, [4, 9])).any()  # NaN stays in group 3
    np.testing.assert_allclose(sm[[1, 5]], [1 / (1 + np.e), np.e / (1 + np.e)], rtol=1e-15)
    ls = backend.to_numpy(backend.call(lse.segment_log_softmax, x, ids, num_segments=6))
    np.testing.assert_array_equal(ls[[0, 3, 8, 7]], [-np.inf] * 4)
    np.testing.assert_allclose(ls[[2, 6]], [-math.log(2)] * 2, rtol=1e-15)
    assert np.isnan(ls[[4, 9]]).all() and not np.isnan(np.delete(ls, [4, 9])).any()


def test_carried_axes_are_reduced_column_by_column(backend):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 3, 2)) * 5
    ids = rng.integers(0, 7, 40)
    out = backend.to_numpy(backend.call(lse.segment_logsumexp, backend.asarray(x), backend.asarray(ids), num_segments=7))
    sm = backend.to_numpy(backend.call(lse.segment_softmax, backend.asarray(x), backend.asarray(ids), num_segments=7))
    assert out.shape == (7, 3, 2) and sm.shape == x.shape
    for s in range(7):
        np.testing.assert_allclose(out[s], lse.logsumexp(x[ids == s], axis=0), rtol=4e-15)
        np.testing.assert_allclose(sm[ids == s], lse.softmax(x[ids == s], axis=0), rtol=1e-14)


def test_indptr_is_the_sorted_layout(backend):
    rng = np.random.default_rng(4)
    counts = np.array([3, 0, 5, 1, 0, 7])
    indptr = np.concatenate([[0], np.cumsum(counts)])
    x = rng.normal(size=(indptr[-1], 2))
    ids = np.repeat(np.arange(6), counts)
    via_ptr = backend.to_numpy(backend.call(lambda v, p: lse.segment_logsumexp(v, indptr=p), backend.asarray(x), backend.asarray(indptr)))
    via_ids = lse.segment_logsumexp(x, ids, num_segments=6)
    np.testing.assert_array_equal(via_ptr[[1, 4]], -np.inf)
    np.testing.assert_allclose(via_ptr, via_ids, rtol=4e-15)
    ls = backend.to_numpy(backend.call(lambda v, p: lse.segment_log_softmax(v, indptr=p), backend.asarray(x), backend.asarray(indptr)))
    np.testing.assert_allclose(ls, lse.segment_log_softmax(x, ids, 6), rtol=4e-15)


def test_weights(backend):
    scipy_special = pytest.importorskip("scipy.special", reason="the weighted reference needs scipy")
    rng = np.random.default_rng(5)
    x = rng.normal(size=30) * 3
    b = rng.uniform(0.1, 2.0, 30)
    x[4], b[4] = np.inf, 0.0  # weight 0 removes its term, even at +inf
    ids = rng.integers(0, 4, 30)
    out = backend.to_numpy(
        backend.call(lambda v, i, w: lse.segment_logsumexp(v, i, 5, b=w), backend.asarray(x), backend.asarray(ids), backend.asarray(b))
    )
    ref = [scipy_special.logsumexp(x[ids == s], b=b[ids == s]) if (ids == s).any() else -np.inf for s in range(5)]
    np.testing.assert_allclose(out, ref, rtol=4e-15)


def test_float32_comes_back_float32_correctly_rounded(np_backend):
    rng = np.random.default_rng(6)
    x = (rng.normal(size=200) * 4).astype(np.float32)
    ids = rng.integers(0, 9, 200)
    out = lse.segment_logsumexp(x, ids)
    assert out.dtype == np.float32 and out.shape == (9,)
    worst = max(ulp_error(out[s], mp_lse(x[ids == s]), "float32") for s in range(9))
    assert worst <= 0.51  # accumulated in float64, rounded once to float32


def test_num_segments_defaults_to_max_id_plus_one():
    assert lse.segment_logsumexp(np.zeros(3), [0, 4, 4]).shape == (5,)
    assert lse.segment_softmax(np.zeros((0, 2)), np.zeros(0, int)).shape == (0, 2)
    assert lse.segment_logsumexp(np.zeros((0, 2)), np.zeros(0, int), 3).tolist() == [[-np.inf] * 2] * 3


def test_numpy_state_is_the_swappable_hook(monkeypatch):
    calls = []

    def fake(x, ids, num_segments):
        calls.append(num_segments)
        shape = (num_segments, *x.shape[1:])
        return np.zeros(shape), np.ones(shape), np.full(shape, math.e - 1)  # a plain 3-tuple

    monkeypatch.setattr(_segment, "_numpy_segment_state", fake)
    from logsumexp import _cpu

    with _cpu.disabled():  # the compiled kernels take unweighted groups end to end; the hook is the rest
        np.testing.assert_allclose(lse.segment_logsumexp(np.zeros(4), [0, 1, 1, 2]), [1.0, 1.0, 1.0], rtol=1e-15)
    assert calls == [3]


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------
def test_out_of_range_id_names_the_first_one_and_its_position():
    with pytest.raises(IndexError, match=r"segment_ids\[2\] = 7 .*num_segments=3"):
        lse.segment_logsumexp(np.zeros(5), [0, 1, 7, -1, 9], num_segments=3)
    with pytest.raises(IndexError, match=r"segment_ids\[1\] = -2"):
        lse.segment_softmax(np.zeros(3), [0, -2, 1])


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"segment_ids": [0, 1], "indptr": [0, 2]}, ValueError, "exactly one of segment_ids and indptr"),
        ({}, ValueError, "exactly one of segment_ids and indptr"),
        ({"segment_ids": [0.0, 1.0]}, TypeError, "segment_ids must hold integers"),
        ({"segment_ids": [0, 1, 2]}, ValueError, r"segment_ids must be shape \(2,\)"),
        ({"segment_ids": [0, 1], "num_segments": -1}, ValueError, "num_segments must be >= 0"),
        ({"segment_ids": [0, 1], "num_segments": True}, TypeError, "num_segments must be an int"),
        ({"indptr": [1, 2]}, ValueError, "indptr must start at 0 and end at x.shape"),
        ({"indptr": [0, 2, 1, 2]}, ValueError, r"indptr must be non-decreasing; indptr\[2\]"),
        ({"indptr": [0, 1, 2], "num_segments": 3}, ValueError, "disagrees with len"),
        ({"indptr": [[0, 2]]}, ValueError, "indptr must be a 1-d array"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, err, match):
    with pytest.raises(err, match=match):
        lse.segment_logsumexp(np.zeros(2), **kwargs)


def test_zero_dimensional_x_is_refused():
    with pytest.raises(ValueError, match="x must have at least one dimension"):
        lse.segment_softmax(np.float64(1.0), [0])


def test_bad_weights_shape_names_b():
    with pytest.raises(ValueError, match="b of shape"):
        lse.segment_logsumexp(np.zeros(3), [0, 0, 1], b=np.ones(2))


# ------------------------------------------------------------------------------------------------
# JAX: jit, grad, vmap, higher orders
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def jax_mod():
    jax = pytest.importorskip("jax", reason="the JAX tests need the package 'jax'")
    jax.config.update("jax_enable_x64", True)
    return jax


def _naive_jax(jax, x, ids, s):
    m = jax.lax.stop_gradient(jax.ops.segment_max(x, ids, s))
    return m + jax.numpy.log(jax.ops.segment_sum(jax.numpy.exp(x - m[ids]), ids, s))


def test_jax_gradients_match_autodiff_of_the_naive_form(jax_mod):
    jax, jnp = jax_mod, jax_mod.numpy
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(50, 3)))
    ids = jnp.asarray(rng.integers(0, 6, 50))
    w = jnp.asarray(rng.normal(size=(6, 3)))
    ours = jax.jit(jax.grad(lambda v: (lse.segment_logsumexp(v, ids, 6) * w).sum()))(x)
    ref = jax.grad(lambda v: (_naive_jax(jax, v, ids, 6) * w).sum())(x)
    np.testing.assert_allclose(ours, ref, rtol=1e-13, atol=1e-15)
    g = jax.jit(jax.grad(lambda v: (lse.segment_softmax(v, ids, 6) * x).sum()))(x)
    gref = jax.grad(lambda v: (jnp.exp(v - _naive_jax(jax, v, ids, 6)[ids]) * x).sum())(x)
    np.testing.assert_allclose(g, gref, rtol=1e-12, atol=1e-14)
    g = jax.jit(jax.grad(lambda v: (lse.segment_log_softmax(v, ids, 6) * x).sum()))(x)
    gref = jax.grad(lambda v: ((v - _naive_jax(jax, v, ids, 6)[ids]) * x).sum())(x)
    np.testing.assert_allclose(g, gref, rtol=1e-12, atol=1e-14)


def test_jax_gradient_is_zero_on_an_all_neg_inf_group_and_shared_on_inf(jax_mod):
    jax, jnp = jax_mod, jax_mod.numpy
    x, ids = jnp.asarray(SPECIAL_X), jnp.asarray(SPECIAL_IDS)
    g = jax.jit(jax.grad(lambda v: lse.segment_logsumexp(v, ids, 6)[jnp.array([0, 2, 4, 5])].sum()))(x)
    np.testing.assert_array_equal(np.asarray(g)[[0, 3, 8]], 0.0)
    np.testing.assert_array_equal(np.asarray(g)[[2, 6, 7]], [0.5, 0.5, 0.0])
    assert not np.isnan(np.delete(np.asarray(g), [4, 9])).any()  # only the NaN group's own entries
    h = jax.hessian(lambda v: lse.segment_logsumexp(v, ids, 6)[0])(x)
    np.testing.assert_array_equal(np.delete(np.delete(np.asarray(h), [4, 9], 0), [4, 9], 1), 0.0)  # all -inf group


def test_jax_hessian_is_the_softmax_jacobian(jax_mod):
    jax, jnp = jax_mod, jax_mod.numpy
    x = jnp.asarray([0.3, -1.0, 2.0, 0.5])
    ids = jnp.asarray([0, 1, 0, 0])
    h = np.asarray(jax.hessian(lambda v: lse.segment_logsumexp(v, ids, 2)[0])(x))
    p = np.asarray(lse.segment_softmax(np.asarray(x), np.asarray(ids)))
    p[1] = 0.0
    np.testing.assert_allclose(h, np.diag(p) - np.outer(p, p), atol=1e-15)


def test_jax_vmap_and_jit_without_num_segments(jax_mod):
    jax, jnp = jax_mod, jax_mod.numpy
    rng = np.random.default_rng(8)
    xs = rng.normal(size=(4, 20))
    ids = rng.integers(0, 5, 20)
    out = jax.jit(jax.vmap(lambda v: lse.segment_log_softmax(v, jnp.asarray(ids), 5)))(jnp.asarray(xs))
    for row, o in zip(xs, np.asarray(out)):
        np.testing.assert_allclose(o, lse.segment_log_softmax(row, ids, 5), rtol=1e-14)
    with pytest.raises(ValueError, match="num_segments must be given"):
        jax.jit(lambda v, i: lse.segment_logsumexp(v, i))(jnp.zeros(3), jnp.asarray([0, 1, 1]))


def test_jax_out_of_range_ids_under_jit_are_dropped(jax_mod):
    jax, jnp = jax_mod, jax_mod.numpy
    x = jnp.asarray([1.0, 2.0, 3.0])
    ids = jnp.asarray([0, 9, 0])
    out = jax.jit(lambda v, i: lse.segment_logsumexp(v, i, 2))(x, ids)
    np.testing.assert_allclose(out, [np.logaddexp(1.0, 3.0), -np.inf], rtol=1e-15)
    sm = np.asarray(jax.jit(lambda v, i: lse.segment_softmax(v, i, 2))(x, ids))
    assert np.isnan(sm[1]) and sm[0] + sm[2] == pytest.approx(1.0, rel=1e-15)


# ------------------------------------------------------------------------------------------------
# torch through the array core: autograd
# ------------------------------------------------------------------------------------------------
def test_core_torch_autograd_gradcheck_and_special_groups():
    torch = pytest.importorskip("torch", reason="the torch tests need the package 'torch'")
    rng = np.random.default_rng(9)
    x = torch.tensor(rng.normal(size=(12, 2)), requires_grad=True)
    ids = torch.tensor(rng.permutation(np.arange(12) % 4))  # no empty group: -inf has no finite difference
    b = torch.tensor(rng.uniform(0.5, 2, (12, 2)), requires_grad=True)
    for fn in (lse.segment_softmax, lse.segment_log_softmax):
        assert torch.autograd.gradcheck(lambda v: fn(v, ids, 5), (x,))
        assert torch.autograd.gradgradcheck(lambda v: fn(v, ids, 5), (x,))
    assert torch.autograd.gradcheck(lambda v, w: lse.segment_logsumexp(v, ids, 4, b=w), (x, b))
    xs = torch.tensor(SPECIAL_X, requires_grad=True)
    lse.segment_logsumexp(xs, torch.tensor(SPECIAL_IDS), 6)[[0, 2, 4, 5]].sum().backward()
    np.testing.assert_array_equal(xs.grad.numpy()[[0, 3, 8, 2, 6, 7]], [0, 0, 0, 0.5, 0.5, 0])
    assert not torch.isnan(xs.grad[[0, 1, 2, 3, 5, 6, 7, 8]]).any()  # NaN only on the NaN group's entries


# ------------------------------------------------------------------------------------------------
# The torch face: PyTorch Geometric's call shape
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tface():
    torch = pytest.importorskip("torch", reason="the torch face needs the package 'torch'")
    from logsumexp import torch as lt

    return torch, lt


def test_torch_face_matches_the_array_core(tface):
    torch, lt = tface
    rng = np.random.default_rng(10)
    x = rng.normal(size=(3, 50, 2)) * 10
    ids = rng.integers(0, 8, 50)
    src, index = torch.tensor(x), torch.tensor(ids)
    core = {"softmax": lse.segment_softmax, "log_softmax": lse.segment_log_softmax}
    for name, fn in (("softmax", lt.segment_softmax), ("log_softmax", lt.segment_log_softmax)):
        want = np.moveaxis(core[name](np.moveaxis(x, 1, 0), ids, 8), 0, 1)
        np.testing.assert_allclose(fn(src, index, num_nodes=8, dim=1).numpy(), want, rtol=1e-14, atol=1e-300)
    want = np.moveaxis(lse.segment_logsumexp(np.moveaxis(x, 1, 0), ids, 9), 0, 1)
    got = lt.segment_logsumexp(src, index, num_nodes=9, dim=-2)
    assert got.shape == (3, 9, 2)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-15)
    order = np.argsort(ids, kind="stable")
    ptr = torch.tensor(np.concatenate([[0], np.cumsum(np.bincount(ids, minlength=8))]))
    np.testing.assert_allclose(
        lt.segment_softmax(src[:, order], ptr=ptr, dim=1).numpy(), lt.segment_softmax(src, index, dim=1)[:, order].numpy(), rtol=1e-15
    )


def test_torch_face_float32_is_accumulated_in_float64(tface):
    torch, lt = tface
    x = np.concatenate([[0.0], np.full(999, -20.0)]).astype(np.float32)
    out = lt.segment_logsumexp(torch.tensor(x), torch.zeros(1000, dtype=torch.long))
    assert out.dtype == torch.float32
    assert ulp_error(float(out[0]), mp_lse(x), "float32") <= 0.5  # 999 e^-20 ~ 2.06e-6, correctly rounded


def test_torch_face_special_groups_and_gradients(tface):
    torch, lt = tface
    x = torch.tensor(SPECIAL_X, requires_grad=True)
    idx = torch.tensor(SPECIAL_IDS)
    sm = lt.segment_softmax(x, idx, num_nodes=6)
    np.testing.assert_array_equal(sm.detach().numpy()[[0, 3, 8, 2, 6, 7]], [0, 0, 0, 0.5, 0.5, 0])
    assert torch.isnan(sm[[4, 9]]).all() and not torch.isnan(sm[[0, 1, 2, 3, 5, 6, 7, 8]]).any()
    out = lt.segment_logsumexp(x, idx, num_nodes=6)
    assert out[0] == -math.inf and out[1] == -math.inf and out[2] == math.inf and torch.isnan(out[3])
    out[[0, 1, 2, 4, 5]].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[[0, 3, 8, 2, 6, 7]], [0, 0, 0, 0.5, 0.5, 0])
    assert not torch.isnan(x.grad[[0, 1, 2, 3, 5, 6, 7, 8]]).any()
    x.grad = None
    (lt.segment_softmax(x, idx, num_nodes=6) * torch.arange(10.0)).nansum().backward()
    assert not torch.isnan(x.grad[[0, 3, 8]]).any() and (x.grad[[0, 3, 8]] == 0).all()


def test_torch_face_gradcheck(tface):
    torch, lt = tface
    rng = np.random.default_rng(11)
    x = torch.tensor(rng.normal(size=(14, 3)), requires_grad=True)
    idx = torch.tensor(rng.permutation(np.arange(14) % 5))
    for fn in (lt.segment_softmax, lt.segment_log_softmax, lt.segment_logsumexp):
        assert torch.autograd.gradcheck(lambda v: fn(v, idx, num_nodes=5), (x,))
        assert torch.autograd.gradgradcheck(lambda v: fn(v, idx, num_nodes=5), (x,))


# torch 2.13's dynamo instantiates the autograd.Function it traces and warns about its own doing
@pytest.mark.filterwarnings("ignore:<class 'torch.autograd.function.Function'> should not be instantiated:DeprecationWarning")
def test_torch_face_compiles_fullgraph(tface):
    torch, lt = tface
    rng = np.random.default_rng(12)
    x = torch.tensor(rng.normal(size=(30, 4)), requires_grad=True)
    idx = torch.tensor(rng.integers(0, 6, 30))

    def f(v, i):
        return (lt.segment_softmax(v, i, num_nodes=7) * v).sum() + lt.segment_logsumexp(v, i, num_nodes=7)[:6].sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got = compiled(x, idx)
    (gx,) = torch.autograd.grad(got, x)
    want = f(x, idx)
    (wx,) = torch.autograd.grad(want, x)
    torch.testing.assert_close(got, want, rtol=1e-14, atol=0)
    torch.testing.assert_close(gx, wx, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"index": None}, ValueError, "exactly one of index and ptr"),
        ({"index": [0, 9, 1]}, IndexError, r"index\[1\] = 9 is out of range for num_nodes=3"),
        ({"index": [0, 1]}, ValueError, "index must be a 1-d integer tensor"),
        ({"ptr": [0, 1, 3], "num_nodes": 3}, ValueError, "disagrees with ptr"),
        ({"index": [0, 1, 1], "dim": 2}, ValueError, "dim=2 is out of range"),
    ],
)
def test_torch_face_bad_arguments(tface, kwargs, err, match):
    torch, lt = tface
    kw = {k: torch.tensor(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    kw.setdefault("num_nodes", 3)
    with pytest.raises(err, match=match):
        lt.segment_softmax(torch.zeros(3), **kw)


# ------------------------------------------------------------------------------------------------
# PyTorch Geometric as a client
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pyg(tface):
    return pytest.importorskip("torch_geometric", reason="the PyG comparison needs the package 'torch_geometric'")


def test_pyg_softmax_agrees_on_ordinary_groups(tface, pyg):
    torch, lt = tface
    from torch_geometric.utils import softmax as pyg_softmax

    rng = np.random.default_rng(13)
    src = torch.tensor(rng.normal(size=(400, 8)) * 3)
    index = torch.tensor(rng.integers(0, 60, 400))
    # PyG: exp of the rounded shift, + 1e-16, a division, all in float64 (measured 5.4e-16 apart)
    torch.testing.assert_close(lt.segment_softmax(src, index, num_nodes=60), pyg_softmax(src, index, num_nodes=60), rtol=2e-15, atol=0)
    # an all -inf group (every in-edge masked): PyG's softmax gives NaN (its shift is -inf - -inf), ours 0
    blocked = torch.tensor([-np.inf, -np.inf])
    assert torch.isnan(pyg_softmax(blocked, torch.tensor([0, 0]))).all()
    assert (lt.segment_softmax(blocked, torch.tensor([0, 0])) == 0).all()


def _gat_losses(torch, pyg, softmax_fn, monkeypatch, steps=20):
    import torch_geometric.nn.conv.gat_conv as gat_conv
    from torch_geometric.nn import GATConv

    monkeypatch.setattr(gat_conv, "softmax", softmax_fn)
    gen = torch.Generator().manual_seed(0)
    n, f = 60, 6
    x = torch.randn(n, f, generator=gen, dtype=torch.float64)
    edges = torch.randint(0, n - 1, (2, 300), generator=gen)  # node n-1 receives and sends nothing
    y = torch.randint(0, 3, (n,), generator=gen)
    torch.manual_seed(1)
    conv1 = GATConv(f, 8, heads=4, add_self_loops=False).double()
    conv2 = GATConv(32, 3, heads=1, add_self_loops=False).double()
    opt = torch.optim.Adam([*conv1.parameters(), *conv2.parameters()], lr=0.01)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        h = torch.nn.functional.elu(conv1(x, edges))
        out, (_, att) = conv2(h, edges, return_attention_weights=True)
        loss = torch.nn.functional.cross_entropy(out, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses), out.detach(), att.detach(), conv1.lin.weight.grad


def test_pyg_gat_trains_to_the_same_loss_curve_with_our_softmax(tface, pyg, monkeypatch):
    torch, lt = tface
    from torch_geometric.utils import softmax as pyg_softmax

    ref, _, _, _ = _gat_losses(torch, pyg, pyg_softmax, monkeypatch)
    ours, out, att, grad = _gat_losses(torch, pyg, lt.segment_softmax, monkeypatch)
    assert ref[-1] < ref[0]  # it does train
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=0)
    assert torch.isfinite(out[-1]).all()  # the isolated node: no in-edges, output = bias, not NaN
    assert torch.isfinite(att).all() and torch.isfinite(grad).all()


def test_pyg_gat_isolated_target_with_masked_edges_gets_zero_attention_not_nan(tface, pyg):
    torch, lt = tface
    # every in-edge of node 1 masked to -inf (e.g. by an attention mask): PyG's softmax gives 0 only
    # through its 1e-16 guard; ours gives 0 by rule, and a zero gradient
    alpha = torch.tensor([[0.5], [-np.inf], [-np.inf], [1.0]], dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0, 1, 1, 0])
    p = lt.segment_softmax(alpha, index, num_nodes=2)
    assert (p[1:3] == 0).all() and not torch.isnan(p).any()
    (p * torch.arange(4.0, dtype=torch.float64)[:, None]).sum().backward()
    assert (alpha.grad[1:3] == 0).all() and torch.isfinite(alpha.grad).all()
