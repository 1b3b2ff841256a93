"""logsumexp.torch.functional against torch.nn.functional in float64, formulas and special values."""

from __future__ import annotations

import math
import sys
import types

import pytest

torch = pytest.importorskip("torch", reason="the torch face needs PyTorch")
F = torch.nn.functional

import logsumexp.torch as L  # noqa: E402
from logsumexp.torch import functional as LF  # noqa: E402

F64 = dict(rtol=1e-12, atol=1e-13)  # float64 reference: only rounding separates the two paths
C = 7


def _inputs(shape_kind: str, target_kind: str, gen: torch.Generator):
    """Logits with class dimension 1 (or 0 when unbatched) and a matching target."""
    shapes = {"2d": (6, C), "1d": (C,), "nd": (3, C, 2, 2)}
    shape = shapes[shape_kind]
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 3).requires_grad_()
    if target_kind == "prob":
        t = torch.softmax(torch.randn(shape, generator=gen, dtype=torch.float64) * 2, dim=min(1, len(shape) - 1))
        return x, t
    tshape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    t = torch.randint(0, C, tshape, generator=gen)
    if t.ndim:
        t.view(-1)[1] = -100  # one ignored row
    return x, t


@pytest.mark.parametrize("shape_kind", ["2d", "1d", "nd"])
@pytest.mark.parametrize("target_kind", ["class", "prob"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.25])
def test_cross_entropy_matches_torch(shape_kind, target_kind, weighted, reduction, label_smoothing):
    gen = torch.Generator().manual_seed(hash((shape_kind, target_kind, weighted, reduction)) % 2**31)
    x, t = _inputs(shape_kind, target_kind, gen)
    w = torch.rand(C, generator=gen, dtype=torch.float64) + 0.1 if weighted else None
    kw = dict(weight=w, reduction=reduction, label_smoothing=label_smoothing)
    ours, ref = L.cross_entropy(x, t, **kw), F.cross_entropy(x, t, **kw)
    torch.testing.assert_close(ours, ref, **F64)
    up = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    (g_ours,) = torch.autograd.grad((ours * up).sum(), x)
    (g_ref,) = torch.autograd.grad((ref * up).sum(), x)
    torch.testing.assert_close(g_ours, g_ref, **F64)


def test_ignore_index_custom_value():
    x = torch.randn(5, 4, dtype=torch.float64)
    t = torch.tensor([0, 3, 3, 1, 2])
    torch.testing.assert_close(L.cross_entropy(x, t, ignore_index=3), F.cross_entropy(x, t, ignore_index=3), **F64)


def test_confident_prediction_keeps_relative_accuracy():
    x = torch.tensor([[20.0, 0.0, 0.0]])
    t = torch.tensor([0])
    exact = math.log1p(2 * math.exp(-20))  # 4.1223072e-09
    assert F.cross_entropy(x, t).item() == 0.0  # the naive LSE − x_t
    assert L.cross_entropy(x, t).item() == pytest.approx(exact, rel=1e-6)
    assert L.log_softmax(x, 1)[0, 0].item() == pytest.approx(-exact, rel=1e-6)


def test_all_ignored_batch_gives_zero_loss_and_zero_grad():
    x = torch.randn(4, 5, requires_grad=True)
    t = torch.full((4,), -100)
    assert torch.isnan(F.cross_entropy(x, t))  # what torch gives
    for w in (None, torch.rand(5)):
        loss = L.cross_entropy(x, t, weight=w, label_smoothing=0.1, z_loss=1e-3)
        (g,) = torch.autograd.grad(loss, x)
        assert loss.item() == 0.0
        assert torch.equal(g, torch.zeros_like(x))


def _formula(x, t, z_loss, softcap, ignore_index=-100):
    """Written-out reference: softcap, then −log p_t + z·LSE², mean over counted rows."""
    y = softcap * torch.tanh(x / softcap) if softcap else x
    lse = torch.logsumexp(y, dim=1)
    valid = t != ignore_index
    rows = lse - y.gather(1, t.clamp_min(0)[:, None])[:, 0] + z_loss * lse**2
    return torch.where(valid, rows, 0.0).sum() / valid.sum(), lse


