"""Hostile records never stop a run: validate_chunk is total, and the fast path still agrees with the model.

Records are generated as raw JSON lines text (so that values json.dumps could not even write,
such as arrays nested 10,000 deep, can be fed) and as CSV rows. Whatever they hold, every
record must end in exactly one of accepted / rejected, both outputs must be storable as
Parquet, and durations must derive.
"""

from __future__ import annotations

import json
import math
from datetime import timezone

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.config import WorkstreamConfig
from tests.conftest import CONFIG_DATA, TD, UC, WS
from transforms.durations import derive_durations
from transforms.read import RawChunk
from transforms.validate import validate_chunk

CONFIG = WorkstreamConfig.model_validate(CONFIG_DATA)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

_SURROGATE_TEXT = st.sampled_from(["\ud800", "a\udfff", "\udcff", "ok\ud83d", "\ud800\udc00x\udbff"])
_DEPTHS = st.sampled_from([1, 2, 63, 64, 65, 300, 1000, 1100, 10_000])
_HUGE = st.sampled_from([2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**12, 10**12 + 1, 10**30, 1e308, -0.0,
                         "9" * 40, "9" * 5000, "1e400", str(2**63), "-0", "0" * 30 + "1"])
_EDGE_TIMES = st.sampled_from([
    "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "0001-01-01T00:59:59+01:00", "0001-01-01 00:00",
    "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59-01:00", "9999-12-31T23:00:00+00:30", "10000-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "2020-12-22T09:13:24Z", "2020-12-22T10:13:24Z",
])


def _nested(depth: int, inner: str = "0") -> str:
    return "[" * depth + inner + "]" * depth


@st.composite
def _json_fragment(draw: st.DrawFn) -> str:
    """JSON text of one value, hostile or not (not always valid JSON)."""
    kind = draw(st.sampled_from(["surrogate", "deep", "deep_text", "deep_object_text", "huge", "time", "plain",
                                 "surrogate_object_text", "unbalanced"]))
    if kind == "surrogate":
        return json.dumps(draw(_SURROGATE_TEXT))  # ensure_ascii: a "\ud800" escape, as a client would send it
    if kind == "deep":
        return _nested(draw(_DEPTHS))
    if kind == "deep_text":
        return json.dumps(_nested(draw(_DEPTHS)))
    if kind == "deep_object_text":
        return json.dumps('{"a": ' + _nested(draw(_DEPTHS)) + "}")
    if kind == "surrogate_object_text":
        return json.dumps(json.dumps({"a": draw(_SURROGATE_TEXT)}))  # JSON text inside a string, escape and all
    if kind == "huge":
        value = draw(_HUGE)
        return json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else "1e400"
    if kind == "time":
        return json.dumps(draw(_EDGE_TIMES))
    if kind == "unbalanced":
        return "[" * draw(_DEPTHS)
    return json.dumps(draw(st.sampled_from(["x", 1, 0, True, None, {"k": [1, "v"]}, "Ana@Example.COM", "yes"])))


_FIELDS = ["workstream_id", "worker_id", "task_id", "task_count", "subtask_count", "use_case_id", "task_definition_id",
           "task_started_at", "task_completed_at", "duration", "task_created_at", "data_source", "task_metadata",
           "task_measurements", "unique_id", "replace_duplicate", "received_at", "extra", "\ud800key"]


@st.composite
def _json_line(draw: st.DrawFn) -> bytes:
    base = {"workstream_id": json.dumps(WS), "worker_id": '"w@x.com"', "use_case_id": json.dumps(UC),
            "task_definition_id": json.dumps(TD), "task_started_at": '"2020-12-22T09:13:24Z"',
            "task_completed_at": '"2020-12-22T10:13:24Z"'}
    for name in draw(st.sets(st.sampled_from(_FIELDS), min_size=1, max_size=3)):
        base[name] = draw(_json_fragment())
    if draw(st.booleans()):  # no duration given: it must be derived, whatever the span
        base.pop("duration", None)
    line = "{" + ", ".join(f"{json.dumps(name)}: {fragment}" for name, fragment in base.items()) + "}"
    if draw(st.integers(0, 9)) == 0:
        line = draw(st.sampled_from([_nested(10_000), _nested(1025), '"\\ud800"', "[" + line + "]", line[:-1]]))
    return line.encode("utf-8", errors="surrogatepass") if draw(st.integers(0, 19)) == 0 else line.encode()


