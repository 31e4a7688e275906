"""The same job as ``throughput run``, written with polars: the benchmark's second peer.

    python -m benchmarks.reference_polars --input 'benchmarks/data/200000-jsonl/part-*' \\
        --workstreams benchmarks/data/200000-jsonl/workstreams.json --output /tmp/polars-out

Same verdicts, dedupe, layout and manifest as ``benchmarks.reference_duckdb`` (SPEC 1-5); the
known differences from the pipeline are listed in ``benchmarks/README.md``.

How, written the way a polars user would:

* Every file is first read as plain lines (``scan_csv`` with one String column, no quoting,
  ``encoding='utf8-lossy'``) with a row index: that gives each record its line number, and the
  lines that are not records (blank), too long, not UTF-8 (a U+FFFD in the lossy text) or, for JSON
  lines, not a JSON object (``str.json_path_match('$')`` is null for text that does not parse).
  polars' JSON reader fails a whole file on one bad line, so the bad lines are isolated first and
  only the good ones go to the fast reader: ``read_ndjson(schema_overrides={field: String})`` over
  the good lines (objects arrive as their JSON text, numbers as their text; a string field whose
  value does not look like a string is checked against the line for its quotes). CSV files go
  through ``read_csv(infer_schema=False)``; a row with a cell too many or too few is found by
  counting the cells of its line.
* The rules are polars expressions over (kind, trimmed text) per field; the first error by SPEC
  field order is a ``coalesce``; dedupe is one ``group_by`` over the keyed records.
* Output through pyarrow (polars has no map type): ``pyarrow.dataset.write_dataset`` with Hive
  partitioning on (workstream_id, completed_date), zstd.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks import peers
from benchmarks.peers import FIELDS, detect_format, path_workstream

__all__ = ["FIELDS", "main", "run_reference"]

_TIMESTAMPS = ("task_started_at", "task_completed_at", "task_created_at", "received_at")
_OBJECTS = ("task_metadata", "task_measurements")
_STRINGS = ("task_id", "task_url", "dataset_id", "asset_id", "unique_id")
# fields whose value must be a JSON string (a number or true there is invalid_type)
_STRING_TYPED = ("workstream_id", "worker_id", *_STRINGS, "use_case_id", "task_definition_id", *_TIMESTAMPS,
                 "data_source")
_WS = " \t\n\x0b\x0c\r"  # what Python's str.strip() removes (ASCII)
_INT_RE = r"^[+-]?[0-9]+(_[0-9]+)*$"
_FLOAT_RE = (r"^[+-]?((([0-9]+(_[0-9]+)*)(\.([0-9]+(_[0-9]+)*)?)?|\.[0-9]+(_[0-9]+)*)"
             r"([eE][+-]?[0-9]+(_[0-9]+)*)?|(?i:inf|infinity|nan))$")
_TS_RE = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}(:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)?)?"
          r"([Zz]|[+-][0-9]{2}(:?[0-9]{2}(:?[0-9]{2}([.][0-9]+)?)?)?)?$")
_EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_NOT_STRING_RE = r"^(-?[0-9]|true$|false$|\{|\[)"  # a decoded value that may not have been a JSON string
_MAX_INT = 9223372036854775808.0
_SEP = "\x1f"




def _load_config(path: str) -> tuple[list[str], list[str], list[str]]:
    """(workstreams, workstream+use case, workstream+use case+task definition) keys."""
    text = Path(path).read_text(encoding="utf-8")
    if path.lower().endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    ws_keys, uc_keys, td_keys = [], [], []
    for ws in data["workstreams"]:
        w = ws["id"].strip()
        ws_keys.append(w)
        for uc in ws.get("use_cases") or []:
            u = uc["id"].strip()
            uc_keys.append(f"{w}{_SEP}{u}")
            td_keys.extend(f"{w}{_SEP}{u}{_SEP}{td.strip()}" for td in uc.get("task_definitions") or [])
    return ws_keys, uc_keys, td_keys


# --------------------------------------------------------------------------------------- reading

def _lines(pl: Any, path: str) -> Any:
    """A file's lines (lazy): ``line`` (lossy UTF-8 text, null when empty) and its number ``source_line``."""
    return (pl.scan_csv(path, has_header=False, separator="\x01", quote_char=None, new_columns=["line"],
                        schema={"line": pl.String}, encoding="utf8-lossy", truncate_ragged_lines=True)
            .with_row_index("source_line", offset=1)
            .with_columns(pl.col("source_line").cast(pl.Int64)))


