r"""Distillation losses between a student and a teacher head: forward / reverse KL and generalised JSD.

With ``p = softmax(student / T)`` and ``q = softmax(teacher / T)``, per token:

- ``"forward"``: ``KL(q ‖ p) = Σ_i q_i (log q_i − log p_i)``  (the usual distillation loss);
- ``"reverse"``: ``KL(p ‖ q) = Σ_i p_i (log p_i − log q_i)``  (mode seeking);
- ``"jsd"``: TRL's ``generalized_jsd_loss`` (``GKDTrainer``): ``β·KL(q ‖ m) + (1−β)·KL(p ‖ m)``,
  ``m = β q + (1−β) p``; as there, ``β = 0`` is the forward KL and ``β = 1`` the reverse KL.

Stability: both log-softmaxes are ``z − m − log1p(Σ_{i≠k} e^{z_i − m})`` and the probabilities
``e^{z − m}/(1 + tail)`` (the division form), computed per chunk of rows in float32 whatever the input
dtype (float64 for float64); ``log m = logaddexp(log β + log q, log(1−β) + log p)``. Each term is
``q_i·(log q_i − log p_i)`` with the difference of logs taken per entry (no ``Σ q log q − Σ q log p``
of two large sums), and a term of probability 0 adds 0 even where the other log is −inf.

Gradients (per token, before the ``1/T`` of the temperature):

- forward: ``∂/∂s = p − q``,  ``∂/∂t = q ∘ (c − KL)``, ``c = log q − log p``;
- reverse: ``∂/∂s = p ∘ (c − KL)``, ``c = log p − log q``, ``∂/∂t = q − p``;
- jsd: ``∂/∂s = (1−β) p ∘ (r − Σ p r)``, ``r = log p − log m``; ``∂/∂t = β q ∘ (u − Σ q u)``, ``u = log q − log m``.
"""

# No ``from __future__ import annotations``: custom_op reads the real annotation objects.
import math
from typing import Any, Optional

import torch
from torch import Tensor

from . import _checks
from .. import _cpu
from . import _cpu_impl as C
from ._ops import _autograd, _building_graph, _call, _custom_op, _times
from .._options import _check_int, _check_range

__all__ = ["kl_div_logits", "linear_kl_div"]

_KINDS = ("forward", "reverse", "jsd")
_REDUCTIONS = ("mean", "sum", "none")


# =========================================================================== row arithmetic


