"""The same job as ``throughput run``, written in DuckDB SQL: the benchmark's baseline and a cross-check.

    python -m benchmarks.reference_duckdb --input 'benchmarks/data/200000-jsonl/part-*' \\
        --workstreams benchmarks/data/200000-jsonl/workstreams.json --output /tmp/ref-out

Same verdicts (SPEC 1 and 3: the first error code by field order), same dedupe (SPEC 4: ordered by
file path then line), same Hive-partitioned layout (SPEC 5):

    OUT/task_completed/workstream_id=<id>/completed_date=<date>/*.parquet
    OUT/throughput_daily/workstream_id=<id>/completed_date=<date>/*.parquet
    OUT/rejects/run_id=<run_id>/part-00000.parquet
    OUT/_runs/<run_id>.json        (counts in the pipeline manifest's shape)

How, written the way a DuckDB user would:

* **JSON lines** go through DuckDB's JSON reader, ``read_ndjson(columns={...}, records=true,
  ignore_errors=true)``, every contract field declared as ``JSON`` so that a value of the wrong
  type (``"worker_id": 5``) is a reject reason, not a reader failure (the type comes from the
  value's first character, the text from ``->> '$'``). The reader skips blank lines and turns a
  line it cannot parse into a row of NULLs, so each row's place among the non-blank lines is its
  ordinal. A light line scan (``read_csv`` with one VARCHAR column, no quoting, read serially: the
  parallel one can drop a line at a range boundary) keeps only the lines that are *not* plain
  records: blank lines (to turn ordinals into line numbers), over-long lines, lines that are not a
  JSON object (with the reason and text), lines whose bytes are not UTF-8 (the line reader's
  rejects) and lines with fields outside the contract (``extra_fields``, from ``json_keys``). The
  good lines never leave the fast reader.
* **CSV** goes through ``read_csv(all_varchar=true, strict_mode=true, ignore_errors=true,
  store_rejects=true)``: a bad row (a cell too many or too few, bad UTF-8) never fails the load and
  comes back with its line number; the kept rows' line numbers are their ordinals shifted past the
  rejected lines before them.
* Ordinals come from ``rowid`` of an order-preserving ``CREATE TABLE AS`` (``WITH ORDINALITY``
  would make the scans single-threaded); shifting them past the few skipped lines is a binary search
  written as nested ``CASE``s (an ASOF join would sort the wide rows).
* One set of ``CASE`` expressions validates both formats over (type, trimmed text) pairs per field and
  yields the first error code by SPEC field order (``coalesce``) and a message listing all of them.
  ``IN`` lists are written as ``OR``s: DuckDB plans an ``IN`` list as a MARK join per row batch.
* Dedupe is one ``GROUP BY`` over the keyed records (first, last replacing, counts), not a window
  over whole rows; kept rows are the unkeyed ones plus each key's winner.
* Output: ``COPY ... (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (workstream_id, completed_date))``,
  rows sorted by completion time within each partition as the pipeline writes them. The raw text of
  rejects found by validation comes from one more line scan that keeps just those lines.

Python only lists the files, loads the configuration and writes the manifest; all record work is
SQL. Known differences from the pipeline are listed in ``benchmarks/README.md``.
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

from benchmarks import peers
from benchmarks.peers import FIELDS, detect_format, path_workstream

__all__ = ["FIELDS", "main", "run_reference"]

_STRING_FIELDS = ("task_id", "task_url", "dataset_id", "asset_id", "unique_id")
_NUMBER_FIELDS = ("task_count", "subtask_count", "duration")
_WS = "' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)"  # what Python's str.strip() removes (ASCII)
_JSON_WS = "' ' || chr(9) || chr(13)"  # a line of only these (or nothing) is skipped by DuckDB's JSON reader
_INT_RE = r"[+-]?[0-9]+(_[0-9]+)*"
_FLOAT_RE = (r"[+-]?((([0-9]+(_[0-9]+)*)(\.([0-9]+(_[0-9]+)*)?)?|\.[0-9]+(_[0-9]+)*)"
             r"([eE][+-]?[0-9]+(_[0-9]+)*)?|(?i:inf|infinity|nan))")
_TS_RE = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}(:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)?)?"
          r"([Zz]|[+-][0-9]{2}(:?[0-9]{2}(:?[0-9]{2}([.][0-9]+)?)?)?)?")
_FIELD_LIST = "[" + ", ".join(f"'{f}'" for f in FIELDS) + "]"
_DROP_FIELDS = "{" + ", ".join(f'"{f}": null' for f in FIELDS) + "}"


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _any(expr: str, values: tuple[str, ...]) -> str:
    """``expr IN (values)`` as comparisons: DuckDB plans an IN list as a (per-row costly) MARK join."""
    return "(" + " OR ".join(f"{expr} = {_q(v)}" for v in values) + ")"


def _trimmed(expr: str, name: str) -> str:
    """``expr`` stripped as Python's str.strip() does (ASCII), paying for trim() only when an end is blank."""
    return f"CASE WHEN ascii({expr}) <= 32 OR ascii(right({expr}, 1)) <= 32 THEN trim({expr}, {_WS}) ELSE {expr} END AS {name}"




