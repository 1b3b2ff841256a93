"""Weighted LogSumExp where the result cancels: recomputed exactly from the data by the compiled
kernels (finish.h ``finish_weighted``: ``exact_sum`` and ``log_abs_exact``).

A weighted LSE near 0 (the log-normaliser of a nearly normalised mixture, ``Σ w_i e^{x_i} ≈ 1``)
or a sum whose signed weights cancel loses the relative accuracy of the state finish; the
kernels recompute those slices with double-double exps. Before: 6e3 ulp at LSE ≈ 1e-4 and 4e8
ulp at 1e-9 (float64, ``b`` all ones), 121 ulp at 1e-9 in float32. The array core no longer
recomputes (its NumPy double-double path went with the Numba kernels): these cases are the
compiled path's, under every CPU target; the core keeps the special values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _reference import MP, mp_lse, ulp_error

from _targets import each_target  # noqa: F401  (fixture)

import logsumexp as lse
from logsumexp import _cpu

PATHS = [pytest.param(False, id="compiled"), pytest.param(True, id="core")]
COMPILED = [pytest.param(False, id="compiled")]


def _call(core: bool, *args, **kw):
    if core:
        with _cpu.disabled():
            return lse.logsumexp(*args, **kw)
    return lse.logsumexp(*args, **kw)


def _mixture(seed: int, n: int, shift: float, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """x and positive weights w with Σ w e^x = e^shift before rounding to ``dtype``."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(n))
    w = rng.uniform(0.1, 3.0, n)
    x = np.log(p / w) + shift
    return x.astype(dtype), w.astype(dtype)


@pytest.mark.usefixtures("each_target")
@pytest.mark.parametrize("core", COMPILED)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shift", [1e-4, 1e-9, -1e-7])
def test_weighted_value_near_zero_is_rounded_once(core: bool, dtype: type, shift: float) -> None:
    worst = 0.0
    for seed in range(4):
        x, w = _mixture(seed, 300, shift, dtype)
        exact = mp_lse(x.astype(np.float64), w.astype(np.float64))
        got = _call(core, x, b=w)
        assert got.dtype == dtype
        worst = max(worst, ulp_error(float(got), exact, np.dtype(dtype).name))
    assert worst <= 0.51, worst


@pytest.mark.usefixtures("each_target")
@pytest.mark.parametrize("core", COMPILED)
def test_weighted_rows_near_zero_each_recomputed(core: bool) -> None:
    """Rows along either axis: the cancelling rows rounded once; the third row is ordinary and
    keeps the state's accuracy (within 1 ulp)."""
    rows = [_mixture(s, 200, 1e-6, np.float64) for s in range(2)]  # rows: 0.51 ulp; the plain row 1
    x = np.stack([r[0] for r in rows] + [np.linspace(-3, 2, 200)])
    w = np.stack([r[1] for r in rows] + [np.full(200, 0.5)])
    for axis, xa, wa in [(1, x, w), (0, x.T.copy(), w.T.copy())]:
        got = _call(core, xa, axis=axis, b=wa)
        for j in range(3):
            exact = mp_lse(x[j], w[j])
            assert ulp_error(float(got[j]), exact, "float64") <= (0.51 if j < 2 else 1.0)


@pytest.mark.usefixtures("each_target")
@pytest.mark.parametrize("core", COMPILED)
def test_signed_weights_that_cancel(core: bool) -> None:
    """Σ b e^x = e^0 − e^{log(1 − 1e-12)}: the state's total is 1e-4 relative off (its tail is
    rounded once near 1); recomputed, the value is rounded once and the sign is right."""
    x = np.array([0.0, math.log1p(-1e-12), -30.0])
    b = np.array([1.0, -1.0, 1e-3])
    exact = mp_lse(x, b)
    val, sign = _call(core, x, b=b, return_sign=True)
    assert sign == 1.0
    assert ulp_error(float(val), exact, "float64") <= 0.51
    assert ulp_error(float(_call(core, x, b=b)), exact, "float64") <= 0.51
    # the negated sum: same magnitude, sign −1; without return_sign that is NaN
    val, sign = _call(core, x, b=-b, return_sign=True)
    assert sign == -1.0 and ulp_error(float(val), exact, "float64") <= 0.51
    assert math.isnan(float(_call(core, x, b=-b)))


@pytest.mark.parametrize("core", PATHS)
def test_weights_that_cancel_exactly_give_minus_inf(core: bool) -> None:
    val, sign = _call(core, np.array([1.0, 1.0]), b=np.array([2.0, -2.0]), return_sign=True)
    assert val == -math.inf and sign == 0.0


