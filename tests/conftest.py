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

Besides the fixtures, this file sets up the suite as a whole (see README, "Contributing"):

- hypothesis profiles ``ci`` (the default), ``dev`` (fewer examples) and ``nightly`` (more, and
  random), chosen by the environment variable ``HYPOTHESIS_PROFILE``;
- markers by module and backend (``jax``, ``dask``, ``torch``, ``triton``, ``hf``,
  ``distributed``, ``slow``), so ``pytest -m "not slow"`` is the quick loop while editing;
- ``numpy_only``: tests of behaviour that does not depend on the array library (argument
  errors, option validation) take the ``backend`` fixture on NumPy alone;
- under pytest-xdist, the tests that share a module-scoped fixture (a gloo process group, a
  Dask cluster, a compiled harness) run on one worker, so that the fixture starts once.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import itertools
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings

# tests/_reference.py is imported as a plain module by the test files (pytest runs with
# --import-mode=importlib, which does not put the test directory on sys.path).
_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

# Triton's interpreter must be chosen before triton is first imported (its own tl.max etc. are
# decorated at import): tests/triton/conftest.py chooses it, but test modules collected before that
# directory import triton already (torch_geometric and peft do), and an xdist worker collects them
# first. So the choice is made here too, where no test module has been imported yet: without an
# NVIDIA device node no Triton kernel can be compiled, so the interpreter is the only way to run.
if not any(Path("/dev").glob("nvidia[0-9]*")):
    os.environ.setdefault("TRITON_INTERPRET", "1")

# ------------------------------------------------------------------------------------------------
# Hypothesis profiles (registered before any test module builds its settings from the default)
# ------------------------------------------------------------------------------------------------
# ci: derandomized (reproducible; a failing example is printed), no deadline (2 shared cores), no
# shrinking (it multiplies the time of a failing or xfail-marked property; re-run under `nightly`,
# which shrinks, to minimise a printed example). dev: the same with a quarter of the examples, for
# the edit loop. nightly: ten times ci's examples, random (new inputs each run), shrinking on.
_NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target)
_COMMON: dict[str, Any] = dict(
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile("ci", max_examples=60, phases=_NO_SHRINK, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=15, phases=_NO_SHRINK, derandomize=True, **_COMMON)
settings.register_profile("nightly", max_examples=600, derandomize=False, **_COMMON)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in ("ci", "dev", "nightly"):
    raise pytest.UsageError(f"HYPOTHESIS_PROFILE={PROFILE!r}: expected 'ci', 'dev' or 'nightly'")
settings.load_profile(PROFILE)


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
    # the share of the profile's max_examples run per property: graph-building backends (Dask
    # builds a graph per call, JAX compiles one per shape) get fewer examples
    example_share: float = 1.0
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
        """hypothesis settings for this backend: the profile's (_reference.HYP), with this
        backend's share of its examples (at least one)."""
        from _reference import HYP

        return settings(HYP, max_examples=max(1, round(HYP.max_examples * self.example_share)))

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

        return Backend(name, xps, example_share=0.5)
    if name == "torch":
        import torch

        return Backend(name, array_api_compat.array_namespace(torch.empty(0)), float_dtypes=("float16", "bfloat16", "float32", "float64"), ulp_slack=1.0, example_share=0.5)
    if name == "dask":
        import dask.array as da

        return Backend(name, array_api_compat.array_namespace(da.empty(0)), lazy=True, float_dtypes=("float16", "float32", "float64"), example_share=0.07)
    if name == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 inputs must stay float64
        import jax.numpy as jnp

        return Backend(name, array_api_compat.array_namespace(jnp.empty(0)), lazy=True, float_dtypes=("float16", "bfloat16", "float32", "float64"), ulp_slack=12.0, example_share=0.04, ftz=True)
    if name == "cupy":
        import cupy

        return Backend(name, array_api_compat.array_namespace(cupy.empty(0)), float_dtypes=("float16", "float32", "float64"))
    raise ValueError(name)


_PACKAGE = {"array_api_strict": "array_api_strict", "torch": "torch", "dask": "dask", "jax": "jax", "cupy": "cupy"}


BACKEND_NAMES = ("numpy", "numpy-core", "array_api_strict", "torch", "dask", "jax", "cupy")
# A backend whose package is missing gets no items at all (CuPy on a machine without it would
# otherwise be one permanent skip per backend test): the session header names what was left out.
INSTALLED = tuple(n for n in BACKEND_NAMES if n not in _PACKAGE or _importable(_PACKAGE[n]))
MISSING = tuple(n for n in BACKEND_NAMES if n not in INSTALLED)


def _param(name: str) -> Any:
    return pytest.param(name, id=name)


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


@pytest.fixture(params=[_param(n) for n in INSTALLED])
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


# ------------------------------------------------------------------------------------------------
# The suite as a whole: report header, numpy_only, markers by module and backend, xdist groups
# ------------------------------------------------------------------------------------------------
def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"hypothesis profile: {PROFILE} (HYPOTHESIS_PROFILE: ci, dev or nightly)",
             f"array backends: {', '.join(INSTALLED)}"]
    if MISSING:
        lines.append("backends not installed, so not generated: "
                     + ", ".join(f"{n} (package {_PACKAGE[n]!r})" for n in MISSING))
    return lines


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist's default distribution ("load") ignores xdist_group marks: any -n run groups
    # the tests that share a module-scoped fixture (see _group_by_module_fixture), so that
    # `pytest -n auto` starts each gloo process group or Dask cluster once, as `make test` does.
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"


