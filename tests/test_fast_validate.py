"""The vectorized fast path and the pydantic model give the same verdict on every record."""

from __future__ import annotations

import json
from datetime import timezone
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import fast_validate
from schemas.config import WorkstreamConfig
from schemas.fast_validate import Certifier
from schemas.record import FIELD_ORDER, FieldKind, TaskCompleted
from tests.conftest import CONFIG_DATA, TD, TD2, UC, WS
from transforms.read import RawChunk
from transforms.validate import validate_chunk

CONFIG = WorkstreamConfig.model_validate(CONFIG_DATA)

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
_padded = st.builds(lambda pad, s, pad2: pad + s + pad2, st.sampled_from(["", " ", "\t", "\x1f", "\xa0"]),
                    st.sampled_from(["abc", "A@B.com", "x", "Ünï", "ab\x0bC@d.e"]),
                    st.sampled_from(["", " ", "\n", "\xa0", "\x1f", "\u2028"]))
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**64), st.floats(allow_nan=False, allow_infinity=False), _text, _padded)
_numbers = st.one_of(
    st.integers(-3, 10**20), st.floats(-1, 1e20), st.sampled_from(["10", "10.0", "007", " 5", "1e3", "-1", "1_0", "ten",
                                                                      "", "nan", "inf", "9" * 25, "１０", "0.5", "13.00", "0.0",
                                                                      "8.", ".0", "1" + "0" * 12 + ".0", "1" + "0" * 12 + "1.0"]),
    st.booleans(), st.none(),
)
_timestamps = st.one_of(
    st.sampled_from([
        "2020-12-22T09:13:24.127Z", "2020-12-22 09:13:24+05:45", "2020-12-22T09:13:24.123456+0545",
        "2020-12-22T09:13Z", "2020-12-22T09:13:24", "2020-12-22", "2020-12-22T09", "2020-02-30T00:00:00Z",
        "2020-12-22T24:00:00Z", "2020-12-22T09:13:60Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
        "2020-12-22T09:13:24.1234567Z", "2020-12-22t09:13:24z", " 2020-12-22T09:13:24Z", "2020-12-22T09:13:24+24:00",
        "2021-03-28T02:30:00", "2020-12-22T09:13:24-00:00", "",
    ]),
    st.datetimes(timezones=st.sampled_from([timezone.utc, ZoneInfo("Asia/Kathmandu")])).map(lambda d: d.isoformat()),
    st.integers(), st.none(),
)
_objects = st.one_of(st.none(), st.dictionaries(_text, _scalars, max_size=3),
                     st.sampled_from(['{"a": 1}', "[1]", "null", "not json", '{"n": 18446744073709551616}', ""]),
                     st.integers())
_flags = st.one_of(st.none(), st.booleans(), st.sampled_from(["yes", "NO", "True", "1", "0", " yes", "maybe", 1, 0, 2]))
_ids = st.one_of(st.sampled_from([WS, "ws-audio", "ws-nope", UC, TD, TD2, "uc-audio", "td-transcribe", " " + WS, ""]),
                 st.none(), st.integers(0, 3))


@st.composite
def _record(draw: st.DrawFn) -> dict:
    fields = {
        "workstream_id": _ids, "worker_id": st.one_of(_padded, _text, st.integers()),
        "task_id": _scalars, "task_url": _scalars, "task_count": _numbers, "subtask_count": _numbers,
        "use_case_id": _ids, "task_definition_id": _ids, "task_started_at": _timestamps,
        "task_completed_at": _timestamps, "duration": _numbers, "task_created_at": _timestamps,
        "data_source": st.sampled_from(["api", "csv_manual", "API", "", None, 3]),
        "task_metadata": _objects, "task_measurements": _objects, "dataset_id": _scalars,
        "asset_id": _scalars, "unique_id": _scalars, "replace_duplicate": _flags, "received_at": _timestamps,
        "extra": _scalars,
    }
    base = {"workstream_id": WS, "worker_id": "w@x.com", "use_case_id": UC, "task_definition_id": TD,
            "task_started_at": "2020-12-22T09:13:24Z", "task_completed_at": "2020-12-22T10:13:24Z"}
    chosen = draw(st.sets(st.sampled_from(sorted(fields)), max_size=4))
    for name in chosen:
        value = draw(fields[name])
        if value is None and draw(st.booleans()):
            base.pop(name, None)
        else:
            base[name] = value
    return base


