"""The Triton segment kernels (logsumexp/triton/_segment.py) against the array core.

Small odd shapes (37 rows x 3 columns, 11 groups: the interpreter runs every program in Python), ids sorted
(CSR offsets) and unsorted, with an empty group, an all −inf group, a group with two +inf entries and a group
with a NaN; forward values and the gradients of the autograd Function.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the Triton face needs the package 'torch'")
pytest.importorskip("triton", reason="the Triton kernels need the package 'triton'")

import logsumexp as lse  # noqa: E402
from logsumexp.triton._segment import segment_rows  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
S = 11
CORE = {"softmax": lse.segment_softmax, "log_softmax": lse.segment_log_softmax, "lse": lse.segment_logsumexp}


def _input(sort: bool) -> tuple[np.ndarray, np.ndarray]:
    """x (37, 3) float64, ids in [0, 11): group 4 empty, 2 all −inf, 6 two +inf in column 0, 8 a NaN in column 2,
    9 a dominant maximum."""
    rng = np.random.default_rng(40)
    ids = rng.integers(0, S, 37)
    ids[ids == 4] = 5
    ids[:4] = [2, 6, 6, 8]
    x = rng.normal(size=(37, 3)) * 6
    x[ids == 2] = -np.inf
    x[1:3, 0] = np.inf
    x[3, 2] = np.nan
    g9 = np.flatnonzero(ids == 9)
    x[g9] = -30.0
    x[g9[0]] = 1.0
    if sort:
        order = np.argsort(ids, kind="stable")
        x, ids = x[order], ids[order]
    return x, ids


def _same(got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(np.nan_to_num(got, nan=0.0), np.nan_to_num(want, nan=0.0), rtol=rtol, atol=rtol * 1e-3)


def _run(kind: str, x: np.ndarray, ids: np.ndarray, use_ptr: bool, dtype: torch.dtype) -> torch.Tensor:
    xt = torch.tensor(x, dtype=dtype, device=DEVICE)
    if use_ptr:
        ptr = torch.tensor(np.concatenate([[0], np.cumsum(np.bincount(ids, minlength=S))]), device=DEVICE)
        return segment_rows(kind, xt, None, ptr, S)
    return segment_rows(kind, xt, torch.tensor(ids, device=DEVICE), None, S)


@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "lse"])
@pytest.mark.parametrize("layout", ["ptr", "sorted ids", "unsorted ids"])
def test_forward_matches_the_array_core_float64(kind, layout):
    x, ids = _input(sort=layout != "unsorted ids")
    got = _run(kind, x, ids, layout == "ptr", torch.float64).cpu().numpy()
    with np.errstate(all="ignore"):
        want = CORE[kind](x, ids, S)
    _same(got, want, rtol=1e-13)  # float64 accumulation, a few roundings per entry


@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "lse"])
def test_forward_float32_is_accumulated_in_float32(kind):
    x, ids = _input(sort=False)
    got = _run(kind, x.astype(np.float32), ids, False, torch.float32).cpu().numpy()
    with np.errstate(all="ignore"):
        want = CORE[kind](x.astype(np.float32).astype(np.float64), ids, S)
    _same(got.astype(np.float64), want, rtol=2e-6)  # float32 sums of <= 9 terms and a float32 exp


def test_special_groups():
    x, ids = _input(sort=False)
    out = _run("lse", x, ids, False, torch.float64).cpu().numpy()
    assert (out[[2, 4]] == -np.inf).all() and out[6, 0] == np.inf and np.isnan(out[8, 2])
    ordinary = [g for g in range(S) if g not in (2, 4, 6, 8)]
    assert np.isfinite(out[ordinary]).all() and np.isfinite(out[6, 1:]).all() and np.isfinite(out[8, :2]).all()
    p = _run("softmax", x, ids, False, torch.float64).cpu().numpy()
    assert (p[ids == 2] == 0).all() and p[1, 0] == 0.5 and p[2, 0] == 0.5
    assert np.isnan(p[ids == 8, 2]).all() and not np.isnan(p[ids == 8, :2]).any()
    assert (_run("log_softmax", x, ids, False, torch.float64).cpu().numpy()[ids == 2] == -np.inf).all()


@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "lse"])
def test_gradients_match_the_contract(kind):
    x, ids = _input(sort=False)
    x[3, 2] = 0.0  # no NaN group here: its gradient is NaN by rule, checked apart
    xt = torch.tensor(x, device=DEVICE, requires_grad=True)
    out = segment_rows(kind, xt, torch.tensor(ids, device=DEVICE), None, S)
    g = np.random.default_rng(41).normal(size=tuple(out.shape))
    (gx,) = torch.autograd.grad(out, xt, torch.tensor(g, device=DEVICE))
    with np.errstate(all="ignore"):
        p = lse.segment_softmax(x, ids, S)
        if kind == "lse":
            want = np.where(p == 0, 0.0, p * g[ids])
        elif kind == "softmax":
            sums = np.zeros((S, 3))
            np.add.at(sums, ids, np.where(p == 0, 0.0, p * g))
            want = np.where(p == 0, 0.0, p * (g - sums[ids]))
        else:
            sums = np.zeros((S, 3))
            np.add.at(sums, ids, g)
            want = np.where(p == 0, g, g - p * sums[ids])
    got = gx.cpu().numpy()
    assert np.isfinite(got).all()  # all −inf and +inf groups: zero or shared gradients, never NaN
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_empty_input_and_no_groups():
    x = torch.zeros((0, 2), dtype=torch.float64, device=DEVICE)
    ids = torch.zeros(0, dtype=torch.int64, device=DEVICE)
    assert segment_rows("softmax", x, ids, None, 3).shape == (0, 2)
    out = segment_rows("lse", x, ids, None, 3)
    assert out.shape == (3, 2) and (out == -np.inf).all()


def test_torch_face_routes_through_the_kernels(monkeypatch):
    from logsumexp.torch import segment as face

    calls = []

    def spy(*args):
        calls.append(args[0])
        return segment_rows(*args)

    monkeypatch.setattr(face, "_TRITON_SEGMENT", spy)
    monkeypatch.setattr(face, "_uses_triton", lambda src: True)
    monkeypatch.setattr(face._segment_cpu, "takes", lambda src: False)
    x, ids = _input(sort=False)
    x[3, 2] = 0.0
    xt = torch.tensor(x.T.copy(), device=DEVICE, requires_grad=True)  # grouped along dim 1
    idx = torch.tensor(ids, device=DEVICE)
    p = face.segment_softmax(xt, idx, num_nodes=S, dim=1)
    v = face.segment_logsumexp(xt, idx, num_nodes=S, dim=1)
    assert calls == ["softmax", "lse"] and p.shape == (3, 37) and v.shape == (3, S)
    with np.errstate(all="ignore"):
        _same(p.detach().cpu().numpy(), lse.segment_softmax(x, ids, S).T, rtol=1e-13)
        _same(v.detach().cpu().numpy(), lse.segment_logsumexp(x, ids, S).T, rtol=1e-13)


@pytest.mark.parametrize("F", [1, 130])
def test_one_column_and_several_column_blocks(F):
    """F = 1 (a tile of one column) and F = 130 (two programs along the columns: 128 + 2)."""
    rng = np.random.default_rng(42)
    ids = rng.integers(0, 5, 23)
    x = rng.normal(size=(23, F)) * 4
    for kind in ("softmax", "lse"):
        got = segment_rows(kind, torch.tensor(x, device=DEVICE), torch.tensor(ids, device=DEVICE), None, 6)
        _same(got.cpu().numpy(), CORE[kind](x, ids, 6), rtol=1e-13)
