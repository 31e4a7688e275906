"""The ``throughput`` command: ``run`` (SPEC 6), ``backfill`` and ``compact``.

Parsing and printing live here; the jobs themselves are ``pipelines.run.run``,
``pipelines.maintenance.backfill`` and ``pipelines.maintenance.compact``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

# Importing Beam logs a warning about Google Cloud client libraries that a local run never
# uses; keep it off the operator's screen (main() sets up logging for our own messages).
logging.getLogger().setLevel(logging.ERROR)

from pipelines.commit import RunError  # noqa: E402 - after quieting Beam's import-time warning
from pipelines.maintenance import backfill, compact  # noqa: E402
from pipelines.run import RunOptions, RunResult, run  # noqa: E402
from schemas.tables import TASK_COMPLETED, THROUGHPUT_DAILY  # noqa: E402
from transforms.dedupe import DUPLICATE_POLICIES  # noqa: E402

__all__ = ["backfill_main", "compact_main", "format_summary", "main", "parse_args", "run_main"]

def parse_args(argv: Sequence[str] | None = None, prog: str = "throughput run") -> tuple[RunOptions, list[str]]:
    """Our typed flags, and the rest for Beam's PipelineOptions."""
    parser = argparse.ArgumentParser(
        prog=prog, description="task_completed files in, validated and deduplicated Parquet tables out")
    parser.add_argument("--input", dest="inputs", action="append", required=True, metavar="PATTERN",
                        help="input file or glob (local, gs://, s3://); repeatable")
    parser.add_argument("--output", required=True, metavar="DIR", help="output directory of the tables")
    parser.add_argument("--workstreams", required=True, metavar="FILE", help="workstream configuration (JSON or YAML)")
    parser.add_argument("--workstream-id", metavar="ID", help="workstream of records that name none (SPEC 2.3)")
    parser.add_argument("--format", dest="file_format", choices=("auto", "jsonl", "csv"), default="auto")
    parser.add_argument("--timezone", default="UTC", metavar="TZ", help="zone of datetimes without an offset")
    parser.add_argument("--duplicates", choices=DUPLICATE_POLICIES, default="per-record")
    parser.add_argument("--run-id", metavar="ID")
    parser.add_argument("--max-reject-rate", type=_fraction, metavar="FRACTION",
                        help="fail the run when rejected/read is above this")
    parser.add_argument("--max-record-bytes", type=int, default=1 << 20, metavar="N")
    parser.add_argument("--reprocess", action="store_true",
                        help="ingest files again even if the ledger has them; their earlier rows are replaced")
    parser.add_argument("--chunk-records", type=int, default=20_000, metavar="N",
                        help="records per batch between stages")
    known, beam_args = parser.parse_known_args(argv)
    return RunOptions(**{**vars(known), "inputs": tuple(known.inputs)}), beam_args


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def format_summary(result: RunResult) -> str:
    """The few lines an operator reads at the end of a run."""
    counts = result.manifest["counts"]
    tables = result.manifest["tables"]
    lines = [
        f"run {result.run_id}: committed",
        f"  read {counts['read']}  written {counts['written']}  rejected {counts['rejected']}  "
        f"superseded {counts['superseded']}  ignored duplicates {counts['ignored_duplicates']}  "
        f"(blank lines {counts['blank_lines']})",
        f"  replaced rows of earlier runs {counts['replaced_existing']}",
    ]
    if result.manifest["skipped_inputs"]:
        lines.append(f"  skipped {len(result.manifest['skipped_inputs'])} file(s) already ingested unchanged "
                     "(--reprocess to ingest them again)")
    if counts["rejected_by_code"]:
        lines.append("  rejects: " + ", ".join(f"{code} {n}" for code, n in counts["rejected_by_code"].items()))
    lines.append("  tables: " + ", ".join(f"{name} {t['rows']} rows" for name, t in tables.items()))
    lines.append(f"  output: {result.manifest['options']['output']}  manifest: {result.manifest_path}")
    return "\n".join(lines)



def run_main(argv: Sequence[str] | None = None) -> int:
    """``throughput run``: exit 0 when the run committed, 1 when the run failed."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    options, beam_args = parse_args(argv)
    try:
        result = run(options, beam_args)
    except RunError as exc:
        print(f"throughput: run failed: {exc}", file=sys.stderr)
        return 1
    print(format_summary(result))
    return 0



def backfill_main(argv: Sequence[str]) -> int:
    """``throughput backfill``: the options of ``run`` plus ``--chunk-bytes``."""
    chunker = argparse.ArgumentParser(add_help=False)
    chunker.add_argument("--chunk-bytes", type=int, default=256 << 20)
    chunking, rest = chunker.parse_known_args(argv)
    options, beam_args = parse_args(rest, prog="throughput backfill")
    try:
        results = backfill(options, beam_args, chunking.chunk_bytes)
    except RunError as exc:
        print(f"throughput: backfill stopped: {exc}\n(run the same command again to resume)", file=sys.stderr)
        return 1
    for result in results:
        print(format_summary(result))
    return 0


def compact_main(argv: Sequence[str]) -> int:
    """``throughput compact --output DIR [--table NAME]``."""
    parser = argparse.ArgumentParser(prog="throughput compact")
    parser.add_argument("--output", required=True, metavar="DIR")
    parser.add_argument("--table", choices=("task_completed", "throughput_daily", "all"), default="all")
    known, beam_args = parser.parse_known_args(argv)
    tables = [t for t in (TASK_COMPLETED, THROUGHPUT_DAILY) if known.table in ("all", t.name)]
    try:
        manifest = compact(known.output, tables, beam_args)
    except RunError as exc:
        print(f"throughput: compaction failed: {exc}", file=sys.stderr)
        return 1
    print(f"compaction {manifest['run_id']}: {manifest['partitions_compacted']} partition(s), "
          f"{manifest['files_retired']} file(s) merged, {manifest['rows']} rows unchanged")
    return 0


_COMMANDS = {"run": run_main, "backfill": backfill_main, "compact": compact_main}
_USAGE = """usage: throughput run --input PATTERN --output DIR --workstreams FILE [options] [beam options]
       throughput backfill --input PATTERN --output DIR --workstreams FILE [--chunk-bytes N] [options]
       throughput compact --output DIR [--table task_completed|throughput_daily|all]"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE)
        print("  throughput <command> --help   lists a command's options")
        return 0 if args else 2
    command = _COMMANDS.get(args[0])
    if command is None:
        print(f"throughput: unknown command {args[0]!r}\n{_USAGE}", file=sys.stderr)
        return 2
    return command(args[1:])


if __name__ == "__main__":
    sys.exit(main())
