"""Validate and normalize raw records.

Every raw record ends in exactly one of two outputs: a row of an accepted Arrow batch, or a
row of a rejects batch (tag ``rejects``) with a code, the field, a message and its raw text.
Per-chunk counts leave on the ``counts`` tag. Data leaves as Arrow record batches, one per
chunk, never as one Python object per record.

Validation of a chunk is total: whatever one record holds, and whatever goes wrong while
checking or storing it, that record becomes a reject and its neighbours are unaffected.
"""

from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Iterator
from datetime import timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import apache_beam as beam
import numpy as np
import pyarrow as pa

from schemas import rules
from schemas.config import WorkstreamConfig
from schemas.errors import ErrorCode
from schemas.fast_validate import Certifier
from schemas.record import FieldError, RecordContext, TaskCompleted, parse_json_record, validate_record
from schemas.tables import REJECTS, TASK_COMPLETED, arrow_schema
from transforms.read import RawChunk

__all__ = [
    "ACCEPTED_SCHEMA",
    "COUNTS",
    "REJECTED",
    "REJECTS_SCHEMA",
    "ChunkValidator",
    "ValidateRecords",
    "accepted_schema",
    "sequence_number",
    "validate_chunk",
]

COUNTS = "counts"
REJECTED = "rejects"

_LINEAGE = ("extra_fields", "source_file", "source_line")
_SEQ = pa.field("_seq", pa.int64(), nullable=False)
_LINE_BITS = 40  # a file holds fewer than 2**40 lines; a run fewer than 2**23 files


@functools.cache
def accepted_schema(model: type[TaskCompleted] = TaskCompleted) -> pa.Schema:
    """Schema of the accepted batches of a record model: its fields (``duration`` still optional),
    lineage, and ``_seq``, the record's place in the input order, which dedupe sorts by."""
    fields = list(arrow_schema(model)) + [TASK_COMPLETED.schema.field(name) for name in _LINEAGE]
    return pa.schema([*fields, _SEQ])


ACCEPTED_SCHEMA = accepted_schema(TaskCompleted)
REJECTS_SCHEMA = REJECTS.file_schema.append(_SEQ)


def sequence_number(file_index: int, line: int) -> int:
    """A record's rank in the input order (file, then line) as one sortable int64."""
    return (file_index << _LINE_BITS) | line


class ValidateRecords(beam.PTransform):
    """PCollection[RawChunk] -> accepted batches (main), rejects batches and counts (tagged)."""

    def __init__(self, config: WorkstreamConfig, timezone_name: str = "UTC", run_workstream: str | None = None) -> None:
        super().__init__()
        self._config = config
        self._timezone_name = timezone_name
        self._run_workstream = run_workstream

    def expand(self, chunks: beam.PCollection[RawChunk]) -> beam.pvalue.DoOutputsTuple:
        # typed, so that batches take the Arrow coder, which sizes them without encoding them
        return chunks | "CheckRules" >> beam.ParDo(
            _ValidateFn(self._config, self._timezone_name, self._run_workstream)
        ).with_output_types(pa.RecordBatch, **{REJECTED: pa.RecordBatch}).with_outputs(REJECTED, COUNTS, main="accepted")


def validate_chunk(chunk: RawChunk, config: WorkstreamConfig, default_tz: tzinfo = timezone.utc,
                   run_workstream: str | None = None, fast: bool = True,
                   model: type[TaskCompleted] = TaskCompleted) -> tuple[pa.RecordBatch, pa.RecordBatch, dict[str, Any]]:
    """Validate one chunk: (accepted batch, rejects batch, counts). Pure; no Beam.

    A convenience for one chunk: a worker builds one ``ChunkValidator`` and reuses it.
    """
    return ChunkValidator(config, default_tz, run_workstream, model).validate(chunk, fast=fast)


