"""The conformance table: one list of cases, with exact references, that every face must pass.

A *face* is one way a user reaches the mathematics: the array core on NumPy (compiled fast path and
pure core path), array-api-strict, JAX (jitted, with ``jax.grad``), Dask, the torch CPU face
(``logsumexp.torch``) and the Triton kernels (interpreter or GPU). Each case is one call of one
operation on a small 2-D input whose last axis is the reduced (class) axis, so that ``axis=-1``
(array core) and ``dim=-1`` / torch's class dimension 1 (torch face) mean the same thing.

How a face uses it
------------------
::

    from _conformance import CASES, check

    for case in CASES:                       # or pytest.mark.parametrize("case", CASES, ids=str)
        for dtype in case.dtypes:            # "float64", "float32"
            x = to_face(case.x.astype(dtype))                 # the logits / input
            kw = case.kwargs                                  # options, the public names
            t = None if case.target is None else to_face(case.target)
            w = None if case.weight is None else to_face(case.weight.astype(dtype))
            out = call(case.op, x, t, w, **kw)                # e.g. lse.cross_entropy(x, t, weight=w, **kw)
            # gradient: of sum(case.cotangent(dtype) * out) with respect to x (and w)
            check(case, dtype, value=out_as_numpy, grad=grad_x_as_numpy, weight_grad=grad_w_as_numpy)

``case.op`` is one of ``"logsumexp"``, ``"softmax"``, ``"log_softmax"``, ``"cross_entropy"``; all
reduce over the last axis. ``case.kwargs`` holds only the public keyword arguments shared by the
array core and the torch face (``ignore_index``, ``reduction``, ``label_smoothing``,
``num_items``); ``case.weight`` is the class weight (``weight=`` on both faces). ``case.target``
is an int64 array of class indices or a float64 array of probabilities.

``check`` compares against the references (computed with mpmath at 50 digits from the inputs
rounded to ``dtype``, then rounded to float64): infinities and NaN must sit exactly where the
reference has them, finite values within a relative tolerance (``RTOL``; a face that accumulates
float32 in float32 passes ``rtol=`` explicitly). ``grad`` / ``weight_grad`` may be None (a face
without autodiff); a case whose ``ref.grad`` is None does not specify a gradient (e.g. the
derivative of softmax on a +inf row), and ``check`` ignores a gradient given for it.

The table is data only; it imports nothing from the library, so it pins behaviour, not code.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np

MP = mpmath.mp
MP.dps = 50

INF, NAN = math.inf, math.nan

OPS = ("logsumexp", "softmax", "log_softmax", "cross_entropy")

# Relative tolerance of finite values and gradients per dtype, for a face that accumulates float32 in
# float64 (the array core on a CPU). 1e-14 is about 45 ulp of float64: room for the backend's own
# exp/log1p (XLA's CPU log1p is up to ~10 ulp off) while still catching a lost dominant term, which is
# off by 100 %. Gradients are compared with an absolute floor of RTOL · max|gradient| of the case.
RTOL = {"float64": 1e-14, "float32": 4e-7}


@dataclass(frozen=True)
class Reference:
    """Expected results of a case at one dtype (float64 arrays)."""

    value: np.ndarray
    grad: np.ndarray | None  # d/dx of sum(cotangent · value); None: not part of the contract
    weight_grad: np.ndarray | None  # d/dweight of the same; None without a weight or not specified
    # The size of the terms a gradient is computed from (max over rows of |cotangent|·Σ|coefficients|):
    # softmax − onehot at a dominant entry is a difference of two numbers near 1, so gradients are
    # held to an absolute error of rtol · grad_scale, values to a relative one.
    grad_scale: float = 1.0


@dataclass(frozen=True, eq=False)
class Case:
    """One call of one operation, on a small float64 input (reduced/class axis last)."""

    name: str
    op: str
    x: np.ndarray
    target: np.ndarray | None = None
    weight: np.ndarray | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    dtypes: tuple[str, ...] = ("float64", "float32")
    tags: frozenset[str] = frozenset()  # "special", "dominant", "seed", "options"
    grad_specified: bool = True  # False: only the value is part of the contract

    def __str__(self) -> str:
        return self.name

    def cotangent(self, dtype: str = "float64") -> np.ndarray:
        """The upstream gradient for the gradient check: 1, 1.25, 1.5, 1.75, 1, ... (exact in any
        float), of the shape of the value (a 0-d array for a reduced loss)."""
        shape = self.reference(dtype).value.shape
        c = 1.0 + 0.25 * (np.arange(math.prod(shape)) % 4)
        return c.reshape(shape).astype(dtype)

    def inputs(self, dtype: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(x, target, weight) in ``dtype`` (targets unchanged when they are indices)."""
        t = self.target
        if t is not None and t.dtype.kind == "f":
            t = t.astype(dtype)
        w = None if self.weight is None else self.weight.astype(dtype)
        return self.x.astype(dtype), t, w

    def reference(self, dtype: str = "float64") -> Reference:
        return _reference(self, dtype)


