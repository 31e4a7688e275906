"""Dedupe accepted records by (workstream, use case, task definition, unique_id) — SPEC 4.

The shuffle carries only what the decision needs: per bucket of keys, an Arrow table of the
key, the record's ``_seq`` (its place in SPEC 2.4's order), its replace flag and where its row
will live. The decision is made by ``resolve_duplicates`` (vectorized, ordered by ``_seq``,
never by arrival), and the losers' ``_seq`` come back as a side input that filters the full
batches, which never cross a shuffle here. Records without unique_id skip all of it.

Across runs, each bucket has a key index in the output folder (``_index/bucket=NN/``: key,
workstream, completed date, source file of every row that has a unique_id). An indexed row is
earlier than anything in the run, so it simply heads its key's chain; when it loses, its
partition is told to remove it (``RemoveKeys``) and the bucket's index is rewritten.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from transforms.changes import DropRecords, Partition, RemoveKeys
from transforms.coders import register_arrow_coders
from transforms.counts import CommitFiles, StageReport
from transforms.files import list_files, read_parquet, write_parquet
from transforms.gather import GatherRows
from transforms.layout import OutputLayout

register_arrow_coders()  # key tables cross the shuffle as Arrow IPC, not pickles

__all__ = [
    "DUPLICATE_POLICIES",
    "INDEX_BUCKETS",
    "INDEX_REPEATING",
    "INDEX_SCHEMA",
    "KEY_COLUMNS",
    "DedupeByKey",
    "bucket_of",
    "dedupe_key",
    "has_key_in",
    "resolve_duplicates",
]

DUPLICATE_POLICIES = ("per-record", "replace", "keep-first")
INDEX_BUCKETS = 32  # a property of the output folder's index: never change for an existing folder
KEY_COLUMNS = ("workstream_id", "use_case_id", "task_definition_id", "unique_id")
COUNTS = "counts"
CHANGES = "changes"

SUPERSEDED = "superseded"
IGNORED = "ignored_duplicate"
_OUTCOMES_SCHEMA = pa.schema([("_seq", pa.int64()), ("outcome", pa.string())])
INDEX_SCHEMA = pa.schema([("key", pa.string()), ("workstream_id", pa.string()),
                          ("completed_date", pa.date32()), ("source_file", pa.string())])
INDEX_REPEATING = ("workstream_id", "completed_date", "source_file")  # dictionary-encoded; each key is unique
_KEYS_SCHEMA = pa.schema([("key", pa.string()), ("_seq", pa.int64()), ("replace", pa.bool_()),
                          ("workstream_id", pa.string()), ("completed_date", pa.date32()),
                          ("source_file", pa.string())])
# What crosses the shuffle: the same, in fewer bytes (``_unshuffled`` turns it back). The key
# is its (workstream, use case, task definition) prefix, one of a few per chunk and so
# dictionary encoded, and the escaped unique_id; the partition's workstream and the source file
# are dictionary encoded too. About 67 bytes a keyed record instead of about 200 (the
# benchmark's data): an in-process runner holds a shuffle in memory, more than once while it
# hands the groups on, and this shuffle was most of a large run's peak.
_DICT = pa.dictionary(pa.int32(), pa.string())
_SHUFFLED_SCHEMA = pa.schema([("prefix", _DICT), ("uid", pa.string()), ("_seq", pa.int64()), ("replace", pa.bool_()),
                              ("workstream_id", _DICT), ("completed_date", pa.date32()), ("source_file", _DICT)])


class DedupeByKey(beam.PTransform):
    """Accepted batches -> ``changes`` per partition, and ``counts``.

    Changes are ``((workstream, date), DropRecords)`` for this run's records that lose, and
    ``((workstream, date), RemoveKeys)`` for earlier runs' rows that are replaced. They travel
    to the partition writer, which applies them to the rows it already groups; so the rows
    cross one shuffle only, and nothing waits on a side input.

    ``output``/``staging`` are None for a dedupe within the batches alone.
    ``reprocessed`` files' earlier rows are being removed by the run: their index entries go.
    """

    def __init__(self, policy: str = "per-record", buckets: int = INDEX_BUCKETS, output: OutputLayout | None = None,
                 staging: OutputLayout | None = None, run_id: str = "", reprocessed: Sequence[str] = ()) -> None:
        super().__init__()
        if policy not in DUPLICATE_POLICIES:
            raise ValueError(f"unknown duplicates policy {policy!r}; one of {', '.join(DUPLICATE_POLICIES)}")
        self._policy = policy
        self._buckets = buckets
        self._output = output
        self._staging = staging
        self._run_id = run_id
        self._reprocessed = tuple(reprocessed)

    def expand(self, batches: beam.PCollection[pa.RecordBatch]) -> dict[str, beam.PCollection]:
        keyed = batches | "KeysByBucket" >> beam.ParDo(
            _KeysByBucketFn(self._buckets, self._policy)).with_output_types(tuple[int, pa.Table])
        if self._reprocessed:  # every bucket must drop the reprocessed files' index entries
            seeds = keyed.pipeline | "EveryBucket" >> beam.Create(
                [(b, _SHUFFLED_SCHEMA.empty_table()) for b in range(self._buckets)]).with_output_types(tuple[int, pa.Table])
            keyed = (keyed, seeds) | "WithEveryBucket" >> beam.Flatten()
        resolved = (
            keyed
            | "GroupBuckets" >> beam.GroupByKey()
            | "ResolveChains" >> beam.ParDo(
                _ResolveBucketFn(self._output, self._staging, self._run_id, self._reprocessed)
            ).with_outputs(COUNTS, main=CHANGES)
        )
        return {CHANGES: resolved[CHANGES], COUNTS: resolved[COUNTS]}


def bucket_of(keys: Iterable[str], buckets: int) -> list[int]:
    """A key's bucket: stable across processes and runs (crc32, not Python's salted hash)."""
    return [zlib.crc32(k.encode()) % buckets for k in keys]


def dedupe_key(columns: dict[str, pa.Array] | pa.RecordBatch | pa.Table) -> pa.Array:
    """The dedupe key (workstream, use case, task definition, unique_id) as one string per row.

    The parts are joined with U+001F; inside a part, U+001E and U+001F are escaped first
    (as U+001E 0 and U+001E 1), so no id, whatever it holds, can make two keys collide. An id
    without those two control characters keys exactly as before the escaping existed.
    """
    prefix, uid = _key_parts(columns)
    return pc.binary_join_element_wise(prefix, uid, "")


def has_key_in(columns: dict[str, pa.Array] | pa.Table, keys: set[str]) -> pa.Array:
    """Whether each row's dedupe key is one of ``keys`` (never null).

    Whole keys are built only for the rows whose escaped unique_id is one of the keys' (the
    part after the last separator): a partition's earlier rows are thousands, the keys a night
    replaces in it a handful. Building every row's key took half the cost of a night that
    corrects rows all over a 5M-row table.
    """
    uid = _escaped(_column(columns, "unique_id"))
    uids = pa.array(sorted({key.rsplit("\x1f", 1)[-1] for key in keys}), pa.string())
    candidates = np.flatnonzero(pc.fill_null(pc.is_in(uid, value_set=uids), False).to_numpy(zero_copy_only=False))
    found = np.zeros(len(uid), dtype=bool)
    if len(candidates):
        rows = pa.array(candidates, pa.int64())
        picked = {name: _column(columns, name).take(rows) for name in KEY_COLUMNS}
        hit = pc.fill_null(pc.is_in(dedupe_key(picked), value_set=pa.array(sorted(keys), pa.string())), False)
        found[candidates[hit.to_numpy(zero_copy_only=False)]] = True
    return pa.array(found)


def _column(columns: dict[str, pa.Array] | pa.RecordBatch | pa.Table, name: str) -> pa.Array | pa.ChunkedArray:
    return columns[name] if isinstance(columns, dict) else columns.column(name)


def _escaped(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A key part with U+001E and U+001F escaped (see ``dedupe_key``)."""
    return pc.replace_substring(pc.replace_substring(column, "\x1e", "\x1e0"), "\x1f", "\x1e1")


