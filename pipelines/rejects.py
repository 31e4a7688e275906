"""``throughput rejects``: what a run rejected, by code, and the rejected records themselves, without SQL.

    throughput rejects list   --output DIR [--run-id ID | --all]
    throughput rejects export --output DIR [--run-id ID | --all] [--code CODE]... --format jsonl|csv [--to FILE]

Both commands look at one run: the latest run that has rejects (latest by its manifest's
``finished_at``), or ``--run-id ID``; ``--all`` takes every run. ``list`` prints, per run, each
error code with its count and one example message (the message of the code's first record by
file and line). ``export`` writes the rejected records (run, file, line, workstream, code, field,
message and the raw text as read) as JSON lines or CSV, to standard output or ``--to FILE``.

Exit status: 0 done (no rejects is not a problem), 1 a problem with the output folder (missing,
unreadable, or no such run), 2 a usage error.

The tables are read with ``pyarrow.dataset`` (Hive partitioning, partition columns typed from
``schemas.tables``, so a workstream id like ``007`` stays text). ``OutputReader`` is shared with
``pipelines.report``. A run id typed by the user is only compared with the run ids found in the
output, never made into a path.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from schemas.tables import REJECTS, TableSpec
from transforms.files import DamagedFile, list_files, read_json
from transforms.layout import LayoutError, OutputLayout

__all__ = [
    "EXPORT_COLUMNS",
    "OutputError",
    "OutputReader",
    "export_rejects",
    "rejects_by_code",
    "rejects_main",
    "select_rejects",
]

EXPORT_COLUMNS = ("run_id", "source_file", "source_line", "workstream_id", "error_code", "error_field",
                  "error_message", "raw")
_EXAMPLE_WIDTH = 100  # characters of the example message that `list` prints


class OutputError(Exception):
    """Something wrong with the output folder: missing, unreadable, or without the run asked for."""


class OutputReader:
    """Reads an output folder's tables and run manifests back, as an analyst would."""

    def __init__(self, output: str) -> None:
        self.output = output
        try:
            self.layout = OutputLayout.at(output)
            local = "://" not in self.layout.root
            self._fs = pafs.LocalFileSystem() if local else pafs.FileSystem.from_uri(self.layout.root)[0]
            kind = self._fs.get_file_info(self._path(self.layout.root)).type
        except (LayoutError, pa.ArrowException, OSError) as exc:
            raise OutputError(f"cannot open output {output}: {exc}") from exc
        if kind != pafs.FileType.Directory:
            raise OutputError(f"output folder {output} does not exist")

    def _path(self, path: str) -> str:
        """A path of the layout as ``self._fs`` names it (no scheme for an object store)."""
        return pafs.FileSystem.from_uri(path)[1] if "://" in path else path

    def read(self, table: TableSpec, columns: Sequence[str] | None = None,
             where: pc.Expression | None = None) -> pa.Table:
        """Rows of ``table`` (partition columns included, typed as in ``schemas.tables``)."""
        wanted = list(columns) if columns is not None else table.schema.names
        folder = self._path(self.layout.table(table))
        if self._fs.get_file_info(folder).type != pafs.FileType.Directory:
            return table.schema.empty_table().select(wanted)
        partitioning = ds.partitioning(pa.schema([table.schema.field(c) for c in table.partition_by]), flavor="hive")
        try:
            dataset = ds.dataset(folder, schema=table.schema, format="parquet", filesystem=self._fs,
                                 partitioning=partitioning)
            return dataset.to_table(columns=wanted, filter=where)
        except (pa.ArrowException, OSError) as exc:
            raise OutputError(f"cannot read {table.name} in {self.output}: {exc}") from exc

    def manifests(self) -> list[dict[str, Any]]:
        """Every manifest (runs, retries, compactions...), oldest first by ``finished_at``, then run id.

        Any kind may own rejects (a retry's records that still fail are its own rejects); kinds
        that have none (a compaction) simply never match a reject.
        """
        runs = []
        try:
            paths = list_files(self.layout.manifests())
        except OSError as exc:
            raise OutputError(f"cannot list the run manifests of {self.output}: {exc}") from exc
        for path in paths:
            try:
                manifest = read_json(path)
            except (OSError, DamagedFile) as exc:
                raise OutputError(f"cannot read run manifest {path}: {exc}") from exc
            if isinstance(manifest, dict) and "run_id" in manifest:
                runs.append(manifest)
        return sorted(runs, key=lambda m: (_instant(m.get("finished_at")), str(m["run_id"])))

    def runs_with_rejects(self) -> list[str]:
        """Run ids that have rejects, oldest first (runs without a manifest first, by id)."""
        present = set(pc.unique(self.read(REJECTS, ["run_id"]).column("run_id")).to_pylist())
        ordered = [str(m["run_id"]) for m in self.manifests()]
        return sorted(present - set(ordered)) + [r for r in ordered if r in present]

    def pick_runs(self, run_id: str | None, all_runs: bool) -> list[str]:
        """The runs a command looks at: ``run_id``, every run with rejects, or the latest one."""
        if run_id is not None:
            known = {str(m["run_id"]) for m in self.manifests()} | set(self.runs_with_rejects())
            if run_id not in known:
                raise OutputError(f"no run {run_id!r} in {self.output}")
            return [run_id]
        runs = self.runs_with_rejects()
        return runs if all_runs else runs[-1:]


