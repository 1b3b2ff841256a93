"""Readers and the streaming LogSumExp of ``logsumexp._io``, and the progress bar."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import logsumexp as lse
from logsumexp import _io
from logsumexp._progress import ProgressBar, format_bytes


def _ulps(a: float, b: float) -> float:
    return abs(float(a) - float(b)) / math.ulp(float(b))


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


# --- numbers ---------------------------------------------------------------------------------
def test_parse_numbers_accepts_python_float_syntax() -> None:
    out = _io.parse_numbers(["1000", "-1e3", " 2.5 ", "inf", "-inf", "nan"])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out[:5], [1000.0, -1000.0, 2.5, np.inf, -np.inf])
    assert np.isnan(out[5])


def test_parse_numbers_names_the_bad_token_and_position() -> None:
    with pytest.raises(_io.InputError, match=r"not a number: 'abc' \(value 3\)"):
        _io.parse_numbers(["1", "2", "abc"])


# --- text ------------------------------------------------------------------------------------
def test_text_column_is_1d_and_table_is_2d(tmp_path) -> None:
    col = tmp_path / "col.txt"
    col.write_text("1\n2\n# a comment\n\n3  # trailing comment\n")
    np.testing.assert_array_equal(_io.read_array(str(col)), [1.0, 2.0, 3.0])
    table = tmp_path / "t.txt"
    table.write_text("1 2 3\n4\t5 6\n")
    np.testing.assert_array_equal(_io.read_array(str(table)), [[1, 2, 3], [4, 5, 6]])


def test_csv_by_extension_sniffed_commas_and_header(tmp_path) -> None:
    f = tmp_path / "d.csv"
    f.write_text("a,b\n1, 2\n3,4\n")
    np.testing.assert_array_equal(_io.read_array(str(f), header=True), [[1, 2], [3, 4]])
    g = tmp_path / "d.txt"
    g.write_text("1,2\n3,4\n")
    np.testing.assert_array_equal(_io.read_array(str(g)), [[1, 2], [3, 4]])
    with pytest.raises(_io.InputError, match="line 1: not a number: '1,2'"):
        _io.read_array(str(g), "text")


def test_text_errors_name_the_line(tmp_path) -> None:
    f = tmp_path / "bad.txt"
    f.write_text("1 2\n3 4\n5 x\n")
    with pytest.raises(_io.InputError, match=r"bad.txt, line 3: not a number: 'x'"):
        _io.read_array(str(f))
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("1 2\n3\n")
    with pytest.raises(_io.InputError, match="line 2: 1 value, expected 2"):
        _io.read_array(str(ragged))
    empty_field = tmp_path / "e.csv"
    empty_field.write_text("1,,2\n")
    with pytest.raises(_io.InputError, match="line 1: an empty value"):
        _io.read_array(str(empty_field))


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n"])
def test_empty_input_is_an_error(tmp_path, content: str) -> None:
    f = tmp_path / "empty.txt"
    f.write_text(content)
    with pytest.raises(_io.InputError, match="empty"):
        _io.read_array(str(f))


def test_missing_file_and_directory(tmp_path) -> None:
    with pytest.raises(_io.InputError, match="no such file"):
        _io.read_array(str(tmp_path / "nope.npy"))
    with pytest.raises(_io.InputError, match="is a directory"):
        _io.read_array(str(tmp_path))


def test_binary_that_is_not_npy(tmp_path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(_io.InputError, match="not UTF-8 text"):
        _io.read_array(str(f))
    g = tmp_path / "x.npy"
    g.write_text("1 2 3\n")
    with pytest.raises(_io.InputError, match="not a .npy file"):
        _io.read_array(str(g), "npy")


def test_truncated_and_object_npy(tmp_path) -> None:
    f = tmp_path / "t.npy"
    f.write_bytes(_npy_bytes(np.arange(100.0))[:-8])
    with pytest.raises(_io.InputError, match="truncated"):
        _io.stream_logsumexp(str(f))
    with pytest.raises(_io.InputError, match="truncated"):
        _io.stream_logsumexp("-", stdin=io.BytesIO(f.read_bytes()), chunk_size=7)
    g = tmp_path / "o.npy"
    np.save(g, np.array([1, "a"], dtype=object), allow_pickle=True)
    with pytest.raises(_io.InputError, match="Python objects"):
        _io.read_array(str(g))


def test_stdin_text_and_npy() -> None:
    np.testing.assert_array_equal(_io.read_array("-", stdin=io.BytesIO(b"1 2\n3 4\n")), [[1, 2], [3, 4]])
    arr = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(_io.read_array("-", stdin=io.BytesIO(_npy_bytes(arr))), arr)
    f = np.asfortranarray(arr)
    np.testing.assert_array_equal(_io.read_array("-", stdin=io.BytesIO(_npy_bytes(f))), arr)


# --- streaming -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(6)
    x = rng.standard_normal(10_007) * 30 + 700  # large values: exp() overflows without the shift
    path = tmp_path_factory.mktemp("io") / "big.npy"
    np.save(path, x)
    return str(path), x


def test_stream_npy_larger_than_chunk_matches_in_memory(big) -> None:
    path, x = big
    ref = lse.logsumexp(x)
    for chunk in (1, 97, 1000, 4096):
        got = _io.stream_logsumexp(path, chunk_size=chunk, progress=False)
        assert type(got) is np.float64
        assert _ulps(got, ref) <= 2, (chunk, got, ref)


def test_stream_one_chunk_is_exactly_the_library(big) -> None:
    path, x = big
    assert _io.stream_logsumexp(path) == lse.logsumexp(x)


def test_stream_dominant_term_across_chunks(tmp_path) -> None:
    x = np.concatenate([[0.0], np.full(999, -40.0)])
    np.save(tmp_path / "d.npy", x)
    exact = 4.2441059010362884e-15  # log1p(999 e^-40), mpmath at 50 digits
    for chunk in (100, 256):  # the leading 0 and the -40s in different chunks: states merge exactly
        got = _io.stream_logsumexp(str(tmp_path / "d.npy"), chunk_size=chunk)
        assert _ulps(got, exact) <= 2, chunk


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1), (0, 2), 2])
def test_stream_axes_2d_3d(tmp_path, order: str, axis) -> None:
    rng = np.random.default_rng(1)
    x = np.array(rng.standard_normal((23, 5, 7)) * 10, order=order)
    path = tmp_path / "a.npy"
    np.save(path, x)
    ref = lse.logsumexp(x, axis=axis)
    got = _io.stream_logsumexp(str(path), axis, chunk_size=40)
    assert np.shape(got) == np.shape(ref)
    np.testing.assert_allclose(got, ref, rtol=4e-16, atol=0)


def test_stream_float32_keeps_dtype_and_accuracy(tmp_path) -> None:
    x = (np.random.default_rng(2).standard_normal(5000) * 5).astype(np.float32)
    np.save(tmp_path / "f.npy", x)
    got = _io.stream_logsumexp(str(tmp_path / "f.npy"), chunk_size=300)
    ref = lse.logsumexp(x)
    assert got.dtype == np.float32
    assert abs(float(got) - float(ref)) <= 2 * float(np.spacing(np.float32(ref)))


def test_stream_special_values(tmp_path) -> None:
    for x, want in ((np.full(50, -np.inf), -np.inf), (np.r_[np.zeros(40), np.inf], np.inf),
                    (np.r_[np.zeros(40), np.nan, np.zeros(9)], np.nan), (np.zeros(0), -np.inf)):
        np.save(tmp_path / "s.npy", x)
        got = _io.stream_logsumexp(str(tmp_path / "s.npy"), chunk_size=8)
        np.testing.assert_equal(got, want)


def test_stream_text_stdin_matches_in_memory() -> None:
    x = np.random.default_rng(3).standard_normal(3000) - 1000
    text = "\n".join(" ".join(repr(float(v)) for v in row) for row in x.reshape(-1, 3)).encode()
    got = _io.stream_logsumexp("-", stdin=io.BytesIO(text), chunk_size=100)
    assert _ulps(got, lse.logsumexp(x)) <= 2
    rows = _io.stream_logsumexp("-", axis=1, stdin=io.BytesIO(text), chunk_size=100)
    np.testing.assert_allclose(rows, lse.logsumexp(x.reshape(-1, 3), axis=1), rtol=4e-16)
    cols = _io.stream_logsumexp("-", axis=0, stdin=io.BytesIO(text), chunk_size=100)
    np.testing.assert_allclose(cols, lse.logsumexp(x.reshape(-1, 3), axis=0), rtol=4e-16)


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_ragged_table_is_refused_for_every_reduction(axis) -> None:
    # A ragged table used to be flattened silently by a full reduction and refused otherwise:
    # now it means one thing everywhere (refused, naming the line).
    data = b"1,2,3\n4,5\n"
    with pytest.raises(_io.InputError, match=r"line 2: 2 values, expected 3 like line 1"):
        _io.stream_logsumexp("-", axis=axis, stdin=io.BytesIO(data))
    with pytest.raises(_io.InputError, match=r"line 2: 2 values, expected 3"):
        _io.read_array("-", stdin=io.BytesIO(data))


def test_ragged_column_is_refused() -> None:
    with pytest.raises(_io.InputError, match=r"line 3: 2 values, expected 1 like line 1"):
        _io.read_array("-", stdin=io.BytesIO(b"1\n2\n3 4\n"))


def test_stream_npy_stdin_in_chunks(big) -> None:
    path, x = big
    with open(path, "rb") as f:
        data = f.read()
    got = _io.stream_logsumexp("-", stdin=io.BytesIO(data), chunk_size=333)
    assert _ulps(got, lse.logsumexp(x)) <= 2


def test_stream_bad_axis_uses_the_library_message(big) -> None:
    with pytest.raises(ValueError, match="out of bounds"):
        _io.stream_logsumexp(big[0], axis=1)


def test_stream_rejects_bad_chunk_size(big) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        _io.stream_logsumexp(big[0], chunk_size=0)


def test_stream_draws_progress_when_asked(big) -> None:
    buf = io.StringIO()
    _io.stream_logsumexp(big[0], chunk_size=500, progress=True, progress_stream=buf)
    text = buf.getvalue()
    assert "big.npy" in text and "%" in text
    assert text.endswith("\r")  # erased at the end


# --- progress bar ----------------------------------------------------------------------------
def test_progress_bar_silent_unless_terminal() -> None:
    buf = io.StringIO()  # not a TTY
    with ProgressBar(100, stream=buf) as bar:
        bar.update(50)
    assert buf.getvalue() == ""


def test_progress_bar_unknown_total_and_narrow() -> None:
    buf = io.StringIO()
    bar = ProgressBar(None, label="<stdin>", stream=buf, enabled=True, min_interval=0, width=40)
    bar.update(3 * 2**20)
    assert "<stdin> 3.0 MiB" in buf.getvalue()
    narrow = ProgressBar(100, label="file", stream=buf, enabled=True, width=20)
    narrow.update(100)
    assert "100%" in narrow.line() and "[" not in narrow.line() and len(narrow.line()) < 20


def test_progress_bar_full_and_fits_width() -> None:
    bar = ProgressBar(2**31, label="x" * 200, stream=io.StringIO(), enabled=True, width=80)
    bar.update(2**31)
    line = bar.line()
    assert "100%" in line and "GiB" in line and len(line) <= 79


def test_format_bytes() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"


# --- spreadsheet artefacts -------------------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [
        "\ufeff1,2\n3,4\n".encode(),  # UTF-8 byte-order mark (Excel "CSV UTF-8")
        b"1,2\r\n3,4\r\n",  # CRLF line ends
        b"1,2\r3,4\r",  # old Mac line ends
        b"1,2\n3,4\n\n\n",  # trailing empty lines
        b"1,2\n3,4\n,\n,\n",  # trailing rows of empty cells
        b'"1","2"\n"3", "4"\n',  # quoted numbers
        b"1;2\n3;4\n",  # semicolon-separated (decimal-comma locales)
        "1\t2\n3\t4\n".encode("utf-16"),  # Excel "Unicode text": UTF-16 with its mark, tabs
        "\ufeff1,2\r\n3,4\r\n,\r\n".encode(),  # all at once
    ],
)
def test_spreadsheet_csv_artefacts(tmp_path, data: bytes) -> None:
    f = tmp_path / "sheet.csv"
    f.write_bytes(data)
    np.testing.assert_array_equal(_io.read_array(str(f)), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(_io.read_array("-", stdin=io.BytesIO(data)), [[1, 2], [3, 4]])
    assert _io.stream_logsumexp(str(f)) == lse.logsumexp(np.array([1.0, 2, 3, 4]))


def test_bom_in_whitespace_text_and_with_header() -> None:
    np.testing.assert_array_equal(_io.read_array("-", stdin=io.BytesIO("\ufeff1\n2\n".encode())), [1, 2])
    got = _io.read_array("-", header=True, stdin=io.BytesIO("\ufeffa,b\n1,2\n".encode()))
    np.testing.assert_array_equal(got, [[1, 2]])


def test_header_row_error_hints_at_header_option(tmp_path) -> None:
    f = tmp_path / "h.csv"
    f.write_text("logit_a,logit_b\n1,2\n")
    with pytest.raises(_io.InputError, match=r"line 1: not a number: 'logit_a' \(if this line is a header, skip it with --header\)"):
        _io.read_array(str(f))
    g = tmp_path / "bad.csv"
    g.write_text("1,2\nx,3\n")
    with pytest.raises(_io.InputError, match=r"line 2: not a number: 'x'$"):
        _io.read_array(str(g))


# --- text in blocks: bounded memory for any layout -------------------------------------------
def test_nul_bytes_fail_fast() -> None:
    with pytest.raises(_io.InputError, match=r"line 2: NUL bytes: this is binary data"):
        _io.stream_logsumexp("-", stdin=io.BytesIO(b"1 2\n3\x00\x00\x00" + b"\x00" * 100))
    with pytest.raises(_io.InputError, match="NUL bytes"):
        _io.read_array("-", stdin=io.BytesIO(b"\x00" * 100))


def test_endless_value_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(_io, "TEXT_BLOCK", 64)
    monkeypatch.setattr(_io, "_LINE_CARRY", 128)
    with pytest.raises(_io.InputError, match=r"line 1: a value of more than 4096 characters \('1111"):
        _io.stream_logsumexp("-", stdin=io.BytesIO(b"1 " + b"1" * 10_000))


def _messy_text(rng: np.random.Generator, values: np.ndarray, ncols: int, newline: bool) -> bytes:
    """``values`` as text with comments, blank lines, odd spacing and CRLF (one line if not ``newline``)."""
    rows = []
    for row in values.reshape(-1, ncols):
        cells = [repr(float(v)) for v in row]
        rows.append(" " * int(rng.integers(3)) + "\t ".join(cells) + ("  # c" if rng.random() < 0.2 else ""))
        if rng.random() < 0.2:
            rows.append("")
    if not newline:
        return " ".join(repr(float(v)) for v in values).encode()
    return ("# head\r\n" + "\r\n".join(rows)).encode()


@pytest.mark.parametrize("block", [1, 5, 64, 1 << 18])
@pytest.mark.parametrize("carry", [3, 1 << 16])
@pytest.mark.parametrize("newline", [True, False])
def test_block_boundaries_do_not_change_the_values(monkeypatch, block: int, carry: int, newline: bool) -> None:
    # Every place a block can end (inside a value, a comment, a CRLF; a line carried whole or
    # split) must give the same values as reading the text at once.
    rng = np.random.default_rng(block + carry)
    x = rng.standard_normal(600) * 300
    data = _messy_text(rng, x, 3, newline)
    monkeypatch.setattr(_io, "TEXT_BLOCK", block)
    monkeypatch.setattr(_io, "_LINE_CARRY", carry)
    got = _io.read_array("-", stdin=io.BytesIO(data))
    np.testing.assert_array_equal(got, x.reshape(-1, 3) if newline else x.reshape(1, -1))
    streamed = _io.stream_logsumexp("-", stdin=io.BytesIO(data), chunk_size=50)
    assert _ulps(streamed, lse.logsumexp(x)) <= 2
    if newline:
        rows = _io.stream_logsumexp("-", axis=1, stdin=io.BytesIO(data), chunk_size=50)
        np.testing.assert_allclose(rows, lse.logsumexp(x.reshape(-1, 3), axis=1), rtol=4e-16, atol=0)


def test_parse_numbers_drops_a_leading_byte_order_mark() -> None:
    np.testing.assert_array_equal(_io.parse_numbers(["\ufeff1", "2"]), [1.0, 2.0])
    with pytest.raises(_io.InputError, match=r"not a number: '\\ufeff2' \(value 2\)"):
        _io.parse_numbers(["1", "\ufeff2"])  # only at the start, where a file's mark would be


def test_windows_code_page_header_is_skipped_and_named_elsewhere(tmp_path) -> None:
    # Excel's "CSV (Comma delimited)" writes the header in cp1252, which is not UTF-8
    f = tmp_path / "w.csv"
    f.write_bytes("Größe,µ\r\n1,2\r\n".encode("cp1252"))
    np.testing.assert_array_equal(_io.read_array(str(f), header=True), [[1, 2]])
    with pytest.raises(_io.InputError, match=r"w.csv, line 1: not UTF-8 text \(and not a .npy file\) \(if this"):
        _io.read_array(str(f))
    g = tmp_path / "v.csv"
    g.write_bytes(b"1,2\n3,\xe94\n")
    with pytest.raises(_io.InputError, match=r"v.csv, line 2: not UTF-8 text"):
        _io.read_array(str(g))


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.lists(st.floats(allow_nan=False), min_size=3, max_size=3), min_size=1, max_size=12),
    seps=st.lists(st.sampled_from([" ", "\t", "  ", ", ", ","]), min_size=1, max_size=4),
    ends=st.lists(st.sampled_from(["\n", "\r\n", "\r", "  # note\n", "\n\n", "\n,,\n"]), min_size=1, max_size=4),
    block=st.integers(1, 40),
    carry=st.integers(1, 64),
    quoted=st.integers(0, 3),
)
def test_any_layout_reads_the_same_in_any_block_size(rows, seps, ends, block, carry, quoted) -> None:
    comma = any("," in s for s in seps)
    sep_for = (lambda i: ", " if comma else seps[i % len(seps)])  # one file, one kind of delimiter
    cell = (lambda k, v: f'"{v!r}"' if quoted and k % quoted == 0 else repr(v))  # spreadsheet quotes
    text = "".join(sep_for(i).join(cell(k, v) for k, v in enumerate(row)) + ends[i % len(ends)]
                   for i, row in enumerate(rows))
    if not comma:
        text = text.replace(",,", "")
    data = "\ufeff".encode() + text.encode()
    # A row of empty cells is a blank line when it is read whole (shorter than the carry, as
    # any real one is); split in pieces, it would be refused as empty values.
    carry = max(carry, 3)
    old = (_io.TEXT_BLOCK, _io._LINE_CARRY)
    try:
        _io.TEXT_BLOCK, _io._LINE_CARRY = block, carry
        got = _io.read_array("-", stdin=io.BytesIO(data))
    finally:
        _io.TEXT_BLOCK, _io._LINE_CARRY = old
    np.testing.assert_array_equal(got, np.array(rows))


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(-999, 999), min_size=2, max_size=2), min_size=1, max_size=10),
    bad=st.integers(0, 19),
    ends=st.lists(st.sampled_from(["\n", "\r\n", "\r", " # c\n", "\n\n"]), min_size=1, max_size=3),
    block=st.integers(1, 30),
    carry=st.integers(1, 40),
)
def test_a_bad_value_is_named_by_its_line_in_any_block_size(rows, bad, ends, block, carry) -> None:
    cells = [[str(v) for v in row] for row in rows]
    bad %= 2 * len(rows)
    cells[bad // 2][bad % 2] = "x"
    text = "".join(" ".join(row) + ends[i % len(ends)] for i, row in enumerate(cells))
    before = text[: text.index("x")].replace("\r\n", "\n").replace("\r", "\n")
    line = before.count("\n") + 1
    old = (_io.TEXT_BLOCK, _io._LINE_CARRY)
    try:
        _io.TEXT_BLOCK, _io._LINE_CARRY = block, carry
        with pytest.raises(_io.InputError, match=rf"<stdin>, line {line}: not a number: 'x'"):
            _io.read_array("-", stdin=io.BytesIO(text.encode()))
    finally:
        _io.TEXT_BLOCK, _io._LINE_CARRY = old


def test_quoted_value_carried_across_a_block_end(monkeypatch) -> None:
    monkeypatch.setattr(_io, "TEXT_BLOCK", 4)
    data = b'1 2\n"3" 4\n'  # the quote arrives in one block, the rest of its line in the next
    np.testing.assert_array_equal(_io.read_array("-", stdin=io.BytesIO(data)), [[1, 2], [3, 4]])


@settings(max_examples=60, deadline=None)
@given(
    widths=st.lists(st.integers(1, 4), min_size=2, max_size=8),
    comma=st.booleans(),
    block=st.integers(1, 30),
    carry=st.integers(1, 40),
)
def test_a_ragged_line_is_named_in_any_block_size(widths, comma, block, carry) -> None:
    sep = "," if comma else " "
    text = "".join(sep.join(["7"] * w) + "\n" for w in widths)
    bad = next((i for i, w in enumerate(widths) if w != widths[0]), None)
    old = (_io.TEXT_BLOCK, _io._LINE_CARRY)
    try:
        _io.TEXT_BLOCK, _io._LINE_CARRY = block, carry
        if bad is None:
            assert _io.read_array("-", stdin=io.BytesIO(text.encode())).size == sum(widths)
        else:
            want = rf"line {bad + 1}: {widths[bad]} values?, expected {widths[0]} like line 1"
            with pytest.raises(_io.InputError, match=want):  # a one-value first line: say it is CSV
                _io.stream_logsumexp("-", fmt="csv" if comma else "auto", stdin=io.BytesIO(text.encode()))
    finally:
        _io.TEXT_BLOCK, _io._LINE_CARRY = old


def test_csv_named_file_with_one_value_first_keeps_commas(tmp_path) -> None:
    f = tmp_path / "r.csv"
    f.write_text("7\n7,7\n")
    with pytest.raises(_io.InputError, match="line 2: 2 values, expected 1 like line 1"):
        _io.read_array(str(f))
    g = tmp_path / "tabs.csv"
    g.write_text("1\t2\n3\t4\n")
    np.testing.assert_array_equal(_io.read_array(str(g)), [[1, 2], [3, 4]])


def test_text_progress_counts_bytes_of_input(tmp_path) -> None:
    # UTF-16 has two bytes per character: a bar counting characters would stop at half
    f = tmp_path / "u.txt"
    f.write_bytes("\n".join(str(v) for v in range(20_000)).encode("utf-16"))
    with _io.open_source(str(f)) as src:
        assert sum(used for _, used in src.flat_chunks(1000)) == f.stat().st_size