def _key_parts(columns: dict[str, pa.Array] | pa.RecordBatch | pa.Table) -> tuple[pa.Array, pa.Array]:
    """The dedupe key as (prefix, escaped unique_id), the key being their concatenation."""
    parts = [_escaped(_column(columns, name)) for name in KEY_COLUMNS]
    return pc.binary_join_element_wise(*parts[:-1], "", "\x1f"), parts[-1]


class _KeysByBucketFn(GatherRows):
    """The dedupe keys of the records that have a unique_id, gathered over up to ``rows`` records
    and emitted once per bucket: one shuffle message per bucket per 250,000 records, not per chunk
    (per chunk, 1M records made 1,600 messages whose encoding alone took 1.4 s)."""

    def __init__(self, buckets: int, policy: str, rows: int = 250_000) -> None:
        super().__init__(rows)
        self._buckets = buckets
        self._policy = policy

    def take(self, batch: pa.RecordBatch) -> pa.Table:
        return _batch_keys(batch, self._buckets, self._policy)

    def gathered(self, table: pa.Table) -> Iterator[tuple[int, pa.Table]]:
        return _split_by_bucket(table)


def _batch_keys(batch: pa.RecordBatch, buckets: int, policy: str) -> pa.Table:
    """A batch's keyed records as the shuffle's columns, texts plain, with each one's bucket."""
    keyed = batch.filter(pc.is_valid(batch.column("unique_id")))
    if not keyed.num_rows:
        return pa.table({})  # nothing keyed (its columns may not even be typed): nothing to gather
    if policy == "per-record":
        replace = keyed.column("replace_duplicate")
    else:
        replace = pa.repeat(pa.scalar(policy == "replace", pa.bool_()), keyed.num_rows)
    prefix, uid = _key_parts(keyed)
    joined = pc.binary_join_element_wise(prefix, uid, "")
    return pa.table({
        "prefix": prefix, "uid": uid, "_seq": keyed.column("_seq"), "replace": replace,
        "workstream_id": keyed.column("workstream_id"),
        "completed_date": pc.cast(keyed.column("task_completed_at"), pa.date32()),
        "source_file": keyed.column("source_file"),
        "bucket": pa.array(bucket_of(joined.to_pylist(), buckets), pa.int32()),
    })


