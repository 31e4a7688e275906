"""How the command fails and what it says: one line on stderr, the details in a log file, our own
warnings always shown, Beam's chatter never (unless ``-v``), Ctrl-C and SIGTERM ended cleanly."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pipelines import logs
from tests.conftest import CONFIG_DATA, record, write_jsonl
from tests.test_cli import ROOT, SCRIPT, environment, log_files, patch, run_args, throughput

BUG = """
import pipelines.run as _run

def run(options, beam_args=(), progress=lambda step: None):
    progress("planning")
    raise ValueError("boom: a bug")

_run.run = run
"""

HANG = """
import time
import pipelines.run as _run

def run(options, beam_args=(), progress=lambda step: None):
    progress("planning")
    time.sleep(60)

_run.run = run
"""

# our own warnings, as recover() and later stages log them, before a real run
WARNS = """
import logging
import pipelines.run as _run

_real = _run.run

def run(options, beam_args=(), progress=lambda step: None):
    logging.getLogger("throughput").warning("finished the commit of run r0")
    logging.getLogger("throughput.commit").warning("rolled back run r9")
    logging.getLogger("throughput").info("an INFO of ours stays in the log file")
    return _real(options, beam_args, progress)

_run.run = run
"""


# a backfill whose second chunk fails as a run does (its error type), after the first committed
SECOND_CHUNK_FAILS = """
import pipelines.run as _run
from pipelines.commit import RunError

_real = _run.run

def run(options, beam_args=(), progress=lambda step: None):
    if options.run_id.endswith("chunk0002"):
        progress("planning")
        raise RunError("cannot write to the output: disk full")
    return _real(options, beam_args, progress)

