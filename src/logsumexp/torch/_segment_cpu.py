r"""CPU float32/float64 tensors of the grouped functions through the compiled kernels (segment.h).

Three ``torch.library`` custom ops (namespace ``logsumexp``) wrap the kernels; each hands its
tensors to :mod:`logsumexp._cpu` as zero-copy ``.numpy()`` views and wraps the NumPy result with
``torch.from_numpy`` (no copy either way):

- ``segment_fwd(x, ids, num_segments, kind)``: the forward of softmax / log-softmax / LogSumExp
  of the rows of ``x`` (N, F) grouped by ``ids``: the per-group state (the maximum, and
  ``Σ e^{x − m}`` with the maximum's own terms counted apart; one pass over float32 data of one
  column, two otherwise), then one write. ``segment_fwd_csr(x, ptr, kind)``: the same for sorted
  rows given by CSR offsets, each group's columns folded by the row kernels. float32 is
  accumulated in float64 and rounded once. Also returns the group constants (m, lead + tail,
  log(lead + tail), float64) that the LogSumExp's backward reads instead of recomputing them.
- ``segment_norm_bwd(y, g, ids, num_segments, log)``: the fused backward of the normalised forms,
  ``y·(g − Σ_group g·y)`` (softmax; 0 where y = 0) or ``g − e^y·Σ_group g`` (log-softmax): one
  scatter of the per-group sums, one write.
- ``segment_lse_bwd(x, ids, consts, g)``: ``softmax(x)·g[group]`` in one write.

Because they are custom ops with fakes and a registered autograd, ``torch.compile(fullgraph=True)``
records each as one node and autograd differentiates them. When a graph of the gradient is being
built (``create_graph=True``: second derivatives) the backward is computed instead from the
differentiable torch operations of :mod:`.segment`. Inputs the kernels cannot read (functorch
wrappers of ``torch.func``, forward-mode AD, other dtypes or devices) never reach these ops: see
:func:`takes`.
"""

# No ``from __future__ import annotations``: custom_op reads the real annotation objects.
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.autograd import forward_ad as _forward_ad

from .. import _cpu

_KINDS = ("softmax", "log_softmax", "lse")
# The differentiable backward (torch operations) for when a graph of the gradient is built: set by
# .segment, which owns that mathematics and imports this module (not the other way: no import cycle).
_GRAPH_BACKWARD: Any = None
_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def takes(x: Tensor) -> bool:
    """Whether the grouped functions of ``x`` go through the kernels: a strided CPU float32/float64
    tensor (a real one, or the fake of a ``torch.compile`` trace), not inside ``torch.func`` or
    forward-mode AD, with the compiled layer available."""
    if not (x.dtype in (torch.float32, torch.float64) and x.device.type == "cpu" and x.layout == torch.strided):
        return False
    if torch.compiler.is_compiling():  # a fake tensor of the trace: the op is recorded, not run
        return _kernels_on()
    return not _is_wrapped(x) and _forward_ad._current_level < 0 and _kernels_on()


@torch.compiler.assume_constant_result
def _kernels_on() -> bool:
    """Whether the compiled layer is on and loaded (a constant for a ``torch.compile`` trace)."""
    return _cpu.enabled() and _cpu.kernels() is not None


