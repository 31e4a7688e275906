"""Run the pipeline, the DuckDB reference and the polars reference side by side and print a comparison table.

    python -m benchmarks.run --sizes 200000 1000000 --formats jsonl csv --repeats 3

For each (size, format) the data is generated once into ``benchmarks/data/<size>-<format>/`` (kept
between invocations; regenerated when its expected.json does not match the size and seed). Then the
engines run in paired rounds: every round runs each engine once, in an order rotated from round to
round (pipeline, duckdb, polars; then duckdb, polars, pipeline; ...) so that drift in the machine's
state (page cache, neighbours) hits every engine alike. Each run is a fresh subprocess writing into a
fresh output directory, and is measured:

* wall time of the subprocess, interpreter start and imports included;
* CPU time (user + sys) of the subprocess and every descendant it waited for, from
  ``resource.getrusage(RUSAGE_CHILDREN)`` deltas;
* peak memory of the whole process tree: the sum of the RSS of the child and all its descendants
  (Beam may start worker processes), polled from ``/proc`` every 50 ms.

Every run's manifest is checked against the generator's expected counts (column ``ok``). The table
(medians over the repeats, and each engine's wall time over the fastest peer's) is printed and
written to ``benchmarks/results/latest.md``.

``--workers 1 2`` runs the pipeline once per worker count in each round: 1 adds
``--direct_num_workers=1`` (Beam's in-process runner), N > 1 adds ``--direct_num_workers=N
--direct_running_mode=multi_processing``, and 0 (the default) adds nothing: the pipeline's own
choice, one worker per core for an input large enough (``pipelines.run.default_workers``).
The tables each worker count wrote are fingerprinted (row count and an order-independent hash of
every row, run_id left out) and must be identical.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PAGE = os.sysconf("SC_PAGE_SIZE")
ENGINES = ("pipeline", "duckdb", "polars")
PEERS = ("duckdb", "polars")
MODULES = {"duckdb": "benchmarks.reference_duckdb", "polars": "benchmarks.reference_polars"}


@dataclass
class Sample:
    wall: float
    cpu: float
    peak_rss: int
    ok: bool
    fingerprint: dict[str, tuple] = field(default_factory=dict)


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def tree_rss(root: int) -> int:
    """Bytes resident in ``root`` and all its descendants right now."""
    children = _children_map()
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                total += int(handle.read().split()[1]) * PAGE
        except OSError:
            pass
    return total


def measure(command: list[str], log: Path, interval: float = 0.05) -> tuple[float, float, int, int]:
    """Run ``command``; (wall seconds, CPU seconds of the tree, peak tree RSS bytes, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        peak = 0
        done = threading.Event()

        def poll() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss(process.pid))
                done.wait(interval)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        code = process.wait()
        wall = time.perf_counter() - start
        done.set()
        poller.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, peak, code


