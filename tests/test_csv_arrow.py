"""CSV read by Arrow block by block gives the records that reading row by row with the csv module gives."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.read import CsvSplits, InputFile, RawChunk, read_chunks

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
