"""Shared fixtures of the array-core tests: the ``backend`` fixture and hypothesis settings.

``backend`` runs a test once per array library the core supports:

- ``numpy``        NumPy through the compiled CPU fast path (``logsumexp._cpu``; the hooks decline
                   and the core computes where numba or a kernel is missing),
- ``numpy-core``   NumPy with the fast path switched off (``logsumexp._cpu.disabled()``): the pure
                   Array API core, so that both paths are held to the same contract,
- ``array_api_strict``, ``torch`` (CPU), ``dask`` (small chunks, so reductions cross chunks),
- ``jax`` (with ``jax_enable_x64``, so float64 is float64) and ``cupy``, where importable.

Tests about values call the library through ``backend.call(fn, *arrays, **options)``, which runs
``fn`` under ``jax.jit`` on JAX (as JAX users run it) and directly elsewhere.

Every non-NumPy backend is skipped, with a reason naming the missing package, when it cannot be
imported. Tests build their inputs in NumPy and convert them with ``backend.asarray``; results go
back through ``backend.to_numpy`` (which computes Dask graphs, so lazily computed warnings surface
inside the test, where ``filterwarnings = error`` turns them into failures).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# tests/_reference.py is imported as a plain module by the test files (pytest runs with
# --import-mode=importlib, which does not put the test directory on sys.path).
_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@dataclass
class Backend:
    """One array library as the tests see it: build inputs from NumPy, read results back."""

    name: str
    xp: Any = field(repr=False)  # the array_api_compat namespace the core will pick
    lazy: bool = False
    float_dtypes: tuple[str, ...] = ("float32", "float64")
    # ulps added to float64 accuracy bounds for the backend's own primitives (the core calls
    # xp.sum, xp.exp, xp.log1p): torch.sum of 999 equal terms is 1.8 ulp off where NumPy's
    # pairwise sum is 0.8; XLA's CPU log1p(−0.37) is 10 ulp off. 0 = the bound as specified.
    ulp_slack: float = 0.0
    examples: int = 60  # hypothesis examples per property (graph-building backends get fewer)
    ftz: bool = False  # flushes subnormal results to zero (XLA on CPU)
    request: Any = field(default=None, repr=False)  # the running test's request (set per test)

    # ------------------------------------------------------------------ conversions
    def dtype(self, name: str) -> Any:
        if self.name == "torch" and name == "bfloat16":
            import torch

            return torch.bfloat16
        return getattr(self.xp, name)

    def asarray(self, a: Any, dtype: str | None = None) -> Any:
        """``a`` (anything NumPy accepts) as an array of this backend, dtype kept (or ``dtype``)."""
        arr = np.asarray(a)
        if dtype is None:
            dtype = arr.dtype.name
        if dtype == "bfloat16":  # NumPy has no bfloat16: go through float32 (exact)
            if self.name == "jax":
                import jax.numpy as jnp

                return jnp.asarray(arr.astype(np.float32)).astype(jnp.bfloat16)
            import torch

            return torch.asarray(arr.astype(np.float32)).to(torch.bfloat16)
        arr = arr.astype(dtype)
        if self.name in ("numpy", "numpy-core"):
            return arr
        if self.name == "dask":
            import dask.array as da

            # about three chunks per axis: every reduction crosses chunk boundaries
            chunks = tuple(max(1, -(-n // 3)) for n in arr.shape) if arr.ndim else ()
            return da.from_array(arr, chunks=chunks)
        if self.name == "torch":
            import torch

            return torch.asarray(arr.copy())
        return self.xp.asarray(arr)

    def to_numpy(self, a: Any) -> np.ndarray:
        """A result as a NumPy array (Dask computed; bfloat16 widened to float32)."""
        if self.name == "dask":
            a = a.compute(scheduler="synchronous")
        if self.name == "torch":
            import torch

            if isinstance(a, torch.Tensor):
                a = a.detach()
                if a.dtype == torch.bfloat16:
                    a = a.float()
                return a.cpu().numpy()
        if self.name == "cupy":
            import cupy

            return cupy.asnumpy(a)
        out = np.asarray(a)
        if out.dtype.name == "bfloat16":  # jax (ml_dtypes): widen exactly
            out = out.astype(np.float32)
        return out

    def call(self, fn: Any, *arrays: Any, **options: Any) -> Any:
        """``fn(*arrays, **options)`` the way this backend's users run it: on JAX under ``jax.jit``
        (arrays traced, options static; one compiled program per function, options and shapes),
        elsewhere directly."""
        if self.name != "jax":
            return fn(*arrays, **options)
        return _jitted(fn, tuple(sorted(options.items(), key=lambda kv: kv[0])))(*arrays)

    def dtype_name(self, a: Any) -> str:
        """The dtype of a result of this backend as a string ('float32', 'bfloat16', ...)."""
        return str(a.dtype).rsplit(".", 1)[-1]

    def check_type(self, a: Any) -> None:
        """Assert that a result is an array of this backend (Dask results stay lazy)."""
        if self.name in ("numpy", "numpy-core"):
            assert isinstance(a, (np.ndarray, np.generic)), type(a)
        elif self.name == "dask":
            import dask.array as da

            assert isinstance(a, da.Array), type(a)
        elif self.name == "torch":
            import torch

            assert isinstance(a, torch.Tensor), type(a)
        else:
            import array_api_compat

            assert array_api_compat.is_array_api_obj(a), type(a)
            assert array_api_compat.array_namespace(a) is self.xp or self.name == "jax", type(a)

    @property
    def hyp(self) -> Any:
        """hypothesis settings for this backend (see _reference.HYP)."""
        from _reference import HYP
        from hypothesis import settings

        return settings(HYP, max_examples=self.examples)

    @property
    def default_float(self) -> str:
        if self.name == "torch":
            import torch

            return str(torch.get_default_dtype()).rsplit(".", 1)[-1]
        return "float64"


@functools.lru_cache(maxsize=None)
def _jitted(fn: Any, options: tuple[tuple[str, Any], ...]) -> Any:
    import jax

    return jax.jit(functools.partial(fn, **dict(options)))


def _make(name: str) -> Backend:
    import array_api_compat

    if name in ("numpy", "numpy-core"):
        return Backend(name, array_api_compat.array_namespace(np.empty(0)), float_dtypes=("float16", "float32", "float64"))
    if name == "array_api_strict":
        import array_api_strict as xps

        return Backend(name, xps, examples=30)
    if name == "torch":
        import torch

        return Backend(name, array_api_compat.array_namespace(torch.empty(0)), float_dtypes=("float16", "bfloat16", "float32", "float64"), ulp_slack=1.0, examples=30)
    if name == "dask":
        import dask.array as da

        return Backend(name, array_api_compat.array_namespace(da.empty(0)), lazy=True, float_dtypes=("float16", "float32", "float64"), examples=8)
    if name == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 inputs must stay float64
        import jax.numpy as jnp

        return Backend(name, array_api_compat.array_namespace(jnp.empty(0)), lazy=True, float_dtypes=("float16", "bfloat16", "float32", "float64"), ulp_slack=12.0, examples=5, ftz=True)
    if name == "cupy":
        import cupy

        return Backend(name, array_api_compat.array_namespace(cupy.empty(0)), float_dtypes=("float16", "float32", "float64"))
    raise ValueError(name)


_PACKAGE = {"array_api_strict": "array_api_strict", "torch": "torch", "dask": "dask", "jax": "jax", "cupy": "cupy"}


def _param(name: str) -> Any:
    pkg = _PACKAGE.get(name)
    marks = []
    if pkg is not None and not _importable(pkg):
        marks.append(pytest.mark.skip(reason=f"backend {name}: package {pkg!r} is not installed"))
    return pytest.param(name, id=name, marks=marks)


BACKEND_NAMES = ("numpy", "numpy-core", "array_api_strict", "torch", "dask", "jax", "cupy")
_cache: dict[str, Backend] = {}


@contextlib.contextmanager
def _activate(name: str) -> Iterator[Backend]:
    from logsumexp import _cpu

    if name not in _cache:
        try:
            _cache[name] = _make(name)
        except ImportError as err:  # importable but broken (e.g. cupy without a GPU)
            pytest.skip(f"backend {name}: cannot import it ({err})")
    ctx = _cpu.disabled() if name == "numpy-core" else contextlib.nullcontext()
    with ctx:
        yield _cache[name]


@pytest.fixture(params=[_param(n) for n in BACKEND_NAMES])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Every backend, both NumPy paths included (see the module docstring)."""
    with _activate(request.param) as b:
        b.request = request  # for _reference.xfail_on
        yield b


@pytest.fixture(params=[_param(n) for n in ("numpy", "numpy-core")])
def np_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The two NumPy paths only (NumPy-specific behaviour: scalars, lists, SciPy's own inputs)."""
    with _activate(request.param) as b:
        b.request = request
        yield b


@pytest.fixture
def torch_ref() -> Any:
    """PyTorch as a reference implementation (cross-entropy semantics, autograd)."""
    return pytest.importorskip("torch", reason="the torch reference needs the package 'torch'")
