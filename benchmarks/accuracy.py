#!/usr/bin/env python
"""Accuracy report: LogSumExp error in ulps against mpmath, ours next to the peers users would use.

For every input family of issue 2 and every dtype (float64, float32, float16) the script draws
fixed-seed vectors, computes the exact LogSumExp of the vector *as given in that dtype* with mpmath
at 50 digits (once per vector, reused for every library), and measures each library's result as

    error = |computed − exact| / ulp(exact)

where ulp(exact) is the spacing of the dtype at |exact| (2^(e − p + 1) for 2^e ≤ |exact| < 2^(e+1),
with e clamped at the dtype's minimum exponent, so subnormal results have the subnormal spacing).
A result that is ±inf or NaN where the exact value is finite is reported as "inf" / "nan".

It also tabulates every library's output on the special-value rows of the numerical contract (README) (marked
against the contract) and the two pinned dominant-term cases (log_softmax at the dominant entry of
[0, −40×999] and cross_entropy of [[20, 0, 0]], target 0), and writes docs/ACCURACY.md and
docs/accuracy.png.

Usage::

    python benchmarks/accuracy.py            # full run (n = 1000, 200 vectors per family), ~1 min
    python benchmarks/accuracy.py --quick    # tiny run (seconds), e.g. for a smoke test
    python benchmarks/accuracy.py --out DIR  # write ACCURACY.md and accuracy.png into DIR

Peers: SciPy, NumPy naive ``log(sum(exp(x)))``, NumPy shifted ``m + log(sum(exp(x − m)))``,
torch (CPU) and JAX (CPU, float64 enabled), each skipped with a printed reason when not installed.
Ours is measured twice: the compiled CPU fast path (``logsumexp.logsumexp``) and the pure array
core (the same call inside ``logsumexp._cpu.disabled()``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mpmath
import numpy as np

import logsumexp as lse
from logsumexp import _cpu

REPO = Path(__file__).resolve().parent.parent
DPS = 50  # mpmath working precision, decimal digits

DTYPES: tuple[type, ...] = (np.float64, np.float32, np.float16)
# Targets for ours (max error over every family, in ulps): float64 1 ulp (issue 14; 1.5 before),
# 2 ulp on the near-zero families (a result that cancels against the maximum); float32 0.51 on
# the compiled path (the float64 exp is kept); float16 0.51.
TARGETS = {"float64": 1.0, "float32": 0.51, "float16": 0.51}
NEAR_ZERO_TARGET = 2.0
LOG_SOFTMAX_TARGET = 1.0  # float64, per entry
LOG_SOFTMAX_VECTORS = 20  # vectors per family for the per-entry log_softmax error (1000 entries each)
PINNED_TARGET = 2.0


def log(msg: str) -> None:
    """Progress goes to stderr, so that stdout stays free for the caller."""
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# Input families
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    key: str
    label: str
    make: Callable[[np.random.Generator, int], np.ndarray]  # float64 draws, cast per dtype later
    random: bool = True  # False: deterministic, measured once

    def name(self, n: int) -> str:
        """The label for vectors of length n (the deterministic family names its length)."""
        return self.label.format(k=n - 1)


def _with_zero(rng: np.random.Generator, rest: np.ndarray) -> np.ndarray:
    """0 inserted at a random position among ``rest`` (the dominant term, not always first)."""
    pos = int(rng.integers(0, rest.size + 1))
    return np.insert(rest, pos, 0.0)


FAMILIES: tuple[Family, ...] = (
    Family("normal", "N(0,1)", lambda r, n: r.standard_normal(n)),
    Family("plus1000", "1000+N(0,1)", lambda r, n: 1000.0 + r.standard_normal(n)),
    Family("minus1000", "−1000+N(0,1)", lambda r, n: -1000.0 + r.standard_normal(n)),
    Family("dominant40", "[0, −40×{k}]", lambda r, n: np.concatenate([[0.0], np.full(n - 1, -40.0)]), random=False),
    Family("zero_u45_35", "0 ∪ U(−45,−35)", lambda r, n: _with_zero(r, r.uniform(-45.0, -35.0, n - 1))),
    Family("zero_u25_15", "0 ∪ U(−25,−15)", lambda r, n: _with_zero(r, r.uniform(-25.0, -15.0, n - 1))),
    Family("u700", "U(−700,700)", lambda r, n: r.uniform(-700.0, 700.0, n)),
    # log p + c for a random probability vector p: LSE = c up to the entries' rounding, while the
    # maximum is near −log n: m + log1p(tail) cancels to a result far below ulp(m)·2^53
    Family("near0_1e4", "log p + 1e−4", lambda r, n: np.log(r.dirichlet(np.ones(n))) + 1e-4),
    Family("near0_1e9", "log p + 1e−9", lambda r, n: np.log(r.dirichlet(np.ones(n))) + 1e-9),
)


# ------------------------------------------------------------------------------------------
# Libraries
# ------------------------------------------------------------------------------------------
@dataclass
class Library:
    """One column of the tables. The callables take a 1-D NumPy array (in the dtype under test)
    and return a NumPy array / scalar in that dtype; None means the library has no such function."""

    name: str
    lse: Callable[[np.ndarray], Any] | None = None
    softmax: Callable[[np.ndarray], Any] | None = None
    log_softmax: Callable[[np.ndarray], Any] | None = None
    cross_entropy: Callable[[np.ndarray, np.ndarray], Any] | None = None  # (logits [B, C], int targets [B])
    version: str = ""
    ours: bool = False


def _quiet(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a peer with its floating-point warnings silenced (the naive forms overflow by design)."""

    def wrapped(*args: Any) -> Any:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args)

    return wrapped


