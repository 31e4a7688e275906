"""CSV read by Arrow block by block gives the records that reading row by row with the csv module gives."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas.config import WorkstreamConfig
from tests.conftest import CONFIG_DATA, TD, TD2, UC, WS
from transforms.read import CsvSplits, InputFile, RawChunk, read_chunks
from transforms.validate import validate_chunk

CONFIG = WorkstreamConfig.model_validate(CONFIG_DATA)

_PLAIN = st.sampled_from([
    b"", b"a", b"w1", b" padded ", b"10", b'"quoted"', b'"with ""quotes"""', b'"a,b"', b"caf\xc3\xa9", b"\xff",
    b"\xed\xa0\x80", b"\xef\xbb\xbf", b'"{""k"": 1}"', b"x" * 40,
])
_IRREGULAR = st.sampled_from([b'"two\nlines"', b'"cr\r\nlf"', b'bad"quote', b'"closed"after', b'"open', b"\x00",
                              b"lone\rcr"])


def _row(cells: st.SearchStrategy[bytes]) -> st.SearchStrategy[list[bytes]]:
    return st.one_of(
        st.lists(cells, min_size=3, max_size=3),  # as wide as the header
        st.lists(cells, min_size=0, max_size=5),  # blank, short or long
    )


_ENDING = st.sampled_from([b"\n", b"\r\n"])


@st.composite
def _csv_file(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from([b"a,b,c", b" a , b ,c", b"x,y,z"] * 3 +  # plain, and not
                                  [b'"a",b,c', b"a", b"\xef\xbb\xbfa,b,c", b"a,\xff,c", b""]))
    cells = st.one_of(_PLAIN, _IRREGULAR) if draw(st.booleans()) else _PLAIN  # half the files are regular
    rows = draw(st.lists(_row(cells), max_size=12))
    body = header + draw(_ENDING)
    for row in rows:
        body += b",".join(row) + draw(_ENDING)
    if draw(st.booleans()):
        body = body.rstrip(b"\r\n")  # no newline at the end
    return body


def _records(chunks: list[RawChunk]) -> tuple[list, list, int]:
    records = [(c.lines[i], c.raws[i], c.row_cells(i), c.problems[i]) for c in chunks for i in range(len(c))]
    return records, sorted({c.header for c in chunks if c.header is not None}), sum(c.blank_lines for c in chunks)


def _read(source: InputFile, arrow: bool, chunk_records: int) -> tuple[list, list, int]:
    return _records(list(read_chunks(source, max_record_bytes=60, chunk_records=chunk_records, arrow_csv=arrow)))


@given(_csv_file(), st.sampled_from([1, 2, 3, 7, 20_000]))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arrow_reads_every_file_as_the_csv_module_does(tmp_path: Path, data: bytes, chunk_records: int) -> None:
    path = tmp_path / "night.csv"
    path.write_bytes(data)
    source = InputFile(0, str(path))
    assert _read(source, True, chunk_records) == _read(source, False, chunk_records)


@given(_csv_file(), st.integers(1, 40))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arrow_reads_every_split_as_the_csv_module_does(tmp_path: Path, data: bytes, target: int) -> None:
    path = tmp_path / "night.csv"
    path.write_bytes(data)
    splits = CsvSplits(target)
    splits.feed(data)
    pieces = InputFile(0, str(path)).splits(splits.finish())
    for piece in pieces:
        assert _read(piece, True, 2) == _read(piece, False, 2)


_FIELD_CELLS = {
    "workstream_id": [WS, "", "ws-nope", " " + WS],
    "worker_id": ["w1", "W@X.COM", "", "caf\xe9", " pad "],
    "use_case_id": [UC, "", "uc-nope"],
    "task_definition_id": [TD, TD2, ""],
    "task_started_at": ["2020-12-22T09:13:24Z", "2020-12-22 09:13:24", "", "yesterday"],
    "task_completed_at": ["2020-12-22T10:13:24+05:45", "2020-12-22T10:13:24Z", "0001-01-01T00:00:00Z"],
    "task_count": ["1", "10.0", "", "-1", "x"],
    "task_metadata": ['{"k": 1}', "", "[1]", '{"a": {"b": 2}}'],
    "unique_id": ["u1", "u2", ""],
}


