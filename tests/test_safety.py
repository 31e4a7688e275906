"""Safety under misuse and faults: what a careless operator and a hostile input do.

Nothing outside the output is written or deleted, a file is one file however it is spelled,
a file that cannot be read whole is never committed in part, one writer at a time, and
damaged state is named. Each test here failed on the code before the output layout had
one home.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines.errors import DamagedOutput, OutputBusy, RunError
from pipelines.maintenance import compact
from pipelines.run import RunOptions, run
from tests.conftest import TD, UC, record, write_jsonl
from transforms.layout import LayoutError, OutputLayout, check_run_id, escape_partition_value

ROOT = Path(__file__).resolve().parents[1]
ONE = ["--direct_num_workers=1"]


def _run(inputs: list[str] | str, output: str | Path, config_file: Path, **options: object):
    patterns = (inputs,) if isinstance(inputs, str) else tuple(inputs)
    return run(RunOptions(inputs=patterns, output=str(output), workstreams=str(config_file), **options), ONE)  # type: ignore[arg-type]


def _rows(output: Path, table: str = "task_completed") -> list[tuple]:
    if not list((output / table).rglob("*.parquet")):
        return []
    return duckdb.sql(f"select * from read_parquet('{output}/{table}/**/*.parquet', hive_partitioning=true, "
                      "hive_types={'workstream_id': VARCHAR})").fetchall()


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- 1. nothing outside --output ------------------------------------------------------------


@pytest.mark.parametrize("run_id", ["..", ".", "../task_completed", "../../somewhere", "a/b", ".hidden", "", "x" * 200,
                                    "r\x00", "r 1"])
def test_a_run_id_is_a_name_not_a_path(tmp_path: Path, config_file: Path, run_id: str) -> None:
    write_jsonl(tmp_path / "in" / "a.jsonl", [record(unique_id="u1")])
    out = tmp_path / "deep" / "out"
    _run(str(tmp_path / "in" / "a.jsonl"), out, config_file, run_id="first")
    before = _tree(tmp_path)
    (tmp_path / "in" / "b.jsonl").write_text(json.dumps(record(unique_id="u2")) + "\n")
    before["in/b.jsonl"] = (tmp_path / "in" / "b.jsonl").read_bytes()
    with pytest.raises(RunError, match="not a valid run id"):
        _run(str(tmp_path / "in" / "*.jsonl"), out, config_file, run_id=run_id)
    assert _tree(tmp_path) == before


def test_valid_run_ids_pass() -> None:
    for name in ("20201222T000000Z-abc123", "nightly_2020-12-22", "a.b", "-x"):
        assert check_run_id(name) == name


def test_relative_output_and_compact_from_another_working_folder(tmp_path: Path, config_file: Path) -> None:
    """``compact --output out`` once wrote at the filesystem root or moved the table under out/<cwd>/out."""
    work = tmp_path / "work"
    write_jsonl(work / "in" / "a.jsonl", [record(unique_id="u1")])
    write_jsonl(work / "in" / "b.jsonl", [record(unique_id="u2", task_id="t2")])
    elsewhere = tmp_path / "elsewhere" / "deeper"
    elsewhere.mkdir(parents=True)
    cwd = os.getcwd()
    try:
        os.chdir(work)
        _run("in/a.jsonl", "out", config_file)
        _run("./in/b.jsonl", "./out/", config_file)
        os.chdir(elsewhere)
        manifest = compact("../../work/out")
    finally:
        os.chdir(cwd)
    assert manifest["partitions_compacted"] == 1  # task_completed's partition; throughput_daily has one file
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.parquet"))
    assert all(str(p).startswith("work/out/") for p in files), files
    assert len(list((work / "out" / "task_completed").rglob("*.parquet"))) == 1
    assert len(_rows(work / "out")) == 2
    assert not (elsewhere / "work").exists() and not (elsewhere / "out").exists()


@pytest.mark.parametrize("output", ["", "  ", "out[1]", "out*", "o{a,b}"])
def test_empty_or_glob_outputs_are_refused(tmp_path: Path, config_file: Path, output: str) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record()])
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        with pytest.raises(RunError, match="--output"):
            _run("a.jsonl", output, config_file)
    finally:
        os.chdir(cwd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "workstreams.json"]


def test_the_layout_refuses_every_path_outside_the_output(tmp_path: Path) -> None:
    layout = OutputLayout.at(str(tmp_path / "out"))
    (tmp_path / "keep").write_text("x")
    for path in (str(tmp_path / "keep"), str(tmp_path / "out"), str(tmp_path / "out" / ".." / "keep"),
                 str(tmp_path / "outside-out"), "/"):
        with pytest.raises(LayoutError):
            layout.delete([path])
        with pytest.raises(LayoutError):
            layout.rename(path, str(tmp_path / "out" / "x"))
    with pytest.raises(LayoutError):
        layout.join("..", "x")
    assert (tmp_path / "keep").read_text() == "x"


def _staged_file(path: str) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(b"x")
    return path


def test_a_staged_folder_moves_whole_only_when_it_is_new_and_holds_only_journaled_files(tmp_path: Path) -> None:
    out = OutputLayout.at(str(tmp_path / "out"))
    staged = out.staging("r1")
    new_a = staged.join("task_completed", "workstream_id=a", "completed_date=2020-01-02", "part-r1.parquet")
    old_a = staged.join("task_completed", "workstream_id=a", "completed_date=2020-01-01", "part-r1.parquet")
    new_b = staged.join("task_completed", "workstream_id=b", "completed_date=2020-01-01", "part-r1.parquet")
    stray = staged.join("task_completed", "workstream_id=b", "completed_date=2020-01-02", "stray.parquet")
    sources = {_staged_file(path) for path in (new_a, old_a, new_b)}
    _staged_file(stray)
    (Path(staged.join("task_completed", "workstream_id=b", "completed_date=2020-01-03"))).mkdir()
    _staged_file(out.join("task_completed", "workstream_id=a", "completed_date=2020-01-01", "part-r0.parquet"))

    movable = staged.movable_folders(sources, out)

    # workstream_id=a is in the output already, and workstream_id=b holds a stray file and an empty folder
    assert sorted(movable) == [staged.join("task_completed", "workstream_id=a", "completed_date=2020-01-02"),
                               staged.join("task_completed", "workstream_id=b", "completed_date=2020-01-01")]
    import tests.memfs  # noqa: F401 - registers memfs://, a store without folders

    assert OutputLayout("memfs://bucket/out").staging("r1").movable_folders(sources, out) == []


def test_a_commit_moves_only_journaled_files_into_the_tables(tmp_path: Path) -> None:
    from pipelines.commit import Journal, StagedRun

    out = OutputLayout.at(str(tmp_path / "out"))
    run = StagedRun(out, "r1")
    partition = ("task_completed", "workstream_id=a", "completed_date=2020-01-01")
    journaled = [_staged_file(run.area.join(*partition, f"part-{n}.parquet")) for n in range(3)]
    _staged_file(run.area.join(*partition, "stray.parquet"))
    new_table = _staged_file(run.area.join("throughput_daily", "workstream_id=a", "completed_date=2020-01-01", "d.parquet"))
    earlier = _staged_file(out.join(*partition[:2], "completed_date=2019-12-31", "part-r0.parquet"))

    Journal.of_staged(run, [*journaled, new_table], [], {"run_id": "r1"}).commit()

    assert _tree(tmp_path / "out" / "task_completed") == {
        f"workstream_id=a/completed_date=2020-01-01/part-{n}.parquet": b"x" for n in range(3)
    } | {"workstream_id=a/completed_date=2019-12-31/part-r0.parquet": b"x"}
    assert _tree(tmp_path / "out" / "throughput_daily") == {"workstream_id=a/completed_date=2020-01-01/d.parquet": b"x"}
    assert Path(earlier).exists() and not Path(run.root).exists()


# -- 2. one file, however it is spelled -------------------------------------------------------


def test_the_same_file_spelled_two_ways_is_ingested_once(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "l" / "a.jsonl", [record(), record(task_id="t2")])  # no unique_id: would land twice
    (tmp_path / "link").symlink_to(tmp_path / "l")
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        first = _run(["./l/a.jsonl", "l/a.jsonl", "link/a.jsonl"], "out", config_file)
        assert first.manifest["counts"]["written"] == 2
        second = _run(f"{tmp_path}/l/*.jsonl", tmp_path / "out", config_file)
        assert second.manifest["counts"]["read"] == 0
        assert [s["reason"] for s in second.manifest["skipped_inputs"]] == ["already ingested, unchanged"]
    finally:
        os.chdir(cwd)
    assert len(_rows(tmp_path / "out")) == 2


def test_a_copy_under_another_name_is_reported_not_ingested_again(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "l" / "a.jsonl", [record(), record(task_id="t2")])
    _run(str(tmp_path / "l" / "a.jsonl"), tmp_path / "out", config_file)
    shutil.copy(tmp_path / "l" / "a.jsonl", tmp_path / "l" / "a-copy.jsonl")
    again = _run(str(tmp_path / "l" / "*.jsonl"), tmp_path / "out", config_file)
    assert again.manifest["counts"]["read"] == 0
    reasons = {Path(s["path"]).name: s["reason"] for s in again.manifest["skipped_inputs"]}
    assert reasons["a-copy.jsonl"].startswith("the same bytes as ") and "a.jsonl" in reasons["a-copy.jsonl"]
    assert len(_rows(tmp_path / "out")) == 2


def test_input_patterns_never_pick_up_the_outputs_own_files(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "work" / "a.jsonl", [record()])
    _run(str(tmp_path / "work" / "a.jsonl"), tmp_path / "work" / "out", config_file)
    write_jsonl(tmp_path / "work" / "b.jsonl", [record(task_id="t2")])
    again = _run(str(tmp_path / "work" / "**.json*"), tmp_path / "work" / "out", config_file)
    ingested = [Path(i["path"]).name for i in again.manifest["inputs"]]
    assert ingested == ["b.jsonl"]
    assert again.manifest["counts"]["rejected"] == 0


# -- 3. a file that cannot be read whole is never committed in part ----------------------------


def test_a_truncated_gzip_is_a_failed_input_not_a_partial_commit(tmp_path: Path, config_file: Path) -> None:
    good = write_jsonl(tmp_path / "in" / "good.jsonl", [record(unique_id="g")])
    whole = write_jsonl(tmp_path / "in" / "cut.jsonl.gz", [record(unique_id=f"u{i}", task_id="x" * 50) for i in range(300)],
                        compress=True)
    data = whole.read_bytes()
    whole.write_bytes(data[: len(data) // 2])
    result = _run(str(tmp_path / "in" / "*"), tmp_path / "out", config_file)
    assert [Path(f["path"]).name for f in result.failed_inputs] == ["cut.jsonl.gz"]
    assert "truncated gzip" in result.failed_inputs[0]["reason"]
    assert result.manifest["counts"]["written"] == 1
    assert len(_rows(tmp_path / "out")) == 1
    # not in the ledger: once it is whole again, the next run takes it
    whole.write_bytes(data)
    fixed = _run(str(tmp_path / "in" / "*"), tmp_path / "out", config_file)
    assert fixed.failed_inputs == [] and fixed.manifest["counts"]["written"] == 300
    assert str(good) in {s["path"] for s in fixed.manifest["skipped_inputs"]}


@pytest.mark.parametrize("name", ["growing.jsonl", "growing.csv"])
def test_a_file_written_to_while_the_run_reads_it_is_a_failed_input(tmp_path: Path, config_file: Path,
                                                                    monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A landing file still being written (or replaced) after the plan's pass: the rows read may not
    be the bytes whose checksum the ledger would keep, so the file is left out, never committed."""
    import pipelines.run as run_module

    good = write_jsonl(tmp_path / "in" / "good.jsonl", [record(unique_id="g")])
    rows = [record(unique_id=f"u{i}") for i in range(5)]
    growing = tmp_path / "in" / name
    if name.endswith(".csv"):
        growing.write_text(",".join(rows[0]) + "\n" + "".join(",".join(map(str, r.values())) + "\n" for r in rows))
    else:
        write_jsonl(growing, rows)
    build = run_module.build_pipeline

    def build_then_append(*args: object, **kwargs: object) -> object:
        with growing.open("a") as handle:  # a writer appends while the pipeline runs
            handle.write(handle.name.endswith(".csv") and ",".join(map(str, rows[0].values())) + "\n"
                         or json.dumps(record(unique_id="late")) + "\n")
        monkeypatch.setattr(run_module, "build_pipeline", build)  # once: the run goes on without the file
        return build(*args, **kwargs)

    monkeypatch.setattr(run_module, "build_pipeline", build_then_append)
    result = _run(str(tmp_path / "in" / "*"), tmp_path / "out", config_file)
    assert [(Path(f["path"]).name, f["reason"]) for f in result.failed_inputs] == [
        (name, "it changed while the run read it; the next run takes it")]
    assert result.manifest["counts"]["read"] == result.manifest["counts"]["written"] == 1
    assert [f["path"] for f in result.manifest["inputs"]] == [str(good)]
    later = _run(str(tmp_path / "in" / "*"), tmp_path / "out", config_file)  # whole now: taken once
    assert later.failed_inputs == [] and later.manifest["counts"]["read"] == 6


