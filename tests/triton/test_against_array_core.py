"""The Triton kernels against the array core (``logsumexp.logsumexp`` etc. on NumPy float64), DESIGN.md §4."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="logsumexp.triton needs torch")
pytest.importorskip("triton", reason="logsumexp.triton needs the triton package")

import logsumexp as core  # noqa: E402
import logsumexp.triton as lt  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def rows_with_special_values() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(scale=3.0, size=(6, 1531)).astype(np.float32)
    x[1] = -np.inf
    x[2, [5, 600]] = np.inf
    x[3, 9] = np.nan
    x[4, ::3] = -np.inf
    x[5, 0] = 30.0  # a confident row
    return x


def test_lse_softmax_log_softmax_match_the_core():
    x = rows_with_special_values()
    xd = torch.from_numpy(x).to(DEVICE)
    x64 = x.astype(np.float64)
    pairs = (
        (lt.logsumexp(xd, dim=-1), core.logsumexp(x64, axis=-1)),
        (lt.softmax(xd), core.softmax(x64)),
        (lt.log_softmax(xd), core.log_softmax(x64)),
    )
    for out, ref in pairs:
        out = out.double().cpu().numpy()
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
        fin = np.isfinite(ref)
        np.testing.assert_array_equal(out[~fin & ~np.isnan(ref)], ref[~fin & ~np.isnan(ref)])
        np.testing.assert_allclose(out[fin], ref[fin], rtol=2e-6, atol=1e-7)  # float32 accumulation


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_the_core(reduction):
    rng = np.random.default_rng(1)
    x = rng.normal(scale=3.0, size=(37, 1000)).astype(np.float32)
    t = rng.integers(0, 1000, size=37)
    t[::4] = -100
    w = rng.uniform(0.5, 2.0, size=1000)
    out = lt.cross_entropy(
        torch.from_numpy(x).to(DEVICE), torch.from_numpy(t).to(DEVICE), torch.from_numpy(w).to(DEVICE),
        reduction=reduction, label_smoothing=0.1,
    )
    ref = core.cross_entropy(x.astype(np.float64), t, weight=w, reduction=reduction, label_smoothing=0.1)
    np.testing.assert_allclose(out.double().cpu().numpy(), ref, rtol=1e-6)
