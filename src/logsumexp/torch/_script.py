"""The path of ``CrossEntropyLoss.forward`` under ``torch.jit.script``: TorchScript, on the same operator.

TorchScript cannot compile the functional face (a dataclass of options, keyword dictionaries, the
Triton dispatch), but it can call any operator the dispatcher knows: ``logsumexp::cross_entropy_rows``
is one (a ``torch.library`` custom op whose autograd is registered on it), so a scripted module
runs the same arithmetic and the same gradients. What is left to this function is torch's
reshaping to rows and the reduction, written in the subset TorchScript compiles (hence
``typing.Optional``). The argument checks of the eager face are not repeated here: the module's
attributes were checked when it was built, and a class index out of range raises torch's own
index error from the operator.
"""

# No ``from __future__ import annotations``: TorchScript reads the annotation objects.
from typing import Optional

import torch
from torch import Tensor

from . import _ops  # noqa: F401  (registers the logsumexp:: operators this function calls)


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor],  # noqa: UP045  (TorchScript reads typing.Optional)
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: Optional[float],  # noqa: UP045
    num_items: Optional[Tensor],  # noqa: UP045
) -> tuple[Tensor, Tensor]:
    """``(loss, per-row LSE)`` as :func:`logsumexp.torch.cross_entropy` computes them."""
    class_dim = 1 if input.dim() > 1 else 0
    n_cls = input.size(class_dim)
    logits = input.movedim(class_dim, -1).reshape(-1, n_cls)
    if target.is_floating_point():
        rows_t = target.movedim(class_dim, -1).reshape(-1, n_cls)
        shape = input.movedim(class_dim, -1).shape[:-1]
    else:
        rows_t = target.reshape(-1).long()
        shape = target.shape
    out = torch.ops.logsumexp.cross_entropy_rows(
        logits, rows_t, weight, ignore_index, label_smoothing, z_loss, softcap, False
    )
    losses, lse = out[0], out[1].reshape(shape)
    if reduction == "none":
        return losses.reshape(shape), lse
    total = losses.sum()
    if reduction == "sum":
        return total, lse
    if num_items is not None:
        return total / num_items.to(total.dtype), lse
    if target.is_floating_point():
        den = torch.full((), float(logits.size(0)), dtype=total.dtype, device=total.device)
    else:
        valid = rows_t != ignore_index
        if weight is None:
            den = valid.sum().to(total.dtype)
        else:
            w_t = weight[torch.where(valid, rows_t, torch.zeros_like(rows_t))]
            den = torch.where(valid, w_t, torch.zeros_like(w_t)).sum().to(total.dtype)
    # As the eager face: a sum of exactly 0 gives loss 0 (gradient 0); any other sum divides.
    ok = den != 0
    return torch.where(ok, total / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(total)), lse