# ------------------------------------------------------------------------------------------------
# References (mpmath, 50 digits)
# ------------------------------------------------------------------------------------------------
def _row_log_softmax(row: np.ndarray) -> tuple[Any, list[Any]]:
    """(LSE, log-softmax entries) of one row with the contract's special values, as mpf/float."""
    vals = [float(v) for v in row]
    if any(math.isnan(v) for v in vals):
        return NAN, [NAN] * len(vals)
    k_inf = sum(v == INF for v in vals)
    if k_inf:
        return INF, [-MP.log(k_inf) if v == INF else -INF for v in vals]
    finite = [i for i, v in enumerate(vals) if v != -INF]
    if not finite:
        return -INF, [-INF] * len(vals)
    k = max(finite, key=lambda i: vals[i])
    m = MP.mpf(vals[k])
    rest = MP.fsum(MP.exp(MP.mpf(vals[i]) - m) for i in finite if i != k)
    lr = MP.log1p(rest)
    return m + lr, [(MP.mpf(v) - m) - lr if v != -INF else -INF for v in vals]


def _exp(v: Any) -> Any:
    if isinstance(v, float):
        return 0.0 if v == -INF else (NAN if math.isnan(v) else INF)
    return MP.exp(v)


def _f(v: Any) -> float:
    return float(v)


def _times(c: Any, v: Any) -> Any:
    """c · v with 0 · ±inf = 0 (an absent term)."""
    return 0 if c == 0 else c * v


@functools.lru_cache(maxsize=None)
def _reference_cached(key: int, dtype: str) -> Reference:
    case = _BY_ID[key]
    x, target, weight = case.inputs(dtype)
    x = x.astype(np.float64)
    rows = [_row_log_softmax(r) for r in x]
    if case.op == "cross_entropy":
        return _cross_entropy_reference(case, x, rows, target, None if weight is None else weight.astype(np.float64))
    finite_rows = all(all(math.isfinite(v) for v in r) for r in x)
    if case.op == "logsumexp":
        value = np.array([_f(l) for l, _ in rows])
    else:
        value = np.array([[_f(_exp(v) if case.op == "softmax" else v) for v in lp] for _, lp in rows]).reshape(x.shape)
    c = _cotangent_like(value)
    grad = None
    if case.op == "logsumexp":
        # the gradient of LSE is the softmax, also on special rows (all −inf: 0; +inf: 1/k; NaN: NaN)
        grad = np.array([[_f(c[i] * _exp(v)) for v in lp] for i, (_, lp) in enumerate(rows)]).reshape(x.shape)
    elif finite_rows:
        g = []
        for i, (_, lp) in enumerate(rows):
            s = [MP.exp(v) for v in lp]
            ci = [MP.mpf(float(v)) for v in c[i]]
            if case.op == "softmax":
                dot = MP.fsum(a * b for a, b in zip(ci, s))
                g.append([_f(sj * (cj - dot)) for sj, cj in zip(s, ci)])
            else:
                tot = MP.fsum(ci)
                g.append([_f(cj - sj * tot) for sj, cj in zip(s, ci)])
        grad = np.array(g).reshape(x.shape)
    scale = float(np.max(np.abs(c))) if c.size else 1.0
    return Reference(value, grad if case.grad_specified else None, None, scale)


def _reference(case: Case, dtype: str) -> Reference:
    return _reference_cached(id(case), dtype)


def _cotangent_like(value: np.ndarray) -> np.ndarray:
    c = 1.0 + 0.25 * (np.arange(math.prod(value.shape)) % 4)
    return c.reshape(value.shape)