def _chunk(records: list[dict], kind: str) -> RawChunk:
    chunk = RawChunk("mem.jsonl", 0, "jsonl", None)
    for line, data in enumerate(records, start=1):
        chunk.lines.append(line)
        chunk.raws.append(json.dumps(data, allow_nan=False).encode() if kind == "json" else b"")
        chunk.cells.append(None)
        chunk.problems.append(None)
    return chunk


def _csv_chunk(records: list[dict]) -> RawChunk:
    header = sorted({k for r in records for k in r})
    chunk = RawChunk("mem.csv", 0, "csv", None, header=tuple(header))
    for line, data in enumerate(records, start=2):
        cells = ["" if data.get(k) is None else str(data[k]) for k in header]
        chunk.lines.append(line)
        chunk.raws.append(",".join(cells))
        chunk.cells.append(cells)
        chunk.problems.append(None)
    return chunk


def _same(chunk: RawChunk, tz=timezone.utc, run_workstream: str | None = None) -> None:
    slow = validate_chunk(chunk, CONFIG, tz, run_workstream, fast=False)
    fast = validate_chunk(chunk, CONFIG, tz, run_workstream, fast=True)
    assert fast[0].to_pylist() == slow[0].to_pylist()
    assert fast[1].to_pylist() == slow[1].to_pylist()
    assert fast[2] == slow[2]


def _json_safe(records: list[dict]) -> list[dict]:
    """As a JSON lines file would give them back (tuples become lists, and so on)."""
    return [json.loads(json.dumps(r)) for r in records]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_record(), min_size=1, max_size=12))
def test_fast_path_agrees_with_the_model_on_json_records(records: list[dict]) -> None:
    _same(_chunk(_json_safe(records), "json"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_record(), min_size=1, max_size=12), st.sampled_from([None, WS]))
def test_fast_path_agrees_with_the_model_on_csv_rows(records: list[dict], run_workstream: str | None) -> None:
    _same(_csv_chunk(_json_safe(records)), run_workstream=run_workstream)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_record(), min_size=1, max_size=8))
def test_fast_path_agrees_in_another_default_time_zone(records: list[dict]) -> None:
    _same(_chunk(_json_safe(records), "json"), tz=ZoneInfo("America/New_York"))


def test_fast_path_certifies_plain_records() -> None:
    """The fast path must actually take the common case, or it is no faster."""
    plain = {"workstream_id": WS, "worker_id": "Ana@Example.com", "use_case_id": UC, "task_definition_id": TD,
             "task_started_at": "2020-12-22T09:13:24.127+05:45", "task_completed_at": "2020-12-22 10:13:24Z",
             "task_count": 3, "duration": 12.5, "task_metadata": {"a": 1}, "unique_id": "u", "replace_duplicate": False}
    records = [plain, {**plain, "unique_id": "v"}]
    values = {name: [r.get(name) for r in records] for name in FIELD_ORDER}
    columns, ok = Certifier(CONFIG).certify(values, True, None)
    assert ok.tolist() == [True, True]
    assert columns["worker_id"].to_pylist() == ["ana@example.com"] * 2
    assert columns["task_metadata"].type == pa.map_(pa.string(), pa.string())


def test_fast_path_fills_the_models_defaults() -> None:
    records = [{"workstream_id": WS, "worker_id": "w", "use_case_id": UC, "task_definition_id": TD,
                "task_started_at": "2020-12-22T09:13:24Z", "task_completed_at": "2020-12-22T10:13:24Z"}]
    columns, ok = Certifier(CONFIG).certify({name: [r.get(name) for r in records] for name in FIELD_ORDER}, True, None)
    assert ok.tolist() == [True]
    assert columns["task_count"].to_pylist() == [TaskCompleted.model_fields["task_count"].default] == [1]
    assert columns["replace_duplicate"].to_pylist() == [TaskCompleted.model_fields["replace_duplicate"].default] == [True]
    assert columns["subtask_count"].to_pylist() == [None]


