"""A newcomer adds one optional string field and one error code: it flows everywhere, with nothing else to edit.

The newcomer's change is made the way it would be made in ``schemas/``: the field is declared
on the record model with its kind (here on a subclass, ``WithShift``, so the real model stays
untouched), and the code is one more member of ``ErrorCode`` (here a copy of ``ErrorCode``
with the member added, built from the same ``DocumentedCode`` base). Then the Arrow schema,
the fast path, the model, the rejects and the reference all pick them up: no list of fields or
codes anywhere else needs the newcomer's attention.
"""

from __future__ import annotations

import json
import re
from typing import Annotated

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BeforeValidator, Field, field_validator

from schemas.config import WorkstreamConfig
from schemas.errors import DocumentedCode, ErrorCode
from schemas.fast_validate import Certifier
from schemas.record import FIELD_ORDER, FieldKind, RecordContext, TaskCompleted, field_specs, validate_record
from schemas.reference import reference
from schemas.rules import RuleError
from schemas.tables import arrow_schema
from tests.conftest import CONFIG_DATA, record
from tests.test_fast_validate import _record
from transforms.read import RawChunk
from transforms.validate import ACCEPTED_SCHEMA, accepted_schema, validate_chunk

CONFIG = WorkstreamConfig.model_validate(CONFIG_DATA)

# ErrorCode as the newcomer leaves it: every member it had, and one more.
NewErrorCode = DocumentedCode("ErrorCode", [(code.name, (code.value, code.description, code.example)) for code in ErrorCode]
                              + [("INVALID_SHIFT_ID", ("invalid_shift_id", "shift_id is not a shift of the form S<number>.",
                                                       '{"shift_id": "night"}'))])


class WithShift(TaskCompleted):
    """The record model with the newcomer's field."""

    shift_id: Annotated[str | None, FieldKind.STRING] = Field(None, description="Work shift the task was done in, e.g. S2")

    @field_validator("shift_id")
    @classmethod
    def _known_shift(cls, value: str) -> str:
        """must be S followed by the shift's number"""
        if not re.fullmatch(r"S[0-9]+", value):
            raise RuleError(NewErrorCode.INVALID_SHIFT_ID, f"must be S followed by a number, got {value!r}")
        return value


class WithNote(TaskCompleted):
    """The newcomer's field with a plain string kind and no check of its own: the fast path takes it in bulk."""

    note: Annotated[str | None, FieldKind.STRING] = Field(None, description="Free text")


def _chunk(lines: list[bytes]) -> RawChunk:
    chunk = RawChunk("in/shift.jsonl", 0, "jsonl", None)
    for number, line in enumerate(lines, start=1):
        chunk.lines.append(number)
        chunk.raws.append(line)
        chunk.cells.append(None)
        chunk.problems.append(None)
    return chunk


def _line(**overrides) -> bytes:
    return json.dumps(record(**overrides)).encode()


def test_the_new_code_is_an_error_code_like_the_others() -> None:
    assert NewErrorCode.INVALID_SHIFT_ID == "invalid_shift_id"
    assert NewErrorCode.INVALID_SHIFT_ID.description and NewErrorCode.INVALID_SHIFT_ID.example
    assert [c.value for c in NewErrorCode][:-1] == [c.value for c in ErrorCode]


def test_the_new_field_is_derived_from_the_model() -> None:
    spec = field_specs(WithShift)[-1]
    assert (spec.name, spec.kind, spec.json_type, spec.required, spec.default) == ("shift_id", FieldKind.STRING, "string",
                                                                                   False, None)
    assert spec.checks == ("WithShift._known_shift",)
    assert [s.name for s in field_specs(WithShift)] == [*FIELD_ORDER, "shift_id"]


def test_the_new_field_reaches_the_arrow_schemas() -> None:
    field = arrow_schema(WithShift).field("shift_id")
    assert (field.type, field.nullable) == (pa.string(), True)
    assert field.metadata == {b"description": b"Work shift the task was done in, e.g. S2"}
    schema = accepted_schema(WithShift)
    assert schema.names == [*FIELD_ORDER, "shift_id", "extra_fields", "source_file", "source_line", "_seq"]
    assert "shift_id" not in ACCEPTED_SCHEMA.names  # the real model is untouched


