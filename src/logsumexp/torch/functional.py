"""Functional face: cross-entropy (drop-in for ``torch.nn.functional.cross_entropy``), fused
linear + cross-entropy, and LSE / softmax / log-softmax with the special-value rules of DESIGN.md §2.

CPU tensors run the chunked pure-torch operators of this package. CUDA tensors go to
``logsumexp.triton`` (same signatures) when it imports, else to the same torch operators.
"""

from __future__ import annotations

import importlib

from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from . import _autograd  # noqa: F401  (attaches the autograd formulas to the operators)
from . import _checks, _ops
from ._kernels import acc_dtype
from .._options import CrossEntropyOptions, Reduction

__all__ = ["cross_entropy", "linear_cross_entropy", "log_softmax", "logsumexp", "softmax"]


def _triton_or_none() -> ModuleType | None:
    """``logsumexp.triton`` if it imports (Triton and a GPU build present), else None."""
    try:
        return importlib.import_module("logsumexp.triton")
    except ImportError:
        return None


def _on_cuda(*tensors: object) -> Any:
    """The Triton face when the first tensor lives on a CUDA device and it is importable."""
    first = tensors[0]
    if isinstance(first, Tensor) and first.is_cuda:
        return _triton_or_none()
    return None


# --------------------------------------------------------------------------- cross-entropy


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
    num_items: float | Tensor | None = None,
    return_lse: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Cross-entropy of logits against class indices or class probabilities.

    Drop-in for :func:`torch.nn.functional.cross_entropy` (class dimension 1, or 0 for an
    unbatched input; same weights, ``ignore_index``, reductions and label smoothing). Per counted row

    .. math::  \ell = w_t (1-\varepsilon)(\mathrm{LSE}(x) - x_t)
               + \tfrac{\varepsilon}{C} \sum_c w_c (\mathrm{LSE}(x) - x_c) + z\,\mathrm{LSE}(x)^2,

    and with probabilities ``q``: ``Σ_c w_c q'_c (LSE(x) − x_c) + z·LSE²``, ``q' = (1−ε)q + ε/C``.
    ``"mean"`` divides the sum by ``Σ w_t`` over counted rows (torch's weighted mean; the number
    of rows for probability targets), or by ``num_items`` when given.

    Extras: ``z_loss`` (PaLM auxiliary term, counted rows only, unweighted), ``softcap``
    (logits become ``softcap·tanh(x/softcap)`` first, Gemma 2), ``num_items`` (number or 0-d
    tensor), ``return_lse`` (also return the per-row LSE, float32 — float64 for float64 input).

    Stability: ``−log p_t = (m − x_t) + log1p(Σ_{i≠argmax} exp(x_i − m))``, ``m = max x``: no
    overflow, and a confident prediction keeps its relative accuracy. The backward pass
    recomputes the softmax from the saved float32 row LSE, so no N × C temporary is kept.

    Special values: a batch with no counted row gives loss 0 and gradient 0 (torch: NaN);
    a class of weight 0 or probability 0 adds 0 even where its logit is −inf; ``k`` logits at
    +inf share the probability; NaN stays in its row. The loss comes back in float32 for
    float16/bfloat16 input (torch: the input dtype), float64 for float64.

    Raises IndexError for a class index out of range (eager CPU), TypeError/ValueError for bad
    dtypes, shapes or options.

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import cross_entropy
    >>> x = torch.tensor([[20.0, 0.0, 0.0]])
    >>> t = torch.tensor([0])
    >>> torch.nn.functional.cross_entropy(x, t).item()    # rounds to 0
    0.0
    >>> f"{cross_entropy(x, t).item():.3e}"               # 2·exp(−20)
    '4.122e-09'
    >>> cross_entropy(torch.tensor([[1000.0, 1000.0, 1000.0]]), t)   # log 3
    tensor(1.0986)
    """
    opts = CrossEntropyOptions(
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        num_items=num_items,
        return_lse=return_lse,
    )
    rows = _checks.cross_entropy_rows(input, target)
    n_cls = rows.logits.shape[-1]
    w = _checks.class_weight("weight", weight, n_cls)
    _checks.target_range(target, n_cls, ignore_index)
    triton_face = _on_cuda(input)
    if triton_face is not None:
        return triton_face.cross_entropy(
            input, target, weight, ignore_index, reduction, label_smoothing, z_loss=z_loss,
            softcap=softcap, num_items=num_items, return_lse=return_lse, inplace_backward=False,
        )
    return _cross_entropy(rows, w, opts)


def _op_options(opts: CrossEntropyOptions) -> tuple[int, float, float, float | None]:
    """The flat tail of every operator schema, from the one options object."""
    softcap = None if opts.softcap is None else float(opts.softcap)
    return opts.ignore_index, float(opts.label_smoothing), float(opts.z_loss), softcap


def _cross_entropy(rows: _checks.Rows, weight: Tensor | None, opts: CrossEntropyOptions):
    losses, lse = _ops.cross_entropy_rows(rows.logits, rows.target, weight, *_op_options(opts))
    loss = _reduce(losses, rows, weight, opts)
    return (loss, lse.reshape(rows.shape)) if opts.return_lse else loss


def _denominator(target: Tensor, weight: Tensor | None, opts: CrossEntropyOptions) -> Tensor | float:
    """What "mean" divides by: num_items, else Σ w_t over counted rows (or the row count)."""
    if opts.num_items is not None:
        return opts.num_items
    if target.is_floating_point():
        return float(target.shape[0])  # torch divides probability targets by the row count
    valid = target != opts.ignore_index
    if weight is None:
        return valid.sum()
    return torch.where(valid, weight[torch.where(valid, target, 0)], 0.0).sum()


def _safe_divide(total: Tensor, den: Tensor | float) -> Tensor:
    """``total / den`` with 0/0 = 0: no counted row means loss 0 (and gradient 0, not NaN)."""
    if not isinstance(den, Tensor):
        return total / den if den > 0 else total * 0.0
    den = den.to(total.dtype)
    return total / torch.where(den > 0, den, 1.0)


def _reduce(losses: Tensor, rows: _checks.Rows, weight: Tensor | None, opts: CrossEntropyOptions):
    if opts.reduction == "none":
        return losses.reshape(rows.shape)
    total = losses.sum()
    if opts.reduction == "sum":
        return total
    return _safe_divide(total, _denominator(rows.target, weight, opts))


# --------------------------------------------------------------------------- linear + CE


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = None,
    *,
    class_weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    num_items: float | Tensor | None = None,
    return_lse: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""``cross_entropy(hidden @ weight.T + bias, target, ...)`` without the full logits matrix.

    ``hidden`` is ``(..., D)``, ``weight`` ``(V, D)``, ``bias`` ``(V,)``, ``target`` ``(...)``
    class indices (or ``(..., V)`` probabilities); the classes are the last dimension of the
    logits. Options and formula as :func:`cross_entropy` (``class_weight`` is its ``weight``).

    Memory: tokens are processed in chunks whose logits take about 64 MiB; with reduction "mean"
    or "sum" the gradients of hidden, weight (accumulated in float32) and bias are computed in the
    same pass, so forward + backward costs three matrix products (``6·N·D·V`` FLOPs), the floor.
    With reduction "none" the backward recomputes each chunk's logits (one product more).
    The gradients are computed during the forward pass whenever grad mode is on and an input
    requires grad. The returned LSE is not differentiable.

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import linear_cross_entropy
    >>> g = torch.Generator().manual_seed(0)
    >>> h = torch.randn(6, 4, generator=g, requires_grad=True)
    >>> w = torch.randn(10, 4, generator=g, requires_grad=True)
    >>> t = torch.tensor([1, 2, 3, -100, 5, 9])
    >>> loss = linear_cross_entropy(h, w, t)
    >>> ref = torch.nn.functional.cross_entropy(h @ w.T, t)
    >>> torch.allclose(loss, ref)
    True
    >>> loss.backward(); w.grad.shape
    torch.Size([10, 4])
    """
    opts = CrossEntropyOptions(
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        num_items=num_items,
        return_lse=return_lse,
    )
    h, w, b = _linear_args(hidden, weight, bias)
    v = w.shape[0]
    tgt = _checks.tensor("target", target)
    probs = tgt.is_floating_point()
    expected = tuple(h.shape[:-1]) + ((v,) if probs else ())
    if tuple(tgt.shape) != expected:
        raise ValueError(f"target must have shape {expected} for hidden {tuple(h.shape)} and "
                         f"weight {tuple(w.shape)}, got {tuple(tgt.shape)}")
    if tgt.dtype == torch.bool or tgt.is_complex():
        raise TypeError(f"target must hold integer class indices or probabilities, got {tgt.dtype}")
    cw = _checks.class_weight("class_weight", class_weight, v)
    _checks.target_range(tgt, v, ignore_index)
    triton_face = _on_cuda(hidden)
    if triton_face is not None:
        return triton_face.linear_cross_entropy(
            hidden, weight, target, bias, class_weight=class_weight, ignore_index=ignore_index,
            reduction=reduction, label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap,
            num_items=num_items, return_lse=return_lse,
        )
    return _linear_cross_entropy(h, w, b, tgt, cw, opts)


