"""``throughput serve`` as clients meet it: a real server process on 127.0.0.1, called over HTTP.

Each server is ``python -m intake serve`` in its own process group. The checks read the landing
folder as ``throughput run`` would, and the crash test runs the real pipeline over it.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from intake.keys import digest, new_key
from intake.openapi import SEED_EXAMPLE
from schemas.config import WorkstreamConfig
from schemas.record import RecordContext, validate_record
from tests.conftest import TD, UC, WS, record

REPO = Path(__file__).resolve().parent.parent
AUDIO = "ws-audio"
KEY = new_key()
OTHER_KEY = new_key()  # ws-audio's
CONFIG = {"workstreams": [
    {"id": WS, "use_cases": [{"id": UC, "task_definitions": [TD]}], "api_key_sha256": [digest(KEY)]},
    {"id": AUDIO, "use_cases": [{"id": "uc-audio", "task_definitions": ["td-transcribe"]}],
     "api_key_sha256": [digest(OTHER_KEY)]},
]}
SEED_BODY: dict[str, Any] = SEED_EXAMPLE  # the seed's example request body
# The seed's documented body fields (its "Body" list), and task_measurements, which its example sends.
SEED_FIELDS = {"worker_id", "task_id", "task_url", "task_count", "subtask_count", "use_case_id", "task_definition_id",
               "task_started_at", "task_completed_at", "duration", "task_created_at", "data_source", "task_metadata",
               "dataset_id", "asset_id", "unique_id", "replace_duplicate"}
RECEIVED = {"message": "Data successfully received."}
PATH = f"/v1/workstreams/{WS}/task_completed"


def body(uid: str, **overrides: Any) -> dict[str, Any]:
    """A valid API body (no workstream_id: the path says it) with its own unique_id."""
    return record(**{"workstream_id": None, "unique_id": uid, **overrides})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """``python -m intake serve`` in its own process group, and where it lands."""

    def __init__(self, tmp: Path, *, landing: Path | None = None, workers: int = 1,
                 max_file_bytes: int = 64 << 20, max_file_seconds: float = 3600) -> None:
        self.landing = landing or tmp / "landing"
        self.config = tmp / "workstreams.json"
        self.config.write_bytes(orjson.dumps(CONFIG))
        self.log = tmp / f"server-{time.monotonic_ns()}.log"
        self.args = ["--landing", str(self.landing), "--workstreams", str(self.config), "--workers", str(workers),
                     "--max-file-bytes", str(max_file_bytes), "--max-file-seconds", str(max_file_seconds)]
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> Server:
        self.port = _free_port()
        metrics = self.log.with_suffix(".metrics")  # inside the test's folder, even after a kill -9
        metrics.mkdir()
        env = {**os.environ, "PYTHONPATH": str(REPO), "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "intake", "serve", *self.args, "--port", str(self.port)],
                cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url("/healthz"), timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not start:\n{self.log.read_text()}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def post(self, path: str = PATH, *, json: Any = None, content: Any = None, key: str | None = KEY,
             headers: dict[str, str] | None = None) -> httpx.Response:
        sent = {**({"x-api-key": key} if key is not None else {}), **(headers or {})}
        if json is not None:
            content, sent = orjson.dumps(json), {"content-type": "application/json", **sent}
        return httpx.post(self.url(path), content=content, headers=sent, timeout=30)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        os.kill(self.process.pid, sig)
        return self.process.wait(timeout)

    def kill9(self) -> None:
        """SIGKILL the whole server, supervisor and workers alike."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def ensure_gone(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    # what is on disk
    def closed_files(self) -> list[Path]:
        return sorted(self.landing.glob("workstream_id=*/*/*.jsonl"))

    def open_files(self) -> list[Path]:
        return sorted((self.landing / "_open").glob("**/*.jsonl.part"))

    def landed(self) -> list[dict[str, Any]]:
        """Every line of every closed file (what ``--input 'DIR/**/*.jsonl'`` reads)."""
        return [orjson.loads(line) for path in self.closed_files() for line in path.read_bytes().splitlines()]

    def wait_closed(self, predicate: Any, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.landed()
            if predicate(rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared server: closes files after 1 s or 8 KiB, so most checks see closed files soon."""
    running = Server(tmp_path_factory.mktemp("intake"), max_file_bytes=8192, max_file_seconds=1.0).start()
    try:
        yield running
    finally:
        running.ensure_gone()


def _uids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["unique_id"] for row in rows if "unique_id" in row]


# --- the seed's endpoint -------------------------------------------------------------------------

def test_the_seed_example_gets_202_and_lands_as_one_line_with_its_envelope(server: Server) -> None:
    before = datetime.now(timezone.utc)
    answer = server.post(json=SEED_BODY)
    assert answer.status_code == 202 and answer.json() == RECEIVED
    rows = server.wait_closed(lambda rows: SEED_BODY["unique_id"] in _uids(rows))
    (row,) = [r for r in rows if r.get("unique_id") == SEED_BODY["unique_id"]]
    received_at = row.pop("received_at")
    assert row == {**SEED_BODY, "workstream_id": WS}
    assert received_at.endswith("Z")
    moment = datetime.fromisoformat(received_at.replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= moment <= datetime.now(timezone.utc)
    (path,) = [p for p in server.closed_files() if SEED_BODY["unique_id"].encode() in p.read_bytes()]
    assert path.parent == server.landing / f"workstream_id={WS}" / moment.strftime("%Y-%m-%d")


def test_a_duplicate_unique_id_is_accepted(server: Server) -> None:
    assert server.post(json=body("dup-1")).status_code == 202
    assert server.post(json=body("dup-1", task_count=3)).status_code == 202
    rows = server.wait_closed(lambda rows: _uids(rows).count("dup-1") == 2)
    assert _uids(rows).count("dup-1") == 2  # the pipeline applies SPEC 4


@pytest.mark.parametrize("case, key, workstream", [
    ("missing key", None, WS),
    ("wrong key", "not-a-key", WS),
    ("another workstream's key", OTHER_KEY, WS),
    ("unknown workstream", KEY, "ws-unknown"),
    ("unknown workstream, no key", None, "ws-unknown"),
])
def test_keys_401_all_alike(server: Server, case: str, key: str | None, workstream: str) -> None:
    answer = server.post(f"/v1/workstreams/{workstream}/task_completed", json=body(f"401-{case}"), key=key)
    assert answer.status_code == 401, case
    assert answer.json() == {"error_code": "unauthorized", "error_field": None,
                             "error_message": "missing or invalid x-api-key for this workstream"}
    batch = server.post(f"/v1/workstreams/{workstream}/task_completed/batch", json=[body("401-batch")], key=key)
    assert batch.status_code == 401 and batch.content == answer.content


def test_the_other_workstreams_key_works_on_its_own_workstream(server: Server) -> None:
    answer = server.post(f"/v1/workstreams/{AUDIO}/task_completed", key=OTHER_KEY,
                         json=body("audio-1", use_case_id="uc-audio", task_definition_id="td-transcribe"))
    assert answer.status_code == 202


BAD_BODIES = [
    ({"worker_id": 5}, "invalid_type", "worker_id"),
    ({"task_count": "ten"}, "invalid_type", "task_count"),
    ({"task_count": 10.5}, "invalid_value", "task_count"),
    ({"duration": -1}, "invalid_value", "duration"),
    ({"task_started_at": "22/12/2020 09:13"}, "invalid_timestamp", "task_started_at"),
    ({"task_completed_at": "2020-12-22T08:00:00Z"}, "completed_before_started", "task_completed_at"),
    ({"data_source": "fax"}, "invalid_data_source", "data_source"),
    ({"use_case_id": "uc-nope"}, "unknown_use_case", "use_case_id"),
    ({"task_definition_id": "td-nope"}, "unknown_task_definition", "task_definition_id"),
    ({"worker_id": None}, "missing_field", "worker_id"),
    ({"worker_id": "  ", "task_count": -2}, "missing_field", "worker_id"),
    ({"workstream_id": AUDIO}, "invalid_value", "workstream_id"),
]


@pytest.mark.parametrize("overrides, code, field", BAD_BODIES)
def test_a_bad_body_gets_400_with_the_pipelines_error(server: Server, overrides: dict[str, Any], code: str,
                                                      field: str) -> None:
    sent = body(f"bad-{code}-{field}", **overrides)
    answer = server.post(json=sent)
    assert answer.status_code == 400
    error = answer.json()
    assert (error["error_code"], error["error_field"]) == (code, field)
    if field != "workstream_id":  # the batch path's rejects row for the same record, message and all
        config = WorkstreamConfig.model_validate(CONFIG)
        verdict = validate_record({**sent, "workstream_id": WS, "received_at": "2026-01-01T00:00:00Z"},
                                  RecordContext(config=config, path_workstream=WS))
        assert error["error_message"] == "; ".join(e.describe() for e in verdict.errors)


@pytest.mark.parametrize("raw, code", [
    (b'{"worker_id": "a", ', "malformed_json"),
    (b"", "malformed_json"),
    (b'[{"worker_id": "a"}]', "not_an_object"),
    (b'{"worker_id": "caf\xe9"}', "invalid_encoding"),
])
def test_a_body_that_is_not_a_json_object_gets_400(server: Server, raw: bytes, code: str) -> None:
    answer = server.post(content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error_code"] == code


def test_nothing_rejected_lands(server: Server) -> None:
    marker = "never-lands"
    assert server.post(json=body(marker, worker_id=5)).status_code == 400
    assert server.post(json=body("lands-after-reject")).status_code == 202
    rows = server.wait_closed(lambda rows: "lands-after-reject" in _uids(rows))
    assert marker not in _uids(rows) and not any(uid.startswith("bad-") for uid in _uids(rows))


def test_a_body_over_1_mib_gets_413(server: Server) -> None:
    padded = orjson.dumps(body("big", task_metadata={"pad": "x" * (1 << 20)}))
    answer = server.post(content=padded, headers={"content-type": "application/json"})
    assert answer.status_code == 413 and answer.json()["error_code"] == "record_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts what it reads
        for start in range(0, len(padded), 65536):
            yield padded[start:start + 65536]

    streamed = httpx.post(server.url(PATH), content=chunks(), headers={"x-api-key": KEY}, timeout=30)
    assert streamed.status_code == 413
    just_under = orjson.dumps(body("almost-1-mib", task_metadata={"pad": "x" * ((1 << 20) - 600)}))
    assert len(just_under) < 1 << 20
    assert server.post(content=just_under).status_code == 202


# --- batches -------------------------------------------------------------------------------------

def test_a_batch_lands_its_good_bodies_and_lists_the_bad_ones(server: Server) -> None:
    bodies: list[Any] = [body("batch-0"), body("batch-1", worker_id=5), body("batch-2"), "text",
                         body("batch-4", task_started_at="soon"), body("batch-0")]
    answer = server.post(f"{PATH}/batch", json=bodies)
    assert answer.status_code == 202
    result = answer.json()
    assert result["accepted"] == 3
    assert [(r["index"], r["error_code"], r["error_field"]) for r in result["rejected"]] == [
        (1, "invalid_type", "worker_id"), (3, "not_an_object", None), (4, "invalid_timestamp", "task_started_at")]
    lines = b"\n".join(orjson.dumps(b) for b in [body("lines-0"), body("lines-1", data_source="fax")]) + b"\n\n{"
    answer = server.post(f"{PATH}/batch", content=lines, headers={"content-type": "application/x-ndjson"})
    assert answer.status_code == 202
    assert answer.json()["accepted"] == 1
    assert [(r["index"], r["error_code"]) for r in answer.json()["rejected"]] == [
        (1, "invalid_data_source"), (2, "malformed_json")]
    rows = server.wait_closed(lambda rows: {"batch-2", "lines-0"} <= set(_uids(rows)))
    uids = _uids(rows)
    assert uids.count("batch-0") == 2 and uids.count("batch-2") == 1 and uids.count("lines-0") == 1
    assert not {"batch-1", "batch-4", "lines-1"} & set(uids)


def test_a_batch_larger_than_one_check_step_keeps_every_index(server: Server) -> None:
    """The server checks a batch 1,000 bodies at a time; indexes and landings span the steps."""
    bad = {5, 1000, 1999, 2400}
    bodies = [body(f"big-{i}", task_count=-1 if i in bad else 1) for i in range(2500)]
    for kind, content in (("array", orjson.dumps(bodies)), ("lines", b"\n".join(orjson.dumps(b) for b in bodies))):
        answer = server.post(f"{PATH}/batch", content=content)
        assert answer.status_code == 202, kind
        assert answer.json()["accepted"] == 2500 - len(bad)
        assert [r["index"] for r in answer.json()["rejected"]] == sorted(bad)
    rows = server.wait_closed(lambda rows: _uids(rows).count("big-2499") == 2)
    assert sorted(set(_uids(rows)) & {f"big-{i}" for i in range(2500)}) == sorted(
        f"big-{i}" for i in range(2500) if i not in bad)
    assert all(_uids(rows).count(f"big-{i}") == 2 for i in (0, 999, 1001, 2499))


def test_a_batch_over_10000_bodies_or_not_an_array_is_refused(server: Server) -> None:
    line = orjson.dumps(body("too-many"))
    answer = server.post(f"{PATH}/batch", content=b"\n".join([line] * 10_001))
    assert answer.status_code == 413 and "10000" in answer.json()["error_message"]
    assert server.post(f"{PATH}/batch", content=b"[" + b",".join([line] * 10_001) + b"]").status_code == 413
    assert server.post(f"{PATH}/batch", content=b"[{").json()["error_code"] == "malformed_json"
    rows = server.wait_closed(lambda rows: False, timeout=1.5)
    assert "too-many" not in _uids(rows)


# --- files ---------------------------------------------------------------------------------------

def test_files_close_by_size(server: Server) -> None:
    uids = [f"size-{i}" for i in range(40)]  # about 330 bytes each: 40 of them fill 8 KiB files
    for uid in uids:
        assert server.post(json=body(uid)).status_code == 202
    rows = server.wait_closed(lambda rows: set(uids) <= set(_uids(rows)))
    assert sorted(u for u in _uids(rows) if u.startswith("size-")) == sorted(uids)
    holding = [p for p in server.closed_files() if b'"size-' in p.read_bytes()]
    assert len(holding) >= 2
    assert all(p.stat().st_size < 8192 + 1024 for p in holding)


def test_files_close_by_age(server: Server) -> None:
    assert server.post(json=body("age-1")).status_code == 202
    started = time.monotonic()
    rows = server.wait_closed(lambda rows: "age-1" in _uids(rows), timeout=5)
    assert "age-1" in _uids(rows) and time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while server.open_files() and time.monotonic() < deadline:  # with no traffic, nothing stays open
        time.sleep(0.1)
    assert not server.open_files()


# --- health, metrics, description, logs ----------------------------------------------------------

def test_healthz_openapi_and_metrics(server: Server) -> None:
    assert httpx.get(server.url("/healthz")).json() == {"status": "ok"}
    document = httpx.get(server.url("/openapi.json")).json()
    schema = document["components"]["schemas"]["TaskCompletedBody"]
    assert set(schema["properties"]) == SEED_FIELDS | {"task_measurements"}
    assert set(schema["required"]) == {"worker_id", "use_case_id", "task_definition_id", "task_started_at",
                                       "task_completed_at"}
    operation = document["paths"]["/v1/workstreams/{workstream_id}/task_completed"]["post"]
    assert {"202", "400", "401", "413", "503"} <= set(operation["responses"])
    assert "/v1/workstreams/{workstream_id}/task_completed/batch" in document["paths"]
    assert server.post(json=body("metrics-1")).status_code == 202
    text = httpx.get(server.url("/metrics")).text
    assert 'intake_requests_total{route="task_completed",status="202"}' in text
    assert 'intake_requests_total{route="task_completed",status="401"}' in text
    assert 'intake_records_landed_total{workstream_id="ws-ner"}' in text
    assert "intake_fsync_seconds_bucket" in text and "intake_open_files" in text


def test_access_log_lines_are_json_and_never_hold_the_key(server: Server) -> None:
    server.post(json=body("log-1"), key="secret-wrong-key")
    time.sleep(0.5)  # lines are flushed every quarter second
    entries = [orjson.loads(line) for line in server.log.read_bytes().splitlines() if line.startswith(b"{")]
    posted = [e for e in entries if e["path"] == PATH]
    assert {e["status"] for e in posted} >= {202, 400, 401}
    assert all({"time", "method", "status", "ms", "client", "pid"} <= set(e) for e in posted)
    assert KEY not in server.log.read_text() and "secret-wrong-key" not in server.log.read_text()


# --- shutdown, crash, full and unwritable disks --------------------------------------------------

def _post_many(target: Server, prefix: str, count: int, threads: int,
               outcomes: dict[str, int | str] | None = None) -> dict[str, int | str]:
    """Post distinct bodies from several threads; each uid's outcome (status or error name).

    A thread stops at its first transport error (the server is gone)."""
    outcomes = {} if outcomes is None else outcomes

    def worker(start: int) -> None:
        with httpx.Client(headers={"x-api-key": KEY}, timeout=10) as client:
            for n in range(start, count, threads):
                uid = f"{prefix}-{n}"
                try:
                    outcomes[uid] = client.post(target.url(PATH), content=orjson.dumps(body(uid))).status_code
                except httpx.TransportError as exc:
                    outcomes[uid] = type(exc).__name__
                    return

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return outcomes


def test_sigterm_closes_every_file_into_place(tmp_path: Path) -> None:
    target = Server(tmp_path, workers=2).start()
    try:
        outcomes = _post_many(target, "term", 60, threads=6)
        assert set(outcomes.values()) == {202}
        assert target.open_files() and not target.closed_files()  # an hour before they close by age
        assert target.stop(signal.SIGTERM) == 0
    finally:
        target.ensure_gone()
    assert not target.open_files()
    assert sorted(_uids(target.landed())) == sorted(outcomes)


def test_kill_9_loses_no_202_and_the_pipeline_takes_each_once(tmp_path: Path) -> None:
    target = Server(tmp_path, workers=2).start()
    outcomes: dict[str, int | str] = {}
    try:
        traffic = threading.Thread(target=_post_many, args=(target, "crash", 100_000, 8, outcomes))
        traffic.start()
        deadline = time.monotonic() + 10
        while sum(1 for v in list(outcomes.values()) if v == 202) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        target.kill9()  # mid-traffic
        traffic.join(30)
    finally:
        target.ensure_gone()
    accepted = {uid for uid, outcome in outcomes.items() if outcome == 202}
    assert len(accepted) >= 300
    leftovers = target.open_files()
    assert leftovers  # the workers' open files, left open by the crash
    with leftovers[0].open("ab") as torn:  # a write torn by the crash: no newline
        torn.write(b'{"worker_id": "torn", "unique_id": "torn-1", "use_case_')

    restarted = Server(tmp_path, workers=2).start()  # closes the leftovers as it starts
    try:
        assert not restarted.open_files()
        assert restarted.post(json=body("after-restart")).status_code == 202
        assert restarted.stop() == 0
    finally:
        restarted.ensure_gone()
    uids = _uids(restarted.landed())
    assert "torn-1" not in uids
    counts: dict[str, int] = {}
    for uid in uids:
        counts[uid] = counts.get(uid, 0) + 1
    assert all(counts.get(uid) == 1 for uid in accepted), "a 202 lost or landed twice"
    assert set(counts) <= set(outcomes) | {"after-restart"}  # the rest: answered nothing, yet landed

    from pipelines.run import RunOptions, run

    output = tmp_path / "tables"
    run(RunOptions(inputs=(f"{restarted.landing}/**/*.jsonl",), output=str(output), workstreams=str(restarted.config)),
        ["--direct_num_workers=1"])
    import duckdb

    table = duckdb.connect().execute(f"select unique_id, count(*) as n from read_parquet('{output}/task_completed/**/*.parquet', "
                                     "hive_partitioning=true) group by unique_id").fetchall()
    rows = dict(table)
    assert all(rows.get(uid) == 1 for uid in accepted | {"after-restart"})
    assert set(rows) == set(counts)
    assert all(n == 1 for n in rows.values())


def _workers_of(target: Server) -> list[int]:
    """The pids of the server's worker processes (children of the supervisor running uvicorn)."""
    assert target.process is not None
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == target.process.pid and b"spawn_main" in command and b"resource_tracker" not in command:
            pids.append(int(entry.name))
    return sorted(pids)


def test_a_worker_that_dies_is_replaced_and_its_open_file_closed(tmp_path: Path) -> None:
    target = Server(tmp_path, workers=2).start()
    try:
        outcomes = _post_many(target, "worker", 40, threads=8)
        assert set(outcomes.values()) == {202}
        workers = _workers_of(target)
        assert len(workers) == 2
        holding = [p for p in target.open_files() if f"-p{workers[0]}-" in p.name]
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while (any(p.exists() for p in holding) or len(_workers_of(target)) < 2) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(p.exists() for p in holding), "the dead worker's open file was not closed"
        assert workers[0] not in _workers_of(target) and len(_workers_of(target)) == 2
        assert target.post(json=body("after-worker-death")).status_code == 202
        assert target.stop() == 0
    finally:
        target.ensure_gone()
    counts = {uid: _uids(target.landed()).count(uid) for uid in [*outcomes, "after-worker-death"]}
    assert set(counts.values()) == {1}


def test_sighup_reloads_the_keys_without_a_gap(tmp_path: Path) -> None:
    target = Server(tmp_path, workers=2).start()
    try:
        fresh = new_key()
        assert target.post(json=body("hup-0"), key=fresh).status_code == 401
        config = {"workstreams": [{**CONFIG["workstreams"][0], "api_key_sha256": [digest(KEY), digest(fresh)]},
                                  CONFIG["workstreams"][1]]}
        target.config.write_bytes(orjson.dumps(config))
        old_workers = _workers_of(target)
        stop = threading.Event()
        during: list[int | str] = []

        def keep_posting() -> None:
            n = 0
            with httpx.Client(headers={"x-api-key": KEY}, timeout=10) as client:
                while not stop.is_set():
                    n += 1
                    try:
                        during.append(client.post(target.url(PATH), content=orjson.dumps(body(f"hup-{n}"))).status_code)
                    except httpx.TransportError as exc:
                        during.append(type(exc).__name__)

        traffic = threading.Thread(target=keep_posting)
        traffic.start()
        assert target.process is not None
        os.kill(target.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while set(_workers_of(target)) & set(old_workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        traffic.join(10)
        assert not set(_workers_of(target)) & set(old_workers) and len(_workers_of(target)) == 2
        assert during and set(during) == {202}, f"answers during the reload: {sorted(set(map(str, during)))}"
        assert target.post(json=body("hup-new-key"), key=fresh).status_code == 202
        assert target.post(json=body("hup-old-key")).status_code == 202
        assert target.stop() == 0
    finally:
        target.ensure_gone()
    assert {"hup-new-key", "hup-old-key"} <= set(_uids(target.landed()))


def test_a_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "ws.json"
        config.write_bytes(orjson.dumps(CONFIG))
        refused = subprocess.run(
            [sys.executable, "-m", "intake", "serve", "--landing", str(tmp_path / "landing"), "--workstreams",
             str(config), "--port", str(port)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in refused.stderr


def _is_root() -> bool:
    return os.geteuid() == 0


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)


def _assert_503(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["retry-after"]) > 0
    assert answer.json()["error_code"] == "landing_unavailable"


def test_a_full_landing_disk_gets_503_never_202(tmp_path: Path) -> None:
    if not _is_root():
        pytest.skip("needs root to mount a small tmpfs as a full disk")
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "256k")
    target = Server(tmp_path, landing=disk / "landing").start()
    try:
        filler = disk / "filler"
        with filler.open("wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        for n in range(5):
            _assert_503(target.post(json=body(f"full-{n}")))
        _assert_503(target.post(f"{PATH}/batch", json=[body("full-batch-0"), body("full-batch-1")]))
        assert httpx.get(target.url("/healthz")).status_code == 503
        filler.unlink()
        time.sleep(0.2)
        assert target.post(json=body("after-full")).status_code == 202
        assert httpx.get(target.url("/healthz")).status_code == 200
        assert target.stop() == 0
        assert not target.open_files()
        lines = [line for path in target.closed_files() for line in path.read_bytes().splitlines()]
        assert [orjson.loads(line)["unique_id"] for line in lines] == ["after-full"]  # no half line before it
    finally:
        target.ensure_gone()
        subprocess.run(["umount", str(disk)], check=False)


def test_an_unwritable_landing_folder_gets_503_never_202(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    if _is_root():
        _mount_tmpfs(disk, "4m")
    target = Server(tmp_path, landing=disk / "landing").start()

    def set_writable(writable: bool) -> None:
        if _is_root():
            mode = "rw" if writable else "ro"
            subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], check=True)
        else:
            for folder in [target.landing, *target.landing.rglob("*")]:
                if folder.is_dir():
                    folder.chmod(0o755 if writable else 0o555)

    try:
        set_writable(False)
        for n in range(3):
            _assert_503(target.post(json=body(f"ro-{n}")))
        set_writable(True)
        assert target.post(json=body("after-ro")).status_code == 202
        assert target.stop() == 0
        assert _uids(target.landed()) == ["after-ro"] and not target.open_files()
    finally:
        target.ensure_gone()
        if _is_root():
            subprocess.run(["umount", str(disk)], check=False)
        else:
            shutil.rmtree(disk, ignore_errors=True)
