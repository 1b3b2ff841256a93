"""The ``logsumexp`` command: in-process ``main(argv)`` for speed, subprocesses for the entry
point, ``python -m`` and stdin."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import logsumexp as lse
from logsumexp import cli

from _cli_helpers import ok, run

VENV_BIN = Path(sys.executable).parent


def fails(capsys, code: int, *argv: str) -> str:
    got, out, err = run(capsys, *argv)
    assert got == code, (out, err)
    assert "Traceback" not in err
    return err


# --- the numbers -----------------------------------------------------------------------------
def test_lse_prints_repr_of_float64(capsys) -> None:
    assert ok(capsys, "lse", "1000", "1000", "1000") == "1001.0986122886682\n"


@pytest.mark.parametrize("neg", [["-1000", "-1000", "-1000"], ["-1e3", "-1e3", "-1e3"]])
def test_negative_numbers_as_positionals(capsys, neg) -> None:
    assert ok(capsys, "lse", *neg) == "-998.9013877113318\n"


def test_negative_inf_and_options_between_numbers(capsys) -> None:
    assert ok(capsys, "lse", "-inf", "0", "--axis", "0", "-inf") == "0.0\n"
    assert ok(capsys, "lse", "--", "-5", "-5") == repr(float(lse.logsumexp([-5.0, -5.0]))) + "\n"


def test_softmax_log_softmax_ce(capsys) -> None:
    assert ok(capsys, "softmax", "1000", "1000", "1000").split() == ["0.3333333333333333"] * 3
    out = ok(capsys, "log-softmax", "0", "-40")
    assert out.split() == [repr(float(v)) for v in lse.log_softmax(np.array([0.0, -40.0]))]
    assert ok(capsys, "ce", "--target", "0", "1000", "1000", "1000") == "1.0986122886681098\n"
    t = ok(capsys, "softmax", "1", "2", "3", "--temperature", "0.5")
    assert t.split() == [repr(float(v)) for v in lse.softmax(np.array([1.0, 2, 3]), temperature=0.5)]


def test_weights_and_sign(capsys) -> None:
    x = np.array([1000.0, 1000.0, 1000.0])
    b = np.array([1.0, -1.0, 2.0])
    assert ok(capsys, "lse", "1000", "1000", "1000", "--b", "1", "-1", "2") == repr(float(lse.logsumexp(x, b=b))) + "\n"
    out = ok(capsys, "lse", "--b=1,-1,-2", "1000", "1000", "1000", "--return-sign")
    v, s = lse.logsumexp(x, b=[1, -1, -2], return_sign=True)
    assert out == f"{float(v)!r} {float(s)!r}\n"


def test_json_output_is_strict(capsys) -> None:
    obj = json.loads(ok(capsys, "softmax", "0", "-inf", "--json"))
    assert obj == {"command": "softmax", "shape": [2], "dtype": "float64", "result": [1.0, 0.0], "nonfinite": {}}
    obj = json.loads(ok(capsys, "lse", "1", "--b", "-1", "--return-sign", "--json"))
    assert obj["result"] == 1.0 and obj["sign"] == -1.0


def _strict_json(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_json_nonfinite_values_are_null_and_listed_by_kind(capsys) -> None:
    # One convention for every command: a value is a number or null (never a string), and
    # "nonfinite" says where each inf, -inf and nan is.
    obj = _strict_json(ok(capsys, "log-softmax", "inf", "1", "nan", "--axis", "0", "--json"))
    assert obj["result"] == [None, None, None]
    assert obj["nonfinite"] == {"result": {"nan": [[0], [1], [2]]}}
    obj = _strict_json(ok(capsys, "log-softmax", "inf", "1", "--json"))
    assert obj["result"] == [0.0, None] and obj["nonfinite"] == {"result": {"-inf": [[1]]}}
    obj = _strict_json(ok(capsys, "lse", "-inf", "-inf", "--json"))
    assert obj["result"] is None and obj["nonfinite"] == {"result": {"-inf": [[]]}}
    obj = _strict_json(ok(capsys, "lse", "inf", "--json"))
    assert obj["result"] is None and obj["nonfinite"] == {"result": {"inf": [[]]}}
    obj = _strict_json(ok(capsys, "lse", "nan", "1", "--b", "1", "--return-sign", "--json"))
    assert obj["result"] is None and obj["sign"] is None
    assert obj["nonfinite"] == {"result": {"nan": [[]]}, "sign": {"nan": [[]]}}
    assert "nonfinite" in ok(capsys, "softmax", "--help")


@pytest.mark.parametrize("argv", [["log-softmax", "inf", "1"], ["log-softmax", "inf", "-inf"]])
def test_negative_zero_prints_as_zero(capsys, argv) -> None:
    # log_softmax([inf, 1]) is [-0.0, -inf] in IEEE arithmetic; the command writes the zero as 0.0.
    assert np.signbit(lse.log_softmax(np.array([float(v) for v in argv[1:]]))[0])
    assert ok(capsys, *argv).split() == ["0.0", "-inf"]
    assert _strict_json(ok(capsys, *argv, "--json"))["result"] == [0.0, None]
    assert "-0.0" not in ok(capsys, *argv, "--json")


def test_negative_zero_in_float32_and_tables(capsys, tmp_path) -> None:
    np.save(tmp_path / "x.npy", np.array([[np.inf, 1.0], [2.0, np.inf]], dtype=np.float32))
    assert ok(capsys, "log-softmax", "-f", str(tmp_path / "x.npy")) == "0.0 -inf\n-inf 0.0\n"


# --- files -----------------------------------------------------------------------------------
def test_file_inputs_and_axes(capsys, tmp_path) -> None:
    x = np.random.default_rng(0).standard_normal((4, 3)) * 100
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "x.csv", x, delimiter=",")
    np.savetxt(tmp_path / "x.txt", x)
    for name in ("x.npy", "x.csv", "x.txt"):
        f = str(tmp_path / name)
        assert float(ok(capsys, "lse", "-f", f)) == pytest.approx(lse.logsumexp(x), rel=1e-15)
        rows = np.loadtxt(io.StringIO(ok(capsys, "lse", "-f", f, "--axis", "1")))
        np.testing.assert_allclose(rows, lse.logsumexp(x, axis=1), rtol=1e-15)
        sm = np.loadtxt(io.StringIO(ok(capsys, "softmax", "-f", f)))
        np.testing.assert_allclose(sm, lse.softmax(x), rtol=1e-15)
    ce = float(ok(capsys, "ce", "-f", str(tmp_path / "x.npy"), "--target", "0,1,2,0", "--reduction", "sum"))
    assert ce == pytest.approx(lse.cross_entropy(x, np.array([0, 1, 2, 0]), reduction="sum"), rel=1e-15)


def test_streaming_file_with_small_chunks_and_weights_file(capsys, tmp_path) -> None:
    x = np.random.default_rng(1).standard_normal(5000) + 500
    np.save(tmp_path / "x.npy", x)
    got = float(ok(capsys, "lse", "-f", str(tmp_path / "x.npy"), "--chunk-size", "300", "--no-progress"))
    assert abs(got - lse.logsumexp(x)) <= 2 * np.spacing(lse.logsumexp(x))
    np.save(tmp_path / "b.npy", np.full(5000, 0.5))
    got = float(ok(capsys, "lse", "-f", str(tmp_path / "x.npy"), "--b-file", str(tmp_path / "b.npy")))
    assert got == lse.logsumexp(x, b=0.5)


def test_progress_bar_only_on_a_terminal(capsys, tmp_path, monkeypatch) -> None:
    np.save(tmp_path / "x.npy", np.zeros(1000))
    _, _, err = run(capsys, "lse", "-f", str(tmp_path / "x.npy"), "--chunk-size", "100")
    assert err == ""

    class TTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    fake = TTY()
    monkeypatch.setattr(sys, "stderr", fake)
    assert cli.main(["lse", "-f", str(tmp_path / "x.npy"), "--chunk-size", "100"]) == 0
    assert "x.npy" in fake.getvalue()
    fake2 = TTY()
    monkeypatch.setattr(sys, "stderr", fake2)
    assert cli.main(["lse", "-f", str(tmp_path / "x.npy"), "--chunk-size", "100", "--no-progress"]) == 0
    assert fake2.getvalue() == ""


# --- errors: one line, exit 1; usage errors exit 2 ---------------------------------------------
def test_non_number_argument_is_a_usage_mistake(capsys) -> None:
    err = fails(capsys, 2, "lse", "1", "abc")
    assert err.startswith("usage: logsumexp lse") and err.endswith("logsumexp lse: error: not a number: 'abc' (value 2)\n")
    assert "not a number: 'x' (--b value 2)" in fails(capsys, 2, "lse", "1", "2", "--b", "1,x")


def test_empty_file(capsys, tmp_path) -> None:
    (tmp_path / "e.txt").write_text("")
    err = fails(capsys, 1, "lse", "-f", str(tmp_path / "e.txt"))
    assert err.startswith("logsumexp: error: ") and "empty" in err and err.count("\n") == 1


def test_missing_file(capsys, tmp_path) -> None:
    err = fails(capsys, 1, "softmax", "-f", str(tmp_path / "missing.npy"))
    assert "missing.npy: no such file" in err


def test_axis_does_not_fit(capsys, tmp_path) -> None:
    assert "out of bounds" in fails(capsys, 1, "lse", "1", "2", "--axis", "1")
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    assert "out of bounds" in fails(capsys, 1, "lse", "-f", str(tmp_path / "x.npy"), "--axis", "2")
    assert "out of bounds" in fails(capsys, 1, "softmax", "-f", str(tmp_path / "x.npy"), "--axis", "5")


def test_target_out_of_range_and_bad_target(capsys) -> None:
    assert "out of range" in fails(capsys, 1, "ce", "--target", "3", "1", "2", "3")
    assert "not a class index" in fails(capsys, 2, "ce", "--target", "x", "1", "2")
    assert "--target" in fails(capsys, 2, "ce", "1", "2")


def test_weights_that_do_not_broadcast(capsys) -> None:
    assert "broadcast" in fails(capsys, 1, "lse", "1", "2", "3", "--b", "1", "2")


def test_bad_temperature_and_smoothing_are_usage_mistakes(capsys) -> None:
    # argparse gives 2 for --temperature x; a value wrong on its own gets the same code from us.
    for t in ("0", "-1", "nan", "inf", "x"):
        assert "--temperature" in fails(capsys, 2, "softmax", "1", "2", "--temperature", t)
    for eps in ("-0.1", "1.5", "x"):
        assert "--label-smoothing" in fails(capsys, 2, "ce", "--target", "0", "1", "2", "--label-smoothing", eps)
    assert "--ignore-index" in fails(capsys, 2, "ce", "--target", "0", "1", "2", "--ignore-index", str(10**30))


def test_usage_errors_exit_2(capsys) -> None:
    assert "no input" in fails(capsys, 2, "lse")
    assert "not both" in fails(capsys, 2, "lse", "1", "-f", "x.npy")
    assert "invalid choice" in fails(capsys, 2, "frobnicate")
    assert "a command is required" in fails(capsys, 2)
    assert "--axis" in fails(capsys, 2, "lse", "1", "--axis", "x")
    assert "unrecognized" in fails(capsys, 2, "lse", "1", "--nope")


def test_help_and_version(capsys) -> None:
    assert "lse" in ok(capsys, "--help")
    assert ok(capsys, "--version") == f"logsumexp {lse.__version__}\n"
    assert "--temperature" in ok(capsys, "softmax", "--help")


def test_internal_errors_are_one_line(capsys, monkeypatch) -> None:
    def boom(*a, **k):
        raise KeyError("oops")

    monkeypatch.setattr(lse, "softmax", boom)
    err = fails(capsys, 1, "softmax", "1")
    assert err.startswith("logsumexp: error: internal error: KeyError") and err.count("\n") == 1
    monkeypatch.setenv("LOGSUMEXP_TRACEBACK", "1")
    with pytest.raises(KeyError):
        cli.main(["softmax", "1"])


# --- demo, info, bench -----------------------------------------------------------------------
def test_demo_command(capsys) -> None:
    out = ok(capsys, "demo")
    assert "1001.0986122886682" in out and "OverflowError" in out


def test_info(capsys) -> None:
    out = ok(capsys, "info")
    assert f"logsumexp         {lse.__version__}" in out and "NumPy" in out
    for name in ("torch", "triton", "dask", "jax", "scipy", "CUDA", "compiled CPU", lse.show_config(False)["target"]):
        assert name in out
    info = json.loads(ok(capsys, "info", "--json"))
    assert info["numpy"] == np.__version__
    assert set(info["backends"]) == {"torch", "triton", "dask", "jax", "scipy"}
    assert isinstance(info["cuda"]["available"], bool)
    assert info["cpu_fast_path"]["enabled"] is True
    assert info["cpu_fast_path"]["target"] in info["cpu_fast_path"]["supported_targets"]


def test_bench_runs_main_of_benchmarks_cpu(capsys, tmp_path, monkeypatch) -> None:
    (tmp_path / "cpu.py").write_text(
        "from dataclasses import dataclass\n\n@dataclass\nclass Case:\n    n: int\n\n"
        "def main(argv):\n    print('bench', argv)\n    return 3\n"
    )
    monkeypatch.setenv("LOGSUMEXP_BENCHMARKS", str(tmp_path))
    code, out, _ = run(capsys, "bench", "--quick", "-n", "5")
    assert code == 3 and out == "bench ['--quick', '-n', '5']\n"


def test_bench_away_from_a_checkout_runs_the_carried_benchmark(capsys, monkeypatch) -> None:
    """An installed package has no benchmarks/cpu.py: `logsumexp bench` runs _bench.py (here on one
    tiny case, so the test stays quick) and refuses options it does not take, naming them."""
    from logsumexp import _bench

    monkeypatch.setattr(cli, "find_benchmark", lambda name="cpu.py": None)
    monkeypatch.setattr(_bench, "_cases", lambda quick: [("lse 64 f64", "lse", (64,), "float64", None)])
    out = ok(capsys, "bench", "--quick")
    assert "CPU kernels" in out and "lse 64 f64" in out and "logsumexp" in out and "NumPy shifted" in out
    err = fails(capsys, 1, "bench", "--repeats", "3")
    assert "--repeats" in err and "benchmarks/cpu.py" in err


# --- subprocess: the entry point, python -m, stdin --------------------------------------------
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LOGSUMEXP_TRACEBACK", None)
    return env


@pytest.mark.skipif(not (VENV_BIN / "logsumexp").exists(), reason="console script not installed next to python")
def test_entry_point_subprocess() -> None:
    r = subprocess.run([str(VENV_BIN / "logsumexp"), "lse", "-1000", "-1000", "-1000"],
                       capture_output=True, text=True, env=_env(), timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "-998.9013877113318\n", "")
    r = subprocess.run([str(VENV_BIN / "logsumexp"), "lse", "-f", "nope.csv"], capture_output=True, text=True,
                       env=_env(), timeout=60)
    assert r.returncode == 1 and r.stderr == "logsumexp: error: nope.csv: no such file\n"


def test_python_m_and_stdin_text() -> None:
    data = "\n".join(str(v) for v in range(1, 1001))
    r = subprocess.run([sys.executable, "-m", "logsumexp", "lse", "-f", "-", "--chunk-size", "64"],
                       input=data, capture_output=True, text=True, env=_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    ref = lse.logsumexp(np.arange(1.0, 1001.0))
    assert abs(float(r.stdout) - ref) <= 2 * np.spacing(ref)
    assert r.stderr == ""  # stderr is a pipe: no progress bar


def test_stdin_npy_subprocess(tmp_path) -> None:
    x = np.random.default_rng(2).standard_normal((50, 4))
    buf = io.BytesIO()
    np.save(buf, x)
    r = subprocess.run([sys.executable, "-m", "logsumexp", "lse", "-f", "-", "--axis", "0", "--json"],
                       input=buf.getvalue(), capture_output=True, env=_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    np.testing.assert_allclose(got["result"], lse.logsumexp(x, axis=0), rtol=1e-15)