@pytest.mark.parametrize("z_loss, softcap", [(1e-2, None), (0.0, 2.5), (0.1, 4.0)])
def test_z_loss_and_softcap_match_formula(z_loss, softcap):
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(9, 11, generator=gen, dtype=torch.float64) * 5).requires_grad_()
    t = torch.randint(0, 11, (9,), generator=gen)
    t[4] = -100
    ours, lse = L.cross_entropy(x, t, z_loss=z_loss, softcap=softcap, return_lse=True)
    ref, ref_lse = _formula(x, t, z_loss, softcap)
    torch.testing.assert_close(ours, ref, **F64)
    torch.testing.assert_close(lse, ref_lse.detach(), **F64)
    g1 = torch.autograd.grad(ours, x)[0]
    g2 = torch.autograd.grad(ref, x)[0]
    torch.testing.assert_close(g1, g2, **F64)


def test_num_items_divides_the_sum():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    t = torch.randint(0, 5, (8,), generator=gen)
    total = F.cross_entropy(x, t, reduction="sum")
    torch.testing.assert_close(L.cross_entropy(x, t, num_items=32), total / 32, **F64)
    torch.testing.assert_close(L.cross_entropy(x, t, num_items=torch.tensor(32)), total / 32, **F64)


def test_return_lse_is_float32_per_row():
    x = torch.randn(2, 3, 4, dtype=torch.bfloat16)
    t = torch.zeros(2, 4, dtype=torch.long)
    loss, lse = L.cross_entropy(x, t, return_lse=True)
    assert lse.dtype == torch.float32 and lse.shape == (2, 4)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(lse, torch.logsumexp(x.float(), dim=1), rtol=1e-6, atol=1e-6)


def test_lse_output_is_differentiable():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 1, 2])
    _, lse = L.cross_entropy(x, t, return_lse=True)
    (g,) = torch.autograd.grad(lse.sum(), x)
    torch.testing.assert_close(g, torch.softmax(x, 1).detach(), **F64)


def test_half_precision_close_to_float64():
    gen = torch.Generator().manual_seed(5)
    x64 = torch.randn(16, 50, generator=gen, dtype=torch.float64) * 4
    t = torch.randint(0, 50, (16,), generator=gen)
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        x = x64.to(dtype)
        ref = F.cross_entropy(x.double(), t)  # same rounded inputs, exact arithmetic
        torch.testing.assert_close(L.cross_entropy(x, t).double(), ref, rtol=2e-6, atol=0)


# --------------------------------------------------------------------------- special values


