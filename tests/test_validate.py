"""ValidateRecords / validate_chunk (SPEC 1, 3) and DeriveDurations."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from pydantic import BeforeValidator, Field

from schemas.config import WorkstreamConfig
from schemas.record import TaskCompleted
from schemas.tables import TASK_COMPLETED
from tests.conftest import TD, TD2, UC, WS, record, write_jsonl
from transforms.durations import DeriveDurations, derive_durations
from transforms.read import InputFile, RawChunk, read_chunks
from transforms.validate import (
    ACCEPTED_SCHEMA,
    REJECTS_SCHEMA,
    ChunkValidator,
    ValidateRecords,
    sequence_number,
    validate_chunk,
)

UTC = timezone.utc


def _raw(row: Any) -> bytes:
    if isinstance(row, bytes):
        return row
    if isinstance(row, str):
        return row.encode()
    return json.dumps(row).encode()


def jsonl_chunk(rows: list[Any], source: str = "in/a.jsonl", file_index: int = 0, first_line: int = 1,
                path_ws: str | None = None, blank_lines: int = 0) -> RawChunk:
    """A JSONL chunk as ``read_chunks`` would build it; rows are dicts, str or bytes lines."""
    chunk = RawChunk(source, file_index, "jsonl", path_ws, blank_lines=blank_lines)
    for offset, row in enumerate(rows):
        chunk.lines.append(first_line + offset)
        chunk.raws.append(_raw(row))
        chunk.cells.append(None)
        chunk.problems.append(None)
    return chunk


def _one_chunk(path: Path, **kw) -> RawChunk:
    chunks = list(read_chunks(InputFile(0, str(path)), **kw))
    assert len(chunks) == 1
    return chunks[0]


def _sum_counts(counts: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {"read": 0, "blank_lines": 0, "rejected": 0, "rejected_by_code": {}}
    for chunk_counts in counts:
        for name in ("read", "blank_lines", "rejected"):
            total[name] += chunk_counts[name]
        for code, n in chunk_counts["rejected_by_code"].items():
            total["rejected_by_code"][code] = total["rejected_by_code"].get(code, 0) + n
    return total


def _rejects(batch: pa.RecordBatch) -> list[tuple]:
    return [(r["source_line"], r["error_code"], r["error_field"]) for r in batch.to_pylist()]


# --- validate_chunk ----------------------------------------------------------------------------


def test_accepted_rows_are_normalized_with_lineage(config: WorkstreamConfig) -> None:
    chunk = jsonl_chunk([
        record(worker_id="  Someone@Example.COM ", task_count="10", subtask_count=3.0, unique_id=" u1 ",
               replace_duplicate="no", task_metadata={"k": 1, "s": "v", "n": None}, data_source="",
               task_started_at="2020-12-22 09:13:24.127+05:45", extra_col=[1, 2]),
    ], source="in/x.jsonl", file_index=3, first_line=7)
    accepted, rejects, counts = validate_chunk(chunk, config)
    assert accepted.schema.equals(ACCEPTED_SCHEMA)
    assert rejects.num_rows == 0 and rejects.schema.equals(REJECTS_SCHEMA)
    [row] = accepted.to_pylist()
    assert row["workstream_id"] == WS
    assert row["worker_id"] == "someone@example.com"
    assert row["task_count"] == 10 and row["subtask_count"] == 3
    assert row["unique_id"] == "u1"
    assert row["replace_duplicate"] is False
    assert row["data_source"] is None  # blank string is absent
    assert dict(row["task_metadata"]) == {"k": "1", "s": "v", "n": "null"}
    assert row["task_started_at"] == datetime(2020, 12, 22, 3, 28, 24, 127000, tzinfo=UTC)
    assert row["task_completed_at"] == datetime(2020, 12, 22, 10, 13, 24, 127000, tzinfo=UTC)
    assert row["duration"] is None  # derived later
    assert json.loads(row["extra_fields"]) == {"extra_col": [1, 2]}
    assert (row["source_file"], row["source_line"]) == ("in/x.jsonl", 7)
    assert row["_seq"] == sequence_number(3, 7)
    assert counts == {"read": 1, "blank_lines": 0, "rejected": 0, "rejected_by_code": {}}


def test_rejects_carry_code_field_message_raw_and_counts(config: WorkstreamConfig) -> None:
    bad_types = record(worker_id=5, task_count=-1)
    rows = [
        record(),                       # 1 accepted
        b'{"worker_id": ',              # 2 malformed_json
        b"[1, 2]",                      # 3 not_an_object
        b"42",                          # 4 not_an_object
        b'"text"',                      # 5 not_an_object
        b"null",                        # 6 not_an_object
        bad_types,                      # 7 invalid_type first (worker_id before task_count)
        record(task_count=10.5),        # 8 invalid_value
        record(task_started_at="2020-12-22"),  # 9 invalid_timestamp
        record(task_completed_at="2020-12-22T08:00:00Z"),  # 10 completed_before_started
        record(workstream_id="ws-nope"),  # 11 unknown_workstream
        record(use_case_id=None),       # 12 missing_field
    ]
    chunk = jsonl_chunk(rows, blank_lines=2)
    accepted, rejects, counts = validate_chunk(chunk, config)
    assert accepted.column("source_line").to_pylist() == [1]
    assert _rejects(rejects) == [
        (2, "malformed_json", None),
        (3, "not_an_object", None),
        (4, "not_an_object", None),
        (5, "not_an_object", None),
        (6, "not_an_object", None),
        (7, "invalid_type", "worker_id"),
        (8, "invalid_value", "task_count"),
        (9, "invalid_timestamp", "task_started_at"),
        (10, "completed_before_started", "task_completed_at"),
        (11, "unknown_workstream", "workstream_id"),
        (12, "missing_field", "use_case_id"),
    ]
    by_line = {r["source_line"]: r for r in rejects.to_pylist()}
    assert by_line[2]["raw"] == '{"worker_id": '
    assert by_line[3]["raw"] == "[1, 2]"
    assert by_line[7]["raw"] == json.dumps(bad_types)
    # every problem is listed, the first code is the first by field order
    assert "worker_id" in by_line[7]["error_message"] and "task_count" in by_line[7]["error_message"]
    assert by_line[7]["error_message"].index("worker_id") < by_line[7]["error_message"].index("task_count")
    assert by_line[7]["workstream_id"] == WS
    assert by_line[11]["workstream_id"] == "ws-nope"
    assert by_line[2]["workstream_id"] is None
    assert all(r["source_file"] == "in/a.jsonl" for r in rejects.to_pylist())
    assert all(r["error_message"] for r in rejects.to_pylist())
    assert rejects.column("_seq").to_pylist() == [sequence_number(0, line) for line in range(2, 13)]
    assert counts == {
        "read": 12, "blank_lines": 2, "rejected": 11,
        "rejected_by_code": {"malformed_json": 1, "not_an_object": 4, "invalid_type": 1, "invalid_value": 1,
                             "invalid_timestamp": 1, "completed_before_started": 1, "unknown_workstream": 1,
                             "missing_field": 1},
    }
    assert counts["read"] == accepted.num_rows + rejects.num_rows


def test_invalid_encoding_in_a_jsonl_line(config: WorkstreamConfig, tmp_path: Path) -> None:
    good = json.dumps(record()).encode()
    bad = json.dumps(record(task_id="XX")).encode().replace(b"XX", b"\xff\xfe")
    path = tmp_path / "a.jsonl"
    path.write_bytes(good + b"\n" + bad + b"\n" + good + b"\n")
    accepted, rejects, counts = validate_chunk(_one_chunk(path), config)
    assert accepted.column("source_line").to_pylist() == [1, 3]
    [reject] = rejects.to_pylist()
    assert (reject["source_line"], reject["error_code"]) == (2, "invalid_encoding")
    assert "\ufffd" in reject["raw"] and reject["raw"].startswith('{"workstream_id": "ws-ner"')
    assert reject["raw"].encode("utf-8")  # storable text
    assert counts["rejected_by_code"] == {"invalid_encoding": 1}


def test_invalid_encoding_in_a_csv_row(config: WorkstreamConfig, tmp_path: Path) -> None:
    header = "workstream_id,worker_id,use_case_id,task_definition_id,task_started_at,task_completed_at,task_id"
    good = f"{WS},w1,{UC},{TD},2020-12-22T09:00:00Z,2020-12-22T10:00:00Z,t1"
    path = tmp_path / "a.csv"
    path.write_bytes(f"{header}\n{good}\n".encode() + f"{good[:-2]}".encode() + b"t\xff\n" + f"{good}\n".encode())
    accepted, rejects, counts = validate_chunk(_one_chunk(path), config)
    assert accepted.column("source_line").to_pylist() == [2, 4]
    [reject] = rejects.to_pylist()
    assert (reject["source_line"], reject["error_code"]) == (3, "invalid_encoding")
    assert reject["raw"] == f"{good[:-2]}t\ufffd"
    assert counts == {"read": 3, "blank_lines": 0, "rejected": 1, "rejected_by_code": {"invalid_encoding": 1}}


def test_csv_rows_validate_with_empty_cells_absent_and_text_values(config: WorkstreamConfig, tmp_path: Path) -> None:
    header = ("worker_id,use_case_id,task_definition_id,task_started_at,task_completed_at,"
              "task_count,duration,replace_duplicate,task_metadata,unique_id,data_source")
    rows = [
        f'W@X.org,{UC},{TD},2020-12-22T09:00:00Z,2020-12-22T10:00:00Z,,,YES,"{{""a"": 1}}",u1,',
        f"w2,{UC},{TD2},2020-12-22 09:00,2020-12-22 09:30,7,12.5,0,,,csv_manual",
        f"w3,{UC},{TD},2020-12-22T09:00:00Z,2020-12-22T10:00:00Z,ten,,,,,",
        f"w4,{UC},{TD},2020-12-22T09:00:00Z,2020-12-22T10:00:00Z,1,,,,,email",
    ]
    path = tmp_path / f"workstream_id={WS}" / "a.csv"
    path.parent.mkdir()
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    accepted, rejects, counts = validate_chunk(_one_chunk(path), config)
    got = accepted.to_pylist()
    assert [r["source_line"] for r in got] == [2, 3]
    assert [r["workstream_id"] for r in got] == [WS, WS]  # from the path
    assert [r["worker_id"] for r in got] == ["w@x.org", "w2"]
    assert [r["task_count"] for r in got] == [1, 7]  # empty cell: the default
    assert [r["duration"] for r in got] == [None, 12.5]
    assert [r["replace_duplicate"] for r in got] == [True, False]
    assert dict(got[0]["task_metadata"]) == {"a": "1"} and got[1]["task_metadata"] is None
    assert [r["unique_id"] for r in got] == ["u1", None]
    assert [r["data_source"] for r in got] == [None, "csv_manual"]
    assert got[1]["task_started_at"] == datetime(2020, 12, 22, 9, 0, tzinfo=UTC)
    assert _rejects(rejects) == [(4, "invalid_type", "task_count"), (5, "invalid_data_source", "data_source")]
    assert {r["workstream_id"] for r in rejects.to_pylist()} == {WS}
    assert counts["read"] == 4


def test_read_time_problems_become_rejects(config: WorkstreamConfig, tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b'worker_id,task_id\nw1,"x"y\nw2\n' + b"z" * 40 + b",1\n")
    accepted, rejects, counts = validate_chunk(_one_chunk(path, max_record_bytes=30), config)
    assert accepted.num_rows == 0
    assert [r[:2] for r in _rejects(rejects)] == [(2, "malformed_csv"), (3, "malformed_csv"), (4, "record_too_large")]
    assert rejects.column("raw").to_pylist() == ['w1,"x"y', "w2", "z" * 40 + ",1"]
    assert counts["rejected_by_code"] == {"malformed_csv": 2, "record_too_large": 1}


def test_workstream_from_path_then_run_option(config: WorkstreamConfig) -> None:
    body = record(workstream_id=None, use_case_id="uc-audio", task_definition_id="td-transcribe")
    from_path, _, _ = validate_chunk(jsonl_chunk([body], path_ws="ws-audio"), config, run_workstream=WS)
    assert from_path.column("workstream_id").to_pylist() == ["ws-audio"]
    from_run, _, _ = validate_chunk(jsonl_chunk([body]), config, run_workstream="ws-audio")
    assert from_run.column("workstream_id").to_pylist() == ["ws-audio"]
    own, _, _ = validate_chunk(jsonl_chunk([record()]), config, run_workstream="ws-audio")
    assert own.column("workstream_id").to_pylist() == [WS]
    _, none, _ = validate_chunk(jsonl_chunk([body]), config)
    assert _rejects(none) == [(1, "missing_workstream_id", "workstream_id")]


def test_default_timezone_applies_to_naive_datetimes_only(config: WorkstreamConfig) -> None:
    chunk = jsonl_chunk([record(task_started_at="2020-12-22T09:00:00", task_completed_at="2020-12-22T09:30:00Z")])
    accepted, _, _ = validate_chunk(chunk, config, default_tz=ZoneInfo("Asia/Kathmandu"))
    [row] = accepted.to_pylist()
    assert row["task_started_at"] == datetime(2020, 12, 22, 3, 15, tzinfo=UTC)
    assert row["task_completed_at"] == datetime(2020, 12, 22, 9, 30, tzinfo=UTC)


def test_sequence_number_orders_by_file_then_line() -> None:
    pairs = [(0, 1), (0, 2), (0, 10**6), (0, 2**40 - 1), (1, 1), (1, 2), (2, 1), (2**22, 5)]
    seqs = [sequence_number(f, line) for f, line in pairs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(s < 2**63 for s in seqs)


# --- derive_durations --------------------------------------------------------------------------


def test_derive_durations_only_where_absent(config: WorkstreamConfig) -> None:
    chunk = jsonl_chunk([
        record(task_started_at="2020-12-22T09:00:00.000001Z", task_completed_at="2020-12-22T09:00:02.5Z"),
        record(duration=0),
        record(duration="7.25"),
        record(task_started_at="2020-12-22T09:00:00+05:45", task_completed_at="2020-12-22T03:15:30Z"),
        record(task_started_at="2020-12-20T23:59:59.999999Z", task_completed_at="2020-12-22T00:00:00Z"),
        record(duration=3.5, task_started_at="2020-12-22T09:00:00Z", task_completed_at="2020-12-22T09:00:00Z"),
    ])
    accepted, _, _ = validate_chunk(chunk, config)
    out = derive_durations(accepted)
    assert out.column("duration").to_pylist() == [2_499_999 / 1_000_000, 0.0, 7.25, 30.0, 86400 + 0.000001, 3.5]
    assert out.column("duration_derived").to_pylist() == [True, False, False, True, True, False]
    assert out.schema.field("duration").type == pa.float64()
    assert not out.schema.field("duration").nullable
    assert out.schema.field("duration_derived").equals(TASK_COMPLETED.schema.field("duration_derived"))
    assert out.schema.names == [*ACCEPTED_SCHEMA.names, "duration_derived"]
    # everything else untouched
    assert out.drop_columns(["duration", "duration_derived"]).equals(accepted.drop_columns(["duration"]))


def test_derive_durations_on_an_empty_batch(config: WorkstreamConfig) -> None:
    accepted, _, _ = validate_chunk(jsonl_chunk([b"not json"]), config)
    out = derive_durations(accepted)
    assert out.num_rows == 0
    assert "duration_derived" in out.schema.names


# --- the Beam transforms -----------------------------------------------------------------------


def test_validate_records_and_derive_durations_transforms(config: WorkstreamConfig, tmp_path: Path) -> None:
    jsonl = jsonl_chunk([
        record(task_id="a1"),
        b"{oops",
        record(task_id="a3", duration=5),
        record(task_id="a4", task_count="ten"),
    ], source="in/a.jsonl", file_index=0, blank_lines=1)
    csv_path = tmp_path / "b.csv"
    csv_path.write_text(
        "worker_id,use_case_id,task_definition_id,task_started_at,task_completed_at\n"
        "w-csv,uc-audio,td-transcribe,2020-12-22 09:00:00,2020-12-22 09:00:01.25\n")
    csv_chunk = _one_chunk(csv_path)
    only_rejects = jsonl_chunk([b"[]", record(worker_id="")], source="in/c.jsonl", file_index=2, blank_lines=3)
    expected_counts = {
        "read": 7, "blank_lines": 4, "rejected": 4,
        "rejected_by_code": {"malformed_json": 1, "invalid_type": 1, "not_an_object": 1, "missing_field": 1},
    }

    # One assert_that over every output, each element tagged by what it describes (one match stage is
    # much cheaper than one per output).
    with BeamTestPipeline(runner="FnApiRunner") as pipeline:
        chunks = pipeline | beam.Create([jsonl, csv_chunk, only_rejects])
        validated = chunks | ValidateRecords(config, timezone_name="Asia/Kathmandu", run_workstream="ws-audio")
        derived = validated.accepted | DeriveDurations()
        rows = derived | "AcceptedRows" >> beam.FlatMap(lambda b: [
            ("row", r["source_file"], r["source_line"], r["workstream_id"], r["task_id"],
             r["task_started_at"].isoformat(), r["duration"], r["duration_derived"]) for r in b.to_pylist()])
        shapes = validated.accepted | "Shapes" >> beam.Map(
            lambda b: ("accepted_batch", type(b).__name__, b.schema.equals(ACCEPTED_SCHEMA), b.num_rows))
        rejects = validated.rejects | "RejectRows" >> beam.FlatMap(lambda b: [
            ("reject", r["source_file"], r["source_line"], r["error_code"], r["error_field"], r["raw"])
            for r in b.to_pylist()])
        reject_shapes = validated.rejects | "RejectSchemas" >> beam.Map(
            lambda b: ("rejects_batch", b.schema.equals(REJECTS_SCHEMA)))
        total = validated.counts | beam.combiners.ToList() | "Total" >> beam.Map(
            lambda cs: ("counts", json.dumps(_sum_counts(cs), sort_keys=True)))
        per_chunk = validated.counts | "PerChunk" >> beam.Map(lambda c: ("chunk_read", c["read"]))
        everything = (rows, shapes, rejects, reject_shapes, total, per_chunk) | beam.Flatten()
        assert_that(everything, equal_to([
            ("row", "in/a.jsonl", 1, WS, "a1", "2020-12-22T09:13:24.127000+00:00", 3600.0, True),
            ("row", "in/a.jsonl", 3, WS, "a3", "2020-12-22T09:13:24.127000+00:00", 5.0, False),
            ("row", str(csv_path), 2, "ws-audio", None, "2020-12-22T03:15:00+00:00", 1.25, True),
            ("accepted_batch", "RecordBatch", True, 2),
            ("accepted_batch", "RecordBatch", True, 1),  # no empty batch for the chunk of rejects only
            ("reject", "in/a.jsonl", 2, "malformed_json", None, "{oops"),
            ("reject", "in/a.jsonl", 4, "invalid_type", "task_count", json.dumps(record(task_id="a4", task_count="ten"))),
            ("reject", "in/c.jsonl", 1, "not_an_object", None, "[]"),
            ("reject", "in/c.jsonl", 2, "missing_field", "worker_id", json.dumps(record(worker_id=""))),
            ("rejects_batch", True),
            ("rejects_batch", True),  # none for the CSV chunk, which has no reject
            ("counts", json.dumps(expected_counts, sort_keys=True)),
            ("chunk_read", 4), ("chunk_read", 1), ("chunk_read", 2),
        ]))


@pytest.mark.parametrize("bad", [b"\xff", b"\xc3(", b"\xed\xa0\x80"])
def test_invalid_utf8_sequences_are_invalid_encoding(config: WorkstreamConfig, bad: bytes) -> None:
    line = json.dumps(record(task_id="@@")).encode().replace(b"@@", bad)
    _, rejects, _ = validate_chunk(jsonl_chunk([line]), config)
    assert [r[1] for r in _rejects(rejects)] == ["invalid_encoding"]


def test_chunk_read_from_a_file_validates_end_to_end(config: WorkstreamConfig, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [record(), "", "{bad", record(task_id="x")])
    accepted, rejects, counts = validate_chunk(_one_chunk(path), config)
    assert accepted.column("source_line").to_pylist() == [1, 4]
    assert _rejects(rejects) == [(3, "malformed_json", None)]
    assert (counts["read"], counts["blank_lines"]) == (3, 1)


# --- one record never stops a run ---------------------------------------------------------------


def _both(chunk: RawChunk, config: WorkstreamConfig, **kw) -> tuple[pa.RecordBatch, pa.RecordBatch, dict[str, Any]]:
    """validate_chunk with and without the fast path: the same outcome, which is returned."""
    fast = validate_chunk(chunk, config, fast=True, **kw)
    slow = validate_chunk(chunk, config, fast=False, **kw)
    assert fast[0].to_pylist() == slow[0].to_pylist()
    assert fast[1].to_pylist() == slow[1].to_pylist()
    assert fast[2] == slow[2]
    accepted, rejects, counts = fast
    assert counts["read"] == len(chunk) == accepted.num_rows + rejects.num_rows
    return fast


def test_a_start_in_year_one_derives_a_duration(config: WorkstreamConfig) -> None:
    """A span of more than 2**53 microseconds used to fail the float cast, and with it the run."""
    chunk = jsonl_chunk([record(task_started_at="0001-01-01T00:00:00Z", task_completed_at="2024-01-01T00:00:00Z"),
                         record(task_started_at="0001-01-01T00:00:00Z", task_completed_at="9999-12-31T23:59:59.999999Z"),
                         record()])
    accepted, _, _ = _both(chunk, config)
    out = derive_durations(accepted)
    span = datetime(2024, 1, 1, tzinfo=UTC) - datetime(1, 1, 1, tzinfo=UTC)
    longest = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - datetime(1, 1, 1, tzinfo=UTC)
    assert out.column("duration").to_pylist() == [span.total_seconds(), longest.total_seconds(), 3600.0]
    assert out.column("duration_derived").to_pylist() == [True, True, True]


@pytest.mark.parametrize("text", ["[" * 10_000 + "]" * 10_000, '{"a": ' + "[" * 10_000 + "]" * 10_000 + "}"])
def test_task_metadata_nested_too_deep_is_a_reject(config: WorkstreamConfig, tmp_path: Path, text: str) -> None:
    chunk = jsonl_chunk([record(task_id="before"), record(task_metadata=text), record(task_id="after")])
    accepted, rejects, counts = _both(chunk, config)
    assert accepted.column("task_id").to_pylist() == ["before", "after"]
    [reject] = rejects.to_pylist()
    assert (reject["source_line"], reject["error_code"], reject["error_field"]) == (2, "invalid_value", "task_metadata")
    assert "nested too deep" in reject["error_message"]
    # the same JSON text in a CSV cell
    header = "workstream_id,worker_id,use_case_id,task_definition_id,task_started_at,task_completed_at,task_metadata"
    row = f"{WS},w1,{UC},{TD},2020-12-22T09:00:00Z,2020-12-22T10:00:00Z"
    path = tmp_path / "a.csv"
    path.write_text(f'{header}\n{row},\n{row},"{text.replace(chr(34), chr(34) * 2)}"\n{row},\n')
    accepted, rejects, counts = _both(_one_chunk(path), config)
    assert accepted.column("source_line").to_pylist() == [2, 4]
    assert _rejects(rejects) == [(3, "invalid_value", "task_metadata")]
    assert "nested too deep" in rejects.column("error_message")[0].as_py()


_LONE = '"\\ud800"'  # a JSON string whose escape is a lone UTF-16 surrogate


@pytest.mark.parametrize(("name", "fragment"), [
    ("task_id", _LONE), ("worker_id", _LONE), ("unique_id", '"u\\udfff"'), ("task_started_at", '"2020-12-22T09:00:00Z\\ud800"'),
    ("task_metadata", '{"a": "\\ud800"}'), ("task_metadata", '{"\\ud800": 1}'),
    ("task_metadata", json.dumps('{"a": "\\ud800"}')),  # JSON text inside a string: json (not orjson) reads the escape
    ("task_measurements", json.dumps('{"a": ["\\udc00"]}')),
])
def test_a_lone_surrogate_is_invalid_encoding_of_its_field(config: WorkstreamConfig, name: str, fragment: str) -> None:
    body = json.dumps(record(**{name: None}))[:-1] + f', "{name}": {fragment}}}'
    chunk = jsonl_chunk([record(task_id="before"), body, record(task_id="after")])
    accepted, rejects, _ = _both(chunk, config)
    assert accepted.column("task_id").to_pylist() == ["before", "after"]
    assert _rejects(rejects) == [(2, "invalid_encoding", name)]
    [reject] = rejects.to_pylist()
    assert "not valid Unicode" in reject["error_message"] and reject["raw"] == body
    assert reject["error_message"].encode("utf-8") and reject["raw"].encode("utf-8")  # storable


def test_a_lone_surrogate_in_an_extra_field_is_kept_losslessly(config: WorkstreamConfig) -> None:
    body = json.dumps(record())[:-1] + ', "note": "x\\ud800"}'
    accepted, rejects, _ = _both(jsonl_chunk([body]), config)
    assert rejects.num_rows == 0
    assert accepted.column("extra_fields").to_pylist() == ['{"note":"x\\ud800"}']  # the escape, as it came


def test_a_field_name_that_is_not_unicode_is_invalid_encoding(config: WorkstreamConfig) -> None:
    body = json.dumps(record())[:-1] + ', "n\\ud800te": "x"}'
    _, rejects, _ = _both(jsonl_chunk([body]), config)
    assert _rejects(rejects) == [(1, "invalid_encoding", None)]
    assert "field name" in rejects.column("error_message")[0].as_py()


def test_a_lone_surrogate_escape_in_a_csv_cell_is_invalid_encoding(config: WorkstreamConfig, tmp_path: Path) -> None:
    header = "workstream_id,worker_id,use_case_id,task_definition_id,task_started_at,task_completed_at,task_metadata"
    row = f"{WS},w1,{UC},{TD},2020-12-22T09:00:00Z,2020-12-22T10:00:00Z"
    path = tmp_path / "a.csv"
    path.write_text(f'{header}\n{row},\n{row},"{{""a"": ""\\ud800""}}"\n{row},"{{""a"": ""ok""}}"\n')
    accepted, rejects, _ = _both(_one_chunk(path), config)
    assert accepted.column("source_line").to_pylist() == [2, 4]
    assert _rejects(rejects) == [(3, "invalid_encoding", "task_metadata")]


def test_invalid_utf8_in_a_csv_cell_names_its_column(config: WorkstreamConfig, tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes("worker_id,task_id\nw1,t\xff\n".encode("latin-1"))
    _, rejects, _ = _both(_one_chunk(path), config, run_workstream=WS)
    assert _rejects(rejects) == [(2, "invalid_encoding", None)]  # the row's bytes, as for a JSON line
    assert rejects.column("error_message")[0].as_py() == "row is not valid UTF-8: the cell of column 'task_id' is 't\ufffd'"


@pytest.mark.parametrize(("data", "message"), [
    (b"worker_id\xff,task_id\nw1,t1\nw2,t2\n", "the header row is not valid UTF-8 (column 1); save the file as UTF-8"),
    ("worker_id,task_id\r\nw1,t1\r\nw2,t2\r\n".encode("utf-16"), "the file is UTF-16 (byte-order mark FF FE); save it as UTF-8"),
    (b"\xff\xfe" + "worker_id,task_id\nw1,t1\nw2,t2\n".encode("utf-16-le"),
     "the file is UTF-16 (byte-order mark FF FE); save it as UTF-8"),
    (b"\xfe\xff" + "worker_id,task_id\nw1,t1\nw2,t2".encode("utf-16-be"),
     "the file is UTF-16 (byte-order mark FE FF); save it as UTF-8"),
])
def test_a_csv_file_that_is_not_utf8_rejects_every_row_with_the_reason(config: WorkstreamConfig, tmp_path: Path,
                                                                       data: bytes, message: str) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(data)
    accepted, rejects, counts = _both(_one_chunk(path), config, run_workstream=WS)
    assert accepted.num_rows == 0
    assert [(r["source_line"], r["error_code"], r["error_message"]) for r in rejects.to_pylist()] == [
        (2, "invalid_encoding", message), (3, "invalid_encoding", message)]
    assert rejects.column("raw").to_pylist() == ["w1,t1", "w2,t2"]
    assert counts == {"read": 2, "blank_lines": 0, "rejected": 2, "rejected_by_code": {"invalid_encoding": 2}}


def test_when_the_fast_path_fails_the_model_decides_every_record(config: WorkstreamConfig,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    chunk = jsonl_chunk([record(task_id="a"), record(task_count="ten"), record(task_id="c")])
    expected = validate_chunk(chunk, config, fast=False)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("fast path bug")

    monkeypatch.setattr("schemas.fast_validate.Certifier.certify", broken)
    accepted, rejects, counts = validate_chunk(chunk, config, fast=True)
    assert accepted.column("task_id").to_pylist() == ["a", "c"]
    assert accepted.to_pylist() == expected[0].to_pylist()
    assert rejects.to_pylist() == expected[1].to_pylist() and counts == expected[2]


def test_an_unexpected_error_on_one_record_rejects_that_record_only(config: WorkstreamConfig,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import transforms.validate as validate_module

    real = validate_module.validate_record

    def flaky(data: Any, *args: Any) -> Any:
        if isinstance(data, dict) and data.get("task_id") == "boom":
            raise KeyError("a bug in a rule")
        return real(data, *args)

    monkeypatch.setattr(validate_module, "validate_record", flaky)
    chunk = jsonl_chunk([record(task_id="a"), record(task_id="boom"), record(task_id="c", worker_id=" ")])
    accepted, rejects, counts = validate_chunk(chunk, config, fast=False)
    assert accepted.column("task_id").to_pylist() == ["a"]
    assert _rejects(rejects) == [(2, "invalid_value", None), (3, "missing_field", "worker_id")]
    assert "KeyError" in rejects.column("error_message")[0].as_py()
    assert counts["read"] == accepted.num_rows + rejects.num_rows == 3


class _Unchecked(TaskCompleted):
    """A newcomer's field without a kind, whose rule forgets to check the text's encoding."""

    note: Annotated[str | None, BeforeValidator(lambda value: value)] = Field(None, description="Free text")


def test_a_row_arrow_cannot_store_is_rejected_and_its_neighbours_kept(config: WorkstreamConfig) -> None:
    """The model accepts the lone surrogate here; building the batch fails, and only that row is rejected."""
    bad = json.dumps(record(task_id="b"))[:-1] + ', "note": "\\ud800"}'
    chunk = jsonl_chunk([record(task_id="a", note="fine"), bad, record(task_id="c")])
    accepted, rejects, counts = _both(chunk, config, model=_Unchecked)
    assert [(r["task_id"], r["note"]) for r in accepted.to_pylist()] == [("a", "fine"), ("c", None)]
    assert _rejects(rejects) == [(2, "invalid_encoding", "note")]
    assert counts == {"read": 3, "blank_lines": 0, "rejected": 1, "rejected_by_code": {"invalid_encoding": 1}}


def test_context_and_fast_path_lookups_are_built_once_per_validator(config: WorkstreamConfig,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas import fast_validate

    built = []
    real_init = fast_validate.Certifier.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        built.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(fast_validate.Certifier, "__init__", counting)
    validator = ChunkValidator(config)
    for file_index in range(3):
        accepted, _, _ = validator.validate(jsonl_chunk([record(), record(task_id="x")], file_index=file_index))
        assert accepted.num_rows == 2
    assert built == [1]


def test_cycle_collection_is_off_only_while_a_chunk_is_validated() -> None:
    """The worker turns the collector off around one chunk and gives it back as it found it,
    also when validation raises."""
    import gc

    from transforms.validate import _no_cycle_collection

    assert gc.isenabled()
    with _no_cycle_collection():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), _no_cycle_collection():
        raise RuntimeError("validation failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with _no_cycle_collection():
            pass
        assert not gc.isenabled()  # it was off: left off
    finally:
        gc.enable()