@st.composite
def _task_file(draw: st.DrawFn) -> bytes:
    names = list(_FIELD_CELLS) + ["extra"]
    lines = [",".join(names).encode()]
    for _ in range(draw(st.integers(0, 12))):
        cells = [draw(st.sampled_from(_FIELD_CELLS[name])) for name in names[:-1]] + [draw(st.sampled_from(["", "e"]))]
        line = ",".join('"' + c.replace('"', '""') + '"' if any(m in c for m in ',"') else c for c in cells).encode()
        lines.append(draw(st.sampled_from([line, line + b",surplus", b"", line.replace(b"w1", b"\xff")])))
    return b"\n".join(lines) + b"\n"


def _shifted_rows() -> bytes:
    """A blank line, a refused row and a line that is not UTF-8 among good rows: the columns'
    rows are not the records' positions."""
    names = [name for name in _FIELD_CELLS if name != "task_metadata"]
    good = [[WS, f"w{i}", UC, TD, "2020-12-22T09:13:24Z", "2020-12-22T10:13:24Z", "1", f"u{i}"] for i in range(6)]
    g = [",".join(row).encode() for row in good]
    lines = [g[0], b"", g[1], g[2], b"short,row", g[3], g[4].replace(b"w4", b"w\xff"), g[5]]
    return b"\n".join([",".join(names).encode(), *lines]) + b"\n"


@given(_task_file(), st.sampled_from([1, 3, 20_000]))
@example(_shifted_rows(), 20_000)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_validation_of_what_arrow_read_is_the_validation_of_what_the_csv_module_read(
        tmp_path: Path, data: bytes, chunk_records: int) -> None:
    path = tmp_path / "night.csv"
    path.write_bytes(data)

    def tables(arrow: bool) -> tuple[list, list, Counter]:
        accepted_rows, rejected_rows, totals = [], [], Counter()
        for chunk in read_chunks(InputFile(0, str(path)), chunk_records=chunk_records, arrow_csv=arrow):
            accepted, rejects, counts = validate_chunk(chunk, CONFIG)
            accepted_rows += accepted.to_pylist()
            rejected_rows += rejects.to_pylist()
            totals.update({key: value for key, value in counts.items() if key != "rejected_by_code"})
            totals.update(counts["rejected_by_code"])
        return accepted_rows, rejected_rows, totals

    assert tables(True) == tables(False)


def test_arrow_reads_the_blocks_of_a_night_with_bad_rows_in_it(tmp_path: Path) -> None:
    """Bad rows of every kind that the csv module reads row by row stay in Arrow's block: a blank
    line, rows of another cell count, consecutive lines that are not UTF-8, CRLF, a row too large."""
    lines = [b"a,b,c", b"1,2,3", b"", b"4,5", b"\xff,\xfe,x", b"\xfd,y,z", b"6,7,8\r", b'"q ""x""",9,' + b"z" * 80,
             b"10,11,12,13", b"14,15,16"]
    path = tmp_path / "night.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    [chunk] = read_chunks(InputFile(0, str(path)), max_record_bytes=60)
    assert chunk.columns is not None  # read by Arrow, not row by row
    assert (chunk.lines, chunk.blank_lines) == ([2, 4, 5, 6, 7, 8, 9, 10], 1)
    assert [p and p[0].value for p in chunk.problems] == [None, "malformed_csv", None, None, None,
                                                           "record_too_large", "malformed_csv", None]
    assert [chunk.row_cells(i) for i in (0, 2, 3, 4, 7)] == [
        ["1", "2", "3"], ["\udcff", "\udcfe", "x"], ["\udcfd", "y", "z"], ["6", "7", "8"], ["14", "15", "16"]]
    assert _read(InputFile(0, str(path)), True, 20_000) == _read(InputFile(0, str(path)), False, 20_000)
