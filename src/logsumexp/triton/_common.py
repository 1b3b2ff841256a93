"""Pieces shared by every kernel family: the (max, sum) monoid in Triton and the launch configurations.

The online LogSumExp state of one row is a pair ``(m, acc)``:

* ``m``   – the running maximum of the entries seen so far (``-inf`` for none);
* ``acc`` – either ``s = Σ exp(x_i − m)`` (the *sum form*, ``EXCLUDE_MAX=False``), or
  ``r = s − 1 = Σ_{i ≠ argmax} exp(x_i − m)`` (the *rest form*, ``EXCLUDE_MAX=True``) where exactly one
  instance of the maximum is left out of the sum.  The rest form gives ``LSE = m + log1p(r)``, which keeps
  the relative accuracy of a confident prediction (Blanchard, Higham & Higham 2021): with ``r < 2⁻²⁴`` the
  sum form rounds ``1 + r`` to 1 and loses ``r`` entirely.

Two states merge as ``M = max(m1, m2)``, ``s = s1·e^{m1−M} + s2·e^{m2−M}``; the factor ``e^{m−M}`` is taken
as exactly 1 when ``m == M`` (this guards ``−inf − (−inf)`` for an all ``−inf`` prefix and ``+inf − (+inf)``
when several entries are ``+inf``, which then share the mass equally).  The identity is ``(−inf, 0)`` in the
sum form and ``(−inf, −1)`` in the rest form.

Each block of a row is reduced with its *own* maximum first and then one ``exp`` per element: on Hopper the
exponential unit, not memory, limits a row reduction that spends two ``exp`` per element (a per-lane running
max), measured at 62 % of the copy rate on an H200 against 99 % for a probe of this form.

Everything is computed in float32 for float16/bfloat16/float32 rows and in float64 for float64 rows (the
``ACC`` constexpr of each kernel, chosen by its launcher from the input dtype).  Nothing here validates
arguments: the kernels take rows and options that ``logsumexp.torch`` has already checked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from typing import Any

import torch
import triton
import triton.language as tl

__all__ = ["LaunchConfig", "config", "interpreting", "n_programs", "set_override"]


def interpreting() -> bool:
    """True when Triton runs kernels through its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@dataclass(frozen=True)
class LaunchConfig:
    """How one kernel family is launched.

    block:           entries of a row handled per loop step (a power of two).
    num_warps:       warps per program.
    programs_per_sm: 0 for one program per row; k > 0 for a persistent grid of k programs per multiprocessor,
                     each walking rows ``pid, pid + grid, ...`` (so that a row read twice is still in L2).
    num_stages:      for the row LSE's loop, how many blocks' loads Triton may issue ahead (``tl.range``); None,
                     the measured configuration, leaves it to Triton.  Swept by benchmarks/gpu.py.
    """

    block: int
    num_warps: int
    programs_per_sm: int = 0
    num_stages: int | None = None  # row LSE only: software-pipelining depth of its loop (None: Triton's choice)


# Defaults, each from the H200 run of 2026-11-30 ([8192, 128256] bf16 rows; 132 SMs, 60 MB L2; sweep medians):
#
# * row LSE: 8192 entries, 4 warps: 0.562 ms, the best of the 12-point sweep (16 warps, the old default: 0.692 ms;
#   2048/4096/16384 entries: 0.634/0.573/0.641 ms at 4 warps).  The row is read once, so one program per row.
# * softmax: a row of 256 KB is read twice.  With one program per row (every row in flight at once) the second
#   read comes from HBM, which is why the sweep's best (16384 entries, 8 warps: 1.461 ms; 16 warps: 1.469 ms)
#   sits at the three-pass bound (1.48 ms).  One persistent program per SM keeps 132 rows × 256 KB = 33 MB in
#   flight, inside the 60 MB L2, so the second read should hit L2.  A lone program must keep its SM's loads in
#   flight by itself, hence the widest configuration the sweep ranked within 1 % of its best: 16384 × 16 warps.
#   NOT yet measured in the persistent form.
# * cross-entropy: the in-place sweep (which still paid a hidden copy of the logits) ranked 4096 × 4 warps
#   (2.891 ms) and 8192 × 8 warps (2.915 ms) first; the persistent form takes 8192 × 8 warps (two 16-byte
#   bf16 vectors per thread per step) for the same L2 reason.  NOT yet measured in the persistent form.
# * elementwise backward / scaling kernels (one read, one write; not in the sweep): 4096 entries, 4 warps,
#   the LSE sweep's second-best block at its best warp count.
_DEFAULTS = {
    "lse": LaunchConfig(8192, 4),
    "softmax": LaunchConfig(16384, 16, programs_per_sm=1),
    "ce": LaunchConfig(8192, 8, programs_per_sm=1),
    "elementwise": LaunchConfig(4096, 4),
}
# The interpreter pays per element-op: a small block keeps masked tails cheap, and 4 "programs per SM" on
# the single interpreted "SM" make the persistent kernels walk several rows each (as they do on a GPU).
_INTERPRETED = {
    "lse": LaunchConfig(1024, 4),
    "softmax": LaunchConfig(1024, 4, programs_per_sm=4),
    "ce": LaunchConfig(1024, 4, programs_per_sm=4),
    "elementwise": LaunchConfig(1024, 4),
}

