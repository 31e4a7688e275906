"""Record-level validation (schemas/record.py): SPEC 1 rules and SPEC 3 error codes."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from schemas.config import WorkstreamConfig
from schemas.errors import ErrorCode
from schemas.record import FIELD_ORDER, FieldKind, RecordContext, TaskCompleted, Verdict, field_specs, validate_record
from tests.conftest import TD, TD2, UC, WS, record

UTC = timezone.utc

# SPEC 1's table, in order: errors are reported in this order.
SPEC_FIELDS = (
    "workstream_id", "worker_id", "task_id", "task_url", "task_count", "subtask_count", "use_case_id",
    "task_definition_id", "task_started_at", "task_completed_at", "duration", "task_created_at",
    "data_source", "task_metadata", "task_measurements", "dataset_id", "asset_id", "unique_id",
    "replace_duplicate", "received_at",
)


@pytest.fixture
def ctx(config: WorkstreamConfig) -> RecordContext:
    return RecordContext(config=config)


def first(verdict: Verdict) -> tuple[str, str | None]:
    assert verdict.record is None, "a rejected record must not come back as a model"
    assert verdict.errors, "a rejected record must say why"
    assert all(e.message for e in verdict.errors)
    return verdict.errors[0].code, verdict.errors[0].field


def accepted(verdict: Verdict) -> TaskCompleted:
    assert verdict.errors == [], verdict.errors
    assert isinstance(verdict.record, TaskCompleted)
    return verdict.record


def test_field_order_is_spec_order() -> None:
    assert FIELD_ORDER == SPEC_FIELDS


def test_valid_record_is_accepted(ctx: RecordContext) -> None:
    rec = accepted(validate_record(record(), ctx))
    assert rec.workstream_id == WS
    assert rec.use_case_id == UC
    assert rec.task_definition_id == TD
    assert rec.task_started_at == datetime(2020, 12, 22, 9, 13, 24, 127000, tzinfo=UTC)
    assert rec.task_completed_at == datetime(2020, 12, 22, 10, 13, 24, 127000, tzinfo=UTC)
    assert rec.duration is None and rec.task_id is None and rec.data_source is None


def test_every_optional_field_normalized(ctx: RecordContext) -> None:
    rec = accepted(validate_record(record(
        task_id=" t-1 ", task_url="https://x.test/t/1", task_count="3", subtask_count=7.0, duration="12.5",
        task_created_at="2020-12-22T08:00:00+01:00", data_source=" csv_manual ",
        task_metadata='{"lang": "en", "pages": 3}', task_measurements={"attribute_1_count": 340, "attribute_1_label": "Words"},
        dataset_id="d", asset_id="a", unique_id=" u1 ", replace_duplicate="No", received_at="2020-12-22 11:00:00Z",
        task_definition_id=TD2,
    ), ctx))
    assert (rec.task_id, rec.task_count, rec.subtask_count, rec.duration) == ("t-1", 3, 7, 12.5)
    assert rec.task_created_at == datetime(2020, 12, 22, 7, tzinfo=UTC)
    assert rec.data_source == "csv_manual"
    assert rec.task_metadata == {"lang": "en", "pages": "3"}
    assert rec.task_measurements == {"attribute_1_count": "340", "attribute_1_label": "Words"}
    assert rec.unique_id == "u1"
    assert rec.replace_duplicate is False
    assert rec.received_at == datetime(2020, 12, 22, 11, tzinfo=UTC)
    assert rec.task_definition_id == TD2


# --------------------------------------------------------------------------- one test per error code


@pytest.mark.parametrize("name", ["worker_id", "use_case_id", "task_definition_id", "task_started_at", "task_completed_at"])
def test_missing_field(ctx: RecordContext, name: str) -> None:
    assert first(validate_record(record(**{name: None}), ctx)) == ("missing_field", name)


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"worker_id": 5}, "worker_id"),
        ({"task_id": 17}, "task_id"),
        ({"task_count": "ten"}, "task_count"),
        ({"subtask_count": [1]}, "subtask_count"),
        ({"use_case_id": {"id": UC}}, "use_case_id"),
        ({"task_started_at": 1608628404}, "task_started_at"),
        ({"duration": "long"}, "duration"),
        ({"data_source": 1}, "data_source"),
        ({"task_metadata": [1, 2]}, "task_metadata"),
        ({"task_measurements": "not json"}, "task_measurements"),
        ({"replace_duplicate": "maybe"}, "replace_duplicate"),
        ({"workstream_id": 5}, "workstream_id"),
    ],
)
def test_invalid_type(ctx: RecordContext, overrides: dict, name: str) -> None:
    assert first(validate_record(record(**overrides), ctx)) == ("invalid_type", name)


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"task_count": -1}, "task_count"),
        ({"task_count": 10.5}, "task_count"),
        ({"task_count": "10.5"}, "task_count"),
        ({"subtask_count": -3}, "subtask_count"),
        ({"duration": -1}, "duration"),
        ({"duration": float("inf")}, "duration"),
    ],
)
def test_invalid_value(ctx: RecordContext, overrides: dict, name: str) -> None:
    assert first(validate_record(record(**overrides), ctx)) == ("invalid_value", name)


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"task_started_at": "2020-12-22"}, "task_started_at"),  # a date alone
        ({"task_completed_at": "not a time"}, "task_completed_at"),
        ({"task_created_at": "2020-12-32T00:00"}, "task_created_at"),  # a bad optional datetime rejects too
        ({"received_at": "yesterday"}, "received_at"),
    ],
)
def test_invalid_timestamp(ctx: RecordContext, overrides: dict, name: str) -> None:
    assert first(validate_record(record(**overrides), ctx)) == ("invalid_timestamp", name)


def test_completed_before_started(ctx: RecordContext) -> None:
    verdict = validate_record(record(task_started_at="2020-12-22T10:00:00Z", task_completed_at="2020-12-22T09:59:59.999Z"), ctx)
    assert first(verdict) == ("completed_before_started", "task_completed_at")


def test_completed_equal_to_started_is_fine(ctx: RecordContext) -> None:
    rec = accepted(validate_record(record(task_started_at="2020-12-22T10:00:00Z", task_completed_at="2020-12-22T15:45:00+05:45"), ctx))
    assert rec.task_completed_at == rec.task_started_at


def test_completed_before_started_compares_instants_not_wall_times(config: WorkstreamConfig) -> None:
    # 09:00 in New York is 14:00Z; 12:00Z is earlier although its wall time is later.
    ctx = RecordContext(config=config, default_tz=ZoneInfo("America/New_York"))
    verdict = validate_record(record(task_started_at="2020-12-22T09:00:00", task_completed_at="2020-12-22T12:00:00Z"), ctx)
    assert first(verdict) == ("completed_before_started", "task_completed_at")
    ok = validate_record(record(task_started_at="2020-12-22T18:00:00+05:45", task_completed_at="2020-12-22T08:00:00"), ctx)
    assert accepted(ok).task_completed_at == datetime(2020, 12, 22, 13, tzinfo=UTC)


@pytest.mark.parametrize("value", ["web", "API", "csv", "manual", "Csv_Manual"])
def test_invalid_data_source(ctx: RecordContext, value: str) -> None:
    assert first(validate_record(record(data_source=value), ctx)) == ("invalid_data_source", "data_source")


@pytest.mark.parametrize("value", ["api", "csv_manual", "csv_automated"])
def test_valid_data_sources(ctx: RecordContext, value: str) -> None:
    assert accepted(validate_record(record(data_source=value), ctx)).data_source == value


def test_missing_workstream_id(ctx: RecordContext) -> None:
    assert first(validate_record(record(workstream_id=None), ctx)) == ("missing_workstream_id", "workstream_id")
    assert first(validate_record(record(workstream_id="   "), ctx)) == ("missing_workstream_id", "workstream_id")


def test_unknown_workstream(ctx: RecordContext) -> None:
    assert first(validate_record(record(workstream_id="ws-nope"), ctx)) == ("unknown_workstream", "workstream_id")


def test_unknown_workstream_from_path(config: WorkstreamConfig) -> None:
    ctx = RecordContext(config=config, path_workstream="ws-from-path")
    assert first(validate_record(record(workstream_id=None), ctx)) == ("unknown_workstream", "workstream_id")


def test_unknown_use_case(ctx: RecordContext) -> None:
    # uc-audio exists, but in another workstream
    assert first(validate_record(record(use_case_id="uc-audio"), ctx)) == ("unknown_use_case", "use_case_id")
    assert first(validate_record(record(use_case_id="uc-nope"), ctx)) == ("unknown_use_case", "use_case_id")


def test_unknown_task_definition(ctx: RecordContext) -> None:
    # td-transcribe exists, but under another use case
    assert first(validate_record(record(task_definition_id="td-transcribe"), ctx)) == ("unknown_task_definition", "task_definition_id")
    assert first(validate_record(record(task_definition_id="td-nope"), ctx)) == ("unknown_task_definition", "task_definition_id")


def test_use_case_and_task_definition_checked_within_their_workstream(ctx: RecordContext) -> None:
    rec = accepted(validate_record(record(workstream_id="ws-audio", use_case_id="uc-audio", task_definition_id="td-transcribe"), ctx))
    assert rec.workstream_id == "ws-audio"
    assert first(validate_record(record(workstream_id="ws-audio"), ctx)) == ("unknown_use_case", "use_case_id")


@pytest.mark.parametrize("data", [[record()], "a string", 42, None, True, 1.5])
def test_not_an_object(ctx: RecordContext, data) -> None:
    assert first(validate_record(data, ctx)) == ("not_an_object", None)


# --------------------------------------------------------------------------- several problems


def test_several_problems_first_by_field_order_and_all_listed(ctx: RecordContext) -> None:
    # Keys deliberately in reverse of the field order: the report must not follow the input order.
    data = {
        "received_at": "nope",
        "data_source": "web",
        "duration": -1,
        "task_started_at": "2020-12-22",
        "task_definition_id": TD,
        "use_case_id": UC,
        "task_count": "ten",
        "worker_id": 5,
        "task_completed_at": "2020-12-22T10:00:00Z",
        "workstream_id": WS,
    }
    verdict = validate_record(data, ctx)
    assert first(verdict) == ("invalid_type", "worker_id")
    assert [(e.code, e.field) for e in verdict.errors] == [
        ("invalid_type", "worker_id"),
        ("invalid_type", "task_count"),
        ("invalid_timestamp", "task_started_at"),
        ("invalid_value", "duration"),
        ("invalid_data_source", "data_source"),
        ("invalid_timestamp", "received_at"),
    ]


def test_missing_workstream_comes_first_among_problems(ctx: RecordContext) -> None:
    verdict = validate_record(record(workstream_id=None, worker_id=None, task_count=-2, task_started_at="x"), ctx)
    codes = [(e.code, e.field) for e in verdict.errors]
    assert codes[0] == ("missing_workstream_id", "workstream_id")
    assert ("missing_field", "worker_id") in codes
    assert ("invalid_value", "task_count") in codes
    assert ("invalid_timestamp", "task_started_at") in codes


def test_errors_are_sorted_by_field_order(ctx: RecordContext) -> None:
    verdict = validate_record({"asset_id": 1, "task_url": 2, "unique_id": 3, "received_at": 4}, ctx)
    fields = [e.field for e in verdict.errors]
    assert fields == sorted(fields, key=FIELD_ORDER.index)
    assert {"asset_id", "task_url", "unique_id", "received_at", "worker_id", "use_case_id"} <= set(fields)


# --------------------------------------------------------------------------- blanks, trimming, defaults


def test_blank_optional_strings_are_absent(ctx: RecordContext) -> None:
    rec = accepted(validate_record(record(data_source="", task_id="   ", duration="", task_created_at=" ", replace_duplicate=""), ctx))
    assert rec.data_source is None
    assert rec.task_id is None
    assert rec.duration is None
    assert rec.task_created_at is None
    assert rec.replace_duplicate is True


def test_nulls_are_absent(ctx: RecordContext) -> None:
    data = record()
    data.update(task_id=None, task_count=None, data_source=None, replace_duplicate=None)
    rec = accepted(validate_record(data, ctx))
    assert (rec.task_id, rec.task_count, rec.data_source, rec.replace_duplicate) == (None, 1, None, True)


@pytest.mark.parametrize("blank", ["", "  ", "\t\n"])
def test_blank_required_string_is_missing_field(ctx: RecordContext, blank: str) -> None:
    assert first(validate_record(record(worker_id=blank), ctx)) == ("missing_field", "worker_id")
    assert first(validate_record(record(task_started_at=blank), ctx)) == ("missing_field", "task_started_at")


def test_strings_are_trimmed(ctx: RecordContext) -> None:
    rec = accepted(validate_record(record(
        workstream_id=f"  {WS} ", worker_id="  W-17  ", use_case_id=f" {UC}\t", task_definition_id=f"\n{TD} ",
        task_id="  t1  ", dataset_id=" ds ", asset_id=" as ", unique_id=" u ", task_url=" https://x.test ",
    ), ctx))
    assert (rec.workstream_id, rec.worker_id, rec.use_case_id, rec.task_definition_id) == (WS, "W-17", UC, TD)
    assert (rec.task_id, rec.dataset_id, rec.asset_id, rec.unique_id, rec.task_url) == ("t1", "ds", "as", "u", "https://x.test")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("First.Last@Example.COM", "first.last@example.com"), ("  Worker@Example.com ", "worker@example.com"), ("Worker-ABC", "Worker-ABC")],
)
def test_email_worker_ids_lower_cased(ctx: RecordContext, raw: str, expected: str) -> None:
    assert accepted(validate_record(record(worker_id=raw), ctx)).worker_id == expected


def test_task_count_defaults_to_one(ctx: RecordContext) -> None:
    rec = accepted(validate_record(record(), ctx))
    assert rec.task_count == 1
    assert rec.subtask_count is None


def test_replace_duplicate_defaults_to_true(ctx: RecordContext) -> None:
    assert accepted(validate_record(record(), ctx)).replace_duplicate is True


@pytest.mark.parametrize(("raw", "expected"), [(False, False), ("false", False), ("NO", False), ("0", False), (True, True), ("Yes", True), (1, True)])
def test_replace_duplicate_values(ctx: RecordContext, raw, expected: bool) -> None:
    assert accepted(validate_record(record(replace_duplicate=raw), ctx)).replace_duplicate is expected


def test_unknown_fields_kept_as_extra(ctx: RecordContext) -> None:
    rec = accepted(validate_record(record(client_ref="abc", nested={"a": [1, 2]}, blank_extra="", zero_extra=0), ctx))
    assert rec.__pydantic_extra__ == {"client_ref": "abc", "nested": {"a": [1, 2]}, "blank_extra": "", "zero_extra": 0}
    assert "client_ref" not in TaskCompleted.model_fields


def test_no_extra_fields_gives_empty_extra(ctx: RecordContext) -> None:
    assert accepted(validate_record(record(), ctx)).__pydantic_extra__ == {}


# --------------------------------------------------------------------------- workstream resolution (SPEC 2.3)


def test_record_workstream_wins_over_path_and_run(config: WorkstreamConfig) -> None:
    ctx = RecordContext(config=config, path_workstream="ws-audio", run_workstream="ws-audio")
    assert accepted(validate_record(record(), ctx)).workstream_id == WS


def test_path_workstream_when_record_has_none(config: WorkstreamConfig) -> None:
    ctx = RecordContext(config=config, path_workstream=WS, run_workstream="ws-audio")
    assert accepted(validate_record(record(workstream_id=None), ctx)).workstream_id == WS
    assert accepted(validate_record(record(workstream_id="  "), ctx)).workstream_id == WS  # blank is absent


def test_run_workstream_last(config: WorkstreamConfig) -> None:
    ctx = RecordContext(config=config, run_workstream=WS)
    assert accepted(validate_record(record(workstream_id=None), ctx)).workstream_id == WS
    ctx = RecordContext(config=config, path_workstream=None, run_workstream="ws-audio")
    verdict = validate_record(record(workstream_id=None), ctx)
    # resolved to ws-audio, so UC is checked against ws-audio's use cases
    assert first(verdict) == ("unknown_use_case", "use_case_id")


# --------------------------------------------------------------------------- time zones


def test_offsets_normalized_to_utc(ctx: RecordContext) -> None:
    rec = accepted(validate_record(record(
        task_started_at="2020-12-22T15:00:00+05:45",
        task_completed_at="2020-12-22 10:13:24.127-05:00",
        task_created_at="2020-12-22T00:30:00+01:00",
    ), ctx))
    assert rec.task_started_at == datetime(2020, 12, 22, 9, 15, tzinfo=UTC)
    assert rec.task_completed_at == datetime(2020, 12, 22, 15, 13, 24, 127000, tzinfo=UTC)
    assert rec.task_created_at == datetime(2020, 12, 21, 23, 30, tzinfo=UTC)
    for value in (rec.task_started_at, rec.task_completed_at, rec.task_created_at):
        assert value.utcoffset().total_seconds() == 0
        assert value.tzinfo == UTC


def test_naive_datetimes_read_in_default_tz(config: WorkstreamConfig) -> None:
    ctx = RecordContext(config=config, default_tz=ZoneInfo("Asia/Kathmandu"))
    rec = accepted(validate_record(record(
        task_started_at="2020-12-22T09:13:24",
        task_completed_at="2020-12-22 10:00",
        received_at="2020-12-22T10:00:00Z",  # an explicit offset is not re-read
    ), ctx))
    assert rec.task_started_at == datetime(2020, 12, 22, 3, 28, 24, tzinfo=UTC)
    assert rec.task_completed_at == datetime(2020, 12, 22, 4, 15, tzinfo=UTC)
    assert rec.received_at == datetime(2020, 12, 22, 10, tzinfo=UTC)
    assert rec.task_started_at.utcoffset().total_seconds() == 0


def test_naive_datetimes_default_to_utc(ctx: RecordContext) -> None:
    rec = accepted(validate_record(record(task_started_at="2020-12-22T09:00:00", task_completed_at="2020-12-22T09:30:00"), ctx))
    assert rec.task_started_at == datetime(2020, 12, 22, 9, tzinfo=UTC)


# --------------------------------------------------------------------------- robustness


def test_big_integer_in_task_metadata_gives_a_verdict(ctx: RecordContext) -> None:
    """validate_record returns a Verdict for any parsed record; it must not raise (SPEC 3: nothing crashes)."""
    verdict = validate_record(record(task_metadata={"n": 2**64}), ctx)
    assert isinstance(verdict, Verdict)
    if verdict.record is not None:
        assert verdict.record.task_metadata == {"n": "18446744073709551616"}
    else:
        assert verdict.errors[0].field == "task_metadata"


# --------------------------------------------------------------------------- kinds and codes, derived from the model


def test_field_specs_come_from_the_model() -> None:
    specs = {s.name: s for s in field_specs()}
    assert tuple(specs) == FIELD_ORDER
    assert {n for n, s in specs.items() if s.required} == {
        "workstream_id", "worker_id", "use_case_id", "task_definition_id", "task_started_at", "task_completed_at"}
    assert (specs["task_count"].default, specs["replace_duplicate"].default, specs["subtask_count"].default) == (1, True, None)
    assert {n: s.kind for n, s in specs.items()} == {
        "workstream_id": FieldKind.STRING, "worker_id": FieldKind.WORKER_ID, "task_id": FieldKind.STRING,
        "task_url": FieldKind.STRING, "task_count": FieldKind.COUNT, "subtask_count": FieldKind.COUNT,
        "use_case_id": FieldKind.STRING, "task_definition_id": FieldKind.STRING, "task_started_at": FieldKind.TIMESTAMP,
        "task_completed_at": FieldKind.TIMESTAMP, "duration": FieldKind.SECONDS, "task_created_at": FieldKind.TIMESTAMP,
        "data_source": FieldKind.DATA_SOURCE, "task_metadata": FieldKind.KEY_VALUES, "task_measurements": FieldKind.KEY_VALUES,
        "dataset_id": FieldKind.STRING, "asset_id": FieldKind.STRING, "unique_id": FieldKind.STRING,
        "replace_duplicate": FieldKind.FLAG, "received_at": FieldKind.TIMESTAMP,
    }
    assert specs["task_completed_at"].checks == ("TaskCompleted._not_before_start",)
    assert all(s.description for s in specs.values())


def test_a_fields_kind_is_its_rule() -> None:
    """The kind in a field's type validates it: no separate validator to keep in step."""

    class Tiny(BaseModel):
        count: Annotated[int, FieldKind.COUNT] = 1
        flag: Annotated[bool, FieldKind.FLAG] = True

    assert Tiny.model_validate({"count": "10.0", "flag": "NO"}).model_dump() == {"count": 10, "flag": False}
    assert [e["ctx"]["error"].code for e in _errors(Tiny, {"count": 10**13})] == [ErrorCode.INVALID_VALUE]


