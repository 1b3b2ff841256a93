"""Gradients where users take them: class weights, torch.func, second derivatives.

References are torch's own functions (``F.cross_entropy``, ``torch.logsumexp``, ...) or, for the
class-weight gradient torch refuses to give, the loss written out with ``log_softmax`` in float64.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the torch face needs PyTorch")
F = torch.nn.functional

import logsumexp.torch as L  # noqa: E402

F64 = dict(rtol=1e-12, atol=1e-13)


def _x(*shape, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * 2
    return x.requires_grad_() if grad else x


def _written_out(x, t, w, eps=0.0, reduction="mean", ignore_index=-100):
    """torch's weighted, smoothed cross-entropy as formulas on log_softmax (differentiable in w)."""
    logp = torch.log_softmax(x, 1)
    valid = t != ignore_index
    tc = torch.where(valid, t, 0)
    nll = -logp.gather(1, tc[:, None])[:, 0]
    c = x.shape[1]
    rows = (1 - eps) * w[tc] * nll + (eps / c) * (-(logp * w).sum(1))
    rows = torch.where(valid, rows, 0.0)
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    return rows.sum() / torch.where(valid, w[tc], 0.0).sum()


# --------------------------------------------------------------------------- class weights


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_class_weight_gradient_matches_written_out_loss(reduction, eps):
    x = _x(7, 5, grad=False)
    t = torch.tensor([0, 1, 3, 4, -100, 1, 0])
    w = torch.tensor([0.5, 1.0, 2.0, 0.0, 1.5], dtype=torch.float64, requires_grad=True)
    ours = L.cross_entropy(x, t, weight=w, reduction=reduction, label_smoothing=eps)
    ref = _written_out(x, t, w, eps, reduction)
    torch.testing.assert_close(ours, ref, **F64)
    seed = torch.arange(1.0, 8.0, dtype=torch.float64) if reduction == "none" else None
    (g,) = torch.autograd.grad(ours, w, seed)
    (g_ref,) = torch.autograd.grad(ref, w, seed)
    torch.testing.assert_close(g, g_ref, **F64)
    assert g[2] == 0 or eps > 0  # class 2 is nobody's target: only smoothing reaches it