def _cross_entropy_reference(
    case: Case, x: np.ndarray, rows: list, target: np.ndarray, weight: np.ndarray | None
) -> Reference:
    """torch's cross-entropy semantics plus the contract's: per row ``Σ_c coef_c (LSE − x_c)``.

    ``coef = (1 − ε) w_t onehot_t + ε/C · w`` for an index target (0 on ignored rows), ``coef = w ·
    ((1 − ε) q + ε/C)`` for probabilities; ``mean`` divides by ``Σ w_t`` over counted rows (the number
    of rows for probabilities) or by ``num_items``; nothing counted → 0. A zero coefficient times an
    infinite ``LSE − x_c`` is an absent term.
    """
    kw = case.kwargs
    eps = MP.mpf(kw.get("label_smoothing", 0.0))
    ignore = kw.get("ignore_index", -100)
    reduction = kw.get("reduction", "mean")
    num_items = kw.get("num_items")
    n, C = x.shape
    w = [MP.mpf(1)] * C if weight is None else [MP.mpf(float(v)) for v in weight]
    index = target.dtype.kind in "iu"
    coefs, dcoef_dw, counted_w = [], [], []
    for i in range(n):
        if index:
            t = int(target[i])
            if t == ignore:
                coefs.append([MP.mpf(0)] * C)
                dcoef_dw.append([MP.mpf(0)] * C)
                counted_w.append((None, MP.mpf(0)))
                continue
            coefs.append([(1 - eps) * w[c] * (c == t) + eps / C * w[c] for c in range(C)])
            dcoef_dw.append([(1 - eps) * (c == t) + eps / C for c in range(C)])
            counted_w.append((t, w[t]))
        else:
            q = [(1 - eps) * MP.mpf(float(v)) + eps / C for v in target[i]]
            coefs.append([w[c] * q[c] for c in range(C)])
            dcoef_dw.append(q)
            counted_w.append((None, MP.mpf(1)))
    nll = [[-v for v in lp] for _, lp in rows]  # LSE − x_c = −log softmax_c
    losses = [MP.fsum(_times(coefs[i][c], nll[i][c]) for c in range(C)) if not _row_nan(rows[i]) else NAN
              for i in range(n)]
    if num_items is not None:
        denom = MP.mpf(float(num_items))
    else:
        denom = MP.fsum(cw for _, cw in counted_w)
    if reduction == "none":
        value = np.array([_f(v) for v in losses])
        cot = [MP.mpf(float(v)) for v in _cotangent_like(value)]
    else:
        total = _nan_sum(losses)
        if reduction == "sum":
            value, cot = np.array(_f(total)), [MP.mpf(1)] * n
        elif denom == 0:
            value, cot = np.array(0.0), [MP.mpf(0)] * n
        else:
            value, cot = np.array(_f(total / denom)), [1 / denom] * n
    grad = None
    if case.grad_specified:
        g = []
        for i, (_, lp) in enumerate(rows):
            if _row_nan(rows[i]):
                g.append([NAN] * C)
                continue
            s = [_exp(v) for v in lp]
            tot = MP.fsum(coefs[i])
            g.append([_f(cot[i] * (tot * s[c] - coefs[i][c])) for c in range(C)])
        grad = np.array(g).reshape(x.shape)
    weight_grad = None
    if weight is not None and case.grad_specified and not any(_row_nan(r) for r in rows):
        # d/dw_c of Σ_i cot_i ℓ_i, plus, for the weighted mean, the denominator's own term
        wg = [MP.fsum(cot[i] * _times(dcoef_dw[i][c], nll[i][c]) for i in range(n)) for c in range(C)]
        if reduction == "mean" and num_items is None and index and denom != 0:
            total = _nan_sum(losses)
            for t, _ in counted_w:
                if t is not None:
                    wg[t] -= total / denom**2
        weight_grad = np.array([_f(v) for v in wg])
    scale = max((_f(abs(cot[i]) * MP.fsum(abs(v) for v in coefs[i])) for i in range(n)), default=1.0)
    return Reference(value, grad, weight_grad, scale)


def _row_nan(row: tuple[Any, list[Any]]) -> bool:
    lse = row[0]
    return isinstance(lse, float) and math.isnan(lse)


def _nan_sum(vals: list[Any]) -> Any:
    if any(isinstance(v, float) and math.isnan(v) for v in vals):
        return NAN
    if any(isinstance(v, float) and v == INF for v in vals) or any(v == MP.inf for v in vals):
        return MP.inf
    return MP.fsum(vals)


# ------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------
def _a(rows: Any) -> np.ndarray:
    out = np.array(rows, dtype=np.float64)
    out.setflags(write=False)
    return out


def _i(vals: Any) -> np.ndarray:
    out = np.array(vals, dtype=np.int64)
    out.setflags(write=False)
    return out


