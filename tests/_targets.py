"""Fixtures and helpers that run the compiled CPU kernels under each instruction-set target.

``logsumexp._cpu`` loads one extension module per process (``_kernels_<target>``: the best
target the CPU supports, or the one ``LOGSUMEXP_CPU`` forces) and every hook reads the module
global ``_cpu._kernels``. Swapping that global switches the target in-process, so a test can
compare targets without a subprocess per target.

Import the fixtures into a test module (``from _targets import each_target``): pytest finds
fixtures in the module's namespace.

- ``each_target``: parametrised over every target the package knows; a target this CPU or this
  build lacks is skipped with the missing CPU features named.
- ``threaded``: the multi-threaded split forced on small inputs (3 threads, no size threshold).
- :func:`under_target`: a context manager for switching inside one test (the bits tests).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

import pytest

from logsumexp import _cpu

SUPPORTED = _cpu.supported_targets()


def kernels_of(target: str) -> Any:
    """The extension module compiled for ``target``."""
    return importlib.import_module(f"logsumexp._cpu._kernels_{target}")


def _why_not(target: str) -> str:
    features = set(kernels_of("baseline").cpu_features())
    missing = sorted(set(_cpu._REQUIRES[target]) - features)
    if missing:
        return f"this CPU lacks {', '.join(missing)} (the {target} target's features)"
    return f"this build has no logsumexp._cpu._kernels_{target} module"


@contextlib.contextmanager
def under_target(target: str) -> Iterator[Any]:
    """Run the block with the hooks on ``target``'s kernels; the previous module is put back."""
    _cpu.kernels()  # load the process's own choice first, so that restoring restores it
    previous = (_cpu._kernels, _cpu._target)
    _cpu._kernels, _cpu._target = kernels_of(target), target
    try:
        yield _cpu._kernels
    finally:
        _cpu._kernels, _cpu._target = previous


@pytest.fixture(params=_cpu.TARGETS)
def each_target(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test body runs once per CPU target, with ``_cpu._kernels`` switched to it."""
    target = request.param
    if target not in SUPPORTED:
        pytest.skip(_why_not(target))
    _cpu.kernels()
    monkeypatch.setattr(_cpu, "_kernels", kernels_of(target))
    monkeypatch.setattr(_cpu, "_target", target)
    return target


@pytest.fixture
def threaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the multi-threaded path on small inputs: 3 threads whatever the size."""
    monkeypatch.setattr(_cpu, "PARALLEL_MIN", 0)
    monkeypatch.setattr(_cpu, "num_threads", lambda: 3)
