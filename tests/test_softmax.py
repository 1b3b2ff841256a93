"""softmax and log_softmax (src/logsumexp/_softmax.py) against the numerical contract.

References: mpmath (50 digits) per slice, SciPy's softmax/log_softmax for semantics.
Tolerances (float64): softmax within 2 ulp of the exact value plus the rounding of ``x_i − max``
carried through ``exp`` (0.5 ulp of ``x_i − max``, relative); log_softmax within 1.5 ulp plus one ulp
of ``x_i − max`` (the same rounding, absolute). float32/float16/bfloat16 inputs: their differences
are exact in float64, so results are correctly rounded: ≤ 0.51 ulp.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _reference import HYP, MP, family_case, mp_log_softmax, ulp, ulp_error
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import logsumexp as lse

scipy_special = pytest.importorskip("scipy.special", reason="SciPy comparisons need the package 'scipy'")

INF, NAN = math.inf, math.nan
FUNCS = {"softmax": lse.softmax, "log_softmax": lse.log_softmax}


def _rows(x: np.ndarray, axes: tuple[int, ...]):
    """x as (slices, n) rows over ``axes``, and the inverse mapping of a same-shaped result."""
    keep = [d for d in range(x.ndim) if d not in axes]
    perm = keep + list(axes)
    xt = np.transpose(x, perm)
    n = int(np.prod([x.shape[a] for a in axes]))
    rows = xt.reshape(int(np.prod(xt.shape[: len(keep)])), n)

    def back(r):
        return np.transpose(np.asarray(r, dtype=np.float64).reshape(xt.shape), np.argsort(perm))

    return rows, back


def table(x: np.ndarray, axis, log: bool):
    """The exact softmax/log_softmax by the special-values table of the contract (mpmath on finite slices).

    Also per entry: ``d = x_i − max`` and the slice's relative error budget ``delta`` of the
    denominator ``1 + tail``: the rounding of each ``x_j − max`` (0.5 ulp, carried through exp)
    plus pairwise summation (⌈log2 n⌉·eps); and ``L = log1p(tail)`` (exact).
    """
    x = np.asarray(x, dtype=np.float64)
    axes = tuple(a % x.ndim for a in np.atleast_1d(axis))
    rows, back = _rows(x, axes)
    eps = np.finfo(np.float64).eps
    out, shift, delta, big_l = [], [], [], []
    for r in rows:
        fin = np.isfinite(r)
        if np.isnan(r).any():
            vals = [NAN] * r.size
        elif (r == INF).any():
            k = int((r == INF).sum())
            vals = [(-math.log(k) if log else 1.0 / k) if v == INF else (-INF if log else 0.0) for v in r]
        elif (r == -INF).all():
            vals = [-INF if log else 0.0] * r.size
        else:
            ls = mp_log_softmax(r)
            vals = [float(v) if log else float(MP.exp(v)) for v in ls]
        m = r[fin].max() if fin.any() else 0.0
        d = np.where(fin, r - m, 0.0)
        dl = max(0.5 * ulp(v, "float64") for v in d) if r.size else 0.0
        lr = -float(max(mp_log_softmax(r[fin]))) if fin.any() else 0.0  # log1p(tail)
        out.extend(vals)
        shift.extend(d)
        delta.extend([dl + math.ceil(math.log2(max(r.size, 2))) * eps] * r.size)
        big_l.extend([lr] * r.size)
    return back(out), back(shift), back(delta), back(big_l)


def assert_matches_table(got, x, axis, log: bool, dtype: str = "float64", slack: float = 0.0,
                         ftz: bool = False, input_ulps: float = 0.0) -> None:
    """NaN/inf pattern exact; finite entries: narrow dtypes ≤ 0.51 ulp; float64 log_softmax within
    1.5 ulp + ulp(x_i − max) + L·delta, softmax within 2 ulp + |p|·(0.5 ulp(x_i − max) + delta)
    (see ``table``: the error of ``x_j − max`` is the input's conditioning, not the algorithm's).
    ``slack``: extra ulps for the backend's primitives; ``ftz``: subnormal results may be 0;
    ``input_ulps``: the entries themselves may be off by that many ulps (x / T computed otherwise)."""
    want, shift, delta, big_l = table(x, axis, log)
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    inf = np.isinf(want)
    np.testing.assert_array_equal(got[inf], want[inf])
    fin = np.isfinite(want)
    xin = np.broadcast_to(np.asarray(x, dtype=np.float64), want.shape)
    for g, w, d, dl, lr, xi in zip(got[fin], want[fin], shift[fin], delta[fin], big_l[fin], xin[fin]):
        if ftz and abs(w) < 1e-300 and abs(g) < 1e-300:  # XLA flushes subnormals (log1p: below ~1e-300)
            continue
        extra = input_ulps * (ulp(xi, "float64") + ulp(xi - d, "float64")) if input_ulps else 0.0
        dl = dl + extra
        if dtype != "float64":
            assert abs(g - w) <= 0.51 * ulp(g, dtype), (g, w)
        elif log:
            assert abs(g - w) <= (1.5 + slack) * ulp(g, "float64") + ulp(d, "float64") + lr * dl + extra, (g, w, d)
        else:
            assert abs(g - w) <= (2 + slack) * ulp(g, "float64") + abs(g) * (0.5 * ulp(d, "float64") + dl), (g, w, d)


SPECIAL = np.array(
    [
        [[0.5, 1.0, -2.0, 3.0], [-INF, -INF, -INF, -INF], [INF, 1.0, INF, -INF]],
        [[NAN, 1.0, 2.0, 3.0], [1.0, -INF, 2.0, -INF], [700.0, 710.0, -750.0, 0.0]],
    ]
)


# ----------------------------------------------------------------------------------------------
# The special-values table, every backend, every axis
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, 2, -1, (0, 1), (0, 2), (1, 2), (0, 1, 2)], ids=str)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_special_values_table_on_every_axis(backend, name, axis):
    got = backend.call(FUNCS[name], backend.asarray(SPECIAL), axis=axis)
    backend.check_type(got)
    assert_matches_table(backend.to_numpy(got), SPECIAL, axis, name == "log_softmax", slack=backend.ulp_slack, ftz=backend.ftz)


def test_all_neg_inf_slice_gives_zeros_and_neg_inf(backend):
    x = np.array([[-INF, -INF, -INF], [0.0, -INF, 0.0]])
    sm = backend.to_numpy(lse.softmax(backend.asarray(x)))
    ls = backend.to_numpy(lse.log_softmax(backend.asarray(x)))
    np.testing.assert_array_equal(sm, [[0.0, 0.0, 0.0], [0.5, 0.0, 0.5]])
    np.testing.assert_array_equal(ls, [[-INF, -INF, -INF], [-math.log(2), -INF, -math.log(2)]])


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_k_posinf_entries_share_the_mass(backend, k):
    x = np.array([0.0, -INF, 1e308] + [INF] * k)
    sm = backend.to_numpy(lse.softmax(backend.asarray(x)))
    ls = backend.to_numpy(lse.log_softmax(backend.asarray(x)))
    np.testing.assert_array_equal(sm, [0.0, 0.0, 0.0] + [1.0 / k] * k)
    np.testing.assert_array_equal(ls, [-INF] * 3 + [-math.log(k)] * k)


def test_nan_stays_in_its_slice(backend):
    x = np.array([[NAN, 0.0, 1.0], [0.0, 1.0, 2.0], [INF, NAN, -INF]])
    for name, f in FUNCS.items():
        got = backend.to_numpy(f(backend.asarray(x), axis=1))
        assert np.isnan(got[[0, 2]]).all(), name
        assert_matches_table(got[1:2], x[1:2], 1, name == "log_softmax", slack=backend.ulp_slack, ftz=backend.ftz)


@pytest.mark.parametrize("shape,axis", [((0,), -1), ((3, 0), 1), ((0, 4), 1), ((2, 0, 3), (1, 2))], ids=str)
def test_empty_input_gives_empty_output(backend, shape, axis):
    for f in FUNCS.values():
        got = backend.to_numpy(f(backend.asarray(np.zeros(shape)), axis=axis))
        assert got.shape == shape


def test_all_masked_slice_gives_zeros_and_neg_inf(backend):
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    where = np.array([[False, False, False], [True, False, True]])
    sm = backend.to_numpy(lse.softmax(backend.asarray(x), where=backend.asarray(where)))
    ls = backend.to_numpy(lse.log_softmax(backend.asarray(x), where=backend.asarray(where)))
    np.testing.assert_array_equal(sm[0], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(ls[0], [-INF, -INF, -INF])
    assert sm[1, 1] == 0.0 and ls[1, 1] == -INF
    assert_matches_table(sm[1:], np.array([[4.0, -INF, 6.0]]), -1, False, slack=backend.ulp_slack, ftz=backend.ftz)
    assert_matches_table(ls[1:], np.array([[4.0, -INF, 6.0]]), -1, True, slack=backend.ulp_slack, ftz=backend.ftz)


def test_masked_nan_and_inf_entries_do_not_count(backend):
    x = np.array([NAN, INF, 0.0, 1.0])
    where = np.array([False, False, True, True])
    got = backend.to_numpy(lse.softmax(backend.asarray(x), where=backend.asarray(where)))
    assert got[0] == 0.0 and got[1] == 0.0
    assert_matches_table(got[2:], np.array([0.0, 1.0]), -1, False, slack=backend.ulp_slack, ftz=backend.ftz)


# ----------------------------------------------------------------------------------------------
# Values: mpmath, SciPy, the dominant entry
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fam", ["N(0,1)", "1000+N(0,1)", "[0,-40x999]", "0+U(-25,-15)", "U(-700,700)"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_values_match_mpmath_on_the_families(backend, fam, name):
    x, _ = family_case(fam, 200, 0, "float64")
    got = backend.to_numpy(FUNCS[name](backend.asarray(x)))
    assert_matches_table(got, x, -1, name == "log_softmax", slack=backend.ulp_slack, ftz=backend.ftz)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_narrow_dtypes_are_correctly_rounded_and_kept(backend, name, dtype):
    if dtype not in backend.float_dtypes:
        pytest.skip(f"backend {backend.name} has no {dtype}")
    x, _ = family_case("N(0,1)", 40, 1, dtype)
    got = FUNCS[name](backend.asarray(x, dtype))
    assert backend.dtype_name(got) == dtype
    assert_matches_table(backend.to_numpy(got), x, -1, name == "log_softmax", dtype, slack=backend.ulp_slack, ftz=backend.ftz)


# float16 rows whose softmax / log_softmax a float32 intermediate rounded twice (one float16 ulp
# off in one entry each): found among 200,000 random rows
_TWICE_ROUNDED_F16 = {
    "softmax": [-1.8857421875, 3.265625, 0.37890625, -1.310546875, 6.13671875, 4.21484375, 2.091796875],
    "log_softmax": [2.91796875, -0.136474609375, 2.580078125, -0.841796875, 2.41015625, -2.65234375, -5.63671875],
}


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_float16_rows_rounded_once(np_backend, name):
    """Each entry is the float16 nearest the exact value (mpmath), on both NumPy paths."""
    x = np.array(_TWICE_ROUNDED_F16[name], dtype=np.float16)
    got = FUNCS[name](np_backend.asarray(x))
    assert got.dtype == np.float16
    total = MP.fsum(MP.exp(MP.mpf(float(v))) for v in x)
    exact = [MP.mpf(float(v)) - MP.log(total) if name == "log_softmax" else MP.exp(MP.mpf(float(v))) / total for v in x]
    want = np.array([float(e) for e in exact]).astype(np.float16)  # float64 to float16: one rounding
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_log_softmax_at_the_dominant_entry_keeps_relative_accuracy(backend, dtype):
    """[0, −40×999]: log_softmax at 0 is −999·e^{−40} = −4.2441e−15 (x − LSE(x) returns 0); ≤ 2 ulp."""
    x, exact_lse = family_case("[0,-40x999]", 1000, 0, dtype)
    got = backend.to_numpy(lse.log_softmax(backend.asarray(x, dtype)))
    bound = 2.0 + (backend.ulp_slack if dtype == "float64" else 0.0)
    assert ulp_error(got[0], -exact_lse, dtype) <= bound
    assert ulp_error(got[1], MP.mpf(-40) - exact_lse, dtype) <= bound


@pytest.mark.parametrize("axis", [0, 1, -1, (0, 2), (0, 1, 2)], ids=str)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_matches_exact_and_scipy_on_random_input(backend, name, axis):
    """Exact values (mpmath, the bounds of ``assert_matches_table``), and SciPy's semantics for
    every axis form: within 16·eps of SciPy, whose own softmax is up to ~6 ulp off here (it
    rounds x_i − max before the exp), so a tighter comparison would test SciPy, not us."""
    x = np.random.default_rng(7).standard_normal((3, 4, 5)) * 4
    got = backend.to_numpy(FUNCS[name](backend.asarray(x), axis=axis))
    assert_matches_table(got, x, axis, name == "log_softmax", slack=backend.ulp_slack, ftz=backend.ftz)
    ref = getattr(scipy_special, name)(x, axis=axis)
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(got, ref, rtol=16 * eps, atol=0 if name == "softmax" else 16 * eps)


@pytest.mark.parametrize("t", [0.05, 0.5, 2.0, 30.0])
def test_temperature_divides_the_logits(backend, t):
    """softmax(x, T) = softmax(x / T), compared with the exact softmax of NumPy's x / T; the
    backend may round x / T differently (XLA multiplies by 1/T), so 0.5 ulp of each x_i / T and of
    the max are added to the budget of ``x_i − max``."""
    x = np.random.default_rng(2).standard_normal((2, 6)) * 3
    for name, f in FUNCS.items():
        got = backend.to_numpy(f(backend.asarray(x), temperature=t))
        assert_matches_table(got, x / t, -1, name == "log_softmax", slack=backend.ulp_slack, ftz=backend.ftz,
                             input_ulps=0.5)


@pytest.mark.parametrize("t", [5e-324, 1e-320, 1e-300])
def test_tiny_temperature_gives_the_arg_max_without_overflow(backend, t):
    """T → 0: the softmax is the arg max (1/k on k tied maxima), the log-softmax −log k there and
    (x − m)/T (or −inf) elsewhere. Once the logits themselves were divided by T: [1, 2] / 1e-320 overflowed to
    [inf, inf] and the softmax came out [0.5, 0.5] (with an overflow warning). A subnormal T
    must not matter either: the differences from the maximum are divided, never x itself."""
    x = np.array([[1.0, 2.0, -INF, 0.5], [3.0, -1.0, 3.0, 2.999], [-INF, -INF, -INF, -INF]])
    want = np.array([[0.0, 1.0, 0.0, 0.0], [0.5, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]])
    got = backend.to_numpy(backend.call(lse.softmax, backend.asarray(x), temperature=t))
    np.testing.assert_array_equal(got, want)
    log = backend.to_numpy(backend.call(lse.log_softmax, backend.asarray(x), temperature=t))
    top = want > 0
    np.testing.assert_allclose(log[top], np.log(want[top]), rtol=1e-15, atol=0)
    assert np.all(log[~top] <= -1e296)  # (x − m)/T: −inf, or a finite −1e300 at T = 1e-300


@pytest.mark.parametrize("t", [1e300, 1.7e308])
def test_huge_temperature_flattens_the_entries_that_take_part(backend, t):
    """T → ∞: uniform over the entries that take part (a −inf or masked entry stays 0), never NaN
    (−inf / T stays −inf; inf / inf is never formed)."""
    x = np.array([[1.0, -1e3, -INF, 5e3], [0.0, 0.0, 0.0, 0.0]])
    want = np.array([[1 / 3, 1 / 3, 0.0, 1 / 3], [0.25, 0.25, 0.25, 0.25]])
    got = backend.to_numpy(backend.call(lse.softmax, backend.asarray(x), temperature=t))
    np.testing.assert_allclose(got, want, rtol=4e-16 if got.dtype == np.float64 else 1e-7, atol=0)
    log = backend.to_numpy(backend.call(lse.log_softmax, backend.asarray(x), temperature=t))
    assert log[0, 2] == -INF and np.all(np.isfinite(np.delete(log, 2, axis=1)))


def test_tiny_temperature_with_a_mask_keeps_the_masked_entries_out():
    x = np.array([5.0, 1.0, 2.0])
    got = lse.softmax(x, where=np.array([False, True, True]), temperature=1e-320)
    np.testing.assert_array_equal(got, [0.0, 0.0, 1.0])


def test_temperature_below_float32_range_in_a_float32_working_dtype():
    """A temperature that rounds to 0 (1e-50) or to inf (1e300) in float32 takes its limit; the
    core's float32 working dtype is what an accelerator uses, reached here through array-api-strict,
    whose float32 the core widens on a CPU, so the scaling helper is called directly."""
    from logsumexp._state import divide_by_temperature, times_temperature

    d = np.array([0.0, -1e-3, -INF, NAN], dtype=np.float32)
    np.testing.assert_array_equal(divide_by_temperature(np, d, 1e-50), [0.0, -INF, -INF, NAN])
    np.testing.assert_array_equal(divide_by_temperature(np, d, 1e300), [0.0, 0.0, -INF, NAN])
    v = np.array([0.0, 0.5, -INF, NAN], dtype=np.float32)
    np.testing.assert_array_equal(times_temperature(np, v, 1e300), [0.0, INF, -INF, NAN])
    np.testing.assert_array_equal(times_temperature(np, v, 1e-50), [0.0, 0.0, -INF, NAN])


@settings(HYP, max_examples=200)
@given(
    x=hnp.arrays(np.float64, st.integers(1, 10), elements=st.floats(-1e300, 1e300, allow_nan=False)),
    t=st.floats(5e-324, 1.7e308, exclude_min=False),
)
def test_softmax_sums_to_one_at_any_temperature(x, t):
    """For every T > 0 (subnormal to the largest float): the softmax is a probability vector whose
    arg max keeps the largest share, and the log-softmax is ≤ 0 and never NaN."""
    p = lse.softmax(x, temperature=t)
    assert np.all((p >= 0) & (p <= 1))
    assert abs(float(np.sum(p)) - 1.0) <= 4 * x.size * np.finfo(np.float64).eps
    assert p[np.argmax(x)] == p.max()
    logp = lse.log_softmax(x, temperature=t)
    assert not np.any(np.isnan(logp)) and np.all(logp <= 0)


@pytest.mark.parametrize("bad", [0.0, -2.0, INF, NAN])
def test_bad_temperature_raises_value_error(backend, bad):
    for f in FUNCS.values():
        with pytest.raises(ValueError, match="temperature"):
            f(backend.asarray(np.zeros(3)), temperature=bad)


@pytest.mark.parametrize("bad", ["1.0", None, [1.0], 1 + 0j])
def test_non_real_temperature_raises_type_error(bad):
    for f in FUNCS.values():
        with pytest.raises(TypeError, match="temperature"):
            f(np.zeros(3), temperature=bad)


def test_integer_input_promotes_to_default_float(backend):
    x = np.array([[1, 2, 3]], dtype=np.int64)
    for name, f in FUNCS.items():
        got = f(backend.asarray(x))
        assert backend.dtype_name(got) == backend.default_float
        assert_matches_table(backend.to_numpy(got), x.astype(float), -1, name == "log_softmax",
                             backend.default_float)


def test_dtype_argument_sets_the_result_dtype(backend):
    x = np.array([0.1, 0.2, 0.7])
    for name, f in FUNCS.items():
        got = f(backend.asarray(x), dtype=backend.dtype("float32"))
        assert backend.dtype_name(got) == "float32"
        want = table(x, -1, name == "log_softmax")[0]
        for g, w in zip(backend.to_numpy(got), want):
            assert ulp_error(g, MP.mpf(w), "float32") <= 0.51
    with pytest.raises(TypeError, match="dtype"):
        lse.softmax(backend.asarray(x), dtype=backend.dtype("int32"))


def test_complex_and_string_input_raise_type_error(backend):
    for f in FUNCS.values():
        with pytest.raises(TypeError, match="complex"):
            f(backend.asarray(np.array([1j, 2.0])))
        with pytest.raises(TypeError, match=r"\bx\b"):
            f(["a", "b"])


def test_list_input_and_numpy_result(np_backend):
    got = lse.softmax([[1000.0, 1000.0, 1000.0]])
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_array_equal(got, [[1 / 3] * 3])


def test_large_input_uses_the_blocked_path(np_backend):
    """More than one NumPy block (2**17 elements), along rows and columns; a few slices checked
    against mpmath with the tolerance of ``assert_matches_table``."""
    x = np.random.default_rng(1).standard_normal((30, 4400)) * 3
    for name, f in FUNCS.items():
        log = name == "log_softmax"
        got = f(x, axis=1)
        assert_matches_table(got[[17]], x[[17]], 1, log)
        got = f(x, axis=0)
        assert_matches_table(got[:, [0, 2295, 4399]], x[:, [0, 2295, 4399]], 0, log)


# ----------------------------------------------------------------------------------------------
# Properties (hypothesis)
# ----------------------------------------------------------------------------------------------
finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
matrices = hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 30)), elements=finite)



def test_softmax_sums_to_one_and_lies_in_unit_interval(backend):
    """|Σ − 1| ≤ n·eps: each entry is within ~1 ulp of its exact value, and those sum to 1."""

    @backend.hyp
    @given(matrices)
    def check(x):
        p = backend.to_numpy(lse.softmax(backend.asarray(x), axis=1))
        assert ((0.0 <= p) & (p <= 1.0)).all()
        n = x.shape[1]
        assert np.all(np.abs(p.sum(axis=1) - 1.0) <= n * np.finfo(np.float64).eps)

    check()


def test_log_softmax_is_nonpositive_and_consistent_with_softmax(backend):
    @backend.hyp
    @given(matrices)
    def check(x):
        ls = backend.to_numpy(lse.log_softmax(backend.asarray(x), axis=1))
        p = backend.to_numpy(lse.softmax(backend.asarray(x), axis=1))
        assert (ls <= 0.0).all()
        big = p > 1e-300  # exp(log_softmax) = softmax, to a few ulp where not subnormal
        np.testing.assert_allclose(np.exp(ls[big]), p[big], rtol=1e-13)

    check()


def test_softmax_is_shift_invariant(backend):
    """softmax(x + c) = softmax(x) when x + c is exact (x on a 2^-10 grid, c an integer)."""

    @backend.hyp
    @given(hnp.arrays(np.int64, st.integers(1, 20), elements=st.integers(-(2**16), 2**16)), st.integers(-(10**6), 10**6))
    def check(k, c):
        x = k / 1024.0
        a = backend.to_numpy(lse.softmax(backend.asarray(x)))
        b = backend.to_numpy(lse.softmax(backend.asarray(x + c)))
        np.testing.assert_array_equal(a, b)  # x_i − max is the same exact float on both sides

    check()


def test_softmax_is_permutation_equivariant(backend):
    @backend.hyp
    @given(hnp.arrays(np.float64, st.integers(1, 30), elements=finite), st.randoms(use_true_random=False))
    def check(x, rnd):
        perm = np.array(rnd.sample(range(len(x)), len(x)))
        a = backend.to_numpy(lse.softmax(backend.asarray(x)))
        b = backend.to_numpy(lse.softmax(backend.asarray(x[perm])))
        # the denominator's summation order changes: a few ulp
        np.testing.assert_allclose(b, a[perm], rtol=4 * len(x) * np.finfo(np.float64).eps, atol=0)

    check()


def test_agrees_with_mpmath_on_extreme_inputs(backend):
    @backend.hyp
    @given(hnp.arrays(np.float64, st.integers(1, 12), elements=st.one_of(
        st.floats(-1e300, 1e300), st.sampled_from([0.0, -40.0, -745.0, 709.0, 710.0, -INF]))))
    def check(x):
        for name, f in FUNCS.items():
            got = backend.to_numpy(f(backend.asarray(x)))
            assert_matches_table(got, x, -1, name == "log_softmax", slack=backend.ulp_slack, ftz=backend.ftz)

    check()


# --------------------------------------------------------------------------------------------
# Found by a new user: NumPy masked arrays
# --------------------------------------------------------------------------------------------
def test_masked_array_entries_get_probability_zero(np_backend):
    """np.ma input: [0, 0, inf] was returned (the masked 1000 was read as data)."""
    x = np.ma.array([1.0, 2.0, 1000.0], mask=[0, 0, 1])
    got = lse.softmax(x)
    e = math.exp(1.0)
    np.testing.assert_allclose(got, [1 / (1 + e), e / (1 + e), 0.0], rtol=1e-15)
    lg = lse.log_softmax(x)
    assert lg[2] == -math.inf
    np.testing.assert_allclose(lg[:2], np.log([1 / (1 + e), e / (1 + e)]), rtol=1e-15)


def test_issue20_softmax_of_a_scalar_is_one_as_in_scipy(backend):
    """scipy's test_softmax_scalar / test_log_softmax_scalar: a 0-d input is one slice of one."""
    x = backend.asarray(np.array(3.0))
    assert backend.to_numpy(lse.softmax(x)) == 1.0
    assert backend.to_numpy(lse.log_softmax(x)) == 0.0
    assert lse.softmax(1000) == 1.0 and lse.log_softmax(1.0) == 0.0
    assert np.isnan(lse.softmax(np.nan))


def test_issue20_axis_none_gives_scipys_default():
    """The documented difference: our default is axis=-1; axis=None is SciPy's whole-array softmax."""
    sp = pytest.importorskip("scipy.special", reason="compares with the package 'scipy'")
    x = np.arange(4.0).reshape(2, 2)
    np.testing.assert_allclose(lse.softmax(x, axis=None), sp.softmax(x), rtol=4e-16, atol=0)
    np.testing.assert_allclose(lse.log_softmax(x, axis=None), sp.log_softmax(x), rtol=4e-16, atol=0)
    np.testing.assert_allclose(lse.softmax(x), sp.softmax(x, axis=-1), rtol=4e-16, atol=0)