def _load_config(path: str) -> list[tuple[str, str | None, str | None]]:
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

_PRE_CODES = ("record_too_large", "invalid_encoding", "malformed_json", "not_an_object", "malformed_csv")


def _steps(lines_sql: str) -> str:
    """(t, k) steps of sorted line numbers x_1 < x_2 < ...: a row with ordinal r sits after x_k when x_k - k < r."""
    return (f"SELECT line - k AS t, max(k) AS k FROM "
            f"(SELECT line, row_number() OVER (ORDER BY line) AS k FROM ({lines_sql})) GROUP BY ALL")


_MAX_CASE_STEPS = 4096


def _shift(con: duckdb.DuckDBPyConnection, lines_sql: str, ordinal: str, source: str) -> str:
    """``ordinal`` (of a row of table ``source``) plus the number of ``lines_sql`` lines before its row.

    The lines a reader skips are few: a binary search in nested CASEs costs a few comparisons per row
    where an ASOF join would sort the (wide) rows. Past a few thousand, a narrow ordinal -> line table
    (an ASOF join of the ordinals alone) looked up by equality.
    """
    steps = con.execute(f"SELECT t, k FROM ({_steps(lines_sql)}) ORDER BY t").fetchall()
    if len(steps) > _MAX_CASE_STEPS:  # too many to spell out: a correlated lookup (DuckDB joins the distinct ordinals)
        table = f"shifted_{uuid.uuid4().hex[:8]}"
        rows = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
        con.execute(f"""CREATE TEMP TABLE {table} AS SELECT o.r AS shifted_from, o.r + coalesce(s.k, 0) AS shifted_to
                        FROM (SELECT range AS r FROM range(1, {rows + 1})) o ASOF LEFT JOIN ({_steps(lines_sql)}) s ON o.r > s.t""")
        return f"(SELECT shifted_to FROM {table} WHERE shifted_from = {ordinal})"

    def search(lo: int, hi: int, base: int) -> str:  # offset of a row known to come after step lo - 1
        if lo >= hi:
            return str(base)
        mid = (lo + hi) // 2
        t, k = steps[mid]
        return f"CASE WHEN {ordinal} > {t} THEN {search(mid + 1, hi, k)} ELSE {search(lo, mid, base)} END"

    return f"{ordinal} + {search(0, len(steps), 0)}" if steps else ordinal