def test_a_corrupt_gzip_and_a_fifo_are_failed_inputs(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "in" / "good.jsonl", [record()])
    (tmp_path / "in" / "bad.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"not deflate at all" * 10)
    os.mkfifo(tmp_path / "in" / "pipe.jsonl")
    result = _run(str(tmp_path / "in" / "*"), tmp_path / "out", config_file)
    reasons = {Path(f["path"]).name: f["reason"] for f in result.failed_inputs}
    assert set(reasons) == {"bad.jsonl.gz", "pipe.jsonl"}
    assert "not a regular file" in reasons["pipe.jsonl"]
    assert result.manifest["counts"]["written"] == 1


def test_a_file_name_that_is_not_utf8_is_a_failed_input(tmp_path: Path, config_file: Path) -> None:
    folder = tmp_path / "in"
    write_jsonl(folder / "good.jsonl", [record()])
    with open(os.path.join(os.fsencode(folder), b"bad-\xff.jsonl"), "wb") as handle:
        handle.write(json.dumps(record(task_id="t2")).encode() + b"\n")
    result = _run(str(folder / "*.jsonl"), tmp_path / "out", config_file)
    assert len(result.failed_inputs) == 1 and "not valid UTF-8" in result.failed_inputs[0]["reason"]
    assert result.manifest["counts"]["written"] == 1
    json.dumps(result.manifest)  # the manifest stays writable


def test_an_ingested_file_that_became_empty_keeps_its_rows(tmp_path: Path, config_file: Path) -> None:
    path = write_jsonl(tmp_path / "in" / "a.jsonl", [record(unique_id="u1"), record(unique_id="u2")])
    _run(str(path), tmp_path / "out", config_file)
    path.write_text("")
    result = _run(str(path), tmp_path / "out", config_file)
    assert len(result.failed_inputs) == 1 and "is empty now" in result.failed_inputs[0]["reason"]
    assert len(_rows(tmp_path / "out")) == 2
    forced = _run(str(path), tmp_path / "out", config_file, reprocess=True)
    assert forced.manifest["tables"]["task_completed"]["rows_removed"] == 2
    assert _rows(tmp_path / "out") == []


# -- 4. one writer at a time --------------------------------------------------------------------


def _hold_in_subprocess(output: Path, ready: Path) -> subprocess.Popen[bytes]:
    code = ("import sys, time, pathlib\n"
            "from pipelines.lock import hold_output\nfrom transforms.layout import OutputLayout\n"
            f"with hold_output(OutputLayout.at({str(output)!r}), 'holder-run'):\n"
            f"    pathlib.Path({str(ready)!r}).write_text('x')\n    time.sleep(60)\n")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)


