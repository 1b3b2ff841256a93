"""Fused cross-entropy kernel against torch in float64: every option, gradients, in-place, special values."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="logsumexp.triton needs torch")
pytest.importorskip("triton", reason="logsumexp.triton needs the triton package")

import torch.nn.functional as F  # noqa: E402

import logsumexp.triton as lt  # noqa: E402
from logsumexp._options import CrossEntropyOptions  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
N, C = 37, 1000


def rand(shape, dtype=torch.float32, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype).to(DEVICE)


def targets(n, c, seed=0, ignore_every=5):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, c, (n,), generator=g)
    t[::ignore_every] = -100
    return t.to(DEVICE)


def ref_ce(x, t, weight=None, reduction="mean", eps=0.0, z=0.0, cap=None, num_items=None, ignore_index=-100):
    """Written-out float64 reference: torch's cross-entropy on soft-capped logits plus z·LSE² per counted row."""
    x = x.double()
    if cap is not None:
        x = cap * torch.tanh(x / cap)
    w = None if weight is None else weight.double()
    per = F.cross_entropy(x, t, weight=w, ignore_index=ignore_index, reduction="none", label_smoothing=eps)
    counted = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    if not t.is_floating_point():
        counted = t != ignore_index
    per = per + torch.where(counted, z * torch.logsumexp(x, -1) ** 2, 0.0)
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    if num_items is not None:
        return per.sum() / num_items
    if t.is_floating_point():
        return per.sum() / x.shape[0]
    den = counted.double().sum() if w is None else torch.where(counted, w[t.clamp_min(0)], 0.0).sum()
    return per.sum() / den if den > 0 else per.sum() * 0.0


def ce(x, t, weight=None, inplace_backward=False, **options):
    """The row function with the options built as the torch face builds them."""
    return lt.cross_entropy_rows(x, t, weight, CrossEntropyOptions(**options), inplace_backward)


def rel(a, b):
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def run(x, t, upstream=None, *, eps=0.0, z=0.0, cap=None, inplace_backward=False, **kw):
    """(loss, ref, grad, ref grad) of lt.cross_entropy and of the float64 reference, both through autograd."""
    xg = x.clone().requires_grad_()
    weight = kw.pop("weight", None)
    loss = ce(xg, t, weight, inplace_backward, label_smoothing=eps, z_loss=z, softcap=cap, **kw)
    kw["weight"] = weight
    x64 = x.double().requires_grad_()
    ref = ref_ce(x64, t, eps=eps, z=z, cap=cap, **kw)
    up = torch.ones_like(ref) if upstream is None else upstream
    loss.backward(up.to(loss.dtype))
    ref.backward(up.double())
    return loss, ref, xg.grad, x64.grad


# every pair of (reduction, weighted, eps) values occurs: the options interact in pairs (the
# weighted mean's denominator, smoothing's weighted sum), and each case runs in the interpreter
@pytest.mark.parametrize(("reduction", "weighted", "eps"), [
    ("mean", False, 0.0), ("mean", True, 0.1), ("sum", False, 0.1),
    ("sum", True, 0.0), ("none", False, 0.0), ("none", True, 0.1),
])
def test_class_targets_every_reduction_weight_smoothing(reduction, weighted, eps):
    x = rand((N, C), seed=1)
    t = targets(N, C, seed=2)
    w = rand((C,), scale=1.0, seed=3).abs() + 0.1 if weighted else None
    up = rand(() if reduction != "none" else (N,), torch.float64, 1.0, seed=4)
    loss, ref, g, g64 = run(x, t, up, weight=w, reduction=reduction, eps=eps)
    assert loss.dtype == torch.float32
    assert rel(loss, ref) <= 1e-6
    assert rel(g, g64) <= 2e-6


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_z_loss_and_softcap_against_formula(reduction):
    x = rand((N, C), scale=20.0, seed=5)
    t = targets(N, C, seed=6)
    loss, ref, g, g64 = run(x, t, weight=None, reduction=reduction, eps=0.05, z=1e-3, cap=30.0)
    assert rel(loss, ref) <= 1e-6
    assert rel(g, g64) <= 1e-5  # tanh from exp: absolute error of a few ulp of the cap