_DOMINANT = _a([[0.0] + [-40.0] * 999])
_DOMINANT_MID = _a([[-40.0, -40.0, 0.0, -40.0, -40.0], [1.0, -39.0, -39.0, -39.0, -39.0]])
_MIXED = _a([[0.5, -1.25, 3.0, 2.0, -0.75], [-3.0, 0.0, 0.25, 10.0, 9.5], [1.0, 1.0, 1.0, 1.0, 1.0],
             [-2.5, 4.0, -0.5, 0.125, 3.75]])
_SPECIAL_ROWS = {
    "seed_pm1000": (_a([[1000.0, 1000.0, 1000.0], [-1000.0, -1000.0, -1000.0]]), True),
    "finite_mixed": (_MIXED, True),
    "dominant_first": (_DOMINANT, True),
    "dominant_middle": (_DOMINANT_MID, True),
    "single_entry": (_a([[3.5], [-1000.0]]), True),
    "some_neginf": (_a([[0.0, -INF, 1.0, -INF], [-INF, 2.0, -INF, -INF]]), False),
    "all_neginf": (_a([[-INF, -INF, -INF], [0.0, 1.0, 2.0]]), False),
    "empty_rows": (np.zeros((2, 0)), False),
    "one_posinf": (_a([[0.0, INF, 1.0, -INF], [0.0, 1.0, 2.0, 3.0]]), False),
    "two_posinf": (_a([[INF, -1000.0, INF, 3.0]]), False),
    "nan_in_one_row": (_a([[0.0, NAN, 1.0], [0.0, 1.0, 2.0]]), False),
    "nan_and_posinf": (_a([[NAN, INF, 1.0], [-INF, -INF, -INF]]), False),
}


def _array_cases() -> list[Case]:
    out = []
    for name, (x, finite) in _SPECIAL_ROWS.items():
        tags = {"seed"} if name.startswith("seed") else ({"dominant"} if name.startswith("dominant") else set())
        if not finite:
            tags.add("special")
        for op in ("logsumexp", "softmax", "log_softmax"):
            out.append(Case(f"{op}-{name}", op, x, tags=frozenset(tags)))
    out.append(Case("logsumexp-huge_spread", "logsumexp", _a([[-1e300, 1e300, 0.0]]), dtypes=("float64",)))
    return out


_CE_X = _MIXED
_CE_T = _i([0, 3, 4, 1])
_CE_W = _a([0.5, 1.0, 0.0, 2.0, 1.5])
_CE_Q = _a([[0.25, 0.25, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0], [0.2, 0.2, 0.2, 0.2, 0.2],
            [0.125, 0.5, 0.0, 0.125, 0.25]])


def _ce(name: str, x: np.ndarray, t: np.ndarray, w: np.ndarray | None = None, tags: tuple[str, ...] = ("options",),
        dtypes: tuple[str, ...] = ("float64", "float32"), grad: bool = True, **kw: Any) -> Case:
    return Case(f"cross_entropy-{name}", "cross_entropy", x, t, w, kw, dtypes, frozenset(tags), grad)


