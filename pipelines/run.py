"""``throughput run``: task_completed files in, validated and deduplicated Parquet tables out.

``build_pipeline`` builds the Beam graph; ``run`` resolves the inputs, launches it, commits the
staged output and writes the manifest; ``main`` parses the command line. Our flags are typed;
every other flag goes to Beam's ``PipelineOptions`` untouched.

    python -m pipelines.run --input 'data/*.jsonl' --output out --workstreams data/workstreams.json
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from pipelines.commit import Journal, Ledger, LedgerEntry, StagedRun, file_checksum, recover
from pipelines.errors import DamagedOutput, RunError
from pipelines.lock import hold_output
from schemas.config import ConfigError, WorkstreamConfig, load_config
from schemas.tables import REJECTS
from transforms.changes import Partition
from transforms.counts import StageReport, TableCounts, WriteCounts
from transforms.dedupe import CHANGES, DedupeByKey
from transforms.durations import DeriveDurations
from transforms.files import DamagedFile, list_files, read_json, read_parquet
from transforms.files import exists as files_exist
from transforms.layout import (
    LayoutError,
    OutputLayout,
    check_run_id,
    is_local,
    new_run_id,
)
from transforms.read import CsvSplits, InputFile, LineSplits, RawChunk, ReadTaskFiles, detect_format, even_cuts
from transforms.retry import csv_header, rejected_chunks
from transforms.validate import COUNTS, REJECTED, ValidateRecords
from transforms.write import WriteRejects, WriteTables, prune_rejects

__all__ = [
    "DEFAULT_RUNNER", "Plan", "RunOptions", "RunResult", "build_pipeline", "pipeline_options_from", "resolve_inputs",
    "retry_rejects", "run",
]

# SPEC 8: DirectRunner would first try Prism, which downloads a binary at run time. The
# in-process FnApiRunner needs no network and is what DirectRunner falls back to offline.
DEFAULT_RUNNER = "FnApiRunner"
_CANDIDATES_PER_SPLIT = 32  # candidate cuts found per split: the splits' sizes are even to 1/32
BYTES_PER_WORKER = 8 << 20  # below this much input per worker, another worker process gives nothing (measured)
_LOG = logging.getLogger("throughput")


@dataclass(frozen=True)
class RunOptions:
    """The run's own options (SPEC 6); Beam's options travel separately."""

    inputs: tuple[str, ...]
    output: str
    workstreams: str
    workstream_id: str | None = None
    file_format: str = "auto"
    timezone: str = "UTC"
    duplicates: str = "per-record"
    run_id: str | None = None
    max_reject_rate: float | None = None
    max_record_bytes: int = 1 << 20
    chunk_records: int = 20_000
    reprocess: bool = False
    split_bytes: int = 16 << 20  # a plain JSON-lines or CSV file is read in splits of about this size, in parallel


@dataclass
class RunResult:
    """What a committed run did: its manifest and where it is."""

    run_id: str
    manifest_path: str
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def failed_inputs(self) -> list[dict[str, str]]:
        """Files the run went on without (SPEC 10): ``{"path", "reason"}`` each; exit status 3."""
        return list(self.manifest.get("failed_inputs", []))


@dataclass(frozen=True)
class Plan:
    """What a run will ingest, decided before the pipeline starts (from the ledger)."""

    files: tuple[InputFile, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (path, why)
    failed: tuple[tuple[str, str], ...] = ()  # (path, why): SPEC 10's failed inputs
    reprocessed: tuple[str, ...] = ()
    checksums: dict[str, str] = field(default_factory=dict)
    retried: tuple[RawChunk, ...] = ()  # stored rejects validated again (``rejects retry``), instead of files
    splits: tuple[InputFile, ...] = ()  # what the pipeline reads: the files, plain JSON-lines and CSV files cut up
    reprocessed_partitions: dict[Partition, list[str]] = field(default_factory=dict)  # partition -> files leaving it
    sizes: dict[str, int] = field(default_factory=dict)  # path -> bytes as stored, of the files read
    stamps: dict[str, tuple[int, float] | None] = field(default_factory=dict)  # path -> (size, mtime) before the pass

    @property
    def input_bytes(self) -> int:
        """Bytes (as stored) of the files the pipeline reads."""
        return sum(self.sizes.get(f.path, 0) for f in self.files)

    def without(self, failed: dict[str, str]) -> Plan:
        """The same plan less the files that failed while the pipeline read them."""
        files = tuple(f for f in self.files if f.path not in failed)
        partitions = {key: [p for p in paths if p not in failed] for key, paths in self.reprocessed_partitions.items()}
        return Plan(files, self.skipped, self.failed + tuple(sorted(failed.items())),
                    tuple(p for p in self.reprocessed if p not in failed), self.checksums, self.retried,
                    tuple(s for s in self.splits if s.path not in failed),
                    {key: paths for key, paths in partitions.items() if paths}, self.sizes, self.stamps)

    @property
    def empty(self) -> bool:
        return not self.files and not self.retried


def build_pipeline(pipeline: beam.Pipeline, plan: Plan, config: WorkstreamConfig,
                   options: RunOptions, staging: StagedRun) -> None:
    """The pipeline diagram: read -> validate -> derive -> dedupe -> write, counts beside."""
    if plan.retried:
        chunks = pipeline | "StoredRejects" >> beam.Create(list(plan.retried))
    else:
        chunks = (
            pipeline
            | "ListFiles" >> beam.Create(list(plan.splits or plan.files))
            | "ReadTaskFiles" >> ReadTaskFiles(options.file_format, options.max_record_bytes, options.chunk_records)
        )
    validated = chunks | "ValidateRecords" >> ValidateRecords(config, options.timezone, options.workstream_id)
    accepted = validated.accepted | "DeriveDurations" >> DeriveDurations()
    deduped = accepted | "DedupeByKey" >> DedupeByKey(
        options.duplicates, output=staging.layout, staging=staging.area, run_id=staging.run_id,
        reprocessed=plan.reprocessed)
    written = {"rows": accepted, "changes": deduped[CHANGES]} | "WriteTables" >> WriteTables(
        staging.area, staging.run_id, output=staging.layout, reprocessed=plan.reprocessed_partitions)
    rejected = validated[REJECTED] | "WriteRejects" >> WriteRejects(staging.area, staging.run_id)
    (
        (validated[COUNTS], deduped[COUNTS], written, rejected)
        | "AllCounts" >> beam.Flatten()
        | "WriteCounts" >> WriteCounts(staging.counts_path)
    )


Progress = Callable[[str], None]  # told each step of a run as it starts ("planning", "pipeline", "committing")


def quiet(step: str) -> None:
    """The default ``Progress``: says nothing."""


def run(options: RunOptions, beam_args: Sequence[str] = (), progress: Progress = quiet) -> RunResult:
    """Run the pipeline and commit its output; raises ``RunError`` for what is wrong with the run.

    The five steps: check the options, take the output (one writer), plan against the ledger,
    run the pipeline into staging, commit through the journal.
    """
    started = datetime.now(timezone.utc)
    layout, config, run_id = _checked(options, started)
    files = resolve_inputs(options.inputs, options.file_format, layout)
    with hold_output(layout, run_id):
        _recover(layout)
        progress("planning")
        ledger = _load_ledger(layout)
        _check_layout_version(layout)
        plan = plan_run(files, ledger, options.reprocess, options.split_bytes, options.file_format)
        pipeline_options = pipeline_options_from(beam_args, plan.input_bytes)
        staging, plan, report = _run_pipeline(plan, config, options, layout, run_id, pipeline_options, progress)
        report = report + prune_rejects(layout, staging.area, run_id, files=plan.reprocessed)
        manifest = _manifest(run_id, options, layout, plan, report, started, pipeline_options)
        _check_reject_rate(options, manifest, staging)
        progress("committing")
        return RunResult(run_id, _commit(staging, ledger, plan, report, manifest), manifest)


def retry_rejects(options: RunOptions, beam_args: Sequence[str] = (), run_ids: Sequence[str] = (),
                  codes: Sequence[str] = (), progress: Progress = quiet) -> RunResult:
    """Validate stored rejects again against the current configuration (``rejects retry``).

    The ones that pass enter the tables through the normal dedupe and commit, in their original
    order (file, then line), keeping their file and line; every retried reject leaves the
    rejects table, and the ones that still fail are rejects of this run, with today's reason.
    ``options.inputs`` is not used; ``run_ids``/``codes`` narrow the rejects retried.
    """
    started = datetime.now(timezone.utc)
    layout, config, run_id = _checked(options, started)
    with hold_output(layout, run_id):
        _recover(layout)
        progress("planning")
        ledger = _load_ledger(layout)
        _check_layout_version(layout)
        stored = _stored_rejects(layout, run_ids, codes)
        headers = {path: csv_header(path) for path in set(stored.column("source_file").to_pylist())
                   if path.lower().removesuffix(".gz").endswith(".csv")}
        chunks, left = rejected_chunks(stored, headers, options.max_record_bytes)
        plan = Plan((), retried=tuple(chunks),
                    failed=tuple((path, f"line {line}: the CSV file is gone, so its header is unknown") for path, line in left))
        pipeline_options = pipeline_options_from(beam_args)
        staging, plan, report = _run_pipeline(plan, config, options, layout, run_id, pipeline_options, progress)
        retried = [(c.source_file, line) for c in chunks for line in c.lines]
        report = report + prune_rejects(layout, staging.area, run_id, rows=retried)
        manifest = {**_manifest(run_id, options, layout, plan, report, started, pipeline_options), "kind": "retry",
                    "retried": len(retried)}
        progress("committing")
        return RunResult(run_id, _commit(staging, ledger, plan, report, manifest), manifest)


def _stored_rejects(layout: OutputLayout, run_ids: Sequence[str], codes: Sequence[str]) -> pa.Table:
    parts = []
    for path in list_files(layout.table_files(REJECTS)):
        if run_ids and layout.partition_of(path)["run_id"] not in run_ids:
            continue
        rows = read_parquet(path, ["source_file", "source_line", "error_code", "raw"])
        if codes:
            rows = rows.filter(pc.is_in(rows.column("error_code"), value_set=pa.array(list(codes), pa.string())))
        parts.append(rows)
    if not parts:
        raise RunError(f"no stored rejects in {layout.root} match"
                       + (f" run {', '.join(run_ids)}" if run_ids else "") + (f" code {', '.join(codes)}" if codes else ""))
    return pa.concat_tables(parts)


def _checked(options: RunOptions, started: datetime) -> tuple[OutputLayout, WorkstreamConfig, str]:
    """What is wrong with the options themselves, before anything is touched."""
    try:
        layout = OutputLayout.at(options.output)
        run_id = check_run_id(options.run_id) if options.run_id is not None else new_run_id()
    except LayoutError as exc:
        raise RunError(str(exc)) from None
    try:
        config = load_config(options.workstreams)
    except ConfigError as exc:
        raise RunError(str(exc)) from None
    _check_timezone(options.timezone)
    return layout, config, run_id


def _recover(layout: OutputLayout) -> None:
    try:
        actions = recover(layout)
    except RunError:
        raise
    except Exception as exc:
        raise DamagedOutput(f"cannot recover the interrupted commit in {layout.root}: {exc}") from exc
    for action in actions:
        _LOG.warning("%s", action)


def _load_ledger(layout: OutputLayout) -> Ledger:
    try:
        return Ledger.load(layout)
    except DamagedFile as exc:
        raise DamagedOutput(str(exc)) from None
    except OSError as exc:
        raise RunError(f"cannot read the ledger of {layout.root}: {exc}") from exc


def _check_layout_version(layout: OutputLayout) -> None:
    """An output whose partition folders are named the old way must be migrated first."""
    if files_exist(layout.layout_file()):
        return
    stale = layout.legacy_partition_folders()
    if stale:
        raise RunError(f"{layout.root} names {len(stale)} partition folder(s) the old way (e.g. {stale[0]}); "
                       f"run `throughput compact --output {layout.root}` once to rename them as Hive and Spark do")


def _run_pipeline(plan: Plan, config: WorkstreamConfig, options: RunOptions, layout: OutputLayout, run_id: str,
                  pipeline_options: PipelineOptions, progress: Progress) -> tuple[StagedRun, Plan, StageReport]:
    """Run the pipeline into staging. A file that fails while it is read is left out and the
    pipeline runs again without it (SPEC 10: never commit part of a file)."""
    while True:
        staging = StagedRun.begin(layout, run_id)
        if plan.empty:
            return staging, plan, StageReport()
        progress("pipeline")
        try:
            with beam.Pipeline(options=pipeline_options) as pipeline:
                build_pipeline(pipeline, plan, config, options, staging)
            changed = _changed(plan)
            if not changed:
                return staging, plan, StageReport.from_json(read_json(staging.counts_path))
            staging.abort()
            for path, why in changed.items():
                _LOG.warning("left out %s: %s", path, why)
            plan = plan.without(changed)
        except Exception as exc:
            staging.abort()
            failed = _unreadable(plan)
            if not failed:
                raise RunError(f"the pipeline failed, nothing was committed: {_one_line(exc)}") from exc
            for path, why in failed.items():
                _LOG.warning("left out %s: %s", path, why)
            plan = plan.without(failed)


def _changed(plan: Plan) -> dict[str, str]:
    """The planned files whose size or modification time is not what it was before the plan's
    pass: the pipeline may have read other bytes than the checksum the ledger would record (a
    file written to during the run, or replaced). Told without reading the files again."""
    return {source.path: "it changed while the run read it; the next run takes it"
            for source in plan.files if _stamp(source.path) != plan.stamps.get(source.path)}


def _stamp(path: str) -> tuple[int, float] | None:
    """A file's (size, modification time) now; None where the filesystem cannot tell."""
    try:
        if is_local(path):
            info = os.stat(path)
            return info.st_size, float(info.st_mtime_ns)
        filesystem = FileSystems.get_filesystem(path)
        return filesystem.size(path), filesystem.last_updated(path)
    except Exception:  # noqa: BLE001 - a store that cannot tell: the checksum after a failure still can
        return None


