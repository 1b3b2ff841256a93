"""Small shared harness for the benchmark scripts: timing, peak memory, progress, tables, plots.

Timing
    ``time_call(fn)`` runs ``fn`` once (warm-up: JIT compilation, caches, thread pools), then
    ``repeats`` timed rounds; a round calls ``fn`` ``number`` times (chosen so that a round lasts at
    least ``min_round`` seconds, for microsecond cases) and records the time per call. Reported:
    the median (and the minimum) over rounds, from ``time.perf_counter``.

Peak extra memory
    ``peak_extra_memory(argv)`` runs ``argv`` (a Python command line) in a *fresh* subprocess
    which builds its input, calls the function once to warm up, then calls ``memory_probe(fn)``:
    the probe resets the kernel's resident-set high-water mark (``echo 5 >
    /proc/self/clear_refs``, Linux ≥ 4.0), calls ``fn`` once, and reports ``VmHWM − VmRSS``
    before the call: the most resident memory the call added on top of the live input, counting
    every allocator (NumPy, Numba's ``np.empty`` inside compiled code, torch, XLA), the output
    included. Where ``clear_refs`` cannot be written the probe falls back to ``tracemalloc``
    (NumPy and Python allocations only) and says so in its ``method`` field.

Output
    ``Progress`` draws a one-line bar on stderr; ``cpu_model()`` reads /proc/cpuinfo;
    ``markdown_table`` / ``write_between_markers`` put a table into a Markdown file between
    ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` (creating the section if missing);
    ``bar_plot`` writes a PNG of times as multiples of a baseline with the baseline line drawn.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------
@dataclass
class Timing:
    median: float  # seconds per call
    best: float
    rounds: int
    number: int  # calls per round


def time_call(fn: Callable[[], Any], repeats: int = 7, min_round: float = 0.05, warmup: int = 1) -> Timing:
    """Median and minimum seconds per call of ``fn`` over ``repeats`` rounds (after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-9)
    number = max(1, int(min_round / one)) if one < min_round else 1
    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        per_call.append((time.perf_counter() - t0) / number)
    return Timing(statistics.median(per_call), min(per_call), repeats, number)


def time_interleaved(
    fns: dict[str, Callable[[], Any]], rounds: int = 7, min_round: float = 0.05, warmup: int = 1
) -> dict[str, Timing]:
    """Median and minimum seconds per call of each function, timed in interleaved rounds.

    Each round times every function once (``number`` calls, calibrated so that a round lasts
    about ``min_round`` seconds), in an order rotated from round to round: on a shared machine a
    burst of load then hits every implementation alike, and their ratios stay meaningful where
    their absolute times do not.
    """
    numbers: dict[str, int] = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        t0 = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-9)
        numbers[name] = max(1, int(min_round / one)) if one < min_round else 1
    per_call: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn, number = fns[name], numbers[name]
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            per_call[name].append((time.perf_counter() - t0) / number)
    return {
        name: Timing(statistics.median(v), min(v), rounds, numbers[name]) for name, v in per_call.items()
    }


# --------------------------------------------------------------------------------------------
# Peak memory (child side and parent side)
# --------------------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def memory_probe(fn: Callable[[], Any]) -> dict[str, Any]:
    """Peak extra memory of one call of ``fn`` in this process (call it in a fresh subprocess,
    after a warm-up call). Returns ``{"bytes": int, "method": "rss-hwm" | "tracemalloc"}``."""
    try:
        rss0 = _status_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        if _status_kb("VmHWM") > rss0 + 1024:  # the reset did not take
            raise OSError("VmHWM was not reset")
        out = fn()
        hwm = _status_kb("VmHWM")
        del out
        return {"bytes": max(0, hwm - rss0) * 1024, "method": "rss-hwm"}
    except OSError:
        import tracemalloc

        tracemalloc.start()
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del out
        return {"bytes": peak, "method": "tracemalloc"}


def emit_probe(fn: Callable[[], Any]) -> None:
    """Child side: warm up, probe, print the result as one JSON line (read by peak_extra_memory)."""
    fn()
    print("MEMPROBE " + json.dumps(memory_probe(fn)), flush=True)


def peak_extra_memory(argv: Sequence[str], timeout: float = 600) -> dict[str, Any] | None:
    """Run ``[sys.executable, *argv]`` (which must end in ``emit_probe``) and return its result,
    or None (with the reason on stderr) if it failed."""
    try:
        proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"\nmemory probe timed out: {' '.join(argv)}", file=sys.stderr)
        return None
    for line in proc.stdout.splitlines():
        if line.startswith("MEMPROBE "):
            return json.loads(line[len("MEMPROBE ") :])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    print(f"\nmemory probe failed ({' '.join(argv)}): {tail}", file=sys.stderr)
    return None


# --------------------------------------------------------------------------------------------
# Progress, machine, tables, plots
# --------------------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on stderr: ``Progress(total)``, then ``step(label)`` per task."""

    def __init__(self, total: int, width: int = 30, stream: Any = None) -> None:
        self.total, self.done, self.width = max(total, 1), 0, width
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()

    def step(self, label: str) -> None:
        self.done += 1
        frac = min(1.0, self.done / self.total)
        bar = "#" * int(frac * self.width)
        elapsed = time.perf_counter() - self.t0
        self.stream.write(f"\r[{bar:<{self.width}}] {self.done}/{self.total} {elapsed:6.1f}s {label[:50]:<50}")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def cpu_model() -> str:
    """CPU model name and the number of CPUs this process may use."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        n = os.cpu_count() or 1
    return f"{name}, {n} CPUs"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_between_markers(path: Path, name: str, body: str, title: str = "") -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path``
    (appending the section, with ``title`` above it, when the markers are missing)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        pre, rest = text.split(start, 1)
        post = rest.split(end, 1)[1]
        text = pre + block + post
    else:
        text = text.rstrip() + "\n\n" + (f"{title}\n\n" if title else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def bar_plot(path: Path, cases: Sequence[str], libs: Sequence[str], ratios: dict[tuple[str, str], float],
             title: str, ylabel: str = "time / one read (log scale)") -> bool:
    """Grouped bars (one group per case, one bar per library) of ``ratios[(case, lib)]``, log y,
    with a horizontal line at 1 (the baseline, e.g. one read). Returns False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return False
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(cases)), 4.8))
    width = 0.8 / max(len(libs), 1)
    for i, lib in enumerate(libs):
        xs = [c + (i - (len(libs) - 1) / 2) * width for c in range(len(cases))]
        ys = [ratios.get((case, lib), math.nan) for case in cases]
        ax.bar(xs, ys, width, label=lib)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="one read (x.max())")
    ax.set_yscale("log")
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels(cases, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
