"""The compiled KL kernel (``src/logsumexp/_cpu/src/kl.h``, hook ``logsumexp._cpu.kl_grad_rows``) that the
torch face's forward and reverse KLs take for float32 CPU chunks.

Against float64 eager torch (``F.kl_div`` on ``F.log_softmax``) under every CPU target, the same bits on
every target and thread count, the rows it leaves (non-finite maximum or KL) untouched for the general
path, ``linear_kl_div`` / ``kl_div_logits`` through it with special rows, and a C harness over ``kl.h``
(tests/arm64/kl_harness.c) built for every x86 target and for arm64 (under qemu): the same bytes.
"""

from __future__ import annotations

import math
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the KL kernel serves the torch face")
import torch.nn.functional as F  # noqa: E402

import logsumexp.torch as L  # noqa: E402
from logsumexp import _cpu  # noqa: E402

from _targets import SUPPORTED, each_target, threaded, under_target  # noqa: E402, F401  (fixtures)

if _cpu.kernels() is None or not hasattr(_cpu.kernels(), "kl_rows"):
    pytest.skip("the compiled CPU kernels are not built (pip install -e . builds them)", allow_module_level=True)

V = 1531  # not a multiple of the 16 virtual lanes


def _data(n: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((n, V)) * 3).astype(np.float32)
    b = (rng.standard_normal((n, V)) * 3).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    return a, b, g


def _reference(a: np.ndarray, b: np.ndarray, g: np.ndarray, reverse: bool):
    s = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    ls, lt = F.log_softmax(s, -1), F.log_softmax(t, -1)
    rows = F.kl_div(lt, ls, reduction="none", log_target=True) if reverse else \
        F.kl_div(ls, lt, reduction="none", log_target=True)
    rows = rows.sum(-1)
    (rows * torch.tensor(g, dtype=torch.float64)).sum().backward()
    return rows.detach().numpy(), s.grad.numpy(), t.grad.numpy()


def _kernel(a: np.ndarray, b: np.ndarray, g: np.ndarray | None, reverse: bool, grads=(True, True)):
    a, b = a.copy(), b.copy()
    rows = np.empty(a.shape[0], np.float32)
    ok = _cpu.kl_grad_rows(a, b, reverse, g, *grads, rows)
    return ok, rows, a, b


