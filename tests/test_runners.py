"""SPEC 2.4: the order, and so the tables, do not depend on the runner, workers or chunk size."""

from __future__ import annotations

import os
import random
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

import pipelines.run as run_module
from pipelines.run import BYTES_PER_WORKER, RunOptions, default_workers, pipeline_options_from, run
from tests.conftest import TD2, record, write_jsonl


def _inputs(tmp_path: Path) -> list[str]:
    """Three files with keys spread across them, both policies, bad lines and blank lines."""
    rng = random.Random(7)
    for index in range(3):
        rows: list = []
        for line in range(40):
            roll = rng.random()
            if roll < 0.05:
                rows.append("{broken")
            elif roll < 0.08:
                rows.append("")
            else:
                rows.append(record(
                    unique_id=f"k{rng.randrange(12)}" if roll < 0.7 else None,
                    replace_duplicate=rng.choice([True, False, None]),
                    worker_id=f"w{index}-{line}",
                    task_definition_id=rng.choice([record()["task_definition_id"], TD2]),
                    task_completed_at=f"2020-12-2{rng.randrange(2, 5)}T10:00:00Z",
                ))
        write_jsonl(tmp_path / "in" / f"part-{index}.jsonl", rows, compress=index == 1)
    return [str(tmp_path / "in" / "part-*")]


def _tables(out: Path) -> dict[str, list[dict]]:
    """Every file's rows, by path relative to the output: the exact content, in file order."""
    return {
        str(path.relative_to(out)): pq.read_table(path).to_pylist()
        for path in sorted(out.rglob("*.parquet"))
    }


@pytest.mark.parametrize("beam_args, chunk_records", [
    (["--direct_num_workers=2", "--direct_running_mode=multi_processing"], 20_000),
    ([], 1),
    ([], 7),
])
def test_tables_are_identical_across_runners_and_chunk_sizes(tmp_path: Path, config_file: Path,
                                                            beam_args: list[str], chunk_records: int) -> None:
    patterns = _inputs(tmp_path)

    def run_into(name: str, args: list[str], chunk: int) -> dict[str, list[dict]]:
        options = RunOptions(inputs=tuple(patterns), output=str(tmp_path / name), workstreams=str(config_file),
                             run_id="fixed", chunk_records=chunk)
        manifest = run(options, args).manifest
        assert manifest["counts"]["reconciles"]
        return _tables(tmp_path / name)

    reference = run_into("reference", [], 20_000)
    assert len(reference) > 3
    assert run_into("other", beam_args, chunk_records) == reference


def test_the_default_runs_a_worker_per_core_on_a_large_enough_input(tmp_path: Path, config_file: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Without worker flags a run uses the cores its input can keep busy, with the same tables."""
    patterns = _inputs(tmp_path)
    options = RunOptions(inputs=tuple(patterns), output=str(tmp_path / "one"), workstreams=str(config_file), run_id="fixed")
    one = run(options, ["--direct_num_workers=1"]).manifest
    assert one["options"]["workers"] == 1
    monkeypatch.setattr(run_module, "BYTES_PER_WORKER", 1)  # every byte is a worker's share
    many = run(replace(options, output=str(tmp_path / "many")), []).manifest
    cores = len(os.sched_getaffinity(0))
    assert many["options"]["workers"] == cores == default_workers(10**9, cores)
    assert _tables(tmp_path / "many") == _tables(tmp_path / "one")


@pytest.mark.parametrize(("input_bytes", "cores", "workers"), [
    (0, 8, 1), (10 << 20, 8, 1), (BYTES_PER_WORKER, 8, 1), (2 * BYTES_PER_WORKER, 8, 2), (100 << 30, 8, 8),
    (100 << 30, 1, 1),
])
def test_default_workers_one_per_core_at_most_one_per_share_of_input(input_bytes: int, cores: int, workers: int) -> None:
    assert default_workers(input_bytes, cores) == workers


def test_worker_flags_and_other_runners_are_left_as_given() -> None:
    big = 100 << 30
    chosen = pipeline_options_from([], big).view_as(DirectOptions)
    assert chosen.direct_num_workers == default_workers(big) and (
        chosen.direct_running_mode == "multi_processing" or default_workers(big) == 1)
    assert pipeline_options_from([], 1000).view_as(DirectOptions).direct_num_workers == 1
    given = pipeline_options_from(["--direct_num_workers=3"], big).view_as(DirectOptions)
    assert (given.direct_num_workers, given.direct_running_mode) == (3, "in_memory")
    mode = pipeline_options_from(["--direct_running_mode=in_memory"], big).view_as(DirectOptions)
    assert mode.direct_num_workers == 1
    other = pipeline_options_from(["--runner=PortableRunner"], big)
    assert other.view_as(DirectOptions).direct_num_workers == 1
    assert other.view_as(StandardOptions).runner == "PortableRunner"
