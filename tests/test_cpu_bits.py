"""The same bits on every CPU: the compiled kernels compared byte for byte across targets.

The kernels fix the number of virtual lanes (16) and the order of every sum, and are compiled
without reassociation or contraction into FMA, so x86-64 baseline (SSE2), AVX2 + FMA, AVX-512
and arm64 (NEON) must give identical results, not merely close ones. Two checks:

1. In-process, under each target this machine supports (``_cpu._kernels`` switched, see
   tests/_targets.py): every public function on float32 and float64, rows, columns, strided and
   negative-stride views, a 200k-element slice, special values, dominant and cancelling rows.
2. A C harness (tests/arm64/harness.c) that includes the kernel headers, built with the host gcc
   for each x86 target and cross-compiled for arm64 (run under ``qemu-aarch64-static``): all
   builds write the same bytes, and the x86 build writes what the Python extension returns.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _targets import SUPPORTED, each_target, under_target  # noqa: F401  (fixture)

import logsumexp as lse
from logsumexp import _cpu

ROOT = Path(__file__).resolve().parents[1]
KERNEL_SRC = ROOT / "src" / "logsumexp" / "_cpu" / "src"
HARNESS = Path(__file__).resolve().parent / "arm64" / "harness.c"
INF, NAN = np.inf, np.nan


# --------------------------------------------------------------------------------------------
# 1. Every function under every target, in-process
# --------------------------------------------------------------------------------------------
def _rows64() -> np.ndarray:
    """12 rows of 300: random, dominant, cancelling and special rows."""
    rng = np.random.default_rng(2024)
    x = rng.standard_normal((12, 300)) * 5
    x[1] = -40.0
    x[1, 0] = 0.0  # dominant: [0, −40×299]
    x[2] = np.log(rng.dirichlet(np.ones(300))) + 1e-9  # LSE ≈ 1e-9: cancels against the maximum
    x[3] = np.log(rng.dirichlet(np.ones(300))) - 3e-7
    x[4, [3, 150, 299]] = INF  # three +inf entries
    x[5] = -INF  # all −inf
    x[6, 17] = NAN
    x[7, 40] = -NAN
    x[8, :200] = -INF
    x[9] = 1000.0  # all tied
    x[10] = rng.uniform(-700, 700, 300)
    x[11] *= 100
    return x


def _views(x: np.ndarray) -> list[tuple[str, np.ndarray, int]]:
    """(name, array, axis): rows, columns (≥ 16 of them: the column kernel), strided and
    negative-stride views, transposed."""
    return [
        ("rows", x, -1),
        ("columns", np.ascontiguousarray(x.T), 0),  # 300 x 12 ... and below 20 columns
        ("columns-wide", np.ascontiguousarray(np.tile(x.T, (1, 2))), 0),
        ("strided", x[:, ::3], -1),
        ("negative", x[::-1, ::-2], -1),
        ("negative-columns", np.tile(x.T, (1, 2))[::-2, ::-1], 0),
    ]


def _long(dtype: type) -> np.ndarray:
    x = (np.random.default_rng(7).standard_normal(200_000) * 5).astype(dtype)
    x[150_001] = 30.0
    return x


def _weights(shape: tuple[int, ...], signed: bool) -> np.ndarray:
    rng = np.random.default_rng(99)
    return rng.uniform(-1.0, 2.0, shape) if signed else rng.uniform(0.1, 2.0, shape)


def _every_result() -> list[tuple[str, bytes]]:
    """(label, bytes) of every function on every input, in a fixed order."""
    out: list[tuple[str, bytes]] = []

    def add(label: str, value: object) -> None:
        out.append((label, np.asarray(value).tobytes()))

    with np.errstate(all="ignore"):
        for dtype in (np.float32, np.float64):
            name = np.dtype(dtype).name
            x = _rows64().astype(dtype)
            for view, v, axis in _views(x):
                tag = f"{name}/{view}"
                add(f"{tag}/logsumexp", lse.logsumexp(v, axis=axis))
                add(f"{tag}/logsumexp-b", lse.logsumexp(v, axis=axis, b=_weights(v.shape, False).astype(dtype)))
                add(f"{tag}/logsumexp-sign", lse.logsumexp(v, axis=axis, b=_weights(v.shape, True).astype(dtype),
                                                           return_sign=True))
                add(f"{tag}/softmax", lse.softmax(v, axis=axis))
                add(f"{tag}/log_softmax", lse.log_softmax(v, axis=axis))
            long = _long(dtype)
            add(f"{name}/long/logsumexp", lse.logsumexp(long))
            add(f"{name}/long/logsumexp-b", lse.logsumexp(long, b=_weights(long.shape, False).astype(dtype)))
            add(f"{name}/long/logsumexp-sign", lse.logsumexp(long, b=_weights(long.shape, True).astype(dtype),
                                                             return_sign=True))
            add(f"{name}/long/softmax", lse.softmax(long))
            add(f"{name}/long/log_softmax", lse.log_softmax(long))
            add(f"{name}/long-column/logsumexp", lse.logsumexp(long.reshape(-1, 20), axis=0))
            pair = np.stack([long, long[::-1]])  # two rows past an item: item states merged
            add(f"{name}/long-rows/logsumexp", lse.logsumexp(pair, axis=1))
            add(f"{name}/long-rows/logsumexp-b", lse.logsumexp(pair, axis=1, b=_weights(pair.shape, True).astype(dtype),
                                                               return_sign=True))
            target = np.arange(12) * 23 % 300
            finite = x[[0, 1, 2, 3, 8, 9, 10, 11]]  # cross-entropy rows: finite maxima
            add(f"{name}/cross_entropy", lse.cross_entropy(x, target, reduction="none"))
            add(f"{name}/cross_entropy-mean", lse.cross_entropy(finite, target[:8]))
            g = np.linspace(0.5, 1.5, 12).astype(dtype)
            add(f"{name}/cross_entropy_grad", lse.cross_entropy_grad(x, target, reduction="none", grad_output=g))
            add(f"{name}/cross_entropy_grad-mean", lse.cross_entropy_grad(finite, target[:8]))
        # the torch face's fused float32 rows (gradient written in place)
        z = _rows64().astype(np.float32)
        rows, lses = np.zeros(12, np.float32), np.zeros(12, np.float32)  # declined rows stay 0
        ok = _cpu.cross_entropy_grad_rows(z, np.arange(12) * 23 % 300, np.linspace(0.5, 1.5, 12).astype(np.float32),
                                          -100, rows, lses)
        for label, value in (("ok", ok), ("z", z), ("rows", rows), ("lse", lses)):
            add(f"cross_entropy_grad_rows/{label}", value)
    return out


def test_the_inputs_reach_the_compiled_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bits test means something only if the kernels compute: count the kernel calls."""
    calls: dict[str, int] = {}

    class Spy:
        def __init__(self, k: object) -> None:
            self.k = k

        def __getattr__(self, name: str) -> object:
            fn = getattr(self.k, name)
            if not callable(fn):
                return fn

            def wrapped(*a: object) -> object:
                calls[name] = calls.get(name, 0) + 1
                return fn(*a)

            return wrapped

    _cpu.kernels()
    monkeypatch.setattr(_cpu, "_kernels", Spy(_cpu._kernels))
    _every_result()
    for name in ("lse_items", "col_items", "finish_rows", "finish_weighted_rows", "lse_1d", "lse_1d_weighted",
                 "softmax_rows", "merge_items", "ce_rows"):
        assert calls.get(name, 0) > 0, (name, calls)


