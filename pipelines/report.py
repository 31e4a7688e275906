"""``throughput report``: one self-contained HTML page of what the tables hold.

    throughput report --output DIR [--from DATE] [--to DATE] [--workstream ID]... [--top N] --html report.html

The page has a summary, then four sections, each a chart with its numbers beside it as an HTML table:

* (the summary: events, tasks, hours, workers, workstreams, days and rejects in the period);
* tasks and hours per day per workstream (from ``throughput_daily``);
* the top workers by tasks, with their hours, events and active days (``throughput_daily``);
* rejects per day by error code. A reject has no completion date of its own (the record could
  not be read), so its day is the UTC date of its run's ``finished_at`` in ``DIR/_runs``: the day
  the run that rejected it committed (for a nightly run, the night it ran). A run without a
  manifest (only while a commit is being recovered) counts under "unknown" and is left out
  when ``--from``/``--to`` are given.
* the distribution of ``task_completed.duration`` per task definition: events, mean, min, the
  5th/25th/50th/75th/95th percentiles (linear interpolation, as DuckDB's ``quantile_cont``) and
  max; the box plot draws the box from p25 to p75 and the whiskers from p5 to p95;

Filters: ``--from``/``--to`` (inclusive UTC dates) apply to ``completed_date`` and to the
rejects' day; ``--workstream`` (repeatable) keeps those workstreams, and rejects whose
workstream is one of them (rejects with no known workstream are left out then).

Each section's numbers come from a pure function over Arrow tables (``daily_throughput``,
``top_workers``, ``duration_distribution``, ``rejects_per_day``, ``summary``) that
``load_inputs`` feeds with the filtered tables; ``render_html`` only lays them out.

Charts: matplotlib, rendered to SVG and inlined in the page. Plotly was the other candidate;
``include_plotlyjs=True`` inlines about 4.6 MB of JavaScript into every page, where matplotlib's
SVG keeps a report in the tens to hundreds of KB, needs no script to display (mail, archives,
a browser with JavaScript off) and prints well. matplotlib (with pillow, fonttools,
kiwisolver, contourpy) is a heavier install than plotly, but it is installed once, and the
pages are made and sent many times. Figures are made with ``matplotlib.figure.Figure``, not
pyplot: no global state, no GUI backend.
"""

from __future__ import annotations

import argparse
import html
import io
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.cli import positive_int
from pipelines.rejects import OutputError, OutputReader
from schemas.tables import REJECTS, TASK_COMPLETED, THROUGHPUT_DAILY

__all__ = [
    "QUANTILES",
    "Report",
    "ReportFilter",
    "ReportInputs",
    "build_report",
    "daily_throughput",
    "duration_distribution",
    "load_inputs",
    "reject_days",
    "rejects_per_day",
    "render_html",
    "report_main",
    "summary",
    "top_workers",
]

QUANTILES = (("p05", 0.05), ("p25", 0.25), ("median", 0.5), ("p75", 0.75), ("p95", 0.95))
_CHART_SERIES = 12  # series a stacked chart shows; the rest are summed as "other" (the tables have all)
_MIN_SLOTS = 10  # bar positions a stacked chart is at least wide
_CHART_BOXES = 16  # task definitions the box plot shows: those with the most events


@dataclass(frozen=True)
class ReportFilter:
    """Which rows a report covers: inclusive UTC dates and workstreams (none: every one)."""

    start: date | None = None
    end: date | None = None
    workstreams: tuple[str, ...] = ()

    def expression(self, date_column: str = "completed_date", workstream_column: str = "workstream_id") -> pc.Expression:
        keep = pc.scalar(True)
        if self.start is not None:
            keep = keep & (pc.field(date_column) >= pc.scalar(self.start))
        if self.end is not None:
            keep = keep & (pc.field(date_column) <= pc.scalar(self.end))
        if self.workstreams:
            keep = keep & pc.field(workstream_column).isin(list(self.workstreams))
        return keep

    def describe(self) -> str:
        period = f"{self.start or 'the first day'} to {self.end or 'the last day'}"
        where = ", ".join(self.workstreams) if self.workstreams else "every workstream"
        return f"{period}; {where}"