@pytest.mark.parametrize(("count", "certified"), [(10**12, True), (str(10**12), True), (1e12, True),
                                                    (10**12 + 1, False), (str(10**12 + 1), False), (2**63 - 1, False),
                                                    (1e13, False), ("9" * 18, False)])
def test_fast_path_counts_are_bounded_like_the_model(count, certified: bool) -> None:
    record = {"workstream_id": WS, "worker_id": "w", "use_case_id": UC, "task_definition_id": TD,
              "task_started_at": "2020-12-22T09:13:24Z", "task_completed_at": "2020-12-22T10:13:24Z",
              "task_count": count}
    _, ok = Certifier(CONFIG).certify({name: [record.get(name)] for name in FIELD_ORDER}, True, None)
    assert ok.tolist() == [certified]
    accepted, rejects, _ = validate_chunk(_chunk([record], "json"), CONFIG)
    if certified:
        assert accepted.column("task_count").to_pylist() == [10**12]
    else:
        [reject] = rejects.to_pylist()
        assert (reject["error_code"], reject["error_field"]) == ("invalid_value", "task_count")
        assert "is larger than the 10^12 a single event can count" in reject["error_message"]


@pytest.mark.parametrize("value", [
    {}, {"a": "b", "n": 2**64 - 1, "m": -(2**63)}, {"n": 2**64}, {"n": -(2**63) - 1}, {"ü": "x"}, {"k": "ü"},
    {"k": True}, {"k": None}, {"k": 1.5}, {"k": 1e20}, {"k": [1]}, {"k": {"x": 1}}, {"k": " padded "},
])
def test_fast_path_maps_objects_as_the_model_does(value: dict) -> None:
    """The one-pass shortcut for flat objects gives the model's map, or leaves the object to the model's rule."""
    record = {"workstream_id": WS, "worker_id": "w", "use_case_id": UC, "task_definition_id": TD,
              "task_started_at": "2020-12-22T09:13:24Z", "task_completed_at": "2020-12-22T10:13:24Z",
              "task_metadata": value}
    columns, ok = Certifier(CONFIG).certify({field: [record.get(field)] for field in FIELD_ORDER}, True, None)
    assert ok.tolist() == [True]
    model = TaskCompleted.model_validate(record)
    assert dict(columns["task_metadata"].to_pylist()[0]) == model.task_metadata


@pytest.mark.parametrize("value", ["abc\xa0", "\xa0abc", "abc\x1f", "\x1fabc", "abc\u2028", "abc\x85", "\x85abc",
                                   "ü", "aü", "üa", "a\x7f", "\x7fa", "a\x00", " a ", "a b", "~", "!"])
def test_fast_path_keeps_text_only_where_trimming_would_not_change_it(value: str) -> None:
    """Python's strip() (the model's) also strips Unicode white space and \\x1c-\\x1f: text whose
    first or last character is not printable ASCII is the model's to decide."""
    record = {"workstream_id": WS, "worker_id": "w@x.com", "use_case_id": UC, "task_definition_id": TD,
              "task_started_at": "2020-12-22T09:13:24Z", "task_completed_at": "2020-12-22T10:13:24Z",
              "task_id": value, "dataset_id": value}
    _same(_chunk([record], "json"))