def test_num_items_divides_the_sum():
    x = rand((N, C), seed=7)
    t = targets(N, C, seed=8)
    loss, ref, g, g64 = run(x, t, num_items=1000.0)
    assert rel(loss, ref) <= 1e-6 and rel(g, g64) <= 2e-6


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_probability_targets(weighted, reduction):
    x = rand((N, 1531), seed=9)
    y = torch.softmax(rand((N, 1531), seed=10), -1)
    w = rand((1531,), scale=1.0, seed=11).abs() + 0.1 if weighted else None
    loss, ref, g, g64 = run(x, y, weight=w, reduction=reduction, eps=0.1, z=1e-4)
    assert rel(loss, ref) <= 1e-6 and rel(g, g64) <= 2e-6


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_logits_loss_in_float32(dtype):
    x = rand((N, 1531), dtype, seed=12)
    t = targets(N, 1531, seed=13)
    xg = x.clone().requires_grad_()
    loss = ce(xg, t)
    loss.backward()
    x64 = x.double().requires_grad_()
    ref = F.cross_entropy(x64, t)
    ref.backward()
    assert loss.dtype == torch.float32 and xg.grad.dtype == dtype
    assert rel(loss, ref) <= 1e-6  # same (upcast) logits: float32 accumulation only
    assert rel(xg.grad, x64.grad) <= (2e-3 if dtype == torch.float16 else 1e-2)  # gradient rounded to dtype


def test_confident_prediction_keeps_relative_accuracy():
    # torch returns 0 here in float32; the loss is 2·e^{−20} ≈ 4.12e−9
    x = torch.tensor([[20.0, 0.0, 0.0]], device=DEVICE)
    assert ce(x, torch.tensor([0], device=DEVICE)).item() == pytest.approx(4.122307e-09, rel=1e-6)
    big = rand((3, 1531), seed=14) - 40.0
    big[:, 17] = 10.0
    t = torch.full((3,), 17, device=DEVICE)
    out = ce(big, t, reduction="none")
    b64 = big.double()
    rest = torch.cat([b64[:, :17], b64[:, 18:]], 1) - 10.0
    ref = torch.log1p(rest.exp().sum(-1))  # ≈ 1e−17: even float64 lse − x_t rounds this to 0
    assert rel(out, ref) <= 1e-6


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_inplace_backward_matches_fresh_buffer_bitwise(reduction):
    x = rand((N, C), torch.bfloat16, seed=15)
    t = targets(N, C, seed=16)
    a = x.clone().requires_grad_()
    la = ce(a, t, reduction=reduction, z_loss=1e-4)
    la.sum().backward()
    leaf = x.clone().requires_grad_()
    b = leaf * 1  # a non-leaf whose memory the kernel may overwrite
    lb = ce(b, t, reduction=reduction, z_loss=1e-4, inplace_backward=True)
    assert torch.equal(la, lb)
    assert torch.equal(b.detach(), a.grad)  # the gradient now lives in b's memory
    lb.sum().backward()
    assert torch.equal(leaf.grad, a.grad)


def test_no_grad_leaves_logits_untouched():
    x = rand((N, C), seed=17)
    keep = x.clone()
    with torch.no_grad():
        ce(x.requires_grad_(), targets(N, C, seed=18), inplace_backward=True)
    assert torch.equal(x.detach(), keep)


def test_all_ignored_gives_zero_loss_and_gradient():
    x = rand((N, C), seed=19).requires_grad_()
    t = torch.full((N,), -100, device=DEVICE)
    loss = ce(x, t, weight=torch.ones(C, device=DEVICE), label_smoothing=0.1, z_loss=1e-3)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


