"""Exact references (mpmath, 50 significant digits), ulp errors, input families, hypothesis settings.

Import from any test file as ``from _reference import ...`` (tests/conftest.py puts this directory on
``sys.path``). The references take the *rounded* inputs actually passed to the function under test
(float16 inputs are evaluated at their float16 values), so the error measured is the function's own.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence

import mpmath
import numpy as np
from hypothesis import settings

mpmath.mp.dps = 50
MP = mpmath.mp

# The settings of the hypothesis profile in force (tests/conftest.py registers ``ci``, ``dev`` and
# ``nightly`` and loads the one HYPOTHESIS_PROFILE names, ``ci`` by default, before any test
# module imports this one): derandomized, no deadline, no shrinking under ci.
HYP = settings()
CI_EXAMPLES = 60  # max_examples of the ci profile: hyp() scales counts stated for ci


def hyp(ci_examples: int) -> settings:
    """The profile's settings with ``ci_examples`` examples under ``ci``, scaled like the profile
    elsewhere (a quarter under ``dev``, ten times under ``nightly``); at least one."""
    return settings(HYP, max_examples=max(1, round(ci_examples * HYP.max_examples / CI_EXAMPLES)))


def _mpf(v: float) -> mpmath.mpf:
    return v if isinstance(v, mpmath.mpf) else MP.mpf(float(v))


def _key(v: Iterable[float] | None) -> tuple[float, ...] | None:
    """The values as a hashable cache key (float64, exactly: the references are of the rounded
    inputs, so two arrays with the same float64 values have the same reference)."""
    return None if v is None else tuple(float(x) for x in np.ravel(np.asarray(v, dtype=np.float64)))


# The references below are cached per case for the session: hypothesis draws the same
# (derandomized) examples for a property on every backend, and the families are shared by many
# tests, so each exact value is computed once. The precision is part of the key.
_CACHE = 4096


def mp_lse(a: Iterable[float], b: Iterable[float] | None = None) -> mpmath.mpf:
    """log|Σ b_i e^{a_i}| to 50 significant digits (finite a; −inf for an empty or zero sum);
    cached per case (see _CACHE)."""
    return _mp_lse(_key(a), _key(b), MP.prec)


@functools.lru_cache(maxsize=_CACHE)
def _mp_lse(a: tuple[float, ...], b: tuple[float, ...] | None, prec: int) -> mpmath.mpf:
    """log|Σ b_i e^{a_i}| to 50 significant digits (finite a; −inf for an empty or zero sum).

    Computed as ``log|t_k| + log1p(Σ_{i≠k} t_i / t_k)`` with ``t_k`` the largest term, so that a
    dominant term does not cost the reference its relative accuracy: ``log(1 + 1e-36)`` at 50
    digits would keep only 14 digits of the answer ``1e-36``.
    """
    a = [float(v) for v in np.ravel(a)]
    if b is None:  # unit weights: the largest term is the largest a (no logs of weights to take)
        return _mp_lse_unweighted([v for v in a if v != -math.inf])
    bs = [float(v) for v in np.ravel(b)]
    pairs = [(_mpf(v), _mpf(w)) for v, w in zip(a, bs) if v != -math.inf and w != 0]
    if not pairs:
        return MP.mpf("-inf")
    k = max(range(len(pairs)), key=lambda i: pairs[i][0] + MP.log(abs(pairs[i][1])))
    ak, bk = pairs[k]
    rest = MP.fsum((w / bk) * MP.exp(v - ak) for i, (v, w) in enumerate(pairs) if i != k)
    if rest == -1:
        return MP.mpf("-inf")
    return ak + MP.log(abs(bk)) + MP.log(abs(1 + rest)) if rest < -0.5 else ak + MP.log(abs(bk)) + MP.log1p(rest)


def _mp_lse_unweighted(a: list[float]) -> mpmath.mpf:
    """``log Σ e^{a_i}`` of finite ``a`` as ``a_k + log1p(Σ_{i≠k} e^{a_i − a_k})``, ``a_k`` the largest."""
    if not a:
        return MP.mpf("-inf")
    k = max(range(len(a)), key=a.__getitem__)
    ak = _mpf(a[k])
    return ak + MP.log1p(MP.fsum(MP.exp(_mpf(v) - ak) for i, v in enumerate(a) if i != k))


def mp_lse_sign(a: Iterable[float], b: Iterable[float] | None = None) -> int:
    """The sign of Σ b_i e^{a_i} (cached per case)."""
    return _mp_lse_sign(_key(a), _key(b), MP.prec)


@functools.lru_cache(maxsize=_CACHE)
def _mp_lse_sign(a: tuple[float, ...], b: tuple[float, ...] | None, prec: int) -> int:
    a = [float(v) for v in np.ravel(a)]
    bs = [1.0] * len(a) if b is None else [float(v) for v in np.ravel(b)]
    s = MP.fsum(_mpf(w) * MP.exp(_mpf(v)) for v, w in zip(a, bs) if v != -math.inf)
    return int(MP.sign(s))


def mp_log_softmax(a: Sequence[float]) -> list[mpmath.mpf]:
    """(x_i − m) − log1p(Σ_{j≠k} e^{x_j − m}) per entry (finite or −inf entries; not all −inf):
    the dominant entry's tiny log-probability keeps its 50 digits. Cached per case (a new list
    each call, so that a caller may change it)."""
    return list(_mp_log_softmax(_key(a), MP.prec))


@functools.lru_cache(maxsize=_CACHE)
def _mp_log_softmax(a: tuple[float, ...], prec: int) -> tuple[mpmath.mpf, ...]:
    xs = [_mpf(v) for v in np.ravel(a)]
    k = max(range(len(xs)), key=lambda i: xs[i])
    m = xs[k]
    rest = MP.fsum(MP.exp(v - m) for i, v in enumerate(xs) if i != k and v != -math.inf)
    lr = MP.log1p(rest)
    return tuple((v - m) - lr if v != -math.inf else MP.mpf("-inf") for v in xs)


def mp_softmax(a: Sequence[float]) -> list[mpmath.mpf]:
    return [MP.exp(v) for v in mp_log_softmax(a)]


def mp_logaddexp(a: float, b: float) -> mpmath.mpf:
    hi, lo = max(_mpf(a), _mpf(b)), min(_mpf(a), _mpf(b))
    return hi + MP.log1p(MP.exp(lo - hi))


def mp_log1mexp(x: float) -> mpmath.mpf:
    """log(1 − e^x), x < 0, in the form that keeps 50 relative digits on either side of −log 2."""
    x = _mpf(x)
    return MP.log(-MP.expm1(x)) if x > -MP.log(2) else MP.log1p(-MP.exp(x))


def mp_logsubexp(a: float, b: float) -> mpmath.mpf:
    return _mpf(a) + mp_log1mexp(_mpf(b) - _mpf(a))


def mp_softplus(x: float) -> mpmath.mpf:
    return MP.log1p(MP.exp(_mpf(x)))


def ulp(got: float, dtype: str | np.dtype) -> float:
    """One ulp of the float ``got`` in ``dtype``: the gap from |got| to the next float away from 0
    (for a result rounded down to a power of two this is the larger gap, so the bound is fair)."""
    dt = np.float32 if str(dtype) == "bfloat16" else np.dtype(dtype).type
    if str(dtype) == "bfloat16":  # 8 significant bits
        g = abs(float(got))
        if g == 0:
            return 2.0 ** -133
        return 2.0 ** (math.floor(math.log2(g)) - 7)
    return float(np.spacing(dt(abs(float(got)))))


def ulp_error(got: float, exact: mpmath.mpf, dtype: str | np.dtype) -> float:
    """|got − exact| in units of the ulp of ``got`` in ``dtype`` (0 when both are the same infinity)."""
    got = float(got)
    if math.isinf(got) or MP.isinf(exact):
        return 0.0 if (math.isinf(got) and MP.isinf(exact) and (got > 0) == (exact > 0)) else math.inf
    if math.isnan(got):
        return math.inf
    return float(abs(MP.mpf(got) - exact) / MP.mpf(ulp(got, dtype)))


def max_ulp_error(got: Sequence[float], exact: Sequence[mpmath.mpf], dtype: str | np.dtype) -> float:
    return max((ulp_error(g, e, dtype) for g, e in zip(np.ravel(got), exact)), default=0.0)


# --------------------------------------------------------------------------------------------
# The input families of the accuracy targets (the accuracy report's families)
# --------------------------------------------------------------------------------------------
FAMILIES = (
    "N(0,1)",
    "1000+N(0,1)",
    "-1000+N(0,1)",
    "[0,-40x999]",
    "0+U(-45,-35)",
    "0+U(-25,-15)",
    "U(-700,700)",
)


def family(name: str, n: int, seed: int) -> np.ndarray:
    """n float64 values of a family (seeded); the dominant-term families start with the exact 0."""
    rng = np.random.default_rng(seed)
    if name == "N(0,1)":
        return rng.standard_normal(n)
    if name == "1000+N(0,1)":
        return 1000.0 + rng.standard_normal(n)
    if name == "-1000+N(0,1)":
        return -1000.0 + rng.standard_normal(n)
    if name == "[0,-40x999]":
        return np.concatenate([[0.0], np.full(n - 1, -40.0)])
    if name == "0+U(-45,-35)":
        return np.concatenate([[0.0], rng.uniform(-45, -35, n - 1)])
    if name == "0+U(-25,-15)":
        return np.concatenate([[0.0], rng.uniform(-25, -15, n - 1)])
    if name == "U(-700,700)":
        return rng.uniform(-700, 700, n)
    raise ValueError(name)


@functools.lru_cache(maxsize=256)
def family_case(name: str, n: int, seed: int, dtype: str) -> tuple[np.ndarray, mpmath.mpf]:
    """The family's values rounded to ``dtype`` (as float64) and their exact LSE."""
    x = family(name, n, seed)
    if dtype == "bfloat16":
        import torch

        x = torch.asarray(x).to(torch.bfloat16).double().numpy()
    else:
        x = x.astype(dtype).astype(np.float64)
    x.setflags(write=False)
    return x, mp_lse(x)


