"""Triton log-probs / entropy kernels against the torch face and float64 torch (odd V = 1531; tiny shapes:
the interpreter is slow)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="logsumexp.triton needs torch")
pytest.importorskip("triton", reason="logsumexp.triton needs the triton package")

import logsumexp.torch as L  # noqa: E402
import logsumexp.triton._log_probs as K  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
V = 1531


def _data(n=6, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, V, generator=g, dtype=torch.float64) * 3).to(dtype)
    y = torch.randint(0, V, (n,), generator=g)
    y[1] = -100
    return x, y


def _ref64(x, y, temperature, g_lp, g_h):
    x64 = x.detach().double().requires_grad_()
    lsm = torch.log_softmax(x64 / temperature, -1)
    lp = torch.where(y != -100, lsm.gather(-1, y.clamp_min(0)[:, None]).squeeze(-1), 0.0)
    ent = -(lsm.exp() * lsm).sum(-1)
    (lp * g_lp + ent * g_h).sum().backward()
    return lp.detach(), ent.detach(), x64.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_values_and_gradient_match_float64(dtype, temperature):
    x, y = _data(dtype=dtype)
    g = torch.Generator().manual_seed(1)
    g_lp, g_h = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    xr = x.clone().to(DEVICE).requires_grad_()
    lp, ent = K.log_probs_rows(xr, y.to(DEVICE), -100, temperature, True)
    torch.autograd.backward([lp, ent], [g_lp.float().to(DEVICE), g_h.float().to(DEVICE)])
    rlp, rent, rgrad = _ref64(x, y, temperature, g_lp, g_h)
    torch.testing.assert_close(lp.cpu().double(), rlp, rtol=2e-7, atol=1e-6)
    torch.testing.assert_close(ent.cpu().double(), rent, rtol=2e-6, atol=0)
    # float32: 2e-6 of the largest entry; bfloat16: the gradient is stored in bf16, one bf16 ulp (2^-7 of
    # each entry: the interpreter's float32 → bf16 store truncates where a GPU rounds to nearest)
    rtol, atol = (0.0, 2e-6) if dtype == torch.float32 else (2**-7, 1e-6)
    torch.testing.assert_close(xr.grad.cpu().double(), rgrad, rtol=rtol, atol=atol * float(rgrad.abs().max()))
    # the same as the torch CPU face (float32 accumulation both)
    clp, cent = L.log_probs(x, y, temperature=temperature, return_entropy=True)
    torch.testing.assert_close(lp.cpu(), clp, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ent.cpu(), cent, rtol=1e-5, atol=1e-7)


def test_special_rows():
    x, y = _data()
    x[0] = -math.inf
    x[2, [3, 99, 1000]] = math.inf
    y[2] = 99
    x[3, 7] = math.nan
    x[4, ::2] = -math.inf
    y[4] = 1
    x[5] = 0.0
    x[5, 0] = 40.0  # confident: H ≈ 1530·41·e^{−40}
    y[5] = 0
    xr = x.clone().to(DEVICE).requires_grad_()
    lp, ent = K.log_probs_rows(xr, y.to(DEVICE), -100, 1.0, True)
    lp, ent = lp.cpu(), ent.cpu()
    assert lp[0].item() == -math.inf and ent[0].item() == 0.0
    assert lp[2].item() == pytest.approx(-math.log(3), rel=1e-6) and ent[2].item() == pytest.approx(math.log(3), rel=1e-6)
    assert lp[3].isnan() and ent[3].isnan()
    e = math.exp(-40.0)
    expected = math.log1p(1530 * e) + 1530 * 40 * e / (1 + 1530 * e)
    assert ent[5].item() == pytest.approx(expected, rel=1e-6)
    ent_used = torch.where(torch.isfinite(ent), ent, 0.0).to(DEVICE)
    (ent * (ent_used == ent).float().to(DEVICE)).nan_to_num(0.0).sum().backward()
    grad = xr.grad.cpu()
    assert not bool(grad[0].any()) and not bool(grad[2].any())
    assert not bool(grad[4, ::2].any()) and bool(torch.isfinite(grad[[0, 1, 2, 4, 5]]).all())


def test_linear_rows_match_torch_face():
    g = torch.Generator().manual_seed(2)
    h = torch.randn(5, 8, generator=g).to(DEVICE).requires_grad_()
    w = (torch.randn(V, 8, generator=g) * 0.5).to(DEVICE).requires_grad_()
    b = torch.randn(V, generator=g).to(DEVICE).requires_grad_()
    y = torch.randint(0, V, (5,), generator=g).to(DEVICE)
    lp, ent = K.linear_log_probs_rows(h, w, b, y, -100, 0.9, True, 2)
    (lp * 2 + ent).sum().backward()
    grads = [t.grad.cpu() for t in (h, w, b)]
    hc, wc, bc = [t.detach().cpu().requires_grad_() for t in (h, w, b)]
    clp, cent = L.linear_log_probs(hc, wc, y.cpu(), bias=bc, temperature=0.9, return_entropy=True)
    (clp * 2 + cent).sum().backward()
    torch.testing.assert_close(lp.cpu(), clp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent.cpu(), cent, rtol=1e-5, atol=1e-6)
    for a, r in zip(grads, (hc.grad, wc.grad, bc.grad)):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)
