"""CPU float32/float64 tensors through the compiled kernels of :mod:`logsumexp._cpu`, without a copy.

A contiguous (or strided) CPU tensor's ``.numpy()`` is a view of the same memory, and the kernels
read any strides, so the torch face hands its rows to the same C kernels as the NumPy face; what
they return (a fresh NumPy array) becomes a tensor through ``torch.from_numpy``, again without a
copy. The kernels release the GIL and split large inputs over their own threads.

Every function returns ``None`` where the kernels do not apply (another dtype or device, a tensor
subclass such as the fake tensors of ``torch.compile``, a ``torch.func`` wrapper, a traced call,
an empty input, or the compiled layer switched off), and the caller then computes with torch
operations. The values follow the numerical contract of the array core: float32 data is
accumulated in float64 and each result rounded once, so these paths are at least as accurate as
the chunked torch code they replace (see ``_cpu_impl``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from torch.autograd import forward_ad as _forward_ad

from .. import _cpu

_KERNEL_DTYPES = (torch.float32, torch.float64)
_PLAIN = (Tensor, torch.nn.Parameter)
_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def takes(x: Tensor) -> bool:
    """Whether the kernels may read ``x``: a real, strided CPU float32/float64 tensor holding data
    (no fake, functional or functorch-wrapped tensor, and not inside a traced call)."""
    return (
        x.dtype in _KERNEL_DTYPES
        and type(x) in _PLAIN
        and x.is_cpu
        and x.layout == torch.strided
        and not _is_wrapped(x)
        and not torch.compiler.is_compiling()
    )


def needs_graph(x: Tensor) -> bool:
    """Whether a result computed from ``x`` must record derivatives: reverse mode (``x`` requires
    grad and grad mode is on) or forward mode (inside ``torch.autograd.forward_ad.dual_level``)."""
    return (x.requires_grad and torch.is_grad_enabled()) or _forward_ad._current_level >= 0


def _view(x: Tensor) -> np.ndarray | None:
    """The NumPy view of ``x``'s memory (no copy), or None where torch refuses one (a tensor with
    its negative or conjugate bit set)."""
    try:
        return x.detach().numpy()
    except (RuntimeError, TypeError):
        return None


def _tensor(a: Any) -> Tensor:
    """A kernel result (array or NumPy scalar) as a tensor sharing its memory."""
    return torch.from_numpy(np.asarray(a))


def lse_dims(x: Tensor, dims: tuple[int, ...]) -> Tensor | None:
    """LogSumExp over ``dims`` (sorted, distinct, non-negative) in x's dtype (x's shape without
    ``dims``), or None.

    ``m + log1p(Σ_{i≠k} e^{x_i − m})`` with a double-double finish and the cancelling slices
    recomputed exactly, rounded once (float32 data summed in float64)."""
    if x.ndim == 0 or not dims or x.numel() == 0 or not takes(x):
        return None
    v = _view(x)
    if v is None:
        return None
    out = _cpu.lse_value(v, dims)
    return None if out is None else _tensor(out)


def lse_last(x: Tensor) -> Tensor | None:
    """LogSumExp over the last dimension (see :func:`lse_dims`), or None."""
    return lse_dims(x, (x.ndim - 1,)) if x.ndim else None


def softmax_dims(x: Tensor, dims: tuple[int, ...], log: bool) -> Tensor | None:
    """softmax (``e^{x_i − m}/(1 + tail)``) or log_softmax (``(x_i − m) − log1p(tail)``) over
    ``dims`` (sorted, distinct, non-negative) in x's dtype and shape, or None."""
    if x.ndim == 0 or not dims or x.numel() == 0 or not takes(x):
        return None
    v = _view(x)
    if v is None:
        return None
    out = _cpu.softmax_axes(v, dims, log)
    return None if out is None else _tensor(out)


def softmax_last(x: Tensor, log: bool) -> Tensor | None:
    """softmax or log_softmax over the last dimension (see :func:`softmax_dims`), or None."""
    return softmax_dims(x, (x.ndim - 1,), log) if x.ndim else None


def state_last(x: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
    """The (max, lead, tail) state of each row over the last dimension, float64, or None:
    ``Σ e^{x_i} = e^m (lead + tail)``, ``lead`` 1 (0 for an all −inf row), special rows as in
    the kernels (``k`` entries at +inf: m = +inf, lead + tail = k; NaN: m = NaN)."""
    if x.ndim == 0 or x.numel() == 0 or not takes(x):
        return None
    v = _view(x)
    if v is None:
        return None
    st = _cpu.lse_state(v, (v.ndim - 1,), None)
    return None if st is None else (_tensor(st[0]), _tensor(st[1]), _tensor(st[2]))
