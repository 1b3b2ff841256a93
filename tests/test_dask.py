"""logsumexp.dask: one-pass Dask reductions, checked against the array core on the computed array.

Tolerances: logsumexp within 2 ulp of the core's result in its dtype (the chunks' states are
merged in another order than the core's blocks, so the last bits may differ); softmax and
log_softmax within 4 ulp (on top of that, the core's CPU kernels use their own exp, ≤ 1 ulp from
NumPy's, and the division/subtraction adds a rounding). Special values must match exactly.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="logsumexp.dask needs the 'dask' package (dask[array])")
import dask  # noqa: E402

import logsumexp as lse  # noqa: E402
import logsumexp.dask as lsed  # noqa: E402

ULP = 2
SOFTMAX_ULP = 4
RNG_SEED = 20261126


def assert_ulp(got: Any, expected: Any, ulp: int = ULP) -> None:
    """Same shape and dtype, the same NaN/±inf positions, finite values within ``ulp`` ulp."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(got[~finite], expected[~finite])
    tol = ulp * np.spacing(np.abs(expected[finite]))
    err = np.abs(got[finite].astype(np.float64) - expected[finite].astype(np.float64))
    assert np.all(err <= tol), f"max error {np.max(err / tol) * ulp:.2f} ulp > {ulp}"


def core_lse(a: np.ndarray, axis: Any = None, **kw: Any) -> Any:
    """The core's logsumexp; for ``axis=()`` with its compiled fast path off, because
    ``_cpu.lse_state``'s 1-D shortcut reduces the whole array even when ``axes == ()``
    (reported; ``logsumexp.dask`` works around it)."""
    if axis == ():
        from logsumexp import _cpu

        with _cpu.disabled():
            return lse.logsumexp(a, axis=axis, **kw)
    return lse.logsumexp(a, axis=axis, **kw)


def data(shape: tuple[int, ...], dtype: Any = np.float64, scale: float = 30.0) -> np.ndarray:
    rng = np.random.default_rng(RNG_SEED)
    return (rng.standard_normal(shape) * scale).astype(dtype)


