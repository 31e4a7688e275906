"""``GatherRows``: a DoFn that gathers a bundle's record batches into tables of many rows.

A step that pays per element it emits (a spill file written, an Arrow IPC message encoded
for a shuffle) does its work once per ``rows`` rows instead of once per chunk: 50 chunks of
20,000 records cost 50 times that, and the dedupe keys' 32 buckets 1,600 small messages.
What is gathered is emitted by the bundle's end at the latest, so nothing waits on another
bundle, and memory holds at most ``rows`` rows here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

__all__ = ["GatherRows"]


class GatherRows(beam.DoFn):
    """Record batches in -> what ``gathered`` makes of each ``rows`` rows gathered, and of the
    rest at the bundle's end. Subclasses say what a gathered table becomes (``gathered``), and
    may shape each batch first (``take``)."""

    def __init__(self, rows: int) -> None:
        self._limit = rows
        self._pending: list[pa.RecordBatch | pa.Table] = []
        self._rows = 0

    def take(self, batch: pa.RecordBatch) -> pa.RecordBatch | pa.Table:
        """What of a batch is gathered (all of it, unless a subclass narrows it)."""
        return batch

    def gathered(self, table: pa.Table) -> Iterator[Any]:
        """The elements a gathered table becomes."""
        raise NotImplementedError

    def start_bundle(self) -> None:
        self._pending, self._rows = [], 0

    def process(self, batch: pa.RecordBatch) -> Iterator[Any]:
        part = self.take(batch)
        if part.num_rows:
            self._pending.append(part)
            self._rows += part.num_rows
        if self._rows >= self._limit:
            yield from self._flush()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for element in self._flush():
            yield WindowedValue(element, MIN_TIMESTAMP, (GlobalWindow(),))

    def _flush(self) -> Iterator[Any]:
        if not self._pending:
            return
        pending, self._pending, self._rows = self._pending, [], 0
        parts = [pa.Table.from_batches([p]) if isinstance(p, pa.RecordBatch) else p for p in pending]
        yield from self.gathered(pa.concat_tables(parts))
