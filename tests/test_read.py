"""ReadTaskFiles / read_chunks on real files: records, their lines (SPEC 2, 3) and read-time problems."""

from __future__ import annotations

import csv
import gzip
import io
import tempfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.errors import ErrorCode
from tests.conftest import record, write_jsonl
from transforms.read import (
    InputFile,
    RawChunk,
    ReadTaskFiles,
    _csv_header,
    _iter_lines,
    _lines,
    detect_format,
    path_workstream,
    read_chunks,
)


def _read(path: Path, index: int = 0, **kw) -> list[RawChunk]:
    return list(read_chunks(InputFile(index, str(path)), **kw))



def _cells(chunk: RawChunk) -> list[list[str] | None]:
    """Each record's cells, whether the csv module or Arrow read them."""
    return [chunk.row_cells(i) for i in range(len(chunk))]

def _one(path: Path, **kw) -> RawChunk:
    chunks = _read(path, **kw)
    assert len(chunks) == 1, chunks
    return chunks[0]


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _flat(chunks: list[RawChunk]) -> list[tuple]:
    return [(c.lines[i], c.raws[i], c.row_cells(i), c.problems[i]) for c in chunks for i in range(len(c))]


# --- JSON lines --------------------------------------------------------------------------------


def test_jsonl_lines_are_one_based_and_blank_lines_are_counted_not_read(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"n": 1}, "", {"n": 2}, "   ", "", {"n": 3}])
    chunk = _one(path)
    assert chunk.kind == "jsonl"
    assert chunk.source_file == str(path)
    assert chunk.lines == [1, 3, 6]
    assert chunk.raws == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']
    assert chunk.problems == [None, None, None]
    assert chunk.blank_lines == 3
    assert len(chunk) == 3


