"""Vectorized certification of records: the fast path beside the pydantic model.

``certify`` looks at a chunk's parsed records column by column with pyarrow.compute and
accepts a record only when every value is of the plain, unambiguous form it can check exactly
(trimmed ASCII-edged strings, non-negative integers, ISO 8601 datetimes with an offset, known
workstream/use case/task definition, ...). Every other record is *deferred* to the pydantic
model, which decides it and writes the reject reasons. So the fast path never rejects and
never decides a hard case; a property test (tests/test_fast_validate.py) proves that what it
accepts, it accepts with exactly the values the model produces.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import rules
from schemas.config import WorkstreamConfig

__all__ = ["certify"]

_STRING_FIELDS = ("workstream_id", "worker_id", "task_id", "task_url", "use_case_id", "task_definition_id",
                  "data_source", "dataset_id", "asset_id", "unique_id")
_REQUIRED = ("workstream_id", "worker_id", "use_case_id", "task_definition_id", "task_started_at", "task_completed_at")
_TIMESTAMP_FIELDS = ("task_started_at", "task_completed_at", "task_created_at", "received_at")
_OBJECT_FIELDS = ("task_metadata", "task_measurements")
_UTC = pa.timestamp("us", tz="UTC")

# Strings the model would keep as they are: first and last character printable ASCII, not space.
_TRIMMED = r"(?s)^[!-~](.*[!-~])?$"
_ASCII_SPACE = " \t\n\r\x0b\x0c"
# The model's e-mail pattern, with Python's ASCII \\s spelled out (RE2's \\s lacks \\v and \\x1c-\\x1f).
_NOT_AT_OR_SPACE = r"[^@\t\n\x0b\x0c\r\x1c-\x20]"
_EMAIL = f"^{_NOT_AT_OR_SPACE}+@{_NOT_AT_OR_SPACE}+\\.{_NOT_AT_OR_SPACE}+$"
_DATE_TIME = (r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[T ]([01][0-9]|2[0-3]):[0-5][0-9]"
              r"(:[0-5][0-9](\.[0-9]{1,6})?)?")
_ZONED = _DATE_TIME + r"(Z|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])$"
_NAIVE = _DATE_TIME + "$"
_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?", re.ASCII)
_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def certify(values: Mapping[str, list[Any]], config: WorkstreamConfig, default_tz_is_utc: bool,
            default_workstream: str | None) -> tuple[dict[str, pa.Array], np.ndarray]:
    """Normalized columns of the records, and the mask of the records certified.

    ``values`` holds each field's raw values (None where absent), one list per field of the
    model, all of one length. Values of records that are not certified are meaningless and
    must be decided by the model.
    """
    n = len(values["worker_id"])
    ok = np.ones(n, dtype=bool)
    columns: dict[str, pa.Array] = {}

    for name in _STRING_FIELDS:
        array, fine = _strings(values[name])
        columns[name] = array
        ok &= fine
    if default_workstream is not None:
        columns["workstream_id"] = pc.fill_null(columns["workstream_id"], default_workstream)
    worker = columns["worker_id"]
    ok &= _mask(pc.or_kleene(pc.is_null(worker), pc.string_is_ascii(worker)))
    columns["worker_id"] = pc.if_else(pc.match_substring_regex(worker, _EMAIL), pc.utf8_lower(worker), worker)
    source = columns["data_source"]
    ok &= _mask(pc.or_kleene(pc.is_null(source), pc.is_in(source, value_set=pa.array(rules.DATA_SOURCES))))

    for name in ("task_count", "subtask_count"):
        counts, fine = _each(values[name], _count)
        columns[name] = pa.array(counts, pa.int64())
        ok &= fine
    columns["task_count"] = pc.fill_null(columns["task_count"], 1)
    durations, fine = _each(values["duration"], _duration)
    columns["duration"] = pa.array(durations, pa.float64())
    ok &= fine
    flags, fine = _each(values["replace_duplicate"], _flag)
    columns["replace_duplicate"] = pc.fill_null(pa.array(flags, pa.bool_()), True)
    ok &= fine

    for name in _TIMESTAMP_FIELDS:
        array, fine = _timestamps(values[name], default_tz_is_utc)
        columns[name] = array
        ok &= fine
    ok &= _mask(pc.greater_equal(columns["task_completed_at"], columns["task_started_at"]))

    for name in _OBJECT_FIELDS:
        maps, fine = _objects(values[name])
        columns[name] = pa.array(maps, pa.map_(pa.string(), pa.string()))
        ok &= fine

    for name in _REQUIRED:
        ok &= _mask(pc.is_valid(columns[name]))
    known = pa.array([f"{w}\x1f{u}\x1f{t}" for w, ucs in config.task_definitions.items()
                      for u, tds in ucs.items() for t in tds], pa.string())
    triple = pc.binary_join_element_wise(columns["workstream_id"], columns["use_case_id"],
                                         columns["task_definition_id"], "\x1f")
    ok &= _mask(pc.is_in(triple, value_set=known))
    return columns, ok


def _mask(condition: pa.Array) -> np.ndarray:
    """A boolean Arrow array as numpy, null counting as false (not certified)."""
    return pc.fill_null(condition, False).to_numpy(zero_copy_only=False)


def _strings(values: list[Any]) -> tuple[pa.Array, np.ndarray]:
    try:
        array = pa.array(values, pa.string())
        fine = np.ones(len(values), dtype=bool)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        fine = np.array([v is None or type(v) is str for v in values], dtype=bool)
        array = pa.array([v if type(v) is str else None for v in values], pa.string())
    # Trim ASCII white space only: where what is left starts and ends with a printable ASCII
    # character, Python's str.strip() (the model's) would have stopped at the same characters.
    trimmed = pc.utf8_trim(array, characters=_ASCII_SPACE)
    array = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)  # blank is absent
    fine &= _mask(pc.or_kleene(pc.is_null(array), pc.match_substring_regex(array, _TRIMMED)))
    return array, fine


_DEFER = object()  # a value the fast path does not decide


def _each(values: list[Any], convert: Callable[[Any], Any]) -> tuple[list[Any], np.ndarray]:
    """Convert every present value; a value ``convert`` defers becomes null and is not certified."""
    out: list[Any] = []
    fine = np.ones(len(values), dtype=bool)
    for i, value in enumerate(values):
        converted = None if value is None else convert(value)
        if converted is _DEFER:
            converted = None
            fine[i] = False
        out.append(converted)
    return out, fine


def _count(value: Any) -> Any:
    kind = type(value)
    if kind is int and 0 <= value < 2**63:
        return value
    if kind is float and value.is_integer() and 0 <= value < 2**63:
        return int(value)
    if kind is str and value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)
    return _DEFER


def _duration(value: Any) -> Any:
    kind = type(value)
    if (kind is int and 0 <= value < 2**63) or (kind is float and 0 <= value and math.isfinite(value)):
        return float(value)
    if kind is str and _PLAIN_DECIMAL.fullmatch(value) and math.isfinite(float(value)):
        return float(value)
    return _DEFER


def _flag(value: Any) -> Any:
    if type(value) is bool:
        return value
    if type(value) is str:
        return _BOOL_TEXT.get(value.lower(), _DEFER)
    return _DEFER


def _timestamps(values: list[Any], default_tz_is_utc: bool) -> tuple[pa.Array, np.ndarray]:
    text, fine = _strings(values)
    zoned = _mask(pc.match_substring_regex(text, _ZONED))
    naive = _mask(pc.match_substring_regex(text, _NAIVE)) if default_tz_is_utc else np.zeros(len(values), bool)
    year = pc.utf8_slice_codeunits(text, 0, 4)
    in_range = _mask(pc.and_(pc.greater_equal(year, "0002"), pc.less_equal(year, "9998")))
    present = _mask(pc.is_valid(text))
    fine &= ~present | ((zoned | naive) & in_range)
    parsed = _cast_each(text, zoned & fine, _UTC)
    local = _cast_each(text, naive & fine, pa.timestamp("us")).cast(_UTC)
    result = pc.if_else(pa.array(naive), local, parsed)
    fine &= ~present | _mask(pc.is_valid(result))
    return result, fine


def _cast_each(text: pa.Array, select: np.ndarray, kind: pa.DataType) -> pa.Array:
    """Cast the selected strings; a value Arrow cannot parse (30 February) becomes null."""
    return _cast_or_null(pc.if_else(pa.array(select), text, pa.scalar(None, pa.string())), kind)


def _cast_or_null(text: pa.Array, kind: pa.DataType) -> pa.Array:
    """One bad value fails a whole cast: halve until the bad ones are alone (k log n casts)."""
    try:
        return pc.cast(text, kind)
    except pa.ArrowInvalid:
        if len(text) == 1:
            return pa.nulls(1, kind)
        middle = len(text) // 2
        return pa.concat_arrays([_cast_or_null(text[:middle], kind), _cast_or_null(text[middle:], kind)])


def _objects(values: list[Any]) -> tuple[list[dict[str, str | None] | None], np.ndarray]:
    out: list[dict[str, str | None] | None] = []
    fine = np.ones(len(values), dtype=bool)
    for i, value in enumerate(values):
        if type(value) is str:
            try:
                value = json.loads(value)
            except ValueError:
                value = None
            if type(value) is not dict:
                out.append(None)
                fine[i] = False
                continue
        if value is None:
            out.append(None)
        elif type(value) is dict:
            out.append({k: v if type(v) is str else rules.json_text(v) for k, v in value.items()})
        else:
            out.append(None)
            fine[i] = False
    return out, fine
