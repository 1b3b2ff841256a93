"""Every OpInfo sample of torch's own ops, through ``logsumexp.torch`` (issue 20).

torch's test database (``torch.testing._internal.common_methods_invocations.op_db``) holds sample
inputs for ``nn.functional.cross_entropy``, ``logsumexp``, ``softmax`` and ``log_softmax`` (with
their ``with_dtype`` variants): shapes from 0-d to 5-d, empty slices, tuple dims, weights (negative
ones included), reductions, ``ignore_index``, probability targets. Each sample runs through our
function with the same positional and keyword arguments, values and gradients (a fixed random
cotangent, every differentiable tensor input) against torch's op, in float32 and float64. No
sample is skipped.

Tolerances: float64 1e-12 relative, 1e-13 absolute (the same formulas, other summation orders);
float32 2e-6 relative, 1e-6 absolute (our CPU face accumulates float32 in float32, as torch does).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the torch face needs torch")
pytest.importorskip("expecttest", reason="torch's OpInfo database imports expecttest")

from torch.testing._internal.common_methods_invocations import op_db  # noqa: E402

import logsumexp.torch as lt  # noqa: E402

OURS = {
    "nn.functional.cross_entropy": lt.cross_entropy,
    "logsumexp": lt.logsumexp,
    "softmax": lt.softmax,
    "log_softmax": lt.log_softmax,
}
DTYPES = (torch.float32, torch.float64)
TOL = {torch.float32: (2e-6, 1e-6), torch.float64: (1e-12, 1e-13)}
OPS = {f"{op.name}.{op.variant_test_name}".rstrip("."): op for op in op_db if op.name in OURS}


def _samples(key: str, dtype: torch.dtype) -> list:
    torch.manual_seed(0)  # the database draws its samples from torch's global generator
    return list(OPS[key].sample_inputs("cpu", dtype, requires_grad=True))


SAMPLES = {(k, d): _samples(k, d) for k in OPS for d in DTYPES}
CASES = [
    pytest.param(k, d, i, id=f"{k}-{str(d).removeprefix('torch.')}-{i}")
    for (k, d), samples in SAMPLES.items()
    for i in range(len(samples))
]


def test_all_four_ops_and_their_variants_are_found() -> None:
    assert set(OPS) == {"nn.functional.cross_entropy", "logsumexp", "softmax", "softmax.with_dtype",
                        "log_softmax", "log_softmax.with_dtype"}
    assert all(SAMPLES.values())


def _leaves(sample) -> list:
    """The sample's tensors that require a gradient, in a fixed order (input first)."""
    tensors = [sample.input, *sample.args, *sample.kwargs.values()]
    return [t for t in tensors if isinstance(t, torch.Tensor) and t.requires_grad]


def _run(fn, sample, leaves):
    """``fn`` on fresh leaf copies of the sample's differentiable tensors; output and gradients."""
    copies = {id(t): t.detach().clone().requires_grad_() for t in leaves}

    def swap(v):
        return copies.get(id(v), v) if isinstance(v, torch.Tensor) else v

    out = fn(swap(sample.input), *[swap(a) for a in sample.args],
             **{k: swap(v) for k, v in sample.kwargs.items()})
    new_leaves = [copies[id(t)] for t in leaves]
    if not new_leaves or not out.requires_grad:
        return out.detach(), []
    g = torch.Generator().manual_seed(1)
    cotangent = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.dtype)
    grads = torch.autograd.grad((out * cotangent).sum(), new_leaves, allow_unused=True)
    return out.detach(), [torch.zeros_like(t) if gr is None else gr for t, gr in zip(new_leaves, grads)]


@pytest.mark.parametrize(("key", "dtype", "index"), CASES)
def test_opinfo_sample(key: str, dtype: torch.dtype, index: int) -> None:
    op = OPS[key]
    sample = SAMPLES[key, dtype][index]
    leaves = _leaves(sample)
    ref, ref_grads = _run(op.op, sample, leaves)
    ours, our_grads = _run(OURS[op.name], sample, leaves)
    rtol, atol = TOL[dtype]
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    torch.testing.assert_close(ours, ref, rtol=rtol, atol=atol, equal_nan=True)
    assert len(our_grads) == len(ref_grads)
    for mine, theirs in zip(our_grads, ref_grads):
        torch.testing.assert_close(mine, theirs, rtol=rtol, atol=atol, equal_nan=True)
