"""The (max, lead, tail) state, its merge, and LSEState (src/logsumexp/_state.py, _lse_state.py).

The merge is the one piece that streaming, chunking, Dask, vocab-parallel and GPU blocks share:
identity (−inf, 0, 0), associative and commutative up to rounding, special values
carried (all −inf stays −inf without NaN, +inf wins, NaN poisons). Tolerances: two merge orders
of the same terms agree within 3 ulp (each within 1.5 ulp of the exact value); chunked = whole
within 2 ulp (the brief's bound); values within 1.5 ulp of mpmath.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from _reference import abs_error, lse_tolerance, mp_lse, ulp
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import logsumexp as lse
from logsumexp import _state

INF, NAN = math.inf, math.nan



def state_of(backend, x: np.ndarray, axis: int = -1, b: np.ndarray | None = None) -> _state.State:
    """block_state of a float64 NumPy input on the backend (zero weights already −inf, as the
    contract of block_state asks)."""
    xp = backend.xp
    if b is not None:
        x = np.where(b == 0, -INF, x)
    return _state.block_state(xp, backend.asarray(x), axis % x.ndim, None if b is None else backend.asarray(b))


def value_np(backend, s: _state.State) -> np.ndarray:
    with np.errstate(all="ignore"):  # the merge itself may be evaluated here on lazy backends
        return backend.to_numpy(_state.value(backend.xp, s))


def close(a: np.ndarray, b: np.ndarray, ulps: float) -> None:
    """Same NaN/inf pattern; finite entries within ``ulps`` float64 ulps of each other."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_array_equal(a[np.isinf(b)], b[np.isinf(b)])
    fin = np.isfinite(b)
    for x, y in zip(a[fin], b[fin]):
        assert abs(x - y) <= ulps * max(ulp(x, "float64"), ulp(y, "float64")), (x, y)


SLICES = np.array(
    [
        [0.5, 1.0, -2.0, 3.0, 0.0, -1.0],
        [-INF, -INF, -INF, -INF, -INF, -INF],
        [INF, 1.0, -INF, 2.0, INF, 0.0],
        [NAN, 1.0, 2.0, 3.0, 4.0, 5.0],
        [0.0, -40.0, -40.0, -40.0, -40.0, -40.0],
        [700.0, -700.0, 710.0, -745.0, 0.0, 709.0],
    ]
)


# ----------------------------------------------------------------------------------------------
# merge: identity, commutativity, associativity, special values
# ----------------------------------------------------------------------------------------------
def test_identity_state_is_neg_inf_zero_zero(backend):
    s = _state.empty_state(backend.xp, (3,), backend.dtype("float64"))
    m, lead, tail = (backend.to_numpy(a) for a in s)
    np.testing.assert_array_equal(m, [-INF] * 3)
    np.testing.assert_array_equal(lead, [0.0] * 3)
    np.testing.assert_array_equal(tail, [0.0] * 3)
    np.testing.assert_array_equal(value_np(backend, s), [-INF] * 3)


def test_merge_with_identity_changes_nothing(backend):
    """merge(s, e) and merge(e, s) have the value of s; their raw (m, lead, tail) equal s's on
    every slice without a NaN (a NaN slice is NaN whatever its lead)."""
    s = state_of(backend, SLICES)
    e = _state.empty_state(backend.xp, (SLICES.shape[0],), backend.dtype("float64"))
    ok = ~np.isnan(SLICES).any(axis=1)
    for merged in (_state.merge(backend.xp, s, e), _state.merge(backend.xp, e, s)):
        np.testing.assert_array_equal(value_np(backend, merged), value_np(backend, s))
        for got, want in zip(merged, s):
            np.testing.assert_array_equal(backend.to_numpy(got)[ok], backend.to_numpy(want)[ok])


def test_merge_of_chunks_follows_the_table(backend):
    """Splitting each special slice in two and merging gives the slice's own result."""
    left, right = state_of(backend, SLICES[:, :3]), state_of(backend, SLICES[:, 3:])
    whole = value_np(backend, state_of(backend, SLICES))
    for merged in (_state.merge(backend.xp, left, right), _state.merge(backend.xp, right, left)):
        close(value_np(backend, merged), whole, 2.0)
    got = value_np(backend, _state.merge(backend.xp, left, right))
    assert got[1] == -INF and got[2] == INF and np.isnan(got[3])


