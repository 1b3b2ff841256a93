"""The Triton kernels' mean denominator Σ w_t with negative, mixed-sign, NaN and cancelling weights (issue 20).

0 loss and zero gradient only where the counted weights sum to exactly 0; any other sum divides, as
``torch.nn.functional.cross_entropy`` does. float64, small odd shapes (the interpreter runs on the CPU);
tolerance 1e-12 relative (the same formula in another summation order).
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="logsumexp.triton needs torch")
pytest.importorskip("triton", reason="logsumexp.triton needs the triton package")

import torch.nn.functional as F  # noqa: E402

import logsumexp.triton as lt  # noqa: E402
from logsumexp._options import CrossEntropyOptions  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
C = 37
NAN = math.nan
# name: (weights on classes 0, 1, 2 — the others 1.0 —, targets)
CASES = {
    "opinfo_cross_entropy_negative_weights": ([-8.48, -1.77, -4.32], [0, 0]),
    "mixed_sign_weights": ([1.0, -2.0, 1.0], [0, 1, 2, 1, 0]),
    "nan_weight_on_target": ([NAN, 1.0, 1.0], [0, 1, 2]),
    "nan_weight_untargeted": ([1.0, NAN, 1.0], [0, 2, 2]),
    "weights_with_ignored_rows": ([-1.0, 3.0, 0.5], [0, -100, 2, -100, 0]),
}


def _case(name: str):
    w3, t = CASES[name]
    g = torch.Generator().manual_seed(len(name))
    x = torch.randn(len(t), C, generator=g, dtype=torch.float64) * 2
    w = torch.ones(C, dtype=torch.float64)
    w[:3] = torch.tensor(w3, dtype=torch.float64)
    return x.to(DEVICE), torch.tensor(t, device=DEVICE), w.to(DEVICE)


def _close(a, b):
    torch.testing.assert_close(a.detach().cpu(), b.detach().cpu(), rtol=1e-12, atol=1e-15, equal_nan=True)


@pytest.mark.parametrize("name", list(CASES))
def test_cross_entropy_rows_match_torch(name: str) -> None:
    x, t, w = _case(name)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = lt.cross_entropy_rows(xa, t, w, CrossEntropyOptions())
    ours.backward()
    ref = F.cross_entropy(xb, t, weight=w)
    ref.backward()
    _close(ours, ref)
    _close(xa.grad, xb.grad)
    if name == "nan_weight_untargeted":
        assert torch.isfinite(xa.grad).all()


@pytest.mark.parametrize("name", ["opinfo_cross_entropy_negative_weights", "mixed_sign_weights"])
def test_cross_entropy_rows_second_derivative(name: str) -> None:
    # Under torch.func (the way the kernels' Function supports second derivatives): ∇ ‖∇ℓ‖².
    x, t, w = _case(name)

    def curvature(f):
        return torch.func.grad(lambda z: torch.func.grad(f)(z).square().sum())(x)

    ours = curvature(lambda z: lt.cross_entropy_rows(z, t, w, CrossEntropyOptions()))
    ref = curvature(lambda z: F.cross_entropy(z, t, weight=w))
    _close(ours, ref)


def test_cancelling_weights_give_zero_loss_and_zero_gradient() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, C, generator=g, dtype=torch.float64).to(DEVICE).requires_grad_()
    w = torch.ones(C, dtype=torch.float64, device=DEVICE)
    w[1] = -1.0
    loss = lt.cross_entropy_rows(x, torch.tensor([0, 1], device=DEVICE), w, CrossEntropyOptions())
    loss.backward()
    assert loss.item() == 0.0
    assert bool((x.grad == 0).all())


@pytest.mark.parametrize("name", ["opinfo_cross_entropy_negative_weights", "nan_weight_untargeted"])
def test_linear_cross_entropy_rows_match_torch(name: str) -> None:
    x, t, w = _case(name)
    g = torch.Generator().manual_seed(1)
    h = torch.randn(len(t), 5, generator=g, dtype=torch.float64).to(DEVICE).requires_grad_()
    proj = torch.randn(C, 5, generator=g, dtype=torch.float64).to(DEVICE).requires_grad_()
    ours = lt.linear_cross_entropy_rows(h, proj, t, None, w, CrossEntropyOptions())
    ours.backward()
    h2, p2 = h.detach().clone().requires_grad_(), proj.detach().clone().requires_grad_()
    ref = F.cross_entropy(h2 @ p2.T, t, weight=w)
    ref.backward()
    _close(ours, ref)
    _close(h.grad, h2.grad)
    _close(proj.grad, p2.grad)
