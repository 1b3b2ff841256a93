"""The conformance table (tests/_conformance.py) run on every face of the library.

Faces: the array core on NumPy through the compiled fast path and through the pure core path,
on array-api-strict, on JAX (jitted, gradients by ``jax.vjp`` inside the jitted function), on Dask
(computed), on torch tensors (gradients by ``torch.autograd`` through the core), and the torch CPU face ``logsumexp.torch`` (values, and gradients by
``torch.autograd``). The NumPy faces check the cross-entropy gradient through
``cross_entropy_grad``. A face without automatic differentiation checks values only.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _conformance import CASES, Case, check

import logsumexp as lse


def _importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


# Torch-face cases that fail today because of torch-face defects being fixed in logsumexp/torch
# (case name → reason). Strict: a fix turns the xfail into an XPASS failure and the entry is removed.
# None today: the last two (the seed [±1000]×3 on the torch face, whose backward recomputed the
# softmax as exp(x − LSE), a relative error of |LSE|·eps) were fixed by recomputing exp(x − m)/s.
TORCH_FACE_KNOWN_FAILURES: dict[str, str] = {}

# Faces that accumulate float32 in float32 (the torch face) are held to a float32 tolerance a few ulp
# wider than the core's correctly rounded results.
_TORCH_FACE_RTOL = {"float64": 1e-14, "float32": 2e-6}


# ------------------------------------------------------------------------------------------------
# Calling one case on the array core, on any namespace
# ------------------------------------------------------------------------------------------------
def _core_call(case: Case, x: Any, t: Any, w: Any) -> Any:
    if case.op == "cross_entropy":
        return lse.cross_entropy(x, t, weight=w, **case.kwargs)
    return getattr(lse, case.op)(x, axis=-1)


def _numpy_face(case: Case, dtype: str) -> tuple[Any, Any, Any]:
    x, t, w = case.inputs(dtype)
    value = _core_call(case, x, t, w)
    grad = None
    if case.op == "cross_entropy":
        kw = dict(case.kwargs)
        if kw.get("reduction", "mean") == "none":
            kw["grad_output"] = case.cotangent(dtype)
        grad = lse.cross_entropy_grad(x, t, weight=w, **kw)
    return value, grad, None


def _strict_face(case: Case, dtype: str) -> tuple[Any, Any, Any]:
    import array_api_strict as xps

    x, t, w = case.inputs(dtype)
    conv = (lambda a: None if a is None else xps.asarray(a))
    value = _core_call(case, conv(x), conv(t), conv(w))
    return np.asarray(value), None, None


def _dask_face(case: Case, dtype: str) -> tuple[Any, Any, Any]:
    import dask.array as da

    x, t, w = case.inputs(dtype)
    chunks = tuple(max(1, -(-n // 2)) for n in x.shape)  # reductions cross chunk boundaries
    dx = da.from_array(x, chunks=chunks)
    dt = None if t is None else da.from_array(t, chunks=chunks[: t.ndim] if t.ndim < x.ndim else chunks)
    value = _core_call(case, dx, dt, w)
    return np.asarray(value.compute(scheduler="synchronous")), None, None


@functools.lru_cache(maxsize=None)
def _jax_program(name: str, dtype: str) -> Callable[..., Any]:
    """The jitted value-and-vjp of one case (compiled once per case and dtype)."""
    import jax

    case = _BY_NAME[name]
    has_w = case.weight is not None

    def f(x: Any, w: Any, t: Any) -> Any:
        return _core_call(case, x, t, w if has_w else None)

    def program(x: Any, w: Any, t: Any, cot: Any) -> Any:
        out, vjp = jax.vjp(lambda a, b: f(a, b, t), x, w)
        gx, gw = vjp(cot)
        return out, gx, gw

    return jax.jit(program)


def _jax_face(case: Case, dtype: str) -> tuple[Any, Any, Any]:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)  # float64 stays float64
    x, t, w = case.inputs(dtype)
    jw = jnp.asarray(w) if w is not None else jnp.zeros((), dtype=dtype)
    jt = None if t is None else jnp.asarray(t)
    cot = jnp.asarray(case.cotangent(dtype))
    out, gx, gw = _jax_program(case.name, dtype)(jnp.asarray(x), jw, jt, cot)
    return np.asarray(out), np.asarray(gx), None if w is None else np.asarray(gw)


def _core_torch_face(case: Case, dtype: str) -> tuple[Any, Any, Any]:
    """The array core on torch CPU tensors (generic path, float64 accumulation), differentiated
    by torch.autograd through the core's own operations."""
    import torch

    x, t, w = case.inputs(dtype)
    tx = torch.tensor(x, requires_grad=True)
    tw = None if w is None else torch.tensor(w, requires_grad=True)
    out = _core_call(case, tx, None if t is None else torch.tensor(t), tw)
    out.backward(torch.tensor(case.cotangent(dtype)).to(out.dtype))
    gw = None if tw is None else tw.grad.double().numpy()
    return out.detach().double().numpy(), tx.grad.double().numpy(), gw