def _core(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any) -> Any:
        with _cpu.disabled():
            return fn(*args)

    return wrapped


def _on_target(fn: Callable[..., Any], target: str) -> Callable[..., Any]:
    """``fn`` with the kernels of one instruction-set target (what ``LOGSUMEXP_CPU`` forces)."""
    import importlib

    mod = importlib.import_module(f"logsumexp._cpu._kernels_{target}")

    def wrapped(*args: Any) -> Any:
        _cpu.kernels()
        saved, _cpu._kernels = _cpu._kernels, mod
        try:
            return fn(*args)
        finally:
            _cpu._kernels = saved

    return wrapped


def _np_shifted_lse(x: np.ndarray) -> Any:
    m = np.max(x)  # raises on an empty array, as a user's code would
    if not np.isfinite(m):
        m = np.zeros((), dtype=x.dtype)  # the usual guard: ±inf max would give inf − inf
    return m + np.log(np.sum(np.exp(x - m)))


def _np_shifted_softmax(x: np.ndarray) -> Any:
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


def _np_shifted_log_softmax(x: np.ndarray) -> Any:
    d = x - np.max(x)
    return d - np.log(np.sum(np.exp(d)))


class _LeftOut(Exception):
    """A peer named in --skip."""


def libraries(skip: Sequence[str] = ()) -> tuple[list[Library], list[str]]:
    """The libraries to compare, and the reasons for the ones skipped (``skip``: peers to leave
    out, by name, case-insensitive; they are not even imported)."""
    leave_out = {name.lower() for name in skip}
    skipped: list[str] = [f"{name}: left out (--skip)" for name in ("SciPy", "torch", "JAX") if name.lower() in leave_out]
    fast_note = (
        f"compiled C kernels, `{_cpu.target()}` target"
        if _cpu.available()
        else "compiled kernels not built: same numbers as the core path"
    )
    libs = [
        Library(
            "ours (fast)",
            lse=lse.logsumexp,
            softmax=lse.softmax,
            log_softmax=lse.log_softmax,
            cross_entropy=lambda z, t: lse.cross_entropy(z, t),
            version=f"logsumexp {lse.__version__} ({fast_note})",
            ours=True,
        ),
    ]
    # the other targets this CPU runs: the same bits are the claim, the table shows it
    for target in [t for t in _cpu.supported_targets() if t != _cpu.target()]:
        libs.append(Library(
            f"ours ({target})",
            lse=_on_target(lse.logsumexp, target),
            softmax=_on_target(lse.softmax, target),
            log_softmax=_on_target(lse.log_softmax, target),
            cross_entropy=_on_target(lambda z, t: lse.cross_entropy(z, t), target),
            version=f"logsumexp {lse.__version__} (compiled C kernels forced to the `{target}` target)",
            ours=True,
        ))
    libs.append(
        Library(
            "ours (core)",
            lse=_core(lse.logsumexp),
            softmax=_core(lse.softmax),
            log_softmax=_core(lse.log_softmax),
            cross_entropy=_core(lambda z, t: lse.cross_entropy(z, t)),
            version=f"logsumexp {lse.__version__} (generic array core, `logsumexp._cpu.disabled()`: what runs "
            "on other namespaces, long double, or without the extension; working-precision sums)",
        )
    )
    try:
        if "scipy" in leave_out:
            raise _LeftOut
        import scipy
        import scipy.special as sps

        libs.append(
            Library(
                "SciPy",
                lse=_quiet(sps.logsumexp),
                softmax=_quiet(sps.softmax),
                log_softmax=_quiet(sps.log_softmax),
                version=f"scipy {scipy.__version__} (`scipy.special.logsumexp`, `softmax`, `log_softmax`)",
            )
        )
    except _LeftOut:
        pass
    except ImportError as err:
        skipped.append(f"SciPy: not installed ({err})")
    libs.append(
        Library(
            "NumPy naive",
            lse=_quiet(lambda x: np.log(np.sum(np.exp(x)))),
            softmax=_quiet(lambda x: np.exp(x) / np.sum(np.exp(x))),
            log_softmax=_quiet(lambda x: x - np.log(np.sum(np.exp(x)))),
            version=f"numpy {np.__version__} (`log(sum(exp(x)))`)",
        )
    )
    libs.append(
        Library(
            "NumPy shifted",
            lse=_quiet(_np_shifted_lse),
            softmax=_quiet(_np_shifted_softmax),
            log_softmax=_quiet(_np_shifted_log_softmax),
            version=f"numpy {np.__version__} (`m + log(sum(exp(x − m)))`, m = max(x), 0 when ±inf)",
        )
    )
    try:
        if "torch" in leave_out:
            raise _LeftOut
        import torch
        import torch.nn.functional as F

        def t(x: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(x))

        libs.append(
            Library(
                "torch",
                lse=_quiet(lambda x: torch.logsumexp(t(x), dim=0).numpy()),
                softmax=_quiet(lambda x: torch.softmax(t(x), dim=0).numpy()),
                log_softmax=_quiet(lambda x: torch.log_softmax(t(x), dim=0).numpy()),
                cross_entropy=_quiet(lambda z, y: F.cross_entropy(t(z), torch.from_numpy(y)).numpy()),
                version=f"torch {torch.__version__} (CPU; `torch.logsumexp`, `softmax`, `log_softmax`, `F.cross_entropy`)",
            )
        )
    except _LeftOut:
        pass
    except ImportError as err:
        skipped.append(f"torch: not installed ({err})")
    try:
        if "jax" in leave_out:
            raise _LeftOut
        import jax

        jax.config.update("jax_enable_x64", True)  # else float64 inputs are silently float32
        jax.config.update("jax_platforms", "cpu")
        import jax.numpy as jnp

        def j(fn: Callable[..., Any]) -> Callable[[np.ndarray], Any]:
            return _quiet(lambda x: np.asarray(fn(jnp.asarray(x))))

        libs.append(
            Library(
                "JAX",
                lse=j(jax.nn.logsumexp),
                softmax=j(jax.nn.softmax),
                log_softmax=j(jax.nn.log_softmax),
                version=f"jax {jax.__version__} (CPU, x64 enabled; `jax.nn.logsumexp`, `softmax`, `log_softmax`)",
            )
        )
    except _LeftOut:
        pass
    except ImportError as err:
        skipped.append(f"JAX: not installed ({err}); `pip install jax jaxlib` to include it")
    return libs, skipped