def test_ignored_rows_with_special_logits_stay_clean():
    x = rand((4, 1531), seed=20)
    x[0] = float("nan")
    x[1] = float("-inf")
    x[2, 3] = float("inf")
    t = torch.tensor([-100, -100, -100, 5], device=DEVICE)
    xg = x.clone().requires_grad_()
    loss = ce(xg, t, reduction="none")
    loss.sum().backward()
    assert torch.equal(loss[:3].cpu(), torch.zeros(3))
    assert torch.equal(xg.grad[:3], torch.zeros_like(xg.grad[:3]))
    assert torch.isfinite(xg.grad).all()


def test_return_lse():
    x = rand((N, C), seed=24)
    loss, lse = ce(x, targets(N, C, seed=25), softcap=15.0, return_lse=True)
    assert lse.dtype == torch.float32 and lse.shape == (N,)
    assert rel(lse, torch.logsumexp(15.0 * torch.tanh(x.double() / 15.0), -1)) <= 1e-6


@pytest.mark.parametrize("cap", [None, 15.0])
def test_return_lse_is_differentiable(cap):
    x = rand((N, C), seed=30)
    t = targets(N, C, seed=31)
    up = rand((N,), torch.float64, 1.0, seed=32)
    xg = x.clone().requires_grad_()
    loss, lse = ce(xg, t, softcap=cap, return_lse=True, reduction="none")
    (loss * up.float()).sum().add((lse * lse).sum() * 0.1).backward()
    x64 = x.double().requires_grad_()
    xc = x64 if cap is None else cap * torch.tanh(x64 / cap)
    ref = (F.cross_entropy(xc, t, reduction="none") * up).sum() + 0.1 * (torch.logsumexp(xc, -1) ** 2).sum()
    ref.backward()
    assert rel(xg.grad, x64.grad) <= 1e-5
    xg.grad = None
    _, lse = ce(xg, t, softcap=cap, return_lse=True)
    lse.sum().backward()  # the loss unused: only g_lse · ∂LSE/∂x
    x64.grad = None
    torch.logsumexp(x64 if cap is None else cap * torch.tanh(x64 / cap), -1).sum().backward()
    assert rel(xg.grad, x64.grad) <= 1e-5


def test_deterministic_bitwise():
    x = rand((N, C), torch.bfloat16, seed=26)
    t = targets(N, C, seed=27)
    outs = []
    for _ in range(2):
        xg = x.clone().requires_grad_()
        loss = ce(xg, t, label_smoothing=0.1)
        loss.backward()
        outs.append((loss, xg.grad))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_backward_twice_is_an_error():
    x = rand((3, 11), seed=28).requires_grad_()
    loss = ce(x, torch.tensor([1, 2, 3], device=DEVICE))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward can run once"):
        loss.backward()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device with ~10 GiB free (a 4 GiB tensor)")
def test_int64_offsets_past_2_31_elements():
    rows, c = 16400, 131072  # 2.15e9 elements > 2³¹: row × stride must be computed in int64
    try:
        x = torch.empty((rows, c), dtype=torch.bfloat16, device="cuda").uniform_(-4, 4)
    except torch.OutOfMemoryError:
        pytest.skip("needs a CUDA device with ~10 GiB free (a 4 GiB tensor)")
    t = torch.randint(0, c, (rows,), device="cuda")
    last = slice(rows - 3, rows)
    out = ce(x, t, reduction="none")[last]
    ref = F.cross_entropy(x[last].double(), t[last], reduction="none")
    assert rel(out, ref) <= 1e-6
    assert rel(lt.logsumexp_rows(x)[last], torch.logsumexp(x[last].double(), -1)) <= 1e-2


# ------------------------------------------------------------------ in place without a hidden copy


