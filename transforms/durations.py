"""Derive ``duration`` where a record left it out: completed minus started, in seconds.

Works on accepted Arrow batches as they leave ``ValidateRecords`` (``duration`` still optional)
and adds ``duration_derived``, which says where the duration was derived rather than given.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from schemas.tables import TASK_COMPLETED

__all__ = ["DeriveDurations", "derive_durations"]


class DeriveDurations(beam.PTransform):
    """Fill ``duration`` where absent as completed minus started, and flag it (vectorized)."""

    def expand(self, batches: beam.PCollection[pa.RecordBatch]) -> beam.PCollection[pa.RecordBatch]:
        return batches | "FillDuration" >> beam.Map(derive_durations).with_output_types(pa.RecordBatch)


def derive_durations(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``duration`` = completed - started in seconds where absent; ``duration_derived`` says so.

    Any span between two valid datetimes is derived: one of more than 2**53 microseconds (285
    years, e.g. a start in year 1) becomes the nearest float, never an error.
    """
    given = batch.column("duration")
    derived = pc.is_null(given)
    elapsed_us = pc.cast(pc.subtract(batch.column("task_completed_at"), batch.column("task_started_at")), pa.int64())
    elapsed = pc.divide(pc.cast(elapsed_us, pa.float64(), safe=False), 1_000_000.0)
    duration = pc.if_else(derived, elapsed, given)
    index = batch.schema.get_field_index("duration")
    batch = batch.set_column(index, batch.schema.field(index).with_nullable(False), duration)
    return batch.append_column(TASK_COMPLETED.schema.field("duration_derived"), derived)