def test_merge_of_two_all_neg_inf_states_is_not_nan(backend):
    a = state_of(backend, np.full((2, 3), -INF))
    b = state_of(backend, np.full((2, 3), -INF))
    m, lead, tail = (backend.to_numpy(v) for v in _state.merge(backend.xp, a, b))
    assert not np.isnan(m).any() and not np.isnan(lead).any() and not np.isnan(tail).any()
    np.testing.assert_array_equal(value_np(backend, _state.merge(backend.xp, a, b)), [-INF, -INF])


def test_nan_in_either_state_poisons_the_merge(backend):
    a = state_of(backend, np.array([[NAN, 1.0], [0.0, 1.0]]))
    b = state_of(backend, np.array([[0.0, 2.0], [INF, NAN]]))
    for merged in (_state.merge(backend.xp, a, b), _state.merge(backend.xp, b, a)):
        assert np.isnan(value_np(backend, merged)).all()


def test_posinf_states_merge_to_posinf(backend):
    a = state_of(backend, np.array([[INF, 1.0], [INF, INF]]))
    b = state_of(backend, np.array([[INF, 5.0], [3.0, -INF]]))
    got = value_np(backend, _state.merge(backend.xp, a, b))
    np.testing.assert_array_equal(got, [INF, INF])


chunk_lists = st.lists(
    hnp.arrays(np.float64, st.integers(0, 6), elements=st.one_of(
        st.floats(-800, 800), st.sampled_from([-INF, 0.0, -40.0]))),
    min_size=1, max_size=5,
)


def test_merge_is_commutative_and_associative(backend):
    """Any grouping and order of the chunks' states gives the whole's value within 3 ulp (each
    within 1.5 ulp of the exact value, which also holds)."""

    @backend.hyp
    @given(chunk_lists, st.randoms(use_true_random=False))
    def check(chunks, rnd):
        xp = backend.xp
        states = [state_of(backend, c[None, :]) for c in chunks]
        left = states[0]
        for s in states[1:]:
            left = _state.merge(xp, left, s)
        order = list(range(len(states)))
        rnd.shuffle(order)
        right = states[order[-1]]
        for i in reversed(order[:-1]):
            right = _state.merge(xp, states[i], right)
        a, b = value_np(backend, left), value_np(backend, right)
        close(a, b, 3.0)
        whole = np.concatenate(chunks)
        exact = mp_lse(whole)
        assert abs_error(a[0], exact) <= lse_tolerance(a[0], whole.max() if whole.size else -INF)

    check()


def test_chunked_states_equal_the_whole_within_2_ulp(backend):
    @backend.hyp
    @given(
        hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(2, 40)),
                   elements=st.floats(-1000, 1000)),
        st.data(),
    )
    def check(x, data):
        cut = data.draw(st.integers(1, x.shape[1] - 1))
        whole = value_np(backend, state_of(backend, x))
        merged = _state.merge(backend.xp, state_of(backend, x[:, :cut]), state_of(backend, x[:, cut:]))
        close(value_np(backend, merged), whole, 2.0)

    check()


def test_value_return_sign_follows_the_weights(backend):
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    b = np.array([[1.0, -2.0], [1.0, -1.0], [2.0, 1.0]])
    out, sign = _state.value(backend.xp, state_of(backend, x, b=b), return_sign=True)
    np.testing.assert_array_equal(backend.to_numpy(sign), [-1.0, 0.0, 1.0])
    got = backend.to_numpy(out)
    assert got[0] == 0.0 and got[1] == -INF
    assert abs(got[2] - (1 + math.log(3))) <= 1.5 * ulp(got[2], "float64")
    assert np.isnan(value_np(backend, state_of(backend, x[:1], b=b[:1])))[0]


# ----------------------------------------------------------------------------------------------
# LSEState
# ----------------------------------------------------------------------------------------------
def test_lsestate_identity_value_is_neg_inf():
    s = lse.LSEState()
    assert s.value == -INF and type(s.value) is np.float64
    assert s.state is None
    assert repr(s) == "LSEState(axis=None, shape=None)"


def test_lsestate_update_returns_self_and_accumulates(backend):
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal(n) * 10 for n in (5, 1, 17, 3)]
    s = lse.LSEState()
    for c in chunks:
        assert s.update(backend.asarray(c)) is s
    whole = np.concatenate(chunks)
    got = float(backend.to_numpy(s.value))
    assert abs_error(got, mp_lse(whole)) <= lse_tolerance(got, whole.max())
    want = float(backend.to_numpy(lse.logsumexp(backend.asarray(whole))))
    assert abs(got - want) <= 2 * ulp(want, "float64")


