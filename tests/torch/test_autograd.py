"""Autograd formulas: gradcheck against finite differences, and what is kept for backward."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the torch face needs PyTorch")

import logsumexp.torch as L  # noqa: E402


def _x(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * 2).requires_grad_()


@pytest.mark.parametrize(
    "kw",
    [
        {},
        dict(label_smoothing=0.2, weight=torch.tensor([0.5, 1.0, 2.0, 0.0, 1.5], dtype=torch.float64)),
        dict(z_loss=0.05, softcap=3.0),
        dict(reduction="none", z_loss=0.01, label_smoothing=0.1),
        dict(num_items=7.0, softcap=1.5),
    ],
)
def test_cross_entropy_gradcheck(kw):
    t = torch.tensor([0, 4, -100, 3, 1, 2])
    assert torch.autograd.gradcheck(lambda x: L.cross_entropy(x, t, **kw), (_x(6, 5),))


def test_cross_entropy_gradcheck_probability_target_and_lse():
    q = torch.softmax(_x(4, 5, seed=1).detach(), 1).requires_grad_()

    def f(x, q):
        loss, lse = L.cross_entropy(x, q, label_smoothing=0.1, z_loss=0.02, return_lse=True)
        return loss + (lse * torch.arange(4.0, dtype=torch.float64)).sum()

    assert torch.autograd.gradcheck(f, (_x(4, 5), q))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_linear_cross_entropy_gradcheck(reduction):
    t = torch.tensor([0, 6, -100, 3, 1])
    b = _x(7, seed=3)

    def f(h, w, b):
        return L.linear_cross_entropy(h, w, t, b, reduction=reduction, label_smoothing=0.1,
                                      z_loss=0.01, softcap=4.0, allow_retain_graph=True)

    assert torch.autograd.gradcheck(f, (_x(5, 3, seed=1), _x(7, 3, seed=2), b))


def test_linear_cross_entropy_hands_its_weight_gradient_over_without_a_copy():
    """weight.grad is the buffer accumulated in the forward pass; a second backward then says why
    it cannot run (as torch's chunked loss does), unless allow_retain_graph=True."""
    from logsumexp.torch import _cpu_impl

    h, w = _x(6, 3, seed=1), _x(9, 3, seed=2)
    t = torch.tensor([0, 8, 3, -100, 1, 2])
    buffers = []
    real = _cpu_impl.linear_cross_entropy

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        buffers.append(out.weight.data_ptr())
        return out

    _cpu_impl.linear_cross_entropy = spy
    try:
        loss = L.linear_cross_entropy(h, w, t)
    finally:
        _cpu_impl.linear_cross_entropy = real
    loss.backward(retain_graph=True)
    assert w.grad.data_ptr() == buffers[0]
    with pytest.raises(RuntimeError, match="allow_retain_graph"):
        loss.backward()
    kept = L.linear_cross_entropy(h, w, t, reduction="sum", allow_retain_graph=True)
    (g1,) = torch.autograd.grad(kept, w, retain_graph=True)
    (g2,) = torch.autograd.grad(kept * 2.0, w)
    torch.testing.assert_close(g2, 2.0 * g1, rtol=1e-14, atol=0)


@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_lse_softmax_gradcheck(name):
    fn = getattr(L, name)
    assert torch.autograd.gradcheck(lambda x: fn(x, 1), (_x(3, 4, 2),))


def test_backward_keeps_only_row_lse_beyond_inputs():
    """Saved for backward: the caller's logits and target (no copies) plus O(rows) float32."""
    x = torch.randn(64, 1000, requires_grad=True)
    t = torch.randint(0, 1000, (64,))
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda s: s):
        loss = L.cross_entropy(x, t, label_smoothing=0.1, z_loss=1e-3)
    extra = [s for s in saved if s.untyped_storage().data_ptr() not in
             (x.untyped_storage().data_ptr(), t.untyped_storage().data_ptr())]
    assert sum(s.numel() * s.element_size() for s in extra) <= 64 * 8 + 64
    loss.backward()
    assert x.grad.shape == x.shape
