"""Streaming LogSumExp of a large .npy file: ``logsumexp lse -f FILE`` (issue 6).

Target: on a 1.6 GB float64 ``.npy``, peak memory <= 300 MiB and time <= 1.3x the fast CPU path
on the loaded array.

What is measured (each in a fresh subprocess, so that peak RSS belongs to one process):

* the command ``python -m logsumexp lse -f FILE --no-progress``: wall time including start-up, and
  its peak RSS from ``os.wait4`` (the child's own ``ru_maxrss``; memory-mapped pages that are
  resident count, which is why the reader unmaps each chunk);
* the streaming reduction inside a warm process (``logsumexp._io.stream_logsumexp``, kernels
  already compiled): the time to compare with the baseline;
* the baseline: ``lse.logsumexp(x)`` on the array already loaded with ``np.load`` (median of
  repeats), and ``np.load`` + ``lse.logsumexp`` together, with that process's peak RSS.

The file is written once (page cache warm, as after any recent write or read); the CPU model and
the commit are written with the table into docs/BENCHMARKS.md between ``<!-- stream:start -->``
and ``<!-- stream:end -->``. ``--size-mb 64`` runs it small (a smoke test; then nothing is written
unless ``--write``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ROOT, cpu_model, git_commit, markdown_table, write_between_markers  # noqa: E402

from logsumexp._io import DEFAULT_CHUNK  # noqa: E402

TARGET_MIB = 300
TARGET_RATIO = 1.3

_WARM_STREAM = r"""
import json, sys, time, numpy as np, logsumexp as lse
from logsumexp import _io
path, repeats, chunk = sys.argv[1], int(sys.argv[2]), (int(sys.argv[3]) or None)
lse.logsumexp(np.random.default_rng(0).standard_normal(1 << 20))   # compile / load the kernels
times = []
for _ in range(repeats):
    t = time.perf_counter(); v = _io.stream_logsumexp(path, chunk_size=chunk, progress=False)
    times.append(time.perf_counter() - t)
print(json.dumps({"times": times, "value": float(v)}))
"""

_IN_MEMORY = r"""
import json, resource, sys, time, numpy as np, logsumexp as lse
path, repeats = sys.argv[1], int(sys.argv[2])
lse.logsumexp(np.random.default_rng(0).standard_normal(1 << 20))
t = time.perf_counter(); x = np.load(path); load = time.perf_counter() - t
times = []
for _ in range(repeats):
    t = time.perf_counter(); v = lse.logsumexp(x); times.append(time.perf_counter() - t)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"load": load, "times": times, "value": float(v), "peak_mib": rss}))
"""


def make_file(path: Path, size_mb: float, seed: int = 0) -> int:
    """A float64 ``.npy`` of ``size_mb`` MB (10^6 bytes) of N(0, 1) + 700 (exp() would overflow)."""
    n = int(size_mb * 1e6) // 8
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n,))
    rng = np.random.default_rng(seed)
    step = 1 << 22
    for i in range(0, n, step):
        k = min(step, n - i)
        out[i:i + k] = rng.standard_normal(k) + 700.0
    out.flush()
    del out
    return n


def run_command(path: Path, chunk: int | None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and stdout of ``python -m logsumexp lse -f path``."""
    argv = [sys.executable, "-m", "logsumexp", "lse", "-f", str(path), "--no-progress"]
    if chunk:
        argv += ["--chunk-size", str(chunk)]
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"the command failed ({proc.returncode}): {err.decode().strip()}")
    return wall, usage.ru_maxrss / 1024, out.decode().strip()


def _json_run(code: str, *args: str) -> dict:
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_make"]:
        print(make_file(Path(argv[1]), float(argv[2])))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mb", type=float, default=1600.0, help="file size in MB (default 1600)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (default 3)")
    p.add_argument("--chunk-size", type=int, default=0, help="values per chunk (default: the command's)")
    p.add_argument("--dir", default=None, help="where to write the file (default: a temporary folder)")
    p.add_argument("--write", action="store_true", help="write docs/BENCHMARKS.md even for a small run")
    p.add_argument("--no-write", action="store_true", help="never write docs/BENCHMARKS.md")
    a = p.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=a.dir, prefix="lse-stream-") as d:
        path = Path(d) / "big.npy"
        print(f"writing {a.size_mb:g} MB to {path} ...", file=sys.stderr)
        # In a child process: the parent must stay small, because a child's ru_maxrss starts
        # from its parent's high-water mark at fork (Linux carries it across exec).
        r = subprocess.run([sys.executable, __file__, "--_make", str(path), str(a.size_mb)],
                           capture_output=True, text=True, check=True)
        n = int(r.stdout)
        chunk = a.chunk_size or None
        cmd = [run_command(path, chunk) for _ in range(a.repeats)]
        warm = _json_run(_WARM_STREAM, str(path), str(a.repeats), str(a.chunk_size))
        mem = _json_run(_IN_MEMORY, str(path), str(a.repeats))

    cmd_wall = statistics.median(c[0] for c in cmd)
    cmd_rss = max(c[1] for c in cmd)
    stream_t = statistics.median(warm["times"])
    base_t = statistics.median(mem["times"])
    values = {float(c[2]) for c in cmd} | {warm["value"], mem["value"]}
    spread = (max(values) - min(values)) / np.spacing(max(values))
    ratio = stream_t / base_t
    ratio_load = stream_t / (mem["load"] + base_t)
    size = f"{n * 8 / 1e9:.2f} GB ({n:,} float64)"
    rows = [
        ["`logsumexp lse -f FILE` (whole command, with start-up)", f"{cmd_wall:.3f}", f"{cmd_rss:.0f}", "-"],
        ["streaming reduction, warm process", f"{stream_t:.3f}", "-", f"{ratio:.2f}x"],
        ["in memory: `lse.logsumexp(x)` on the loaded array (baseline)", f"{base_t:.3f}", "-", "1.00x"],
        ["in memory: `np.load` + `lse.logsumexp`", f"{mem['load'] + base_t:.3f}", f"{mem['peak_mib']:.0f}",
         f"{(mem['load'] + base_t) / base_t:.2f}x"],
    ]
    ok_mem, ok_time = cmd_rss <= TARGET_MIB, ratio <= TARGET_RATIO
    body = "\n".join([
        f"File: {size}, page cache warm; chunk: {chunk or DEFAULT_CHUNK:,} values; medians of "
        f"{a.repeats}. Machine: {cpu_model()}; commit {git_commit()}.",
        "",
        markdown_table(["measurement", "time (s)", "peak RSS (MiB)", "vs baseline"], rows),
        "",
        f"- Peak memory of the command: {cmd_rss:.0f} MiB (target <= {TARGET_MIB}): "
        f"{'met' if ok_mem else 'NOT met'}.",
        f"- Streaming time / in-memory fast path: {ratio:.2f}x (target <= {TARGET_RATIO}): "
        f"{'met' if ok_time else 'NOT met'}; against `np.load` + LSE it is {ratio_load:.2f}x.",
        f"- All results agree to {spread:.0f} ulp.",
    ])
    print(body)
    if not a.no_write and (a.write or a.size_mb >= 1000):
        write_between_markers(ROOT / "docs" / "BENCHMARKS.md", "stream", body,
                              "## Streaming a file (`benchmarks/stream.py`)")
        print("wrote docs/BENCHMARKS.md (stream section)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