def test_class_weight_gradcheck_with_probability_targets():
    q = torch.softmax(_x(4, 5, seed=2, grad=False), 1)
    w = (torch.rand(5, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, w: L.cross_entropy(x, q, weight=w, label_smoothing=0.1, z_loss=0.01), (_x(4, 5), w)
    )


def test_class_weight_gradient_is_not_the_denominator_term_alone():
    """The numerator's term was missing once: compare with a finite difference directly."""
    x = _x(4, 5, seed=3, grad=False)
    t = torch.tensor([0, 1, 3, 4])
    w = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0], dtype=torch.float64, requires_grad=True)
    L.cross_entropy(x, t, weight=w).backward()
    h = 1e-6
    for c in range(5):
        e = torch.zeros(5, dtype=torch.float64)
        e[c] = h
        fd = (L.cross_entropy(x, t, weight=w.detach() + e) - L.cross_entropy(x, t, weight=w.detach() - e)) / (2 * h)
        assert w.grad[c].item() == pytest.approx(fd.item(), rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("kw", [{}, dict(label_smoothing=0.1), dict(softcap=3.0, z_loss=0.01)])
def test_linear_cross_entropy_class_weight_gradient(reduction, kw):
    g = torch.Generator().manual_seed(5)
    h = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 5, -100, 2, 3, 1, 1, 4, 0])
    cw = (torch.rand(6, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    ours = L.linear_cross_entropy(h, W, t, class_weight=cw, reduction=reduction, chunk_size=2, **kw)
    ref = L.cross_entropy(h @ W.T, t, cw, reduction=reduction, **kw)
    torch.testing.assert_close(ours, ref, **F64)
    seed = torch.linspace(0.5, 2.0, 9, dtype=torch.float64) if reduction == "none" else None
    for a, b in zip(torch.autograd.grad(ours, [h, W, cw], seed), torch.autograd.grad(ref, [h, W, cw], seed)):
        torch.testing.assert_close(a, b, **F64)


@pytest.mark.parametrize("linear", [False, True], ids=["cross_entropy", "linear_cross_entropy"])
def test_no_counted_weight_gives_loss_zero_and_no_gradient(linear):
    """Every target's class weight is 0: the mean's denominator is 0, the loss is 0 by the contract,
    and no input gets a gradient from that constant (a division by a stand-in 1 gave the class
    weight Σ loss_i)."""
    g = torch.Generator().manual_seed(3)
    h = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    cw = torch.tensor([1.0, 0.5, 0.0, 2.0, 1.5], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([2, 2, 2, 2])
    loss = (L.linear_cross_entropy(h, W, t, class_weight=cw) if linear
            else L.cross_entropy(h @ W.T, t, cw))
    assert loss.item() == 0.0
    for grad in torch.autograd.grad(loss, [h, W, cw]):
        assert torch.count_nonzero(grad) == 0


# --------------------------------------------------------------------------- torch.func


CASES = [
    ("cross_entropy", lambda f, a: f.cross_entropy(a, torch.tensor([0, 3, -100]), label_smoothing=0.1)),
    ("logsumexp", lambda f, a: f.logsumexp(a, 1).sum() if f is L else torch.logsumexp(a, 1).sum()),
    ("softmax", lambda f, a: (f.softmax(a, 1) * torch.arange(4.0, dtype=a.dtype)).sum()),
    ("log_softmax", lambda f, a: (f.log_softmax(a, 1) * torch.arange(4.0, dtype=a.dtype)).sum()),
]


@pytest.mark.parametrize("name, fn", CASES, ids=[c[0] for c in CASES])
def test_torch_func_grad_and_vjp_match_torch(name, fn):
    x = _x(3, 4, seed=7, grad=False)
    torch.testing.assert_close(torch.func.grad(lambda a: fn(L, a))(x), torch.func.grad(lambda a: fn(F, a))(x), **F64)
    out, vjp = torch.func.vjp(lambda a: fn(L, a), x)
    out_ref, vjp_ref = torch.func.vjp(lambda a: fn(F, a), x)
    torch.testing.assert_close(out, out_ref, **F64)
    torch.testing.assert_close(vjp(torch.tensor(2.0, dtype=torch.float64))[0],
                               vjp_ref(torch.tensor(2.0, dtype=torch.float64))[0], **F64)


@pytest.mark.parametrize("name, fn", CASES, ids=[c[0] for c in CASES])
def test_second_derivative_matches_torch(name, fn):
    """create_graph=True then backward: a Hessian-vector product, against torch's."""
    v = _x(3, 4, seed=9, grad=False)
    hvps = []
    for face in (L, F):
        x = _x(3, 4, seed=8)
        (g,) = torch.autograd.grad(fn(face, x), x, create_graph=True)
        (g * v).sum().backward()
        hvps.append(x.grad)
    torch.testing.assert_close(hvps[0], hvps[1], **F64)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: L.cross_entropy(x, torch.tensor([0, 3, -100]), weight=torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64),
                                  label_smoothing=0.1, z_loss=0.02, softcap=2.5),
        lambda x: L.cross_entropy(x, torch.softmax(torch.ones(3, 4, dtype=torch.float64), 1), reduction="sum"),
        lambda x: L.logsumexp(x, 0),
        lambda x: L.softmax(x, 1),
        lambda x: L.log_softmax(x, 1),
    ],
    ids=["cross_entropy", "cross_entropy_probabilities", "logsumexp", "softmax", "log_softmax"],
)
def test_gradgradcheck(fn):
    assert torch.autograd.gradgradcheck(fn, (_x(3, 4, seed=10),))