def _torch_face(case: Case, dtype: str) -> tuple[Any, Any, Any]:
    import torch

    import logsumexp.torch as lt

    x, t, w = case.inputs(dtype)
    tx = torch.tensor(x, requires_grad=True)
    tw = None if w is None else torch.tensor(w, requires_grad=True)
    if case.op == "cross_entropy":
        out = lt.cross_entropy(tx, torch.tensor(t), tw, **case.kwargs)
    elif case.op == "logsumexp":
        out = lt.logsumexp(tx, dim=-1)
    else:
        out = getattr(lt, case.op)(tx, dim=-1)
    cot = torch.tensor(case.cotangent(dtype)).to(out.dtype)
    out.backward(cot)
    gw = None if tw is None else (tw.grad if tw.grad is not None else torch.full_like(tw, float("nan")))
    return (out.detach().double().numpy(), tx.grad.double().numpy(),
            None if gw is None else gw.double().numpy())


_BY_NAME = {c.name: c for c in CASES}

FACES: dict[str, tuple[Callable[[Case, str], Any], str | None]] = {
    "numpy": (_numpy_face, None),
    "numpy-core": (_numpy_face, None),
    "array_api_strict": (_strict_face, "array_api_strict"),
    "jax-jit": (_jax_face, "jax"),
    "dask": (_dask_face, "dask"),
    "core-on-torch": (_core_torch_face, "torch"),
    "torch-face": (_torch_face, "torch"),
}


def _face_param(name: str) -> Any:
    pkg = FACES[name][1]
    marks = [] if pkg is None or _importable(pkg) else [pytest.mark.skip(reason=f"face {name}: package {pkg!r} is not installed")]
    return pytest.param(name, id=name, marks=marks)


def _case_params() -> list[Any]:
    return [pytest.param(c, d, id=f"{c.name}-{d}") for c in CASES for d in c.dtypes]


def _jax_compiles(case: Case, dtype: str) -> bool:
    """JAX compiles one program per case and dtype (~1 s each on a shared CPU): the cases about
    options (their logic does not depend on the dtype) run jitted in float64 only."""
    return dtype == "float64" or "options" not in case.tags


@pytest.mark.parametrize("face", [_face_param(n) for n in FACES])
@pytest.mark.parametrize(("case", "dtype"), _case_params())
def test_conformance(face: str, case: Case, dtype: str, request: pytest.FixtureRequest) -> None:
    from logsumexp import _cpu

    if face == "jax-jit" and not _jax_compiles(case, dtype):
        pytest.skip("an options case: jitted on JAX in float64 only (compile time; see _jax_compiles)")
    run = FACES[face][0]
    rtol = None
    if face == "torch-face":
        rtol = _TORCH_FACE_RTOL[dtype]
        reason = TORCH_FACE_KNOWN_FAILURES.get(case.name)
        if reason is not None:
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    ctx = _cpu.disabled() if face == "numpy-core" else contextlib.nullcontext()
    with ctx, np.errstate(all="raise"):  # no floating-point warning may escape the library
        value, grad, weight_grad = run(case, dtype)
    check(case, dtype, value, grad, weight_grad, rtol=rtol)


# ------------------------------------------------------------------------------------------------
# The references themselves, against an independent computation
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [c for c in CASES if c.op == "cross_entropy" and c.weight is not None
                                  and all(np.isfinite(c.x).ravel())], ids=str)
def test_weight_gradient_reference_by_finite_differences(case: Case) -> None:
    """The class-weight gradients of the table against central differences of the float64 loss
    (the loss is linear in each weight but for the mean's denominator: a step of 1e-6 is exact to
    ~1e-9, far below the effects a wrong formula gives, e.g. a missing numerator term)."""
    x, t, w = case.inputs("float64")
    ref = case.reference("float64")
    cot = case.cotangent("float64")

    def loss(weights: np.ndarray) -> float:
        return float(np.sum(cot * np.asarray(lse.cross_entropy(x, t, weight=weights, **case.kwargs))))

    h = 1e-6
    fd = np.array([(loss(w + h * e) - loss(w - h * e)) / (2 * h) for e in np.eye(len(w))])
    np.testing.assert_allclose(ref.weight_grad, fd, rtol=1e-7, atol=1e-8)