def _linear_args(hidden: object, weight: object, bias: object) -> tuple[Tensor, Tensor, Tensor | None]:
    h = _checks.floating("hidden", hidden)
    w = _checks.floating("weight", weight)
    if h.ndim < 1 or w.ndim != 2 or w.shape[1] != h.shape[-1]:
        raise ValueError(f"weight must have shape (V, {h.shape[-1] if h.ndim else 'D'}) for hidden "
                         f"{tuple(h.shape)}, got {tuple(w.shape)}")
    if w.shape[0] == 0:
        raise ValueError("weight must have at least one class (row), got 0")
    if w.dtype != h.dtype:
        raise TypeError(f"weight must have hidden's dtype {h.dtype}, got {w.dtype}")
    if bias is None:
        return h, w, None
    b = _checks.floating("bias", bias)
    if b.shape != (w.shape[0],) or b.dtype != h.dtype:
        raise ValueError(f"bias must have shape ({w.shape[0]},) and dtype {h.dtype}, "
                         f"got {tuple(b.shape)} {b.dtype}")
    return h, w, b


def _linear_cross_entropy(h, w, b, tgt, cw, opts: CrossEntropyOptions):
    rows = _checks.Rows(h.reshape(-1, h.shape[-1]), _flat_target(tgt, w.shape[0]), tuple(tgt.shape))
    shape = tuple(h.shape[:-1])
    acc = acc_dtype(h.dtype)
    scale = None
    if opts.reduction == "sum":
        scale = h.new_ones((), dtype=acc)
    elif opts.reduction == "mean":
        scale = 1.0 / _as_tensor(_safe_den(_denominator(rows.target, cw, opts)), h)
    grad_on = torch.is_grad_enabled()
    grad_h = grad_on and h.requires_grad
    grad_w = grad_on and (w.requires_grad or (b is not None and b.requires_grad))
    loss, lse, *_ = _ops.linear_cross_entropy(
        rows.logits, w, b, rows.target, cw, scale, *_op_options(opts), grad_h, grad_w
    )
    if opts.reduction == "none":
        loss = loss.reshape(shape)
    return (loss, lse.detach().reshape(shape)) if opts.return_lse else loss


