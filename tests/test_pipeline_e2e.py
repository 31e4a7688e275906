"""End to end: real files in a temp directory, the whole run, tables read back as an analyst would."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipelines.commit import RunError
from pipelines.run import RunOptions, run
from tests.conftest import TD2, record, write_jsonl


def _run(tmp_path: Path, config_file: Path, *patterns: str, **kw):
    options = RunOptions(inputs=patterns, output=str(tmp_path / "out"), workstreams=str(config_file), **kw)
    return run(options)


def _table(tmp_path: Path, name: str) -> list[dict]:
    glob = tmp_path / "out" / name / "**" / "*.parquet"
    relation = duckdb.sql(f"select * from read_parquet('{glob}', hive_partitioning=true)")
    return [dict(zip(relation.columns, row)) for row in relation.fetchall()]


def test_accepted_rejected_and_duplicates_reconcile(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "in" / "a.jsonl", [
        record(unique_id="u1", worker_id="First@Example.com"),
        record(unique_id="u1", worker_id="second@example.com"),  # replaces the first
        record(unique_id="u1", worker_id="third@example.com", replace_duplicate=False),  # ignored
        record(task_count=-1),
        "not json",
        "",
        record(duration=None),
    ])
    result = _run(tmp_path, config_file, str(tmp_path / "in" / "*.jsonl"))
    counts = result.manifest["counts"]
    assert counts == {**counts, "read": 6, "blank_lines": 1, "written": 2, "rejected": 2,
                      "superseded": 1, "ignored_duplicates": 1, "reconciles": True}
    rows = _table(tmp_path, "task_completed")
    assert sorted(r["worker_id"] for r in rows) == ["second@example.com", "worker@example.com"]
    rejects = _table(tmp_path, "rejects")
    assert sorted((r["source_line"], r["error_code"]) for r in rejects) == [(4, "invalid_value"), (5, "malformed_json")]
    manifest = json.loads(Path(result.manifest_path).read_text())
    assert manifest["tables"]["task_completed"]["rows"] == 2


def test_pandas_reads_the_partitioned_table(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "in" / "a.jsonl", [record(), record(task_definition_id=TD2, duration=12)])
    _run(tmp_path, config_file, str(tmp_path / "in" / "a.jsonl"))
    frame = pd.read_parquet(tmp_path / "out" / "task_completed")
    assert len(frame) == 2
    assert set(frame["workstream_id"].astype(str)) == {"ws-ner"}
    assert sorted(frame["duration"]) == [12.0, 3600.0]


def test_no_input_matched_is_a_run_error(tmp_path: Path, config_file: Path) -> None:
    with pytest.raises(RunError, match="no input file matched"):
        _run(tmp_path, config_file, str(tmp_path / "nothing" / "*.jsonl"))


# --- every SPEC 3 error code, end to end, with its reject row -------------------------------

_LONG = "x" * 400
JSONL_CASES = [
    ("malformed_json", None, '{"worker_id": "w",'),
    ("not_an_object", None, '["a", "list"]'),
    ("invalid_encoding", None, b'{"worker_id": "\xff"}'),
    ("record_too_large", None, json.dumps(record(task_url=_LONG))),
    ("missing_field", "worker_id", json.dumps(record(worker_id="  "))),
    ("invalid_type", "task_count", json.dumps(record(task_count="ten"))),
    ("invalid_value", "task_count", json.dumps(record(task_count=10.5))),
    ("invalid_timestamp", "task_started_at", json.dumps(record(task_started_at="22/12/2020 09:13"))),
    ("completed_before_started", "task_completed_at", json.dumps(record(task_completed_at="2020-12-22T08:00:00Z"))),
    ("invalid_data_source", "data_source", json.dumps(record(data_source="fax"))),
    ("missing_workstream_id", "workstream_id", json.dumps(record(workstream_id=None))),
    ("unknown_workstream", "workstream_id", json.dumps(record(workstream_id="ws-nope"))),
    ("unknown_use_case", "use_case_id", json.dumps(record(use_case_id="uc-nope"))),
    ("unknown_task_definition", "task_definition_id", json.dumps(record(task_definition_id="td-nope"))),
]


def test_every_jsonl_error_code_lands_in_rejects(tmp_path: Path, config_file: Path) -> None:
    path = tmp_path / "in" / "bad.jsonl"
    path.parent.mkdir(parents=True)
    lines = [json.dumps(record())] + [line for _, _, line in JSONL_CASES]
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines) + b"\n")
    result = _run(tmp_path, config_file, str(path), max_record_bytes=320)
    rejects = {r["source_line"]: r for r in _table(tmp_path, "rejects")}
    for line_number, (code, field, line) in enumerate(JSONL_CASES, start=2):
        row = rejects[line_number]
        assert (row["error_code"], row["error_field"]) == (code, field), line
        assert row["error_message"]
        assert row["source_file"] == str(path)
        expected_raw = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
        assert row["raw"] == expected_raw
    assert result.manifest["counts"]["rejected_by_code"] == {code: 1 for code, _, _ in JSONL_CASES}
    assert result.manifest["counts"]["written"] == 1


def test_csv_error_codes_and_spreadsheet_rows(tmp_path: Path, config_file: Path) -> None:
    header = "worker_id,use_case_id,task_definition_id,task_started_at,task_completed_at,task_metadata,note"
    good = f"w@x.com,{record()['use_case_id']},{record()['task_definition_id']},2020-12-22T09:00:00Z,2020-12-22T10:00:00Z"
    path = tmp_path / "in" / "workstream_id=ws-ner" / "bad.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(
        "\ufeff".encode() + "\r\n".join([
            header,
            good + ',"{""a"": 1,\n""b"": ""two""}",multi-line cell',  # row 2, spans two lines
            good + ",,too,many",                                      # row 3: malformed_csv
            good + ',"{""a"": 1}"x,bad quoting',                       # row 4: malformed_csv
            good.replace("w@x.com", "w\xff@x.com") + ",,",             # row 5: invalid_encoding (re-encoded below)
            good + ",not json,",                                        # row 6: invalid_type
            good + ',,"' + "y" * 400 + '"',                             # row 7: record_too_large
            good + ",,ok",                                              # row 8: accepted
        ]).encode("utf-8").replace("\xff".encode(), b"\xff") + b"\r\n"
    )
    result = _run(tmp_path, config_file, str(path), max_record_bytes=300)
    rejects = {r["source_line"]: (r["error_code"], r["error_field"]) for r in _table(tmp_path, "rejects")}
    assert rejects == {3: ("malformed_csv", None), 4: ("malformed_csv", None), 5: ("invalid_encoding", None),
                       6: ("invalid_type", "task_metadata"), 7: ("record_too_large", None)}
    rows = {r["source_line"]: r for r in _table(tmp_path, "task_completed")}
    assert sorted(rows) == [2, 8]
    assert dict(rows[2]["task_metadata"]) == {"a": "1", "b": "two"}
    assert json.loads(rows[2]["extra_fields"]) == {"note": "multi-line cell"}
    assert rows[2]["workstream_id"] == "ws-ner"  # from the path segment
    assert result.manifest["counts"]["read"] == 7


# --- run errors: non-zero, clear message, nothing committed ---------------------------------

def _nothing_committed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert not (out / "task_completed").exists()
    assert not (out / "_runs").exists()


def test_reject_rate_above_limit_commits_nothing(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "in" / "a.jsonl", [record(), "bad", "bad", record()])
    with pytest.raises(RunError, match=r"reject rate 0.5000 \(2 of 4: malformed_json 2\)"):
        _run(tmp_path, config_file, str(tmp_path / "in" / "a.jsonl"), max_reject_rate=0.4)
    _nothing_committed(tmp_path)
    result = _run(tmp_path, config_file, str(tmp_path / "in" / "a.jsonl"), max_reject_rate=0.5)
    assert result.manifest["counts"]["written"] == 2  # equal to the limit is allowed


@pytest.mark.parametrize("content, message", [
    (None, "cannot read workstream configuration"),
    ("{not json", "is not valid JSON/YAML"),
    ('{"workstreams": [{"name": "no id"}]}', "is invalid: workstreams.0.id"),
])
def test_bad_configuration_is_a_run_error(tmp_path: Path, content: str | None, message: str) -> None:
    config = tmp_path / "ws.json"
    if content is not None:
        config.write_text(content)
    write_jsonl(tmp_path / "in" / "a.jsonl", [record()])
    with pytest.raises(RunError, match=message) as raised:
        _run(tmp_path, config, str(tmp_path / "in" / "a.jsonl"))
    assert str(config) in str(raised.value)
    _nothing_committed(tmp_path)


def test_unwritable_output_is_a_run_error(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "in" / "a.jsonl", [record()])
    (tmp_path / "out").write_text("a file, not a folder")
    with pytest.raises(RunError, match="cannot write to output|is not a folder"):
        _run(tmp_path, config_file, str(tmp_path / "in" / "a.jsonl"))


def test_unknown_extension_and_timezone_are_run_errors(tmp_path: Path, config_file: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("{}\n")
    with pytest.raises(RunError, match="cannot tell the format"):
        _run(tmp_path, config_file, str(tmp_path / "in" / "a.txt"))
    result = _run(tmp_path, config_file, str(tmp_path / "in" / "a.txt"), file_format="jsonl")
    assert result.manifest["counts"]["rejected"] == 1
    with pytest.raises(RunError, match="unknown time zone"):
        _run(tmp_path, config_file, str(tmp_path / "in" / "a.txt"), file_format="jsonl", timezone="Mars/Olympus")


# --- options --------------------------------------------------------------------------------

def test_timezone_and_run_workstream(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "in" / "a.jsonl", [
        record(workstream_id=None, task_started_at="2020-12-22 23:00:00", task_completed_at="2020-12-22 23:30:00"),
    ])
    _run(tmp_path, config_file, str(tmp_path / "in" / "a.jsonl"), timezone="Asia/Kathmandu", workstream_id="ws-ner")
    (row,) = _table(tmp_path, "task_completed")
    assert row["workstream_id"] == "ws-ner"
    assert row["task_completed_at"] == datetime(2020, 12, 22, 17, 45, tzinfo=timezone.utc)
    assert row["completed_date"] == date(2020, 12, 22)


@pytest.mark.parametrize("policy, winner, superseded, ignored", [
    ("per-record", "c", 2, 1),
    ("replace", "d", 3, 0),
    ("keep-first", "a", 0, 3),
])
def test_duplicates_policies(tmp_path: Path, config_file: Path, policy: str, winner: str,
                             superseded: int, ignored: int) -> None:
    flags = {"a": None, "b": True, "c": True, "d": False}
    write_jsonl(tmp_path / "in" / "a.jsonl", [
        record(unique_id="k", worker_id=w, **({} if f is None else {"replace_duplicate": f})) for w, f in flags.items()
    ] + [record(worker_id="no-key")])
    result = _run(tmp_path, config_file, str(tmp_path / "in" / "a.jsonl"), duplicates=policy)
    workers = sorted(r["worker_id"] for r in _table(tmp_path, "task_completed"))
    assert workers == sorted([winner, "no-key"])
    counts = result.manifest["counts"]
    assert (counts["superseded"], counts["ignored_duplicates"], counts["reconciles"]) == (superseded, ignored, True)


def test_order_is_by_file_path_then_line(tmp_path: Path, config_file: Path) -> None:
    # b.jsonl is listed first but sorts after a.jsonl: a's record comes first, b's replaces it.
    write_jsonl(tmp_path / "in" / "b.jsonl", [record(unique_id="k", worker_id="from-b")])
    write_jsonl(tmp_path / "in" / "a.jsonl", [record(unique_id="k", worker_id="from-a")])
    _run(tmp_path, config_file, str(tmp_path / "in" / "b.jsonl"), str(tmp_path / "in" / "a.jsonl"))
    assert [r["worker_id"] for r in _table(tmp_path, "task_completed")] == ["from-b"]