def _np(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


# --------------------------------------------------------------------------- the ops


@torch.library.custom_op("logsumexp::segment_fwd", mutates_args=())
def segment_fwd(x: Tensor, ids: Tensor, num_segments: int, kind: int) -> tuple[Tensor, Tensor]:
    """(result, constants): ``kind`` indexes ("softmax", "log_softmax", "lse"); the LogSumExp's
    result is (num_segments, F) in x's dtype, the others x's shape."""
    res = _cpu.segment_forward(_np(x), _np(ids), num_segments, _KINDS[kind])
    if res is None:  # pragma: no cover - takes() checked the kernels before the call
        raise RuntimeError("logsumexp::segment_fwd: the compiled CPU kernels are not available")
    out, consts = res
    out = torch.from_numpy(out)
    return (out.to(x.dtype) if kind == 2 else out), torch.from_numpy(consts)


@segment_fwd.register_fake
def _(x: Tensor, ids: Tensor, num_segments: int, kind: int) -> tuple[Tensor, Tensor]:
    F = x.shape[1]
    out = x.new_empty((num_segments, F)) if kind == 2 else torch.empty_like(x)
    return out, x.new_empty((5, num_segments, F), dtype=torch.float64)


@torch.library.custom_op("logsumexp::segment_norm_bwd", mutates_args=())
def segment_norm_bwd(y: Tensor, g: Tensor, ids: Tensor, num_segments: int, log: bool) -> Tensor:
    """The gradient of segment softmax (log=False) or log-softmax (log=True) from its output y."""
    gx = _cpu.segment_backward(_np(y), _np(g.to(y.dtype).contiguous()), _np(ids), num_segments, log)
    if gx is None:  # pragma: no cover
        raise RuntimeError("logsumexp::segment_norm_bwd: the compiled CPU kernels are not available")
    return torch.from_numpy(gx)


@segment_norm_bwd.register_fake
def _(y: Tensor, g: Tensor, ids: Tensor, num_segments: int, log: bool) -> Tensor:
    return torch.empty_like(y)


@torch.library.custom_op("logsumexp::segment_lse_bwd", mutates_args=())
def segment_lse_bwd(x: Tensor, ids: Tensor, consts: Tensor, g: Tensor) -> Tensor:
    """The gradient of the groups' LogSumExp: ``softmax(x)·g[group]``."""
    gx = _cpu.segment_lse_grad(_np(x), _np(ids), _np(consts), _np(g.to(torch.float64).contiguous()))
    if gx is None:  # pragma: no cover
        raise RuntimeError("logsumexp::segment_lse_bwd: the compiled CPU kernels are not available")
    return torch.from_numpy(gx)


@segment_lse_bwd.register_fake
def _(x: Tensor, ids: Tensor, consts: Tensor, g: Tensor) -> Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("logsumexp::segment_fwd_csr", mutates_args=())
def segment_fwd_csr(x: Tensor, ptr: Tensor, kind: int) -> tuple[Tensor, Tensor]:
    """:func:`segment_fwd` for sorted rows given by CSR offsets ``ptr`` (checked here, where the
    values are real even under ``torch.compile``: the kernels must not read past ``x``)."""
    p = _np(ptr).astype(np.int64, copy=False)
    n = x.shape[0]
    if p.size < 1 or p[0] != 0 or p[-1] != n or (p.size > 1 and bool((p[1:] < p[:-1]).any())):
        raise ValueError(f"ptr must be non-decreasing CSR offsets from 0 to src.size(dim) = {n}")
    res = _cpu.segment_forward_csr(_np(x), p, _KINDS[kind])
    if res is None:  # pragma: no cover
        raise RuntimeError("logsumexp::segment_fwd_csr: the compiled CPU kernels are not available")
    out, consts = res
    out = torch.from_numpy(out)
    return (out.to(x.dtype) if kind == 2 else out), torch.from_numpy(consts)


@segment_fwd_csr.register_fake
def _(x: Tensor, ptr: Tensor, kind: int) -> tuple[Tensor, Tensor]:
    S, F = ptr.shape[0] - 1, x.shape[1]
    out = x.new_empty((S, F)) if kind == 2 else torch.empty_like(x)
    return out, x.new_empty((5, S, F), dtype=torch.float64)


# --------------------------------------------------------------------------- autograd


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    x, ids, num_segments, kind = inputs
    out, consts = output
    ctx.num_segments, ctx.kind = num_segments, kind
    ctx.save_for_backward(x, ids, out, consts)


def _backward(ctx: Any, g: Tensor, _g_consts: Any) -> tuple[Any, ...]:
    x, ids, out, consts = ctx.saved_tensors
    s, kind = ctx.num_segments, ctx.kind
    if torch.is_grad_enabled():  # a graph of the gradient is wanted: differentiable torch ops
        return _GRAPH_BACKWARD(_KINDS[kind], s, x, ids, out, g), None, None, None
    if kind == 2:
        return segment_lse_bwd(x, ids, consts, g), None, None, None
    return segment_norm_bwd(out, g, ids, s, kind == 1), None, None, None


torch.library.register_autograd("logsumexp::segment_fwd", _backward, setup_context=_setup_context)


def _setup_context_csr(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    x, ptr, kind = inputs
    out, consts = output
    ctx.kind = kind
    ctx.save_for_backward(x, ptr, out, consts)


def _backward_csr(ctx: Any, g: Tensor, _g_consts: Any) -> tuple[Any, ...]:
    """The backward of the CSR forward: the group of each row from the offsets (one pass), then
    the same kernels as for ids."""
    x, ptr, out, consts = ctx.saved_tensors
    s = ptr.shape[0] - 1
    ids = torch.repeat_interleave(torch.arange(s, device=x.device), ptr[1:] - ptr[:-1], output_size=x.shape[0])
    if torch.is_grad_enabled():
        return _GRAPH_BACKWARD(_KINDS[ctx.kind], s, x, ids, out, g), None, None
    if ctx.kind == 2:
        return segment_lse_bwd(x, ids, consts, g), None, None
    return segment_norm_bwd(out, g, ids, s, ctx.kind == 1), None, None


torch.library.register_autograd("logsumexp::segment_fwd_csr", _backward_csr, setup_context=_setup_context_csr)


def apply(kind: str, x: Tensor, ids: Tensor, num_segments: int) -> Tensor:
    """``kind`` of the rows of ``x`` (N, ...) grouped by ``ids`` (int64), through the kernels; the
    result in x's dtype (LogSumExp: (num_segments, ...))."""
    rest = tuple(x.shape[1:])
    x2 = x.reshape(x.shape[0], math.prod(rest)).contiguous()
    out, _ = segment_fwd(x2, ids.contiguous(), num_segments, _KINDS.index(kind))
    return out.reshape((out.shape[0], *rest))


def apply_csr(kind: str, x: Tensor, ptr: Tensor) -> Tensor:
    """:func:`apply` for sorted rows given by CSR offsets ``ptr`` (int64, S + 1 entries)."""
    rest = tuple(x.shape[1:])
    x2 = x.reshape(x.shape[0], math.prod(rest)).contiguous()
    out, _ = segment_fwd_csr(x2, ptr.to(torch.int64).contiguous(), _KINDS.index(kind))
    return out.reshape((out.shape[0], *rest))