def _split_by_bucket(table: pa.Table) -> Iterator[tuple[int, pa.Table]]:
    """Keys with their buckets -> (bucket, ``_SHUFFLED_SCHEMA`` table) per bucket: sorted by bucket
    once and sliced, the repeating texts dictionary encoded."""
    if not table.num_rows:
        return
    order = pc.sort_indices(table.column("bucket"))
    columns = {name: table.column(name).combine_chunks() for name in table.column_names}
    for name in ("prefix", "workstream_id", "source_file"):
        columns[name] = pc.dictionary_encode(columns[name])
    sorted_table = pa.table({name: columns[name] for name in _SHUFFLED_SCHEMA.names}, schema=_SHUFFLED_SCHEMA) \
        .take(order)
    buckets = columns["bucket"].take(order)
    runs = pc.run_end_encode(buckets)
    start = 0
    for bucket, end in zip(runs.values.to_pylist(), runs.run_ends.to_pylist()):
        yield bucket, sorted_table.slice(start, end - start)
        start = end


def _unshuffled(table: pa.Table) -> pa.Table:
    """A bucket's shuffled keys as ``_KEYS_SCHEMA``: the key whole, the dictionaries decoded."""
    text = {name: pc.cast(table.column(name), pa.string()) for name in ("prefix", "workstream_id", "source_file")}
    return pa.table({
        "key": pc.binary_join_element_wise(text["prefix"], table.column("uid"), ""), "_seq": table.column("_seq"),
        "replace": table.column("replace"), "workstream_id": text["workstream_id"],
        "completed_date": table.column("completed_date"), "source_file": text["source_file"],
    }, schema=_KEYS_SCHEMA)


def resolve_duplicates(keys: pa.Table) -> pa.Table:
    """SPEC 4 on a table of (key, _seq, replace): the records that lose, with their outcome.

    Per key, in ``_seq`` order, the first record is kept; a later record with replace=true
    replaces the kept one (which is then ``superseded``); a later one with replace=false is
    ``ignored_duplicate``. So the survivor is the last record that is first or replacing.
    """
    keys = keys.select(["key", "_seq", "replace"])
    if not keys.num_rows:
        return _OUTCOMES_SCHEMA.empty_table()
    first = keys.group_by("key").aggregate([("_seq", "min")]).rename_columns(["key", "_first"])
    keys = keys.join(first, "key")
    eligible = pc.or_(pc.equal(keys.column("_seq"), keys.column("_first")), keys.column("replace"))
    keys = keys.append_column("_eligible_seq", pc.if_else(eligible, keys.column("_seq"), pa.scalar(None, pa.int64())))
    winner = keys.group_by("key").aggregate([("_eligible_seq", "max")]).rename_columns(["key", "_winner"])
    keys = keys.join(winner, "key")
    losers = keys.filter(pc.not_equal(keys.column("_seq"), keys.column("_winner")))
    outcome = pc.if_else(pc.is_valid(losers.column("_eligible_seq")), SUPERSEDED, IGNORED)
    return pa.table({"_seq": losers.column("_seq"), "outcome": outcome}, schema=_OUTCOMES_SCHEMA).sort_by("_seq")


