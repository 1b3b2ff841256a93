"""``logsumexp.torch.kl_div_logits`` and ``linear_kl_div`` against float64 eager torch and TRL's convention.

The float64 references are ``F.kl_div(..., log_target=True)`` on ``F.log_softmax`` of the same values,
and, for ``kind="jsd"``, TRL's ``GKDTrainer.generalized_jsd_loss`` itself when TRL is installed (else a
transcription of its formula). Accuracy is stated relative to the largest entry of the reference.
"""

from __future__ import annotations

import math
import warnings

import pytest

torch = pytest.importorskip("torch", reason="the torch face needs PyTorch")
import torch.nn.functional as F  # noqa: E402

import logsumexp.torch as L  # noqa: E402

V = 1531
INDUCTOR_WARNING = "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
KINDS = [("forward", 0.5), ("reverse", 0.5), ("jsd", 0.5), ("jsd", 0.1), ("jsd", 0.9), ("jsd", 0.0), ("jsd", 1.0)]


def _trl_jsd(s, t, labels, beta, temperature):
    """TRL's generalized_jsd_loss (batchmean over labels != -100), or its formula without TRL."""
    try:
        with warnings.catch_warnings():  # TRL warns that its experimental package is unstable
            warnings.simplefilter("ignore")
            from trl.experimental.gkd.gkd_trainer import GKDTrainer
    except ImportError:
        GKDTrainer = None
    if GKDTrainer is not None:
        return GKDTrainer.generalized_jsd_loss(s[None], t[None], labels[None], beta=beta, temperature=temperature)
    ls, lt = F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1)
    if beta == 0:
        rows = F.kl_div(ls, lt, reduction="none", log_target=True)
    elif beta == 1:
        rows = F.kl_div(lt, ls, reduction="none", log_target=True)
    else:
        b = torch.tensor(beta, dtype=ls.dtype)
        lm = torch.logsumexp(torch.stack([ls + torch.log1p(-b), lt + torch.log(b)]), 0)
        rows = beta * F.kl_div(lm, lt, reduction="none", log_target=True) + (1 - beta) * F.kl_div(
            lm, ls, reduction="none", log_target=True)
    keep = labels != -100
    return rows[keep].sum() / keep.sum()


def _reference(s, t, labels, kind, beta, temperature, reduction="mean"):
    """Float64 eager divergence per token (or reduced), as the docs define it."""
    if kind == "jsd" and reduction == "mean":
        return _trl_jsd(s, t, labels, beta, temperature)
    ls, lt = F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1)
    if kind == "jsd":
        b = torch.tensor(beta, dtype=ls.dtype)
        lm = torch.logsumexp(torch.stack([ls + torch.log1p(-b), lt + torch.log(b)]), 0)
        rows = (beta * F.kl_div(lm, lt, reduction="none", log_target=True)
                + (1 - beta) * F.kl_div(lm, ls, reduction="none", log_target=True)).sum(-1)
    elif kind == "forward":
        rows = F.kl_div(ls, lt, reduction="none", log_target=True).sum(-1)
    else:
        rows = F.kl_div(lt, ls, reduction="none", log_target=True).sum(-1)
    keep = labels != -100
    rows = torch.where(keep, rows, 0.0)
    if reduction == "none":
        return rows
    return rows.sum() if reduction == "sum" else rows.sum() / keep.sum()


