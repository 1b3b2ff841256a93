"""The double-double helpers of the generic path (``logsumexp._dd``), on NumPy, array-api-strict
and torch, against exact rationals and mpmath; ``value`` against the working-precision finish
of the array core on every special state."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from _reference import FAMILIES, MP, family_case, mp_lse, ulp_error

from _targets import each_target  # noqa: F401  (fixture)

from logsumexp import _cpu, _dd, _state
from logsumexp._lse import lse_state


def _namespaces() -> list:
    out = [pytest.param(np, id="numpy")]
    try:
        import array_api_strict

        out.append(pytest.param(array_api_strict, id="array_api_strict"))
    except ImportError:  # pragma: no cover
        out.append(pytest.param(None, id="array_api_strict", marks=pytest.mark.skip(reason="array-api-strict is not installed")))
    try:
        import torch

        out.append(pytest.param(torch, id="torch"))
    except ImportError:  # pragma: no cover
        out.append(pytest.param(None, id="torch", marks=pytest.mark.skip(reason="torch is not installed")))
    return out


NAMESPACES = _namespaces()


def _arr(xp, values) -> object:
    return xp.asarray(np.asarray(values, dtype=np.float64).tolist(), dtype=xp.float64)


def _np(a) -> np.ndarray:
    return np.asarray([float(v) for v in np.ravel(np.asarray(a.tolist() if hasattr(a, "tolist") else a))])


@pytest.mark.parametrize("xp", NAMESPACES)
def test_two_sum_and_two_prod_are_exact(xp) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(200) * 10.0 ** rng.integers(-20, 20, 200)
    b = rng.standard_normal(200) * 10.0 ** rng.integers(-20, 20, 200)
    s, e = _dd.two_sum(_arr(xp, a), _arr(xp, b))
    p, f = _dd.two_prod(_arr(xp, a), _arr(xp, b))
    for ai, bi, si, ei, pi, fi in zip(a, b, _np(s), _np(e), _np(p), _np(f)):
        assert Fraction(si) + Fraction(ei) == Fraction(ai) + Fraction(bi)
        assert Fraction(pi) + Fraction(fi) == Fraction(ai) * Fraction(bi)


@pytest.mark.parametrize("xp", NAMESPACES)
def test_log1p_dd_against_mpmath(xp) -> None:
    rng = np.random.default_rng(1)
    t = np.concatenate([rng.uniform(0, 1000, 60), 10.0 ** rng.uniform(-300, 3, 60), -rng.uniform(0, 0.49, 30)])
    tl = t * 2.0**-60 * rng.uniform(-1, 1, t.size)
    hi, lo = _dd.log1p_dd(xp, _arr(xp, t), _arr(xp, tl))
    worst = 0.0
    for ti, tli, h, lo_ in zip(t, tl, _np(hi), _np(lo)):
        exact = MP.log1p(MP.mpf(float(ti)) + MP.mpf(float(tli)))
        worst = max(worst, float(abs(MP.mpf(h) + MP.mpf(lo_) - exact) / abs(exact)))
    assert worst <= 2.0**-56


STATES = [  # (m, lead, tail): ordinary, dominant, special, weighted, negative
    (0.0, 1.0, 2.0),
    (3.5, 1.0, 1e-30),
    (-math.inf, 0.0, 0.0),
    (math.inf, 1.0, 2.0),
    (math.inf, 1.0, -1.0),
    (math.nan, math.nan, math.nan),
    (1.0, 0.25, 3.0),
    (1.0, 1.5, 0.1),
    (2.0, 1.0, -0.75),
    (2.0, 1.0, -1.5),
    (-700.0, 1.0, 1e300),
]


@pytest.mark.parametrize("return_sign", [False, True])
def test_value_matches_the_core_finish_on_every_state(return_sign: bool) -> None:
    """Same special values and signs; finite values within 1 ulp of the working-precision finish.

    The core takes the double-double finish for NumPy itself, so the working-precision finish is
    reached through another namespace (array-api-strict), where it still serves.
    """
    xps = pytest.importorskip("array_api_strict", reason="array-api-strict reaches the working-precision finish")
    m, lead, tail = (np.array(v) for v in zip(*STATES))
    with np.errstate(all="ignore"):
        strict_state = _state.State(*(xps.asarray(v) for v in (m, lead, tail)))
        want = _state.value(xps, strict_state, return_sign)
        want = tuple(np.asarray(w) for w in want) if return_sign else np.asarray(want)
        got = _dd.value(np, m, lead, tail, return_sign)
    if return_sign:
        np.testing.assert_array_equal(got[1], want[1])
        got, want = got[0], want[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    fin = np.isfinite(want)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)])
    # within 1 ulp of the result plus (where m and log1p cancel) 1 ulp of m: the core's rounding
    tol = np.spacing(np.abs(want[fin])) + np.where(np.abs(m[fin]) > np.abs(want[fin]), np.spacing(np.abs(m[fin])), 0)
    assert np.all(np.abs(got[fin] - want[fin]) <= tol)


@pytest.mark.parametrize("xp", NAMESPACES)
def test_value_is_rounded_once(xp) -> None:
    """m + log1p(tail) against mpmath, m ≥ 0 (no cancellation): within 0.51 ulp (the core's
    finish rounds three times: up to ~1 ulp here). Where m < 0 and log1p(tail) ≈ −m cancel,
    log1p_dd's 2^-57 relative error is what is left (the compiled path recomputes those)."""
    rng = np.random.default_rng(3)
    m = rng.uniform(0, 5, 300)
    tail = 10.0 ** rng.uniform(-3, 3, 300)
    got = _np(_dd.value(xp, _arr(xp, m), _arr(xp, np.ones(300)), _arr(xp, tail)))
    worst = max(ulp_error(g, MP.mpf(float(mi)) + MP.log1p(MP.mpf(float(ti))), "float64") for g, mi, ti in zip(got, m, tail))
    assert worst <= 0.51