class _RecordGrad(torch.autograd.Function):
    """Identity whose backward records the gradient it receives (the producer of a non-leaf input)."""

    seen: list = []

    @staticmethod
    def forward(ctx, a):
        return a.clone()

    @staticmethod
    def backward(ctx, g):
        _RecordGrad.seen.append((g.data_ptr(), tuple(g.stride()), g.dtype))
        return g


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_inplace_gradient_of_a_leaf_is_the_logits_memory(reduction):
    x = rand((N, C), torch.bfloat16, seed=40)
    t = targets(N, C, seed=41)
    ref = x.clone().requires_grad_()
    ce(ref, t, reduction=reduction).sum().backward()
    leaf = x.clone().requires_grad_()
    ptr = leaf.data_ptr()
    ce(leaf, t, inplace_backward=True, reduction=reduction).sum().backward()
    assert leaf.grad.data_ptr() == ptr == leaf.data_ptr()  # stolen by autograd, not copied
    assert leaf.grad.stride() == leaf.stride() and leaf.grad.dtype == leaf.dtype
    assert torch.equal(leaf.grad, ref.grad)


def test_inplace_gradient_of_a_3d_leaf_seen_as_rows_is_not_copied():
    # the torch face hands [B, T, C] logits over as a [B·T, C] view: the gradient goes back through the view
    leaf = rand((3, 7, C), torch.bfloat16, seed=54).requires_grad_()
    t = targets(21, C, seed=55)
    ce(leaf.view(-1, C), t, inplace_backward=True).backward()
    assert leaf.grad.data_ptr() == leaf.data_ptr() and leaf.grad.shape == leaf.shape


def test_inplace_gradient_reaches_the_producer_without_a_copy():
    x = rand((N, C), torch.float32, seed=42)
    t = targets(N, C, seed=43)
    leaf = x.clone().requires_grad_()
    _RecordGrad.seen.clear()
    b = _RecordGrad.apply(leaf)  # a non-leaf: the kernel overwrites its memory with the gradient
    ce(b, t, inplace_backward=True, label_smoothing=0.1).backward()
    assert _RecordGrad.seen == [(b.data_ptr(), b.stride(), b.dtype)]
    ref = x.clone().requires_grad_()
    ce(ref, t, label_smoothing=0.1).backward()
    assert torch.equal(leaf.grad, ref.grad)


def test_inplace_over_logits_another_node_saved_fails_loudly():
    x = rand((N, C), seed=44).requires_grad_()
    y = torch.exp(x)  # exp saves its output, which the kernel is about to overwrite
    loss = ce(y, targets(N, C, seed=45), inplace_backward=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_fresh_gradient_of_a_leaf_is_not_copied_either():
    x = rand((N, C), seed=46).requires_grad_()
    ce(x, targets(N, C, seed=47)).backward()
    assert x.grad.data_ptr() != x.data_ptr() and x.grad.stride() == x.stride()


# ------------------------------------------------------------------ what is refused, and float64


def test_weight_that_requires_grad_is_refused():
    x = rand((N, C), seed=48).requires_grad_()
    w = (rand((C,), scale=1.0, seed=49).abs() + 0.1).requires_grad_()
    with pytest.raises(RuntimeError, match="does not compute a gradient for weight"):
        ce(x, targets(N, C, seed=50), w)
    with torch.no_grad():  # no gradient asked: fine
        assert torch.isfinite(ce(x, targets(N, C, seed=50), w))


def test_second_derivative_is_a_clear_error():
    x = rand((3, 11), seed=51).requires_grad_()
    loss = ce(x, torch.tensor([1, 2, 3], device=DEVICE))
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad(loss, x, create_graph=True)


def test_float64_logits_accumulate_in_float64():
    x = rand((N, C), torch.float64, seed=52)
    t = targets(N, C, seed=53)
    # the options too: 0.1 as a float32 kernel scalar would be 1.5e-9 away from 0.1
    loss, ref, g, g64 = run(x, t, reduction="mean", eps=0.1, z=1e-3, cap=30.0)
    assert loss.dtype == torch.float64 and g.dtype == torch.float64
    assert rel(loss, ref) <= 1e-13 and rel(g, g64) <= 1e-13


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(weighted=True, eps=0.1, z=1e-3, cap=5.0, reduction="sum"),
        dict(prob=True, eps=0.2, z=1e-2),
        dict(reduction="none", cap=3.0),
    ],
    ids=["plain", "weight+smoothing+z+softcap", "probabilities", "none+softcap"],
)
def test_torch_func_grad_and_hessian_vector_product(options):
    opts = dict(options)
    weighted, prob = opts.pop("weighted", False), opts.pop("prob", False)
    eps, z, cap = opts.pop("eps", 0.0), opts.pop("z", 0.0), opts.pop("cap", None)
    x = rand((6, 37), torch.float64, seed=60)
    t = torch.softmax(rand((6, 37), torch.float64, seed=61), -1) if prob else targets(6, 37, seed=61, ignore_every=4)
    w = rand((37,), torch.float64, scale=1.0, seed=62).abs() + 0.1 if weighted else None
    v = rand((6, 37), torch.float64, scale=1.0, seed=63)

    def ours(a):
        return ce(a, t, w, label_smoothing=eps, z_loss=z, softcap=cap, **opts).sum()

    def ref(a):
        return ref_ce(a, t, weight=w, eps=eps, z=z, cap=cap, **opts).sum()

    g, g_ref = torch.func.grad(ours)(x), torch.func.grad(ref)(x)
    assert rel(g, g_ref) <= 1e-13
    # Hessian-vector product, reverse over reverse (torch.func.jvp warns in torch 2.13 through TorchScript)
    hv = torch.func.grad(lambda a: (torch.func.grad(ours)(a) * v).sum())(x)
    hv_ref = torch.func.grad(lambda a: (torch.func.grad(ref)(a) * v).sum())(x)
    assert rel(hv, hv_ref) <= 1e-12