@dataclass
class ReportInputs:
    """The filtered rows the sections are computed from."""

    daily: pa.Table  # throughput_daily: workstream_id, completed_date, worker_id, records, task_count, duration
    durations: pa.Table  # task_completed: workstream_id, task_definition_id, duration (nulls left out)
    rejects: pa.Table  # rejects: run_id, error_code, workstream_id, day


@dataclass
class Report:
    """Every number of the page, by section."""

    output: str
    where: ReportFilter
    totals: dict[str, Any]
    daily: pa.Table
    workers: pa.Table
    durations: pa.Table
    rejects: pa.Table
    generated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def load_inputs(output: str, where: ReportFilter) -> ReportInputs:
    """Read the tables of ``output`` that the report needs, filtered (pushed down to the partitions)."""
    reader = OutputReader(output)
    daily = reader.read(THROUGHPUT_DAILY, ["workstream_id", "completed_date", "worker_id", "records", "task_count",
                                           "duration"], where.expression())
    durations = reader.read(TASK_COMPLETED, ["workstream_id", "task_definition_id", "duration"],
                            where.expression() & pc.field("duration").is_valid())
    return ReportInputs(daily, durations, reject_days(reader, where))


def reject_days(reader: OutputReader, where: ReportFilter) -> pa.Table:
    """Rejects (run_id, error_code, workstream_id) with ``day``: the UTC date their run finished."""
    finished = {str(m["run_id"]): _utc_date(m.get("finished_at")) for m in reader.manifests()}
    keep = pc.field("workstream_id").isin(list(where.workstreams)) if where.workstreams else None
    rows = reader.read(REJECTS, ["run_id", "error_code", "workstream_id"], keep)
    runs = pc.unique(rows.column("run_id"))
    days = pa.array([finished.get(r) for r in runs.to_pylist()], pa.date32())
    rows = rows.append_column("day", days.take(pc.index_in(rows.column("run_id"), value_set=runs)))
    if where.start is not None or where.end is not None:
        rows = rows.filter(ReportFilter(where.start, where.end).expression(date_column="day"))
    return rows


def daily_throughput(daily: pa.Table) -> pa.Table:
    """Per workstream and day: ``events``, ``tasks``, ``hours``; by day, then workstream."""
    grouped = daily.group_by(["workstream_id", "completed_date"], use_threads=False).aggregate(
        [("records", "sum"), ("task_count", "sum"), ("duration", "sum")])
    return pa.table({
        "completed_date": grouped.column("completed_date"),
        "workstream_id": grouped.column("workstream_id"),
        "events": grouped.column("records_sum"),
        "tasks": grouped.column("task_count_sum"),
        "hours": pc.divide(grouped.column("duration_sum"), 3600.0),
    }).sort_by([("completed_date", "ascending"), ("workstream_id", "ascending")])


def top_workers(daily: pa.Table, limit: int = 20) -> pa.Table:
    """The ``limit`` workers with the most tasks: ``tasks``, ``hours``, ``events``, ``days`` active.

    Ties are broken by hours (more first), then worker id, so the list is the same every time.
    """
    grouped = daily.group_by(["worker_id"], use_threads=False).aggregate(
        [("task_count", "sum"), ("duration", "sum"), ("records", "sum"), ("completed_date", "count_distinct")])
    table = pa.table({
        "worker_id": grouped.column("worker_id"),
        "tasks": grouped.column("task_count_sum"),
        "hours": pc.divide(grouped.column("duration_sum"), 3600.0),
        "events": grouped.column("records_sum"),
        "days": grouped.column("completed_date_count_distinct"),
    })
    return table.sort_by([("tasks", "descending"), ("hours", "descending"), ("worker_id", "ascending")]).slice(0, limit)


def duration_distribution(durations: pa.Table) -> pa.Table:
    """Per workstream and task definition, ``duration`` (seconds) of its events: count, mean, min, quantiles, max."""
    keys = ["workstream_id", "task_definition_id"]
    rows = durations.filter(pc.is_valid(durations.column("duration"))).sort_by([(k, "ascending") for k in keys])
    counts = rows.group_by(keys, use_threads=False).aggregate([("duration", "count"), ("duration", "mean"),
                                                               ("duration", "min"), ("duration", "max")])
    counts = counts.sort_by([(k, "ascending") for k in keys])  # the same order as ``rows``: slices line up
    quantiles: dict[str, list[float]] = {name: [] for name, _ in QUANTILES}
    offset = 0
    for count in counts.column("duration_count").to_pylist():
        values = pc.quantile(rows.column("duration").slice(offset, count), q=[q for _, q in QUANTILES],
                             interpolation="linear").to_pylist()
        for (name, _), value in zip(QUANTILES, values):
            quantiles[name].append(value)
        offset += count
    return pa.table({
        "workstream_id": counts.column("workstream_id"),
        "task_definition_id": counts.column("task_definition_id"),
        "events": counts.column("duration_count"),
        "mean": counts.column("duration_mean"),
        "min": counts.column("duration_min"),
        **{name: pa.array(values, pa.float64()) for name, values in quantiles.items()},
        "max": counts.column("duration_max"),
    })


