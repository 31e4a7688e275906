"""Run the pipeline and the DuckDB reference side by side and print a comparison table.

    python -m benchmarks.run --sizes 200000 1000000 --formats jsonl csv --repeats 3

For each (size, format) the data is generated once into ``benchmarks/data/<size>-<format>/`` (kept
between invocations; regenerated when its expected.json does not match the size and seed). Then
the two engines run alternately (pipeline, DuckDB, DuckDB, pipeline, ... so drift in the machine's
state hits both), each in a fresh subprocess writing into a fresh output directory, and each run
is measured:

* wall time of the subprocess, interpreter start and imports included;
* CPU time (user + sys) of the subprocess and every descendant it waited for, from
  ``resource.getrusage(RUSAGE_CHILDREN)`` deltas;
* peak memory of the whole process tree: the sum of the RSS of the child and all its descendants
  (Beam may start worker processes), polled from ``/proc`` every 50 ms.

Every run's manifest is checked against the generator's expected counts (column ``ok``). The table
(medians over the repeats) is printed and written to ``benchmarks/results/latest.md``.
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
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PAGE = os.sysconf("SC_PAGE_SIZE")
ENGINES = ("pipeline", "duckdb")


@dataclass
class Sample:
    wall: float
    cpu: float
    peak_rss: int
    ok: bool


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


def _command(engine: str, folder: Path, fmt: str, out: Path, pipeline_args: list[str], duckdb_args: list[str]) -> list[str]:
    pattern = str(folder / f"part-*.{fmt}")
    workstreams = str(folder / "workstreams.json")
    if engine == "pipeline":
        return [sys.executable, "-m", "pipelines.run", "--input", pattern, "--output", str(out),
                "--workstreams", workstreams, *pipeline_args]
    return [sys.executable, "-m", "benchmarks.reference_duckdb", "--input", pattern, "--output", str(out),
            "--workstreams", workstreams, *duckdb_args]


def _manifest_ok(out: Path, expected: dict) -> bool:
    runs = sorted((out / "_runs").glob("*.json")) if (out / "_runs").exists() else []
    if len(runs) != 1:
        return False
    counts = json.loads(runs[0].read_text())["counts"]
    keys = ("read", "written", "rejected", "superseded", "ignored_duplicates")
    return all(counts.get(k) == expected[k] for k in keys) and counts.get("rejected_by_code") == expected["rejected_by_code"]


def _mib(value: float) -> str:
    return f"{value / (1 << 20):,.0f}"


def table(results: dict[tuple[int, str, str], list[Sample]]) -> str:
    lines = ["| case | engine | records/s | wall s (median) | CPU s (median) | peak RSS MiB (median) "
             "| wall / DuckDB | runs ok |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for (size, fmt, engine), samples in results.items():
        wall = statistics.median(s.wall for s in samples)
        cpu = statistics.median(s.cpu for s in samples)
        rss = statistics.median(s.peak_rss for s in samples)
        duck = results.get((size, fmt, "duckdb"))
        ratio = wall / statistics.median(s.wall for s in duck) if duck else float("nan")
        ok = f"{sum(s.ok for s in samples)}/{len(samples)}"
        lines.append(f"| {size:,} {fmt} | {engine} | {size / wall:,.0f} | {wall:.2f} | {cpu:.2f} | {_mib(rss)} "
                     f"| {ratio:.1f}x | {ok} |")
    return "\n".join(lines)


def _environment(args: argparse.Namespace) -> str:
    import duckdb

    try:
        import apache_beam

        beam = apache_beam.__version__
    except Exception:  # noqa: BLE001 - only for the report
        beam = "?"
    return (f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {platform.node()}: {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, Beam {beam}, DuckDB {duckdb.__version__}; "
            f"repeats {args.repeats}, seed {args.seed}; pipeline args {args.pipeline_arg or '(defaults)'}; "
            f"DuckDB args {args.duckdb_arg or '(defaults)'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000])
    parser.add_argument("--formats", nargs="+", choices=("jsonl", "csv"), default=["jsonl", "csv"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--data-dir", type=Path, default=BENCH / "data")
    parser.add_argument("--results", type=Path, default=BENCH / "results" / "latest.md")
    parser.add_argument("--pipeline-arg", action="append", default=[],
                        help="extra argument for the pipeline, e.g. --pipeline-arg=--direct_num_workers=2")
    parser.add_argument("--duckdb-arg", action="append", default=[],
                        help="extra argument for the reference, e.g. --duckdb-arg=--threads=1")
    parser.add_argument("--keep-output", action="store_true", help="keep each run's output directory")
    args = parser.parse_args(argv)

    results: dict[tuple[int, str, str], list[Sample]] = {}
    for size in args.sizes:
        for fmt in args.formats:
            folder = ensure_data(size, fmt, args.seed, args.data_dir)
            expected = json.loads((folder / "expected.json").read_text())
            for repeat in range(args.repeats):
                order = list(args.engines) if repeat % 2 == 0 else list(reversed(args.engines))
                for engine in order:
                    out = args.data_dir / "runs" / f"{size}-{fmt}-{engine}-{repeat}"
                    shutil.rmtree(out, ignore_errors=True)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    log = out.with_suffix(".log")
                    command = _command(engine, folder, fmt, out, args.pipeline_arg, args.duckdb_arg)
                    wall, cpu, peak, code = measure(command, log)
                    ok = code == 0 and _manifest_ok(out, expected)
                    results.setdefault((size, fmt, engine), []).append(Sample(wall, cpu, peak, ok))
                    print(f"{size:>9,} {fmt:5} {engine:8} run {repeat + 1}: wall {wall:7.2f} s  cpu {cpu:7.2f} s  "
                          f"peak {_mib(peak):>6} MiB  {'ok' if ok else f'FAILED (exit {code}, see {log})'}",
                          flush=True)
                    if not args.keep_output:
                        shutil.rmtree(out, ignore_errors=True)
    report = table(results)
    header = f"# Benchmark: pipeline vs DuckDB reference\n\n{_environment(args)}\n\n"
    print()
    print(report)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(header + report + "\n")
    print(f"\nwritten to {args.results}")
    return 0 if all(s.ok for samples in results.values() for s in samples) else 1


if __name__ == "__main__":
    sys.exit(main())
