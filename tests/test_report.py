"""``throughput report``: every number it computes equals a DuckDB query over the same tables.

The output is made by the real pipeline: two runs over generated records of five days in three
workstreams (one named ``007``, which must stay text), with rejects in both runs. The runs'
manifests are then given the finish times of two different nights, as if they had run then,
so that rejects fall on different days.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.report import (
    QUANTILES,
    ReportFilter,
    daily_throughput,
    duration_distribution,
    load_inputs,
    rejects_per_day,
    report_main,
    summary,
    top_workers,
)
from pipelines.run import RunOptions, run
from tests.conftest import CONFIG_DATA, TD, TD2, UC, WS, record, write_jsonl

CONFIG = {"workstreams": [*CONFIG_DATA["workstreams"],
                          {"id": "007", "use_cases": [{"id": "uc-7", "task_definitions": ["td-7"]}]}]}
KINDS = [(WS, UC, TD), (WS, UC, TD2), ("ws-audio", "uc-audio", "td-transcribe"), ("007", "uc-7", "td-7")]
WORKERS = ["ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com", "eve@example.com"]
# as if run r1 had finished on the night of 3 November and r2 late on 5 November (UTC-2: 6 November in UTC)
FINISHED = {"r1": "2026-11-03T02:00:00+00:00", "r2": "2026-11-05T23:30:00-02:00"}
RUN_DAYS = {"r1": date(2026, 11, 3), "r2": date(2026, 11, 6)}


def _records(days: range, run: str) -> list[Any]:
    """Valid records (integer durations, some absent and derived), then a few that are rejected."""
    rows: list[Any] = []
    for day in days:
        for i in range(3 + day):
            workstream, use_case, task_definition = KINDS[(i + day) % len(KINDS)]
            started = datetime(2026, 11, day, 6 + i, 0, tzinfo=timezone.utc)
            seconds = 60 * (1 + (i * 7 + day * 3) % 23)
            explicit = (i + day) % 4 != 0
            rows.append(record(
                workstream_id=workstream, use_case_id=use_case, task_definition_id=task_definition,
                worker_id=WORKERS[(i * 3 + day) % len(WORKERS)], task_count=1 + (i * day) % 4,
                task_started_at=started.isoformat(),
                task_completed_at=(started + timedelta(seconds=seconds)).isoformat(),
                duration=seconds * 1.5 if explicit else None, unique_id=f"{run}-{day}-{i}"))
    return rows


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("report")
    config = base / "workstreams.json"
    config.write_text(json.dumps(CONFIG))
    output = base / "out"
    inputs = {
        "r1": [*_records(range(1, 4), "r1"), "{not json", record(worker_id=None, unique_id="x1"),
               record(task_count=-1, unique_id="x2")],
        "r2": [*_records(range(3, 6), "r2"), record(workstream_id="ws-nope", unique_id="x3"),
               record(task_started_at="2026-11-04", unique_id="x4"), "{also not json",
               record(workstream_id="007", use_case_id="uc-7", task_definition_id="td-7", task_count="x")],
    }
    for run_id, rows in inputs.items():
        path = write_jsonl(base / "in" / f"{run_id}.jsonl", rows)
        run(RunOptions(inputs=(str(path),), output=str(output), workstreams=str(config), run_id=run_id),
            ["--direct_num_workers=1"])
        manifest_file = output / "_runs" / f"{run_id}.json"
        manifest = json.loads(manifest_file.read_text())
        manifest_file.write_text(json.dumps({**manifest, "finished_at": FINISHED[run_id]}))
    return output


FILTERS = {
    "everything": ReportFilter(),
    "2 to 4 November": ReportFilter(date(2026, 11, 2), date(2026, 11, 4)),
    "ws-ner": ReportFilter(workstreams=(WS,)),
    "007 and ws-audio from 4 November": ReportFilter(start=date(2026, 11, 4), workstreams=("007", "ws-audio")),
    "up to 3 November": ReportFilter(end=date(2026, 11, 3)),
}


# -- DuckDB, the reference ----------------------------------------------------------------------

def _tasks(out: Path) -> str:
    return (f"read_parquet('{out}/task_completed/**/*.parquet', hive_partitioning = true, "
            "hive_types = {'workstream_id': VARCHAR, 'completed_date': DATE})")


def _where(where: ReportFilter, day: str = "completed_date") -> str:
    terms = ["true"]
    if where.start:
        terms.append(f"{day} >= DATE '{where.start}'")
    if where.end:
        terms.append(f"{day} <= DATE '{where.end}'")
    if where.workstreams:
        terms.append("workstream_id IN (" + ", ".join(f"'{w}'" for w in where.workstreams) + ")")
    return " AND ".join(terms)


def _query(sql: str) -> list[dict[str, Any]]:
    relation = duckdb.sql(sql)
    return [dict(zip(relation.columns, row)) for row in relation.fetchall()]


def _rejects_with_day(out: Path) -> str:
    return f"""(SELECT r.*, CAST(timezone('UTC', CAST(m.finished_at AS VARCHAR)::TIMESTAMPTZ) AS DATE) AS day
                FROM read_parquet('{out}/rejects/**/*.parquet', hive_partitioning = true,
                                  hive_types = {{'run_id': VARCHAR}}) r
                LEFT JOIN read_json('{out}/_runs/*.json', union_by_name = true) m USING (run_id))"""


def _expected_daily(out: Path, where: ReportFilter) -> list[dict[str, Any]]:
    return _query(f"""SELECT completed_date, workstream_id, count(*) AS events, sum(task_count) AS tasks,
                             sum(duration) / 3600 AS hours
                      FROM {_tasks(out)} WHERE {_where(where)} GROUP BY ALL ORDER BY completed_date, workstream_id""")


def _expected_workers(out: Path, where: ReportFilter, limit: int) -> list[dict[str, Any]]:
    return _query(f"""SELECT worker_id, sum(task_count) AS tasks, sum(duration) / 3600 AS hours, count(*) AS events,
                             count(DISTINCT completed_date) AS days
                      FROM {_tasks(out)} WHERE {_where(where)} GROUP BY ALL
                      ORDER BY tasks DESC, hours DESC, worker_id LIMIT {limit}""")


def _expected_durations(out: Path, where: ReportFilter) -> list[dict[str, Any]]:
    quantiles = ", ".join(f"quantile_cont(duration, {q}) AS {name}" for name, q in QUANTILES)
    return _query(f"""SELECT workstream_id, task_definition_id, count(duration) AS events, avg(duration) AS mean,
                             min(duration) AS min, {quantiles}, max(duration) AS max
                      FROM {_tasks(out)} WHERE {_where(where)} AND duration IS NOT NULL
                      GROUP BY ALL ORDER BY workstream_id, task_definition_id""")


def _expected_rejects(out: Path, where: ReportFilter) -> list[dict[str, Any]]:
    return _query(f"""SELECT day, error_code, count(*) AS rejects FROM {_rejects_with_day(out)}
                      WHERE {_where(where, day='day')} GROUP BY ALL ORDER BY day, rejects DESC, error_code""")


def _expected_summary(out: Path, where: ReportFilter) -> dict[str, Any]:
    totals = _query(f"""SELECT count(*) AS events, coalesce(sum(task_count), 0) AS tasks,
                               coalesce(sum(duration), 0) / 3600 AS hours, count(DISTINCT worker_id) AS workers,
                               count(DISTINCT workstream_id) AS workstreams, count(DISTINCT completed_date) AS days,
                               min(completed_date) AS first_day, max(completed_date) AS last_day
                        FROM {_tasks(out)} WHERE {_where(where)}""")[0]
    rejects = _query(f"SELECT count(*) AS n FROM {_rejects_with_day(out)} WHERE {_where(where, day='day')}")[0]["n"]
    return {**totals, "rejects": rejects}


def _same(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [list(r) for r in actual] == [list(r) for r in expected]  # the same columns, in order
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert got == {k: pytest.approx(v, rel=1e-12) if isinstance(v, float) else v for k, v in want.items()}


# -- the numbers ----------------------------------------------------------------------------

def test_the_output_has_what_the_report_needs(out: Path) -> None:
    """Several days, workstreams and workers, derived durations, and rejects of two runs on two days."""
    shape = _query(f"""SELECT count(DISTINCT completed_date) AS days, count(DISTINCT workstream_id) AS workstreams,
                              count(DISTINCT worker_id) AS workers, bool_or(duration_derived) AS derived
                       FROM {_tasks(out)}""")[0]
    assert shape == {"days": 5, "workstreams": 3, "workers": 5, "derived": True}
    assert {r["day"] for r in _query(f"SELECT DISTINCT day FROM {_rejects_with_day(out)}")} == set(RUN_DAYS.values())


@pytest.mark.parametrize("where", FILTERS.values(), ids=FILTERS.keys())
def test_every_section_equals_duckdb(out: Path, where: ReportFilter) -> None:
    inputs = load_inputs(str(out), where)
    _same(daily_throughput(inputs.daily).to_pylist(), _expected_daily(out, where))
    _same(top_workers(inputs.daily, 3).to_pylist(), _expected_workers(out, where, 3))
    _same(top_workers(inputs.daily).to_pylist(), _expected_workers(out, where, 20))
    _same(duration_distribution(inputs.durations).to_pylist(), _expected_durations(out, where))
    _same(rejects_per_day(inputs.rejects).to_pylist(), _expected_rejects(out, where))
    _same([summary(inputs)], [_expected_summary(out, where)])


def test_filters_narrow_the_rows(out: Path) -> None:
    """The filters do filter: each keeps a strict, non-empty part of what the whole output gives."""
    everything = load_inputs(str(out), ReportFilter())
    for name, where in FILTERS.items():
        part = load_inputs(str(out), where)
        daily = daily_throughput(part.daily).to_pylist()
        if where.start:
            assert all(r["completed_date"] >= where.start for r in daily), name
        if where.end:
            assert all(r["completed_date"] <= where.end for r in daily), name
        if where.workstreams:
            assert {r["workstream_id"] for r in daily} == set(where.workstreams), name
            assert set(part.rejects.column("workstream_id").to_pylist()) <= set(where.workstreams), name
        if where != ReportFilter():
            assert 0 < part.daily.num_rows < everything.daily.num_rows, name
    late = load_inputs(str(out), FILTERS["007 and ws-audio from 4 November"])
    assert rejects_per_day(late.rejects).to_pylist() == [{"day": RUN_DAYS["r2"], "error_code": "invalid_type", "rejects": 1}]
    early = load_inputs(str(out), FILTERS["up to 3 November"])
    assert set(early.rejects.column("run_id").to_pylist()) == {"r1"}


def test_a_numeric_looking_workstream_id_stays_text(out: Path) -> None:
    daily = daily_throughput(load_inputs(str(out), ReportFilter(workstreams=("007",))).daily)
    assert daily.schema.field("workstream_id").type == "string"
    assert set(daily.column("workstream_id").to_pylist()) == {"007"}


# -- the page -------------------------------------------------------------------------------

class _Tables(HTMLParser):
    """Every <table> of a page as its header cells and rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, Any]] = []
        self._cell: list[str] | None = None
        self._row: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append({"head": [], "rows": []})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self.tables:
            table = self.tables[-1]
            if table["head"]:
                table["rows"].append(self._row)
            else:
                table["head"] = self._row

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _page_tables(page: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(page)
    return {" ".join(t["head"]): t["rows"] for t in parser.tables}


@pytest.mark.parametrize("name", ["everything", "2 to 4 November", "007 and ws-audio from 4 November"])
def test_the_page_is_self_contained_and_shows_the_numbers(out: Path, tmp_path: Path, name: str) -> None:
    where = FILTERS[name]
    args = ["--output", str(out), "--html", str(tmp_path / "report.html"), "--top", "3"]
    args += [*(["--from", str(where.start)] if where.start else []), *(["--to", str(where.end)] if where.end else [])]
    for workstream in where.workstreams:
        args += ["--workstream", workstream]
    assert report_main(args) == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")

    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"<script[^>]*\bsrc\b|<link[^>]*\bhref\b|@import|url\(\s*['\"]?(https?:)?//", page, re.IGNORECASE)
    assert page.count("<svg") == 4  # every section has its chart, inline

    tables = _page_tables(page)
    assert tables["day workstream tasks hours events"] == [
        [str(r["completed_date"]), r["workstream_id"], f"{r['tasks']:,}", f"{r['hours']:,.2f}", f"{r['events']:,}"]
        for r in _expected_daily(out, where)]
    assert tables["worker tasks hours events days"] == [
        [r["worker_id"], f"{r['tasks']:,}", f"{r['hours']:,.2f}", f"{r['events']:,}", f"{r['days']:,}"]
        for r in _expected_workers(out, where, 3)]
    assert tables["run day error code rejects"] == [
        [str(r["day"]), r["error_code"], f"{r['rejects']:,}"] for r in _expected_rejects(out, where)]
    columns = ["events", "mean", "min", *(n for n, _ in QUANTILES), "max"]
    assert tables[" ".join(["workstream", "task definition", "events", *(f"{c} s" for c in columns[1:])])] == [
        [r["workstream_id"], r["task_definition_id"], f"{r['events']:,}", *(f"{r[c]:,.1f}" for c in columns[1:])]
        for r in _expected_durations(out, where)]
    totals = _expected_summary(out, where)
    for label, value in [("tasks", f"{totals['tasks']:,}"), ("hours", f"{totals['hours']:,.2f}"),
                         ("workers", f"{totals['workers']:,}"), ("rejects", f"{totals['rejects']:,}")]:
        assert f"<b>{value}</b><span>{label}</span>" in page


def test_a_period_without_tasks_still_makes_a_page(out: Path, tmp_path: Path) -> None:
    page_file = tmp_path / "empty.html"
    assert report_main(["--output", str(out), "--from", "2030-01-01", "--html", str(page_file)]) == 0
    page = page_file.read_text(encoding="utf-8")
    assert "no completed tasks" in page and "<svg" not in page


def test_a_missing_output_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert report_main(["--output", str(missing), "--html", str(tmp_path / "r.html")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("args", [
    [],  # no --output, no --html
    ["--from", "1 November"],
    ["--from", "2026-11-05", "--to", "2026-11-01"],
    ["--top", "0"],
], ids=["missing flags", "bad date", "from after to", "top zero"])
def test_usage_errors_exit_2(out: Path, tmp_path: Path, args: list[str]) -> None:
    base = ["--output", str(out), "--html", str(tmp_path / "r.html")] if args else []
    assert report_main([*base, *args]) == 2
