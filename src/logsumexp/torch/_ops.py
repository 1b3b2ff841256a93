"""The operators of the torch face: for each, a ``torch.library`` custom op, its fake, its autograd.

Why three pieces per operator:

- The **custom op** (namespace ``logsumexp``) holds the chunked CPU arithmetic of
  :mod:`._cpu_impl`. ``torch.compile`` records it as one opaque node (no graph break on the Python
  chunk loops); its **fake** gives the compiler the output shapes and dtypes. Eager calls on
  plain tensors run the op's body directly (see :func:`_call`).
- The **autograd** is one ``setup_context`` and one ``backward`` per operator, used twice: by a
  ``torch.autograd.Function`` that eager calls go through (``torch.library.register_autograd``
  alone would not do there: the Function it generates has no ``setup_context`` in torch 2.13,
  which ``torch.func.grad``/``vjp`` require), and by ``register_autograd`` for calls that
  ``torch.compile`` traces (Dynamo in torch 2.13 warns on every ``autograd.Function`` it traces,
  and an op with registered autograd is simpler for it). The backward calls the chunked backward
  op when no graph of the gradient is being built; when one is (``create_graph=True``,
  ``torch.func``, which always builds one), it computes the same gradient with out-of-place torch
  operations, so that second derivatives exist.

Operator schemas are flat (a schema cannot take a dataclass): each op rebuilds the one
:class:`CrossEntropyOptions` at its entry, and the arithmetic only sees that.
"""

# No ``from __future__ import annotations``: custom_op reads the real annotation objects.
import functools
from typing import Any, Optional

import torch
import torch._functorch.utils
from torch import Tensor
from torch.autograd import forward_ad as _forward_ad

from . import _cpu_impl as C
from .._options import CrossEntropyOptions


def _opts(ignore_index: int, label_smoothing: float, z_loss: float, softcap: Optional[float]):
    """The options object of a flat schema tail, built once per distinct tail (a training loop
    passes the same one every step; the checks of ``CrossEntropyOptions`` are not free)."""
    key = (ignore_index, label_smoothing, z_loss, softcap)
    try:
        return _opts_cached(*key)
    except TypeError:  # a symbolic value (dynamic shapes) is not hashable: build it afresh
        return _build_opts(*key)


def _build_opts(ignore_index: int, label_smoothing: float, z_loss: float, softcap: Optional[float]):
    return CrossEntropyOptions(
        ignore_index=ignore_index, label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap
    )


_opts_cached = functools.lru_cache(maxsize=64)(_build_opts)


def _flat(opts: CrossEntropyOptions) -> tuple:
    """The flat tail of every operator schema, from the one options object."""
    return opts.ignore_index, opts.label_smoothing, opts.z_loss, opts.softcap


# The Python body of every custom op, for eager calls (see _call), and the tensor types that are
# plain data there (a projection's weight is usually a Parameter).
_BODIES: dict = {}
_PLAIN = (Tensor, torch.nn.Parameter)


def _custom_op(name: str, mutates_args: tuple = ()) -> Any:
    """``torch.library.custom_op``, remembering the function's body for :func:`_call`."""

    def wrap(fn: Any) -> Any:
        op = torch.library.custom_op(name, mutates_args=mutates_args)(fn)
        _BODIES[op] = fn
        return op

    return wrap


def _call(op: Any, *args: Any) -> Any:
    """Run ``op``; on plain eager tensors run its body directly.

    The op is what ``torch.compile`` needs (an opaque node with a fake). In eager mode the op's
    dispatch adds nothing but cost: torch wraps every custom-op body so that its first call
    imports ``torch._dynamo`` (seconds, and about 150 MiB of resident memory), which a CPU user
    who never compiles should not pay. Fake and functional tensors (tracing) are subclasses of
    Tensor, so they still go through the op, as do other subclasses.
    """
    eager = not torch.compiler.is_compiling() and all(
        type(a) in _PLAIN for a in args if isinstance(a, Tensor)
    )
    return _BODIES[op](*args) if eager else op(*args)


