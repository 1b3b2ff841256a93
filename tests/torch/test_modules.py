"""CrossEntropyLoss and LinearCrossEntropyLoss: same results as the functions, checks in __init__."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the torch face needs PyTorch")

import logsumexp.torch as L  # noqa: E402


def test_cross_entropy_loss_matches_torch_module():
    w = torch.rand(5, dtype=torch.float64)
    ours = L.CrossEntropyLoss(weight=w, ignore_index=1, label_smoothing=0.1)
    ref = torch.nn.CrossEntropyLoss(weight=w, ignore_index=1, label_smoothing=0.1)
    x = torch.randn(4, 5, 3, dtype=torch.float64)
    t = torch.randint(0, 5, (4, 3))
    torch.testing.assert_close(ours(x, t), ref(x, t), rtol=1e-12, atol=1e-13)
    assert "weight" in dict(ours.named_buffers())


def test_num_items_in_forward():
    x = torch.randn(4, 5, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 3])
    loss = L.CrossEntropyLoss()(x, t, num_items=8)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(x, t, reduction="sum") / 8)


def test_linear_module_matches_function():
    h = torch.randn(6, 4, dtype=torch.float64)
    w = torch.randn(9, 4, dtype=torch.float64)
    t = torch.tensor([0, 8, 3, 3, 1, 2])
    mod = L.LinearCrossEntropyLoss(reduction="sum", z_loss=0.01, return_lse=True)
    loss, lse = mod(h, w, t)
    ref, ref_lse = L.linear_cross_entropy(h, w, t, reduction="sum", z_loss=0.01, return_lse=True)
    assert torch.equal(loss, ref) and torch.equal(lse, ref_lse)


def test_extra_repr_names_the_options():
    assert repr(L.CrossEntropyLoss(softcap=30.0, z_loss=1e-4)) == (
        "CrossEntropyLoss(ignore_index=-100, reduction='mean', z_loss=0.0001, softcap=30.0)"
    )
    assert "weighted=True" in repr(L.LinearCrossEntropyLoss(class_weight=torch.ones(3)))


@pytest.mark.parametrize(
    "cls, kw, error, match",
    [
        (L.CrossEntropyLoss, dict(reduction="batchmean"), ValueError, "reduction"),
        (L.CrossEntropyLoss, dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
        (L.CrossEntropyLoss, dict(weight=torch.ones(2, 2)), ValueError, "weight"),
        (L.CrossEntropyLoss, dict(weight=[1.0, 2.0]), TypeError, "weight"),
        (L.CrossEntropyLoss, dict(ignore_index=1.5), TypeError, "ignore_index"),
        (L.LinearCrossEntropyLoss, dict(softcap=-1.0), ValueError, "softcap"),
        (L.LinearCrossEntropyLoss, dict(class_weight=torch.ones(3, dtype=torch.long)), TypeError, "class_weight"),
        (L.LinearCrossEntropyLoss, dict(return_lse=1), TypeError, "return_lse"),
    ],
)
def test_init_checks_arguments(cls, kw, error, match):
    with pytest.raises(error, match=match):
        cls(**kw)
