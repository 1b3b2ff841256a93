"""``nn.Module`` faces of the losses: one shared base holding torch's mutable attributes.

As in ``torch.nn.CrossEntropyLoss``, ``ignore_index``, ``reduction``, ``label_smoothing`` (and our
``z_loss``, ``softcap``, ``return_lse``) are plain attributes and the class weights a buffer:
assigning one after construction changes the next call. The options are checked once in
``__init__`` (an early error) and again, by the function, on every call (so an assigned value is
checked too; it is a handful of comparisons).
"""

# No ``from __future__ import annotations``: torch.jit.script reads the class annotations as objects.

from typing import Optional, Union

import torch
from torch import Tensor, nn

from . import _checks, _script
from .._options import CrossEntropyOptions, Reduction
from .functional import _reduction, cross_entropy, linear_cross_entropy


class _CrossEntropyBase(nn.Module):
    """Shared attributes, checks and ``repr`` of the two losses; ``_weight_name`` names the buffer."""

    _weight_name = "weight"
    # Not compiled by torch.jit.script (a dataclass); the scripted forward reads the attributes.
    __jit_unused_properties__ = ["options"]

    def __init__(
        self,
        weight: Tensor | None,
        ignore_index: int,
        reduction: Reduction,
        label_smoothing: float,
        z_loss: float,
        softcap: float | None,
        return_lse: bool,
    ) -> None:
        super().__init__()
        if weight is not None:
            w = _checks.floating(self._weight_name, weight)
            if w.ndim != 1:
                raise ValueError(f"{self._weight_name} must be 1-d (one weight per class), "
                                 f"got shape {tuple(w.shape)}")
        self.register_buffer(self._weight_name, weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.return_lse = return_lse
        self.options  # noqa: B018  (validates now rather than at the first call)

    @property
    def options(self) -> CrossEntropyOptions:
        """The current attributes as one validated :class:`CrossEntropyOptions`."""
        return CrossEntropyOptions(
            ignore_index=self.ignore_index, reduction=self.reduction,
            label_smoothing=self.label_smoothing, z_loss=self.z_loss, softcap=self.softcap,
            return_lse=self.return_lse,
        )

    def _keywords(self, num_items: float | Tensor | None) -> dict:
        return dict(ignore_index=self.ignore_index, reduction=self.reduction,
                    label_smoothing=self.label_smoothing, z_loss=self.z_loss,
                    softcap=self.softcap, num_items=num_items, return_lse=self.return_lse)

    def extra_repr(self) -> str:
        parts = [f"ignore_index={self.ignore_index}", f"reduction={self.reduction!r}"]
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing}")
        if self.z_loss:
            parts.append(f"z_loss={self.z_loss}")
        if self.softcap is not None:
            parts.append(f"softcap={self.softcap}")
        if self.return_lse:
            parts.append("return_lse=True")
        if getattr(self, self._weight_name) is not None:
            parts.append("weighted=True")
        return ", ".join(parts)


class CrossEntropyLoss(_CrossEntropyBase):
    """Module form of :func:`logsumexp.torch.cross_entropy` (drop-in for ``nn.CrossEntropyLoss``).

    torch's positional order ``(weight, size_average, ignore_index, reduce, reduction,
    label_smoothing)`` with its mutable attributes; extras keyword-only.
    ``forward(input, target, num_items=None)``; ``num_items`` (number or 0-d tensor) divides the
    summed loss instead of the mean's denominator, e.g. the token count of a whole accumulated batch.

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import CrossEntropyLoss
    >>> loss_fn = CrossEntropyLoss(label_smoothing=0.1, z_loss=1e-4)
    >>> loss_fn
    CrossEntropyLoss(ignore_index=-100, reduction='mean', label_smoothing=0.1, z_loss=0.0001)
    >>> loss_fn.reduction = "none"
    >>> loss_fn(torch.zeros(2, 3), torch.tensor([0, 2])).shape
    torch.Size([2])
    """

    # typing.Optional, not ``Tensor | None``: torch.jit.script reads the class annotations.
    weight: Optional[Tensor]  # noqa: UP045

    def __init__(
        self,
        weight: Tensor | None = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        *,
        z_loss: float = 0.0,
        softcap: float | None = None,
        return_lse: bool = False,
    ) -> None:
        super().__init__(weight, ignore_index, _reduction(size_average, reduce, reduction),
                         label_smoothing, z_loss, softcap, return_lse)

    def forward(
        self, input: Tensor, target: Tensor, num_items: Union[float, Tensor, None] = None  # noqa: UP007
    ) -> Union[Tensor, tuple[Tensor, Tensor]]:  # noqa: UP007  (typing forms: torch.jit.script reads them)
        if torch.jit.is_scripting():
            # TorchScript: the same operator through the dispatcher (see _script).
            count: Optional[Tensor] = None  # noqa: UP045
            if isinstance(num_items, float):
                count = torch.tensor(num_items)
            elif isinstance(num_items, Tensor):
                count = num_items
            loss, lse = _script.cross_entropy(
                input, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing,
                self.z_loss, self.softcap, count,
            )
            if self.return_lse:
                return loss, lse
            return loss
        return self._eager(input, target, num_items)

    @torch.jit.unused
    def _eager(
        self, input: Tensor, target: Tensor, num_items: Union[float, Tensor, None]  # noqa: UP007
    ) -> Union[Tensor, tuple[Tensor, Tensor]]:  # noqa: UP007
        return cross_entropy(input, target, self.weight, **self._keywords(num_items))


class LinearCrossEntropyLoss(_CrossEntropyBase):
    """Module form of :func:`logsumexp.torch.linear_cross_entropy`: the loss of a projection.

    ``forward(hidden, weight, target, bias=None, num_items=None)`` with the projection's
    ``weight`` (e.g. ``lm_head.weight``) passed in, so that the module owns no parameter and the
    full logits are never built. Attributes as :class:`CrossEntropyLoss` (the class weights are
    the ``class_weight`` buffer), plus ``chunk_size`` and ``fp32_weight_grad``.

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
    _weight_name = "class_weight"

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
        chunk_size: int | None = None,
        fp32_weight_grad: bool | None = None,
    ) -> None:
        super().__init__(class_weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
                         return_lse)
        self.chunk_size = _checks.positive_int("chunk_size", chunk_size)
        self.fp32_weight_grad = _checks.optional_bool("fp32_weight_grad", fp32_weight_grad)

    def forward(
        self,
        hidden: Tensor,
        weight: Tensor,
        target: Tensor,
        bias: Tensor | None = None,
        num_items: float | Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        return linear_cross_entropy(
            hidden, weight, target, bias, class_weight=self.class_weight,
            chunk_size=self.chunk_size, fp32_weight_grad=self.fp32_weight_grad,
            **self._keywords(num_items),
        )
