"""Every documented reader recipe (docs/READING.md) reads a multi-night output alike.

The ids are chosen to trip clients up: ``007`` looks like a number, ``ws-café`` is not ASCII,
``ws with space`` holds a space and ``a/b=c`` holds characters Hive escapes.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from pipelines.run import RunOptions, run
from tests.conftest import TD, UC, record, write_jsonl

IDS = ("007", "ws-café", "ws with space", "a/b=c")


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("readers")
    config = {"workstreams": [{"id": ws, "use_cases": [{"id": UC, "task_definitions": [TD]}]} for ws in IDS]}
    (folder / "workstreams.json").write_text(json.dumps(config))
    for night in (1, 2, 3):
        rows = [record(workstream_id=ws, unique_id=f"{ws}-{i % 3}", task_count=night + i,
                       task_started_at=f"2021-03-0{night}T0{i}:00:00Z", task_completed_at=f"2021-03-0{night + i % 2}T09:00:00Z")
                for ws in IDS for i in range(4)]
        path = write_jsonl(folder / "landing" / f"night{night}.jsonl", rows)
        run(RunOptions(inputs=(str(path),), output=str(folder / "out"), workstreams=str(folder / "workstreams.json")),
            ["--direct_num_workers=1"])
    return folder / "out"


def _summary(rows: list[tuple[str, date, int]]) -> list[tuple[str, date, int]]:
    return sorted(rows)


def _expected(output: Path) -> list[tuple[str, date, int]]:
    return _duckdb(output)


def _duckdb(output: Path) -> list[tuple[str, date, int]]:
    return _summary(duckdb.sql(
        f"SELECT workstream_id, completed_date, sum(task_count)::BIGINT FROM read_parquet('{output}/task_completed/**/*.parquet', "
        "hive_partitioning = true, hive_types = {'workstream_id': VARCHAR, 'completed_date': DATE}) GROUP BY ALL").fetchall())


def _partitioning() -> ds.Partitioning:
    return ds.partitioning(pa.schema([("workstream_id", pa.string()), ("completed_date", pa.date32())]), flavor="hive")


def test_duckdb_reads_every_id_as_text(output: Path) -> None:
    found = _duckdb(output)
    assert {ws for ws, _, _ in found} == set(IDS)
    assert all(isinstance(day, date) for _, day, _ in found)


def test_pyarrow(output: Path) -> None:
    table = ds.dataset(output / "task_completed", format="parquet", partitioning=_partitioning()).to_table()
    grouped = table.group_by(["workstream_id", "completed_date"]).aggregate([("task_count", "sum")]).to_pylist()
    assert _summary([(g["workstream_id"], g["completed_date"], g["task_count_sum"]) for g in grouped]) == _expected(output)


def test_pandas(output: Path) -> None:
    df = pd.read_parquet(output / "task_completed", partitioning=_partitioning())
    grouped = df.groupby(["workstream_id", "completed_date"], observed=True)["task_count"].sum().reset_index()
    assert _summary([(str(w), d, int(t)) for w, d, t in grouped.itertuples(index=False)]) == _expected(output)


def test_polars(output: Path) -> None:
    df = pl.scan_parquet(f"{output}/task_completed/**/*.parquet", hive_partitioning=True,
                         hive_schema={"workstream_id": pl.String, "completed_date": pl.Date}).collect()
    grouped = df.group_by(["workstream_id", "completed_date"]).agg(pl.col("task_count").sum())
    assert _summary([tuple(r) for r in grouped.iter_rows()]) == _expected(output)


def test_spark(output: Path) -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F  # noqa: N812 - Spark's own idiom

    spark = (SparkSession.builder.master("local[1]").appName("throughput-readers")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2").getOrCreate())
    try:
        spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        df = spark.read.parquet(str(output / "task_completed")).withColumn("completed_date", F.to_date("completed_date"))
        grouped = df.groupBy("workstream_id", "completed_date").agg(F.sum("task_count").alias("tasks")).collect()
    finally:
        spark.stop()
    assert _summary([(r["workstream_id"], r["completed_date"], r["tasks"]) for r in grouped]) == _expected(output)