def test_the_new_field_and_code_flow_through_validation_and_rejects() -> None:
    lines = [_line(), _line(shift_id=" S2 "), _line(shift_id="night"), _line(shift_id=5), _line(shift_id=""),
             _line(shift_id="night", worker_id=3)]
    outcomes = [validate_chunk(_chunk(lines), CONFIG, model=WithShift, fast=fast) for fast in (True, False)]
    assert outcomes[0][0].to_pylist() == outcomes[1][0].to_pylist()
    assert outcomes[0][1].to_pylist() == outcomes[1][1].to_pylist()
    assert outcomes[0][2] == outcomes[1][2]
    accepted, rejects, counts = outcomes[0]
    assert accepted.schema.equals(accepted_schema(WithShift))
    assert [(r["source_line"], r["shift_id"]) for r in accepted.to_pylist()] == [(1, None), (2, "S2"), (5, None)]
    assert [(r["source_line"], r["error_code"], r["error_field"]) for r in rejects.to_pylist()] == [
        (3, "invalid_shift_id", "shift_id"), (4, "invalid_type", "shift_id"), (6, "invalid_type", "worker_id")]
    assert "must be S followed by a number, got 'night'" in rejects.to_pylist()[0]["error_message"]
    assert "shift_id: must be S" in rejects.to_pylist()[2]["error_message"]  # every problem listed, in field order
    assert counts == {"read": 6, "blank_lines": 0, "rejected": 3,
                      "rejected_by_code": {"invalid_shift_id": 1, "invalid_type": 2}}


def test_the_fast_path_takes_the_new_field_by_its_kind_and_leaves_its_check_to_the_model() -> None:
    base = {k: [v] * 3 for k, v in record().items()}
    values = {name: base.get(name, [None] * 3) for name in [*FIELD_ORDER, "note"]}
    values["note"] = [None, "  hi ", " "]
    columns, ok = Certifier(CONFIG, WithNote).certify(values, True, None)
    assert ok.tolist() == [True, True, True]
    assert columns["note"].to_pylist() == [None, "hi", None]  # trimmed, blank is absent: the kind's rule
    values = {**values, "shift_id": [None, "S1", "night"]}
    del values["note"]
    _, ok = Certifier(CONFIG, WithShift).certify(values, True, None)
    assert ok.tolist() == [True, False, False]  # a check the fast path does not know: the model decides


class WithUnknownKind(TaskCompleted):
    """A field whose rule is not a kind: nothing but the model can check it."""

    grade: Annotated[str | None, BeforeValidator(lambda value: str(value).upper())] = Field(None, description="Grade")
    level: Annotated[int, BeforeValidator(int)] = Field(3, description="Level")


def test_a_field_of_an_unknown_kind_defers_its_records_and_never_crashes() -> None:
    lines = [_line(), _line(grade="a"), _line(level="7"), _line(level="x")]
    fast = validate_chunk(_chunk(lines), CONFIG, model=WithUnknownKind)
    slow = validate_chunk(_chunk(lines), CONFIG, model=WithUnknownKind, fast=False)
    assert fast[0].to_pylist() == slow[0].to_pylist() and fast[1].to_pylist() == slow[1].to_pylist()
    assert [(r["grade"], r["level"]) for r in fast[0].to_pylist()] == [(None, 3), ("A", 3), (None, 7)]
    assert [(r["source_line"], r["error_field"]) for r in fast[1].to_pylist()] == [(4, "level")]
    values = {name: [v] for name, v in record().items()}
    _, ok = Certifier(CONFIG, WithUnknownKind).certify({n: values.get(n, [None]) for n, _ in WithUnknownKind.model_fields.items()},
                                                       True, None)
    assert ok.tolist() == [True]  # absent: the model's default, certified in bulk


def test_the_new_field_and_code_reach_the_reference() -> None:
    text = reference(WithShift, NewErrorCode)
    assert ("| `shift_id` | string | no |  | trimmed; must be S followed by the shift's number | "
            "Work shift the task was done in, e.g. S2 |") in text
    assert ('| `invalid_shift_id` | shift_id is not a shift of the form S<number>. | `{"shift_id": "night"}` |') in text
    assert "shift_id" not in reference()  # the real reference is untouched


def test_the_new_code_from_the_model_directly() -> None:
    verdict = validate_record(record(shift_id="night"), RecordContext(config=CONFIG), WithShift)
    assert [(e.code, e.field) for e in verdict.errors] == [(NewErrorCode.INVALID_SHIFT_ID, "shift_id")]


_SHIFTS = st.one_of(st.none(), st.sampled_from(["S1", " S22 ", "night", "", "  ", "s1", "S", 7, True, [1], "\ud800"]))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(st.lists(st.tuples(_record(), _SHIFTS), min_size=1, max_size=8))
@pytest.mark.parametrize("model", [WithShift, WithNote])
def test_fast_path_agrees_with_the_newcomers_model(model: type[TaskCompleted], rows: list) -> None:
    name = "shift_id" if model is WithShift else "note"
    lines = [json.dumps({**json.loads(json.dumps(data)), name: extra}).encode() for data, extra in rows]
    fast = validate_chunk(_chunk(lines), CONFIG, model=model)
    slow = validate_chunk(_chunk(lines), CONFIG, model=model, fast=False)
    assert fast[0].to_pylist() == slow[0].to_pylist()
    assert fast[1].to_pylist() == slow[1].to_pylist()
    assert fast[2] == slow[2]