class ChunkValidator:
    """Validates chunks for one run: what is costly to build (the fast path's lookups, the
    record contexts) is built once here, not per chunk."""

    def __init__(self, config: WorkstreamConfig, default_tz: tzinfo = timezone.utc, run_workstream: str | None = None,
                 model: type[TaskCompleted] = TaskCompleted) -> None:
        self._config = config
        self._default_tz = default_tz
        self._run_workstream = run_workstream
        self._model = model
        self._certifier = Certifier(config, model)
        self._names = tuple(spec.name for spec in self._certifier.fields)
        self._known = frozenset(self._names)
        self._schema = accepted_schema(model)
        self._utc = default_tz is timezone.utc or str(default_tz) == "UTC"
        self._contexts: dict[str | None, RecordContext] = {}

    def _context(self, path_workstream: str | None) -> RecordContext:
        context = self._contexts.get(path_workstream)
        if context is None:
            context = RecordContext(config=self._config, default_tz=self._default_tz,
                                    path_workstream=path_workstream, run_workstream=self._run_workstream)
            self._contexts[path_workstream] = context
        return context

    def validate(self, chunk: RawChunk, fast: bool = True) -> tuple[pa.RecordBatch, pa.RecordBatch, dict[str, Any]]:
        """(accepted batch, rejects batch, counts) of one chunk; read = accepted + rejected.

        With ``fast``, the vectorized ``Certifier`` accepts the plain records in bulk and only the
        rest go through the pydantic model one by one; the outcome is the same either way. If the
        fast path fails on a chunk, it certifies nothing and the model decides every record.
        """
        context = self._context(chunk.path_workstream)
        parsed = [self._parse(chunk, position) for position in range(len(chunk))]
        certified = np.zeros(len(chunk), dtype=bool)
        batches = []
        if fast:
            try:
                batch, certified = self._certified_batch(chunk, parsed, context)
                batches.append(batch)
            except Exception:  # noqa: BLE001 - the model below decides every record instead
                certified = np.zeros(len(chunk), dtype=bool)
        accepted: dict[str, list[Any]] = {name: [] for name in self._schema.names}
        positions: list[int] = []
        rejects: list[tuple[int, list[FieldError]]] = []
        left = np.flatnonzero(~certified).tolist()
        if chunk.kind == "csv":  # the rows the model reads, as mappings
            _csv_mappings(chunk, parsed, left)
        for position in left:
            try:
                errors = self._check(chunk, position, parsed[position], context, accepted)
            except Exception as exc:  # noqa: BLE001 - one record never stops the run
                errors = [FieldError.from_exception(exc)]
            if errors:
                rejects.append((position, errors))
            else:
                positions.append(position)
        batch, unstorable = self._accepted_batch(accepted)
        batches.append(batch)
        rejects += [(positions[i], [error]) for i, error in unstorable]
        combined = pa.Table.from_batches(batches, schema=self._schema)
        if len(batches) > 1 and batches[0].num_rows and batch.num_rows:
            combined = combined.sort_by("_seq")
        rejects.sort(key=lambda reject: reject[0])
        by_code: dict[str, int] = {}
        for _, errors in rejects:
            by_code[str(errors[0].code)] = by_code.get(str(errors[0].code), 0) + 1
        counts = {"read": len(chunk), "blank_lines": chunk.blank_lines, "rejected": len(rejects),
                  "rejected_by_code": by_code}
        return _one_batch(combined, self._schema), self._rejects_batch(chunk, parsed, rejects, context), counts

    # --- one record at a time: the model ------------------------------------------------------

    def _check(self, chunk: RawChunk, position: int, parsed: tuple[Any, FieldError | None], context: RecordContext,
               accepted: dict[str, list[Any]]) -> list[FieldError]:
        """The record's errors; none when it is accepted (its row then added to ``accepted``)."""
        data, problem = parsed
        if problem is not None:
            return [problem]
        verdict = validate_record(data, context, self._model)
        if verdict.record is None:
            return verdict.errors
        values = verdict.record.__dict__
        extra = verdict.record.__pydantic_extra__
        line = chunk.lines[position]
        row = [values[name] for name in self._names]
        row += [rules.json_text(extra) if extra else None, chunk.source_file, line,
                sequence_number(chunk.file_index, line)]
        for name, value in zip(self._schema.names, row):
            accepted[name].append(value)
        return []

    def _accepted_batch(self, accepted: dict[str, list[Any]]) -> tuple[pa.RecordBatch, list[tuple[int, FieldError]]]:
        """The model's accepted rows as a batch, and the rows Arrow cannot store (by index), each
        with the reason: they are found one row at a time, so the other rows are unaffected."""
        try:
            return pa.RecordBatch.from_pydict(accepted, schema=self._schema), []
        except Exception:  # noqa: BLE001 - find the rows that cannot be stored
            pass
        kept: dict[str, list[Any]] = {name: [] for name in self._schema.names}
        unstorable = []
        for i in range(len(accepted["_seq"])):
            row = {name: column[i] for name, column in accepted.items()}
            error = self._unstorable(row)
            if error is not None:
                unstorable.append((i, error))
                continue
            for name, value in row.items():
                kept[name].append(value)
        return pa.RecordBatch.from_pydict(kept, schema=self._schema), unstorable

    def _unstorable(self, row: dict[str, Any]) -> FieldError | None:
        """Why Arrow cannot store this row (naming the field when one is the cause), or None."""
        try:
            pa.RecordBatch.from_pydict({name: [value] for name, value in row.items()}, schema=self._schema)
            return None
        except Exception as exc:  # noqa: BLE001 - the reason becomes the reject's message
            reason = FieldError.from_exception(exc)
        for name, value in row.items():
            try:
                pa.array([value], self._schema.field(name).type)
            except Exception as exc:  # noqa: BLE001 - the field that cannot be stored, and why
                return FieldError.from_exception(exc, name if name in self._known else None)
        return reason

    # --- in bulk: the fast path ---------------------------------------------------------------

    def _certified_batch(self, chunk: RawChunk, parsed: list[tuple[Any, FieldError | None]],
                         context: RecordContext) -> tuple[pa.RecordBatch, np.ndarray]:
        """The records the fast path accepts, as a batch, and the mask of them over the chunk."""
        certified = np.zeros(len(chunk), dtype=bool)
        if chunk.kind == "csv":
            candidates = [i for i, (_, problem) in enumerate(parsed) if problem is None]
            values, extras = self._csv_columns(chunk, candidates)
        else:
            candidates, extras = [], []
            for i, (data, problem) in enumerate(parsed):
                if problem is None and type(data) is dict:
                    if self._known.issuperset(data):  # no other field: half the cost of a set difference
                        candidates.append(i)
                        extras.append(None)
                    elif all(rules.encoding_problem(name) is None for name in data.keys() - self._known):
                        candidates.append(i)  # else the model rejects it
                        extras.append(self._extra_text(data))
            records = [parsed[i][0] for i in candidates]
            # each record's values in field order, then transposed in C: a quarter faster than a pass per field
            rows = [tuple(map(record.get, self._names)) for record in records]
            values = dict(zip(self._names, map(list, zip(*rows)))) if rows else {name: [] for name in self._names}
        if not candidates:
            return _empty_batch(self._schema), certified
        columns, ok = self._certifier.certify(values, self._utc, context.path_workstream or context.run_workstream)
        index = np.asarray(candidates)
        lines = np.asarray(chunk.lines, dtype=np.int64)[index]
        columns["extra_fields"] = pa.array(extras, pa.string())
        columns["source_file"] = pa.repeat(pa.scalar(chunk.source_file, pa.string()), len(candidates))
        columns["source_line"] = pa.array(lines, pa.int64())
        columns["_seq"] = pa.array(lines | sequence_number(chunk.file_index, 0), pa.int64())  # file, then line
        batch = pa.RecordBatch.from_arrays([columns[name] for name in self._schema.names], schema=self._schema)
        batch = batch.filter(pa.array(ok))
        certified[index[ok]] = True
        return batch, certified

    def _csv_columns(self, chunk: RawChunk, rows: list[int]) -> tuple[dict[str, Any], list[str | None]]:
        """Raw values per field straight from the cells (transposed in C), or the text columns of
        a chunk read by Arrow; the certifier reads an empty cell as absent."""
        header = chunk.header or ()
        values: dict[str, Any] = {name: [None] * len(rows) for name in self._names}
        if chunk.columns is not None:
            index = pa.array(rows if chunk.column_rows is None else chunk.column_rows[rows], pa.int64())
            by_column: list[Any] = [column.take(index) for column in chunk.columns.columns]
            values = {name: pa.nulls(len(rows), pa.string()) for name in self._names}
            return self._by_name(header, by_column, values, arrow=True)
        by_column = list(zip(*(chunk.cells[i] or () for i in rows))) if rows else [() for _ in header]
        return self._by_name(header, by_column, values, arrow=False)

    def _by_name(self, header: tuple[str, ...], by_column: list[Any], values: dict[str, Any],
                 arrow: bool) -> tuple[dict[str, Any], list[str | None]]:
        """The columns of the model's fields by name, and the others as each row's extra fields."""
        rows = len(next(iter(values.values()))) if values else 0
        extra_columns = []
        for name, cells in zip(header, by_column):
            if name in self._known:
                values[name] = cells if arrow else list(cells)
            else:
                extra_columns.append((name, cells.to_pylist() if arrow else cells))
        extras: list[str | None] = [None] * rows
        if extra_columns:
            for position in range(rows):
                found = {name: cells[position] for name, cells in extra_columns if cells[position] != ""}
                extras[position] = rules.json_text(found) if found else None
        return values, extras

    def _extra_text(self, record: dict[str, Any]) -> str:
        return rules.json_text({k: v for k, v in record.items() if k not in self._known})

    # --- reading a record and writing a reject -------------------------------------------------

    def _parse(self, chunk: RawChunk, position: int) -> tuple[Any, FieldError | None]:
        """The parsed JSON of a record (a CSV row becomes a mapping only when needed), or the
        problem that prevents reading it."""
        try:
            return self._parse_or_raise(chunk, position)
        except Exception as exc:  # noqa: BLE001 - one record never stops the run
            return None, FieldError.from_exception(exc)

    def _parse_or_raise(self, chunk: RawChunk, position: int) -> tuple[Any, FieldError | None]:
        problem = chunk.problems[position]
        if problem is not None:
            return None, FieldError(_error_code(problem[0]), None, problem[1])
        if chunk.kind == "csv":  # a row Arrow read is UTF-8: Arrow checked it
            in_columns = chunk.columns is not None and chunk.cells[position] is None
            return None, None if in_columns else _csv_encoding(chunk, position)
        raw = chunk.raws[position]
        assert isinstance(raw, bytes)
        return parse_json_record(raw)

    def _rejects_batch(self, chunk: RawChunk, parsed: list[tuple[Any, FieldError | None]],
                       rejects: list[tuple[int, list[FieldError]]], context: RecordContext) -> pa.RecordBatch:
        columns: dict[str, list[Any]] = {name: [] for name in REJECTS_SCHEMA.names}
        for position, errors in rejects:
            line = chunk.lines[position]
            data, _ = parsed[position]  # a CSV row the model read is a mapping: its own workstream counts
            columns["source_file"].append(_storable(chunk.source_file))
            columns["source_line"].append(line)
            columns["workstream_id"].append(_known_workstream(data, context))
            columns["error_code"].append(str(errors[0].code))
            columns["error_field"].append(errors[0].field and _storable(errors[0].field))
            columns["error_message"].append(_storable("; ".join(e.describe() for e in errors)))
            columns["raw"].append(_raw_text(chunk.raws[position]))
            columns["_seq"].append(sequence_number(chunk.file_index, line))
        return pa.RecordBatch.from_pydict(columns, schema=REJECTS_SCHEMA)


