"""DedupeByKey / resolve_duplicates: SPEC 4 (first kept, later true replaces, later false ignored)."""

from __future__ import annotations

import json
import random
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.config import WorkstreamConfig
from tests.conftest import TD2, record
from transforms.changes import DropRecords
from transforms.counts import SumCounts
from transforms.dedupe import (
    DedupeByKey,
    _batch_keys,
    _KeysByBucketFn,
    _split_by_bucket,
    _unshuffled,
    bucket_of,
    dedupe_key,
    has_key_in,
    resolve_duplicates,
)
from transforms.durations import derive_durations
from transforms.read import RawChunk
from transforms.validate import sequence_number, validate_chunk

SUPERSEDED = "superseded"
IGNORED = "ignored_duplicate"


def keys_table(rows: list[tuple[str, int, bool]]) -> pa.Table:
    return pa.table({
        "key": pa.array([r[0] for r in rows], pa.string()),
        "_seq": pa.array([r[1] for r in rows], pa.int64()),
        "replace": pa.array([r[2] for r in rows], pa.bool_()),
    })


def outcomes(table: pa.Table) -> dict[int, str]:
    return dict(zip(table.column("_seq").to_pylist(), table.column("outcome").to_pylist(), strict=True))


def reference(rows: list[tuple[str, int, bool]]) -> dict[int, str]:
    """SPEC 4 literally: per key in order, the first is kept; a later true replaces the kept one
    (which is superseded); a later false is ignored."""
    kept: dict[str, int] = {}
    result: dict[int, str] = {}
    for key, seq, replace in sorted(rows, key=lambda r: r[1]):
        if key not in kept:
            kept[key] = seq
        elif replace:
            result[kept[key]] = SUPERSEDED
            kept[key] = seq
        else:
            result[seq] = IGNORED
    return result


# --- resolve_duplicates ------------------------------------------------------------------------


@pytest.mark.parametrize(("flags", "expected"), [
    pytest.param("T", {}, id="single"),
    pytest.param("F", {}, id="single-false-is-kept"),
    pytest.param("TT", {1: SUPERSEDED}, id="later-true-replaces"),
    pytest.param("FT", {1: SUPERSEDED}, id="first-false-still-replaced-by-later-true"),
    pytest.param("TF", {2: IGNORED}, id="later-false-ignored"),
    pytest.param("FF", {2: IGNORED}, id="both-false"),
    pytest.param("TTT", {1: SUPERSEDED, 2: SUPERSEDED}, id="chain-of-replaces"),
    pytest.param("TFTF", {1: SUPERSEDED, 2: IGNORED, 4: IGNORED}, id="T-F-T-F"),
    pytest.param("TFFT", {1: SUPERSEDED, 2: IGNORED, 3: IGNORED}, id="T-F-F-T"),
    pytest.param("FFFF", {2: IGNORED, 3: IGNORED, 4: IGNORED}, id="keep-first"),
    pytest.param("TFTT", {1: SUPERSEDED, 2: IGNORED, 3: SUPERSEDED}, id="T-F-T-T"),
])
def test_resolve_one_key(flags: str, expected: dict[int, str]) -> None:
    rows = [("k", seq, flag == "T") for seq, flag in enumerate(flags, start=1)]
    result = resolve_duplicates(keys_table(rows))
    assert outcomes(result) == expected
    assert result.column("_seq").to_pylist() == sorted(expected)  # sorted by _seq
    assert result.schema.names == ["_seq", "outcome"]


def test_order_is_by_seq_not_by_row_order() -> None:
    # seq order: 10 (T, first), 20 (F, ignored), 30 (T, replaces 10); rows given backwards
    rows = [("k", 30, True), ("k", 20, False), ("k", 10, True)]
    assert outcomes(resolve_duplicates(keys_table(rows))) == {10: SUPERSEDED, 20: IGNORED}
    # the first by seq is kept even when it says false and comes last in the table
    rows = [("k", 7, False), ("k", 3, False)]
    assert outcomes(resolve_duplicates(keys_table(rows))) == {7: IGNORED}


def test_keys_are_independent_and_seq_spans_files() -> None:
    a1, a2 = sequence_number(0, 5), sequence_number(0, 6)
    b1, b2 = sequence_number(1, 1), sequence_number(1, 2)
    rows = [("b", b1, False), ("a", b2, False), ("a", a1, True), ("b", a2, True), ("c", b1 + 1, True)]
    # a: a1 (first), b2 false -> ignored.  b: a2 (first), b1 false -> ignored.  c alone.
    assert outcomes(resolve_duplicates(keys_table(rows))) == {b2: IGNORED, b1: IGNORED}


