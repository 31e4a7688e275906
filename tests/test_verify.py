"""``verify`` names the invariant a damaged output breaks; ``repair`` rebuilds what derives from task_completed."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.errors import DamagedOutput
from pipelines.run import RunOptions, run
from pipelines.verify import repair, verify
from tests.conftest import record, write_jsonl


def _output(tmp_path: Path, config_file: Path) -> Path:
    out = tmp_path / "out"
    write_jsonl(tmp_path / "in" / "a.jsonl", [record(unique_id="u1"), record(unique_id="u2", worker_id="w2"), record()])
    run(RunOptions(inputs=(str(tmp_path / "in" / "a.jsonl"),), output=str(out), workstreams=str(config_file)),
        ["--direct_num_workers=1"])
    write_jsonl(tmp_path / "in" / "b.jsonl", [record(unique_id="u1", task_id="new"),
                                              record(unique_id="u3", task_completed_at="2020-12-23T01:00:00Z")])
    run(RunOptions(inputs=(str(tmp_path / "in" / "b.jsonl"),), output=str(out), workstreams=str(config_file)),
        ["--direct_num_workers=1"])
    return out


def _failed(out: Path) -> list[str]:
    return [f.check for f in verify(str(out)) if not f.ok]


def test_a_healthy_output_passes_every_check(tmp_path: Path, config_file: Path) -> None:
    out = _output(tmp_path, config_file)
    findings = verify(str(out))
    assert [f.line() for f in findings if not f.ok] == []
    assert len(findings) >= 7


def test_a_duplicate_row_and_a_wrong_daily_are_named(tmp_path: Path, config_file: Path) -> None:
    out = _output(tmp_path, config_file)
    part = next((out / "task_completed").rglob("*.parquet"))
    shutil.copy(part, part.with_name("part-copy.parquet"))
    failed = _failed(out)
    assert "no two rows of task_completed share a dedupe key" in failed
    assert "throughput_daily equals the aggregate of task_completed" in failed


def test_repair_rebuilds_a_lost_index_daily_and_ledger(tmp_path: Path, config_file: Path) -> None:
    out = _output(tmp_path, config_file)
    shutil.rmtree(out / "_index")
    shutil.rmtree(out / "_ledger")
    for path in (out / "throughput_daily").rglob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.set_column(table.schema.get_field_index("records"), "records",
                                        pa.array([99] * table.num_rows, pa.int64())), path)
    failed = _failed(out)
    assert "throughput_daily equals the aggregate of task_completed" in failed
    assert "the key index holds exactly the keys of task_completed" in failed
    manifest = repair(str(out))
    assert manifest["ledger_rebuilt"] is True and manifest["kind"] == "repair"
    assert [f.line() for f in verify(str(out)) if not f.ok] == []
    # the next night dedupes against the rebuilt index and skips the ledger's files
    write_jsonl(tmp_path / "in" / "c.jsonl", [record(unique_id="u2", worker_id="w2", task_id="newer")])
    result = run(RunOptions(inputs=(str(tmp_path / "in" / "*.jsonl"),), output=str(out), workstreams=str(config_file)),
                 ["--direct_num_workers=1"])
    assert result.manifest["counts"]["replaced_existing"] == 1
    assert len(result.manifest["skipped_inputs"]) == 2
    keys = duckdb.sql(f"select unique_id, count(*) from read_parquet('{out}/task_completed/**/*.parquet') "
                      "where unique_id is not null group by 1 having count(*) > 1").fetchall()
    assert keys == []


def test_repair_refuses_a_damaged_task_completed_file(tmp_path: Path, config_file: Path) -> None:
    out = _output(tmp_path, config_file)
    part = next((out / "task_completed").rglob("*.parquet"))
    part.write_bytes(b"garbage")
    assert "every table and index file is readable" in _failed(out)
    with pytest.raises(DamagedOutput, match=str(part)):
        repair(str(out))
