"""The task_completed record as a pydantic model: the source of truth for validation.

Fields are declared in the contract's order, which is also the order errors are reported in:
pydantic validates fields in declaration order, so the first error is the first by field order.
Each field's type carries a ``FieldKind``; the kind *is* the field's rule (a function of
``schemas.rules``), so what a field is and how it is checked cannot drift apart. Everything
else that needs to know the fields (the fast path, the Arrow schema, the reference) asks
``field_specs`` rather than listing them again.
"""

from __future__ import annotations

import functools
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from enum import StrEnum
from typing import Annotated, Any

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema, PydanticUndefined, core_schema

from schemas import rules
from schemas.config import WorkstreamConfig
from schemas.errors import ErrorCode, code_of_exception

__all__ = [
    "FIELD_ORDER",
    "FieldError",
    "FieldKind",
    "FieldSpec",
    "RecordContext",
    "TaskCompleted",
    "Verdict",
    "field_specs",
    "model_checks",
    "parse_json_record",
    "validate_record",
]


@dataclass(frozen=True)
class RecordContext:
    """What validation needs beyond the record itself: the run's settings and its file."""

    config: WorkstreamConfig
    default_tz: tzinfo = timezone.utc
    path_workstream: str | None = None
    run_workstream: str | None = None


class FieldKind(StrEnum):
    """What a field holds. Put in a field's ``Annotated`` type, the kind also validates it with
    its rule, so a field's kind and its rule are one fact.

    Members are ``NAME = "value", "JSON type", "rule as the reference states it"``.
    """

    json_type: str
    rule: str

    def __new__(cls, value: str, json_type: str = "", rule: str = "") -> FieldKind:
        member = str.__new__(cls, value)
        member._value_ = value
        member.json_type = json_type
        member.rule = rule
        return member

    STRING = "string", "string", "trimmed"
    WORKER_ID = "worker_id", "string", "trimmed; an e-mail address is lower-cased"
    COUNT = "count", "integer", (f"a whole number from 0 to {rules.MAX_COUNT_TEXT}: "
                                 '`10`, `10.0` and `"10"` are 10; `10.5` and `-1` are rejected')
    SECONDS = "seconds", "number", "seconds: a finite number >= 0"
    TIMESTAMP = "timestamp", "datetime", (
        "ISO 8601 date and time (`2020-12-22T09:13:24.127Z`, an offset such as `+05:45`, a space instead of "
        "`T`); without an offset it is read in the run's time zone (`--timezone`, UTC by default); "
        "normalized to UTC; a date alone is rejected")
    FLAG = "flag", "boolean", "`true`/`false`, `1`/`0`, `yes`/`no`, in any case"
    DATA_SOURCE = "data_source", "string", f"one of {', '.join(f'`{s}`' for s in rules.DATA_SOURCES)}"
    KEY_VALUES = "key_values", "object", (
        "a JSON object (in CSV: its JSON text); values that are not strings are kept as their JSON text; "
        f"at most {rules.MAX_DEPTH} levels of nesting")

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.with_info_before_validator_function(_RULES[self], handler(source))


def _timestamp(value: Any, info: ValidationInfo) -> datetime:
    context: RecordContext | None = info.context
    return rules.parse_timestamp(value, context.default_tz if context else timezone.utc)


def _data_source(value: Any) -> str:
    text = rules.clean_string(value)
    if text not in rules.DATA_SOURCES:
        raise rules.RuleError(ErrorCode.INVALID_DATA_SOURCE,
                              f"must be one of {', '.join(rules.DATA_SOURCES)}, got {text!r}")
    return text


def _without_info(rule: Callable[[Any], Any]) -> Callable[[Any, ValidationInfo], Any]:
    return lambda value, _info: rule(value)


_RULES: dict[FieldKind, Callable[[Any, ValidationInfo], Any]] = {
    FieldKind.STRING: _without_info(rules.clean_string),
    FieldKind.WORKER_ID: _without_info(rules.normalize_worker_id),
    FieldKind.COUNT: _without_info(rules.parse_count),
    FieldKind.SECONDS: _without_info(rules.parse_duration),
    FieldKind.TIMESTAMP: _timestamp,
    FieldKind.FLAG: _without_info(rules.parse_bool),
    FieldKind.DATA_SOURCE: _without_info(_data_source),
    FieldKind.KEY_VALUES: _without_info(rules.parse_object),
}