def test_resolve_empty_table() -> None:
    result = resolve_duplicates(keys_table([]))
    assert result.num_rows == 0
    assert result.schema.names == ["_seq", "outcome"]


def test_resolve_large_seq_values() -> None:
    big = sequence_number(2**22, 2**40 - 2)
    rows = [("k", big + 1, True), ("k", big, True)]
    assert outcomes(resolve_duplicates(keys_table(rows))) == {big: SUPERSEDED}


@st.composite
def key_rows(draw: st.DrawFn) -> list[tuple[str, int, bool]]:
    n = draw(st.integers(min_value=0, max_value=40))
    seqs = draw(st.lists(st.integers(min_value=0, max_value=2**50), min_size=n, max_size=n, unique=True))
    keys = draw(st.lists(st.sampled_from(["a", "b", "c", "d\x1fe", ""]), min_size=n, max_size=n))
    flags = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    rows = list(zip(keys, seqs, flags, strict=True))
    draw(st.randoms(use_true_random=False)).shuffle(rows)
    return rows


@settings(max_examples=120, deadline=None)
@given(key_rows())
def test_resolve_matches_reference(rows: list[tuple[str, int, bool]]) -> None:
    result = resolve_duplicates(keys_table(rows))
    got = outcomes(result)
    assert got == reference(rows)
    assert result.column("_seq").to_pylist() == sorted(got)
    # exactly one survivor per key
    survivors = {seq for _, seq, _ in rows} - set(got)
    assert sorted(k for k, seq, _ in rows if seq in survivors) == sorted({k for k, _, _ in rows})


# --- DedupeByKey -------------------------------------------------------------------------------


def _batch(config: WorkstreamConfig, rows: list[dict[str, Any]], file_index: int, first_line: int,
           source: str) -> pa.RecordBatch:
    lines = list(range(first_line, first_line + len(rows)))
    chunk = RawChunk(source, file_index, "jsonl", None, lines=lines,
                     raws=[json.dumps(r).encode() for r in rows], cells=[None] * len(rows),
                     problems=[None] * len(rows))
    accepted, rejects, _ = validate_chunk(chunk, config)
    assert rejects.num_rows == 0, rejects.to_pylist()
    return derive_durations(accepted)


def _batches(config: WorkstreamConfig) -> list[pa.RecordBatch]:
    """Records of two files over three batches; worker_id names each record."""
    a = [
        record(worker_id="w1", unique_id="u1"),                            # a.jsonl:1
        record(worker_id="w2", unique_id="u1", replace_duplicate=False),   # a.jsonl:2
        record(worker_id="w3"),                                            # a.jsonl:3  no unique_id
        record(worker_id="w4", unique_id="u2"),                            # a.jsonl:4
    ]
    b1 = [
        record(worker_id="w5", unique_id="u1", replace_duplicate=True),    # b.jsonl:1
        record(worker_id="w6", unique_id=" u2 ", replace_duplicate=False),  # b.jsonl:2  trimmed: same key as u2
    ]
    b2 = [
        record(worker_id="w7"),                                            # b.jsonl:3  no unique_id
        record(worker_id="w8", unique_id="u1", replace_duplicate="no"),    # b.jsonl:4
        record(worker_id="w9", unique_id="u1", task_definition_id=TD2),    # b.jsonl:5  other key
        record(worker_id="w10"),                                           # b.jsonl:6  no unique_id
    ]
    # later records first: the decision must follow _seq, not arrival
    return [_batch(config, b2, 1, 3, "b.jsonl"), _batch(config, b1, 1, 1, "b.jsonl"),
            _batch(config, a, 0, 1, "a.jsonl")]


def _kept(batches: list[pa.RecordBatch], dropped: list[int]) -> list[str]:
    """Worker ids of the records that survive the ``drop`` changes."""
    lost = set(dropped)
    return sorted(r["worker_id"] for b in batches for r in b.to_pylist() if r["_seq"] not in lost)


