"""Run the Triton kernel tests compiled on a CUDA device, or on the CPU through Triton's interpreter.

TRITON_INTERPRET must be set before triton is first imported, so it is set here, at collection, and only
when no CUDA device is present (on a GPU machine the same tests run compiled).  Setting it cannot affect
other test directories on such a machine: without a CUDA device no Triton kernel can be compiled anyway.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


if not _has_cuda():
    os.environ.setdefault("TRITON_INTERPRET", "1")

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The interpreter evaluates kernels with NumPy, which warns on the inf − inf and 0 · inf that the kernels
    # compute in the discarded branch of a `where`; they are part of the special-value handling, not errors.
    mark = pytest.mark.filterwarnings("ignore::RuntimeWarning:triton.runtime.interpreter")
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(mark)