@pytest.mark.parametrize("text", [
    '{"language":"en","priority":3}', ' { "a" : "b" , "n" : -9223372036854775808 } ', '{"a": 1, "a": 2}', "{}",
    '{"n": 18446744073709551616}', '{"n": NaN}', '{"k": Infinity}', '{"k": 1.5}', '{"k": true}', '{"k": null}',
    '{"k": [1]}', '{"k": {"x": 1}}', '{"k": "\\u00fc"}', '{"k": "\\ud800"}', '{"k": "\\/"}', '{"k": "tab\there"}',
    '{"k": 01}', '{"k": "v",}', "[1]", '"x"', "null", "not json", '{"k": "v"} x', '{"k": "ü"}',
    '{"a": "' + "[" * 100 + '"}', "[" * 100 + "]" * 100,
])
def test_fast_path_reads_object_text_as_the_model_does(text: str) -> None:
    """An object given as JSON text (a CSV cell, or a JSON string) gets the model's verdict and map."""
    record = {"workstream_id": WS, "worker_id": "w", "use_case_id": UC, "task_definition_id": TD,
              "task_started_at": "2020-12-22T09:13:24Z", "task_completed_at": "2020-12-22T10:13:24Z",
              "task_metadata": text}
    _same(_chunk([record], "json"))
    _same(_csv_chunk([record]))


_SURROGATES = ("\ud800", "a\udcff", " \udfff ")
_UNSTORABLE = [(name, value) for name in ("worker_id", "task_id", "task_started_at", "task_count", "replace_duplicate",
                                          "duration", "data_source", "task_metadata") for value in _SURROGATES] + [
    ("task_metadata", {"k": "\ud800"}), ("task_metadata", {"\ud800": "v"}), ("task_metadata", '{"k": "\\ud800"}'),
    ("task_measurements", "[" * 5000 + "]" * 5000), ("task_metadata", '{"a": ' + "[" * 64 + "]" * 64 + "}"),
    ("task_started_at", "0001-01-01T00:00:00Z"), ("task_completed_at", "9999-12-31T23:59:59.999999Z"),
]


@pytest.mark.parametrize(("name", "value"), _UNSTORABLE)
def test_fast_path_defers_hard_values(name: str, value) -> None:
    """Lone surrogates, deep nesting and the edges of the calendar are the model's to decide: the
    fast path must neither raise nor certify them."""
    record = {"workstream_id": WS, "worker_id": "w", "use_case_id": UC, "task_definition_id": TD,
              "task_started_at": "2020-12-22T09:13:24Z", "task_completed_at": "2020-12-22T10:13:24Z", name: value}
    _, ok = Certifier(CONFIG).certify({field: [record.get(field)] for field in FIELD_ORDER}, True, None)
    assert ok.tolist() == [False]


_digits = st.text(alphabet="0123456789.", min_size=1, max_size=25)
_columns = st.one_of(
    st.lists(_numbers | _flags, max_size=80),  # mixed types, as JSON gives them
    st.lists(st.one_of(st.none(), st.integers(-3, 2**63 - 1)), max_size=80),
    st.lists(st.one_of(st.none(), st.floats()), max_size=80),
    st.lists(st.one_of(st.none(), st.booleans()), max_size=80),
    st.lists(st.one_of(st.just(""), _digits, st.sampled_from(["yes", "NO", "True", "0", "1", " 1", "10.0",
                                                      "0" * 18 + "1", "0" * 17 + "1", "9" * 400, "13.0", "0.00", "7.", ".0", "1.50", "2.0.0",
                                                      "1" + "0" * 12 + ".0", "1" + "0" * 17 + ".00"])), max_size=80),
)


@given(_columns)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_counts_durations_and_flags_in_bulk_as_one_by_one(values: list) -> None:
    """Values come out as converted one by one, from lists and from Arrow text columns (converted in bulk)."""
    for kind, convert in ((FieldKind.COUNT, fast_validate._count), (FieldKind.SECONDS, fast_validate._duration),
                          (FieldKind.FLAG, fast_validate._flag)):
        expected = [None if v is None or v == "" else convert(v) for v in values]
        fine = [v is not fast_validate._DEFER for v in expected]
        expected = [v if ok else None for v, ok in zip(expected, fine)]
        inputs = [values]
        if all(type(v) is str for v in values):
            inputs.append(pa.array(values, pa.string()))  # a CSV column as the reader gives it
        for given_values in inputs:
            array, ok = fast_validate._CONVERTERS[kind](given_values, True)
            assert (array.to_pylist(), ok.tolist()) == (expected, fine), (kind, type(given_values))