def rejects_per_day(rejects: pa.Table) -> pa.Table:
    """Per day (of the run that rejected them) and error code: ``rejects``; by day, then count, then code."""
    grouped = rejects.group_by(["day", "error_code"], use_threads=False).aggregate([("error_code", "count")])
    return pa.table({
        "day": grouped.column("day"),
        "error_code": grouped.column("error_code"),
        "rejects": grouped.column("error_code_count"),
    }).sort_by([("day", "ascending"), ("rejects", "descending"), ("error_code", "ascending")])


def summary(inputs: ReportInputs) -> dict[str, Any]:
    """Totals of the period: events, tasks, hours, workers, workstreams, days, first and last day, rejects."""
    daily = inputs.daily

    def distinct(column: str) -> int:
        return len(pc.unique(daily.column(column)))

    dates = daily.column("completed_date")
    return {
        "events": pc.sum(daily.column("records")).as_py() or 0,
        "tasks": pc.sum(daily.column("task_count")).as_py() or 0,
        "hours": (pc.sum(daily.column("duration")).as_py() or 0.0) / 3600.0,
        "workers": distinct("worker_id"),
        "workstreams": distinct("workstream_id"),
        "days": distinct("completed_date"),
        "first_day": pc.min(dates).as_py(),
        "last_day": pc.max(dates).as_py(),
        "rejects": inputs.rejects.num_rows,
    }


def build_report(output: str, where: ReportFilter | None = None, top: int = 20) -> Report:
    """Every section of the report of ``output``."""
    where = where or ReportFilter()
    inputs = load_inputs(output, where)
    return Report(output=output, where=where, totals=summary(inputs), daily=daily_throughput(inputs.daily),
                  workers=top_workers(inputs.daily, top), durations=duration_distribution(inputs.durations),
                  rejects=rejects_per_day(inputs.rejects))


def report_main(argv: Sequence[str]) -> int:
    """``throughput report``: 0 written, 1 a problem with the output, 2 a usage error."""
    parser = _parser()
    try:
        known = parser.parse_args(list(argv))
        if known.start and known.end and known.start > known.end:
            parser.error(f"--from {known.start} is after --to {known.end}")
    except SystemExit as exc:  # argparse's usage error (2) or --help (0)
        return int(exc.code or 0)
    where = ReportFilter(known.start, known.end, tuple(known.workstreams))
    try:
        report = build_report(known.output, where, known.top)
    except OutputError as exc:
        print(f"throughput report: {exc}", file=sys.stderr)
        return 1
    page = render_html(report)
    try:
        with open(known.html, "w", encoding="utf-8") as handle:
            handle.write(page)
    except OSError as exc:
        print(f"throughput report: cannot write {known.html}: {exc}", file=sys.stderr)
        return 1
    totals = report.totals
    print(f"report: {known.html} ({len(page) // 1024} KB): {totals['tasks']:,} tasks, {totals['hours']:,.1f} hours, "
          f"{totals['workers']:,} workers over {totals['days']} day(s); {totals['rejects']:,} rejects")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="throughput report",
                                     description="a self-contained HTML report of throughput, workers, durations and rejects")
    parser.add_argument("--output", required=True, metavar="DIR", help="output directory of the tables")
    parser.add_argument("--from", dest="start", type=_date, metavar="DATE", help="first day (YYYY-MM-DD, UTC), inclusive")
    parser.add_argument("--to", dest="end", type=_date, metavar="DATE", help="last day (YYYY-MM-DD, UTC), inclusive")
    parser.add_argument("--workstream", dest="workstreams", action="append", default=[], metavar="ID",
                        help="only this workstream; repeatable")
    parser.add_argument("--top", type=positive_int, default=20, metavar="N", help="workers in the top list (default 20)")
    parser.add_argument("--html", required=True, metavar="FILE", help="the page to write")
    return parser


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _utc_date(stamp: Any) -> date | None:
    try:
        return datetime.fromisoformat(str(stamp)).astimezone(timezone.utc).date()
    except ValueError:
        return None