@pytest.mark.parametrize(("policy", "buckets", "kept", "counts"), [
    # u1: w1 T, w2 F, w5 T, w8 F -> w5 kept, w1 superseded, w2 and w8 ignored; u2: w4, w6 F -> w4 kept
    ("per-record", 1, ["w3", "w4", "w5", "w7", "w9", "w10"],
     {"superseded": 1, "ignored_duplicates": 3, "replaced_existing": 0}),
    # every record replaces: u1 -> w8, u2 -> w6
    ("replace", 32, ["w3", "w6", "w7", "w8", "w9", "w10"],
     {"superseded": 4, "ignored_duplicates": 0, "replaced_existing": 0}),
    # every record is ignored after the first: u1 -> w1, u2 -> w4
    ("keep-first", 3, ["w1", "w3", "w4", "w7", "w9", "w10"],
     {"superseded": 0, "ignored_duplicates": 4, "replaced_existing": 0}),
])
def test_dedupe_by_key_policies(config: WorkstreamConfig, policy: str, buckets: int, kept: list[str],
                                counts: dict[str, int]) -> None:
    batches = _batches(config)
    total = sum(b.num_rows for b in batches)
    assert total == len(kept) + counts["superseded"] + counts["ignored_duplicates"]  # the expectation reconciles

    with BeamTestPipeline(runner="FnApiRunner") as pipeline:
        deduped = pipeline | beam.Create(batches) | DedupeByKey(policy, buckets=buckets)
        assert set(deduped) == {"changes", "counts"}
        dropped = deduped["changes"] | "Drops" >> beam.FlatMap(
            lambda change: [("drop", change[0], seq) for seq in change[1].seqs] if isinstance(change[1], DropRecords) else [])
        summed = deduped["counts"] | beam.CombineGlobally(SumCounts()) | "Tag" >> beam.Map(
            lambda r: ("counts", json.dumps({k: getattr(r.counts, k) for k in counts}, sort_keys=True)))
        assert_that(summed, equal_to([("counts", json.dumps(counts, sort_keys=True))]), label="Counts")
        assert_that(dropped | "Kept" >> beam.combiners.ToList() | beam.Map(
            lambda drops: _kept(batches, [seq for _, _, seq in drops])), equal_to([sorted(kept)]), label="KeptRows")
        # every dropped record is reported under its own row's partition
        partitions = {r["_seq"]: ("ws-ner", "2020-12-22") for b in batches for r in b.to_pylist()}
        assert_that(dropped | beam.Map(lambda d: d[1] == partitions[d[2]]) | beam.Distinct(),
                    equal_to([True]), label="Partitions")


def test_dedupe_by_key_rejects_an_unknown_policy() -> None:
    with pytest.raises(ValueError, match="keep-first"):
        DedupeByKey("keep-last")


def test_dedupe_without_unique_ids_drops_nothing(config: WorkstreamConfig) -> None:
    """Records without unique_id never meet: identical bodies are all kept (and no changes)."""
    batch = _batch(config, [record(), record(), record(replace_duplicate=False)], 0, 1, "a.jsonl")
    other = _batch(config, [record()], 1, 1, "b.jsonl")
    with BeamTestPipeline(runner="FnApiRunner") as pipeline:
        deduped = pipeline | beam.Create([batch, other]) | DedupeByKey("keep-first")
        assert_that(deduped["changes"], equal_to([]), label="NoChanges")
        assert_that(deduped["counts"], equal_to([]), label="NoCounts")


def test_reference_itself_on_the_spec_example() -> None:
    """Guard the oracle: T, F, T, F -> the third is kept."""
    rows = [("k", 1, True), ("k", 2, False), ("k", 3, True), ("k", 4, False)]
    random.Random(0).shuffle(rows)
    assert reference(rows) == {1: SUPERSEDED, 2: IGNORED, 4: IGNORED}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["ws", "w\x1fs", "w\x1e1", ""]), st.sampled_from(["uc", "u\x1e0c"]),
                          st.sampled_from(["td", "t\x1fd\x1f"]), st.one_of(st.none(), st.text(max_size=6))),
                min_size=1, max_size=30))
def test_the_shuffled_keys_come_back_as_the_dedupe_keys(parts: list[tuple[str, str, str, str | None]]) -> None:
    """The shuffle carries a key as a dictionary-encoded prefix and the unique_id: whatever the ids
    hold, the bucket gets back exactly ``dedupe_key`` of each keyed record, with its partition."""
    n = len(parts)
    batch = pa.RecordBatch.from_pydict({
        "workstream_id": [p[0] for p in parts], "use_case_id": [p[1] for p in parts],
        "task_definition_id": [p[2] for p in parts], "unique_id": [p[3] for p in parts],
        "replace_duplicate": [i % 2 == 0 for i in range(n)], "_seq": list(range(n)),
        "task_completed_at": pa.array([0] * n, pa.timestamp("us", tz="UTC")),
        "source_file": [f"f{i % 3}" for i in range(n)],
    })
    tables = [table for _, table in _split_by_bucket(_batch_keys(batch, 4, "per-record"))]
    keyed = batch.filter(pc.is_valid(batch.column("unique_id")))
    if not tables:
        assert keyed.num_rows == 0
        return
    back = _unshuffled(pa.concat_tables(tables)).sort_by("_seq")
    assert back.column("key").to_pylist() == dedupe_key(keyed).to_pylist()
    assert back.column("workstream_id").to_pylist() == keyed.column("workstream_id").to_pylist()
    assert back.column("source_file").to_pylist() == keyed.column("source_file").to_pylist()