def test_weight_zero_class_at_minus_inf_counts_zero():
    x = torch.tensor([[0.0, -math.inf, 1.0], [2.0, 0.0, -math.inf]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([1, 0])
    w = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    loss = L.cross_entropy(x, t, weight=w, reduction="sum")
    assert torch.isfinite(loss)
    (g,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(loss, torch.logsumexp(x[1], 0).detach() - 2.0, **F64)


def test_probability_zero_times_minus_inf_counts_zero():
    x = torch.tensor([[0.0, -math.inf, 1.0]], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([[0.5, 0.0, 0.5]], dtype=torch.float64)
    loss = L.cross_entropy(x, q)
    assert torch.isnan(F.cross_entropy(x, q))  # torch: 0 · (−inf)
    expected = torch.logsumexp(x, 1) - 0.5
    torch.testing.assert_close(loss, expected[0].detach(), **F64)
    (g,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(g, (torch.softmax(x, 1) - q).detach(), **F64)


def test_plus_inf_logits_share_the_mass():
    x = torch.tensor([[math.inf, 0.0, math.inf, 1.0]], dtype=torch.float64, requires_grad=True)
    loss, lse = L.cross_entropy(x, torch.tensor([0]), return_lse=True)
    assert lse.item() == math.inf
    assert loss.item() == pytest.approx(math.log(2), rel=1e-15)
    (g,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(g, torch.tensor([[-0.5, 0.0, 0.5, 0.0]], dtype=torch.float64))


def test_nan_stays_in_its_row():
    x = torch.tensor([[0.0, math.nan], [1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    rows = L.cross_entropy(x, torch.tensor([0, 1]), reduction="none")
    assert torch.isnan(rows[0]) and torch.isfinite(rows[1])
    (g,) = torch.autograd.grad(rows.sum(), x)
    assert torch.isnan(g[0]).all() and torch.isfinite(g[1]).all()


def test_all_minus_inf_row_target_is_infinite_loss():
    x = torch.full((1, 3), -math.inf, dtype=torch.float64)
    assert L.cross_entropy(x, torch.tensor([1])).item() == math.inf


# --------------------------------------------------------------------------- LSE and softmax


@pytest.mark.parametrize("dim, keepdim", [(0, False), (1, True), (-1, False), (2, True)])
def test_logsumexp_softmax_log_softmax_match_torch(dim, keepdim):
    gen = torch.Generator().manual_seed(6)
    x = (torch.randn(3, 4, 5, generator=gen, dtype=torch.float64) * 10).requires_grad_()
    up = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    pairs = [
        (L.logsumexp(x, dim, keepdim), torch.logsumexp(x, dim, keepdim)),
        (L.softmax(x, dim), torch.softmax(x, dim)),
        (L.log_softmax(x, dim), torch.log_softmax(x, dim)),
    ]
    for ours, ref in pairs:
        torch.testing.assert_close(ours, ref, **F64)
        u = up if ours.shape == up.shape else up.sum(dim, keepdim=keepdim)
        torch.testing.assert_close(
            torch.autograd.grad((ours * u).sum(), x)[0], torch.autograd.grad((ref * u).sum(), x)[0], **F64
        )


def test_all_minus_inf_row_value_and_zero_gradient():
    x = torch.tensor([[-math.inf, -math.inf], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    lse = L.logsumexp(x, 1)
    sm = L.softmax(x, 1)
    lsm = L.log_softmax(x, 1)
    assert lse[0].item() == -math.inf
    assert torch.equal(sm[0], torch.zeros(2, dtype=torch.float64))
    assert torch.equal(lsm[0], torch.full((2,), -math.inf, dtype=torch.float64))
    for out in (lse, sm, lsm):
        (g,) = torch.autograd.grad(out.sum(), x)
        assert not torch.isnan(g).any()
        assert torch.equal(g[0], torch.zeros(2, dtype=torch.float64))


def test_plus_inf_entries_share_softmax_and_gradient():
    x = torch.tensor([math.inf, 0.0, math.inf], requires_grad=True)
    torch.testing.assert_close(L.softmax(x, 0), torch.tensor([0.5, 0.0, 0.5]))
    lsm = L.log_softmax(x, 0)
    assert lsm[0].item() == pytest.approx(-math.log(2)) and lsm[1].item() == -math.inf
    lse = L.logsumexp(x, 0)
    (g,) = torch.autograd.grad(lse, x)
    assert lse.item() == math.inf
    torch.testing.assert_close(g, torch.tensor([0.5, 0.0, 0.5]))


def test_logsumexp_overflow_and_integers_and_empty():
    x = torch.tensor([1000.0, 1000.0, 1000.0])
    assert L.logsumexp(x, 0).item() == pytest.approx(1000 + math.log(3), rel=1e-7)
    assert L.logsumexp(torch.tensor([1, 2]), 0).dtype == torch.get_default_dtype()
    assert L.logsumexp(torch.empty(2, 0), 1).tolist() == [-math.inf, -math.inf]


def test_logsumexp_half_is_accumulated_in_float32():
    x = torch.full((4096,), 1.0, dtype=torch.bfloat16)
    out = L.logsumexp(x, 0)
    assert out.dtype == torch.bfloat16
    assert out.float().item() == pytest.approx(1 + math.log(4096), rel=4e-3)


# --------------------------------------------------------------------------- errors


def test_target_out_of_range_names_value_and_position():
    x = torch.randn(2, 3, 4)
    t = torch.zeros(2, 4, dtype=torch.long)
    t[1, 2] = 3
    with pytest.raises(IndexError, match=r"target value 3 at position \(1, 2\)"):
        L.cross_entropy(x, t)
    t[1, 2] = -5
    with pytest.raises(IndexError, match="target value -5"):
        L.cross_entropy(x, t)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: L.cross_entropy(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long)), TypeError, "input"),
        (lambda: L.cross_entropy([[0.0]], torch.zeros(1, dtype=torch.long)), TypeError, "input"),
        (lambda: L.cross_entropy(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long)), ValueError, "target"),
        (lambda: L.cross_entropy(torch.zeros(2, 3), torch.zeros(2, 4)), ValueError, "target"),
        (lambda: L.cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.bool)), TypeError, "target"),
        (lambda: L.cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), weight=torch.ones(4)), ValueError, "weight"),
        (lambda: L.cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), reduction="avg"), ValueError, "reduction"),
        (lambda: L.cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), label_smoothing=1.5), ValueError, "label_smoothing"),
        (lambda: L.cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), z_loss=-1.0), ValueError, "z_loss"),
        (lambda: L.cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), softcap=0.0), ValueError, "softcap"),
        (lambda: L.cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), num_items=torch.ones(2)), ValueError, "num_items"),
        (lambda: L.cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), reduction="sum", num_items=3), ValueError, "num_items"),
        (lambda: L.cross_entropy(torch.zeros(2, 0), torch.zeros(2, dtype=torch.long)), ValueError, "class"),
        (lambda: L.logsumexp(torch.zeros(2, 3), 2), ValueError, "dim"),
        (lambda: L.softmax(torch.zeros(2, dtype=torch.complex64)), TypeError, "x"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --------------------------------------------------------------------------- CUDA dispatch


class _FakeCuda(torch.Tensor):
    """A CPU tensor that claims to live on CUDA, to exercise the dispatch without a GPU."""

    @property
    def is_cuda(self) -> bool:  # type: ignore[override]
        return True


def _fake_triton(calls):
    """A stand-in for ``logsumexp.triton`` that records the row calls it gets."""

    def record(name, result):
        return lambda *a, **k: calls.append((name, a, k)) or result

    return types.SimpleNamespace(
        cross_entropy_rows=record("cross_entropy_rows", torch.tensor(1.5)),
        linear_cross_entropy_rows=record("linear_cross_entropy_rows", torch.tensor(2.5)),
        logsumexp_rows=record("logsumexp_rows", torch.zeros(6)),
        softmax_rows=record("softmax_rows", torch.zeros(6, 3)),
    )


def test_cuda_rows_dispatch_to_triton_rows(monkeypatch):
    calls = []
    monkeypatch.setattr(LF, "_TRITON", _fake_triton(calls))
    x = torch.Tensor._make_subclass(_FakeCuda, torch.zeros(2, 3, 3))
    t = torch.zeros(2, 3, dtype=torch.long)
    assert L.cross_entropy(x, t, None, None, 0, z_loss=0.1, inplace_backward=True).item() == 1.5
    name, args, kw = calls[-1]
    assert name == "cross_entropy_rows" and kw == {"inplace_backward": True}
    logits, target, weight, opts = args
    assert logits.shape == (6, 3) and target.shape == (6,) and weight is None  # rows, classes last
    assert opts == L.CrossEntropyOptions(ignore_index=0, z_loss=0.1)  # one options object
    assert L.logsumexp(x, 1).shape == (2, 3) and calls[-1][0] == "logsumexp_rows"
    assert calls[-1][1][0].shape == (6, 3)
    assert L.log_softmax(x, 1).shape == (2, 3, 3) and calls[-1][1][1] is True
    h = torch.Tensor._make_subclass(_FakeCuda, torch.zeros(2, 3, 4))
    w = torch.zeros(5, 4)
    assert L.linear_cross_entropy(h, w, t, chunk_size=7).item() == 2.5
    name, args, kw = calls[-1]
    assert args[0].shape == (6, 4) and kw == {"fp32_weight_grad": None, "chunk_size": 7}
    # CPU tensors never go there, even with the Triton face present.
    n = len(calls)
    assert isinstance(L.cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)), torch.Tensor)
    assert len(calls) == n


