"""``throughput run``: task_completed files in, validated and deduplicated Parquet tables out.

``build_pipeline`` builds the Beam graph; ``run`` resolves the inputs, launches it, commits the
staged output and writes the manifest; ``main`` parses the command line. Our flags are typed;
every other flag goes to Beam's ``PipelineOptions`` untouched.

    python -m pipelines.run --input 'data/*.jsonl' --output out --workstreams data/workstreams.json
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from pipelines.commit import Journal, Ledger, LedgerEntry, RunError, StagedRun, file_checksum, recover
from schemas.config import ConfigError, WorkstreamConfig, load_config
from transforms.counts import WriteCounts
from transforms.dedupe import CHANGES, DedupeByKey
from transforms.files import read_json, write_json
from transforms.read import InputFile, ReadTaskFiles, detect_format
from transforms.validate import COUNTS, REJECTED, DeriveDurations, ValidateRecords
from transforms.write import WriteRejects, WriteTables

__all__ = [
    "DEFAULT_RUNNER", "Plan", "RunOptions", "RunResult", "build_pipeline", "pipeline_options_from", "resolve_inputs", "run",
]

# SPEC 8: DirectRunner would first try Prism, which downloads a binary at run time. The
# in-process FnApiRunner needs no network and is what DirectRunner falls back to offline.
DEFAULT_RUNNER = "FnApiRunner"
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
    skipped: tuple[str, ...] = ()
    reprocessed: tuple[str, ...] = ()
    checksums: dict[str, str] = field(default_factory=dict)
    removals: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def build_pipeline(pipeline: beam.Pipeline, plan: Plan, config: WorkstreamConfig,
                   options: RunOptions, staging: StagedRun) -> None:
    """The pipeline diagram: read -> validate -> derive -> dedupe -> write, counts beside."""
    chunks = (
        pipeline
        | "ListFiles" >> beam.Create(list(plan.files))
        | "ReadTaskFiles" >> ReadTaskFiles(options.file_format, options.max_record_bytes, options.chunk_records,
                                           spread=_several_workers(pipeline.options))
    )
    validated = chunks | "ValidateRecords" >> ValidateRecords(config, options.timezone, options.workstream_id)
    accepted = validated.accepted | "DeriveDurations" >> DeriveDurations()
    deduped = accepted | "DedupeByKey" >> DedupeByKey(
        options.duplicates, output=options.output, staging_root=staging.root, run_id=staging.run_id,
        reprocessed=plan.reprocessed)
    written = {"rows": accepted, "changes": deduped[CHANGES]} | "WriteTables" >> WriteTables(
        staging.root, staging.run_id, output=options.output, reprocess=plan.removals)
    rejected = validated[REJECTED] | "WriteRejects" >> WriteRejects(staging.root, staging.run_id)
    (
        (validated[COUNTS], deduped[COUNTS], written, rejected)
        | "AllCounts" >> beam.Flatten()
        | "WriteCounts" >> WriteCounts(staging.counts_path)
    )


Progress = Callable[[str], None]  # told each step of a run as it starts ("planning", "pipeline", "committing")


def _quiet(step: str) -> None:
    """The default ``Progress``: says nothing."""


def run(options: RunOptions, beam_args: Sequence[str] = (), progress: Progress = _quiet) -> RunResult:
    """Run the pipeline and commit its output; raises ``RunError`` for what is wrong with the run."""
    started = datetime.now(timezone.utc)
    try:
        config = load_config(options.workstreams)
    except ConfigError as exc:
        raise RunError(str(exc)) from exc
    _check_timezone(options.timezone)
    files = resolve_inputs(options.inputs, options.file_format)
    run_id = options.run_id or f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    try:
        for action in recover(options.output):
            _LOG.warning("%s", action)
    except Exception as exc:
        raise RunError(f"cannot recover the interrupted commit in {options.output}: {exc}") from exc
    progress("planning")
    ledger = Ledger.load(options.output)
    plan = _plan(files, ledger, options.reprocess)
    staging = StagedRun.begin(options.output, run_id)
    pipeline_options = pipeline_options_from(beam_args)
    counts: dict[str, Any] = {}
    if plan.files:
        progress("pipeline")
        try:
            with beam.Pipeline(options=pipeline_options) as pipeline:
                build_pipeline(pipeline, plan, config, options, staging)
            counts = read_json(staging.counts_path)
        except Exception as exc:
            staging.abort()
            raise RunError(f"the pipeline failed, nothing was committed: {exc}") from exc
    manifest = _manifest(run_id, options, plan, counts, started, pipeline_options)
    rate = manifest["counts"]["rejected"] / manifest["counts"]["read"] if manifest["counts"]["read"] else 0.0
    if options.max_reject_rate is not None and rate > options.max_reject_rate:
        staging.abort()
        raise RunError(
            f"reject rate {rate:.4f} ({manifest['counts']['rejected']} of {manifest['counts']['read']}) "
            f"is above --max-reject-rate {options.max_reject_rate}; nothing was committed"
        )
    progress("committing")
    journal = Journal.of_staged(staging, counts, manifest)
    if plan.files:
        partitions = counts.get("file_partitions", {})
        entries = [LedgerEntry(f.path, plan.checksums[f.path], run_id,
                               tuple(sorted({tuple(p) for p in partitions.get(f.path, [])}))) for f in plan.files]
        staged_ledger = FileSystems.join(staging.root, "_ledger", "ledger.json")
        write_json(staged_ledger, ledger.updated(entries))
        journal.moves.append((staged_ledger, ledger.next_path()))
        journal.deletes += ledger.files
    return RunResult(run_id, journal.commit(), manifest)


def _plan(files: Sequence[InputFile], ledger: Ledger, reprocess: bool) -> Plan:
    """Skip files already ingested unchanged; a changed or forced file replaces its earlier rows."""
    checksums = {f.path: file_checksum(f.path) for f in files}
    todo = [f for f in files if reprocess or not ledger.ingested(f.path, checksums[f.path])]
    skipped = tuple(f.path for f in files if f not in todo)
    reprocessed = tuple(f.path for f in todo if f.path in ledger.entries)
    removals: dict[tuple[str, str], list[str]] = {}
    for path in reprocessed:
        for partition in ledger.entries[path].partitions:
            removals.setdefault(tuple(partition), []).append(path)  # type: ignore[arg-type]
    return Plan(tuple(todo), skipped, reprocessed, checksums, removals)


def resolve_inputs(patterns: Sequence[str], file_format: str = "auto") -> list[InputFile]:
    """Every file the patterns match, in SPEC 2.4's order (lexicographic path), numbered."""
    paths: set[str] = set()
    for pattern in patterns:
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception as exc:  # a filesystem's own error for a bad pattern or path
            raise RunError(f"cannot list input {pattern!r}: {exc}") from exc
        paths.update(m.path for m in matched if m.size_in_bytes is not None)
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