# -- the page ----------------------------------------------------------------------------------

def render_html(report: Report) -> str:
    """The page: header, totals, then each section's chart beside its table. No external resource."""
    totals = report.totals
    cards = [("tasks", _int(totals["tasks"])), ("hours", _hours(totals["hours"])), ("events", _int(totals["events"])),
             ("workers", _int(totals["workers"])), ("workstreams", _int(totals["workstreams"])),
             ("days", _int(totals["days"])), ("rejects", _int(totals["rejects"]))]
    period = (f"{totals['first_day']} to {totals['last_day']}" if totals["first_day"] else "no completed tasks")
    sections = [
        _section("Tasks and hours per day", "tasks-per-day",
                 "Sum of <code>task_count</code> and of <code>duration</code> (in hours) per completed date (UTC) "
                 "and workstream, from <code>throughput_daily</code>.",
                 _daily_chart(report.daily),
                 _table(report.daily, [("completed_date", "day", str), ("workstream_id", "workstream", str),
                                       ("tasks", "tasks", _int), ("hours", "hours", _hours),
                                       ("events", "events", _int)])),
        _section(f"Top {report.workers.num_rows} workers", "top-workers",
                 "Workers with the most tasks in the period, with their hours, events and the days they completed "
                 "tasks on.",
                 _workers_chart(report.workers),
                 _table(report.workers, [("worker_id", "worker", str), ("tasks", "tasks", _int),
                                         ("hours", "hours", _hours), ("events", "events", _int),
                                         ("days", "days", _int)])),
        _section("Rejects per day by error code", "rejects",
                 "Rejected records by the UTC day their run finished (from the run's manifest in "
                 "<code>_runs/</code>). <code>throughput rejects list</code> and <code>export</code> show the records.",
                 _rejects_chart(report.rejects),
                 _table(report.rejects, [("day", "run day", _day), ("error_code", "error code", str),
                                         ("rejects", "rejects", _int)])),
        _section("Duration per task definition", "durations",
                 "<code>task_completed.duration</code> of each event, in seconds. Box: 25th to 75th percentile, line: "
                 f"median, whiskers: 5th and 95th percentiles{_boxes_note(report.durations)}.",
                 _duration_chart(report.durations),
                 _table(report.durations, [("workstream_id", "workstream", str),
                                           ("task_definition_id", "task definition", str),
                                           ("events", "events", _int), ("mean", "mean s", _seconds),
                                           ("min", "min s", _seconds),
                                           *((name, f"{name} s", _seconds) for name, _ in QUANTILES),
                                           ("max", "max s", _seconds)]), wide_table=True),
    ]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Throughput report: {html.escape(period)}</title>
<style>{_CSS}</style></head>
<body>
<header><h1>Throughput report</h1>
<p>{html.escape(period)} &middot; filter: {html.escape(report.where.describe())} &middot;
output <code>{html.escape(report.output)}</code> &middot; made {report.generated_at:%Y-%m-%d %H:%M} UTC</p></header>
<section class="cards">{''.join(f'<div class="card"><b>{value}</b><span>{name}</span></div>' for name, value in cards)}</section>
{''.join(sections)}
</body></html>
"""


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0 auto;max-width:1240px;
padding:16px 20px;color:#1f2328;background:#fff}
h1{margin:0 0 4px;font-size:26px}h2{font-size:19px;margin:0 0 4px}header p,.note{color:#59636e;font-size:13px;margin:2px 0 8px}
code{font-size:12px;background:#f3f4f6;padding:0 3px;border-radius:3px}
.cards{display:flex;gap:10px;flex-wrap:wrap;margin:12px 0 18px}
.card{border:1px solid #d1d9e0;border-radius:6px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:22px}.card span{color:#59636e;font-size:12px}
section.part{border-top:1px solid #d1d9e0;padding:14px 0 18px}
.row{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:16px;align-items:start}
.stack{display:grid;grid-template-columns:minmax(0,1fr);gap:12px}.stack .chart{max-width:760px}
.stack .numbers{max-height:300px}
.chart svg{width:100%;height:auto}.empty{color:#59636e;font-style:italic}
.numbers{max-height:430px;overflow:auto;border:1px solid #d1d9e0;border-radius:6px}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{padding:3px 8px;border-bottom:1px solid #eef0f2;white-space:nowrap}
th{position:sticky;top:0;background:#f6f8fa;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
"""


