"""The shared conformance table (``tests/_conformance.py``) run on the Triton row functions.

Interpreter on a CPU, compiled on a GPU.  float64 rows accumulate in float64, so they are held to the table's
own tolerance; float32 rows accumulate in float32 (the table's float32 tolerance assumes float64 accumulation),
so they get ``FLOAT32_RTOL``.  The class weight's gradient is refused by these kernels (tested in
test_cross_entropy.py), so no weight gradient is compared here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="logsumexp.triton needs torch")
pytest.importorskip("triton", reason="logsumexp.triton needs the triton package")
pytest.importorskip("mpmath", reason="the conformance references are computed with mpmath")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _conformance import CASES, check  # noqa: E402

import logsumexp.triton as lt  # noqa: E402
from logsumexp._options import CrossEntropyOptions  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# float32 accumulation: a sum of n terms carries up to ~n·2⁻²⁴ relative error (n ≤ 1000 here), and the
# exponential is accurate to a few ulp.
FLOAT32_RTOL = 2e-6
TORCH_DTYPE = {"float64": torch.float64, "float32": torch.float32}


def run_case(case, dtype: str):
    x, t, w = case.inputs(dtype)
    xd = torch.from_numpy(np.array(x)).to(DEVICE).requires_grad_()
    if case.op == "logsumexp":
        out = lt.logsumexp_rows(xd)
    elif case.op in ("softmax", "log_softmax"):
        out = lt.softmax_rows(xd, case.op == "log_softmax")
    else:
        td = torch.from_numpy(np.array(t)).to(DEVICE)
        wd = None if w is None else torch.from_numpy(np.array(w)).to(DEVICE)
        out = lt.cross_entropy_rows(xd, td, wd, CrossEntropyOptions(**case.kwargs))
    cot = torch.from_numpy(np.array(case.cotangent(dtype))).to(device=DEVICE, dtype=out.dtype)
    grad = None
    if case.grad_specified:
        (g,) = torch.autograd.grad((out * cot).sum(), xd)
        grad = g.double().cpu().numpy()
    return out.detach().double().cpu().numpy(), grad


@pytest.mark.parametrize(
    ("case", "dtype"),
    [pytest.param(case, dtype, id=f"{case}-{dtype}") for case in CASES for dtype in case.dtypes],
)
def test_conformance(case, dtype):
    value, grad = run_case(case, dtype)
    check(case, dtype, value=value, grad=grad, rtol=None if dtype == "float64" else FLOAT32_RTOL)
