"""``logsumexp.torch.log_probs`` and ``linear_log_probs``: values, entropy, gradients, special rows.

References are float64 eager torch (``log_softmax`` and ``−Σ p log p`` on the float64 copy of the same
inputs); accuracy is stated in float32 ulps of the reference.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="the torch face needs PyTorch")
import torch.nn.functional as F  # noqa: E402

import logsumexp.torch as L  # noqa: E402
import logsumexp.torch._log_probs as LP  # noqa: E402

V = 1531  # odd, not a multiple of any block
INDUCTOR_WARNING = "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"


def _ulp32(ref: torch.Tensor) -> torch.Tensor:
    """The float32 spacing at each float64 reference value."""
    r = ref.to(torch.float32).abs()
    return (torch.nextafter(r, torch.full_like(r, math.inf)) - r).to(torch.float64)


def _ref64(x: torch.Tensor, y: torch.Tensor, temperature: float = 1.0):
    """Float64 eager log p(y) and entropy of finite rows."""
    z = x.double() / temperature
    lsm = torch.log_softmax(z, -1)
    p = lsm.exp()
    ent = -(torch.where(p > 0, p * lsm, 0.0)).sum(-1)
    return lsm.gather(-1, y.clamp_min(0).unsqueeze(-1)).squeeze(-1), ent


def _data(n=12, v=V, scale=3.0, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, v, generator=g, dtype=torch.float64) * scale).to(dtype)
    y = torch.randint(0, v, (n,), generator=g)
    return x, y


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_log_probs_within_2_ulp_of_float64(temperature):
    x, y = _data(n=64)
    lp = L.log_probs(x, y, temperature=temperature)
    ref, _ = _ref64(x, y, temperature)
    err = (lp.double() - ref).abs() / _ulp32(ref)
    assert lp.dtype == torch.float32
    assert float(err.max()) <= 2.0, err.max()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input_is_accumulated_in_float32(dtype):
    x, y = _data(n=32, dtype=dtype)
    lp, ent = L.log_probs(x, y, return_entropy=True)
    ref_lp, ref_h = _ref64(x, y)
    assert lp.dtype == ent.dtype == torch.float32
    assert float(((lp.double() - ref_lp).abs() / _ulp32(ref_lp)).max()) <= 2.0
    assert float(((ent.double() - ref_h).abs() / _ulp32(ref_h)).max()) <= 8.0


def test_entropy_within_8_ulp_of_float64():
    x, y = _data(n=64)
    _, ent = L.log_probs(x, y, return_entropy=True)
    _, ref = _ref64(x, y)
    assert float(((ent.double() - ref).abs() / _ulp32(ref)).max()) <= 8.0


@pytest.mark.parametrize("gap", [20.0, 40.0, 66.0, 80.0])
def test_confident_entropy_keeps_relative_accuracy_down_to_1e_30(gap):
    """One logit ``gap`` above the rest: H ≈ (V−1)(1 + gap) e^{−gap}, down to 2e−30 at gap = 80;
    the usual ``m + log A − B/A`` returns 0 or noise there."""
    x = torch.zeros(3, V)
    x[:, 0] = gap
    x[1, 5] = -math.inf  # a −inf entry changes nothing
    x[2, 1:] = torch.linspace(-1.0, 0.0, V - 1)
    _, ent = L.log_probs(x, torch.zeros(3, dtype=torch.long), return_entropy=True)
    # float64 reference in the same no-cancellation form, from the same float32 inputs
    t = x.double() - gap
    e = torch.where(t == -math.inf, 0.0, t.exp())
    e[:, 0] = 0.0
    tail = e.sum(-1)
    b = torch.where(e == 0, 0.0, t * e).sum(-1)
    ref = torch.log1p(tail) - b / (1 + tail)
    if gap == 80.0:
        assert float(ref.max()) < 3e-30
    err = (ent.double() - ref).abs() / _ulp32(ref)
    assert float(err.max()) <= 8.0, (ent, ref)
    naive = torch.logsumexp(x, -1) - (torch.softmax(x, -1) * x).sum(-1)  # m + log A − B/A in float32
    if gap >= 40.0:
        finite = [0, 2]  # (row 1's −inf entry makes the naive form NaN outright)
        assert float(((naive[finite].double() - ref[finite]).abs() / ref[finite]).max()) > 0.5


def test_log_probs_equal_minus_cross_entropy_on_every_row():
    """Special rows included: the same values (infinities and 0 exactly; finite rows to 2 float32
    ulps: cross-entropy's CPU rows come from the compiled kernels' float64 state, log_probs from
    the chunked float32 torch path), NaN where cross-entropy is NaN."""
    x, y = _data(n=10)
    x[1] = -math.inf  # all −inf
    x[2, [3, 9]] = math.inf  # two +inf entries
    y[2] = 9
    x[3, [3, 9]] = math.inf
    y[3] = 4  # a target outside the +inf entries: −inf
    x[4, 7] = math.nan
    x[5, ::2] = -math.inf
    y[5] = 1
    x[6, 0] = 1000.0
    y[6] = 0
    y[7] = -100
    for temperature in (1.0, 0.5):
        lp = L.log_probs(x, y, temperature=temperature)
        ce = L.cross_entropy(x / temperature, y, reduction="none")
        close = torch.isclose(lp, -ce, rtol=2 * torch.finfo(torch.float32).eps, atol=0.0)  # inf == inf exact
        same = close | (lp.isnan() & ce.isnan())
        assert bool(same.all()), (lp, -ce)
    assert float(lp[2]) == pytest.approx(-math.log(2.0))
    assert lp[1] == -math.inf and lp[3] == -math.inf and lp[7] == 0.0


def test_special_rows_entropy_and_gradients():
    x, y = _data(n=6)
    x[0] = -math.inf  # softmax all 0: entropy 0, zero gradients
    x[1, [3, 9, 11]] = math.inf  # three +inf: H = log 3, entropy gradient 0
    x[2, 4] = math.nan  # NaN in that row only
    x[3, ::3] = -math.inf  # −inf entries: zero gradient there
    y[3] = 1
    xr = x.clone().requires_grad_()
    lp, ent = L.log_probs(xr, y, return_entropy=True)
    e = ent.detach()
    assert float(e[0]) == 0.0
    assert float(e[1]) == pytest.approx(math.log(3.0), rel=1e-7)
    assert e[2].isnan() and lp[2].isnan()
    assert bool(torch.isfinite(e[[0, 1, 3, 4, 5]]).all())
    ent.sum().backward()
    grad = xr.grad
    assert not bool(grad[0].any())
    assert not bool(grad[1].any())
    assert bool(grad[2].isnan().all())
    assert bool(torch.isfinite(grad[[0, 1, 3, 4, 5]]).all())
    assert not bool(grad[3, ::3].any())


def test_ignored_tokens_give_zero_and_no_log_prob_gradient():
    x, y = _data(n=5)
    y[[1, 3]] = -100
    xr = x.clone().requires_grad_()
    lp, ent = L.log_probs(xr, y, return_entropy=True)
    assert lp[1].item() == 0.0 and lp[3].item() == 0.0
    _, ref_h = _ref64(x, y)
    torch.testing.assert_close(ent.detach().double(), ref_h, rtol=1e-6, atol=0)  # entropy does not need the token
    lp.sum().backward()
    assert not bool(xr.grad[[1, 3]].any())


def test_out_of_range_token_raises_cross_entropys_index_error():
    x, y = _data(n=4)
    y[2] = V
    with pytest.raises(IndexError) as ours:
        L.log_probs(x, y)
    with pytest.raises(IndexError) as theirs:
        L.cross_entropy(x, y)
    assert str(ours.value) == str(theirs.value)
    assert "target value 1531 at position (2,)" in str(ours.value)
    with pytest.raises(IndexError, match="target value 1531"):
        L.linear_log_probs(torch.randn(4, 3), torch.randn(V, 3), y)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"temperature": 0.0}, ValueError, "temperature must be finite and > 0"),
        ({"temperature": math.inf}, ValueError, "temperature"),
        ({"ignore_index": 1.5}, TypeError, "ignore_index must be an int"),
        ({"return_entropy": 1}, TypeError, "return_entropy must be a bool"),
    ],
)
def test_bad_options_raise_naming_the_argument(kwargs, error, match):
    x, y = _data(n=2, v=5)
    with pytest.raises(error, match=match):
        L.log_probs(x, y, **kwargs)


def test_bad_tensors_raise_naming_the_argument():
    x, y = _data(n=2, v=5)
    with pytest.raises(TypeError, match="tokens must hold integer token ids"):
        L.log_probs(x, y.float())
    with pytest.raises(ValueError, match=r"tokens must have shape \(2,\)"):
        L.log_probs(x, y[:1])
    with pytest.raises(TypeError, match="logits must have a floating dtype"):
        L.log_probs(y, y)
    with pytest.raises(ValueError, match="vocabulary dimension"):
        L.log_probs(torch.zeros(2, 0), y)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        L.linear_log_probs(torch.randn(2, 3), torch.randn(5, 3), y, chunk_size=0)


# --------------------------------------------------------------------------- gradients


def _gradient_reference(x, y, g_lp, g_h, temperature):
    x64 = x.double().requires_grad_()
    z = x64 / temperature
    lsm = torch.log_softmax(z, -1)
    lp = torch.where(y != -100, lsm.gather(-1, y.clamp_min(0).unsqueeze(-1)).squeeze(-1), 0.0)
    ent = -(lsm.exp() * lsm).sum(-1)
    (lp * g_lp + ent * g_h).sum().backward()
    return x64.grad


@pytest.mark.parametrize("temperature", [1.0, 1.3])
@pytest.mark.parametrize("which", ["both", "log_probs", "entropy"])
def test_gradient_for_any_upstream_gradient(temperature, which):
    x, y = _data(n=16, v=257)
    y[4] = -100
    g = torch.Generator().manual_seed(1)
    g_lp = torch.randn(16, generator=g, dtype=torch.float64) * (which != "entropy")
    g_h = torch.randn(16, generator=g, dtype=torch.float64) * (which != "log_probs")
    xr = x.clone().requires_grad_()
    lp, ent = L.log_probs(xr, y, temperature=temperature, return_entropy=True)
    outs = [(lp, g_lp), (ent, g_h)]
    used = [(o, w.float()) for (o, w), keep in zip(outs, (which != "entropy", which != "log_probs")) if keep]
    torch.autograd.backward([o for o, _ in used], [w for _, w in used])
    ref = _gradient_reference(x, y, g_lp, g_h, temperature)
    torch.testing.assert_close(xr.grad.double(), ref, rtol=0, atol=2e-6 * float(ref.abs().max()))


def test_chunks_cross_row_boundaries(monkeypatch):
    """Tiny chunks (2 rows): the same values and gradients as one chunk."""
    x, y = _data(n=9, v=101)
    xr = x.clone().requires_grad_()
    lp, ent = L.log_probs(xr, y, return_entropy=True)
    (lp * 2 + ent).sum().backward()
    import logsumexp.torch._cpu_impl as C

    monkeypatch.setattr(C, "CHUNK_ELEMENTS", 202)
    xc = x.clone().requires_grad_()
    lp2, ent2 = L.log_probs(xc, y, return_entropy=True)
    (lp2 * 2 + ent2).sum().backward()
    assert torch.equal(lp, lp2) and torch.equal(ent, ent2) and torch.equal(xr.grad, xc.grad)


def test_torch_func_grad_and_second_derivative():
    x, y = _data(n=6, v=37, dtype=torch.float64)
    y[2] = -100

    def f(z):
        lp, ent = L.log_probs(z, y, return_entropy=True, temperature=0.9)
        return (lp * 2 + ent * 3).sum()

    g = torch.func.grad(f)(x)
    xr = x.clone().requires_grad_()
    f(xr).backward()
    torch.testing.assert_close(g, xr.grad, rtol=1e-12, atol=1e-13)
    # Hessian-vector product against finite differences of the gradient (float64).
    v = torch.randn_like(x)
    hv = torch.func.grad(lambda z: (torch.func.grad(f)(z) * v).sum())(x)  # reverse over reverse
    h = 1e-6
    fd = (torch.func.grad(f)(x + h * v) - torch.func.grad(f)(x - h * v)) / (2 * h)
    torch.testing.assert_close(hv, fd, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
@pytest.mark.filterwarnings(INDUCTOR_WARNING)
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_compile_fullgraph(dynamic):
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    w = torch.randn(37, 8, generator=g, requires_grad=True)
    b = torch.randn(37, generator=g, requires_grad=True)

    def f(h, w, b, y, temp):
        lp, ent = L.linear_log_probs(h, w, y, bias=b, return_entropy=True, temperature=temp, chunk_size=4)
        lp2, ent2 = L.log_probs(h @ w.T, y, return_entropy=True, temperature=temp)
        return (lp * 2 + ent).sum() + (lp2 - ent2).sum()

    compiled = torch.compile(f, fullgraph=True, dynamic=dynamic)
    for n, temp in ((6, 1.0), (9, 0.8)):
        h = torch.randn(n, 8, generator=g)
        y = torch.randint(0, 37, (n,), generator=g)
        y[1] = -100
        out = compiled(h, w, b, y, temp)
        ref = f(h, w, b, y, temp)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        for a, r in zip(torch.autograd.grad(out, [w, b]), torch.autograd.grad(ref, [w, b])):
            torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- linear


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_matches_logits_path(dtype, bias):
    """``linear_log_probs`` equals ``log_probs`` of the same (input-dtype) logits; gradients of
    hidden, weight and bias match float64 eager."""
    g = torch.Generator().manual_seed(3)
    n, d = 11, 16
    h = torch.randn(n, d, generator=g).to(dtype)
    w = (torch.randn(V, d, generator=g) * 0.5).to(dtype)
    b = torch.randn(V, generator=g).to(dtype) if bias else None
    y = torch.randint(0, V, (n,), generator=g)
    y[3] = -100
    params = [t.clone().requires_grad_() for t in (h, w) + ((b,) if bias else ())]
    lp, ent = L.linear_log_probs(params[0], params[1], y, bias=params[2] if bias else None,
                                 return_entropy=True, chunk_size=4, temperature=0.8)
    logits = F.linear(h, w, b)
    lp_ref, ent_ref = L.log_probs(logits, y, return_entropy=True, temperature=0.8)
    # Chunked and whole products may round differently (BLAS blocking): a product's rounding apart.
    close = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float64: 1e-12}[dtype]
    torch.testing.assert_close(lp, lp_ref, rtol=close, atol=close)
    torch.testing.assert_close(ent, ent_ref, rtol=close, atol=close)
    gw = torch.randn(n, generator=g, dtype=torch.float64)
    (lp * gw.to(lp.dtype) + ent).sum().backward()
    ref_params = [t.double().requires_grad_() for t in (h, w) + ((b,) if bias else ())]
    z = F.linear(ref_params[0], ref_params[1], ref_params[2] if bias else None) / 0.8
    lsm = torch.log_softmax(z, -1)
    lp64 = torch.where(y != -100, lsm.gather(-1, y.clamp_min(0)[:, None]).squeeze(-1), 0.0)
    ((lp64 * gw) - (lsm.exp() * lsm).sum(-1)).sum().backward()
    tol = {torch.float32: 2e-5, torch.bfloat16: 2e-2, torch.float64: 1e-12}[dtype]
    for p, r in zip(params, ref_params):
        assert p.grad.dtype == dtype
        torch.testing.assert_close(p.grad.double(), r.grad, rtol=0, atol=tol * float(r.grad.abs().max()))


def test_linear_never_builds_the_logits(monkeypatch):
    """Every logits chunk the forward and backward passes build has at most ``chunk_size`` rows."""
    seen = []
    real = LP._chunk_logits

    def spy(h, *args):
        seen.append(h.shape[0])
        return real(h, *args)

    monkeypatch.setattr(LP, "_chunk_logits", spy)
    h = torch.randn(50, 8, requires_grad=True)
    w = torch.randn(97, 8, requires_grad=True)
    y = torch.randint(0, 97, (50,))
    lp = L.linear_log_probs(h, w, y, chunk_size=7)
    lp.sum().backward()
    assert max(seen) == 7 and sum(seen) == 100  # forward and backward, 50 tokens each


def test_linear_leading_dimensions_and_frozen_weight():
    g = torch.Generator().manual_seed(4)
    h = torch.randn(2, 5, 8, generator=g, requires_grad=True)
    w = torch.randn(33, 8, generator=g)  # frozen
    y = torch.randint(0, 33, (2, 5), generator=g)
    lp, ent = L.linear_log_probs(h, w, y, return_entropy=True)
    assert lp.shape == ent.shape == (2, 5)
    ref_lp, ref_h = L.log_probs(h @ w.T, y, return_entropy=True)
    torch.testing.assert_close(lp, ref_lp, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ent, ref_h, rtol=1e-6, atol=1e-6)
    (lp.sum() + ent.sum()).backward()
    assert h.grad is not None and w.grad is None


def test_cpu_tensors_never_reach_triton(monkeypatch):
    """The face sends CUDA tensors only to the Triton kernels."""

    class Trap:
        def __getattr__(self, name):
            raise AssertionError(f"Triton called for a CPU tensor ({name})")

    monkeypatch.setattr(LP, "_TRITON", Trap())
    x, y = _data(n=3, v=11)
    L.log_probs(x, y)
    L.linear_log_probs(torch.randn(3, 4), torch.randn(11, 4), y)