def test_float32_states_keep_the_working_precision_finish() -> None:
    m, lead, tail = (np.array([v], dtype=np.float32) for v in (1.0, 1.0, 2.0))
    got = _dd.value(np, m, lead, tail)
    assert got.dtype == np.float32 and got[0] == np.float32(1.0) + np.log1p(np.float32(2.0))


@pytest.mark.parametrize("name", FAMILIES)
def test_core_state_finished_in_double_double(name: str) -> None:
    """The array core's state (NumPy's exp, pairwise sum) finished by ``value``: the finish no
    longer adds to the error (N(0,1): 0.97 ulp with the core's finish, 0.49 with this one); what
    is left on the dominant families (up to 1.36 ulp on [0, −40×999]) is NumPy's exp itself,
    whose rounding the 999 equal terms share."""
    worst = 0.0
    for seed in range(5):
        x, exact = family_case(name, 1000, seed, "float64")
        with _cpu.disabled():
            st = lse_state(np, np.array(x), (0,), None)
        worst = max(worst, ulp_error(_dd.value(np, *st), exact, "float64"))
    assert worst <= (1.0 if name in ("N(0,1)", "1000+N(0,1)", "-1000+N(0,1)", "U(-700,700)") else 1.4)


# ------------------------------------------------------------------------------------------------
# LogSumExp of NumPy arrays against mpmath (the compiled path), and the core's special values
# ------------------------------------------------------------------------------------------------
# log p + c for a random probability vector p: LSE = c up to the entries' rounding, while the
# maximum is near −log n, so m + log1p(tail) cancels (the accuracy report's near-zero families)
NEAR_ZERO = {"logp+1e-4": 1e-4, "logp+1e-9": 1e-9, "logp-3e-7": -3e-7}


def _core_case(name: str, n: int, seed: int, dtype: str) -> tuple[np.ndarray, object]:
    if name not in NEAR_ZERO:
        x, exact = family_case(name, n, seed, dtype)
        return x.astype(dtype), exact
    x = np.log(np.random.default_rng(seed).dirichlet(np.ones(n))) + NEAR_ZERO[name]
    x = x.astype(dtype)
    return x, mp_lse(x.astype(np.float64))


def _core_lse(x: np.ndarray, **kw) -> object:
    import logsumexp as lse

    with _cpu.disabled():
        return lse.logsumexp(x, **kw)


# The array core's NumPy double-double LogSumExp (``_lse_dd``) is gone: NumPy float16/32/64 go to
# the compiled kernels, whose finish is the same double-double one (dd.h). Their accuracy on
# these families, the near-zero ones included, is held here under every CPU target; rows and
# columns in tests/test_accuracy_cpu.py.
@pytest.mark.parametrize("dtype, bound", [("float64", 1.0), ("float32", 0.51)])
@pytest.mark.parametrize("name", FAMILIES + tuple(NEAR_ZERO))
def test_lse_against_mpmath(name: str, dtype: str, bound: float, each_target: str) -> None:
    import logsumexp as lse

    worst = 0.0
    for seed in range(4):
        x, exact = _core_case(name, 1000, seed, dtype)
        got = lse.logsumexp(x)
        assert got.dtype == np.dtype(dtype)
        worst = max(worst, ulp_error(got, exact, dtype))
    assert worst <= bound, worst


def test_core_lse_special_values_and_sign() -> None:
    """The same special values as the compiled path (and the contract): −inf, +inf, NaN slices,
    a single entry, with and without return_sign."""
    inf, nan = math.inf, math.nan
    x = np.array([[-inf, -inf, -inf], [inf, 0.0, inf], [nan, 0.0, 1.0], [-inf, 2.0, -inf], [0.0, -800.0, -inf]])
    want = np.array([-inf, inf, nan, 2.0, 0.0])
    np.testing.assert_array_equal(_core_lse(x, axis=1), want)
    got, sign = _core_lse(x, axis=1, return_sign=True)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(sign, [0.0, 1.0, nan, 1.0, 1.0])
    assert _core_lse(np.array([-2.5])) == -2.5


