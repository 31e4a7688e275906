"""Dedupe accepted records by (workstream, use case, task definition, unique_id) — SPEC 4.

The shuffle carries only what the decision needs: per bucket of keys, an Arrow table of the
key, the record's ``_seq`` (its place in SPEC 2.4's order) and its replace flag. The decision
is made by ``resolve_duplicates`` (vectorized, ordered by ``_seq``, never by arrival), and the
losers' ``_seq`` come back as a side input that filters the full batches, which never cross a
shuffle here. Records without unique_id are never duplicates and skip all of it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["DUPLICATE_POLICIES", "DedupeByKey", "resolve_duplicates"]

DUPLICATE_POLICIES = ("per-record", "replace", "keep-first")
KEY_COLUMNS = ("workstream_id", "use_case_id", "task_definition_id", "unique_id")
COUNTS = "counts"

SUPERSEDED = "superseded"
IGNORED = "ignored_duplicate"
_OUTCOMES_SCHEMA = pa.schema([("_seq", pa.int64()), ("outcome", pa.string())])


class DedupeByKey(beam.PTransform):
    """Accepted batches -> ``kept``: the batches without the records SPEC 4 drops, and ``counts``."""

    def __init__(self, policy: str = "per-record", buckets: int = 32) -> None:
        super().__init__()
        if policy not in DUPLICATE_POLICIES:
            raise ValueError(f"unknown duplicates policy {policy!r}; one of {', '.join(DUPLICATE_POLICIES)}")
        self._policy = policy
        self._buckets = buckets

    def expand(self, batches: beam.PCollection[pa.RecordBatch]) -> dict[str, beam.PCollection]:
        losers = (
            batches
            | "KeysByBucket" >> beam.FlatMap(_keys_by_bucket, buckets=self._buckets, policy=self._policy)
            | "GroupBuckets" >> beam.GroupByKey()
            | "ResolveChains" >> beam.MapTuple(lambda _bucket, tables: resolve_duplicates(pa.concat_tables(tables)))
        )
        kept = batches | "DropLosers" >> beam.ParDo(_DropLosersFn(), beam.pvalue.AsList(losers))
        counts = losers | "CountOutcomes" >> beam.Map(_outcome_counts)
        return {"kept": kept, COUNTS: counts}


def _keys_by_bucket(batch: pa.RecordBatch, buckets: int, policy: str) -> Iterator[tuple[int, pa.Table]]:
    """The dedupe keys of a batch's records that have a unique_id, split by a stable hash."""
    keyed = batch.filter(pc.is_valid(batch.column("unique_id")))
    if not keyed.num_rows:
        return
    if policy == "per-record":
        replace = keyed.column("replace_duplicate")
    else:
        replace = pa.array([policy == "replace"] * keyed.num_rows, pa.bool_())
    joined = pc.binary_join_element_wise(*(keyed.column(c) for c in KEY_COLUMNS), "\x1f")
    table = pa.table({"key": joined, "_seq": keyed.column("_seq"), "replace": replace})
    bucket_of = pa.array([zlib.crc32(k.encode()) % buckets for k in joined.to_pylist()], pa.int32())
    for bucket in pc.unique(bucket_of).to_pylist():
        yield bucket, table.filter(pc.equal(bucket_of, bucket))


def resolve_duplicates(keys: pa.Table) -> pa.Table:
    """SPEC 4 on a table of (key, _seq, replace): the records that lose, with their outcome.

    Per key, in ``_seq`` order, the first record is kept; a later record with replace=true
    replaces the kept one (which is then ``superseded``); a later one with replace=false is
    ``ignored_duplicate``. So the survivor is the last record that is first or replacing.
    """
    if not keys.num_rows:
        return _OUTCOMES_SCHEMA.empty_table()
    first = keys.group_by("key").aggregate([("_seq", "min")]).rename_columns(["key", "_first"])
    keys = keys.join(first, "key")
    eligible = pc.or_(pc.equal(keys.column("_seq"), keys.column("_first")), keys.column("replace"))
    keys = keys.append_column("_eligible_seq", pc.if_else(eligible, keys.column("_seq"), pa.scalar(-1, pa.int64())))
    winner = keys.group_by("key").aggregate([("_eligible_seq", "max")]).rename_columns(["key", "_winner"])
    keys = keys.join(winner, "key")
    losing = pc.not_equal(keys.column("_seq"), keys.column("_winner"))
    losers = keys.filter(losing)
    outcome = pc.if_else(pc.not_equal(losers.column("_eligible_seq"), -1), SUPERSEDED, IGNORED)
    return pa.table({"_seq": losers.column("_seq"), "outcome": outcome}, schema=_OUTCOMES_SCHEMA).sort_by("_seq")


def _outcome_counts(losers: pa.Table) -> dict[str, int]:
    outcomes = losers.column("outcome")
    return {
        "superseded": pc.sum(pc.equal(outcomes, SUPERSEDED)).as_py() or 0,
        "ignored_duplicates": pc.sum(pc.equal(outcomes, IGNORED)).as_py() or 0,
    }


class _DropLosersFn(beam.DoFn):
    def process(self, batch: pa.RecordBatch, losers: Iterable[pa.Table]) -> Iterator[pa.RecordBatch]:
        lost = pa.concat_arrays([t.column("_seq").combine_chunks() for t in losers] or [pa.array([], pa.int64())])
        kept = batch.filter(pc.invert(pc.is_in(batch.column("_seq"), value_set=lost))) if len(lost) else batch
        if kept.num_rows:
            yield kept
