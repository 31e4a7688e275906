"""Kill -9 a real run at every step of its commit: the next run always ends at the right state."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.commit import recover
from pipelines.run import RunOptions, run
from tests.conftest import record, write_jsonl
from transforms.layout import OutputLayout

ROOT = Path(__file__).resolve().parents[1]


def _snapshot(out: Path) -> dict[str, object]:
    """Every table file's rows, and the ledger, by path: what a reader and the next run see."""
    found: dict[str, object] = {}
    for path in sorted(out.rglob("*")):
        relative = str(path.relative_to(out))
        if path.suffix == ".parquet":
            found[relative] = pq.read_table(path).to_pylist()
        elif relative.startswith("_ledger") and path.is_file():
            found[relative] = path.read_text()
    return found


def _run_in_subprocess(args: list[str], crash_after: int | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "THROUGHPUT_CRASH_AFTER_COMMIT_STEPS"}
    if crash_after is not None:
        env["THROUGHPUT_CRASH_AFTER_COMMIT_STEPS"] = str(crash_after)
    done = subprocess.run([sys.executable, "-m", "pipelines.run", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode


def test_a_crash_at_any_commit_step_is_finished_or_rolled_back(tmp_path: Path, config_file: Path) -> None:
    base = tmp_path / "base"
    first = write_jsonl(tmp_path / "in" / "n1.jsonl", [
        record(unique_id="k1", worker_id="a", task_completed_at="2020-12-22T10:00:00Z"),
        record(unique_id="k2", worker_id="b", task_completed_at="2020-12-22T11:00:00Z"),
        record(worker_id="c", task_completed_at="2020-12-23T11:00:00Z"),
    ])
    run(RunOptions(inputs=(str(first),), output=str(base), workstreams=str(config_file), run_id="r1"))
    second = write_jsonl(tmp_path / "in" / "n2.jsonl", [
        record(unique_id="k1", worker_id="a2", task_completed_at="2020-12-23T09:00:00Z"),  # moves k1's date
        record(worker_id="d", task_completed_at="2020-12-24T09:00:00Z"),
        "not json",
    ])
    args = ["--input", str(second), "--workstreams", str(config_file), "--run-id", "r2"]

    expected_dir = tmp_path / "expected"
    shutil.copytree(base, expected_dir)
    assert _run_in_subprocess([*args, "--output", str(expected_dir)], None) == 0
    old, new = _snapshot(base), _snapshot(expected_dir)
    assert old != new

    step = 1
    while True:
        out = tmp_path / f"crash-{step}"
        shutil.copytree(base, out)
        code = _run_in_subprocess([*args, "--output", str(out)], step)
        if code == 0:
            break  # past the last step: the run completed
        assert code == -9, f"step {step}: exit {code}"
        for path in out.rglob("*.parquet"):
            pq.read_metadata(path)  # nothing torn: every file a reader can see is whole
        if step == 1:
            assert {k: v for k, v in _snapshot(out).items() if "_staging" not in k} == old
        recover(OutputLayout.at(str(out)))
        if not (out / "_runs" / "r2.json").exists():  # rolled back: the run can simply be run again
            assert _snapshot(out) == old, f"step {step}"
            assert _run_in_subprocess([*args, "--output", str(out)], None) == 0
        assert _snapshot(out) == new, f"step {step}"
        assert not list(out.glob("_staging/*")) and not list(out.glob("_commits/*"))
        step += 1
    assert step > 8  # the commit really had many steps to crash in


def _start(args: list[str]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "THROUGHPUT_CRASH_AFTER_COMMIT_STEPS"}
    return subprocess.Popen([sys.executable, "-m", "pipelines.run", *args, "--direct_num_workers=1"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, timeout: float = 120.0) -> None:  # noqa: ANN001 - any callable
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _night(tmp_path: Path, n: int = 150_000) -> Path:
    """A night long enough (about 10 s on one worker) that another run starts, or a kill lands,
    while it is in its pipeline: at 30,000 records a faster pipeline sometimes finished first."""
    return write_jsonl(tmp_path / "in" / "big.jsonl", [
        record(unique_id=f"k{i % 20_000}", worker_id=f"w{i % 50}", task_started_at=f"2020-12-{10 + i % 10}T09:00:00Z",
               task_completed_at=f"2020-12-{10 + i % 10}T10:00:00Z")
        for i in range(n)])


def test_a_kill_during_the_pipeline_leaves_the_tables_as_they_were(tmp_path: Path, config_file: Path) -> None:
    from pipelines.verify import verify

    base = tmp_path / "out"
    first = write_jsonl(tmp_path / "in" / "n1.jsonl", [record(unique_id="k1"), record(worker_id="c")])
    run(RunOptions(inputs=(str(first),), output=str(base), workstreams=str(config_file), run_id="r1"))
    old = _snapshot(base)
    big = _night(tmp_path)
    process = _start(["--input", str(big), "--output", str(base), "--workstreams", str(config_file), "--run-id", "r2"])
    staging = base / "_staging" / "r2"
    _wait_for(lambda: any(p.is_file() and p.name != "_started.json" for p in staging.rglob("*"))
              or process.poll() is not None)
    assert process.poll() is None, "the run ended before it could be killed mid-pipeline"
    process.kill()
    process.wait()
    assert {k: v for k, v in _snapshot(base).items() if "_staging" not in k} == old
    assert _run_in_subprocess(["--input", str(big), "--output", str(base), "--workstreams", str(config_file),
                               "--run-id", "r2"], None) == 0
    assert [f.line() for f in verify(str(base)) if not f.ok] == []
    rows = sum(pq.read_metadata(p).num_rows for p in (base / "task_completed").rglob("*.parquet"))
    assert rows == 2 + 20_000 - 1  # k1 of the first night is replaced, not doubled


def test_a_second_run_started_and_killed_meanwhile_costs_the_first_nothing(tmp_path: Path, config_file: Path) -> None:
    from pipelines.verify import verify

    out = tmp_path / "out"
    big = _night(tmp_path)
    other = write_jsonl(tmp_path / "in2" / "other.jsonl", [record(unique_id="x1")])
    first = _start(["--input", str(big), "--output", str(out), "--workstreams", str(config_file), "--run-id", "first"])
    _wait_for(lambda: (out / "_staging" / "first").exists())
    second = _start(["--input", str(other), "--output", str(out), "--workstreams", str(config_file), "--run-id", "second"])
    _, err = second.communicate(timeout=120)
    assert second.returncode == 1 and "is in use by run first" in err, err
    third = _start(["--input", str(other), "--output", str(out), "--workstreams", str(config_file), "--run-id", "third"])
    third.kill()  # kill -9 a concurrent run wherever it is
    third.wait()
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert [f.line() for f in verify(str(out)) if not f.ok] == []
    assert sum(pq.read_metadata(p).num_rows for p in (out / "task_completed").rglob("*.parquet")) == 20_000
    assert sorted(p.name for p in (out / "_runs").iterdir()) == ["first.json"]