class CountingArray:
    """An array-like whose reads Dask's ``from_array`` counts: one ``__getitem__`` per chunk read."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a
        self.shape, self.dtype, self.ndim = a.shape, a.dtype, a.ndim
        self.reads = 0

    def __getitem__(self, key: Any) -> np.ndarray:
        self.reads += 1
        return self.a[key]


def counted(a: np.ndarray, chunks: Any) -> tuple[CountingArray, Any]:
    src = CountingArray(a)
    x = da.from_array(src, chunks=chunks, asarray=True, meta=np.empty((0,) * a.ndim, a.dtype))
    src.reads = 0  # building the graph may probe the source; only reads at compute time count
    return src, x


# ---------------------------------------------------------------------------------------------
# Agreement with the core over many chunkings
# ---------------------------------------------------------------------------------------------
CHUNKINGS = [
    ((7, 11, 5), (3, 4, 2)),  # uneven on every axis
    ((7, 11, 5), (1, 1, 1)),  # chunks of one element
    ((7, 11, 5), (7, 11, 5)),  # one chunk
    ((7, 11, 5), ((1, 6), (5, 1, 5), (2, 3))),  # explicit, irregular
    ((40,), (13,)),
    ((40,), (1,)),
]
AXES_1D = [None, 0, -1, (0,), ()]
AXES_3D = [*AXES_1D, 1, (0, -1), (2, 0, 1)]
CASES = [(shape, chunks, axis) for shape, chunks in CHUNKINGS for axis in (AXES_1D if len(shape) == 1 else AXES_3D)]


@pytest.mark.parametrize(("shape", "chunks", "axis"), CASES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_matches_core(shape: tuple[int, ...], chunks: Any, axis: Any, keepdims: bool) -> None:
    a = data(shape)
    x = da.from_array(a, chunks=chunks)
    r = lsed.logsumexp(x, axis=axis, keepdims=keepdims)
    assert isinstance(r, da.Array)
    assert_ulp(r.compute(), core_lse(a, axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("split_every", [2, 3, {0: 2, 1: 3}, 100])
def test_tree_reduction_with_combine_steps(split_every: Any) -> None:
    # 9 x 12 chunks: split_every 2 makes a tree of depth 4, so the combine step runs many times
    a = data((45, 36))
    x = da.from_array(a, chunks=(5, 3))
    for axis in (None, 0, 1):
        assert_ulp(lsed.logsumexp(x, axis=axis, split_every=split_every).compute(), lse.logsumexp(a, axis=axis))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_float_dtypes_round_trip(dtype: Any) -> None:
    a = data((6, 50), dtype, scale=3.0)
    x = da.from_array(a, chunks=(4, 7))
    r = lsed.logsumexp(x, axis=1)
    assert r.dtype == dtype
    assert_ulp(r.compute(), lse.logsumexp(a, axis=1))
    s = lsed.softmax(x)
    assert s.dtype == dtype
    assert_ulp(s.compute(), lse.softmax(a), SOFTMAX_ULP)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
def test_integers_and_bools_give_float64(dtype: Any) -> None:
    a = np.arange(24).reshape(4, 6).astype(dtype)
    x = da.from_array(a, chunks=(3, 4))
    r = lsed.logsumexp(x, axis=0)
    assert r.dtype == np.float64
    assert_ulp(r.compute(), lse.logsumexp(a, axis=0))
    assert_ulp(lsed.log_softmax(x).compute(), lse.log_softmax(a), SOFTMAX_ULP)


@pytest.mark.parametrize(
    ("shape", "chunks", "axis"),
    [((0,), 5, None), ((3, 0), (2, 2), 0), ((3, 0), (2, 2), 1), ((0, 4), (2, 3), 0), ((0, 4), (2, 3), None)],
)
def test_empty_arrays(shape: tuple[int, ...], chunks: Any, axis: Any) -> None:
    a = np.empty(shape)
    x = da.from_array(a, chunks=chunks)
    for keepdims in (False, True):
        assert_ulp(lsed.logsumexp(x, axis=axis, keepdims=keepdims).compute(), lse.logsumexp(a, axis=axis, keepdims=keepdims))
    ax = -1 if axis is None else axis
    assert_ulp(lsed.softmax(x, axis=ax).compute(), lse.softmax(a, axis=ax), SOFTMAX_ULP)
    assert_ulp(lsed.log_softmax(x, axis=ax).compute(), lse.log_softmax(a, axis=ax), SOFTMAX_ULP)


def test_empty_reduction_is_minus_inf() -> None:
    assert lsed.logsumexp(da.zeros((0,), chunks=3)).compute() == -math.inf


def test_zero_dimensional_input() -> None:
    r = lsed.logsumexp(da.asarray(3.0))
    assert r.shape == () and r.compute() == 3.0
    res, sgn = lsed.logsumexp(da.asarray(-2.0), b=-1.0, return_sign=True)
    assert (res.compute(), sgn.compute()) == (-2.0, -1.0)


def test_full_reduction_gives_a_numpy_scalar_like_dask() -> None:
    x = da.from_array(data((20,)), chunks=6)
    assert type(lsed.logsumexp(x).compute()) is type(x.sum().compute()) is np.float64
    res, sgn = lsed.logsumexp(x, return_sign=True)
    assert type(res.compute()) is type(sgn.compute()) is np.float64


def test_unknown_chunk_sizes() -> None:
    # boolean indexing leaves NaN chunk sizes; the reduction does not need them
    a = data((100,))
    x = da.from_array(a, chunks=13)
    y = x[x > 0]
    assert any(math.isnan(c) for c in y.chunks[0])
    assert_ulp(lsed.logsumexp(y).compute(), lse.logsumexp(a[a > 0]))
    assert_ulp(lsed.softmax(y).compute(), lse.softmax(a[a > 0]), SOFTMAX_ULP)


# ---------------------------------------------------------------------------------------------
# softmax / log_softmax
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("shape", "chunks"), CHUNKINGS[:4])
@pytest.mark.parametrize("axis", [-1, 0, (0, 2), (0, 1, 2)])
def test_softmax_and_log_softmax_match_core(shape: tuple[int, ...], chunks: Any, axis: Any) -> None:
    a = data(shape, scale=5.0)
    x = da.from_array(a, chunks=chunks)
    s, ls = lsed.softmax(x, axis=axis), lsed.log_softmax(x, axis=axis)
    assert isinstance(s, da.Array) and isinstance(ls, da.Array)
    assert s.chunks == x.chunks and ls.chunks == x.chunks
    assert_ulp(s.compute(), lse.softmax(a, axis=axis), SOFTMAX_ULP)
    assert_ulp(ls.compute(), lse.log_softmax(a, axis=axis), SOFTMAX_ULP)


def test_softmax_default_axis_is_last() -> None:
    a = data((5, 8), scale=4.0)
    x = da.from_array(a, chunks=(2, 3))
    np.testing.assert_allclose(lsed.softmax(x).compute().sum(axis=-1), 1.0, rtol=4e-16 * 8)


# ---------------------------------------------------------------------------------------------
# Special values (the contract's table), spread over several chunks
# ---------------------------------------------------------------------------------------------
def special_rows() -> np.ndarray:
    inf, nan = math.inf, math.nan
    return np.array(
        [
            [-inf, -inf, -inf, -inf, -inf, -inf, -inf],  # all −inf, across three chunks
            [1.0, 2.0, 3.0, inf, 0.0, -inf, 5.0],  # +inf in one chunk only
            [1.0, 2.0, 3.0, nan, 0.0, -inf, 5.0],  # NaN in one chunk only
            [inf, 2.0, 3.0, 4.0, 0.0, 1.0, inf],  # +inf in the first and the last chunk
            [-inf, -inf, -inf, 7.0, -inf, -inf, -inf],  # one finite entry among −inf
            [1000.0, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0],  # e^1000 overflows
        ]
    )


def test_special_values_logsumexp() -> None:
    a = special_rows()
    x = da.from_array(a, chunks=(2, 3))
    with np.errstate(all="raise"):  # nothing in the graph may even try to warn
        r = lsed.logsumexp(x, axis=1).compute()
    expected = np.array([-math.inf, math.inf, math.nan, math.inf, 7.0, 1000.0 + math.log(7.0)])
    assert_ulp(r, expected)
    assert_ulp(r, lse.logsumexp(a, axis=1))


def test_special_values_softmax_and_log_softmax() -> None:
    a = special_rows()
    x = da.from_array(a, chunks=(2, 3))
    s = lsed.softmax(x).compute()
    ls = lsed.log_softmax(x).compute()
    np.testing.assert_array_equal(s[0], 0.0)  # all −inf: 0, never NaN
    np.testing.assert_array_equal(ls[0], -math.inf)
    np.testing.assert_array_equal(s[1], [0, 0, 0, 1, 0, 0, 0])  # the +inf entry takes everything
    assert np.isnan(s[2]).all() and np.isnan(ls[2]).all()  # NaN poisons its slice only
    np.testing.assert_array_equal(s[3], [0.5, 0, 0, 0, 0, 0, 0.5])  # two +inf: 1/2 each
    np.testing.assert_array_equal(ls[3][[0, 6]], -math.log(2.0))
    np.testing.assert_array_equal(s[4], [0, 0, 0, 1, 0, 0, 0])
    assert_ulp(s[5], np.full(7, 1 / 7))
    assert_ulp(s, lse.softmax(a), SOFTMAX_ULP)
    assert_ulp(ls, lse.log_softmax(a), SOFTMAX_ULP)


def test_nan_stays_in_its_slice() -> None:
    a = data((4, 9))
    a[2, 5] = math.nan
    r = lsed.logsumexp(da.from_array(a, chunks=(3, 2)), axis=1).compute()
    assert np.isnan(r[2]) and np.isfinite(r[[0, 1, 3]]).all()


def test_dominant_term_keeps_relative_accuracy_across_chunks() -> None:
    # [0, -40 x 999]: the plain shift loses ~0.6%; the merged (max, lead, tail) state keeps log1p
    y = np.concatenate([np.full(500, -40.0), [0.0], np.full(499, -40.0)])
    exact = 4.2441059010362884001e-15  # log1p(999 e^-40), mpmath at 50 digits
    r = float(lsed.logsumexp(da.from_array(y, chunks=7)).compute())
    assert abs(r - exact) <= 4 * math.ulp(exact)  # 999 terms summed in 143 chunks: a few roundings
    shift = float(np.log(np.sum(np.exp(y - y.max()))))
    assert abs(shift - exact) > 1e-3 * exact  # what the plain shift gives (the test can fail)


# ---------------------------------------------------------------------------------------------
# Weights and return_sign
# ---------------------------------------------------------------------------------------------
def test_weights_dask_with_other_chunks() -> None:
    a = data((6, 10))
    w = np.random.default_rng(1).uniform(0.0, 2.0, size=(6, 10))
    x = da.from_array(a, chunks=(4, 3))
    b = da.from_array(w, chunks=(2, 5))  # rechunked to x's chunks
    for axis in (None, 0, 1):
        assert_ulp(lsed.logsumexp(x, axis=axis, b=b).compute(), lse.logsumexp(a, axis=axis, b=w))


def test_weights_broadcast_both_ways() -> None:
    a = data((10,))
    w = np.random.default_rng(2).uniform(0.5, 1.5, size=(3, 10))
    x = da.from_array(a, chunks=3)
    assert_ulp(lsed.logsumexp(x, axis=1, b=w).compute(), lse.logsumexp(a, axis=1, b=w))  # x broadcast
    assert_ulp(lsed.logsumexp(x, b=w[0]).compute(), lse.logsumexp(a, b=w[0]))
    assert_ulp(lsed.logsumexp(x, b=2.0).compute(), lse.logsumexp(a, b=2.0))  # scalar weight


def test_zero_weight_removes_infinite_terms() -> None:
    a = np.array([math.inf, 1.0, 2.0, -math.inf, 3.0, math.inf])
    w = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    r = lsed.logsumexp(da.from_array(a, chunks=2), b=da.from_array(w, chunks=2)).compute()
    assert_ulp(r, lse.logsumexp(a, b=w))
    assert_ulp(r, np.float64(math.log(math.e + math.e**2 + math.e**3)))


@pytest.mark.parametrize("keepdims", [False, True])
def test_return_sign(keepdims: bool) -> None:
    a = data((5, 12), scale=2.0)
    w = np.random.default_rng(3).uniform(-1.0, 1.0, size=(5, 12))
    w[4] = 0.0  # sum 0: -inf, sign 0
    x, b = da.from_array(a, chunks=(2, 5)), da.from_array(w, chunks=(2, 5))
    res, sgn = lsed.logsumexp(x, axis=1, b=b, keepdims=keepdims, return_sign=True)
    assert isinstance(res, da.Array) and isinstance(sgn, da.Array)
    r_np, s_np = lse.logsumexp(a, axis=1, b=w, keepdims=keepdims, return_sign=True)
    r_da, s_da = dask.compute(res, sgn)
    # row 2's signed weights cancel (|total| < |lead|/2): NumPy recomputes that slice exactly
    # (0 ulp against mpmath), Dask finishes from the merged chunk states (6 ulp): the Dask limit
    # stated in docs/ACCURACY.md
    assert_ulp(r_da, r_np, ulp=8)
    np.testing.assert_array_equal(s_da, s_np)
    assert (s_np == -1).any() and (s_np == 1).any() and (s_np == 0).any()


def test_negative_sum_without_return_sign_is_nan() -> None:
    x = da.zeros(4, chunks=3)
    r = lsed.logsumexp(x, b=np.array([1.0, -1.0, -1.0, -1.0])).compute()
    assert np.isnan(r)


# ---------------------------------------------------------------------------------------------
# Laziness and one read per chunk
# ---------------------------------------------------------------------------------------------
def test_results_are_lazy_until_compute() -> None:
    # no chunk of the source is read while the graphs are built
    src, x = counted(data((8, 9)), (3, 4))
    outs = [
        lsed.logsumexp(x),
        lsed.logsumexp(x, axis=0, keepdims=True),
        *lsed.logsumexp(x, axis=1, b=np.ones(9), return_sign=True),
        lsed.softmax(x),
        lsed.log_softmax(x, axis=0),
    ]
    assert all(isinstance(o, da.Array) for o in outs)
    assert src.reads == 0
    outs[0].compute()
    assert src.reads > 0


def consumers(result: Any, x: Any) -> list[int]:
    """For each chunk of ``x``, how many tasks of ``result``'s graph read it."""
    graph = dict(result.__dask_graph__())
    count = dict.fromkeys((k for k in graph if isinstance(k, tuple) and k[0] == x.name), 0)
    assert len(count) == x.npartitions
    for task in graph.values():
        for dep in getattr(task, "dependencies", ()):
            if dep in count:
                count[dep] += 1
    return list(count.values())


