"""CPU float32/float64 tensors through the compiled kernels (issues 19 and 21), in the torch face
and in the array core.

What is pinned: the kernels are really called, on the tensor's own memory (no copy); their values
agree with the chunked torch code they replace (``logsumexp._cpu.disabled()`` switches the kernels
off, so the same call then takes the torch path) within a few float32 ulps, special values exactly;
tensors that need a graph keep their gradients; what the kernels cannot read (float16, 0-d,
functorch wrappers) still works through the other paths.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch")

import logsumexp as lse  # noqa: E402
import logsumexp.torch as lt  # noqa: E402
from logsumexp import _cpu  # noqa: E402

pytestmark = pytest.mark.skipif(not _cpu.enabled(), reason="needs the compiled CPU kernels (extension not built)")

F32_ULP = torch.finfo(torch.float32).eps


def _data(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * 4).to(dtype)


def _special_rows(dtype: torch.dtype) -> torch.Tensor:
    x = _data((6, 7), dtype)
    x[1] = -math.inf  # all −inf
    x[2, [1, 4]] = math.inf  # two +inf entries
    x[3, 2] = math.nan
    x[4, ::2] = -math.inf
    x[5, 0] = 1000.0  # a dominant entry
    return x


class _Spy:
    """Wraps a ``logsumexp._cpu`` hook: counts calls and records the data pointers it was given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.fn = getattr(_cpu, name)
        self.pointers: list[int] = []
        monkeypatch.setattr(_cpu, name, self)

    def __call__(self, x, *args):
        self.pointers.append(x.__array_interface__["data"][0])
        return self.fn(x, *args)


def _graph_names(fn, depth: int = 4) -> list[str]:
    """Class names of the autograd nodes within ``depth`` steps of ``fn``."""
    names, frontier = [], [fn]
    for _ in range(depth):
        frontier = [f for f in frontier if f is not None]
        names += [type(f).__name__ for f in frontier]
        frontier = [n for f in frontier for n, _ in f.next_functions]
    return names


def _same(a: torch.Tensor, b: torch.Tensor, ulps: float) -> None:
    """Equal infinities and NaNs in the same places; finite entries within ``ulps`` float32 ulps."""
    assert a.shape == b.shape and a.dtype == b.dtype
    assert torch.equal(a.isnan(), b.isnan())
    fin = torch.isfinite(b)
    assert torch.equal(a[~fin & ~b.isnan()], b[~fin & ~b.isnan()])
    tol = ulps * (F32_ULP if a.dtype == torch.float32 else torch.finfo(torch.float64).eps)
    assert torch.allclose(a[fin].double(), b[fin].double(), rtol=tol, atol=tol)