def _shifted_and_p(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(t, c, p)`` of rows ``z``: ``t = z − max``, ``c = log1p(tail)`` per row (float64, so that the
    difference of two rows' constants is exact to float32), ``p = e^{t}/(1 + tail)`` (division form);
    ``log p = t − c``. An all −inf row has ``tail = 0``, ``t = −inf``, ``p = 0``."""
    t, _, am = C.shifted(z)
    e = torch.exp(t)
    e.scatter_(-1, am.unsqueeze(-1), 0.0)  # the arg max's 1 stays out of the tail (log1p)
    tail = e.sum(dim=-1, keepdim=True, dtype=torch.float64)
    p = e.scatter_(-1, am.unsqueeze(-1), 1.0).div_((1.0 + tail).to(e.dtype))
    p = torch.where(t == -math.inf, 0.0, p)
    return t, torch.log1p(tail), p


def _log_ratio(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(d, p, q)``: ``d = log q − log p = (t_b − t_a) − (c_b − c_a)`` per entry and both softmaxes.

    The row constants are subtracted in float64 and rounded once, so that ``d`` carries one rounding
    of its own size: a constant error in ``d`` does not cancel in the JSD's gradient (it does in the KLs').
    """
    ta, ca, p = _shifted_and_p(a)
    tb, cb, q = _shifted_and_p(b)
    d = (tb - ta).sub_((cb - ca).to(tb.dtype))
    return d, p, q


def _weighted(p: Tensor, diff: Tensor) -> Tensor:
    """``p ∘ diff`` with 0 wherever ``p = 0`` (``diff`` may be ±inf or NaN-free infinite there)."""
    return torch.where(p == 0, 0.0, p * diff)


def _mixture_gaps(d: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """``(log p − log m, log q − log m)`` for ``m = β q + (1−β) p``, from ``d = log q − log p``.

    ``log m − log p = log1p(β·expm1(d))`` for ``d ≤ 0`` and ``d + log1p((1−β)·expm1(−d))`` for
    ``d > 0``: the argument of ``log1p`` stays in ``[−1, 0]`` (no overflow), and when the two
    distributions are close (``d ≈ 0``, the JSD small) the gaps keep their relative accuracy, where
    ``log p − logaddexp(...)`` subtracts two numbers of size ``|log p|``. ``d = ±inf`` (one side of
    probability 0) gives the exact limits; ``p = q = 0`` gives NaN, dropped by :func:`_weighted`.
    """
    neg = d <= 0
    lo = torch.log1p(beta * torch.expm1(torch.where(neg, d, 0.0)))  # log m − log p  (d ≤ 0)
    hi = torch.log1p((1.0 - beta) * torch.expm1(torch.where(neg, 0.0, -d)))  # log m − log q  (d > 0)
    m_minus_p = torch.where(neg, lo, d + hi)
    m_minus_q = torch.where(neg, lo - d, hi)
    return -m_minus_p, -m_minus_q


# Rows per elementwise sub-chunk: about 2^20 entries (4 MiB of float32 per buffer), so that the
# chunk's dozen passes run from cache, not from memory: on the 2-core Xeon (AVX-512), 64 rows of
# V = 128,256 took 51 ms in 8-row pieces against 118 ms in one piece (eager F.kl_div's fused
# log-softmax kernels: 74 ms).
SUB_ELEMENTS = 1 << 20


def _shift_and_exp(z: Tensor, inplace: bool) -> Optional[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """``(t, e, c, s)`` of rows ``z``: ``t = z − m``, ``e = e^t``, ``c = log1p(tail)`` (float64: the
    difference of two rows' constants is then exact to ``z``'s precision), ``s = 1 + tail`` in
    ``z``'s dtype; None when a row's maximum is not finite (a special row)."""
    m, am = z.max(dim=-1)
    if not bool(torch.isfinite(m).all()):
        return None
    t = z.sub_(m.unsqueeze(-1)) if inplace else z - m.unsqueeze(-1)
    e = torch.exp(t)
    idx = am.unsqueeze(-1)
    e.scatter_(-1, idx, 0.0)  # the arg max's 1 stays out of the float64 sum: log1p keeps the rest
    tail = e.sum(dim=-1, dtype=torch.float64)
    e.scatter_(-1, idx, 1.0)
    return t, e, torch.log1p(tail), (1.0 + tail).to(z.dtype)


def _kl_finite_rows(
    a: Tensor, b: Tensor, kind: str, g: Optional[Tensor], want: tuple[bool, bool], inplace: bool,
) -> Optional[tuple[Tensor, Optional[Tensor], Optional[Tensor]]]:
    """:func:`chunk_kl` for the two KLs in fewer passes; None when a row is special.

    The same formulas (per-entry log-ratio ``d = (t_b − t_a) − (c_b − c_a)``, row constants in
    float64, probabilities ``e/(1 + tail)``), arranged so that four ``[rows, V]`` buffers serve
    every pass: ``t_a``, ``t_b``, ``e_a``, ``e_b``. ``inplace``: ``a`` and ``b`` are scratch,
    become ``t_a`` and ``t_b``, and receive the student's and the teacher's gradients. Special
    rows (a non-finite maximum, or a row whose sum is not finite, e.g. ``0·∞`` where one side has
    probability 0 and the other −inf) return None: the caller takes :func:`chunk_kl`'s general
    path, whose ``where`` guards give their limits (after ``inplace``, on fresh logits: ``a`` and
    ``b`` may have been overwritten).
    """
    sa_ = _shift_and_exp(a, inplace)
    sb_ = None if sa_ is None else _shift_and_exp(b, inplace)
    if sb_ is None:
        return None
    (ta, ea, ca, sa), (tb, eb, cb, sb) = sa_, sb_
    # c = log src − log dst per entry (src: the distribution the KL is taken under); held in t_b.
    c = tb.sub_(ta).sub_((cb - ca).to(tb.dtype).unsqueeze(-1))  # log q − log p
    if kind == "forward":  # KL(q ‖ p): src the teacher
        src_e, src_s, dst_e, dst_s, out_src, out_dst = eb, sb, ea, sa, None, ta
    else:  # KL(p ‖ q): src the student
        c.neg_()
        src_e, src_s, dst_e, dst_s, out_src, out_dst = ea, sa, eb, sb, ta, tb
    src = src_e.div_(src_s.unsqueeze(-1))
    rows = torch.mul(src, c, out=ta).sum(dim=-1)  # t_a is free from here on
    if not bool(torch.isfinite(rows).all()):
        return None
    if g is None:
        return rows, None, None
    want_src, want_dst = (want[1], want[0]) if kind == "forward" else want
    g1 = g.unsqueeze(-1)
    g_src = g_dst = None
    if want_src:  # src ∘ (c − KL)·g; in t_b (forward: the teacher's) or t_a (reverse: the student's)
        g_src = torch.sub(c, rows.unsqueeze(-1), out=c if out_src is None else out_src).mul_(src).mul_(g1)
    if want_dst:  # (dst − src)·g, with g/(1 + tail) folded into dst's division
        g_dst = torch.addcmul(dst_e.mul_((g / dst_s).unsqueeze(-1)), src, g1, value=-1.0,
                              out=out_dst if inplace else None)
    return (rows, g_dst, g_src) if kind == "forward" else (rows, g_src, g_dst)


def _compiled_kl(
    a: Tensor, b: Tensor, kind: str, g: Optional[Tensor], want: tuple[bool, bool], inplace: bool,
) -> Optional[tuple[Tensor, Optional[Tensor], Optional[Tensor]]]:
    """The KLs of float32 CPU rows through the compiled kernel (``logsumexp._cpu.kl_grad_rows``,
    ``src/kl.h``): each pair of rows read once from memory, its exps kept in float64 in L2, the row
    constants and the KL in float64, the gradients written in place of the rows (of ``a`` and ``b``
    themselves when ``inplace``, else of copies). None when the kernel declines. Rows it leaves
    (a non-finite maximum or KL) are untouched and go through :func:`chunk_kl`'s general path.
    One [65, 128,256] chunk, forward KL with the student's gradient, 2 threads of the 2-core Xeon:
    see docs/BENCHMARKS.md (RL section)."""
    if a.dtype != torch.float32 or b.dtype != torch.float32 or not (a.is_cpu and b.is_cpu) or a.ndim != 2:
        return None
    if not (a.is_contiguous() and b.is_contiguous()):
        return None
    on = g is not None
    ga = a if inplace else (a.clone() if on and want[0] else a)
    gb = b if inplace else (b.clone() if on and want[1] else b)
    rows = a.new_empty(a.shape[0])
    ok = _cpu.kl_grad_rows(ga.detach().numpy(), gb.detach().numpy(), kind == "reverse",
                           None if g is None else g.detach().contiguous().numpy(), on and want[0], on and want[1],
                           rows.numpy())
    if ok is None:
        return None
    if not ok.all():
        bad = torch.from_numpy(~ok).nonzero().squeeze(-1)
        r, ra, rb = chunk_kl(ga[bad], gb[bad], kind, 0.5, None if g is None else g[bad], want, general=True)
        rows[bad] = r
        if ra is not None:
            ga[bad] = ra
        if rb is not None:
            gb[bad] = rb
    return rows, (ga if on and want[0] else None), (gb if on and want[1] else None)


def _kl_pieces(
    a: Tensor, b: Tensor, kind: str, g: Optional[Tensor], want: tuple[bool, bool], inplace: bool,
) -> Optional[tuple[Tensor, Optional[Tensor], Optional[Tensor]]]:
    """:func:`_kl_finite_rows` over pieces of ``SUB_ELEMENTS`` entries (from cache); None if a
    piece has a special row. ``inplace``: the gradients are left in ``a`` (student) and ``b``."""
    compiled = _compiled_kl(a, b, kind, g, want, inplace)
    if compiled is not None:
        return compiled
    n, v = a.shape
    step = max(1, SUB_ELEMENTS // max(v, 1))
    if n <= step:
        return _kl_finite_rows(a, b, kind, g, want, inplace)
    rows = a.new_empty(n)
    ga = (a if inplace else torch.empty_like(a)) if g is not None and want[0] else None
    gb = (b if inplace else torch.empty_like(b)) if g is not None and want[1] else None
    for lo in range(0, n, step):
        sl = slice(lo, min(lo + step, n))
        got = _kl_finite_rows(a[sl], b[sl], kind, None if g is None else g[sl], want, inplace)
        if got is None:
            return None
        rows[sl] = got[0]
        for out, piece in ((ga, got[1]), (gb, got[2])):
            if out is not None and not inplace:
                out[sl] = piece
    return rows, ga, gb


def chunk_kl(
    a: Tensor, b: Tensor, kind: str, beta: float, g: Optional[Tensor], want: tuple[bool, bool],
    general: bool = False,
) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """Per-row divergence of student logits ``a`` and teacher logits ``b`` (both already ``/T``,
    accumulation dtype) and, with per-row multipliers ``g``, the gradients of ``Σ g·rows`` with
    respect to ``a`` and ``b`` as flagged by ``want`` (before the ``1/T``). The KLs of chunks
    without special rows take :func:`_kl_finite_rows` unless ``general``."""
    if kind != "jsd" and not general:
        fast = _kl_pieces(a, b, kind, g, want, inplace=False)
        if fast is not None:
            return fast
    d, p, q = _log_ratio(a, b)
    ga = gb = None
    if kind == "jsd":
        r, u = _mixture_gaps(d, beta)
        kl_p = _weighted(p, r).sum(dim=-1)
        kl_q = _weighted(q, u).sum(dim=-1)
        rows = beta * kl_q + (1.0 - beta) * kl_p
        if g is not None and want[0]:
            ga = _weighted(p, r - kl_p.unsqueeze(-1)) * ((1.0 - beta) * g).unsqueeze(-1)
        if g is not None and want[1]:
            gb = _weighted(q, u - kl_q.unsqueeze(-1)) * (beta * g).unsqueeze(-1)
        return rows, ga, gb
    # forward: KL(q‖p) (the "from" side is the teacher); reverse: KL(p‖q) — the same code, sides swapped.
    src_p, dst_p, c = (q, p, d) if kind == "forward" else (p, q, -d)
    rows = _weighted(src_p, c).sum(dim=-1)
    if g is not None:
        g1 = g.unsqueeze(-1)
        g_src = _weighted(src_p, c - rows.unsqueeze(-1)) * g1 if want[1 if kind == "forward" else 0] else None
        g_dst = (dst_p - src_p) * g1 if want[0 if kind == "forward" else 1] else None
        ga, gb = (g_dst, g_src) if kind == "forward" else (g_src, g_dst)
    return rows, ga, gb


def _scaled(x: Tensor, temperature: float, acc: torch.dtype) -> Tensor:
    z = x.to(acc)
    return z if temperature == 1.0 else z / temperature


def _counted(target: Optional[Tensor], ignore_index: int, n: int, like: Tensor) -> Tensor:
    """Per-row 1.0 / 0.0: counted tokens (every row without a target)."""
    if target is None:
        return like.new_ones(n)
    return (target != ignore_index).to(like.dtype)


def kl_rows(
    student: Tensor, teacher: Tensor, target: Optional[Tensor], kind: str, beta: float,
    temperature: float, ignore_index: int,
) -> Tensor:
    """Per-row divergence of ``(N, V)`` logits, 0 on ignored rows, in the accumulation dtype."""
    n, v = student.shape
    acc = C.acc_dtype(student.dtype)
    out = student.new_empty(n, dtype=acc)
    for sl in C.row_chunks(n, v):
        rows, _, _ = chunk_kl(_scaled(student[sl], temperature, acc), _scaled(teacher[sl], temperature, acc),
                              kind, beta, None, (False, False))
        out[sl] = rows
    keep = _counted(target, ignore_index, n, out)
    return torch.where(keep > 0, out, 0.0)


def kl_rows_backward(
    g_rows: Tensor, student: Tensor, teacher: Tensor, target: Optional[Tensor], kind: str, beta: float,
    temperature: float, ignore_index: int, grad_student: bool, grad_teacher: bool,
) -> tuple[Tensor, Tensor]:
    """Gradients of ``Σ g_rows·rows`` for the student and teacher logits (empty where not asked)."""
    n, v = student.shape
    acc = C.acc_dtype(student.dtype)
    g = torch.where(_counted(target, ignore_index, n, g_rows.to(acc)) > 0, g_rows.to(acc), 0.0)
    gs = torch.empty_like(student, memory_format=torch.contiguous_format) if grad_student else student.new_empty(0)
    gt = torch.empty_like(teacher, memory_format=torch.contiguous_format) if grad_teacher else teacher.new_empty(0)
    for sl in C.row_chunks(n, v):
        _, ga, gb = chunk_kl(_scaled(student[sl], temperature, acc), _scaled(teacher[sl], temperature, acc),
                             kind, beta, g[sl] / temperature, (grad_student, grad_teacher))
        if grad_student:
            gs[sl] = ga
        if grad_teacher:
            gt[sl] = gb
    return gs, gt


# =========================================================================== operators: logits


@_custom_op("logsumexp::kl_div_rows", mutates_args=())
def kl_div_rows_op(
    student: Tensor, teacher: Tensor, target: Optional[Tensor], kind: str, beta: float,
    temperature: float, ignore_index: int,
) -> Tensor:
    """Per-row divergence (0 on ignored rows) of ``(N, V)`` student and teacher logits."""
    return kl_rows(student, teacher, target, kind, beta, temperature, ignore_index)


@kl_div_rows_op.register_fake
def _(student, teacher, target, kind, beta, temperature, ignore_index):
    return student.new_empty(student.shape[0], dtype=C.acc_dtype(student.dtype))


@_custom_op("logsumexp::kl_div_rows_backward", mutates_args=())
def kl_div_rows_backward_op(
    g_rows: Tensor, student: Tensor, teacher: Tensor, target: Optional[Tensor], kind: str, beta: float,
    temperature: float, ignore_index: int, grad_student: bool, grad_teacher: bool,
) -> tuple[Tensor, Tensor]:
    """Gradients of the student and teacher logits (chunked; empty where not asked for)."""
    return kl_rows_backward(g_rows, student, teacher, target, kind, beta, temperature, ignore_index,
                            grad_student, grad_teacher)


@kl_div_rows_backward_op.register_fake
def _(g_rows, student, teacher, target, kind, beta, temperature, ignore_index, grad_student, grad_teacher):
    gs = torch.empty_like(student, memory_format=torch.contiguous_format) if grad_student else student.new_empty(0)
    gt = torch.empty_like(teacher, memory_format=torch.contiguous_format) if grad_teacher else teacher.new_empty(0)
    return gs, gt


def _differentiable_grads(g_rows, student, teacher, target, kind, beta, temperature, ignore_index, need):
    """The gradients as one out-of-place expression (``torch.func``; the rows are whole tensors)."""
    acc = C.acc_dtype(student.dtype)
    a = _scaled(student, temperature, acc)
    b = _scaled(teacher, temperature, acc)
    from ._ops import softmax_last  # differentiable log-softmax with the special-value rules

    lp, lq = softmax_last(a, True), softmax_last(b, True)
    p, q = torch.exp(lp), torch.exp(lq)
    n = a.shape[0]
    g = torch.where(_counted(target, ignore_index, n, a) > 0, g_rows.to(acc), 0.0).unsqueeze(-1) / temperature

    def term(w, d):
        safe = torch.where(w == 0, 0.0, d)
        return w * safe

    if kind == "jsd":
        r, u = _mixture_gaps(lq - lp, beta)
        ga = (1.0 - beta) * g * term(p, r - term(p, r).sum(-1, keepdim=True))
        gb = beta * g * term(q, u - term(q, u).sum(-1, keepdim=True))
    elif kind == "forward":
        c = lq - lp
        ga = g * (p - q)
        gb = g * term(q, c - term(q, c).sum(-1, keepdim=True))
    else:
        c = lp - lq
        ga = g * term(p, c - term(p, c).sum(-1, keepdim=True))
        gb = g * (q - p)
    return (ga.to(student.dtype) if need[0] else None, gb.to(teacher.dtype) if need[1] else None)


class _KLRows(torch.autograd.Function):
    """Saves both logits by reference; backward recomputes both softmaxes chunk by chunk."""

    @staticmethod
    def forward(*args: Any) -> Any:
        return _call(kl_div_rows_op, *args)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        student, teacher, target, *flat = inputs
        ctx.save_for_backward(student, teacher, target)
        ctx.flat = tuple(flat)

    @staticmethod
    def backward(ctx: Any, g_rows: Tensor) -> tuple:
        student, teacher, target = ctx.saved_tensors
        need = ctx.needs_input_grad
        rest = (None,) * 5
        if not (need[0] or need[1]):
            return (None, None) + rest
        if _building_graph():
            return _differentiable_grads(g_rows, student, teacher, target, *ctx.flat, need[:2]) + rest
        gs, gt = _call(kl_div_rows_backward_op, g_rows, student, teacher, target, *ctx.flat, need[0], need[1])
        return (gs if need[0] else None, gt if need[1] else None) + rest


_kl_div_rows = _autograd(kl_div_rows_op, _KLRows)


# =========================================================================== operators: linear


def linear_kl_rows(
    hs: Tensor, ws: Tensor, ht: Tensor, wt: Tensor, target: Optional[Tensor], kind: str, beta: float,
    temperature: float, ignore_index: int, g_rows: Optional[Tensor], wants: tuple[bool, bool, bool, bool],
    chunk_rows: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Per-row divergence of ``hs @ ws.T`` and ``ht @ wt.T`` one chunk of tokens at a time and, with
    ``g_rows`` (per row or 0-d), the gradients of ``Σ g·rows`` for ``(hs, ws, ht, wt)`` as flagged by
    ``wants`` (weights accumulated in float32, float64 for float64). Both heads' logits of one chunk
    are the only large temporaries."""
    n, d_s = hs.shape
    v = ws.shape[0]
    acc = C.acc_dtype(hs.dtype)
    rows = hs.new_empty(n, dtype=acc)
    on = g_rows is not None
    out_hs = torch.empty_like(hs) if on and wants[0] else hs.new_empty(0)
    # The weights' sums start as the first chunk's product (no zero fill of V·D floats) unless
    # there is no chunk at all.
    fresh = hs.new_zeros if n == 0 else hs.new_empty
    out_ws = fresh(ws.shape, dtype=acc) if on and wants[1] else hs.new_empty(0)
    out_ht = torch.empty_like(ht) if on and wants[2] else hs.new_empty(0)
    out_wt = fresh(wt.shape, dtype=acc) if on and wants[3] else hs.new_empty(0)
    keep = _counted(target, ignore_index, n, rows)
    # 64 MiB of float32 logits per head (130 tokens at V = 128,256): each chunk streams both weight
    # matrices again, and at half that (65 tokens) the step took 1.17x eager F.kl_div's time against
    # 0.88x (float32, N = 512, D = 1024, 2-core Xeon; issue 23's measurement).
    step = chunk_rows or max(1, C.LCE_CHUNK_BYTES // (max(v, 1) * torch.finfo(acc).bits // 8))
    for start in range(0, n, step):
        sl = slice(start, min(start + step, n))
        g = None
        if on:
            g = g_rows[sl].to(acc) if g_rows.ndim else g_rows.to(acc).expand(sl.stop - sl.start)
            g = torch.where(keep[sl] > 0, g, 0.0) / temperature
        r, ga, gb = _linear_chunk(hs[sl], ws, ht[sl], wt, kind, beta, temperature, acc, g,
                                  (wants[0] or wants[1], wants[2] or wants[3]))
        rows[sl] = torch.where(keep[sl] > 0, r, 0.0)
        if ga is not None:
            _head_grads(ga, hs[sl], ws, out_hs[sl] if wants[0] else None, out_ws if wants[1] else None, start == 0)
        if gb is not None:
            _head_grads(gb, ht[sl], wt, out_ht[sl] if wants[2] else None, out_wt if wants[3] else None, start == 0)
    return rows, out_hs, out_ws, out_ht, out_wt


def _linear_chunk(h_s: Tensor, ws: Tensor, h_t: Tensor, wt: Tensor, kind: str, beta: float, temperature: float,
                  acc: torch.dtype, g: Optional[Tensor], want: tuple[bool, bool]) -> tuple:
    """:func:`chunk_kl` of one chunk's two heads. The logits are this function's own, so the KLs
    work in place on them; a chunk with a special row recomputes them for the general path."""
    def logits() -> tuple[Tensor, Tensor]:
        return _scaled(h_s @ ws.t(), temperature, acc), _scaled(h_t @ wt.t(), temperature, acc)

    if kind != "jsd":
        fast = _kl_pieces(*logits(), kind, g, want, inplace=True)
        if fast is not None:
            return fast
    return chunk_kl(*logits(), kind, beta, g, want, general=True)


def _head_grads(gz: Tensor, h: Tensor, w: Tensor, out_h: Optional[Tensor], out_w: Optional[Tensor],
                first: bool) -> None:
    """``out_h = gz @ W`` in the head's dtype (as autograd takes it for the model's head) and
    ``out_w += gzᵀ @ h`` in float32 (float64 for float64) in place. Measured per 65-row chunk of
    V = 128,256, D = 1024 (2-core Xeon, AMX): the bf16 product of ``out_w``'s update took 189 ms
    plus 298 ms to add its 250 MiB into the float32 sum, the float32 ``addmm_`` 163 ms."""
    if out_h is not None:
        torch.mm(gz.to(w.dtype), w, out=out_h)
    if out_w is not None and first:
        torch.mm(gz.t(), h.to(out_w.dtype), out=out_w)
    elif out_w is not None:
        out_w.addmm_(gz.t(), h.to(out_w.dtype))


@_custom_op("logsumexp::linear_kl_div", mutates_args=())
def linear_kl_div_op(
    hs: Tensor, ws: Tensor, ht: Tensor, wt: Tensor, target: Optional[Tensor], scale: Optional[Tensor],
    kind: str, beta: float, temperature: float, ignore_index: int,
    grad_hs: bool, grad_ws: bool, grad_ht: bool, grad_wt: bool, chunk_rows: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``scale`` given: the 0-d loss ``scale·Σ rows``, ``Σ rows`` and, in the same pass, the four
    gradients as flagged (empty otherwise); ``scale`` None: the per-row losses (backward recomputes)."""
    rows, g_hs, g_ws, g_ht, g_wt = linear_kl_rows(
        hs, ws, ht, wt, target, kind, beta, temperature, ignore_index, scale,
        (grad_hs, grad_ws, grad_ht, grad_wt), chunk_rows,
    )
    total = rows.sum()
    loss = rows if scale is None else total * scale.to(total.dtype)
    return loss, total, g_hs, g_ws, g_ht, g_wt


def _linear_grads_fake(hs, ws, ht, wt, on, flags):
    acc = C.acc_dtype(hs.dtype)
    empty = lambda: hs.new_empty(0)  # noqa: E731
    return (torch.empty_like(hs) if on and flags[0] else empty(),
            ws.new_empty(ws.shape, dtype=acc) if on and flags[1] else empty(),
            torch.empty_like(ht) if on and flags[2] else empty(),
            wt.new_empty(wt.shape, dtype=acc) if on and flags[3] else empty())


@linear_kl_div_op.register_fake
def _(hs, ws, ht, wt, target, scale, kind, beta, temperature, ignore_index, grad_hs, grad_ws, grad_ht,
      grad_wt, chunk_rows):
    acc = C.acc_dtype(hs.dtype)
    loss = hs.new_empty(hs.shape[0], dtype=acc) if scale is None else hs.new_empty((), dtype=acc)
    grads = _linear_grads_fake(hs, ws, ht, wt, scale is not None, (grad_hs, grad_ws, grad_ht, grad_wt))
    return (loss, hs.new_empty((), dtype=acc), *grads)


@_custom_op("logsumexp::linear_kl_div_backward", mutates_args=())
def linear_kl_div_backward_op(
    g_rows: Tensor, hs: Tensor, ws: Tensor, ht: Tensor, wt: Tensor, target: Optional[Tensor],
    kind: str, beta: float, temperature: float, ignore_index: int,
    grad_hs: bool, grad_ws: bool, grad_ht: bool, grad_wt: bool, chunk_rows: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of ``Σ g_rows·rows`` (reduction "none"): both heads' logits recomputed per chunk."""
    _, *grads = linear_kl_rows(hs, ws, ht, wt, target, kind, beta, temperature, ignore_index, g_rows,
                               (grad_hs, grad_ws, grad_ht, grad_wt), chunk_rows)
    return tuple(grads)


@linear_kl_div_backward_op.register_fake
def _(g_rows, hs, ws, ht, wt, target, kind, beta, temperature, ignore_index, grad_hs, grad_ws, grad_ht,
      grad_wt, chunk_rows):
    return _linear_grads_fake(hs, ws, ht, wt, True, (grad_hs, grad_ws, grad_ht, grad_wt))


class _LinearKL(torch.autograd.Function):
    """"mean"/"sum": gradients computed in the forward pass, scaled by the upstream gradient here
    (``6·N·D·V`` FLOPs per head that needs them); "none": backward recomputes the chunks."""

    @staticmethod
    def forward(*args: Any) -> Any:
        return _call(linear_kl_div_op, *args)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        hs, ws, ht, wt, target, scale, *flat = inputs
        ctx.scaled = scale is not None
        ctx.flat = tuple(flat[:4])
        ctx.chunk_rows = flat[-1]
        ctx.dtypes = (hs.dtype, ws.dtype, ht.dtype, wt.dtype)
        ctx.mark_non_differentiable(*output[1:])
        ctx.set_materialize_grads(False)
        if ctx.scaled:
            ctx.save_for_backward(*output[2:], output[1], scale)
        else:
            ctx.save_for_backward(hs, ws, ht, wt, target)

    @staticmethod
    def backward(ctx: Any, g_loss: Optional[Tensor], *_unused: Any) -> tuple:
        need = ctx.needs_input_grad
        rest = (None,) * 10
        if g_loss is None:
            return (None,) * 6 + rest
        g_scale = None
        if ctx.scaled:
            *grads, total, scale = ctx.saved_tensors
            grads = [_times(t, g_loss) for t in grads]
            if need[5]:
                g_scale = (g_loss * total).to(scale.dtype)
        else:
            hs, ws, ht, wt, target = ctx.saved_tensors
            if _building_graph():
                raise RuntimeError(
                    "linear_kl_div with reduction='none' has no differentiable backward (torch.func, "
                    "create_graph=True); use reduction='sum' or 'mean', or kl_div_logits"
                )
            grads = _call(linear_kl_div_backward_op, g_loss, hs, ws, ht, wt, target, *ctx.flat,
                          need[0], need[1], need[2], need[3], ctx.chunk_rows)
        out = [g.to(dt) if ok and g.numel() else None for g, dt, ok in zip(grads, ctx.dtypes, need[:4])]
        return (*out, None, g_scale) + rest


_linear_kl_div = _autograd(linear_kl_div_op, _LinearKL)


# =========================================================================== the face


def _check_options(kind: object, beta: object, temperature: object, ignore_index: object,
                   reduction: object) -> str:
    """Validate the keywords; return the effective kind (TRL: jsd at β = 0 / 1 is the forward / reverse KL)."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    _check_range("beta", beta, "in [0, 1]", lambda v: 0.0 <= v <= 1.0)
    _check_range("temperature", temperature, "finite and > 0", lambda v: v > 0.0)
    _check_int("ignore_index", ignore_index)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if kind == "jsd" and beta == 0.0:
        return "forward"
    if kind == "jsd" and beta == 1.0:
        return "reverse"
    return kind


def _check_target(target: object, shape: tuple) -> Optional[Tensor]:
    if target is None:
        return None
    t = _checks.tensor("target", target)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"target must hold integer token ids (only compared with ignore_index), got {t.dtype}")
    if tuple(t.shape) != shape:
        raise ValueError(f"target must have shape {shape} (one entry per token), got {tuple(t.shape)}")
    return t.reshape(-1)


def _reduce(rows: Tensor, target: Optional[Tensor], ignore_index: int, reduction: str, shape: tuple) -> Tensor:
    if reduction == "none":
        return rows.reshape(shape)
    total = rows.sum()
    if reduction == "sum":
        return total
    return total * _inverse_count(target, ignore_index, rows.shape[0], rows)


def _inverse_count(target: Optional[Tensor], ignore_index: int, n: int, like: Tensor) -> Tensor:
    """``1 / counted tokens`` as a 0-d tensor, 0 when none is counted (loss 0, gradient 0, never NaN)."""
    count = _counted(target, ignore_index, n, like.new_empty(0)).sum() if target is not None \
        else like.new_tensor(float(n))
    return torch.where(count > 0, 1.0 / torch.where(count > 0, count, 1.0), 0.0)


def kl_div_logits(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor | None = None,
    *,
    kind: str = "forward",
    beta: float = 0.5,
    temperature: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Distillation divergence between ``softmax(student/T)`` and ``softmax(teacher/T)``, per token.

    ``kind``: ``"forward"`` ``KL(teacher ‖ student)``, ``"reverse"`` ``KL(student ‖ teacher)``,
    ``"jsd"`` ``β·KL(q ‖ m) + (1−β)·KL(p ‖ m)`` with ``m = β q + (1−β) p`` (TRL's
    ``generalized_jsd_loss``; ``β = 0`` and ``β = 1`` give its forward and reverse KL, as in TRL).
    Each token's divergence is summed over the vocabulary (the last dimension), then ``reduction``:
    ``"mean"`` over the counted tokens (those whose ``target`` is not ``ignore_index``; every token
    without ``target``: TRL's ``"batchmean"``), ``"sum"``, or ``"none"`` (the tokens' shape, 0 on
    ignored tokens). A batch with no counted token gives 0 and zero gradients.

    Computed in float32 whatever the input dtype (float64 for float64), one chunk of rows at a time;
    the result has that dtype. Gradients flow to the student and, if it requires one, the teacher.
    Stability and gradient formulas: see the module ``logsumexp.torch._kl``: per-entry differences of
    stable log-softmaxes (``z − m − log1p(tail)``), terms of probability 0 add 0.

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import kl_div_logits
    >>> s = torch.tensor([[1000.0, 0.0], [0.0, 0.0]])
    >>> t = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    >>> kl_div_logits(s, t, reduction="none")        # 500 − log 2, rounded once: exp(1000) never formed
    tensor([499.3069,   0.0000])
    >>> kl_div_logits(s, t, kind="jsd", beta=0.0, reduction="none")  # TRL: β = 0 is the forward KL
    tensor([499.3069,   0.0000])
    """
    eff = _check_options(kind, beta, temperature, ignore_index, reduction)
    s = _checks.floating("student_logits", student_logits)
    t = _checks.floating("teacher_logits", teacher_logits)
    if s.ndim == 0 or s.shape[-1] == 0:
        raise ValueError(f"student_logits must have a vocabulary dimension (the last), got shape {tuple(s.shape)}")
    if t.shape != s.shape:
        raise ValueError(f"teacher_logits must have student_logits' shape {tuple(s.shape)}, got {tuple(t.shape)}")
    if t.dtype != s.dtype:
        raise TypeError(f"teacher_logits must have student_logits' dtype {s.dtype}, got {t.dtype}")
    shape = tuple(s.shape[:-1])
    tgt = _check_target(target, shape)
    v = s.shape[-1]
    rows = _kl_div_rows(s.reshape(-1, v), t.reshape(-1, v), tgt, eff, float(beta), float(temperature),
                        ignore_index)
    return _reduce(rows, tgt, ignore_index, reduction, shape)


def linear_kl_div(
    student_hidden: Tensor,
    student_weight: Tensor,
    teacher_hidden: Tensor,
    teacher_weight: Tensor,
    target: Tensor | None = None,
    *,
    kind: str = "forward",
    beta: float = 0.5,
    temperature: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    chunk_size: int | None = None,
) -> Tensor:
    r""":func:`kl_div_logits` of ``student_hidden @ student_weight.T`` and ``teacher_hidden @ teacher_weight.T``
    without either ``[N, V]`` logits matrix.

    ``student_hidden`` ``(..., D_s)``, ``student_weight`` ``(V, D_s)``, ``teacher_hidden`` ``(..., D_t)``
    (the same tokens), ``teacher_weight`` ``(V, D_t)``: the two models may have different widths, not
    different vocabularies. Tokens are processed in chunks (``chunk_size``; default about 64 MiB of
    float32 logits per head); each chunk's products are taken in the input dtype,
    the rest in float32. With ``"mean"`` or ``"sum"`` the gradients are computed in the same pass
    (no recomputation: backward only scales them), for the student and for the teacher only if one
    of its tensors requires grad; with ``"none"`` backward recomputes each chunk.

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import linear_kl_div, kl_div_logits
    >>> g = torch.Generator().manual_seed(0)
    >>> hs, ws = torch.randn(6, 4, generator=g, requires_grad=True), torch.randn(9, 4, generator=g)
    >>> ht, wt = torch.randn(6, 5, generator=g), torch.randn(9, 5, generator=g)
    >>> loss = linear_kl_div(hs, ws, ht, wt, kind="jsd", chunk_size=4)
    >>> torch.allclose(loss, kl_div_logits(hs @ ws.T, ht @ wt.T, kind="jsd"))
    True
    >>> loss.backward(); hs.grad.shape
    torch.Size([6, 4])
    """
    eff = _check_options(kind, beta, temperature, ignore_index, reduction)
    chunk_size = _checks.positive_int("chunk_size", chunk_size)
    hs = _checks.floating("student_hidden", student_hidden)
    ht = _checks.floating("teacher_hidden", teacher_hidden)
    ws = _checks.floating("student_weight", student_weight)
    wt = _checks.floating("teacher_weight", teacher_weight)
    if hs.ndim == 0 or ws.ndim != 2 or ws.shape[1] != hs.shape[-1] or ws.shape[0] == 0:
        raise ValueError(f"student_weight must have shape (V, {hs.shape[-1] if hs.ndim else 'D'}) with V >= 1 "
                         f"for student_hidden {tuple(hs.shape)}, got {tuple(ws.shape)}")
    if ht.ndim != hs.ndim or ht.shape[:-1] != hs.shape[:-1]:
        raise ValueError(f"teacher_hidden must have student_hidden's leading shape {tuple(hs.shape[:-1])}, "
                         f"got {tuple(ht.shape)}")
    if wt.ndim != 2 or wt.shape != (ws.shape[0], ht.shape[-1]):
        raise ValueError(f"teacher_weight must have shape ({ws.shape[0]}, {ht.shape[-1]}), got {tuple(wt.shape)}")
    for name, x, ref in (("student_weight", ws, hs), ("teacher_weight", wt, ht)):
        if x.dtype != ref.dtype:
            raise TypeError(f"{name} must have its hidden's dtype {ref.dtype}, got {x.dtype}")
    shape = tuple(hs.shape[:-1])
    tgt = _check_target(target, shape)
    hs2, ht2 = hs.reshape(-1, hs.shape[-1]), ht.reshape(-1, ht.shape[-1])
    on = torch.is_grad_enabled()
    flags = (on and hs.requires_grad, on and ws.requires_grad, on and ht.requires_grad, on and wt.requires_grad)
    scale = None
    if reduction == "sum":
        scale = hs2.new_ones((), dtype=C.acc_dtype(hs.dtype))
    elif reduction == "mean":
        scale = _inverse_count(tgt, ignore_index, hs2.shape[0], hs2.new_empty(0, dtype=C.acc_dtype(hs.dtype)))
    loss, *_ = _linear_kl_div(hs2, ws, ht2, wt, tgt, scale, eff, float(beta), float(temperature), ignore_index,
                              *flags, chunk_size or 0)
    return loss.reshape(shape) if reduction == "none" else loss
