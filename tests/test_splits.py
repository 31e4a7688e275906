"""Reading a JSON-lines file in splits gives exactly the records, lines and tables of reading it whole."""

from __future__ import annotations

from pathlib import Path

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.run import RunOptions, run
from tests.conftest import record, write_jsonl
from transforms.read import InputFile, LineSplits, read_chunks


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


def test_a_run_in_tiny_splits_writes_the_same_tables(tmp_path: Path, config_file: Path) -> None:
    rows = [record(unique_id=f"u{i % 7}", worker_id=f"w{i}", replace_duplicate=i % 3 != 0) for i in range(60)]
    rows[10] = "not json"
    rows[20] = ""
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    outputs = []
    for name, split_bytes in (("whole", 1 << 30), ("split", 200)):
        out = tmp_path / name
        result = run(RunOptions(inputs=(str(path),), output=str(out), workstreams=str(config_file), split_bytes=split_bytes,
                                run_id="r"), ["--direct_num_workers=1"])
        outputs.append((result.manifest["counts"], duckdb.sql(
            f"select * from read_parquet('{out}/task_completed/**/*.parquet') order by all").fetchall(), duckdb.sql(
            f"select * from read_parquet('{out}/rejects/**/*.parquet') order by all").fetchall()))
    assert outputs[0] == outputs[1]
    assert outputs[0][0]["written"] == 7 and outputs[0][0]["blank_lines"] == 1
