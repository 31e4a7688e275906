"""Output table schemas (SPEC 5), derived from the pydantic row models."""

from __future__ import annotations

import pyarrow as pa
import pytest

from schemas.record import FIELD_ORDER
from schemas.tables import (
    REJECTS,
    TASK_COMPLETED,
    THROUGHPUT_DAILY,
    RejectRow,
    TaskCompletedRow,
    ThroughputDailyRow,
    arrow_schema,
    data_dictionary,
)

TS = pa.timestamp("us", tz="UTC")
TABLES = (TASK_COMPLETED, THROUGHPUT_DAILY, REJECTS)


def test_task_completed_file_schema_leaves_out_partition_columns() -> None:
    names = TASK_COMPLETED.file_schema.names
    assert "workstream_id" not in names
    assert "completed_date" not in names
    assert "workstream_id" in TASK_COMPLETED.schema.names
    assert TASK_COMPLETED.schema.field("completed_date").type == pa.date32()


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_file_schema_is_schema_minus_partitions(table) -> None:
    assert table.file_schema.names == [n for n in table.schema.names if n not in table.partition_by]
    for column in table.partition_by:
        assert column in table.schema.names
        assert column not in table.file_schema.names


def test_partitioning() -> None:
    assert TASK_COMPLETED.partition_by == ("workstream_id", "completed_date")
    assert THROUGHPUT_DAILY.partition_by == ("workstream_id", "completed_date")
    assert REJECTS.partition_by == ("run_id",)


def test_task_completed_has_every_api_field_in_spec_order() -> None:
    names = TASK_COMPLETED.file_schema.names
    api = [f for f in FIELD_ORDER if f != "workstream_id"]
    assert [n for n in names if n in api] == api
    assert names[: len(api)] == api  # API fields first, lineage after
    assert {"duration_derived", "source_file", "source_line", "run_id", "extra_fields"} <= set(names)


@pytest.mark.parametrize(
    ("table", "model"),
    [(TASK_COMPLETED, TaskCompletedRow), (THROUGHPUT_DAILY, ThroughputDailyRow), (REJECTS, RejectRow)],
    ids=lambda x: getattr(x, "name", None) or getattr(x, "__name__", ""),
)
def test_column_order_follows_model(table, model) -> None:
    assert table.model is model
    assert table.schema.names == list(model.model_fields)
    assert table.file_schema.names == [n for n in model.model_fields if n not in table.partition_by]


@pytest.mark.parametrize(
    ("table", "column"),
    [
        (TASK_COMPLETED, "task_started_at"), (TASK_COMPLETED, "task_completed_at"),
        (TASK_COMPLETED, "task_created_at"), (TASK_COMPLETED, "received_at"),
        (THROUGHPUT_DAILY, "first_completed_at"), (THROUGHPUT_DAILY, "last_completed_at"),
    ],
)
def test_timestamps_are_utc_microseconds(table, column: str) -> None:
    assert table.file_schema.field(column).type == TS


def test_every_datetime_column_is_utc() -> None:
    for table in TABLES:
        for field in table.schema:
            if pa.types.is_timestamp(field.type):
                assert field.type == TS, (table.name, field.name)


@pytest.mark.parametrize(
    ("table", "column"),
    [
        (TASK_COMPLETED, "task_count"), (TASK_COMPLETED, "subtask_count"), (TASK_COMPLETED, "source_line"),
        (THROUGHPUT_DAILY, "records"), (THROUGHPUT_DAILY, "task_count"), (THROUGHPUT_DAILY, "subtask_count"),
        (REJECTS, "source_line"),
    ],
)
def test_counts_are_int64(table, column: str) -> None:
    assert table.file_schema.field(column).type == pa.int64()


@pytest.mark.parametrize("column", ["task_metadata", "task_measurements"])
def test_objects_are_string_maps(column: str) -> None:
    kind = TASK_COMPLETED.file_schema.field(column).type
    assert pa.types.is_map(kind)
    assert kind.key_type == pa.string()
    assert kind.item_type == pa.string()
    assert kind == pa.map_(pa.string(), pa.string())


def test_other_task_completed_types() -> None:
    schema = TASK_COMPLETED.file_schema
    assert schema.field("duration").type == pa.float64()
    assert not schema.field("duration").nullable  # always set, derived when absent
    assert schema.field("duration_derived").type == pa.bool_()
    assert schema.field("replace_duplicate").type == pa.bool_()
    for name in ("worker_id", "task_id", "task_url", "use_case_id", "task_definition_id", "data_source",
                 "dataset_id", "asset_id", "unique_id", "source_file", "run_id", "extra_fields"):
        assert schema.field(name).type == pa.string(), name
    assert THROUGHPUT_DAILY.file_schema.field("duration").type == pa.float64()


def test_nullability_follows_required_fields() -> None:
    schema = TASK_COMPLETED.file_schema
    for name in ("worker_id", "use_case_id", "task_definition_id", "task_started_at", "task_completed_at",
                 "task_count", "replace_duplicate", "source_file", "source_line", "run_id"):
        assert not schema.field(name).nullable, name
    for name in ("task_id", "subtask_count", "task_created_at", "data_source", "task_metadata", "unique_id",
                 "received_at", "extra_fields"):
        assert schema.field(name).nullable, name
    assert THROUGHPUT_DAILY.file_schema.field("subtask_count").nullable
    assert REJECTS.file_schema.field("workstream_id").nullable
    assert REJECTS.file_schema.field("error_field").nullable
    assert not REJECTS.file_schema.field("error_code").nullable


def test_rejects_columns() -> None:
    assert REJECTS.file_schema.names == [
        "source_file", "source_line", "workstream_id", "error_code", "error_field", "error_message", "raw",
    ]


def test_throughput_daily_columns() -> None:
    assert THROUGHPUT_DAILY.file_schema.names == [
        "use_case_id", "task_definition_id", "worker_id", "records", "task_count", "subtask_count", "duration",
        "first_completed_at", "last_completed_at",
    ]


def test_every_column_has_a_description() -> None:
    for table in TABLES:
        for field in table.schema:
            assert field.metadata and field.metadata.get(b"description"), (table.name, field.name)


def test_arrow_schema_exclude() -> None:
    schema = arrow_schema(RejectRow, exclude=("raw", "run_id"))
    assert "raw" not in schema.names and "run_id" not in schema.names
    assert schema.names[0] == "source_file"


def test_empty_table_from_schema_round_trips() -> None:
    for table in TABLES:
        empty = table.file_schema.empty_table()
        assert empty.schema.equals(table.file_schema)


def test_data_dictionary_mentions_every_column_of_every_table() -> None:
    text = data_dictionary()
    for table in TABLES:
        assert f"## `{table.name}`" in text
        for field in table.schema:
            assert f"| `{field.name}` | `{field.type}` |" in text, (table.name, field.name)
    # a column shared by tables is listed once per table
    assert text.count("| `worker_id` |") == 2
    assert text.count("| `source_line` |") == 2
