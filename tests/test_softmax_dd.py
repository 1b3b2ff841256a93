"""softmax / log_softmax of NumPy float64 in the array core (``_softmax_dd``), per entry against mpmath.

The array core is what runs inside ``_cpu.disabled()``. Before ``_softmax_dd`` it used the plain
``(x_i − m) − log1p(t)`` and ``e^{x_i − m}/(1 + t)``: up to 2.08 ulp (log_softmax) and 32 ulp
(softmax of N(0,1)·10) per entry, n = 400, 3 seeds. Measured after: 0.51 and 0.92 ulp (8 seeds:
0.59 and 1.02).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _reference import MP, family_case, mp_log_softmax, ulp_error

import logsumexp as lse
from logsumexp import _cpu, _softmax_dd

TINY = np.finfo(np.float64).tiny
FAMILIES = ["N(0,1)", "0+U(-25,-15)", "[0,-40x999]", "U(-700,700)", "1000+N(0,1)"]
LOG_BOUND = 0.6  # ulp per entry
# ulp per normal entry (a subnormal one has fewer digits to be right in). Not 1.0: each entry's
# exp is 2^k + 2^k·expm1(r) with NumPy's expm1 rounded, up to ~0.6 eps of the exp, on top of the
# final rounding: 1.001 and 1.013 measured (a long N(0,1)·10 row; N(0,1) seed 3), 0.92 on seeds 0-2
SOFTMAX_BOUND = 1.05


def _worst(log_got, soft_got, row) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    exact = mp_log_softmax(row)
    wl = max(ulp_error(g, e, "float64") for g, e in zip(log_got, exact))
    ws = max((ulp_error(g, MP.exp(e), "float64") for g, e in zip(soft_got, exact) if g >= TINY), default=0.0)
    return wl, ws


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("scale", [1.0, 3.0, 10.0])
def test_core_per_entry(name: str, scale: float) -> None:
    for seed in range(3):
        x = family_case(name, 400, seed, "float64")[0] * scale
        with _cpu.disabled():
            wl, ws = _worst(lse.log_softmax(x), lse.softmax(x), x)
        assert wl <= LOG_BOUND, ("log_softmax", seed, wl)
        assert ws <= SOFTMAX_BOUND, ("softmax", seed, ws)


@pytest.mark.parametrize("axes", [0, (0, 2)], ids=str)
def test_core_strided_axis_and_several_axes(axes) -> None:  # type: ignore[no-untyped-def]
    """The reduced axis not last (strided) or a tuple of axes: the same bounds, the input's shape."""
    for seed in range(2):
        row = family_case("N(0,1)", 400, seed, "float64")[0] * 10
        shape = (400, 3, 2) if axes == 0 else (20, 3, 20)
        x = np.broadcast_to(row.reshape(400, 1, 1) if axes == 0 else row.reshape(20, 1, 20), shape).copy()
        with _cpu.disabled():
            ls, sm = lse.log_softmax(x, axis=axes), lse.softmax(x, axis=axes)
        assert ls.shape == sm.shape == shape
        pick = (lambda a: a[:, 1, 0]) if axes == 0 else (lambda a: a[:, 1, :].reshape(-1))
        wl, ws = _worst(pick(ls), pick(sm), row)
        assert wl <= LOG_BOUND and ws <= SOFTMAX_BOUND, (wl, ws)


def test_core_blocks_per_entry() -> None:
    """Rows longer than a block and more rows than a block: the blocks' tails and entries are put
    together right (some rows against mpmath). The compiled rows are not the reference here: on
    a 7-entry N(0,1)·10 row whose tail is ~1.6e-16 their top log_softmax entry is 17.7 ulp off."""
    rng = np.random.default_rng(7)
    for shape, rows in (((2, 2 * _softmax_dd.BLOCK_ELEMENTS + 5), (0, 1)), ((5000, 7), (0, 973, 4999))):
        x = rng.standard_normal(shape) * 10
        with _cpu.disabled():
            ls, sm = lse.log_softmax(x, axis=-1), lse.softmax(x, axis=-1)
        for i in rows:
            wl, ws = _worst(ls[i], sm[i], x[i])
            assert wl <= LOG_BOUND and ws <= SOFTMAX_BOUND, (shape, i, wl, ws)


def test_core_special_values_and_options() -> None:
    """The contract's special slices, masks and temperature on the core path."""
    inf, nan = math.inf, math.nan
    x = np.array([[-inf, -inf, -inf], [inf, 0.0, inf], [0.0, nan, 1.0], [0.0, -inf, 1e308], [1.0, 2.0, 3.0]])
    with _cpu.disabled():
        sm, ls = lse.softmax(x, axis=1), lse.log_softmax(x, axis=1)
        masked = lse.softmax(x[4], where=np.array([True, False, True]))
        hot = lse.softmax(x[4], temperature=0.5)
        f32 = lse.softmax(x[4].astype(np.float32))
    np.testing.assert_array_equal(sm[0], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(ls[0], [-inf, -inf, -inf])
    np.testing.assert_array_equal(sm[1], [0.5, 0.0, 0.5])
    np.testing.assert_array_equal(ls[1], [-math.log(2), -inf, -math.log(2)])
    assert np.isnan(sm[2]).all() and np.isnan(ls[2]).all()
    np.testing.assert_array_equal(sm[3], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(ls[3], [-1e308, -inf, 0.0])
    e = np.exp([1.0, 3.0]) / np.exp([1.0, 3.0]).sum()
    np.testing.assert_allclose(masked, [e[0], 0.0, e[1]], rtol=1e-15)
    np.testing.assert_allclose(hot, np.exp([2.0, 4.0, 6.0]) / np.exp([2.0, 4.0, 6.0]).sum(), rtol=1e-15)
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, np.exp(x[4]) / np.exp(x[4]).sum(), rtol=1e-7)