def _rel(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(x.astype(np.float64) - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("reverse", [False, True])
def test_matches_float64_on_every_target(each_target, reverse):
    """Rows and both gradients within 2^-23 of the largest entry of float64 eager torch (float32
    rounding of float64 arithmetic); measured 5e-8 on the avx512 target."""
    a, b, g = _data()
    ok, rows, ga, gb = _kernel(a, b, g, reverse)
    ref_rows, ref_ga, ref_gb = _reference(a, b, g, reverse)
    assert ok.all()
    assert _rel(rows, ref_rows) <= 2**-23
    assert _rel(ga, ref_ga) <= 2**-23 and _rel(gb, ref_gb) <= 2**-23


def test_same_bits_on_every_target_and_thread_count(threaded):
    a, b, g = _data(n=7, seed=1)
    got = {}
    for target in SUPPORTED:
        with under_target(target):
            got[target] = [_kernel(a, b, g, reverse) for reverse in (False, True)]
    first = got[SUPPORTED[0]]
    for target in SUPPORTED[1:]:
        for (ok0, *x0), (ok1, *x1) in zip(first, got[target]):
            assert ok0.all() and ok1.all()
            for u, v in zip(x0, x1):
                assert np.array_equal(u.view(np.uint32), v.view(np.uint32)), target


def test_without_g_nothing_is_written_and_only_the_asked_gradient_is():
    a, b, g = _data(n=3)
    _, rows, a2, b2 = _kernel(a, b, None, False)
    assert np.array_equal(a2, a) and np.array_equal(b2, b)
    _, rows_g, a3, b3 = _kernel(a, b, g, False, grads=(True, False))
    assert np.array_equal(rows, rows_g) and np.array_equal(b3, b) and not np.array_equal(a3, a)


def test_special_rows_are_left_untouched():
    """+inf, NaN and all −inf rows, and a forward KL that is +inf (p = 0 < q): ok False, the rows
    (and their output entry) untouched; the other rows done."""
    a, b, g = _data(n=5)
    a[0, 3] = math.inf
    b[1, 7] = math.nan
    a[2] = -math.inf
    a[3, 11] = -math.inf  # p = 0 where q > 0: KL(q ‖ p) = +inf
    ok, rows, ga, gb = _kernel(a, b, g, False)
    assert ok.tolist() == [False, False, False, False, True]
    assert np.array_equal(ga[:4], a[:4]) and np.array_equal(gb[:4], b[:4], equal_nan=True)
    ok_rev, *_ = _kernel(a, b, g, True)
    assert ok_rev.tolist() == [False, False, False, True, True]  # reverse: that −inf entry adds 0


@pytest.mark.parametrize("kind", ["forward", "reverse"])
def test_torch_face_special_rows_through_the_kernel_match_the_general_path(kind):
    """float32 logits with special rows: kl_div_logits (rows the kernel leaves go to the general
    path) and its gradients equal the float64 computation (which the kernel never takes) rounded,
    infinities and NaNs in the same places."""
    a, b, _ = _data(n=5, seed=3)
    a[0, 3] = math.inf
    a[2, :] = -math.inf
    b[2, :] = -math.inf
    a[3, 11] = -math.inf
    s = torch.tensor(a, requires_grad=True)
    t = torch.tensor(b, requires_grad=True)
    out = L.kl_div_logits(s, t, kind=kind, reduction="none")
    ref = L.kl_div_logits(s.detach().double(), t.detach().double(), kind=kind, reduction="none")
    torch.testing.assert_close(out.double(), ref, rtol=2e-6, atol=1e-6, equal_nan=True)
    s64, t64 = s.detach().double().requires_grad_(), t.detach().double().requires_grad_()
    up = torch.linspace(0.5, 1.5, 5)
    (out * up).sum().backward()
    (L.kl_div_logits(s64, t64, kind=kind, reduction="none") * up.double()).sum().backward()
    torch.testing.assert_close(s.grad.double(), s64.grad, rtol=2e-6, atol=1e-6, equal_nan=True)
    torch.testing.assert_close(t.grad.double(), t64.grad, rtol=2e-6, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("kind", ["forward", "reverse"])
def test_linear_float32_through_the_kernel_matches_float64(kind):
    g = torch.Generator().manual_seed(13)
    hs = torch.randn(9, 16, generator=g, requires_grad=True)
    ws = torch.randn(V, 16, generator=g, requires_grad=True)
    ht = torch.randn(9, 12, generator=g, requires_grad=True)
    wt = torch.randn(V, 12, generator=g, requires_grad=True)
    out = L.linear_kl_div(hs, ws, ht, wt, kind=kind, temperature=1.1, chunk_size=4)
    grads = torch.autograd.grad(out, [hs, ws, ht, wt])
    # float64 on the float32 heads' products (the chunks take the products in float32)
    s64 = (hs @ ws.T).detach().double().requires_grad_()
    t64 = (ht @ wt.T).detach().double().requires_grad_()
    ref = L.kl_div_logits(s64, t64, kind=kind, temperature=1.1)
    gs, gt = torch.autograd.grad(ref, [s64, t64])
    assert abs(out.item() - ref.item()) <= 1e-6 * ref.item()
    refs = (gs @ ws.double(), gs.T @ hs.double(), gt @ wt.double(), gt.T @ ht.double())
    for x, r in zip(grads, refs):
        assert _rel(x.detach().numpy(), r.detach().numpy()) <= 2e-6


# --------------------------------------------------------------------------- the C harness: x86 builds and arm64

ROOT = Path(__file__).resolve().parents[1]
KERNEL_SRC = ROOT / "src" / "logsumexp" / "_cpu" / "src"
HARNESS = Path(__file__).resolve().parent / "arm64" / "kl_harness.c"
X86_FLAGS = {  # setup.py's targets
    "baseline": [],
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mprefer-vector-width=512"],
}


def _harness_input(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b, g = _data(n=5, seed=21)
    a[1, 3] = math.inf  # left to the caller
    a[2, 11] = -math.inf  # forward: +inf, left; reverse: done
    b[3] = b[3] * 40.0  # a confident teacher: tiny tails
    with open(path, "wb") as f:
        f.write(np.array(a.shape, dtype="<i8").tobytes())
        f.write(a.astype("<f4").tobytes() + b.astype("<f4").tobytes() + g.astype("<f4").tobytes())
    return a, b, g


def _extension_bytes(a: np.ndarray, b: np.ndarray, g: np.ndarray) -> bytes:
    out = b""
    for reverse in (False, True):
        ok, rows, ga, gb = _kernel(a, b, g, reverse)
        rows = np.where(ok, rows, 0.0).astype(np.float32)
        out += rows.tobytes() + ok.astype(np.float32).tobytes() + ga.tobytes() + gb.tobytes()
    return out


def _build_and_run(cc: list[str], flags: list[str], tmp: Path, name: str, inp: Path) -> bytes:
    exe, out = tmp / name, tmp / f"{name}.out"
    cmd = [*cc, "-O2", "-ffp-contract=off", "-std=c11", *flags, f"-I{KERNEL_SRC}", str(HARNESS), "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stderr}"
    runner = ["qemu-aarch64-static", str(exe)] if "aarch64" in cc[0] else [str(exe)]
    res = subprocess.run([*runner, str(inp), str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return out.read_bytes()


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the x86 builds need an x86-64 host")
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build the C harness")
def test_harness_same_bytes_on_every_x86_build_and_as_the_extension(tmp_path):
    inp = tmp_path / "in.bin"
    a, b, g = _harness_input(inp)
    expected = _extension_bytes(a, b, g)
    for target in SUPPORTED:
        got = _build_and_run(["gcc"], X86_FLAGS[target], tmp_path, f"kl_{target}", inp)
        assert got == expected, target


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which("qemu-aarch64-static") is None,
                    reason="needs aarch64-linux-gnu-gcc and qemu-aarch64-static for the arm64 build")
def test_harness_arm64_build_gives_the_same_bytes(tmp_path):
    inp = tmp_path / "in.bin"
    a, b, g = _harness_input(inp)
    got = _build_and_run(["aarch64-linux-gnu-gcc", "-static"], [], tmp_path, "kl_arm64", inp)
    assert got == _extension_bytes(a, b, g)