def _unreadable(plan: Plan) -> dict[str, str]:
    """The planned files that cannot be read whole now, or whose bytes changed since planning."""
    failed = {}
    for source in plan.files:
        why = _input_problem(source.path)
        if why is None:
            try:
                if file_checksum(source.path) != plan.checksums[source.path]:
                    why = "it changed while the run read it; the next run takes it"
            except OSError as exc:
                why = f"it cannot be read: {exc}"
        if why is not None:
            failed[source.path] = why
    return failed


def _one_line(exc: BaseException) -> str:
    """The last line of an error that names what went wrong (Beam wraps errors in long texts)."""
    text = str(exc).strip()
    for line in reversed(text.splitlines()):
        if "is damaged" in line or "refusing to touch" in line:
            return line.strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _check_reject_rate(options: RunOptions, manifest: dict[str, Any], staging: StagedRun) -> None:
    """Over the limit: nothing is committed, but the rejects are kept where the operator can read them."""
    counts = manifest["counts"]
    rate = counts["rejected"] / counts["read"] if counts["read"] else 0.0
    if options.max_reject_rate is None or rate <= options.max_reject_rate:
        return
    kept = staging.layout.failed_rejects(staging.run_id)
    staged = staging.area.rejects_file(staging.run_id)
    if files_exist(staged):
        staging.layout.delete([kept])
        staging.layout.rename(staged, kept)
    staging.abort()
    by_code = ", ".join(f"{code} {n}" for code, n in counts["rejected_by_code"].items())
    raise RunError(
        f"reject rate {rate:.4f} ({counts['rejected']} of {counts['read']}: {by_code}) "
        f"is above --max-reject-rate {options.max_reject_rate}; nothing was committed; the rejects are in {kept}"
    )