# ------------------------------------------------------------------------------------------
# Exact values and ulps
# ------------------------------------------------------------------------------------------
def exact_lse(x: np.ndarray) -> mpmath.mpf:
    """log Σ exp(x_i) of the float values exactly as given, at DPS digits."""
    with mpmath.workdps(DPS):
        return mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in x))


def ulp(exact: mpmath.mpf, dtype: Any) -> mpmath.mpf:
    """Spacing of ``dtype`` at |exact|: 2^(e − p + 1) with 2^e ≤ |exact| < 2^(e+1), e ≥ emin."""
    fi = np.finfo(dtype)
    p = fi.nmant + 1
    emin = fi.minexp
    if exact == 0:
        e = emin
    else:
        _, e1 = mpmath.frexp(exact)  # exact = m·2^e1 with 0.5 ≤ |m| < 1
        e = max(int(e1) - 1, emin)
    return mpmath.ldexp(mpmath.mpf(1), e - p + 1)


def ulp_error(computed: Any, exact: mpmath.mpf, dtype: Any) -> float:
    """|computed − exact| / ulp(exact) as a float; inf / nan when the result is not finite."""
    c = float(np.asarray(computed).reshape(()))
    if math.isnan(c):
        return math.nan
    if math.isinf(c):
        return math.inf
    with mpmath.workdps(DPS):
        return float(abs(mpmath.mpf(c) - exact) / ulp(exact, dtype))


