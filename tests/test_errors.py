"""ErrorCode: one home for the error codes; each code documented, each example real, no loose strings elsewhere."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from pydantic import field_validator

from schemas.config import WorkstreamConfig
from schemas.errors import ErrorCode
from schemas.record import RecordContext, TaskCompleted, validate_record
from schemas.rules import RuleError
from tests.conftest import record
from transforms.read import InputFile, RawChunk, read_chunks
from transforms.validate import validate_chunk

ROOT = Path(__file__).resolve().parent.parent

# The codes the product promises (the contract's list, at least).
PROMISED = ("malformed_json", "malformed_csv", "not_an_object", "invalid_encoding", "record_too_large", "missing_field",
            "invalid_type", "invalid_value", "invalid_timestamp", "completed_before_started", "invalid_data_source",
            "missing_workstream_id", "unknown_workstream", "unknown_use_case", "unknown_task_definition")


def test_every_promised_code_is_an_error_code() -> None:
    assert set(PROMISED) <= {code.value for code in ErrorCode}
    assert [code.value for code in ErrorCode][: len(PROMISED)] == list(PROMISED)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_code_has_a_one_line_description_and_an_example(code: ErrorCode) -> None:
    assert code.description and "\n" not in code.description and code.description.endswith(".")
    assert code.example and "\n" not in code.example
    assert code == code.value and str(code) == code.value and isinstance(code, str)  # a plain string where one is needed


def _jsonl(line: bytes, path: str = "in/a.jsonl") -> RawChunk:
    chunk = RawChunk(path, 0, "jsonl", None)
    chunk.lines.append(1)
    chunk.raws.append(line)
    chunk.cells.append(None)
    chunk.problems.append(None)
    return chunk


def _example_rejects(code: ErrorCode, config: WorkstreamConfig, tmp_path: Path) -> list[dict]:
    """Run the documented example of ``code`` through the pipeline's reading and validation."""
    if code is ErrorCode.MALFORMED_CSV:
        path = tmp_path / "a.csv"
        path.write_text("worker_id,task_id\n" + code.example + "\n")
        [chunk] = read_chunks(InputFile(0, str(path)))
    elif code is ErrorCode.RECORD_TOO_LARGE:
        path = tmp_path / "a.jsonl"
        path.write_text(json.dumps(record(task_id="x" * 2_000_000)) + "\n")
        [chunk] = read_chunks(InputFile(0, str(path)))
    else:
        try:
            example = json.loads(code.example)
        except ValueError:
            example = None
        if isinstance(example, dict):  # the fields that matter, over a valid record
            chunk = _jsonl(json.dumps({**record(), **example}).encode())
        else:  # the whole line
            chunk = _jsonl(code.example.encode())
    accepted, rejects, counts = validate_chunk(chunk, config)
    assert accepted.num_rows == 0 and counts["read"] == rejects.num_rows == 1
    return rejects.to_pylist()


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_documented_example_triggers_its_code(code: ErrorCode, config: WorkstreamConfig, tmp_path: Path) -> None:
    [reject] = _example_rejects(code, config, tmp_path)
    assert reject["error_code"] == code.value
    assert type(reject["error_code"]) is str  # the rejects table holds the plain string


def _raising(code: ErrorCode) -> type[TaskCompleted]:
    class Raising(TaskCompleted):
        @field_validator("task_id")
        @classmethod
        def _reject(cls, value: str | None) -> str | None:
            raise RuleError(code, f"is refused with {code.value}")

    return Raising


@pytest.mark.parametrize("code", list(ErrorCode))
def test_any_code_a_rule_raises_reaches_the_rejects_unchanged(code: ErrorCode, config: WorkstreamConfig) -> None:
    """No allow-list: whatever member a rule raises is what the reject says (a new code needs nothing else)."""
    model = _raising(code)
    verdict = validate_record(record(task_id="t"), RecordContext(config=config), model)
    assert [(e.code, e.field, e.message) for e in verdict.errors] == [(code, "task_id", f"is refused with {code.value}")]
    accepted, rejects, counts = validate_chunk(_jsonl(json.dumps(record(task_id="t")).encode()), config, model=model)
    assert accepted.num_rows == 0
    assert [(r["error_code"], r["error_field"]) for r in rejects.to_pylist()] == [(code.value, "task_id")]
    assert counts["rejected_by_code"] == {code.value: 1}


def _string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(node.lineno, node.value) for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]


@pytest.mark.parametrize("path", sorted([*(ROOT / "schemas").glob("*.py"), *(ROOT / "transforms").glob("*.py")]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_error_code_is_spelled_as_a_loose_string(path: Path) -> None:
    """Codes are named as ErrorCode members everywhere but their home, so none can be misspelled or forgotten."""
    if path.name == "errors.py" and path.parent.name == "schemas":
        return
    codes = {code.value for code in ErrorCode}
    loose = [(line, text) for line, text in _string_constants(path) if text in codes]
    assert loose == [], f"{path.name} spells error codes as strings: {loose}"