def _autograd(op: Any, function: type) -> Any:
    """Register ``function``'s ``setup_context``/``backward`` on ``op``; return the caller that takes
    the op under ``torch.compile`` and the Function (``torch.func``-ready) in eager mode."""
    torch.library.register_autograd(op, function.backward, setup_context=function.setup_context)

    def call(*args: Any) -> Any:
        if torch.compiler.is_compiling():
            return op(*args)
        if torch._C._are_functorch_transforms_active() or _forward_ad._current_level >= 0:
            return function.apply(*args)  # functorch's (and forward mode's) own handling
        if not (torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args)):
            return _call(op, *args)  # nothing to differentiate: no graph node to build
        # Function.apply without its per-call ``inspect.signature`` binding (tens of µs): the
        # arguments are always passed in full, and no functorch transform is active here.
        return _base_apply(function, *args)

    return call


def _base_apply(function: type, *args: Any) -> Any:
    """``function.apply(*args)`` outside functorch transforms, as torch's own ``Function.apply``
    does there once it has bound the default arguments (dead functorch wrappers unwrapped)."""
    args = torch._functorch.utils.unwrap_dead_wrappers(args)
    return super(torch.autograd.Function, function).apply(*args)  # type: ignore[misc]


def _building_graph() -> bool:
    """True inside a backward pass that records its own graph (a second derivative is wanted)."""
    return torch.is_grad_enabled()


# =========================================================================== cross-entropy rows


@_custom_op("logsumexp::cross_entropy_rows", mutates_args=())
def cross_entropy_rows_op(
    logits: Tensor,
    target: Tensor,
    weight: Optional[Tensor],
    ignore_index: int,
    label_smoothing: float,
    z_loss: float,
    softcap: Optional[float],
    inplace_backward: bool,
) -> tuple[Tensor, Tensor]:
    """Per-row cross-entropy (0 on ignored rows) and per-row LSE of ``(N, C)`` logits.

    ``inplace_backward`` only tells the backward that it may write the gradient over the logits.
    """
    opts = _opts(ignore_index, label_smoothing, z_loss, softcap)
    return C.cross_entropy_rows(logits, target, weight, opts)


@cross_entropy_rows_op.register_fake
def _(logits, target, weight, ignore_index, label_smoothing, z_loss, softcap, inplace_backward):
    acc = C.acc_dtype(logits.dtype)
    n = logits.shape[0]
    return logits.new_empty(n, dtype=acc), logits.new_empty(n, dtype=acc)


