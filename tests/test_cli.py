"""The command line as an operator uses it: exit codes, summary, Beam options passed through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import record, write_jsonl

ROOT = Path(__file__).resolve().parents[1]


def _throughput(*args: str, module: bool = False) -> subprocess.CompletedProcess[str]:
    if module:
        command = [sys.executable, "-m", "pipelines.run", *args]
    else:
        command = [str(Path(sys.executable).parent / "throughput"), "run", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_run_prints_summary_and_exits_zero(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record(), "oops"])
    done = _throughput("--input", str(tmp_path / "a.jsonl"), "--output", str(tmp_path / "out"),
                       "--workstreams", str(config_file), "--run-id", "r1", "--direct_num_workers=1")
    assert done.returncode == 0, done.stderr
    assert "run r1: committed" in done.stdout
    assert "read 2  written 1  rejected 1" in done.stdout
    assert "malformed_json 1" in done.stdout
    assert (tmp_path / "out" / "_runs" / "r1.json").exists()


def test_module_entry_point_and_run_error_exit_code(tmp_path: Path, config_file: Path) -> None:
    done = _throughput("--input", str(tmp_path / "none*.jsonl"), "--output", str(tmp_path / "out"),
                       "--workstreams", str(config_file), module=True)
    assert done.returncode == 1
    assert "no input file matched" in done.stderr


def test_same_run_id_twice_is_refused(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record()])
    args = ("--input", str(tmp_path / "a.jsonl"), "--output", str(tmp_path / "out"),
            "--workstreams", str(config_file), "--run-id", "same")
    assert _throughput(*args).returncode == 0
    again = _throughput(*args)
    assert again.returncode == 1
    assert "already committed" in again.stderr


def test_bad_command_line_exits_two(tmp_path: Path) -> None:
    done = _throughput("--output", str(tmp_path))
    assert done.returncode == 2
    assert "--input" in done.stderr
