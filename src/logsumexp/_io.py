"""Readers for the ``logsumexp`` command, and the streaming LogSumExp of a file.

Inputs are numbers from the command line, ``.npy`` files, CSV and whitespace-separated text,
each from a file or from stdin (``-``). Text is a table: one row per non-empty line (``#`` starts
a comment); a file whose first line holds one number is a 1-D column of numbers, otherwise it is
2-D (rows × columns). The format is sniffed: the ``.npy`` magic bytes, else text, comma-separated
when the name ends in ``.csv`` or the first data line has a comma.

Streaming (:func:`stream_logsumexp`) never holds more than one chunk: a ``.npy`` file is
memory-mapped one chunk at a time (each map is released before the next, so the resident memory
stays at one chunk however large the file), a ``.npy`` stream is read into one reused buffer, and
text is parsed a chunk of lines at a time. Each chunk's (max, lead, tail) state (the library's
fast path, accumulated in float64) is merged into a :class:`logsumexp.LSEState`; the merge is
exact up to rounding and keeps the dominant-term accuracy, so the result agrees with the
in-memory one to an ulp or two, and equals it when the input fits in one chunk.

>>> parse_numbers(["1000", "-1e3", "inf"])
array([ 1000., -1000.,    inf])
>>> parse_numbers(["1", "x"])
Traceback (most recent call last):
...
logsumexp._io.InputError: not a number: 'x' (value 2)
"""

from __future__ import annotations

import bisect
import io
import math
import os
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any

import numpy as np

import logsumexp as lse

from ._progress import ProgressBar

__all__ = [
    "DEFAULT_CHUNK",
    "DEFAULT_TEXT_CHUNK",
    "FORMATS",
    "InputError",
    "open_source",
    "parse_numbers",
    "read_array",
    "stream_logsumexp",
]

#: Values per chunk when streaming a ``.npy`` input: 8 Mi values = 64 MiB of float64. Measured
#: (benchmarks/stream.py, 1.6 GB file, quiet 2-core machine): 1.03× the in-memory fast path with a
#: 270 MiB peak, where 4 Mi values gave 1.37× and 238 MiB (the kernels split a larger chunk over
#: both cores); ~200 MiB of the peak is Python, NumPy and the loaded Numba kernels.
DEFAULT_CHUNK = 1 << 23
#: Values per chunk when streaming text: parsed numbers cost ~60 bytes each as Python strings
#: before conversion, so text chunks are smaller (256 Ki values, ~16 MiB of objects).
DEFAULT_TEXT_CHUNK = 1 << 18
FORMATS = ("auto", "npy", "csv", "text")
_NPY_MAGIC = b"\x93NUMPY"


class InputError(ValueError):
    """A problem with the user's input; the message names the source and, for text, the line."""


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------
def parse_numbers(tokens: Sequence[str], what: str = "value") -> np.ndarray:
    """``tokens`` as a float64 array, with Python's ``float`` syntax (``inf``, ``nan``, ``1e3``).

    A token that is not a number raises :class:`InputError` naming it and its position
    (``what`` and a 1-based index).
    """
    try:
        return np.fromiter(map(float, tokens), dtype=np.float64, count=len(tokens))
    except ValueError:
        i = _first_bad(tokens)
        raise InputError(f"not a number: {tokens[i].strip()!r} ({what} {i + 1})") from None


def _first_bad(tokens: Sequence[str]) -> int:
    for i, t in enumerate(tokens):
        try:
            float(t)
        except ValueError:
            return i
    raise AssertionError("no bad token")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# Sources: a .npy file, a .npy stream, text