@pytest.mark.skipif(len(SUPPORTED) < 2, reason=f"this CPU supports only the {SUPPORTED} target: nothing to compare")
def test_every_function_same_bits_on_every_target() -> None:
    results = {}
    for target in SUPPORTED:
        with under_target(target):
            assert _cpu.target() == target
            results[target] = _every_result()
    base = results[SUPPORTED[0]]
    for target in SUPPORTED[1:]:
        assert [label for label, _ in results[target]] == [label for label, _ in base]
        differ = [label for (label, a), (_, b) in zip(base, results[target]) if a != b]
        assert not differ, f"{target} differs from {SUPPORTED[0]} in {differ}"


@pytest.mark.skipif(len(SUPPORTED) < 2, reason=f"this CPU supports only the {SUPPORTED} target: nothing to compare")
def test_threads_same_bits_on_every_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """The threaded split (forced: 3 threads, no size threshold) gives the serial bits, on every
    target: rows over thread ranges, the long slice's items, columns."""
    x = _rows64()
    long = _long(np.float64)
    serial = []
    for threads in (1, 3):
        monkeypatch.setattr(_cpu, "PARALLEL_MIN", 0 if threads > 1 else 1 << 40)
        monkeypatch.setattr(_cpu, "num_threads", lambda t=threads: t)
        for target in SUPPORTED:
            with under_target(target), np.errstate(all="ignore"):
                got = [lse.logsumexp(x, axis=1), lse.logsumexp(x, axis=0), lse.log_softmax(x),
                       lse.logsumexp(long), lse.softmax(long), lse.logsumexp(long, b=np.abs(long))]
            serial.append(b"".join(np.asarray(g).tobytes() for g in got))
    assert all(s == serial[0] for s in serial)


