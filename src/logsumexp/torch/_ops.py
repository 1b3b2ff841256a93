"""``torch.library`` custom operators of the torch face (namespace ``logsumexp``).

Registering the kernels as operators makes them opaque to ``torch.compile``: Dynamo records one
node per call (no graph break on the Python chunk loops), fake implementations give it the output
shapes, and the autograd formulas (:mod:`._autograd`) are attached with ``register_autograd``.
Another backend can later add a device kernel under the same name with ``torch.library.register_kernel``.

The operator schemas are necessarily flat (a schema cannot take a dataclass); each operator
rebuilds the one :class:`CrossEntropyOptions` at its entry and the kernels only see that.
"""

# No ``from __future__ import annotations``: custom_op reads the real annotation objects.
from typing import Optional

import torch
from torch import Tensor

from . import _impl
from ._kernels import acc_dtype
from .._options import CrossEntropyOptions


def _opts(ignore_index: int, label_smoothing: float, z_loss: float, softcap: Optional[float]):
    return CrossEntropyOptions(
        ignore_index=ignore_index, label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap
    )


# --------------------------------------------------------------------------- cross-entropy


@torch.library.custom_op("logsumexp::cross_entropy_rows", mutates_args=())
def cross_entropy_rows(
    logits: Tensor,
    target: Tensor,
    weight: Optional[Tensor],
    ignore_index: int,
    label_smoothing: float,
    z_loss: float,
    softcap: Optional[float],
) -> tuple[Tensor, Tensor]:
    """Per-row cross-entropy (0 on ignored rows) and per-row LSE of ``(N, C)`` logits."""
    opts = _opts(ignore_index, label_smoothing, z_loss, softcap)
    return _impl.cross_entropy_rows(logits, target, weight, opts)


@cross_entropy_rows.register_fake
def _(logits, target, weight, ignore_index, label_smoothing, z_loss, softcap):
    acc = acc_dtype(logits.dtype)
    n = logits.shape[0]
    return logits.new_empty(n, dtype=acc), logits.new_empty(n, dtype=acc)


@torch.library.custom_op("logsumexp::cross_entropy_rows_backward", mutates_args=())
def cross_entropy_rows_backward(
    g_rows: Tensor,
    g_lse: Optional[Tensor],
    logits: Tensor,
    target: Tensor,
    weight: Optional[Tensor],
    lse: Tensor,
    ignore_index: int,
    label_smoothing: float,
    z_loss: float,
    softcap: Optional[float],
) -> Tensor:
    """Gradient of ``Σ g_rows·rows + Σ g_lse·lse`` with respect to the logits."""
    opts = _opts(ignore_index, label_smoothing, z_loss, softcap)
    return _impl.cross_entropy_rows_backward(g_rows, g_lse, logits, target, weight, lse, opts)


@cross_entropy_rows_backward.register_fake
def _(g_rows, g_lse, logits, target, weight, lse, ignore_index, label_smoothing, z_loss, softcap):
    return torch.empty_like(logits, memory_format=torch.contiguous_format)


# --------------------------------------------------------------------------- linear + CE