def test_lsestate_chunks_along_axis_equal_the_whole(backend):
    """Stream rows of a (12, 5) matrix with axis=0: one value per column, ≤ 2 ulp from the whole."""
    x = np.random.default_rng(1).standard_normal((12, 5)) * 30
    s = lse.LSEState(axis=0)
    for lo, hi in ((0, 4), (4, 5), (5, 12)):
        s.update(backend.asarray(x[lo:hi]))
    got = backend.to_numpy(s.value)
    assert got.shape == (5,)
    close(got, backend.to_numpy(lse.logsumexp(backend.asarray(x), axis=0)), 2.0)
    for j in range(5):
        assert abs_error(got[j], mp_lse(x[:, j])) <= lse_tolerance(got[j], x[:, j].max())


def test_lsestate_with_weights(backend):
    x = np.random.default_rng(2).standard_normal((2, 8))
    b = np.abs(np.random.default_rng(3).standard_normal((2, 8)))
    b[0, 3] = 0.0
    x[0, 3] = INF  # removed by its zero weight
    s = lse.LSEState(axis=1)
    s.update(backend.asarray(x[:, :5]), b=backend.asarray(b[:, :5]))
    s.update(backend.asarray(x[:, 5:]), b=backend.asarray(b[:, 5:]))
    got = backend.to_numpy(s.value)
    for i in range(2):
        keep = b[i] != 0
        assert abs_error(got[i], mp_lse(x[i][keep], b[i][keep])) <= lse_tolerance(got[i], x[i][keep].max(), cond=2.0)


def test_lsestate_merge_is_in_place_and_returns_self_like_update(backend):
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal(6), rng.standard_normal(9) + 3
    a = lse.LSEState().update(backend.asarray(x))
    b = lse.LSEState().update(backend.asarray(y))
    vb = float(backend.to_numpy(b.value))
    assert a.merge(b) is a
    assert float(backend.to_numpy(b.value)) == vb  # the merged-in state is unchanged
    both = np.concatenate([x, y])
    got = float(backend.to_numpy(a.value))
    assert abs_error(got, mp_lse(both)) <= lse_tolerance(got, both.max())
    va = got
    assert float(backend.to_numpy(a.merge(lse.LSEState()).value)) == va
    assert float(backend.to_numpy(lse.LSEState().merge(a).value)) == va


def test_issue20_merge_in_a_loop_accumulates_every_state(backend):
    """issue 20: ``for st in states: s.merge(st)`` left ``s`` at −inf when merge returned a new state."""
    chunks = [np.arange(3.0), np.array([10.0]), np.array([-5.0, 7.0])]
    s = lse.LSEState()
    for st in [lse.LSEState().update(backend.asarray(c)) for c in chunks]:
        s.merge(st)
    whole = np.concatenate(chunks)
    got = float(backend.to_numpy(s.value))
    assert abs_error(got, mp_lse(whole)) <= lse_tolerance(got, whole.max())


def test_issue20_merging_states_over_different_axes_raises_value_error_naming_both(np_backend):
    """Two (3, 3) inputs reduced over axis 0 and axis 1 both keep shape (3,): merging them would
    silently mix rows and columns."""
    a = lse.LSEState(axis=0).update(np.zeros((3, 3)))
    b = lse.LSEState(axis=1).update(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"axis=1.*axis=0"):
        a.merge(b)
    with pytest.raises(ValueError, match="different axes"):
        lse.LSEState(axis=0).merge(b)  # an empty state with other axes refuses too
    assert a.merge(lse.LSEState(axis=-2).update(np.ones((3, 3)))) is a  # -2 is axis 0 here


def test_lsestate_special_values(backend):
    s = lse.LSEState(axis=1)
    s.update(backend.asarray(np.array([[-INF, -INF], [INF, 0.0], [NAN, 0.0], [0.0, 0.0]])))
    s.update(backend.asarray(np.array([[-INF], [INF], [0.0], [-INF]])))
    got = backend.to_numpy(s.value)
    assert got[0] == -INF and got[1] == INF and np.isnan(got[2])
    assert abs(got[3] - math.log(2)) <= ulp(math.log(2), "float64")


