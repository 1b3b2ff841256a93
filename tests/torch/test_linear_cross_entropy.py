"""linear_cross_entropy against F.cross_entropy(hidden @ weight.T + bias) in float64."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the torch face needs PyTorch")
F = torch.nn.functional

import logsumexp.torch as L  # noqa: E402
from logsumexp.torch import _cpu_impl  # noqa: E402

F64 = dict(rtol=1e-11, atol=1e-12)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 3 tokens (V = 19, float64), so that every test crosses chunk boundaries."""
    monkeypatch.setattr(_cpu_impl, "LCE_CHUNK_BYTES", 3 * 19 * 8)


def _data(lead=(10,), d=4, v=19, seed=0, probs=False):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(*lead, d, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(v, d, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(v, generator=g, dtype=torch.float64, requires_grad=True)
    if probs:
        t = torch.softmax(torch.randn(*lead, v, generator=g, dtype=torch.float64), -1)
    else:
        t = torch.randint(0, v, lead, generator=g)
        t.view(-1)[::4] = -100
    return h, w, b, t


def _reference(h, w, b, t, **kw):
    """Eager torch with the full logits, class dimension moved to 1."""
    extra = {k: kw.pop(k) for k in ("z_loss", "softcap") if k in kw}
    logits = h @ w.T + (b if b is not None else 0)
    if "softcap" in extra:
        logits = extra["softcap"] * torch.tanh(logits / extra["softcap"])
    if "class_weight" in kw:
        kw["weight"] = kw.pop("class_weight")
    moved = logits.movedim(-1, 1) if logits.ndim > 2 else logits
    tt = t.movedim(-1, 1) if t.is_floating_point() and t.ndim > 2 else t
    loss = F.cross_entropy(moved, tt, **kw)
    if "z_loss" in extra:
        lse = torch.logsumexp(logits, -1)
        valid = t != -100 if not t.is_floating_point() else torch.ones_like(lse, dtype=torch.bool)
        z = torch.where(valid, extra["z_loss"] * lse**2, 0.0)
        loss = loss + (z.sum() / valid.sum() if kw.get("reduction", "mean") == "mean" else
                       z.sum() if kw.get("reduction") == "sum" else z)
    return loss


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("extra", [{}, dict(label_smoothing=0.2), dict(z_loss=0.01, softcap=5.0),
                                   dict(class_weight="w", label_smoothing=0.1)])
def test_matches_full_logits(small_chunks, reduction, bias, extra):
    h, w, b, t = _data()
    b = b if bias else None
    kw = dict(extra, reduction=reduction)
    if kw.get("class_weight") == "w":
        kw["class_weight"] = torch.linspace(0.1, 2.0, 19, dtype=torch.float64)
    ours = L.linear_cross_entropy(h, w, t, b, **kw)
    ref = _reference(h, w, b, t, **dict(kw))
    torch.testing.assert_close(ours, ref, **F64)
    up = torch.randn(ref.shape, dtype=torch.float64)
    inputs = [h, w] + ([b] if bias else [])
    for a, r in zip(torch.autograd.grad((ours * up).sum(), inputs),
                    torch.autograd.grad((ref * up).sum(), inputs)):
        torch.testing.assert_close(a, r, **F64)


def test_nd_hidden_and_probability_targets(small_chunks):
    for probs in (False, True):
        h, w, b, t = _data(lead=(2, 5), probs=probs, seed=1)
        ours = L.linear_cross_entropy(h, w, t, b, label_smoothing=0.1)
        ref = _reference(h, w, b, t, label_smoothing=0.1)
        torch.testing.assert_close(ours, ref, **F64)
        for a, r in zip(torch.autograd.grad(ours, [h, w, b]), torch.autograd.grad(ref, [h, w, b])):
            torch.testing.assert_close(a, r, **F64)


def test_num_items_and_return_lse(small_chunks):
    h, w, b, t = _data(seed=2)
    loss, lse = L.linear_cross_entropy(h, w, t, num_items=torch.tensor(40.0), return_lse=True)
    logits = h @ w.T
    torch.testing.assert_close(loss, F.cross_entropy(logits, t, reduction="sum") / 40, **F64)
    torch.testing.assert_close(lse, torch.logsumexp(logits, -1).detach(), **F64)
    assert not lse.requires_grad


def test_all_ignored_gives_zero_loss_and_zero_grads():
    h, w, b, _ = _data()
    t = torch.full((10,), -100)
    loss = L.linear_cross_entropy(h, w, t, b, z_loss=0.1)
    grads = torch.autograd.grad(loss, [h, w, b])
    assert loss.item() == 0.0
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)


def test_bfloat16_weight_grad_accumulated_in_float32():
    """bf16 inputs: gradients close to float64 ones computed from the same rounded inputs."""
    g = torch.Generator().manual_seed(3)
    h = torch.randn(64, 16, generator=g).bfloat16().requires_grad_()
    w = (torch.randn(37, 16, generator=g) * 0.3).bfloat16().requires_grad_()
    t = torch.randint(0, 37, (64,), generator=g)
    loss = L.linear_cross_entropy(h, w, t)
    assert loss.dtype == torch.float32
    loss.backward()
    h64, w64 = h.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ref = F.cross_entropy(h64 @ w64.T, t)
    ref.backward()
    torch.testing.assert_close(loss.double(), ref, rtol=1e-2, atol=0)  # bf16 logits (8-bit mantissa)
    torch.testing.assert_close(w.grad.double(), w64.grad, rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(h.grad.double(), h64.grad, rtol=2e-2, atol=2e-3)


def test_no_grad_mode_computes_no_gradient():
    h, w, b, t = _data()
    with torch.no_grad():
        loss = L.linear_cross_entropy(h, w, t, b)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, F.cross_entropy(h @ w.T + b, t).detach(), **F64)


def test_target_out_of_range():
    h, w, _, t = _data()
    t[7] = 19
    with pytest.raises(IndexError, match=r"target value 19 at position \(7,\)"):
        L.linear_cross_entropy(h, w, t)


@pytest.mark.parametrize(
    "args, error, match",
    [
        (dict(w=torch.zeros(19, 5)), ValueError, "weight"),
        (dict(w=torch.zeros(19, 4, dtype=torch.float32)), TypeError, "weight"),
        (dict(b=torch.zeros(18, dtype=torch.float64)), ValueError, "bias"),
        (dict(t=torch.zeros(9, dtype=torch.long)), ValueError, "target"),
        (dict(h=torch.zeros(10, 4, dtype=torch.long)), TypeError, "hidden"),
        (dict(class_weight=torch.ones(3, dtype=torch.float64)), ValueError, "class_weight"),
    ],
)
def test_bad_arguments(args, error, match):
    h, w, b, t = _data()
    h, w, b, t = (args.get(k, v) for k, v in zip("hwbt", (h, w, b, t)))
    kw = {"class_weight": args["class_weight"]} if "class_weight" in args else {}
    with pytest.raises(error, match=match):
        L.linear_cross_entropy(h, w, t, b, **kw)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_frozen_projection_or_frozen_hidden(small_chunks, reduction):
    """Only the gradients asked for are computed (a frozen LM head skips the weight product)."""
    h, w, b, t = _data(seed=4)
    w_frozen = w.detach()
    ours = L.linear_cross_entropy(h, w_frozen, t, reduction=reduction)
    ref = _reference(h, w_frozen, None, t, reduction=reduction)
    torch.testing.assert_close(torch.autograd.grad(ours.sum(), h)[0], torch.autograd.grad(ref.sum(), h)[0], **F64)
    h_frozen = h.detach()
    ours = L.linear_cross_entropy(h_frozen, w, t, b, reduction=reduction)
    ref = _reference(h_frozen, w, b, t, reduction=reduction)
    for a, r in zip(torch.autograd.grad(ours.sum(), [w, b]), torch.autograd.grad(ref.sum(), [w, b])):
        torch.testing.assert_close(a, r, **F64)


def test_fused_chunk_hands_special_rows_to_the_general_rules(small_chunks):
    """A +inf bias (k classes at +inf share the mass) and a −inf bias on every class (no mass):
    the in-place chunk path defers those chunks to the special-value rules of cross_entropy."""
    h, w, _, t = _data(seed=6)
    inf = float("inf")
    for b in (torch.zeros(19, dtype=torch.float64).index_fill(0, torch.tensor([3, 7]), inf),
              torch.full((19,), -inf, dtype=torch.float64)):
        b = b.requires_grad_()
        ours = L.linear_cross_entropy(h, w, t, b, reduction="none")
        ref = L.cross_entropy(h @ w.T + b, t, reduction="none")
        torch.testing.assert_close(ours, ref, **F64)
        seed = torch.where(torch.isfinite(ref), 1.0, 0.0).to(ref.dtype)
        got = torch.autograd.grad(ours, [h, w], seed)
        want = torch.autograd.grad(ref, [h, w], seed)
        for a, r in zip(got, want):
            torch.testing.assert_close(a, r, **F64, equal_nan=True)


def _spy_compiled(monkeypatch) -> list[bool]:
    """Record each call of the compiled chunk kernel (True: it answered)."""
    from logsumexp import _cpu

    calls: list[bool] = []
    real = _cpu.cross_entropy_grad_rows

    def spy(*args):
        out = real(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(_cpu, "cross_entropy_grad_rows", spy)
    return calls


@pytest.mark.parametrize("bias", [False, True])
def test_float32_chunks_through_the_compiled_kernel(monkeypatch, bias):
    """float32 class targets take the compiled chunk (one read per row, float64 exps): loss and
    gradients against float64 eager torch from the same float32 inputs, within float32 rounding
    of the logits; every chunk answered by the kernel."""
    calls = _spy_compiled(monkeypatch)
    monkeypatch.setattr(_cpu_impl, "LCE_CHUNK_BYTES", 5 * 19 * 4)  # 5 tokens per chunk
    h, w, b, t = (a.detach().float() if a.is_floating_point() else a for a in _data(lead=(23,), seed=3))
    b = b if bias else None
    args = [a.clone().requires_grad_() for a in (h, w)] + ([b.clone().requires_grad_()] if bias else [])
    ours = L.linear_cross_entropy(args[0], args[1], t, args[2] if bias else None, reduction="sum")
    got = torch.autograd.grad(ours, args)
    ref_args = [a.double().requires_grad_() for a in (h, w)] + ([b.double().requires_grad_()] if bias else [])
    ref = F.cross_entropy(ref_args[0] @ ref_args[1].T + (ref_args[2] if bias else 0), t, reduction="sum")
    want = torch.autograd.grad(ref, ref_args)
    assert calls and all(calls) and len(calls) == 5
    torch.testing.assert_close(ours.double(), ref, rtol=1e-6, atol=0)
    for a, r in zip(got, want):
        torch.testing.assert_close(a.double(), r, rtol=1e-5, atol=1e-6)


def test_compiled_chunk_special_rows_and_ignored_targets(monkeypatch):
    """Rows with +inf, all −inf or NaN logits are left to the torch rules by the kernel; ignored
    rows give 0 and a zero gradient; the rest matches the torch chunk (float32 exps there, float64
    in the kernel: within 2 float32 ulps)."""
    from logsumexp import _cpu
    from logsumexp._options import CrossEntropyOptions

    calls = _spy_compiled(monkeypatch)
    g = torch.Generator().manual_seed(1)
    z0 = torch.randn(12, 300, generator=g) * 4
    z0[3, 5], z0[5, 7] = float("inf"), float("nan")
    z0[4] = -float("inf")
    z0[6] = 2.0  # all tied
    t = torch.randint(0, 300, (12,), generator=g)
    t[2], t[4] = -100, 1
    gr = torch.rand(12, generator=g)
    outs = []
    for compiled in (True, False):
        z, rows, lse = z0.clone(), torch.empty(12), torch.empty(12)
        ctx = _cpu.disabled() if not compiled else torch.no_grad()
        with ctx:
            grad = _cpu_impl._fused_chunk(z, t, None, gr, CrossEntropyOptions(), rows, lse)
        outs.append((grad, rows, lse))
    assert calls == [True, False]
    for a, r in zip(outs[0], outs[1]):
        torch.testing.assert_close(a, r, rtol=2.4e-7, atol=1e-7, equal_nan=True)
    assert outs[0][1][2] == 0 and torch.all(outs[0][0][2] == 0)


def test_compiled_chunk_under_torch_compile_and_torch_func(monkeypatch):
    """The way users run it: torch.compile(fullgraph=True, dynamic=True) and torch.func.grad over a
    float32 linear cross-entropy whose chunks take the compiled kernel; same loss and gradients
    as eager (the kernel runs inside the custom op, outside the graph)."""
    calls = _spy_compiled(monkeypatch)
    g = torch.Generator().manual_seed(4)
    w = torch.randn(29, 8, generator=g)
    t = torch.randint(0, 29, (11,), generator=g)

    def loss(h, w):
        return L.linear_cross_entropy(h, w, t)

    h = torch.randn(11, 8, generator=g)
    want = torch.func.grad(loss, argnums=(0, 1))(h, w)
    compiled = torch.compile(loss, fullgraph=True, dynamic=True, backend="aot_eager")
    hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
    got_loss = compiled(hh, ww)
    got = torch.autograd.grad(got_loss, (hh, ww))
    torch.testing.assert_close(got_loss, loss(h, w), rtol=1e-6, atol=0)
    for a, r in zip(got, want):
        torch.testing.assert_close(a, r, rtol=1e-6, atol=1e-7)
    assert calls and all(calls)