@pytest.mark.parametrize(("shape", "chunks", "axis"), [((8, 9), (3, 4), None), ((8, 9), (3, 4), 1), ((100,), 7, 0)])
def test_logsumexp_reads_each_chunk_once(shape: tuple[int, ...], chunks: Any, axis: Any) -> None:
    a = data(shape)
    x = da.from_array(a, chunks=chunks)
    r = lsed.logsumexp(x, axis=axis, split_every=2)
    assert consumers(r, x) == [1] * x.npartitions
    assert_ulp(r.compute(), core_lse(a, axis=axis))


def test_two_pass_expression_reads_each_chunk_twice() -> None:
    # the check above can fail: max-then-sum has two consumers per input chunk
    x = da.from_array(data((8, 9)), chunks=(3, 4))
    m = x.max()
    two_pass = m + da.log(da.exp(x - m).sum())
    assert consumers(two_pass, x) == [2] * x.npartitions


def test_weights_and_sign_read_each_chunk_once() -> None:
    a, w = data((8, 9)), np.random.default_rng(4).uniform(-1, 1, (8, 9))
    x, b = da.from_array(a, chunks=(3, 4)), da.from_array(w, chunks=(3, 4))
    res, sgn = lsed.logsumexp(x, axis=0, b=b, return_sign=True)
    both = da.stack([res, sgn])  # one graph holding both results: they share one reduction
    assert consumers(both, x) == [1] * x.npartitions
    assert consumers(both, b) == [1] * b.npartitions