class _Reader:
    """Reads the files; :meth:`view` then gives ``recs``, every record with a (type, trimmed text) pair per field.

    ``line_errors`` holds what a line reader rejected (file, line, error type, text); ``notes``, for
    JSON lines, the lines that are not plain records (blank, too large, not an object, extra fields).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, max_bytes: int) -> None:
        self.con = con
        self.max_bytes = max_bytes
        self.line_limit = max(2 * max_bytes + 1024, 8 << 20)
        self.parts: list[str] = []
        self.kinds: dict[int, tuple[str, str]] = {}  # file index -> (format, path)
        con.execute("CREATE TEMP TABLE line_errors (file_index INTEGER, line BIGINT, error_type VARCHAR, csv_line VARCHAR)")
        con.execute("""CREATE TEMP TABLE notes (file_index INTEGER, line BIGINT, kind VARCHAR, raw VARCHAR,
                       extra_fields VARCHAR)""")

    def lines_source(self, path: str, rejects: str) -> str:
        """``read_csv`` of a file as plain lines: one VARCHAR column, no quoting; bad UTF-8 lines rejected.

        Serial (``parallel=false``): the parallel reader (DuckDB 2.0) splits a file into ranges of a quarter
        buffer (8 MiB here) and, with ``new_line='\\r\\n'``, drops the line after a newline byte that sits
        exactly on a range's first byte (and misnumbers rejected lines near a range's start in CRLF files),
        shifting every line number after it. The serial read is exact for LF, CRLF and mixed files and costs
        ~0.1 s per 100 MB; the per-line work on its rows stays parallel (see ``_jsonl``).
        """
        return (f"read_csv({_q(path)}, columns={{'line': 'VARCHAR'}}, header=false, auto_detect=false, "
                f"delim='\x01', quote='', escape='', comment='', new_line='\\r\\n', strict_mode=false, parallel=false, "
                f"ignore_errors=true, store_rejects=true, rejects_table='{rejects}', rejects_scan='{rejects}_scan', "
                f"max_line_size={self.line_limit}, buffer_size={4 * self.line_limit})")

    def _keep_rejects(self, index: int, table: str) -> None:
        self.con.execute(f"INSERT INTO line_errors SELECT {index}, line, error_type, csv_line FROM {table}")
        self.con.execute(f"DROP TABLE IF EXISTS {table}")
        self.con.execute(f"DROP TABLE IF EXISTS {table}_scan")

    @staticmethod
    def _rejected(index: int, other: str) -> str:
        """One row per line a reader rejected: (line, code, raw), the worst reason first."""
        return f"""
            SELECT line, arg_min(code, rank) AS code, arg_min(csv_line, rank) AS raw FROM (
                SELECT line, csv_line,
                       CASE WHEN error_type = 'LINE SIZE OVER MAXIMUM' THEN 'record_too_large'
                            WHEN error_type = 'INVALID ENCODING' THEN 'invalid_encoding' ELSE '{other}' END AS code,
                       CASE WHEN error_type = 'LINE SIZE OVER MAXIMUM' THEN 0
                            WHEN error_type = 'INVALID ENCODING' THEN 1 ELSE 2 END AS rank
                FROM line_errors WHERE file_index = {index}
            ) GROUP BY line"""

    def add(self, index: int, path: str, kind: str) -> None:
        self.kinds[index] = (kind, path)
        (self._jsonl if kind == "jsonl" else self._csv)(index, path)

    def _jsonl(self, index: int, path: str) -> None:
        con, rej = self.con, f"rej_{index}"
        # 1. The line scan: per line, why it is not a plain record (NULL for nearly all) and its fields outside
        # the contract. The lines are read serially (exact, see lines_source) into a narrow table, then judged
        # in parallel from it. A CREATE TABLE AS keeps the file's order (preserve_insertion_order), so rowid + 1
        # is the line's ordinal among the lines the scan read (WITH ORDINALITY would make the judging serial).
        con.execute(f"CREATE OR REPLACE TEMP TABLE lines AS SELECT line FROM {self.lines_source(path, rej)}")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE scanned AS
            SELECT kind, CASE WHEN kind IS NOT NULL THEN line END AS raw,
                   CASE WHEN kind IS NULL AND NOT list_has_all({_FIELD_LIST}, keys)
                        THEN nullif(json_merge_patch(line, '{_DROP_FIELDS}')::VARCHAR, '{{}}') END AS extra_fields
            FROM (
                SELECT line, keys,
                       coalesce(kind0, CASE WHEN keys IS NULL THEN 'malformed_json'
                                            WHEN len(keys) = 0 AND json_type(line) <> 'OBJECT' THEN 'not_an_object' END) AS kind
                FROM (
                    SELECT line,
                           CASE WHEN line IS NULL OR (ascii(line) <= 32 AND trim(line, {_JSON_WS}) = '') THEN 'skipped'
                                WHEN ascii(line) <= 32 AND trim(line, {_WS}) = '' THEN 'blank'
                                WHEN strlen(line) > {self.max_bytes} THEN 'record_too_large' END AS kind0,
                           CASE WHEN kind0 IS NULL THEN json_keys(try_cast(line AS JSON)) END AS keys
                    FROM lines
                )
            )
        """)
        con.execute("DROP TABLE lines")
        self._keep_rejects(index, rej)
        con.execute(f"INSERT INTO notes SELECT {index}, line, code, raw, NULL FROM ({self._rejected(index, 'malformed_json')})")
        # the scan's ordinals skip the lines it rejected: shift them back to line numbers
        line = _shift(con, f"SELECT DISTINCT line FROM line_errors WHERE file_index = {index}", "k", "scanned")
        con.execute(f"""
            INSERT INTO notes
            SELECT {index}, {line}, kind, raw, extra_fields
            FROM (SELECT rowid + 1 AS k, * FROM scanned) WHERE kind IS NOT NULL OR extra_fields IS NOT NULL
        """)
        con.execute("DROP TABLE scanned")
        # 2. The records: DuckDB's JSON reader, every field as JSON (its type is checked, not assumed), the
        # type taken from the value's first character (json_type only for numbers), the text unescaped. The
        # reader skips blank lines and gives a row of NULLs for a line it cannot parse: its rows' ordinals
        # (rowid + 1 again) count the lines that are not blank.
        columns = "{" + ", ".join(f"'{f}': 'JSON'" for f in FIELDS) + "}"
        source = (f"read_ndjson({_q(path)}, columns={columns}, records=true, ignore_errors=true, "
                  f"maximum_object_size={2 * self.line_limit})")
        con.execute(f"CREATE TEMP TABLE rows_{index} AS SELECT * FROM {source}")
        typed = []
        for f in FIELDS:
            typed.append(f"CASE left({f}, 1) WHEN '\"' THEN 'VARCHAR' WHEN '{{' THEN 'OBJECT' WHEN '[' THEN 'ARRAY' "
                         f"WHEN 't' THEN 'BOOLEAN' WHEN 'f' THEN 'BOOLEAN' ELSE json_type({f}) END AS t_{f}")
            typed.append(f"CASE WHEN left({f}, 1) = '\"' THEN {f} ->> '$' ELSE {f}::VARCHAR END AS u_{f}")
        trims = ", ".join(f"t_{f}, {_trimmed(f'u_{f}', f's_{f}')}" for f in FIELDS)
        line = _shift(con, f"SELECT line FROM notes WHERE file_index = {index} AND kind = 'skipped'", "k", f"rows_{index}")
        path_ws = path_workstream(path)
        self.parts.append(f"""
            SELECT {index} AS file_index, {_q(path)} AS source_file, n.line AS source_line,
                   {_q(path_ws) if path_ws else 'NULL::VARCHAR'} AS path_ws,
                   CASE WHEN {_any('o.kind', _PRE_CODES)} THEN o.kind END AS pre_code, o.raw, o.extra_fields,
                   n.* EXCLUDE (line)
            FROM (SELECT line, {trims} FROM (
                      SELECT {line} AS line, {", ".join(typed)} FROM (SELECT rowid + 1 AS k, * FROM rows_{index}))) n
            LEFT JOIN (SELECT line, kind, raw, extra_fields FROM notes WHERE file_index = {index}) o ON o.line = n.line
            WHERE o.kind IS DISTINCT FROM 'blank'
        """)

    def _csv(self, index: int, path: str) -> None:
        con, rej = self.con, f"rej_{index}"
        common = (f"header=true, all_varchar=true, delim=',', quote='\"', escape='\"', strict_mode=true, "
                  f"null_padding=false, comment='', ignore_errors=true, max_line_size={self.line_limit}, "
                  f"buffer_size={4 * self.line_limit}")
        names = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM read_csv({_q(path)}, {common})").fetchall()]
        by_field = {n.strip(): n for n in names}
        cells = []
        for f in FIELDS:
            if f in by_field:
                c = '"' + by_field[f].replace('"', '""') + '"'
                cells.append(f"CASE WHEN {c} IS NOT NULL THEN 'VARCHAR' END AS t_{f}, {_trimmed(c, f's_{f}')}")
            else:
                cells.append(f"NULL::VARCHAR AS t_{f}, NULL::VARCHAR AS s_{f}")
        quoted = {n: '"' + n.replace('"', '""') + '"' for n in names}
        extras = [n for n in names if n.strip() not in FIELDS]
        extra = "NULL::VARCHAR"
        if extras:  # the non-empty cells outside the contract, as a JSON object
            any_extra = " OR ".join(f"{quoted[n]} IS NOT NULL" for n in extras)
            pairs = ", ".join(f"{_q(n.strip())}, {quoted[n]}" for n in extras)
            extra = f"CASE WHEN {any_extra} THEN nullif(json_merge_patch('{{}}', json_object({pairs}))::VARCHAR, '{{}}') END"
        size = " + ".join(f"coalesce(strlen({quoted[n]}), 0)" for n in names) + f" + {len(names) - 1}"
        path_ws = path_workstream(path)
        # the cells as read (an order-preserving CREATE TABLE AS: rowid + 1 is the row's ordinal)
        con.execute(f"""
            CREATE TEMP TABLE csv_{index} AS
            SELECT * FROM read_csv({_q(path)}, {common}, store_rejects=true, rejects_table='{rej}', rejects_scan='{rej}_scan')
        """)
        self._keep_rejects(index, rej)
        nulls = ", ".join(f"NULL::VARCHAR AS t_{f}, NULL::VARCHAR AS s_{f}" for f in FIELDS)
        # row k (the header is line 1) sits on line k + 1 + (rejected lines before it)
        line = _shift(con, f"SELECT DISTINCT line - 1 AS line FROM line_errors WHERE file_index = {index}", "k", f"csv_{index}")
        ws = _q(path_ws) if path_ws else "NULL::VARCHAR"
        self.parts.append(f"""
            SELECT {index} AS file_index, {_q(path)} AS source_file, 1 + {line} AS source_line, {ws} AS path_ws,
                   CASE WHEN {size} > {self.max_bytes} THEN 'record_too_large' END AS pre_code,
                   NULL::VARCHAR AS raw, {extra} AS extra_fields, {", ".join(cells)}
            FROM (SELECT rowid + 1 AS k, * FROM csv_{index})
            UNION ALL
            SELECT {index}, {_q(path)}, line, {ws}, code, raw, NULL, {nulls}
            FROM ({self._rejected(index, 'malformed_csv')})
        """)

    def view(self) -> None:
        self.con.execute("CREATE OR REPLACE TEMP VIEW recs AS " + "\nUNION ALL\n".join(self.parts))

    def blank_lines(self) -> int:
        return self.con.execute("SELECT count(*) FROM notes WHERE kind IN ('skipped', 'blank')").fetchone()[0]

    def raws(self, table: str) -> None:
        """``raws``: the line of each reject of ``table`` without a raw text (validation rejects), by one more line scan."""
        con = self.con
        con.execute(f"""CREATE OR REPLACE TEMP TABLE want AS SELECT file_index, source_line AS line FROM {table}
                        WHERE error_code IS NOT NULL AND raw IS NULL""")
        # one line scan per file holding such rejects, all in one statement (the scans run side by side)
        selects = []
        for (index,) in con.execute("SELECT DISTINCT file_index FROM want ORDER BY 1").fetchall():
            kind, path = self.kinds[index]
            # the line scan's ordinals skip the lines that are not UTF-8 (or too long to read)
            plain = ("" if kind == "jsonl"
                     else "AND (error_type = 'INVALID ENCODING' OR error_type = 'LINE SIZE OVER MAXIMUM')")
            rejected = f"SELECT DISTINCT line FROM line_errors WHERE file_index = {index} {plain}"
            selects.append(f"""
                SELECT {index} AS file_index, w.line, l.line AS raw
                FROM (SELECT ordinality AS k, line FROM {self.lines_source(path, f'raw_{index}')} WITH ORDINALITY) l
                JOIN (SELECT line, line - (SELECT count(*) FROM ({rejected}) x WHERE x.line < want.line) AS k
                      FROM want WHERE file_index = {index}) w ON w.k = l.k""")
        if selects:
            con.execute("CREATE OR REPLACE TEMP TABLE raws AS " + "\nUNION ALL\n".join(selects))
        else:
            con.execute("CREATE OR REPLACE TEMP TABLE raws (file_index INTEGER, line BIGINT, raw VARCHAR)")