def _error_code(code: str) -> ErrorCode:
    """The member for a code given as its string (as a reader outside this package may give it)."""
    return code if isinstance(code, ErrorCode) else ErrorCode(code)


def _csv_encoding(chunk: RawChunk, position: int) -> FieldError | None:
    """invalid_encoding for a CSV row holding bytes that are not UTF-8 (like a JSON line that is not:
    a problem of the row's bytes, so no field); the message names the first such cell's column."""
    raw = chunk.raws[position]
    if rules.encoding_problem(str(raw)) is None:
        return None
    for name, cell in zip(chunk.header or (), chunk.row_cells(position) or ()):
        if rules.encoding_problem(cell) is not None:
            return FieldError(ErrorCode.INVALID_ENCODING, None,
                              f"row is not valid UTF-8: the cell of column {_storable(name)!r} is {_storable(cell)!r}")
    return FieldError(ErrorCode.INVALID_ENCODING, None, "row is not valid UTF-8")


def _csv_mappings(chunk: RawChunk, parsed: list[tuple[Any, FieldError | None]], positions: list[int]) -> None:
    """CSV rows without a problem as the mappings the model reads, put in ``parsed``: header
    name -> cell, empty cells absent."""
    readable = [i for i in positions if parsed[i][1] is None]
    header = chunk.header or ()
    for i, cells in zip(readable, chunk.rows_cells(readable)):
        parsed[i] = ({name: cell for name, cell in zip(header, cells or ()) if cell != ""}, None)


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({name: [] for name in schema.names}, schema=schema)


