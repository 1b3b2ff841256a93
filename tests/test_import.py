"""``import logsumexp`` is light: it imports none of the optional heavy libraries (how quick a new
process gets its first answer is a benchmark, ``benchmarks/startup.py``, not a timed test).

Each check runs in a fresh interpreter (a subprocess), since this test process has imported them all.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "dask", "jax", "numba", "llvmlite", "triton", "scipy", "matplotlib", "cupy")


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.strip()


def test_import_does_not_import_optional_libraries():
    code = (
        "import sys, json; import logsumexp, logsumexp._cpu; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    assert json.loads(_run(code)) == []


def test_calling_the_array_core_on_numpy_does_not_import_torch_dask_or_jax():
    code = (
        "import sys, json, numpy as np, logsumexp as L; "
        "L.logsumexp(np.ones(3)); L.softmax(np.ones(3)); L.cross_entropy(np.ones((2, 3)), np.array([0, 1])); "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'dask', 'jax', 'triton'})))"
    )
    assert json.loads(_run(code)) == []


@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax", "cross_entropy", "LSEState", "logaddexp",
                                  "logsubexp", "log1mexp", "softplus", "smoothmax", "smoothmin",
                                  "binary_cross_entropy_with_logits"])
def test_public_names_are_exported(name):
    import logsumexp

    assert name in logsumexp.__all__ and hasattr(logsumexp, name)


def test_version_is_a_string():
    import logsumexp

    assert isinstance(logsumexp.__version__, str) and logsumexp.__version__.count(".") >= 1
