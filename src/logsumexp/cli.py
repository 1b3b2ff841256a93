"""The ``logsumexp`` command: a thin shell over the library (no math here).

Commands
--------
``lse``, ``softmax``, ``log-softmax``, ``ce``
    The array functions on numbers given as arguments or read from ``-f FILE`` (``.npy``, CSV,
    whitespace text, ``-`` for stdin). ``lse -f FILE`` streams: it reads the input a chunk at a
    time (memory-mapped for ``.npy``) in bounded memory, with a progress bar on a terminal.
``demo``
    The walk-through of why LogSumExp needs care (``logsumexp._demo``).
``info``
    Versions, optional backends, CUDA, and whether the compiled CPU path is active.
``bench``
    Runs ``benchmarks/cpu.py`` from the source tree.

Output: a scalar prints as its shortest round-trip repr (``1001.0986122886682``); a 1-D result
one value per line; higher dimensions one row (last axis) per line, values separated by spaces.
Negative zero prints as ``0.0``. ``--json`` prints one strict-JSON object: ``command``,
``shape``, ``dtype``, ``result`` (nested lists of numbers, a number for a scalar), ``sign`` with
``--return-sign``, and ``nonfinite``. JSON has no inf or nan, so every value stays a number
where it is finite and is ``null`` where it is not, and ``nonfinite`` says which it was: for each
field, the indices of each kind, e.g. ``{"result": {"-inf": [[1]]}}`` ([] indexes a scalar;
``{}`` when all is finite).

Exit status: 0 on success; 2 for a usage mistake, whether argparse or this module finds it (an
unknown option, a missing or conflicting one, a value that is wrong on its own: ``lse 1 abc``,
``--target x``, ``--temperature 0``); 1 when the command is well formed but running it fails (a
file missing, unreadable or malformed, an axis or target that does not fit the data). Errors are
one line on stderr (usage mistakes after the usage line), never a traceback unless
``LOGSUMEXP_TRACEBACK=1`` is set; a warning raised while computing is one line,
``logsumexp: warning: ...``, without the library's file and line.

>>> main(["lse", "1000", "1000", "1000"])
1001.0986122886682
0
>>> main(["lse", "-1000", "-1000", "-1000"])
-998.9013877113318
0
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import _io

__all__ = ["main"]

PROG = "logsumexp"
_FILE_OPTIONS = frozenset({"-f", "--file", "--b-file", "--target-file"})
_BACKENDS = ("torch", "triton", "dask", "jax", "scipy")

_EPILOG = """\
examples:
  logsumexp lse 1000 1000 1000            1000 + log 3 = 1001.0986122886682
  logsumexp lse -1000 -1000 -1000         negative numbers work as arguments
  logsumexp softmax 1 2 3 --temperature 0.5
  logsumexp ce --target 0 1000 1000 1000  cross-entropy log 3
  logsumexp lse -f big.npy                streams a file larger than memory
  seq 1 1000000 | logsumexp lse -f -      text from stdin
  logsumexp demo                          the walk-through
--json: non-finite values are null in "result", listed by kind in "nonfinite"
"""


_EXIT_STATUS = "exit status: 0 success; 2 usage mistake (bad option or argument); 1 bad input file or failed run"


class UsageError(Exception):
    """A command-line usage problem (exit status 2, with the usage line)."""


# ---------------------------------------------------------------------------------------------
# Argument parsing
# ---------------------------------------------------------------------------------------------
def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _is_number_list(token: str) -> bool:
    """``-1e3`` or ``-100,2``: numbers separated by commas (as ``--target`` and ``--b`` take them)."""
    return all(_is_number(part) for part in token.split(","))


def _protect_negatives(argv: Sequence[str]) -> list[str]:
    """Prefix negative numbers with a space so that argparse reads them as values, not options.

    argparse takes ``-1000`` for a value only in simple cases (not ``-1e3``, ``-inf`` or the
    list ``-100,2``); a token that does not start with ``-`` is never an option, and
    ``float``/``int`` ignore the space. File names (after ``-f`` and friends) are left alone.
    """
    out: list[str] = []
    for i, tok in enumerate(argv):
        prev = argv[i - 1] if i else ""
        if len(tok) > 1 and tok[0] == "-" and prev not in _FILE_OPTIONS and _is_number_list(tok):
            tok = " " + tok
        out.append(tok)
    return out


def _axis(text: str) -> int | tuple[int, ...] | None:
    """``--axis``: an int, comma-separated ints, or ``all``/``none`` (every axis)."""
    t = text.strip().lower()
    if t in ("all", "none"):
        return None
    try:
        parts = [int(p) for p in t.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, ints separated by commas, or 'all', got {text.strip()!r}") from None
    if len(set(parts)) != len(parts):
        raise argparse.ArgumentTypeError(f"an axis is repeated in {text.strip()!r}")
    return parts[0] if len(parts) == 1 and "," not in t else tuple(parts)


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text.strip()!r}")
    return n


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text.strip()!r}") from None


def _temperature(text: str) -> float:
    t = _float(text)
    if not (math.isfinite(t) and t > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text.strip()!r}")
    return t


def _probability(text: str) -> float:
    p = _float(text)
    if not 0 <= p <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text.strip()!r}")
    return p


_INT64 = (-(2**63), 2**63 - 1)


def _int64(text: str) -> int:
    """An integer that fits the int64 of class indices (larger ones can never match a target)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text.strip()!r}") from None
    if not _INT64[0] <= n <= _INT64[1]:
        raise argparse.ArgumentTypeError(f"expected an integer within int64 (|J| < 2**63), got {text.strip()}")
    return n