# Tests of behaviour decided before any array library is involved (argument and option
# validation): one backend shows it; the other six would only repeat it. They run on NumPy
# (the compiled path) alone, as tests marked @pytest.mark.numpy_only do.
NUMPY_ONLY = {
    "test_cross_entropy.py": {
        "test_bad_options_raise_naming_the_argument",
        "test_bad_shapes_and_dtypes_raise_naming_the_argument",
        "test_bce_bad_arguments_raise",
    },
    "test_softmax.py": {"test_bad_temperature_raises_value_error"},
    "test_lse.py": {"test_axis_out_of_bounds_raises", "test_repeated_axis_raises_value_error"},
    "test_state.py": {"test_lsestate_shape_mismatch_raises_value_error"},
}


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``numpy_only`` tests get the ``backend`` fixture on NumPy alone: a direct parametrisation
    (added before pytest reads the marks) takes the place of the fixture's seven params."""
    if "backend" not in metafunc.fixturenames:
        return
    named = metafunc.function.__name__ in NUMPY_ONLY.get(Path(str(metafunc.definition.fspath)).name, ())
    if named or metafunc.definition.get_closest_marker("numpy_only") is not None:
        metafunc.definition.add_marker(pytest.mark.parametrize("backend", ["numpy"], indirect=True))


# module (file name) -> markers for all its tests. ``slow`` (measured with --durations on the
# 2-core Xeon): worker processes, model downloads' stand-ins, compilers (Inductor, XLA per shape,
# gcc for the C harness), the Triton interpreter, SciPy's own suite, OpInfo's sample inputs.
_MODULE_MARKS = {
    "test_jax.py": ("jax", "slow"),
    "test_dask.py": ("dask", "slow"),
    "test_dask_distributed.py": ("dask", "distributed", "slow"),
    "test_torch_distributed.py": ("torch", "distributed", "slow"),
    "test_log_probs_distributed.py": ("torch", "distributed", "slow"),
    "test_transformers.py": ("torch", "hf", "slow"),
    "test_transformers_log_probs.py": ("torch", "hf", "slow"),
    "test_scipy_suite.py": ("slow",),
    "test_packaging.py": ("slow",),
    "test_accuracy_script.py": ("slow",),
    "test_cpu_bits.py": ("slow",),
    "test_demo.py": ("slow",),
    "test_opinfo.py": ("slow",),
    "test_compile.py": ("slow",),
}
# a directory under tests/ -> markers for all its tests
_DIR_MARKS = {"torch": ("torch",), "triton": ("torch", "triton", "slow")}
# tests that start a Python process (about a second each, more under load): slow
_SLOW_TESTS = {
    "test_cli.py": {"test_entry_point_subprocess", "test_python_m_and_stdin_text", "test_stdin_npy_subprocess"},
    "test_cli_files.py": {"test_bom_on_stdin_text", "test_bad_target_subprocess_has_no_warning_or_path",
                          "test_text_without_newline_streams_in_bounded_memory",
                          "test_dev_zero_fails_fast_with_a_clear_error"},
    "test_cli_issue20.py": {"test_issue20_piped_stdin_is_read_without_dash_f",
                            "test_issue20_no_input_and_no_pipe_is_still_a_usage_error"},
    "test_cpu.py": {"test_environment_variable_forces_a_target", "test_environment_variable_unknown_target_is_a_clear_error",
                    "test_import_does_not_load_the_kernels", "test_thread_pool_survives_fork"},
    "test_import.py": {"test_import_does_not_import_optional_libraries",
                       "test_calling_the_array_core_on_numpy_does_not_import_torch_dask_or_jax"},
    "test_weight_sum_rule.py": {"test_vocab_parallel_matches_torch"},
}
# and the longest of the rest (seconds each, measured): 2^20-entry inputs, threads on long
# slices, a GAT trained for a loss curve
_SLOW_TESTS["test_lse.py"] = {"test_large_input_uses_the_blocked_path_accurately"}
_SLOW_TESTS["test_softmax.py"] = {"test_large_input_uses_the_blocked_path"}
_SLOW_TESTS["test_cpu.py"] |= {"test_long_slice_same_bits_with_one_and_three_threads"}
_SLOW_TESTS["test_segment.py"] = {"test_pyg_gat_trains_to_the_same_loss_curve_with_our_softmax"}
_SLOW_TESTS["test_kl.py"] = {"test_value_and_gradients_within_1e_6_from_bf16_inputs", "test_linear_matches_logits_path",
                             "test_linear_frozen_teacher_bf16_within_float32_accuracy",
                             "test_jsd_at_beta_0_and_1_is_trls_forward_and_reverse_kl"}
