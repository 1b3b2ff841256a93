"""Build of the compiled CPU kernels: one extension module per instruction-set target.

The same C sources (src/logsumexp/_cpu/src/) are compiled once per target with that target's
flags; ``logsumexp._cpu`` picks the best one the running CPU supports (or the one that
``LOGSUMEXP_CPU`` names). Every target is compiled with ``-ffp-contract=off`` and without
fast-math, so the kernels' arithmetic is the same IEEE-754 sequence everywhere: the targets
differ in speed, not in bits. Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

import glob
import platform
import sys

from setuptools import Extension, setup

SRC = "src/logsumexp/_cpu/src"
COMMON = ["-O3", "-ffp-contract=off", "-fno-fast-math", "-fno-math-errno", "-std=c11", "-fvisibility=hidden"]

# target name -> extra compiler flags; x86-64 gets the AVX2 and AVX-512 builds besides the
# baseline (SSE2), every other machine (arm64: NEON is its baseline) the baseline alone
TARGETS = {"baseline": []}
if platform.machine().lower() in ("x86_64", "amd64") and sys.platform != "win32":
    TARGETS["avx2"] = ["-mavx2", "-mfma"]
    TARGETS["avx512"] = ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mprefer-vector-width=512"]

# every header and module.c: an edit to any of them rebuilds every target
HEADERS = sorted(glob.glob(f"{SRC}/*.h")) + [f"{SRC}/module.c"]

setup(
    ext_modules=[
        Extension(
            f"logsumexp._cpu._kernels_{name}",
            sources=[f"{SRC}/target_{name}.c"],
            depends=HEADERS,
            extra_compile_args=COMMON + flags,
        )
        for name, flags in TARGETS.items()
    ]
)