def _classified(pl: Any, lines: Any, kind: str, max_bytes: int) -> Any:
    """``code``: why a line is not a plain record ("blank", or an error code), null for a plain record."""
    line = pl.col("line")
    blank = line.is_null() | (line.str.strip_chars(_WS) == "")
    checks = (pl.when(blank).then(pl.lit("blank"))
              .when(line.str.len_bytes() > max_bytes).then(pl.lit("record_too_large"))
              .when(line.str.contains("\ufffd", literal=True)).then(pl.lit("invalid_encoding")))
    if kind == "jsonl":
        checks = (checks.when(line.str.strip_chars(_WS) == "null").then(pl.lit("not_an_object"))
                  .when(line.str.json_path_match("$").is_null()).then(pl.lit("malformed_json"))
                  .when(~line.str.strip_chars_start(_WS).str.starts_with("{")).then(pl.lit("not_an_object")))
    return lines.with_columns(checks.otherwise(None).alias("code"))


def _kinds_from_text(pl: Any, frame: Any, raw: str) -> Any:
    """JSON lines: per field, ``t_`` (VARCHAR for a JSON string, OTHER otherwise) and ``s_`` (trimmed text)."""
    columns = []
    for f in FIELDS:
        v = pl.col(f)
        if f in _STRING_TYPED:
            # read as String, 5 and "5" look alike: the line tells whether the value was quoted
            quoted = pl.col(raw).str.contains(rf'"{f}"\s*:\s*"')
            is_string = ~v.str.contains(_NOT_STRING_RE) | quoted
            kind = pl.when(v.is_null()).then(None).when(is_string).then(pl.lit("VARCHAR")).otherwise(pl.lit("OTHER"))
        else:
            kind = pl.when(v.is_null()).then(None).otherwise(pl.lit("VARCHAR"))
        columns += [kind.alias(f"t_{f}"), v.str.strip_chars(_WS).alias(f"s_{f}")]
    return frame.with_columns(columns)


def _extras_json(pl: Any, frame: Any, extras: list[str]) -> Any:
    """``extra_fields``: the JSON object of a record's non-null fields outside the contract (few records have any)."""
    if not extras:
        return pl.lit(None, pl.String).alias("extra_fields")
    present = frame.select(pl.any_horizontal(pl.col(c).is_not_null() for c in extras)).to_series()
    encoded = [json.dumps({k: v for k, v in row.items() if v is not None}, separators=(",", ":"), ensure_ascii=False)
               for row in frame.filter(present).select(extras).to_dicts()]
    return pl.Series("extra_fields", [None] * frame.height, pl.String).scatter(
        present.arg_true(), pl.Series(encoded, dtype=pl.String))


