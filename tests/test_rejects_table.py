"""The rejects table shows the problems that stand today: a reprocessed file replaces its earlier
rejects, and a run refused for its reject rate keeps its rejects where the operator can read them."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.errors import RunError
from pipelines.run import RunOptions, run
from tests.conftest import record, write_jsonl


def _run(tmp_path: Path, config_file: Path, *paths: Path, **options: object):
    return run(RunOptions(inputs=tuple(str(p) for p in paths), output=str(tmp_path / "out"),
                          workstreams=str(config_file), **options), ["--direct_num_workers=1"])  # type: ignore[arg-type]


def _rejects(tmp_path: Path) -> list[tuple[str, int, str]]:
    files = sorted((tmp_path / "out" / "rejects").rglob("*.parquet"))
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    return sorted((Path(r["source_file"]).name, r["source_line"], r["error_code"]) for r in rows)


def test_a_reprocessed_file_replaces_its_earlier_rejects(tmp_path: Path, config_file: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [record(), "oops", record(task_count=-1)])
    b = write_jsonl(tmp_path / "b.jsonl", ["also bad"])
    _run(tmp_path, config_file, a, b)
    assert _rejects(tmp_path) == [("a.jsonl", 2, "malformed_json"), ("a.jsonl", 3, "invalid_value"),
                                  ("b.jsonl", 1, "malformed_json")]
    write_jsonl(a, [record(), record(task_id="fixed"), "still bad"])  # a changed file is reprocessed
    result = _run(tmp_path, config_file, a, b)
    assert result.manifest["tables"]["rejects"]["rows_removed"] == 2
    assert _rejects(tmp_path) == [("a.jsonl", 3, "malformed_json"), ("b.jsonl", 1, "malformed_json")]


def test_a_run_over_the_reject_rate_keeps_its_rejects_for_the_operator(tmp_path: Path, config_file: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [record(), "oops", record(task_count="ten")])
    with pytest.raises(RunError, match=r"malformed_json 1.*invalid_type 1|invalid_type 1.*malformed_json 1") as raised:
        _run(tmp_path, config_file, a, max_reject_rate=0.5, run_id="strict")
    kept = tmp_path / "out" / "_failed_runs" / "strict" / "rejects.parquet"
    assert str(kept) in str(raised.value)
    assert sorted(r["error_code"] for r in pq.read_table(kept).to_pylist()) == ["invalid_type", "malformed_json"]
    assert not (tmp_path / "out" / "task_completed").exists()
    # a later run without the limit commits as usual, and the kept rejects stay out of the table
    result = _run(tmp_path, config_file, a)
    assert result.manifest["counts"]["rejected"] == 2
    assert len(_rejects(tmp_path)) == 2


def test_retry_after_the_configuration_is_fixed(tmp_path: Path, config_file: Path) -> None:
    """A missing use case is added: its rejects enter the table in their original order, once."""
    import json

    import duckdb

    from pipelines.run import retry_rejects
    from tests.conftest import TD

    new_uc = "uc-added-later"
    a = write_jsonl(tmp_path / "in" / "a.jsonl", [
        record(unique_id="k1", use_case_id=new_uc, worker_id="first"),
        record(),
        record(unique_id="k1", use_case_id=new_uc, worker_id="second"),  # replaces the first once both pass
        "still not json",
    ])
    csv_file = tmp_path / "in" / "b.csv"
    csv_file.write_text("workstream_id,worker_id,use_case_id,task_definition_id,task_started_at,task_completed_at\n"
                        f"ws-ner,csv-worker,{new_uc},{TD},2020-12-22T09:00:00Z,2020-12-22T10:00:00Z\n")
    first = _run(tmp_path, config_file, a, csv_file)
    assert first.manifest["counts"]["rejected_by_code"] == {"malformed_json": 1, "unknown_use_case": 3}

    config = json.loads(config_file.read_text())
    config["workstreams"][0]["use_cases"].append({"id": new_uc, "task_definitions": [TD]})
    config_file.write_text(json.dumps(config))
    options = RunOptions(inputs=(), output=str(tmp_path / "out"), workstreams=str(config_file))
    retried = retry_rejects(options, ["--direct_num_workers=1"])
    counts = retried.manifest["counts"]
    assert (counts["read"], counts["written"], counts["superseded"], counts["rejected"]) == (4, 2, 1, 1)
    assert retried.manifest["kind"] == "retry"
    rows = duckdb.sql(f"select worker_id, source_line from read_parquet('{tmp_path}/out/task_completed/**/*.parquet') "
                      "order by worker_id").fetchall()
    assert rows == [("csv-worker", 2), ("second", 3), ("worker@example.com", 2)]
    assert _rejects(tmp_path) == [("a.jsonl", 4, "malformed_json")]
    # a second retry finds only the reject that still stands, and changes nothing
    again = retry_rejects(options, ["--direct_num_workers=1"])
    assert (again.manifest["counts"]["read"], again.manifest["counts"]["written"]) == (1, 0)
    assert _rejects(tmp_path) == [("a.jsonl", 4, "malformed_json")]


def test_rejects_retry_on_the_command_line(tmp_path: Path, config_file: Path) -> None:
    import json
    import subprocess
    import sys

    from tests.conftest import TD

    a = write_jsonl(tmp_path / "a.jsonl", [record(use_case_id="uc-new"), record()])
    _run(tmp_path, config_file, a)
    config = json.loads(config_file.read_text())
    config["workstreams"][0]["use_cases"].append({"id": "uc-new", "task_definitions": [TD]})
    config_file.write_text(json.dumps(config))
    done = subprocess.run([str(Path(sys.executable).parent / "throughput"), "rejects", "retry", "--output",
                           str(tmp_path / "out"), "--workstreams", str(config_file), "--code", "unknown_use_case",
                           "--beam-option=--direct_num_workers=1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 reject(s) validated again; 1 entered the table" in done.stdout
    assert _rejects(tmp_path) == []