@pytest.mark.parametrize("xp", NAMESPACES)
def test_exp_split_and_exp_dd_against_mpmath(xp) -> None:
    """exp_split: hi + lo within 0.35 eps of 2^k (0.29 seen; hi = 2^k exactly); exp_dd within 2^-95."""
    rng = np.random.default_rng(4)
    d = np.concatenate([-rng.uniform(0, 700, 150), -rng.uniform(0, 1, 50), [0.0]])
    hi, lo = (_np(a) for a in _dd.exp_split(xp, _arr(xp, d)))
    assert np.all(np.log2(hi) == np.round(np.log2(hi)))
    worst = max(float(abs(MP.mpf(h) + MP.mpf(lo_) - MP.exp(MP.mpf(float(v)))) / MP.mpf(h)) for h, lo_, v in zip(hi, lo, d))
    assert worst <= 0.35 * 2.0**-52
    with np.errstate(all="ignore"):
        hi, lo = (_np(a) for a in _dd.exp_split(xp, _arr(xp, [-math.inf, -746.0, -2000.0, math.nan])))
    assert list(hi[:3]) == [0.0, 0.0, 0.0] and list(lo[:3]) == [0.0, 0.0, 0.0] and math.isnan(lo[3])
    if xp is not np and xp.__name__ == "array_api_strict":
        # NumPy's bit-level variant gives the generic computation's numbers exactly (on NumPy's
        # own expm1: torch's differs in the last bit now and then)
        d = np.concatenate([-rng.uniform(0, 800, 2000), [0.0, -1e-300, -0.34657359, -708.5, -745.1, -745.9]])
        with np.errstate(all="ignore"):
            for mine, generic in zip(_dd.exp_split(np, d), _dd.exp_split(xp, _arr(xp, d))):
                np.testing.assert_array_equal(mine, _np(generic))
    d = np.concatenate([-rng.uniform(0, 650, 100), rng.uniform(-1, 1, 50)])
    dl = d * 2.0**-60 * rng.uniform(-1, 1, d.size)
    hi, lo = (_np(a) for a in _dd.exp_dd(xp, _arr(xp, d), _arr(xp, dl)))
    worst = 0.0
    for h, lo_, v, vl in zip(hi, lo, d, dl):
        exact = MP.exp(MP.mpf(float(v)) + MP.mpf(float(vl)))
        worst = max(worst, float(abs(MP.mpf(h) + MP.mpf(lo_) - exact) / exact))
    assert worst <= 2.0**-95
    assert list(_np(_dd.exp_dd(xp, _arr(xp, [-746.0]), _arr(xp, [0.0]))[0])) == [0.0]


def test_exp2_table_against_mpmath() -> None:
    for j, (hi, lo) in enumerate(_dd._EXP2_TABLE):
        exact = MP.mpf(2) ** (MP.mpf(j) / 32)
        assert abs(MP.mpf(hi) + MP.mpf(lo) - exact) <= exact * MP.mpf(2) ** -106 and abs(lo) <= math.ulp(hi) / 2


@pytest.mark.parametrize("xp", NAMESPACES)
def test_log1p_dd_exact_and_sum_dd(xp) -> None:
    rng = np.random.default_rng(5)
    # 2^-90 relative where log1p(t) ≳ 2^-5; the Newton step's 2^-95 is absolute, so a tiny t
    # keeps log1p_dd's 2^-57 relative (the cancelling slices have log1p(t) ≈ |m|, not tiny)
    t = np.concatenate([rng.uniform(0.04, 1000, 60), 10.0 ** rng.uniform(-1, 3, 60), -rng.uniform(0.04, 0.49, 30),
                        10.0 ** rng.uniform(-30, -2, 30)])
    hi, lo = (_np(a) for a in _dd.log1p_dd_exact(xp, _arr(xp, t), _arr(xp, 0.0 * t)))
    err = [float(abs(MP.mpf(h) + MP.mpf(lo_) - MP.log1p(MP.mpf(float(v)))) / abs(MP.log1p(MP.mpf(float(v)))))
           for h, lo_, v in zip(hi, lo, t)]
    assert max(err[:150]) <= 2.0**-90 and max(err) <= 2.0**-56
    h = rng.standard_normal((3, 37)) * 10.0 ** rng.integers(-20, 20, (3, 37))
    sh, sl = (_np(a) for a in _dd.sum_dd(xp, _arr(xp, h), _arr(xp, 0.0 * h)))
    for row, s_h, s_l in zip(h, sh, sl):
        exact = sum(Fraction(float(v)) for v in row)
        assert abs(Fraction(s_h) + Fraction(s_l) - exact) <= abs(exact) * Fraction(2) ** -100
