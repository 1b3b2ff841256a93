"""Readers for the ``logsumexp`` command, and the streaming LogSumExp of a file.

Inputs are numbers from the command line, ``.npy`` files, CSV and whitespace-separated text,
each from a file or from stdin (``-``). Text is a table: one row per non-empty line (``#`` starts
a comment); a file whose first line holds one number is a 1-D column of numbers, otherwise it is
2-D (rows × columns), and every line must hold as many numbers as the first (a ragged table is
refused, naming the line, whatever is computed). The format is sniffed: the ``.npy`` magic bytes,
else text, separated by ``;`` or ``,`` when the first data line has one, else by whitespace.
What spreadsheets write is read: a byte-order mark (UTF-8, or UTF-16 for "Unicode text"), CRLF
line ends, rows of empty cells, quoted numbers.

Streaming (:func:`stream_logsumexp`) never holds more than one chunk: a ``.npy`` file is
memory-mapped one chunk at a time (each map is released before the next, so the resident memory
stays at one chunk however large the file), a ``.npy`` stream is read into one reused buffer, and
text is scanned in fixed-size blocks of characters (never a line at a time, so that one endless
line costs no more than many short ones; NUL bytes are refused at once). Each chunk's (max, lead, tail) state (the library's
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
import gzip
import io
import math
import os
import stat
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
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
#: Values per chunk when streaming text: 256 Ki float64 values (2 MiB) handed to the merge at a
#: time. The text itself is scanned TEXT_BLOCK characters at a time, and its values (~60 bytes
#: each as Python strings) are converted block by block, so this bounds only the float chunk.
DEFAULT_TEXT_CHUNK = 1 << 18
FORMATS = ("auto", "npy", "csv", "text")
_NPY_MAGIC = b"\x93NUMPY"
_GZIP_MAGIC = b"\x1f\x8b"  # RFC 1952: every gzip member starts with these two bytes


class InputError(ValueError):
    """A problem with the user's input; the message names the source and, for text, the line."""


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------
def parse_numbers(tokens: Sequence[str], what: str = "value") -> np.ndarray:
    """``tokens`` as a float64 array, with Python's ``float`` syntax (``inf``, ``nan``, ``1e3``).

    A token that is not a number raises :class:`InputError` naming it and its position
    (``what`` and a 1-based index). A byte-order mark before the first token (text pasted
    from a spreadsheet's file, ``$(cat sheet.csv)``) is dropped.
    """
    if tokens and tokens[0].startswith("\ufeff"):
        tokens = [tokens[0][1:], *tokens[1:]]
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
        self.consumed = 0  # bytes handed on so far (the progress of a text read, in bytes)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        mv = memoryview(b).cast("B")
        if self._prefix:
            n = min(len(mv), len(self._prefix))
            mv[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            self.consumed += n
            return n
        got = self._raw.readinto(mv)  # type: ignore[attr-defined]
        self.consumed += got or 0
        return got


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
    """A ``.npy`` array arriving on a pipe (or out of gzip): read in order into one reused buffer."""

    def __init__(self, stream: IO[bytes], name: str, on_close: Callable[[], None] | None = None) -> None:
        self.name = name
        self.stream = stream
        self._on_close = on_close
        self._set_header(_parse_header(stream, name))
        self._used = False

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()

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


#: Characters of text read at a time. Text is scanned block by block (never line by line), so
#: that a file with no newline at all (one huge line) is read in bounded memory: 64 Ki
#: characters hold at most 32 Ki values, ~2 MiB as Python strings before conversion. Measured
#: (50 MiB of "1.0 " with no newline on stdin, `lse -f -`): the peak RSS grew by 12.5 MiB, where
#: 256 Ki-character blocks grew it by 31 MiB; the time was that of the former line-by-line reader.
TEXT_BLOCK = 1 << 16
#: A line shorter than this that straddles two blocks is carried over whole (so that it is split
#: once, with its comment and its empty cells seen together); a longer one is split where the
#: block ends and only its last, partial value is carried.
_LINE_CARRY = 1 << 16
#: No number needs more characters than this; a longer "value" is binary data or a missing
#: separator, refused before it can grow without bound.
_MAX_VALUE_CHARS = 4096
#: Delimiters recognised on the first data line, in order of priority: a semicolon is only ever
#: a delimiter (spreadsheets in locales with a decimal comma write it), a comma usually is.
_SNIFFED_DELIMITERS = (";", ",")


def _unquote(field: str) -> str:
    """A spreadsheet's quoted cell ``"1.5"`` as ``1.5`` (other text is left alone)."""
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1].strip()
    return field