def test_softmax_reads_each_chunk_twice() -> None:
    # one read for the state, one for the elementwise output (documented: a softmax writes every element)
    x = da.from_array(data((8, 9)), chunks=(3, 4))
    assert consumers(lsed.softmax(x, axis=1), x) == [2] * x.npartitions
    assert consumers(lsed.log_softmax(x, axis=(0, 1)), x) == [2] * x.npartitions


def test_chunk_function_runs_once_per_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    original = lsed._chunk_state

    def spy(x: np.ndarray, *args: Any, computing_meta: bool = False, **kwargs: Any) -> Any:
        if not computing_meta:  # (Dask looks for this keyword by name when it probes for meta)
            calls.append(x.shape)
        return original(x, *args, computing_meta=computing_meta, **kwargs)

    monkeypatch.setattr(lsed, "_chunk_state", spy)
    a = data((10, 12))
    x = da.from_array(a, chunks=(3, 5))
    r = lsed.logsumexp(x, axis=1, split_every=2)
    calls.clear()  # graph construction may probe the function on meta arrays
    assert_ulp(r.compute(scheduler="threads"), core_lse(a, axis=1))
    assert sorted(calls) == sorted(itertools.product(*x.chunks))  # each block once, nothing else


# ---------------------------------------------------------------------------------------------
# Errors and imports
# ---------------------------------------------------------------------------------------------
def test_complex_input_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="x must hold real numbers.*complex"):
        lsed.logsumexp(da.zeros(3, dtype=complex, chunks=2))