def ensure_data(size: int, fmt: str, seed: int, data_root: Path) -> Path:
    folder = data_root / f"{size}-{fmt}"
    expected = folder / "expected.json"
    if expected.exists():
        known = json.loads(expected.read_text())
        if known.get("records") == size and known.get("seed") == seed and known.get("format") == fmt:
            return folder
    print(f"generating {size} {fmt} records into {folder} ...", flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmarks.generate", "--records", str(size), "--format", fmt,
                    "--out", str(folder), "--seed", str(seed)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    print(f"  generated in {time.perf_counter() - started:.1f} s", flush=True)
    return folder


def engine_label(engine: str, workers: int) -> str:
    if engine != "pipeline" or workers == 0:
        return engine
    return f"pipeline ({workers} worker{'s' if workers > 1 else ''})"


def worker_args(workers: int) -> list[str]:
    """Beam flags for ``workers`` pipeline workers: none for 0 (the pipeline's default)."""
    if workers == 0:
        return []
    if workers == 1:
        return ["--direct_num_workers=1"]
    return [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]


def command_for(engine: str, workers: int, folder: Path, fmt: str, out: Path, args: argparse.Namespace) -> list[str]:
    pattern = str(folder / f"part-*.{fmt}")
    workstreams = str(folder / "workstreams.json")
    if engine == "pipeline":
        return [sys.executable, "-m", "pipelines.run", "--input", pattern, "--output", str(out),
                "--workstreams", workstreams, *worker_args(workers), *args.pipeline_arg]
    extra = args.duckdb_arg if engine == "duckdb" else args.polars_arg
    return [sys.executable, "-m", MODULES[engine], "--input", pattern, "--output", str(out),
            "--workstreams", workstreams, *extra]


def _manifest_ok(out: Path, expected: dict) -> bool:
    runs = sorted((out / "_runs").glob("*.json")) if (out / "_runs").exists() else []
    if len(runs) != 1:
        return False
    counts = json.loads(runs[0].read_text())["counts"]
    keys = ("read", "written", "rejected", "superseded", "ignored_duplicates")
    return all(counts.get(k) == expected[k] for k in keys) and counts.get("rejected_by_code") == expected["rejected_by_code"]


def fingerprint(out: Path) -> dict[str, tuple]:
    """Per table: (rows, order-independent hash of the rows without run_id): equal tables, equal prints."""
    import duckdb

    prints = {}
    for table in ("task_completed", "throughput_daily", "rejects"):
        files = out / table / "**" / "*.parquet"
        if not any((out / table).rglob("*.parquet")):
            prints[table] = (0, 0)
            continue
        source = f"read_parquet('{files}', hive_partitioning = {'false' if table == 'rejects' else 'true'})"
        con = duckdb.connect()
        names = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall() if r[0] != "run_id"]
        row = ", ".join(f'"{n}"' for n in names)
        prints[table] = con.execute(f"SELECT count(*), coalesce(bit_xor(hash({row})), 0) FROM {source}").fetchone()
        con.close()
    return prints


def _mib(value: float) -> str:
    return f"{value / (1 << 20):,.0f}"