_JSON_HELP = ('print one JSON object; JSON has no inf/nan: those values are null and listed by kind under '
              '"nonfinite", e.g. {"result": {"-inf": [[1]]}}')


def _add_input(p: argparse.ArgumentParser, *, json_help: str = _JSON_HELP) -> None:
    p.add_argument("values", nargs="*", metavar="X", help="the numbers (negative numbers are fine: -1000, -1e3, -inf)")
    p.add_argument("-f", "--file", metavar="FILE", help="read the numbers from FILE (.npy, .csv, text; - for stdin)")
    p.add_argument("--format", choices=_io.FORMATS, default="auto",
                   help="input format (default: auto: .npy magic bytes, else text, split on ';' or ',' "
                        "if the first line has one, else on whitespace)")
    p.add_argument("--header", action="store_true", help="skip the first line of text/CSV input")
    p.add_argument("--json", action="store_true", help=json_help)


def _build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    from . import __version__

    top = argparse.ArgumentParser(
        prog=PROG,
        description="LogSumExp, softmax, log-softmax and cross-entropy that never overflow.",
        epilog=_EPILOG + "\n" + _EXIT_STATUS + "\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    top.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    parsers: dict[str, argparse.ArgumentParser] = {}

    def add(name: str, help: str, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description, allow_abbrev=False, epilog=_EXIT_STATUS)
        parsers[name] = p
        return p

    p = add("lse", "LogSumExp: log(sum(b * exp(x))) over --axis (default: all)",
            "LogSumExp log(sum(b * exp(x))) without overflow. With -f FILE (and no weights) the input "
            "is streamed in chunks: a .npy larger than memory is memory-mapped a chunk at a time.")
    _add_input(p)
    p.add_argument("--axis", type=_axis, default=None, help="axis or axes to reduce, e.g. 0 or 0,1 (default: all)")
    p.add_argument("--b", nargs="+", metavar="B",
                   help="weights, broadcast against the input; put them after the numbers, or write --b=1,-1,2")
    p.add_argument("--b-file", metavar="FILE", help="read the weights from FILE")
    p.add_argument("--return-sign", action="store_true",
                   help="also print the sign of the sum (weights may be negative): 'value sign' per line")
    p.add_argument("--chunk-size", type=_positive_int, default=None, metavar="N",
                   help=f"values per chunk when streaming -f FILE (default {_io.DEFAULT_CHUNK} for .npy, "
                        f"{_io.DEFAULT_TEXT_CHUNK} for text)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it is drawn only on a terminal)")

    for name, what in (("softmax", "softmax: exp(x - LSE(x)), sums to 1"),
                       ("log-softmax", "log-softmax: x - LSE(x)")):
        p = add(name, f"{what} along --axis (default: -1)", f"The {what}, along --axis, with --temperature T.")
        _add_input(p)
        p.add_argument("--axis", type=_axis, default=-1, help="axis or axes (default: -1, the last)")
        p.add_argument("--temperature", type=_temperature, default=1.0, metavar="T", help="T > 0: softmax(x / T) (default 1)")

    p = add("ce", "cross-entropy LSE(x) - x[target] of logits along --axis (default: -1)",
            "Cross-entropy of logits (classes along --axis) against class indices or probabilities.")
    _add_input(p)
    p.add_argument("--target", metavar="J",
                   help="class index, or one per row separated by commas: 0 or 0,2,1 (-100,2 skips row 1)")
    p.add_argument("--target-file", metavar="FILE",
                   help="targets from FILE: class indices, one per row (a column or a row of numbers), "
                        "or probabilities (the logits' shape)")
    p.add_argument("--axis", type=int, default=-1, help="the class axis (default: -1)")
    p.add_argument("--reduction", choices=("mean", "sum", "none"), default="mean", help="default: mean")
    p.add_argument("--label-smoothing", type=_probability, default=0.0, metavar="EPS", help="in [0, 1] (default 0)")
    p.add_argument("--ignore-index", type=_int64, default=-100, metavar="J", help="targets to skip (default -100)")

    add("demo", "the walk-through: why log(sum(exp(x))) needs care, and what this library does",
        "A walk-through computed live: overflow and underflow of the naive formula, the stable "
        "LogSumExp, softmax, cross-entropy, the bounds, the smooth maximum, dominant terms.")
    p = add("info", "versions, optional backends, CUDA, compiled CPU path",
            "Versions of logsumexp, Python and NumPy; optional backends; accelerators.")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = add("bench", "the CPU benchmark: benchmarks/cpu.py from a checkout, else the one the package carries",
            "Runs main(argv) of benchmarks/cpu.py, found next to the source tree (an editable install or a "
            "checkout) or in $LOGSUMEXP_BENCHMARKS (arguments are passed on). An installed package runs the "
            "benchmark it carries instead: logsumexp against NumPy's shifted formula and SciPy, medians of "
            "interleaved rounds, as a multiple of one read of the input.")
    p.add_argument("--quick", action="store_true", help="small sizes (seconds instead of minutes)")
    return top, parsers


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------
def _strings(a: np.ndarray) -> list[str]:
    """Each value's shortest round-trip text in its own precision, in C order.

    Negative zero is written as ``0.0``: ``log_softmax([inf, 1])`` is 0 where the +inf is, and
    a ``-0.0`` there would only puzzle the reader (adding +0.0 turns -0.0 into +0.0 and leaves
    every other value as it is).
    """
    flat = a.ravel()
    if flat.dtype.kind == "f":
        flat = flat + flat.dtype.type(0)
    if flat.dtype == np.float64:
        return [repr(v) for v in flat.tolist()]
    return [str(v) for v in flat]


def _text_lines(value: Any, sign: Any = None) -> list[str]:
    a = np.asarray(value)
    vals = _strings(a)
    if sign is not None:
        return [f"{v} {s}" for v, s in zip(vals, _strings(np.asarray(sign)))]
    if a.ndim <= 1:
        return vals
    width = a.shape[-1]
    if width == 0:
        return []
    return [" ".join(vals[i:i + width]) for i in range(0, len(vals), width)]


def _json_value(value: Any) -> Any:
    """Nested lists (or a scalar) of numbers, with ``null`` where a value is not finite."""
    a = np.asarray(value)
    flat = [v if math.isfinite(v) else None for v in map(float, _strings(a))]
    if a.ndim == 0:
        return flat[0]
    return np.array(flat, dtype=object).reshape(a.shape).tolist()


def _nonfinite(value: Any) -> dict[str, list[list[int]]]:
    """Where ``value`` is ``inf``, ``-inf`` or ``nan``: lists of indices ([] for a scalar)."""
    a = np.asarray(value, dtype=np.float64)
    kinds = {"inf": np.isposinf(a), "-inf": np.isneginf(a), "nan": np.isnan(a)}
    return {k: np.argwhere(mask).tolist() for k, mask in kinds.items() if mask.any()}


def _emit(ns: argparse.Namespace, value: Any, sign: Any = None) -> None:
    if ns.json:
        # JSON has no inf or nan: every value stays a number, null stands where it is not
        # finite, and "nonfinite" says which it was (one convention for every command).
        a = np.asarray(value)
        obj: dict[str, Any] = {"command": ns.command, "shape": list(a.shape), "dtype": str(a.dtype),
                               "result": _json_value(a)}
        nonfinite = {"result": _nonfinite(a)}
        if sign is not None:
            obj["sign"] = _json_value(sign)
            nonfinite["sign"] = _nonfinite(sign)
        obj["nonfinite"] = {k: v for k, v in nonfinite.items() if v}
        _write(json.dumps(obj, allow_nan=False))
    else:
        _write("\n".join(_text_lines(value, sign)))


def _write(text: str) -> None:
    sys.stdout.write(text + "\n" if text else "")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
def _lib() -> Any:
    import logsumexp

    return logsumexp


def _input(ns: argparse.Namespace) -> np.ndarray:
    """The numbers of the command: the arguments or ``-f FILE`` (read whole)."""
    _check_one_input(ns)
    if ns.file is not None:
        return _io.read_array(ns.file, ns.format, header=ns.header)
    return _comma_numbers(ns.values, "value")  # `lse 1,2,3` as `--b=1,-1,2` is read


def _check_one_input(ns: argparse.Namespace) -> None:
    if ns.file is not None and ns.values:
        raise UsageError(f"give the numbers or -f FILE, not both (got -f {ns.file} and {len(ns.values)} numbers)")
    if ns.file is None and not ns.values:
        others = (getattr(ns, "b_file", None), getattr(ns, "target_file", None))
        if "-" not in others and _io.stdin_is_piped():
            ns.file = "-"  # `seq 1 10 | logsumexp lse`: the pipe is the input, as -f - says
        else:
            raise UsageError("no input: give the numbers (e.g. 1000 1000 1000), -f FILE (- for stdin), or pipe them in")
    stdin_users = [opt for opt, attr in (("-f", "file"), ("--b-file", "b_file"), ("--target-file", "target_file"))
                   if getattr(ns, attr, None) == "-"]
    if len(stdin_users) > 1:
        raise UsageError(f"stdin (-) can feed only one input, got it for {' and '.join(stdin_users)}")


def _argument_numbers(tokens: Sequence[str], what: str) -> np.ndarray:
    """Numbers typed on the command line; one that is not a number is a usage mistake."""
    try:
        return _io.parse_numbers(tokens, what)
    except _io.InputError as err:
        raise UsageError(str(err)) from None


def _comma_numbers(tokens: Sequence[str], what: str) -> np.ndarray:
    parts = [p for tok in tokens for p in tok.split(",")]
    return _argument_numbers(parts, what)


def _cmd_lse(ns: argparse.Namespace) -> int:
    lse = _lib()
    if ns.b is not None and ns.b_file is not None:
        raise UsageError("give the weights with --b or --b-file, not both")
    weighted = ns.b is not None or ns.b_file is not None
    _check_one_input(ns)
    typed_b = None if ns.b is None else _comma_numbers(ns.b, "--b value")  # usage mistakes first
    if ns.file is not None and not weighted and not ns.return_sign:
        progress = False if ns.no_progress else None
        res = _io.stream_logsumexp(ns.file, ns.axis, fmt=ns.format, header=ns.header,
                                   chunk_size=ns.chunk_size, progress=progress)
        _emit(ns, res)
        return 0
    x = _input(ns)
    b = typed_b if ns.b_file is None else _io.read_array(ns.b_file)
    res = lse.logsumexp(x, axis=ns.axis, b=b, return_sign=ns.return_sign)
    if ns.return_sign:
        _emit(ns, res[0], res[1])
    else:
        _emit(ns, res)
    return 0


def _cmd_softmax(ns: argparse.Namespace) -> int:
    lse = _lib()
    fn = lse.softmax if ns.command == "softmax" else lse.log_softmax
    _emit(ns, fn(_input(ns), axis=ns.axis, temperature=ns.temperature))
    return 0


def _check_target_options(ns: argparse.Namespace) -> None:
    if ns.target is not None and ns.target_file is not None:
        raise UsageError("give the targets with --target or with --target-file, not both")
    if ns.target is None and ns.target_file is None:
        raise UsageError("no target: give the class with --target J (or J,K,... one per row) or --target-file FILE")


def _targets(ns: argparse.Namespace, x: np.ndarray, typed: np.ndarray | None) -> np.ndarray:
    """Class indices from --target (``typed``, already parsed), or indices/probabilities from
    --target-file, shaped for the logits ``x``."""
    classes = _class_axis(x, ns.axis)
    if typed is not None:
        t = _class_indices(typed, "--target", classes, ns.ignore_index)
        return t if classes is None else _fit(t, classes[0], "--target", ("class index", "class indices"), x.shape)
    t = _io.read_array(ns.target_file)
    what = f"--target-file {ns.target_file}"
    if classes is None:  # the library words the error about the axis
        return t
    if t.shape == x.shape:  # probabilities; an integer file of that shape is one-hot
        return t if t.dtype.kind == "f" else t.astype(np.float64)
    index_shape = classes[0]
    if _same_values(t.shape, x.shape) and not _same_values(t.shape, index_shape):
        return t.reshape(x.shape)  # probabilities, written with another layout of unit axes
    if _same_values(t.shape, index_shape):
        return _class_indices(t, what, classes, ns.ignore_index).reshape(index_shape)
    raise _io.InputError(
        f"{what}: targets of shape {t.shape} do not fit logits of shape {x.shape}: class indices "
        f"need the shape {index_shape} (the logits' without the class axis {ns.axis}), "
        f"probabilities the logits' shape {x.shape}"
    )


def _class_axis(x: np.ndarray, axis: int) -> tuple[tuple[int, ...], int] | None:
    """(the shape of one class index per row, the number of classes); None for a bad axis."""
    if not -x.ndim <= axis < x.ndim:
        return None  # the library words the error about the axis
    axis %= x.ndim
    return x.shape[:axis] + x.shape[axis + 1:], x.shape[axis]


def _same_values(shape: tuple[int, ...], want: tuple[int, ...]) -> bool:
    """The shapes hold the same values in the same order: equal once their 1s are dropped.

    One target for one row reads as shape (1,) from a file where the logits want (); a column
    and a row of targets are the same list.
    """
    return [s for s in shape if s != 1] == [s for s in want if s != 1]


def _fit(t: np.ndarray, shape: tuple[int, ...], what: str, kind: tuple[str, str], x_shape: tuple[int, ...]) -> np.ndarray:
    """A typed list has no shape of its own: one per row, in the rows' reading (C) order."""
    if t.size == math.prod(shape):
        return t.reshape(shape)
    raise UsageError(
        f"{what}: {t.size} {kind[0] if t.size == 1 else kind[1]} for logits of shape {x_shape}: give one per row, "
        f"{math.prod(shape)} in all (shape {shape})"
    )


def _target_integers(text: str) -> np.ndarray:
    """``--target``'s comma-separated integers, exactly (Python ints, however large)."""
    values = []
    for i, part in enumerate(text.split(",")):
        try:
            values.append(int(part))
        except ValueError:
            raise UsageError(f"--target: not a class index (an integer): {part.strip()!r} (value {i + 1})") from None
    return np.array(values, dtype=object)


def _class_indices(t: np.ndarray, what: str, classes: tuple[tuple[int, ...], int] | None,
                   ignore_index: int) -> np.ndarray:
    """``t`` as int64 class indices, refusing what int64 would not hold exactly.

    A value that is not an integer (``2.5``, ``nan``) or lies outside int64 (``1e300``) is named
    with its position here; the library checks the range of the others. Nothing is converted
    before it is checked, so no value wraps around and no NumPy warning is raised.
    """
    if t.dtype.kind in "iub" and t.dtype != np.uint64:
        return t.astype(np.int64)
    if t.dtype.kind == "f":
        with np.errstate(invalid="ignore"):  # nan and inf are refused below, not warned about
            integral = np.isfinite(t) & (t == np.floor(t))
            fits = integral & (t >= -(2.0**63)) & (t < 2.0**63)
    else:  # Python ints of --target (any size), uint64
        values = t.astype(object)
        integral = np.ones(t.shape, dtype=bool)
        fits = np.vectorize(lambda v: _INT64[0] <= int(v) <= _INT64[1], otypes=[bool])(values)
    if not fits.all():
        flat = int(np.argmin(fits.ravel()))  # the first bad one in reading order
        pos = tuple(int(i) for i in np.unravel_index(flat, t.shape))
        v = t[pos]
        shown = repr(float(v)) if isinstance(v, (float, np.floating)) else str(int(v))
        if not integral[pos]:
            raise _io.InputError(f"{what}: value {shown} at position {pos} is not a class index (an integer)")
        n = "?" if classes is None else classes[1]
        raise IndexError(
            f"{what}: value {shown} at position {pos} is out of range: class indices must be "
            f"in [0, {n}) or equal to --ignore-index {ignore_index}"
        )
    return t.astype(np.int64)


def _cmd_ce(ns: argparse.Namespace) -> int:
    lse = _lib()
    _check_target_options(ns)
    _check_one_input(ns)
    typed = None if ns.target is None else _target_integers(ns.target)  # usage mistakes first
    x = _input(ns)
    t = _targets(ns, x, typed)
    res = lse.cross_entropy(x, t, axis=ns.axis, reduction=ns.reduction,
                            label_smoothing=ns.label_smoothing, ignore_index=ns.ignore_index)
    _emit(ns, res)
    return 0


def _cmd_demo(ns: argparse.Namespace) -> int:
    from ._demo import render

    _write(render())
    return 0


def _version_of(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def collect_info() -> dict[str, Any]:
    """What ``logsumexp info`` reports, as a dict (torch is imported only here, if installed)."""
    lse = _lib()
    from . import _cpu

    info: dict[str, Any] = {
        "logsumexp": lse.__version__,
        "location": str(Path(lse.__file__).resolve().parent),
        "python": f"{platform.python_version()} ({platform.python_implementation()}, {platform.system()} {platform.machine()})",
        "numpy": np.__version__,
        "array-api-compat": _version_of("array-api-compat"),
        "backends": {name: _version_of(name) for name in _BACKENDS},
    }
    cuda: dict[str, Any] = {"available": False, "detail": "torch not installed"}
    if info["backends"]["torch"] is not None:
        try:
            import torch

            if torch.cuda.is_available():
                n = torch.cuda.device_count()
                names = sorted({torch.cuda.get_device_name(i) for i in range(n)})
                cuda = {"available": True, "detail": f"{n} device{'s' * (n != 1)}: {', '.join(names)}"
                        f" (CUDA {torch.version.cuda})"}
            else:
                cuda = {"available": False, "detail": f"not available to torch {torch.__version__}"}
        except Exception as err:  # a broken torch install must not break `info`
            cuda = {"available": False, "detail": f"torch failed to import: {type(err).__name__}: {err}"}
    info["cuda"] = cuda
    cpu = _cpu.info()
    info["cpu_fast_path"] = {
        "enabled": cpu["enabled"],
        "active": cpu["enabled"] and cpu["compiled"],
        "target": cpu["target"],
        "supported_targets": list(cpu["supported_targets"]),
        "threads": cpu["threads"],
        "detail": cpu["detail"],
    }
    return info


def _cmd_info(ns: argparse.Namespace) -> int:
    info = collect_info()
    if ns.json:
        _write(json.dumps(info, indent=2))
        return 0
    missing = "not installed"
    rows = [
        ("logsumexp", f"{info['logsumexp']}  ({info['location']})"),
        ("Python", info["python"]),
        ("NumPy", info["numpy"]),
        ("array-api-compat", info["array-api-compat"] or missing),
    ]
    lines = [f"{k:<18}{v}" for k, v in rows]
    lines += ["", "optional backends"]
    lines += [f"  {k:<16}{v or missing}" for k, v in info["backends"].items()]
    cuda, cpu = info["cuda"], info["cpu_fast_path"]
    lines += ["", "accelerators"]
    lines.append(f"  {'CUDA':<16}{'yes' if cuda['available'] else 'no'}: {cuda['detail']}")
    state = "active" if cpu["active"] else ("disabled" if not cpu["enabled"] else "not built (generic array core)")
    lines.append(f"  {'compiled CPU':<16}{state}: {cpu['detail']}, {cpu['threads']} thread{'s' * (cpu['threads'] != 1)}")
    _write("\n".join(lines))
    return 0


def find_benchmark(name: str = "cpu.py") -> Path | None:
    """``benchmarks/<name>`` of the source tree: ``$LOGSUMEXP_BENCHMARKS``, then the checkout
    this package was imported from (``src/logsumexp/../../benchmarks``), then the current directory."""
    candidates = []
    env = os.environ.get("LOGSUMEXP_BENCHMARKS")
    if env:
        candidates.append(Path(env) / name)
    candidates.append(Path(__file__).resolve().parents[2] / "benchmarks" / name)
    candidates.append(Path.cwd() / "benchmarks" / name)
    return next((c for c in candidates if c.is_file()), None)


def _cmd_bench(argv: list[str]) -> int:
    path = find_benchmark("cpu.py")
    if path is None:  # an installed package: the benchmark it carries (NumPy and SciPy as peers)
        from . import _bench

        extra = [a for a in argv if a not in ("--quick",)]
        if extra:
            raise _io.InputError(
                f"{PROG} bench away from a checkout takes only --quick (got {' '.join(extra)}); the full "
                "benchmark is benchmarks/cpu.py of the repository (or set LOGSUMEXP_BENCHMARKS)"
            )
        return _bench.run(quick="--quick" in argv, write=_write)
    spec = importlib.util.spec_from_file_location("logsumexp_benchmarks_cpu", path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has a loader
        raise _io.InputError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (and pickling) look the module up by name
    sys.path.insert(0, str(path.parent))  # the benchmarks share a harness module next to them
    # argparse names a program after sys.argv[0]: the benchmark's usage line must read
    # "logsumexp bench", the command the user typed.
    saved_argv0, sys.argv[0:1] = sys.argv[0:1], [f"{PROG} bench"]
    try:
        spec.loader.exec_module(module)
        entry = getattr(module, "main", None)
        if not callable(entry):
            raise _io.InputError(f"{path} has no main(argv) function")
        code = entry(argv)
    finally:
        sys.argv[0:1] = saved_argv0
        try:
            sys.path.remove(str(path.parent))
        except ValueError:  # pragma: no cover
            pass
    return int(code or 0)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "lse": _cmd_lse,
    "softmax": _cmd_softmax,
    "log-softmax": _cmd_softmax,
    "ce": _cmd_ce,
    "demo": _cmd_demo,
    "info": _cmd_info,
}


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------
def _error(message: str) -> None:
    one_line = "; ".join(part.strip() for part in str(message).splitlines() if part.strip())
    print(f"{PROG}: error: {one_line}", file=sys.stderr)


def _message(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    if isinstance(err, MemoryError):
        return f"out of memory ({err}); lse -f FILE streams files of any size"
    text = str(err)
    if isinstance(err, KeyError) or not text:
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text


def _run(argv: list[str]) -> int:
    if argv and argv[0] == "bench":
        if argv[1:2] in (["-h"], ["--help"]) and find_benchmark("cpu.py") is None:
            _build_parsers()[1]["bench"].print_help()
            return 0
        return _cmd_bench(argv[1:])
    top, parsers = _build_parsers()
    if not argv:
        top.print_usage(sys.stderr)
        _error("a command is required: " + ", ".join(parsers))
        return 2
    if argv[0] not in parsers:
        top.parse_args(argv)  # --help, --version, or argparse's own error for an unknown command
        return 2  # pragma: no cover - parse_args exits
    parser = parsers[argv[0]]
    ns = parser.parse_intermixed_args(_protect_negatives(argv[1:]))
    ns.command = argv[0]
    try:
        with _warnings_as_one_line():
            return _COMMANDS[ns.command](ns)
    except UsageError as err:
        parser.error(str(err))
        return 2  # pragma: no cover - parser.error exits


@contextlib.contextmanager
def _warnings_as_one_line() -> Iterator[None]:
    """Python warnings raised while a command runs, each shown once as ``logsumexp: warning: ...``.

    Python's own format names the library file and line that raised it, which tells a user of the
    command nothing; the message is what matters.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen: set[str] = set()
            for w in caught:
                text = f"{w.category.__name__}: {w.message}"
                if text not in seen:
                    seen.add(text)
                    print(f"{PROG}: warning: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    0 on success; 2 for a usage mistake (argparse's code, also for the mistakes found here, such
    as a positional value that is not a number); 1 when a well-formed command fails on its input
    (a one-line ``logsumexp: error: ...`` on stderr); 130 when interrupted. Set
    ``LOGSUMEXP_TRACEBACK=1`` to get the traceback of an error instead.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("LOGSUMEXP_TRACEBACK", "") not in ("", "0")
    try:
        return _run(args)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        code = exc.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, and keep Python from complaining
        # about flushing stdout at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1
    except Exception as err:
        if debug:
            raise
        expected = (ValueError, TypeError, IndexError, OverflowError, OSError, MemoryError)
        _error(_message(err) if isinstance(err, expected) else f"internal error: {_message(err)} "
               "(set LOGSUMEXP_TRACEBACK=1 for the traceback, and please report it)")
        return 1