def test_jsonl_gzip_is_read_through(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl.gz", [record(task_id="t1"), "", record(task_id="t2")], compress=True)
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # really compressed
    chunk = _one(path)
    assert chunk.lines == [1, 3]
    assert [b'"task_id": "t1"' in r for r in chunk.raws] == [True, False]
    assert [b'"task_id": "t2"' in r for r in chunk.raws] == [False, True]
    assert chunk.blank_lines == 1


def test_gzip_extension_in_upper_case(tmp_path: Path) -> None:
    path = tmp_path / "A.JSONL.GZ"
    path.write_bytes(gzip.compress(b'{"n": 1}\n{"n": 2}\n'))
    assert _one(path).raws == [b'{"n": 1}', b'{"n": 2}']


def test_jsonl_bom_is_dropped_and_crlf_endings_are_stripped(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.jsonl", b'\xef\xbb\xbf{"n": 1}\r\n\r\n{"n": 2}\r\n{"n": 3}')
    chunk = _one(path)
    assert chunk.raws == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']
    assert chunk.lines == [1, 3, 4]
    assert chunk.blank_lines == 1


def test_jsonl_bom_in_gzip_file(tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson.gz"
    path.write_bytes(gzip.compress(b'\xef\xbb\xbf{"n": 1}\r\n{"n": 2}\r\n'))
    chunk = _one(path)
    assert chunk.raws == [b'{"n": 1}', b'{"n": 2}']
    assert chunk.lines == [1, 2]


def test_jsonl_line_over_max_record_bytes_is_record_too_large(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.jsonl", b"0123456789\n" + b"x" * 11 + b"\n" + b"abc\n")
    chunk = _one(path, max_record_bytes=10)
    assert chunk.lines == [1, 2, 3]
    assert chunk.problems[0] is None  # exactly at the limit is fine
    assert chunk.problems[2] is None  # the neighbour after is untouched
    code, message = chunk.problems[1]
    assert code == "record_too_large"
    assert "11" in message and "10" in message
    assert chunk.raws[1] == b"x" * 11


def test_jsonl_invalid_utf8_bytes_are_kept_for_validation(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.jsonl", b'{"worker_id": "\xff"}\n{"n": 1}\n')
    chunk = _one(path)
    assert chunk.raws == [b'{"worker_id": "\xff"}', b'{"n": 1}']
    assert chunk.problems == [None, None]


def test_empty_file_yields_nothing(tmp_path: Path) -> None:
    assert _read(_write(tmp_path / "a.jsonl", b"")) == []


# --- CSV ---------------------------------------------------------------------------------------


def test_csv_header_is_row_one_and_first_data_row_is_two(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.csv", b" worker_id ,task_id\nw1,t1\nw2,\n")
    chunk = _one(path)
    assert chunk.kind == "csv"
    assert chunk.header == ("worker_id", "task_id")  # trimmed names
    assert chunk.lines == [2, 3]
    assert chunk.raws == ["w1,t1", "w2,"]
    assert _cells(chunk) == [["w1", "t1"], ["w2", ""]]
    assert chunk.problems == [None, None]


def test_csv_quoted_newlines_make_one_record_numbered_as_a_spreadsheet_row(tmp_path: Path) -> None:
    text = 'worker_id,task_id\nw1,"line one\nline two\n\nline four"\nw2,"a ""quoted"" word"\nw3,t3\n'
    chunk = _one(_write(tmp_path / "a.csv", text.encode()))
    assert chunk.lines == [2, 3, 4]
    assert chunk.raws == ['w1,"line one\nline two\n\nline four"', 'w2,"a ""quoted"" word"', "w3,t3"]
    assert _cells(chunk) == [["w1", "line one\nline two\n\nline four"], ["w2", 'a "quoted" word'], ["w3", "t3"]]
    assert chunk.blank_lines == 0  # the empty line inside the quotes is data, not a blank line


def test_csv_bom_crlf_and_quoted_crlf_keep_the_exact_raw_text(tmp_path: Path) -> None:
    data = b'\xef\xbb\xbfworker_id,task_id\r\nw1,"multi\r\nline"\r\nw2,t2\r\n'
    chunk = _one(_write(tmp_path / "a.csv", data))
    assert chunk.header == ("worker_id", "task_id")  # no BOM glued to the first name
    assert chunk.lines == [2, 3]
    assert chunk.raws == ['w1,"multi\r\nline"', "w2,t2"]
    assert _cells(chunk) == [["w1", "multi\r\nline"], ["w2", "t2"]]


def test_csv_gzip(tmp_path: Path) -> None:
    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(b"\xef\xbb\xbfworker_id,task_id\nw1,t1\n"))
    chunk = _one(path)
    assert (chunk.kind, chunk.header, chunk.lines, _cells(chunk)) == ("csv", ("worker_id", "task_id"), [2], [["w1", "t1"]])


def test_csv_rows_with_the_wrong_number_of_cells_are_malformed(tmp_path: Path) -> None:
    chunk = _one(_write(tmp_path / "a.csv", b"a,b\n1,2\n3\n4,5,6\n7,8\n"))
    assert chunk.lines == [2, 3, 4, 5]
    assert [p and p[0] for p in chunk.problems] == [None, "malformed_csv", "malformed_csv", None]
    assert "1 cells" in chunk.problems[1][1] and "2" in chunk.problems[1][1]
    assert "3 cells" in chunk.problems[2][1]
    assert chunk.raws[1:3] == ["3", "4,5,6"]
    assert _cells(chunk) == [["1", "2"], None, None, ["7", "8"]]


def test_csv_bad_quoting_is_malformed_and_the_following_rows_are_still_read(tmp_path: Path) -> None:
    chunk = _one(_write(tmp_path / "a.csv", b'a,b\n1,"x"y\n2,ok\n3,"fine"\n'))
    assert chunk.lines == [2, 3, 4]
    assert chunk.problems[0][0] == "malformed_csv"
    assert chunk.raws[0] == '1,"x"y'
    assert chunk.problems[1:] == [None, None]
    assert _cells(chunk)[1:] == [["2", "ok"], ["3", "fine"]]


def test_csv_blank_line_is_counted_and_still_advances_the_row_number(tmp_path: Path) -> None:
    chunk = _one(_write(tmp_path / "a.csv", b"a,b\n1,2\n\n3,4\n"))
    assert chunk.lines == [2, 4]
    assert chunk.blank_lines == 1


def test_csv_row_over_max_record_bytes_is_record_too_large(tmp_path: Path) -> None:
    chunk = _one(_write(tmp_path / "a.csv", b"a,b\n12345,1234\n123456,1234\n1,2\n"), max_record_bytes=10)
    assert chunk.lines == [2, 3, 4]
    assert chunk.problems[0] is None  # "12345,1234" is exactly 10 bytes
    assert chunk.problems[1][0] == "record_too_large"
    assert chunk.problems[2] is None
    assert chunk.row_cells(2) == ["1", "2"]


def test_csv_quoted_multiline_cell_over_the_field_limit_is_one_reject_and_neighbours_survive(tmp_path: Path) -> None:
    """A cell larger than the default 1 MiB, spread over many lines inside quotes, is one
    ``record_too_large`` record; the row after it is read normally (SPEC 3: a bad record never
    affects its neighbours)."""
    big = (b"x" * 1000 + b"\n") * 1100  # ~1.1 MB inside one quoted cell
    path = _write(tmp_path / "a.csv", b'worker_id,task_id\nw1,"' + big + b'"\nw2,t2\n')
    previous = csv.field_size_limit(131072)  # the csv module's default: the state of a fresh process
    try:
        records = _flat(_read(path))
    finally:
        csv.field_size_limit(previous)
    assert [(line, problem and problem[0]) for line, _, _, problem in records] == [
        (2, "record_too_large"),
        (3, None),
    ]
    assert records[1][2] == ["w2", "t2"]


def test_csv_invalid_utf8_is_kept_as_surrogate_escapes(tmp_path: Path) -> None:
    chunk = _one(_write(tmp_path / "a.csv", b"a,b\n1,\xff\n"))
    assert chunk.raws == ["1,\udcff"]
    assert chunk.problems == [None]


def test_csv_header_that_is_not_valid_csv_rejects_the_rows(tmp_path: Path) -> None:
    chunk = _one(_write(tmp_path / "a.csv", b'a,"b"c\n1,2\n3,4\n'))
    assert chunk.header == ()
    assert chunk.lines[-2:] == [2, 3]
    assert all(p is not None and p[0] == "malformed_csv" for p in chunk.problems)
    assert all(cells is None for cells in _cells(chunk))


def test_read_problems_are_error_code_members(tmp_path: Path) -> None:
    chunk = _one(_write(tmp_path / "a.csv", b'a,b\n1\n2,"x"y\n' + b"z" * 40 + b",1\n"), max_record_bytes=30)
    assert [p[0] for p in chunk.problems] == [ErrorCode.MALFORMED_CSV, ErrorCode.MALFORMED_CSV, ErrorCode.RECORD_TOO_LARGE]
    assert all(type(p[0]) is ErrorCode for p in chunk.problems)


def test_csv_header_that_is_not_utf8_rejects_every_row_with_the_reason(tmp_path: Path) -> None:
    chunk = _one(_write(tmp_path / "a.csv", b"worker_id,task_id\xff\nw1,t1\n\nw2,t2\n"))
    assert chunk.header == ()
    assert chunk.lines == [2, 4] and chunk.blank_lines == 1
    assert chunk.raws == ["w1,t1", "w2,t2"]
    assert _cells(chunk) == [None, None]
    assert chunk.problems == [(ErrorCode.INVALID_ENCODING, "the header row is not valid UTF-8 (column 2); save the file as UTF-8")] * 2


@pytest.mark.parametrize(("encoding", "bom", "mark"), [("utf-16-le", b"\xff\xfe", "FF FE"), ("utf-16-be", b"\xfe\xff", "FE FF")])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_csv_in_utf16_rejects_every_row_with_the_reason(tmp_path: Path, encoding: str, bom: bytes, mark: str,
                                                        newline: str) -> None:
    """Rows are told apart (decoded as UTF-16, across read batches) and each says how to fix the file."""
    rows = [f"w{i},t\u00e9{i}" for i in range(5000)]
    text = newline.join(["worker_id,task_id", *rows, 'w,"two' + newline + 'lines"']) + newline
    chunk = _one(_write(tmp_path / "a.csv", bom + text.encode(encoding)))
    assert chunk.header == ()
    assert chunk.lines == list(range(2, 5003))
    assert chunk.raws == [*rows, 'w,"two' + newline + 'lines"']
    message = f"the file is UTF-16 (byte-order mark {mark}); save it as UTF-8"
    assert set(chunk.problems) == {(ErrorCode.INVALID_ENCODING, message)}


def test_csv_utf8_rows_across_read_batches_are_unchanged(tmp_path: Path) -> None:
    rows = [f"w{i},t\u00e9\u4e2d{i}" for i in range(9000)]
    chunk = _one(_write(tmp_path / "a.csv", ("a,b\n" + "\n".join(rows)).encode()))
    assert chunk.raws == rows and chunk.lines == list(range(2, 9002))
    assert set(chunk.problems) == {None}


def test_csv_unterminated_quote_is_one_malformed_record(tmp_path: Path) -> None:
    chunk = _one(_write(tmp_path / "a.csv", b'a,b\n1,2\n3,"open\n4,5\n'))
    assert chunk.lines == [2, 3]
    assert chunk.problems[0] is None
    assert chunk.problems[1][0] == "malformed_csv"
    assert chunk.raws[1] == '3,"open\n4,5'


_CELL = st.lists(st.sampled_from([*'ab ,"\né\t', "\r\n"]), max_size=12).map("".join)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(_CELL, min_size=3, max_size=3), min_size=1, max_size=8),
       terminator=st.sampled_from(["\n", "\r\n"]), bom=st.booleans(), chunk_records=st.integers(1, 4))
def test_csv_round_trip_property(rows: list[list[str]], terminator: str, bom: bool, chunk_records: int) -> None:
    """Rows written by a standard CSV writer come back cell for cell, each with its exact text and
    its spreadsheet row number, whatever the chunking."""
    def text_of(row: list[str]) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator=terminator).writerow(row)
        return out.getvalue()

    data = text_of(["x", "y", "z"]) + "".join(text_of(r) for r in rows)
    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder) / "a.csv", (b"\xef\xbb\xbf" if bom else b"") + data.encode())
        chunks = _read(path, chunk_records=chunk_records)
    records = _flat(chunks)
    assert [line for line, *_ in records] == list(range(2, 2 + len(rows)))
    assert [cells for _, _, cells, _ in records] == rows
    assert [raw for _, raw, _, _ in records] == [text_of(r)[: -len(terminator)] for r in rows]
    assert all(c.header == ("x", "y", "z") for c in chunks)