@pytest.mark.usefixtures("each_target")
@pytest.mark.parametrize("core", COMPILED)
def test_masked_and_zero_weight_entries_stay_out_of_the_redo(core: bool) -> None:
    x, w = _mixture(7, 100, 1e-8, np.float64)
    xs = np.concatenate([x, [5.0, -np.inf]])
    ws = np.concatenate([w, [0.0, 2.0]])
    got = _call(core, xs, b=ws)
    assert ulp_error(float(got), mp_lse(x, w), "float64") <= 0.51


def test_ordinary_weighted_slices_are_unchanged() -> None:
    """No cancellation, no redo: the value is the state's (bit for bit against LSEState with b)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 50))
    w = rng.uniform(0.5, 2.0, (5, 50))
    got = lse.logsumexp(x, axis=1, b=w)
    want = [lse.LSEState().update(x[j], b=w[j]).value for j in range(5)]
    np.testing.assert_array_equal(got, np.array(want))
    assert float(abs(MP.mpf(float(got[0])) - mp_lse(x[0], w[0]))) < 1e-15


INF, NAN = math.inf, math.nan
ONE_CALL_CASES = [
    ([0.0, 1.0, 2.0], [1.0, 2.0, 0.5]),
    ([0.0, 1.0, 2.0], [1.0, -2.0, 0.5]),  # negative sum
    ([3.0, 3.0, 1.0], [2.0, -2.0, 1e-3]),  # the tied maxima cancel
    ([1.0, 1.0], [2.0, -2.0]),  # exactly 0: −inf, sign 0
    ([INF, 0.0], [0.0, 1.0]),  # a zero weight removes +inf
    ([NAN, 0.0], [0.0, 1.0]),  # and NaN
    ([INF, INF, 0.0], [1.0, -1.0, 1.0]),  # +inf whose weights cancel: NaN
    ([INF, 2.0], [-3.0, 1.0]),  # +inf, negative weight
    ([-INF, -INF], [1.0, 2.0]),  # no mass
    ([0.0, 1.0], [0.0, 0.0]),  # all weights 0
    ([NAN, 1.0], [1.0, 1.0]),
    ([700.0, 710.0, -700.0], [1e300, 1e-300, 5.0]),
    ([-745.0, -744.0], [3.0, 1.0]),
]


def _fits(values: list, dtype: type) -> bool:
    return all(abs(v) <= np.finfo(dtype).max or not math.isfinite(v) for v in np.ravel(values))


@pytest.mark.parametrize("return_sign", [False, True])
@pytest.mark.parametrize(
    ("case", "dtype"),
    [(i, dt) for i, c in enumerate(ONE_CALL_CASES) for dt in (np.float64, np.float32) if _fits(c, dt)],
)
def test_one_call_weighted_path_matches_the_general_path(case: int, dtype: type, return_sign: bool) -> None:
    """A 1-D weighted NumPy call takes one compiled call (``_reduce.fast_numpy_lse_weighted``);
    the general path (reached through ``axis=(0,)``) gives the same values, signs and dtypes on
    the special cases of the contract, within 1 ulp (their finishes round alike but not always
    bit for bit)."""
    x, b = (np.array(v, dtype=dtype) for v in ONE_CALL_CASES[case])
    assert _cpu.lse_weighted(x, b, (0,)) is not None
    with np.errstate(all="ignore"):
        got = lse.logsumexp(x, b=b, return_sign=return_sign)
        want = lse.logsumexp(x, axis=(0,), b=b, return_sign=return_sign)
    got, want = (got, want) if return_sign else ((got,), (want,))
    for g, w in zip(got, want):
        assert type(g) is type(w) and g.dtype == dtype
        if math.isfinite(float(w)):
            assert abs(float(g) - float(w)) <= float(np.spacing(np.abs(w))), (g, w)
        else:
            assert (math.isnan(float(g)) and math.isnan(float(w))) or g == w, (g, w)


def test_one_call_weighted_path_random_against_mpmath(each_target: str) -> None:
    rng = np.random.default_rng(11)
    worst = 0.0
    for seed in range(20):
        x = rng.standard_normal(500) * 5
        b = rng.uniform(-1.0, 3.0, 500)
        got, sign = lse.logsumexp(x, b=b, return_sign=True)
        exact = mp_lse(x, b)
        assert sign == (1.0 if MP.sign(MP.fsum(MP.mpf(float(w)) * MP.exp(MP.mpf(float(v))) for v, w in zip(x, b))) > 0 else -1.0)
        worst = max(worst, ulp_error(float(got), exact, "float64"))
    assert worst <= 1.0, worst