def test_triton_face_is_looked_up_at_import_not_in_the_call(monkeypatch):
    """The dispatch reads a module global: nothing is imported inside a traced function."""
    import builtins
    import importlib

    names = []
    real_import = builtins.__import__

    def recording_import(name, *args, **kwargs):
        names.append(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", recording_import)
    real_import_module = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda name, *a, **k: names.append(name) or real_import_module(name, *a, **k))
    x = torch.Tensor._make_subclass(_FakeCuda, torch.zeros(2, 3))
    L.cross_entropy(x, torch.zeros(2, dtype=torch.long))
    L.softmax(x)
    assert not [n for n in names if n.startswith("logsumexp")]


def test_missing_triton_face_falls_back(monkeypatch):
    monkeypatch.setitem(sys.modules, "logsumexp.triton", None)  # makes the import fail
    # ...also where an earlier test imported it: `from .. import triton` reads the package attribute first
    monkeypatch.delattr(sys.modules["logsumexp"], "triton", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert LF._load_triton() is None
    monkeypatch.setattr(LF, "_TRITON", None)
    x = torch.Tensor._make_subclass(_FakeCuda, torch.zeros(2, 3))
    assert LF._rows_backend(x) is None  # CUDA tensors without Triton run the torch operators


# --------------------------------------------------------------------------- against the array core

# hypothesis is a declared test dependency (pyproject [test]), so no skip here.
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import logsumexp as core  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(
    logits=hnp.arrays(
        "float32", st.tuples(st.integers(1, 6), st.integers(1, 40)),
        elements=st.floats(-1e4, 1e4, width=32),
    ),
    shift=st.sampled_from([0.0, 1e3, -3e4]),
    data=st.data(),
)
def test_float32_rows_agree_with_core_in_float64(logits, shift, data):
    """Per-row float32 losses within 1e-5 (relative) of the float64 array core on the same inputs."""
    import numpy as np

    x = logits + np.float32(shift)
    t = np.asarray(data.draw(st.lists(st.integers(0, x.shape[1] - 1), min_size=x.shape[0], max_size=x.shape[0])))
    ours = L.cross_entropy(torch.from_numpy(x), torch.from_numpy(t), reduction="none").numpy()
    ref = core.cross_entropy(x.astype(np.float64), t, reduction="none")
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-30)


