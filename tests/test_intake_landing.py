"""The intake server's parts without a server: keys, body checks, landing files and their recovery."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from intake.cli import key_main, main
from intake.keys import KeyRing, digest
from intake.landing import LandingFiles, LandingLayout, Write, recover_all, recover_file
from intake.records import BodyChecker, Rejection
from intake.settings import read_workstreams
from schemas.config import ConfigError, WorkstreamConfig
from schemas.record import RecordContext, validate_record
from tests.conftest import CONFIG_DATA, WS, record

RECEIVED = "2026-01-02T03:04:05.000006Z"


# --- keys ----------------------------------------------------------------------------------------

def test_new_key_prints_a_key_once_and_the_digest_that_matches_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert key_main(["--workstream", WS]) == 0
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    key, key_digest = lines[1], lines[3]
    assert len(key) >= 40 and WS in lines[0] and WS in lines[2]
    assert key_digest == hashlib.sha256(key.encode()).hexdigest()
    ring = KeyRing({WS: (key_digest,)})
    assert ring.allows(WS, key)
    assert key_main(["--workstream", WS]) == 0
    assert capsys.readouterr().out.splitlines()[1].strip() != key  # random each time


def test_new_key_without_workstream_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert key_main([]) == 2
    assert "--workstream" in capsys.readouterr().err
    assert main(["bogus"]) == 2


def test_keys_are_per_workstream_and_unknown_workstreams_are_refused() -> None:
    ring = KeyRing({"a": (digest("key-a"), digest("key-a2")), "b": (digest("key-b"),), "none": ()})
    assert ring.allows("a", "key-a") and ring.allows("a", "key-a2") and ring.allows("b", "key-b")
    assert not ring.allows("a", "key-b")  # another workstream's key
    assert not ring.allows("a", None) and not ring.allows("a", "")
    assert not ring.allows("a", "KEY-A")
    assert not ring.allows("unknown", "key-a")
    assert not ring.allows("none", "")
    assert ring.workstreams_without_keys() == ["none"]


def test_configuration_is_read_without_beam_and_checked_for_digests(tmp_path: Path) -> None:
    good = tmp_path / "ws.yaml"
    good.write_text(f"workstreams:\n  - id: {WS}\n    api_key_sha256: ['{digest('k').upper()}']\n")
    assert read_workstreams(str(good)).workstreams[0].api_key_sha256 == (digest("k").upper(),)
    bad = tmp_path / "bad.json"
    bad.write_text(orjson.dumps({"workstreams": [{"id": WS, "api_key_sha256": ["plain-key"]}]}).decode())
    with pytest.raises(ConfigError, match="not a SHA-256 hex digest"):
        read_workstreams(str(bad))
    slash = tmp_path / "slash.json"
    slash.write_text(orjson.dumps({"workstreams": [{"id": "a/b"}]}).decode())
    with pytest.raises(ConfigError, match="cannot name a landing folder"):
        read_workstreams(str(slash))
    with pytest.raises(ConfigError, match="cannot read"):
        read_workstreams(str(tmp_path / "missing.json"))


# --- bodies --------------------------------------------------------------------------------------

@pytest.fixture
def checker() -> BodyChecker:
    return BodyChecker(WorkstreamConfig.model_validate(CONFIG_DATA))


def _pipeline_rejection(data: dict[str, Any]) -> tuple[str, str | None, str]:
    """What the batch path's rejects table says about the same record."""
    config = WorkstreamConfig.model_validate(CONFIG_DATA)
    verdict = validate_record({**data, "workstream_id": WS, "received_at": RECEIVED},
                              RecordContext(config=config, path_workstream=WS))
    first = verdict.errors[0]
    return str(first.code), first.field, "; ".join(e.describe() for e in verdict.errors)


@pytest.mark.parametrize("overrides", [
    {"worker_id": 5},
    {"task_count": -1, "duration": -3},
    {"task_started_at": "yesterday"},
    {"task_completed_at": "2020-12-22T08:00:00Z"},
    {"data_source": "fax"},
    {"use_case_id": "nope"},
    {"task_definition_id": "nope"},
    {"worker_id": None, "task_started_at": "2020-12-22"},
])
def test_a_body_is_rejected_exactly_as_the_batch_path_rejects_it(checker: BodyChecker, overrides: dict[str, Any]) -> None:
    body = record(workstream_id=None, **overrides)
    outcome = checker.line(orjson.dumps(body), WS, RECEIVED)
    assert isinstance(outcome, Rejection)
    assert (outcome.code, outcome.field, outcome.message) == _pipeline_rejection(body)