def _data(n=10, v=V, seed=0, dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(seed)
    s = (torch.randn(n, v, generator=g) * 2).to(dtype)
    t = (torch.randn(n, v, generator=g) * 2).to(dtype)
    lab = torch.randint(0, v, (n,), generator=g)
    lab[min(3, n - 1)] = -100
    return s, t, lab


def _rel(a, b):
    return float((a.double() - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("temperature", [1.0, 0.8])
@pytest.mark.parametrize(("kind", "beta"), KINDS)
def test_value_and_gradients_within_1e_6_from_bf16_inputs(kind, beta, temperature):
    """bf16 logits, computed in float32: loss and both gradients within 1e-6 (relative to the largest
    entry) of float64 on the same values. The gradients are checked on float32 copies of the bf16
    values (a bf16 input gets its gradient rounded to bf16, 4e-3, by autograd's dtype rule).

    At T = 0.8 the float32 quotient ``x / T`` itself is rounded (3e-7 of a logit of 5): the JSD's
    student gradient at β = 0.9 then measures 1.3e-6, so the bound there is 2e-6."""
    bound = 1e-6 if temperature == 1.0 else 2e-6
    s, t, lab = _data()
    s64, t64 = s.double().requires_grad_(), t.double().requires_grad_()
    ref = _reference(s64, t64, lab, kind, beta, temperature)
    ref.backward()
    out_bf16 = L.kl_div_logits(s, t, lab, kind=kind, beta=beta, temperature=temperature)
    assert out_bf16.dtype == torch.float32
    assert abs(out_bf16.item() - ref.item()) <= 1e-6 * abs(ref.item())
    sf, tf = s.float().requires_grad_(), t.float().requires_grad_()
    out = L.kl_div_logits(sf, tf, lab, kind=kind, beta=beta, temperature=temperature)
    assert torch.equal(out, out_bf16)
    out.backward()
    assert _rel(sf.grad, s64.grad) <= bound
    assert _rel(tf.grad, t64.grad) <= bound
    sb = s.clone().requires_grad_()
    L.kl_div_logits(sb, t, lab, kind=kind, beta=beta, temperature=temperature).backward()
    assert sb.grad.dtype == torch.bfloat16 and _rel(sb.grad, s64.grad) <= 2**-8


def test_jsd_at_beta_0_and_1_is_trls_forward_and_reverse_kl():
    s, t, lab = _data(n=6, v=101, dtype=torch.float32)
    for beta, kind in ((0.0, "forward"), (1.0, "reverse")):
        a = L.kl_div_logits(s, t, lab, kind="jsd", beta=beta)
        b = L.kl_div_logits(s, t, lab, kind=kind)
        assert torch.equal(a, b)
        ref = _trl_jsd(s.double(), t.double(), lab, beta, 1.0)
        assert abs(a.item() - ref.item()) <= 1e-6 * abs(ref.item())


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_reductions_and_ignored_tokens(reduction):
    s, t, lab = _data(n=8, v=57, dtype=torch.float64)
    lab[[0, 5]] = -100
    out = L.kl_div_logits(s, t, lab, kind="reverse", reduction=reduction)
    ref = _reference(s, t, lab, "reverse", 0.5, 1.0, reduction)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
    if reduction == "none":
        assert out[0].item() == 0.0 and out[5].item() == 0.0


def test_no_counted_token_gives_zero_loss_and_gradient():
    s, t, lab = _data(n=4, v=9, dtype=torch.float32)
    s.requires_grad_()
    out = L.kl_div_logits(s, t, torch.full((4,), -100), kind="jsd")
    out.backward()
    assert out.item() == 0.0 and not bool(s.grad.any())


def test_without_target_every_token_counts():
    s, t, _ = _data(n=5, v=33, dtype=torch.float64)
    out = L.kl_div_logits(s, t)
    ls, lt = F.log_softmax(s, -1), F.log_softmax(t, -1)
    ref = F.kl_div(ls, lt, reduction="batchmean", log_target=True)  # torch's own: sum / rows
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=0)


def test_teacher_gets_no_gradient_unless_it_requires_one():
    s, t, lab = _data(n=4, v=17, dtype=torch.float32)
    s.requires_grad_()
    L.kl_div_logits(s, t, lab, kind="jsd").backward()
    assert s.grad is not None and t.grad is None


def test_zero_probabilities_add_nothing():
    """−inf logits (probability 0) on either side: no NaN; KL(q‖p) is +inf where q > 0 = p."""
    s = torch.tensor([[0.0, 1.0, -math.inf], [0.0, 0.0, 0.0]], requires_grad=True)
    t = torch.tensor([[0.0, -math.inf, -math.inf], [0.0, -math.inf, 1.0]], requires_grad=True)
    fwd = L.kl_div_logits(s, t, kind="forward", reduction="none")
    rev = L.kl_div_logits(s, t, kind="reverse", reduction="none")
    jsd = L.kl_div_logits(s, t, kind="jsd", reduction="none")
    p = torch.softmax(torch.tensor([0.0, 1.0]), -1).double()
    assert fwd[0].item() == pytest.approx(-math.log(p[0].item()), rel=1e-6)
    assert rev[1].item() == math.inf  # p > 0 where q = 0
    assert bool(torch.isfinite(jsd).all())
    jsd.sum().backward()
    assert bool(torch.isfinite(s.grad).all()) and bool(torch.isfinite(t.grad).all())
    assert s.grad[0, 2].item() == 0.0 and t.grad[0, 1].item() == 0.0


def test_logits_at_1000_do_not_overflow():
    s = torch.tensor([[1000.0, 0.0]])
    t = torch.zeros(1, 2)
    out = L.kl_div_logits(s, t, reduction="none")
    assert out.item() == pytest.approx(500.0 - math.log(2.0), rel=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kind": "js"}, ValueError, "kind must be one of"),
        ({"beta": 1.5}, ValueError, r"beta must be in \[0, 1\]"),
        ({"temperature": -1.0}, ValueError, "temperature must be finite and > 0"),
        ({"reduction": "batchmean"}, ValueError, "reduction must be one of"),
        ({"ignore_index": "x"}, TypeError, "ignore_index must be an int"),
    ],
)
def test_bad_options_raise_naming_the_argument(kwargs, error, match):
    s, t, lab = _data(n=2, v=5, dtype=torch.float32)
    with pytest.raises(error, match=match):
        L.kl_div_logits(s, t, lab, **kwargs)


def test_bad_tensors_raise_naming_the_argument():
    s, t, lab = _data(n=2, v=5, dtype=torch.float32)
    with pytest.raises(ValueError, match="teacher_logits must have student_logits' shape"):
        L.kl_div_logits(s, t[:, :4])
    with pytest.raises(TypeError, match="teacher_logits must have student_logits' dtype"):
        L.kl_div_logits(s, t.double())
    with pytest.raises(ValueError, match=r"target must have shape \(2,\)"):
        L.kl_div_logits(s, t, lab[:1])
    with pytest.raises(ValueError, match="teacher_weight must have shape"):
        L.linear_kl_div(torch.randn(2, 3), torch.randn(5, 3), torch.randn(2, 4), torch.randn(6, 4))
    with pytest.raises(ValueError, match="teacher_hidden must have student_hidden's leading shape"):
        L.linear_kl_div(torch.randn(2, 3), torch.randn(5, 3), torch.randn(3, 4), torch.randn(5, 4))


# --------------------------------------------------------------------------- linear


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("kind", "beta"), [("forward", 0.5), ("reverse", 0.5), ("jsd", 0.3)])
def test_linear_matches_logits_path(kind, beta, reduction):
    g = torch.Generator().manual_seed(5)
    n = 10
    hs = torch.randn(n, 16, generator=g, dtype=torch.float64, requires_grad=True)
    ws = torch.randn(V, 16, generator=g, dtype=torch.float64, requires_grad=True)
    ht = torch.randn(n, 24, generator=g, dtype=torch.float64, requires_grad=True)
    wt = torch.randn(V, 24, generator=g, dtype=torch.float64, requires_grad=True)
    lab = torch.randint(0, V, (n,), generator=g)
    lab[2] = -100
    up = torch.randn(n, generator=g, dtype=torch.float64) if reduction == "none" else torch.tensor(1.7, dtype=torch.float64)
    kw = dict(kind=kind, beta=beta, temperature=1.3, reduction=reduction)
    out = L.linear_kl_div(hs, ws, ht, wt, lab, chunk_size=3, **kw)
    grads = torch.autograd.grad((out * up).sum(), [hs, ws, ht, wt])
    ref = _reference(hs @ ws.T, ht @ wt.T, lab, kind, beta, 1.3, reduction)
    refs = torch.autograd.grad((ref * up).sum(), [hs, ws, ht, wt])
    torch.testing.assert_close(out, ref, rtol=1e-11, atol=1e-13)
    for a, r in zip(grads, refs):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)


