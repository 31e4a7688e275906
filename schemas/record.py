"""The task_completed record (SPEC 1) as a pydantic model: the source of truth for validation.

Fields are declared in SPEC 1's order, which is also the order errors are reported in: pydantic
validates fields in declaration order, so the first error is the first by field order (SPEC 3).
Each field's rule is a function of ``schemas.rules``; this module wires them to fields and turns
pydantic's errors into reject reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from functools import wraps
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas import rules
from schemas.config import WorkstreamConfig

__all__ = [
    "FIELD_ORDER",
    "FieldError",
    "RecordContext",
    "TaskCompleted",
    "validate_record",
]


@dataclass(frozen=True)
class RecordContext:
    """What validation needs beyond the record itself: the run's settings and its file."""

    config: WorkstreamConfig
    default_tz: tzinfo = timezone.utc
    path_workstream: str | None = None
    run_workstream: str | None = None


@dataclass(frozen=True)
class FieldError:
    """One broken rule: SPEC 3 error code, the field's API name (or None) and a message."""

    code: str
    field: str | None
    message: str

    def describe(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def _as_pydantic(rule: Callable[..., Any]) -> Callable[..., Any]:
    """Re-raise a rule's ``RuleError`` as a pydantic error whose type is the SPEC code."""

    @wraps(rule)
    def check(*args: Any) -> Any:
        try:
            return rule(*args)
        except rules.RuleError as err:
            raise _fail(err.code, err.message) from None

    return check


def _fail(code: str, message: str) -> PydanticCustomError:
    """A pydantic error whose type is the SPEC code, carrying our message as is."""
    return PydanticCustomError(code, "{message}", {"message": message})


def _timestamp(value: Any, info: ValidationInfo) -> datetime:
    context: RecordContext | None = info.context
    return rules.parse_timestamp(value, context.default_tz if context else timezone.utc)


def _data_source(value: Any) -> str:
    text = rules.clean_string(value)
    if text not in rules.DATA_SOURCES:
        raise rules.RuleError(
            "invalid_data_source", f"must be one of {', '.join(rules.DATA_SOURCES)}, got {text!r}"
        )
    return text


Str = Annotated[str, BeforeValidator(_as_pydantic(rules.clean_string))]
OptStr = Annotated[str | None, BeforeValidator(_as_pydantic(rules.clean_string))]
WorkerId = Annotated[str, BeforeValidator(_as_pydantic(rules.normalize_worker_id))]
Count = Annotated[int, BeforeValidator(_as_pydantic(rules.parse_count))]
OptCount = Annotated[int | None, BeforeValidator(_as_pydantic(rules.parse_count))]
OptSeconds = Annotated[float | None, BeforeValidator(_as_pydantic(rules.parse_duration))]
Timestamp = Annotated[datetime, BeforeValidator(_as_pydantic(_timestamp))]
OptTimestamp = Annotated[datetime | None, BeforeValidator(_as_pydantic(_timestamp))]
Flag = Annotated[bool, BeforeValidator(_as_pydantic(rules.parse_bool))]
OptDataSource = Annotated[str | None, BeforeValidator(_as_pydantic(_data_source))]
OptKeyValues = Annotated[dict[str, str | None] | None, BeforeValidator(_as_pydantic(rules.parse_object))]


class TaskCompleted(BaseModel):
    """One task_completed API body with its envelope fields, normalized."""

    model_config = ConfigDict(extra="allow")

    workstream_id: Str = Field(description="CloudFactory workstream; from the record, its file's path or --workstream-id")
    worker_id: WorkerId = Field(description="Worker who completed the task; e-mail addresses lower-cased")
    task_id: OptStr = Field(None, description="ID of the completed task")
    task_url: OptStr = Field(None, description="URL of the completed task")
    task_count: Count = Field(1, description="Tasks completed by this event (default 1)")
    subtask_count: OptCount = Field(None, description="Subtasks completed by this event")
    use_case_id: Str = Field(description="Use case of the workstream the task belongs to")
    task_definition_id: Str = Field(description="Task definition of the use case")
    task_started_at: Timestamp = Field(description="When the task was started (UTC)")
    task_completed_at: Timestamp = Field(description="When the task was completed (UTC)")
    duration: OptSeconds = Field(None, description="Seconds taken; derived as completed minus started when absent")
    task_created_at: OptTimestamp = Field(None, description="When the task was created (UTC)")
    data_source: OptDataSource = Field(None, description="How the data was sourced: api, csv_manual or csv_automated")
    task_metadata: OptKeyValues = Field(None, description="Key/value pairs that define the task; non-string values as JSON text")
    task_measurements: OptKeyValues = Field(None, description="Measured attributes; non-string values as JSON text")
    dataset_id: OptStr = Field(None, description="Dataset the task belongs to")
    asset_id: OptStr = Field(None, description="Parent asset of the task")
    unique_id: OptStr = Field(None, description="Client's unique id: part of the dedupe key")
    replace_duplicate: Flag = Field(True, description="Whether this record replaces an earlier one of its key (default true)")
    received_at: OptTimestamp = Field(None, description="When the API received the call (UTC), if the landing file records it")

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any, info: ValidationInfo) -> Any:
        """SPEC 1: blank strings and nulls are absent; a missing workstream comes from context."""
        if not isinstance(data, Mapping):
            raise _fail("not_an_object", f"a record must be a JSON object, got {type(data).__name__}")
        cleaned = {k: v for k, v in data.items() if k not in FIELD_ORDER or not rules.is_blank(v)}
        context: RecordContext | None = info.context
        if "workstream_id" not in cleaned and context is not None:
            resolved = context.path_workstream or context.run_workstream
            if resolved:
                cleaned["workstream_id"] = resolved
        return cleaned

    @field_validator("workstream_id")
    @classmethod
    def _known_workstream(cls, value: str, info: ValidationInfo) -> str:
        context: RecordContext | None = info.context
        if context is not None and value not in context.config.task_definitions:
            raise _fail("unknown_workstream", f"workstream {value!r} is not in the workstream configuration")
        return value

    @field_validator("use_case_id")
    @classmethod
    def _known_use_case(cls, value: str, info: ValidationInfo) -> str:
        context: RecordContext | None = info.context
        workstream = info.data.get("workstream_id")
        if context is not None and workstream is not None:
            if value not in context.config.task_definitions[workstream]:
                raise _fail("unknown_use_case", f"use case {value!r} is not configured for workstream {workstream!r}")
        return value

    @field_validator("task_definition_id")
    @classmethod
    def _known_task_definition(cls, value: str, info: ValidationInfo) -> str:
        context: RecordContext | None = info.context
        workstream = info.data.get("workstream_id")
        use_case = info.data.get("use_case_id")
        if context is not None and workstream is not None and use_case is not None:
            if value not in context.config.task_definitions[workstream][use_case]:
                raise _fail("unknown_task_definition", f"task definition {value!r} is not configured for use case {use_case!r}")
        return value

    @field_validator("task_completed_at")
    @classmethod
    def _not_before_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        started = info.data.get("task_started_at")
        if started is not None and value < started:
            raise _fail("completed_before_started", f"{value.isoformat()} is before task_started_at {started.isoformat()}")
        return value


