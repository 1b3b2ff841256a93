"""cross_entropy, cross_entropy_grad and binary_cross_entropy_with_logits
(src/logsumexp/_cross_entropy.py) against torch.nn.functional in float64 and against mpmath.

Tolerance against torch (float64, both well conditioned here): rtol 1e-13, atol 1e-15.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from _reference import MP, mp_lse, ulp_error

import logsumexp as lse

torch = pytest.importorskip("torch", reason="torch is the reference for cross-entropy semantics; needs the package 'torch'")
F = torch.nn.functional

INF, NAN = math.inf, math.nan
RTOL, ATOL = 1e-13, 1e-15


def t(a):
    return torch.as_tensor(np.asarray(a))


def close(got, want, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), rtol=rtol, atol=atol)


def make_case(seed: int, shape=(6, 5), ignore=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3
    target = rng.integers(0, shape[-1], shape[:-1])
    if ignore:
        target.reshape(-1)[::4] = -100
    w = rng.uniform(0.2, 2.0, shape[-1])
    q = rng.dirichlet(np.ones(shape[-1]), shape[:-1])
    return x, target, w, q


OPTIONS = list(itertools.product(["mean", "sum", "none"], [False, True], [0.0, 0.1, 1.0]))


def ce(x, target, weight, **options):
    """cross_entropy with the class weight positional, for ``backend.call`` (arrays are traced)."""
    return lse.cross_entropy(x, target, weight=weight, **options)


# ----------------------------------------------------------------------------------------------
# Against torch: every option combination
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction,weighted,smoothing", OPTIONS)
def test_index_targets_match_torch(backend, reduction, weighted, smoothing):
    x, target, w, _ = make_case(0)
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    want = F.cross_entropy(t(x), t(target), weight=t(w) if weighted else None, **kw)
    got = backend.call(ce, backend.asarray(x), backend.asarray(target), backend.asarray(w) if weighted else None, **kw)
    close(backend.to_numpy(got), want.numpy())


@pytest.mark.parametrize("reduction,weighted,smoothing", OPTIONS)
def test_probability_targets_match_torch(backend, reduction, weighted, smoothing):
    x, _, w, q = make_case(1)
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    want = F.cross_entropy(t(x), t(q), weight=t(w) if weighted else None, **kw)
    got = backend.call(ce, backend.asarray(x), backend.asarray(q), backend.asarray(w) if weighted else None, **kw)
    close(backend.to_numpy(got), want.numpy())


@pytest.mark.parametrize("ignore_index", [-100, 2, -1])
def test_ignore_index_matches_torch(backend, ignore_index):
    x, target, w, _ = make_case(2, ignore=False)
    target[1] = ignore_index
    target[4] = ignore_index
    for reduction in ("mean", "sum", "none"):
        want = F.cross_entropy(t(x), t(target), weight=t(w), ignore_index=ignore_index, reduction=reduction)
        got = lse.cross_entropy(backend.asarray(x), backend.asarray(target), weight=backend.asarray(w),
                                ignore_index=ignore_index, reduction=reduction)
        close(backend.to_numpy(got), want.numpy())


@pytest.mark.parametrize("target_kind", ["index", "probability"])
def test_nd_input_with_the_class_axis_last_and_moved(backend, target_kind):
    """Ours: classes on axis −1 by default (or any ``axis``); torch: dimension 1."""
    x, target, w, q = make_case(3, shape=(3, 4, 5))
    tgt = target if target_kind == "index" else q
    torch_tgt = t(target) if target_kind == "index" else t(np.moveaxis(q, -1, 1))
    for reduction, smoothing in itertools.product(("mean", "none"), (0.0, 0.2)):
        want = F.cross_entropy(t(np.moveaxis(x, -1, 1)), torch_tgt, weight=t(w), reduction=reduction, label_smoothing=smoothing)
        got = lse.cross_entropy(backend.asarray(x), backend.asarray(tgt), weight=backend.asarray(w),
                                reduction=reduction, label_smoothing=smoothing)
        close(backend.to_numpy(got), want.numpy())
        # the same logits with the classes on axis 1, as torch lays them out
        x1 = np.moveaxis(x, -1, 1)
        tgt1 = target if target_kind == "index" else np.moveaxis(q, -1, 1)
        got = lse.cross_entropy(backend.asarray(x1), backend.asarray(tgt1), axis=1, weight=backend.asarray(w),
                                reduction=reduction, label_smoothing=smoothing)
        close(backend.to_numpy(got), want.numpy())


def test_one_dimensional_logits_are_one_row(backend):
    x = np.array([1.0, 2.0, 0.5])
    want = F.cross_entropy(t(x), t(np.int64(1)))
    got = lse.cross_entropy(backend.asarray(x), backend.asarray(np.int64(1)))
    close(backend.to_numpy(got), want.numpy())


@pytest.mark.parametrize("num_items", [1, 7, 123.5])
def test_num_items_divides_the_sum(backend, num_items):
    x, target, w, q = make_case(4)
    for tgt in (target, q):
        want = F.cross_entropy(t(x), t(tgt), weight=t(w), reduction="sum") / num_items
        got = lse.cross_entropy(backend.asarray(x), backend.asarray(tgt), weight=backend.asarray(w), num_items=num_items)
        close(backend.to_numpy(got), want.numpy())


def test_all_ignored_batch_gives_zero_loss_and_zero_gradient(backend):
    x = np.random.default_rng(5).standard_normal((3, 4))
    target = np.full(3, -100)
    got = backend.to_numpy(lse.cross_entropy(backend.asarray(x), backend.asarray(target)))
    assert got == 0.0
    grad = backend.to_numpy(lse.cross_entropy_grad(backend.asarray(x), backend.asarray(target)))
    np.testing.assert_array_equal(grad, np.zeros((3, 4)))
    got = backend.to_numpy(lse.cross_entropy(backend.asarray(x), backend.asarray(target), reduction="sum"))
    assert got == 0.0


def test_zero_weight_on_every_target_gives_zero_mean(backend):
    x = np.random.default_rng(6).standard_normal((3, 4))
    w = np.array([0.0, 1.0, 1.0, 1.0])
    got = backend.to_numpy(lse.cross_entropy(backend.asarray(x), backend.asarray(np.zeros(3, dtype=np.int64)),
                                             weight=backend.asarray(w)))
    assert got == 0.0


# ----------------------------------------------------------------------------------------------
# Values and special values
# ----------------------------------------------------------------------------------------------
def test_equal_large_logits_give_log_3(backend):
    got = backend.to_numpy(lse.cross_entropy(backend.asarray(np.array([[1000.0, 1000.0, 1000.0]])),
                                             backend.asarray(np.array([0]))))
    assert ulp_error(got, MP.log(3), "float64") <= 0.5


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_confident_prediction_keeps_relative_accuracy(backend, dtype):
    """[[20, 0, 0]], target 0: the loss is log1p(2e^{−20}) = 4.1223072e−9 (float32); torch and
    LSE − x_t return 0. ≤ 2 ulp (the accuracy target)."""
    got = lse.cross_entropy(backend.asarray(np.array([[20.0, 0.0, 0.0]]), dtype), backend.asarray(np.array([0])))
    assert backend.dtype_name(got) == dtype
    exact = MP.log1p(2 * MP.exp(-20))
    assert ulp_error(backend.to_numpy(got), exact, dtype) <= 2.0


def test_loss_matches_mpmath_per_row(backend):
    x, target, _, _ = make_case(7, shape=(5, 9), ignore=False)
    x[0] = [50.0, 0, 0, 0, 0, 0, 0, 0, -3]
    target[0] = 0
    got = backend.to_numpy(lse.cross_entropy(backend.asarray(x), backend.asarray(target), reduction="none"))
    for i in range(5):
        exact = mp_lse(x[i]) - MP.mpf(float(x[i, target[i]]))
        assert ulp_error(got[i], exact, "float64") <= 2.0 + backend.ulp_slack


def test_special_logits_follow_the_table(backend):
    """all −inf → inf; k logits +inf including the target → log k; +inf elsewhere → inf;
    NaN stays in its row (reduction='none')."""
    x = np.array([
        [-INF, -INF, -INF],
        [INF, INF, 0.0],
        [0.0, INF, 1.0],
        [NAN, 0.0, 1.0],
        [1.0, 2.0, -INF],
    ])
    target = np.array([0, 0, 0, 1, 1])
    got = backend.to_numpy(backend.call(ce, backend.asarray(x), backend.asarray(target), None, reduction="none"))
    assert got[0] == INF
    assert ulp_error(got[1], MP.log(2), "float64") <= 0.5
    assert got[2] == INF
    assert np.isnan(got[3])
    assert ulp_error(got[4], MP.log1p(MP.exp(-1)), "float64") <= 1.5 + backend.ulp_slack


def test_zero_probability_on_a_neg_inf_logit_counts_as_zero(backend):
    x = np.array([[0.0, -INF, 1.0]])
    q = np.array([[0.5, 0.0, 0.5]])
    got = backend.to_numpy(lse.cross_entropy(backend.asarray(x), backend.asarray(q)))
    exact = MP.mpf(0.5) * (mp_lse([0.0, 1.0]) - 0) + MP.mpf(0.5) * (mp_lse([0.0, 1.0]) - 1)
    assert ulp_error(got, exact, "float64") <= 2.0 + backend.ulp_slack


def test_float32_and_float16_results_keep_their_dtype(backend):
    x, target, _, _ = make_case(8, ignore=False)
    for dtype in ("float16", "float32"):
        if dtype not in backend.float_dtypes:
            continue
        xr = x.astype(dtype)
        got = lse.cross_entropy(backend.asarray(xr), backend.asarray(target))
        assert backend.dtype_name(got) == dtype
        want = F.cross_entropy(t(xr.astype(np.float64)), t(target)).item()
        assert ulp_error(backend.to_numpy(got), MP.mpf(want), dtype) <= 0.51 + 1e-3


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------
def test_out_of_range_target_raises_index_error_naming_value_and_position(backend):
    x = np.zeros((3, 4))
    target = np.array([0, 7, 1])
    if backend.lazy:
        # Dask, and JAX under jit (backend.call), cannot raise at call time: that row's loss is NaN
        # instead (documented). JAX outside jit raises, as every eager backend does (below).
        got = backend.to_numpy(
            backend.call(lse.cross_entropy, backend.asarray(x), backend.asarray(target), reduction="none")
        )
        assert np.isnan(got[1]) and not np.isnan(got[[0, 2]]).any()
        if backend.name == "dask":
            return
    with pytest.raises(IndexError, match=r"target value 7 at position \(1,\)"):
        lse.cross_entropy(backend.asarray(x), backend.asarray(target))
    with pytest.raises(IndexError, match=r"target value -3 at position \(1, 0\)"):
        lse.cross_entropy(backend.asarray(np.zeros((2, 2, 4))), backend.asarray(np.array([[0, 1], [-3, 2]])))
    with pytest.raises(IndexError, match="target value 4"):
        lse.cross_entropy_grad(backend.asarray(x), backend.asarray(np.array([4, 0, 0])))


@pytest.mark.parametrize("kw,exc,word", [
    (dict(reduction="avg"), ValueError, "reduction"),
    (dict(label_smoothing=1.5), ValueError, "label_smoothing"),
    (dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
    (dict(label_smoothing="0.1"), TypeError, "label_smoothing"),
    (dict(ignore_index=1.5), TypeError, "ignore_index"),
    (dict(num_items=0), ValueError, "num_items"),
    (dict(num_items=-3.0), ValueError, "num_items"),
    (dict(num_items="4"), TypeError, "num_items"),
    (dict(num_items=4, reduction="sum"), ValueError, "num_items"),
    (dict(axis=1.0), TypeError, "axis"),
], ids=lambda v: str(v) if not isinstance(v, type) else v.__name__)
def test_bad_options_raise_naming_the_argument(backend, kw, exc, word):
    with pytest.raises(exc, match=word):
        lse.cross_entropy(backend.asarray(np.zeros((2, 3))), backend.asarray(np.array([0, 1])), **kw)


def test_bad_shapes_and_dtypes_raise_naming_the_argument(backend):
    x = backend.asarray(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="target"):
        lse.cross_entropy(x, backend.asarray(np.array([0, 1, 2])))
    with pytest.raises(ValueError, match="target"):
        lse.cross_entropy(x, backend.asarray(np.zeros((2, 4))))
    with pytest.raises(ValueError, match="weight"):
        lse.cross_entropy(x, backend.asarray(np.array([0, 1])), weight=backend.asarray(np.ones(4)))
    with pytest.raises(ValueError, match="logits"):
        lse.cross_entropy(backend.asarray(np.float64(1.0)), backend.asarray(np.int64(0)))
    with pytest.raises(TypeError, match="target"):
        lse.cross_entropy(x, backend.asarray(np.array([True, False])))
    with pytest.raises(TypeError, match="logits"):
        lse.cross_entropy(backend.asarray(np.zeros((2, 3), dtype=complex)), backend.asarray(np.array([0, 1])))
    with pytest.raises(np.exceptions.AxisError, match="axis"):
        lse.cross_entropy(x, backend.asarray(np.array([0, 1])), axis=2)


def test_string_logits_raise_type_error():
    with pytest.raises(TypeError, match="logits"):
        lse.cross_entropy([["a", "b"]], [0])


def test_results_are_numpy_scalars(np_backend):
    x, target, _, _ = make_case(9)
    assert type(lse.cross_entropy(x, target)) is np.float64
    assert type(lse.cross_entropy(x.astype(np.float32), target)) is np.float32
    assert type(lse.binary_cross_entropy_with_logits(x, (x > 0).astype(float))) is np.float64
    assert lse.cross_entropy(x, target, reduction="none").shape == (6,)


# ----------------------------------------------------------------------------------------------
# cross_entropy_grad against torch autograd
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction,weighted,smoothing", OPTIONS)
@pytest.mark.parametrize("target_kind", ["index", "probability"])
def test_grad_matches_torch_autograd(backend, reduction, weighted, smoothing, target_kind):
    x, target, w, q = make_case(10, shape=(3, 4, 5))
    tgt = target if target_kind == "index" else q
    tx = t(np.moveaxis(x, -1, 1)).requires_grad_(True)
    ttgt = t(target) if target_kind == "index" else t(np.moveaxis(q, -1, 1))
    loss = F.cross_entropy(tx, ttgt, weight=t(w) if weighted else None, reduction=reduction, label_smoothing=smoothing)
    g_out = np.random.default_rng(11).standard_normal(tuple(loss.shape)) if reduction == "none" else None
    loss.backward(t(g_out) if g_out is not None else None)
    want = np.moveaxis(tx.grad.numpy(), 1, -1)
    got = lse.cross_entropy_grad(
        backend.asarray(x), backend.asarray(tgt), weight=backend.asarray(w) if weighted else None,
        reduction=reduction, label_smoothing=smoothing,
        grad_output=None if g_out is None else backend.asarray(g_out),
    )
    close(backend.to_numpy(got), want)


def test_grad_with_num_items_and_class_axis(backend):
    x, target, w, _ = make_case(12, shape=(2, 5, 3))  # classes on axis 1 (torch layout)
    target = np.random.default_rng(12).integers(0, 5, (2, 3))
    tx = t(x).requires_grad_(True)
    (F.cross_entropy(tx, t(target), weight=t(w[:5] if w.size >= 5 else np.ones(5)), reduction="sum") / 17.0).backward()
    got = lse.cross_entropy_grad(backend.asarray(x), backend.asarray(target), axis=1,
                                 weight=backend.asarray(w[:5] if w.size >= 5 else np.ones(5)), num_items=17)
    close(backend.to_numpy(got), tx.grad.numpy())


def test_grad_output_only_with_reduction_none(backend):
    x = backend.asarray(np.zeros((2, 3)))
    tgt = backend.asarray(np.array([0, 1]))
    with pytest.raises(ValueError, match="grad_output"):
        lse.cross_entropy_grad(x, tgt, reduction="none")
    with pytest.raises(ValueError, match="grad_output"):
        lse.cross_entropy_grad(x, tgt, grad_output=backend.asarray(np.ones(2)))


def test_grad_of_special_rows_is_never_nan_where_defined(backend):
    """An all −inf row gives zero softmax; the gradient there is −w_t·onehot (finite), not NaN."""
    x = np.array([[-INF, -INF, -INF], [0.0, 0.0, 0.0]])
    got = backend.to_numpy(lse.cross_entropy_grad(backend.asarray(x), backend.asarray(np.array([1, 0])), reduction="sum"))
    np.testing.assert_array_equal(got[0], [0.0, -1.0, 0.0])
    close(got[1], [-2 / 3, 1 / 3, 1 / 3])


# ----------------------------------------------------------------------------------------------
# binary_cross_entropy_with_logits
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pos", [None, "vector", "scalar"])
def test_bce_matches_torch(backend, reduction, weighted, pos):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 3)) * 5
    y = rng.uniform(0, 1, (4, 3))
    y[0] = [0.0, 1.0, 0.5]
    w = rng.uniform(0.1, 2.0, (4, 3)) if weighted else None
    pw = {None: None, "vector": rng.uniform(0.5, 3.0, 3), "scalar": np.array([2.5])}[pos]
    want = F.binary_cross_entropy_with_logits(t(x), t(y), weight=None if w is None else t(w),
                                              pos_weight=None if pw is None else t(pw), reduction=reduction)
    got = lse.binary_cross_entropy_with_logits(
        backend.asarray(x), backend.asarray(y), weight=None if w is None else backend.asarray(w),
        pos_weight=None if pw is None else backend.asarray(pw), reduction=reduction)
    close(backend.to_numpy(got), want.numpy())


def test_bce_special_values_are_never_nan(backend):
    x = np.array([INF, INF, -INF, -INF, 800.0, -800.0])
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    got = backend.to_numpy(lse.binary_cross_entropy_with_logits(backend.asarray(x), backend.asarray(y), reduction="none"))
    np.testing.assert_array_equal(got, [0.0, INF, 0.0, INF, 0.0, 0.0])
    got = backend.to_numpy(lse.binary_cross_entropy_with_logits(
        backend.asarray(x[[0, 2]]), backend.asarray(y[[0, 2]]), pos_weight=backend.asarray(np.array([3.0])), reduction="sum"))
    assert got == 0.0


def test_bce_confident_logits_keep_relative_accuracy(backend):
    """softplus(−x) for x = 40, y = 1: e^{−40} = 4.25e−18 (log(1 + e^{−x}) rounds to 0)."""
    x, y = np.array([40.0, -40.0, 0.0]), np.array([1.0, 0.0, 1.0])
    got = backend.to_numpy(lse.binary_cross_entropy_with_logits(backend.asarray(x), backend.asarray(y), reduction="none"))
    for g, exact in zip(got, [MP.log1p(MP.exp(-40)), MP.log1p(MP.exp(-40)), MP.log(2)]):
        assert ulp_error(g, exact, "float64") <= 1.5 + backend.ulp_slack


def test_bce_bad_arguments_raise(backend):
    x = backend.asarray(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="reduction"):
        lse.binary_cross_entropy_with_logits(x, x, reduction="avg")
    with pytest.raises(ValueError, match="target"):
        lse.binary_cross_entropy_with_logits(x, backend.asarray(np.zeros((3, 2))))
    with pytest.raises(ValueError, match="pos_weight"):
        lse.binary_cross_entropy_with_logits(x, x, pos_weight=backend.asarray(np.ones(2)))
    with pytest.raises(ValueError, match="weight"):
        lse.binary_cross_entropy_with_logits(x, x, weight=backend.asarray(np.ones(4)))
    with pytest.raises(TypeError, match="logits"):
        lse.binary_cross_entropy_with_logits(backend.asarray(np.zeros(2, dtype=complex)), backend.asarray(np.zeros(2)))


def test_bce_empty_mean_is_zero_like_sum(np_backend):
    got = lse.binary_cross_entropy_with_logits(np.zeros(0), np.zeros(0))
    assert got == 0.0


# --------------------------------------------------------------------------------------------
# Found by a new user: masked arrays, Dask batches of invalid targets
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["logits", "target", "weight"])
def test_masked_array_is_refused_naming_the_argument(which):
    """cross_entropy has no `where`: a masked row gave 999.0 computed on the masked value."""
    args = {"logits": np.array([[1.0, 2.0, 1000.0]]), "target": np.array([0]), "weight": np.ones(3)}
    args[which] = np.ma.array(args[which], mask=np.zeros(np.shape(args[which]), dtype=bool))
    with pytest.raises(TypeError, match=f"{which} is a NumPy masked array"):
        lse.cross_entropy(args["logits"], args["target"], weight=args["weight"])


def test_masked_array_is_refused_by_binary_cross_entropy():
    with pytest.raises(TypeError, match="logits is a NumPy masked array"):
        lse.binary_cross_entropy_with_logits(np.ma.array([1.0, 2.0], mask=[0, 1]), np.array([1.0, 0.0]))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_dask_batch_with_every_target_out_of_range_is_nan_not_zero(reduction):
    """A lazy backend cannot raise: every row out of range gave 0.0, a perfect loss."""
    da = pytest.importorskip("dask.array", reason="the Dask backend needs the package 'dask'")
    x = da.from_array(np.zeros((4, 3)), chunks=2)
    t = da.from_array(np.array([5, 7, -1, 3]), chunks=2)
    got = float(lse.cross_entropy(x, t, reduction=reduction).compute(scheduler="synchronous"))
    assert math.isnan(got)
    grad = lse.cross_entropy_grad(x, t, reduction=reduction).compute(scheduler="synchronous")
    assert np.isnan(grad).all()


def test_dask_batch_with_every_row_ignored_is_still_zero():
    da = pytest.importorskip("dask.array", reason="the Dask backend needs the package 'dask'")
    x = da.from_array(np.zeros((4, 3)), chunks=2)
    t = da.from_array(np.full(4, -100), chunks=2)
    assert float(lse.cross_entropy(x, t).compute(scheduler="synchronous")) == 0.0
    np.testing.assert_array_equal(lse.cross_entropy_grad(x, t).compute(scheduler="synchronous"), 0.0)


_POSINF_X = np.array([[0.0, INF, INF, 1.0], [0.0, INF, 2.0, -INF], [0.5, -1.0, 2.0, 0.0]])


@pytest.mark.parametrize("target", [[1, 2, 0], [0, 1, 3]], ids=["on_inf_and_finite", "off_inf"])
@pytest.mark.parametrize("weighted", [False, True])
def test_torch_autograd_through_the_core_on_posinf_rows_is_softmax_minus_onehot(target, weighted):
    """torch tensors through the array core: k logits at +inf give the gradient softmax − onehot
    (1/k on the +inf entries), the gradient lse.cross_entropy_grad computes; autograd gave 0 on
    such rows (their loss is made of constants), and the second derivative stays finite."""
    t = np.array(target)
    w = np.array([1.0, 2.0, 0.5, 1.5]) if weighted else None
    x = torch.tensor(_POSINF_X, requires_grad=True)
    loss = lse.cross_entropy(x, torch.as_tensor(t), weight=None if w is None else torch.as_tensor(w))
    (grad,) = torch.autograd.grad(loss, x, create_graph=True)
    want = lse.cross_entropy_grad(_POSINF_X, t, weight=w)
    np.testing.assert_allclose(grad.detach().numpy(), want, rtol=1e-15, atol=1e-17)
    (second,) = torch.autograd.grad(grad[2].sum(), x)
    assert torch.isfinite(second).all()
    cls_w = None if w is None else torch.as_tensor(w)
    functional = torch.func.grad(lambda v: lse.cross_entropy(v, torch.as_tensor(t), weight=cls_w))(x.detach())
    np.testing.assert_allclose(functional.numpy(), want, rtol=1e-15, atol=1e-17)


def test_posinf_rows_keep_their_loss_values_under_autograd():
    """The surrogate that carries the +inf rows' gradient adds exactly 0 to the loss."""
    t = np.array([1, 0, 2])
    x = torch.tensor(_POSINF_X, requires_grad=True)
    got = lse.cross_entropy(x, torch.as_tensor(t), reduction="none").detach().numpy()
    np.testing.assert_array_equal(got, lse.cross_entropy(_POSINF_X, t, reduction="none"))
