"""Incremental cost and bounded-memory backfill (issue: incremental tables, points 5 and 6).

    python -m benchmarks.incremental --base-records 5000000 --night-records 100000 --repeats 3

1. Generates (once, kept under ``benchmarks/data/``) a CSV history of ``--base-records`` records
   and ``--repeats`` nightly JSONL files of ``--night-records`` records each (other seeds: new
   unique ids, the same 30 days and workstreams, so a night touches every partition — the
   worst case for a rewrite-per-partition design), each with 2% late corrections of the
   history's keys (``replace_duplicate: true``), so earlier rows are replaced too.
2. Backfills the history into a table with ``throughput backfill`` and reports its wall time
   and the peak memory of the whole process tree (point 6: under 2 GB).
3. For each night, alternately, runs it into an empty folder and into (a copy of) the big table,
   and reports the medians and their ratio (point 5: at most 2x).

Writes the table to ``benchmarks/results/incremental.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
from pathlib import Path

from benchmarks.run import BENCH, measure

__all__ = ["main"]


def _generate(records: int, fmt: str, seed: int, folder: Path, config_seed: int = 7) -> Path:
    if not (folder / "expected.json").exists():
        print(f"generating {records} {fmt} records into {folder} ...", flush=True)
        code = measure([sys.executable, "-m", "benchmarks.generate", "--records", str(records), "--format", fmt,
                        "--out", str(folder), "--seed", str(seed), "--config-seed", str(config_seed),
                        "--no-too-large"], folder.with_suffix(".log"))[3]
        if code:
            raise SystemExit(f"generation failed, see {folder.with_suffix('.log')}")
    return folder


def _add_corrections(base: Path, night: Path, count: int) -> None:
    """Late corrections of the history (replace_duplicate true): rows of earlier runs get replaced."""
    target = night / "part-99999-corrections.jsonl"
    target.unlink(missing_ok=True)
    if not count:
        return
    with open(sorted(base.glob("part-*.csv"))[-1], newline="", encoding="utf-8", errors="replace") as handle:
        rows = [r for r in csv.DictReader(handle) if (r.get("unique_id") or "").strip()]
    step = max(1, len(rows) // count)
    with open(target, "w", encoding="utf-8") as out:
        for row in rows[::step][:count]:
            body = {k: v for k, v in row.items() if k and v not in ("", None)}
            body.update(replace_duplicate=True, duration="1.5")
            out.write(json.dumps(body) + "\n")


def _throughput(command: str, inputs: str, workstreams: Path, output: Path, log: Path, *extra: str):
    args = [sys.executable, "-m", "pipelines.cli", command, "--input", inputs, "--output", str(output),
            "--workstreams", str(workstreams), *extra]
    wall, cpu, peak, code = measure(args, log)
    if code:
        raise SystemExit(f"{command} failed ({code}), see {log}")
    return wall, cpu, peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.incremental")
    parser.add_argument("--base-records", type=int, default=5_000_000)
    parser.add_argument("--night-records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--corrections", type=float, default=2.0,
                        help="percent of a night's records that correct earlier rows (0: pure additions)")
    parser.add_argument("--data-dir", type=Path, default=BENCH / "data")
    parser.add_argument("--results", type=Path, default=BENCH / "results" / "incremental.md")
    args = parser.parse_args(argv)
    data = args.data_dir
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    base = _generate(args.base_records, "csv", 7, data / f"inc-base-{args.base_records}-csv")
    corrections = int(args.night_records * args.corrections / 100)
    nights = [_generate(args.night_records, "jsonl", 100 + i, data / f"inc-night-{args.night_records}-{i}")
              for i in range(args.repeats)]
    workstreams = base / "workstreams.json"

    table = data / f"inc-table-{args.base_records}"
    backfill = None
    if not (table / "_ledger").exists():
        shutil.rmtree(table, ignore_errors=True)
        print("backfilling the history ...", flush=True)
        backfill = _throughput("backfill", str(base / "part-*.csv"), workstreams, table, logs / "backfill.log")
        print(f"  backfill: {backfill[0]:.1f} s wall, {backfill[2] / 2**20:.0f} MiB peak", flush=True)

    empty_walls, big_walls, big_peaks = [], [], []
    for i, night in enumerate(nights):
        _add_corrections(base, night, corrections)
        inputs = str(night / "part-*.jsonl")
        empty = data / "inc-run-empty"
        shutil.rmtree(empty, ignore_errors=True)
        wall, _, _ = _throughput("run", inputs, workstreams, empty, logs / f"empty-{i}.log")
        empty_walls.append(wall)
        big = data / "inc-run-big"
        shutil.rmtree(big, ignore_errors=True)
        shutil.copytree(table, big)
        wall, _, peak = _throughput("run", inputs, workstreams, big, logs / f"big-{i}.log")
        big_walls.append(wall)
        big_peaks.append(peak)
        print(f"  night {i}: into empty {empty_walls[-1]:.1f} s, into {args.base_records} rows {wall:.1f} s",
              flush=True)

    empty_median, big_median = statistics.median(empty_walls), statistics.median(big_walls)
    lines = [
        "| case | wall median (s) | runs | peak memory (MiB) |",
        "|---|---:|---:|---:|",
        f"| {args.night_records} records into an empty table | {empty_median:.1f} | {len(empty_walls)} | |",
        f"| {args.night_records} records ({args.corrections:g}% correcting earlier rows) into {args.base_records} rows "
        f"| {big_median:.1f} | {len(big_walls)} "
        f"| {statistics.median(big_peaks) / 2**20:.0f} |",
        f"| ratio | {big_median / empty_median:.2f}x | | |",
    ]
    if backfill is not None:
        lines.append(f"| backfill of {args.base_records} CSV records | {backfill[0]:.1f} | 1 | {backfill[2] / 2**20:.0f} |")
    report = "\n".join(lines)
    print(report)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(report + "\n")
    print(f"written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
