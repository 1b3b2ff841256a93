"""``torch.func`` transforms on every function of the torch face, against torch's own ops (issue 20).

``vmap``, ``jacrev``, ``jacfwd`` and ``hessian`` used to fail ("does not have vmap support",
data-dependent control flow); under them the face computes with plain differentiable torch
operations (``logsumexp.torch._func_impl``). float64, 1e-10 relative (the same functions, other
roundings); special values (−inf, +inf, NaN rows) checked for values and first derivatives.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="the torch face needs torch")

import torch.nn.functional as F  # noqa: E402
from torch.func import grad, hessian, jacfwd, jacrev, vmap  # noqa: E402

import logsumexp.torch as lt  # noqa: E402

# torch's forward mode loads its jvp decompositions through torch.jit.script on first use, which
# warns in torch 2.13 (torch's own code, for torch's own ops too).
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

G = torch.Generator().manual_seed(0)
X = torch.randn(4, 5, 7, generator=G, dtype=torch.float64)
T = torch.randint(0, 7, (4, 5), generator=G)
T[0, 1] = -100
W = torch.rand(7, generator=G, dtype=torch.float64) + 0.5
Q = torch.softmax(torch.randn(4, 5, 7, generator=G, dtype=torch.float64), -1)

# name: (ours, torch's), each a function of one (5, 7) sample and its targets
FUNCS = {
    "logsumexp": (lambda x, t: lt.logsumexp(x, 1), lambda x, t: torch.logsumexp(x, 1)),
    "logsumexp_dims": (lambda x, t: lt.logsumexp(x, (0, 1)), lambda x, t: torch.logsumexp(x, (0, 1))),
    "softmax": (lambda x, t: lt.softmax(x, -1), lambda x, t: torch.softmax(x, -1)),
    "log_softmax": (lambda x, t: lt.log_softmax(x, 0), lambda x, t: torch.log_softmax(x, 0)),
    "cross_entropy": (lambda x, t: lt.cross_entropy(x, t), lambda x, t: F.cross_entropy(x, t)),
    "cross_entropy_weighted_smoothed": (
        lambda x, t: lt.cross_entropy(x, t, W, label_smoothing=0.1, reduction="sum"),
        lambda x, t: F.cross_entropy(x, t, W, label_smoothing=0.1, reduction="sum"),
    ),
    "cross_entropy_none": (
        lambda x, t: lt.cross_entropy(x, t, reduction="none"),
        lambda x, t: F.cross_entropy(x, t, reduction="none"),
    ),
}


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(FUNCS))
def test_vmap(name) -> None:
    ours, ref = FUNCS[name]
    _close(vmap(ours)(X, T), vmap(ref)(X, T))


@pytest.mark.parametrize("name", list(FUNCS))
@pytest.mark.parametrize("transform", [jacrev, jacfwd])
def test_jacobians(name, transform) -> None:
    ours, ref = FUNCS[name]
    _close(transform(ours)(X[0], T[0]), transform(ref)(X[0], T[0]))


@pytest.mark.parametrize("name", [n for n in FUNCS if n not in ("softmax", "log_softmax", "cross_entropy_none")])
def test_hessian(name) -> None:
    ours, ref = FUNCS[name]
    scalar = lambda f: (lambda x: f(x, T[0]).sum())  # noqa: E731
    _close(hessian(scalar(ours))(X[0]), hessian(scalar(ref))(X[0]))


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_hessian_of_a_contraction(fn) -> None:
    v = torch.randn(7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def f(mod):
        return lambda x: (getattr(mod, fn)(x, -1) * v).sum()

    _close(hessian(f(lt))(X[0]), hessian(f(torch))(X[0]))


def test_hessian_of_probability_targets_and_vmap_over_them() -> None:
    def ours(x, q):
        return lt.cross_entropy(x, q, label_smoothing=0.2)

    def ref(x, q):
        return F.cross_entropy(x, q, label_smoothing=0.2)

    _close(hessian(ours)(X[0], Q[0]), hessian(ref)(X[0], Q[0]))
    _close(vmap(ours)(X, Q), vmap(ref)(X, Q))
    _close(vmap(grad(ours, argnums=1))(X, Q), vmap(grad(ref, argnums=1))(X, Q))


def test_vmap_of_grad_matches_per_sample_gradients() -> None:
    per_sample = vmap(grad(lambda x, t: lt.cross_entropy(x, t, W)))(X, T)
    ref = vmap(grad(lambda x, t: F.cross_entropy(x, t, W)))(X, T)
    _close(per_sample, ref)


def test_vmap_over_class_weights_and_linear_cross_entropy() -> None:
    ws = torch.rand(4, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 0.1
    _close(vmap(lambda w: lt.cross_entropy(X[0], T[0], w))(ws), vmap(lambda w: F.cross_entropy(X[0], T[0], w))(ws))
    h = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    proj = torch.randn(7, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ours = vmap(jacrev(lambda hh, t: lt.linear_cross_entropy(hh, proj, t)))(h, T)
    ref = vmap(jacrev(lambda hh, t: F.cross_entropy(hh @ proj.T, t)))(h, T)
    _close(ours, ref)


def test_vmap_out_of_range_target_is_refused() -> None:
    bad = T.clone()
    bad[2, 3] = 7
    with pytest.raises(IndexError, match="7"):
        vmap(lambda x, t: lt.cross_entropy(x, t))(X, bad)


def test_special_rows_under_vmap_and_jacrev() -> None:
    inf, nan = math.inf, math.nan
    rows = torch.tensor(
        [[-inf, -inf, -inf], [inf, 0.0, inf], [1.0, nan, 0.0], [0.0, -inf, 2.0]], dtype=torch.float64
    )
    for fn in ("logsumexp", "softmax", "log_softmax"):
        ours = vmap(lambda r, fn=fn: getattr(lt, fn)(r, 0))(rows)
        plain = torch.stack([getattr(lt, fn)(r, 0) for r in rows])  # the chunked operators
        torch.testing.assert_close(ours, plain, equal_nan=True, rtol=1e-15, atol=0.0)
    jac = vmap(jacrev(lambda r: lt.logsumexp(r, 0)))(rows)
    expected = torch.tensor([[0.0, 0, 0], [0.5, 0, 0.5], [nan, nan, nan]], dtype=torch.float64)
    torch.testing.assert_close(jac[:3], expected, equal_nan=True)
    torch.testing.assert_close(jac[3], torch.softmax(rows[3], 0))
    hess = hessian(lambda r: lt.logsumexp(r, 0))(rows[0])
    assert torch.equal(hess, torch.zeros(3, 3, dtype=torch.float64))