def _several_workers(options: PipelineOptions) -> bool:
    """False only for an in-process runner with one worker, where a reshuffle buys nothing."""
    runner = options.view_as(StandardOptions).runner or DEFAULT_RUNNER
    if str(runner) not in ("FnApiRunner", "DirectRunner"):
        return True
    return (options.view_as(DirectOptions).direct_num_workers or 1) > 1


def pipeline_options_from(beam_args: Sequence[str]) -> PipelineOptions:
    """Beam's options from the flags we do not own; the runner defaults to ``DEFAULT_RUNNER``."""
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = DEFAULT_RUNNER
    return options


def _manifest(run_id: str, options: RunOptions, plan: Plan, counts: dict[str, Any],
              started: datetime, pipeline_options: PipelineOptions) -> dict[str, Any]:
    tables = counts.get("tables", {})
    summary = {
        "read": counts.get("read", 0),
        "blank_lines": counts.get("blank_lines", 0),
        "written": counts.get("written", 0),
        "rejected": counts.get("rejected", 0),
        "ignored_duplicates": counts.get("ignored_duplicates", 0),
        "superseded": counts.get("superseded", 0),
        "replaced_existing": counts.get("replaced_existing", 0),
        "rejected_by_code": dict(sorted(counts.get("rejected_by_code", {}).items())),
    }
    summary["reconciles"] = summary["read"] == (
        summary["written"] + summary["rejected"] + summary["ignored_duplicates"] + summary["superseded"]
    )
    return {
        "run_id": run_id,
        "status": "committed",
        "started_at": started.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "inputs": [{"path": f.path, "format": detect_format(f.path, options.file_format),
                    "sha256": plan.checksums[f.path], "reprocessed": f.path in plan.reprocessed} for f in plan.files],
        "failed_inputs": [],
        "skipped_inputs": [{"path": p, "sha256": plan.checksums[p], "reason": "already ingested, unchanged"}
                           for p in plan.skipped],
        "options": {**asdict(options), "inputs": list(options.inputs),
                    "runner": pipeline_options.view_as(StandardOptions).runner},
        "counts": summary,
        "tables": {name: {"rows": 0, "files": 0, **tables.get(name, {})}
                   for name in ("task_completed", "throughput_daily", "rejects")},
        "files_added": len(counts.get("staged_files", [])),
        "files_retired": len(set(counts.get("retired_files", []))),
    }


if __name__ == "__main__":  # python -m pipelines.run: the same as `throughput run`
    from pipelines.cli import run_main

    sys.exit(run_main())