def _one_batch(table: pa.Table, schema: pa.Schema) -> pa.RecordBatch:
    return table.combine_chunks().to_batches()[0] if table.num_rows else _empty_batch(schema)


def _known_workstream(data: Any, context: RecordContext) -> str | None:
    own = data.get("workstream_id") if isinstance(data, dict) else None
    if isinstance(own, str) and own.strip():
        return _storable(own.strip())
    return context.path_workstream or context.run_workstream


def _storable(text: str) -> str:
    """Text a UTF-8 column can hold: what is not valid Unicode shown as U+FFFD."""
    if rules.encoding_problem(text) is None:
        return text
    try:  # bytes kept as surrogate escapes while reading: decoded the way bytes are
        return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def _raw_text(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return _storable(raw)


@functools.cache  # once per process
def _freeze_long_lived() -> None:
    """Keep the collector away from what lives as long as the worker (modules, Beam's state).

    Validation builds tens of thousands of dicts per chunk. Each one that outlives a young
    collection counts towards a full one, which walks every object in the process: a worker
    walked its few hundred thousand long-lived objects every few chunks. Frozen objects are not
    walked (reference counting still frees them). 1M JSON lines on two workers: 22.0 -> 19.5 s.
    """
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """No cycle collection while a chunk is validated.

    Parsing a chunk builds some 20,000 dicts that live until the chunk is done; each young
    collection they survive moves them on, and the collector kept walking them, ever more of
    them, as the chunk grew. Validation makes no cycles of its own that must wait for the
    collector (an exception's traceback cycle is broken when its ``except`` block ends), and
    what it frees, reference counting frees. 100k JSON records: 1.91 -> 1.41 s.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _ValidateFn(beam.DoFn):
    def __init__(self, config: WorkstreamConfig, timezone_name: str, run_workstream: str | None) -> None:
        self._config = config
        self._timezone_name = timezone_name
        self._run_workstream = run_workstream
        self._validator: ChunkValidator | None = None

    def setup(self) -> None:
        _freeze_long_lived()
        tz = timezone.utc if self._timezone_name.upper() == "UTC" else ZoneInfo(self._timezone_name)
        self._validator = ChunkValidator(self._config, tz, self._run_workstream)

    def process(self, chunk: RawChunk) -> Iterator[Any]:
        assert self._validator is not None, "setup() builds the validator"
        with _no_cycle_collection():
            accepted, rejects, counts = self._validator.validate(chunk)
        if accepted.num_rows:
            yield accepted
        if rejects.num_rows:
            yield beam.pvalue.TaggedOutput(REJECTED, rejects)
        yield beam.pvalue.TaggedOutput(COUNTS, counts)
