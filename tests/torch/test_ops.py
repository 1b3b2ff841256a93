"""The torch.library operators: schema, fake kernels and autograd registration (opcheck), and a
model using them compiled with fullgraph=True (no graph break)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the torch face needs PyTorch")

import logsumexp.torch as L  # noqa: E402
from logsumexp.torch import _ops  # noqa: E402

OPTS = (-100, 0.1, 0.01, 3.0)  # ignore_index, label_smoothing, z_loss, softcap


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 5, -100, 2, 3])
    w = torch.rand(6, generator=g, dtype=torch.float64)
    return g, x, t, w


def test_opcheck_cross_entropy_ops():
    g, x, t, w = _data()
    torch.library.opcheck(_ops.cross_entropy_rows_op, (x, t, w, *OPTS, False))
    lse = _ops.cross_entropy_rows_op(x, t, w, *OPTS, False)[1].detach()
    args = (torch.ones(5, dtype=torch.float64), None, x.detach(), t, w, lse, *OPTS)
    torch.library.opcheck(_ops.cross_entropy_rows_backward_op, args)
    torch.library.opcheck(_ops.cross_entropy_rows_backward_inplace_op,
                          (*args[:2], x.detach().clone(), *args[3:]))


def test_opcheck_linear_cross_entropy_ops():
    g, _, t, w = _data()
    h = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(0.25, dtype=torch.float64)
    op = _ops.linear_cross_entropy_op
    torch.library.opcheck(op, (h, W, None, t, w, scale, *OPTS, True, True, False, 2, True))
    torch.library.opcheck(op, (h, W, None, t, None, None, *OPTS, False, False, False, 0, False))
    torch.library.opcheck(op, (h.detach(), W, None, t, None, scale, *OPTS, False, True, False, 0, True))
    torch.library.opcheck(
        _ops.linear_cross_entropy_backward_op,
        (torch.ones(5, dtype=torch.float64), h.detach(), W.detach(), None, t, w, *OPTS, True, True,
         True, 2),
    )


def test_opcheck_lse_and_softmax_ops():
    _, x, _, _ = _data()
    torch.library.opcheck(_ops.logsumexp_last_op, (x,))
    torch.library.opcheck(_ops.softmax_last_op, (x, True))
    torch.library.opcheck(_ops.softmax_last_op, (x, False))
    lse = torch.logsumexp(x.detach(), -1)
    torch.library.opcheck(_ops.logsumexp_last_backward_op, (torch.ones(5, dtype=torch.float64), x.detach(), lse))


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 13, bias=False)

    def forward(self, x, t):
        h = torch.tanh(self.proj(x))
        a = L.linear_cross_entropy(h, self.head.weight, t, z_loss=1e-3)
        b = L.cross_entropy(self.head(h), t, label_smoothing=0.1)
        c = L.logsumexp(h, 1).mean() + L.log_softmax(h, 1).mean() + L.softmax(h, 0).sum()
        return a + b + 1e-3 * c


def test_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    model = _Tiny()
    x = torch.randn(6, 8)
    t = torch.tensor([0, 12, 3, -100, 5, 7])
    eager = model(x, t)
    eager_grads = torch.autograd.grad(eager, list(model.parameters()))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(x, t)
    grads = torch.autograd.grad(out, list(model.parameters()))
    torch.testing.assert_close(out, eager, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_eager_calls_run_the_bodies_without_the_op_dispatch(monkeypatch):
    """Plain tensors and Parameters skip the custom-op dispatch (whose first call imports
    torch._dynamo); a tensor subclass goes through the op."""
    ran = []
    for op in list(_ops._BODIES):
        body = _ops._BODIES[op]
        monkeypatch.setitem(_ops._BODIES, op, lambda *a, _b=body, _n=str(op): ran.append(_n) or _b(*a))
    head = torch.nn.Linear(4, 7, bias=False)
    h = torch.randn(5, 4, requires_grad=True)
    t = torch.tensor([0, 6, 2, 3, -100])
    L.linear_cross_entropy(h, head.weight, t, reduction="none").sum().backward()
    L.cross_entropy(h @ head.weight.T, t).backward()
    assert len(ran) == 4  # two forwards, two backwards, all through the bodies
    ran.clear()

    class Sub(torch.Tensor):
        pass

    x = torch.Tensor._make_subclass(Sub, torch.randn(5, 7))
    L.logsumexp(x, 1)
    assert ran == []