def _commit(staging: StagedRun, ledger: Ledger, plan: Plan, report: StageReport, manifest: dict[str, Any]) -> str:
    """The journal of the staged files, the next ledger and the layout marker; written, then applied."""
    layout = staging.layout
    staged, retired = report.files.staged, report.files.retired
    if not plan.empty:
        entries = [LedgerEntry(f.path, plan.checksums[f.path], staging.run_id,
                               tuple(sorted(set(report.files.file_partitions.get(f.path, [])))))
                   for f in plan.files]
        journal = Journal.of_staged(staging, staged, retired + ledger.files, manifest)
        journal.moves.append(ledger.stage_next(staging, entries, staged, retired))
    else:
        journal = Journal.of_staged(staging, staged, retired, manifest)
    journal.moves += staging.layout_marker()
    try:
        return journal.commit()
    except (LayoutError, DamagedOutput) as exc:
        raise RunError(str(exc)) from None
    except Exception as exc:  # a full disk, a refused rename: the next run finishes or rolls back
        raise RunError(f"the commit of run {staging.run_id} failed: {_one_line(exc)}; the next run on "
                       f"{layout.root} finishes it or rolls it back") from exc


def plan_run(files: Sequence[InputFile], ledger: Ledger, reprocess: bool, split_bytes: int = 16 << 20,
             file_format: str = "auto") -> Plan:
    """Per file: ingest, skip (unchanged, or the same bytes under another name), or leave out (unreadable).

    The one pass that takes a file's checksum also finds where to cut a plain JSON-lines or CSV
    file into splits, so that workers read one file in parallel."""
    checksums: dict[str, str] = {}
    sizes: dict[str, int] = {}
    cuts: dict[str, list[tuple[int, int]]] = {}
    todo: list[InputFile] = []
    skipped: list[tuple[str, str]] = []
    failed: list[tuple[str, str]] = []
    taken: dict[str, str] = {}  # checksum -> path, within this run
    problems = {source.path: _input_problem(source.path) for source in files}
    scans = _scan_files([path for path, why in problems.items() if why is None], split_bytes, file_format)
    for source in files:
        path = source.path
        why = problems[path]
        if why is None:
            scan = scans[path]
            why, sizes[path], cuts[path] = scan.problem, scan.size, scan.cuts
            if why is None:
                checksums[path] = scan.checksum
        if why is not None:
            failed.append((path, why))
            continue
        digest = checksums[path]
        entry = ledger.entries.get(path)
        twin = ledger.same_content(digest)
        if not reprocess and ledger.ingested(path, digest):
            skipped.append((path, "already ingested, unchanged"))
        elif not reprocess and entry is None and twin is not None:
            skipped.append((path, f"the same bytes as {twin.path}, ingested by run {twin.run_id}"))
        elif digest in taken:
            skipped.append((path, f"the same bytes as {taken[digest]}, in this run"))
        elif entry is not None and not reprocess and _is_empty(path):
            failed.append((path, f"it is empty now, but run {entry.run_id} ingested it; its earlier rows are kept "
                                 "(pass --reprocess to replace them with nothing)"))
        else:
            taken[digest] = path
            todo.append(source)
    reprocessed = tuple(f.path for f in todo if f.path in ledger.entries)
    partitions: dict[Partition, list[str]] = {}
    for path in reprocessed:
        for partition in ledger.entries[path].partitions:
            partitions.setdefault(partition, []).append(path)
    splits = tuple(piece for f in todo for piece in f.splits(cuts.get(f.path, [])))
    return Plan(tuple(todo), tuple(skipped), tuple(failed), reprocessed, checksums, splits=splits,
                reprocessed_partitions=partitions, sizes=sizes,
                stamps={path: scans[path].stamp for path in checksums if path in scans})