@torch.library.custom_op("logsumexp::linear_cross_entropy", mutates_args=())
def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    target: Tensor,
    cls_weight: Optional[Tensor],
    scale: Optional[Tensor],
    ignore_index: int,
    label_smoothing: float,
    z_loss: float,
    softcap: Optional[float],
    grad_hidden: bool,
    grad_weight: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Loss of ``hidden @ weight.T + bias`` without the full logits.

    ``scale`` given: returns the 0-d loss ``scale · Σ rows`` and its gradients for hidden (if
    ``grad_hidden``), weight and bias (if ``grad_weight``), computed in the same pass (no
    recompute). ``scale``
    None: returns the per-row losses; the backward recomputes the logits chunk by chunk.
    The second output is the per-row LSE; unused gradients come back empty.
    """
    opts = _opts(ignore_index, label_smoothing, z_loss, softcap)
    rows, lse, gh, gw, gb = _impl.linear_cross_entropy(
        hidden, weight, bias, target, cls_weight, scale, opts, (grad_hidden, grad_weight)
    )
    loss = rows if scale is None else (rows.sum() * scale.to(rows.dtype))
    return loss, lse, gh, gw, gb


@linear_cross_entropy.register_fake
def _(hidden, weight, bias, target, cls_weight, scale, ignore_index, label_smoothing, z_loss,
      softcap, grad_hidden, grad_weight):
    acc = acc_dtype(hidden.dtype)
    n = hidden.shape[0]
    want_h, want_w = scale is not None and grad_hidden, scale is not None and grad_weight
    loss = hidden.new_empty(n, dtype=acc) if scale is None else hidden.new_empty((), dtype=acc)
    gh = torch.empty_like(hidden) if want_h else hidden.new_empty(0)
    gw = weight.new_empty(weight.shape, dtype=acc) if want_w else hidden.new_empty(0)
    gb = hidden.new_empty(weight.shape[0], dtype=acc) if want_w and bias is not None else (
        hidden.new_empty(0))
    return loss, hidden.new_empty(n, dtype=acc), gh, gw, gb


@torch.library.custom_op("logsumexp::linear_cross_entropy_backward", mutates_args=())
def linear_cross_entropy_backward(
    g_rows: Tensor,
    hidden: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    target: Tensor,
    cls_weight: Optional[Tensor],
    ignore_index: int,
    label_smoothing: float,
    z_loss: float,
    softcap: Optional[float],
    grad_hidden: bool,
    grad_weight: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of ``Σ g_rows·rows`` (reduction "none"): the logits are recomputed per chunk."""
    opts = _opts(ignore_index, label_smoothing, z_loss, softcap)
    _, _, gh, gw, gb = _impl.linear_cross_entropy(
        hidden, weight, bias, target, cls_weight, g_rows, opts, (grad_hidden, grad_weight)
    )
    return gh, gw, gb


@linear_cross_entropy_backward.register_fake
def _(g_rows, hidden, weight, bias, target, cls_weight, ignore_index, label_smoothing, z_loss,
      softcap, grad_hidden, grad_weight):
    acc = acc_dtype(hidden.dtype)
    gh = torch.empty_like(hidden) if grad_hidden else hidden.new_empty(0)
    gw = weight.new_empty(weight.shape, dtype=acc) if grad_weight else hidden.new_empty(0)
    gb = hidden.new_empty(weight.shape[0], dtype=acc) if grad_weight and bias is not None else (
        hidden.new_empty(0))
    return gh, gw, gb


# --------------------------------------------------------------------------- LSE, softmax


@torch.library.custom_op("logsumexp::logsumexp_last", mutates_args=())
def logsumexp_last(x: Tensor) -> Tensor:
    """LSE over the last dimension, in float32 (float64 for float64 input)."""
    return _impl.logsumexp_last(x)


@logsumexp_last.register_fake
def _(x):
    return x.new_empty(x.shape[:-1], dtype=acc_dtype(x.dtype))


@torch.library.custom_op("logsumexp::softmax_last", mutates_args=())
def softmax_last(x: Tensor, log: bool) -> Tensor:
    """Softmax or log-softmax over the last dimension, in the input dtype."""
    return _impl.softmax_last(x, log)


@softmax_last.register_fake
def _(x, log):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op("logsumexp::softmax_last_backward", mutates_args=())
def softmax_last_backward(g: Tensor, y: Tensor, log: bool) -> Tensor:
    """Gradient of (log-)softmax from its output ``y``."""
    return _impl.softmax_last_backward(g, y, log)


@softmax_last_backward.register_fake
def _(g, y, log):
    return torch.empty_like(y, memory_format=torch.contiguous_format)


@torch.library.custom_op("logsumexp::logsumexp_last_backward", mutates_args=())
def logsumexp_last_backward(g: Tensor, x: Tensor, lse: Tensor) -> Tensor:
    """``g · softmax(x)`` from the saved LSE: 0 on all −inf rows, ``g/k`` on ``k`` +inf entries."""
    return _impl.logsumexp_last_backward(g, x, lse)


@logsumexp_last_backward.register_fake
def _(g, x, lse):
    return torch.empty_like(x, memory_format=torch.contiguous_format)
