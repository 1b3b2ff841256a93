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
``--json`` prints one JSON object with the shape, dtype and nested values (non-finite values as
the strings ``"inf"``, ``"-inf"``, ``"nan"``, so that the output is strict JSON).

Errors: bad input prints ``logsumexp: error: ...`` on stderr and exits 1; usage errors exit 2
(argparse); there is never a traceback unless ``LOGSUMEXP_TRACEBACK=1`` is set.

>>> main(["lse", "1000", "1000", "1000"])
1001.0986122886682
0
>>> main(["lse", "-1000", "-1000", "-1000"])
-998.9013877113318
0
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import _io

__all__ = ["main"]

PROG = "logsumexp"
_FILE_OPTIONS = frozenset({"-f", "--file", "--b-file", "--target-file"})
_BACKENDS = ("torch", "triton", "numba", "dask", "jax", "scipy")

_EPILOG = """\
examples:
  logsumexp lse 1000 1000 1000            1000 + log 3 = 1001.0986122886682
  logsumexp lse -1000 -1000 -1000         negative numbers work as arguments
  logsumexp softmax 1 2 3 --temperature 0.5
  logsumexp ce --target 0 1000 1000 1000  cross-entropy log 3
  logsumexp lse -f big.npy                streams a file larger than memory
  seq 1 1000000 | logsumexp lse -f -      text from stdin
  logsumexp demo                          the walk-through
"""


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


def _protect_negatives(argv: Sequence[str]) -> list[str]:
    """Prefix negative numbers with a space so that argparse reads them as values, not options.

    argparse takes ``-1000`` for a value only in simple cases (not ``-1e3`` or ``-inf``); a
    token that does not start with ``-`` is never an option, and ``float``/``int`` ignore the
    space. File names (after ``-f`` and friends) are left alone.
    """
    out: list[str] = []
    for i, tok in enumerate(argv):
        prev = argv[i - 1] if i else ""
        if len(tok) > 1 and tok[0] == "-" and prev not in _FILE_OPTIONS and _is_number(tok):
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


def _add_input(p: argparse.ArgumentParser, *, json_help: str = "print one JSON object") -> None:
    p.add_argument("values", nargs="*", metavar="X", help="the numbers (negative numbers are fine: -1000, -1e3, -inf)")
    p.add_argument("-f", "--file", metavar="FILE", help="read the numbers from FILE (.npy, .csv, text; - for stdin)")
    p.add_argument("--format", choices=_io.FORMATS, default="auto",
                   help="input format (default: auto: .npy magic bytes, else text; CSV if .csv or commas)")
    p.add_argument("--header", action="store_true", help="skip the first line of text/CSV input")
    p.add_argument("--json", action="store_true", help=json_help)


