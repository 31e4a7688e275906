"""The same job as ``throughput run``, written in DuckDB SQL: the benchmark's baseline and a cross-check.

    python -m benchmarks.reference_duckdb --input 'benchmarks/data/200k-jsonl/part-*' \\
        --workstreams benchmarks/data/200k-jsonl/workstreams.json --output /tmp/ref-out

Same verdicts (SPEC 1 and 3: the first error code by field order), same dedupe (SPEC 4: ordered by
file path then line), same Hive-partitioned layout (SPEC 5):

    OUT/task_completed/workstream_id=<id>/completed_date=<date>/*.parquet
    OUT/throughput_daily/workstream_id=<id>/completed_date=<date>/*.parquet
    OUT/rejects/run_id=<run_id>/part-00000.parquet
    OUT/_runs/<run_id>.json        (counts in the pipeline manifest's shape)

How: every file is read by DuckDB's CSV reader with every column as VARCHAR (a JSONL file as one
column per line, no quoting), so a bad value never fails the load; ``WITH ORDINALITY`` gives each
row's place, and the reader's rejects table (invalid UTF-8, bad CSV rows) gives the lines it
skipped, from which the line numbers are rebuilt. A CSV row becomes a JSON object of its
non-empty cells, so one set of CASE expressions validates both formats. Python only lists the
files, loads the configuration and writes the manifest; all record work is SQL.
Known differences from the pipeline are listed in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb

__all__ = ["FIELDS", "main", "run_reference"]

FIELDS = (
    "workstream_id", "worker_id", "task_id", "task_url", "task_count", "subtask_count", "use_case_id",
    "task_definition_id", "task_started_at", "task_completed_at", "duration", "task_created_at",
    "data_source", "task_metadata", "task_measurements", "dataset_id", "asset_id", "unique_id",
    "replace_duplicate", "received_at",
)
_STRING_FIELDS = ("task_id", "task_url", "dataset_id", "asset_id", "unique_id")
_WS = "' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)"  # what Python's str.strip() removes (ASCII)
_INT_RE = r"[+-]?[0-9]+(_[0-9]+)*"
_FLOAT_RE = (r"[+-]?((([0-9]+(_[0-9]+)*)(\.([0-9]+(_[0-9]+)*)?)?|\.[0-9]+(_[0-9]+)*)"
             r"([eE][+-]?[0-9]+(_[0-9]+)*)?|(?i:inf|infinity|nan))")
_TS_RE = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}(:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)?)?"
          r"([Zz]|[+-][0-9]{2}(:?[0-9]{2}(:?[0-9]{2}([.][0-9]+)?)?)?)?")
_PATH_WS_RE = r"(?:^|/)workstream_id=([^/]+)/"


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _detect(path: str, requested: str) -> str:
    if requested in ("jsonl", "csv"):
        return requested
    name = path.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    raise SystemExit(f"cannot tell the format of {path} from its extension; pass --format")


def _load_config(path: str) -> list[tuple[str, str, str | None]]:
    text = Path(path).read_text(encoding="utf-8")
    if path.lower().endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    rows = []
    for ws in data["workstreams"]:
        for uc in ws.get("use_cases") or [{"id": None}]:
            for td in uc.get("task_definitions") or [None]:
                rows.append((ws["id"].strip(), uc["id"].strip() if uc["id"] else None, td.strip() if td else None))
    return rows


# --------------------------------------------------------------------------------------- reading

def _read_file(con: duckdb.DuckDBPyConnection, index: int, path: str, kind: str, max_bytes: int) -> None:
    """Append one file's records to ``recs`` (file_index, source_file, source_line, raw, pre_code, j)."""
    line_limit = max(2 * max_bytes + 1024, 8 << 20)
    common = (f"filename=true, ignore_errors=true, store_rejects=true, rejects_table='rej_{index}', "
              f"rejects_scan='scan_{index}', max_line_size={line_limit}, buffer_size={4 * line_limit}, comment=''")
    if kind == "jsonl":
        source = (f"read_csv({_q(path)}, columns={{'line': 'VARCHAR'}}, header=false, auto_detect=false, "
                  f"delim='\x01', quote='', escape='', {common})")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE rows AS
            SELECT ordinality AS ord, filename AS source_file, line AS raw, NULL::JSON AS cells FROM {source} WITH ORDINALITY
        """)
        header_lines = 0
    else:
        sniff = (f"read_csv({_q(path)}, header=true, all_varchar=true, delim=',', quote='\"', escape='\"', "
                 f"strict_mode=true, null_padding=false, {common.replace(f'rej_{index}', f'sniffrej_{index}').replace(f'scan_{index}', f'sniffscan_{index}')})")
        columns = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {sniff}").fetchall()]
        columns = [c for c in columns if c != "filename"]
        pairs = ", ".join(f"{_q(c.strip())}, \"{c}\"" for c in columns)
        size = " + ".join(f"coalesce(strlen(\"{c}\"), 0)" for c in columns) + f" + {len(columns) - 1}"
        source = sniff.replace(f"sniffrej_{index}", f"rej_{index}").replace(f"sniffscan_{index}", f"scan_{index}")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE rows AS
            SELECT ordinality AS ord, filename AS source_file,
                   CASE WHEN {size} > {max_bytes} THEN '__too_large__' END AS raw,
                   json_merge_patch('{{}}', json_object({pairs})) AS cells
            FROM {source} WITH ORDINALITY
        """)
        header_lines = 1
    # Lines the reader skipped (bad UTF-8, bad CSV row, over-long line), one row each, worst first.
    jsonl_other = "malformed_json" if kind == "jsonl" else "malformed_csv"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE skipped AS
        SELECT line,
               arg_min(code, rank) AS pre_code,
               arg_min(csv_line, rank) AS raw
        FROM (
            SELECT e.line::BIGINT AS line, e.csv_line,
                   CASE WHEN e.error_type = 'LINE SIZE OVER MAXIMUM' THEN 'record_too_large'
                        WHEN e.error_type = 'INVALID ENCODING' THEN 'invalid_encoding'
                        ELSE '{jsonl_other}' END AS code,
                   CASE WHEN e.error_type = 'LINE SIZE OVER MAXIMUM' THEN 0
                        WHEN e.error_type = 'INVALID ENCODING' THEN {2 if kind == 'csv' else 1}
                        ELSE {1 if kind == 'csv' else 2} END AS rank
            FROM rej_{index} e
        ) GROUP BY line
    """)
    # Row r of the file (1-based, after the header) sits on line r + header + (skipped lines before it):
    # with skipped lines x_1 < x_2 < ..., row r comes after x_k exactly when x_k - k < r + header.
    con.execute(f"""
        INSERT INTO recs
        WITH numbered AS (
            SELECT source_file, raw, cells, ord - min(ord) OVER () + 1 + {header_lines} AS r FROM rows
        ),
        steps AS (
            SELECT line - k AS t, max(k) AS k
            FROM (SELECT line, row_number() OVER (ORDER BY line) AS k FROM skipped) GROUP BY ALL
        )
        SELECT {index}, n.source_file, n.r + coalesce(s.k, 0), n.raw, NULL, n.cells
        FROM numbered n ASOF LEFT JOIN steps s ON n.r > s.t
        UNION ALL
        SELECT {index}, {_q(path)}, line, raw, pre_code, NULL FROM skipped
    """)
    for table in ("rows", "skipped", f"rej_{index}", f"scan_{index}"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    if kind == "csv":
        con.execute(f"DROP TABLE IF EXISTS sniffrej_{index}")
        con.execute(f"DROP TABLE IF EXISTS sniffscan_{index}")


# ------------------------------------------------------------------------------------ validation

def _field_sql() -> tuple[str, str]:
    """(extraction select list, checks select list) over the parsed record ``j``."""
    keys = "[" + ", ".join(_q(f) for f in FIELDS) + "]"
    extract = [f"json_extract(j, {keys}) AS v", f"json_extract_string(j, {keys}) AS s"]
    for i, f in enumerate(FIELDS, start=1):
        extract.append(f"json_type(v[{i}]) AS t_{f}")
        extract.append(f"v[{i}] AS v_{f}")
        extract.append(f"trim(s[{i}], {_WS}) AS s_{f}")
    checks = []
    for f in FIELDS:
        checks.append(f"(t_{f} IS NOT NULL AND t_{f} <> 'NULL' AND NOT (t_{f} = 'VARCHAR' AND s_{f} = '')) AS p_{f}")
    return ",\n  ".join(extract), ",\n  ".join(checks)


def _count_sql(f: str) -> tuple[str, str]:
    """(error code, value) of a count field (SPEC 1: integer value >= 0)."""
    is_int = f"(t_{f} IN ('BIGINT', 'UBIGINT') OR (t_{f} = 'VARCHAR' AND regexp_full_match(s_{f}, '{_INT_RE}')))"
    is_flt = f"(t_{f} = 'DOUBLE' OR (t_{f} = 'VARCHAR' AND regexp_full_match(s_{f}, '{_FLOAT_RE}')))"
    int_v = f"TRY_CAST(replace(s_{f}, '_', '') AS HUGEINT)"
    flt_v = f"TRY_CAST(replace(s_{f}, '_', '') AS DOUBLE)"
    err = (f"CASE WHEN NOT p_{f} THEN NULL "
           f"WHEN {is_int} THEN CASE WHEN {int_v} < 0 OR {int_v} >= 9223372036854775808 THEN 'invalid_value' END "
           f"WHEN {is_flt} THEN CASE WHEN {flt_v} IS NULL OR NOT isfinite({flt_v}) OR {flt_v} <> floor({flt_v}) "
           f"OR {flt_v} < 0 OR {flt_v} >= 9223372036854775808.0 THEN 'invalid_value' END "
           f"ELSE 'invalid_type' END")
    val = (f"CASE WHEN NOT p_{f} THEN NULL WHEN {is_int} THEN TRY_CAST({int_v} AS BIGINT) "
           f"WHEN {is_flt} THEN TRY_CAST({flt_v} AS BIGINT) END")
    return err, val


def _duration_sql() -> tuple[str, str]:
    f = "duration"
    is_num = (f"(t_{f} IN ('BIGINT', 'UBIGINT', 'DOUBLE') OR (t_{f} = 'VARCHAR' AND "
              f"(regexp_full_match(s_{f}, '{_INT_RE}') OR regexp_full_match(s_{f}, '{_FLOAT_RE}'))))")
    num = f"TRY_CAST(replace(s_{f}, '_', '') AS DOUBLE)"
    err = (f"CASE WHEN NOT p_{f} THEN NULL WHEN {is_num} THEN CASE WHEN {num} IS NULL OR NOT isfinite({num}) "
           f"OR {num} < 0 THEN 'invalid_value' END ELSE 'invalid_type' END")
    return err, f"CASE WHEN p_{f} AND {is_num} THEN {num} END"


def _timestamp_sql(f: str) -> tuple[str, str]:
    err = (f"CASE WHEN NOT p_{f} THEN NULL WHEN t_{f} <> 'VARCHAR' THEN 'invalid_type' "
           f"WHEN ts_{f} IS NULL THEN 'invalid_timestamp' END")
    return err, f"ts_{f}"


def _timestamp_value_sql(f: str) -> str:
    return (f"CASE WHEN t_{f} = 'VARCHAR' AND regexp_full_match(s_{f}, '{_TS_RE}') "
            f"THEN TRY_CAST(upper(s_{f}) AS TIMESTAMPTZ) END AS ts_{f}")


def _string_sql(f: str, required: bool = False) -> tuple[str, str]:
    missing = f"WHEN NOT p_{f} THEN 'missing_field' " if required else f"WHEN NOT p_{f} THEN NULL "
    err = f"CASE {missing}WHEN t_{f} <> 'VARCHAR' THEN 'invalid_type' END"
    return err, f"CASE WHEN p_{f} AND t_{f} = 'VARCHAR' THEN s_{f} END"


def _object_sql(f: str) -> tuple[str, str]:
    as_obj = (f"CASE WHEN t_{f} = 'OBJECT' THEN v_{f} WHEN t_{f} = 'VARCHAR' AND json_valid(v_{f} ->> '$') "
              f"AND json_type((v_{f} ->> '$')::JSON) = 'OBJECT' THEN (v_{f} ->> '$')::JSON END")
    err = f"CASE WHEN NOT p_{f} THEN NULL WHEN ({as_obj}) IS NULL THEN 'invalid_type' END"
    val = (f"CASE WHEN p_{f} THEN map_from_entries(list_transform("
           f"map_entries(json_transform({as_obj}, '\"MAP(VARCHAR, JSON)\"')), lambda e: {{'key': e.key, 'value': "
           f"CASE WHEN e.value IS NULL THEN 'null' WHEN json_type(e.value) = 'VARCHAR' THEN e.value ->> '$' "
           f"ELSE e.value::VARCHAR END}})) END")
    return err, val


def _bool_sql(f: str) -> tuple[str, str]:
    low = f"lower(s_{f})"
    true_ = f"((t_{f} = 'BOOLEAN' AND s_{f} = 'true') OR (t_{f} IN ('BIGINT', 'UBIGINT') AND s_{f} = '1') " \
            f"OR (t_{f} = 'VARCHAR' AND {low} IN ('true', '1', 'yes')))"
    false_ = f"((t_{f} = 'BOOLEAN' AND s_{f} = 'false') OR (t_{f} IN ('BIGINT', 'UBIGINT') AND s_{f} = '0') " \
             f"OR (t_{f} = 'VARCHAR' AND {low} IN ('false', '0', 'no')))"
    err = f"CASE WHEN NOT p_{f} THEN NULL WHEN {true_} OR {false_} THEN NULL ELSE 'invalid_type' END"
    return err, f"CASE WHEN NOT p_{f} THEN TRUE WHEN {true_} THEN TRUE WHEN {false_} THEN FALSE END"


def _validation_sql() -> str:
    extract, present = _field_sql()
    timestamps = ", ".join(_timestamp_value_sql(f) for f in ("task_started_at", "task_completed_at",
                                                             "task_created_at", "received_at"))
    rules: dict[str, tuple[str, str]] = {}
    rules["workstream_id"] = (
        "CASE WHEN p_workstream_id AND t_workstream_id <> 'VARCHAR' THEN 'invalid_type' "
        "WHEN ws IS NULL THEN 'missing_workstream_id' WHEN NOT ws_known THEN 'unknown_workstream' END", "ws")
    rules["worker_id"] = (
        "CASE WHEN NOT p_worker_id THEN 'missing_field' WHEN t_worker_id <> 'VARCHAR' THEN 'invalid_type' END",
        "CASE WHEN p_worker_id AND t_worker_id = 'VARCHAR' THEN CASE WHEN regexp_full_match(s_worker_id, "
        "'[^@\\s]+@[^@\\s]+\\.[^@\\s]+') THEN lower(s_worker_id) ELSE s_worker_id END END")
    for f in _STRING_FIELDS:
        rules[f] = _string_sql(f)
    rules["task_count"] = (_count_sql("task_count")[0], f"coalesce({_count_sql('task_count')[1]}, 1)")
    rules["subtask_count"] = _count_sql("subtask_count")
    rules["use_case_id"] = (
        "CASE WHEN NOT p_use_case_id THEN 'missing_field' WHEN t_use_case_id <> 'VARCHAR' THEN 'invalid_type' "
        "WHEN ws_ok AND NOT uc_known THEN 'unknown_use_case' END", "s_use_case_id")
    rules["task_definition_id"] = (
        "CASE WHEN NOT p_task_definition_id THEN 'missing_field' WHEN t_task_definition_id <> 'VARCHAR' "
        "THEN 'invalid_type' WHEN ws_ok AND uc_ok AND NOT td_known THEN 'unknown_task_definition' END",
        "s_task_definition_id")
    for f in ("task_started_at", "task_completed_at", "task_created_at", "received_at"):
        rules[f] = _timestamp_sql(f)
    started_err, started = rules["task_started_at"]
    completed = rules["task_completed_at"][1]
    rules["task_started_at"] = (
        started_err.replace("CASE WHEN NOT p_task_started_at THEN NULL", "CASE WHEN NOT p_task_started_at THEN 'missing_field'"),
        started)
    rules["task_completed_at"] = (
        f"CASE WHEN NOT p_task_completed_at THEN 'missing_field' WHEN t_task_completed_at <> 'VARCHAR' "
        f"THEN 'invalid_type' WHEN ({completed}) IS NULL THEN 'invalid_timestamp' "
        f"WHEN ({started}) IS NOT NULL AND ({completed}) < ({started}) THEN 'completed_before_started' END",
        completed)
    rules["duration"] = _duration_sql()
    rules["data_source"] = (
        "CASE WHEN NOT p_data_source THEN NULL WHEN t_data_source <> 'VARCHAR' THEN 'invalid_type' "
        "WHEN s_data_source NOT IN ('api', 'csv_manual', 'csv_automated') THEN 'invalid_data_source' END",
        "CASE WHEN p_data_source THEN s_data_source END")
    rules["task_metadata"] = _object_sql("task_metadata")
    rules["task_measurements"] = _object_sql("task_measurements")
    rules["replace_duplicate"] = _bool_sql("replace_duplicate")

    errors = ",\n  ".join(f"{rules[f][0]} AS e_{f}" for f in FIELDS)
    values = ",\n  ".join(f"{rules[f][1]} AS {f}" for f in FIELDS if f != "workstream_id")
    first = "coalesce(" + ", ".join(f"e_{f}" for f in FIELDS) + ")"
    first_field = "CASE " + " ".join(f"WHEN e_{f} IS NOT NULL THEN '{f}'" for f in FIELDS) + " END"
    message = "concat_ws('; ', " + ", ".join(f"CASE WHEN e_{f} IS NOT NULL THEN '{f}: ' || e_{f} END" for f in FIELDS) + ")"
    drop = "{" + ", ".join(f'"{f}": null' for f in FIELDS) + "}"
    return f"""
    CREATE TEMP TABLE checked AS
    WITH casted AS (
        SELECT *, CASE WHEN pre_code IS NULL AND cells IS NULL THEN TRY_CAST(raw AS JSON) END AS j0
        FROM recs WHERE NOT (cells IS NULL AND pre_code IS NULL AND coalesce(trim(raw, {_WS}), '') = '')
    ),
    parsed AS (
        SELECT file_index, source_file, source_line, raw, pre_code,
               CASE WHEN pre_code IS NULL AND cells IS NULL AND j0 IS NULL THEN 'malformed_json'
                    WHEN pre_code IS NULL AND cells IS NULL AND json_type(j0) <> 'OBJECT' THEN 'not_an_object'
                    ELSE pre_code END AS code0,
               CASE WHEN pre_code IS NOT NULL THEN NULL WHEN cells IS NOT NULL THEN cells
                    WHEN json_type(j0) = 'OBJECT' THEN j0 END AS j,
               list_extract(regexp_extract_all(source_file, '{_PATH_WS_RE}', 1), -1) AS path_ws_raw
        FROM casted
    ),
    fields AS (
        SELECT *, {extract} FROM parsed
    ),
    present AS (
        SELECT *, {present}, {timestamps},
               nullif(trim(url_decode(path_ws_raw), {_WS}), '') AS path_ws FROM fields
    ),
    resolved AS (
        SELECT p.*, CASE WHEN p_workstream_id THEN s_workstream_id ELSE path_ws END AS ws
        FROM present p
    ),
    looked AS (
        SELECT r.*, w.ws IS NOT NULL AS ws_known, u.uc IS NOT NULL AS uc_known, d.td IS NOT NULL AS td_known
        FROM resolved r
        LEFT JOIN (SELECT DISTINCT ws FROM cfg) w ON w.ws = r.ws
        LEFT JOIN (SELECT DISTINCT ws, uc FROM cfg WHERE uc IS NOT NULL) u ON u.ws = r.ws AND u.uc = r.s_use_case_id
        LEFT JOIN (SELECT DISTINCT ws, uc, td FROM cfg WHERE td IS NOT NULL) d
               ON d.ws = r.ws AND d.uc = r.s_use_case_id AND d.td = r.s_task_definition_id
    ),
    oks AS (
        SELECT *,
               (NOT (p_workstream_id AND t_workstream_id <> 'VARCHAR') AND ws IS NOT NULL AND ws_known) AS ws_ok,
               (p_use_case_id AND t_use_case_id = 'VARCHAR' AND uc_known) AS uc_ok
        FROM looked
    ),
    errs AS (
        SELECT *, {errors} FROM oks
    )
    SELECT file_index, source_file, source_line, raw, j, ws AS workstream_id,
           coalesce(code0, {first}) AS error_code,
           CASE WHEN code0 IS NULL THEN {first_field} END AS error_field,
           CASE WHEN code0 IS NOT NULL THEN code0 ELSE {message} END AS error_message,
           {values},
           CASE WHEN j IS NOT NULL THEN nullif(json_merge_patch(j, '{drop}')::VARCHAR, '{{}}') END AS extra_fields
    FROM errs
    """


# ----------------------------------------------------------------------------------------- run

def run_reference(inputs: list[str], workstreams: str, output: str, file_format: str = "auto",
                  duplicates: str = "per-record", run_id: str | None = None, max_record_bytes: int = 1 << 20,
                  threads: int | None = None, memory_limit: str | None = None) -> dict[str, Any]:
    """Run the job; returns the manifest (also written to OUT/_runs/<run_id>.json)."""
    started = time.time()
    paths = sorted({os.path.abspath(p) for pattern in inputs for p in glob.glob(pattern, recursive=True)
                    if os.path.isfile(p)})
    if not paths:
        raise SystemExit(f"no input file matched {', '.join(inputs)}")
    run_id = run_id or f"ref-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = {_q(memory_limit)}")
    con.execute("CREATE TEMP TABLE cfg (ws VARCHAR, uc VARCHAR, td VARCHAR)")
    con.executemany("INSERT INTO cfg VALUES (?, ?, ?)", _load_config(workstreams))
    con.execute("""CREATE TEMP TABLE recs (file_index INTEGER, source_file VARCHAR, source_line BIGINT,
                   raw VARCHAR, pre_code VARCHAR, cells JSON)""")
    for index, path in enumerate(paths):
        _read_file(con, index, path, _detect(path, file_format), max_record_bytes)
    con.execute("""UPDATE recs SET pre_code = 'record_too_large', raw = nullif(raw, '__too_large__')
                   WHERE pre_code IS NULL AND (raw = '__too_large__' OR (cells IS NULL AND strlen(raw) > ?))""",
                [max_record_bytes])
    blank_lines = con.execute(f"""SELECT count(*) FROM recs WHERE cells IS NULL AND pre_code IS NULL
                                  AND coalesce(trim(raw, {_WS}), '') = ''""").fetchone()[0]
    con.execute(_validation_sql())
    con.execute("DROP TABLE recs")

    replace = {"per-record": "replace_duplicate", "replace": "TRUE", "keep-first": "FALSE"}[duplicates]
    con.execute(f"""
        CREATE TEMP TABLE accepted AS
        SELECT *, CASE WHEN unique_id IS NULL THEN 'kept'
                       WHEN seq = winner THEN 'kept'
                       WHEN eligible THEN 'superseded' ELSE 'ignored_duplicate' END AS outcome
        FROM (
            SELECT *, max(CASE WHEN eligible THEN seq END) OVER k AS winner
            FROM (
                SELECT *, (seq = min(seq) OVER k OR coalesce({replace}, TRUE)) AS eligible
                FROM (SELECT *, (file_index::BIGINT << 40) | source_line AS seq FROM checked WHERE error_code IS NULL)
                WINDOW k AS (PARTITION BY workstream_id, use_case_id, task_definition_id, unique_id)
            )
            WINDOW k AS (PARTITION BY workstream_id, use_case_id, task_definition_id, unique_id)
        )
    """)
    out = Path(output)
    for sub in ("task_completed", "throughput_daily", f"rejects/run_id={run_id}", "_runs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    columns = (
        "worker_id, task_id, task_url, task_count, subtask_count, use_case_id, task_definition_id, "
        "task_started_at, task_completed_at, "
        "coalesce(duration, (epoch_us(task_completed_at) - epoch_us(task_started_at))::DOUBLE / 1000000.0) AS duration, "
        "task_created_at, data_source, task_metadata, task_measurements, dataset_id, asset_id, unique_id, "
        "replace_duplicate, received_at, extra_fields, duration IS NULL AS duration_derived, source_file, source_line"
    )
    con.execute(f"""
        CREATE TEMP TABLE kept AS
        SELECT workstream_id, {columns}, {_q(run_id)} AS run_id,
               (task_completed_at AT TIME ZONE 'UTC')::DATE AS completed_date, seq
        FROM accepted WHERE outcome = 'kept'
    """)
    fmt = "FORMAT parquet, COMPRESSION zstd, PARTITION_BY (workstream_id, completed_date), OVERWRITE_OR_IGNORE true"
    con.execute(f"""COPY (SELECT * EXCLUDE (seq) FROM kept ORDER BY workstream_id, completed_date, task_completed_at, seq)
                    TO {_q(str(out / 'task_completed'))} ({fmt}, FILENAME_PATTERN 'part-{run_id}-{{i}}')""")
    con.execute(f"""
        COPY (
            SELECT workstream_id, completed_date, use_case_id, task_definition_id, worker_id,
                   count(*) AS records, sum(task_count)::BIGINT AS task_count, sum(subtask_count)::BIGINT AS subtask_count,
                   sum(duration) AS duration, min(task_completed_at) AS first_completed_at,
                   max(task_completed_at) AS last_completed_at
            FROM kept GROUP BY ALL ORDER BY ALL
        ) TO {_q(str(out / 'throughput_daily'))} ({fmt}, FILENAME_PATTERN 'part-{run_id}-{{i}}')
    """)
    con.execute(f"""
        COPY (
            SELECT source_file, source_line, workstream_id, error_code, error_field, error_message,
                   coalesce(raw, cells_text) AS raw
            FROM (SELECT *, j::VARCHAR AS cells_text FROM checked WHERE error_code IS NOT NULL)
            ORDER BY file_index, source_line
        ) TO {_q(str(out / f'rejects/run_id={run_id}/part-00000.parquet'))} (FORMAT parquet, COMPRESSION zstd)
    """)
    by_code = dict(con.execute("SELECT error_code, count(*) FROM checked WHERE error_code IS NOT NULL "
                               "GROUP BY ALL ORDER BY ALL").fetchall())
    outcomes = dict(con.execute("SELECT outcome, count(*) FROM accepted GROUP BY ALL").fetchall())
    read = con.execute("SELECT count(*) FROM checked").fetchone()[0]
    daily_rows = con.execute("SELECT count(*) FROM (SELECT DISTINCT workstream_id, completed_date, use_case_id, "
                             "task_definition_id, worker_id FROM kept)").fetchone()[0]
    counts = {
        "read": read, "blank_lines": blank_lines, "written": outcomes.get("kept", 0),
        "rejected": sum(by_code.values()), "ignored_duplicates": outcomes.get("ignored_duplicate", 0),
        "superseded": outcomes.get("superseded", 0), "replaced_existing": 0, "rejected_by_code": by_code,
    }
    counts["reconciles"] = counts["read"] == (counts["written"] + counts["rejected"] + counts["ignored_duplicates"]
                                              + counts["superseded"])
    manifest = {
        "run_id": run_id, "status": "committed", "engine": f"duckdb {duckdb.__version__}",
        "seconds": round(time.time() - started, 3), "inputs": paths, "counts": counts,
        "tables": {"task_completed": {"rows": counts["written"]}, "throughput_daily": {"rows": daily_rows},
                   "rejects": {"rows": counts["rejected"]}},
    }
    (out / "_runs" / f"{run_id}.json").write_text(json.dumps(manifest, indent=1) + "\n")
    con.close()
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reference_duckdb", description=__doc__.splitlines()[0])
    parser.add_argument("--input", dest="inputs", action="append", required=True, metavar="GLOB")
    parser.add_argument("--workstreams", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--format", dest="file_format", choices=("auto", "jsonl", "csv"), default="auto")
    parser.add_argument("--duplicates", choices=("per-record", "replace", "keep-first"), default="per-record")
    parser.add_argument("--run-id")
    parser.add_argument("--max-record-bytes", type=int, default=1 << 20)
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: DuckDB's, the number of cores)")
    parser.add_argument("--memory-limit", help="DuckDB memory_limit, e.g. 4GB")
    args = parser.parse_args(argv)
    manifest = run_reference(args.inputs, args.workstreams, args.output, args.file_format, args.duplicates,
                             args.run_id, args.max_record_bytes, args.threads, args.memory_limit)
    c = manifest["counts"]
    print(f"reference run {manifest['run_id']}: read {c['read']} written {c['written']} rejected {c['rejected']} "
          f"superseded {c['superseded']} ignored duplicates {c['ignored_duplicates']} (blank lines {c['blank_lines']})")
    print("  rejects: " + ", ".join(f"{k} {v}" for k, v in c["rejected_by_code"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
