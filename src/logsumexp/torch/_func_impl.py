"""The torch face in plain differentiable torch operations, for ``torch.func.vmap`` and forward mode.

The operators of :mod:`._ops` are chunked loops with host reads (``if bool(bad.any())``) behind an
``autograd.Function`` that has a backward but no ``vmap`` or ``jvp`` rule: ``torch.func.grad`` and
``vjp`` go through them, but ``vmap``, ``jacrev`` (a ``vmap`` of ``vjp``), ``jacfwd`` and ``hessian``
(forward mode) cannot. Under those transforms the functional face calls these functions instead:
every step a torch operation that ``vmap`` batches and forward and reverse mode differentiate to any
order, with no data-dependent branch. Same mathematics and special-value rules as the chunked code:

- LSE is ``x_k + log1p(Σ_{i≠k} exp(x_i − x_k))`` with ``k`` the arg max (an index, no gradient):
  the dominant term keeps its relative accuracy, and the derivative of that expression is softmax
  exactly (``1/(1 + tail)`` at ``k``), so all higher derivatives are those of LSE.
- Rows whose maximum is not finite are computed on stand-in values (0) and replaced by a ``where``:
  an all −inf row gives LSE −inf with derivative 0, ``k`` entries at +inf give +inf with derivative
  ``1/k`` on each (softmax 1/k there, log-softmax −log k). No ``inf`` reaches an operation whose
  derivative the ``where`` would turn into ``0 · inf = NaN``. A NaN row goes through the regular
  formula, which makes it NaN (value and derivatives) in that row only.

Slower than the chunked operators (whole tensors, a graph of every step): what the transforms need.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._options import CrossEntropyOptions


def transforms_need_plain_ops() -> bool:
    """True when a ``torch.func`` transform other than ``grad``/``vjp`` is active (``vmap``,
    ``jvp``, and so ``jacrev``, ``jacfwd``, ``hessian``): the operators' Functions have no rules
    for those, so the face computes with :mod:`this module <._func_impl>`'s plain operations."""
    if not torch._C._are_functorch_transforms_active():
        return False
    from torch._C._functorch import TransformType
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

    return any(i.key() != TransformType.Grad for i in retrieve_all_functorch_interpreters())


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


class _Rows:
    """The shifted rows of ``z`` (last dimension): ``t = z − z_k`` off the special rows, the tail
    ``Σ_{i≠k} e^{t_i}``, and the masks of the special rows. All plain torch operations."""

    def __init__(self, z: Tensor) -> None:
        detached = z.detach()
        m = detached.amax(dim=-1, keepdim=True)
        k = detached.argmax(dim=-1, keepdim=True)
        self.posinf = m == math.inf
        self.neginf = m == -math.inf
        # NaN rows take the regular formula: NaN follows through it, value and derivatives, in its
        # own row only (a NaN made in a masked branch would leak 0 · NaN into the derivatives).
        self.finite = ~(self.posinf | self.neginf)
        z_k = z.gather(-1, k)
        # Special rows are shifted by 0 and masked before exp: their values are set below.
        t = z - torch.where(self.finite, z_k, torch.zeros_like(z_k))
        self.t = torch.where(self.finite, t, torch.zeros_like(t))
        off_k = torch.ones_like(z, dtype=torch.bool).scatter(-1, k, False)
        e = torch.where(off_k & self.finite, torch.exp(self.t), torch.zeros_like(self.t))
        self.tail = e.sum(dim=-1, keepdim=True)
        self.log1p_tail = torch.log1p(self.tail)
        self.z_k = z_k
        # The k entries at +inf of a +inf row share its mass.
        hot = (detached == math.inf).to(z.dtype)
        self.share = hot / hot.sum(dim=-1, keepdim=True).clamp_min(1.0)
        self.hot = hot > 0
        self.z = z

    def lse(self) -> Tensor:
        regular = torch.where(self.finite, self.z_k, torch.zeros_like(self.z_k)) + self.log1p_tail
        # +inf rows: Σ share_i·z_i over the +inf entries is +inf with derivative 1/k on each.
        on_hot = torch.where(self.hot, self.z, torch.zeros_like(self.z))
        posinf = (self.share * on_hot).sum(dim=-1, keepdim=True)
        out = torch.where(self.posinf, posinf, regular)
        return torch.where(self.neginf, torch.full_like(out, -math.inf), out)

    def log_softmax(self) -> Tensor:
        regular = self.t - self.log1p_tail
        k = self.hot.sum(dim=-1, keepdim=True).clamp_min(1).to(self.z.dtype)
        posinf = torch.where(self.hot, -torch.log(k), torch.full_like(self.t, -math.inf))
        out = torch.where(self.posinf, posinf, regular)
        return torch.where(self.neginf, torch.full_like(out, -math.inf), out)

    def softmax(self) -> Tensor:
        # The division form exp(t)/s, s = 1 + tail ≥ 1 (the more accurate one).
        regular = torch.exp(self.t) / (1.0 + self.tail)
        out = torch.where(self.posinf, self.share, regular)
        return torch.where(self.neginf, torch.zeros_like(out), out)


