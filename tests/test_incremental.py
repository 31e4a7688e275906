"""Runs into the same output folder, night after night: SPEC 4 and 5 across runs."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from pipelines.run import RunOptions, run
from tests.conftest import record, write_jsonl


def _run(tmp_path: Path, config_file: Path, *patterns: Path, **kw):
    options = RunOptions(inputs=tuple(str(p) for p in patterns), output=str(tmp_path / "out"),
                         workstreams=str(config_file), **kw)
    return run(options).manifest


def _rows(tmp_path: Path, table: str = "task_completed", order: str = "worker_id") -> list[dict]:
    relation = duckdb.sql(f"select * from read_parquet('{tmp_path}/out/{table}/**/*.parquet', "
                          f"hive_partitioning=true) order by {order}")
    return [dict(zip(relation.columns, row)) for row in relation.fetchall()]


def _snapshot(tmp_path: Path) -> dict[str, list[dict]]:
    out = tmp_path / "out"
    return {str(p.relative_to(out)): pq.read_table(p).to_pylist()
            for p in sorted(out.rglob("*.parquet")) if "rejects" not in p.parts}


def _daily_matches_task_completed(tmp_path: Path) -> None:
    expected = duckdb.sql(f"""
        select workstream_id, completed_date, use_case_id, task_definition_id, worker_id, count(*) records,
               sum(task_count) task_count, sum(subtask_count) subtask_count, sum(duration) duration,
               min(task_completed_at) first_completed_at, max(task_completed_at) last_completed_at
        from read_parquet('{tmp_path}/out/task_completed/**/*.parquet', hive_partitioning=true)
        group by all order by all""").fetchall()
    actual = duckdb.sql(f"""
        select workstream_id, completed_date, use_case_id, task_definition_id, worker_id, records, task_count,
               subtask_count, duration, first_completed_at, last_completed_at
        from read_parquet('{tmp_path}/out/throughput_daily/**/*.parquet', hive_partitioning=true)
        order by all""").fetchall()
    assert actual == expected


def test_a_later_run_replaces_an_earlier_row_and_moves_its_date(tmp_path: Path, config_file: Path) -> None:
    day1 = write_jsonl(tmp_path / "in" / "day1.jsonl", [
        record(unique_id="k", worker_id="first", task_completed_at="2020-12-22T10:00:00Z"),
        record(worker_id="other", task_completed_at="2020-12-22T11:00:00Z"),
    ])
    _run(tmp_path, config_file, day1)
    day2 = write_jsonl(tmp_path / "in" / "day2.jsonl", [
        record(unique_id="k", worker_id="fixed", task_completed_at="2020-12-23T10:00:00Z"),
    ])
    manifest = _run(tmp_path, config_file, day2)
    assert manifest["counts"]["replaced_existing"] == 1
    assert manifest["counts"]["written"] == 1
    rows = _rows(tmp_path)
    assert [(r["worker_id"], str(r["completed_date"])) for r in rows] == [("fixed", "2020-12-23"), ("other", "2020-12-22")]
    _daily_matches_task_completed(tmp_path)
    assert {r["worker_id"] for r in _rows(tmp_path, "throughput_daily")} == {"fixed", "other"}


def test_a_later_record_with_replace_false_is_ignored(tmp_path: Path, config_file: Path) -> None:
    _run(tmp_path, config_file, write_jsonl(tmp_path / "in" / "a.jsonl", [record(unique_id="k", worker_id="first")]))
    manifest = _run(tmp_path, config_file, write_jsonl(tmp_path / "in" / "b.jsonl", [
        record(unique_id="k", worker_id="late", replace_duplicate=False),
        record(unique_id="k", worker_id="later", replace_duplicate=False),
    ]))
    counts = manifest["counts"]
    assert (counts["ignored_duplicates"], counts["replaced_existing"], counts["written"]) == (2, 0, 0)
    assert [r["worker_id"] for r in _rows(tmp_path)] == ["first"]


def test_a_chain_across_runs_ends_with_one_row(tmp_path: Path, config_file: Path) -> None:
    for night, (worker, flag) in enumerate([("a", None), ("b", True), ("c", False), ("d", True)]):
        extra = {} if flag is None else {"replace_duplicate": flag}
        _run(tmp_path, config_file, write_jsonl(tmp_path / "in" / f"n{night}.jsonl",
                                                [record(unique_id="k", worker_id=worker, **extra)]))
    assert [r["worker_id"] for r in _rows(tmp_path)] == ["d"]
    _daily_matches_task_completed(tmp_path)


def test_running_the_same_files_again_changes_nothing(tmp_path: Path, config_file: Path) -> None:
    path = write_jsonl(tmp_path / "in" / "a.jsonl", [record(), record(unique_id="k"), record(worker_id="x")])
    _run(tmp_path, config_file, path)
    before = _snapshot(tmp_path)
    manifest = _run(tmp_path, config_file, path)
    assert manifest["skipped_inputs"][0]["path"] == str(path)
    assert manifest["counts"]["read"] == 0
    assert _snapshot(tmp_path) == before
    assert len(_rows(tmp_path)) == 3


def test_reprocess_replaces_the_files_earlier_rows(tmp_path: Path, config_file: Path) -> None:
    path = write_jsonl(tmp_path / "in" / "a.jsonl", [record(worker_id="a"), record(worker_id="b", unique_id="k")])
    other = write_jsonl(tmp_path / "in" / "b.jsonl", [record(worker_id="c")])
    _run(tmp_path, config_file, path, other)
    manifest = _run(tmp_path, config_file, path, reprocess=True)
    assert manifest["inputs"][0]["reprocessed"] is True
    assert manifest["tables"]["task_completed"]["rows_removed"] == 2
    assert sorted(r["worker_id"] for r in _rows(tmp_path)) == ["a", "b", "c"]
    _daily_matches_task_completed(tmp_path)


def test_a_changed_file_replaces_its_earlier_rows(tmp_path: Path, config_file: Path) -> None:
    path = write_jsonl(tmp_path / "in" / "a.jsonl", [record(worker_id="a"), record(worker_id="b")])
    _run(tmp_path, config_file, path)
    write_jsonl(path, [record(worker_id="a"), record(worker_id="b"), record(worker_id="appended",
                                                                            task_completed_at="2020-12-24T00:00:00Z")])
    _run(tmp_path, config_file, path)
    assert sorted(r["worker_id"] for r in _rows(tmp_path)) == ["a", "appended", "b"]
    _daily_matches_task_completed(tmp_path)


def test_daily_merges_a_later_runs_additions(tmp_path: Path, config_file: Path) -> None:
    """A run that only adds rows merges them into the earlier daily rows: still the aggregate."""
    for night in range(3):
        _run(tmp_path, config_file, write_jsonl(tmp_path / "in" / f"n{night}.jsonl", [
            record(worker_id=f"w{i % 2}", task_count=night + i, subtask_count=None if night == 0 else i,
                   duration=0.25 * (night + 1), task_completed_at=f"2020-12-22T1{night}:0{i}:00Z")
            for i in range(3)]))
    _daily_matches_task_completed(tmp_path)
    daily = _rows(tmp_path, "throughput_daily")
    assert [(r["worker_id"], r["records"]) for r in daily] == [("w0", 6), ("w1", 3)]