# ---------------------------------------------------------------------------------------------
class _Prefixed(io.RawIOBase):
    """A binary stream that first returns ``prefix`` (bytes already sniffed), then ``raw``."""

    def __init__(self, prefix: bytes, raw: IO[bytes]) -> None:
        self._prefix = prefix
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        mv = memoryview(b).cast("B")
        if self._prefix:
            n = min(len(mv), len(self._prefix))
            mv[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        return self._raw.readinto(mv)  # type: ignore[attr-defined]


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    """Up to ``n`` bytes (fewer only at end of stream)."""
    parts, got = [], 0
    while got < n:
        part = stream.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _readinto_exact(stream: IO[bytes], buf: np.ndarray) -> int:
    """Fill ``buf`` from ``stream`` (pipes return short reads); the number of bytes read."""
    mv = memoryview(buf).cast("B")
    got = 0
    while got < len(mv):
        n = stream.readinto(mv[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


class _Source:
    """A numeric input read in chunks. Subclasses: ``_NpyFile``, ``_NpyStream``, ``_Text``.

    The data are seen in their *memory layout*: ``mem_shape`` in C order (a Fortran-ordered
    ``.npy`` is the C-ordered transpose; ``fortran`` says so), so that chunks along the first
    axis of the layout are contiguous runs of the input.
    """

    name: str
    dtype: np.dtype
    fortran: bool = False
    nbytes: int | None = None  # the amount of input for the progress bar (None: unknown)

    @property
    def ndim(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def flat_chunks(self, n: int) -> Iterator[tuple[np.ndarray, int]]:
        """1-D chunks of at most ``n`` values in layout order, with the input bytes each used."""
        raise NotImplementedError  # pragma: no cover

    def row_chunks(self, n: int) -> Iterator[tuple[np.ndarray, int]]:
        """Blocks of whole rows (first axis of the layout), ~``n`` values each (at least a row)."""
        raise NotImplementedError  # pragma: no cover

    def load(self) -> np.ndarray:
        """The whole input as an array in its logical shape (not streamed)."""
        raise NotImplementedError  # pragma: no cover

    def close(self) -> None:
        """Release the file (stdin is left open)."""

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _NpyBase(_Source):
    """Shared by the ``.npy`` file and stream readers: header, layout, chunk planning."""

    def _set_header(self, header: tuple[tuple[int, ...], bool, np.dtype]) -> None:
        shape, fortran, dtype = header
        if dtype.hasobject:
            raise InputError(f"{self.name}: arrays of Python objects are not supported")
        if dtype.fields is not None or dtype.subdtype is not None:
            raise InputError(f"{self.name}: structured dtype {dtype} is not supported (need numbers)")
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        self.fortran = bool(fortran) and len(self.shape) > 1
        self.mem_shape = self.shape[::-1] if self.fortran else self.shape
        self.size = math.prod(self.shape)
        self.nbytes = self.size * dtype.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _rows_per_chunk(self, n: int) -> tuple[int, int]:
        row = math.prod(self.mem_shape[1:])
        return max(1, n // max(row, 1)), row


def _parse_header(stream: IO[bytes], name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            return fmt.read_array_header_1_0(stream)
        if version == (2, 0):
            return fmt.read_array_header_2_0(stream)
    except (ValueError, EOFError) as err:
        raise InputError(f"{name}: not a valid .npy file ({err})") from None
    # 3.0 only differs for structured dtypes with non-Latin-1 field names, which are refused anyway
    raise InputError(f"{name}: .npy format version {version[0]}.{version[1]} is not supported")


class _NpyFile(_NpyBase):
    """A ``.npy`` file, memory-mapped one chunk at a time (each map is dropped after use)."""

    def __init__(self, path: str) -> None:
        self.name = path
        self.path = path
        with open(path, "rb") as f:
            self._set_header(_parse_header(f, path))
            self.offset = f.tell()
        have = os.path.getsize(path) - self.offset
        if have < self.nbytes:
            raise InputError(
                f"{path}: truncated .npy file: the header says {self.shape} {self.dtype} "
                f"({self.nbytes} bytes of data), the file has {have}"
            )

    def _map(self, start: int, shape: tuple[int, ...]) -> np.ndarray:
        """Values [start, start + prod(shape)) of the layout, mapped (not read) as an ndarray."""
        m = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset + start * self.dtype.itemsize, shape=shape)
        # A plain ndarray view, so that the compiled fast path accepts it; the map is released
        # when the view is dropped, which keeps the resident memory at one chunk.
        return np.asarray(m)

    def flat_chunks(self, n: int) -> Iterator[tuple[np.ndarray, int]]:
        for start in range(0, self.size, n):
            k = min(n, self.size - start)
            yield self._map(start, (k,)), k * self.dtype.itemsize

    def row_chunks(self, n: int) -> Iterator[tuple[np.ndarray, int]]:
        rows, row = self._rows_per_chunk(n)
        total = self.mem_shape[0]
        for r in range(0, total, rows):
            k = min(rows, total - r)
            yield self._map(r * row, (k, *self.mem_shape[1:])), k * row * self.dtype.itemsize

    def load(self) -> np.ndarray:
        try:
            return np.load(self.path, allow_pickle=False)
        except ValueError as err:  # pragma: no cover - the header was checked already
            raise InputError(f"{self.path}: {err}") from None


class _NpyStream(_NpyBase):
    """A ``.npy`` array arriving on a pipe: read in order into one reused buffer."""

    def __init__(self, stream: IO[bytes], name: str) -> None:
        self.name = name
        self.stream = stream
        self._set_header(_parse_header(stream, name))
        self._used = False

    def _take(self) -> None:
        if self._used:
            raise RuntimeError("a stream can only be read once")  # pragma: no cover
        self._used = True

    def _fill(self, buf: np.ndarray, done: int) -> None:
        got = _readinto_exact(self.stream, buf)
        if got < buf.nbytes:
            raise InputError(
                f"{self.name}: truncated .npy data: expected {self.nbytes} bytes, got "
                f"{done * self.dtype.itemsize + got}"
            )

    def flat_chunks(self, n: int) -> Iterator[tuple[np.ndarray, int]]:
        self._take()
        buf = np.empty(min(n, self.size), dtype=self.dtype)
        for start in range(0, self.size, n):
            k = min(n, self.size - start)
            self._fill(buf[:k], start)
            yield buf[:k], k * self.dtype.itemsize

    def row_chunks(self, n: int) -> Iterator[tuple[np.ndarray, int]]:
        self._take()
        rows, row = self._rows_per_chunk(n)
        total = self.mem_shape[0]
        buf = np.empty((min(rows, total), *self.mem_shape[1:]), dtype=self.dtype)
        for r in range(0, total, rows):
            k = min(rows, total - r)
            self._fill(buf[:k], r * row)
            yield buf[:k], k * row * self.dtype.itemsize

    def load(self) -> np.ndarray:
        self._take()
        out = np.empty(self.mem_shape, dtype=self.dtype)
        self._fill(out, 0)
        return out.T if self.fortran else out


class _Text(_Source):
    """CSV or whitespace-separated text, parsed a chunk of lines at a time.

    Shape: a first data line with one value makes a 1-D column of numbers; more values make a
    2-D table, whose lines must then all have that many values (except for a full reduction,
    which takes every number whatever the layout).
    """

    def __init__(
        self, stream: IO[str], name: str, delimiter: str | None, *, sniff: bool, header: bool,
        nbytes: int | None, on_close: Any = None,
    ) -> None:
        self.name = name
        self.stream = stream
        self.delimiter = delimiter
        self.dtype = np.dtype(np.float64)
        self.nbytes = nbytes
        self._on_close = on_close
        self._lineno = 0
        self._text = ""
        if header:
            self._readline()
        first = self._next_data()
        if first is None:
            raise InputError(f"{name}: no numbers in the input (empty)")
        if sniff and delimiter is None and "," in self._text:
            self.delimiter = ","
            first = (first[0], self._split(self._text), first[2])
        self._pending: tuple[int, list[str], int] | None = first
        self.ncols = len(first[1])

    @property
    def ndim(self) -> int:
        return 1 if self.ncols == 1 else 2

    def _readline(self) -> str:
        try:
            line = self.stream.readline()
        except UnicodeDecodeError:
            raise InputError(f"{self.name}, line {self._lineno + 1}: not UTF-8 text (and not a .npy file)") from None
        if line:
            self._lineno += 1
        return line

    def _split(self, text: str) -> list[str]:
        if self.delimiter is None:
            return text.split()
        return [f.strip() for f in text.split(self.delimiter)]

    def _next_data(self) -> tuple[int, list[str], int] | None:
        """The next line with data: (line number, fields, characters consumed), or None at the end."""
        used = 0
        while True:
            line = self._readline()
            if not line:
                return None
            used += len(line)
            text = line.split("#", 1)[0].strip() if "#" in line else line.strip()
            if text:
                self._text = text
                return self._lineno, self._split(text), used

    def _lines(self) -> Iterator[tuple[int, list[str], int]]:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            yield pending
        while (item := self._next_data()) is not None:
            yield item

    def _chunks(self, n: int, rows: bool) -> Iterator[tuple[np.ndarray, int]]:
        tokens: list[str] = []
        starts: list[int] = []  # index in tokens where each line starts
        linenos: list[int] = []
        used = 0
        for lineno, fields, nchars in self._lines():
            if rows and len(fields) != self.ncols:
                raise InputError(
                    f"{self.name}, line {lineno}: {len(fields)} value{'s' * (len(fields) != 1)}, expected "
                    f"{self.ncols} like the first line (a table needs equal rows)"
                )
            starts.append(len(tokens))
            linenos.append(lineno)
            tokens.extend(fields)
            used += nchars
            if len(tokens) >= n:
                yield self._convert(tokens, starts, linenos, rows), used
                tokens, starts, linenos, used = [], [], [], 0
        if tokens:
            yield self._convert(tokens, starts, linenos, rows), used

    def _convert(self, tokens: list[str], starts: list[int], linenos: list[int], rows: bool) -> np.ndarray:
        try:
            arr = np.fromiter(map(float, tokens), dtype=np.float64, count=len(tokens))
        except ValueError:
            i = _first_bad(tokens)
            line = linenos[bisect.bisect_right(starts, i) - 1]
            bad = tokens[i]
            what = "an empty value" if not bad else f"not a number: {bad!r}"
            raise InputError(f"{self.name}, line {line}: {what}") from None
        if rows and self.ncols > 1:
            arr = arr.reshape(-1, self.ncols)
        return arr

    def flat_chunks(self, n: int) -> Iterator[tuple[np.ndarray, int]]:
        return self._chunks(n, rows=False)

    def row_chunks(self, n: int) -> Iterator[tuple[np.ndarray, int]]:
        return self._chunks(n, rows=True)

    def load(self) -> np.ndarray:
        parts = [a for a, _ in self._chunks(1 << 20, rows=True)]
        return np.concatenate(parts, axis=0)

    def close(self) -> None:
        self.stream.close()  # the wrapper chain only; it does not close the file or stdin
        if self._on_close is not None:
            self._on_close()


def _is_csv_name(path: str) -> bool:
    return path.lower().endswith(".csv")


def open_source(
    path: str, fmt: str = "auto", *, header: bool = False, stdin: IO[bytes] | None = None
) -> _Source:
    """Open ``path`` (``-``: stdin) as a chunked numeric source.

    ``fmt`` is ``auto`` (sniff: ``.npy`` magic, else text, CSV when the name ends in ``.csv`` or
    the first data line has a comma), ``npy``, ``csv`` or ``text`` (whitespace-separated).
    ``header`` skips the first line of text. ``stdin`` replaces ``sys.stdin.buffer`` (tests).
    Raises :class:`InputError` for a missing, empty or malformed input.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if path == "-":
        raw = sys.stdin.buffer if stdin is None else stdin
        name, nbytes, owned = "<stdin>", None, False
    else:
        if os.path.isdir(path):
            raise InputError(f"{path}: is a directory, not a file")
        try:
            raw = open(path, "rb")  # noqa: SIM115 - closed by the source or below
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except OSError as err:
            raise InputError(f"{path}: cannot open ({err.strerror or err})") from None
        name, nbytes, owned = path, os.fstat(raw.fileno()).st_size, True
    try:
        head = _read_exact(raw, len(_NPY_MAGIC))
        if not head:
            raise InputError(f"{name}: empty input (no data)")
        is_npy = head == _NPY_MAGIC
        if fmt == "npy" or (fmt == "auto" and is_npy):
            if not is_npy:
                raise InputError(f"{name}: not a .npy file (no NumPy magic bytes)")
            if path != "-":
                raw.close()
                return _NpyFile(path)
            return _NpyStream(io.BufferedReader(_Prefixed(head, raw)), name)
        if is_npy:
            raise InputError(f"{name}: this is a .npy file, not {fmt} (use --format auto or npy)")
        delimiter = "," if fmt == "csv" or (fmt == "auto" and _is_csv_name(path)) else None
        text = io.TextIOWrapper(io.BufferedReader(_Prefixed(head, raw)), encoding="utf-8", newline=None)
        return _Text(
            text, name, delimiter, sniff=fmt == "auto", header=header, nbytes=nbytes,
            on_close=raw.close if owned else None,
        )
    except BaseException:
        if owned:
            raw.close()
        raise


def read_array(path: str, fmt: str = "auto", *, header: bool = False, stdin: IO[bytes] | None = None) -> np.ndarray:
    """The whole input at ``path`` (``-``: stdin) as an array (see :func:`open_source`)."""
    with open_source(path, fmt, header=header, stdin=stdin) as src:
        return src.load()


# ---------------------------------------------------------------------------------------------
# Streaming LogSumExp
# ---------------------------------------------------------------------------------------------
def _result_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype the library gives for inputs of ``dtype`` (asked of the library, not guessed)."""
    return np.asarray(lse.logsumexp(np.zeros(1, dtype=dtype))).dtype


def _axes(axis: int | tuple[int, ...] | None, ndim: int) -> tuple[int, ...]:
    """``axis`` as sorted non-negative ints; the library checks it (and words any error)."""
    lse.logsumexp(np.zeros((0,) * ndim), axis=axis)  # raises the library's error for a bad axis
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted(a % ndim for a in ((axis,) if isinstance(axis, int) else axis)))


def stream_logsumexp(
    path: str,
    axis: int | tuple[int, ...] | None = None,
    *,
    fmt: str = "auto",
    header: bool = False,
    chunk_size: int | None = None,
    progress: bool | None = None,
    stdin: IO[bytes] | None = None,
    progress_stream: IO[str] | None = None,
) -> Any:
    """LogSumExp of the input at ``path`` over ``axis``, in bounded memory.

    The input is read in chunks of ``chunk_size`` values (default :data:`DEFAULT_CHUNK` for
    ``.npy``, :data:`DEFAULT_TEXT_CHUNK` for text). Reducing over all axes, or over axes that
    include the layout's first one, merges each chunk's state into a
    :class:`logsumexp.LSEState`; reducing over other axes computes each block of rows on its own.
    Memory: one chunk (a block holds at least one row of the layout). ``progress``: draw a
    progress bar on stderr (None: only when stderr is a terminal). The result has the library's
    dtype and shape for that input (a NumPy scalar for a full reduction).
    """
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of values, got {chunk_size}")
    with open_source(path, fmt, header=header, stdin=stdin) as src:
        n = chunk_size or (DEFAULT_TEXT_CHUNK if isinstance(src, _Text) else DEFAULT_CHUNK)
        ndim = src.ndim
        axes = _axes(axis, ndim)
        out_dtype = _result_dtype(src.dtype)
        if isinstance(src, _NpyBase) and src.size == 0:
            return lse.logsumexp(src.load(), axis=axis)  # nothing to stream; the library's empty rules
        # Axes in the layout (a Fortran file is its transpose in C order).
        mem_axes = tuple(sorted(ndim - 1 - a for a in axes)) if src.fortran else axes
        with ProgressBar(src.nbytes, label=src.name, enabled=progress, stream=progress_stream) as bar:
            if len(axes) == ndim:
                state = lse.LSEState()
                for chunk, used in src.flat_chunks(n):
                    state.update(chunk)
                    del chunk  # unmap it before the next one is mapped
                    bar.update(used)
                return out_dtype.type(state.value)
            if 0 in mem_axes:
                state = lse.LSEState(axis=mem_axes)
                for block, used in src.row_chunks(n):
                    state.update(block)
                    del block
                    bar.update(used)
                out = np.asarray(state.value).astype(out_dtype)
            else:
                parts = []
                for block, used in src.row_chunks(n):
                    parts.append(lse.logsumexp(block, axis=mem_axes))
                    del block
                    bar.update(used)
                out = np.concatenate(parts, axis=0).astype(out_dtype, copy=False)
        return out.T if src.fortran else out
