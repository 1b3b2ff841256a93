"""Options of every cross-entropy implementation: the array core, the torch face and the Triton kernels.

Passing one small frozen dataclass (instead of a long row of positional arguments) keeps the
autograd Functions and the kernel launchers readable, and validates every option in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Union

if TYPE_CHECKING:
    import torch

Reduction = Literal["none", "sum", "mean"]
_REDUCTIONS = ("none", "sum", "mean")


@dataclass(frozen=True)
class CrossEntropyOptions:
    """Validated options of a cross-entropy call (torch's names and defaults, plus our extras).

    ignore_index:    target value whose rows are skipped (loss 0, gradient 0, not counted).
    reduction:       "none" (per row), "sum", or "mean" (torch's weighted mean).
    label_smoothing: ε in [0, 1]; the target becomes (1 − ε)·onehot + ε/C.
    z_loss:          coefficient of the PaLM auxiliary term z_loss · LSE² per counted row (≥ 0).
    softcap:         if set (> 0), logits become softcap · tanh(logits / softcap) first (Gemma 2).
    num_items:       if set (> 0), the summed loss is divided by this count instead of the mean's
                     denominator (gradient accumulation, data parallelism); only with reduction="mean".
                     A 0-d real tensor is accepted too (e.g. a count all-reduced on the device); its
                     value is not checked, since reading it would synchronise the device.
    return_lse:      also return the per-row LSE (float32).
    """

    ignore_index: int = -100
    reduction: Reduction = "mean"
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    softcap: float | None = None
    num_items: Union[float, "torch.Tensor", None] = None
    return_lse: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.ignore_index, bool) or not isinstance(self.ignore_index, int):
            raise TypeError(f"ignore_index must be an int, got {type(self.ignore_index).__name__}")
        if self.reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {self.reduction!r}")
        _check_real("label_smoothing", self.label_smoothing)
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {self.label_smoothing}")
        _check_real("z_loss", self.z_loss)
        if not (self.z_loss >= 0.0 and math.isfinite(self.z_loss)):
            raise ValueError(f"z_loss must be finite and >= 0, got {self.z_loss}")
        if self.softcap is not None:
            _check_real("softcap", self.softcap)
            if not (self.softcap > 0.0 and math.isfinite(self.softcap)):
                raise ValueError(f"softcap must be finite and > 0 (or None), got {self.softcap}")
        if _is_tensor(self.num_items):
            _check_count_tensor(self.num_items)
        elif self.num_items is not None:
            _check_real("num_items", self.num_items)
            if not self.num_items > 0:
                raise ValueError(f"num_items must be > 0, got {self.num_items}")
        if self.num_items is not None and self.reduction != "mean":
            raise ValueError(
                f"num_items replaces the mean's denominator, so it needs reduction='mean', "
                f"got reduction={self.reduction!r}"
            )
        if not isinstance(self.return_lse, bool):
            raise TypeError(f"return_lse must be a bool, got {type(self.return_lse).__name__}")


def _check_real(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")


def _is_tensor(value: object) -> bool:
    # torch is only looked up, never imported here: this module stays importable without it.
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _check_count_tensor(value: torch.Tensor) -> None:
    if value.ndim != 0:
        raise ValueError(f"num_items must be a number or a 0-d tensor, got shape {tuple(value.shape)}")
    if value.dtype.is_complex or str(value.dtype) == "torch.bool":
        raise TypeError(f"num_items must be a real tensor, got dtype {value.dtype}")


def target_out_of_range(value: int, position: tuple[int, ...], n_classes: int, ignore_index: int) -> IndexError:
    """The one IndexError every backend raises for a class target outside ``[0, n_classes)``.

    Backends find the first bad entry their own way (NumPy, torch, Dask) but word the error here, so a user
    sees the same message whichever face they call.

    >>> str(target_out_of_range(7, (1,), 5, -100))
    'target value 7 at position (1,) is out of range: class indices must be in [0, 5) or equal to ignore_index=-100'
    """
    return IndexError(
        f"target value {value} at position {position} is out of range: class indices must be in "
        f"[0, {n_classes}) or equal to ignore_index={ignore_index}"
    )
