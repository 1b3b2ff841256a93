"""The ``logsumexp`` command on real files: spreadsheets, targets, ragged tables, headers,
unbounded text, and the exit-code and output conventions. Each test is named after the
newcomer's case it pins."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import logsumexp as lse
from logsumexp import cli

from _cli_helpers import ok, run


def fails(capsys, code: int, *argv: str) -> str:
    got, out, err = run(capsys, *argv)
    assert got == code, (out, err)
    assert out == "" and "Traceback" not in err
    return err


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LOGSUMEXP_TRACEBACK", None)
    return env


X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 7.0]])


@pytest.fixture
def spreadsheet(tmp_path) -> str:
    """X as Excel's "CSV UTF-8" writes it: byte-order mark, CRLF, a quoted cell, an empty row."""
    f = tmp_path / "sheet.csv"
    f.write_bytes('\ufeff1,2,"3"\r\n4,5,7\r\n,,\r\n'.encode())
    return str(f)


# --- 8. spreadsheets ---------------------------------------------------------------------------
def test_spreadsheet_csv_works_with_every_command(capsys, spreadsheet) -> None:
    assert float(ok(capsys, "lse", "-f", spreadsheet)) == lse.logsumexp(X)
    assert float(ok(capsys, "lse", "-f", spreadsheet, "--return-sign").split()[0]) == lse.logsumexp(X)
    rows = np.loadtxt(io.StringIO(ok(capsys, "softmax", "-f", spreadsheet)))
    np.testing.assert_array_equal(rows, lse.softmax(X))
    ce = float(ok(capsys, "ce", "-f", spreadsheet, "--target", "2,0"))
    assert ce == lse.cross_entropy(X, np.array([2, 0]))


def test_spreadsheet_targets_and_weights_files(capsys, tmp_path, spreadsheet) -> None:
    (tmp_path / "t.csv").write_bytes("\ufeff2\r\n0\r\n".encode())
    assert float(ok(capsys, "ce", "-f", spreadsheet, "--target-file", str(tmp_path / "t.csv"))) == \
        lse.cross_entropy(X, np.array([2, 0]))
    (tmp_path / "b.csv").write_bytes("\ufeff1,-1,2\r\n".encode())
    v, s = lse.logsumexp(X, b=np.array([1.0, -1.0, 2.0]), return_sign=True)
    out = ok(capsys, "lse", "-f", spreadsheet, "--b-file", str(tmp_path / "b.csv"), "--return-sign")
    assert out == f"{float(v)!r} {float(s)!r}\n"


def test_bom_on_stdin_text() -> None:
    r = subprocess.run([sys.executable, "-m", "logsumexp", "lse", "-f", "-"], input="\ufeff1000\n1000\n1000\n".encode(),
                       capture_output=True, env=_env(), timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"1001.0986122886682\n", b"")


# --- 9. negative targets -----------------------------------------------------------------------
@pytest.mark.parametrize("form", [["--target", "-100,2"], ["--target=-100,2"], ["--target", "-100, 2"]])
def test_negative_targets_after_target_option(capsys, spreadsheet, form) -> None:
    got = ok(capsys, "ce", *form, "-f", spreadsheet, "--reduction", "none").split()
    want = lse.cross_entropy(X, np.array([-100, 2]), reduction="none")
    assert got == [repr(float(v) + 0.0) for v in want]  # the ignored row is 0 (no "-0.0")
    assert float(ok(capsys, "ce", *form, "-f", spreadsheet)) == lse.cross_entropy(X, np.array([-100, 2]))


def test_negative_target_with_ignore_index(capsys, spreadsheet) -> None:
    got = float(ok(capsys, "ce", "--target", "2,-2", "--ignore-index", "-2", "-f", spreadsheet, "--reduction", "sum"))
    assert got == lse.cross_entropy(X, np.array([2, -2]), ignore_index=-2, reduction="sum")


