"""The command line as an operator uses it: exit codes, summary, Beam options passed through.

The helpers here (``throughput``, ``patch``) are shared by the other ``tests/test_cli_*.py``:
every test runs the real ``throughput`` console script in a subprocess, with its log folder
(``$XDG_STATE_HOME``) inside the test's temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import record, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "throughput"


def environment(tmp_path: Path, patch_dir: Path | None = None) -> dict[str, str]:
    """The subprocess's environment: logs under ``tmp_path/state``; ``patch_dir`` first on the path."""
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    if patch_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(patch_dir), env.get("PYTHONPATH")) if p)
    return env


def throughput(tmp_path: Path, *args: str, patch_dir: Path | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``throughput ARGS`` (the installed console script) and capture its output."""
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT,
                          env=environment(tmp_path, patch_dir), timeout=timeout)


def patch(tmp_path: Path, code: str) -> Path:
    """A folder whose ``sitecustomize.py`` runs ``code`` when the subprocess starts: it replaces a job
    (``pipelines.run.run``...) to reach an outcome no small input gives (a bug, a hang, failed inputs)."""
    folder = tmp_path / "patch"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import logging\n"
        "_drop = logging.NullHandler()\n"
        "logging.getLogger().addHandler(_drop)  # Beam's import-time warning: not this test's subject\n"
        + textwrap.dedent(code)
        + "\nlogging.getLogger().removeHandler(_drop)\n",
        encoding="utf-8")
    return folder


def run_args(tmp_path: Path, config_file: Path, *extra: str, inputs: str = "a.jsonl") -> list[str]:
    return ["run", "--input", str(tmp_path / inputs), "--output", str(tmp_path / "out"),
            "--workstreams", str(config_file), "--direct_num_workers=1", *extra]


def log_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "state" / "throughput").glob("throughput-*.log"))


def _throughput(tmp_path: Path, *args: str, module: bool = False) -> subprocess.CompletedProcess[str]:
    if module:
        command = [sys.executable, "-m", "pipelines.run", *args]
    else:
        command = [str(SCRIPT), "run", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=environment(tmp_path), timeout=300)


def test_run_prints_summary_and_exits_zero(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record(), "oops"])
    done = _throughput(tmp_path, "--input", str(tmp_path / "a.jsonl"), "--output", str(tmp_path / "out"),
                       "--workstreams", str(config_file), "--run-id", "r1", "--direct_num_workers=1")
    assert done.returncode == 0, done.stderr
    assert "run r1: committed" in done.stdout
    assert "read 2  written 1  rejected 1" in done.stdout
    assert "malformed_json 1" in done.stdout
    assert "files: 1 ingested, 0 skipped, 0 failed  in " in done.stdout
    assert "records/s" in done.stdout
    assert (tmp_path / "out" / "_runs" / "r1.json").exists()
    # off a terminal: one plain line per step, and nothing of Beam's
    lines = done.stderr.splitlines()
    assert [line for line in lines if line in ("throughput: planning", "throughput: pipeline", "throughput: committing")] \
        == ["throughput: planning", "throughput: pipeline", "throughput: committing"]
    assert all(line.startswith("throughput: ") for line in lines), lines


def test_module_entry_point_and_run_error_exit_code(tmp_path: Path, config_file: Path) -> None:
    done = _throughput(tmp_path, "--input", str(tmp_path / "none*.jsonl"), "--output", str(tmp_path / "out"),
                       "--workstreams", str(config_file), module=True)
    assert done.returncode == 1
    assert "no input file matched" in done.stderr


def test_same_run_id_twice_is_refused(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record()])
    args = ("--input", str(tmp_path / "a.jsonl"), "--output", str(tmp_path / "out"),
            "--workstreams", str(config_file), "--run-id", "same")
    assert _throughput(tmp_path, *args).returncode == 0
    again = _throughput(tmp_path, *args)
    assert again.returncode == 1
    assert "already committed" in again.stderr


def test_bad_command_line_exits_two(tmp_path: Path) -> None:
    done = _throughput(tmp_path, "--output", str(tmp_path))
    assert done.returncode == 2
    assert "--input" in done.stderr


def test_the_heap_is_frozen_before_the_interpreter_tears_down(tmp_path: Path, config_file: Path) -> None:
    """A command freezes the collector's objects at exit (the teardown then skips walking them),
    after everything of the run is done: the hook registered before the command runs last."""
    write_jsonl(tmp_path / "a.jsonl", [record()])
    frozen_at_exit = patch(tmp_path, """
        import atexit, gc, sys
        atexit.register(lambda: print(f"tracked at exit: {len(gc.get_objects())} "
                                      f"frozen: {gc.get_freeze_count()}", file=sys.stderr))
        """)
    done = throughput(tmp_path, *run_args(tmp_path, config_file), patch_dir=frozen_at_exit)
    assert done.returncode == 0, done.stderr
    tracked, frozen = (int(n) for n in done.stderr.rsplit("tracked at exit: ", 1)[1].split()[:3:2])
    assert frozen > 100_000 and tracked < 1_000, (tracked, frozen)