# --- chunking ----------------------------------------------------------------------------------


def test_chunking_keeps_order_lines_and_blank_counts(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"n": 1}, "", {"n": 2}, {"n": 3}, "", "", {"n": 4}, {"n": 5}])
    chunks = _read(path, index=7, chunk_records=2)
    assert [c.lines for c in chunks] == [[1, 3], [4, 7], [8]]
    assert [r for c in chunks for r in c.raws] == [f'{{"n": {i}}}'.encode() for i in range(1, 6)]
    assert sum(c.blank_lines for c in chunks) == 3
    assert all(c.file_index == 7 and c.source_file == str(path) and c.kind == "jsonl" for c in chunks)
    assert all(len(c) <= 2 for c in chunks)


def test_chunking_csv_carries_the_header_into_every_chunk(tmp_path: Path) -> None:
    path = _write(tmp_path / "workstream_id=ws-a" / "a.csv", b'a,b\n1,2\n3,"x\ny"\n5,6\n7,8\n9,10\n')
    chunks = _read(path, chunk_records=2)
    assert [c.lines for c in chunks] == [[2, 3], [4, 5], [6]]
    assert all(c.header == ("a", "b") for c in chunks)
    assert all(c.path_workstream == "ws-a" for c in chunks)
    assert [cells for c in chunks for cells in _cells(c)] == [["1", "2"], ["3", "x\ny"], ["5", "6"], ["7", "8"], ["9", "10"]]