def test_lsestate_pickle_round_trip(backend):
    """A pickled state restores its value; a Dask-backed state travels computed (NumPy arrays)."""

    def host(v):
        return np.asarray(v.compute() if hasattr(v, "compute") else v)

    s = lse.LSEState(axis=-1).update(backend.asarray(np.array([[1.0, 2.0, 3.0], [-INF, -INF, -INF]])))
    t = pickle.loads(pickle.dumps(s))
    assert t.axis == -1
    np.testing.assert_array_equal(host(t.value), host(s.value))
    t.update(backend.asarray(np.array([[4.0], [0.0]])))  # the restored state keeps working
    got = host(t.value)
    assert abs_error(got[0], mp_lse([1.0, 2.0, 3.0, 4.0])) <= lse_tolerance(got[0], 4.0)
    assert got[1] == 0.0
    empty = pickle.loads(pickle.dumps(lse.LSEState(axis=(0, 1))))
    assert empty.axis == (0, 1) and empty.value == -INF and empty.state is None


def test_lsestate_shape_mismatch_raises_value_error(backend):
    s = lse.LSEState(axis=0).update(backend.asarray(np.zeros((2, 3))))
    with pytest.raises(ValueError, match="shape"):
        s.update(backend.asarray(np.zeros((2, 4))))
    other = lse.LSEState(axis=0).update(backend.asarray(np.zeros((2, 5))))
    with pytest.raises(ValueError, match="shape"):
        s.merge(other)


def test_lsestate_merge_with_something_else_raises_type_error():
    with pytest.raises(TypeError, match="other"):
        lse.LSEState().merge(np.zeros(3))


def test_lsestate_state_property_and_repr(np_backend):
    s = lse.LSEState(axis=1).update(np.zeros((4, 3)))
    assert repr(s) == "LSEState(axis=1, shape=(4,))"
    m, lead, tail = s.state
    np.testing.assert_array_equal(m, np.zeros(4))
    np.testing.assert_array_equal(lead + tail, np.full(4, 3.0))  # Σ e^{x − m} = e^m (lead + tail)


def test_lsestate_float32_chunks_accumulate_wide(np_backend):
    """float32 chunks: the state is float64 (CPU accumulation), so 1000 chunks of one entry each
    give the correctly rounded float32 result, returned as float32 as logsumexp returns it."""
    x = np.random.default_rng(5).standard_normal(1000).astype(np.float32)
    s = lse.LSEState()
    for v in x:
        s.update(np.array([v]))
    assert s.state.m.dtype == np.float64
    assert s.value.dtype == np.float32
    exact = mp_lse(x.astype(np.float64))
    assert abs_error(float(s.value), exact) <= lse_tolerance(float(s.value), float(x.max()), "float32", ulps=0.5)


# --------------------------------------------------------------------------------------------
# Negative weights (SciPy's return_sign semantics) and the result dtype
# --------------------------------------------------------------------------------------------
def test_lsestate_negative_weights_give_log_abs_and_sign_like_scipy(backend):
    """A negative total gave NaN with no way to get the sign."""
    scipy_special = pytest.importorskip("scipy.special", reason="compares with the package 'scipy'")
    rng = np.random.default_rng(11)
    x, b = rng.standard_normal((3, 8)), rng.standard_normal((3, 8))
    s = lse.LSEState(axis=1)
    for lo, hi in ((0, 3), (3, 8)):
        s.update(backend.asarray(x[:, lo:hi]), b=backend.asarray(b[:, lo:hi]))
    want, want_sign = scipy_special.logsumexp(x, axis=1, b=b, return_sign=True)
    np.testing.assert_allclose(backend.to_numpy(s.value), want, rtol=1e-13)
    np.testing.assert_array_equal(backend.to_numpy(s.sign), want_sign)
    assert (want_sign < 0).any() and (want_sign > 0).any()  # both signs are exercised


def test_lsestate_sign_of_an_empty_and_a_positive_state():
    assert lse.LSEState().sign == 0.0
    s = lse.LSEState().update(np.array([1.0, 2.0]))
    assert s.sign == 1.0 and s.value > 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lsestate_value_keeps_the_input_dtype(backend, dtype):
    if dtype not in backend.float_dtypes:
        pytest.skip(f"backend {backend.name} has no {dtype}")
    s = lse.LSEState().update(backend.asarray(np.array([1.0, 2.0]), dtype)).update(backend.asarray(np.array([3.0]), dtype))
    assert backend.dtype_name(s.value) == dtype
    assert backend.dtype_name(s.sign) == dtype
    np.testing.assert_allclose(backend.to_numpy(s.value), float(mp_lse([1.0, 2.0, 3.0])), rtol=2e-7 if dtype == "float32" else 1e-15)


def test_lsestate_masked_chunk_is_read_with_its_mask():
    s = lse.LSEState().update(np.ma.array([1.0, 2.0, 1000.0], mask=[0, 0, 1]))
    assert float(s.value) == pytest.approx(float(mp_lse([1.0, 2.0])), rel=1e-15)