_SLOW_TESTS["test_softmax_dd.py"] = {"test_blocks_and_items_per_entry"}
_SLOW_TESTS["test_log_probs.py"] = {"test_linear_matches_logits_path"}
_SLOW_TESTS["test_func_transforms.py"] = {"test_jacobians"}
_SLOW_TESTS["test_io.py"] = {"test_stream_npy_larger_than_chunk_matches_in_memory"}
_SLOW_TESTS["test_accuracy_cpu.py"] = {"test_log_softmax_and_softmax_per_entry"}
# backends whose items compile or build a graph per call (XLA per shape, Dask graphs): slow
_SLOW_BACKENDS = ("jax", "dask")
# a test whose name says it runs on JAX or Dask, compiles (torch.compile: Inductor) or runs
# torch's gradcheck (finite differences in float64), wherever it lives (test_segment.py, test_complex.py, tests/torch, ...)
_NAME_MARKS = ((re.compile(r"jax"), ("jax", "slow")), (re.compile(r"dask"), ("dask", "slow")),
               (re.compile(r"compile(?!d)|opcheck|gradcheck"), ("slow",)))
# the params that name an array library (the backend fixture; test_conformance's faces)
_BACKEND_PARAMS = ("backend", "np_backend", "face")


def _path_marks(path: Path) -> set[str]:
    """The markers every test under ``path`` (a test module or a directory) gets."""
    names = set(_MODULE_MARKS.get(path.name, ())) if path.suffix == ".py" else set()
    for p in (path, *path.parents):
        if p.parent == Path(_HERE):
            names.update(_DIR_MARKS.get(p.name, ()))
    return names


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under ``-m``, a module or directory none of whose tests can match is not even imported
    (``-m "not slow"`` then skips importing transformers, Triton, the distributed modules):
    the expression is false for the module's markers whatever the markers of its single tests."""
    expr = config.option.markexpr
    marks = _path_marks(collection_path) if expr else set()
    if not marks:
        return None
    try:  # pytest's own parser of -m expressions (private: on any change, collect as usual)
        from _pytest.mark.expression import Expression

        compiled = Expression.compile(expr)
        free = sorted(set(compiled.idents()) - marks)
    except Exception:
        return None
    if len(free) > 8:
        return None
    for bits in itertools.product((False, True), repeat=len(free)):
        on = marks | {n for n, b in zip(free, bits) if b}
        if compiled.evaluate(lambda name, on=on, **kwargs: name in on):
            return None
    return True


@functools.lru_cache(maxsize=1)
def _own_target() -> str:
    from logsumexp import _cpu

    return _cpu.target()


def _marks_of(item: pytest.Item) -> set[str]:
    path = Path(str(item.fspath))
    names = _path_marks(path)
    function = getattr(item, "originalname", item.name)
    if function in _SLOW_TESTS.get(path.name, ()):
        names.add("slow")
    for pattern, marks in _NAME_MARKS:
        if pattern.search(function):
            names.update(marks)
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        for key in _BACKEND_PARAMS:
            value = str(callspec.params.get(key, ""))
            names.update(lib for lib in ("jax", "dask", "torch") if lib in value)
            if any(lib in value for lib in _SLOW_BACKENDS):
                names.add("slow")
        # the kernels under every CPU target (tests/_targets.py): the edit loop runs the one this
        # process picked, the whole suite all of them (their bits and accuracy must agree)
        target = callspec.params.get("each_target")
        if target is not None and target != _own_target():
            names.add("slow")
    return names


def _group_by_module_fixture(item: pytest.Item) -> str | None:
    """The module's node id when the test uses a module-scoped fixture defined in its own
    module (a process group, a cluster, a build): such tests must share one worker."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    for defs in info.name2fixturedefs.values():
        for fd in defs:
            if fd.scope == "module" and getattr(fd, "baseid", "") == item.nodeid.split("::")[0]:
                return item.nodeid.split("::")[0]
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for name in sorted(_marks_of(item)):
            item.add_marker(getattr(pytest.mark, name))
        group = _group_by_module_fixture(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
