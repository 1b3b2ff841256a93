r"""Grouped softmax, log-softmax and LogSumExp for PyTorch, in PyTorch Geometric's call shape.

``segment_softmax(src, index=None, ptr=None, num_nodes=None, dim=0)`` is a drop-in for
``torch_geometric.utils.softmax``: the entries of ``src`` along ``dim`` are grouped by ``index``
(the target node of each edge, any order) or by CSR offsets ``ptr``, and each group sums to 1.

Per group, with ``m`` its maximum and the maximum's own terms kept out of the tail:

    total = lead + tail,  lead = #{i : x_i = m},  tail = Σ_{x_i < m} e^{x_i − m},
    softmax_i = e^{x_i − m} / total,   LSE = m + log1p(tail)  (one maximum),  m + log(total)  (ties).

Unlike PyG's ``softmax`` (which adds 1e-16 to the denominator and detaches the maximum) nothing is
added: an all −inf or isolated group gives 0 (LSE −inf) and a zero gradient, never NaN; ``k`` +inf
entries share 1/k; a NaN stays in its group; a dominant entry keeps its relative accuracy.
float32 is accumulated in float64 on a CPU (float16/bfloat16 in float32 at least).

Three backends, chosen per call:

- CPU float32/float64 tensors: the compiled kernels (``_segment_cpu``: custom ops on zero-copy NumPy
  views; the state in two passes, one write; a fused backward, one scatter and one write).
- CUDA tensors, where triton imports: the Triton kernels (``logsumexp.triton._segment``: one program
  per group, ids put in group order by a stable argsort).
- anything else (float16/bfloat16 on a CPU, ``torch.func`` transforms, forward-mode AD): torch
  operations in an ``autograd.Function`` below, backward ``∂LSE = p``, softmax
  ``p·(g − Σ_group g·p)``, log-softmax ``g − p·Σ_group g``, built from torch operations and the
  softmax Function itself, so second derivatives work (the CPU kernels' backward falls back to it
  when a graph of the gradient is built). Its forward uses ``scatter_reduce(amax)`` and
  ``index_add`` only.

``torch.compile(fullgraph=True)`` traces all three (give ``num_nodes`` or ``ptr``: ``index.max()``
is data-dependent).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from . import _segment_cpu

__all__ = ["segment_log_softmax", "segment_logsumexp", "segment_softmax"]


def _load_triton_segment() -> Any:
    """``logsumexp.triton._segment.segment_rows`` where CUDA and triton are available, else None; looked up
    once at import, so that a ``torch.compile`` trace reads a module global (an import would break it)."""
    if not torch.cuda.is_available():
        return None
    try:
        from ..triton._segment import segment_rows
    except ImportError:
        return None
    return segment_rows


_TRITON_SEGMENT: Any = _load_triton_segment()


# the mean rows a group from which CSR offsets take the row kernels' fold (see logsumexp._segment)
_CSR_MIN_MEAN = 32


def _uses_triton(src: Tensor) -> bool:
    return src.is_cuda and _TRITON_SEGMENT is not None


def segment_softmax(
    src: Tensor, index: Tensor | None = None, ptr: Tensor | None = None, num_nodes: int | None = None, dim: int = 0
) -> Tensor:
    """Softmax of each group of ``src`` along ``dim`` (PyG's ``utils.softmax`` arguments).

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import segment_softmax
    >>> src = torch.tensor([1000.0, 1000.0, 0.0, float("-inf")])
    >>> segment_softmax(src, torch.tensor([0, 0, 1, 2]))
    tensor([0.5000, 0.5000, 1.0000, 0.0000])
    """
    return _apply("softmax", src, index, ptr, num_nodes, dim)


def segment_log_softmax(
    src: Tensor, index: Tensor | None = None, ptr: Tensor | None = None, num_nodes: int | None = None, dim: int = 0
) -> Tensor:
    """``src − LSE(group)`` along ``dim``; −inf for an all −inf group.

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import segment_log_softmax
    >>> segment_log_softmax(torch.tensor([0.0, 0.0, 5.0]), torch.tensor([0, 0, 1]))
    tensor([-0.6931, -0.6931,  0.0000])
    """
    return _apply("log_softmax", src, index, ptr, num_nodes, dim)


def segment_logsumexp(
    src: Tensor, index: Tensor | None = None, ptr: Tensor | None = None, num_nodes: int | None = None, dim: int = 0
) -> Tensor:
    """LogSumExp of each group: ``num_nodes`` entries along ``dim``; −inf for an empty group.

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import segment_logsumexp
    >>> segment_logsumexp(torch.tensor([1000.0, 1000.0, 0.0]), torch.tensor([0, 0, 2]))
    tensor([1000.6932,      -inf,    0.0000])
    """
    return _apply("lse", src, index, ptr, num_nodes, dim)


# --------------------------------------------------------------------------- arguments


def _apply(kind: str, src: Tensor, index: Tensor | None, ptr: Tensor | None, num_nodes: int | None, dim: int) -> Tensor:
    if not isinstance(src, Tensor):
        raise TypeError(f"src must be a torch.Tensor, got {type(src).__name__}")
    if not src.is_floating_point():
        raise TypeError(f"src must be a floating tensor, got dtype {src.dtype}")
    if src.dim() == 0:
        raise ValueError("src must have at least one dimension (the grouped one, dim)")
    if not -src.dim() <= dim < src.dim():
        raise ValueError(f"dim={dim} is out of range for src of {src.dim()} dimensions")
    x = src.movedim(dim, 0)
    if ptr is not None and index is None and _segment_cpu.takes(src) and x.shape[0] >= _CSR_MIN_MEAN * (ptr.numel() - 1):
        # sorted rows, long groups: the row kernels' fold (short ones: the ids kernel)
        _check_ptr(ptr, num_nodes)
        return _segment_cpu.apply_csr(kind, x, ptr).movedim(0, dim)
    ids, s = _groups(index, ptr, num_nodes, x.shape[0], src.device)
    if _segment_cpu.takes(src):  # the compiled kernels, forward and fused backward
        return _segment_cpu.apply(kind, x, ids, s).movedim(0, dim)
    if _uses_triton(src):  # the Triton kernels: one program per group, ids put in group order
        rest = tuple(x.shape[1:])
        out = _TRITON_SEGMENT(kind, x.reshape(x.shape[0], math.prod(rest)), ids, None, s)
        return out.reshape((out.shape[0], *rest)).movedim(0, dim)
    acc = _acc_dtype(src)
    out = _SegmentFn.apply(kind, s, x.to(acc), ids)
    return out.to(src.dtype).movedim(0, dim)


def _acc_dtype(src: Tensor) -> torch.dtype:
    if src.device.type == "cpu":
        return torch.float64
    return torch.float64 if src.dtype == torch.float64 else torch.float32


def _check_ptr(ptr: Tensor, num_nodes: int | None) -> int:
    """The number of groups of CSR offsets ``ptr`` (their values are checked where they are read)."""
    if ptr.dim() != 1 or ptr.is_floating_point():
        raise ValueError(f"ptr must be a 1-d integer tensor, got shape {tuple(ptr.shape)}, dtype {ptr.dtype}")
    s = ptr.numel() - 1
    if num_nodes is not None and num_nodes != s:
        raise ValueError(f"num_nodes={num_nodes} disagrees with ptr.numel() - 1 = {s}")
    return s


def _groups(index: Tensor | None, ptr: Tensor | None, num_nodes: int | None, n: int, device: Any) -> tuple[Tensor, int]:
    """(the group of each entry as int64, the number of groups)."""
    if (index is None) == (ptr is None):
        raise ValueError("give exactly one of index and ptr (CSR offsets)")
    if ptr is not None:
        s = _check_ptr(ptr, num_nodes)
        if not torch.compiler.is_compiling() and (
            int(ptr[0]) != 0 or int(ptr[-1]) != n or bool((ptr[1:] < ptr[:-1]).any())
        ):
            raise ValueError(f"ptr must be non-decreasing CSR offsets from 0 to src.size(dim) = {n}")
        counts = ptr[1:] - ptr[:-1]
        ids = torch.repeat_interleave(torch.arange(s, device=device), counts, output_size=n)
        return ids, s
    if index.dim() != 1 or index.is_floating_point() or index.numel() != n:
        raise ValueError(
            f"index must be a 1-d integer tensor with one entry per element along dim ({n}); "
            f"got shape {tuple(index.shape)}, dtype {index.dtype}"
        )
    if num_nodes is not None and (isinstance(num_nodes, bool) or int(num_nodes) < 0):
        raise ValueError(f"num_nodes must be a non-negative int, got {num_nodes!r}")
    if n and not torch.compiler.is_compiling():
        lo, hi = (int(v) for v in torch.aminmax(index))  # one pass (three for a mask of the bad ids)
        num_nodes = hi + 1 if num_nodes is None else num_nodes
        if lo < 0 or hi >= num_nodes:
            bad = (index < 0) | (index >= num_nodes)
            pos = int(bad.to(torch.int8).argmax())
            raise IndexError(f"index[{pos}] = {int(index[pos])} is out of range for num_nodes={num_nodes}")
    if num_nodes is None:
        num_nodes = int(index.max()) + 1 if n else 0
    return index.long(), int(num_nodes)


# --------------------------------------------------------------------------- the mathematics


def _expand(ids: Tensor, x: Tensor) -> Tensor:
    return ids.view((-1,) + (1,) * (x.dim() - 1)).expand(x.shape)


def _state(x: Tensor, ids: Tensor, s: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(m, lead, tail per group; d = x − m[id] with infinite maxima made harmless)."""
    shape = (s, *x.shape[1:])
    m = x.new_full(shape, -math.inf).scatter_reduce(0, _expand(ids, x), x, "amax", include_self=True)
    mg = m.index_select(0, ids)
    d = x - torch.where(torch.isfinite(mg), mg, torch.zeros_like(mg))
    # a +inf group: its +inf entries share the mass (inf − inf taken as 0), the rest is nothing
    d = torch.where(mg == math.inf, torch.where(x == math.inf, 0.0, -math.inf), d)
    e = torch.exp(d)
    at_max = (d == 0) & (mg != -math.inf)  # the maximum's entries: e = 1 exactly, kept out of the tail
    lead = x.new_zeros(shape).index_add(0, ids, at_max.to(x.dtype))
    tail = x.new_zeros(shape).index_add(0, ids, torch.where(at_max, 0.0, e))
    return m, lead, tail, d


def _log_total(lead: Tensor, tail: Tensor) -> Tensor:
    """log(lead + tail): log1p(tail) for one maximum (the dominant term's accuracy), 0 for an empty
    or all −inf group (so that d − log_total stays −inf)."""
    total = lead + tail
    return torch.where(lead == 1, torch.log1p(tail), torch.log(torch.where(total == 0, 1.0, total)))


def _forward(kind: str, s: int, x: Tensor, ids: Tensor) -> Tensor:
    m, lead, tail, d = _state(x, ids, s)
    nan = torch.isnan(m)
    if kind == "lse":
        out = torch.where(m == -math.inf, m, m + _log_total(lead, tail))
        return torch.where(nan, math.nan, out)
    if kind == "log_softmax":
        out = d - _log_total(lead, tail).index_select(0, ids)
    else:
        total = lead + tail
        out = torch.exp(d) / torch.where(total == 0, 1.0, total).index_select(0, ids)
    return torch.where(nan.index_select(0, ids), math.nan, out)


def _times(p: Tensor, t: Tensor) -> Tensor:
    """p·t, 0 where p == 0: an entry that takes no part passes no gradient, even an infinite one."""
    return torch.where(p == 0, torch.zeros_like(p), p * t)


def _seg_sum(v: Tensor, ids: Tensor, s: int) -> Tensor:
    return v.new_zeros((s, *v.shape[1:])).index_add(0, ids, v)


class _SegmentFn(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(kind: str, s: int, x: Tensor, ids: Tensor) -> Tensor:  # type: ignore[override]
        return _forward(kind, s, x, ids)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        kind, s, x, ids = inputs
        ctx.kind, ctx.s = kind, s
        ctx.save_for_backward(x, ids, output)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Any:  # type: ignore[override]
        x, ids, out = ctx.saved_tensors
        kind, s = ctx.kind, ctx.s
        p = out if kind == "softmax" else _SegmentFn.apply("softmax", s, x, ids)
        if kind == "lse":
            gx = _times(p, g.index_select(0, ids))
        elif kind == "softmax":
            gx = _times(p, g - _seg_sum(_times(p, g), ids, s).index_select(0, ids))
        else:
            gx = g - _times(p, _seg_sum(g, ids, s).index_select(0, ids))
        return None, None, gx, None


def _backward_ops(kind: str, s: int, x: Tensor, ids: Tensor, out: Tensor, g: Tensor) -> Tensor:
    """The gradient of ``kind`` at ``x`` (rows grouped by ``ids``) from differentiable torch
    operations, in x's dtype: the kernels' backward when a graph of the gradient is wanted."""
    acc = _acc_dtype(x)
    xa, ga = x.to(acc), g.to(acc)
    p = _SegmentFn.apply("softmax", s, xa, ids)
    if kind == "lse":
        gx = _times(p, ga.index_select(0, ids))
    elif kind == "softmax":
        gx = _times(p, ga - _seg_sum(_times(p, ga), ids, s).index_select(0, ids))
    else:
        gx = ga - _times(p, _seg_sum(ga, ids, s).index_select(0, ids))
    return gx.to(x.dtype)


_segment_cpu._GRAPH_BACKWARD = _backward_ops
