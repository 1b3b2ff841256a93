"""Functional face: cross-entropy (drop-in for ``torch.nn.functional.cross_entropy``), fused
linear + cross-entropy, and LSE / softmax / log-softmax with the library's special-value rules.

Every function validates its arguments once, builds one :class:`CrossEntropyOptions`, reshapes to
rows ``(N, C)`` and then chooses the backend for those rows: the Triton kernels of
``logsumexp.triton`` (their ``*_rows`` functions) for CUDA tensors when that package imports, else
the chunked torch operators of this package (CPU, or CUDA without Triton).
"""

from __future__ import annotations

import functools
import math
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

from . import _checks, _compiled, _func_impl, _ops
from ._cpu_impl import acc_dtype
from .._options import CrossEntropyOptions, Reduction

__all__ = ["cross_entropy", "linear_cross_entropy", "log_softmax", "logsumexp", "softmax"]


def _load_triton() -> ModuleType | None:
    """``logsumexp.triton`` if this machine has CUDA and the package imports, else None.

    Looked up once, when this module is imported, so that the dispatch inside a function that
    ``torch.compile`` traces is a read of a module global (an import there breaks the graph).
    """
    if not torch.cuda.is_available():
        return None
    try:
        from .. import triton as face
    except ImportError:
        return None
    return face if hasattr(face, "cross_entropy_rows") else None


_TRITON: ModuleType | None = _load_triton()


def _rows_backend(rows: Tensor) -> ModuleType | None:
    """The Triton face for rows on a CUDA device when it is available; None means torch ops."""
    return _TRITON if rows.is_cuda and _TRITON is not None else None


def _reduction(size_average: object, reduce: object, reduction: Reduction) -> Reduction:
    """torch's legacy mapping: either of the two old flags given overrides ``reduction``."""
    if size_average is None and reduce is None:
        return reduction
    return torch.nn._reduction.legacy_get_string(size_average, reduce)  # warns, as torch does


# --------------------------------------------------------------------------- cross-entropy


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
    num_items: float | Tensor | None = None,
    return_lse: bool = False,
    inplace_backward: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Cross-entropy of logits against class indices or class probabilities.

    Drop-in for :func:`torch.nn.functional.cross_entropy` (class dimension 1, or 0 for an
    unbatched input; same weights, ``ignore_index``, reductions and label smoothing). Per counted row

    .. math::  \ell = w_t (1-\varepsilon)(\mathrm{LSE}(x) - x_t)
               + \tfrac{\varepsilon}{C} \sum_c w_c (\mathrm{LSE}(x) - x_c) + z\,\mathrm{LSE}(x)^2,

    and with probabilities ``q``: ``Σ_c w_c q'_c (LSE(x) − x_c) + z·LSE²``, ``q' = (1−ε)q + ε/C``.
    ``"mean"`` divides the sum by ``Σ w_t`` over counted rows (torch's weighted mean; the number
    of rows for probability targets), or by ``num_items`` when given. That sum divides whatever its
    sign (negative or mixed-sign weights, as torch); only where it is exactly 0 (no counted row, or
    weights that cancel) the loss is 0 with gradient 0. A NaN weight on a target class gives NaN;
    a NaN weight on a class no row targets (without label smoothing) does not reach the result.

    torch's positional order is kept, legacy ``size_average``/``reduce`` included (mapped to
    ``reduction`` as torch does, with its deprecation warning).

    Extras (keyword only): ``z_loss`` (PaLM auxiliary term, counted rows only, unweighted),
    ``softcap`` (logits become ``softcap·tanh(x/softcap)`` first, Gemma 2), ``num_items`` (number
    or 0-d tensor), ``return_lse`` (also return the per-row LSE, float32 — float64 for float64
    input), ``inplace_backward`` (the backward writes the gradient over the logits' storage instead
    of allocating a new ``N × C`` tensor, so ``input`` must not be used afterwards; on CPU when the
    logits are contiguous rows and neither ``weight`` nor a probability target needs a gradient,
    else it allocates as usual).

    Gradients flow to ``input``, to probability targets and to ``weight`` (if it requires grad),
    with second derivatives (``create_graph=True``, ``torch.func``) with respect to ``input``.

    Stability: ``−log p_t = (m − x_t) + log1p(Σ_{i≠argmax} exp(x_i − m))``, ``m = max x``: no
    overflow, and a confident prediction keeps its relative accuracy. The backward pass
    recomputes the softmax from the saved float32 row LSE, so no N × C temporary is kept.

    Special values: a batch with no counted row (or counted weights summing to exactly 0) gives
    loss 0 and gradient 0 (torch: NaN or ±inf);
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
    opts = _options(ignore_index, _reduction(size_average, reduce, reduction), label_smoothing, z_loss, softcap,
                    num_items, return_lse)
    if not isinstance(inplace_backward, bool):
        raise TypeError(f"inplace_backward must be a bool, got {type(inplace_backward).__name__}")
    rows = _checks.cross_entropy_rows(input, target)
    n_cls = rows.logits.shape[-1]
    w = _checks.class_weight("weight", weight, n_cls)
    _checks.target_range(target, n_cls, opts.ignore_index)  # positions in the caller's shape
    if _func_impl.transforms_need_plain_ops():  # vmap / forward mode: see _func_impl
        losses, lse = _func_impl.cross_entropy_rows(rows.logits, rows.target, w, opts)
        loss = _reduce(losses, rows, w, opts)
        return (loss, lse.reshape(rows.shape)) if opts.return_lse else loss
    triton_face = _rows_backend(rows.logits)
    if triton_face is not None:
        out = triton_face.cross_entropy_rows(
            rows.logits.contiguous(), rows.target, w, opts, inplace_backward=inplace_backward
        )
        loss, lse = out if opts.return_lse else (out, None)
        if opts.reduction == "none":
            loss = loss.reshape(rows.shape)
        return (loss, lse.reshape(rows.shape)) if opts.return_lse else loss
    losses, lse = _ops.cross_entropy_rows(rows.logits, rows.target, w, opts, inplace_backward)
    loss = _reduce(losses, rows, w, opts)
    return (loss, lse.reshape(rows.shape)) if opts.return_lse else loss


