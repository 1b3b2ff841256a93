"""Pieces shared by every kernel family: the (max, sum) monoid in Triton, argument checks, launch helpers.

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
max), measured at 62 % of the copy rate on an H200 against 99 % for this form (issue 5).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

__all__ = ["FLOAT_DTYPES", "check_float_tensor", "check_launchable", "row_block", "as_rows"]

#: Input dtypes the kernels accept; all accumulate in float32.
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# Provisional block sizes (elements of a row handled per loop step). NOT yet measured on a GPU: the issue's
# probes suggest 4096–8192 elements with 8–16 warps for 128k-wide bf16 rows; benchmarks/gpu.py sweeps them.
_MAX_BLOCK = 8192
_INTERPRET_MAX_BLOCK = 1024  # the interpreter pays per element-op, a smaller block keeps masked tails cheap


def interpreting() -> bool:
    """True when Triton runs kernels through its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def check_float_tensor(name: str, x: object) -> torch.Tensor:
    """Check that ``x`` is a float32/float16/bfloat16 tensor; raise TypeError naming ``name`` otherwise."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, float16 or bfloat16, got {x.dtype}")
    return x


def check_launchable(*tensors: torch.Tensor) -> None:
    """Raise unless every tensor is on one CUDA device, or on the CPU with ``TRITON_INTERPRET=1``.

    Triton decides at import time whether ``@triton.jit`` compiles or interprets, so the variable must be
    set before ``logsumexp.triton`` is first imported.
    """
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(str(d) for d in devices)}")
    (device,) = devices
    if device.type == "cuda":
        return
    if device.type == "cpu":
        if interpreting() and _kernels_interpreted():
            return
        raise RuntimeError(
            "logsumexp.triton kernels need CUDA tensors; CPU tensors run only through Triton's interpreter, "
            "with TRITON_INTERPRET=1 set in the environment before logsumexp.triton is imported "
            "(use logsumexp.torch for CPU tensors)"
        )
    raise RuntimeError(f"logsumexp.triton kernels need CUDA tensors, got a tensor on {device}")


def _kernels_interpreted() -> bool:
    # A kernel decorated while TRITON_INTERPRET was unset is a compiled JITFunction and cannot take CPU tensors.
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(lse_block_stats, InterpretedFunction)


# (BLOCK cap, num_warps) forced by benchmarks/gpu.py's block-size sweep; None in normal use.
_override: tuple[int, int] | None = None


def set_block_override(block: int | None, num_warps: int | None = None) -> None:
    """Force the row kernels' BLOCK cap and warps (for the benchmark's sweep); ``None`` restores the default."""
    global _override
    _override = None if block is None else (int(block), int(num_warps or 8))


def row_block(n_cols: int, itemsize: int = 2) -> tuple[int, int]:
    """(BLOCK, num_warps) for rows of ``n_cols`` entries: provisional, to be tuned on a GPU.

    BLOCK is the next power of two of the row length, capped at 8192 (1024 in the interpreter); the warps
    grow with the block so that each thread holds 16-byte vectors (8 bf16 or 4 fp32 entries).
    """
    if _override is not None:
        return min(_override[0], triton.next_power_of_2(max(int(n_cols), 1))), _override[1]
    cap = _INTERPRET_MAX_BLOCK if interpreting() else _MAX_BLOCK
    block = min(cap, triton.next_power_of_2(max(int(n_cols), 1)))
    per_thread = max(16 // itemsize, 1)
    num_warps = max(1, min(16, block // (32 * per_thread * 2)))  # powers of two, so this one is too
    return block, num_warps


def as_rows(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Move ``dim`` last and flatten the rest: returns a 2-D view/copy with unit class stride and the moved shape."""
    xm = x.movedim(dim, -1) if dim not in (-1, x.ndim - 1) else x
    shape = tuple(xm.shape)
    n_cols = shape[-1] if shape else 1
    n_rows = 1
    for d in shape[:-1]:
        n_rows *= d
    x2 = xm.reshape(n_rows, n_cols)
    if x2.stride(-1) != 1 or (x2.shape[0] > 1 and x2.stride(0) < n_cols):
        x2 = x2.contiguous()
    return x2, shape


def normalize_dim(name: str, dim: object, ndim: int) -> int:
    """Check an int dimension for a tensor of ``ndim`` dims and return it non-negative (IndexError if out of range)."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{name} must be an int, got {type(dim).__name__}")
    nd = max(ndim, 1)
    if not -nd <= dim < nd:
        raise IndexError(f"{name}={dim} is out of range for a tensor with {ndim} dimensions")
    return dim % nd


# ---------------------------------------------------------------------------------------------------------
# Triton helpers: one block's statistics and the merge of two states (written once, used by every kernel).
# ---------------------------------------------------------------------------------------------------------


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
    d = tl.where(d < -200.0, -200.0, d)  # −inf → e^{−200} = 0 in float32 without an inf − inf; NaN stays NaN
    y = d * _LOG2E
    err = tl.fma(d, _LOG2E, -y) + d * _LOG2E_LO
    return tl.exp2(y) * (1.0 + err * _LN2)


@triton.jit
def lse_block_stats(x, EXCLUDE_MAX: tl.constexpr):
    """(m_b, acc_b) of one block ``x`` (fp32, masked lanes already −inf): block max first, one exp per entry.

    x:           fp32 block of a row; lanes past the row end must hold −inf (they then add 0).
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
        acc_b = tl.sum(tl.where(is_max, 0.0, e), axis=0) + (tl.sum(is_max.to(tl.float32), axis=0) - 1.0)
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