def test_a_second_writer_is_refused_at_once_naming_the_holder(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [record()])
    holder = _hold_in_subprocess(tmp_path / "out", tmp_path / "ready")
    try:
        for _ in range(200):
            if (tmp_path / "ready").exists():
                break
            time.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(OutputBusy, match=rf"in use by run holder-run \(host .*, pid {holder.pid}, since "):
            _run(str(tmp_path / "a.jsonl"), tmp_path / "out", config_file)
        with pytest.raises(OutputBusy):
            compact(str(tmp_path / "out"))
        assert time.monotonic() - started < 30
        assert not (tmp_path / "out" / "_staging").exists()
    finally:
        holder.kill()  # kill -9: the kernel drops the lock with the process
        holder.wait()
    assert _run(str(tmp_path / "a.jsonl"), tmp_path / "out", config_file).manifest["counts"]["written"] == 1


# -- 5. damaged state is named ---------------------------------------------------------------


def _two_runs(tmp_path: Path, config_file: Path) -> Path:
    write_jsonl(tmp_path / "in" / "a.jsonl", [record(unique_id="u1")])
    _run(str(tmp_path / "in" / "a.jsonl"), tmp_path / "out", config_file)
    write_jsonl(tmp_path / "in" / "b.jsonl", [record(unique_id="u2")])
    _run(str(tmp_path / "in" / "b.jsonl"), tmp_path / "out", config_file)
    write_jsonl(tmp_path / "in" / "c.jsonl", [record(unique_id="u1", task_id="again")])
    return tmp_path / "out"