def test_keys_gathered_over_batches_cross_once_per_bucket_each_in_its_bucket() -> None:
    """Keys of several batches (each with its own files and workstreams) are gathered and sent
    once per bucket per gathering: every key arrives exactly once, in the bucket of its key."""
    def batch(first: int, n: int, workstream: str) -> pa.RecordBatch:
        return pa.RecordBatch.from_pydict({
            "workstream_id": [workstream] * n, "use_case_id": ["uc"] * n, "task_definition_id": ["td"] * n,
            "unique_id": [None if i % 4 == 0 else f"id{i % 7}" for i in range(first, first + n)],
            "replace_duplicate": [True] * n, "_seq": list(range(first, first + n)),
            "task_completed_at": pa.array([0] * n, pa.timestamp("us", tz="UTC")),
            "source_file": [f"file-{first}"] * n,
        })
    batches = [batch(0, 5, "a"), batch(5, 6, "b"), batch(11, 4, "a"), batch(15, 3, "c")]

    def check(sent: list[tuple[int, pa.Table]]) -> None:
        keys = _unshuffled(pa.concat_tables([table for _, table in sent]))
        for bucket, table in sent:
            assert set(bucket_of(_unshuffled(table).column("key").to_pylist(), 4)) == {bucket}
        everything = pa.Table.from_batches(batches)
        expected = everything.filter(pc.is_valid(everything.column("unique_id")))
        assert sorted(zip(keys.column("_seq").to_pylist(), keys.column("key").to_pylist(),
                          keys.column("source_file").to_pylist())) == \
            list(zip(expected.column("_seq").to_pylist(), dedupe_key(expected).to_pylist(),
                     expected.column("source_file").to_pylist()))
        buckets = [bucket for bucket, _ in sent]
        assert len(buckets) < sum(len(set(bucket_of(dedupe_key(b.filter(pc.is_valid(b.column("unique_id"))))
                                                    .to_pylist(), 4))) for b in batches)

    with BeamTestPipeline() as pipeline:
        sent = (pipeline | beam.Create(batches, reshuffle=False)
                | beam.ParDo(_KeysByBucketFn(4, "per-record", rows=9)).with_output_types(tuple[int, pa.Table]))
        assert_that(sent | beam.combiners.ToList(), lambda lists: check(lists[0]))


_PARTS = st.sampled_from(["a", "a\x1f", "\x1fa", "a\x1e0", "a\x1e1", "\x1e", "", "b"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_PARTS, _PARTS, st.one_of(st.none(), _PARTS)), min_size=1, max_size=12),
       st.lists(st.tuples(_PARTS, _PARTS, _PARTS), max_size=6), st.booleans())
def test_has_key_in_is_membership_of_the_whole_key(rows: list[tuple[str, str, str | None]],
                                                   other_keys: list[tuple[str, str, str]], chunked: bool) -> None:
    """Which rows' key is among the keys: the same as building every row's key and looking it up,
    whatever the ids hold (separators, escapes, ids that only end like another's)."""
    columns = {"workstream_id": ["w\x1f"] * len(rows), "use_case_id": [r[0] for r in rows],
               "task_definition_id": [r[1] for r in rows], "unique_id": [r[2] for r in rows]}
    table = pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})
    if chunked:  # as read from Parquet: columns of several chunks
        table = pa.concat_tables([table.slice(0, len(rows) // 2), table.slice(len(rows) // 2)])
    every = dedupe_key(table).to_pylist()
    keys = {k for k in every[::2] if k is not None}
    keys |= set(dedupe_key({"workstream_id": pa.array(["w\x1f"] * len(other_keys), pa.string()),
                            "use_case_id": pa.array([k[0] for k in other_keys], pa.string()),
                            "task_definition_id": pa.array([k[1] for k in other_keys], pa.string()),
                            "unique_id": pa.array([k[2] for k in other_keys], pa.string())}).to_pylist())
    if not keys:
        return
    given = table
    if chunked:  # as the partition writer gives them: the file's columns, its workstream repeated
        given = {name: table.column(name) for name in table.column_names}
        given["workstream_id"] = pa.repeat(pa.scalar("w\x1f", pa.string()), len(rows))
    assert has_key_in(given, keys).to_pylist() == [key is not None and key in keys for key in every]