Str = Annotated[str, FieldKind.STRING]
OptStr = Annotated[str | None, FieldKind.STRING]
WorkerId = Annotated[str, FieldKind.WORKER_ID]
Count = Annotated[int, FieldKind.COUNT]
OptCount = Annotated[int | None, FieldKind.COUNT]
OptSeconds = Annotated[float | None, FieldKind.SECONDS]
Timestamp = Annotated[datetime, FieldKind.TIMESTAMP]
OptTimestamp = Annotated[datetime | None, FieldKind.TIMESTAMP]
Flag = Annotated[bool, FieldKind.FLAG]
OptDataSource = Annotated[str | None, FieldKind.DATA_SOURCE]
OptKeyValues = Annotated[dict[str, str | None] | None, FieldKind.KEY_VALUES]


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
        """Strings are trimmed; an empty or blank string, and null, count as absent (so an empty required
        field is `missing_field`). A record without `workstream_id` takes the one of its file's path (a
        `workstream_id=<id>` folder), else the run's `--workstream-id`."""
        if not isinstance(data, Mapping):
            raise rules.RuleError(ErrorCode.NOT_AN_OBJECT, f"a record must be a JSON object, got {type(data).__name__}")
        for key in data:
            problem = rules.encoding_problem(key) if isinstance(key, str) else None
            if problem is not None:  # a name no column or JSON text can hold as it is
                raise rules.RuleError(ErrorCode.INVALID_ENCODING, f"the field name {key!r} {problem}")
        fields = cls.model_fields
        cleaned = {k: v for k, v in data.items() if k not in fields or not rules.is_blank(v)}
        context: RecordContext | None = info.context
        if "workstream_id" not in cleaned and context is not None:
            resolved = context.path_workstream or context.run_workstream
            if resolved:
                cleaned["workstream_id"] = resolved
        return cleaned

    @field_validator("workstream_id")
    @classmethod
    def _known_workstream(cls, value: str, info: ValidationInfo) -> str:
        """must be a workstream of the workstream configuration"""
        context: RecordContext | None = info.context
        if context is not None and value not in context.config.task_definitions:
            raise rules.RuleError(ErrorCode.UNKNOWN_WORKSTREAM,
                                  f"workstream {value!r} is not in the workstream configuration")
        return value

    @field_validator("use_case_id")
    @classmethod
    def _known_use_case(cls, value: str, info: ValidationInfo) -> str:
        """must be a use case of the record's workstream"""
        context: RecordContext | None = info.context
        workstream = info.data.get("workstream_id")
        if context is not None and workstream is not None:
            if value not in context.config.task_definitions[workstream]:
                raise rules.RuleError(ErrorCode.UNKNOWN_USE_CASE,
                                      f"use case {value!r} is not configured for workstream {workstream!r}")
        return value

    @field_validator("task_definition_id")
    @classmethod
    def _known_task_definition(cls, value: str, info: ValidationInfo) -> str:
        """must be a task definition of that use case"""
        context: RecordContext | None = info.context
        workstream = info.data.get("workstream_id")
        use_case = info.data.get("use_case_id")
        if context is not None and workstream is not None and use_case is not None:
            if value not in context.config.task_definitions[workstream][use_case]:
                raise rules.RuleError(ErrorCode.UNKNOWN_TASK_DEFINITION,
                                      f"task definition {value!r} is not configured for use case {use_case!r}")
        return value

    @field_validator("task_completed_at")
    @classmethod
    def _not_before_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        """must not be before `task_started_at`"""
        started = info.data.get("task_started_at")
        if started is not None and value < started:
            raise rules.RuleError(ErrorCode.COMPLETED_BEFORE_STARTED,
                                  f"{value.isoformat()} is before task_started_at {started.isoformat()}")
        return value


# --------------------------------------------------------------------------- the fields, derived


@dataclass(frozen=True)
class FieldSpec:
    """One field of a record model, as the rest of the code needs to know it."""

    name: str
    kind: FieldKind | None  # None: the field's type names no kind (nothing but the model can check it)
    json_type: str
    required: bool
    default: Any  # the value of an absent field (None when required or without a default)
    description: str
    checks: tuple[str, ...]  # qualified names of the field's checks beyond its kind's rule
    rule: str  # what the kind's rule and the checks require, as the reference states it


_JSON_TYPES: dict[object, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                                  datetime: "datetime", dict: "object", list: "array"}


def _json_type(annotation: object) -> str:
    while typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return _JSON_TYPES.get(typing.get_origin(annotation) or annotation, "any")


@functools.cache
def field_specs(model: type[BaseModel] = TaskCompleted) -> tuple[FieldSpec, ...]:
    """The fields of a record model in declaration (= error report) order, with kind, required-ness,
    default and checks, all read from the model itself."""
    validators: dict[str, list[Callable[..., Any]]] = {}
    for decorator in model.__pydantic_decorators__.field_validators.values():
        for name in decorator.info.fields:
            validators.setdefault(name, []).append(decorator.func)
    specs = []
    for name, info in model.model_fields.items():
        kinds = [m for m in info.metadata if isinstance(m, FieldKind)]
        kind = kinds[0] if len(kinds) == 1 else None
        others = [m for m in info.metadata if not isinstance(m, FieldKind)]
        funcs = validators.get(name, [])
        checks = tuple(_qualname(getattr(m, "func", m)) for m in others) + tuple(_qualname(f) for f in funcs)
        notes = [kind.rule] if kind else []
        notes += [(f.__doc__ or "").strip().splitlines()[0] for f in funcs if (f.__doc__ or "").strip()]
        default = None if info.default is PydanticUndefined else info.default
        specs.append(FieldSpec(name=name, kind=kind, json_type=kind.json_type if kind else _json_type(info.annotation),
                               required=info.is_required(), default=default, description=info.description or "",
                               checks=checks, rule="; ".join(notes)))
    return tuple(specs)


