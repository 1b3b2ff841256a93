"""Cross-entropy on logits (class indices or probabilities) and binary cross-entropy with logits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _array_api as aa
from . import _cpu, _jax
from ._elementwise import softplus_wide
from ._options import CrossEntropyOptions, target_out_of_range
from ._reduce import lse_state, normalized
from ._state import shifted

Array = Any


def cross_entropy(
    logits: Any,
    target: Any,
    axis: int = -1,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    num_items: float | None = None,
) -> Any:
    r"""Cross-entropy between the softmax of ``logits`` along ``axis`` and ``target``.

    For a class index ``t`` the loss of a row is ``−log softmax(x)_t = LSE(x) − x_t`` (≥ 0; for
    ``[1000, 1000, 1000]`` it is ``log 3``). For probabilities ``q`` it is ``−Σ_c q_c log softmax(x)_c``.
    The options follow :func:`torch.nn.functional.cross_entropy` exactly:

    .. math::

        \ell_i = (1-\varepsilon)\, w_{t_i} (\mathrm{LSE}(x_i) - x_{i t_i})
                 + \frac{\varepsilon}{C} \sum_c w_c (\mathrm{LSE}(x_i) - x_{ic}),

    ``mean`` divides the sum by ``Σ_i w_{t_i}`` over the counted rows (by the number of rows for
    probability targets), or by ``num_items`` when given (gradient accumulation, data parallelism).

    Stability: ``LSE(x) − x_t`` is computed as ``(m − x_t) + log1p(Σ_{i≠k} e^{x_i − m})`` with
    ``m = x_k = max x``: for a confident prediction (``t = k``) the loss keeps its relative accuracy
    (``[[20, 0, 0]]``, target 0, float32: 4.1e−9, where ``LSE − x_t`` returns 0), and the smoothing
    term sums the non-negative ``m − x_c`` instead of cancelling ``C·LSE − Σ x_c``.

    Parameters
    ----------
    logits : array_like
        Scores; classes along ``axis``.
    target : array_like
        Integer class indices with the shape of ``logits`` without ``axis``, or float
        probabilities with the shape of ``logits``.
    axis : int
        The class axis (default −1; the torch face uses torch's dimension 1).
    weight : array_like, optional
        Per-class weights of shape ``(C,)``.
    ignore_index : int
        Index targets equal to it are skipped (loss 0, not counted in the mean).
    reduction : {"mean", "sum", "none"}
    label_smoothing : float in [0, 1]
    num_items : float, optional
        Divide the summed loss by this count instead of the mean's denominator (``reduction="mean"``).

    Raises
    ------
    IndexError
        A class index outside ``[0, C)`` that is not ``ignore_index``, whenever the target's
        values are known: every eager backend, and JAX outside ``jax.jit`` (``jax.grad`` of a
        function of the logits included). Where they are not, in a Dask graph or a target traced
        by ``jax.jit``, no exception can be raised: that row's loss (and its gradient) is NaN
        instead, so the mean is NaN too, never a loss that looks right.

    Notes
    -----
    A batch whose every row is ignored (or has zero weight) gives a mean of 0, not NaN. A zero
    weight or zero probability times ``log 0 = −inf`` counts as 0. Logits that are all −inf give
    an infinite loss; ``k`` logits +inf including the target give ``log k``; NaN stays in its row.
    The gradient of a row with ``k`` logits at +inf is ``softmax − onehot`` (the softmax ``1/k``
    on the +inf entries), under ``jax.grad`` and torch autograd too, never NaN.

    Examples
    --------
    >>> import numpy as np
    >>> import logsumexp as lse
    >>> print(lse.cross_entropy(np.array([[1000.0, 1000.0, 1000.0]]), np.array([0])))   # log 3
    1.0986122886681098
    >>> print(lse.cross_entropy(np.array([[20.0, 0.0, 0.0]], dtype=np.float32), np.array([0])))
    4.1223074e-09
    >>> print(lse.cross_entropy(np.array([[0.0, 0.0]]), np.array([-100])))  # every row ignored
    0.0
    """
    p = _prepare(logits, target, axis, weight, ignore_index, reduction, label_smoothing, num_items)
    xp = p.xp
    if _jax.is_jax_array(p.x):  # JAX: the native rows (_jax.py); targets checked and reduced here
        return _jax_cross_entropy(xp, p)
    m, log_rest = _row_statistics(xp, p)
    with aa.quiet_fp():
        if p.index_target:
            loss, denom = _index_loss(xp, p, m, log_rest)
        else:
            loss, denom = _probability_loss(xp, p, m, log_rest)
        loss = xp.where(xp.isnan(m), math.nan, loss)
        return _reduce(xp, p, loss, denom)


def _jax_cross_entropy(xp: Any, p: _Prepared) -> Any:
    """The loss of JAX logits: per-row terms from ``_jax`` (its log-softmax carries the gradient,
    +inf rows included), the target check, the out-of-range NaN and the reduction as below."""
    valid, safe_t, bad = _check_targets(xp, p) if p.index_target else (None, None, None)
    loss, denom = _jax.cross_entropy_rows(p.x, p.target, p.index_target, p.weight, p.smoothing, valid, safe_t, p.wide)
    if bad is not None:  # a NaN factor, not a select: that row's gradient is NaN too (see _index_loss)
        loss = loss * aa.fill(xp, bad, math.nan, 1.0, loss)
    return _reduce(xp, p, loss, denom)


def _row_statistics(xp: Any, p: _Prepared) -> tuple[Array, Array]:
    """Per row: the max ``m`` of the logits and ``log1p(Σ_{i≠k} e^{x_i − m})``, so that
    ``LSE = m + log1p(...)``: the one definition both the loss and the tests of the faces use."""
    if aa.is_numpy(p.xp) and _cpu.enabled():  # the kernels' own log1p, rounded once
        fast = _cpu.row_log1p(p.x, (p.x.ndim - 1,))
        if fast is not None:
            return fast
    state = lse_state(p.xp, p.x, (p.x.ndim - 1,), None)
    with aa.quiet_fp():
        return state.m, xp.log1p(state.tail)


@dataclass(frozen=True)
class _Prepared:
    """cross_entropy's checked arguments, classes moved to the last axis."""

    xp: Any
    x: Array  # logits, float, classes last
    target: Array  # int indices (batch shape) or float probabilities (like x)
    index_target: bool
    weight: Array | None  # (C,), working dtype
    opts: CrossEntropyOptions  # built once per call
    out_dtype: Any
    wide: Any

    @property
    def classes(self) -> int:
        return int(self.x.shape[-1])

    @property
    def ignore_index(self) -> int:
        return self.opts.ignore_index

    @property
    def reduction(self) -> str:
        return self.opts.reduction

    @property
    def smoothing(self) -> float:
        return float(self.opts.label_smoothing)

    @property
    def num_items(self) -> float | None:
        return None if self.opts.num_items is None else float(self.opts.num_items)


def _prepare(
    logits: Any, target: Any, axis: int, weight: Any, ignore_index: int, reduction: str,
    label_smoothing: float, num_items: float | None,
) -> _Prepared:
    aa.refuse_masked(logits=logits, target=target, weight=weight)
    opts = _options(ignore_index, reduction, label_smoothing, num_items)
    xp = aa.namespace(logits, target, weight)
    x = aa.as_array(xp, logits, "logits")
    if x.ndim == 0:
        raise ValueError("logits must have at least one dimension (the classes)")
    out_dtype = aa.float_dtype(xp, x)
    if not xp.isdtype(x.dtype, "real floating"):
        x = xp.astype(x, out_dtype)
    if isinstance(axis, bool) or not hasattr(axis, "__index__"):
        raise TypeError(f"axis must be an int (the class axis), got {axis!r}")
    (ca,) = aa.normalize_axis(axis, x.ndim)
    x = x if ca == x.ndim - 1 else xp.moveaxis(x, ca, -1)  # a no-op move has no torch.func.vmap rule
    t = aa.as_array(xp, target, "target")
    index_target = xp.isdtype(t.dtype, "integral")
    if index_target:
        if tuple(t.shape) != tuple(x.shape[:-1]):
            raise ValueError(
                f"target of class indices must have the shape of logits without the class axis, "
                f"{tuple(x.shape[:-1])}, got {tuple(t.shape)}"
            )
    elif xp.isdtype(t.dtype, "real floating"):
        t = xp.moveaxis(t, ca, -1) if t.ndim == x.ndim and ca != x.ndim - 1 else t
        if tuple(t.shape) != tuple(x.shape):
            raise ValueError(
                f"target of probabilities must have the shape of logits, "
                f"{tuple(xp.moveaxis(x, -1, ca).shape)}, got {tuple(target.shape) if hasattr(target, 'shape') else tuple(t.shape)}"
            )
    else:
        raise TypeError(f"target must hold integer class indices or float probabilities, got dtype {t.dtype}")
    wide = aa.work_dtype(xp, x, out_dtype)
    w = None
    if weight is not None:
        w = aa.as_array(xp, weight, "weight")
        if tuple(w.shape) != (x.shape[-1],):
            raise ValueError(f"weight must have shape (C,) = ({x.shape[-1]},), got {tuple(w.shape)}")
        w = xp.astype(w, wide)
    return _Prepared(xp, x, t, index_target, w, opts, out_dtype, wide)


def _options(ignore_index: Any, reduction: Any, label_smoothing: Any, num_items: Any) -> CrossEntropyOptions:
    """The options checked by the one class the torch face and the Triton kernels use too
    (NumPy scalars are taken as the Python numbers they hold)."""

    def plain(v: Any) -> Any:
        return v.item() if isinstance(v, np.generic) else v

    return CrossEntropyOptions(
        ignore_index=plain(ignore_index), reduction=reduction,
        label_smoothing=plain(label_smoothing), num_items=plain(num_items),
    )


def _index_loss(xp: Any, p: _Prepared, m: Array, log_rest: Array) -> tuple[Array, Array]:
    """Per-row loss and per-row mean weight for class-index targets."""
    valid, safe_t, out_of_range = _check_targets(xp, p)
    x_t = xp.astype(_gather_last(xp, p.x, safe_t), p.wide)
    xs_t = shifted(xp, x_t[..., None], m[..., None])[..., 0]
    nll = log_rest - xs_t
    w_t = xp.ones_like(nll) if p.weight is None else xp.take(p.weight, xp.reshape(safe_t, (-1,)))
    w_t = xp.where(valid, xp.reshape(w_t, tuple(nll.shape)), 0.0)
    loss = _times(xp, w_t * (1.0 - p.smoothing), nll)
    if p.smoothing > 0:
        smooth = _smoothing_sum(xp, p, m, log_rest)
        loss = loss + xp.where(valid, smooth, 0.0) * (p.smoothing / p.classes)
    if _posinf_rows_need_gradient(xp, p, m):
        loss = loss + _posinf_row_gradient(xp, p, m, _index_coef(xp, p, valid, safe_t, w_t))
    if out_of_range is not None:  # values unknown (Dask, jax.jit): the row says NaN instead
        # A NaN factor rather than a select, so that automatic differentiation gives that row a
        # NaN gradient too (a select would hand it 0) while the other rows are multiplied by 1.
        loss = loss * aa.fill(xp, out_of_range, math.nan, 1.0, loss)
    return loss, w_t


def _index_coef(xp: Any, p: _Prepared, valid: Array, safe_t: Array, w_t: Array) -> Array:
    """The per-class coefficients of an index target's row loss ``Σ_c coef_c (LSE − x_c)``:
    ``(1 − ε)·w_t`` on the target, plus ``ε/C·w_c`` on every class (0 on ignored rows)."""
    onehot = xp.astype(xp.arange(p.classes) == safe_t[..., None], p.wide)
    coef = onehot * (w_t * (1.0 - p.smoothing))[..., None]
    if p.smoothing > 0:
        cls_w = xp.ones((p.classes,), dtype=p.wide) if p.weight is None else p.weight
        coef = coef + xp.astype(valid, p.wide)[..., None] * (p.smoothing / p.classes) * cls_w
    return coef


def _posinf_rows_need_gradient(xp: Any, p: _Prepared, m: Array) -> bool:
    """Whether the +inf rows' surrogate is needed: a gradient may be taken (JAX, torch requiring
    one) and, where values can be read (eager torch), some row really has a +inf logit."""
    if not aa.has_autodiff(xp, p.x):
        return False
    return not aa.is_concrete(xp, m) or bool(xp.any(m == math.inf))


def _posinf_row_gradient(xp: Any, p: _Prepared, m: Array, coef: Array) -> Array:
    """A zero per row whose derivative is ``(Σ_c coef_c)·softmax − coef`` on rows with +inf logits.

    The row loss is ``Σ_c coef_c (LSE − x_c)``. On a row with ``k`` logits at +inf it is computed
    from constants (inf − inf taken as 0), so automatic differentiation would give the row a
    zero gradient; its softmax is ``1/k`` on the +inf entries. The surrogate ``C·Σ_j s_j z_j −
    Σ_c coef_c z_c − (the same, held constant)``, with ``C = Σ_c coef_c``, the coefficients held
    constant and ``z`` the logits made finite but with derivative 1, is exactly 0 and has the
    contract's gradient (``softmax − onehot`` for a plain index target). Other rows get 0 with a
    zero derivative, and the coefficients (class weights) get no derivative from it.
    """
    at_inf = xp.astype(p.x == math.inf, p.wide)
    posinf_row = m == math.inf
    probs = at_inf / xp.where(posinf_row, xp.sum(at_inf, axis=-1), 1.0)[..., None]
    z = xp.where(posinf_row[..., None], aa.finite_with_unit_derivative(xp, xp.astype(p.x, p.wide)), 0.0)
    c = aa.stop_gradient(xp, coef)
    surrogate = xp.sum(c, axis=-1) * xp.sum(probs * z, axis=-1) - xp.sum(c * z, axis=-1)
    return surrogate - aa.stop_gradient(xp, surrogate)


def _check_targets(xp: Any, p: _Prepared) -> tuple[Array, Array, Array | None]:
    t = p.target
    valid = t != p.ignore_index
    bad = valid & ((t < 0) | (t >= p.classes))
    if not aa.is_concrete(xp, bad):  # Dask, or JAX under jit: the row says NaN instead
        return valid & ~bad, xp.where(bad | ~valid, 0, t), bad
    if bool(xp.any(bad)):
        flat = np.asarray(_to_numpy(bad)).reshape(-1)
        i = int(np.argmax(flat))
        pos = tuple(int(j) for j in np.unravel_index(i, tuple(bad.shape)))
        value = int(np.asarray(_to_numpy(t)).reshape(-1)[i])
        raise target_out_of_range(value, pos, p.classes, p.ignore_index)
    return valid, xp.where(valid, t, 0), None


def _to_numpy(a: Array) -> Any:
    """A NumPy copy of an eager array (used only to word an error message)."""
    if hasattr(a, "cpu"):
        a = a.cpu()
    try:
        return np.asarray(a)
    except (TypeError, ValueError, RuntimeError):
        return np.from_dlpack(a)


def _gather_last(xp: Any, x: Array, idx: Array) -> Array:
    """``x[..., idx]`` per row (the target's logit)."""
    if hasattr(xp, "take_along_axis"):
        # The indexing dtype, not int64: JAX without 64-bit mode warns on int64 and truncates it.
        index = idx if idx.dtype == aa.index_dtype(xp) else xp.astype(idx, aa.index_dtype(xp))
        return xp.take_along_axis(x, index[..., None], axis=-1)[..., 0]
    cls = xp.arange(x.shape[-1])
    return xp.sum(xp.where(cls == idx[..., None], x, 0.0), axis=-1)


def _times(xp: Any, coef: Array, value: Array) -> Array:
    """``coef · value`` with ``0 · ±inf = 0``: a term of zero weight is absent, not NaN.

    Only an infinite value is replaced, so the derivative with respect to a zero coefficient (a
    class weight of 0) is still the finite value, as it mathematically is."""
    absent = (coef == 0) & xp.isinf(value)
    return coef * xp.where(absent, 0.0, value)


def _smoothing_sum(xp: Any, p: _Prepared, m: Array, log_rest: Array) -> Array:
    """``Σ_c w_c (LSE − x_c) = Σ_c w_c (m − x_c) + W·log1p(tail)``: a sum of non-negative terms."""
    xs = shifted(xp, xp.astype(p.x, p.wide), m[..., None])
    if p.weight is None:
        return -xp.sum(xs, axis=-1) + p.classes * log_rest
    return xp.sum(_times(xp, p.weight, -xs), axis=-1) + xp.sum(p.weight) * log_rest


def _probability_loss(xp: Any, p: _Prepared, m: Array, log_rest: Array) -> tuple[Array, Array]:
    """Per-row loss for probability targets: ``Σ_c w_c q_c (m − x_c) + (Σ_c w_c q_c)·log1p(tail)``."""
    coef = _probability_coef(xp, p)
    xs = shifted(xp, xp.astype(p.x, p.wide), m[..., None])
    loss = xp.sum(_times(xp, coef, -xs), axis=-1) + _times(xp, xp.sum(coef, axis=-1), log_rest)
    if _posinf_rows_need_gradient(xp, p, m):
        loss = loss + _posinf_row_gradient(xp, p, m, coef)
    return loss, xp.ones_like(loss)


def _probability_coef(xp: Any, p: _Prepared) -> Array:
    q = xp.astype(p.target, p.wide)
    if p.smoothing > 0:
        q = q * (1.0 - p.smoothing) + p.smoothing / p.classes
    return q if p.weight is None else q * p.weight


def _reduce(xp: Any, p: _Prepared, loss: Array, denom: Array) -> Any:
    if p.reduction == "none":
        out = loss
    else:
        out = xp.sum(loss)
        if p.reduction == "mean":
            out = _mean(xp, p, out, denom)
    out = xp.astype(out, p.out_dtype)
    return out[()] if aa.is_numpy(xp) and out.ndim == 0 else out


def _mean(xp: Any, p: _Prepared, total: Array, row_weights: Array) -> Array:
    """The one definition of the mean's denominator: ``num_items`` when given, else the sum of the
    counted rows' target weights (the number of rows for probabilities). Nothing counted gives 0
    (never 0/0, nor its warning), but a NaN (a row with a NaN logit, or a target out of range on a
    lazy backend) stays NaN: a batch of invalid targets must not look like a perfect loss."""
    if p.num_items is not None:
        return total / p.num_items
    count = xp.sum(row_weights)
    none = count == 0
    return xp.where(none, total * 0.0, total / xp.where(none, 1.0, count))


def cross_entropy_grad(
    logits: Any,
    target: Any,
    axis: int = -1,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    num_items: float | None = None,
    grad_output: Any = None,
) -> Any:
    r"""Gradient of :func:`cross_entropy` (same arguments) with respect to ``logits``.

    For a class index it is ``w_t (softmax(x) − onehot_t)`` per row (plus the smoothing term
    ``ε/C (W·softmax(x) − w)``), divided by the mean's denominator for ``reduction="mean"``. For
    ``reduction="none"`` pass ``grad_output`` (the upstream gradient, one value per row).

    Examples
    --------
    >>> import numpy as np
    >>> import logsumexp as lse
    >>> print(lse.cross_entropy_grad(np.array([[0.0, 0.0]]), np.array([0])))
    [[-0.5  0.5]]
    """
    p = _prepare(logits, target, axis, weight, ignore_index, reduction, label_smoothing, num_items)
    xp = p.xp
    if (p.reduction == "none") != (grad_output is not None):
        raise ValueError("grad_output is needed with reduction='none' and only then")
    probs = _softmax_last(xp, p)
    with aa.quiet_fp():
        if p.index_target:
            grad, denom = _index_grad(xp, p, probs)
        else:
            coef = _probability_coef(xp, p)
            grad = probs * xp.sum(coef, axis=-1)[..., None] - coef
            denom = xp.ones(tuple(grad.shape[:-1]), dtype=p.wide)
        grad = _scale_grad(xp, p, grad, denom, grad_output)
    grad = xp.moveaxis(xp.astype(grad, p.out_dtype), -1, axis)
    return grad


def _softmax_last(xp: Any, p: _Prepared) -> Array:
    """softmax of the logits over the class axis (last), working dtype."""
    if _jax.is_jax_array(p.x):  # JAX: the native path (_jax.py)
        return _jax.softmax(p.x, (p.x.ndim - 1,), False, p.wide)
    return normalized(xp, p.x, (p.x.ndim - 1,), False, p.wide)


def _index_grad(xp: Any, p: _Prepared, probs: Array) -> tuple[Array, Array]:
    """``a·(softmax − onehot_t) + s·(W·softmax − w)`` per row, with ``a = (1 − ε)·w_t`` and
    ``s = ε/C`` on counted rows (both 0 on ignored rows); also the rows' mean weights ``w_t``."""
    valid, safe_t, bad = _check_targets(xp, p)
    w_t = xp.ones(tuple(safe_t.shape), dtype=p.wide) if p.weight is None else xp.reshape(
        xp.take(p.weight, xp.reshape(safe_t, (-1,))), tuple(safe_t.shape)
    )
    w_t = xp.where(valid, w_t, 0.0)
    a = w_t * (1.0 - p.smoothing)
    onehot = xp.astype(xp.arange(p.classes) == safe_t[..., None], p.wide)
    grad = (probs - onehot) * a[..., None]
    if p.smoothing > 0:
        s = xp.astype(valid, p.wide)[..., None] * (p.smoothing / p.classes)
        cls_w = xp.ones((p.classes,), dtype=p.wide) if p.weight is None else p.weight
        grad = grad + s * (probs * xp.sum(cls_w) - cls_w)
    if bad is not None:
        grad = xp.where(bad[..., None], math.nan, grad)
    return grad, w_t


def _scale_grad(xp: Any, p: _Prepared, grad: Array, denom: Array, grad_output: Any) -> Array:
    if p.reduction == "none":
        g = xp.astype(aa.as_array(xp, grad_output, "grad_output"), p.wide)
        g = aa.broadcast_to_shape(xp, g, tuple(grad.shape[:-1]), "grad_output", "the loss")
        return grad * g[..., None]
    if p.reduction == "mean":
        return _mean(xp, p, grad, denom)
    return grad


def binary_cross_entropy_with_logits(
    logits: Any, target: Any, *, weight: Any = None, pos_weight: Any = None, reduction: str = "mean"
) -> Any:
    r"""Binary cross-entropy of ``sigmoid(logits)`` against ``target`` in [0, 1], elementwise.

    .. math:: \ell = w\,[\,p\,y\,\operatorname{softplus}(-x) + (1 - y)\operatorname{softplus}(x)\,],

    with ``p = pos_weight`` (broadcast along the last axis, as in torch). Stability: ``−log σ(x) =
    softplus(−x)`` and ``−log(1 − σ(x)) = softplus(x)``, each computed as ``max(·, 0) +
    log1p(e^{−|x|})``, never overflow and keep accuracy for confident logits; a term whose
    coefficient is 0 is absent (``x = +inf``, ``y = 1`` gives 0, not NaN).

    Examples
    --------
    >>> import numpy as np
    >>> import logsumexp as lse
    >>> print(lse.binary_cross_entropy_with_logits(np.array([100.0, -100.0]), np.array([1.0, 0.0])))
    3.720075976020836e-44
    """
    CrossEntropyOptions(reduction=reduction)  # the one check of the reduction's name
    aa.refuse_masked(logits=logits, target=target, weight=weight, pos_weight=pos_weight)
    xp = aa.namespace(logits, target, weight, pos_weight)
    x = aa.as_array(xp, logits, "logits")
    y = aa.as_array(xp, target, "target")
    if tuple(y.shape) != tuple(x.shape):
        raise ValueError(f"target must have the shape of logits {tuple(x.shape)}, got {tuple(y.shape)}")
    out_dtype = aa.float_dtype(xp, x)
    wide = aa.work_dtype(xp, x, out_dtype)
    x, y = xp.astype(x, wide), xp.astype(y, wide)
    with aa.quiet_fp():
        pos = softplus_wide(xp, -x)  # −log σ(x)
        neg = softplus_wide(xp, x)  # −log(1 − σ(x))
        if pos_weight is not None:
            pw = xp.astype(aa.as_array(xp, pos_weight, "pos_weight"), wide)
            y_pos = y * aa.broadcast_to_shape(xp, pw, tuple(x.shape), "pos_weight", "logits")
        else:
            y_pos = y
        loss = _times(xp, y_pos, pos) + _times(xp, 1.0 - y, neg)
        if weight is not None:
            w = xp.astype(aa.as_array(xp, weight, "weight"), wide)
            loss = _times(xp, aa.broadcast_to_shape(xp, w, tuple(x.shape), "weight", "logits"), loss)
    if reduction == "sum":
        loss = xp.sum(loss)
    elif reduction == "mean":
        loss = xp.mean(loss) if math.prod(loss.shape) else xp.sum(loss)
    loss = xp.astype(loss, out_dtype)
    return loss[()] if aa.is_numpy(xp) and loss.ndim == 0 else loss

