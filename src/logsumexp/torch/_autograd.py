"""Autograd formulas of the custom operators, attached with ``torch.library.register_autograd``.

``register_autograd`` turns each operator into an ``autograd.Function`` whose context holds only
what is listed here. Cross-entropy saves the logits it was given and the per-row LSE — never the
softmax — so the extra memory kept between forward and backward is O(rows); the backward
recomputes ``softmax = exp(z − LSE)`` one chunk at a time. (For 2-D logits these are the caller's
tensor; N-d logits with the class dimension at 1 were copied once into rows by the caller.)

Gradients are provided for the logits / hidden / weight / bias and for probability targets; class
weights and ``num_items`` are treated as constants (no gradient), as almost every caller does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from . import _ops
from ._kernels import capped

# --------------------------------------------------------------------------- cross-entropy


def _ce_setup(ctx: Any, inputs: tuple, output: tuple) -> None:
    logits, target, weight, *opts = inputs
    ctx.save_for_backward(logits, target, weight, output[1])
    ctx.opts = tuple(opts)


def _ce_backward(ctx: Any, g_rows: Tensor, g_lse: Tensor) -> tuple:
    logits, target, weight, lse = ctx.saved_tensors
    g_logits = g_target = None
    if ctx.needs_input_grad[0]:
        g_logits = _ops.cross_entropy_rows_backward(
            g_rows, g_lse, logits, target, weight, lse, *ctx.opts
        )
    if ctx.needs_input_grad[1]:
        g_target = _target_grad(g_rows, logits, weight, lse, ctx.opts)
    return (g_logits, g_target) + (None,) * (2 + len(ctx.opts))


def _target_grad(g_rows: Tensor, logits: Tensor, weight: Tensor | None, lse: Tensor, opts) -> Tensor:
    """d rows / d q_c = −(1 − ε) w_c log p_c for probability targets (one full-size temporary)."""
    _, label_smoothing, _, softcap = opts
    z = capped(logits, softcap, lse.dtype)
    neg_log_p = lse.unsqueeze(-1) - z
    if weight is not None:
        neg_log_p = neg_log_p * weight.to(z.dtype)
    grad = (1.0 - label_smoothing) * g_rows.to(z.dtype).unsqueeze(-1) * neg_log_p
    return grad.to(logits.dtype)


torch.library.register_autograd(
    "logsumexp::cross_entropy_rows", _ce_backward, setup_context=_ce_setup
)


# --------------------------------------------------------------------------- linear + CE


def _lce_setup(ctx: Any, inputs: tuple, output: tuple) -> None:
    hidden, weight, bias, target, cls_weight, scale, *rest = inputs
    *opts, _, _ = rest  # the two gradient flags
    ctx.scaled = scale is not None
    ctx.opts = tuple(opts)
    ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
    ctx.has_bias = bias is not None
    if ctx.scaled:
        # The gradients were computed during the forward pass (no recompute of the logits).
        ctx.save_for_backward(*output[2:])
    else:
        ctx.save_for_backward(hidden, weight, bias, target, cls_weight)


def _lce_backward(ctx: Any, g_loss: Tensor, *_unused: Tensor) -> tuple:
    if ctx.scaled:
        gh, gw, gb = ctx.saved_tensors
        gh, gw, gb = gh * g_loss.to(gh.dtype), gw * g_loss.to(gw.dtype), gb * g_loss.to(gb.dtype)
    else:
        hidden, weight, bias, target, cls_weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        gh, gw, gb = _ops.linear_cross_entropy_backward(
            g_loss, hidden, weight, bias, target, cls_weight, *ctx.opts, need[0], need[1] or need[2]
        )
    dh, dw, db = ctx.dtypes
    need = ctx.needs_input_grad
    return (
        gh.to(dh) if need[0] else None,
        gw.to(dw) if need[1] else None,
        gb.to(db) if ctx.has_bias and need[2] else None,
    ) + (None,) * 9


torch.library.register_autograd(
    "logsumexp::linear_cross_entropy", _lce_backward, setup_context=_lce_setup
)


# --------------------------------------------------------------------------- LSE, softmax


def _lse_setup(ctx: Any, inputs: tuple, output: Tensor) -> None:
    ctx.save_for_backward(inputs[0], output)


def _lse_backward(ctx: Any, g: Tensor) -> Tensor:
    x, lse = ctx.saved_tensors
    return _ops.logsumexp_last_backward(g, x, lse)


torch.library.register_autograd(
    "logsumexp::logsumexp_last", _lse_backward, setup_context=_lse_setup
)


def _softmax_setup(ctx: Any, inputs: tuple, output: Tensor) -> None:
    ctx.log = inputs[1]
    ctx.save_for_backward(output)


def _softmax_backward(ctx: Any, g: Tensor) -> tuple:
    (y,) = ctx.saved_tensors
    return _ops.softmax_last_backward(g, y, ctx.log), None


torch.library.register_autograd(
    "logsumexp::softmax_last", _softmax_backward, setup_context=_softmax_setup
)
