"""``--json`` for cron and Airflow: one JSON document on stdout, the human summary on stderr, exit codes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from tests.conftest import record, write_jsonl
from tests.test_cli import patch, run_args, throughput

# run() as it is, but reporting an input it could not read whole (a truncated gzip, say)
FAILED_INPUT = """
import pipelines.run as _run

_real = _run.run

def run(options, beam_args=(), progress=lambda step: None):
    result = _real(options, beam_args, progress)
    result.manifest["failed_inputs"] = [{"path": "/landing/bad.jsonl.gz", "reason": "truncated gzip"}]
    return result

_run.run = run
"""


def _document(stdout: str) -> dict[str, Any]:
    lines = stdout.splitlines()
    assert len(lines) == 1, f"stdout must hold one JSON document on one line: {stdout!r}"
    document = json.loads(lines[0])
    assert isinstance(document, dict)
    return document


def test_run_json_summary(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record(), "oops"])
    done = throughput(tmp_path, *run_args(tmp_path, config_file, "--run-id", "r1", "--json"))
    assert done.returncode == 0, done.stderr
    document = _document(done.stdout)
    assert document["command"] == "run"
    assert document["run_id"] == "r1"
    assert document["status"] == "committed"
    assert document["exit_code"] == 0
    assert document["counts"]["read"] == 2 and document["counts"]["rejected"] == 1
    assert document["counts"]["reconciles"] is True
    assert document["counts"]["rejected_by_code"] == {"malformed_json": 1}
    assert document["tables"]["task_completed"]["rows"] == 1
    assert [i["path"] for i in document["inputs"]] == [str(tmp_path / "a.jsonl")]
    assert document["skipped_inputs"] == [] and document["failed_inputs"] == []
    assert Path(document["manifest"]).exists()
    assert document["output"] == str(tmp_path / "out")
    assert document["elapsed_seconds"] > 0
    assert document["records_per_second"] > 0
    assert "run r1: committed" in done.stderr  # the human summary moved to stderr

    again = throughput(tmp_path, *run_args(tmp_path, config_file, "--json"))
    assert again.returncode == 0
    assert [i["path"] for i in _document(again.stdout)["skipped_inputs"]] == [str(tmp_path / "a.jsonl")]


def test_run_json_on_failure(tmp_path: Path, config_file: Path) -> None:
    done = throughput(tmp_path, *run_args(tmp_path, config_file, "--json", inputs="none*.jsonl"))
    assert done.returncode == 1
    document = _document(done.stdout)
    assert document["status"] == "failed"
    assert document["exit_code"] == 1
    assert "no input file matched" in document["error"]
    assert document["error_type"] == "RunError"
    assert Path(document["log_file"]).exists()


def test_usage_error_json(tmp_path: Path, config_file: Path) -> None:
    done = throughput(tmp_path, *run_args(tmp_path, config_file, "--json", "--dupliactes", "keep-first"))
    assert done.returncode == 2
    document = _document(done.stdout)
    assert document["status"] == "failed" and document["exit_code"] == 2
    assert document["error"] == "unknown option --dupliactes (did you mean --duplicates?)"


def test_failed_inputs_exit_three(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record()])
    patched = patch(tmp_path, FAILED_INPUT)
    done = throughput(tmp_path, *run_args(tmp_path, config_file, "--run-id", "r1"), patch_dir=patched)
    assert done.returncode == 3, done.stderr
    assert "run r1: committed with 1 failed input(s) (exit 3)" in done.stdout
    assert "FAILED input /landing/bad.jsonl.gz: truncated gzip" in done.stdout

    as_json = throughput(tmp_path, *run_args(tmp_path, config_file, "--json", "--reprocess"), patch_dir=patched)
    assert as_json.returncode == 3
    document = _document(as_json.stdout)
    assert document["status"] == "committed_with_failed_inputs"
    assert document["exit_code"] == 3
    assert document["failed_inputs"] == [{"path": "/landing/bad.jsonl.gz", "reason": "truncated gzip"}]


def test_backfill_json_and_compact_json(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "in" / "a.jsonl", [record(unique_id="1")])
    write_jsonl(tmp_path / "in" / "b.jsonl", [record(unique_id="2"), "oops"])
    done = throughput(tmp_path, "backfill", *run_args(tmp_path, config_file, "--json", "--chunk-bytes", "1",
                                                      "--run-id", "bf", inputs="in/*.jsonl")[1:])
    assert done.returncode == 0, done.stderr
    document = _document(done.stdout)
    assert document["command"] == "backfill"
    assert document["status"] == "committed" and document["exit_code"] == 0
    assert [c["chunk"] for c in document["chunks"]] == [1, 2]
    assert [c["run_id"] for c in document["chunks"]] == ["bf-chunk0001", "bf-chunk0002"]
    assert document["chunks_total"] == 2
    totals = document["totals"]
    assert totals["chunks_committed"] == 2
    assert totals["counts"]["read"] == 3 and totals["counts"]["written"] == 2 and totals["counts"]["rejected"] == 1
    assert totals["counts"]["rejected_by_code"] == {"malformed_json": 1}
    assert totals["counts"]["reconciles"] is True
    assert totals["inputs"] == 2 and totals["failed_inputs"] == []
    assert document["records_per_second"] > 0
    # the human side, on stderr: each chunk as it commits, then the grand total
    assert "chunk 1/2: run bf-chunk0001: committed" in done.stderr
    assert "chunk 2/2: run bf-chunk0002: committed" in done.stderr
    assert "backfill: 2 chunk(s) committed" in done.stderr
    assert done.stderr.index("chunk 1/2: run") < done.stderr.index("throughput: chunk 2/2: planning")

    compacted = throughput(tmp_path, "compact", "--output", str(tmp_path / "out"), "--json", "--direct_num_workers=1")
    assert compacted.returncode == 0, compacted.stderr
    document = _document(compacted.stdout)
    assert document["command"] == "compact" and document["status"] == "committed" and document["exit_code"] == 0
    assert document["partitions_compacted"] >= 1
    assert document["rows"] >= 2
    assert document["tables"] == ["task_completed", "throughput_daily"]


def test_backfill_human_summary_on_stdout(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "in" / "a.jsonl", [record(unique_id="1")])
    write_jsonl(tmp_path / "in" / "b.jsonl", [record(unique_id="2")])
    done = throughput(tmp_path, "backfill", *run_args(tmp_path, config_file, "--chunk-bytes", "1",
                                                      "--run-id", "bf", inputs="in/*.jsonl")[1:])
    assert done.returncode == 0, done.stderr
    assert "chunk 1/2: run bf-chunk0001: committed" in done.stdout
    assert "chunk 2/2: run bf-chunk0002: committed" in done.stdout
    assert "backfill: 2 chunk(s) committed" in done.stdout
    assert "  files: 2 ingested, 0 skipped, 0 failed  in " in done.stdout
    stderr = done.stderr.splitlines()
    for line in ("throughput: chunk 1/2: planning", "throughput: chunk 1/2: pipeline", "throughput: chunk 1/2: committing",
                 "throughput: chunk 2/2: planning", "throughput: chunk 2/2: pipeline", "throughput: chunk 2/2: committing"):
        assert line in stderr


def test_truncated_gzip_is_a_failed_input_exit_three(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "in" / "a.jsonl", [record()])
    whole = gzip.compress(b"".join(json.dumps(record(unique_id=str(i))).encode() + b"\n" for i in range(200)))
    (tmp_path / "in" / "b.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    done = throughput(tmp_path, *run_args(tmp_path, config_file, "--json", inputs="in/*"))
    assert done.returncode == 3, done.stderr
    document = _document(done.stdout)
    assert document["status"] == "committed_with_failed_inputs" and document["exit_code"] == 3
    assert [item["path"] for item in document["failed_inputs"]] == [str(tmp_path / "in" / "b.jsonl.gz")]
    assert f"FAILED input {tmp_path / 'in' / 'b.jsonl.gz'}: " in done.stderr