def test_an_accepted_body_lands_as_sent_plus_the_envelope(checker: BodyChecker) -> None:
    body = record(workstream_id=None, worker_id="  Someone@Example.COM ", extra_thing={"a": [1, 2]})
    line = checker.line(orjson.dumps(body), WS, RECEIVED)
    assert isinstance(line, bytes)
    assert orjson.loads(line) == {**body, "workstream_id": WS, "received_at": RECEIVED}


@pytest.mark.parametrize("raw, code", [
    (b"{bad", "malformed_json"),
    (b"[1, 2]", "not_an_object"),
    (b'"text"', "not_an_object"),
    (b'{"worker_id": "\xff"}', "invalid_encoding"),
])
def test_bodies_that_are_not_json_objects(checker: BodyChecker, raw: bytes, code: str) -> None:
    outcome = checker.line(raw, WS, RECEIVED)
    assert isinstance(outcome, Rejection) and outcome.code == code and outcome.field is None


def test_a_body_naming_another_workstream_than_its_url_is_rejected(checker: BodyChecker) -> None:
    assert isinstance(checker.line(orjson.dumps(record(workstream_id=f" {WS} ")), WS, RECEIVED), bytes)
    outcome = checker.line(orjson.dumps(record(workstream_id="ws-audio", worker_id=7)), WS, RECEIVED)
    assert isinstance(outcome, Rejection)
    assert (outcome.code, outcome.field) == ("invalid_value", "workstream_id")
    assert "worker_id: must be a string" in outcome.message  # every problem listed


def test_a_client_received_at_is_replaced_by_the_servers(checker: BodyChecker) -> None:
    line = checker.line(orjson.dumps(record(received_at="not a time")), WS, RECEIVED)
    assert isinstance(line, bytes) and orjson.loads(line)["received_at"] == RECEIVED


def test_batch_array_and_json_lines(checker: BodyChecker) -> None:
    good = orjson.dumps(record(unique_id="g"))
    array = b"[" + b",".join([good, orjson.dumps(record(task_count="ten")), b"3", good]) + b"]"
    result = checker.batch(array, WS, RECEIVED)
    assert not isinstance(result, Rejection)
    lines, rejected = result
    assert len(lines) == 2 and [(i, r.code) for i, r in rejected] == [(1, "invalid_type"), (2, "not_an_object")]
    jsonl = b"\n".join([good, b"", b"{oops", b"  ", good + b"\r", b"[1]"]) + b"\n"
    result = checker.batch(jsonl, WS, RECEIVED)
    assert not isinstance(result, Rejection)
    lines, rejected = result
    assert len(lines) == 2 and [(i, r.code) for i, r in rejected] == [(1, "malformed_json"), (3, "not_an_object")]
    whole = checker.batch(b"[{", WS, RECEIVED)
    assert isinstance(whole, Rejection) and whole.code == "malformed_json"


def _no_duplicate_keys(line: bytes) -> dict[str, Any]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in items]
        assert len(keys) == len(set(keys)), f"duplicate keys in {line!r}"
        return dict(items)
    result: dict[str, Any] = json.loads(line, object_pairs_hook=pairs)
    return result


def test_a_landing_line_is_the_body_as_sent_plus_the_envelope(checker: BodyChecker) -> None:
    """The client's own text is kept; each envelope field appears once, whatever the body holds."""
    sent = json.dumps(record(workstream_id=None, unique_id="spaced", task_metadata={"n": 1}), indent=1).encode()
    sent = b" \r\n" + sent.replace(b"\n", b"\r\n") + b" \t\r\n"
    line = checker.line(sent, WS, RECEIVED)
    assert isinstance(line, bytes) and line.startswith(sent.strip()[:-1])
    assert _no_duplicate_keys(line) == {**json.loads(sent), "workstream_id": WS, "received_at": RECEIVED}
    for body in (record(workstream_id=WS), record(workstream_id=f" {WS} "), record(workstream_id=None, received_at="x")):
        landed = {**body, "workstream_id": WS, "received_at": RECEIVED}
        line = checker.line(orjson.dumps(body), WS, RECEIVED)
        assert isinstance(line, bytes) and _no_duplicate_keys(line) == landed
        result = checker.batch(b"\n".join([orjson.dumps(body)] * 2), WS, RECEIVED, json_lines=True)
        assert not isinstance(result, Rejection) and result[1] == []
        assert [_no_duplicate_keys(line) for line in result[0]] == [landed, landed]


