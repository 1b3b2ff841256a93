"""softmax / log_softmax of NumPy float64 per entry against mpmath, through the public functions.

NumPy float16/32/64 go to the compiled kernels (softmax.h ``write_normalized``: x_i − m kept
exact by TwoSum, the exp as 2^k + 2^k·y, the quotient corrected by its remainder); the array
core's NumPy double-double path (``_softmax_dd``) went with the Numba kernels. Its accuracy
cases are held here on the compiled path, under every CPU target: rows longer than a block
(2048) and than an item (65 536), more rows than a block, a strided axis and several axes. The
array core keeps the contract's special values (the last test).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _reference import MP, mp_log_softmax, ulp_error

from _targets import each_target  # noqa: F401  (fixture)

import logsumexp as lse
from logsumexp import _cpu

TINY = np.finfo(np.float64).tiny
LOG_BOUND = 0.8  # ulp per entry (test_accuracy_cpu.py's bound for the compiled rows)
SOFTMAX_BOUND = 1.0  # ulp per normal entry (a subnormal one has fewer digits to be right in)


def _worst(log_got, soft_got, row) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    exact = mp_log_softmax(row)
    wl = max(ulp_error(g, e, "float64") for g, e in zip(log_got, exact))
    ws = max((ulp_error(g, MP.exp(e), "float64") for g, e in zip(soft_got, exact) if g >= TINY), default=0.0)
    return wl, ws


@pytest.mark.usefixtures("each_target")
def test_blocks_and_items_per_entry() -> None:
    """Rows longer than a block (2 × 2048 + 5) and than an item (65 536 + 7: the row's state
    merged from two items), and more rows than a block: entries against mpmath (every 97th
    entry of the long row). N(0,1)·3: rows whose tails are far from 1e-16, where the top entry
    of a short row still misses the bound (test_accuracy_cpu.py pins that)."""
    rng = np.random.default_rng(7)
    for shape, rows in (((2, 2 * 2048 + 5), (0, 1)), ((5000, 7), (0, 973, 4999)), ((1, 65_536 + 7), (0,))):
        x = rng.standard_normal(shape) * 3
        ls, sm = lse.log_softmax(x, axis=-1), lse.softmax(x, axis=-1)
        for i in rows:
            if shape[1] > 10_000:  # mpmath per entry on a sample of the long row
                exact = mp_log_softmax(x[i])
                pick = range(0, shape[1], 97)
                wl = max(ulp_error(ls[i][k], exact[k], "float64") for k in pick)
                ws = max(ulp_error(sm[i][k], MP.exp(exact[k]), "float64") for k in pick if sm[i][k] >= TINY)
                assert wl <= LOG_BOUND and ws <= SOFTMAX_BOUND, (shape, i, wl, ws)
                continue
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
