"""The pipeline runs unchanged through Beam's portability framework and on any Beam filesystem.

* ``PortableRunner`` with the embedded job service and LOOPBACK workers is the path Flink,
  Spark and Dataflow take (pipeline proto -> job service -> SDK harness over the Fn API, every
  element encoded by its coder); its tables are identical to the default runner's. The
  multi-process runner's are checked in ``test_runners.py``.
* ``memfs://`` (``tests/memfs.py``) is a filesystem of our own with object-store semantics
  (no folders, like gs:// and s3://): input, configuration and output all live there, for a
  first run and a second, incremental one, and everything is read back through FileSystems.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

import tests.memfs  # noqa: F401 - registers the memfs:// scheme in this process
from pipelines.run import RunOptions, run
from tests.conftest import CONFIG_DATA, TD2, UC, WS, record, write_jsonl

PORTABLE = ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK",
            "--beam_plugins=tests.memfs.MemFileSystem"]

CSV_HEADER = "workstream_id,worker_id,use_case_id,task_definition_id,task_started_at,task_completed_at,unique_id," \
             "replace_duplicate,task_count"


def _csv_row(worker: str, unique_id: str, replace: str = "", task_count: str = "1", day: str = "22") -> str:
    return f"{WS},{worker},{UC},{TD2},2020-12-{day}T09:00:00Z,2020-12-{day}T10:00:00+01:00,{unique_id},{replace},{task_count}"


def _mixed_inputs(root: Path) -> list[str]:
    """JSONL, gzip JSONL (workstream from the path) and CSV, with duplicates across files and bad rows."""
    write_jsonl(root / "in" / "a.jsonl", [
        record(unique_id="k1", worker_id="a1"),
        record(unique_id="k2", worker_id="a2", task_completed_at="2020-12-23T08:00:00Z"),
        "{broken",
        "",
        record(unique_id="k1", worker_id="a3", replace_duplicate=False),      # ignored
        record(worker_id=None),                                               # missing_field
        record(unique_id="k2", worker_id="a4", task_completed_at="2020-12-23T09:00:00Z"),  # replaces a2
        record(worker_id="a5", task_count=-1),                                # invalid_value
        record(worker_id="a6", extra="kept", task_metadata={"n": 1}),
    ])
    audio = {"use_case_id": "uc-audio", "task_definition_id": "td-transcribe", "workstream_id": None}
    write_jsonl(root / "in" / "workstream_id=ws-audio" / "b.jsonl.gz", [
        record(**audio, unique_id="k1", worker_id="b1"),
        record(**audio, unique_id="k1", worker_id="b2"),                      # replaces b1
        record(**audio, worker_id="b3", task_completed_at="2020-12-21T10:00:00Z"),  # completed_before_started
        "[1, 2]",                                                             # not_an_object
    ], compress=True)
    (root / "in" / "c.csv").write_text("\n".join([
        CSV_HEADER,
        _csv_row("c1", "k9"),
        _csv_row("c2", "k9", replace="no"),                                   # ignored
        _csv_row("c3", "k9", replace="yes", day="24"),                         # replaces c1
        _csv_row("c4", "", task_count="10.5"),                                # invalid_value
        _csv_row("c5", "") + ",one too many",                                 # malformed_csv
        _csv_row("c6", "", task_count="3"),
    ]) + "\n", encoding="utf-8")
    return [str(root / "in" / "**")]


def _tables(out: Path) -> dict[str, list[dict]]:
    return {str(p.relative_to(out)): pq.read_table(p).to_pylist() for p in sorted(out.rglob("*.parquet"))}


def test_portable_runner_tables_are_identical_to_the_default_runner(tmp_path: Path, config_file: Path) -> None:
    patterns = _mixed_inputs(tmp_path)

    def run_into(name: str, beam_args: list[str]) -> tuple[dict, dict[str, list[dict]]]:
        options = RunOptions(inputs=tuple(patterns), output=str(tmp_path / name), workstreams=str(config_file),
                             run_id="fixed", chunk_records=3)
        manifest = run(options, beam_args).manifest
        return manifest, _tables(tmp_path / name)

    reference_manifest, reference = run_into("reference", [])
    portable_manifest, portable = run_into("portable", PORTABLE)

    assert reference_manifest["options"]["runner"] == "FnApiRunner"
    assert portable_manifest["options"]["runner"] == "PortableRunner"
    counts = reference_manifest["counts"]
    assert counts["reconciles"] and counts["read"] == 18 and counts["blank_lines"] == 1
    assert (counts["superseded"], counts["ignored_duplicates"], counts["rejected"]) == (3, 2, 7)
    tables = [path for path in reference if path.startswith(("task_completed/", "throughput_daily/", "rejects/"))]
    assert len(tables) == 9  # 4 partitions x 2 tables, + the rejects file (other files: the key index)
    assert portable == reference
    assert portable_manifest["counts"] == counts
    assert portable_manifest["tables"] == reference_manifest["tables"]


# --- a filesystem of our own -------------------------------------------------------------------

def _put(path: str, data: bytes, compress: bool = False) -> None:
    compression = CompressionTypes.GZIP if compress else CompressionTypes.UNCOMPRESSED
    with FileSystems.create(path, compression_type=compression) as handle:
        handle.write(data)


def _jsonl(rows: list) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def _read_rows(pattern: str) -> dict[str, list[dict]]:
    """Every Parquet file matching ``pattern``, read through FileSystems, by path."""
    tables = {}
    for meta in sorted(FileSystems.match([pattern])[0].metadata_list, key=lambda m: m.path):
        with FileSystems.open(meta.path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            tables[meta.path] = pq.read_table(pa.BufferReader(handle.read())).to_pylist()
    return tables


def _listing(prefix: str) -> list[str]:
    return sorted(m.path for m in FileSystems.match([prefix + "**"])[0].metadata_list)


@pytest.fixture
def bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MEMFS_ROOT", str(tmp_path / "memfs-store"))
    _put("memfs://bucket/config/workstreams.json", json.dumps(CONFIG_DATA).encode())
    return "memfs://bucket"


def test_full_and_incremental_runs_on_a_filesystem_of_our_own(bucket: str) -> None:
    assert not Path(bucket[len("memfs://"):]).exists()  # nothing here is a local path
    _put(f"{bucket}/landing/day1/a.jsonl", _jsonl([
        record(unique_id="k1", worker_id="first"),
        "{broken",
        record(unique_id="k1", worker_id="second"),                           # supersedes "first"
        record(worker_id="other", task_completed_at="2020-12-23T10:00:00Z"),
    ]))
    _put(f"{bucket}/landing/day1/workstream_id=ws-audio/b.csv.gz", (
        b"worker_id,use_case_id,task_definition_id,task_started_at,task_completed_at,unique_id\n"
        b"audio,uc-audio,td-transcribe,2020-12-22T09:00:00Z,2020-12-22T09:30:00Z,u1\n"
        b"bad,uc-audio,nope,2020-12-22T09:00:00Z,2020-12-22T09:30:00Z,u2\n"
    ), compress=True)
    out = f"{bucket}/tables"

    def run_on(inputs: str, run_id: str, beam_args: list[str]) -> dict:
        options = RunOptions(inputs=(inputs,), output=out, workstreams=f"{bucket}/config/workstreams.json",
                             run_id=run_id)
        result = run(options, beam_args)
        assert result.manifest_path == f"{out}/_runs/{run_id}.json"
        with FileSystems.open(result.manifest_path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            assert json.loads(handle.read())["counts"] == result.manifest["counts"]
        return result.manifest["counts"]

    first = run_on(f"{bucket}/landing/day1/**", "day1", [])
    assert (first["read"], first["written"], first["superseded"], first["rejected"]) == (6, 3, 1, 2)
    assert first["rejected_by_code"] == {"malformed_json": 1, "unknown_task_definition": 1}

    # The second run: a new file, on the portable runner, into the same tables; its k1 replaces
    # the kept k1 of the first run (and moves it to another partition).
    _put(f"{bucket}/landing/day2/c.jsonl", _jsonl([
        record(unique_id="k7", worker_id="late"),
        record(worker_id="later", task_completed_at="2020-12-24T10:00:00Z"),
        record(worker_id=None),
        record(unique_id="k1", worker_id="third", task_completed_at="2020-12-23T11:00:00Z"),
    ]))
    second = run_on(f"{bucket}/landing/day2/*.jsonl", "day2", PORTABLE)
    assert (second["read"], second["written"], second["rejected"], second["replaced_existing"]) == (4, 3, 1, 1)

    def table_rows() -> list[tuple]:
        tasks = _read_rows(f"{out}/task_completed/**")
        return sorted((path[len(f"{out}/task_completed/"):].rsplit("/", 1)[0], r["worker_id"], r["unique_id"],
                       r["run_id"], r["source_file"], r["source_line"]) for path, t in tasks.items() for r in t)

    rows = table_rows()
    ner = f"workstream_id={WS}/completed_date=2020-12-2"
    assert rows == [
        ("workstream_id=ws-audio/completed_date=2020-12-22", "audio", "u1", "day1",
         f"{bucket}/landing/day1/workstream_id=ws-audio/b.csv.gz", 2),
        (f"{ner}2", "late", "k7", "day2", f"{bucket}/landing/day2/c.jsonl", 1),
        (f"{ner}3", "other", None, "day1", f"{bucket}/landing/day1/a.jsonl", 4),
        (f"{ner}3", "third", "k1", "day2", f"{bucket}/landing/day2/c.jsonl", 4),
        (f"{ner}4", "later", None, "day2", f"{bucket}/landing/day2/c.jsonl", 2),
    ]
    daily = _read_rows(f"{out}/throughput_daily/**")
    per_partition: dict[str, int] = {}
    for path, t in daily.items():
        partition = path[len(f"{out}/throughput_daily/"):].rsplit("/", 1)[0]
        per_partition[partition] = per_partition.get(partition, 0) + sum(r["records"] for r in t)
    assert per_partition == {p: sum(1 for row in rows if row[0] == p) for p, *_ in rows}
    rejects = _read_rows(f"{out}/rejects/**")
    assert sorted((p.rsplit("/", 2)[1], r["error_code"], r["source_line"]) for p, t in rejects.items() for r in t) == [
        ("run_id=day1", "malformed_json", 2),
        ("run_id=day1", "unknown_task_definition", 3),
        ("run_id=day2", "missing_field", 3),
    ]

    # The same inputs again change nothing.
    run_on(f"{bucket}/landing/**", "again", [])
    assert table_rows() == rows
    assert _listing(f"{out}/_staging/") == []
    assert _listing(f"{out}/_runs/") == [f"{out}/_runs/{r}.json" for r in ("again", "day1", "day2")]


def test_a_committed_run_leaves_nothing_staged_on_an_object_store(bucket: str) -> None:
    """On gs:// and s3:// a folder does not exist as such: ``exists(folder)`` is false and
    deleting it deletes nothing, so the staging area must be cleared by listing its files."""
    _put(f"{bucket}/in/a.jsonl.gz", _jsonl([record(unique_id="k1"), record(unique_id="k1", worker_id="x")]),
         compress=True)
    options = RunOptions(inputs=(f"{bucket}/in/*",), output=f"{bucket}/out",
                         workstreams=f"{bucket}/config/workstreams.json", run_id="r1")
    assert run(options).manifest["counts"]["written"] == 1
    assert _listing(f"{bucket}/out/_staging/") == []
    assert [p.rsplit("/", 1)[1] for p in _listing(f"{bucket}/out/task_completed/")] == ["part-r1.parquet"]


def test_memfs_behaves_like_an_object_store(bucket: str) -> None:
    _put(f"{bucket}/x/y/z.txt", b"hello")
    assert FileSystems.exists(f"{bucket}/x/y/z.txt")
    assert not FileSystems.exists(f"{bucket}/x/y")  # no folders
    FileSystems.delete([f"{bucket}/x/y"])  # a folder's name deletes nothing, as on GCS
    assert FileSystems.exists(f"{bucket}/x/y/z.txt")
    FileSystems.rename([f"{bucket}/x/y/z.txt"], [f"{bucket}/moved.txt"])
    assert _listing(f"{bucket}/x/") == []
    with FileSystems.open(f"{bucket}/moved.txt") as handle:
        assert handle.read() == b"hello"
    _put(f"{bucket}/z/f.gz", b"data", compress=True)
    with FileSystems.open(f"{bucket}/z/f.gz", compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        assert gzip.decompress(handle.read()) == b"data"
    FileSystems.delete([f"{bucket}/z/"])  # a prefix ending with / deletes what is under it
    assert _listing(f"{bucket}/z/") == []


# --- coders ------------------------------------------------------------------------------------

def test_arrow_coders_round_trip_and_serve_a_shuffle_on_the_portable_runner() -> None:
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from transforms.coders import ArrowRecordBatchCoder, ArrowTableCoder, register_arrow_coders

    table = pa.table({"k": ["a", "b", None], "n": [1, 2, 3], "m": [[("x", "1")], [], None]},
                     schema=pa.schema([("k", pa.string()), ("n", pa.int64()), ("m", pa.map_(pa.string(), pa.string()))]))
    batch = table.to_batches()[0]
    for coder, value in ((ArrowTableCoder(), table), (ArrowRecordBatchCoder(), batch), (ArrowTableCoder(None), table)):
        decoded = coder.decode(coder.encode(value))
        assert type(decoded) is type(value) and decoded.equals(value)
    assert ArrowTableCoder().decode(ArrowTableCoder().encode(table.slice(0, 0))).num_rows == 0

    registry = beam.coders.registry
    saved = dict(registry._coders)
    try:
        register_arrow_coders()
        with beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(PORTABLE)) as pipeline:
            keyed = (
                pipeline
                | beam.Create([batch, batch])
                | "Key" >> beam.Map(lambda b: (("w", "d"), pa.Table.from_batches([b])))
                .with_output_types(tuple[tuple[str, str], pa.Table])
            )
            kv_coder = registry.get_coder(keyed.element_type)
            key_coder, value_coder = kv_coder.coders()
            assert key_coder == beam.coders.TupleCoder([beam.coders.StrUtf8Coder(), beam.coders.StrUtf8Coder()])
            assert key_coder.is_deterministic() and value_coder == ArrowTableCoder()
            rows = (keyed | beam.GroupByKey()
                    | beam.MapTuple(lambda key, tables: (key, pa.concat_tables(tables).column("n").to_pylist())))
            assert_that(rows, equal_to([(("w", "d"), [1, 2, 3, 1, 2, 3])]))
    finally:
        registry._coders.clear()
        registry._coders.update(saved)


def test_chunks_and_batches_are_sized_for_metrics_without_being_encoded(tmp_path: Path) -> None:
    """Beam samples the size of elements with their PCollection's coder: chunks and Arrow batches
    must reach a coder that measures them, not a pickle of the whole element."""
    import apache_beam as beam

    from schemas.config import WorkstreamConfig
    from transforms.coders import ArrowRecordBatchCoder
    from transforms.durations import DeriveDurations
    from transforms.read import InputFile, RawChunkCoder, ReadTaskFiles, read_chunks
    from transforms.validate import REJECTED, ValidateRecords

    path = write_jsonl(tmp_path / "a.jsonl", [record(), record(unique_id="u2"), {"no": "fields"}])
    [chunk] = read_chunks(InputFile(0, str(path)))
    coder = RawChunkCoder()
    assert coder.estimate_size(chunk) == sum(len(raw) for raw in chunk.raws)
    assert coder.decode(coder.encode(chunk)) == chunk
    table = pa.table({"n": [1, 2, 3]})
    assert ArrowRecordBatchCoder().estimate_size(table.to_batches()[0]) == table.nbytes

    pipeline = beam.Pipeline()
    chunks = pipeline | beam.Create([InputFile(0, str(path))]) | ReadTaskFiles()
    validated = chunks | ValidateRecords(WorkstreamConfig.model_validate(CONFIG_DATA))
    accepted = validated.accepted | DeriveDurations()
    registry = beam.coders.registry
    assert type(registry.get_coder(chunks.element_type)) is RawChunkCoder
    for batches in (validated.accepted, validated[REJECTED], accepted):
        assert type(registry.get_coder(batches.element_type)) is ArrowRecordBatchCoder