def test_linear_frozen_teacher_bf16_within_float32_accuracy():
    """bf16 heads, frozen teacher: the student's gradients in bf16 within bf16 rounding of float64,
    the loss within 1e-6 of float64 on the same (bf16-rounded) logits."""
    g = torch.Generator().manual_seed(6)
    n = 12
    hs = torch.randn(2, n // 2, 16, generator=g).bfloat16().requires_grad_()
    ws = (torch.randn(V, 16, generator=g) * 0.5).bfloat16().requires_grad_()
    ht = torch.randn(2, n // 2, 8, generator=g).bfloat16()
    wt = torch.randn(V, 8, generator=g).bfloat16()
    out = L.linear_kl_div(hs, ws, ht, wt, kind="jsd", beta=0.5, chunk_size=5)
    out.backward()
    assert out.dtype == torch.float32 and wt.grad is None
    a, b = (hs @ ws.T).double(), (ht @ wt.T).double()  # the heads' bf16 products, as the chunks take them
    ref = _reference(a.reshape(n, V), b.reshape(n, V), torch.zeros(n, dtype=torch.long), "jsd", 0.5, 1.0)
    assert abs(out.item() - ref.item()) <= 1e-6 * ref.item()
    hs64, ws64 = hs.detach().double().requires_grad_(), ws.detach().double().requires_grad_()
    r = _reference((hs64 @ ws64.T).reshape(n, V), b.reshape(n, V), torch.zeros(n, dtype=torch.long), "jsd", 0.5, 1.0)
    r.backward()
    assert hs.grad.dtype == ws.grad.dtype == torch.bfloat16
    assert _rel(hs.grad, hs64.grad) <= 2e-2 and _rel(ws.grad, ws64.grad) <= 2e-2


def test_linear_func_grad_and_compile():
    g = torch.Generator().manual_seed(7)
    hs, ws = torch.randn(6, 8, generator=g), torch.randn(37, 8, generator=g)
    ht, wt = torch.randn(6, 5, generator=g), torch.randn(37, 5, generator=g)
    lab = torch.randint(0, 37, (6,), generator=g)

    def f(hs, ws, s_logits):
        return (L.linear_kl_div(hs, ws, ht, wt, lab, kind="reverse", chunk_size=4)
                + L.kl_div_logits(s_logits, ht @ wt.T, lab, kind="jsd", beta=0.3))

    s_logits = hs @ ws.T
    got = torch.func.grad(f, argnums=(0, 1, 2))(hs, ws, s_logits)
    args = [t.clone().requires_grad_() for t in (hs, ws, s_logits)]
    f(*args).backward()
    for a, r in zip(got, args):
        torch.testing.assert_close(a, r.grad, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
@pytest.mark.filterwarnings(INDUCTOR_WARNING)
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_compile_fullgraph(dynamic):
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(8)
    ws = torch.randn(37, 8, generator=g, requires_grad=True)
    wt = torch.randn(37, 5, generator=g)

    def f(hs, ht, lab, temp):
        return (L.linear_kl_div(hs, ws, ht, wt, lab, kind="jsd", beta=0.4, temperature=temp, chunk_size=4)
                + L.kl_div_logits(hs @ ws.T, ht @ wt.T, lab, kind="forward", temperature=temp))

    compiled = torch.compile(f, fullgraph=True, dynamic=dynamic)
    for n, temp in ((6, 1.0), (9, 0.7)):
        hs, ht = torch.randn(n, 8, generator=g), torch.randn(n, 5, generator=g)
        lab = torch.randint(0, 37, (n,), generator=g)
        lab[0] = -100
        out, ref = compiled(hs, ht, lab, temp), f(hs, ht, lab, temp)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.autograd.grad(out, ws)[0], torch.autograd.grad(ref, ws)[0],
                                   rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- the KLs' cache-sized pieces


@pytest.mark.parametrize("kind", ["forward", "reverse"])
def test_kls_in_cache_sized_pieces_match_float64(monkeypatch, kind):
    """Pieces of 2 rows (``SUB_ELEMENTS`` cut down): the logits path (fresh gradient buffers) and the
    linear path (gradients left in the chunk's own logits, student's and teacher's) against float64
    eager, every gradient, an ignored token and a chunk (5) that is not a multiple of the piece."""
    from logsumexp.torch import _kl

    monkeypatch.setattr(_kl, "SUB_ELEMENTS", 2 * V)
    g = torch.Generator().manual_seed(11)
    n = 9
    hs = torch.randn(n, 16, generator=g, dtype=torch.float64, requires_grad=True)
    ws = torch.randn(V, 16, generator=g, dtype=torch.float64, requires_grad=True)
    ht = torch.randn(n, 12, generator=g, dtype=torch.float64, requires_grad=True)
    wt = torch.randn(V, 12, generator=g, dtype=torch.float64, requires_grad=True)
    lab = torch.randint(0, V, (n,), generator=g)
    lab[4] = -100
    up = torch.randn(n, generator=g, dtype=torch.float64)
    out = L.linear_kl_div(hs, ws, ht, wt, lab, kind=kind, temperature=0.9, reduction="none", chunk_size=5)
    grads = torch.autograd.grad((out * up).sum(), [hs, ws, ht, wt])
    s, t = (hs @ ws.T).detach().requires_grad_(), (ht @ wt.T).detach().requires_grad_()
    rows = L.kl_div_logits(s, t, lab, kind=kind, temperature=0.9, reduction="none")
    g_logits = torch.autograd.grad((rows * up).sum(), [s, t])
    ref = _reference(hs @ ws.T, ht @ wt.T, lab, kind, 0.5, 0.9, "none")
    refs = torch.autograd.grad((ref * up).sum(), [hs, ws, ht, wt])
    ss, tt = (hs @ ws.T).detach().requires_grad_(), (ht @ wt.T).detach().requires_grad_()
    ref_logits = torch.autograd.grad((_reference(ss, tt, lab, kind, 0.5, 0.9, "none") * up).sum(), [ss, tt])
    torch.testing.assert_close(out, ref, rtol=1e-11, atol=1e-13)
    torch.testing.assert_close(rows, ref, rtol=1e-11, atol=1e-13)
    for a, r in zip(grads, refs):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)
    for a, r in zip(g_logits, ref_logits):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["forward", "reverse"])
def test_linear_special_rows_take_the_general_path(kind):
    """A −inf logit on the student side only (an infinite weight entry): the fast pieces give up
    after writing over the chunk's logits, and the chunk is recomputed for the general path; the
    result equals kl_div_logits on the materialised logits (forward: +inf on that token)."""
    g = torch.Generator().manual_seed(12)
    hs = torch.rand(4, 3, generator=g, dtype=torch.float64) + 0.5  # positive: W·h = −inf where W = −inf
    ws = torch.randn(7, 3, generator=g, dtype=torch.float64)
    ws[2, 0] = -math.inf
    ht = torch.randn(4, 5, generator=g, dtype=torch.float64)
    wt = torch.randn(7, 5, generator=g, dtype=torch.float64)
    out = L.linear_kl_div(hs, ws, ht, wt, kind=kind, reduction="none", chunk_size=3)
    ref = L.kl_div_logits(hs @ ws.T, ht @ wt.T, kind=kind, reduction="none")
    assert bool(torch.isinf(out).all()) if kind == "forward" else bool(torch.isfinite(out).all())
    torch.testing.assert_close(out, ref, rtol=1e-14, atol=0)