# ------------------------------------------------------------------------------------ validation

def _count_sql(f: str) -> tuple[str, str]:
    """(error code, value) of a count field (SPEC 1: integer value >= 0)."""
    is_int = f"({_any(f't_{f}', ('BIGINT', 'UBIGINT'))} OR (t_{f} = 'VARCHAR' AND regexp_full_match(s_{f}, '{_INT_RE}')))"
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
    is_num = (f"({_any(f't_{f}', ('BIGINT', 'UBIGINT', 'DOUBLE'))} OR (t_{f} = 'VARCHAR' AND "
              f"(regexp_full_match(s_{f}, '{_INT_RE}') OR regexp_full_match(s_{f}, '{_FLOAT_RE}'))))")
    num = f"TRY_CAST(replace(s_{f}, '_', '') AS DOUBLE)"
    err = (f"CASE WHEN NOT p_{f} THEN NULL WHEN {is_num} THEN CASE WHEN {num} IS NULL OR NOT isfinite({num}) "
           f"OR {num} < 0 THEN 'invalid_value' END ELSE 'invalid_type' END")
    return err, f"CASE WHEN p_{f} AND {is_num} THEN {num} END"


def _timestamp_sql(f: str, required: bool) -> tuple[str, str]:
    absent = "'missing_field'" if required else "NULL"
    err = (f"CASE WHEN NOT p_{f} THEN {absent} WHEN t_{f} <> 'VARCHAR' THEN 'invalid_type' "
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
    """An object, or a string holding JSON object text (CSV cells): a map of strings (non-strings as JSON text)."""
    as_obj = (f"CASE WHEN t_{f} = 'OBJECT' THEN s_{f}::JSON WHEN t_{f} = 'VARCHAR' "
              f"AND json_type(try_cast(s_{f} AS JSON)) = 'OBJECT' THEN s_{f}::JSON END")
    err = f"CASE WHEN NOT p_{f} THEN NULL WHEN ({as_obj}) IS NULL THEN 'invalid_type' END"
    # json_transform to MAP(VARCHAR, VARCHAR) keeps non-string values as their JSON text, except null (NULL):
    # only an object whose text holds "null" takes the slower, exact path
    exact = (f"map_from_entries(list_transform(map_entries(json_transform({as_obj}, '\"MAP(VARCHAR, JSON)\"')), "
             f"lambda e: {{'key': e.key, 'value': CASE WHEN e.value IS NULL THEN 'null' "
             f"WHEN json_type(e.value) = 'VARCHAR' THEN e.value ->> '$' ELSE e.value::VARCHAR END}}))")
    val = (f"CASE WHEN NOT p_{f} THEN NULL WHEN contains(s_{f}, 'null') THEN {exact} "
           f"ELSE json_transform({as_obj}, '\"MAP(VARCHAR, VARCHAR)\"') END")
    return err, val


def _bool_sql(f: str) -> tuple[str, str]:
    low = f"lower(s_{f})"
    ints = _any(f"t_{f}", ("BIGINT", "UBIGINT"))
    true_ = (f"((t_{f} = 'BOOLEAN' AND s_{f} = 'true') OR ({ints} AND s_{f} = '1') "
             f"OR (t_{f} = 'VARCHAR' AND {_any(low, ('true', '1', 'yes'))}))")
    false_ = (f"((t_{f} = 'BOOLEAN' AND s_{f} = 'false') OR ({ints} AND s_{f} = '0') "
              f"OR (t_{f} = 'VARCHAR' AND {_any(low, ('false', '0', 'no'))}))")
    err = f"CASE WHEN NOT p_{f} THEN NULL WHEN {true_} OR {false_} THEN NULL ELSE 'invalid_type' END"
    return err, f"CASE WHEN NOT p_{f} THEN TRUE WHEN {true_} THEN TRUE WHEN {false_} THEN FALSE END"


def _validation_sql() -> str:
    """``checked``: every record of ``recs`` with its verdict (first error by field order) and normalized values."""
    present = ",\n  ".join(f"(t_{f} IS NOT NULL AND t_{f} <> 'NULL' AND NOT (t_{f} = 'VARCHAR' AND s_{f} = '')) AS p_{f}"
                           for f in FIELDS)
    timestamps = ", ".join(_timestamp_value_sql(f) for f in ("task_started_at", "task_completed_at",
                                                             "task_created_at", "received_at"))
    rules: dict[str, tuple[str, str]] = {}
    rules["workstream_id"] = (
        "CASE WHEN p_workstream_id AND t_workstream_id <> 'VARCHAR' THEN 'invalid_type' "
        "WHEN ws IS NULL THEN 'missing_workstream_id' WHEN NOT ws_known THEN 'unknown_workstream' END", "ws")
    rules["worker_id"] = (
        "CASE WHEN NOT p_worker_id THEN 'missing_field' WHEN t_worker_id <> 'VARCHAR' THEN 'invalid_type' END",
        "CASE WHEN p_worker_id AND t_worker_id = 'VARCHAR' THEN CASE WHEN contains(s_worker_id, '@') AND regexp_full_match(s_worker_id, "
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
    rules["task_started_at"] = _timestamp_sql("task_started_at", True)
    rules["task_created_at"] = _timestamp_sql("task_created_at", False)
    rules["received_at"] = _timestamp_sql("received_at", False)
    rules["task_completed_at"] = (
        "CASE WHEN NOT p_task_completed_at THEN 'missing_field' WHEN t_task_completed_at <> 'VARCHAR' "
        "THEN 'invalid_type' WHEN ts_task_completed_at IS NULL THEN 'invalid_timestamp' "
        "WHEN ts_task_started_at IS NOT NULL AND ts_task_completed_at < ts_task_started_at "
        "THEN 'completed_before_started' END", "ts_task_completed_at")
    rules["duration"] = _duration_sql()
    rules["data_source"] = (
        "CASE WHEN NOT p_data_source THEN NULL WHEN t_data_source <> 'VARCHAR' THEN 'invalid_type' "
        f"WHEN NOT {_any('s_data_source', ('api', 'csv_manual', 'csv_automated'))} THEN 'invalid_data_source' END",
        "CASE WHEN p_data_source THEN s_data_source END")
    rules["task_metadata"] = _object_sql("task_metadata")
    rules["task_measurements"] = _object_sql("task_measurements")
    rules["replace_duplicate"] = _bool_sql("replace_duplicate")

    errors = ",\n  ".join(f"{rules[f][0]} AS e_{f}" for f in FIELDS)
    values = ",\n  ".join(f"CASE WHEN pre_code IS NULL THEN {rules[f][1]} END AS {f}" for f in FIELDS if f != "workstream_id")
    first = "coalesce(" + ", ".join(f"e_{f}" for f in FIELDS) + ")"
    first_field = "CASE " + " ".join(f"WHEN e_{f} IS NOT NULL THEN '{f}'" for f in FIELDS) + " END"
    message = "concat_ws('; ', " + ", ".join(f"CASE WHEN e_{f} IS NOT NULL THEN '{f}: ' || e_{f} END" for f in FIELDS) + ")"
    return f"""
    CREATE TEMP TABLE checked AS
    WITH present AS (
        SELECT *, {present}, {timestamps} FROM recs
    ),
    resolved AS (
        SELECT *, CASE WHEN p_workstream_id THEN s_workstream_id ELSE path_ws END AS ws FROM present
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
    SELECT file_index, source_file, source_line, (file_index::BIGINT << 40) | source_line AS seq,
           raw, CASE WHEN pre_code IS NULL THEN ws END AS workstream_id,
           coalesce(pre_code, {first}) AS error_code,
           CASE WHEN pre_code IS NULL AND {first} IS NOT NULL THEN {first_field} END AS error_field,
           CASE WHEN pre_code IS NOT NULL THEN pre_code WHEN {first} IS NOT NULL THEN {message} END AS error_message,
           {values},
           extra_fields
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
    reader = _Reader(con, max_record_bytes)
    for index, path in enumerate(paths):
        reader.add(index, path, detect_format(path, file_format))
    reader.view()
    # the reads needed the file order (rowid ordinals); from here on the order lives in seq, so the
    # validation and dedupe may run unordered, until the COPY writes each partition in ORDER BY's order
    con.execute("SET preserve_insertion_order = false")
    con.execute(_validation_sql())
    reader.raws("checked")

    # SPEC 4 in one GROUP BY over the keyed records: the first record of a key is kept, each later one that
    # may replace (replace_duplicate true, the default) replaces it, the others are ignored.
    replace = {"per-record": "coalesce(replace_duplicate, TRUE)", "replace": "TRUE", "keep-first": "FALSE"}[duplicates]
    con.execute(f"""
        CREATE TEMP TABLE keys AS
        SELECT count(*) AS n,
               greatest(min(seq), coalesce(max(seq) FILTER (WHERE {replace}), 0)) AS winner,
               count(*) FILTER (WHERE {replace}) + CASE WHEN arg_min({replace}, seq) THEN 0 ELSE 1 END AS eligible
        FROM checked WHERE error_code IS NULL AND unique_id IS NOT NULL
        GROUP BY workstream_id, use_case_id, task_definition_id, unique_id
    """)
    superseded, ignored = con.execute("SELECT coalesce(sum(eligible - 1), 0), coalesce(sum(n - eligible), 0) FROM keys").fetchone()
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
        FROM checked
        WHERE error_code IS NULL AND (unique_id IS NULL OR seq IN (SELECT winner FROM keys))
    """)
    con.execute("SET preserve_insertion_order = true")
    fmt = "FORMAT parquet, COMPRESSION zstd, PARTITION_BY (workstream_id, completed_date), OVERWRITE_OR_IGNORE true"
    # rows sorted within each partition by completion time then input order, as the pipeline writes them
    written = con.execute(f"""COPY (SELECT * EXCLUDE (seq) FROM kept ORDER BY workstream_id, completed_date, task_completed_at, seq)
                    TO {_q(str(out / 'task_completed'))} ({fmt}, FILENAME_PATTERN 'part-{run_id}-{{i}}')""").fetchone()[0]
    daily_rows = con.execute(f"""
        COPY (
            SELECT workstream_id, completed_date, use_case_id, task_definition_id, worker_id,
                   count(*) AS records, sum(task_count)::BIGINT AS task_count, sum(subtask_count)::BIGINT AS subtask_count,
                   sum(duration) AS duration, min(task_completed_at) AS first_completed_at,
                   max(task_completed_at) AS last_completed_at
            FROM kept GROUP BY ALL ORDER BY ALL
        ) TO {_q(str(out / 'throughput_daily'))} ({fmt}, FILENAME_PATTERN 'part-{run_id}-{{i}}')
    """).fetchone()[0]
    con.execute(f"""
        COPY (
            SELECT c.source_file, c.source_line, c.workstream_id, c.error_code, c.error_field, c.error_message,
                   coalesce(c.raw, r.raw) AS raw
            FROM checked c LEFT JOIN raws r ON r.file_index = c.file_index AND r.line = c.source_line
            WHERE c.error_code IS NOT NULL ORDER BY c.seq
        ) TO {_q(str(out / f'rejects/run_id={run_id}/part-00000.parquet'))} (FORMAT parquet, COMPRESSION zstd)
    """)
    by_code = dict(con.execute("SELECT error_code, count(*) FROM checked WHERE error_code IS NOT NULL "
                               "GROUP BY ALL ORDER BY ALL").fetchall())
    read = con.execute("SELECT count(*) FROM checked").fetchone()[0]
    counts = {
        "read": read, "blank_lines": reader.blank_lines(), "written": written,
        "rejected": sum(by_code.values()), "ignored_duplicates": int(ignored),
        "superseded": int(superseded), "replaced_existing": 0, "rejected_by_code": by_code,
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
    def engine_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--threads", type=int, help="DuckDB threads (default: DuckDB's, the number of cores)")
        parser.add_argument("--memory-limit", help="DuckDB memory_limit, e.g. 4GB")

    return peers.main(argv, "python -m benchmarks.reference_duckdb", (__doc__ or "").splitlines()[0], "reference",
                      lambda a: run_reference(
                          a.inputs, a.workstreams, a.output, a.file_format, a.duplicates,
                          a.run_id, a.max_record_bytes, a.threads, a.memory_limit),
                      engine_options)


if __name__ == "__main__":
    sys.exit(main())