def _read_jsonl(pl: Any, index: int, path: str, lines: Any) -> tuple[Any, Any]:
    """(records with t_/s_ per field and extra_fields, pre-decided rejects) of one JSON lines file."""
    good = lines.filter(pl.col("code").is_null())
    text = good.select(pl.col("line").str.join("\n")).item() if good.height else ""
    data = text.encode()
    # every key of every record (the fields outside the contract go to extra_fields, with their types);
    # the contract's fields as String: numbers arrive as their text, objects as their JSON text
    inferred = pl.scan_ndjson(data, infer_schema_length=None).collect_schema() if good.height else {}
    schema = {f: pl.String for f in FIELDS} | {n: t for n, t in inferred.items() if n not in FIELDS}
    records = pl.read_ndjson(io.BytesIO(data), schema=schema) if good.height else pl.DataFrame(schema=schema)
    extras = [c for c in records.columns if c not in FIELDS]
    records = records.with_columns(good.get_column("source_line"), good.get_column("line").alias("_line"))
    records = _kinds_from_text(pl, records, "_line")
    if extras:  # the few records with fields outside the contract: their own line says which, and their values
        key = "|".join(re.escape(json.dumps(n)) for n in extras)
        candidate = records.get_column("_line").str.contains(rf"({key})\s*:")
        encoded = []
        for line in records.filter(candidate).get_column("_line"):
            fields = {k: v for k, v in json.loads(line).items() if k not in FIELDS}
            encoded.append(json.dumps(fields, separators=(",", ":"), ensure_ascii=False) if fields else None)
        records = records.with_columns(pl.Series("extra_fields", [None] * records.height, pl.String).scatter(
            candidate.arg_true(), pl.Series(encoded, dtype=pl.String)))
    else:
        records = records.with_columns(pl.lit(None, pl.String).alias("extra_fields"))
    records = records.select("source_line", "extra_fields", *(c for f in FIELDS for c in (f"t_{f}", f"s_{f}")))
    return records, lines.filter(pl.col("code").is_not_null() & (pl.col("code") != "blank"))


def _read_csv(pl: Any, index: int, path: str, lines: Any) -> tuple[Any, Any]:
    cells = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy", truncate_ragged_lines=True,
                        quote_char='"', separator=",")
    cells = cells.rename({c: c.strip() for c in cells.columns})
    body = lines.slice(1)  # the header is line 1
    if body.height != cells.height:
        raise SystemExit(f"{path}: {cells.height} CSV rows but {body.height} lines (quoted newlines are not supported)")
    # cells of a line: its commas outside quoted cells, plus one
    count = pl.col("line").str.replace_all(r'"(?:[^"]|"")*"', "").str.count_matches(",", literal=True) + 1
    # as the pipeline: a row with a wrong number of cells is malformed_csv before its encoding is looked at
    body = body.with_columns(pl.when((pl.col("code").is_null() | (pl.col("code") == "invalid_encoding"))
                                     & (count != len(cells.columns)))
                             .then(pl.lit("malformed_csv")).otherwise(pl.col("code")).alias("code"))
    extras = [c for c in cells.columns if c not in FIELDS]
    frame = pl.concat([body, cells], how="horizontal").filter(pl.col("code").is_null())
    columns = []
    for f in FIELDS:
        if f in cells.columns:
            columns += [pl.when(pl.col(f).is_null()).then(None).otherwise(pl.lit("VARCHAR")).alias(f"t_{f}"),
                        pl.col(f).str.strip_chars(_WS).alias(f"s_{f}")]
        else:
            columns += [pl.lit(None, pl.String).alias(f"t_{f}"), pl.lit(None, pl.String).alias(f"s_{f}")]
    frame = frame.select("source_line", _extras_json(pl, frame, extras), *columns)
    return frame, body.filter(pl.col("code").is_not_null() & (pl.col("code") != "blank"))


# ------------------------------------------------------------------------------------ validation

