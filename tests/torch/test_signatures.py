"""torch's calls as written in real code: positional signatures, legacy flags, module attributes,
and every option out of range named in its error."""

from __future__ import annotations

import pickle

import pytest

torch = pytest.importorskip("torch", reason="the torch face needs PyTorch")
F = torch.nn.functional

import logsumexp.torch as L  # noqa: E402
from logsumexp._options import CrossEntropyOptions  # noqa: E402

F64 = dict(rtol=1e-12, atol=1e-13)


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 2, 4, 2, 1, 3])
    w = torch.rand(5, generator=g, dtype=torch.float64) + 0.5
    return x, t, w


@pytest.mark.parametrize(
    "args",
    [
        (None, None, 2),                      # weight, size_average, ignore_index
        ("w", None, 2, None, "sum"),          # ... reduce, reduction
        ("w", None, -100, None, "none", 0.3), # ... label_smoothing
        (None, None, 4, None, "mean", 0.1),
    ],
)
def test_positional_arguments_in_torch_order(args):
    x, t, w = _data()
    args = tuple(w if a == "w" else a for a in args)
    torch.testing.assert_close(L.cross_entropy(x, t, *args), F.cross_entropy(x, t, *args), **F64)


@pytest.mark.parametrize("size_average, reduce", [(True, None), (False, None), (None, False), (False, True)])
def test_legacy_size_average_and_reduce_as_torch(size_average, reduce):
    x, t, w = _data()
    with pytest.warns(UserWarning, match="size_average and reduce"):
        ref = F.cross_entropy(x, t, w, size_average, -100, reduce)
    with pytest.warns(UserWarning, match="size_average and reduce"):
        ours = L.cross_entropy(x, t, w, size_average, -100, reduce)
    torch.testing.assert_close(ours, ref, **F64)
    with pytest.warns(UserWarning, match="size_average and reduce"):
        mod_ref = torch.nn.CrossEntropyLoss(w, size_average, -100, reduce)
    with pytest.warns(UserWarning, match="size_average and reduce"):
        mod = L.CrossEntropyLoss(w, size_average, -100, reduce)
    assert mod.reduction == mod_ref.reduction
    torch.testing.assert_close(mod(x, t), mod_ref(x, t), **F64)


def test_module_positional_order_and_attributes_match_torch():
    x, t, w = _data()
    ours = L.CrossEntropyLoss(w, None, 2, None, "sum", 0.1)
    ref = torch.nn.CrossEntropyLoss(w, None, 2, None, "sum", 0.1)
    for name in ("ignore_index", "reduction", "label_smoothing"):
        assert getattr(ours, name) == getattr(ref, name)
    torch.testing.assert_close(ours.weight, ref.weight)
    torch.testing.assert_close(ours(x, t), ref(x, t), **F64)


@pytest.mark.parametrize(
    "name, value",
    [("reduction", "none"), ("ignore_index", 2), ("label_smoothing", 0.25), ("weight", "w")],
)
def test_attributes_assigned_after_construction_are_honoured(name, value):
    x, t, w = _data()
    value = w if value == "w" else value
    ours, ref = L.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    setattr(ours, name, value)
    setattr(ref, name, value)
    torch.testing.assert_close(ours(x, t), ref(x, t), **F64)


def test_assigned_bad_attribute_is_refused_by_name_at_the_call():
    x, t, _ = _data()
    m = L.CrossEntropyLoss()
    m.label_smoothing = 2.0
    with pytest.raises(ValueError, match="label_smoothing"):
        m(x, t)


def test_linear_module_attributes_are_mutable():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(6, 4, generator=g, dtype=torch.float64)
    W = torch.randn(5, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 2, 4, 2, 1, 3])
    m = L.LinearCrossEntropyLoss()
    m.reduction, m.ignore_index, m.label_smoothing = "none", 2, 0.1
    m.class_weight = torch.rand(5, generator=g, dtype=torch.float64)
    m.chunk_size = 4
    ref = F.cross_entropy(h @ W.T, t, m.class_weight, ignore_index=2, reduction="none", label_smoothing=0.1)
    torch.testing.assert_close(m(h, W, t), ref, **F64)


def test_modules_pickle_with_their_attributes():
    m = L.CrossEntropyLoss(torch.ones(3), label_smoothing=0.1, z_loss=1e-3)
    m.reduction = "sum"
    m2 = pickle.loads(pickle.dumps(m))
    assert (m2.reduction, m2.label_smoothing, m2.z_loss) == ("sum", 0.1, 1e-3)


# --------------------------------------------------------------------------- option ranges


@pytest.mark.parametrize(
    "kw, error, name",
    [
        (dict(ignore_index=10**30), ValueError, "ignore_index"),
        (dict(ignore_index=-(2**63) - 1), ValueError, "ignore_index"),
        (dict(ignore_index=2.0), TypeError, "ignore_index"),
        (dict(label_smoothing=10**400), ValueError, "label_smoothing"),
        (dict(label_smoothing=float("nan")), ValueError, "label_smoothing"),
        (dict(z_loss=10**400), ValueError, "z_loss"),
        (dict(z_loss=float("inf")), ValueError, "z_loss"),
        (dict(softcap=10**400), ValueError, "softcap"),
        (dict(softcap=float("inf")), ValueError, "softcap"),
        (dict(num_items=10**400), ValueError, "num_items"),
        (dict(num_items=float("inf")), ValueError, "num_items"),
        (dict(num_items="3"), TypeError, "num_items"),
    ],
)
def test_every_option_out_of_range_names_its_argument(kw, error, name):
    with pytest.raises(error, match=name):
        CrossEntropyOptions(**kw)
    x, t, _ = _data()
    with pytest.raises(error, match=name):
        L.cross_entropy(x, t, **kw)


def test_largest_int64_ignore_index_is_accepted():
    x, t, _ = _data()
    big = 2**63 - 1
    torch.testing.assert_close(L.cross_entropy(x, t, ignore_index=big), F.cross_entropy(x, t, ignore_index=big), **F64)


@pytest.mark.parametrize(
    "kw, error, name",
    [(dict(chunk_size=0), ValueError, "chunk_size"), (dict(chunk_size=2.5), TypeError, "chunk_size"),
     (dict(fp32_weight_grad=1), TypeError, "fp32_weight_grad")],
)
def test_linear_extras_are_checked(kw, error, name):
    with pytest.raises(error, match=name):
        L.linear_cross_entropy(torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(2, dtype=torch.long), **kw)


def test_inplace_backward_must_be_a_bool():
    x, t, _ = _data()
    with pytest.raises(TypeError, match="inplace_backward"):
        L.cross_entropy(x, t, inplace_backward=1)