# --- 10. target shapes -------------------------------------------------------------------------
@pytest.mark.parametrize("content", ["2\n", "2", "[2]", "2,\n"][:2])
def test_one_target_in_a_file_for_one_row(capsys, tmp_path, content) -> None:
    (tmp_path / "t.txt").write_text(content)
    got = float(ok(capsys, "ce", "--target-file", str(tmp_path / "t.txt"), "1", "2", "3"))
    assert got == lse.cross_entropy(np.array([1.0, 2, 3]), 2)


def test_target_file_as_a_row_or_a_column(capsys, tmp_path) -> None:
    x = np.arange(12.0).reshape(4, 3)
    np.save(tmp_path / "x.npy", x)
    want = lse.cross_entropy(x, np.array([0, 2, 1, 0]))
    for name, text in (("col.txt", "0\n2\n1\n0\n"), ("row.csv", "0,2,1,0\n")):
        (tmp_path / name).write_text(text)
        assert float(ok(capsys, "ce", "-f", str(tmp_path / "x.npy"), "--target-file", str(tmp_path / name))) == want


def test_probabilities_file_of_one_row(capsys, tmp_path) -> None:
    (tmp_path / "p.csv").write_text("0.25,0.25,0.5\n")
    got = float(ok(capsys, "ce", "--target-file", str(tmp_path / "p.csv"), "1", "2", "3"))
    assert got == lse.cross_entropy(np.array([1.0, 2, 3]), np.array([0.25, 0.25, 0.5]))


def test_target_shape_mismatch_names_both_shapes(capsys, tmp_path) -> None:
    (tmp_path / "t.txt").write_text("0 1\n1 0\n")
    err = fails(capsys, 1, "ce", "--target-file", str(tmp_path / "t.txt"), "1", "2", "3")
    assert "targets of shape (2, 2) do not fit logits of shape (3,)" in err
    assert "class indices need the shape ()" in err and err.count("\n") == 1
    err = fails(capsys, 2, "ce", "--target", "0,1", "1", "2", "3")
    assert "--target: 2 class indices for logits of shape (3,): give one per row, 1 in all (shape ())" in err


# --- 11. targets that are not class indices ----------------------------------------------------
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("0\n1e300\n", "value 1e+300 at position (1,) is out of range: class indices must be in [0, 3)"),
        ("0\n-1e300\n", "value -1e+300 at position (1,) is out of range"),
        ("2.5\n0\n", "value 2.5 at position (0,) is not a class index (an integer)"),
        ("0\nnan\n", "value nan at position (1,) is not a class index"),
        ("inf\n0\n", "value inf at position (0,) is not a class index"),
        ("0\n9.3e18\n", "value 9.3e+18 at position (1,) is out of range"),
    ],
)
def test_bad_target_values_in_a_file(capsys, tmp_path, spreadsheet, content, message) -> None:
    (tmp_path / "t.txt").write_text(content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy RuntimeWarning on the way
        err = fails(capsys, 1, "ce", "--target-file", str(tmp_path / "t.txt"), "-f", spreadsheet)
    assert err.startswith(f"logsumexp: error: --target-file {tmp_path / 't.txt'}: {message}")
    assert "numpy" not in err and "/site-packages/" not in err


def test_bad_target_values_on_the_command_line(capsys) -> None:
    err = fails(capsys, 1, "ce", "--target", "99999999999999999999999", "1", "2", "3")
    assert "--target: value 99999999999999999999999 at position (0,) is out of range: class indices must be in [0, 3)" in err
    assert "too large" not in err
    assert "--target: not a class index (an integer): '2.5' (value 2)" in fails(capsys, 2, "ce", "--target", "0,2.5", "1", "2")


def test_target_file_of_floats_is_exact_near_int64_limits(capsys, tmp_path) -> None:
    # 2**62 is an integer float64 holds exactly: it passes to the library, which says out of range
    (tmp_path / "t.txt").write_text(f"{2.0**62!r}\n")
    err = fails(capsys, 1, "ce", "--target-file", str(tmp_path / "t.txt"), "1", "2", "3")
    assert "4611686018427387904" in err and "out of range" in err


def test_bad_target_subprocess_has_no_warning_or_path(tmp_path) -> None:
    (tmp_path / "t.txt").write_text("1e300\n")
    r = subprocess.run([sys.executable, "-m", "logsumexp", "ce", "--target-file", str(tmp_path / "t.txt"), "1", "2"],
                       capture_output=True, text=True, env=_env(), timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Warning" not in r.stderr and "-9223372036854775808" not in r.stderr


# --- 12. ragged tables -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [["lse"], ["lse", "--axis", "1"], ["lse", "--axis", "0"], ["lse", "--return-sign"], ["softmax"],
     ["log-softmax"], ["ce", "--target", "0,1"]],
)
def test_ragged_csv_is_refused_by_every_command(capsys, tmp_path, argv) -> None:
    (tmp_path / "r.csv").write_text("1,2,3\n4,5\n")
    err = fails(capsys, 1, *argv, "-f", str(tmp_path / "r.csv"))
    assert f"{tmp_path / 'r.csv'}, line 2: 2 values, expected 3 like line 1" in err