@st.composite
def _csv_cell(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["deep_text", "surrogate_text", "escape_text", "huge", "time", "plain"]))
    if kind == "deep_text":
        return _nested(draw(_DEPTHS))
    if kind == "surrogate_text":
        return draw(_SURROGATE_TEXT)  # as reading keeps a byte that is not UTF-8 (or a stray surrogate)
    if kind == "escape_text":
        return '{"a": "\\ud800"}'  # JSON text whose escape is a lone surrogate
    if kind == "huge":
        return str(draw(_HUGE))
    if kind == "time":
        return draw(_EDGE_TIMES)
    return draw(st.sampled_from(["", "x", "1", "true", '{"k": 1}']))


def _jsonl_chunk(lines: list[bytes]) -> RawChunk:
    chunk = RawChunk("hostile.jsonl", 0, "jsonl", None)
    for number, line in enumerate(lines, start=1):
        chunk.lines.append(number)
        chunk.raws.append(line)
        chunk.cells.append(None)
        chunk.problems.append(None)
    return chunk


def _csv_chunk(rows: list[dict[str, str]]) -> RawChunk:
    header = ("workstream_id", "worker_id", "use_case_id", "task_definition_id", "task_started_at", "task_completed_at",
              "task_count", "duration", "task_metadata", "task_id", "extra")
    chunk = RawChunk("hostile.csv", 1, "csv", None, header=header)
    base = {"workstream_id": WS, "worker_id": "w", "use_case_id": UC, "task_definition_id": TD,
            "task_started_at": "2020-12-22T09:13:24Z", "task_completed_at": "2020-12-22T10:13:24Z"}
    for number, overrides in enumerate(rows, start=2):
        cells = [{**base, **overrides}.get(name, "") for name in header]
        chunk.lines.append(number)
        chunk.raws.append(",".join(cells))
        chunk.cells.append(cells)
        chunk.problems.append(None)
    return chunk


def _storable(batch: pa.RecordBatch) -> None:
    pq.write_table(pa.Table.from_batches([batch]), pa.BufferOutputStream())


def _check_total(chunk: RawChunk) -> None:
    """Never raises; each record in exactly one output; outputs storable; fast path == model."""
    results = [validate_chunk(chunk, CONFIG, timezone.utc, None, fast=fast) for fast in (True, False)]
    for accepted, rejects, counts in results:
        lines = accepted.column("source_line").to_pylist() + rejects.column("source_line").to_pylist()
        assert sorted(lines) == chunk.lines, "every record ends in exactly one of accepted / rejected"
        assert counts["read"] == len(chunk) == accepted.num_rows + rejects.num_rows
        assert counts["rejected"] == rejects.num_rows == sum(counts["rejected_by_code"].values())
        assert all(rejects.column("error_message").to_pylist())
        _storable(accepted)
        _storable(rejects)
        durations = derive_durations(accepted).column("duration").to_pylist()
        assert all(math.isfinite(d) and d >= 0 for d in durations)
    (fast_accepted, fast_rejects, fast_counts), (slow_accepted, slow_rejects, slow_counts) = results
    assert fast_accepted.to_pylist() == slow_accepted.to_pylist()
    assert fast_rejects.to_pylist() == slow_rejects.to_pylist()
    assert fast_counts == slow_counts


@SETTINGS
@given(st.lists(_json_line(), min_size=1, max_size=6))
def test_hostile_json_lines_never_stop_a_chunk(lines: list[bytes]) -> None:
    _check_total(_jsonl_chunk(lines))


@SETTINGS
@given(st.lists(st.dictionaries(st.sampled_from(["task_count", "duration", "task_metadata", "task_id", "extra",
                                                 "task_started_at", "task_completed_at", "worker_id"]),
                                _csv_cell(), max_size=3), min_size=1, max_size=6))
def test_hostile_csv_rows_never_stop_a_chunk(rows: list[dict[str, str]]) -> None:
    _check_total(_csv_chunk(rows))
