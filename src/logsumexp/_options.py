"""Options of every cross-entropy implementation: the array core, the torch face and the Triton kernels.

Passing one small frozen dataclass (instead of a long row of positional arguments) keeps the
autograd Functions and the kernel launchers readable, and validates every option in one place.
"""

from __future__ import annotations

import sys
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
        _check_int("ignore_index", self.ignore_index)
        if self.reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {self.reduction!r}")
        _check_range("label_smoothing", self.label_smoothing, "in [0, 1]", lambda v: 0.0 <= v <= 1.0)
        _check_range("z_loss", self.z_loss, "finite and >= 0", lambda v: v >= 0.0)
        if self.softcap is not None:
            _check_range("softcap", self.softcap, "finite and > 0 (or None)", lambda v: v > 0.0)
        if _is_tensor(self.num_items):
            _check_count_tensor(self.num_items)
        elif self.num_items is not None:
            _check_range("num_items", self.num_items, "finite and > 0", lambda v: v > 0.0)
        if self.num_items is not None and self.reduction != "mean":
            raise ValueError(
                f"num_items replaces the mean's denominator, so it needs reduction='mean', "
                f"got reduction={self.reduction!r}"
            )
        if not isinstance(self.return_lse, bool):
            raise TypeError(f"return_lse must be a bool, got {type(self.return_lse).__name__}")


# Class indices are stored as int64 by every backend: an ignore_index outside it can match nothing
# and would overflow when handed to a kernel, so it is refused here, by name.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FLOAT_MAX = 1.7976931348623157e308


def _symbolic(value: object) -> bool:
    """True for torch's symbolic numbers (``torch.compile(dynamic=True)`` traces floats as SymFloat).

    torch is only looked up, never imported: this module stays importable without it.
    """
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, (torch.SymInt, torch.SymFloat))


def _check_int(name: str, value: object) -> None:
    if _symbolic(value) and type(value).__name__ == "SymInt":
        return  # a traced int: its value is only known when the graph runs (int64 by construction)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"{name} must fit in a signed 64-bit integer, got {value}")


def _check_range(name: str, value: object, expected: str, ok) -> None:
    """A real number, finite, for which ``ok`` holds; the error names the argument.

    Only ``<=`` comparisons are used, never ``math.isfinite`` or ``float()``: under
    ``torch.compile(dynamic=True)`` a float option is a symbolic SymFloat, which comparisons turn
    into guards but ``isfinite`` cannot take; and a Python int beyond the float range compares
    exactly instead of overflowing in a conversion.
    """
    if not _symbolic(value) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    finite = -_FLOAT_MAX <= value <= _FLOAT_MAX  # False for ±inf and NaN
    if not (finite and ok(value)):
        raise ValueError(f"{name} must be {expected}, got {value}")


def _is_tensor(value: object) -> bool:
    # torch is only looked up, never imported here: this module stays importable without it.
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
