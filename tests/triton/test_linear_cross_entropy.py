"""Fused linear + cross-entropy against the float64 eager product and torch's cross-entropy."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="logsumexp.triton needs torch")
pytest.importorskip("triton", reason="logsumexp.triton needs the triton package")

import torch.nn.functional as F  # noqa: E402

import logsumexp.triton as lt  # noqa: E402
from logsumexp._options import CrossEntropyOptions  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
N, D, V = 37, 16, 1531


def rand(shape, dtype=torch.float32, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype).to(DEVICE)


def rel(a, b):
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def problem(dtype=torch.float32, seed=0, bias=True):
    h = rand((N, D), dtype, 1.0, seed)
    w = rand((V, D), dtype, 0.5, seed + 1)
    b = rand((V,), dtype, 0.5, seed + 2) if bias else None
    g = torch.Generator().manual_seed(seed + 3)
    t = torch.randint(0, V, (N,), generator=g)
    t[::6] = -100
    return h, w, b, t.to(DEVICE)


def lce(h, w, t, b=None, *, class_weight=None, fp32_weight_grad=None, chunk_size=None, **options):
    """The row function with the options built as the torch face builds them."""
    opts = CrossEntropyOptions(**options)
    return lt.linear_cross_entropy_rows(h, w, t, b, class_weight, opts, fp32_weight_grad, chunk_size)


def grads(fn, h, w, b, upstream=None):
    leaves = [x.clone().requires_grad_() for x in (h, w, b) if x is not None]
    loss = fn(*leaves)
    loss.backward(torch.ones_like(loss) if upstream is None else upstream.to(loss.dtype))
    return (loss, *[x.grad for x in leaves])


def ref_fn(t, reduction="mean", eps=0.0, z=0.0, cap=None, class_weight=None):
    def f(h, w, b=None):
        x = h.double() @ w.double().T + (0.0 if b is None else b.double())
        if cap is not None:
            x = cap * torch.tanh(x / cap)
        cw = None if class_weight is None else class_weight.double()
        per = F.cross_entropy(x, t, weight=cw, reduction="none", label_smoothing=eps)
        per = per + torch.where(t != -100, z * torch.logsumexp(x, -1) ** 2, 0.0)
        if reduction == "none":
            return per
        if reduction == "sum":
            return per.sum()
        den = (t != -100).double().sum() if cw is None else torch.where(t != -100, cw[t.clamp_min(0)], 0.0).sum()
        return per.sum() / den

    return f


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_eager_float64_with_chunks(reduction):
    h, w, b, t = problem(seed=1)
    up = rand((N,), torch.float64, 1.0, 9) if reduction == "none" else rand((), torch.float64, 1.0, 9)
    out = grads(lambda h, w, b: lce(h, w, t, b, reduction=reduction, chunk_size=8), h, w, b, up)
    ref = grads(ref_fn(t, reduction), h.double(), w.double(), b.double(), up)
    assert out[0].dtype == torch.float32
    assert rel(out[0], ref[0]) <= 1e-6
    for got, want in zip(out[1:], ref[1:]):
        assert rel(got, want) <= 1e-5  # float32 matmuls (cuBLAS may use TF32 off: torch's default)


@pytest.mark.parametrize("two_buffers", [False, True])
def test_chunk_schedules_agree_bitwise(monkeypatch, two_buffers):
    # the GPU schedule (two chunk buffers, chunk i's gradient products issued after chunk i + 1's logits) must
    # give what the one-buffer schedule gives; on the CPU it runs serially, so this checks its bookkeeping
    from logsumexp.triton import _linear_cross_entropy as mod

    h, w, b, t = problem(seed=12)
    one = grads(lambda h, w, b: lce(h, w, t, b, chunk_size=5, label_smoothing=0.1), h, w, b)
    monkeypatch.setattr(mod, "_two_buffers_everywhere", two_buffers)
    other = grads(lambda h, w, b: lce(h, w, t, b, chunk_size=5, label_smoothing=0.1), h, w, b)
    ref = grads(ref_fn(t, eps=0.1), h.double(), w.double(), b.double())
    for a, c, r in zip(one, other, ref):
        assert torch.equal(a, c)
        assert rel(a, r) <= 1e-5


def test_every_option_together():
    h, w, b, t = problem(seed=2)
    cw = rand((V,), scale=1.0, seed=20).abs() + 0.1
    kw = dict(label_smoothing=0.1, z_loss=1e-3, softcap=5.0)
    out = grads(lambda h, w, b: lce(h, w, t, b, class_weight=cw, chunk_size=10, **kw), h, w, b)
    ref = grads(ref_fn(t, eps=0.1, z=1e-3, cap=5.0, class_weight=cw), h.double(), w.double(), b.double())
    assert rel(out[0], ref[0]) <= 1e-6
    for got, want in zip(out[1:], ref[1:]):
        assert rel(got, want) <= 1e-5


@pytest.mark.parametrize("fp32_weight_grad", [False, True])
def test_bf16_gradients_close_to_eager(fp32_weight_grad):
    h, w, _, t = problem(torch.bfloat16, seed=3, bias=False)
    out = grads(
        lambda h, w: lce(h, w, t, chunk_size=8, fp32_weight_grad=fp32_weight_grad), h, w, None
    )
    eager = grads(lambda h, w: F.cross_entropy(h @ w.T, t), h, w, None)  # bf16 eager: the usual baseline
    ref = grads(ref_fn(t), h.double(), w.double(), None)
    assert out[2].dtype == torch.bfloat16
    assert rel(out[0], ref[0]) <= 1e-2  # logits come from a bf16 product
    for got, base, want in zip(out[1:], eager[1:], ref[1:]):
        assert rel(got, want) <= max(3 * rel(base, want), 1e-2)


def test_probability_targets():
    h = rand((10, D), seed=4)
    w = rand((V, D), scale=0.5, seed=5)
    y = torch.softmax(rand((10, V), seed=6), -1)
    out = lce(h, w, y, reduction="none", chunk_size=4)
    ref = F.cross_entropy(h.double() @ w.double().T, y.double(), reduction="none")
    assert out.shape == (10,)
    assert rel(out, ref) <= 1e-6


def test_class_weight_that_requires_grad_is_refused():
    h, w, b, t = problem(seed=10)
    cw = (rand((V,), scale=1.0, seed=11).abs() + 0.1).requires_grad_()
    with pytest.raises(RuntimeError, match="does not compute a gradient for class_weight"):
        lce(h.requires_grad_(), w, t, b, class_weight=cw)


def test_no_grad_and_return_lse():
    h, w, b, t = problem(seed=7)
    with torch.no_grad():
        loss, lse = lce(h.requires_grad_(), w, t, b, return_lse=True)
    ref_lse = torch.logsumexp(h.double() @ w.double().T + b.double(), -1)
    assert rel(lse, ref_lse) <= 1e-6 and loss.grad_fn is None


def test_deterministic_bitwise():
    h, w, b, t = problem(torch.bfloat16, seed=8)
    runs = [grads(lambda h, w, b: lce(h, w, t, b, chunk_size=8), h, w, b) for _ in range(2)]
    for a, c in zip(*runs):
        assert torch.equal(a, c)