def _errors(model: type[BaseModel], data: dict) -> list:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return info.value.errors()


def test_error_codes_are_members(ctx: RecordContext) -> None:
    [error] = validate_record(record(task_count="ten"), ctx).errors
    assert error.code is ErrorCode.INVALID_TYPE


def test_a_field_name_that_is_not_valid_unicode_is_invalid_encoding(ctx: RecordContext) -> None:
    assert first(validate_record({**record(), "n\ud800me": 1}, ctx)) == ("invalid_encoding", None)


class _Buggy(TaskCompleted):
    @field_validator("task_id")
    @classmethod
    def _explode(cls, value: str) -> str:
        if value == "deep":
            raise RecursionError("maximum recursion depth exceeded")
        if value == "bad text":
            raise UnicodeEncodeError("utf-8", value, 0, 1, "surrogates not allowed")
        raise KeyError(value)


@pytest.mark.parametrize(("task_id", "code", "field", "words"), [
    ("deep", "invalid_value", None, "nested too deep"), ("bad text", "invalid_encoding", "task_id", "surrogates not allowed"),
    ("other", "invalid_value", None, "KeyError"),
])
def test_an_exception_no_rule_expected_is_a_verdict_not_a_crash(ctx: RecordContext, task_id: str, code: str,
                                                                 field: str | None, words: str) -> None:
    verdict = validate_record(record(task_id=task_id), ctx, _Buggy)
    assert first(verdict) == (code, field)
    assert words in verdict.errors[0].message