def test_masked_chunks_are_rejected() -> None:
    x = da.ma.masked_equal(da.arange(6.0, chunks=2), 2.0)
    with pytest.raises(TypeError, match="NumPy-backed Dask array.*MaskedArray"):
        lsed.logsumexp(x)


def test_bad_axis_and_bad_weights() -> None:
    x = da.zeros((3, 4), chunks=2)
    with pytest.raises(np.exceptions.AxisError, match="axis=2"):
        lsed.logsumexp(x, axis=2)
    with pytest.raises(ValueError, match="repeats an axis"):
        lsed.softmax(x, axis=(1, -1))
    with pytest.raises(ValueError, match=r"b of shape \(5,\) does not broadcast against a of shape \(3, 4\)"):
        lsed.logsumexp(x, b=np.ones(5))


def test_numpy_input_is_wrapped() -> None:
    a = data((5,))
    r = lsed.logsumexp(a)
    assert isinstance(r, da.Array)
    assert_ulp(r.compute(), lse.logsumexp(a))


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)


def test_import_logsumexp_does_not_import_dask() -> None:
    p = _run_python("import sys, logsumexp; print(sorted(m for m in sys.modules if m.split('.')[0] == 'dask'))")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_missing_dask_gives_a_clear_import_error() -> None:
    code = (
        "import sys\n"
        "sys.modules['dask'] = None; sys.modules['dask.array'] = None\n"  # as if not installed
        "try:\n"
        "    import logsumexp.dask\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    p = _run_python(code)
    assert p.returncode == 0, p.stderr
    assert "logsumexp.dask needs the 'dask' package" in p.stdout
    assert "pip install 'logsumexp[dask]'" in p.stdout


@pytest.mark.skipif(
    np.finfo(np.longdouble).nmant <= 52, reason="this platform's long double is float64 (no extended precision)"
)
def test_long_double_is_computed_in_long_double_like_numpy() -> None:
    """NumPy's path computes long double in long double; the Dask state travelled in float64 and
    came back as long double with invented digits. Every Dask face now agrees with NumPy to the
    last long double digit (a float64 computation differs by ~1e-16 relative)."""
    from _reference import MP

    x = np.array([[1.0, 2.0, 3.0, -0.5], [0.25, 7.0, 7.0, 1.0]], dtype=np.longdouble)
    b = np.array([1.0, -1.0, 2.0, 0.5], dtype=np.longdouble)
    dx = da.from_array(x, chunks=(1, 2))
    tol = 4 * float(np.finfo(np.longdouble).eps)
    for fn in (lse.logsumexp, lsed.logsumexp):
        got = fn(dx, axis=1).compute()
        assert got.dtype == np.longdouble
        for row, v in zip(x, got):
            exact = MP.log(sum(MP.exp(MP.mpf(str(e))) for e in row))
            assert abs(MP.mpf(str(v)) - exact) <= tol * abs(exact)
    weighted = lse.logsumexp(dx, axis=1, b=b).compute()
    np.testing.assert_allclose(weighted, lse.logsumexp(x, axis=1, b=b), rtol=tol, atol=0)
    for fn in (lse.softmax, lse.log_softmax, lsed.softmax, lsed.log_softmax):
        got = fn(dx).compute()
        assert got.dtype == np.longdouble
        np.testing.assert_allclose(got, (lse.log_softmax if "log" in fn.__name__ else lse.softmax)(x), rtol=tol, atol=0)


# ----------------------------------------------------------------------------------------------
# issue 20: where=, cross_entropy, __all__
# ----------------------------------------------------------------------------------------------
def test_issue20_dask_logsumexp_takes_where_like_the_top_level() -> None:
    x = np.random.default_rng(20).standard_normal((5, 7)) * 10
    mask = np.random.default_rng(21).random((5, 7)) > 0.3
    mask[2] = False  # an all-masked row: −inf
    dx = da.from_array(x, chunks=(2, 3))
    got = lsed.logsumexp(dx, axis=1, where=da.from_array(mask, chunks=(3, 2)))
    assert isinstance(got, da.Array)
    want = lse.logsumexp(x, axis=1, where=mask)
    np.testing.assert_allclose(got.compute(), want, rtol=4e-16, atol=0)
    assert got.compute()[2] == -np.inf
    res, sgn = lsed.logsumexp(dx, where=mask[0], b=np.where(np.arange(7) % 2, 1.0, -1.0), axis=1, return_sign=True)
    r2, s2 = lse.logsumexp(x, where=mask[0], b=np.where(np.arange(7) % 2, 1.0, -1.0), axis=1, return_sign=True)
    np.testing.assert_allclose(res.compute(), r2, rtol=4e-16, atol=0)
    np.testing.assert_array_equal(sgn.compute(), s2)
    with pytest.raises(TypeError, match="where"):
        lsed.logsumexp(dx, where=np.ones((5, 7)))


@pytest.mark.parametrize(
    "options",
    [{}, {"label_smoothing": 0.1}, {"weight": np.arange(1.0, 6.0)}, {"reduction": "none"}, {"reduction": "sum"},
     {"num_items": 3.0}, {"label_smoothing": 0.2, "weight": np.arange(1.0, 6.0), "reduction": "none"}],
    ids=str,
)
def test_issue20_dask_cross_entropy_equals_the_top_level(options) -> None:
    rng = np.random.default_rng(22)
    x = rng.standard_normal((7, 5)) * 5
    t = np.array([0, 1, 2, 3, 4, -100, 1])
    got = lsed.cross_entropy(da.from_array(x, chunks=(3, 2)), da.from_array(t, chunks=3), **options)
    assert isinstance(got, da.Array)
    want = lse.cross_entropy(x, t, **options)
    np.testing.assert_allclose(got.compute(), want, rtol=8e-16, atol=0)


def test_issue20_dask_cross_entropy_with_probabilities_and_out_of_range() -> None:
    x = np.random.default_rng(23).standard_normal((4, 3))
    p = np.full((4, 3), 1 / 3)
    got = lsed.cross_entropy(da.from_array(x, chunks=2), da.from_array(p, chunks=2))
    np.testing.assert_allclose(got.compute(), lse.cross_entropy(x, p), rtol=8e-16, atol=0)
    bad = lsed.cross_entropy(da.from_array(x, chunks=2), np.array([0, 5, 1, 2]), reduction="none").compute()
    assert np.isnan(bad[1]) and np.isfinite(bad[[0, 2, 3]]).all()  # no exception inside a lazy graph


def test_issue20_dask_module_all_lists_only_its_public_functions() -> None:
    assert sorted(lsed.__all__) == ["cross_entropy", "log_softmax", "logsumexp", "softmax"]
    assert all(callable(getattr(lsed, n)) for n in lsed.__all__)
