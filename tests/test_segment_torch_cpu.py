"""The torch face's grouped functions on CPU tensors through the compiled kernels (segment.h).

The kernels' forward and fused backward are compared with the array core (float64 reference)
and with the torch-operations path they replace (kernels switched off), on carried axes,
unsorted ids, empty, all −inf, +inf and NaN groups; the custom ops are checked to be the path
taken (eagerly and inside ``torch.compile(fullgraph=True)``), second derivatives fall back to
differentiable torch operations, and every compiled target gives the same bits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _targets import SUPPORTED, under_target

import logsumexp as lse
from logsumexp import _cpu

torch = pytest.importorskip("torch", reason="the torch face needs the package 'torch'")
lt = pytest.importorskip("logsumexp.torch", reason="the torch face needs the package 'torch'")

KINDS = ("softmax", "log_softmax", "lse")
CORE = {"softmax": lse.segment_softmax, "log_softmax": lse.segment_log_softmax, "lse": lse.segment_logsumexp}
FACE = {"softmax": lt.segment_softmax, "log_softmax": lt.segment_log_softmax, "lse": lt.segment_logsumexp}


def _special_input(dtype: np.dtype, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """(x (157, 3), ids, S): unsorted ids into 23 groups, of which 20 is empty, 3 all −inf,
    5 two +inf entries in column 1, 7 a NaN in column 2, 11 a dominant maximum."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 23, 157)
    ids[ids == 20] = 21
    x = rng.normal(size=(157, 3)) * 8
    x[ids == 3] = -np.inf
    x[np.flatnonzero(ids == 5)[:2], 1] = np.inf
    x[np.flatnonzero(ids == 7)[0], 2] = np.nan
    g11 = np.flatnonzero(ids == 11)
    x[g11] = -40.0
    x[g11[0]] = 0.0
    return x.astype(dtype), ids, 23