def select_rejects(output: str, run_id: str | None = None, codes: Iterable[str] = (), *,
                   all_runs: bool = False) -> pa.Table:
    """The rejected records of the chosen runs (and codes): ``EXPORT_COLUMNS``, by run, file and line."""
    reader = OutputReader(output)
    runs = reader.pick_runs(run_id, all_runs)
    keep = pc.field("run_id").isin(runs)
    codes = list(codes)
    if codes:
        keep = keep & pc.field("error_code").isin(codes)
    rows = reader.read(REJECTS, EXPORT_COLUMNS, keep)
    order = pa.array([runs.index(r) for r in rows.column("run_id").to_pylist()], pa.int64())
    return (rows.append_column("_run_order", order)
            .sort_by([("_run_order", "ascending"), ("source_file", "ascending"), ("source_line", "ascending")])
            .drop_columns(["_run_order"]))


def rejects_by_code(output: str, run_id: str | None = None, *, all_runs: bool = False) -> pa.Table:
    """Per run and error code: ``count`` and ``example_message`` (the first record's, by file and line).

    Runs in order (oldest first), codes by count descending then by name. The default run is the
    latest one with rejects; ``run_id`` picks one, ``all_runs`` takes every run.
    """
    rows = select_rejects(output, run_id, all_runs=all_runs)
    runs = list(dict.fromkeys(rows.column("run_id").to_pylist()))
    grouped = rows.group_by(["run_id", "error_code"], use_threads=False).aggregate(
        [("error_code", "count"), ("error_message", "first")])
    grouped = grouped.rename_columns({"error_code_count": "count", "error_message_first": "example_message"})
    order = pa.array([runs.index(r) for r in grouped.column("run_id").to_pylist()], pa.int64())
    return (grouped.append_column("_run_order", order)
            .sort_by([("_run_order", "ascending"), ("count", "descending"), ("error_code", "ascending")])
            .select(["run_id", "error_code", "count", "example_message"]))


def export_rejects(output: str, out: TextIO, fmt: str, run_id: str | None = None, codes: Iterable[str] = (), *,
                   all_runs: bool = False) -> int:
    """Write the chosen rejects to ``out`` as ``jsonl`` or ``csv``; returns the number of records."""
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"unknown export format {fmt!r}: jsonl or csv")
    rows = select_rejects(output, run_id, codes, all_runs=all_runs)
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(EXPORT_COLUMNS)
    for batch in rows.to_batches(max_chunksize=10_000):
        for row in batch.to_pylist():
            if writer is not None:
                writer.writerow(["" if row[c] is None else row[c] for c in EXPORT_COLUMNS])
            else:
                out.write(json.dumps({c: row[c] for c in EXPORT_COLUMNS}, ensure_ascii=False) + "\n")
    return rows.num_rows


def rejects_main(argv: Sequence[str]) -> int:
    """``throughput rejects list|export|retry``: 0 done, 1 a problem with the output, 2 a usage error."""
    try:
        known = _parser().parse_args(list(argv))
    except SystemExit as exc:  # argparse's usage error (2) or --help (0)
        return int(exc.code or 0)
    try:
        if known.command == "list":
            return _list(known)
        if known.command == "retry":
            return _retry(known)
        return _export(known)
    except OutputError as exc:
        print(f"throughput rejects: {exc}", file=sys.stderr)
        return 1