def _ledger(out: Path) -> Path:
    return sorted((out / "_ledger").glob("ledger-*.json"))[-1]


@pytest.mark.parametrize("damage, message", [
    (lambda out: _ledger(out).write_text(_ledger(out).read_text()[:40]), "is damaged .not whole JSON"),
    (lambda out: _ledger(out).write_text(json.dumps({"entries": [{"path": "x"}], "index_files": []})), "lacks"),
    (lambda out: (out / "_ledger" / "ledger-old.json").write_text("[]"), "is not a ledger file"),
    (lambda out: shutil.rmtree(out / "_ledger"), "ledger of .* is missing"),
    (lambda out: [p.unlink() for p in (out / "_index").rglob("*.parquet")], "key index of .* lost"),
    (lambda out: [shutil.copy(p, p.with_name("copy.parquet")) for p in (out / "_index").rglob("*.parquet")],
     "no commit wrote it"),
])
def test_damaged_state_is_named_never_taken_for_empty(tmp_path: Path, config_file: Path, damage, message: str) -> None:
    out = _two_runs(tmp_path, config_file)
    damage(out)
    with pytest.raises(DamagedOutput, match=message):
        _run(str(tmp_path / "in" / "c.jsonl"), out, config_file)
    assert len(_rows(out)) == 2


