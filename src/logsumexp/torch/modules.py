"""``nn.Module`` faces of the losses: thin wrappers that check their options once, in ``__init__``."""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor, nn

from . import _checks
from .._options import CrossEntropyOptions, Reduction
from .functional import cross_entropy, linear_cross_entropy


def _repr(opts: CrossEntropyOptions, has_weight: bool) -> str:
    parts = [f"ignore_index={opts.ignore_index}", f"reduction={opts.reduction!r}"]
    if opts.label_smoothing:
        parts.append(f"label_smoothing={opts.label_smoothing}")
    if opts.z_loss:
        parts.append(f"z_loss={opts.z_loss}")
    if opts.softcap is not None:
        parts.append(f"softcap={opts.softcap}")
    if opts.return_lse:
        parts.append("return_lse=True")
    if has_weight:
        parts.append("weighted=True")
    return ", ".join(parts)


def _setup(module: nn.Module, weight_name: str, weight: Tensor | None, **options: object) -> None:
    """Validate the options once (``module.options``) and register the class weights as a buffer."""
    module.options = CrossEntropyOptions(**options)  # type: ignore[arg-type]
    if weight is not None:
        w = _checks.floating(weight_name, weight)
        if w.ndim != 1:
            raise ValueError(f"{weight_name} must be 1-d (one weight per class), got shape {tuple(w.shape)}")
    module.register_buffer(weight_name, weight)


class CrossEntropyLoss(nn.Module):
    """Module form of :func:`logsumexp.torch.cross_entropy` (drop-in for ``nn.CrossEntropyLoss``).

    ``forward(input, target, num_items=None)``; ``num_items`` (number or 0-d tensor) divides the
    summed loss instead of the mean's denominator, e.g. the token count of a whole accumulated batch.

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import CrossEntropyLoss
    >>> loss_fn = CrossEntropyLoss(label_smoothing=0.1, z_loss=1e-4)
    >>> loss_fn
    CrossEntropyLoss(ignore_index=-100, reduction='mean', label_smoothing=0.1, z_loss=0.0001)
    >>> loss_fn(torch.zeros(2, 3), torch.tensor([0, 2])).shape
    torch.Size([])
    """

    weight: Tensor | None

    def __init__(
        self,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        *,
        z_loss: float = 0.0,
        softcap: float | None = None,
        return_lse: bool = False,
    ) -> None:
        super().__init__()
        _setup(self, "weight", weight, ignore_index=ignore_index, reduction=reduction,
               label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap, return_lse=return_lse)

    def forward(
        self, input: Tensor, target: Tensor, num_items: float | Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        o = self.options if num_items is None else replace(self.options, num_items=num_items)
        return cross_entropy(
            input, target, self.weight, o.ignore_index, o.reduction, o.label_smoothing,
            z_loss=o.z_loss, softcap=o.softcap, num_items=o.num_items, return_lse=o.return_lse,
        )

    def extra_repr(self) -> str:
        return _repr(self.options, self.weight is not None)


class LinearCrossEntropyLoss(nn.Module):
    """Module form of :func:`logsumexp.torch.linear_cross_entropy`: the loss of a projection.

    ``forward(hidden, weight, target, bias=None, num_items=None)`` with the projection's
    ``weight`` (e.g. ``lm_head.weight``) passed in, so that the module owns no parameter and the
    full logits are never built.

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import LinearCrossEntropyLoss
    >>> head = torch.nn.Linear(4, 10, bias=False)
    >>> loss_fn = LinearCrossEntropyLoss(ignore_index=0)
    >>> loss_fn(torch.randn(3, 4), head.weight, torch.tensor([0, 5, 9])).shape
    torch.Size([])
    """

    class_weight: Tensor | None

    def __init__(
        self,
        class_weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        *,
        z_loss: float = 0.0,
        softcap: float | None = None,
        return_lse: bool = False,
    ) -> None:
        super().__init__()
        _setup(self, "class_weight", class_weight, ignore_index=ignore_index, reduction=reduction,
               label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap, return_lse=return_lse)

    def forward(
        self,
        hidden: Tensor,
        weight: Tensor,
        target: Tensor,
        bias: Tensor | None = None,
        num_items: float | Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        o = self.options if num_items is None else replace(self.options, num_items=num_items)
        return linear_cross_entropy(
            hidden, weight, target, bias, class_weight=self.class_weight,
            ignore_index=o.ignore_index, reduction=o.reduction,
            label_smoothing=o.label_smoothing, z_loss=o.z_loss, softcap=o.softcap,
            num_items=o.num_items, return_lse=o.return_lse,
        )

    def extra_repr(self) -> str:
        return _repr(self.options, self.class_weight is not None)
