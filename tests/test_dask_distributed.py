"""logsumexp.dask on a ``distributed.LocalCluster`` of two worker processes, one of them killed
mid-computation: Dask recomputes the lost tasks, and the result is still exact.

"Exact" means bit-for-bit equal to the same graph computed by the threaded scheduler (the tree of
merges is fixed by the graph, not by where or when its tasks run), and within 2 ulp of the array
core on the whole NumPy array (see tests/test_dask.py for that tolerance).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("dask.array", reason="logsumexp.dask needs the 'dask' package (dask[array])")
distributed = pytest.importorskip("distributed", reason="the cluster tests need the 'distributed' package")

import dask  # noqa: E402
import dask.array as da  # noqa: E402

import logsumexp as lse  # noqa: E402
import logsumexp.dask as lsed  # noqa: E402

# The workers receive this module's functions (make_block, _warm_worker) by value, whatever
# name pytest's importlib mode gave the module (a worker process could not import it by name).
cloudpickle = pytest.importorskip("cloudpickle", reason="distributed ships its tasks with 'cloudpickle'")
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.slow  # a few seconds each (worker processes start); still run in CI

ROWS, COLS, BLOCKS = 40, 300, 12


def make_block(i: int, delay: float) -> np.ndarray:
    """Block ``i`` of the test input (deterministic), after ``delay`` seconds of "loading"."""
    time.sleep(delay)
    rng = np.random.default_rng(1000 + i)
    block = rng.standard_normal((ROWS, COLS)) * 20.0
    if i == 3:
        block[5] = -np.inf  # an all −inf slice piece; other blocks keep row 5 finite
    if i == 7:
        block[9, 11] = np.inf  # +inf in one block only
    return block


def dask_input(delay: float) -> Any:
    """A (BLOCKS·ROWS) × COLS array, chunked by block along axis 0 and in 3 along axis 1, whose
    blocks are produced by tasks (so that they live on the workers and can be lost with one)."""
    from dask import delayed

    parts = [
        da.from_delayed(delayed(make_block, pure=True)(i, delay), shape=(ROWS, COLS), dtype=np.float64)
        for i in range(BLOCKS)
    ]
    return da.concatenate(parts, axis=0).rechunk((ROWS, COLS // 3))


def numpy_input() -> np.ndarray:
    return np.concatenate([make_block(i, 0.0) for i in range(BLOCKS)], axis=0)


def assert_ulp(got: np.ndarray, expected: np.ndarray, ulp: int = 2) -> None:
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(got[~finite], expected[~finite])
    err = np.abs(got[finite] - expected[finite])
    assert np.all(err <= ulp * np.spacing(np.abs(expected[finite])))


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    # Compile (or load) the CPU kernels here first: numba caches them on disk, so the worker
    # processes, and the one that replaces the killed worker, load them instead of compiling.
    warm = da.from_array(np.ones((4, 6)), chunks=(2, 4))
    dask.compute(lsed.logsumexp(warm, axis=1), lsed.logsumexp(warm, axis=0, b=warm), scheduler="sync")
    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        # a free port: the scheduler serves its health endpoints on 8787 by default, and a second
        # cluster on the machine (another xdist worker, another suite) then warns, which is an error here
        dashboard_address=":0",
        silence_logs=logging.CRITICAL,  # the killed worker is logged as an error; expected here
    )
    with cluster, distributed.Client(cluster) as c:
        c.run(_warm_worker)
        yield c


def _warm_worker() -> None:
    """Load the compiled kernels in a worker before the timed tests start."""
    warm = da.from_array(np.ones((4, 6)), chunks=(2, 4))
    dask.compute(lsed.logsumexp(warm, axis=1), lsed.logsumexp(warm, axis=0, b=warm), scheduler="sync")


def test_cluster_results_equal_threaded_results(client: Any) -> None:
    x = dask_input(0.0)
    w = da.ones_like(x) * 0.5
    exprs = {
        "all": lsed.logsumexp(x),
        "rows": lsed.logsumexp(x, axis=1),
        "cols": lsed.logsumexp(x, axis=0, b=w, keepdims=True),
        "softmax": lsed.softmax(x, axis=0),
        "log_softmax": lsed.log_softmax(x, axis=1),
    }
    on_cluster = dict(zip(exprs, client.compute(list(exprs.values()), sync=True)))
    threaded = dict(zip(exprs, dask.compute(*exprs.values(), scheduler="threads")))
    for k in exprs:
        np.testing.assert_array_equal(on_cluster[k], threaded[k], err_msg=k)
    a = numpy_input()
    assert_ulp(on_cluster["all"], np.asarray(lse.logsumexp(a)))
    assert_ulp(on_cluster["rows"], lse.logsumexp(a, axis=1))
    assert_ulp(on_cluster["cols"], lse.logsumexp(a, axis=0, b=0.5, keepdims=True))
    assert on_cluster["rows"][5 + 3 * ROWS] == -np.inf and on_cluster["rows"][9 + 7 * ROWS] == np.inf


def test_killed_worker_mid_computation_result_still_exact(client: Any) -> None:
    x = dask_input(0.15)  # 12 blocks of 0.15 s on 2 single-threaded workers: ~1 s of work
    r = lsed.logsumexp(x, axis=1)
    expected = dask.compute(lsed.logsumexp(dask_input(0.0), axis=1), scheduler="threads")[0]

    before = set(client.scheduler_info()["workers"])
    future = client.compute(r)
    # wait until both workers hold results or run tasks, then kill one worker process
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        busy = {w for w, keys in client.has_what().items() if keys} | {w for w, t in client.processing().items() if t}
        if len(busy) == 2:
            break
        time.sleep(0.02)
    victim = sorted(busy)[0]
    pid = client.run(os.getpid, workers=[victim])[victim]
    assert not future.done()  # really mid-computation
    os.kill(pid, signal.SIGKILL)  # the nanny starts a fresh worker; the scheduler recomputes

    got = future.result(timeout=45)
    np.testing.assert_array_equal(got, expected)  # bit-for-bit: the same tree of merges
    assert_ulp(got, lse.logsumexp(numpy_input(), axis=1))
    after = set(client.scheduler_info()["workers"])
    assert victim not in after and before - {victim} <= after  # the killed worker did go away