@dataclass
class _Scan:
    """One pass over a file: its checksum, size and cuts, or why it cannot be read."""

    checksum: str = ""
    stamp: tuple[int, float] | None = None  # (size, modification time) before the pass
    size: int = 0
    cuts: list[tuple[int, int]] = field(default_factory=list)
    problem: str | None = None


def _scan_files(paths: Sequence[str], split_bytes: int, file_format: str) -> dict[str, _Scan]:
    """Each file's pass, one file per core at a time: reading, hashing and inflating release the
    GIL, so the driver's one serial step before the pipeline takes about half as long on two cores."""
    if not paths:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(paths), _cores())) as pool:
        return dict(zip(paths, pool.map(lambda path: _scan_file(path, split_bytes, file_format), paths)))


def _scan_file(path: str, split_bytes: int, file_format: str) -> _Scan:
    scan = _Scan(stamp=_stamp(path))
    splitter = _splitter(path, file_format, split_bytes)

    def seen(block: bytes) -> None:
        scan.size += len(block)
        if splitter is not None:
            splitter.feed(block)

    try:
        scan.checksum = file_checksum(path, seen)
    except OSError as exc:
        scan.problem = f"it cannot be read: {exc}"
    scan.cuts = even_cuts(splitter.finish(), scan.size, split_bytes) if splitter else []
    return scan