def _boxes_note(durations: pa.Table) -> str:
    if durations.num_rows <= _CHART_BOXES:
        return ""
    return f"; the chart shows the {_CHART_BOXES} task definitions with the most events, the table all {durations.num_rows}"


def _section(title: str, anchor: str, note: str, chart: str, table: str, wide_table: bool = False) -> str:
    """A chart with its table beside it (or, for a wide table, the chart above the table)."""
    return (f'<section class="part" id="{anchor}"><h2>{html.escape(title)}</h2><p class="note">{note}</p>'
            f'<div class="{"stack" if wide_table else "row"}"><div class="chart">{chart}</div>'
            f'<div class="numbers">{table}</div></div></section>\n')


def _table(table: pa.Table, columns: list[tuple[str, str, Any]]) -> str:
    if table.num_rows == 0:
        return '<p class="empty">none in the period</p>'
    numeric = {name for name, _, fmt in columns if fmt not in (str, _day)}
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in columns)
    body = []
    for row in table.select([name for name, _, _ in columns]).to_pylist():
        cells = "".join(f'<td{" class=n" if name in numeric else ""}>{html.escape(fmt(row[name]))}</td>'
                        for name, _, fmt in columns)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _int(value: int) -> str:
    return f"{value:,}"


def _hours(value: float) -> str:
    return f"{value:,.2f}"


def _seconds(value: float) -> str:
    return f"{value:,.1f}"


def _day(value: date | None) -> str:
    return str(value) if value is not None else "unknown"


# -- charts (matplotlib -> inline SVG) ---------------------------------------------------------

def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure


def _svg(figure: Any, salt: str) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt, "font.size": 9}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # inline: no XML declaration or DOCTYPE


def _empty_chart() -> str:
    return '<p class="empty">nothing to draw</p>'


def _series(rows: list[dict[str, Any]], key: str, x: str, value: str) -> tuple[list[Any], dict[str, list[float]]]:
    """Stacked-chart data: every x from first to last (dates without a gap), the biggest series and "other"."""
    if isinstance(rows[0][x], date):
        first, last = min(r[x] for r in rows), max(r[x] for r in rows)
        xs: list[Any] = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    else:
        xs = sorted({r[x] for r in rows}, key=lambda v: (v is None, v))
    totals: dict[str, float] = {}
    for row in rows:
        totals[row[key]] = totals.get(row[key], 0) + row[value]
    ranked = sorted(totals, key=lambda k: (-totals[k], k))
    shown = ranked if len(ranked) <= _CHART_SERIES else ranked[:_CHART_SERIES - 1]
    position = {v: i for i, v in enumerate(xs)}
    series: dict[str, list[float]] = {name: [0.0] * len(xs) for name in shown}
    if len(shown) < len(ranked):
        series[f"other ({len(ranked) - len(shown)})"] = [0.0] * len(xs)
    for row in rows:
        name = row[key] if row[key] in series else next(reversed(series))
        series[name][position[row[x]]] += row[value]
    return xs, series


def _stacked(axes: Any, xs: list[Any], series: dict[str, list[float]], ylabel: str) -> None:
    from matplotlib import colormaps

    palette = colormaps["tab20"]
    colors = [palette(i) for i in range(palette.N)]
    bottom = [0.0] * len(xs)
    positions = list(range(len(xs)))
    for number, (name, values) in enumerate(series.items()):
        axes.bar(positions, values, bottom=bottom, label=name, color=colors[number % len(colors)], width=0.8)
        bottom = [b + v for b, v in zip(bottom, values)]
    pad = max(0.0, (_MIN_SLOTS - len(xs)) / 2)  # a day or two: bars of a normal width, not the whole axis
    axes.set_xlim(-0.6 - pad, len(xs) - 0.4 + pad)
    step = max(1, len(xs) // 15)
    axes.set_xticks(positions[::step], [_day(x)[5:] if isinstance(x, date) else _day(x) for x in xs[::step]],
                    rotation=45, ha="right")
    axes.set_ylabel(ylabel)
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)