def model_checks(model: type[BaseModel] = TaskCompleted) -> tuple[str, ...]:
    """Qualified names of the model's whole-record validators."""
    return tuple(_qualname(d.func) for d in model.__pydantic_decorators__.model_validators.values())


def _qualname(func: Any) -> str:
    return str(getattr(func, "__qualname__", None) or repr(func))


FIELD_ORDER: tuple[str, ...] = tuple(spec.name for spec in field_specs(TaskCompleted))


# --------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class FieldError:
    """One broken rule: its error code, the field's API name (or None) and a message."""

    code: ErrorCode
    field: str | None
    message: str

    def describe(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    @classmethod
    def from_exception(cls, exc: BaseException, field: str | None = None) -> FieldError:
        """A record whose checking failed with an exception that no rule expected."""
        if isinstance(exc, RecursionError):
            return cls(ErrorCode.INVALID_VALUE, field, "is nested too deep to be checked")
        return cls(code_of_exception(exc), field, f"could not be checked: {type(exc).__name__}: {exc}")


@dataclass
class Verdict:
    """The outcome of validating one record: the model, or the errors in field order."""

    record: TaskCompleted | None = None
    errors: list[FieldError] = field(default_factory=list)


# pydantic's own error types that can still surface, mapped to our codes.
_PYDANTIC_CODES = {
    "model_type": ErrorCode.NOT_AN_OBJECT,
    "dict_type": ErrorCode.NOT_AN_OBJECT,
    "string_unicode": ErrorCode.INVALID_ENCODING,
    "value_error": ErrorCode.INVALID_VALUE,
}


def _field_error(error: Mapping[str, Any]) -> FieldError:
    loc = error.get("loc") or ()
    name = str(loc[0]) if loc else None
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, rules.RuleError):  # a rule's own verdict: its code and message as they are
        return FieldError(cause.code, name, cause.message)
    if isinstance(cause, Exception):  # a ValueError no rule meant (UnicodeError is one)
        return FieldError(code_of_exception(cause), name, str(error["msg"]))
    if error["type"] == "missing":
        if name == "workstream_id":
            return FieldError(ErrorCode.MISSING_WORKSTREAM_ID, name,
                              "no workstream_id in the record, its file path (workstream_id=<id>) or --workstream-id")
        return FieldError(ErrorCode.MISSING_FIELD, name, "is required but absent or blank")
    return FieldError(_PYDANTIC_CODES.get(error["type"], ErrorCode.INVALID_TYPE), name, str(error["msg"]))


def validate_record(data: Any, context: RecordContext, model: type[TaskCompleted] = TaskCompleted) -> Verdict:
    """Validate one parsed record; errors come back ordered by field order. Never raises."""
    try:
        return Verdict(record=model.model_validate(data, context=context))
    except ValidationError as exc:
        errors = [_field_error(e) for e in exc.errors(include_url=False, include_input=False)]
    except Exception as exc:  # noqa: BLE001 - one record must never stop the run: it becomes a reject
        return Verdict(errors=[FieldError.from_exception(exc)])
    rank = {spec.name: i for i, spec in enumerate(field_specs(model))}
    errors.sort(key=lambda e: rank.get(e.field or "", -1))
    return Verdict(errors=errors)


_JSON_FALLBACK_DEPTH = 512  # nesting that json (which recurses) reads safely, for lines orjson refuses


def parse_json_record(raw: bytes, what: str = "line") -> tuple[Any, FieldError | None]:
    """One JSON-lines record (or API body) parsed, or the problem that stops it being read.

    The one parser of the batch path and the intake server: a lone surrogate escape orjson
    refuses is read with ``json`` so that the rules name its field (``invalid_encoding``).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, FieldError(ErrorCode.INVALID_ENCODING, None, f"{what} is not valid UTF-8 (byte {exc.start})")
    try:
        return orjson.loads(text), None
    except orjson.JSONDecodeError as exc:
        if "surrogate" in str(exc):
            return _parse_json_with_surrogates(text, exc, what)
        return None, FieldError(ErrorCode.MALFORMED_JSON, None, f"{what} is not valid JSON: {exc}")


def _parse_json_with_surrogates(text: str, refused: Exception, what: str) -> tuple[Any, FieldError | None]:
    """A line orjson refuses for a lone surrogate escape (``"\\ud800"``): read it with json, so
    the field that holds it is named by the rules (``invalid_encoding``)."""
    problem = FieldError(ErrorCode.INVALID_ENCODING, None, f"{what} holds text that is not valid Unicode: {refused}")
    if rules.json_nesting(text) > _JSON_FALLBACK_DEPTH:
        return None, problem
    try:
        return json.loads(text, parse_constant=_refuse_constant), None  # as strict as orjson otherwise
    except (ValueError, RecursionError):
        return None, problem


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
