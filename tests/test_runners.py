"""SPEC 2.4: the order, and so the tables, do not depend on the runner, workers or chunk size."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.run import RunOptions, run
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