def _build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    from . import __version__

    top = argparse.ArgumentParser(
        prog=PROG,
        description="LogSumExp, softmax, log-softmax and cross-entropy that never overflow.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    top.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    parsers: dict[str, argparse.ArgumentParser] = {}

    def add(name: str, help: str, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description, allow_abbrev=False)
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
        p.add_argument("--temperature", type=_float, default=1.0, metavar="T", help="T > 0: softmax(x / T) (default 1)")

    p = add("ce", "cross-entropy LSE(x) - x[target] of logits along --axis (default: -1)",
            "Cross-entropy of logits (classes along --axis) against class indices or probabilities.")
    _add_input(p)
    p.add_argument("--target", metavar="J", help="class index, or one per row separated by commas: 0 or 0,2,1")
    p.add_argument("--target-file", metavar="FILE",
                   help="targets from FILE: class indices (the logits' shape without the class axis) "
                        "or probabilities (the logits' shape)")
    p.add_argument("--axis", type=int, default=-1, help="the class axis (default: -1)")
    p.add_argument("--reduction", choices=("mean", "sum", "none"), default="mean", help="default: mean")
    p.add_argument("--label-smoothing", type=_float, default=0.0, metavar="EPS", help="in [0, 1] (default 0)")
    p.add_argument("--ignore-index", type=int, default=-100, metavar="J", help="targets to skip (default -100)")

    add("demo", "the walk-through: why log(sum(exp(x))) needs care, and what this library does",
        "A walk-through computed live: overflow and underflow of the naive formula, the stable "
        "LogSumExp, softmax, cross-entropy, the bounds, the smooth maximum, dominant terms.")
    p = add("info", "versions, optional backends, CUDA, compiled CPU path",
            "Versions of logsumexp, Python and NumPy; optional backends; accelerators.")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add("bench", "run benchmarks/cpu.py from the source tree (arguments are passed on)",
        "Runs main(argv) of benchmarks/cpu.py, found next to the source tree (an editable install or a "
        "checkout) or in $LOGSUMEXP_BENCHMARKS.")
    return top, parsers


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------
def _strings(a: np.ndarray) -> list[str]:
    """Each value's shortest round-trip text in its own precision, in C order."""
    flat = a.ravel()
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
    """Nested lists (or a scalar) of floats; non-finite values as "inf", "-inf", "nan"."""
    a = np.asarray(value)

    def conv(s: str) -> Any:
        v = float(s)
        if math.isfinite(v):
            return v
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")

    flat = [conv(s) for s in _strings(a)]
    if a.ndim == 0:
        return flat[0]
    return np.array(flat, dtype=object).reshape(a.shape).tolist()


def _emit(ns: argparse.Namespace, value: Any, sign: Any = None) -> None:
    if ns.json:
        a = np.asarray(value)
        obj: dict[str, Any] = {"command": ns.command, "shape": list(a.shape), "dtype": str(a.dtype),
                               "result": _json_value(a)}
        if sign is not None:
            obj["sign"] = _json_value(sign)
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
    return _io.parse_numbers(ns.values)


def _check_one_input(ns: argparse.Namespace) -> None:
    if ns.file is not None and ns.values:
        raise UsageError(f"give the numbers or -f FILE, not both (got -f {ns.file} and {len(ns.values)} numbers)")
    if ns.file is None and not ns.values:
        raise UsageError("no input: give the numbers (e.g. 1000 1000 1000) or -f FILE (- for stdin)")


def _comma_numbers(tokens: Sequence[str], what: str) -> np.ndarray:
    parts = [p for tok in tokens for p in tok.split(",")]
    return _io.parse_numbers(parts, what)


def _cmd_lse(ns: argparse.Namespace) -> int:
    lse = _lib()
    if ns.b is not None and ns.b_file is not None:
        raise UsageError("give the weights with --b or --b-file, not both")
    weighted = ns.b is not None or ns.b_file is not None
    _check_one_input(ns)
    if ns.file is not None and not weighted and not ns.return_sign:
        progress = False if ns.no_progress else None
        res = _io.stream_logsumexp(ns.file, ns.axis, fmt=ns.format, header=ns.header,
                                   chunk_size=ns.chunk_size, progress=progress)
        _emit(ns, res)
        return 0
    x = _input(ns)
    b = None
    if ns.b is not None:
        b = _comma_numbers(ns.b, "--b value")
    elif ns.b_file is not None:
        b = _io.read_array(ns.b_file)
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


def _targets(ns: argparse.Namespace, x: np.ndarray) -> np.ndarray:
    """Class indices from --target, or indices/probabilities from --target-file."""
    if (ns.target is None) == (ns.target_file is None):
        raise UsageError("give the target class with --target J (or J,K,... per row) or --target-file FILE")
    if ns.target is not None:
        parts = [p.strip() for p in ns.target.split(",")]
        try:
            t = np.array([int(p) for p in parts], dtype=np.int64)
        except ValueError:
            bad = next(p for p in parts if not _is_int(p))
            raise _io.InputError(f"--target: not a class index (an integer): {bad!r}") from None
        return t.reshape(()) if t.size == 1 and x.ndim == 1 else t
    t = _io.read_array(ns.target_file)
    if t.shape == x.shape:  # probabilities
        return t
    if not np.all(np.isfinite(t)) or not np.all(t == np.round(t)):
        raise _io.InputError(
            f"--target-file {ns.target_file}: class indices must be integers (probabilities must have "
            f"the logits' shape {x.shape}, got {t.shape})"
        )
    return t.astype(np.int64)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _cmd_ce(ns: argparse.Namespace) -> int:
    lse = _lib()
    x = _input(ns)
    t = _targets(ns, x)
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
    numba_ok, numba_detail = False, "numba not installed"
    if importlib.util.find_spec("numba") is not None:
        try:
            import numba

            numba_ok, numba_detail = True, f"numba {numba.__version__}"
        except Exception as err:
            numba_detail = f"numba failed to import: {type(err).__name__}: {err}"
    info["cpu_fast_path"] = {
        "enabled": _cpu.enabled(),
        "numba_importable": numba_ok,
        "active": _cpu.enabled() and numba_ok,
        "threads": _cpu.num_threads(),
        "detail": numba_detail,
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
    state = "active" if cpu["active"] else ("disabled" if not cpu["enabled"] else "inactive (pure NumPy fallback)")
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
    if path is None:
        raise _io.InputError(
            "benchmarks/cpu.py not found: the benchmarks are not part of the installed package; run "
            "from a checkout (pip install -e .), or set LOGSUMEXP_BENCHMARKS to the benchmarks folder"
        )
    spec = importlib.util.spec_from_file_location("logsumexp_benchmarks_cpu", path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has a loader
        raise _io.InputError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (and pickling) look the module up by name
    sys.path.insert(0, str(path.parent))  # the benchmarks share a harness module next to them
    try:
        spec.loader.exec_module(module)
        entry = getattr(module, "main", None)
        if not callable(entry):
            raise _io.InputError(f"{path} has no main(argv) function")
        code = entry(argv)
    finally:
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
        return _COMMANDS[ns.command](ns)
    except UsageError as err:
        parser.error(str(err))
        return 2  # pragma: no cover - parser.error exits


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    0 on success, 1 for bad input (a one-line ``logsumexp: error: ...`` on stderr), 2 for usage
    errors. Set ``LOGSUMEXP_TRACEBACK=1`` to get the traceback of an error instead.
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
