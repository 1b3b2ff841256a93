"""Argument checks and shape normalisation of the torch face (user input never meets ``assert``).

Shape and dtype checks read only metadata, so they are free under ``torch.compile``. The target
range check reads the data: it runs only in eager mode on CPU tensors, where it costs no
device-host synchronisation and cannot break a graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._options import target_out_of_range


@dataclass(frozen=True)
class Rows:
    """Inputs reshaped to rows: logits ``(N, C)``, target ``(N,)`` or ``(N, C)``, output shape."""

    logits: Tensor
    target: Tensor
    shape: tuple[int, ...]


def tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def floating(name: str, value: object) -> Tensor:
    x = tensor(name, value)
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
    return x


def class_weight(name: str, weight: object, n_classes: int) -> Tensor | None:
    if weight is None:
        return None
    w = floating(name, weight)
    if w.shape != (n_classes,):
        raise ValueError(
            f"{name} must have shape ({n_classes},) (one weight per class), got {tuple(w.shape)}"
        )
    return w


def _target(input_shape: tuple[int, ...], target: Tensor, class_dim: int) -> bool:
    """Check the target's dtype and shape; return True for probability targets."""
    if target.is_floating_point():
        if tuple(target.shape) != input_shape:
            raise ValueError(
                f"target of probabilities must have the input's shape {input_shape}, "
                f"got {tuple(target.shape)}"
            )
        return True
    if target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"target must hold integer class indices or probabilities, got {target.dtype}")
    expected = input_shape[:class_dim] + input_shape[class_dim + 1 :]
    if tuple(target.shape) != expected:
        raise ValueError(
            f"target of class indices must have shape {expected} (the input's shape without its "
            f"class dimension {class_dim}), got {tuple(target.shape)}"
        )
    return False


def cross_entropy_rows(input: object, target: object, class_dim_last: bool = False) -> Rows:
    """Validate logits/target and flatten them to rows (class dimension 1, or 0 when unbatched).

    ``class_dim_last`` is for ``linear_cross_entropy``, whose classes are the last dimension.
    """
    x = floating("input", input)
    t = tensor("target", target)
    if x.ndim == 0:
        raise ValueError("input must have a class dimension, got a 0-d tensor")
    class_dim = x.ndim - 1 if class_dim_last else min(1, x.ndim - 1)
    n_cls = x.shape[class_dim]
    if n_cls == 0:
        raise ValueError(f"input must have at least one class, got shape {tuple(x.shape)}")
    probs = _target(tuple(x.shape), t, class_dim)
    # (N, C) input, the common call, is already rows: no view to make.
    logits = x if x.ndim == 2 and class_dim == 1 else x.movedim(class_dim, -1).reshape(-1, n_cls)
    if probs:
        rows_t = t.movedim(class_dim, -1).reshape(-1, n_cls)
        shape = tuple(t.shape[:class_dim] + t.shape[class_dim + 1 :])
    else:
        rows_t = (t if t.ndim == 1 else t.reshape(-1)).long()
        shape = tuple(t.shape)
    return Rows(logits, rows_t, shape)


def target_range(target: Tensor, n_classes: int, ignore_index: int) -> None:
    """Raise IndexError naming the first out-of-range class index and its position.

    Eager CPU only: on a device the check would synchronise; under compile it would break the graph.
    """
    if target.is_floating_point() or target.device.type != "cpu":
        return
    if torch.compiler.is_compiling():
        return
    target = _plain(target)
    if target.numel():
        lo, hi = torch.aminmax(target)  # one pass: every index in range is the common case
        if 0 <= int(lo) and int(hi) < n_classes:
            return
    bad = (target != ignore_index) & ((target < 0) | (target >= n_classes))
    if bool(bad.any()):
        pos = tuple(int(i) for i in bad.nonzero()[0])
        raise target_out_of_range(int(target[pos]), pos, n_classes, ignore_index)


def _plain(t: Tensor) -> Tensor:
    """The data under ``torch.func`` wrappers (a batched tensor holds every sample): a value check
    reads it there, where ``vmap`` would refuse the host read of ``bool(...)``."""
    while torch._C._functorch.is_functorch_wrapped_tensor(t):
        t = torch._C._functorch.get_unwrapped(t)
    return t


def dim(name: str, value: object, ndim: int) -> int:
    """Normalise one dimension index (negative counts from the end)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    size = max(ndim, 1)
    if not -size <= value < size:
        raise ValueError(f"{name}={value} is out of range for a tensor with {ndim} dimensions")
    return value % size


def linear_rows(hidden: object, weight: object, bias: object, target: object) -> tuple:
    """Validate ``linear_cross_entropy``'s tensors; return ``(hidden rows (N, D), weight, bias,
    target rows, target shape)`` with the classes the last dimension of the logits."""
    h = floating("hidden", hidden)
    w = floating("weight", weight)
    if h.ndim < 1 or w.ndim != 2 or w.shape[1] != h.shape[-1]:
        raise ValueError(f"weight must have shape (V, {h.shape[-1] if h.ndim else 'D'}) for hidden "
                         f"{tuple(h.shape)}, got {tuple(w.shape)}")
    v = w.shape[0]
    if v == 0:
        raise ValueError("weight must have at least one class (row), got 0")
    if w.dtype != h.dtype:
        raise TypeError(f"weight must have hidden's dtype {h.dtype}, got {w.dtype}")
    b = None
    if bias is not None:
        b = floating("bias", bias)
        if b.shape != (v,) or b.dtype != h.dtype:
            raise ValueError(f"bias must have shape ({v},) and dtype {h.dtype}, "
                             f"got {tuple(b.shape)} {b.dtype}")
    t = tensor("target", target)
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"target must hold integer class indices or probabilities, got {t.dtype}")
    probs = t.is_floating_point()
    expected = tuple(h.shape[:-1]) + ((v,) if probs else ())
    if tuple(t.shape) != expected:
        raise ValueError(f"target must have shape {expected} for hidden {tuple(h.shape)} and "
                         f"weight {tuple(w.shape)}, got {tuple(t.shape)}")
    rows_t = t.reshape(-1, v) if probs else t.reshape(-1).long()
    return h.reshape(-1, h.shape[-1]), w, b, rows_t, tuple(h.shape[:-1])


def positive_int(name: str, value: object) -> int | None:
    """None, or an int ≥ 1 (a chunk size)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def optional_bool(name: str, value: object) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool or None, got {type(value).__name__}")
    return value