@functools.lru_cache(maxsize=64)
def _options_cached(types: tuple, *values: object) -> CrossEntropyOptions:
    return CrossEntropyOptions(*values[:5], None, values[5])  # type: ignore[arg-type]


def _options(ignore_index: object, reduction: object, label_smoothing: object, z_loss: object, softcap: object,
             num_items: object, return_lse: object) -> CrossEntropyOptions:
    """The call's options, validated once per distinct set of plain values (a training loop passes
    the same ones every step; the checks cost ~10 µs, a small call's whole budget). The key holds
    the values' types, so ``True`` never stands for ``1``; tensors, symbolic values and traced
    calls build the object afresh. A set that fails its checks is not cached: it raises each time."""
    if num_items is None and not torch.compiler.is_compiling():
        values = (ignore_index, reduction, label_smoothing, z_loss, softcap, return_lse)
        try:
            return _options_cached(tuple(map(type, values)), *values)
        except TypeError:
            pass  # unhashable (or a bad type: the constructor below raises it again)
    return CrossEntropyOptions(
        ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing,  # type: ignore[arg-type]
        z_loss=z_loss, softcap=softcap, num_items=num_items, return_lse=return_lse,  # type: ignore[arg-type]
    )


def _denominator(target: Tensor, weight: Tensor | None, opts: CrossEntropyOptions) -> Tensor | float:
    """What "mean" divides by: num_items, else Σ w_t over counted rows (or the row count)."""
    if opts.num_items is not None:
        return opts.num_items
    if target.is_floating_point():
        return float(target.shape[0])  # torch divides probability targets by the row count
    if weight is None:
        # A count: 0 only when every row is ignored, and then the sum of the losses is 0 and has
        # no gradient, so dividing by max(count, 1) is the "loss 0, gradient 0" rule in one step.
        if type(target) is Tensor and target.is_cpu and not torch.compiler.is_compiling() \
                and not torch._C._functorch.is_functorch_wrapped_tensor(target):
            # eager CPU: counted on the target's memory (no device to wait for, no torch ops)
            return max(int(np.count_nonzero(target.numpy() != opts.ignore_index)), 1)
        return (target != opts.ignore_index).sum().clamp_min_(1)
    valid = target != opts.ignore_index
    return torch.where(valid, weight[torch.where(valid, target, 0)], 0.0).sum()


def _safe_divide(total: Tensor, den: Tensor | float) -> Tensor:
    """``total / den``, except that a denominator of exactly 0 gives loss 0 (and gradient 0, not NaN).

    Only an exact 0 is special (nothing counted, or counted weights that cancel): a negative or
    mixed-sign weight sum divides as torch does, and a NaN sum gives NaN.
    """
    if not isinstance(den, Tensor):
        return total / den if den != 0 else total * 0.0
    den = den.to(total.dtype)
    counted = den != 0  # NaN != 0: a NaN weight sum divides, and the loss is NaN as in torch
    # A select, not a division by a stand-in 1: with no counted weight the loss is the constant 0, so
    # nothing (the class weights included) gets a gradient from it.
    return torch.where(counted, total / torch.where(counted, den, 1.0), torch.zeros_like(total))