# --- 13. header rows ---------------------------------------------------------------------------
def test_header_row_hint_and_option(capsys, tmp_path) -> None:
    (tmp_path / "h.csv").write_text("a,b,c\n1,2,3\n4,5,7\n")
    for argv in (["lse"], ["softmax"], ["lse", "--axis", "1"]):
        err = fails(capsys, 1, *argv, "-f", str(tmp_path / "h.csv"))
        assert "line 1: not a number: 'a' (if this line is a header, skip it with --header)" in err
    assert float(ok(capsys, "lse", "-f", str(tmp_path / "h.csv"), "--header")) == lse.logsumexp(X)
    np.testing.assert_array_equal(np.loadtxt(io.StringIO(ok(capsys, "softmax", "--header", "-f", str(tmp_path / "h.csv")))),
                                  lse.softmax(X))


# --- 14. text with no newline, endless input ---------------------------------------------------
# The children run under an address-space limit, so that a regression fails with a MemoryError
# instead of taking the (shared) machine's memory: 3 GiB, where a normal run peaks near 0.5 GiB.
_LIMIT = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
"""
_MEMORY_CHILD = _LIMIT + """
import io, sys
import numpy as np
import logsumexp as lse
from logsumexp import _io, cli
_io.stream_logsumexp("-", stdin=io.BytesIO(b"1.0 2.0\\n3.0 4.0\\n"))  # load the code paths first
lse.logsumexp(np.ones(1000))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
code = cli.main(["lse", "-f", "-"])
grew_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(grew_kib, file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_text_without_newline_streams_in_bounded_memory() -> None:
    # 50 MiB of "1.0 " and no newline: read as one line, the peak RSS grew by 1157 MiB
    # (measured on the former reader); read in blocks, by a small constant (measured: 12.5 MiB).
    size = 50 * 2**20
    r = subprocess.run([sys.executable, "-c", _MEMORY_CHILD], input=b"1.0 " * (size // 4),
                       capture_output=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) == lse.logsumexp(np.ones(size // 4))
    grew = int(r.stderr.decode().split()[-1]) * 1024
    assert grew < size // 2, f"peak RSS grew by {grew / 2**20:.1f} MiB for {size / 2**20:.0f} MiB of input"


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero (a POSIX system)")
def test_dev_zero_fails_fast_with_a_clear_error() -> None:
    child = _LIMIT + "from logsumexp.cli import main; raise SystemExit(main(['lse', '-f', '/dev/zero']))"
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=_env(), timeout=60)
    assert r.returncode == 1
    assert r.stderr == ("logsumexp: error: /dev/zero, line 1: NUL bytes: this is binary data, not numbers "
                        "as text (a .npy file starts with the bytes \\x93NUMPY)\n")


# --- 15. papercuts -----------------------------------------------------------------------------
def test_bench_help_names_the_command(capsys) -> None:
    if cli.find_benchmark("cpu.py") is None:
        pytest.skip("benchmarks/cpu.py is not next to this source tree (an installed package)")
    out = ok(capsys, "bench", "--help")
    assert out.startswith("usage: logsumexp bench ")
    assert sys.argv[0] != "logsumexp bench"  # restored


def test_both_targets_says_not_both(capsys, tmp_path) -> None:
    (tmp_path / "t.txt").write_text("0\n")
    err = fails(capsys, 2, "ce", "--target", "0", "--target-file", str(tmp_path / "t.txt"), "1", "2")
    assert err.endswith("error: give the targets with --target or with --target-file, not both\n")


@pytest.mark.parametrize(
    "argv",
    [["lse", "--nope", "1"], ["lse", "1", "x"], ["lse"], ["softmax", "1", "--temperature", "0"],
     ["softmax", "1", "--temperature", "x"], ["ce", "1", "2"], ["ce", "--target", "a", "1"],
     ["lse", "1", "--b", "1", "--b-file", "b.npy"], ["lse", "-f", "-", "--b-file", "-"],
     ["lse", "1", "--chunk-size", "0"], ["lse", "1", "--axis", "x"]],
)
def test_usage_mistakes_exit_2_with_the_usage_line(capsys, argv) -> None:
    err = fails(capsys, 2, *argv)
    assert err.startswith("usage: logsumexp")
    assert err.splitlines()[-1].startswith(f"logsumexp {argv[0]}: error: ")


@pytest.mark.parametrize(
    "argv",
    [["lse", "-f", "missing.csv"], ["lse", "1", "2", "--axis", "3"], ["ce", "--target", "5", "1", "2"],
     ["lse", "1", "2", "--b", "1", "2", "3"]],
)
def test_runtime_failures_exit_1_in_one_line(capsys, argv) -> None:
    err = fails(capsys, 1, *argv)
    assert err.startswith("logsumexp: error: ") and err.count("\n") == 1


def test_help_documents_exit_status_and_json(capsys) -> None:
    for command in ("lse", "softmax", "log-softmax", "ce", "info"):
        out = ok(capsys, command, "--help")
        assert "exit status: 0 success; 2 usage mistake" in out
    assert "nonfinite" in ok(capsys, "--help")


# --- and what else a newcomer tries --------------------------------------------------------------
def test_directory_given_as_a_file(capsys, tmp_path) -> None:
    assert f"{tmp_path}: is a directory, not a file" in fails(capsys, 1, "lse", "-f", str(tmp_path))
    assert "is a directory" in fails(capsys, 1, "ce", "--target-file", str(tmp_path), "1", "2")
    assert "is a directory" in fails(capsys, 1, "lse", "1", "--b-file", str(tmp_path))


def test_empty_stdin(capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert "<stdin>: empty input (no data)" in fails(capsys, 1, "softmax", "-f", "-")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n# nothing\n,,\n")))
    assert "<stdin>: no numbers in the input (empty)" in fails(capsys, 1, "lse", "-f", "-")


def test_huge_values_everywhere(capsys) -> None:
    assert ok(capsys, "lse", "1e308", "1e308") == repr(float(lse.logsumexp(np.array([1e308, 1e308])))) + "\n"
    assert ok(capsys, "lse", "1e400") == "inf\n"
    assert ok(capsys, "softmax", "-1e308", "1e308").split() == ["0.0", "1.0"]


def test_a_file_that_is_not_numbers_is_named_by_its_first_line(capsys, tmp_path) -> None:
    # /etc/passwd-like text: the first line is the error, not a "ragged" line further down
    (tmp_path / "p.txt").write_text("root:x:0\nbin:x:1\nsome user:x:2\n")
    assert "p.txt, line 1: not a number: 'root:x:0'" in fails(capsys, 1, "softmax", "-f", str(tmp_path / "p.txt"))


def test_one_hot_integer_targets_are_probabilities(capsys, tmp_path) -> None:
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "t.npy", np.array([[0, 0, 1], [1, 0, 0]]))
    got = float(ok(capsys, "ce", "-f", str(tmp_path / "x.npy"), "--target-file", str(tmp_path / "t.npy")))
    assert got == lse.cross_entropy(X, np.array([[0.0, 0, 1], [1, 0, 0]]))


def test_repeated_axis_is_a_usage_mistake(capsys) -> None:
    assert "an axis is repeated in '0,0'" in fails(capsys, 2, "lse", "1", "--axis", "0,0")


def test_typed_targets_for_a_3d_batch_in_reading_order(capsys, tmp_path) -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    np.save(tmp_path / "x.npy", x)
    t = np.array([[0, 3, 1], [2, -100, 0]])
    got = float(ok(capsys, "ce", "-f", str(tmp_path / "x.npy"), "--target", ",".join(map(str, t.ravel()))))
    assert got == lse.cross_entropy(x, t)
    assert "5 class indices for logits of shape (2, 3, 4): give one per row, 6 in all (shape (2, 3))" in \
        fails(capsys, 2, "ce", "-f", str(tmp_path / "x.npy"), "--target", "0,1,2,3,0")


def test_library_warnings_are_one_line_without_a_path(capsys, monkeypatch) -> None:
    def warns(*args, **kwargs):
        with np.errstate(over="warn"):
            np.exp(np.array([1000.0]))
        return np.array([1.0])

    monkeypatch.setattr(lse, "softmax", warns)
    code, out, err = run(capsys, "softmax", "1")
    assert code == 0 and out == "1.0\n"
    assert err == "logsumexp: warning: RuntimeWarning: overflow encountered in exp\n"


def test_unreadable_file_even_as_root(capsys, tmp_path, monkeypatch) -> None:
    from logsumexp import _io

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", path)

    (tmp_path / "x.csv").write_text("1\n")
    monkeypatch.setattr(_io, "open", denied, raising=False)  # found before the builtin
    err = fails(capsys, 1, "lse", "-f", str(tmp_path / "x.csv"))
    assert err == f"logsumexp: error: {tmp_path / 'x.csv'}: cannot open (Permission denied)\n"


def test_stdin_from_a_terminal_says_how_to_end(capsys, monkeypatch) -> None:
    class Terminal(io.TextIOWrapper):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal(io.BytesIO(b"1000 1000 1000\n")))
    code, out, err = run(capsys, "lse", "-f", "-")
    assert (code, out) == (0, "1001.0986122886682\n")
    assert err == "logsumexp: reading numbers from the terminal; end with Ctrl-D (Ctrl-Z Enter on Windows)\n"


def test_typed_weights_are_checked_before_the_file_is_read(capsys) -> None:
    # stdin is not read (pytest would refuse it): the usage mistake is found first
    assert "not a number: 'x' (--b value 1)" in fails(capsys, 2, "lse", "-f", "-", "--b", "x")


def test_negative_lists_for_every_list_option(capsys, tmp_path) -> None:
    x = np.arange(6.0).reshape(2, 3)
    np.save(tmp_path / "x.npy", x)
    f = str(tmp_path / "x.npy")
    assert float(ok(capsys, "lse", "-f", f, "--axis", "-1,-2")) == lse.logsumexp(x, axis=(-1, -2))
    v, s = lse.logsumexp(x, axis=-2, b=np.array([-1.0, -2.0, 1.0]), return_sign=True)
    out = ok(capsys, "lse", "-f", f, "--axis", "-2", "--b", "-1,-2,1", "--return-sign")
    assert out.split() == [w for pair in zip(map(repr, v.tolist()), map(repr, s.tolist())) for w in pair]
    sm = np.loadtxt(io.StringIO(ok(capsys, "softmax", "-f", f, "--axis", "-1,-2")))
    np.testing.assert_array_equal(sm, lse.softmax(x, axis=(-1, -2)))
