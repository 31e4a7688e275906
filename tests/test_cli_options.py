"""The command line's options: unknown ones refused with the closest known one, Beam's passed through,
typed values explained in our words, help that lists everything, ``--version``."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from pipelines import cli
from tests.conftest import record, write_jsonl
from tests.test_cli import ROOT, environment, run_args, throughput


@pytest.mark.parametrize(("args", "line"), [
    (["run", "--dupliactes", "keep-first"], "throughput run: unknown option --dupliactes (did you mean --duplicates?)"),
    (["run", "--reprocss"], "throughput run: unknown option --reprocss (did you mean --reprocess?)"),
    (["run", "--max_reject_rate", "0.1"], "throughput run: unknown option --max_reject_rate (did you mean --max-reject-rate?)"),
    (["run", "--direct-num-workers=2"], "throughput run: unknown option --direct-num-workers (did you mean --direct_num_workers?)"),
    (["backfill", "--chunk_bytes", "1"], "throughput backfill: unknown option --chunk_bytes (did you mean --chunk-bytes?)"),
    (["compact", "--tabel", "all"], "throughput compact: unknown option --tabel (did you mean --table?)"),
])
def test_unknown_option_is_a_usage_error_naming_the_closest(tmp_path: Path, config_file: Path,
                                                           args: list[str], line: str) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record()])
    command, *extra = args
    base = (run_args(tmp_path, config_file)[1:] if command != "compact" else ["--output", str(tmp_path / "out")])
    done = throughput(tmp_path, command, *base, *extra)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [line]
    assert done.stdout == ""
    assert not (tmp_path / "out").exists()  # nothing ran


def test_misspelt_required_option_is_reported_as_misspelt(tmp_path: Path, config_file: Path) -> None:
    done = throughput(tmp_path, "run", "--inptu", "a.jsonl", "--output", str(tmp_path / "out"),
                      "--workstreams", str(config_file))
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["throughput run: unknown option --inptu (did you mean --input?)"]


def test_missing_required_options_are_named(tmp_path: Path) -> None:
    done = throughput(tmp_path, "run")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "throughput run: missing --input, --output, --workstreams (required; throughput run --help lists every option)"]


def test_beam_options_pass_through_to_beam(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record()])
    done = throughput(tmp_path, *run_args(tmp_path, config_file, "--run-id", "r1"),
                      "--runner", "FnApiRunner", "--direct_running_mode", "in_memory", "--project", "p",
                      "--temp_location", str(tmp_path / "tmp"), "--job_name=nightly", "--no_use_public_ips")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "out" / "_runs" / "r1.json").read_text())
    assert manifest["options"]["runner"] == "FnApiRunner"


@pytest.mark.parametrize(("args", "line"), [
    (["--max-reject-rate", "abc"], "throughput run: --max-reject-rate: must be a number between 0 and 1, got 'abc'"),
    (["--max-reject-rate", "1.5"], "throughput run: --max-reject-rate: must be a number between 0 and 1, got '1.5'"),
    (["--max-record-bytes", "0"], "throughput run: --max-record-bytes: must be a whole number above 0, got '0'"),
    (["--duplicates", "newest"],
     "throughput run: --duplicates: invalid choice: 'newest' (choose from 'per-record', 'replace', 'keep-first')"),
])
def test_bad_values_are_explained_in_our_words(tmp_path: Path, config_file: Path, args: list[str], line: str) -> None:
    done = throughput(tmp_path, *run_args(tmp_path, config_file, *args))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [line]


@pytest.mark.parametrize("command", ["run", "backfill"])
def test_run_id_that_is_a_path_is_a_usage_error(tmp_path: Path, config_file: Path, command: str) -> None:
    done = throughput(tmp_path, command, *run_args(tmp_path, config_file, "--run-id", "../x")[1:])
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"throughput {command}: --run-id: '../x' is not a valid run id")


def test_bad_value_of_a_beam_option_is_a_usage_error(tmp_path: Path, config_file: Path) -> None:
    done = throughput(tmp_path, *run_args(tmp_path, config_file, "--direct_running_mode", "everywhere"))
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("throughput run: --direct_running_mode: invalid choice: 'everywhere'")


def test_chunk_bytes_takes_sizes(tmp_path: Path, config_file: Path) -> None:
    done = throughput(tmp_path, "backfill", *run_args(tmp_path, config_file)[1:], "--chunk-bytes", "lots")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "throughput backfill: --chunk-bytes: must be a size such as 268435456, 64MiB or 1GiB, got 'lots'"]
    assert [cli._size(text) for text in ("1024", "64MiB", "64M", "64mb", "1GiB", "1g")] == [
        1024, 64 << 20, 64 << 20, 64 << 20, 1 << 30, 1 << 30]


@pytest.mark.parametrize("command", ["run", "backfill", "compact"])
def test_help_is_complete_and_stands_alone(tmp_path: Path, command: str) -> None:
    done = throughput(tmp_path, command, "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())  # argparse wraps lines
    assert done.stdout.startswith(f"usage: throughput {command} ")
    parser = cli._compact_parser("throughput compact") if command == "compact" else cli._run_parser(
        f"throughput {command}", chunked=command == "backfill")
    for action in parser._actions:
        if action.help == "show this help message and exit":
            continue
        assert action.option_strings[-1] in text
        help_text = " ".join(parser._get_formatter()._expand_help(action).split())
        assert "(default" in help_text or "(required)" in help_text, help_text
        assert help_text in text
    assert "any Beam pipeline option, e.g. --runner DataflowRunner --project P --region R, or --direct_num_workers 2, goes to Beam" in text
    assert "Exit codes:" in done.stdout
    for code in ([0, 1, 2, 130] if command == "compact" else [0, 1, 2, 3, 130]):
        assert f"\n  {code:<4} " in done.stdout
    assert "SPEC" not in done.stdout
    assert "usage: throughput [" not in done.stdout


def test_backfill_help_shows_chunk_bytes_and_its_default(tmp_path: Path) -> None:
    done = throughput(tmp_path, "backfill", "--help")
    text = " ".join(done.stdout.split())
    assert "--chunk-bytes SIZE" in text
    assert "(default: 256MiB)" in text


def test_top_level_usage_lists_every_command_and_the_exit_codes(tmp_path: Path) -> None:
    done = throughput(tmp_path, "--help")
    assert done.returncode == 0
    for name, entry in cli._COMMANDS.items():
        assert f"  {name}" in done.stdout and entry.summary in done.stdout
    for code in (0, 1, 2, 3, 130):
        assert f"\n  {code:<4} " in done.stdout
    assert "--direct_num_workers 2" in done.stdout
    bare = throughput(tmp_path)
    assert bare.returncode == 2 and "Commands:" in bare.stderr


def test_unknown_command_suggests_the_closest(tmp_path: Path) -> None:
    done = throughput(tmp_path, "rnu", "--input", "x")
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["throughput: unknown command 'rnu' (did you mean run?); throughput --help lists the commands"]


def test_version(tmp_path: Path) -> None:
    done = throughput(tmp_path, "--version")
    assert done.returncode == 0
    assert done.stdout == f"throughput {version('throughput')}\n"


def test_help_and_version_do_not_import_beam(tmp_path: Path) -> None:
    probe = ("import sys, contextlib, io\n"
             "from pipelines.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    assert main(['--help']) == 0 and main(['--version']) == 0\n"
             "assert not any(m.startswith('apache_beam') for m in sys.modules), 'Beam imported'\n"
             "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                          env=environment(tmp_path), timeout=120)
    assert done.stdout == "ok\n", done.stderr