def _validate(pl: Any, recs: Any, config: tuple[list[str], list[str], list[str]]) -> Any:
    """Every record with its verdict (first error by field order) and its normalized values.

    In three stages of columns (lazy, so that polars evaluates each once and in parallel): what each
    field holds (presence, parsed numbers and datetimes), then each field's error code, then the verdict.
    """
    ws_keys, uc_keys, td_keys = config
    c = pl.col

    def case(*pairs: Any) -> Any:
        expr = None
        for cond, code in pairs:
            expr = pl.when(cond).then(pl.lit(code)) if expr is None else expr.when(cond).then(pl.lit(code))
        return expr.otherwise(None)

    # 1. what each field holds
    held = [(c(f"t_{f}").is_not_null() & (c(f"s_{f}") != "")).alias(f"p_{f}") for f in FIELDS]
    held += [(c(f"t_{f}") == "VARCHAR").fill_null(False).alias(f"str_{f}") for f in FIELDS]
    for f in ("task_count", "subtask_count", "duration"):
        text = c(f"s_{f}").str.replace_all("_", "")
        held += [c(f"s_{f}").str.contains(_INT_RE).fill_null(False).alias(f"int_{f}"),
                 c(f"s_{f}").str.contains(_FLOAT_RE).fill_null(False).alias(f"flt_{f}"),
                 text.str.to_integer(strict=False).alias(f"iv_{f}"),
                 text.cast(pl.Float64, strict=False).alias(f"fv_{f}")]
    for f in _TIMESTAMPS:
        text = (c(f"s_{f}").str.to_uppercase().str.replace(r"^([0-9]{4}-[0-9]{2}-[0-9]{2}) ", "${1}T")
                .str.replace(r",([0-9]+)", ".${1}").str.replace(r"Z$", "+00:00"))
        text = pl.when(text.str.contains(r"[+-][0-9]{2}:?[0-9]{2}$")).then(text).otherwise(text + "+00:00")
        parsed = pl.coalesce(text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", strict=False, time_zone="UTC", time_unit="us"),
                             text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_zone="UTC", time_unit="us"))
        held.append(pl.when((c(f"t_{f}") == "VARCHAR") & c(f"s_{f}").str.contains(_TS_RE)).then(parsed).alias(f"ts_{f}"))
    for f in _OBJECTS:  # an object, or a string holding JSON object text: checked by json_path_match
        held.append((c(f"s_{f}").str.starts_with("{") & c(f"s_{f}").str.json_path_match("$").is_not_null())
                    .fill_null(False).alias(f"obj_{f}"))
    low = c("s_replace_duplicate").str.to_lowercase()
    held += [low.is_in(["true", "1", "yes"]).fill_null(False).alias("truthy"),
             low.is_in(["false", "0", "no"]).fill_null(False).alias("falsy"),
             pl.when(c("t_workstream_id").is_not_null() & (c("s_workstream_id") != ""))
             .then(c("s_workstream_id")).otherwise(c("path_ws")).alias("ws")]
    frame = recs.lazy().with_columns(held)
    frame = frame.with_columns(
        c("ws").is_in(ws_keys).fill_null(False).alias("ws_known"),
        (c("ws") + _SEP + c("s_use_case_id")).is_in(uc_keys).fill_null(False).alias("uc_known"),
        (c("ws") + _SEP + c("s_use_case_id") + _SEP + c("s_task_definition_id")).is_in(td_keys).fill_null(False)
        .alias("td_known"))
    frame = frame.with_columns(
        (~(c("p_workstream_id") & ~c("str_workstream_id")) & c("ws").is_not_null() & c("ws_known")).alias("ws_ok"),
        (c("p_use_case_id") & c("str_use_case_id") & c("uc_known")).alias("uc_ok"))

    # 2. each field's error code (SPEC 1 and 3)
    p = {f: c(f"p_{f}") for f in FIELDS}
    is_str = {f: c(f"str_{f}") for f in FIELDS}
    err: dict[str, Any] = {}
    err["workstream_id"] = case((p["workstream_id"] & ~is_str["workstream_id"], "invalid_type"),
                                (c("ws").is_null(), "missing_workstream_id"), (~c("ws_known"), "unknown_workstream"))
    err["worker_id"] = case((~p["worker_id"], "missing_field"), (~is_str["worker_id"], "invalid_type"))
    for f in _STRINGS:
        err[f] = case((p[f] & ~is_str[f], "invalid_type"))
    for f in ("task_count", "subtask_count"):
        iv, fv = c(f"iv_{f}"), c(f"fv_{f}")
        bad_int = iv.is_null() | (iv < 0)
        bad_flt = fv.is_null() | ~fv.is_finite() | (fv != fv.floor()) | (fv < 0) | (fv >= _MAX_INT)
        err[f] = case((~p[f], None), (c(f"int_{f}") & bad_int, "invalid_value"), (c(f"int_{f}"), None),
                      (c(f"flt_{f}") & bad_flt, "invalid_value"), (c(f"flt_{f}"), None), (pl.lit(True), "invalid_type"))
    num, dur = c("int_duration") | c("flt_duration"), c("fv_duration")
    err["duration"] = case((~p["duration"], None), (num & (dur.is_null() | ~dur.is_finite() | (dur < 0)), "invalid_value"),
                           (~num, "invalid_type"))
    err["use_case_id"] = case((~p["use_case_id"], "missing_field"), (~is_str["use_case_id"], "invalid_type"),
                              (c("ws_ok") & ~c("uc_known"), "unknown_use_case"))
    err["task_definition_id"] = case((~p["task_definition_id"], "missing_field"),
                                     (~is_str["task_definition_id"], "invalid_type"),
                                     (c("ws_ok") & c("uc_ok") & ~c("td_known"), "unknown_task_definition"))
    for f in _TIMESTAMPS:
        required = f in ("task_started_at", "task_completed_at")
        err[f] = case((~p[f], "missing_field" if required else None), (~is_str[f], "invalid_type"),
                      (c(f"ts_{f}").is_null(), "invalid_timestamp"))
    err["task_completed_at"] = (pl.when(err["task_completed_at"].is_not_null()).then(err["task_completed_at"])
                                .when(c("ts_task_completed_at") < c("ts_task_started_at"))
                                .then(pl.lit("completed_before_started")).otherwise(None))
    err["data_source"] = case((~p["data_source"], None), (~is_str["data_source"], "invalid_type"),
                              (~c("s_data_source").is_in(["api", "csv_manual", "csv_automated"]), "invalid_data_source"))
    for f in _OBJECTS:
        err[f] = case((~p[f], None), (~c(f"obj_{f}"), "invalid_type"))
    err["replace_duplicate"] = case((~p["replace_duplicate"], None), (~(c("truthy") | c("falsy")), "invalid_type"))
    frame = frame.with_columns(err[f].cast(pl.String).alias(f"e_{f}") for f in FIELDS)

    # 3. the verdict and the normalized values
    e = {f: c(f"e_{f}") for f in FIELDS}
    frame = frame.with_columns(pl.coalesce(c("pre_code"), *(e[f] for f in FIELDS)).alias("error_code"))
    first_field = pl.when(e[FIELDS[0]].is_not_null()).then(pl.lit(FIELDS[0]))
    for f in FIELDS[1:]:
        first_field = first_field.when(e[f].is_not_null()).then(pl.lit(f))
    message = pl.concat_str([pl.lit(f"{f}: ") + e[f] for f in FIELDS], separator="; ", ignore_nulls=True)
    s = {f: c(f"s_{f}") for f in FIELDS}
    val: dict[str, Any] = {}
    val["worker_id"] = (pl.when(p["worker_id"] & is_str["worker_id"])
                        .then(pl.when(s["worker_id"].str.contains(_EMAIL_RE)).then(s["worker_id"].str.to_lowercase())
                              .otherwise(s["worker_id"])))
    for f in _STRINGS:
        val[f] = pl.when(p[f] & is_str[f]).then(s[f])
    for f in ("task_count", "subtask_count"):
        val[f] = (pl.when(p[f] & c(f"int_{f}")).then(c(f"iv_{f}"))
                  .when(p[f] & c(f"flt_{f}")).then(c(f"fv_{f}").cast(pl.Int64, strict=False)))
    val["task_count"] = val["task_count"].otherwise(1)
    val["duration"] = pl.when(p["duration"] & num).then(dur)
    val["use_case_id"] = s["use_case_id"]
    val["task_definition_id"] = s["task_definition_id"]
    for f in _TIMESTAMPS:
        val[f] = c(f"ts_{f}")
    val["data_source"] = pl.when(p["data_source"]).then(s["data_source"])
    for f in _OBJECTS:
        val[f] = pl.when(p[f] & c(f"obj_{f}")).then(s[f])
    val["replace_duplicate"] = pl.when(~p["replace_duplicate"] | c("truthy")).then(True).when(c("falsy")).then(False)
    pre, failed = c("pre_code"), c("error_code").is_not_null() & c("pre_code").is_null()
    return frame.select(
        "file_index", "source_file", "source_line", "raw", "extra_fields", "error_code",
        (c("file_index").cast(pl.Int64) * (1 << 40) + c("source_line")).alias("seq"),
        pl.when(pre.is_null()).then(c("ws")).alias("workstream_id"),
        pl.when(failed).then(first_field.otherwise(None)).alias("error_field"),
        pl.when(pre.is_not_null()).then(pre).when(failed).then(message).alias("error_message"),
        *(pl.when(pre.is_null()).then(val[f]).alias(f) for f in FIELDS if f != "workstream_id"),
    ).collect()