def test_chunk_of_only_blank_lines_still_reports_them(tmp_path: Path) -> None:
    chunks = _read(_write(tmp_path / "a.jsonl", b'{"n": 1}\n\n\n'), chunk_records=1)
    assert [len(c) for c in chunks] == [1, 0]
    assert sum(c.blank_lines for c in chunks) == 2


# --- format and workstream from the path -------------------------------------------------------


@pytest.mark.parametrize(("path", "expected"), [
    ("a.jsonl", "jsonl"), ("a.json", "jsonl"), ("a.ndjson", "jsonl"), ("A.JSONL.GZ", "jsonl"),
    ("dir.csv/a.ndjson.gz", "jsonl"), ("a.csv", "csv"), ("a.CSV.gz", "csv"), ("gs://b/x/a.csv", "csv"),
])
def test_detect_format_by_extension(path: str, expected: str) -> None:
    assert detect_format(path) == expected


def test_detect_format_requested_wins_and_unknown_is_an_error() -> None:
    assert detect_format("a.txt", "csv") == "csv"
    assert detect_format("a.csv", "jsonl") == "jsonl"
    for path in ("a.txt", "a.gz", "a.parquet", "a.csv.bak"):
        with pytest.raises(ValueError, match="--format"):
            detect_format(path)


def test_read_chunks_honours_the_requested_format(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt", b"a,b\n1,2\n")
    chunk = _one(path, file_format="csv")
    assert (chunk.kind, chunk.lines, _cells(chunk)) == ("csv", [2], [["1", "2"]])


@pytest.mark.parametrize(("path", "expected"), [
    ("x/workstream_id=ws-a/f.jsonl", "ws-a"),
    ("workstream_id=ws-a/f.jsonl", "ws-a"),
    ("gs://bucket/landing/workstream_id=ws-b/day=1/f.jsonl", "ws-b"),
    ("x/workstream_id=ws-a/y/workstream_id=ws-b/f.jsonl", "ws-b"),
    ("x/workstream_id=ws%20a/f.jsonl", "ws a"),
    ("x\\workstream_id=ws-c\\f.jsonl", "ws-c"),
    ("x/workstream_id=ws-a.jsonl", None),  # a file name, not a path segment
    ("x/my_workstream_id=ws-a/f.jsonl", None),
    ("x/workstream_id=/f.jsonl", None),
    ("x/f.jsonl", None),
])
def test_path_workstream(path: str, expected: str | None) -> None:
    assert path_workstream(path) == expected


# --- the Beam transform ------------------------------------------------------------------------


def test_read_task_files_transform(tmp_path: Path) -> None:
    first = write_jsonl(tmp_path / "workstream_id=ws-ner" / "a.jsonl", [{"n": 1}, "", {"n": 2}, {"n": 3}])
    second = _write(tmp_path / "b.csv", b"a,b\n1,2\n3,\n")
    files = [InputFile(0, str(first)), InputFile(1, str(second))]

    def flatten(chunk: RawChunk):
        for i in range(len(chunk)):
            raw = chunk.raws[i]
            yield (chunk.file_index, chunk.kind, chunk.path_workstream, chunk.lines[i],
                   raw.decode() if isinstance(raw, bytes) else raw)

    with BeamTestPipeline(runner="FnApiRunner") as pipeline:
        chunks = pipeline | beam.Create(files) | ReadTaskFiles(chunk_records=2)
        records = chunks | "Records" >> beam.FlatMap(flatten)
        blank = chunks | "Blank" >> beam.Map(lambda c: c.blank_lines) | beam.CombineGlobally(sum) \
            | "TagBlank" >> beam.Map(lambda n: ("blank_lines", n))
        sizes = chunks | "Sizes" >> beam.Map(lambda c: ("chunk_size", len(c)))
        assert_that((records, blank, sizes) | beam.Flatten(), equal_to([
            (0, "jsonl", "ws-ner", 1, '{"n": 1}'),
            (0, "jsonl", "ws-ner", 3, '{"n": 2}'),
            (0, "jsonl", "ws-ner", 4, '{"n": 3}'),
            (1, "csv", None, 2, "1,2"),
            (1, "csv", None, 3, "3,"),
            ("blank_lines", 1),
            ("chunk_size", 2), ("chunk_size", 1), ("chunk_size", 2),
        ]))


class _Counted(io.BytesIO):
    """A stream that counts the bytes read from it."""

    taken = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.taken += len(data)
        return data


def test_a_splits_header_is_read_from_the_first_line_alone() -> None:
    """A split that starts after a 5 MB row reads the file's header line, not the row after it."""
    stream = _Counted(b"a, b ,c\n" + b"x" * 5_000_000 + b",y,z\n1,2,3\n")
    assert _csv_header(stream) == (["a", "b", "c"], None)
    assert stream.taken <= 64 << 10


def test_lines_spanning_many_blocks_are_whole() -> None:
    data = b"\xef\xbb\xbfabc\ndefgh\n\n" + b"long" * 1000 + b"\nend"
    lines = list(_iter_lines(io.BytesIO(data), block_bytes=3))
    assert lines == [b"abc\n", b"defgh\n", b"\n", b"long" * 1000 + b"\n", b"end"]
    assert list(_lines([b"ab", b"c", b"d\ne", b"f"])) == [b"abcd\n", b"ef"]