def _core_reference(x, q, **kw):
    """The array core (NumPy, float64): the reference every face is held to."""
    import numpy as np

    import logsumexp as lse

    xn, qn = x.double().cpu().numpy(), q.double().cpu().numpy()
    value = torch.from_numpy(np.asarray(lse.cross_entropy(xn, qn, **kw)))
    grad = None if kw.get("reduction") == "none" else torch.from_numpy(np.asarray(lse.cross_entropy_grad(xn, qn, **kw)))
    return value, grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_probability_targets_on_rows_with_posinf_logits(dtype):
    """k logits at +inf share p = 1/k, so their −log p is log k and classes of probability 0 add 0
    (the kernel once computed Σ q·LSE − Σ q·x there: inf − inf = NaN). The sum of this batch is
    the array core's 2.585497."""
    inf = float("inf")
    x = torch.tensor([[0.0, inf, inf, 1.0], [0.5, -1.0, 2.0, 0.0]], dtype=dtype, device=DEVICE)
    q = torch.tensor([[0.0, 0.25, 0.75, 0.0], [0.1, 0.2, 0.3, 0.4]], dtype=dtype, device=DEVICE)
    xg = x.clone().requires_grad_()
    loss = ce(xg, q, reduction="sum")
    loss.backward()
    want, want_grad = _core_reference(x, q, reduction="sum")
    assert float(loss.detach()) == pytest.approx(float(want), rel=1e-6)
    assert rel(xg.grad, want_grad) <= 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_probability_targets_special_rows_match_the_array_core(dtype):
    """Per row: +inf logits with mass only on them (log k), with mass off them (+inf), an all −inf
    row with mass (+inf) and without (0, never NaN), a NaN row (NaN), a finite row."""
    inf, nan = float("inf"), float("nan")
    x = torch.tensor([[0.0, inf, inf, 1.0], [inf, 0.0, 1.0, 2.0], [-inf] * 4, [-inf] * 4, [nan, 0.0, 1.0, 2.0],
                      [0.5, -1.0, 2.0, 0.0]], dtype=dtype, device=DEVICE)
    q = torch.tensor([[0.0, 0.5, 0.5, 0.0], [0.5, 0.5, 0.0, 0.0], [0.25] * 4, [0.0] * 4, [0.25] * 4,
                      [0.1, 0.2, 0.3, 0.4]], dtype=dtype, device=DEVICE)
    got = ce(x, q, reduction="none").double().cpu()
    want, _ = _core_reference(x, q, reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0, equal_nan=True)