# --------------------------------------------------------------------------- torch face


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dim", [-1, 0, (0, 1), None])
def test_face_logsumexp_reads_the_tensor_in_place(monkeypatch, dtype, dim):
    x = _data((5, 300), dtype)
    spy = _Spy(monkeypatch, "lse_value")
    out = lt.logsumexp(x, dim)
    assert spy.pointers == [x.data_ptr()]  # one kernel call, on the tensor's own memory
    with _cpu.disabled():
        ref = lt.logsumexp(x, dim)  # the chunked torch path
    _same(out, ref, 2)
    exact = lse.logsumexp(x.double().numpy(), axis=dim)
    assert torch.allclose(out.double(), torch.as_tensor(exact), rtol=F32_ULP if dtype == torch.float32 else 2e-16, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dim", [-1, 0])
def test_face_softmax_reads_the_tensor_in_place(monkeypatch, dtype, log, dim):
    x = _special_rows(dtype)
    spy = _Spy(monkeypatch, "softmax_axes")
    out = (lt.log_softmax if log else lt.softmax)(x, dim)
    assert spy.pointers == [x.data_ptr()]
    with _cpu.disabled():
        ref = (lt.log_softmax if log else lt.softmax)(x, dim)
    _same(out, ref, 4)


def test_face_keepdim_and_out_on_the_kernel_path():
    x = _data((3, 4, 5), torch.float64)
    out = torch.empty(0, dtype=torch.float64)
    got = lt.logsumexp(x, (0, 2), keepdim=True, out=out)
    assert got is out and out.shape == (1, 4, 1)
    assert torch.allclose(out, torch.logsumexp(x, (0, 2), keepdim=True), rtol=1e-15, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_face_logsumexp_with_grad_uses_the_kernels_inside_the_operator(monkeypatch, dtype):
    x = _special_rows(dtype)[[0, 4, 5]].requires_grad_()
    lse_spy = _Spy(monkeypatch, "lse_value")
    soft_spy = _Spy(monkeypatch, "softmax_axes")
    out = lt.logsumexp(x, -1)
    assert out.grad_fn is not None and len(lse_spy.pointers) == 1
    out.sum().backward()
    assert len(soft_spy.pointers) == 1  # the backward's softmax from the kernels too
    ref = torch.softmax(x.detach().double(), -1).to(dtype)
    assert torch.allclose(x.grad, ref, rtol=4 * F32_ULP, atol=1e-30)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("options", [{}, {"weight": "w"}, {"z_loss": 1e-2}, {"ignore_index": 2}])
def test_face_cross_entropy_rows_match_the_torch_path(dtype, options):
    x = _special_rows(dtype)
    t = torch.tensor([0, 3, 1, 2, 1, 0])  # row 4 targets a −inf logit: +inf loss
    if options.get("weight") == "w":
        options = {"weight": torch.linspace(0.0, 2.0, 7, dtype=dtype)}  # class 0 weighs 0
    got = lt.cross_entropy(x, t, reduction="none", **options)
    with _cpu.disabled():
        ref = lt.cross_entropy(x, t, reduction="none", **options)
    _same(got, ref, 4)
    assert got[1] == math.inf  # all −inf: no probability for the target
    assert got[3] == 0.0 if options.get("ignore_index") == 2 else got[3].isnan()


def test_face_cross_entropy_forward_backward_on_the_kernels(monkeypatch):
    x = _data((64, 1000), torch.float32).requires_grad_()
    t = torch.randint(0, 1000, (64,), generator=torch.Generator().manual_seed(1))
    spy = _Spy(monkeypatch, "cross_entropy_grad_rows")
    loss = lt.cross_entropy(x, t)
    loss.backward()
    # the forward's rows on the logits' own memory, then the backward's in the gradient buffer
    assert len(spy.pointers) == 2 and spy.pointers[0] == x.data_ptr() != spy.pointers[1]
    xd = x.detach().clone().requires_grad_()
    ref = torch.nn.functional.cross_entropy(xd.double(), t)
    ref.backward()  # float64 reference (xd.grad float32, from float64)
    assert abs(loss.item() - ref.item()) <= 2 * F32_ULP * ref.item()
    assert torch.allclose(x.grad.double(), xd.grad.double(), rtol=0, atol=4 * F32_ULP / 64)


@pytest.mark.parametrize("inplace", [False, True])
def test_face_cross_entropy_gradient_of_special_rows_matches_the_torch_path(inplace):
    x = _special_rows(torch.float32)
    t = torch.tensor([0, 3, 1, -100, 0, 0])  # row 3 (NaN) ignored, row 4 targets a −inf logit
    grads = []
    for kernels_on in (True, False):
        xg = x.clone().requires_grad_()
        if kernels_on:
            lt.cross_entropy(xg * 1.0, t, reduction="sum", inplace_backward=inplace).backward()
        else:
            with _cpu.disabled():
                lt.cross_entropy(xg * 1.0, t, reduction="sum", inplace_backward=inplace).backward()
        grads.append(xg.grad)
    _same(grads[0], grads[1], 4)


def test_face_second_derivatives_still_flow():
    x = _data((3, 6), torch.float64).requires_grad_()
    (g,) = torch.autograd.grad(lt.logsumexp(x, -1).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad((g * g).sum(), x)
    x0 = x.detach().requires_grad_()
    (g0,) = torch.autograd.grad(torch.logsumexp(x0, -1).sum(), x0, create_graph=True)
    (h0,) = torch.autograd.grad((g0 * g0).sum(), x0)
    assert torch.allclose(h, h0, rtol=1e-12, atol=1e-15)


def test_face_float16_and_wrapped_tensors_take_the_torch_path(monkeypatch):
    spy = _Spy(monkeypatch, "lse_value")
    x = _data((4, 8), torch.float16)
    assert torch.allclose(lt.logsumexp(x, -1).float(), torch.logsumexp(x.float(), -1), rtol=1e-3)
    y = _data((3, 4, 8), torch.float64)
    out = torch.func.vmap(lambda r: lt.logsumexp(r, -1))(y)  # a batched wrapper: never .numpy()
    assert torch.allclose(out, torch.logsumexp(y, -1), rtol=1e-15, atol=0)
    assert spy.pointers == []


# --------------------------------------------------------------------------- the array core on tensors


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("axis", [None, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_core_logsumexp_of_a_tensor_is_the_numpy_face_bit_for_bit(monkeypatch, dtype, axis, keepdims):
    x = _data((3, 40, 5), dtype)
    spy = _Spy(monkeypatch, "lse_value")
    got = lse.logsumexp(x, axis=axis, keepdims=keepdims)
    assert spy.pointers == [x.data_ptr()]
    assert isinstance(got, torch.Tensor) and got.dtype == dtype
    ref = np.asarray(lse.logsumexp(x.numpy(), axis=axis, keepdims=keepdims))
    assert got.shape == ref.shape
    assert np.array_equal(got.numpy(), ref)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("axis", [-1, 0, (0, 1), None])
def test_core_softmax_of_a_tensor_is_the_numpy_face_bit_for_bit(monkeypatch, log, axis):
    x = _special_rows(torch.float32)
    spy = _Spy(monkeypatch, "softmax_axes")
    fn = lse.log_softmax if log else lse.softmax
    got = fn(x, axis=axis)
    assert spy.pointers == [x.data_ptr()] and isinstance(got, torch.Tensor)
    assert np.array_equal(got.numpy(), fn(x.numpy(), axis=axis), equal_nan=True)


def test_core_tensor_that_needs_a_graph_goes_to_the_torch_face():
    x = _special_rows(torch.float64)[[0, 4, 5]].requires_grad_()
    out = lse.logsumexp(x, axis=1)
    assert "_LogSumExpLastBackward" in _graph_names(out.grad_fn)  # the face's operator, not generic ops
    out.sum().backward()
    assert torch.allclose(x.grad, torch.softmax(x.detach(), 1), rtol=1e-15, atol=1e-300)
    y = lse.log_softmax(x, axis=0)
    assert "_SoftmaxLastBackward" in _graph_names(y.grad_fn)
    (g,) = torch.autograd.grad(y[0].sum(), x)
    (g0,) = torch.autograd.grad(torch.log_softmax(x, 0)[0].sum(), x)
    assert torch.allclose(g, g0, rtol=1e-14, atol=1e-15)


def test_core_tensor_the_kernels_cannot_read_takes_the_generic_path(monkeypatch):
    spy = _Spy(monkeypatch, "lse_value")
    half = _data((4, 8), torch.float16)
    assert lse.logsumexp(half, axis=1).dtype == torch.float16
    assert float(lse.logsumexp(torch.tensor(3.0))) == 3.0  # 0-d
    weighted = lse.logsumexp(_data((4, 8), torch.float64), axis=1, b=torch.full((4, 8), 0.5, dtype=torch.float64))
    assert weighted.shape == (4,)
    assert spy.pointers == []


def test_core_tensor_bad_axis_raises_the_core_error():
    with pytest.raises(np.exceptions.AxisError, match="axis=2"):
        lse.logsumexp(_data((4, 8), torch.float32), axis=2)
    with pytest.raises(ValueError, match="repeats"):
        lse.softmax(_data((4, 8), torch.float32), axis=(1, -1))


# --------------------------------------------------------------------------- small NumPy calls


@pytest.mark.parametrize("shape,axis", [((10,), -1), ((1000,), 0), ((1000, 5), 1), ((4, 6), (0, 1)), ((4, 6), None)])
@pytest.mark.parametrize("log", [False, True])
def test_numpy_softmax_goes_straight_to_the_kernels(monkeypatch, shape, axis, log):
    x = np.random.default_rng(0).standard_normal(shape) * 5
    spy, last = _Spy(monkeypatch, "softmax_axes"), _Spy(monkeypatch, "softmax_last")
    fn = lse.log_softmax if log else lse.softmax
    got = fn(x, axis=axis)
    # one hook, given x's own memory: the last axis to softmax_last (no planning), others planned
    assert spy.pointers + last.pointers == [x.__array_interface__["data"][0]]
    assert len(last.pointers) == (axis in (-1, x.ndim - 1))
    ref = torch.log_softmax if log else torch.softmax
    axes = tuple(range(x.ndim)) if axis is None else axis
    if isinstance(axes, tuple):  # torch takes one dim: flatten the normalised axes into one
        want = ref(torch.from_numpy(x).reshape(-1), 0).reshape(shape).numpy()
    else:
        want = ref(torch.from_numpy(x), axes).numpy()
    assert np.allclose(got, want, rtol=4e-15, atol=1e-15 if log else 1e-300)


def test_numpy_softmax_fast_path_keeps_the_core_rules():
    with pytest.raises(np.exceptions.AxisError):
        lse.softmax(np.ones(3), axis=1)
    masked = np.ma.masked_array([0.0, 0.0, 5.0], mask=[False, False, True])
    assert np.allclose(lse.softmax(masked), [0.5, 0.5, 0.0])  # a masked array: the core's masking
    assert lse.softmax(np.ones(4, dtype=np.float16)).dtype == np.float16
    assert np.allclose(lse.softmax(np.zeros(4), temperature=2.0), 0.25)


def test_cross_entropy_options_cache_keeps_every_check():
    """The options of a call are validated once per distinct set of values (issue 21: ~10 µs of a
    small call): a cached ``1`` must not let ``True`` through, and a refused value raises every time."""
    x, t = torch.zeros(2, 3), torch.tensor([0, 1])
    assert lt.cross_entropy(x, t, ignore_index=1).item() == pytest.approx(math.log(3), rel=1e-6)
    with pytest.raises(TypeError, match="ignore_index"):
        lt.cross_entropy(x, t, ignore_index=True)
    for _ in range(2):
        with pytest.raises(ValueError, match="label_smoothing"):
            lt.cross_entropy(x, t, label_smoothing=2.0)
    assert lt.cross_entropy(x, t, label_smoothing=1).item() == pytest.approx(math.log(3), rel=1e-6)