def test_a_batch_checked_in_steps_numbers_its_bodies_across_the_steps(checker: BodyChecker) -> None:
    raw = b"\n".join(orjson.dumps(record(workstream_id=None, unique_id=f"s{i}", task_count=-1 if i % 7 == 3 else 1))
                     for i in range(25))
    bodies = checker.bodies(raw)
    assert not isinstance(bodies, Rejection) and len(bodies) == 25
    accepted: list[bytes] = []
    rejected: list[int] = []
    for start in range(0, 25, 10):
        step_accepted, step_rejected = checker.check(bodies, start, start + 10, WS, RECEIVED)
        accepted += step_accepted
        rejected += [index for index, _ in step_rejected]
    whole = checker.batch(raw, WS, RECEIVED)
    assert not isinstance(whole, Rejection)
    assert rejected == [i for i, _ in whole[1]] == [3, 10, 17, 24]
    assert accepted == whole[0] and len(accepted) == 21


# --- landing files -------------------------------------------------------------------------------

def _closed_lines(root: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for path in sorted(root.glob("workstream_id=*/*/*.jsonl"))
            for line in path.read_bytes().splitlines()]


def _write(n: int, day: str = "2026-01-02") -> Write:
    return Write(WS, day, orjson.dumps({"n": n}) + b"\n", 1)


def test_files_commit_rotate_by_size_and_close_into_place(tmp_path: Path) -> None:
    layout = LandingLayout(tmp_path / "landing")
    layout.prepare()
    files = LandingFiles(layout, max_file_bytes=20, max_file_seconds=3600)
    outcome = files.commit([_write(1), _write(2), _write(3, day="2026-01-03")])
    assert outcome.errors == [None, None, None] and len(outcome.fsync_seconds) == 2
    assert files.open_count == 2 and len(layout.leftovers()) == 2
    assert not list(layout.root.glob("workstream_id=*/*/*.jsonl"))  # nothing visible while open
    files.rotate()  # the 2026-01-02 file holds 16 bytes, under 20: stays open
    assert files.open_count == 2
    files.commit([_write(4)])
    files.rotate()
    assert files.open_count == 1
    closed = list(layout.root.glob(f"workstream_id={WS}/2026-01-02/*.jsonl"))
    assert len(closed) == 1 and closed[0].read_bytes() == b'{"n":1}\n{"n":2}\n{"n":4}\n'
    files.close_all()
    assert files.open_count == 0 and not layout.leftovers()
    assert sorted(r["n"] for r in _closed_lines(layout.root)) == [1, 2, 3, 4]


def test_files_close_by_age(tmp_path: Path) -> None:
    layout = LandingLayout(tmp_path)
    files = LandingFiles(layout, max_file_bytes=1 << 20, max_file_seconds=10)
    files.commit([_write(1)])
    deadline = files.next_age_deadline()
    assert deadline is not None
    files.rotate(now=deadline - 1)
    assert files.open_count == 1
    files.rotate(now=deadline)
    assert files.open_count == 0 and [r["n"] for r in _closed_lines(layout.root)] == [1]


def _leftover(layout: LandingLayout, content: bytes) -> Path:
    path = layout.new_open_path(WS, "2026-01-02")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("content, kept", [
    (b'{"n":1}\n{"n":2}\n', b'{"n":1}\n{"n":2}\n'),
    (b'{"n":1}\n{"n":2}\n{"n":3, "wor', b'{"n":1}\n{"n":2}\n'),  # torn: no newline
    (b'{"n":1}\n{"n":2}\n{"n":3, "wor\n', b'{"n":1}\n{"n":2}\n'),  # whole line, not JSON
    (b'{"n":1}\n\x00\x00\x00\x00', b'{"n":1}\n'),  # a tail of zeros
    (b'{"n":1}\n[1]\n', b'{"n":1}\n'),  # JSON, not an object
])
def test_recovery_cuts_the_torn_last_line_and_closes_the_rest_into_place(
        tmp_path: Path, content: bytes, kept: bytes) -> None:
    layout = LandingLayout(tmp_path)
    path = _leftover(layout, content)
    result = recover_file(layout, path)
    assert result is not None and result.target is not None and result.bytes_cut == len(content) - len(kept)
    assert not path.exists() and result.target.read_bytes() == kept
    assert result.target == tmp_path / f"workstream_id={WS}" / "2026-01-02" / path.name.replace(".jsonl.part", ".jsonl")


