"""Validate and normalize raw records, and derive durations.

Every raw record ends in exactly one of two outputs: a row of an accepted Arrow batch, or a
row of a rejects batch (tag ``rejects``) with a code, the field, a message and its raw text.
Per-chunk counts leave on the ``counts`` tag. Data leaves as Arrow record batches, one per
chunk, never as one Python object per record.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import apache_beam as beam
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from schemas import rules
from schemas.config import WorkstreamConfig
from schemas.record import FIELD_ORDER, FieldError, RecordContext, validate_record
from schemas.tables import REJECTS, TASK_COMPLETED
from transforms.fast_validate import certify
from transforms.read import RawChunk

__all__ = [
    "ACCEPTED_SCHEMA",
    "REJECTS_SCHEMA",
    "DeriveDurations",
    "ValidateRecords",
    "derive_durations",
    "sequence_number",
    "validate_chunk",
]

COUNTS = "counts"
REJECTED = "rejects"

# Internal batch schemas: table columns known at this stage plus ``_seq``, the record's place
# in SPEC 2.4's order, which dedupe sorts by. ``duration`` is still optional here.
_RECORD_COLUMNS = (*FIELD_ORDER, "extra_fields", "source_file", "source_line")
ACCEPTED_SCHEMA = pa.schema(
    [TASK_COMPLETED.schema.field(name) for name in _RECORD_COLUMNS] + [pa.field("_seq", pa.int64(), nullable=False)]
).set(FIELD_ORDER.index("duration"), TASK_COMPLETED.schema.field("duration").with_nullable(True))
REJECTS_SCHEMA = REJECTS.file_schema.append(pa.field("_seq", pa.int64(), nullable=False))

_KNOWN = frozenset(FIELD_ORDER)
_LINE_BITS = 40  # a file holds fewer than 2**40 lines; a run fewer than 2**23 files


def sequence_number(file_index: int, line: int) -> int:
    """A record's rank in SPEC 2.4's order (file, then line) as one sortable int64."""
    return (file_index << _LINE_BITS) | line


class ValidateRecords(beam.PTransform):
    """PCollection[RawChunk] -> accepted batches (main), rejects batches and counts (tagged)."""

    def __init__(self, config: WorkstreamConfig, timezone_name: str = "UTC", run_workstream: str | None = None) -> None:
        super().__init__()
        self._config = config
        self._timezone_name = timezone_name
        self._run_workstream = run_workstream

    def expand(self, chunks: beam.PCollection[RawChunk]) -> beam.pvalue.DoOutputsTuple:
        return chunks | "CheckRules" >> beam.ParDo(
            _ValidateFn(self._config, self._timezone_name, self._run_workstream)
        ).with_outputs(REJECTED, COUNTS, main="accepted")


class DeriveDurations(beam.PTransform):
    """Fill ``duration`` where absent as completed minus started, and flag it (vectorized)."""

    def expand(self, batches: beam.PCollection[pa.RecordBatch]) -> beam.PCollection[pa.RecordBatch]:
        return batches | "FillDuration" >> beam.Map(derive_durations)


def derive_durations(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``duration`` = completed - started in seconds where absent; ``duration_derived`` says so."""
    given = batch.column("duration")
    derived = pc.is_null(given)
    elapsed_us = pc.cast(pc.subtract(batch.column("task_completed_at"), batch.column("task_started_at")), pa.int64())
    elapsed = pc.divide(pc.cast(elapsed_us, pa.float64()), 1_000_000.0)
    duration = pc.if_else(derived, elapsed, given)
    index = batch.schema.get_field_index("duration")
    batch = batch.set_column(index, batch.schema.field(index).with_nullable(False), duration)
    return batch.append_column(TASK_COMPLETED.schema.field("duration_derived"), derived)