def _reduce(losses: Tensor, rows: _checks.Rows, weight: Tensor | None, opts: CrossEntropyOptions):
    if opts.reduction == "none":
        return losses.reshape(rows.shape)
    total = losses.sum()
    if opts.reduction == "sum":
        return total
    den = _denominator(rows.target, weight, opts)
    if weight is None and opts.num_items is None and not rows.target.is_floating_point():
        return total / den  # a row count clamped to 1 (see _denominator): nothing to guard
    return _safe_divide(total, den)


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
    fp32_weight_grad: bool | None = None,
    chunk_size: int | None = None,
    allow_retain_graph: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""``cross_entropy(hidden @ weight.T + bias, target, ...)`` without the full logits matrix.

    ``hidden`` is ``(..., D)``, ``weight`` ``(V, D)``, ``bias`` ``(V,)``, ``target`` ``(...)``
    class indices (or ``(..., V)`` probabilities); the classes are the last dimension of the
    logits. Options and formula as :func:`cross_entropy` (``class_weight`` is its ``weight``).

    Memory: tokens are processed in chunks whose logits take about 64 MiB (one buffer, reused);
    with reduction "mean" or "sum" the gradients of hidden, weight (accumulated in float32) and bias are computed in the
    same pass, so forward + backward costs three matrix products (``6·N·D·V`` FLOPs), the floor.
    With reduction "none" the backward recomputes each chunk's logits (one product more).
    The gradients are computed during the forward pass whenever grad mode is on and an input
    requires grad (``class_weight`` included). The returned LSE is not differentiable.

    ``chunk_size`` sets the tokens per chunk (default: 64 MiB of logits). ``fp32_weight_grad`` is
    for the GPU kernels; on CPU the weight's gradient is always accumulated in float32 (float64
    for float64). With reduction "mean" or "sum" the gradients computed in the forward pass are
    handed to the first backward (so that ``weight.grad`` is that buffer, not a copy of it); a
    second backward through the same graph (``retain_graph=True``, ``gradcheck``) raises unless
    ``allow_retain_graph=True`` (CPU path; one more tensor of the weight's size kept).

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
    fp32_weight_grad = _checks.optional_bool("fp32_weight_grad", fp32_weight_grad)
    chunk_size = _checks.positive_int("chunk_size", chunk_size)
    if not isinstance(allow_retain_graph, bool):
        raise TypeError(f"allow_retain_graph must be a bool, got {type(allow_retain_graph).__name__}")
    h, w, b, tgt, shape = _checks.linear_rows(hidden, weight, bias, target)
    v = w.shape[0]
    cw = _checks.class_weight("class_weight", class_weight, v)
    _checks.target_range(target, v, opts.ignore_index)
    triton_face = _rows_backend(h)
    if _func_impl.transforms_need_plain_ops():  # vmap / forward mode: the logits, built (see _func_impl)
        logits = h @ w.T if b is None else torch.addmm(b, h, w.T)
        rows = _checks.Rows(logits, tgt, tuple(shape))
        rows_loss, lse = _func_impl.cross_entropy_rows(logits, tgt, cw, opts)
        loss = _reduce(rows_loss, rows, cw, opts)
        return (loss, lse.detach().reshape(shape)) if opts.return_lse else loss
    if triton_face is not None:
        out = triton_face.linear_cross_entropy_rows(
            h.contiguous(), w, tgt, b, cw, opts, fp32_weight_grad=fp32_weight_grad,
            chunk_size=chunk_size,
        )
        loss, lse = out if opts.return_lse else (out, None)
    else:
        scale = None
        if opts.reduction == "sum":
            scale = h.new_ones((), dtype=acc_dtype(h.dtype))
        elif opts.reduction == "mean":
            den = _as_tensor(_denominator(tgt, cw, opts), h)
            scale = torch.where(den != 0, 1.0 / _safe_den(den), 0.0)  # sum exactly 0: loss 0, no gradient
        loss, lse = _ops.linear_cross_entropy(h, w, b, tgt, cw, scale, opts, chunk_size or 0,
                                              allow_retain_graph)
    if opts.reduction == "none":
        loss = loss.reshape(shape)
    return (loss, lse.detach().reshape(shape)) if opts.return_lse else loss


def _safe_den(den: Tensor | float) -> Tensor | float:
    if isinstance(den, Tensor):
        return torch.where(den != 0, den, torch.ones_like(den))
    return den if den != 0 else 1.0


def _as_tensor(value: Tensor | float, like: Tensor) -> Tensor:
    """A 0-d tensor in the accumulation dtype, on ``like``'s device."""
    dtype = acc_dtype(like.dtype)
    if isinstance(value, Tensor):
        return value.to(device=like.device, dtype=dtype)
    return like.new_tensor(value, dtype=dtype)


# --------------------------------------------------------------------------- LSE, softmax


def _real_input(name: str, x: object, dtype: object = None) -> Tensor:
    """The input as a floating tensor: ``dtype`` applied first (torch's rule), integers promoted."""
    t = _checks.tensor(name, x)
    if dtype is not None:
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
        t = t.to(dtype)
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must have a real dtype, got {t.dtype}")
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())  # integers promote to the default float
    return t