def _cross_entropy_cases() -> list[Case]:
    out = [
        _ce("seed_pm1000", _a([[1000.0, 1000.0, 1000.0], [-1000.0, -1000.0, -1000.0]]), _i([0, 2]), tags=("seed",)),
        _ce("dominant_float32", _a([[20.0, 0.0, 0.0]]), _i([0]), tags=("dominant",)),
        _ce("dominant_wide", _DOMINANT, _i([0]), tags=("dominant",), reduction="sum"),
        _ce("dominant_smoothing", _DOMINANT_MID, _i([2, 0]), tags=("dominant", "options"), label_smoothing=1e-3),
    ]
    for red in ("mean", "sum", "none"):
        out.append(_ce(f"index-{red}", _CE_X, _CE_T, reduction=red))
        out.append(_ce(f"weight-{red}", _CE_X, _CE_T, _CE_W, reduction=red))
        out.append(_ce(f"probabilities-{red}", _CE_X, _CE_Q, reduction=red))
    out += [
        _ce("ignore_index_default", _CE_X, _i([0, -100, 4, -100])),
        _ce("ignore_index_custom", _CE_X, _i([0, 2, 4, 2]), _CE_W, ignore_index=2),
        _ce("ignore_index_none", _CE_X, _i([0, -100, 4, -100]), reduction="none"),
        _ce("all_ignored_mean", _CE_X, _i([-100, -100, -100, -100])),
        _ce("all_ignored_weighted_mean", _CE_X, _i([-100, -100, -100, -100]), _CE_W),
        _ce("zero_weight_only_mean", _CE_X, _i([2, 2, 2, 2]), _CE_W),
        _ce("label_smoothing", _CE_X, _CE_T, label_smoothing=0.1),
        _ce("label_smoothing_weight", _CE_X, _CE_T, _CE_W, label_smoothing=0.25),
        _ce("label_smoothing_ignore_none", _CE_X, _i([0, -100, 4, 1]), _CE_W, label_smoothing=0.1, reduction="none"),
        _ce("label_smoothing_one", _CE_X, _CE_T, label_smoothing=1.0),
        _ce("probabilities_smoothing_weight", _CE_X, _CE_Q, _CE_W, label_smoothing=0.2),
        _ce("num_items", _CE_X, _CE_T, num_items=10),
        _ce("num_items_weight_ignore", _CE_X, _i([0, -100, 4, 1]), _CE_W, num_items=7.5),
        # special values
        _ce("neginf_logit_off_target", _a([[0.0, -INF, 1.0], [2.0, 1.0, -INF]]), _i([0, 1]), tags=("special",),
            reduction="none", grad=False),
        _ce("neginf_logit_zero_probability", _a([[0.0, -INF, 1.0]]), _a([[0.5, 0.0, 0.5]]), tags=("special",),
            reduction="none"),
        _ce("neginf_logit_on_target", _a([[0.0, -INF, 1.0]]), _i([1]), tags=("special",), reduction="none", grad=False),
        _ce("all_neginf_row", _a([[-INF, -INF, -INF], [0.0, 1.0, 2.0]]), _i([0, 1]), tags=("special",),
            reduction="none", grad=False),
        _ce("posinf_on_target", _a([[INF, INF, 0.0], [0.0, 1.0, 2.0]]), _i([0, 2]), tags=("special",),
            reduction="none", grad=False),
        # k logits at +inf: softmax 1/k there, gradient softmax − onehot (autodiff faces included)
        _ce("posinf_gradient", _a([[INF, INF, 0.0, -INF], [0.0, INF, 1.0, 2.0], [0.0, 1.0, 2.0, 3.0]]), _i([1, 1, 3]),
            tags=("special",), reduction="none"),
        _ce("posinf_gradient_weight_mean", _a([[INF, INF, 0.0, -INF], [0.0, 1.0, 2.0, 3.0]]), _i([0, 2]),
            _a([1.0, 2.0, 0.5, 1.5]), tags=("special",)),
        _ce("nan_in_one_row", _a([[NAN, 0.0, 1.0], [0.0, 1.0, 2.0]]), _i([1, 2]), tags=("special",), reduction="none"),
        # probabilities on a row with k logits at +inf: −log p = log k on those, classes of probability 0
        # add 0 (the Triton kernel once computed Σ q·LSE − Σ q·x there, inf − inf = NaN)
        _ce("posinf_probabilities", _a([[0.0, INF, INF, 1.0], [0.5, -1.0, 2.0, 0.0]]),
            _a([[0.0, 0.25, 0.75, 0.0], [0.1, 0.2, 0.3, 0.4]]), tags=("special",), reduction="sum"),
    ]
    return out


CASES: tuple[Case, ...] = tuple(_array_cases() + _cross_entropy_cases())
_BY_ID = {id(c): c for c in CASES}
BY_NAME: dict[str, Case] = {c.name: c for c in CASES}
assert len(BY_NAME) == len(CASES), "case names must be unique"


# ------------------------------------------------------------------------------------------------
# The check
# ------------------------------------------------------------------------------------------------
def check(
    case: Case,
    dtype: str,
    value: Any,
    grad: Any = None,
    weight_grad: Any = None,
    rtol: float | None = None,
) -> None:
    """Assert a face's results against the references of ``case`` at ``dtype``.

    Special values must match exactly (position of NaN, sign of infinities); finite values within
    ``rtol`` (default ``RTOL[dtype]``) relative; gradients within ``rtol`` relative with an absolute
    floor of ``rtol · max(max|reference gradient|, grad_scale)``.
    """
    ref = case.reference(dtype)
    tol = RTOL[dtype] if rtol is None else rtol
    _close(f"{case.name} [{dtype}] value", np.asarray(value, dtype=np.float64), ref.value, tol, 0.0)
    for label, got, want in (("gradient", grad, ref.grad), ("weight gradient", weight_grad, ref.weight_grad)):
        if got is None or want is None:
            continue
        finite = want[np.isfinite(want)]
        floor = tol * max(float(np.max(np.abs(finite))) if finite.size else 0.0, ref.grad_scale)
        _close(f"{case.name} [{dtype}] {label}", np.asarray(got, dtype=np.float64), want, tol, floor)


def _close(what: str, got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> None:
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {got.shape}, expected {want.shape}")
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)