# --------------------------------------------------------------------------------------------
# 2. The C harness: x86 builds, the arm64 build under qemu, and the Python extension
# --------------------------------------------------------------------------------------------
def _harness_cases() -> list[tuple[np.ndarray, np.ndarray, int, int, int]]:
    """(x, w, R, C, t): the vector, its weights, its shape as a matrix (C ≥ 16 columns: the
    column kernel) and the cross-entropy target."""
    rng = np.random.default_rng(5)
    cases = []
    x = rng.standard_normal(1000) * 5
    cases.append((x, rng.uniform(0.1, 2.0, 1000), 50, 20, 3))
    x = np.full(1000, -40.0)
    x[0] = 0.0
    cases.append((x, rng.uniform(0.1, 2.0, 1000), 50, 20, 0))
    x = np.log(rng.dirichlet(np.ones(320))) + 1e-9
    cases.append((x, np.ones(320), 20, 16, 5))
    x = rng.standard_normal(500)
    cases.append((x, rng.uniform(-1.0, 2.0, 500), 25, 20, 9))  # signed weights
    x = rng.uniform(-700, 700, 777)
    cases.append((x, rng.uniform(0.1, 2.0, 777), 37, 21, 100))
    x = rng.standard_normal(48)
    x[[1, 20, 47]] = INF
    cases.append((x, rng.uniform(0.1, 2.0, 48), 3, 16, 1))
    cases.append((np.full(32, -INF), np.ones(32), 2, 16, 0))
    x = rng.standard_normal(32)
    x[[3, 9]] = [NAN, INF]
    cases.append((x, np.ones(32), 2, 16, 0))
    x = rng.standard_normal(200_000) * 5
    x[150_001] = 30.0
    cases.append((x, rng.uniform(0.1, 2.0, 200_000), 12_500, 16, 7))
    return cases


def _write_input(path: Path) -> None:
    cases = _harness_cases()
    with path.open("wb") as f:
        f.write(np.int64(len(cases)).tobytes())
        for x, w, R, C, t in cases:
            f.write(np.array([x.size, R, C, t], dtype=np.int64).tobytes())
            f.write(x.astype(np.float64).tobytes() + w.astype(np.float64).tobytes())


def _parse(raw: bytes) -> list[tuple[str, np.ndarray]]:
    """The harness's output as (label, array) in its order (format: tests/arm64/harness.c)."""
    out: list[tuple[str, np.ndarray]] = []
    pos = 0

    def take(label: str, dtype: type, count: int) -> None:
        nonlocal pos
        size = np.dtype(dtype).itemsize * count
        assert pos + size <= len(raw), f"harness output too short at {label}"
        out.append((label, np.frombuffer(raw[pos:pos + size], dtype=dtype)))
        pos += size

    for j, (x, _, _, C, _) in enumerate(_harness_cases()):
        n = x.size
        for dtype in (np.float64, np.float32):
            tag = f"case{j}/{np.dtype(dtype).name}"
            take(f"{tag}/state+value", np.float64, 4)
            take(f"{tag}/weighted", np.float64, 2)
            take(f"{tag}/reversed+even", np.float64, 2)
            take(f"{tag}/softmax", dtype, n)
            take(f"{tag}/log_softmax", dtype, n)
            take(f"{tag}/columns", np.float64, 4 * C)
        take(f"case{j}/ce", np.float64, 3)
        take(f"case{j}/ce-grad", np.float32, n)
    assert pos == len(raw), "harness output longer than expected"
    return out


def _extension_results() -> list[tuple[str, np.ndarray]]:
    """The same results through the Python extension (the hooks and the kernels' module)."""
    k = _cpu.kernels()
    out: list[tuple[str, np.ndarray]] = []
    with np.errstate(all="ignore"):
        for j, (x, w, R, C, t) in enumerate(_harness_cases()):
            for dtype in (np.float64, np.float32):
                tag = f"case{j}/{np.dtype(dtype).name}"
                xd, wd = x.astype(dtype), w.astype(dtype)
                m, lead, tail = _cpu.lse_state(xd, (0,), None)
                out.append((f"{tag}/state+value", np.array([m, lead, tail, k.lse_1d(xd, xd.itemsize, xd.size)])))
                val, sign = _cpu.lse_weighted(xd, wd, (0,))
                out.append((f"{tag}/weighted", np.array([val, sign], dtype=np.float64).reshape(-1)))
                # lse_value rounds to the data's dtype: compared after the same rounding
                out.append((f"{tag}/reversed+even", np.array([_cpu.lse_value(xd[::-1], (0,)), _cpu.lse_value(xd[::2], (0,))])))
                out.append((f"{tag}/softmax", _cpu.softmax(xd, 0, False)))
                out.append((f"{tag}/log_softmax", _cpu.softmax(xd, 0, True)))
                X = xd.reshape(R, C)
                cols = np.stack([*_cpu.lse_state(X, (0,), None), _cpu.lse_value(X, (0,)).astype(np.float64)], axis=1)
                out.append((f"{tag}/columns", cols.reshape(-1)))
            z = x.astype(np.float32)[None, :].copy()
            rows, lses = np.zeros(1, np.float32), np.zeros(1, np.float32)  # a declined row: untouched, 0
            ok = _cpu.cross_entropy_grad_rows(z, np.array([t]), np.ones(1, np.float32), -100, rows, lses)
            out.append((f"case{j}/ce", np.array([ok[0], rows[0], lses[0]], dtype=np.float64)))
            out.append((f"case{j}/ce-grad", z.reshape(-1)))
    return out