def _last_dim(name: str, x: object, dim: object, dtype: object = None) -> tuple[Tensor, int]:
    t = _real_input(name, x, dtype)
    return t, _checks.dim("dim", dim, t.ndim)


def _dims(dim: object, ndim: int) -> tuple[int, ...]:
    """``dim`` as sorted, distinct, non-negative dimensions: an int, a tuple or list of ints, or
    None (every dimension). An empty tuple also means every dimension, as in torch."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (tuple, list)):
        dims = tuple(_checks.dim("dim", d, ndim) for d in dim)
        if len(set(dims)) != len(dims):
            raise ValueError(f"dim must not repeat a dimension, got {tuple(dim)}")
        return tuple(sorted(dims)) if dims else tuple(range(ndim))
    return (_checks.dim("dim", dim, ndim),)


def logsumexp(
    x: Tensor, dim: int | tuple[int, ...] | list[int] | None = None, keepdim: bool = False, *,
    out: Tensor | None = None,
) -> Tensor:
    r"""``log Σ exp(x)`` over ``dim``, computed as ``m + log1p(Σ_{i≠argmax} exp(x_i − m))``.

    torch's signature (``torch.logsumexp(input, dim, keepdim=False, *, out=None)``): ``dim`` is an
    int, a tuple or list of ints, or None (every dimension; also the default here, where torch
    requires it); ``out`` receives the result (it must have the result's shape, or no elements).

    ``m = max x`` keeps ``exp`` from overflowing; leaving the arg max out of the sum lets
    ``log1p`` keep the small terms (Blanchard, Higham & Higham 2021). Special values: an all −inf
    (or empty) slice gives −inf with gradient 0; ``k`` entries at +inf give +inf and the gradient
    ``1/k`` on each; NaN stays in its slice. The gradient is ``softmax(x)``, recomputed from the
    result. float16/bfloat16 are accumulated in float32; the result has the input's dtype.

    Where the final sum cancels (``|LSE| ≪ |max|``: ``[log .5, log .5 + 1e-12]`` gives 5.0001e-13),
    the absolute rounding of ``log1p`` would be a large relative error; on CPU the compiled kernels
    (float32/float64, summed in float64 with a double-double finish) recompute those rows exactly
    (≤ 1 ulp), as the chunked path does for other dtypes through the array core. Under ``torch.func.vmap`` or
    forward mode (``jacfwd``, ``hessian``) the face computes with plain torch operations, which
    those transforms support.

    Examples
    --------
    >>> import torch
    >>> from logsumexp.torch import logsumexp
    >>> x = torch.tensor([1000.0, 1000.0, 1000.0])
    >>> x.exp().sum().log()                      # naive: overflows
    tensor(inf)
    >>> logsumexp(x, dim=0)                      # 1000 + log 3
    tensor(1001.0986)
    >>> logsumexp(torch.zeros(2, 3), (0, 1))     # log 6
    tensor(1.7918)
    >>> y = torch.full((2,), -torch.inf, requires_grad=True)
    >>> out = logsumexp(y, 0); out.backward(); out.item(), y.grad
    (-inf, tensor([0., 0.]))
    """
    if not isinstance(keepdim, bool):
        raise TypeError(f"keepdim must be a bool, got {type(keepdim).__name__}")
    t = _real_input("x", x)
    dims = _dims(dim, t.ndim)
    # Eager CPU float32/float64 without a graph to record: the compiled kernels read the tensor
    # in place, any dims at once (no permute, no operator dispatch).
    result = None if _compiled.needs_graph(t) else _compiled.lse_dims(t, dims)
    if result is not None:
        if keepdim:
            result = result.reshape([1 if d in dims else n for d, n in enumerate(t.shape)])
    else:
        result = _logsumexp_dims(t, dims, keepdim)
    return result if out is None else _write_out(out, result)


def _logsumexp_dims(t: Tensor, dims: tuple[int, ...], keepdim: bool) -> Tensor:
    """LSE over ``dims`` (sorted, distinct): those dimensions moved last and flattened into rows."""
    if t.ndim == 0:
        src = t.reshape(1, 1)
    else:
        kept = [d for d in range(t.ndim) if d not in dims]
        moved = t.permute(*kept, *dims)
        # The product, not -1: a reduced or kept dimension of size 0 makes -1 ambiguous (a list,
        # not a generator: torch.compile traces this).
        src = moved.reshape(*moved.shape[: len(kept)], math.prod([t.shape[d] for d in dims]))
    rows = _as_rows(src)
    triton_face = _rows_backend(rows)
    if _func_impl.transforms_need_plain_ops():  # vmap / forward mode: see _func_impl
        res = _func_impl.logsumexp_last(rows)
    elif triton_face is not None and rows.shape[-1] > 0:
        res = triton_face.logsumexp_rows(rows.contiguous())
    else:
        res = _ops.logsumexp_last(rows)
    res = res.to(t.dtype).reshape(src.shape[:-1])
    if t.ndim == 0:
        return res.reshape(())
    if keepdim:
        for d in dims:
            res = res.unsqueeze(d)
    return res


def _write_out(out: object, result: Tensor) -> Tensor:
    """torch's ``out=``: the result copied into ``out`` (resized only when it holds no elements)."""
    if not isinstance(out, Tensor):
        raise TypeError(f"out must be a torch.Tensor or None, got {type(out).__name__}")
    if out.dtype != result.dtype:
        raise TypeError(f"out must have the result's dtype {result.dtype}, got {out.dtype}")
    if out.shape != result.shape:
        if out.numel():
            raise ValueError(f"out must have the result's shape {tuple(result.shape)}, got {tuple(out.shape)}")
        out.resize_(result.shape)
    return out.copy_(result)


def _as_rows(src: Tensor) -> Tensor:
    """``(N, C)`` view of a tensor whose last dimension is the reduced one (zero sizes allowed)."""
    return src.flatten(0, -2) if src.ndim > 1 else src.unsqueeze(0)


def _softmax(x: Tensor, dim: int, log: bool, dtype: torch.dtype | None = None) -> Tensor:
    t, d = _last_dim("x", x, dim, dtype)
    # Eager CPU float32/float64 without a graph to record: the compiled kernels along dim in place.
    fast = None if _compiled.needs_graph(t) else _compiled.softmax_dims(t, (d,), log)
    if fast is not None:
        return fast
    src = t.reshape(1) if t.ndim == 0 else t.movedim(d, -1)
    rows = _as_rows(src)
    triton_face = _rows_backend(rows)
    if _func_impl.transforms_need_plain_ops():  # vmap / forward mode: see _func_impl
        out = _func_impl.softmax_last(rows, log)
    elif triton_face is not None and rows.numel() > 0:
        out = triton_face.softmax_rows(rows.contiguous(), log)
    else:
        out = _ops.softmax_last(rows, log)
    out = out.reshape(src.shape)
    return out.reshape(()) if t.ndim == 0 else out.movedim(-1, d)


def softmax(x: Tensor, dim: int = -1, dtype: torch.dtype | None = None) -> Tensor:
    r"""``exp(x − m) / Σ exp(x − m)`` along ``dim`` (the division form, the more accurate one).

    torch's signature (``torch.softmax(input, dim, dtype=None)``): ``dtype`` casts the input first
    (the gradient flows back in the input's dtype); ``dim`` is one int, as in torch.

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
    return _softmax(x, dim, log=False, dtype=dtype)


def log_softmax(x: Tensor, dim: int = -1, dtype: torch.dtype | None = None) -> Tensor:
    r"""``x − m − log1p(Σ_{i≠argmax} exp(x_i − m))`` along ``dim``.

    torch's signature (``torch.log_softmax(input, dim, dtype=None)``): ``dtype`` casts the input
    first; ``dim`` is one int, as in torch.

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
    return _softmax(x, dim, log=True, dtype=dtype)