def test_a_garbage_parquet_in_the_index_or_a_partition_is_named(tmp_path: Path, config_file: Path) -> None:
    out = _two_runs(tmp_path, config_file)
    index_file = next((out / "_index").rglob("*.parquet"))
    index_file.write_bytes(b"garbage")
    with pytest.raises(RunError, match=rf"{index_file} is damaged"):
        _run(str(tmp_path / "in" / "c.jsonl"), out, config_file)
    assert len(_rows(out.parent / "out", "throughput_daily")) == 1


# -- 6/7. keys that could collide, and partition values written as Hive and Spark do -----------


def test_ids_holding_the_key_separator_never_collide(tmp_path: Path, config_file: Path) -> None:
    """(uc, "a\\x1fb") and a use case "…\\x1fa" with unique_id "b" joined to the same text before."""
    config = json.loads(config_file.read_text())
    config["workstreams"][0]["use_cases"].append({"id": f"{UC}\x1fa", "task_definitions": [TD]})
    config["workstreams"][0]["use_cases"][0]["task_definitions"].append(f"{TD}\x1fx")
    config_file.write_text(json.dumps(config))
    rows = [record(unique_id="a\x1fb", task_definition_id=TD), record(use_case_id=f"{UC}\x1fa", unique_id="b"),
            record(unique_id="z"), record(task_definition_id=f"{TD}\x1fx", unique_id="z")]
    write_jsonl(tmp_path / "a.jsonl", rows)
    result = _run(str(tmp_path / "a.jsonl"), tmp_path / "out", config_file)
    assert result.manifest["counts"]["written"] == 4
    assert result.manifest["counts"]["superseded"] == 0


def test_a_later_run_replaces_only_the_rows_of_its_keys_whatever_the_ids_hold(tmp_path: Path, config_file: Path) -> None:
    """Across runs, the earlier rows a record replaces are found by their whole key: ids that hold
    the separator, or end like another key's id, are not taken for one another."""
    config = json.loads(config_file.read_text())
    config["workstreams"][0]["use_cases"].append({"id": f"{UC}\x1fa", "task_definitions": [TD]})
    config_file.write_text(json.dumps(config))
    first = [record(task_id="t1", unique_id="a\x1fb"), record(task_id="t2", use_case_id=f"{UC}\x1fa", unique_id="b"),
             record(task_id="t3", unique_id="b"), record(task_id="t4", unique_id="\x1e1b")]
    write_jsonl(tmp_path / "night1.jsonl", first)
    _run(str(tmp_path / "night1.jsonl"), tmp_path / "out", config_file)
    write_jsonl(tmp_path / "night2.jsonl", [record(task_id="t1-new", unique_id="a\x1fb", replace_duplicate=True),
                                           record(task_id="t3-new", unique_id="b", replace_duplicate=True)])
    result = _run(str(tmp_path / "night2.jsonl"), tmp_path / "out", config_file)
    assert result.manifest["counts"]["replaced_existing"] == 2
    tasks = duckdb.sql(f"select task_id from read_parquet('{tmp_path}/out/task_completed/**/*.parquet') "
                       "order by task_id").fetchall()
    assert [t for (t,) in tasks] == ["t1-new", "t2", "t3-new", "t4"]