def _same_as_extension(harness: list[tuple[str, np.ndarray]], ext: list[tuple[str, np.ndarray]]) -> list[str]:
    """Labels where the harness and the extension differ in bits (float32 values that the
    extension rounds to float32 compared after rounding the harness's double the same way)."""
    differ = []
    for (label, h), (label2, e) in zip(harness, ext, strict=True):
        assert label == label2
        if "float32" in label and label.endswith("reversed+even"):
            h = h.astype(np.float32)
        if "float32" in label and label.endswith("columns"):
            h = h.reshape(-1, 4).copy()
            h[:, 3] = h[:, 3].astype(np.float32)
            h = h.reshape(-1)
        if h.astype(e.dtype).tobytes() != e.tobytes() or h.dtype.itemsize < e.dtype.itemsize:
            differ.append(label)
    return differ


def _compile(cc: str, flags: list[str], out: Path) -> Path:
    cmd = [cc, "-O2", "-ffp-contract=off", "-std=c11", *flags, f"-I{KERNEL_SRC}", str(HARNESS), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stderr}"
    return out


def _run(cmd: list[str], inp: Path, out: Path) -> bytes:
    res = subprocess.run([*cmd, str(inp), str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return out.read_bytes()


# the x86 builds: the flags of setup.py's targets, where this CPU can run them
X86_FLAGS = {
    "baseline": [],
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mprefer-vector-width=512"],
}
IS_X86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.fixture(scope="module")
def harness_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("harness") / "input.bin"
    _write_input(path)
    return path


@pytest.fixture(scope="module")
def x86_outputs(harness_input: Path) -> dict[str, bytes]:
    """The harness built with the host gcc once per x86 target this CPU runs, and run."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (the harness is built with the host compiler)")
    if not IS_X86:
        pytest.skip(f"the host is {platform.machine()}, not x86-64")
    out = {}
    for target in SUPPORTED:
        exe = _compile("gcc", X86_FLAGS[target], harness_input.parent / f"harness-{target}")
        out[target] = _run([str(exe)], harness_input, harness_input.parent / f"out-{target}.bin")
    return out


def test_harness_x86_builds_same_bytes(x86_outputs: dict[str, bytes]) -> None:
    """Plain, -mavx2 -mfma and AVX-512 builds of the same headers write the same bytes."""
    first = SUPPORTED[0]
    for target, raw in x86_outputs.items():
        assert raw == x86_outputs[first], f"the {target} build differs from the {first} build"


def test_harness_is_the_shipped_kernels(x86_outputs: dict[str, bytes], each_target: str) -> None:
    """The harness's x86 output is what the Python extension returns for the same inputs, under
    each target (so the harness tests the kernels the package ships)."""
    differ = _same_as_extension(_parse(x86_outputs[each_target]), _extension_results())
    assert not differ, differ


def _needs(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not found: install Debian's {package} package (apt-get install -y {package})")
    return path


def test_harness_arm64_same_bytes_as_x86(x86_outputs: dict[str, bytes], harness_input: Path) -> None:
    """The harness cross-compiled for arm64 (NEON: 2 hardware lanes for the 16 virtual ones),
    run under qemu-aarch64-static: the same bytes as every x86 build."""
    cc = _needs("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
    qemu = _needs("qemu-aarch64-static", "qemu-user-static")
    exe = _compile(cc, ["-static"], harness_input.parent / "harness-arm64")
    raw = _run([qemu, str(exe)], harness_input, harness_input.parent / "out-arm64.bin")
    harness = _parse(raw)
    x86 = _parse(x86_outputs[SUPPORTED[0]])
    differ = [label for (label, a), (_, b) in zip(harness, x86, strict=True) if a.tobytes() != b.tobytes()]
    assert not differ, f"arm64 differs from x86 in {differ}"