def _last(x: Tensor, fn: str) -> Tensor:
    acc = acc_dtype(x.dtype)
    if x.shape[-1] == 0:
        if fn == "lse":
            return torch.full(x.shape[:-1], -math.inf, dtype=x.dtype, device=x.device) + 0.0 * x.sum(-1)
        return x * 1.0
    out = getattr(_Rows(x.to(acc)), fn)()
    return (out.squeeze(-1) if fn == "lse" else out).to(x.dtype)


def logsumexp_last(x: Tensor) -> Tensor:
    """LSE over the last dimension (the input's dtype; float16/bfloat16 computed in float32)."""
    return _last(x, "lse")


def softmax_last(x: Tensor, log: bool) -> Tensor:
    """Softmax or log-softmax over the last dimension."""
    return _last(x, "log_softmax" if log else "softmax")


def cross_entropy_rows(
    logits: Tensor, target: Tensor, weight: Tensor | None, opts: CrossEntropyOptions
) -> tuple[Tensor, Tensor]:
    """Per-row losses (0 on ignored rows) and LSE of ``(N, C)`` logits, in the accumulation dtype.

    The formula of :func:`logsumexp.torch.cross_entropy`, from the log-softmax above (``−log p_t``
    in its ``log1p`` form: a confident prediction keeps its relative accuracy); a class of weight or
    probability 0 adds 0 even where ``log p = −inf``.
    """
    acc = acc_dtype(logits.dtype)
    z = logits.to(acc)
    if opts.softcap is not None:
        z = opts.softcap * torch.tanh(z / opts.softcap)
    n_cls = z.shape[-1]
    eps = opts.label_smoothing
    rows_state = _Rows(z)
    neg_logp = -rows_state.log_softmax()
    lse = rows_state.lse().squeeze(-1)
    w = None if weight is None else weight.to(acc)
    if target.is_floating_point():
        q = target.to(acc)
        if eps:
            q = q * (1.0 - eps) + eps / n_cls
        wq = q if w is None else q * w
        rows = torch.where(wq == 0, torch.zeros_like(neg_logp), wq * neg_logp).sum(dim=-1)
        valid = None
    else:
        valid = target != opts.ignore_index
        tc = torch.where(valid, target, torch.zeros_like(target))
        nll = neg_logp.gather(-1, tc.unsqueeze(-1)).squeeze(-1)
        coef = (1.0 - eps) * (torch.ones_like(nll) if w is None else w[tc])
        rows = torch.where(coef == 0, torch.zeros_like(nll), coef * nll)
        if eps:
            wc = torch.ones_like(neg_logp) if w is None else w.expand_as(neg_logp)
            smooth = torch.where(wc == 0, torch.zeros_like(neg_logp), wc * neg_logp).sum(dim=-1)
            rows = rows + (eps / n_cls) * smooth
    if opts.z_loss:
        rows = rows + opts.z_loss * lse.square()
    if valid is not None:
        rows = torch.where(valid, rows, torch.zeros_like(rows))
    return rows, lse
