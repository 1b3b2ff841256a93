"""torch.compile(fullgraph=True) with the default backend (Inductor), static and dynamic shapes.

Few and small: each compilation takes seconds on this project's 2-core machine.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the torch face needs PyTorch")

import logsumexp.torch as L  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    # Inductor's import chain (torch.utils.mkldnn) warns about torch.jit in torch 2.13 itself.
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]


def _loss(x, w, b, t, eps, z):
    """Every operator, with float options passed as arguments (SymFloats when dynamic)."""
    logits = x @ w.T + b
    return (
        L.cross_entropy(logits, t, label_smoothing=eps, z_loss=z)
        + L.linear_cross_entropy(x, w, t, b, label_smoothing=eps, softcap=4.0)
        + 1e-2 * (L.logsumexp(logits, 1).sum() + L.log_softmax(logits, 1)[:, 0].sum()
                  + (L.softmax(logits, 0) * logits).sum())
    )


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_inductor_fullgraph_matches_eager(dynamic):
    torch._dynamo.reset()
    compiled = torch.compile(_loss, fullgraph=True, dynamic=dynamic)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(13, 8, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(13, generator=g, dtype=torch.float64, requires_grad=True)
    for n, eps, z in ((6, 0.1, 1e-3), (9, 0.2, 1e-2)):  # a second shape and options: no new graph break
        x = torch.randn(n, 8, generator=g, dtype=torch.float64)
        t = torch.randint(0, 13, (n,), generator=g)
        t[1] = -100
        out = compiled(x, w, b, t, eps, z)
        ref = _loss(x, w, b, t, eps, z)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        for a, r in zip(torch.autograd.grad(out, [w, b]), torch.autograd.grad(ref, [w, b])):
            torch.testing.assert_close(a, r, rtol=1e-11, atol=1e-12)
