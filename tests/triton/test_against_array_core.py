"""The Triton row functions against the array core (``logsumexp.logsumexp`` etc. on NumPy float64).

The array core is the library's reference: every other backend is tested against it.  Odd shapes (37 rows of
1000 or 1531 classes: not powers of two, several blocks in the interpreter), every cross-entropy option.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="logsumexp.triton needs torch")
pytest.importorskip("triton", reason="logsumexp.triton needs the triton package")

import logsumexp as core  # noqa: E402
import logsumexp.triton as lt  # noqa: E402
from logsumexp._options import CrossEntropyOptions  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def rows_with_special_values() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(scale=3.0, size=(6, 1531)).astype(np.float32)
    x[1] = -np.inf
    x[2, [5, 600]] = np.inf
    x[3, 9] = np.nan
    x[4, ::3] = -np.inf
    x[5, 0] = 30.0  # a confident row
    return x


def test_lse_softmax_log_softmax_match_the_core():
    x = rows_with_special_values()
    xd = torch.from_numpy(x).to(DEVICE)
    x64 = x.astype(np.float64)
    pairs = (
        (lt.logsumexp_rows(xd), core.logsumexp(x64, axis=-1)),
        (lt.softmax_rows(xd, False), core.softmax(x64)),
        (lt.softmax_rows(xd, True), core.log_softmax(x64)),
    )
    for out, ref in pairs:
        out = out.double().cpu().numpy()
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
        fin = np.isfinite(ref)
        np.testing.assert_array_equal(out[~fin & ~np.isnan(ref)], ref[~fin & ~np.isnan(ref)])
        np.testing.assert_allclose(out[fin], ref[fin], rtol=2e-6, atol=1e-7)  # float32 accumulation


def core_reference(x, target, weight, opts):
    """The core's cross-entropy on soft-capped float64 logits, plus z·LSE² per counted row (the core has
    no z-loss or soft cap: they are extras of the torch face)."""
    if opts.softcap is not None:
        x = opts.softcap * np.tanh(x / opts.softcap)
    kw = dict(weight=weight, ignore_index=opts.ignore_index, label_smoothing=opts.label_smoothing)
    per = core.cross_entropy(x, target, reduction="none", **kw)
    counted = np.ones(x.shape[0], bool) if target.ndim == 2 else target != opts.ignore_index
    per = per + np.where(counted, opts.z_loss * core.logsumexp(x, axis=-1) ** 2, 0.0)
    if opts.reduction == "none":
        return per
    if opts.reduction == "sum":
        return per.sum()
    if opts.num_items is not None:
        return per.sum() / opts.num_items
    if target.ndim == 2:
        return per.sum() / x.shape[0]
    den = counted.sum() if weight is None else np.where(counted, weight[np.where(counted, target, 0)], 0.0).sum()
    return per.sum() / den


CASES = {
    "plain": dict(),
    "sum": dict(reduction="sum"),
    "none": dict(reduction="none"),
    "weight": dict(weighted=True),
    "smoothing+weight": dict(weighted=True, label_smoothing=0.1),
    "ignore_index=3": dict(ignore_index=3),
    "z_loss": dict(z_loss=1e-3),
    "softcap": dict(softcap=7.5),
    "num_items": dict(num_items=500.0),
    "probabilities": dict(prob=True),
    "probabilities+weight+smoothing": dict(prob=True, weighted=True, label_smoothing=0.2, reduction="none"),
    "everything": dict(weighted=True, label_smoothing=0.05, z_loss=1e-4, softcap=20.0, num_items=64.0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cross_entropy_every_option_matches_the_core(case):
    spec = dict(CASES[case])
    weighted, prob = spec.pop("weighted", False), spec.pop("prob", False)
    opts = CrossEntropyOptions(**spec)
    rng = np.random.default_rng(list(CASES).index(case))
    n, c = 37, 1000
    x = rng.normal(scale=3.0, size=(n, c)).astype(np.float32)
    if prob:
        y = rng.dirichlet(np.ones(c), size=n)
        target = y.astype(np.float32)
    else:
        target = rng.integers(0, c, size=n)
        target[::4] = opts.ignore_index
    w = rng.uniform(0.5, 2.0, size=c) if weighted else None
    ref = core_reference(x.astype(np.float64), target.astype(np.float64) if prob else target, w, opts)
    xd = torch.from_numpy(x).to(DEVICE).requires_grad_()
    td = torch.from_numpy(target).to(DEVICE)
    wd = None if w is None else torch.from_numpy(w).to(DEVICE)
    out = lt.cross_entropy_rows(xd, td, wd, opts)
    np.testing.assert_allclose(out.detach().double().cpu().numpy(), ref, rtol=2e-6, atol=1e-9)
    # the gradient against the float64 torch reference written from the same formula (torch autograd)
    x64 = torch.from_numpy(x.astype(np.float64)).requires_grad_()
    z = x64 if opts.softcap is None else opts.softcap * torch.tanh(x64 / opts.softcap)
    logp = torch.log_softmax(z, -1)
    t64 = torch.from_numpy(target.astype(np.float64) if prob else target)
    w64 = torch.ones(c, dtype=torch.float64) if w is None else torch.from_numpy(w)
    eps = opts.label_smoothing
    if prob:
        soft = (1 - eps) * t64 + eps / c
        per = -(soft * w64 * logp).sum(-1)
        counted = torch.ones(n, dtype=torch.bool)
        den = torch.tensor(float(n), dtype=torch.float64)
    else:
        counted = t64 != opts.ignore_index
        ts = torch.where(counted, t64, 0)
        hot = -w64[ts] * logp.gather(1, ts[:, None])[:, 0]
        per = torch.where(counted, (1 - eps) * hot - eps / c * (w64 * logp).sum(-1), 0.0)
        den = torch.where(counted, w64[ts], 0.0).sum()
    per = per + torch.where(counted, opts.z_loss * torch.logsumexp(z, -1) ** 2, 0.0)
    np.testing.assert_allclose(per.detach().numpy(), core_reference(
        x.astype(np.float64), target.astype(np.float64) if prob else target, w,
        CrossEntropyOptions(**dict(spec, reduction="none", num_items=None))), rtol=1e-12, atol=1e-14)
    total = {"none": per.sum(), "sum": per.sum()}.get(
        opts.reduction, per.sum() / (opts.num_items if opts.num_items is not None else den))
    up = torch.from_numpy(rng.normal(size=n)) if opts.reduction == "none" else torch.tensor(1.0, dtype=torch.float64)
    (per * up).sum().backward() if opts.reduction == "none" else total.backward()
    out.backward(up.to(out.dtype).to(DEVICE))
    g, g64 = xd.grad.double().cpu(), x64.grad
    assert float((g - g64).norm() / g64.norm()) <= 5e-6