def _exact_log_softmax(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x_i − LSE(x) exactly, as float64 pairs hi + lo (hi the nearest float64): enough to measure
    errors of a fraction of an ulp in float64 without mpmath per library."""
    with mpmath.workdps(DPS):
        # (x_i − m) − log1p(Σ_{j≠k} e^{x_j − m}): the dominant entry's tiny value (−1e−40 on
        # U(−700,700)) keeps all its digits, which x_i − LSE at 50 digits would not
        k = int(np.argmax(x))
        m = mpmath.mpf(float(x[k]))
        lr = mpmath.log1p(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v)) - m) for j, v in enumerate(x) if j != k))
        ex = [(mpmath.mpf(float(v)) - m) - lr for v in x]
        hi = np.array([float(e) for e in ex])
        lo = np.array([float(e - mpmath.mpf(h)) for e, h in zip(ex, hi)])
    return hi, lo


def _worst_entry(computed: Any, hi: np.ndarray, lo: np.ndarray, dtype: Any) -> float:
    """max_i |c_i − exact_i| / ulp(exact_i) in ``dtype`` (c_i − hi_i is exact: Sterbenz)."""
    c = np.asarray(computed, dtype=np.float64)
    if not np.all(np.isfinite(c)):
        return math.nan if np.any(np.isnan(c)) else math.inf
    err = np.abs((c - hi) - lo)
    spacing = np.spacing(np.abs(hi).astype(dtype)).astype(np.float64)
    return float(np.max(err / spacing))


def _dtype_ok(result: Any, dtype: Any) -> bool:
    return np.asarray(result).dtype == np.dtype(dtype)


# ------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------
def run_families(
    libs: list[Library], n: int, trials: int, seed: int
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """errors[dtype][family key][library] = per-vector ulp errors."""
    errors: dict[str, dict[str, dict[str, list[float]]]] = {}
    for dtype in DTYPES:
        dname = np.dtype(dtype).name
        errors[dname] = {}
        t0 = time.perf_counter()
        for fi, fam in enumerate(FAMILIES):
            errors[dname][fam.key] = {lib.name: [] for lib in libs if lib.lse is not None}
            count = trials if fam.random else 1
            for trial in range(count):
                rng = np.random.default_rng([seed, fi, trial])
                x = fam.make(rng, n).astype(dtype)
                exact = exact_lse(x)
                for lib in libs:
                    if lib.lse is None:
                        continue
                    r = lib.lse(x)
                    if not _dtype_ok(r, dtype):
                        raise TypeError(f"{lib.name} returned {np.asarray(r).dtype} for {dname} input")
                    errors[dname][fam.key][lib.name].append(ulp_error(r, exact, dtype))
                if dtype in (np.float64, np.float32) and trial < LOG_SOFTMAX_VECTORS:
                    ls = errors[dname].setdefault("_log_softmax", {}).setdefault(fam.key, {})
                    hi, lo = _exact_log_softmax(x)
                    for lib in libs:
                        if lib.log_softmax is not None:
                            ls.setdefault(lib.name, []).append(_worst_entry(lib.log_softmax(x), hi, lo, dtype))
            log(f"  {dname:8s} {fam.name(n):16s} {count:3d} vector(s) of {n}")
        log(f"{dname}: done in {time.perf_counter() - t0:.1f} s")
    return errors


def summarize(errs: Sequence[float]) -> tuple[float, float]:
    """(max, median) with NaN ranked above inf above every number; the median of an even count
    is the lower middle element (so that it is always one of the measured values)."""
    keyed = sorted(errs, key=lambda e: (2, 0.0) if math.isnan(e) else (1, 0.0) if math.isinf(e) else (0, e))
    return keyed[-1], keyed[(len(keyed) - 1) // 2]


def fmt_ulps(v: float) -> str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf"
    if v == 0:
        return "0"
    if v < 0.01:
        return f"{v:.0e}".replace("e-0", "e-")
    if v < 10:
        return f"{v:.2f}"
    if v < 1e4:
        return f"{v:.0f}"
    m, e = f"{v:.1e}".split("e")
    return f"{m}e{int(e)}"


# -- special values (the numerical contract) ---------------------------------------------------------
INF, NAN = math.inf, math.nan
SPECIAL_ROWS: tuple[tuple[str, list[float]], ...] = (
    ("all −inf", [-INF, -INF, -INF]),
    ("some −inf", [0.0, -INF, 1.0]),
    ("one +inf", [0.0, INF, 1.0]),
    ("two +inf", [INF, 0.0, INF]),
    ("+inf and −inf", [INF, -INF, 0.0]),
    ("NaN", [0.0, NAN, 1.0]),
    ("NaN and +inf", [NAN, INF, 0.0]),
    ("empty", []),
)
_E = math.e


def expected_special(kind: str, label: str) -> np.ndarray:
    """The contract's answer for one special-value row (float64)."""
    lse_some = math.log1p(_E)  # log(e^0 + e^1)
    table = {
        "lse": {
            "all −inf": -INF, "some −inf": lse_some, "one +inf": INF, "two +inf": INF,
            "+inf and −inf": INF, "NaN": NAN, "NaN and +inf": NAN, "empty": -INF,
        },
        "softmax": {
            "all −inf": [0, 0, 0], "some −inf": [1 / (1 + _E), 0, _E / (1 + _E)], "one +inf": [0, 1, 0],
            "two +inf": [0.5, 0, 0.5], "+inf and −inf": [1, 0, 0], "NaN": [NAN] * 3,
            "NaN and +inf": [NAN] * 3, "empty": [],
        },
        "log_softmax": {
            "all −inf": [-INF] * 3, "some −inf": [-lse_some, -INF, 1 - lse_some], "one +inf": [-INF, 0, -INF],
            "two +inf": [-math.log(2), -INF, -math.log(2)], "+inf and −inf": [0, -INF, -INF],
            "NaN": [NAN] * 3, "NaN and +inf": [NAN] * 3, "empty": [],
        },
    }
    return np.asarray(table[kind][label], dtype=np.float64)


def _matches(got: np.ndarray, want: np.ndarray) -> bool:
    if got.shape != want.shape:
        return False
    same_special = (np.isnan(got) == np.isnan(want)) & (np.isinf(got) == np.isinf(want))
    if not same_special.all():
        return False
    inf = np.isinf(want)
    if (got[inf] != want[inf]).any():
        return False
    fin = np.isfinite(want)
    return bool(np.allclose(got[fin], want[fin], rtol=4 * np.finfo(np.float64).eps, atol=0.0))


def _short(v: np.ndarray) -> str:
    def one(f: float) -> str:
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "−inf"
        if f == 0:
            return "0"
        return f"{f:.3g}".replace("-", "−")

    if v.ndim == 0:
        return one(float(v))
    return "[" + ", ".join(one(float(f)) for f in v.ravel()) + "]"


def run_special(libs: list[Library]) -> dict[str, dict[str, dict[str, tuple[str, bool]]]]:
    """special[kind][row][library] = (shown output, matches the contract)."""
    out: dict[str, dict[str, dict[str, tuple[str, bool]]]] = {}
    for kind in ("lse", "softmax", "log_softmax"):
        out[kind] = {}
        for label, values in SPECIAL_ROWS:
            x = np.asarray(values, dtype=np.float64)
            want = expected_special(kind, label)
            row: dict[str, tuple[str, bool]] = {}
            for lib in libs:
                fn = getattr(lib, kind)
                if fn is None:
                    continue
                try:
                    with np.errstate(all="ignore"), warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        got = np.asarray(fn(x.copy()), dtype=np.float64)
                except Exception as err:  # a peer raising is a result too  # noqa: BLE001
                    row[lib.name] = (f"raises {type(err).__name__}", False)
                    continue
                row[lib.name] = (_short(got), _matches(got, want))
            out[kind][label] = row
    return out


# -- pinned dominant-term cases --------------------------------------------------------------
@dataclass
class Pinned:
    case: str
    dtype: str
    exact: str
    library: str
    computed: str
    ulps: float
    ours: bool


def run_pinned(libs: list[Library], n: int = 1000) -> list[Pinned]:
    rows: list[Pinned] = []
    for dtype in (np.float64, np.float32):
        dname = np.dtype(dtype).name
        x = np.concatenate([[0.0], np.full(n - 1, -40.0)]).astype(dtype)
        with mpmath.workdps(DPS):
            exact = -exact_lse(x)  # log_softmax at the dominant entry (x_0 = 0)
        for lib in libs:
            if lib.log_softmax is None:
                continue
            got = np.asarray(lib.log_softmax(x))[0]
            rows.append(
                Pinned(f"log_softmax([0, −40×{n - 1}])[0]", dname, f"{float(exact):.10g}", lib.name,
                       f"{float(got):.10g}", ulp_error(got, exact, dtype), lib.ours)
            )
    for dtype in (np.float32, np.float64):
        dname = np.dtype(dtype).name
        z = np.array([[20.0, 0.0, 0.0]], dtype=dtype)
        y = np.array([0], dtype=np.int64)
        with mpmath.workdps(DPS):
            exact = exact_lse(z[0]) - mpmath.mpf(20)
        for lib in libs:
            if lib.cross_entropy is None:
                continue
            got = lib.cross_entropy(z, y)
            if not _dtype_ok(got, dtype):
                raise TypeError(f"{lib.name} cross_entropy returned {np.asarray(got).dtype} for {dname}")
            rows.append(
                Pinned("cross_entropy([[20, 0, 0]], target 0)", dname, f"{float(exact):.10g}", lib.name,
                       f"{float(np.asarray(got)):.10g}", ulp_error(got, exact, dtype), lib.ours)
            )
    return rows


# ------------------------------------------------------------------------------------------
# Environment
# ------------------------------------------------------------------------------------------
def cpu_model() -> str:
    model, flags = "unknown CPU", ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    fl = set(line.split(":", 1)[1].split())
                    flags = "AVX-512" if "avx512f" in fl else "AVX2" if "avx2" in fl else ""
    except OSError:
        model = platform.processor() or platform.machine()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 0
    extra = ", ".join(s for s in (flags, f"{cores} cores available") if s)
    return f"{model} ({extra})"


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "--no-optional-locks", *args], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src")
        return commit + (" (with uncommitted changes in src/)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------
INTRO = """\
# Accuracy

How close `logsumexp.logsumexp` is to the exact LogSumExp, next to the implementations users would
otherwise reach for. Every number here is written by `benchmarks/accuracy.py`
(`python benchmarks/accuracy.py`; `--quick` for a smoke run): do not edit this file by hand.

**Method.** For each input family and dtype, fixed-seed vectors are drawn in float64 and cast to the
dtype; the exact LogSumExp of the vector *as given in that dtype* is computed once with mpmath at
50 digits and reused for every library. The error of a result is `|computed − exact| / ulp(exact)`,
where ulp is the spacing of the dtype at |exact| (subnormal spacing below the normal range), so
0.5 ulp is a correctly rounded result. A cell reads `max / median` over the vectors of the family;
`inf` / `nan` mean that the library returned ±inf / NaN for a finite exact value. "ours (fast)" is
the default call (compiled CPU kernels for float32/float64), "ours (core)" the pure array core
(`with logsumexp._cpu.disabled():`); float16 takes the core path in both.

**How ours gets there (float64).** The compiled C kernels (every instruction-set target gives
the same bits: the "ours (avx2)" / "ours (baseline)" columns are the same numbers by
construction, and tests/test_cpu_bits.py checks it byte for byte) sum the terms other than the
maximal ones in 16 fixed lanes: each exp as a power of two plus a correction (so `1 + y` is never
rounded per term), the rounding of `x_i − max` put back into its term, each term added with
TwoSum, the entries equal to the maximum counted apart. The finish is the kernels' own
double-double: `log1p` of the double-double tail (`2·atanh` series) and the maximum added exactly,
so that only the exps round before the single last rounding; no libm anywhere. A result that
cancels against its maximum (|LSE| < |max|/2 with max < 0, the near-zero families below) is
recomputed for that slice only with every exp carried to ~2^-95 in double-double and `log1p`
refined by a Newton step: paid only by those slices. Weighted calls recompute their cancelling
slices the same way (|LSE| < |max|/2 of either sign, or signed weights whose sum falls below half
the leading weight), weights multiplied in exactly. What cannot be recomputed: `LSEState` and Dask,
whose data are gone when the value is taken, keep an absolute error of about one rounding of the
maximum on a near-zero result. log_softmax is `(x_i − max) − log1p(tail)` with the difference
exact and the double-double `log1p`, rounded once per entry; softmax takes each exp again as a
double-double and divides it once by the double-double sum. The generic array core ("ours
(core)": other namespaces, long double, or no extension built) keeps the plain state in working
precision with the double-double finish for NumPy float64; it has no exact recompute, so its
near-zero results carry about one rounding of the maximum.

**float32.** The kernels keep a float64 exp for float32 data (relative error 1.05e-13) and float64
lane sums, with the maximum's entries counted apart: float32 results are correctly rounded on
every family (at most 0.51 ulp).
"""


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def check_targets(
    errors: dict[str, dict[str, dict[str, list[float]]]], pinned: list[Pinned], libs: list[Library], n: int
) -> tuple[list[str], bool]:
    """One line per target and per path of ours, saying plainly whether it holds."""
    lines: list[str] = []
    ok_all = True
    ours = [lib.name for lib in libs if lib.ours]
    for dname, target in TARGETS.items():
        if dname not in errors:
            continue
        for name in ours:
            for group, fams, tgt in (
                ("every ordinary family", [f for f in FAMILIES if not f.key.startswith("near0")], target),
                ("the near-zero families", [f for f in FAMILIES if f.key.startswith("near0")],
                 NEAR_ZERO_TARGET if dname == "float64" else target),
            ):
                worst, worst_fam = -1.0, ""
                for fam in fams:
                    if name not in errors[dname][fam.key]:
                        continue
                    mx, _ = summarize(errors[dname][fam.key][name])
                    key = math.inf if math.isnan(mx) else mx
                    if key > worst:
                        worst, worst_fam = key, fam.name(n)
                if worst < 0:
                    continue
                ok = worst <= tgt
                ok_all &= ok
                verdict = "**holds**" if ok else "**FAILS**"
                lines.append(
                    f"- {dname}, {name}: LSE max error ≤ {tgt} ulp on {group} — {verdict} "
                    f"(worst: {fmt_ulps(worst)} ulp on {worst_fam})."
                )
    for name in ours:
        ls = errors.get("float64", {}).get("_log_softmax", {})
        per = [summarize(ls[fam.key][name])[0] for fam in FAMILIES if name in ls.get(fam.key, {})]
        if per:
            worst = max(math.inf if math.isnan(v) else v for v in per)
            ok = worst <= LOG_SOFTMAX_TARGET
            ok_all &= ok
            verdict = "**holds**" if ok else "**FAILS**"
            lines.append(
                f"- float64, {name}: log_softmax ≤ {LOG_SOFTMAX_TARGET:g} ulp per entry on every family — {verdict} "
                f"(worst: {fmt_ulps(worst)} ulp)."
            )
    for name in ours:
        rows = [p for p in pinned if p.library == name]
        if not rows:
            continue
        worst = max(rows, key=lambda p: math.inf if math.isnan(p.ulps) else p.ulps)
        ok = all(p.ulps <= PINNED_TARGET for p in rows)
        ok_all &= ok
        verdict = "**holds**" if ok else "**FAILS**"
        lines.append(
            f"- pinned cases, {name}: ≤ {PINNED_TARGET:g} ulp — {verdict} "
            f"(worst: {fmt_ulps(worst.ulps)} ulp, {worst.case} in {worst.dtype})."
        )
    return lines, ok_all



def write_markdown(
    path: Path,
    *,
    errors: dict[str, dict[str, dict[str, list[float]]]],
    special: dict[str, dict[str, dict[str, tuple[str, bool]]]],
    pinned: list[Pinned],
    libs: list[Library],
    skipped: list[str],
    n: int,
    trials: int,
    seed: int,
    runtime_s: float,
    quick: bool,
    plot_name: str | None,
) -> list[str]:
    names = [lib.name for lib in libs]
    target_lines, _ = check_targets(errors, pinned, libs, n)
    out: list[str] = [INTRO]
    if quick:
        out += ["> **Quick run** (`--quick`): tiny sizes, for smoke-testing the script only.", ""]
    out += ["## Run", ""]
    out += [
        f"- Date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Commit: `{git_commit()}`",
        f"- Machine: {cpu_model()}, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, mpmath {mpmath.__version__} at {DPS} digits "
        f"(backend: {mpmath.libmp.BACKEND})",
        f"- Sizes: n = {n} per vector; {trials} vectors per random family, the deterministic family once; "
        f"seed {seed}; run time {runtime_s:.0f} s",
    ]
    out += [f"- {lib.name}: {lib.version}" for lib in libs]
    out += [f"- Skipped — {s}" for s in skipped]
    out += ["", "## Targets for ours (issues 2, 12 and 14)", ""] + target_lines + [""]

    out += ["## LogSumExp error in ulps (max / median)", ""]
    for dname in errors:
        out += [f"### {dname}", ""]
        rows = []
        for fam in FAMILIES:
            if fam.key not in errors[dname]:
                continue
            cells = [fam.name(n)]
            for name in names:
                errs = errors[dname][fam.key].get(name)
                if errs is None:
                    cells.append("—")
                    continue
                mx, med = summarize(errs)
                cells.append(fmt_ulps(mx) if len(errs) == 1 else f"{fmt_ulps(mx)} / {fmt_ulps(med)}")
            rows.append(cells)
        out += _md_table(["family", *names], rows) + [""]
        if dname == "float16":
            out += [
                "In float16 the LSE of the two strongly dominant families (about 1e−15 and 1e−13) is below half "
                "the smallest subnormal (3e−8): the correctly rounded result is 0, which every library returns.",
                "",
            ]
    if plot_name:
        out += [f"![LogSumExp error per family and library]({plot_name})", ""]

    out += [
        "## log_softmax: worst entry per vector, in ulps (max / median)",
        "",
        f"The first {LOG_SOFTMAX_VECTORS} vectors of each family; for each vector the largest error over its "
        "entries, `|computed_i − (x_i − LSE)| / ulp(x_i − LSE)`, the exact value again from mpmath.",
        "",
    ]
    for dname in errors:
        ls = errors[dname].get("_log_softmax")
        if not ls:
            continue
        cols = [name for name in names if any(name in v for v in ls.values())]
        rows = []
        for fam in FAMILIES:
            cells = [fam.name(n)]
            for name in cols:
                errs = ls.get(fam.key, {}).get(name)
                if not errs:
                    cells.append("—")
                    continue
                mx, med = summarize(errs)
                cells.append(fmt_ulps(mx) if len(errs) == 1 else f"{fmt_ulps(mx)} / {fmt_ulps(med)}")
            rows.append(cells)
        out += [f"### {dname}", ""] + _md_table(["family", *cols], rows) + [""]

    out += [
        "## Pinned dominant-term cases (target for ours: ≤ 2 ulp)",
        "",
        "The dominant-term trick (Blanchard, Higham & Higham): a confident prediction keeps its relative accuracy, where "
        "`x_j − LSE` computed with the plain shift loses it (0 in float32; at most two correct digits in float64).",
        "",
    ]
    out += _md_table(
        ["case", "dtype", "exact", "library", "computed", "error (ulp)"],
        [[p.case, p.dtype, p.exact, p.library, p.computed, fmt_ulps(p.ulps)] for p in pinned],
    ) + [""]

    out += [
        "## Special values (the numerical contract in the README), float64",
        "",
        "Each cell is the library's output; ✓ matches the contract, ✗ does not. Inputs: all −inf "
        "`[−inf, −inf, −inf]`; some −inf `[0, −inf, 1]`; one +inf `[0, inf, 1]`; two +inf `[inf, 0, inf]`; "
        "+inf and −inf `[inf, −inf, 0]`; NaN `[0, nan, 1]`; NaN and +inf `[nan, inf, 0]`; empty `[]`. "
        "The contract: −inf terms vanish; all −inf or empty → LSE −inf, softmax 0, log_softmax −inf "
        "(never NaN); k entries +inf → LSE +inf, softmax 1/k there and 0 elsewhere; any NaN → NaN.",
        "",
    ]
    titles = {"lse": "LogSumExp", "softmax": "softmax", "log_softmax": "log_softmax"}
    for kind, rows_by_label in special.items():
        cols = [name for name in names if any(name in r for r in rows_by_label.values())]
        rows = []
        for label, row in rows_by_label.items():
            cells = [label]
            for name in cols:
                shown, ok = row.get(name, ("—", True))
                cells.append(f"{shown} {'✓' if ok else '✗'}")
            rows.append(cells)
        score = [f"{name} {sum(r[name][1] for r in rows_by_label.values())}/{len(rows_by_label)}" for name in cols]
        out += [f"### {titles[kind]}", ""] + _md_table(["input", *cols], rows)
        out += ["", "Correct: " + ", ".join(score) + ".", ""]
    path.write_text("\n".join(out).rstrip() + "\n", encoding="utf-8")
    return target_lines


def plot(
    path: Path, errors: dict[str, dict[str, dict[str, list[float]]]], libs: list[Library], n: int, title: str
) -> None:
    """One row per dtype: left, every library on a log scale (inf / NaN hatched at the top);
    right, the same bars on a linear 0-3 ulp scale, where the targets are decided."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    names = [lib.name for lib in libs if lib.lse is not None]
    colors = dict(zip(names, plt.get_cmap("tab10").colors))
    floor, ceiling = 1e-2, 1e19  # log panel: smaller errors drawn at the floor, inf / NaN at the ceiling
    zoom = 3.0  # linear panel: larger errors drawn at the top with a marker
    dnames = list(errors)
    fig, axes = plt.subplots(len(dnames), 2, figsize=(18, 4.8 * len(dnames)), squeeze=False, layout="constrained")
    width = 0.84 / len(names)
    labels = [f.name(n) for f in FAMILIES]
    for row, dname in enumerate(dnames):
        ax_log, ax_lin = axes[row]
        for i, name in enumerate(names):
            xs = np.arange(len(FAMILIES)) - 0.42 + width * (i + 0.5)
            stats = [summarize(errors[dname][fam.key][name]) for fam in FAMILIES]
            mx = np.array([s[0] for s in stats])
            med = np.array([s[1] for s in stats])
            bad = ~np.isfinite(mx)
            big = bad | (mx > zoom)
            top_log = np.where(bad, ceiling, np.clip(np.nan_to_num(mx), floor, ceiling))
            top_lin = np.where(big, zoom, np.nan_to_num(mx))
            for ax, bars in ((ax_log, ax_log.bar(xs, top_log - floor, bottom=floor, width=width, color=colors[name])),
                             (ax_lin, ax_lin.bar(xs, top_lin, width=width, color=colors[name]))):
                for patch, b in zip(bars, bad):
                    if b:  # inf / NaN: hatched, outlined
                        patch.set_hatch("///")
                        patch.set_edgecolor("black")
                        patch.set_linewidth(0.4)
            med_log = np.where(np.isfinite(med), np.clip(np.nan_to_num(med), floor, ceiling), ceiling)
            ax_log.plot(xs, med_log, "k.", ms=4, linestyle="")
            ok = ~big & np.isfinite(med)
            ax_lin.plot(xs[ok], med[ok], "k.", ms=4, linestyle="")
            if big.any():  # an empty unclipped line would stretch the layout to the origin
                ax_lin.plot(xs[big], np.full(int(big.sum()), zoom), "k^", ms=3.5, linestyle="", clip_on=False)
        target = TARGETS[dname]
        for ax in (ax_log, ax_lin):
            ax.axhline(target, color="crimson", linestyle="--", linewidth=1.1)
            ax.set_xticks(range(len(FAMILIES)))
            ax.set_xticklabels(labels, fontsize=8.5, rotation=15)
            ax.set_xlim(-0.5, len(FAMILIES) - 0.5)
            ax.grid(axis="y", linewidth=0.3, alpha=0.6)
        ax_log.set_yscale("log")
        ax_log.set_ylim(floor, ceiling * 10)
        ticks = [floor, 0.1, 1, 10, 1e3, 1e6, 1e9, 1e12, 1e15, ceiling]
        ax_log.set_yticks(ticks)
        ax_log.set_yticklabels(["≤0.01", "0.1", "1", "10", "1e3", "1e6", "1e9", "1e12", "1e15", "inf/NaN"])
        ax_log.minorticks_off()
        ax_log.set_ylabel(f"{dname}: error (ulp), log scale")
        ax_lin.set_ylim(0, zoom * 1.04)
        ax_lin.set_yticks([0, 0.5, 1, 1.5, 2, 2.5, 3])
        ax_lin.set_yticklabels(["0", "0.5", "1", "1.5", "2", "2.5", "≥3"])
        ax_lin.set_ylabel(f"{dname}: error (ulp), 0-3 zoom")
    handles: list[Any] = [Patch(color=colors[nm], label=nm) for nm in names]
    handles += [
        Patch(facecolor="white", edgecolor="black", hatch="///", label="inf / NaN result"),
        Line2D([], [], marker=".", color="black", linestyle="", markersize=6, label="median"),
        Line2D([], [], marker="^", color="black", linestyle="", markersize=4, label="off the zoom scale"),
        Line2D([], [], color="crimson", linestyle="--", label="target for ours (1.5 / 0.51 / 0.51 ulp)"),
    ]
    fig.suptitle(title, fontsize=12)
    fig.legend(handles=handles, loc="outside lower center", ncol=6, fontsize=9.5, frameon=False)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny run: n = 64, 3 vectors per family")
    p.add_argument("--out", type=Path, default=REPO / "docs", help="directory for ACCURACY.md and accuracy.png")
    p.add_argument("-n", type=int, default=None, help="vector length (default 1000; --quick 64)")
    p.add_argument("--trials", type=int, default=None, help="vectors per random family (default 200; --quick 3)")
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--skip", action="append", default=[], metavar="LIB",
                   help="leave a peer out (SciPy, torch, JAX; repeatable), e.g. to keep a smoke test fast")
    args = p.parse_args(argv)
    n = args.n or (64 if args.quick else 1000)
    trials = args.trials or (3 if args.quick else 200)
    if n < 2 or trials < 1:
        p.error("need n ≥ 2 and trials ≥ 1")
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    libs, skipped = libraries(args.skip)
    for s in skipped:
        log(f"skipping {s}")
    log(f"libraries: {', '.join(lib.name for lib in libs)}; n = {n}, {trials} vectors per family")
    errors = run_families(libs, n, trials, args.seed)
    log("special values and pinned cases")
    special = run_special(libs)
    pinned = run_pinned(libs)
    runtime = time.perf_counter() - t0

    plot_name = None
    if not args.no_plot:
        plot_name = "accuracy.png"
        title = (f"LogSumExp error against mpmath (50 digits), n = {n}: bars = max over {trials} vectors per family "
                 f"(one for the deterministic one), dots = median; commit {git_commit()}")
        plot(args.out / plot_name, errors, libs, n, title)
        log(f"wrote {args.out / plot_name}")
    md = args.out / "ACCURACY.md"
    target_lines = write_markdown(
        md, errors=errors, special=special, pinned=pinned, libs=libs, skipped=skipped,
        n=n, trials=trials, seed=args.seed, runtime_s=runtime, quick=args.quick, plot_name=plot_name,
    )
    log(f"wrote {md} ({time.perf_counter() - t0:.0f} s in all)")
    for line in target_lines:
        log(line.replace("**", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
