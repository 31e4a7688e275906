"""Vectorized certification of records: the fast path beside the pydantic model.

``Certifier.certify`` looks at a chunk's parsed records column by column with pyarrow.compute
and accepts a record only when every value is of the plain, unambiguous form it can check
exactly (trimmed ASCII-edged strings, non-negative integers, ISO 8601 datetimes with an offset,
known workstream/use case/task definition, ...). Every other record is *deferred* to the
pydantic model, which decides it and writes the reject reasons. So the fast path never rejects
and never decides a hard case; a property test (tests/test_fast_validate.py) proves that what it
accepts, it accepts with exactly the values the model produces.

The fields come from the model (``schemas.record.field_specs``): each is checked by the
converter of its ``FieldKind``. A field the fast path cannot check the way the model does (a
kind it has no converter for, or a check of the model it does not reimplement) is left to the
model: a record holding a value there is deferred.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from schemas import rules
from schemas.config import WorkstreamConfig
from schemas.record import FieldKind, FieldSpec, TaskCompleted, field_specs, model_checks
from schemas.tables import arrow_schema

__all__ = ["Certifier"]

_UTC = pa.timestamp("us", tz="UTC")

# The model's checks beyond the fields' kinds that ``certify`` does itself (by these fields' names).
_REIMPLEMENTED = frozenset({
    "TaskCompleted._blank_is_absent",  # blank is absent; the workstream from the path or the run
    "TaskCompleted._known_workstream",  # the three: (workstream, use case, task definition) is known
    "TaskCompleted._known_use_case",
    "TaskCompleted._known_task_definition",
    "TaskCompleted._not_before_start",  # completed >= started
})

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
_SEP = "\x1f"


class Certifier:
    """The fast path for one model and one configuration; build it once per worker."""

    def __init__(self, config: WorkstreamConfig, model: type[TaskCompleted] = TaskCompleted) -> None:
        self.fields: tuple[FieldSpec, ...] = field_specs(model)
        self._types = {f.name: f.type for f in arrow_schema(model)}
        self._whole_records = set(model_checks(model)) <= _REIMPLEMENTED
        self._known = pa.array(sorted(f"{w}{_SEP}{u}{_SEP}{t}" for w, ucs in config.task_definitions.items()
                                      for u, tds in ucs.items() for t in tds), pa.string())
        # The fields each converter checks. Every converter works value by value, so a kind's
        # fields go through it in one call: pyarrow's cost per call (a regex is compiled for
        # each) is paid once per kind, not once per field, which counts for small batches.
        by_kind: dict[FieldKind, list[str]] = {}
        for spec in self.fields:
            if spec.kind in _CONVERTERS and set(spec.checks) <= _REIMPLEMENTED:
                by_kind.setdefault(spec.kind, []).append(spec.name)
        self._by_kind = {kind: tuple(names) for kind, names in by_kind.items()}

    def certify(self, values: Mapping[str, list[Any] | pa.Array], default_tz_is_utc: bool,
                default_workstream: str | None) -> tuple[dict[str, pa.Array], np.ndarray]:
        """Normalized columns of the records, and the mask of the records certified.

        ``values`` holds each field's raw values (None or "" where absent), one list per field
        of the model, or one Arrow text column per field (CSV read by Arrow), all of one length.
        Values of records that are not certified are meaningless and must be decided by the model.
        """
        n = len(next(iter(values.values()))) if values else 0
        ok = np.ones(n, dtype=bool) if self._whole_records else np.zeros(n, dtype=bool)
        converted: dict[str, tuple[pa.Array, np.ndarray]] = {}
        for kind, names in self._by_kind.items():
            arrays, fines = _CONVERTERS[kind](_joined([values[name] for name in names]), default_tz_is_utc)
            for i, name in enumerate(names):
                converted[name] = arrays.slice(i * n, n), fines[i * n:(i + 1) * n]
        columns: dict[str, pa.Array] = {}
        for spec in self.fields:
            if spec.name not in converted:
                array, fine = self._left_to_the_model(spec, values[spec.name])
            else:
                array, fine = converted[spec.name]
                if spec.default is not None:
                    array = pc.fill_null(array, pa.scalar(spec.default, array.type))
            if spec.name == "workstream_id" and default_workstream is not None:
                array = pc.fill_null(array, default_workstream)
            if spec.required:
                fine &= _mask(pc.is_valid(array))
            columns[spec.name] = array
            ok &= fine
        ok &= _mask(pc.greater_equal(columns["task_completed_at"], columns["task_started_at"]))
        triple = pc.binary_join_element_wise(columns["workstream_id"], columns["use_case_id"],
                                             columns["task_definition_id"], _SEP)
        ok &= _mask(pc.is_in(triple, value_set=self._known))
        return columns, ok

    def _left_to_the_model(self, spec: FieldSpec, values: list[Any] | pa.Array) -> tuple[pa.Array, np.ndarray]:
        """A field only the model can check: its default where absent; a present value defers the record."""
        kind = self._types[spec.name]
        if isinstance(values, pa.Array):
            fine = _mask(_absent(values))
        else:
            fine = np.array([value is None or value == "" for value in values], dtype=bool)
        try:
            return pa.array([spec.default] * len(values), kind), fine
        except (pa.ArrowException, TypeError, ValueError):
            return pa.nulls(len(values), kind), np.zeros(len(values), dtype=bool)


def _joined(columns: list[list[Any] | pa.Array]) -> list[Any] | pa.Array:
    """Columns of one kind one after the other: lists as a list, Arrow columns as an array."""
    if columns and isinstance(columns[0], pa.Array):
        return pa.concat_arrays(columns)
    joined: list[Any] = []
    for column in columns:
        joined += column
    return joined


def _mask(condition: pa.Array) -> np.ndarray:
    """A boolean Arrow array as numpy, null counting as false (not certified)."""
    return pc.fill_null(condition, False).to_numpy(zero_copy_only=False)


def _strings(values: list[Any] | pa.Array, _utc: bool = True) -> tuple[pa.Array, np.ndarray]:
    if isinstance(values, pa.Array):  # text read by Arrow
        array, fine = values, np.ones(len(values), dtype=bool)
    else:
        array, fine = _text_only(values)
    # Trim ASCII white space only: where what is left starts and ends with a printable ASCII
    # character, Python's str.strip() (the model's) would have stopped at the same characters.
    trimmed = pc.utf8_trim(array, characters=_ASCII_SPACE)
    array = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)  # blank is absent
    fine &= _mask(pc.or_kleene(pc.is_null(array), _printable_ascii_edges(array)))
    return array, fine


def _printable_ascii_edges(text: pa.Array) -> pa.Array:
    """Whether each string's first and last characters are printable ASCII, not space (``[!-~]``).

    Compared as bytes: a character beyond ASCII starts and ends with a byte above ``~``. Twice as
    fast as the regex ``^[!-~](.*[!-~])?$``, which reads the whole string.
    """
    data = text.cast(pa.binary())
    first, last = pc.binary_slice(data, 0, 1), pc.binary_slice(data, -1)
    return pc.and_(pc.and_(pc.greater_equal(first, b"!"), pc.less_equal(first, b"~")),
                   pc.and_(pc.greater_equal(last, b"!"), pc.less_equal(last, b"~")))


_SEARCHED_PARTS = 16


def _text_only(values: list[Any]) -> tuple[pa.Array, np.ndarray]:
    """The values that are text as a string array; any other value (a number, an object, text
    with a lone surrogate) null and not certified.

    A chunk's few values of another JSON type are looked for by type only in the sixteenths of
    the list that Arrow refuses, not in all of it. (Converting the whole list first cost as
    much again: Arrow is slow to refuse a list.) STRING and worker_id lists of 100k records
    with such values: 168 -> 91 ms; lists without: 26 -> 27 ms.
    """
    step = max(-(-len(values) // _SEARCHED_PARTS), 1)
    arrays, fines = [], []
    for start in range(0, len(values), step):
        part = values[start:start + step]
        try:
            arrays.append(pa.array(part, pa.string()))
            fines.append(np.ones(len(part), dtype=bool))
        except (pa.ArrowTypeError, pa.ArrowInvalid, UnicodeEncodeError):
            array, fine = _text_by_type(part)
            arrays.append(array)
            fines.append(fine)
    if not arrays:
        return pa.array([], pa.string()), np.ones(0, dtype=bool)
    return pa.concat_arrays(arrays), np.concatenate(fines)


def _text_by_type(values: list[Any]) -> tuple[pa.Array, np.ndarray]:
    """``_text_only`` for a list that holds a value of another type: found by type in C."""
    kinds = np.fromiter(map(type, values), dtype=object, count=len(values))
    fine = (kinds == str) | (kinds == type(None))  # noqa: E721 - numpy compares each element
    kept = list(values)
    for i in np.flatnonzero(~fine).tolist():
        kept[i] = None
    try:
        return pa.array(kept, pa.string()), fine
    except UnicodeEncodeError:  # a lone surrogate: find which values hold one
        fine &= np.array([v is None or rules.encoding_problem(v) is None for v in kept], dtype=bool)
        return pa.array([v if ok else None for v, ok in zip(kept, fine)], pa.string()), fine


def _worker_ids(values: list[Any] | pa.Array, _utc: bool) -> tuple[pa.Array, np.ndarray]:
    worker, fine = _strings(values)
    fine &= _mask(pc.or_kleene(pc.is_null(worker), pc.string_is_ascii(worker)))
    return pc.if_else(pc.match_substring_regex(worker, _EMAIL), pc.utf8_lower(worker), worker), fine


def _data_sources(values: list[Any] | pa.Array, _utc: bool) -> tuple[pa.Array, np.ndarray]:
    source, fine = _strings(values)
    fine &= _mask(pc.or_kleene(pc.is_null(source), pc.is_in(source, value_set=pa.array(rules.DATA_SOURCES))))
    return source, fine


_DEFER = object()  # a value the fast path does not decide


def _each(convert: Callable[[Any], Any], kind: pa.DataType,
          text: Callable[[pa.Array], tuple[pa.Array, np.ndarray]] | None = None
          ) -> Callable[[list[Any] | pa.Array, bool], tuple[pa.Array, np.ndarray]]:
    """Convert every present value; a value ``convert`` defers becomes null and is not certified.

    An Arrow text column (CSV read by Arrow) goes through ``text``, the same conversion in
    pyarrow.compute, when the kind has one: 100k CSV records' counts, durations and flags
    122 -> 63 ms. Lists (JSON's values, of mixed types) go value by value.
    """

    def converter(values: list[Any] | pa.Array, _utc: bool) -> tuple[pa.Array, np.ndarray]:
        if isinstance(values, pa.Array):
            if text is not None:
                return text(values)
            values = values.to_pylist()
        out: list[Any] = []
        fine = np.ones(len(values), dtype=bool)
        for i, value in enumerate(values):
            converted = None if value is None or value == "" else convert(value)  # empty is absent
            if converted is _DEFER:
                converted = None
                fine[i] = False
            out.append(converted)
        return pa.array(out, kind), fine

    return converter


def _absent(text: pa.Array) -> pa.Array:
    """Where a text column holds no value: null or empty."""
    return pc.or_kleene(pc.is_null(text), pc.equal(text, ""))


def _converted(text: pa.Array, good: pa.Array, result: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """``result`` where ``good``, else null; certified where ``good`` or the text is absent."""
    good = pc.fill_null(good, False)
    return pc.if_else(good, result, pa.scalar(None, result.type)), _mask(pc.or_(_absent(text), good))


def _digits_only(text: pa.Array, pattern: str, kind: pa.DataType) -> tuple[pa.Array, pa.Array]:
    """(text that matches ``pattern``, cast to ``kind``; the mask of it)."""
    matched = pc.fill_null(pc.match_substring_regex(text, pattern), False)
    return pc.cast(pc.if_else(matched, text, pa.scalar(None, pa.string())), kind), matched


def _count_text(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """``_count`` over a text column."""
    whole = pc.replace_substring_regex(text, r"^([0-9]{1,18})\.0+$", r"\1")  # "13.0" counts 13
    number, matched = _digits_only(whole, "^[0-9]{1,18}$", pa.int64())
    return _converted(text, pc.and_(matched, pc.less_equal(number, rules.MAX_COUNT)), number)


def _duration_text(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """``_duration`` over a text column."""
    number, matched = _digits_only(text, r"^[0-9]+(\.[0-9]+)?$", pa.float64())
    return _converted(text, pc.and_(matched, pc.is_finite(number)), number)


def _flag_text(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """``_flag`` over a text column."""
    lower = pc.utf8_lower(text)
    true = pc.is_in(lower, value_set=pa.array([word for word, flag in _BOOL_TEXT.items() if flag]))
    false = pc.is_in(lower, value_set=pa.array([word for word, flag in _BOOL_TEXT.items() if not flag]))
    return _converted(text, pc.or_(true, false), true)


def _count(value: Any) -> Any:
    kind = type(value)
    if kind is int and 0 <= value <= rules.MAX_COUNT:
        return value
    if kind is float and value.is_integer() and 0 <= value <= rules.MAX_COUNT:
        return int(value)
    if kind is str and value.isascii():
        # digits, or digits and a zero fraction: spreadsheets and CSV writers make "13.0" of a count
        whole, point, fraction = value.partition(".")
        if (whole.isdigit() and len(whole) < 19 and (not point or (fraction and not fraction.strip("0")))
                and int(whole) <= rules.MAX_COUNT):
            return int(whole)
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


def _key_values(value: Any) -> Any:
    """The model's own rule, after a one-pass shortcut for the common object (``_flat_map``),
    given as an object or (a CSV cell) as its JSON text."""
    if type(value) is dict:
        flat = _flat_map(value)
        if flat is not None:
            return flat
    elif type(value) is str and value.isascii() and "\\u" not in value:
        # Without escapes or non-ASCII text, orjson reads what the model's json.loads reads, and
        # text orjson refuses (NaN, integers beyond 64 bits) goes to the rule: 3.2 -> 1.3 us per object.
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            parsed = None
        flat = _flat_map(parsed) if type(parsed) is dict else None
        if flat is not None:
            return flat
    if type(value) is not str and type(value) is not dict:
        return _DEFER
    try:
        return rules.parse_object(value)
    except rules.RuleError:
        return _DEFER


def _flat_map(value: dict[Any, Any]) -> dict[str, str] | None:
    """A flat object of ASCII text and 64-bit integers as the model maps it (integers as their
    JSON text), in one pass; None for any other object, which the model's rule then decides."""
    out: dict[str, str] = {}
    for key, item in value.items():
        if not key.isascii():
            return None
        kind = type(item)
        if kind is str and item.isascii():
            out[key] = item
        elif kind is int and -(2**63) <= item < 2**64:
            out[key] = str(item)
        else:
            return None
    return out


def _timestamps(values: list[Any] | pa.Array, default_tz_is_utc: bool) -> tuple[pa.Array, np.ndarray]:
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


# How the fast path checks each kind: raw values -> (normalized column, mask of the values it certifies).
_CONVERTERS: dict[FieldKind, Callable[[list[Any] | pa.Array, bool], tuple[pa.Array, np.ndarray]]] = {
    FieldKind.STRING: _strings,
    FieldKind.WORKER_ID: _worker_ids,
    FieldKind.DATA_SOURCE: _data_sources,
    FieldKind.COUNT: _each(_count, pa.int64(), _count_text),
    FieldKind.SECONDS: _each(_duration, pa.float64(), _duration_text),
    FieldKind.FLAG: _each(_flag, pa.bool_(), _flag_text),
    FieldKind.TIMESTAMP: _timestamps,
    FieldKind.KEY_VALUES: _each(_key_values, pa.map_(pa.string(), pa.string())),
}
