"""The benchmark's engines agree: the pipeline, the DuckDB SQL reference and the polars reference, on generated data.

A small data set of each format (``benchmarks.generate``: every error code the format can express,
duplicates of both policies, blank lines, offsets) goes through ``pipelines.run.run``, through
``benchmarks.reference_duckdb`` and through ``benchmarks.reference_polars``; each peer must write the
same task_completed rows, the same throughput_daily sums and the same rejects (code, field, line) as
the pipeline, and every manifest must report the counts the generator derived. No timing is asserted
here: speed is ``python -m benchmarks.run``'s business.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import duckdb
import pytest

from benchmarks.generate import generate
from benchmarks.reference_duckdb import run_reference
from benchmarks.reference_polars import run_reference as run_polars
from pipelines.run import RunOptions, run

PEERS = ("reference", "polars")  # the DuckDB reference and the polars one

RECORDS = 2_000

TASK_KEY = (
    "workstream_id", "unique_id", "task_id", "worker_id", "use_case_id", "task_definition_id", "task_count",
    "subtask_count", "duration", "duration_derived", "task_started_at", "task_completed_at", "task_created_at",
    "received_at", "data_source", "dataset_id", "asset_id", "replace_duplicate", "completed_date",
    "source_file", "source_line",
)
DAILY_KEY = ("workstream_id", "completed_date", "use_case_id", "task_definition_id", "worker_id")
DAILY_SUMS = ("records", "task_count", "subtask_count", "duration", "first_completed_at", "last_completed_at")


def _rows(out: Path, table: str, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    cols = ", ".join(f"{c}::VARCHAR" if c == "completed_date" else c for c in columns)
    glob = out / table / "**" / "*.parquet"
    query = f"SELECT {cols} FROM read_parquet('{glob}', hive_partitioning = true) ORDER BY ALL"
    return duckdb.sql(query).fetchall()


def _close(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return all(x == y or (isinstance(x, float) and isinstance(y, float) and math.isclose(x, y, rel_tol=1e-9))
               for x, y in zip(a, b))


@pytest.fixture(scope="module", params=["jsonl", "csv"])
def both_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    fmt = request.param
    base = tmp_path_factory.mktemp(f"bench-{fmt}")
    data = base / "data"
    generated = generate(RECORDS, fmt, data, seed=11, records_per_file=700)
    pattern = str(data / f"part-*.{fmt}")
    workstreams = str(data / "workstreams.json")
    pipeline = run(RunOptions(inputs=(pattern,), output=str(base / "pipeline"), workstreams=workstreams))
    reference = run_reference([pattern], workstreams, str(base / "reference"))
    polars = run_polars([pattern], workstreams, str(base / "polars"))
    return {"base": base, "expected": generated.expected, "pipeline": pipeline.manifest, "reference": reference,
            "polars": polars}


def test_the_generator_covers_every_error_code_of_the_format(both_runs: dict[str, Any]) -> None:
    expected = both_runs["expected"]
    codes = set(expected["rejected_by_code"])
    common = {"invalid_encoding", "missing_field", "invalid_type", "invalid_value", "invalid_timestamp",
              "completed_before_started", "invalid_data_source", "missing_workstream_id", "unknown_workstream",
              "unknown_use_case", "unknown_task_definition", "record_too_large"}
    own = {"malformed_json", "not_an_object"} if expected["format"] == "jsonl" else {"malformed_csv"}
    assert codes == common | own
    assert expected["superseded"] > 0 and expected["ignored_duplicates"] > 0


@pytest.mark.parametrize("engine", ["pipeline", *PEERS])
def test_manifest_counts_equal_what_the_generator_did(both_runs: dict[str, Any], engine: str) -> None:
    expected = both_runs["expected"]
    counts = both_runs[engine]["counts"]
    got = {k: counts[k] for k in ("read", "blank_lines", "written", "rejected", "superseded", "ignored_duplicates")}
    assert got == {k: expected[k] for k in got}
    assert counts["rejected_by_code"] == expected["rejected_by_code"]
    assert counts["reconciles"] is True


@pytest.mark.parametrize("peer", PEERS)
def test_same_task_completed_rows(both_runs: dict[str, Any], peer: str) -> None:
    base = both_runs["base"]
    pipeline = _rows(base / "pipeline", "task_completed", TASK_KEY)
    reference = _rows(base / peer, "task_completed", TASK_KEY)
    assert len(pipeline) == both_runs["expected"]["written"]
    only_pipeline = sorted(set(pipeline) - set(reference), key=repr)
    only_reference = sorted(set(reference) - set(pipeline), key=repr)
    assert (only_pipeline[:3], only_reference[:3]) == ([], [])
    assert pipeline == reference


@pytest.mark.parametrize("peer", PEERS)
def test_same_object_and_extra_columns(both_runs: dict[str, Any], peer: str) -> None:
    base = both_runs["base"]
    columns = ("source_file", "source_line", "task_metadata", "task_measurements", "extra_fields")

    def normalized(out: Path) -> list[tuple[Any, ...]]:
        rows = _rows(out, "task_completed", columns)
        return [(*r[:4], json.loads(r[4]) if r[4] else None) for r in rows]

    assert normalized(base / "pipeline") == normalized(base / peer)


@pytest.mark.parametrize("peer", PEERS)
def test_same_throughput_daily_sums(both_runs: dict[str, Any], peer: str) -> None:
    base = both_runs["base"]
    pipeline = _rows(base / "pipeline", "throughput_daily", DAILY_KEY + DAILY_SUMS)
    reference = _rows(base / peer, "throughput_daily", DAILY_KEY + DAILY_SUMS)
    assert len(pipeline) == len(reference)
    mismatched = [(p, r) for p, r in zip(pipeline, reference) if not _close(p, r)]
    assert mismatched[:3] == []


@pytest.mark.parametrize("peer", PEERS)
def test_same_rejects(both_runs: dict[str, Any], peer: str) -> None:
    base = both_runs["base"]
    columns = ("source_file", "source_line", "error_code", "error_field", "workstream_id")
    pipeline = _rows(base / "pipeline", "rejects", columns)
    reference = _rows(base / peer, "rejects", columns)
    assert len(pipeline) == both_runs["expected"]["rejected"]
    assert pipeline == reference


def test_duckdb_jsonl_line_ending_on_a_scan_boundary(tmp_path: Path) -> None:
    """A JSON line whose newline byte sits exactly on a boundary of the line scan's parallel ranges (8 MiB: a
    quarter of its 32 MiB buffer) must not shift the lines after it: DuckDB's parallel ``read_csv`` with
    ``new_line='\\r\\n'`` dropped the next line, so every note (blank, malformed, not an object, bad UTF-8)
    after it landed one line early and the raw texts came from the next line (the 5M data set's part-00005)."""
    (tmp_path / "workstreams.json").write_text(json.dumps(
        {"workstreams": [{"id": "ws-a", "use_cases": [{"id": "uc-1", "task_definitions": ["td-1"]}]}]}))

    def record(i: int, pad: int = 0, **drop: bool) -> bytes:
        rec = {"workstream_id": "ws-a", "worker_id": f"w{i}", "task_id": f"t-{i}" + "x" * pad, "use_case_id": "uc-1",
               "task_definition_id": "td-1", "task_started_at": "2024-05-01T10:00:00Z",
               "task_completed_at": "2024-05-01T10:05:00Z"}
        return json.dumps({k: v for k, v in rec.items() if k not in drop}).encode()

    boundary = 8 << 20
    lines: list[bytes] = []
    size = 0
    while size < boundary - 1000:
        lines.append(record(len(lines)))
        size += len(lines[-1]) + 1
    lines.append(record(len(lines), pad=boundary - size - len(record(len(lines)))))  # its newline is byte `boundary`
    good = len(lines)
    bad = {b'{"workstream_id": "ws-a", "worker_id": ': "malformed_json", b"": None, b"[1, 2]": "not_an_object",
           b'{"worker_id": "\xff"}': "invalid_encoding", record(good, workstream_id=True): "missing_workstream_id"}
    lines += [*bad, *(record(good + 1 + i) for i in range(50))]
    data = b"\n".join(lines) + b"\n"
    assert data[boundary:boundary + 2] == b'\n{'
    (tmp_path / "part-00000.jsonl").write_bytes(data)

    manifest = run_reference([str(tmp_path / "part-*.jsonl")], str(tmp_path / "workstreams.json"), str(tmp_path / "out"))
    codes = [code for code in bad.values() if code]
    counts = manifest["counts"]
    assert (counts["read"], counts["blank_lines"], counts["written"]) == (good + 50 + len(codes), 1, good + 50)
    assert counts["rejected_by_code"] == dict.fromkeys(sorted(codes), 1)
    rejects = duckdb.sql(f"SELECT source_line, error_code, raw FROM read_parquet('{tmp_path}/out/rejects/*/*.parquet') "
                         "ORDER BY source_line").fetchall()
    assert [(line, code) for line, code, _ in rejects] == [(good + 1 + n, code) for n, code in enumerate(bad.values()) if code]
    assert rejects[-1][2] == record(good, workstream_id=True).decode()
