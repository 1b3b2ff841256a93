"""torch's own signatures and accuracy cases on the torch face (issue 20).

``logsumexp`` takes an int, a tuple or list of dims, or None, with ``keepdim`` and ``out=`` (the
OpInfo samples of ``torch.logsumexp`` use tuples); ``softmax``/``log_softmax`` take ``dtype=``;
positional calls follow torch's signatures. The dominant-term case of the issue is pinned against
mpmath (50 digits). Values against torch in float64: 1e-12 relative.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="the torch face needs torch")
mpmath = pytest.importorskip("mpmath", reason="the reference values come from mpmath")

import logsumexp.torch as lt  # noqa: E402

X = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dim", [0, -1, (0, 2), [1, 2], (2, 0), (0, 1, 2), (-2,)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_logsumexp_dims_match_torch(dim, keepdim) -> None:
    xa, xb = X.clone().requires_grad_(), X.clone().requires_grad_()
    ours = lt.logsumexp(xa, dim, keepdim)  # positional, as torch.logsumexp(input, dim, keepdim)
    ref = torch.logsumexp(xb, dim, keepdim)
    assert ours.shape == ref.shape
    _close(ours, ref)
    ours.sum().backward()
    ref.sum().backward()
    _close(xa.grad, xb.grad)


@pytest.mark.parametrize("dim", [None, ()])
def test_logsumexp_dim_none_or_empty_reduces_everything(dim) -> None:
    _close(lt.logsumexp(X, dim), torch.logsumexp(X, (0, 1, 2)))
    assert lt.logsumexp(X, dim, keepdim=True).shape == (1, 1, 1)
    _close(lt.logsumexp(X), torch.logsumexp(X, (0, 1, 2)))


def test_logsumexp_out() -> None:
    out = torch.empty(4, dtype=torch.float64)
    res = lt.logsumexp(X, (0, 1), out=out)
    assert res is out
    _close(out, torch.logsumexp(X, (0, 1)))
    empty = torch.empty(0, dtype=torch.float64)
    lt.logsumexp(X, 2, out=empty)
    _close(empty, torch.logsumexp(X, 2))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dim": (0, 0)}, ValueError, "dim must not repeat"),
        ({"dim": 3}, ValueError, "dim=3 is out of range"),
        ({"dim": (0, "a")}, TypeError, "dim must be an int"),
        ({"dim": 0, "out": torch.empty(5, dtype=torch.float64)}, ValueError, "out must have the result's shape"),
        ({"dim": 0, "out": torch.empty(3, 4)}, TypeError, "out must have the result's dtype"),
        ({"dim": 0, "keepdim": 1}, TypeError, "keepdim must be a bool"),
    ],
)
def test_logsumexp_bad_arguments(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        lt.logsumexp(X, **kwargs)


def test_logsumexp_zero_size_dims() -> None:
    z = torch.zeros(0, 3)
    _close(lt.logsumexp(z, 0), torch.logsumexp(z, 0))
    assert lt.logsumexp(z, (0, 1)).item() == -math.inf
    assert lt.logsumexp(torch.zeros(3, 0), 0).shape == (0,)


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_dtype_matches_torch(fn, dim) -> None:
    x32 = X.float()[0].clone().requires_grad_()
    x32b = x32.detach().clone().requires_grad_()
    ours = getattr(lt, fn)(x32, dim, torch.float64)  # positional, as torch.softmax(input, dim, dtype)
    ref = getattr(torch, fn)(x32b, dim, dtype=torch.float64)
    assert ours.dtype == ref.dtype == torch.float64
    _close(ours, ref)
    (ours * X[0]).sum().backward()
    (ref * X[0]).sum().backward()
    assert x32.grad.dtype == torch.float32
    torch.testing.assert_close(x32.grad, x32b.grad, rtol=1e-6, atol=1e-7)


def test_softmax_dtype_must_be_floating() -> None:
    with pytest.raises(TypeError, match="dtype must be a floating"):
        lt.softmax(X, -1, dtype=torch.int64)


def _mp_lse(values) -> float:
    mpmath.mp.dps = 50
    return float(mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in values)))


def test_issue20_dominant_terms_keep_the_small_term_float64() -> None:
    # NumPy face: 5.000121e-13 (right); the torch face used to return 5.000445e-13.
    x = torch.tensor([math.log(0.5), math.log(0.5) + 1e-12], dtype=torch.float64)
    ours = lt.logsumexp(x, 0).item()
    ref = _mp_lse(x)
    assert abs(ours - ref) <= math.ulp(ref), (ours, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(5))
def test_cancelling_rows_within_one_ulp(dtype, seed) -> None:
    # Rows whose LSE is close to 0 while the maximum is not: m + log1p(tail) cancels.
    g = torch.Generator().manual_seed(seed)
    n = 2 + seed
    x = (torch.full((4, n), -math.log(n), dtype=torch.float64)
         + 1e-9 * torch.randn(4, n, generator=g, dtype=torch.float64)).to(dtype)
    ours = lt.logsumexp(x, 1)
    for row, value in zip(x, ours):
        ref = _mp_lse(row)
        ulp = math.ulp(ref) if dtype == torch.float64 else math.ulp(torch.tensor(ref, dtype=dtype).item()) * 2**29
        assert abs(value.item() - ref) <= ulp, (value.item(), ref)
