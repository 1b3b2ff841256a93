"""The compiled layer's fast paths for small calls (issue 21): C-contiguous rows along the last
axis go from the public function to one kernel call (``_cpu.lse_last``, ``_cpu.softmax_last``),
and rows of at most 16 entries are computed several at a time (``short_rows_values`` and, for
softmax, ``short_rows_states`` in ``src/finish.h``). They must give the bits of the planned path (``lse_items`` + ``finish_rows``,
``softmax_axes``) on every target, special rows included, and be the path the public calls take.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _targets import each_target  # noqa: F401  (fixture)

import logsumexp as lse
from logsumexp import _cpu

pytestmark = pytest.mark.skipif(not _cpu.enabled(), reason="the compiled kernels are not built")


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint64 if a.dtype == np.float64 else np.uint32)


def _planned_lse(x: np.ndarray) -> np.ndarray:
    """The general path on the same rows: item states, then the finish (lse_value's own steps)."""
    (m, _, tail, tlo), rows = _cpu._plan_states(x, (x.ndim - 1,))
    val = np.empty(m.size)
    _cpu._kernels.finish_rows(rows.x, rows.x.itemsize, rows.koff, rows.s, rows.L, m, tail, tlo, val, m.size)
    return val.reshape(rows.shape).astype(x.dtype)


def _rows(kind: str, n: int, L: int, dtype: type, rng: np.random.Generator) -> np.ndarray:
    """Rows that reach every branch of the short-row finish: tails near 0 (log1p's k = 0, and its
    |f - 1| < |low part| case), large tails (k != 0), ties at the maximum, values cancelling
    against a negative maximum (the exact recompute), and special rows (NaN, ±inf)."""
    x = rng.standard_normal((n, L))
    if kind == "wide":
        x *= 300.0
    elif kind == "ties":
        x = np.round(x)
    elif kind == "tiny-tail":
        x = np.where(np.arange(L) == 0, 0.0, -40.0 - 5.0 * rng.random((n, L)))
    elif kind == "cancels":
        x = np.full((n, L), -math.inf)
        x[:, 0] = math.log(0.5)
        if L > 1:
            x[:, 1] = math.log(0.5) + 1e-12 * (1 + rng.random(n))
    elif kind == "special":
        x[rng.random((n, L)) < 0.2] = -math.inf
        x[3] = -math.inf
        x[5, 0] = math.nan
        x[7, -1] = math.inf
        x[9, : min(2, L)] = math.inf
    return x.astype(dtype)


KINDS = ["normal", "wide", "ties", "tiny-tail", "cancels", "special"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lse_last_same_bits_as_the_planned_path(dtype: type, each_target: str) -> None:
    rng = np.random.default_rng(21)
    for L in [*range(1, 18), 100, 2049]:
        for kind in KINDS:
            x = _rows(kind, 37, L, dtype, rng)  # 37: W-row groups and a remainder on every target
            got = _cpu.lse_last(x)
            assert got is not None and got.dtype == dtype and got.shape == (37,)
            np.testing.assert_array_equal(_bits(got), _bits(_planned_lse(x)), err_msg=f"L={L} {kind}")


def test_lse_last_values_and_special_rows() -> None:
    """Not only the same bits: the right values (−inf, +inf, NaN rows; log1p of a cancelling pair)."""
    x = np.array([[0.0, 0.0, 0.0], [-math.inf] * 3, [1.0, math.inf, 0.0], [math.nan, 0.0, 1.0],
                  [math.log(0.5), math.log(0.5) + 1e-12, -math.inf]])
    got = _cpu.lse_last(x)
    assert got[0] == math.log(3.0)
    assert got[1] == -math.inf and got[2] == math.inf and math.isnan(got[3])
    np.testing.assert_allclose(got[4], 5.000121296082027e-13, rtol=1e-15)  # mpmath (50 digits) of these doubles


def test_lse_last_declines_what_it_does_not_plan() -> None:
    x = np.zeros((4, 6))
    assert _cpu.lse_last(x[:, ::2]) is None  # not C-contiguous
    assert _cpu.lse_last(x.astype(np.float16)) is None
    assert _cpu.lse_last(np.zeros(6)) is None  # 1-D: lse_1d's job
    assert _cpu.lse_last(np.zeros((4, 0))) is None
    assert _cpu.lse_last(np.zeros((2, _cpu.kernels().ITEM + 1))) is None  # more than one item per row


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_last_same_bits_as_the_planned_path(dtype: type, log: bool, each_target: str) -> None:
    rng = np.random.default_rng(7)
    for shape in [(10,), (1000,), (37, 1), (37, 5), (37, 16), (3, 4, 17)]:
        for kind in KINDS:
            n = math.prod(shape[:-1])
            x = _rows(kind, max(n, 12), shape[-1], dtype, rng)
            x = x[9] if len(shape) == 1 else x[:n].reshape(shape)  # row 9: two +inf entries in "special"
            got = _cpu.softmax_last(x, log)
            want = _cpu.softmax_axes(np.asfortranarray(x), (x.ndim - 1,), log)  # strided rows: planned
            assert got is not None and got.dtype == dtype
            np.testing.assert_array_equal(_bits(got), _bits(want), err_msg=f"{shape} {kind}")


def test_public_calls_take_the_fast_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    for name in ("lse_last", "softmax_last"):
        real = getattr(_cpu, name)
        monkeypatch.setattr(_cpu, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    x = np.random.default_rng(0).standard_normal((1000, 5))
    out = lse.logsumexp(x, axis=1)
    np.testing.assert_allclose(out, np.log(np.exp(x).sum(1)), rtol=1e-15)
    assert lse.logsumexp(x, axis=-1, keepdims=True).shape == (1000, 1)
    p = lse.softmax(x[0])
    np.testing.assert_allclose(p, np.exp(x[0]) / np.exp(x[0]).sum(), rtol=1e-15)
    assert calls == ["lse_last", "lse_last", "softmax_last"]


def test_a_bool_axis_is_still_refused() -> None:
    """The softmax fast path tests ``type(axis) is int``: True (== 1) must not pass for an axis."""
    with pytest.raises(TypeError, match="axis"):
        lse.softmax(np.zeros((2, 3)), axis=True)


def test_float16_rows_rounded_once() -> None:
    """float16 data is widened to float32 for the kernels, but its LSE must be rounded once, from
    float64 to float16: through float32 first, this row's 1.51806642079... (mpmath) lands on the
    float16 midpoint 1.5185 and rounds up to 1.519 instead of down to 1.518."""
    x = np.array([[-1.3798828125, 1.43359375, -2.13671875]] * 3, dtype=np.float16)
    got = lse.logsumexp(x, axis=1)
    assert got.dtype == np.float16
    assert np.all(got == np.float16(1.5180664207919796))
    assert np.float16(np.float32(1.5180664207919796)) != np.float16(1.5180664207919796)  # the trap is real
