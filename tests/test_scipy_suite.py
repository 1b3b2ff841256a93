"""SciPy's own ``special/tests/test_logsumexp.py`` run against our functions (issue 20).

At test time the installed SciPy's test module is copied into a temporary directory, its
module-level names ``logsumexp``, ``softmax`` and ``log_softmax`` are rebound to ours (after
SciPy's definitions, so its decorators still read SciPy's capability table), and it runs in a
fresh pytest process with SciPy's conftest (its ``xp`` fixture and array-API machinery) and
``filterwarnings = error``. A subprocess, because ``SCIPY_ARRAY_API`` is read at import and
SciPy's conftest sets process-wide state (torch's default dtype, JAX's x64 mode).

Our wrappers carry SciPy's ``lazy_xp_function`` tag, so on JAX our functions run under
``jax.jit`` and on Dask they must not compute the graph, as SciPy's own are tested.

Deselected, on purpose: the tests of the documented ``axis`` default (ours is ``-1``, SciPy's
``None``; see the softmax docstring):

* ``TestSoftmax::test_softmax_fixtures``: ``softmax(x.reshape(2, 2))`` with the default axis
  expects the whole array to sum to 1;
* ``TestLogSoftmax::test_log_softmax_noneaxis``: the same for ``log_softmax``.

The one other ignore is pytest's own deprecation of SciPy's ``parametrize(itertools.product)``
(a warning about the test file, not about our code).

On JAX and Dask every SciPy test builds a program (a jit per shape, a graph per call): the whole
suite there took 148 s and 39 s of the 2-core machine, a third of ``make test``. There every test
function runs, on every k-th of its parametrisations (k = ``SAMPLE``), the first one always: each
of SciPy's checks still meets those faces, and NumPy, array-api-strict and torch run them all.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

scipy = pytest.importorskip("scipy", reason="runs the package 'scipy''s own tests")

SRC = Path(__file__).resolve().parent.parent / "src"
DESELECT = (
    "TestSoftmax::test_softmax_fixtures",  # default axis: SciPy None (whole array), ours -1
    "TestLogSoftmax::test_log_softmax_noneaxis",  # default axis: SciPy None (whole array), ours -1
)

REBIND = '''

# --- appended by logsumexp's tests/test_scipy_suite.py: the names under test are ours ---
import logsumexp as _ours


def _ours_tagged(name):
    theirs, mine = globals()[name], getattr(_ours, name)

    def call(*args, **kwargs):
        return mine(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call._lazy_xp_function = theirs._lazy_xp_function  # jax.jit / no Dask compute, as SciPy's
    return call


logsumexp, softmax, log_softmax = (_ours_tagged(n) for n in ("logsumexp", "softmax", "log_softmax"))
'''

# backend -> run every k-th parametrisation of each SciPy test function (see the docstring)
SAMPLE = {"jax.numpy": 8, "dask.array": 4}

# a conftest plugin for the subprocess: keeps parametrisation 0, k, 2k, ... of each test function
SAMPLER = '''
import os


def pytest_collection_modifyitems(config, items):
    k = int(os.environ.get("LOGSUMEXP_SCIPY_SAMPLE", "1"))
    if k <= 1:
        return
    seen, keep, drop = {}, [], []
    for item in items:
        key = (item.cls, getattr(item, "originalname", item.name))
        n = seen[key] = seen.get(key, -1) + 1
        (keep if n % k == 0 else drop).append(item)
    items[:] = keep
    config.hook.pytest_deselected(items=drop)
'''

INI = """[pytest]
filterwarnings =
    error
    ignore:Passing a non-Collection iterable to parametrize:pytest.PytestRemovedIn10Warning
xfail_strict = true
"""


def _prepare(tmp_path: Path) -> Path:
    source = Path(scipy.__file__).parent / "special" / "tests" / "test_logsumexp.py"
    if not source.is_file():
        pytest.skip(f"the installed SciPy ({scipy.__version__}) ships no {source.name}")
    test = tmp_path / "test_logsumexp.py"
    test.write_text(source.read_text() + REBIND)
    (tmp_path / "conftest.py").write_text("from scipy.conftest import *  # noqa: F401,F403  (the xp fixture)\n"
                                          + SAMPLER)
    (tmp_path / "pytest.ini").write_text(INI)
    return test


def _run(tmp_path: Path, array_api: str | None, sample: int = 1) -> tuple[int, str]:
    test = _prepare(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("SCIPY_ARRAY_API", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env["LOGSUMEXP_SCIPY_SAMPLE"] = str(sample)
    if array_api is not None:
        env["SCIPY_ARRAY_API"] = array_api
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(test)]
    for d in DESELECT:
        args += ["--deselect", f"{test.name}::{d}"]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    return proc.returncode, proc.stdout + proc.stderr


def _counts(out: str) -> dict[str, int]:
    return {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|error|errors|deselected|xfailed)", out)}


def test_scipy_suite_on_numpy(tmp_path: Path) -> None:
    rc, out = _run(tmp_path, None)
    counts = _counts(out)
    assert rc == 0, out[-6000:]
    assert counts.get("passed", 0) >= 350, out[-2000:]  # 396 in SciPy 1.17.1: the suite really ran
    assert counts.get("deselected", 0) == 2, out[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["array_api_strict", "torch", "jax.numpy", "dask.array"])
def test_scipy_suite_on_array_api_backend(tmp_path: Path, backend: str) -> None:
    """``SCIPY_ARRAY_API`` with one backend per run (SciPy's conftest takes a JSON list of names)."""
    package = backend.split(".")[0]
    pytest.importorskip(package, reason=f"SciPy's {backend} backend needs the package {package!r}")
    sample = SAMPLE.get(backend, 1)
    rc, out = _run(tmp_path, f'["{backend}"]', sample)
    counts = _counts(out)
    assert rc == 0, out[-6000:]
    # the suite really ran: 300+ of SciPy 1.17.1's tests, or a k-th of them on a sampled backend
    assert counts.get("passed", 0) >= 300 // sample, out[-2000:]
    if sample > 1:  # and the sampler really sampled
        assert counts.get("deselected", 0) > counts.get("passed", 0), out[-2000:]