def test_non_contiguous_logits_and_half_gradients():
    gen = torch.Generator().manual_seed(8)
    base = torch.randn(50, 16, generator=gen, dtype=torch.float64)
    t = torch.randint(0, 50, (16,), generator=gen)
    x = base.T.detach().requires_grad_()  # (16, 50), strided
    assert not x.is_contiguous()
    ours, ref = L.cross_entropy(x, t, label_smoothing=0.1), F.cross_entropy(x, t, label_smoothing=0.1)
    torch.testing.assert_close(ours, ref, **F64)
    torch.testing.assert_close(torch.autograd.grad(ours, x)[0], torch.autograd.grad(ref, x)[0], **F64)
    xb = base.T.contiguous().bfloat16().requires_grad_()
    (gb,) = torch.autograd.grad(L.cross_entropy(xb, t, z_loss=1e-2), xb)
    x64 = xb.detach().double().requires_grad_()
    (g64,) = torch.autograd.grad(L.cross_entropy(x64, t, z_loss=1e-2), x64)
    assert gb.dtype == torch.bfloat16
    torch.testing.assert_close(gb.double(), g64, rtol=1e-2, atol=1e-4)  # bf16 rounding of the result


def test_full_label_smoothing_of_impossible_target_is_inf_not_nan():
    x = torch.tensor([[0.0, -math.inf, 1.0]], dtype=torch.float64)
    loss = L.cross_entropy(x, torch.tensor([1]), label_smoothing=1.0, reduction="sum")
    # ε = 1: only the uniform part counts, and it includes the −inf class: +inf, not NaN.
    assert loss.item() == math.inf
    finite = torch.tensor([[0.0, 2.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(
        L.cross_entropy(finite, torch.tensor([1]), label_smoothing=1.0),
        F.cross_entropy(finite, torch.tensor([1]), label_smoothing=1.0), **F64,
    )