# Set by benchmarks/gpu.py's sweep; empty in normal use.
_override: dict[str, LaunchConfig] = {}


def set_override(family: str, cfg: LaunchConfig | None) -> None:
    """Force one family's launch configuration (the benchmark's sweep); ``None`` restores the default."""
    if cfg is None:
        _override.pop(family, None)
    else:
        _override[family] = cfg


def config(family: str, n_cols: int) -> LaunchConfig:
    """The launch configuration of ``family`` ("lse", "softmax", "ce", "elementwise") for rows of ``n_cols``.

    The block never exceeds the row rounded up to a power of two (a short row wastes no masked lanes).
    """
    cfg = _override.get(family) or (_INTERPRETED if interpreting() else _DEFAULTS)[family]
    block = min(cfg.block, triton.next_power_of_2(max(int(n_cols), 1)))
    return LaunchConfig(block, cfg.num_warps, cfg.programs_per_sm, cfg.num_stages)


_SM_COUNT: dict[int, int] = {}


def n_programs(device: torch.device, rows: int, cfg: LaunchConfig) -> int:
    """Grid size: one program per row, or ``programs_per_sm`` per multiprocessor (never more than rows)."""
    if cfg.programs_per_sm <= 0:
        return rows
    if device.type != "cuda":
        return max(1, min(rows, cfg.programs_per_sm))  # the interpreter: one "multiprocessor"
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:  # read once per device: the property query is not free
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return max(1, min(rows, cfg.programs_per_sm * _SM_COUNT[index]))


# ---------------------------------------------------------------------------------------------------------
# Triton helpers: one block's statistics and the merge of two states (written once, used by every kernel).
# ---------------------------------------------------------------------------------------------------------


@triton.jit
def as_int64(i):
    """``i`` (an int32 loop index, or a Python int in the interpreter) as an int64 scalar: offsets may pass 2³¹."""
    return tl.full((), 0, tl.int64) + i


_LOG2E = tl.constexpr(1.4426950408889634)  # rounded to float32 inside the kernels
_LOG2E_LO = tl.constexpr(1.92596298909109e-08)  # log2(e) − float32(log2(e)): what the float32 constant drops
_LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def exp_accurate(d):
    """e^d to about 1 ulp with one ``ex2`` (the same exponential-unit cost as ``tl.exp``).

    ``tl.exp`` compiles to ``ex2.approx(d·log2 e)``: the rounded product carries an absolute error of up to
    |d|·2⁻²⁴ in the exponent, a relative error of ~1e−6 in e^d at d ≈ −20 — the size of the loss of a
    confident prediction that the rest form is there to keep.  The exact residual of the product,
    ``fma(d, log2e, −y)`` plus the low part of log2(e), is put back with a first-order term (it is < 2⁻²⁰, so the
    second-order term is below float32 rounding).  A few extra FMAs, no extra ``ex2``.
    """
    if d.dtype == tl.float64:  # float64 rows: the library exponential is already accurate
        return tl.exp(d)
    d = tl.where(d < -200.0, -200.0, d)  # −inf → e^{−200} = 0 in float32 without an inf − inf; NaN stays NaN
    y = d * _LOG2E
    err = tl.fma(d, _LOG2E, -y) + d * _LOG2E_LO
    return tl.exp2(y) * (1.0 + err * _LN2)


