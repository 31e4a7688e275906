"""What the two reference jobs (``reference_duckdb``, ``reference_polars``) share: the contract's
fields, how a file's format and path workstream are read, and their command line.

The peers stay independent of the pipeline's own code (they are the job as an analyst writes
it), so these are written here once rather than imported from ``schemas``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

__all__ = ["FIELDS", "detect_format", "main", "path_workstream"]

FIELDS = (
    "workstream_id", "worker_id", "task_id", "task_url", "task_count", "subtask_count", "use_case_id",
    "task_definition_id", "task_started_at", "task_completed_at", "duration", "task_created_at",
    "data_source", "task_metadata", "task_measurements", "dataset_id", "asset_id", "unique_id",
    "replace_duplicate", "received_at",
)
_PATH_WS = re.compile(r"(?:^|/)workstream_id=([^/]+)/")


def detect_format(path: str, requested: str) -> str:
    """``jsonl`` or ``csv``: as requested, else from the file's extension."""
    if requested in ("jsonl", "csv"):
        return requested
    name = path.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    raise SystemExit(f"cannot tell the format of {path} from its extension; pass --format")


def path_workstream(path: str) -> str | None:
    """The ``workstream_id=<id>`` segment of a file's path (SPEC 2.3), as the pipeline reads it."""
    found = _PATH_WS.findall(path.replace("\\", "/"))
    return (unquote(found[-1]).strip() or None) if found else None


def main(argv: list[str] | None, prog: str, description: str, label: str,
         run: Callable[[argparse.Namespace], dict[str, Any]],
         add_engine_options: Callable[[argparse.ArgumentParser], None]) -> int:
    """A peer's command line: the pipeline's options it supports, its own (``add_engine_options``),
    then ``run(args)`` and a summary of the manifest it returns."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--input", dest="inputs", action="append", required=True, metavar="GLOB")
    parser.add_argument("--workstreams", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--format", dest="file_format", choices=("auto", "jsonl", "csv"), default="auto")
    parser.add_argument("--duplicates", choices=("per-record", "replace", "keep-first"), default="per-record")
    parser.add_argument("--run-id")
    parser.add_argument("--max-record-bytes", type=int, default=1 << 20)
    add_engine_options(parser)
    manifest = run(parser.parse_args(argv))
    c = manifest["counts"]
    print(f"{label} run {manifest['run_id']}: read {c['read']} written {c['written']} rejected {c['rejected']} "
          f"superseded {c['superseded']} ignored duplicates {c['ignored_duplicates']} (blank lines {c['blank_lines']})")
    print("  rejects: " + ", ".join(f"{k} {v}" for k, v in c["rejected_by_code"].items()))
    return 0