def _daily_chart(daily: pa.Table) -> str:
    if daily.num_rows == 0:
        return _empty_chart()
    rows = daily.to_pylist()
    figure = _figure(7.2, 5.4)
    tasks_axes, hours_axes = figure.subplots(2, 1, sharex=True)
    xs, tasks = _series(rows, "workstream_id", "completed_date", "tasks")
    _stacked(tasks_axes, xs, tasks, "tasks")
    _, hours = _series(rows, "workstream_id", "completed_date", "hours")
    _stacked(hours_axes, xs, hours, "hours")
    tasks_axes.set_title("tasks per day", loc="left")
    hours_axes.set_title("hours per day", loc="left")
    figure.legend(*tasks_axes.get_legend_handles_labels(), loc="outside lower center", fontsize=7, ncols=4, frameon=False)
    return _svg(figure, "daily")


def _workers_chart(workers: pa.Table) -> str:
    if workers.num_rows == 0:
        return _empty_chart()
    rows = workers.to_pylist()
    figure = _figure(7.2, 0.7 + 0.19 * len(rows))
    axes = figure.subplots()
    positions = list(range(len(rows)))[::-1]
    axes.barh(positions, [r["tasks"] for r in rows], color="#4c78a8", height=0.7)
    axes.set_yticks(positions, [_shorten(r["worker_id"], 34) for r in rows], fontsize=7)
    for y, row in zip(positions, rows):
        axes.annotate(f" {row['hours']:,.1f} h", (row["tasks"], y), va="center", fontsize=7, color="#59636e")
    axes.set_xlabel("tasks (label: hours)")
    axes.margins(x=0.15)
    axes.grid(axis="x", alpha=0.3)
    axes.set_axisbelow(True)
    return _svg(figure, "workers")


def _duration_chart(durations: pa.Table) -> str:
    if durations.num_rows == 0:
        return _empty_chart()
    rows = sorted(durations.to_pylist(), key=lambda r: (-r["events"], r["workstream_id"], r["task_definition_id"]))
    rows = sorted(rows[:_CHART_BOXES], key=lambda r: (r["workstream_id"], r["task_definition_id"]))[::-1]
    stats = [{"label": f"{_shorten(r['workstream_id'], 18)} · {r['task_definition_id'][:8]} ({r['events']:,})",
              "whislo": r["p05"], "q1": r["p25"], "med": r["median"], "q3": r["p75"], "whishi": r["p95"],
              "mean": r["mean"], "fliers": []} for r in rows]
    figure = _figure(7.2, 0.8 + 0.22 * len(rows))
    axes = figure.subplots()
    axes.bxp(stats, orientation="horizontal", showmeans=True, patch_artist=True,
             boxprops={"facecolor": "#a0c4e8", "edgecolor": "#2f5d8a"}, medianprops={"color": "#c0392b"},
             meanprops={"marker": "D", "markersize": 3, "markerfacecolor": "#1f2328", "markeredgecolor": "#1f2328"})
    low = min(r["p05"] for r in rows)
    if low > 0 and max(r["p95"] for r in rows) / low > 100:
        axes.set_xscale("log")
    axes.tick_params(axis="y", labelsize=7)
    axes.set_xlabel("duration, seconds (box p25-p75, whiskers p5-p95, ◆ mean)")
    axes.grid(axis="x", alpha=0.3)
    return _svg(figure, "durations")


def _rejects_chart(rejects: pa.Table) -> str:
    if rejects.num_rows == 0:
        return _empty_chart()
    rows = rejects.to_pylist()
    if any(r["day"] is None for r in rows):  # a run without a manifest: every day is labelled as text
        rows = [{**r, "day": _day(r["day"])} for r in rows]
    figure = _figure(7.2, 3.4)
    axes = figure.subplots()
    xs, series = _series(rows, "error_code", "day", "rejects")
    _stacked(axes, xs, series, "rejects")
    figure.legend(*axes.get_legend_handles_labels(), loc="outside lower center", fontsize=7, ncols=4, frameon=False)
    return _svg(figure, "rejects")


def _shorten(text: str, width: int) -> str:
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= width else text[:width - 1] + "…"
