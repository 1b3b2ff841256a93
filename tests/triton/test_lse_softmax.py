"""Row LogSumExp, softmax and log_softmax kernels against torch in float64 (values, gradients, special values)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="logsumexp.triton needs torch")
pytest.importorskip("triton", reason="logsumexp.triton needs the triton package")

import logsumexp.triton as lt  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
INF = float("inf")
NAN = float("nan")
# Result dtype's unit roundoff: a float32-accumulated result rounded to the output dtype is within ~1 ulp.
ULP = {torch.float64: 2.0**-52, torch.float32: 2.0**-23, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}
SHAPES = [(37, 1000), (3, 1531), (4, 1), (2, 2500)]  # odd widths, a row of length 1, several blocks


def rand(shape, dtype, scale=4.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype).to(DEVICE)


def close(out, ref, dtype, ulps=4.0):
    """|out − ref| ≤ ulps · u_dtype · max(|ref|, 1) elementwise (ref float64, same special values)."""
    out = out.double().cpu()
    ref = ref.double().cpu()
    assert torch.equal(out.isnan(), ref.isnan())
    fin = ref.isfinite()
    assert torch.equal(out[~fin & ~ref.isnan()], ref[~fin & ~ref.isnan()])
    tol = ulps * ULP[dtype] * ref[fin].abs().clamp_min(1.0)
    err = (out[fin] - ref[fin]).abs()
    assert bool((err <= tol).all()), f"max error {err.max():.3g}, tolerance {tol.min():.3g}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_logsumexp_matches_float64(shape, dtype):
    x = rand(shape, dtype)
    close(lt.logsumexp_rows(x), torch.logsumexp(x.double(), -1), dtype)


@pytest.mark.parametrize("shape", SHAPES[:3])
def test_softmax_and_log_softmax_match_float64(shape):
    x = rand(shape, torch.float32, seed=1)
    close(lt.softmax_rows(x, False), torch.softmax(x.double(), -1), torch.float32)
    close(lt.softmax_rows(x, True), torch.log_softmax(x.double(), -1), torch.float32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_softmax_low_precision_inputs(dtype):
    x = rand((37, 1000), dtype, seed=2)
    close(lt.softmax_rows(x, False), torch.softmax(x.double(), -1), dtype, ulps=1.0)
    close(lt.softmax_rows(x, True), torch.log_softmax(x.double(), -1), dtype, ulps=1.0)


def test_strided_rows_and_float64_softmax():
    wide = rand((6, 1200), torch.float32, seed=4)[:, 100:1100]  # row stride 1200 ≠ row length 1000
    close(lt.logsumexp_rows(wide), torch.logsumexp(wide.double(), -1), torch.float32)
    close(lt.softmax_rows(wide, False), torch.softmax(wide.double(), -1), torch.float32)
    x = rand((5, 1531), torch.float64, seed=3)
    close(lt.softmax_rows(x, False), torch.softmax(x, -1), torch.float64)
    close(lt.softmax_rows(x, True), torch.log_softmax(x, -1), torch.float64)


def test_special_values_contract():
    x = torch.randn(5, 1531, dtype=torch.float64) * 3
    x[1] = -INF  # all −inf
    x[2, 7] = INF
    x[2, 900] = INF  # two +inf entries share the mass
    x[3, 4] = NAN  # NaN stays in its row
    x[4, ::2] = -INF  # some −inf entries vanish
    xd = x.float().to(DEVICE)
    lse = lt.logsumexp_rows(xd).cpu()
    assert lse[1] == -INF and lse[2] == INF and lse[3].isnan()
    assert torch.isfinite(lse[[0, 4]]).all()
    sm = lt.softmax_rows(xd, False).cpu()
    assert torch.equal(sm[1], torch.zeros(1531))
    assert sm[2, 7] == 0.5 and sm[2, 900] == 0.5 and sm[2].sum() == 1.0
    assert sm[3].isnan().all() and not sm[[0, 1, 2, 4]].isnan().any()
    assert torch.equal(sm[4, ::2], torch.zeros(766))
    ls = lt.softmax_rows(xd, True).cpu()
    assert (ls[1] == -INF).all()
    assert ls[2, 7] == pytest.approx(-0.6931471805599453, rel=1e-6) and ls[2, 0] == -INF
    assert ls[3].isnan().all() and not ls[[0, 1, 2, 4]].isnan().any()
    # gradient of LSE: softmax, 0 on an all −inf row (never NaN), 1/k on the k +inf entries
    xg = xd.clone().requires_grad_()
    lt.logsumexp_rows(xg).sum().backward()
    g = xg.grad.cpu()
    assert torch.equal(g[1], torch.zeros(1531))
    assert g[2, 7] == 0.5 and g[2, 900] == 0.5 and g[2, 0] == 0.0
    assert g[3].isnan().all() and not g[[0, 1, 2, 4]].isnan().any()
    close(g[0], torch.softmax(x[0], -1), torch.float32)


def test_empty_row_and_scalar():
    assert lt.logsumexp_rows(torch.empty(3, 0, device=DEVICE)).cpu().tolist() == [-INF] * 3
    assert lt.logsumexp_rows(torch.tensor([[2.5]], device=DEVICE)).item() == 2.5
    assert lt.softmax_rows(torch.tensor([[3.0]], device=DEVICE), False).item() == 1.0
    assert lt.softmax_rows(torch.empty(0, 7, device=DEVICE), True).shape == (0, 7)


def test_confident_log_softmax_keeps_relative_accuracy():
    # log p of the winning class is −Σ_{j≠k} e^{x_j−m} ≈ −2·e^{−20}: the naive form returns 0
    out = lt.softmax_rows(torch.tensor([[20.0, 0.0, 0.0]], device=DEVICE), True)[0, 0].item()
    ref = torch.log_softmax(torch.tensor([20.0, 0.0, 0.0], dtype=torch.float64), -1)[0].item()
    assert out == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gradients_match_float64(dtype):
    x = rand((37, 1000), dtype, seed=5)
    up = rand((37, 1000), torch.float64, scale=1.0, seed=6)
    up_row = rand((37,), torch.float64, scale=1.0, seed=7)
    for fn, ref_fn, upstream in (
        (lt.logsumexp_rows, lambda t: torch.logsumexp(t, -1), up_row),
        (lambda t: lt.softmax_rows(t, False), lambda t: torch.softmax(t, -1), up),
        (lambda t: lt.softmax_rows(t, True), lambda t: torch.log_softmax(t, -1), up),
    ):
        xg = x.clone().requires_grad_()
        fn(xg).backward(upstream.to(dtype))
        x64 = x.double().requires_grad_()
        ref_fn(x64).backward(upstream.to(dtype).double())
        err = (xg.grad.double() - x64.grad).norm() / x64.grad.norm()
        # float32: accumulation error; bf16: the saved softmax / gradient are rounded to bf16
        assert err <= (2e-6 if dtype == torch.float32 else 8e-3), (fn, float(err))


def test_deterministic_bitwise():
    x = rand((37, 1000), torch.float32, seed=8)
    a, b = lt.logsumexp_rows(x), lt.logsumexp_rows(x)
    assert torch.equal(a, b)
    assert torch.equal(lt.softmax_rows(x, True), lt.softmax_rows(x, True))


@pytest.mark.parametrize("name", ["lse", "softmax", "log_softmax"])
def test_second_derivatives_match_float64(name):
    fn, ref_fn = {
        "lse": (lt.logsumexp_rows, lambda t: torch.logsumexp(t, -1)),
        "softmax": (lambda t: lt.softmax_rows(t, False), lambda t: torch.softmax(t, -1)),
        "log_softmax": (lambda t: lt.softmax_rows(t, True), lambda t: torch.log_softmax(t, -1)),
    }[name]
    x = rand((5, 301), torch.float64, scale=2.0, seed=9)
    v = rand((5, 301), torch.float64, scale=1.0, seed=10)  # direction of the Hessian-vector product
    out = []
    for f in (fn, ref_fn):
        xg = x.clone().requires_grad_()
        y = f(xg)
        (g,) = torch.autograd.grad((y * y).sum(), xg, create_graph=True)
        (h,) = torch.autograd.grad((g * v).sum(), xg)
        out.append(h)
    assert float((out[0] - out[1]).norm() / out[1].norm()) <= 1e-12


def test_torch_func_grad_and_vjp():
    x = rand((4, 257), torch.float64, seed=11)
    g = torch.func.grad(lambda a: lt.logsumexp_rows(a).sum())(x)
    assert float((g - torch.softmax(x, -1)).abs().max()) <= 1e-15
    _, vjp = torch.func.vjp(lambda a: lt.softmax_rows(a, True), x)
    u = rand((4, 257), torch.float64, seed=12)
    (got,) = vjp(u)
    want = u - torch.softmax(x, -1) * u.sum(-1, keepdim=True)
    assert float((got - want).abs().max()) <= 1e-13


def test_import_logsumexp_imports_neither_torch_nor_triton():
    import subprocess
    import sys

    code = "import logsumexp, sys; print(sorted(m for m in ('torch', 'triton') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