@triton.jit
def lse_block_stats(x, EXCLUDE_MAX: tl.constexpr):
    """(m_b, acc_b) of one block ``x`` (accumulation dtype, masked lanes already −inf): block max first, one exp per entry.

    x:           float32 (float64) block of a row; lanes past the row end must hold −inf (they then add 0).
    EXCLUDE_MAX: False → acc_b = Σ e^{x−m_b} (sum form); True → acc_b = that sum minus one instance of the max.
    An entry equal to m_b contributes exactly 1 (so ``+inf`` entries count 1 each, never inf − inf = NaN);
    a NaN entry fails every comparison and turns the sum into NaN.
    """
    m_b = tl.max(x, axis=0)
    is_max = x == m_b
    if EXCLUDE_MAX:  # the rest form is used where small terms must keep their relative accuracy
        e = exp_accurate(x - m_b)
    else:
        e = tl.exp(x - m_b)
    if EXCLUDE_MAX:
        # leave every tie out, then add back all but one of them (ties are exact, so each is worth 1)
        acc_b = tl.sum(tl.where(is_max, 0.0, e), axis=0) + (tl.sum(is_max.to(x.dtype), axis=0) - 1.0)
    else:
        acc_b = tl.sum(tl.where(is_max, 1.0, e), axis=0)
    return m_b, acc_b


@triton.jit
def lse_merge(m1, a1, m2, a2, EXCLUDE_MAX: tl.constexpr):
    """Merge two (max, acc) states: M = max(m1, m2), s = s1·e^{m1−M} + s2·e^{m2−M}, e^{0} taken exactly.

    m1, a1: running state (identity: (−inf, 0) sum form, (−inf, −1) rest form).
    m2, a2: the new block's state.
    EXCLUDE_MAX: which form ``a1``/``a2`` are in (see the module docstring).
    """
    m = tl.maximum(m1, m2)
    if EXCLUDE_MAX:
        f1 = tl.where(m1 == m, 1.0, exp_accurate(m1 - m))  # guards −inf−(−inf) and +inf−(+inf)
        f2 = tl.where(m2 == m, 1.0, exp_accurate(m2 - m))
    else:
        f1 = tl.where(m1 == m, 1.0, tl.exp(m1 - m))
        f2 = tl.where(m2 == m, 1.0, tl.exp(m2 - m))
    if EXCLUDE_MAX:
        # the excluded maximum of the larger side stays excluded; the other side's "1" comes back in
        a = tl.where(m1 >= m2, a1 + (1.0 + a2) * f2, a2 + (1.0 + a1) * f1)
    else:
        a = a1 * f1 + a2 * f2
    return m, a


@triton.jit
def lse_from_state(m, a, EXCLUDE_MAX: tl.constexpr):
    """LSE = m + log(s) (sum form) or m + log1p(r) (rest form); an all −inf row gives −inf, never NaN."""
    if EXCLUDE_MAX:
        # log1p(r) without a log1p intrinsic: u = 1 + r; log(u)·r/(u − 1) corrects the rounding of u
        # (Goldberg's trick, exact to a few ulp); for u == 1 (r below half an ulp of 1) log1p(r) ≈ r.
        u = 1.0 + a
        lg = tl.where(u == 1.0, a, tl.log(u) * (a / (u - 1.0)))
    else:
        lg = tl.log(a)
    return tl.where(m == float("-inf"), float("-inf"), m + lg)


@triton.jit
def softmax_entries(x, m, a, EXCLUDE_MAX: tl.constexpr):
    """Softmax entries e^{x−m}/s of a block given the row's final state; 0 everywhere for an all −inf row.

    x: fp32 block (masked lanes −inf give 0); m, a: the row's final state.  Entries equal to m count 1
    (the k entries at +inf each get 1/k); the division is done once per row (a reciprocal).
    """
    s = a + 1.0 if EXCLUDE_MAX else a
    inv = tl.where(m == float("-inf"), 0.0, 1.0 / s)
    return tl.where(x == m, 1.0, tl.exp(x - m)) * inv


def acc_dtype(x: torch.Tensor) -> tuple[torch.dtype, Any]:
    """(torch, triton) accumulation dtypes of rows ``x``: float64 for float64, float32 otherwise."""
    if x.dtype == torch.float64:
        return torch.float64, tl.float64
    return torch.float32, tl.float32