def test_partition_values_are_escaped_as_hive_and_spark_escape_them(tmp_path: Path, config_file: Path) -> None:
    assert escape_partition_value("ws-café") == "ws-café"
    assert escape_partition_value("ws with space") == "ws with space"
    assert escape_partition_value("a/b=c%d:e") == "a%2Fb%3Dc%25d%3Ae"
    config = json.loads(config_file.read_text())
    for ws in ("ws-café", "ws with space", "a/b=c"):
        config["workstreams"].append({"id": ws, "use_cases": [{"id": UC, "task_definitions": [TD]}]})
    config_file.write_text(json.dumps(config))
    write_jsonl(tmp_path / "a.jsonl", [record(workstream_id=ws) for ws in ("ws-café", "ws with space", "a/b=c")])
    _run(str(tmp_path / "a.jsonl"), tmp_path / "out", config_file)
    folders = sorted(p.name for p in (tmp_path / "out" / "task_completed").iterdir())
    assert folders == ["workstream_id=a%2Fb%3Dc", "workstream_id=ws with space", "workstream_id=ws-café"]
    found = duckdb.sql(f"select workstream_id from read_parquet('{tmp_path}/out/task_completed/**/*.parquet', "
                       "hive_partitioning=true) where workstream_id = 'ws-café'").fetchall()
    assert found == [("ws-café",)]


def test_an_output_with_old_partition_names_is_migrated_by_compact(tmp_path: Path, config_file: Path) -> None:
    config = json.loads(config_file.read_text())
    config["workstreams"].append({"id": "ws café", "use_cases": [{"id": UC, "task_definitions": [TD]}]})
    config_file.write_text(json.dumps(config))
    write_jsonl(tmp_path / "a.jsonl", [record(workstream_id="ws café", unique_id="u1")])
    out = tmp_path / "out"
    _run(str(tmp_path / "a.jsonl"), out, config_file)
    # make it look like an output written before: old names, no layout marker
    for table in ("task_completed", "throughput_daily"):
        (out / table / "workstream_id=ws café").rename(out / table / "workstream_id=ws%20caf%C3%A9")
    (out / "_layout.json").unlink()
    write_jsonl(tmp_path / "b.jsonl", [record(workstream_id="ws café", unique_id="u1", task_id="new")])
    with pytest.raises(RunError, match="throughput compact"):
        _run(str(tmp_path / "b.jsonl"), out, config_file)
    compact(str(out))
    assert sorted(p.name for p in (out / "task_completed").iterdir()) == ["workstream_id=ws café"]
    result = _run(str(tmp_path / "b.jsonl"), out, config_file)
    assert result.manifest["counts"]["replaced_existing"] == 1
    assert [r[0] for r in duckdb.sql(f"select task_id from read_parquet('{out}/task_completed/**/*.parquet')").fetchall()] \
        == ["new"]


def test_counts_in_the_manifest_reconcile_after_a_failed_input(tmp_path: Path, config_file: Path) -> None:
    write_jsonl(tmp_path / "in" / "a.jsonl", [record(), "oops"])
    with gzip.open(tmp_path / "in" / "b.jsonl.gz", "wb") as handle:
        handle.write(b"x" * 1000)
    data = (tmp_path / "in" / "b.jsonl.gz").read_bytes()
    (tmp_path / "in" / "b.jsonl.gz").write_bytes(data[:-12])
    result = _run(str(tmp_path / "in" / "*"), tmp_path / "out", config_file)
    assert result.manifest["counts"]["reconciles"] is True
    assert result.manifest["counts"]["read"] == 2
    assert pq.read_table(next((tmp_path / "out" / "rejects").rglob("*.parquet"))).num_rows == 1