def _retry(known: argparse.Namespace) -> int:
    """Validate stored rejects again against today's configuration; the ones that pass are committed."""
    from pipelines.errors import RunError
    from pipelines.run import RunOptions, retry_rejects

    options = RunOptions(inputs=(), output=known.output, workstreams=known.workstreams, timezone=known.timezone)
    try:
        result = retry_rejects(options, known.beam_options, run_ids=known.run_ids, codes=known.codes)
    except RunError as exc:
        print(f"throughput rejects: retry failed: {exc}", file=sys.stderr)
        return 1
    counts = result.manifest["counts"]
    print(f"retry {result.run_id}: {counts['read']} reject(s) validated again; {counts['written']} entered the table, "
          f"{counts['superseded'] + counts['ignored_duplicates']} lost to a duplicate, {counts['rejected']} still rejected")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="throughput rejects", description="the records runs rejected, and why")
    commands = parser.add_subparsers(dest="command", required=True, metavar="list|export|retry")
    listing = commands.add_parser("list", help="rejects by error code, with an example message")
    exporting = commands.add_parser("export", help="the rejected records as JSON lines or CSV")
    for sub in (listing, exporting):
        sub.add_argument("--output", required=True, metavar="DIR", help="output directory of the tables")
        which = sub.add_mutually_exclusive_group()
        which.add_argument("--run-id", metavar="ID", help="this run (default: the latest run that has rejects)")
        which.add_argument("--all", dest="all_runs", action="store_true", help="every run")
    exporting.add_argument("--code", dest="codes", action="append", default=[], metavar="CODE",
                           help="only this error code; repeatable")
    exporting.add_argument("--format", dest="fmt", required=True, choices=("jsonl", "csv"))
    exporting.add_argument("--to", metavar="FILE", help="write here instead of standard output")
    retrying = commands.add_parser(
        "retry", help="validate stored rejects again against the current configuration; the ones that pass enter "
                      "the tables in their original order and leave the rejects table",
        epilog="exit codes: 0 committed, 1 failed (nothing committed), 2 usage")
    retrying.add_argument("--output", required=True, metavar="DIR", help="output directory of the tables")
    retrying.add_argument("--workstreams", required=True, metavar="FILE", help="the (fixed) workstream configuration")
    retrying.add_argument("--run-id", dest="run_ids", action="append", default=[], metavar="ID",
                          help="only the rejects of this run; repeatable (default: every run)")
    retrying.add_argument("--code", dest="codes", action="append", default=[], metavar="CODE",
                          help="only this error code; repeatable")
    retrying.add_argument("--timezone", default="UTC", metavar="TZ", help="zone of datetimes without an offset")
    retrying.add_argument("--beam-option", dest="beam_options", action="append", default=[], metavar="OPTION",
                          help="a Beam pipeline option, e.g. --beam-option=--direct_num_workers=2; repeatable")
    return parser


def _list(known: argparse.Namespace) -> int:
    table = rejects_by_code(known.output, known.run_id, all_runs=known.all_runs)
    if table.num_rows == 0:
        print(f"run {known.run_id}: no rejects" if known.run_id else f"no rejects in {known.output}")
        return 0
    finished = {str(m["run_id"]): _when(m.get("finished_at")) for m in OutputReader(known.output).manifests()}
    rows = table.to_pylist()
    width = max(len("error_code"), *(len(r["error_code"]) for r in rows))
    blocks = []
    for run in dict.fromkeys(r["run_id"] for r in rows):
        mine = [r for r in rows if r["run_id"] == run]
        lines = [f"run {run}  finished {finished.get(run, '?')}  {sum(r['count'] for r in mine)} rejects",
                 f"  {'error_code':<{width}}  {'count':>7}  example"]
        lines += [f"  {r['error_code']:<{width}}  {r['count']:>7}  {_shorten(r['example_message'])}" for r in mine]
        blocks.append("\n".join(lines))
    print("\n\n".join(blocks))
    return 0


def _export(known: argparse.Namespace) -> int:
    if known.to:
        with open(known.to, "w", encoding="utf-8", newline="") as handle:
            count = export_rejects(known.output, handle, known.fmt, known.run_id, known.codes, all_runs=known.all_runs)
    else:
        try:
            count = export_rejects(known.output, sys.stdout, known.fmt, known.run_id, known.codes,
                                   all_runs=known.all_runs)
            sys.stdout.flush()
        except BrokenPipeError:  # the reader stopped early (``| head``): not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            return 0
    runs = "every run" if known.all_runs else f"run {known.run_id}" if known.run_id else "the latest run with rejects"
    codes = f" with code {', '.join(known.codes)}" if known.codes else ""
    print(f"exported {count} reject(s) of {runs}{codes}" + (f" to {known.to}" if known.to else ""), file=sys.stderr)
    return 0


def _instant(stamp: Any) -> datetime:
    """A manifest's ISO timestamp as an aware datetime (the earliest one when it has none)."""
    try:
        moment = datetime.fromisoformat(str(stamp))
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _when(stamp: Any) -> str:
    """A manifest's ISO timestamp as ``YYYY-MM-DD HH:MM:SS UTC``."""
    try:
        return f"{datetime.fromisoformat(str(stamp)).astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
    except ValueError:
        return "?"


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EXAMPLE_WIDTH else text[:_EXAMPLE_WIDTH - 1] + "…"