FIELD_ORDER: tuple[str, ...] = tuple(TaskCompleted.model_fields)

# pydantic's own error types that can still surface, mapped to SPEC codes.
_BUILTIN_CODES = {"missing": "missing_field", "model_type": "not_an_object", "dict_type": "not_an_object"}


@dataclass
class Verdict:
    """The outcome of validating one record: the model, or the errors in field order."""

    record: TaskCompleted | None = None
    errors: list[FieldError] = field(default_factory=list)


def _field_error(error: Mapping[str, Any]) -> FieldError:
    loc = error.get("loc") or ()
    name = str(loc[0]) if loc else None
    kind = error["type"]
    if kind == "missing":
        if name == "workstream_id":
            return FieldError("missing_workstream_id", name,
                              "no workstream_id in the record, its file path (workstream_id=<id>) or --workstream-id")
        return FieldError("missing_field", name, "is required but absent or blank")
    code = _BUILTIN_CODES.get(kind, kind if kind in _SPEC_CODES else "invalid_type")
    return FieldError(code, name, str(error["msg"]))


_SPEC_CODES = frozenset({
    "not_an_object", "missing_field", "invalid_type", "invalid_value", "invalid_timestamp",
    "completed_before_started", "invalid_data_source", "missing_workstream_id",
    "unknown_workstream", "unknown_use_case", "unknown_task_definition",
})


def validate_record(data: Any, context: RecordContext) -> Verdict:
    """Validate one parsed record; errors come back ordered by SPEC 1's field order."""
    try:
        return Verdict(record=TaskCompleted.model_validate(data, context=context))
    except ValidationError as exc:
        errors = [_field_error(e) for e in exc.errors(include_url=False, include_input=False)]
        rank = {name: i for i, name in enumerate(FIELD_ORDER)}
        errors.sort(key=lambda e: rank.get(e.field or "", -1))
        return Verdict(errors=errors)