class _Text(_Source):
    """CSV or whitespace-separated text, scanned in fixed-size blocks.

    Shape: a first data line with one value makes a 1-D column of numbers; more values make a
    2-D table. Every data line must hold as many values as the first one (a ragged table is
    refused whatever is computed, naming the line), so that a file means the same thing to
    every command. Spreadsheet artefacts are accepted: a UTF-8 (or UTF-16) byte-order mark,
    CRLF line ends, blank lines and rows of empty cells (``,,``), quoted numbers (``"1.5"``),
    and ``;`` as the CSV delimiter.

    Memory: one block of text and its values (plus, for a table read by rows, one row), however
    the input is laid out, even with no newline at all.
    """

    def __init__(
        self, stream: IO[str], name: str, delimiter: str | None, *, sniff: bool, header: bool,
        nbytes: int | None, on_close: Any = None, bytes_read: Callable[[], int] | None = None,
    ) -> None:
        self.name = name
        self.stream = stream
        # the progress is counted in bytes of input (characters are fewer in UTF-8 and UTF-16)
        self._bytes_read = bytes_read
        self.delimiter = delimiter
        self.dtype = np.dtype(np.float64)
        self.nbytes = nbytes
        self._on_close = on_close
        self._sniff = sniff
        self._header = header
        self.ncols: int | None = None  # values per line, known once the first data line ends
        self._ndim: int | None = None  # known once the first data line ends or holds two values
        self._first_line: int | None = None  # line number of the first data line
        self._bytes_done = 0
        self._blocks = self._scan()
        self._primed: list[tuple[np.ndarray, int]] = []
        while self._ndim is None:
            item = next(self._blocks, None)
            if item is None:
                break
            self._primed.append(item)
        if self._ndim is None:
            raise InputError(f"{name}: no numbers in the input (empty)")

    @property
    def ndim(self) -> int:
        return self._ndim or 1

    # --- scanning ------------------------------------------------------------------------------
    def _read_block(self, lineno: int) -> str:
        block = self.stream.read(TEXT_BLOCK)  # bytes that do not decode arrive as U+FFFD
        nul = block.find("\x00")
        if nul >= 0:
            raise InputError(
                f"{self.name}, line {lineno + block.count(chr(10), 0, nul)}: NUL bytes: this is binary "
                "data, not numbers as text (a .npy file starts with the bytes \\x93NUMPY)"
            )
        return block

    def _sniff_delimiter(self, content: str, *, complete: bool = True) -> None:
        """Before the first data line is read: take its delimiter, if sniffing. The start of a
        long line (``complete`` False) decides only if it holds a delimiter."""
        if self._first_line is None and self._sniff and content.strip():
            found = next((d for d in _SNIFFED_DELIMITERS if d in content), None)
            if found is None and complete and len(content.split()) == 1:
                found = self.delimiter  # one value: keep what the name or --format said
            if found is not None or complete:
                # no delimiter between values: whitespace (tab-separated text, a "CSV" of tabs)
                self.delimiter, self._sniff = found, False

    def _fields(self, content: str) -> list[str]:
        """The values of one line's ``content`` (its comment removed); [] for an empty row."""
        self._sniff_delimiter(content)
        if self.delimiter is None:
            fields = content.split()
        else:
            fields = [f.strip() for f in content.split(self.delimiter)]
            if not any(fields):  # a row of empty cells, as spreadsheets export them: a blank line
                return []
        if '"' in content:
            fields = [_unquote(f) for f in fields]
        return fields

    def _partial_fields(self, tail: str) -> tuple[list[str], str]:
        """The complete values of a long line cut by the block's end, and its partial last value."""
        self._sniff_delimiter(tail, complete=False)
        if self.delimiter is None:
            fields = tail.split()
            carry = fields.pop() if fields and not tail[-1].isspace() else ""
        else:
            pieces = tail.split(self.delimiter)
            carry = pieces.pop()
            fields = [f.strip() for f in pieces]
        if '"' in tail:
            fields = [_unquote(f) for f in fields]
        return fields, carry

    def _end_line(self, lineno: int, count: int) -> None:
        """A line has ended with ``count`` values: the first fixes the table's width."""
        if count == 0:
            return
        if self.ncols is None:
            self.ncols = count
            self._ndim = 1 if count == 1 else 2
        elif count != self.ncols:
            raise InputError(
                f"{self.name}, line {lineno}: {count} value{'s' * (count != 1)}, expected {self.ncols} "
                f"like line {self._first_line} (every line must hold the same number of values)"
            )

    def _scan(self) -> Iterator[tuple[np.ndarray, int]]:
        """The values of each block of text as a 1-D float64 array, with the characters read."""
        carry = ""  # the start of a line (or of a value) cut by the previous block's end
        skipping = self._header  # inside the header line or a comment, until the next newline
        lineno, count = 1, 0  # the current line and its values so far
        while True:
            block = self._read_block(lineno)
            eof = not block
            text = carry + block
            lines = text.split("\n")
            tail = None if eof else lines.pop()  # the line still being read
            tokens: list[str] = []
            starts: list[int] = []  # where each line's values start in tokens
            linenos: list[int] = []
            # The common case, plain whitespace-separated numbers, is split inline: this loop
            # runs once per line and dominates the time of reading text.
            plain = self.delimiter is None and self._first_line is not None and '"' not in text
            for line in lines:
                if not skipping:
                    if "#" in line:
                        line = line.split("#", 1)[0]
                    fields = line.split() if plain else self._fields(line)
                    if fields:
                        if self._first_line is None:
                            self._first_line = lineno
                        starts.append(len(tokens))
                        linenos.append(lineno)
                        tokens += fields
                        count += len(fields)
                if count != self.ncols and count:
                    try:
                        self._end_line(lineno, count)
                    except InputError:
                        # a value that is not a number on an earlier line is the first error
                        # (a file that is not numbers at all is not "ragged")
                        self._convert(tokens, starts, linenos)
                        raise
                skipping, lineno, count = False, lineno + 1, 0
            carry = ""
            if tail is not None and not skipping:
                if "#" in tail:  # a comment starts: its values are complete, the rest is skipped
                    fields, skipping = self._fields(tail.split("#", 1)[0]), True
                elif len(tail) < _LINE_CARRY:
                    fields, carry = [], tail
                else:
                    fields, carry = self._partial_fields(tail)
                    if len(carry) > _MAX_VALUE_CHARS:
                        raise InputError(
                            f"{self.name}, line {lineno}: a value of more than {_MAX_VALUE_CHARS} "
                            f"characters ({carry[:20]!r}...): not a number"
                        )
                self._add(tokens, starts, linenos, lineno, fields)
                count += len(fields)
                if self._ndim is None and self._first_line is not None and count >= 2:
                    self._ndim = 2
            yield self._convert(tokens, starts, linenos), self._progress(len(block))
            if eof:
                return

    def _progress(self, nchars: int) -> int:
        """Bytes of input behind the last block (its characters if the bytes are not counted)."""
        if self._bytes_read is None:
            return nchars
        now = self._bytes_read()
        done, self._bytes_done = now - self._bytes_done, now
        return done

    def _add(self, tokens: list[str], starts: list[int], linenos: list[int], lineno: int, fields: list[str]) -> None:
        if not fields:
            return
        if self._first_line is None:
            self._first_line = lineno
        starts.append(len(tokens))
        linenos.append(lineno)
        tokens.extend(fields)

    def _convert(self, tokens: list[str], starts: list[int], linenos: list[int]) -> np.ndarray:
        try:
            return np.fromiter(map(float, tokens), dtype=np.float64, count=len(tokens))
        except ValueError:
            i = _first_bad(tokens)
            line = linenos[bisect.bisect_right(starts, i) - 1]
            bad = tokens[i]
            what = "an empty value" if not bad else f"not a number: {bad!r}"
            if "\ufffd" in bad:
                what = "not UTF-8 text (and not a .npy file)"
            hint = ""
            if line == self._first_line and not self._header:
                hint = " (if this line is a header, skip it with --header)"
            raise InputError(f"{self.name}, line {line}: {what}{hint}") from None

    # --- chunks --------------------------------------------------------------------------------
    def _all_blocks(self) -> Iterator[tuple[np.ndarray, int]]:
        primed, self._primed = self._primed, []
        yield from primed
        yield from self._blocks

    def _chunks(self, n: int, rows: bool) -> Iterator[tuple[np.ndarray, int]]:
        """Chunks of about ``n`` values (whole rows of the table when ``rows``)."""
        pending: list[np.ndarray] = []
        have = used = 0
        for values, nchars in self._all_blocks():
            pending.append(values)
            have += values.size
            used += nchars
            unit = (self.ncols or 0) if rows else 1  # 0: the first row has not ended yet
            step = max(1, n // unit) * unit if unit else 0
            if step and have >= step:
                buf = np.concatenate(pending)
                cut = have - have % step
                for start in range(0, cut, step):
                    yield self._shaped(buf[start:start + step], rows), used
                    used = 0
                pending, have = [buf[cut:]], have - cut
        if have:
            yield self._shaped(np.concatenate(pending), rows), used

    def _shaped(self, values: np.ndarray, rows: bool) -> np.ndarray:
        return values.reshape(-1, self.ncols) if rows and self._ndim == 2 else values

    def flat_chunks(self, n: int) -> Iterator[tuple[np.ndarray, int]]:
        return self._chunks(n, rows=False)

    def row_chunks(self, n: int) -> Iterator[tuple[np.ndarray, int]]:
        return self._chunks(n, rows=True)

    def load(self) -> np.ndarray:
        values = np.concatenate([v for v, _ in self._all_blocks()])
        return self._shaped(values, rows=True)

    def close(self) -> None:
        self.stream.close()  # the wrapper chain only; it does not close the file or stdin
        if self._on_close is not None:
            self._on_close()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed, or replaced by an object without it
        return False


def _is_csv_name(path: str) -> bool:
    return path.lower().endswith(".csv")


def open_source(
    path: str, fmt: str = "auto", *, header: bool = False, stdin: IO[bytes] | None = None
) -> _Source:
    """Open ``path`` (``-``: stdin) as a chunked numeric source.

    ``fmt`` is ``auto`` (sniff: ``.npy`` magic, else text, separated by ``;`` or ``,`` when the
    first data line has one), ``npy``, ``csv`` (``,`` or ``;``) or ``text`` (whitespace only).
    ``header`` skips the first line of text. ``stdin`` replaces ``sys.stdin.buffer`` (tests).
    Raises :class:`InputError` for a missing, empty or malformed input.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if path == "-":
        raw = sys.stdin.buffer if stdin is None else stdin
        name, nbytes, owned = "<stdin>", None, False
        if stdin is None and _is_terminal(sys.stdin):
            # without this, `-f -` typed with nothing piped in looks like a hang
            print("logsumexp: reading numbers from the terminal; end with Ctrl-D (Ctrl-Z Enter on Windows)",
                  file=sys.stderr)
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
    file = raw  # the file or stdin itself (closed if owned), under any decompression
    try:
        head = _read_exact(raw, len(_NPY_MAGIC))
        if not head:
            raise InputError(f"{name}: empty input (no data)")
        counter = None
        if head[:2] == _GZIP_MAGIC:  # read gzip transparently (a .gz file, or a gzip pipe)
            counter = _Prefixed(head, raw)  # counts compressed bytes: the progress of the read
            raw = io.BufferedReader(_Gunzip(gzip.GzipFile(fileobj=io.BufferedReader(counter), mode="rb"), name))
            head = _read_exact(raw, len(_NPY_MAGIC))
            if not head:
                raise InputError(f"{name}: empty input (gzip data holding nothing)")
        is_npy = head == _NPY_MAGIC
        if fmt == "npy" or (fmt == "auto" and is_npy):
            if not is_npy:
                raise InputError(f"{name}: not a .npy file (no NumPy magic bytes)")
            if path != "-" and counter is None:
                raw.close()
                return _NpyFile(path)
            return _NpyStream(io.BufferedReader(_Prefixed(head, raw)), name, on_close=file.close if owned else None)
        if is_npy:
            raise InputError(f"{name}: this is a .npy file, not {fmt} (use --format auto or npy)")
        delimiter = "," if fmt == "csv" or (fmt == "auto" and _is_csv_name(path)) else None
        # utf-8-sig drops the byte-order mark that spreadsheets write first; "Unicode text"
        # exports are UTF-16 with their own mark. Universal newlines read CRLF and CR line ends.
        encoding = "utf-16" if head[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
        # Bytes that are not UTF-8 (a header in a Windows code page) become U+FFFD: harmless in a
        # header or a comment, and named with their line where a number should be.
        source = _Prefixed(head, raw)
        consumed = source if counter is None else counter
        text = io.TextIOWrapper(io.BufferedReader(source), encoding=encoding, errors="replace", newline=None)
        return _Text(
            text, name, delimiter, sniff=fmt in ("auto", "csv"), header=header, nbytes=nbytes,
            on_close=file.close if owned else None, bytes_read=lambda: consumed.consumed,
        )
    except BaseException:
        if owned:
            file.close()
        raise


class _Gunzip(io.RawIOBase):
    """The decompressed bytes of a gzip stream; corrupt or truncated data is an InputError that
    names the input (not a traceback from the middle of the read)."""

    def __init__(self, gz: gzip.GzipFile, name: str) -> None:
        self._gz = gz
        self._name = name

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            return self._gz.readinto(b)
        except (OSError, EOFError, zlib.error) as err:
            raise InputError(f"{self._name}: corrupt or truncated gzip data ({err})") from None


def stdin_is_piped() -> bool:
    """Whether stdin is a pipe or a redirected file (``cmd | logsumexp lse``, ``< file``): not a
    terminal, and not an empty device such as /dev/null or a test runner's stand-in."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


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
