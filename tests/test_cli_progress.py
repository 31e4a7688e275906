"""Progress on stderr: a live line under a terminal (run under a pty), plain lines elsewhere."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
from pathlib import Path

import pytest

from pipelines import logs
from pipelines.progress import Reporter
from tests.conftest import record, write_jsonl
from tests.test_cli import ROOT, SCRIPT, environment, run_args


def _under_a_terminal(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """Run the script with stderr on a pseudo-terminal: (exit code, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    env = {**environment(tmp_path), "TERM": "xterm-256color", "COLUMNS": "120"}
    process = subprocess.Popen([str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=slave,
                               stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
    os.close(slave)
    shown = bytearray()
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the terminal closed: the process has exited
                    break
                if not data:
                    break
                shown += data
            elif process.poll() is not None:
                break
        assert process.stdout is not None
        stdout = process.stdout.read().decode()
        return process.wait(timeout=60), stdout, shown.decode(errors="replace")
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()


def test_live_progress_on_a_terminal(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record()])
    code, stdout, shown = _under_a_terminal(tmp_path, *run_args(tmp_path, config_file, "--run-id", "r1"))
    assert code == 0, shown
    assert "run: planning" in shown and "run: pipeline" in shown and "run: committing" in shown
    assert "0:00:0" in shown  # elapsed time
    assert "\x1b[" in shown  # drawn in place, not line by line
    assert "throughput: planning" not in shown
    assert "run r1: committed" in stdout


def test_live_backfill_shows_chunks_and_prints_each_as_it_commits(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "in" / "a.jsonl", [record(unique_id="1")])
    write_jsonl(tmp_path / "in" / "b.jsonl", [record(unique_id="2")])
    code, stdout, shown = _under_a_terminal(
        tmp_path, "backfill", *run_args(tmp_path, config_file, "--chunk-bytes", "1", "--run-id", "bf", inputs="in/*")[1:])
    assert code == 0, shown
    assert "backfill: chunk 1/2: pipeline" in shown
    assert "backfill: chunk 2/2: committing" in shown
    assert stdout.index("chunk 1/2: run bf-chunk0001: committed") < stdout.index("chunk 2/2: run bf-chunk0002") \
        < stdout.index("backfill: 2 chunk(s) committed")


def test_plain_lines_off_a_terminal() -> None:
    stream = io.StringIO()
    with Reporter("backfill", stream=stream) as reporter:
        assert not reporter.live
        for step in ("chunk 1/2", "planning", "pipeline", "committing", "chunk 2/2", "planning"):
            reporter(step)
        reporter.chunk_committed(1, 2)
    assert stream.getvalue().splitlines() == [
        "throughput: chunk 1/2: planning", "throughput: chunk 1/2: pipeline", "throughput: chunk 1/2: committing",
        "throughput: chunk 2/2: planning"]


def test_live_reporter_keeps_log_lines_and_output_readable(capsys: pytest.CaptureFixture[str]) -> None:
    screen, out = io.StringIO(), io.StringIO()
    with Reporter("run", stream=screen, live=True) as reporter:
        reporter("planning")
        logs.screen_line("throughput: a warning while the line is live")
        reporter.write("a summary", file=out)
        reporter("pipeline")
    assert out.getvalue() == "a summary\n"
    assert "throughput: a warning while the line is live" in screen.getvalue()
    assert "run: pipeline" in screen.getvalue()
    logs.screen_line("throughput: after the live line")  # the screen was given back
    assert capsys.readouterr().err == "throughput: after the live line\n"
