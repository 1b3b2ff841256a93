"""In-process calls of the ``logsumexp`` command for the command's test files."""

from __future__ import annotations

from logsumexp import cli


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``logsumexp ARGV`` run in this process."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys, *argv: str) -> str:
    """The standard output of a command that must succeed."""
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return out