def _splitter(path: str, file_format: str, split_bytes: int) -> LineSplits | CsvSplits | None:
    """What finds the cuts of a plain (not compressed) file: in JSON lines a line end is a record
    end; in CSV a newline outside quotes is. A compressed file is read whole."""
    try:
        kind = None if path.lower().endswith(".gz") else detect_format(path, file_format)
    except ValueError:
        return None
    candidates = max(split_bytes // _CANDIDATES_PER_SPLIT, 1)  # even_cuts picks the splits' ends among them
    return LineSplits(candidates) if kind == "jsonl" else CsvSplits(candidates) if kind == "csv" else None


def _input_problem(path: str) -> str | None:
    """Why a matched input cannot be read whole, before opening it (a FIFO would block for ever)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not valid UTF-8; rename it"
    if is_local(path):
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            return f"it cannot be read: {exc.strerror}"
        if not stat.S_ISREG(mode):
            return "it is not a regular file (a FIFO, a device or a socket)"
        if not os.access(path, os.R_OK):
            return "it cannot be read: permission denied"
    elif not files_exist(path):
        return "it vanished"
    return None


def _is_empty(path: str) -> bool:
    if is_local(path):
        return os.path.getsize(path) == 0
    return FileSystems.match([path])[0].metadata_list[0].size_in_bytes == 0


def resolve_inputs(patterns: Sequence[str], file_format: str = "auto",
                   layout: OutputLayout | None = None) -> list[InputFile]:
    """Every file the patterns match, once however it is spelled, in lexicographic path order, numbered.

    Local paths are made canonical (absolute, symlinks resolved). The output's own files
    (``_ledger``, ``_runs``, ``_index``, ``_staging``, ...) are never inputs.
    """
    paths: set[str] = set()
    for pattern in patterns:
        if not pattern.strip():
            raise RunError("an --input pattern is empty")
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception as exc:  # a filesystem's own error for a bad pattern or path
            raise RunError(f"cannot list input {pattern!r}: {_one_line(exc)}") from exc
        for meta in matched:
            if meta.size_in_bytes is None:
                continue
            path = os.path.realpath(os.path.abspath(meta.path)) if is_local(meta.path) else meta.path
            if layout is None or not layout.is_own_file(path):
                paths.add(path)
    if not paths:
        raise RunError(f"no input file matched {', '.join(patterns)}")
    ordered = sorted(paths)
    for path in ordered:
        try:
            detect_format(path, file_format)
        except ValueError as exc:
            raise RunError(str(exc)) from exc
    return [InputFile(index, path) for index, path in enumerate(ordered)]


def _check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RunError(f"unknown time zone {name!r} for --timezone") from exc


def pipeline_options_from(beam_args: Sequence[str], input_bytes: int = 0) -> PipelineOptions:
    """Beam's options from the flags we do not own; the runner defaults to ``DEFAULT_RUNNER``,
    with ``default_workers(input_bytes)`` worker processes unless the flags say how many."""
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = DEFAULT_RUNNER
    chosen = any(arg.startswith(("--direct_num_workers", "--direct_running_mode")) for arg in beam_args)
    if standard.runner == DEFAULT_RUNNER and not chosen and (workers := default_workers(input_bytes)) > 1:
        direct = options.view_as(DirectOptions)
        direct.direct_num_workers = workers
        direct.direct_running_mode = "multi_processing"
    return options


def default_workers(input_bytes: int, cores: int | None = None) -> int:
    """Worker processes for a run of ``input_bytes`` (as stored): one per core, at most one per
    ``BYTES_PER_WORKER``. Measured on 2 cores, CSV, 1 against 2 workers (medians of 3): 1 MB
    6.5 s and 6.5 s, 10 MB 8.5 and 8.0 s, 28 MB 10.5 and 9.0 s, 57 MB 12.1 and 10.0 s (earlier,
    10 MB of JSON lines: 6.8 and 7.2 s); a second worker costs about 0.45 GB more memory."""
    return max(1, min(_cores() if cores is None else cores, input_bytes // BYTES_PER_WORKER))


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _manifest(run_id: str, options: RunOptions, layout: OutputLayout, plan: Plan, report: StageReport,
              started: datetime, pipeline_options: PipelineOptions) -> dict[str, Any]:
    counts = report.counts
    summary = {
        "read": counts.read,
        "blank_lines": counts.blank_lines,
        "written": counts.written,
        "rejected": counts.rejected,
        "ignored_duplicates": counts.ignored_duplicates,
        "superseded": counts.superseded,
        "replaced_existing": counts.replaced_existing,
        "rejected_by_code": dict(sorted(counts.rejected_by_code.items())),
        "reconciles": counts.reconciles,
    }
    return {
        "run_id": run_id,
        "status": "committed",
        "started_at": started.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "inputs": [{"path": f.path, "format": detect_format(f.path, options.file_format),
                    "sha256": plan.checksums[f.path], "reprocessed": f.path in plan.reprocessed} for f in plan.files],
        "failed_inputs": [{"path": p, "reason": why} for p, why in plan.failed],
        "skipped_inputs": [{"path": p, "sha256": plan.checksums.get(p), "reason": why} for p, why in plan.skipped],
        "options": {**asdict(options), "inputs": list(options.inputs), "output": layout.root,
                    "runner": pipeline_options.view_as(StandardOptions).runner,
                    "workers": pipeline_options.view_as(DirectOptions).direct_num_workers},
        "counts": summary,
        "tables": {name: asdict(counts.tables.get(name, TableCounts()))
                   for name in ("task_completed", "throughput_daily", "rejects")},
        "files_added": len(report.files.staged),
        "files_retired": len(set(report.files.retired)),
    }


if __name__ == "__main__":  # python -m pipelines.run: the same as `throughput run`
    from pipelines.cli import run_main

    sys.exit(run_main())
