"""Load benchmark of the intake server (``throughput serve``), checked end to end by the pipeline.

    .venv/bin/python -m benchmarks.intake_load --repeats 3 --duration 10

1. Starts ``python -m intake serve`` (``--workers`` processes, access log to a file) on a free
   port of 127.0.0.1, with a fresh configuration and API key.
2. Single records: ``--connections`` concurrent connections (64) of distinct single-record POSTs
   (the seed's example body, each with its own ``unique_id``) for ``--duration`` seconds, with
   ``wrk`` and a Lua script when ``wrk`` is installed (``apt-get install wrk``), else an asyncio
   httpx client. Reports 202s per second, p50 and p99 latency, and answers other than 202.
3. Batches: ``--batch-connections`` connections posting JSON-lines batches of ``--batch-size``
   distinct bodies; reports records accepted per second.
4. Stops the server (SIGTERM: files closed into place), runs the pipeline over
   ``LANDING/**/*.jsonl`` and checks that ``task_completed`` holds exactly one row per record the
   server answered 202 for (its own count, from /metrics: a load tool that stops at a deadline
   does not read the answers of the requests still in flight) and that every ``unique_id`` is
   there once.

Each measurement is repeated ``--repeats`` times; the table shows every run and the median.
The load tool shares the machine with the server. Each run also shows how many cores *other*
processes used meanwhile (the machine's busy time from /proc/stat, less the server's and the
load tool's own), so a run disturbed by other work can be told apart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intake.openapi import SEED_EXAMPLE

ROOT = Path(__file__).resolve().parent.parent
WORKSTREAM = "ws-ner"
USE_CASE = "305ea07b-1d24-4f8f-8e1d-aae27cb07840"
TASK_DEFINITION = "4ed59e6b-bf4b-4f33-a1dc-4015d63eef59"
SEED_BODY: dict[str, Any] = {**SEED_EXAMPLE, "unique_id": "UNIQUE"}  # unique_id is varied per request
SINGLE_PATH = f"/v1/workstreams/{WORKSTREAM}/task_completed"
BATCH_PATH = f"{SINGLE_PATH}/batch"

# wrk scripts: each thread numbers its requests under a prefix of its own, so every body is
# distinct across threads, runs and repeats; done() prints the summary as one JSON line.
_LUA_COMMON = r"""
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  prefix = args[1] .. "-" .. tid
end
wrk.method = "POST"
wrk.headers["x-api-key"] = "__KEY__"
local template = '__TEMPLATE__'
function done(summary, latency, requests)
  io.write(string.format('WRK_SUMMARY {"requests": %d, "duration_us": %d, "non_2xx": %d, "connect": %d, ' ..
    '"read": %d, "write": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""
_LUA_SINGLE = _LUA_COMMON + r"""
wrk.headers["Content-Type"] = "application/json"
function request()
  counter = counter + 1
  return wrk.format(nil, "__PATH__", nil, string.format(template, prefix .. "-" .. counter))
end
"""
_LUA_BATCH = _LUA_COMMON + r"""
wrk.headers["Content-Type"] = "application/x-ndjson"
local size = __SIZE__
function request()
  local parts = {}
  for i = 1, size do
    counter = counter + 1
    parts[i] = string.format(template, prefix .. "-" .. counter)
  end
  return wrk.format(nil, "__PATH__", nil, table.concat(parts, "\n"))
end
"""


@dataclass
class Measurement:
    """One load run: answers per second, latency, and what was not a 202."""

    per_second: float
    p50_ms: float
    p99_ms: float
    answered: int
    non_202: int
    errors: int
    seconds: float
    others_cpu: float = 0.0  # CPU used meanwhile by processes other than the server and the load tool, in cores


def _template() -> str:
    text = json.dumps(SEED_BODY, separators=(",", ":"))
    return text.replace("%", "%%").replace('"UNIQUE"', '"%s"')


def _lua(kind: str, key: str, batch_size: int) -> str:
    script = _LUA_SINGLE if kind == "single" else _LUA_BATCH
    return (script.replace("__KEY__", key).replace("__TEMPLATE__", _template())
            .replace("__PATH__", SINGLE_PATH if kind == "single" else BATCH_PATH).replace("__SIZE__", str(batch_size)))


_TICKS = os.sysconf("SC_CLK_TCK")


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / _TICKS  # all but idle and iowait


def _tree_seconds(root: int) -> float:
    """CPU seconds used so far by a process and its descendants (the server's supervisor and workers)."""
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        used[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICKS
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(used.get(pid, 0.0) for pid in tree)


class _Others:
    """How much CPU everything but the server and the load tool used during a run (a noisy machine)."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.busy = _busy_seconds()
        self.server = _tree_seconds(server_pid)
        self.children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.started = time.monotonic()

    def cores(self) -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        tool = (children.ru_utime - self.children.ru_utime) + (children.ru_stime - self.children.ru_stime)
        server = _tree_seconds(self.server_pid) - self.server
        others = _busy_seconds() - self.busy - server - tool
        return max(0.0, others / (time.monotonic() - self.started))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    def __init__(self, work: Path, workers: int, key_digest: str) -> None:
        self.work = work
        self.landing = work / "landing"
        self.config = work / "workstreams.json"
        self.config.write_text(json.dumps({"workstreams": [{
            "id": WORKSTREAM, "use_cases": [{"id": USE_CASE, "task_definitions": [TASK_DEFINITION]}],
            "api_key_sha256": [key_digest]}]}))
        self.port = _free_port()
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        import httpx

        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with (self.work / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "intake", "serve", "--landing", str(self.landing), "--workstreams",
                 str(self.config), "--port", str(self.port), "--workers", str(self.workers),
                 "--access-log", str(self.work / "access.log")],
                cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited {self.process.returncode}; see {self.work / 'server.log'}")
            try:
                if httpx.get(self.url("/healthz"), timeout=1).status_code == 200:
                    time.sleep(1.0 if self.workers > 1 else 0.0)  # let every worker finish starting
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SystemExit("the server did not start in 60 s")

    def metrics(self) -> dict[str, float]:
        import httpx

        values: dict[str, float] = {}
        for line in httpx.get(self.url("/metrics"), timeout=10).text.splitlines():
            if line.startswith("intake_") and " " in line:
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def settled_metrics(self) -> dict[str, float]:
        """The metrics once the requests still in flight when the load tool stopped are answered."""

        def landing(values: dict[str, float]) -> dict[str, float]:
            return {k: v for k, v in values.items() if k.startswith("intake_records_")
                    or (k.startswith("intake_requests_total") and 'route="/metrics"' not in k)}

        previous = self.metrics()
        while True:
            time.sleep(1.0)
            current = self.metrics()
            if landing(current) == landing(previous):
                return current
            previous = current

    def stop(self) -> int:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGTERM)
        return self.process.wait(60)


def _run_wrk(server: Server, kind: str, script: Path, prefix: str, connections: int, duration: float,
             threads: int) -> Measurement:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
               "-s", str(script), server.url("/"), "--", prefix]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(r"^WRK_SUMMARY (\{.*\})$", output, re.MULTILINE)
    if match is None:
        raise SystemExit(f"no summary from wrk:\n{output}")
    summary = json.loads(match[1])
    seconds = summary["duration_us"] / 1e6
    errors = summary["connect"] + summary["read"] + summary["write"] + summary["timeout"]
    return Measurement(per_second=(summary["requests"] - summary["non_2xx"]) / seconds,
                       p50_ms=summary["p50_us"] / 1000, p99_ms=summary["p99_us"] / 1000,
                       answered=summary["requests"], non_202=summary["non_2xx"], errors=errors, seconds=seconds)


async def _httpx_load(server: Server, kind: str, key: str, prefix: str, connections: int, duration: float,
                      batch_size: int) -> Measurement:
    """The fallback load tool: ``connections`` asyncio tasks, each with a connection of its own."""
    import httpx

    template = _template()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    counter = 0
    stop_at = time.monotonic() + duration

    def next_body() -> bytes:
        nonlocal counter
        lines = []
        for _ in range(1 if kind == "single" else batch_size):
            counter += 1
            lines.append(template % f"{prefix}-{counter}")
        return "\n".join(lines).encode()

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < stop_at:
            content = next_body()
            started = time.perf_counter()
            try:
                answer = await client.post(SINGLE_PATH if kind == "single" else BATCH_PATH, content=content)
            except httpx.TransportError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

    started = time.monotonic()
    clients = [httpx.AsyncClient(base_url=server.url(), headers={"x-api-key": key}, timeout=10) for _ in range(connections)]
    try:
        await asyncio.gather(*(one(client) for client in clients))
    finally:
        for client in clients:
            await client.aclose()
    seconds = time.monotonic() - started
    latencies.sort()
    answered = sum(statuses.values())
    return Measurement(per_second=statuses.get(202, 0) / seconds,
                       p50_ms=latencies[len(latencies) // 2] * 1000 if latencies else 0.0,
                       p99_ms=latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0,
                       answered=answered, non_202=answered - statuses.get(202, 0), errors=errors, seconds=seconds)


def _check_with_pipeline(server: Server, work: Path) -> dict[str, Any]:
    """Run the pipeline over the landing folder; count the table's rows and distinct unique_ids."""
    import duckdb

    from pipelines.run import RunOptions, run

    output = work / "tables"
    started = time.monotonic()
    run(RunOptions(inputs=(f"{server.landing}/**/*.jsonl",), output=str(output), workstreams=str(server.config)),
        ["--direct_num_workers=1"])
    seconds = time.monotonic() - started
    ((rows, distinct),) = duckdb.connect().execute(
        f"select count(*), count(distinct unique_id) from read_parquet('{output}/task_completed/**/*.parquet', "
        "hive_partitioning=true)").fetchall()
    return {"rows": int(rows), "distinct_unique_ids": int(distinct), "pipeline_seconds": round(seconds, 1)}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _table(title: str, runs: list[Measurement], unit: str) -> list[str]:
    lines = [f"### {title}", "",
             f"| run | {unit} | p50 ms | p99 ms | answered | non-202 | socket errors | other processes (cores) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for number, m in enumerate(runs, start=1):
        lines.append(f"| {number} | {m.per_second:,.0f} | {m.p50_ms:.1f} | {m.p99_ms:.1f} | {m.answered:,} | "
                     f"{m.non_202} | {m.errors} | {m.others_cpu:.2f} |")
    lines.append(f"| median | {_median([m.per_second for m in runs]):,.0f} | {_median([m.p50_ms for m in runs]):.1f} | "
                 f"{_median([m.p99_ms for m in runs]):.1f} | | | | |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.intake_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (default: %(default)s)")
    parser.add_argument("--connections", type=int, default=64, help="single-record connections (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per single-record run (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=1000, help="bodies per batch (default: %(default)s)")
    parser.add_argument("--batch-connections", type=int, default=8, help="batch connections (default: %(default)s)")
    parser.add_argument("--batch-duration", type=float, default=10, help="seconds per batch run (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement (default: %(default)s)")
    parser.add_argument("--tool", choices=("auto", "wrk", "httpx"), default="auto",
                        help="load tool: wrk when installed (auto), or the asyncio httpx client")
    parser.add_argument("--work-dir", type=Path, help="keep the landing folder, logs and tables here")
    args = parser.parse_args(argv)

    from intake.keys import digest, new_key

    tool = "wrk" if args.tool == "wrk" or (args.tool == "auto" and shutil.which("wrk")) else "httpx"
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="intake-load-"))
    if args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    key = new_key()
    server = Server(work, args.workers, digest(key))
    scripts = {kind: work / f"{kind}.lua" for kind in ("single", "batch")}
    for kind, path in scripts.items():
        path.write_text(_lua(kind, key, args.batch_size))
    wrk_threads = max(1, min(2, os.cpu_count() or 1))
    print(f"intake load: {tool}, {args.workers} server worker(s), {os.cpu_count()} CPUs, work dir {work}", flush=True)
    server.start()
    singles: list[Measurement] = []
    batches: list[Measurement] = []
    try:
        for repeat in range(args.repeats):
            prefix = f"s{repeat}-{uuid.uuid4().hex[:8]}"
            others = _Others(server.pid)
            if tool == "wrk":
                measured = _run_wrk(server, "single", scripts["single"], prefix, args.connections, args.duration,
                                    wrk_threads)
            else:
                measured = asyncio.run(_httpx_load(server, "single", key, prefix, args.connections, args.duration, 1))
            measured.others_cpu = others.cores()
            singles.append(measured)
            print(f"single run {repeat + 1}: {measured.per_second:,.0f} 202/s, p50 {measured.p50_ms:.1f} ms, "
                  f"p99 {measured.p99_ms:.1f} ms, non-202 {measured.non_202}, socket errors {measured.errors}, "
                  f"other processes {measured.others_cpu:.2f} cores", flush=True)
        for repeat in range(args.repeats):
            prefix = f"b{repeat}-{uuid.uuid4().hex[:8]}"
            others = _Others(server.pid)
            if tool == "wrk":
                measured = _run_wrk(server, "batch", scripts["batch"], prefix, args.batch_connections,
                                    args.batch_duration, min(wrk_threads, args.batch_connections))
            else:
                measured = asyncio.run(_httpx_load(server, "batch", key, prefix, args.batch_connections,
                                                   args.batch_duration, args.batch_size))
            measured.others_cpu = others.cores()
            measured.per_second *= args.batch_size  # records accepted per second
            batches.append(measured)
            print(f"batch run {repeat + 1}: {measured.per_second:,.0f} records/s ({args.batch_size} per request), "
                  f"p50 {measured.p50_ms:.1f} ms, p99 {measured.p99_ms:.1f} ms, non-202 {measured.non_202}, "
                  f"other processes {measured.others_cpu:.2f} cores", flush=True)
        metrics = server.settled_metrics()
    finally:
        code = server.stop()
    single_202 = int(metrics.get('intake_requests_total{route="task_completed",status="202"}', 0))
    batch_202 = int(metrics.get('intake_requests_total{route="batch",status="202"}', 0))
    landed = int(metrics.get(f'intake_records_landed_total{{workstream_id="{WORKSTREAM}"}}', 0))
    rejected = int(sum(v for k, v in metrics.items() if k.startswith("intake_records_rejected_total")))
    print(f"server stopped (exit {code}); it answered 202 to {single_202:,} single posts and {batch_202:,} batches "
          f"({rejected} bodies rejected), landed {landed:,} records; running the pipeline...", flush=True)
    check = _check_with_pipeline(server, work)
    expected = single_202 + batch_202 * args.batch_size
    ok = check["rows"] == expected == landed == check["distinct_unique_ids"] and rejected == 0

    report = [f"## intake load: {tool}, {args.workers} workers, {os.cpu_count()} CPUs", "",
              f"`{' '.join([Path(sys.executable).name, '-m', 'benchmarks.intake_load', *(argv or sys.argv[1:])])}`", ""]
    report += _table(f"single-record POSTs, {args.connections} connections, {args.duration:g} s each", singles, "202/s")
    report += _table(f"batches of {args.batch_size}, {args.batch_connections} connections, {args.batch_duration:g} s each",
                     batches, "records/s")
    report += [f"pipeline check: {check['rows']:,} rows in task_completed, {check['distinct_unique_ids']:,} distinct "
               f"unique_ids; server 202s: {single_202:,} single + {batch_202:,} batches x {args.batch_size} = {expected:,}; "
               f"records landed {landed:,} -> {'OK: one row per 202' if ok else 'MISMATCH'} "
               f"(pipeline {check['pipeline_seconds']} s)"]
    print("\n" + "\n".join(report))
    (work / "report.md").write_text("\n".join(report) + "\n")
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
