"""issue 20, the command as a new user tries it: gzip input, ``lse 1,2,3``, piped stdin."""

from __future__ import annotations

import gzip
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
from _cli_helpers import ok, run

SRC = str(Path(__file__).resolve().parent.parent / "src")


def _command(*argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "logsumexp", *argv], input=stdin, capture_output=True, env=env, timeout=120,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def test_issue20_gz_text_file_is_read_as_gzip(capsys, tmp_path):
    """A .gz file failed with "NUL bytes: this is binary data"."""
    path = tmp_path / "x.txt.gz"
    path.write_bytes(gzip.compress(b"1000\n1000\n1000\n"))
    assert float(ok(capsys, "lse", "-f", str(path))) == 1000 + math.log(3)
    assert float(ok(capsys, "lse", "-f", str(path), "--b=1,1,-1")) == 1000.0


def test_issue20_gz_npy_file_is_read_as_gzip(capsys, tmp_path):
    path = tmp_path / "x.npy.gz"
    with gzip.open(path, "wb") as f:
        np.save(f, np.array([[0.0, 0.0], [1.0, 1.0]]))
    out = ok(capsys, "softmax", "-f", str(path))
    np.testing.assert_array_equal(np.array(out.split(), dtype=float), [0.5] * 4)


def test_issue20_truncated_gzip_names_the_file(capsys, tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"1 2 3\n" * 1000)[:30])
    code, _, err = run(capsys, "lse", "-f", str(path))
    assert code == 1 and "bad.gz" in err and "gzip" in err


def test_issue20_comma_separated_values_are_accepted_like_b(capsys):
    """`lse 1,2,3` was refused while `--b=1,-1,2` was accepted."""
    want = float(ok(capsys, "lse", "1", "2", "3"))
    assert float(ok(capsys, "lse", "1,2,3")) == want
    assert float(ok(capsys, "lse", "-1,-2,-3")) == float(ok(capsys, "lse", "-1", "-2", "-3"))
    assert float(ok(capsys, "lse", "1,2", "3", "--b=1,-1,2")) == float(ok(capsys, "lse", "1", "2", "3", "--b=1,-1,2"))


def test_issue20_piped_stdin_is_read_without_dash_f():
    got = _command("lse", stdin=b"1000\n1000\n1000\n")
    assert got.returncode == 0, got.stderr
    assert float(got.stdout) == 1000 + math.log(3)
    gz = _command("lse", stdin=gzip.compress(b"0 0\n"))  # a gzip pipe too
    assert gz.returncode == 0 and float(gz.stdout) == math.log(2), gz.stderr


def test_issue20_no_input_and_no_pipe_is_still_a_usage_error():
    got = _command("lse")  # stdin is /dev/null: not a pipe
    assert got.returncode == 2 and b"no input" in got.stderr