def lse_tolerance(got: float, m: float, dtype: str = "float64", ulps: float = 1.5, cond: float = 0.0) -> float:
    """The absolute error allowed for an LSE-like result ``got`` whose slice maximum is ``m``.

    ``ulps`` ulps of the result, plus one ulp of ``m``: the result is ``m + log S`` and when the two
    cancel (e.g. eight entries −3: −3 + log 8 = −0.92) the rounding of ``log S ≈ |m|`` is an
    absolute error no algorithm of this shape avoids (SciPy has it too). ``cond`` adds
    ``cond·eps`` for sums whose terms cancel (mixed-sign weights; ``cond`` = Σ|t_i| / |Σ t_i|).
    """
    if not math.isfinite(float(got)):
        return 0.0  # infinities must match exactly
    eps = float(np.finfo(np.float32 if dtype == "bfloat16" else dtype).eps)
    extra = ulp(m, dtype) if math.isfinite(m) and abs(m) > abs(got) else 0.0
    return ulps * ulp(got, dtype) + extra + cond * eps


def abs_error(got: float, exact: mpmath.mpf) -> float:
    got = float(got)
    if math.isinf(got) or MP.isinf(exact):
        return 0.0 if (math.isinf(got) and MP.isinf(exact) and (got > 0) == (exact > 0)) else math.inf
    return math.inf if math.isnan(got) else float(abs(MP.mpf(got) - exact))


def condition(a: Iterable[float], b: Iterable[float]) -> float:
    """Σ|b_i e^{a_i}| / |Σ b_i e^{a_i}|: how much the weighted sum cancels (cached per case)."""
    return _condition(_key(a), _key(b), MP.prec)


@functools.lru_cache(maxsize=_CACHE)
def _condition(a: tuple[float, ...], b: tuple[float, ...], prec: int) -> float:
    a, b = np.ravel(a).astype(float), np.ravel(b).astype(float)
    num = MP.fsum(abs(_mpf(w)) * MP.exp(_mpf(v)) for v, w in zip(a, b))
    den = abs(MP.fsum(_mpf(w) * MP.exp(_mpf(v)) for v, w in zip(a, b)))
    return math.inf if den == 0 else float(num / den)


def xfail_on(backend, names: Iterable[str], reason: str) -> None:
    """Mark the running test xfail(strict) on the backends ``names``: a known core bug, reported
    to the lead; strict, so the fix turns it into an XPASS failure and the marker gets removed."""
    import pytest

    if backend.name in set(names):
        backend.request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
