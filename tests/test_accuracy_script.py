"""Smoke test of benchmarks/accuracy.py: a tiny run into a temporary directory.

Checks that the report has one table per dtype with the expected rows (families) and columns
(libraries), that its ulp arithmetic is right on hand-checked values, and that ours meets the
targets of issues 2 and 14 on the tiny run (the compiled path).
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytest.importorskip("mpmath", reason="the accuracy script needs mpmath for the exact values")

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "accuracy.py"
N, TRIALS = 24, 2


@pytest.fixture(scope="module")
def acc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_accuracy_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def report(acc: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("accuracy")
    # JAX (where installed) is left out: its JIT compiles dominate a tiny run; the full run has it.
    args = ["--quick", "--out", str(out), "-n", str(N), "--trials", str(TRIALS), "--skip", "JAX"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        args.append("--no-plot")
    assert acc.main(args) == 0
    return out, (out / "ACCURACY.md").read_text(encoding="utf-8")


def _table(md: str, heading: str) -> tuple[list[str], list[list[str]]]:
    """Header cells and body rows of the first Markdown table after ``heading``."""
    lines = md[md.index(heading) :].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    rows = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").split("|")])
    return rows[0], rows[2:]


def test_ulp_definition(acc: ModuleType) -> None:
    import mpmath

    assert acc.ulp(mpmath.mpf(1), np.float64) == mpmath.mpf(2) ** -52
    assert acc.ulp(mpmath.mpf("0.75"), np.float64) == mpmath.mpf(2) ** -53
    assert acc.ulp(mpmath.mpf(-1000), np.float32) == mpmath.mpf(2) ** (9 - 23)
    assert acc.ulp(mpmath.mpf("1e-7"), np.float16) == mpmath.mpf(2) ** -24  # subnormal spacing
    assert acc.ulp(mpmath.mpf(0), np.float64) == mpmath.mpf(2) ** -1074
    # 1 + 2^-52 against an exact 1: one ulp; a result of 1 against exact 1 + 2^-53: half an ulp
    assert acc.ulp_error(np.float64(1 + 2**-52), mpmath.mpf(1), np.float64) == 1.0
    with mpmath.workdps(30):  # 1 + 2^-53 needs more than the default 53 bits
        just_above_one = 1 + mpmath.mpf(2) ** -53
    assert acc.ulp_error(np.float64(1.0), just_above_one, np.float64) == 0.5
    assert math.isinf(acc.ulp_error(np.float64(np.inf), mpmath.mpf(1), np.float64))
    assert math.isnan(acc.ulp_error(np.float64(np.nan), mpmath.mpf(1), np.float64))


def test_summary_ranks_nan_and_inf_last(acc: ModuleType) -> None:
    assert acc.summarize([0.5, 0.25, 1.0]) == (1.0, 0.5)
    mx, med = acc.summarize([0.5, math.inf, 0.25, 0.75])
    assert math.isinf(mx) and med == 0.5
    assert math.isnan(acc.summarize([math.inf, math.nan, 1.0])[0])
    assert [acc.fmt_ulps(v) for v in (math.inf, math.nan, 0.0, 0.4999, 2.5e13)] == ["inf", "nan", "0", "0.50", "2.5e13"]


def test_exact_lse_of_dominant_family(acc: ModuleType) -> None:
    import mpmath

    x = np.concatenate([[0.0], np.full(999, -40.0)])
    assert mpmath.nstr(acc.exact_lse(x), 13) == "4.244105901036e-15"


def test_report_tables(acc: ModuleType, report: tuple[Path, str]) -> None:
    out, md = report
    libs, _ = acc.libraries(["JAX"])
    names = [lib.name for lib in libs]
    assert {"ours (fast)", "ours (core)", "SciPy", "NumPy naive", "NumPy shifted"} <= set(names)
    families = [f.name(N) for f in acc.FAMILIES]
    assert f"[0, −40×{N - 1}]" in families
    for dname in ("float64", "float32", "float16"):
        header, rows = _table(md, f"### {dname}")
        assert header == ["family", *names]
        assert [r[0] for r in rows] == families
        for r in rows:
            assert len(r) == len(header)
            for cell in r[1:]:
                assert re.fullmatch(r"(\S+)( / \S+)?", cell), cell
    for heading in ("### LogSumExp", "### softmax", "### log_softmax"):
        header, rows = _table(md, heading)
        assert header[0] == "input" and "ours (fast)" in header
        assert len(rows) == len(acc.SPECIAL_ROWS)
    header, rows = _table(md, "## Pinned")
    assert header == ["case", "dtype", "exact", "library", "computed", "error (ulp)"]
    assert {r[3] for r in rows} >= {"ours (fast)", "ours (core)"}
    assert "Commit: `" in md and "Machine: " in md and "mpmath" in md
    if "--no-plot" not in md:
        png = out / "accuracy.png"
        assert not png.exists() or png.stat().st_size > 10_000


def test_ours_meets_targets_on_tiny_run(report: tuple[Path, str]) -> None:
    """The compiled kernels hold every target on every instruction-set target this CPU runs
    (``ours (fast)`` and the forced ``ours (avx2)`` / ``ours (baseline)``): per dtype the ordinary
    and the near-zero families, log_softmax per entry, the pinned cases. The generic array core is
    reported as a peer (it has no exact recompute near zero)."""
    from logsumexp import _cpu

    _, md = report
    section = md[md.index("## Targets") : md.index("## LogSumExp error")]
    lines = [ln for ln in section.splitlines() if ln.startswith("- ")]
    names = ["ours (fast)"] + [f"ours ({t})" for t in _cpu.supported_targets() if t != _cpu.target()]
    for name in names:
        mine = [ln for ln in lines if name in ln]
        assert len(mine) == 3 * 2 + 1 + 1, (name, lines)
        for ln in mine:
            assert "**holds**" in ln, ln
        assert any("near-zero" in ln for ln in mine) and any("log_softmax" in ln for ln in mine)
    assert not any("ours (core)" in ln for ln in lines)


def test_ours_meets_special_value_contract(report: tuple[Path, str]) -> None:
    _, md = report
    for kind in ("LogSumExp", "softmax", "log_softmax"):
        _, rows = _table(md, f"### {kind}")
        correct = md[md.index(f"### {kind}") :].split("Correct: ", 1)[1].split("\n", 1)[0]
        k = len(rows)
        assert f"ours (fast) {k}/{k}" in correct and f"ours (core) {k}/{k}" in correct, correct
