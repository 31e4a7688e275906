"""``throughput rejects list|export`` against DuckDB queries over ``DIR/rejects``.

Three real runs into one output: r1 and r2 reject records (r2 from two files), r3 rejects none,
so "the latest run that has rejects" is r2, not r3.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.rejects import EXPORT_COLUMNS, export_rejects, rejects_by_code, rejects_main, select_rejects
from pipelines.run import RunOptions, run
from tests.conftest import CONFIG_DATA, record, write_jsonl


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("rejects")
    config = base / "workstreams.json"
    config.write_text(json.dumps(CONFIG_DATA))
    output = base / "out"
    runs = {
        "r1": {"a.jsonl": [record(unique_id="a1"), "{not json, naïve ü", record(task_count=-1, unique_id="a2"),
                           record(unique_id="a3"), record(task_count=-2, unique_id="a4"),
                           record(worker_id=None, unique_id="a5")]},
        "r2": {"b1.jsonl": [record(workstream_id="ws-nope", unique_id="b1"), record(unique_id="b2"),
                            record(task_count=-5, unique_id="b3")],
               "b2.jsonl": [record(task_started_at="2026-11-04", unique_id="b4"), '{"a": "quote \\" and, comma"',
                            record(task_count=-6, unique_id="b5")]},
        "r3": {"c.jsonl": [record(unique_id="c1"), record(unique_id="c2")]},
    }
    for run_id, files in runs.items():
        paths = tuple(str(write_jsonl(base / "in" / run_id / name, rows)) for name, rows in files.items())
        run(RunOptions(inputs=paths, output=str(output), workstreams=str(config), run_id=run_id),
            ["--direct_num_workers=1"])
    return output


def _query(sql: str) -> list[dict[str, Any]]:
    relation = duckdb.sql(sql)
    return [dict(zip(relation.columns, row)) for row in relation.fetchall()]


def _rejects(out: Path) -> str:
    return f"""(SELECT r.*, m.finished_at
                FROM read_parquet('{out}/rejects/**/*.parquet', hive_partitioning = true, hive_types = {{'run_id': VARCHAR}}) r
                JOIN read_json('{out}/_runs/*.json', union_by_name = true) m USING (run_id))"""


def _expected_by_code(out: Path, where: str = "true") -> list[dict[str, Any]]:
    return _query(f"""SELECT run_id, error_code, count(*) AS count,
                             first(error_message ORDER BY source_file, source_line) AS example_message
                      FROM {_rejects(out)} WHERE {where}
                      GROUP BY run_id, error_code, finished_at
                      ORDER BY finished_at, count DESC, error_code""")


def _expected_rows(out: Path, where: str = "true") -> list[dict[str, Any]]:
    return _query(f"""SELECT {', '.join(EXPORT_COLUMNS)} FROM {_rejects(out)} WHERE {where}
                      ORDER BY finished_at, source_file, source_line""")


def test_the_output_has_what_the_tests_need(out: Path) -> None:
    runs = _query(f"SELECT run_id, count(*) AS n, count(DISTINCT source_file) AS files FROM {_rejects(out)} GROUP BY ALL ORDER BY ALL")
    assert runs == [{"run_id": "r1", "n": 4, "files": 1}, {"run_id": "r2", "n": 5, "files": 2}]
    assert (out / "_runs" / "r3.json").exists()


# -- list -----------------------------------------------------------------------------------

def test_by_code_defaults_to_the_latest_run_that_has_rejects(out: Path) -> None:
    expected = _expected_by_code(out, "run_id = 'r2'")
    assert rejects_by_code(str(out)).to_pylist() == expected
    assert [r["error_code"] for r in expected][0] == "invalid_value"  # two of them: listed first


def test_latest_is_by_finish_time_not_by_its_text(out: Path, tmp_path: Path) -> None:
    """r1 re-dated 3 hours after r2, written in UTC-5: earlier as text, later in time, so the latest."""
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    r2 = json.loads((copy / "_runs" / "r2.json").read_text())
    later = datetime.fromisoformat(r2["finished_at"]) + timedelta(hours=3)
    r1_file = copy / "_runs" / "r1.json"
    r1 = {**json.loads(r1_file.read_text()), "finished_at": later.astimezone(timezone(timedelta(hours=-5))).isoformat()}
    r1_file.write_text(json.dumps(r1))
    assert r1["finished_at"] < r2["finished_at"]
    assert set(rejects_by_code(str(copy)).column("run_id").to_pylist()) == {"r1"}
    assert rejects_by_code(str(copy), all_runs=True).column("run_id").to_pylist()[-1] == "r1"


@pytest.mark.parametrize("run_id", ["r1", "r2"])
def test_by_code_of_one_run(out: Path, run_id: str) -> None:
    assert rejects_by_code(str(out), run_id).to_pylist() == _expected_by_code(out, f"run_id = '{run_id}'")


def test_by_code_of_every_run(out: Path) -> None:
    expected = _expected_by_code(out)
    assert rejects_by_code(str(out), all_runs=True).to_pylist() == expected
    # the example is the message of the code's first record by file and line
    assert {r["example_message"] for r in expected if r["run_id"] == "r1" and r["error_code"] == "invalid_value"} == {
        _query(f"SELECT error_message FROM {_rejects(out)} WHERE run_id = 'r1' AND source_line = 3")[0]["error_message"]}


def test_list_prints_each_code_with_count_and_example(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert rejects_main(["list", "--output", str(out), "--all"]) == 0
    printed = capsys.readouterr().out
    blocks = printed.split("\n\n")
    assert [b.split()[1] for b in blocks] == ["r1", "r2"]
    for block in blocks:
        run_id = block.split()[1]
        expected = _expected_by_code(out, f"run_id = '{run_id}'")
        assert f"{sum(r['count'] for r in expected)} rejects" in block.splitlines()[0]
        lines = block.splitlines()[2:]
        assert len(lines) == len(expected)
        for line, want in zip(lines, expected):
            code, count, example = line.split(maxsplit=2)
            assert (code, int(count)) == (want["error_code"], want["count"])
            assert want["example_message"].startswith(example.rstrip("…"))


def test_list_a_run_without_rejects(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert rejects_by_code(str(out), "r3").num_rows == 0
    assert rejects_main(["list", "--output", str(out), "--run-id", "r3"]) == 0
    assert capsys.readouterr().out.strip() == "run r3: no rejects"


@pytest.mark.parametrize("run_id", ["r9", "../r1", "r1/../r2"])
def test_an_unknown_run_is_a_problem_with_the_output(out: Path, run_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert rejects_main(["list", "--output", str(out), "--run-id", run_id]) == 1
    assert capsys.readouterr().err == f"throughput rejects: no run {run_id!r} in {out}\n"


@pytest.mark.parametrize("command", [["list"], ["export", "--format", "jsonl"]])
def test_a_missing_output_folder_is_one_clear_line(tmp_path: Path, command: list[str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "not-there"
    assert rejects_main([*command, "--output", str(missing)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and str(missing) in captured.err


@pytest.mark.parametrize("args", [
    [],
    ["frob", "--output", "{out}"],
    ["list"],
    ["list", "--output", "{out}", "--run-id", "r1", "--all"],
    ["export", "--output", "{out}"],
    ["export", "--output", "{out}", "--format", "xml"],
], ids=["nothing", "unknown command", "no output", "run and all", "no format", "unknown format"])
def test_usage_errors_exit_2(out: Path, args: list[str]) -> None:
    assert rejects_main([a.format(out=out) for a in args]) == 2


# -- export ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "where"), [
    (["--run-id", "r1"], "run_id = 'r1'"),
    ([], "run_id = 'r2'"),
    (["--all", "--code", "invalid_value"], "error_code = 'invalid_value'"),
    (["--run-id", "r2", "--code", "malformed_json", "--code", "unknown_workstream"],
     "run_id = 'r2' AND error_code IN ('malformed_json', 'unknown_workstream')"),
], ids=["one run", "latest run", "one code, every run", "two codes of one run"])
def test_export_jsonl(out: Path, tmp_path: Path, args: list[str], where: str) -> None:
    target = tmp_path / "rejects.jsonl"
    assert rejects_main(["export", "--output", str(out), "--format", "jsonl", "--to", str(target), *args]) == 0
    exported = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    expected = _expected_rows(out, where)
    assert expected and exported == expected
    assert [list(r) for r in exported] == [list(EXPORT_COLUMNS)] * len(exported)


def test_export_keeps_the_raw_text_as_read(out: Path) -> None:
    buffer = io.StringIO()
    assert export_rejects(str(out), buffer, "jsonl", "r1", ["malformed_json"]) == 1
    assert json.loads(buffer.getvalue())["raw"] == "{not json, naïve ü"


@pytest.mark.parametrize(("args", "where"), [
    (["--all"], "true"),
    (["--run-id", "r2", "--code", "invalid_value"], "run_id = 'r2' AND error_code = 'invalid_value'"),
], ids=["every run", "one code of one run"])
def test_export_csv_to_standard_output(out: Path, args: list[str], where: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert rejects_main(["export", "--output", str(out), "--format", "csv", *args]) == 0
    captured = capsys.readouterr()
    rows = list(csv.reader(io.StringIO(captured.out, newline="")))
    assert rows[0] == list(EXPORT_COLUMNS)
    expected = _expected_rows(out, where)
    assert rows[1:] == [["" if r[c] is None else str(r[c]) for c in EXPORT_COLUMNS] for r in expected]
    assert captured.err.startswith(f"exported {len(expected)} reject(s)")


def test_export_csv_file_reads_back_in_duckdb(out: Path, tmp_path: Path) -> None:
    target = tmp_path / "rejects.csv"
    assert rejects_main(["export", "--output", str(out), "--format", "csv", "--all", "--to", str(target)]) == 0
    back = _query(f"SELECT * FROM read_csv('{target}', header = true, all_varchar = true)")
    expected = _expected_rows(out)
    assert back == [{c: None if r[c] is None else str(r[c]) for c in EXPORT_COLUMNS} for r in expected]
    assert any('"' in r["raw"] and "," in r["raw"] for r in back)


def test_export_of_a_run_without_rejects_is_empty(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert select_rejects(str(out), "r3").num_rows == 0
    assert rejects_main(["export", "--output", str(out), "--format", "jsonl", "--run-id", "r3"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("exported 0 reject(s) of run r3")


def test_a_retry_owns_the_rejects_that_still_fail(tmp_path: Path, config_file: Path) -> None:
    """After ``rejects retry``, what still fails is the retry run's (a manifest of kind "retry")."""
    from pipelines.run import retry_rejects

    source = write_jsonl(tmp_path / "in" / "a.jsonl", [record(use_case_id="uc-later", unique_id="k1"), "{oops"])
    options = RunOptions(inputs=(str(source),), output=str(tmp_path / "out"), workstreams=str(config_file), run_id="r1")
    run(options, ["--direct_num_workers=1"])
    assert rejects_by_code(str(tmp_path / "out")).column("error_code").to_pylist() == ["malformed_json", "unknown_use_case"]
    config = json.loads(config_file.read_text())
    config["workstreams"][0]["use_cases"].append({"id": "uc-later", "task_definitions": [config["workstreams"][0]["use_cases"][0]["task_definitions"][0]]})
    config_file.write_text(json.dumps(config))
    retry_rejects(RunOptions(inputs=(), output=str(tmp_path / "out"), workstreams=str(config_file), run_id="r2"),
                  ["--direct_num_workers=1"])
    out = tmp_path / "out"
    assert rejects_by_code(str(out), all_runs=True).to_pylist() == _expected_by_code(out)
    assert [(r["run_id"], r["error_code"]) for r in rejects_by_code(str(out)).to_pylist()] == [("r2", "malformed_json")]
    assert rejects_by_code(str(out), "r1").num_rows == 0  # its rejects were retried: r1 is known, with none left