# ---------------------------------------------------------------------------------------- output

def _maps(pl: Any, frame: Any, column: str) -> Any:
    """JSON object text -> pyarrow map<string, string>, non-string values as their (compact) JSON text.

    polars' JSON reader turns the objects into columns (every key seen, values as text); the few objects
    it cannot render exactly (a null value, which it cannot tell from an absent key, or a nested value,
    which it keeps as written) are converted by Python's json.
    """
    import pyarrow as pa

    entry = pa.struct([pa.field("key", pa.string(), nullable=False), pa.field("value", pa.string())])
    texts = frame.get_column(column)
    present = texts.is_not_null()
    if not present.any():
        return pa.nulls(frame.height, pa.map_(pa.string(), pa.string()))
    objects = pl.DataFrame({"i": present.arg_true(), "text": texts.filter(present)})
    exotic = pl.col("text").str.contains("null", literal=True) | pl.col("text").str.slice(1).str.contains(r"[\[{]")
    plain, odd = objects.filter(~exotic), objects.filter(exotic)
    dtype = pl.List(pl.Struct({"key": pl.String, "value": pl.String}))
    parts = []
    if plain.height:
        data = plain.get_column("text").str.join("\n").item().encode()
        names = list(pl.scan_ndjson(data, infer_schema_length=None).collect_schema())  # every key of every object
        parsed = pl.read_ndjson(io.BytesIO(data), schema={n: pl.String for n in names})  # values as their text
        pairs = parsed.select(pl.concat_list([pl.struct(pl.lit(n).alias("key"), pl.col(n).alias("value")) for n in names])
                              .list.eval(pl.element().filter(pl.element().struct.field("value").is_not_null()))
                              .cast(dtype).alias("m"))
        parts.append(pl.concat([plain.select("i"), pairs], how="horizontal"))
    if odd.height:
        def text(value: Any) -> str:
            return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)

        converted = [[{"key": k, "value": text(v)} for k, v in json.loads(t).items()] for t in odd.get_column("text")]
        parts.append(pl.DataFrame({"i": odd.get_column("i"), "m": pl.Series(converted, dtype=dtype)}))
    full = (pl.DataFrame({"i": pl.int_range(frame.height, eager=True, dtype=pl.UInt32)})
            .join(pl.concat(parts).with_columns(pl.col("i").cast(pl.UInt32)), on="i", how="left", maintain_order="left")
            .get_column("m"))
    lists = full.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(pa.list_(entry))
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    flat = lists.flatten()
    return pa.MapArray.from_arrays(lists.offsets, flat.field("key"), flat.field("value"), mask=lists.is_null())