def validate_chunk(chunk: RawChunk, config: WorkstreamConfig, default_tz: tzinfo = timezone.utc,
                   run_workstream: str | None = None,
                   fast: bool = True) -> tuple[pa.RecordBatch, pa.RecordBatch, dict[str, Any]]:
    """Validate one chunk: (accepted batch, rejects batch, counts). Pure; no Beam.

    With ``fast``, the vectorized ``certify`` accepts the plain records in bulk and only the
    rest go through the pydantic model one by one; the outcome is the same either way.
    """
    context = RecordContext(config=config, default_tz=default_tz,
                            path_workstream=chunk.path_workstream, run_workstream=run_workstream)
    parsed = _parse_all(chunk)
    certified = np.zeros(len(chunk), dtype=bool)
    batches = []
    if fast:
        batch, certified = _certified_batch(chunk, parsed, context)
        batches.append(batch)
    accepted: dict[str, list[Any]] = {name: [] for name in ACCEPTED_SCHEMA.names}
    rejects: dict[str, list[Any]] = {name: [] for name in REJECTS_SCHEMA.names}
    by_code: dict[str, int] = {}
    for position in np.flatnonzero(~certified).tolist():
        line = chunk.lines[position]
        seq = sequence_number(chunk.file_index, line)
        data, problem = parsed[position]
        if chunk.kind == "csv" and problem is None:
            data = _csv_record(chunk, position)
        if problem is None:
            verdict = validate_record(data, context)
            if verdict.record is not None:
                values = verdict.record.__dict__
                for name in FIELD_ORDER:
                    accepted[name].append(values[name])
                extra = verdict.record.__pydantic_extra__
                accepted["extra_fields"].append(rules.json_text(extra) if extra else None)
                accepted["source_file"].append(chunk.source_file)
                accepted["source_line"].append(line)
                accepted["_seq"].append(seq)
                continue
            errors = verdict.errors
        else:
            errors = [FieldError(problem[0], None, problem[1])]
        first = errors[0]
        by_code[first.code] = by_code.get(first.code, 0) + 1
        rejects["source_file"].append(chunk.source_file)
        rejects["source_line"].append(line)
        rejects["workstream_id"].append(_known_workstream(data, context))
        rejects["error_code"].append(first.code)
        rejects["error_field"].append(first.field)
        rejects["error_message"].append("; ".join(e.describe() for e in errors))
        rejects["raw"].append(_raw_text(chunk.raws[position]))
        rejects["_seq"].append(seq)
    batches.append(pa.RecordBatch.from_pydict(accepted, schema=ACCEPTED_SCHEMA))
    combined = pa.Table.from_batches(batches, schema=ACCEPTED_SCHEMA)
    if fast and accepted["_seq"] and certified.any():
        combined = combined.sort_by("_seq")
    counts = {"read": len(chunk), "blank_lines": chunk.blank_lines, "rejected": sum(by_code.values()),
              "rejected_by_code": by_code}
    return (_one_batch(combined), pa.RecordBatch.from_pydict(rejects, schema=REJECTS_SCHEMA), counts)


def _certified_batch(chunk: RawChunk, parsed: list[tuple[Any, tuple[str, str] | None]],
                     context: RecordContext) -> tuple[pa.RecordBatch, np.ndarray]:
    """The records ``certify`` accepts, as a batch, and the mask of them over the chunk."""
    certified = np.zeros(len(chunk), dtype=bool)
    if chunk.kind == "csv":
        candidates = [i for i, (_, problem) in enumerate(parsed) if problem is None]
        values, extras = _csv_columns(chunk, candidates)
    else:
        candidates = [i for i, (data, problem) in enumerate(parsed) if problem is None and type(data) is dict]
        records = [parsed[i][0] for i in candidates]
        values = {name: [r.get(name) for r in records] for name in FIELD_ORDER}
        extras = [_extra_text(r) if len(r.keys() - _KNOWN) else None for r in records]
    if not candidates:
        return _empty_batch(), certified
    utc = context.default_tz is timezone.utc or str(context.default_tz) == "UTC"
    columns, ok = certify(values, context.config, utc, context.path_workstream or context.run_workstream)
    index = np.asarray(candidates)
    certified[index[ok]] = True
    lines = [chunk.lines[i] for i in candidates]
    columns["extra_fields"] = pa.array(extras, pa.string())
    columns["source_file"] = pa.array([chunk.source_file] * len(candidates), pa.string())
    columns["source_line"] = pa.array(lines, pa.int64())
    columns["_seq"] = pa.array([sequence_number(chunk.file_index, line) for line in lines], pa.int64())
    batch = pa.RecordBatch.from_arrays([columns[name] for name in ACCEPTED_SCHEMA.names], schema=ACCEPTED_SCHEMA)
    return batch.filter(pa.array(ok)), certified