def test_second_derivative_of_all_minus_inf_row_is_zero_not_nan():
    x = torch.tensor([[-torch.inf, -torch.inf], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(L.logsumexp(x, 1).sum(), x, create_graph=True)
    (hv,) = torch.autograd.grad(g.sum(), x)
    assert torch.equal(g[0], torch.zeros(2, dtype=torch.float64))
    assert torch.isfinite(hv).all()


def test_inplace_backward_matches_and_reuses_the_logits_storage():
    x0 = _x(6, 5, seed=11, grad=False)
    t = torch.tensor([0, 4, -100, 3, 1, 2])
    a = x0.clone().requires_grad_()
    logits = a * 1.0  # a non-leaf, as the output of a projection would be
    L.cross_entropy(logits, t, label_smoothing=0.1, inplace_backward=True).backward()
    b = x0.clone().requires_grad_()
    F.cross_entropy(b, t, label_smoothing=0.1).backward()
    torch.testing.assert_close(a.grad, b.grad, **F64)
    torch.testing.assert_close(logits.detach(), b.grad, **F64)  # the logits now hold the gradient


def test_inplace_backward_keeps_the_special_value_rules():
    """The gradient overwrites the logits: the +inf / −inf rows must be read before that."""
    inf = float("inf")
    x0 = torch.tensor([[inf, 0.0, inf], [-inf, -inf, -inf], [1.0, 2.0, 3.0]], dtype=torch.float64)
    t = torch.tensor([0, -100, 2])
    a = x0.clone().requires_grad_()
    L.cross_entropy(a * 1.0, t, reduction="sum", inplace_backward=True).backward()
    b = x0.clone().requires_grad_()
    L.cross_entropy(b, t, reduction="sum").backward()
    torch.testing.assert_close(a.grad, b.grad, **F64)
    assert a.grad[0].tolist() == [-0.5, 0.0, 0.5]


# ------------------------------------------------------------------------------------------------
# torch.func.vmap through the array core (lse.logsumexp on a tensor, not the torch face)
# ------------------------------------------------------------------------------------------------
_SPECIAL_ROWS = [
    [1.0, 2.0, float("inf")],
    [float("inf"), 0.5, float("inf")],
    [-float("inf")] * 3,
    [0.5, -1.0, 3.0],
    [float("nan"), 0.0, 1.0],
]


def test_core_logsumexp_and_softmax_under_torch_func_vmap_match_the_batched_call():
    """vmap once failed on a Python ``bool(any(max == inf))`` in the shift (a data-dependent branch
    vmap refuses); rows with +inf, all −inf and NaN are where that branch mattered. The batched
    call of a plain CPU tensor runs the compiled kernels, the vmapped one the generic core: the
    same special values, finite entries within 2 ulps."""
    import logsumexp as lse

    x = torch.tensor(_SPECIAL_ROWS, dtype=torch.float64)
    for fn in (lambda r: lse.logsumexp(r, axis=-1), lse.softmax, lse.log_softmax):
        got = torch.func.vmap(fn)(x)
        want = fn(x) if fn in (lse.softmax, lse.log_softmax) else lse.logsumexp(x, axis=-1)
        torch.testing.assert_close(got, want, rtol=2 * torch.finfo(torch.float64).eps, atol=0, equal_nan=True)
    grad = torch.func.vmap(torch.func.grad(lambda r: lse.logsumexp(r, axis=-1)))(x)
    torch.testing.assert_close(grad, lse.softmax(x), rtol=1e-15, atol=0, equal_nan=True)


def test_core_cross_entropy_under_torch_func_vmap_matches_the_batched_call():
    """Under vmap the target cannot be read to raise on a value out of range: the row says NaN
    instead, as under jax.jit; in-range rows match the batched call exactly."""
    import logsumexp as lse

    x = torch.tensor(_SPECIAL_ROWS[:4], dtype=torch.float64)
    t = torch.tensor([0, 2, 1, 2])
    got = torch.func.vmap(lambda r, c: lse.cross_entropy(r, c))(x, t)
    torch.testing.assert_close(got, lse.cross_entropy(x, t, reduction="none"), rtol=0, atol=0)
    bad = torch.func.vmap(lambda r, c: lse.cross_entropy(r, c))(x, torch.tensor([0, 2, 7, 2]))
    assert torch.isnan(bad[2]) and not torch.isnan(bad[[0, 1, 3]]).any()


# ------------------------------------------------------------------------------------------------
# The seed [±1000]×3: the backward's softmax keeps float32 accuracy
# ------------------------------------------------------------------------------------------------
_SEED = [[1000.0, 1000.0, 1000.0], [-1000.0, -1000.0, -1000.0]]


@pytest.mark.parametrize("path", ["autograd", "torch.func.grad", "create_graph"])
def test_seed_pm1000_gradients_keep_float32_accuracy(path):
    """Each row's softmax is exactly 1/3. The backward once recomputed it as exp(x − LSE) from
    the saved float32 LSE, whose rounding (|LSE|·eps ≈ 6e-5) made every probability 2e-5 off;
    exp(x − m)/s is within a few ulp, on the chunked path and on the graph-building one."""
    x = torch.tensor(_SEED, dtype=torch.float32)
    t = torch.tensor([0, 2])
    fns = {
        "logsumexp": (lambda v: L.logsumexp(v, dim=-1).sum(), [[1 / 3] * 3] * 2),
        "cross_entropy": (lambda v: L.cross_entropy(v, t), [[-1 / 3, 1 / 6, 1 / 6], [1 / 6, 1 / 6, -1 / 3]]),
    }
    for name, (fn, want) in fns.items():
        if path == "torch.func.grad":
            g = torch.func.grad(fn)(x)
        else:
            v = x.clone().requires_grad_()
            (g,) = torch.autograd.grad(fn(v), v, create_graph=path == "create_graph")
        torch.testing.assert_close(g.double(), torch.tensor(want, dtype=torch.float64), rtol=3e-7, atol=0,
                                   msg=lambda m: f"{name}: {m}")