def _flat_target(tgt: Tensor, v: int) -> Tensor:
    return tgt.reshape(-1, v) if tgt.is_floating_point() else tgt.reshape(-1).long()


def _safe_den(den: Tensor | float) -> Tensor | float:
    if isinstance(den, Tensor):
        return torch.where(den > 0, den, torch.ones_like(den))
    return den if den > 0 else 1.0


def _as_tensor(value: Tensor | float, like: Tensor) -> Tensor:
    """A 0-d tensor in the accumulation dtype, on ``like``'s device."""
    dtype = acc_dtype(like.dtype)
    if isinstance(value, Tensor):
        return value.to(device=like.device, dtype=dtype)
    return like.new_tensor(value, dtype=dtype)


# --------------------------------------------------------------------------- LSE, softmax


def _last_dim(name: str, x: object, dim: object) -> tuple[Tensor, int]:
    t = _checks.tensor(name, x)
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must have a real dtype, got {t.dtype}")
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())  # integers promote to the default float
    return t, _checks.dim("dim", dim, t.ndim)


def logsumexp(x: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    r"""``log Σ exp(x)`` along ``dim``, computed as ``m + log1p(Σ_{i≠argmax} exp(x_i − m))``.

    ``m = max x`` keeps ``exp`` from overflowing; leaving the arg max out of the sum lets
    ``log1p`` keep the small terms (Blanchard, Higham & Higham 2021). Special values: an all −inf
    (or empty) slice gives −inf with gradient 0; ``k`` entries at +inf give +inf and the gradient
    ``1/k`` on each; NaN stays in its slice. The gradient is ``softmax(x)``, recomputed from the
    result. float16/bfloat16 are accumulated in float32; the result has the input's dtype.

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import logsumexp
    >>> x = torch.tensor([1000.0, 1000.0, 1000.0])
    >>> x.exp().sum().log()                      # naive: overflows
    tensor(inf)
    >>> logsumexp(x, dim=0)                      # 1000 + log 3
    tensor(1001.0986)
    >>> y = torch.full((2,), -torch.inf, requires_grad=True)
    >>> out = logsumexp(y, 0); out.backward(); out.item(), y.grad
    (-inf, tensor([0., 0.]))
    """
    t, d = _last_dim("x", x, dim)
    triton_face = _on_cuda(t)
    if triton_face is not None:
        return triton_face.logsumexp(t, d, keepdim)
    src = t.reshape(1) if t.ndim == 0 else t.movedim(d, -1)
    out = _ops.logsumexp_last(src).to(t.dtype)
    if t.ndim == 0:
        return out.reshape(())
    return out.unsqueeze(d) if keepdim else out


def _softmax(x: Tensor, dim: int, log: bool) -> Tensor:
    t, d = _last_dim("x", x, dim)
    triton_face = _on_cuda(t)
    if triton_face is not None:
        return (triton_face.log_softmax if log else triton_face.softmax)(t, d)
    src = t.reshape(1) if t.ndim == 0 else t.movedim(d, -1)
    out = _ops.softmax_last(src, log)
    return out.reshape(()) if t.ndim == 0 else out.movedim(-1, d)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    r"""``exp(x − m) / Σ exp(x − m)`` along ``dim`` (the division form, the more accurate one).

    Special values: an all −inf slice gives all 0 (gradient 0, never NaN); ``k`` entries at
    +inf get ``1/k`` each and the rest 0; NaN stays in its slice.

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import softmax
    >>> softmax(torch.tensor([[-torch.inf, -torch.inf], [torch.inf, 0.0]]))
    tensor([[0., 0.],
            [1., 0.]])
    """
    return _softmax(x, dim, log=False)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    r"""``x − m − log1p(Σ_{i≠argmax} exp(x_i − m))`` along ``dim``.

    The ``log1p`` form keeps the log-probability of a dominant entry accurate (−4.1e−9 for
    ``[20, 0, 0]`` in float32, where ``x − LSE(x)`` gives 0). Special values: an all −inf slice
    gives −inf everywhere with gradient 0; ``k`` entries at +inf give ``−log k`` there and −inf
    elsewhere; NaN stays in its slice.

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import log_softmax
    >>> log_softmax(torch.tensor([20.0, 0.0, 0.0]))[0]
    tensor(-4.1223e-09)
    """
    return _softmax(x, dim, log=True)