def test_recovery_deletes_a_file_with_nothing_whole_and_skips_a_held_one(tmp_path: Path) -> None:
    layout = LandingLayout(tmp_path)
    empty = _leftover(layout, b'{"torn')
    held = _leftover(layout, b'{"n":1}\n')
    fd = os.open(held, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a live writer holds it
        results = recover_all(layout)
        assert [(r.source, r.target) for r in results] == [(empty, None)]
        assert not empty.exists() and held.exists()
    finally:
        os.close(fd)
    assert [r.source for r in recover_all(layout)] == [held]
    assert not layout.leftovers() and [r["n"] for r in _closed_lines(tmp_path)] == [1]


def test_a_failed_write_is_cut_back_and_leaves_no_half_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = LandingLayout(tmp_path)
    files = LandingFiles(layout, max_file_bytes=1 << 20, max_file_seconds=3600)
    files.commit([_write(1)])
    real_write = os.write

    def disk_fills_halfway(fd: int, data: Any) -> int:
        real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", disk_fills_halfway)
        outcome = files.commit([_write(2), _write(22)])
    assert [type(e) for e in outcome.errors] == [OSError, OSError] and files.open_count == 0
    (leftover,) = layout.leftovers()
    assert leftover.read_bytes() == b'{"n":1}\n'  # cut back: no half line for a later write to follow
    assert files.commit([_write(3)]).errors == [None]  # a new file
    recover_all(layout)  # the sweep closes the failed one
    files.close_all()
    assert sorted(r["n"] for r in _closed_lines(tmp_path)) == [1, 3]


def test_paths_stay_inside_the_landing_folder(tmp_path: Path) -> None:
    layout = LandingLayout(tmp_path / "landing")
    with pytest.raises(ValueError, match="not inside"):
        layout.new_open_path("..", "../../etc")


def test_serve_refuses_a_bad_configuration_or_usage(tmp_path: Path) -> None:
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    bad = tmp_path / "ws.json"
    bad.write_text(orjson.dumps({"workstreams": [{"id": WS, "api_key_sha256": ["my-plain-key"]}]}).decode())
    env = {**os.environ, "PYTHONPATH": str(repo)}
    command = [sys.executable, "-m", "intake", "serve", "--landing", str(tmp_path / "landing")]
    refused = subprocess.run([*command, "--workstreams", str(bad)], cwd=repo, env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "not a SHA-256 hex digest" in refused.stderr and str(bad) in refused.stderr
    usage = subprocess.run([*command, "--port", "http"], cwd=repo, env=env, capture_output=True, text=True)
    assert usage.returncode == 2 and "--port" in usage.stderr
    assert not (tmp_path / "landing").exists()  # nothing created before the configuration is known good


def test_a_lone_surrogate_body_gets_the_batch_paths_code_and_field() -> None:
    """The intake parses bodies with the batch path's own parser, so both name the field alike."""
    from schemas.config import WorkstreamConfig
    from tests.conftest import CONFIG_DATA, WS, record

    checker = BodyChecker(WorkstreamConfig.model_validate(CONFIG_DATA))
    body = json.dumps(record(task_id="x")).replace('"x"', '"\\ud800"').encode()
    outcome = checker.line(body, WS, "2020-12-22T10:00:00Z")
    assert isinstance(outcome, Rejection)
    assert (outcome.code, outcome.field) == ("invalid_encoding", "task_id")


def test_a_batch_through_the_fast_path_lands_what_one_by_one_would() -> None:
    """Plain bodies are certified in bulk; every body still gets the outcome the model gives it alone."""
    from schemas.config import WorkstreamConfig
    from tests.conftest import CONFIG_DATA, WS, record

    checker = BodyChecker(WorkstreamConfig.model_validate(CONFIG_DATA))
    bodies = [record(unique_id="a"), record(task_count=-1), record(workstream_id="ws-audio"), record(worker_id=" W@X.COM "),
              record(received_at="2020-01-01T00:00:00Z"), record(task_started_at="2021-01-01T00:00:00Z"),
              record(extra="kept", task_metadata={"k": [1, 2]}), "[1]", record(task_count="12")]
    raw = b"\n".join(b if isinstance(b, bytes) else (b.encode() if isinstance(b, str) else json.dumps(b).encode())
                     for b in bodies)
    when = "2020-12-22T10:00:00.000000Z"
    accepted, rejected = checker.batch(raw, WS, when, json_lines=True)  # type: ignore[misc]
    one_by_one = [checker.line(line, WS, when) for line in raw.split(b"\n")]
    assert accepted == [o for o in one_by_one if isinstance(o, bytes)]
    assert [(i, r.as_dict()) for i, r in rejected] == [(i, o.as_dict()) for i, o in enumerate(one_by_one)
                                                       if isinstance(o, Rejection)]
    assert len(accepted) == 5 and [i for i, _ in rejected] == [1, 2, 5, 7]