def _write_partitioned(table: Any, folder: Path, run_id: str) -> None:
    import pyarrow.dataset as ds

    ds.write_dataset(table, str(folder), format="parquet", partitioning=["workstream_id", "completed_date"],
                     partitioning_flavor="hive", basename_template=f"part-{run_id}-{{i}}.parquet",
                     existing_data_behavior="overwrite_or_ignore", max_partitions=1 << 20,
                     max_open_files=1 << 12, preserve_order=True,
                     file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"))


# ----------------------------------------------------------------------------------------- run

def run_reference(inputs: list[str], workstreams: str, output: str, file_format: str = "auto",
                  duplicates: str = "per-record", run_id: str | None = None, max_record_bytes: int = 1 << 20,
                  threads: int | None = None) -> dict[str, Any]:
    """Run the job; returns the manifest (also written to OUT/_runs/<run_id>.json)."""
    if threads:
        os.environ["POLARS_MAX_THREADS"] = str(int(threads))  # read when polars is first imported
    import polars as pl
    import pyarrow.parquet as pq

    started = time.time()
    paths = sorted({os.path.abspath(p) for pattern in inputs for p in glob.glob(pattern, recursive=True)
                    if os.path.isfile(p)})
    if not paths:
        raise SystemExit(f"no input file matched {', '.join(inputs)}")
    run_id = run_id or f"polars-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    config = _load_config(workstreams)
    kinds = [detect_format(path, file_format) for path in paths]
    # the line scans of all files at once (polars runs the lazy queries side by side); with fewer files than
    # threads, each file in several interleaved pieces, so that the JSON check of its lines is spread too
    pieces = max(1, -(-pl.thread_pool_size() // len(paths)))
    queries = [_classified(pl, _lines(pl, path).filter(pl.col("source_line") % pieces == piece), kind, max_record_bytes)
               for path, kind in zip(paths, kinds) for piece in range(pieces)]
    done = pl.collect_all(queries)
    lines = [pl.concat(done[i * pieces:(i + 1) * pieces]).sort("source_line") for i in range(len(paths))]
    parts, pre, blank_lines = [], [], 0
    for index, (path, kind, found) in enumerate(zip(paths, kinds, lines)):
        records, rejected = (_read_jsonl if kind == "jsonl" else _read_csv)(pl, index, path, found)
        if kind == "jsonl":
            blank_lines += found.filter(pl.col("code") == "blank").height
        extra = [pl.lit(index, pl.Int32).alias("file_index"), pl.lit(path).alias("source_file"),
                 pl.lit(path_workstream(path), pl.String).alias("path_ws")]
        none = pl.lit(None, pl.String)
        parts.append(records.with_columns(*extra, none.alias("pre_code"), none.alias("raw")))
        pre.append(rejected.select("source_line", pl.col("code").alias("pre_code"), pl.col("line").alias("raw"))
                   .with_columns(*extra))
    recs = pl.concat([*parts, *pre], how="diagonal_relaxed")
    checked = _validate(pl, recs, config)
    raws = pl.concat([found.select(pl.lit(i, pl.Int32).alias("file_index"), "source_line", pl.col("line").alias("line_raw"))
                      for i, found in enumerate(lines)])

    replace = {"per-record": pl.col("replace_duplicate").fill_null(True), "replace": pl.lit(True),
               "keep-first": pl.lit(False)}[duplicates]
    accepted = checked.filter(pl.col("error_code").is_null())
    keys = (accepted.filter(pl.col("unique_id").is_not_null()).with_columns(replace.alias("_may"))
            .group_by("workstream_id", "use_case_id", "task_definition_id", "unique_id")
            .agg(pl.len().alias("n"), pl.col("seq").min().alias("first"),
                 pl.col("seq").filter(pl.col("_may")).max().alias("last"),
                 pl.col("_may").sum().alias("n_may"), pl.col("_may").sort_by("seq").first().alias("first_may"))
            .with_columns(pl.max_horizontal("first", pl.col("last").fill_null(0)).alias("winner"),
                          (pl.col("n_may") + pl.when(pl.col("first_may")).then(0).otherwise(1)).alias("eligible")))
    superseded = int(keys.select((pl.col("eligible") - 1).sum()).item() or 0)
    ignored = int(keys.select((pl.col("n") - pl.col("eligible")).sum()).item() or 0)
    kept = accepted.filter(pl.col("unique_id").is_null() | pl.col("seq").is_in(keys.get_column("winner").implode()))
    # completed - started in seconds, divided as IEEE does (polars may turn a division by a literal into a
    # multiplication by its inverse, which rounds differently)
    derived = ((pl.col("task_completed_at") - pl.col("task_started_at")).dt.total_microseconds()
               .map_batches(lambda us: pl.Series(us.cast(pl.Float64).to_numpy() / 1_000_000.0), return_dtype=pl.Float64))
    kept = (kept.with_columns(pl.col("duration").is_null().alias("duration_derived"),
                              pl.coalesce("duration", derived).alias("duration"),
                              pl.lit(run_id).alias("run_id"),
                              pl.col("task_completed_at").dt.date().alias("completed_date"))
            .sort("workstream_id", "completed_date", "task_completed_at", "seq"))

    out = Path(output)
    for sub in ("task_completed", "throughput_daily", f"rejects/run_id={run_id}", "_runs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    columns = ["workstream_id", "worker_id", "task_id", "task_url", "task_count", "subtask_count", "use_case_id",
               "task_definition_id", "task_started_at", "task_completed_at", "duration", "task_created_at",
               "data_source", "task_metadata", "task_measurements", "dataset_id", "asset_id", "unique_id",
               "replace_duplicate", "received_at", "extra_fields", "duration_derived", "source_file", "source_line",
               "run_id", "completed_date"]
    table = kept.select(columns).to_arrow(compat_level=pl.CompatLevel.oldest())
    for name in _OBJECTS:
        table = table.set_column(table.schema.get_field_index(name), name, _maps(pl, kept, name))
    _write_partitioned(table, out / "task_completed", run_id)
    daily = (kept.group_by("workstream_id", "completed_date", "use_case_id", "task_definition_id", "worker_id")
             .agg(pl.len().cast(pl.Int64).alias("records"), pl.col("task_count").sum().alias("task_count"),
                  pl.when(pl.col("subtask_count").count() > 0).then(pl.col("subtask_count").sum()).alias("subtask_count"),
                  pl.col("duration").sum().alias("duration"),
                  pl.col("task_completed_at").min().alias("first_completed_at"),
                  pl.col("task_completed_at").max().alias("last_completed_at"))
             .sort("workstream_id", "completed_date", "use_case_id", "task_definition_id", "worker_id"))
    _write_partitioned(daily.to_arrow(compat_level=pl.CompatLevel.oldest()), out / "throughput_daily", run_id)
    rejects = (checked.filter(pl.col("error_code").is_not_null())
               .join(raws, on=["file_index", "source_line"], how="left")
               .sort("seq")
               .select("source_file", "source_line", "workstream_id", "error_code", "error_field", "error_message",
                       pl.coalesce("raw", "line_raw").alias("raw")))
    pq.write_table(rejects.to_arrow(compat_level=pl.CompatLevel.oldest()),
                   out / f"rejects/run_id={run_id}/part-00000.parquet", compression="zstd")

    by_code = dict(sorted(checked.filter(pl.col("error_code").is_not_null()).group_by("error_code").len().iter_rows()))
    counts = {
        "read": checked.height, "blank_lines": blank_lines, "written": kept.height,
        "rejected": sum(by_code.values()), "ignored_duplicates": ignored, "superseded": superseded,
        "replaced_existing": 0, "rejected_by_code": by_code,
    }
    counts["reconciles"] = counts["read"] == (counts["written"] + counts["rejected"] + counts["ignored_duplicates"]
                                              + counts["superseded"])
    manifest = {
        "run_id": run_id, "status": "committed", "engine": f"polars {pl.__version__}",
        "seconds": round(time.time() - started, 3), "inputs": paths, "counts": counts,
        "tables": {"task_completed": {"rows": counts["written"]}, "throughput_daily": {"rows": daily.height},
                   "rejects": {"rows": counts["rejected"]}},
    }
    (out / "_runs" / f"{run_id}.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    def engine_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--threads", type=int, help="polars threads (POLARS_MAX_THREADS; default: the number of cores)")

    return peers.main(argv, "python -m benchmarks.reference_polars", (__doc__ or "").splitlines()[0], "polars",
                      lambda a: run_reference(
                          a.inputs, a.workstreams, a.output, a.file_format, a.duplicates,
                          a.run_id, a.max_record_bytes, a.threads),
                      engine_options)


if __name__ == "__main__":
    sys.exit(main())