def _csv_columns(chunk: RawChunk, rows: list[int]) -> tuple[dict[str, list[Any]], list[str | None]]:
    """Raw values per field straight from the cells (transposed in C); an empty cell is absent."""
    header = chunk.header or ()
    by_column = list(zip(*(chunk.cells[i] for i in rows))) if rows else [() for _ in header]
    values: dict[str, list[Any]] = {name: [None] * len(rows) for name in FIELD_ORDER}
    extra_columns = []
    for name, cells in zip(header, by_column):
        if name in _KNOWN:
            values[name] = [cell or None for cell in cells]
        else:
            extra_columns.append((name, cells))
    extras: list[str | None] = [None] * len(rows)
    if extra_columns:
        for position in range(len(rows)):
            found = {name: cells[position] for name, cells in extra_columns if cells[position] != ""}
            extras[position] = rules.json_text(found) if found else None
    return values, extras


def _extra_text(record: dict[str, Any]) -> str:
    return rules.json_text({k: v for k, v in record.items() if k not in _KNOWN})


def _empty_batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({name: [] for name in ACCEPTED_SCHEMA.names}, schema=ACCEPTED_SCHEMA)


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    return table.combine_chunks().to_batches()[0] if table.num_rows else _empty_batch()


def _parse_all(chunk: RawChunk) -> list[tuple[Any, tuple[str, str] | None]]:
    """Per record: the parsed JSON (JSONL; CSV rows become mappings only when needed), or the
    problem that prevents reading it."""
    if chunk.kind == "jsonl":
        return [_parse_json(chunk, position) for position in range(len(chunk))]
    return [(None, problem or _csv_encoding(raw)) for problem, raw in zip(chunk.problems, chunk.raws)]


def _parse_json(chunk: RawChunk, position: int) -> tuple[Any, tuple[str, str] | None]:
    problem = chunk.problems[position]
    if problem is not None:
        return None, problem
    raw = chunk.raws[position]
    assert isinstance(raw, bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, ("invalid_encoding", f"line is not valid UTF-8 (byte {exc.start})")
    try:
        return orjson.loads(text), None
    except orjson.JSONDecodeError as exc:
        return None, ("malformed_json", f"line is not valid JSON: {exc}")


def _csv_encoding(raw: bytes | str) -> tuple[str, str] | None:
    try:
        str(raw).encode("utf-8")
    except UnicodeEncodeError:
        return ("invalid_encoding", "row is not valid UTF-8")
    return None


def _csv_record(chunk: RawChunk, position: int) -> dict[str, str]:
    """A CSV row as the mapping the model reads: header name -> cell, empty cells absent."""
    cells = chunk.cells[position] or []
    return {name: cell for name, cell in zip(chunk.header or (), cells) if cell != ""}


def _known_workstream(data: Any, context: RecordContext) -> str | None:
    own = data.get("workstream_id") if isinstance(data, dict) else None
    if isinstance(own, str) and own.strip():
        return own.strip()
    return context.path_workstream or context.run_workstream


def _raw_text(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return raw.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


class _ValidateFn(beam.DoFn):
    def __init__(self, config: WorkstreamConfig, timezone_name: str, run_workstream: str | None) -> None:
        self._config = config
        self._timezone_name = timezone_name
        self._run_workstream = run_workstream
        self._tz: tzinfo = timezone.utc

    def setup(self) -> None:
        self._tz = timezone.utc if self._timezone_name.upper() == "UTC" else ZoneInfo(self._timezone_name)

    def process(self, chunk: RawChunk) -> Iterator[Any]:
        accepted, rejects, counts = validate_chunk(chunk, self._config, self._tz, self._run_workstream)
        if accepted.num_rows:
            yield accepted
        if rejects.num_rows:
            yield beam.pvalue.TaggedOutput(REJECTED, rejects)
        yield beam.pvalue.TaggedOutput(COUNTS, counts)
