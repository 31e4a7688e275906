"""Beam coders for Arrow data: record batches and tables cross a shuffle as Arrow IPC streams.

Without a coder of its own, an element whose type Beam does not know is pickled
(``FastPrimitivesCoder`` falls back to ``PickleCoder``). These coders write the Arrow IPC
stream format instead: a schema message and the column buffers as they are, which any Arrow
implementation reads back (so a Java/Go runner-side component could too) and which decodes
without copying the column data.

Where they are used: ``transforms/dedupe.py`` and ``transforms/write.py`` call
``register_arrow_coders()`` at import and declare the element types of their shuffles
(``tuple[int, pa.Table]`` for the dedupe key tables, ``tuple[str, pa.Table]`` for rejects), so
Beam builds ``KV<VarInt | StrUtf8, ArrowTableCoder>``: keys with deterministic coders, values
as IPC. The rows themselves do not cross a shuffle: ``WriteTables`` spills them to Arrow IPC
files and shuffles only (file, batch) references. The column buffers are zstd-compressed.

Values need not be deterministic (Beam only requires it of grouping keys), and Arrow IPC is
not byte-for-byte canonical (chunking, buffer padding), so ``is_deterministic`` is False.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
import pyarrow as pa

__all__ = ["ArrowRecordBatchCoder", "ArrowTableCoder", "register_arrow_coders"]


def _ipc_bytes(value: pa.RecordBatch | pa.Table, compression: str | None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression) if compression else None
    with pa.ipc.new_stream(sink, value.schema, options=options) as writer:
        if isinstance(value, pa.Table):
            writer.write_table(value)
        else:
            writer.write_batch(value)
    return sink.getvalue().to_pybytes()


class ArrowTableCoder(beam.coders.Coder):
    """``pa.Table`` <-> Arrow IPC stream bytes (chunks kept as record batches).

    ``compression`` ("zstd", the default, "lz4" or None) compresses the column buffers. An
    in-process runner holds a shuffle in memory, in its driver, while it groups more than
    once: with lz4 a 5M record run peaked at 1.20 GB instead of 1.56 GB (one worker, in the same
    wall time). zstd halves the dedupe keys again against lz4 (17 against 36 bytes a keyed
    record, for 12 ms more to encode and 7 ms more to decode per 122,000 of them): 5M
    records on two workers peaked at 1.79-1.85 GB instead of 2.16-2.22 GB, the driver at
    0.53-0.62 GB instead of 0.81-0.94 GB, in the same wall time. A remote shuffle (Dataflow,
    Flink, Spark) moves fewer bytes.
    """

    def __init__(self, compression: str | None = "zstd") -> None:
        self._compression = compression

    def encode(self, value: pa.Table) -> bytes:
        return _ipc_bytes(value, self._compression)

    def decode(self, encoded: bytes) -> pa.Table:
        return pa.ipc.open_stream(pa.py_buffer(encoded)).read_all()

    def estimate_size(self, value: pa.Table) -> int:
        """The in-memory size, not the encoded one: Beam samples sizes for its metrics only, and
        encoding a sampled batch cost 0.3 s per worker at 1M records."""
        return value.nbytes

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self) -> Any:
        return pa.Table

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._compression == other._compression  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self._compression))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(compression={self._compression!r})"


class ArrowRecordBatchCoder(ArrowTableCoder):
    """``pa.RecordBatch`` <-> Arrow IPC stream bytes (one batch per stream)."""

    def encode(self, value: pa.RecordBatch) -> bytes:  # type: ignore[override]
        return _ipc_bytes(value, self._compression)

    def decode(self, encoded: bytes) -> pa.RecordBatch:  # type: ignore[override]
        return pa.ipc.open_stream(pa.py_buffer(encoded)).read_next_batch()  # encode writes exactly one

    def to_type_hint(self) -> Any:
        return pa.RecordBatch


def register_arrow_coders() -> None:
    """Make Beam use the Arrow coders for every PCollection typed ``pa.RecordBatch`` / ``pa.Table``."""
    beam.coders.registry.register_coder(pa.Table, ArrowTableCoder)
    beam.coders.registry.register_coder(pa.RecordBatch, ArrowRecordBatchCoder)