_run.run = run
"""


def _log_named_in(line: str) -> Path:
    assert line.endswith(")") and "(details in " in line, line
    path = Path(line.rsplit("(details in ", 1)[1][:-1])
    assert path.exists(), path
    return path


def test_unknown_key_in_configuration_names_key_and_file(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record()])
    config = tmp_path / "ws.json"
    config.write_text(json.dumps({"workstreams": [{"id": "ws-ner", "use_case": CONFIG_DATA["workstreams"][0]["use_cases"]}]}))
    done = throughput(tmp_path, *run_args(tmp_path, config))
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(f"throughput: run failed: workstream configuration {config} is invalid: "
                           "workstreams.0.use_case: unknown key (did you mean use_cases?)")


def test_run_error_is_one_line_naming_the_log_file(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record(), "oops"])
    done = throughput(tmp_path, *run_args(tmp_path, config_file, "--max-reject-rate", "0.1"))
    assert done.returncode == 1
    failures = [line for line in done.stderr.splitlines() if "run failed" in line]
    assert len(failures) == 1
    assert failures[0].startswith("throughput: run failed: reject rate 0.5000 (1 of 2")
    assert "is above --max-reject-rate 0.1" in failures[0]
    log = _log_named_in(failures[0])
    assert "Traceback (most recent call last)" in log.read_text()
    assert done.stdout == ""


def test_unexpected_error_is_one_line_and_the_traceback_goes_to_the_log(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record()])
    done = throughput(tmp_path, *run_args(tmp_path, config_file), patch_dir=patch(tmp_path, BUG))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == "throughput: planning"
    assert len(lines) == 2
    assert lines[1].startswith("throughput: unexpected error: ValueError: boom: a bug (details in ")
    text = _log_named_in(lines[1]).read_text()
    assert "Traceback (most recent call last)" in text
    assert "ValueError: boom: a bug" in text
    assert "Traceback" not in done.stderr


def test_backfill_failure_says_what_stays_committed(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "in" / "a.jsonl", [record(unique_id="1")])
    write_jsonl(tmp_path / "in" / "b.jsonl", [record(unique_id="2")])
    done = throughput(tmp_path, "backfill", *run_args(tmp_path, config_file, "--chunk-bytes", "1", "--run-id", "bf",
                                                      "--json", inputs="in/*.jsonl")[1:],
                      patch_dir=patch(tmp_path, SECOND_CHUNK_FAILS))
    assert done.returncode == 1
    [failure] = [line for line in done.stderr.splitlines() if "failed" in line and line.startswith("throughput: ")]
    assert failure.startswith("throughput: backfill failed at chunk 2/2: cannot write to the output: disk full; "
                              "the 1 chunk(s) committed before stay committed; run the same command again to resume")
    _log_named_in(failure)
    document = json.loads(done.stdout)
    assert document["status"] == "failed" and document["exit_code"] == 1
    assert [c["run_id"] for c in document["chunks"]] == ["bf-chunk0001"]
    assert document["totals"]["counts"]["written"] == 1
    assert "chunk 1/2: run bf-chunk0001: committed" in done.stderr


def test_verbose_shows_the_traceback(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record()])
    done = throughput(tmp_path, *run_args(tmp_path, config_file, "-v"), patch_dir=patch(tmp_path, BUG))
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "throughput: unexpected error: ValueError: boom: a bug (details in " in done.stderr


@pytest.mark.parametrize(("signum", "code", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_interrupt_ends_cleanly(tmp_path: Path, config_file: Path, signum: int, code: int, word: str) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record()])
    process = subprocess.Popen([str(SCRIPT), *run_args(tmp_path, config_file)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               env=environment(tmp_path, patch(tmp_path, HANG)))
    assert process.stderr is not None
    assert process.stderr.readline() == "throughput: planning\n"  # the job has started
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == code
    assert stderr.splitlines() == [
        f"throughput: {word}; nothing was committed by this run "
        "(the next run finishes or rolls back any interrupted commit)"]
    assert stdout == ""


def test_our_warnings_show_and_beams_chatter_goes_to_the_log(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record()])
    done = throughput(tmp_path, *run_args(tmp_path, config_file)[:-1], "--direct_num_workers=2",
                      "--direct_running_mode=multi_processing", patch_dir=patch(tmp_path, WARNS))
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "throughput: finished the commit of run r0" in lines
    assert "throughput: rolled back run r9" in lines
    assert all(line.startswith("throughput: ") for line in lines), lines  # no INFO, no worker logs
    assert "INFO" not in done.stderr
    [log] = log_files(tmp_path)
    text = log.read_text()
    assert "sdk_worker" in text  # the worker subprocesses' own logs, written to the inherited stderr
    assert "an INFO of ours stays in the log file" in text


def test_verbose_shows_beams_messages(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record()])
    done = throughput(tmp_path, *run_args(tmp_path, config_file, "--verbose"))
    assert done.returncode == 0, done.stderr
    assert "INFO apache_beam" in done.stderr


def test_dataflow_job_id_and_console_url_reach_the_screen(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    apiclient = logging.getLogger("apache_beam.runners.dataflow.internal.apiclient")
    runner = logging.getLogger("apache_beam.runners.dataflow.dataflow_runner")
    url = "https://console.cloud.google.com/dataflow/jobs/europe-west1/2026-11-28_02_00_00-123?project=p"
    with logs.capture() as log:
        apiclient.info("Starting GCS upload to %s...", "gs://b/staging/x.tar.gz")
        apiclient.info("Created job with id: [%s]", "2026-11-28_02_00_00-123")
        apiclient.info("To access the Dataflow monitoring console, please navigate to %s", url)
        runner.info("Job %s is in state %s", "2026-11-28_02_00_00-123", "JOB_STATE_RUNNING")
        logging.getLogger("apache_beam.runners.worker.sdk_worker").info("Control channel established.")
        logging.getLogger("throughput.lock").warning("waiting for nothing")
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "Created job with id: [2026-11-28_02_00_00-123]",
        f"To access the Dataflow monitoring console, please navigate to {url}",
        "Job 2026-11-28_02_00_00-123 is in state JOB_STATE_RUNNING",
        "throughput: waiting for nothing",
    ]
    text = log.path.read_text()
    assert "Starting GCS upload" in text and "Control channel established." in text


def test_an_exception_that_ends_a_thread_goes_to_the_log_file(capsys: pytest.CaptureFixture[str]) -> None:
    """An interrupted run with worker processes ends Beam's threads that served them, each with a
    traceback: the operator sees the run's one line, the log file keeps the tracebacks."""
    def serve() -> None:
        raise RuntimeError("Worker subprocess exited with return code -15")

    before = threading.excepthook
    with logs.capture() as log:
        thread = threading.Thread(target=serve, name="run_worker")
        thread.start()
        thread.join()
    assert "Worker subprocess exited" not in capsys.readouterr().err
    text = log.path.read_text()
    assert "thread run_worker ended with an exception" in text and "RuntimeError: Worker subprocess exited" in text
    assert threading.excepthook is before  # restored


def test_log_file_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert logs.log_dir() == tmp_path / "state" / "throughput"
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "file"))  # not a folder: falls back to the temp folder
    fallback = logs.log_dir()
    assert fallback.is_dir() and fallback != tmp_path / "file" / "throughput"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with logs.capture() as log:
        time.sleep(0)
    assert not log.path.exists()  # nothing logged: no empty file left behind