def _read_index(paths: Sequence[str]) -> pa.Table:
    tables = [read_parquet(path).cast(INDEX_SCHEMA) for path in paths]
    return pa.concat_tables(tables) if tables else INDEX_SCHEMA.empty_table()


class _ResolveBucketFn(beam.DoFn):
    """One bucket: earlier runs' rows (from the index) head their chains; decide; update the index."""

    def __init__(self, output: OutputLayout | None, staging: OutputLayout | None, run_id: str,
                 reprocessed: tuple[str, ...]) -> None:
        self._output = output
        self._staging = staging
        self._run_id = run_id
        self._reprocessed = reprocessed

    def process(self, element: tuple[int, Iterable[pa.Table]]) -> Iterator[Any]:
        bucket, tables = element
        run_keys = _unshuffled(pa.concat_tables([t.cast(_SHUFFLED_SCHEMA) for t in tables]))
        index_files: list[str] = []
        index = INDEX_SCHEMA.empty_table()
        if self._output is not None:
            index_files = list_files(FileSystems.join(self._output.index_bucket(bucket), "*.parquet"))
            index = _read_index(index_files)
        if self._reprocessed:
            index = index.filter(pc.invert(pc.is_in(index.column("source_file"), pa.array(self._reprocessed))))
        existing = index.filter(pc.is_in(index.column("key"), value_set=run_keys.column("key")))
        chains = pa.concat_tables([
            run_keys.select(["key", "_seq", "replace"]),
            pa.table({"key": existing.column("key"), "_seq": pa.array([-1] * existing.num_rows, pa.int64()),
                      "replace": pa.array([True] * existing.num_rows, pa.bool_())}),
        ])
        losers = resolve_duplicates(chains)
        run_losers = losers.filter(pc.greater_equal(losers.column("_seq"), 0))
        lost = pc.is_in(run_keys.column("_seq"), value_set=run_losers.column("_seq"))
        dropped, winners = run_keys.filter(lost), run_keys.filter(pc.invert(lost))
        # an earlier row is replaced exactly when a record of this run survives for its key
        replaced = existing.filter(pc.is_in(existing.column("key"), value_set=winners.column("key")))
        for partition, seqs in _by_partition(dropped, "_seq"):
            yield partition, DropRecords(tuple(seqs))
        for partition, keys in _by_partition(replaced, "key"):
            yield partition, RemoveKeys(tuple(keys))
        outcomes = run_losers.column("outcome")
        report = StageReport.of(superseded=pc.sum(pc.equal(outcomes, SUPERSEDED)).as_py() or 0,
                                ignored_duplicates=pc.sum(pc.equal(outcomes, IGNORED)).as_py() or 0,
                                replaced_existing=replaced.num_rows)
        if self._staging is not None and self._output is not None and (run_keys.num_rows or self._reprocessed):
            report = report + self._rewrite_index(self._staging, bucket, index, winners, index_files)
        yield beam.pvalue.TaggedOutput(COUNTS, report)

    def _rewrite_index(self, staging: OutputLayout, bucket: int, index: pa.Table, winners: pa.Table,
                       old_files: list[str]) -> StageReport:
        """The bucket's index after this run: earlier keys, with this run's survivors in place."""
        kept = index.filter(pc.invert(pc.is_in(index.column("key"), value_set=winners.column("key"))))
        updated = pa.concat_tables([kept, winners.select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA)]).sort_by("key")
        staged = []
        if updated.num_rows:
            path = staging.index_file(bucket, self._run_id)
            write_parquet(updated, path, INDEX_REPEATING)
            staged.append(path)
        return StageReport.of(index_keys=updated.num_rows, files=CommitFiles(staged, list(old_files)))


def _by_partition(rows: pa.Table, column: str) -> Iterator[tuple[Partition, list[Any]]]:
    """``column``'s values grouped by the (workstream, completed date) partition of their rows."""
    if not rows.num_rows:
        return
    grouped = rows.group_by(["workstream_id", "completed_date"]).aggregate([(column, "list")]).to_pydict()
    for workstream, day, values in zip(grouped["workstream_id"], grouped["completed_date"], grouped[f"{column}_list"]):
        yield (workstream, day.isoformat()), sorted(values)