def table(results: dict[tuple[int, str, str], list[Sample]]) -> str:
    lines = ["| case | engine | records/s | wall s (median) | CPU s (median) | peak RSS MiB (median) "
             "| wall / fastest peer | runs ok |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for (size, fmt, engine), samples in results.items():
        wall = statistics.median(s.wall for s in samples)
        cpu = statistics.median(s.cpu for s in samples)
        rss = statistics.median(s.peak_rss for s in samples)
        peers = [statistics.median(s.wall for s in results[(size, fmt, p)]) for p in PEERS if (size, fmt, p) in results]
        ratio = f"{wall / min(peers):.2f}x" if peers else "-"
        ok = f"{sum(s.ok for s in samples)}/{len(samples)}"
        lines.append(f"| {size:,} {fmt} | {engine} | {size / wall:,.0f} | {wall:.2f} | {cpu:.2f} | {_mib(rss)} "
                     f"| {ratio} | {ok} |")
    return "\n".join(lines)


def workers_check(results: dict[tuple[int, str, str], list[Sample]], workers: list[int]) -> tuple[str, bool]:
    """Whether every pipeline run of a case, whatever its worker count, wrote the same tables."""
    if len(workers) < 2:
        return "", True
    lines, same_everywhere = [], True
    cases = sorted({(size, fmt) for size, fmt, _ in results})
    for size, fmt in cases:
        prints = [s.fingerprint for w in workers for s in results.get((size, fmt, engine_label("pipeline", w)), [])
                  if s.fingerprint]
        same = len(prints) > 1 and all(p == prints[0] for p in prints)
        same_everywhere &= same
        rows = ", ".join(f"{t} {n:,} rows" for t, (n, _) in prints[0].items()) if prints else "no output"
        lines.append(f"* {size:,} {fmt}: {len(prints)} pipeline runs with {' and '.join(map(str, workers))} workers: "
                     f"tables {'identical' if same else 'DIFFERENT'} ({rows})")
    return "\n".join(lines), same_everywhere


def _environment(args: argparse.Namespace) -> str:
    versions = []
    for name in ("apache_beam", "duckdb", "polars", "pyarrow"):
        try:
            versions.append(f"{name} {__import__(name).__version__}")
        except Exception:  # noqa: BLE001 - only for the report
            versions.append(f"{name} ?")
    load = os.getloadavg()[0]
    return (f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {platform.node()}: {os.cpu_count()} CPUs, "
            f"1-minute load {load:.2f} at the end; Python {platform.python_version()}, {', '.join(versions)}; "
            f"repeats {args.repeats}, seed {args.seed}, pipeline workers {args.workers}; "
            f"extra args: pipeline {args.pipeline_arg or '-'}, DuckDB {args.duckdb_arg or '-'}, polars {args.polars_arg or '-'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000])
    parser.add_argument("--formats", nargs="+", choices=("jsonl", "csv"), default=["jsonl", "csv"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--workers", type=int, nargs="+", default=[0],
                        help="pipeline worker counts to run in each round, e.g. --workers 1 2; "
                             "0 is the pipeline's default (one per core for a large enough input)")
    parser.add_argument("--data-dir", type=Path, default=BENCH / "data")
    parser.add_argument("--results", type=Path, default=BENCH / "results" / "latest.md")
    parser.add_argument("--pipeline-arg", action="append", default=[],
                        help="extra argument for the pipeline, e.g. --pipeline-arg=--max-reject-rate=0.5")
    parser.add_argument("--duckdb-arg", action="append", default=[],
                        help="extra argument for the DuckDB reference, e.g. --duckdb-arg=--threads=1")
    parser.add_argument("--polars-arg", action="append", default=[],
                        help="extra argument for the polars reference, e.g. --polars-arg=--threads=1")
    parser.add_argument("--keep-output", action="store_true", help="keep each run's output directory")
    args = parser.parse_args(argv)
    if any(w < 0 for w in args.workers):
        parser.error("--workers takes counts >= 0")

    runs = [(engine, w) for engine in args.engines for w in (args.workers if engine == "pipeline" else [1])]
    results: dict[tuple[int, str, str], list[Sample]] = {}
    for size in args.sizes:
        for fmt in args.formats:
            folder = ensure_data(size, fmt, args.seed, args.data_dir)
            expected = json.loads((folder / "expected.json").read_text())
            for repeat in range(args.repeats):
                shift = repeat % len(runs)
                for engine, workers in runs[shift:] + runs[:shift]:
                    label = engine_label(engine, workers)
                    slug = label.replace(" ", "").replace("(", "-").replace(")", "")
                    out = args.data_dir / "runs" / f"{size}-{fmt}-{slug}-{repeat}"
                    shutil.rmtree(out, ignore_errors=True)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    log = out.with_suffix(".log")
                    wall, cpu, peak, code = measure(command_for(engine, workers, folder, fmt, out, args), log)
                    ok = code == 0 and _manifest_ok(out, expected)
                    prints = fingerprint(out) if engine == "pipeline" and len(args.workers) > 1 and ok else {}
                    results.setdefault((size, fmt, label), []).append(Sample(wall, cpu, peak, ok, prints))
                    print(f"{size:>9,} {fmt:5} {label:22} run {repeat + 1}: wall {wall:7.2f} s  cpu {cpu:7.2f} s  "
                          f"peak {_mib(peak):>6} MiB  {'ok' if ok else f'FAILED (exit {code}, see {log})'}",
                          flush=True)
                    if not args.keep_output:
                        shutil.rmtree(out, ignore_errors=True)
    report = table(results)
    check, same = workers_check(results, args.workers)
    title = "# Benchmark: pipeline vs DuckDB and polars references"
    header = f"{title}\n\n{_environment(args)}\n\n"
    print()
    print(report)
    if check:
        print()
        print(check)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(header + report + "\n" + (f"\n{check}\n" if check else ""))
    print(f"\nwritten to {args.results}")
    return 0 if same and all(s.ok for samples in results.values() for s in samples) else 1


if __name__ == "__main__":
    sys.exit(main())
