"""Reading a JSON-lines or CSV file in splits gives exactly the records, lines and tables of reading it whole."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.commit import Ledger
from pipelines.run import RunOptions, plan_run, run
from tests.conftest import record, write_jsonl
from transforms.layout import OutputLayout
from transforms.read import CsvSplits, InputFile, LineSplits, even_cuts, read_chunks


def _records(source: InputFile) -> list[tuple[int, bytes | str]]:
    return [(line, raw) for chunk in read_chunks(source, chunk_records=3) for line, raw in zip(chunk.lines, chunk.raws)]


def _blank(source: InputFile) -> int:
    return sum(chunk.blank_lines for chunk in read_chunks(source, chunk_records=3))


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.sampled_from([b"{}", b"", b"  ", b'{"a": 1}', b"x" * 40, b"\r"]), max_size=40),
       target=st.integers(1, 64), block=st.integers(1, 50), bom=st.booleans(), tail=st.booleans())
def test_splits_read_the_same_records_as_the_whole_file(tmp_path_factory, lines: list[bytes], target: int, block: int,
                                                        bom: bool, tail: bool) -> None:
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + (b"\n" if tail and lines else b"")
    path = tmp_path_factory.mktemp("splits") / "a.jsonl"
    path.write_bytes(data)
    finder = LineSplits(target)
    for at in range(0, len(data), block):
        finder.feed(data[at:at + block])
    whole = InputFile(0, str(path))
    pieces = whole.splits(finder.finish())
    assert pieces[0].start == 0 and pieces[-1].end is None
    assert all(a.end == b.start for a, b in zip(pieces, pieces[1:]))
    assert [r for piece in pieces for r in _records(piece)] == _records(whole)
    assert sum(_blank(piece) for piece in pieces) == _blank(whole)


def _run_read_back(path: Path, out: Path, config_file: Path, split_bytes: int) -> tuple:
    """A run of one file in splits of ``split_bytes``: its counts, and its rows and rejects as DuckDB reads them."""
    result = run(RunOptions(inputs=(str(path),), output=str(out), workstreams=str(config_file), split_bytes=split_bytes,
                            run_id="r"), ["--direct_num_workers=1"])
    return (result.manifest["counts"],
            duckdb.sql(f"select * from read_parquet('{out}/task_completed/**/*.parquet') order by all").fetchall(),
            duckdb.sql(f"select * from read_parquet('{out}/rejects/**/*.parquet') order by all").fetchall())


def test_a_run_in_tiny_splits_writes_the_same_tables(tmp_path: Path, config_file: Path) -> None:
    rows = [record(unique_id=f"u{i % 7}", worker_id=f"w{i}", replace_duplicate=i % 3 != 0) for i in range(60)]
    rows[10] = "not json"
    rows[20] = ""
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    outputs = [_run_read_back(path, tmp_path / name, config_file, split_bytes)
               for name, split_bytes in (("whole", 1 << 30), ("split", 200))]
    assert outputs[0] == outputs[1]
    assert outputs[0][0]["written"] == 7 and outputs[0][0]["blank_lines"] == 1


def _csv_rows(source: InputFile) -> list[tuple]:
    """Everything a CSV chunk tells of its records: numbers, raw text, cells, problems, the header."""
    return [(line, raw, chunk.row_cells(i), problem, chunk.header) for chunk in read_chunks(source, chunk_records=3)
            for i, (line, raw, problem) in enumerate(zip(chunk.lines, chunk.raws, chunk.problems))]


def _csv_pieces(path: Path, data: bytes, target: int, block: int) -> tuple[InputFile, list[InputFile]]:
    path.write_bytes(data)
    finder = CsvSplits(target)
    for at in range(0, len(data), block):
        finder.feed(data[at:at + block])
    whole = InputFile(0, str(path))
    return whole, whole.splits(finder.finish())


def _same_when_split(whole: InputFile, pieces: list[InputFile]) -> None:
    assert pieces[0].start == 0 and pieces[-1].end is None
    assert all(a.end == b.start for a, b in zip(pieces, pieces[1:]))
    assert [r for piece in pieces for r in _csv_rows(piece)] == _csv_rows(whole)
    assert sum(_blank(piece) for piece in pieces) == _blank(whole)


_CELLS = st.text(st.sampled_from(['a', ',', '"', '\n', '\r', ' ', '\xe9', '\udcff', '\x00']), max_size=6)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.lists(_CELLS, min_size=1, max_size=4), min_size=1, max_size=12),
       crlf=st.booleans(), bom=st.booleans(), target=st.integers(1, 64), block=st.integers(1, 50))
def test_csv_splits_read_the_same_rows_as_the_whole_file(tmp_path_factory, rows: list[list[str]], crlf: bool,
                                                         bom: bool, target: int, block: int) -> None:
    """Files as a spreadsheet writes them (quoted cells with commas, quotes and line breaks, bytes
    that are not UTF-8, rows of the wrong width): cut wherever a row ends, the same rows."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n" if crlf else "\n").writerows(rows)
    data = (b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode("utf-8", errors="surrogateescape")
    whole, pieces = _csv_pieces(tmp_path_factory.mktemp("csv") / "a.csv", data, target, block)
    regular = b"\x00" not in data and b"\r" not in data.replace(b"\r\n", b"")
    if regular and target < len(data) // 2 and len(rows) > 3:
        assert len(pieces) > 1  # the test exercises cuts
    _same_when_split(whole, pieces)


@settings(max_examples=300, deadline=None)
@given(tokens=st.lists(st.sampled_from([b"a", b",", b'"', b'""', b"\n", b"\r\n", b"\r", b"\x00", b"\xff\xfe", b" ",
                                        b"\xef\xbb\xbf", b'"x\ny"']), max_size=60),
       target=st.integers(1, 32), block=st.integers(1, 20))
def test_csv_splits_of_any_bytes_read_the_same_rows(tmp_path_factory, tokens: list[bytes], target: int,
                                                    block: int) -> None:
    """Stray quotes, lone carriage returns, NULs, UTF-16 marks mid-file: either the cuts are safe,
    or the file is not cut."""
    whole, pieces = _csv_pieces(tmp_path_factory.mktemp("csv") / "a.csv", b"".join(tokens), target, block)
    _same_when_split(whole, pieces)


def test_a_csv_file_with_irregular_quoting_is_not_cut(tmp_path: Path) -> None:
    """Each of these would put a cut where the csv module does not end a row, or shift the rows
    after it: a quote inside an unquoted cell, text after a closing quote, a lone carriage
    return, a NUL, a quote left open. Whatever block holds which byte, the file is not cut."""
    rows = b"a,b\n" + b"1,2\n" * 50
    for irregular in (b'x"y,2\n', b'x","",\n' + rows[4:] + b'y",2\n', b'"a"b,"c\nd",e\n', b"1\r2,3\n",
                      b"1\x00,2\n", b'"open,2\n'):
        for block in range(1, 12):
            whole, pieces = _csv_pieces(tmp_path / "a.csv", rows + irregular + rows, 16, block)
            assert len(pieces) == 1, (irregular, block)
            _same_when_split(whole, whole.splits([(len(rows), 51)]) if irregular.count(b"\n") == 1 else pieces)
    _, pieces = _csv_pieces(tmp_path / "a.csv", b"\xff\xfe" + rows, 16, 7)
    assert len(pieces) == 1
    _, pieces = _csv_pieces(tmp_path / "a.csv", rows + b'"x\n""y"",z",2\n' + rows, 16, 7)
    assert len(pieces) > 10


def test_a_csv_run_in_tiny_splits_writes_the_same_tables(tmp_path: Path, config_file: Path) -> None:
    rows = [record(unique_id=f"u{i % 7}", worker_id=f"w{i}", replace_duplicate=i % 3 != 0,
                   task_id=f'line one\nline "two", {i}') for i in range(60)]
    names = list(rows[0])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for i, row in enumerate(rows):
        writer.writerow([row[name] for name in names] + (["surplus"] if i == 10 else []))
        if i == 20:
            buffer.write("\n")
    path = tmp_path / "a.csv"
    path.write_text(buffer.getvalue())
    outputs = [_run_read_back(path, tmp_path / name, config_file, split_bytes)
               for name, split_bytes in (("whole", 1 << 30), ("split", 300))]
    assert outputs[0] == outputs[1]
    assert outputs[0][0]["written"] == 7 and outputs[0][0]["blank_lines"] == 1
    assert [row[3:5] for row in outputs[1][2]] == [("malformed_csv", None)]


def test_even_cuts_pick_the_candidates_nearest_even_splits() -> None:
    candidates = [(offset, offset // 10) for offset in range(10, 1000, 10)]
    assert even_cuts(candidates, 1000, 160) == [(140, 14), (290, 29), (430, 43), (570, 57), (710, 71), (860, 86)]
    assert even_cuts(candidates, 1000, 1000) == [] and even_cuts([], 1000, 100) == []
    assert even_cuts([(500, 3)], 1000, 100) == [(500, 3)]  # no two cuts at one candidate


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_a_file_is_planned_in_splits_of_about_one_size(tmp_path: Path, kind: str) -> None:
    """Fixed-size splits leave a short remainder per file; even ones keep the workers evenly loaded."""
    line = b'{"a": 1}' if kind == "jsonl" else b'1,"two\nlines",3'
    data = (b"a,b,c\n" if kind == "csv" else b"") + b"\n".join([line] * 4000) + b"\n"
    paths = [tmp_path / f"{n}.{kind}" for n in range(3)]
    for n, path in enumerate(paths):
        path.write_bytes(data * (n + 1))
    plan = plan_run([InputFile(n, str(p)) for n, p in enumerate(paths)], Ledger(OutputLayout(str(tmp_path / "out"))),
                    reprocess=False, split_bytes=10_000)
    for path in paths:
        pieces = [s for s in plan.splits if s.path == str(path)]
        sizes = [(s.end or path.stat().st_size) - s.start for s in pieces]
        assert len(pieces) == -(-path.stat().st_size // 10_000)
        assert max(sizes) - min(sizes) <= 2 * (10_000 // 32 + len(line) + 1), sizes  # each end near its ideal
        assert [r for piece in pieces for r in (_csv_rows if kind == "csv" else _records)(piece)] \
            == (_csv_rows if kind == "csv" else _records)(InputFile(0, str(path)))


def test_a_csv_split_reads_a_header_longer_than_its_first_read(tmp_path: Path) -> None:
    header = b'a,"' + b"b" * 70_000 + b'\nc"\n'  # a split reads the header in 64 KiB blocks
    whole, pieces = _csv_pieces(tmp_path / "a.csv", header + b'1,"x\ny"\n' * 300, 1_000, 4096)
    assert len(pieces) > 2 and pieces[-1].first_line > 2
    _same_when_split(whole, pieces)
    assert _csv_rows(pieces[-1])[0][4] == ("a", "b" * 70_000 + "\nc")
