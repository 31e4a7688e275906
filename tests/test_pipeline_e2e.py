"""End to end: real files in a temp directory, the whole run, tables read back as an analyst would."""

from __future__ import annotations

import json
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
    return duckdb.sql(f"select * from read_parquet('{glob}', hive_partitioning=true)").df().to_dict("records")


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
