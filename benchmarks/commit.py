"""How long a run's commit takes to move a first night's files into the tables.

It stages one Parquet-sized file per partition of both tables (``--partitions`` per table, as a
first night of the generated data makes), then times ``Journal.commit``, which moves them into
an empty output. With ``--load``, a second process writes and syncs ``--load-mb`` MB meanwhile,
as the kernel writes back what the pipeline's workers have just written. Prints the median.

    .venv/bin/python -m benchmarks.commit --partitions 600 --repeats 5 --load
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from pipelines.commit import Journal, StagedRun
from transforms.layout import OutputLayout


def _staged_night(root: str, partitions: int) -> tuple[StagedRun, list[str]]:
    run = StagedRun(OutputLayout.at(root), "r1")
    staged = []
    for table in ("task_completed", "throughput_daily"):
        for number in range(partitions):
            path = run.area.join(table, f"workstream_id=ws-{number % 6}", f"completed_date=d{number:04d}",
                                 "part-r1.parquet")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(b"x" * 4096)
            staged.append(path)
    os.sync()
    return run, staged


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--load", action="store_true", help="write and sync a file meanwhile")
    parser.add_argument("--load-mb", type=int, default=1500)
    parser.add_argument("--folder", default=None, help="where to work (default: a temporary folder)")
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp(prefix="commit-bench-", dir=args.folder)
    seconds = []
    try:
        for _ in range(args.repeats):
            output = os.path.join(folder, "out")
            shutil.rmtree(output, ignore_errors=True)
            run, staged = _staged_night(output, args.partitions)
            writer = None
            if args.load:
                writer = subprocess.Popen(["dd", "if=/dev/zero", f"of={os.path.join(folder, 'load')}", "bs=1M",
                                           f"count={args.load_mb}", "conv=fsync"], stderr=subprocess.DEVNULL)
                time.sleep(1.0)
            started = time.perf_counter()
            Journal.of_staged(run, staged, [], {"run_id": run.run_id}).commit()
            seconds.append(time.perf_counter() - started)
            if writer is not None:
                writer.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"commit of {2 * args.partitions} files{' under load' if args.load else ''}: "
          f"median {statistics.median(seconds):.3f} s over {len(seconds)} "
          f"({', '.join(f'{s:.3f}' for s in seconds)})")


if __name__ == "__main__":
    main()