@_custom_op("logsumexp::cross_entropy_rows_backward", mutates_args=())
def cross_entropy_rows_backward_op(
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
    """Gradient of ``Σ g_rows·rows + Σ g_lse·lse`` with respect to the logits (chunked)."""
    opts = _opts(ignore_index, label_smoothing, z_loss, softcap)
    return C.cross_entropy_rows_backward(g_rows, g_lse, logits, target, weight, lse, opts)


@cross_entropy_rows_backward_op.register_fake
def _(g_rows, g_lse, logits, target, weight, lse, ignore_index, label_smoothing, z_loss, softcap):
    return torch.empty_like(logits, memory_format=torch.contiguous_format)


@_custom_op("logsumexp::cross_entropy_rows_backward_", mutates_args=("logits",))
def cross_entropy_rows_backward_inplace_op(
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
) -> None:
    """The same gradient written over the logits (``inplace_backward=True``): no N × C allocation."""
    opts = _opts(ignore_index, label_smoothing, z_loss, softcap)
    C.cross_entropy_rows_backward(g_rows, g_lse, logits, target, weight, lse, opts, out=logits)


@cross_entropy_rows_backward_inplace_op.register_fake
def _(g_rows, g_lse, logits, target, weight, lse, ignore_index, label_smoothing, z_loss, softcap):
    return None


class _CrossEntropyRows(torch.autograd.Function):
    """Autograd of ``cross_entropy_rows``: saves the logits (by reference) and the row LSE only."""

    @staticmethod
    def forward(*args: Any) -> Any:
        return _call(cross_entropy_rows_op, *args)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        logits, target, weight, *flat, inplace_backward = inputs
        ctx.save_for_backward(logits, target, weight, output[1])
        ctx.flat = tuple(flat)
        ctx.inplace = inplace_backward

    @staticmethod
    def backward(ctx: Any, g_rows: Tensor, g_lse: Tensor) -> tuple:
        logits, target, weight, lse = ctx.saved_tensors
        opts = _opts(*ctx.flat)
        need = ctx.needs_input_grad
        g_logits = g_target = g_weight = None
        if need[2]:
            g_weight = C.class_weight_grad(g_rows, logits, target, weight, lse, opts)
        if need[1]:
            g_target = C.probability_target_grad(g_rows, logits, weight, lse, opts)
        if need[0] and _building_graph():
            g_logits = C.cross_entropy_rows_backward_differentiable(
                g_rows, g_lse, logits, target, weight, lse, opts
            )
        elif need[0] and ctx.inplace and logits.is_contiguous() and not (need[1] or need[2]):
            # The caller gave the logits up for their gradient (as with the Triton kernels).
            _call(cross_entropy_rows_backward_inplace_op, g_rows, g_lse, logits, target, weight, lse,
                  *ctx.flat)
            g_logits = logits
        elif need[0]:
            g_logits = _call(
                cross_entropy_rows_backward_op, g_rows, g_lse, logits, target, weight, lse, *ctx.flat
            )
        return (g_logits, g_target, g_weight) + (None,) * 5


_cross_entropy_rows = _autograd(cross_entropy_rows_op, _CrossEntropyRows)


def cross_entropy_rows(
    logits: Tensor, target: Tensor, weight: Optional[Tensor], opts: CrossEntropyOptions,
    inplace_backward: bool = False,
) -> tuple[Tensor, Tensor]:
    """Per-row losses and LSE (accumulation dtype), differentiable in logits, target and weight."""
    return _cross_entropy_rows(logits, target, weight, *_flat(opts), inplace_backward)


# =========================================================================== linear + CE


@_custom_op("logsumexp::linear_cross_entropy", mutates_args=())
def linear_cross_entropy_op(
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
    grad_cls_weight: bool,
    chunk_rows: int,
    allow_retain_graph: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Loss of ``hidden @ weight.T + bias`` without the full logits.

    ``scale`` given: the 0-d loss ``scale·Σ rows`` and, in the same pass (no recompute: the FLOP
    floor), its gradients for hidden, weight and bias, and the class weights, as flagged.
    ``scale`` None: the per-row losses (the backward op recomputes the logits chunk by chunk).
    Outputs: loss, row LSE, ``Σ rows`` (the derivative by ``scale``), then the four gradients
    (empty where not asked for). ``allow_retain_graph`` only tells the autograd how to keep them.
    """
    opts = _opts(ignore_index, label_smoothing, z_loss, softcap)
    g = None if scale is None else scale.to(C.acc_dtype(hidden.dtype))
    out = C.linear_cross_entropy(
        hidden, weight, bias, target, cls_weight, g, opts,
        (grad_hidden, grad_weight, grad_cls_weight), chunk_rows or None,
    )
    total = out.rows.sum()
    loss = out.rows if g is None else total * g
    return loss, out.lse, total, out.hidden, out.weight, out.bias, out.class_weight


def _lce_grads_fake(hidden, weight, bias, cls_weight, on, grad_hidden, grad_weight, grad_cls):
    acc = C.acc_dtype(hidden.dtype)
    v = weight.shape[0]
    empty = lambda: hidden.new_empty(0)  # noqa: E731
    gh = torch.empty_like(hidden) if on and grad_hidden else empty()
    gw = weight.new_empty(weight.shape, dtype=acc) if on and grad_weight else empty()
    gb = hidden.new_empty(v, dtype=acc) if on and grad_weight and bias is not None else empty()
    with_cw = on and grad_cls and cls_weight is not None
    gc = hidden.new_empty(v, dtype=acc) if with_cw else empty()
    return gh, gw, gb, gc


@linear_cross_entropy_op.register_fake
def _(hidden, weight, bias, target, cls_weight, scale, ignore_index, label_smoothing, z_loss,
      softcap, grad_hidden, grad_weight, grad_cls_weight, chunk_rows, allow_retain_graph):
    acc = C.acc_dtype(hidden.dtype)
    n = hidden.shape[0]
    loss = hidden.new_empty(n, dtype=acc) if scale is None else hidden.new_empty((), dtype=acc)
    grads = _lce_grads_fake(hidden, weight, bias, cls_weight, scale is not None, grad_hidden,
                            grad_weight, grad_cls_weight)
    return (loss, hidden.new_empty(n, dtype=acc), hidden.new_empty((), dtype=acc), *grads)


@_custom_op("logsumexp::linear_cross_entropy_backward", mutates_args=())
def linear_cross_entropy_backward_op(
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
    grad_cls_weight: bool,
    chunk_rows: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of ``Σ g_rows·rows`` (reduction "none"): the logits are recomputed per chunk."""
    opts = _opts(ignore_index, label_smoothing, z_loss, softcap)
    out = C.linear_cross_entropy(
        hidden, weight, bias, target, cls_weight, g_rows, opts,
        (grad_hidden, grad_weight, grad_cls_weight), chunk_rows or None,
    )
    return out.hidden, out.weight, out.bias, out.class_weight


@linear_cross_entropy_backward_op.register_fake
def _(g_rows, hidden, weight, bias, target, cls_weight, ignore_index, label_smoothing, z_loss,
      softcap, grad_hidden, grad_weight, grad_cls_weight, chunk_rows):
    return _lce_grads_fake(hidden, weight, bias, cls_weight, True, grad_hidden, grad_weight,
                           grad_cls_weight)


class _LinearCrossEntropy(torch.autograd.Function):
    """Autograd of ``linear_cross_entropy``: the gradients computed in the forward pass are handed
    to the backward and scaled by the incoming gradient; reduction "none" recomputes instead.

    In eager mode the gradients are handed over, not saved: the backward gives up its own
    reference, so that autograd can adopt the weight's gradient buffer as ``weight.grad`` instead
    of copying it (a tensor of the projection's size less at the peak). A second backward through
    the same graph then raises, as torch's own chunked loss does, unless ``allow_retain_graph``.
    """

    @staticmethod
    def forward(*args: Any) -> Any:
        return _call(linear_cross_entropy_op, *args)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        hidden, weight, bias, target, cls_weight, scale, *flat = inputs
        ctx.scaled = scale is not None
        ctx.flat = tuple(flat[:4])
        ctx.chunk_rows = flat[-2]
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype,
                      None if cls_weight is None else cls_weight.dtype)
        ctx.handed = None
        # Only the loss is differentiable; unmaterialised gradients of the other outputs keep
        # autograd from allocating zeros of the weight's size for them in the backward.
        ctx.mark_non_differentiable(*output[1:])
        ctx.set_materialize_grads(False)
        if not ctx.scaled:
            ctx.save_for_backward(hidden, weight, bias, target, cls_weight)
        elif flat[-1] or torch.compiler.is_compiling() or type(output[4]) is not Tensor:
            ctx.save_for_backward(*output[3:], output[2], scale)
        else:  # eager, real tensors: hand the buffers over (see the class docstring)
            ctx.handed = list(output[3:])
            ctx.save_for_backward(output[2], scale)

    @staticmethod
    def backward(ctx: Any, g_loss: Tensor, *_unused: Tensor) -> tuple:
        need = ctx.needs_input_grad
        g_scale = None
        if g_loss is None:
            return (None,) * 15
        if ctx.scaled:
            if ctx.handed is not None:
                grads, ctx.handed = ctx.handed, []
                if not grads:
                    raise RuntimeError(
                        "linear_cross_entropy: backward called twice on the same graph; its "
                        "gradients were computed in the forward pass and handed to the first "
                        "backward. Pass allow_retain_graph=True to keep them (one more tensor of "
                        "the projection's size)."
                    )
                total, scale = ctx.saved_tensors
                grads = [_times(t, g_loss, owned=True) for t in grads]
            else:
                gh, gw, gb, gc, total, scale = ctx.saved_tensors
                grads = [_times(t, g_loss) for t in (gh, gw, gb, gc)]
            if need[5]:
                g_scale = (g_loss * total).to(scale.dtype)
        else:
            hidden, weight, bias, target, cls_weight = ctx.saved_tensors
            grads = _call(
                linear_cross_entropy_backward_op, g_loss, hidden, weight, bias, target, cls_weight, *ctx.flat,
                need[0], need[1] or need[2], need[4] and cls_weight is not None, ctx.chunk_rows,
            )
        wanted = (need[0], need[1], need[2], need[4])
        out = [g.to(dt) if ok and dt is not None and g.numel() else None
               for g, dt, ok in zip(grads, ctx.dtypes, wanted)]
        del grads
        return (out[0], out[1], out[2], None, out[3], g_scale) + (None,) * 9


_linear_cross_entropy = _autograd(linear_cross_entropy_op, _LinearCrossEntropy)


def _times(grad: Tensor, g_loss: Tensor, owned: bool = False) -> Tensor:
    """``grad · g_loss``. In eager mode a multiplier of exactly 1 (``loss.backward()``) returns the
    gradient itself, and an ``owned`` buffer is scaled in place; traced calls (fake or functional
    tensors, whose value cannot be read) and graphs of the gradient always multiply anew."""
    if grad.numel() == 0:
        return grad
    eager = not torch.compiler.is_compiling() and type(g_loss) is Tensor and not _building_graph()
    if eager and g_loss.device.type == "cpu" and bool(g_loss == 1):
        return grad
    if eager and owned:
        return grad.mul_(g_loss.to(grad.dtype))
    return grad * g_loss.to(grad.dtype)


def linear_cross_entropy(
    hidden: Tensor, weight: Tensor, bias: Optional[Tensor], target: Tensor,
    cls_weight: Optional[Tensor], scale: Optional[Tensor], opts: CrossEntropyOptions,
    chunk_rows: int = 0, allow_retain_graph: bool = False,
) -> tuple[Tensor, Tensor]:
    """The loss (0-d ``scale·Σ rows``, or per-row losses when ``scale`` is None) and the row LSE.

    Gradients are computed in the forward pass only in grad mode and only for the inputs that
    require them (a frozen projection skips the weight's product).
    """
    on = torch.is_grad_enabled()
    wants = (
        on and hidden.requires_grad,
        on and (weight.requires_grad or (bias is not None and bias.requires_grad)),
        on and cls_weight is not None and cls_weight.requires_grad,
    )
    out = _linear_cross_entropy(hidden, weight, bias, target, cls_weight, scale, *_flat(opts),
                                *wants, chunk_rows, allow_retain_graph)
    return out[0], out[1]


# =========================================================================== LSE, softmax


@_custom_op("logsumexp::logsumexp_last", mutates_args=())
def logsumexp_last_op(x: Tensor) -> Tensor:
    """LSE over the last dimension, in float32 (float64 for float64 input)."""
    return C.logsumexp_last(x)


@logsumexp_last_op.register_fake
def _(x):
    return x.new_empty(x.shape[:-1], dtype=C.acc_dtype(x.dtype))


@_custom_op("logsumexp::logsumexp_last_backward", mutates_args=())
def logsumexp_last_backward_op(g: Tensor, x: Tensor, lse: Tensor) -> Tensor:
    """``g · softmax(x)`` from the saved LSE: 0 on all −inf rows, ``g/k`` on ``k`` +inf entries."""
    return C.logsumexp_last_backward(g, x, lse)


@logsumexp_last_backward_op.register_fake
def _(g, x, lse):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


class _LogSumExpLast(torch.autograd.Function):
    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return _call(logsumexp_last_op, x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        ctx.save_for_backward(inputs[0], output)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:
        x, lse = ctx.saved_tensors
        if _building_graph():
            return C.logsumexp_last_backward_differentiable(g, x, lse)
        return _call(logsumexp_last_backward_op, g, x, lse)


logsumexp_last = _autograd(logsumexp_last_op, _LogSumExpLast)


@_custom_op("logsumexp::softmax_last", mutates_args=())
def softmax_last_op(x: Tensor, log: bool) -> Tensor:
    """Softmax or log-softmax over the last dimension, in the input dtype."""
    return C.softmax_last(x, log)


@softmax_last_op.register_fake
def _(x, log):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


class _SoftmaxLast(torch.autograd.Function):
    @staticmethod
    def forward(x: Tensor, log: bool) -> Tensor:
        return _call(softmax_last_op, x, log)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        ctx.log = inputs[1]
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple:
        (y,) = ctx.saved_tensors
        # Out-of-place torch operations on the saved output: differentiable as they stand.
        return C.softmax_last_backward(g, y, ctx.log), None


softmax_last = _autograd(softmax_last_op, _SoftmaxLast)