def _sorted_input(dtype: np.dtype, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The special input in group order, with its CSR offsets: (x, ids, ptr, S)."""
    x, ids, s = _special_input(dtype, seed)
    order = np.argsort(ids, kind="stable")
    ptr = np.concatenate([[0], np.cumsum(np.bincount(ids, minlength=s))])
    return x[order], ids[order], ptr, s


def _same(got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(np.nan_to_num(got, nan=0.0), np.nan_to_num(want, nan=0.0), rtol=rtol, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_kernels_match_the_array_core_float64(kind):
    x, ids, s = _special_input(np.float64)
    got = FACE[kind](torch.tensor(x), torch.tensor(ids), num_nodes=s).numpy()
    with np.errstate(all="ignore"):
        want = CORE[kind](x, ids, s)
    _same(got, want, rtol=4.5e-16)  # both round each entry about once (measured ≤ 2 ulp apart)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_is_the_float64_result_rounded(kind):
    x, ids, s = _special_input(np.float32, seed=1)
    got = FACE[kind](torch.tensor(x), torch.tensor(ids), num_nodes=s)
    assert got.dtype == torch.float32
    with np.errstate(all="ignore"):
        want = CORE[kind](x.astype(np.float64), ids, s).astype(np.float32)
    _same(got.numpy(), want, rtol=6e-8)  # one float32 rounding of a float64 result: ≤ 1 ulp


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", KINDS)
def test_fused_backward_matches_the_torch_operations(kind, dtype):
    x0, ids, s = _special_input(np.float64, seed=2)
    x0[np.isnan(x0)] = 1.0  # a NaN group's gradient is NaN on both paths; kept out of the compare
    idx = torch.tensor(ids)
    results = []
    for on in (True, False):
        gen = torch.Generator().manual_seed(3)
        x = torch.tensor(x0, dtype=dtype, requires_grad=True)
        out = FACE[kind](x, idx, num_nodes=s) if on else _without_kernels(FACE[kind], x, idx, s)
        w = torch.randn(out.shape, generator=gen, dtype=dtype)
        (gx,) = torch.autograd.grad(out, x, w)
        results.append(gx.numpy())
        scale = float(w.abs().max())
    got, want = results
    assert np.isfinite(got).all()  # all −inf and +inf groups: zero / shared gradients, never NaN
    if dtype == torch.float64:
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=2**-52 * scale)  # the same cancellation
    else:
        # the kernels read the float32 output y (one rounding, 2^-24 relative), the torch path keeps
        # p in float64: g - Σ g·y cancels, so the difference is bounded against max|g|, not |gx|
        np.testing.assert_allclose(got, want, rtol=2e-7, atol=2**-23 * scale)


@pytest.mark.parametrize("kind", KINDS)
def test_csr_offsets_take_the_row_fold_and_match_the_array_core(kind, monkeypatch):
    from logsumexp.torch import segment as face

    monkeypatch.setattr(face, "_CSR_MIN_MEAN", 0)  # these groups are short: the fold all the same
    calls = []
    real = _cpu.segment_forward_csr
    monkeypatch.setattr(_cpu, "segment_forward_csr", lambda *a: calls.append(1) or real(*a))
    for dtype, rtol in ((np.float64, 4.5e-16), (np.float32, 6e-8)):
        x, ids, ptr, s = _sorted_input(dtype, seed=8)
        got = FACE[kind](torch.tensor(x), ptr=torch.tensor(ptr)).numpy()
        with np.errstate(all="ignore"):
            want = CORE[kind](x.astype(np.float64), ids, s).astype(dtype)
        _same(got, want, rtol=rtol)
    assert len(calls) == 2


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fold", [True, False])
def test_csr_backward_matches_the_torch_operations(kind, fold, monkeypatch):
    from logsumexp.torch import segment as face

    monkeypatch.setattr(face, "_CSR_MIN_MEAN", 0 if fold else 1 << 30)
    x0, ids, ptr, s = _sorted_input(np.float64, seed=9)
    x0[np.isnan(x0)] = 1.0
    results = []
    for on in (True, False):
        x = torch.tensor(x0, requires_grad=True)
        if on:
            out = FACE[kind](x, ptr=torch.tensor(ptr))
        else:
            out = _without_kernels(FACE[kind], x, torch.tensor(ids), s)
        w = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        results.append(torch.autograd.grad(out, x, w)[0].numpy())
    assert np.isfinite(results[0]).all()
    np.testing.assert_allclose(results[0], results[1], rtol=1e-13, atol=2**-52 * 4)


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("ptr", [[1, 2, 3], [0, 2, 4], [0, 2, 1, 3]])
def test_bad_csr_offsets_are_refused_before_the_kernels_read(ptr, fold, monkeypatch):
    from logsumexp.torch import segment as face

    monkeypatch.setattr(face, "_CSR_MIN_MEAN", 0 if fold else 1 << 30)
    with pytest.raises(ValueError, match="ptr must be non-decreasing CSR offsets"):
        lt.segment_softmax(torch.zeros(3), ptr=torch.tensor(ptr))


def _without_kernels(fn, x, idx, s):
    with _cpu.disabled():
        return fn(x, idx, num_nodes=s)


def test_special_group_gradients_are_the_contract():
    x = torch.tensor([-math.inf, -math.inf, math.inf, math.inf, 1.0, 0.0], requires_grad=True)
    idx = torch.tensor([0, 0, 1, 1, 1, 2])
    lse_ = lt.segment_logsumexp(x, idx, num_nodes=4)
    assert lse_.tolist() == [-math.inf, math.inf, 0.0, -math.inf]
    (gx,) = torch.autograd.grad(lse_[[0, 1, 2]].sum(), x)
    assert gx.tolist() == [0.0, 0.0, 0.5, 0.5, 0.0, 1.0]
    p = lt.segment_softmax(x, idx, num_nodes=4)
    assert p.tolist() == [0.0, 0.0, 0.5, 0.5, 0.0, 1.0]
    (gx,) = torch.autograd.grad(p, x, torch.arange(6.0))
    assert gx.tolist() == [0.0, 0.0, -0.25, 0.25, 0.0, 0.0]


def test_the_kernels_are_the_path_taken(monkeypatch):
    calls = []
    for name in ("segment_forward", "segment_backward", "segment_lse_grad"):
        real = getattr(_cpu, name)
        monkeypatch.setattr(_cpu, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    x = torch.randn(40, 2, requires_grad=True)
    idx = torch.randint(0, 5, (40,))
    (lt.segment_softmax(x, idx, num_nodes=5).sum() + lt.segment_logsumexp(x, idx, num_nodes=5).sum()).backward()
    assert sorted(calls) == ["segment_backward", "segment_forward", "segment_forward", "segment_lse_grad"]


def test_second_derivatives_through_torch_operations():
    rng = np.random.default_rng(4)
    x = torch.tensor(rng.normal(size=(13, 2)), requires_grad=True)
    idx = torch.tensor(rng.permutation(np.arange(13) % 4))
    for kind in KINDS:
        assert torch.autograd.gradcheck(lambda v, k=kind: FACE[k](v, idx, num_nodes=4), (x,))
        assert torch.autograd.gradgradcheck(lambda v, k=kind: FACE[k](v, idx, num_nodes=4), (x,))


@pytest.mark.parametrize("dynamic", [False, True])
def test_compiled_fullgraph_records_the_custom_ops(dynamic):
    graphs = []

    def backend(gm, example_inputs):
        from functorch.compile import make_boxed_func

        graphs.append(str(gm.graph))
        return make_boxed_func(gm.forward)

    rng = np.random.default_rng(5)
    x = torch.tensor(rng.normal(size=(31, 3)), dtype=torch.float32, requires_grad=True)
    idx = torch.tensor(rng.integers(0, 6, 31))

    def f(v, i):
        return (lt.segment_softmax(v, i, num_nodes=6) * v).sum() + lt.segment_logsumexp(v, i, num_nodes=6).sum()

    from torch._dynamo.backends.common import aot_autograd

    got = torch.compile(f, fullgraph=True, dynamic=dynamic, backend=aot_autograd(fw_compiler=backend, bw_compiler=backend))(x, idx)
    (gx,) = torch.autograd.grad(got, x)
    want = f(x, idx)
    (wx,) = torch.autograd.grad(want, x)
    assert any("segment_fwd" in g for g in graphs) and any("segment_norm_bwd" in g for g in graphs)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(gx, wx, rtol=0, atol=0)


def test_compiled_csr_offsets(monkeypatch):
    from logsumexp.torch import segment as face

    monkeypatch.setattr(face, "_CSR_MIN_MEAN", 0)
    rng = np.random.default_rng(6)
    x = torch.tensor(rng.normal(size=(20, 2)), requires_grad=True)
    ptr = torch.tensor([0, 3, 3, 11, 20])

    def f(v, p):
        return (lt.segment_log_softmax(v, ptr=p) * v).sum() + lt.segment_logsumexp(v, ptr=p).sum()

    got = torch.compile(f, fullgraph=True, backend="aot_eager")(x, ptr)
    want = f(x, ptr)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(torch.autograd.grad(got, x)[0], torch.autograd.grad(want, x)[0], rtol=0, atol=0)


def test_empty_and_zero_width_inputs():
    for shape in [(0,), (0, 3), (4, 0)]:
        x = torch.zeros(shape)
        idx = torch.zeros(shape[0], dtype=torch.long)
        assert lt.segment_softmax(x, idx, num_nodes=2).shape == shape
        assert lt.segment_logsumexp(x, idx, num_nodes=2).shape == (2, *shape[1:])
        assert (lt.segment_logsumexp(x, idx, num_nodes=2)[1] == -math.inf).all()


@pytest.mark.skipif(len(SUPPORTED) < 2, reason=f"this CPU supports only the {SUPPORTED} target: nothing to compare")
def test_segment_kernels_same_bits_on_every_target():
    results = []
    for target in SUPPORTED:
        with under_target(target):
            assert _cpu.target() == target
            out = []
            for dtype in (np.float64, np.float32):
                x, ids, s = _special_input(dtype, seed=6)
                g = np.random.default_rng(7).normal(size=x.shape).astype(dtype)
                with np.errstate(all="ignore"):
                    for kind in ("softmax", "log_softmax", "lse"):
                        y, consts = _cpu.segment_forward(x, ids, s, kind)
                        out += [y, consts]
                        if kind == "lse":
                            out.append(_cpu.segment_lse_grad(x, ids, consts, np.ones((s, 3))))
                        else:
                            out.append(_cpu.segment_backward(y, g, ids, s, kind == "log_softmax"))
                    out.append(lse.segment_logsumexp(x, ids, s))
                    xs, _, ptr, _ = _sorted_input(dtype, seed=6)
                    for kind in ("softmax", "log_softmax", "lse"):
                        out += list(_cpu.segment_forward_csr(xs, ptr, kind))
            results.append(b"".join(np.asarray(a).tobytes() for a in out))
    assert all(r == results[0] for r in results[1:])


def test_threads_give_the_serial_bits(monkeypatch):
    """Threads own ranges of groups (unsorted ids) or whole groups (CSR): forced to 3 threads with no
    size threshold, every kernel gives the bits of one thread."""
    x, ids, s = _special_input(np.float32, seed=10)
    xs, _, ptr, _ = _sorted_input(np.float64, seed=10)
    g = np.random.default_rng(11).normal(size=x.shape).astype(np.float32)
    results = []
    for threads in (1, 3):
        monkeypatch.setattr(_cpu, "PARALLEL_MIN", 0 if threads > 1 else 1 << 40)
        monkeypatch.setattr(_cpu, "num_threads", lambda t=threads: t)
        out = []
        with np.errstate(all="ignore"):
            for kind in ("softmax", "log_softmax", "lse"):
                y, consts = _cpu.segment_forward(x, ids, s, kind)
                out += [y, consts, *_cpu.segment_forward_csr(xs, ptr, kind)]
                if kind != "lse":
                    out.append(_cpu.segment_backward(y, g, ids, s, kind == "log_softmax"))
            out.append(_cpu.segment_lse_grad(x, ids, consts, np.ones((s, 3))))
        results.append(b"".join(np.asarray(a).tobytes() for a in out))
    assert results[0] == results[1]


@pytest.mark.parametrize("kind", KINDS)
def test_numpy_indptr_of_long_groups_takes_the_row_fold(kind, monkeypatch):
    calls = []
    real = _cpu.segment_csr_state
    monkeypatch.setattr(_cpu, "segment_csr_state", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(12)
    counts = np.array([0, 90, 150, 1, 70])  # an empty group; 311 rows in 5 groups
    ptr = np.concatenate([[0], np.cumsum(counts)])
    x = rng.normal(size=(311, 2)) * 10
    x[90:240, 1] = -np.inf  # an all -inf column of group 2
    x[5, 0] = np.inf
    ids = np.repeat(np.arange(5), counts)
    with np.errstate(all="ignore"):
        got = CORE[kind](x, indptr=ptr)
        want = CORE[kind](x, ids, 5)
    _same(got, want, rtol=2.3e-16 if kind == "lse" else 4.5e-16)  # the fold and the ids kernel: <= 1-2 ulp apart
    assert calls


def test_values_that_cancel_against_their_maximum_are_recomputed():
    """Nearly normalised groups (LSE ≈ 1e-9 while m ≈ −3): rounded from the state their value is off by
    ~ulp(m), millions of ulps of 1e-9; the groups that cancel are recomputed exactly (ids in any order)."""
    from _reference import mp_lse, ulp_error

    rng = np.random.default_rng(13)
    parts = [np.log(rng.dirichlet(np.ones(n))) + 1e-9 for n in (3, 40, 17)]
    x = np.concatenate([*parts, [2.0, 5.0]])
    ids = np.concatenate([np.full(p.size, g) for g, p in enumerate(parts)] + [[3, 3]])
    order = rng.permutation(x.size)
    x, ids = x[order], ids[order]
    for got in (lse.segment_logsumexp(x, ids, 4), lt.segment_logsumexp(torch.tensor(x), torch.tensor(ids)).numpy()):
        for g in range(4):
            assert ulp_error(got[g], mp_lse(x[ids == g]), "float64") <= 1.0, g


def test_torch_func_takes_the_torch_operations_and_agrees():
    """torch.func wraps its tensors (the kernels cannot read them): the torch operations answer, and
    their gradient is the kernels' one."""
    rng = np.random.default_rng(14)
    x = torch.tensor(rng.normal(size=(20, 3)))
    idx = torch.tensor(rng.integers(0, 4, 20))
    w = torch.arange(20.0, dtype=torch.float64)[:, None]

    def f(v):
        return (lt.segment_softmax(v, idx, num_nodes=4) * w).sum()

    xx = x.clone().requires_grad_()
    f(xx).backward()  # the kernels
    torch.testing.assert_close(torch.func.grad(f)(x), xx.grad, rtol=1e-13, atol=1e-15)
    batched = torch.func.vmap(lambda v: lt.segment_logsumexp(v, idx, num_nodes=4))(torch.stack([x, 2 * x]))
    torch.testing.assert_close(batched[1], lt.segment_logsumexp(2 * x, idx, num_nodes=4), rtol=1e-14, atol=0)
