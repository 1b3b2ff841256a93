"""``torch.jit.script(logsumexp.torch.CrossEntropyLoss())`` works (issue 20: it failed on a
``Tensor | None`` annotation). The scripted forward calls the library's ``logsumexp::cross_entropy_rows``
operator through the dispatcher; values and gradients against torch in float64 (1e-12 relative).
"""

from __future__ import annotations

import io

import pytest

torch = pytest.importorskip("torch", reason="the torch face needs torch")

import torch.nn.functional as F  # noqa: E402

import logsumexp.torch as lt  # noqa: E402

# torch 2.13 deprecates TorchScript (it still works); the warning is torch's, on every script call.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")

G = torch.Generator().manual_seed(0)
X = torch.randn(6, 5, generator=G, dtype=torch.float64)
T = torch.tensor([0, 4, 2, -100, 1, 3])
Q = torch.softmax(torch.randn(6, 5, generator=G, dtype=torch.float64), -1)
W = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.5], dtype=torch.float64)

CASES = {
    "default": ({}, T),
    "sum_smoothed": ({"reduction": "sum", "label_smoothing": 0.1}, T),
    "none": ({"reduction": "none"}, T),
    "mixed_sign_weights": ({"weight": W}, T),
    "ignore_index": ({"ignore_index": 2}, T.clamp_min(0)),
    "probabilities": ({"label_smoothing": 0.2}, Q),
}


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", list(CASES))
def test_scripted_module_matches_torch(name) -> None:
    kw, target = CASES[name]
    scripted = torch.jit.script(lt.CrossEntropyLoss(**kw))
    xa, xb = X.clone().requires_grad_(), X.clone().requires_grad_()
    ours = scripted(xa, target)
    ref = F.cross_entropy(xb, target, **kw)
    _close(ours, ref)
    ours.sum().backward()
    ref.sum().backward()
    _close(xa.grad, xb.grad)


def test_scripted_extras_num_items_z_loss_and_lse() -> None:
    eager = lt.CrossEntropyLoss(z_loss=1e-3, return_lse=True)
    scripted = torch.jit.script(eager)
    for n in (None, 7.0, torch.tensor(7.0, dtype=torch.float64)):
        loss, lse = scripted(X, T, n)
        ref_loss, ref_lse = eager(X, T, n)
        _close(loss, ref_loss)
        _close(lse, ref_lse)


def test_scripted_module_saves_and_loads() -> None:
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(lt.CrossEntropyLoss(label_smoothing=0.1)), buf)
    buf.seek(0)
    loaded = torch.jit.load(buf)
    _close(loaded(X, T), F.cross_entropy(X, T, label_smoothing=0.1))
