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
files and shuffles only (file, batch) references.

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

    ``compression`` ("lz4" or "zstd") compresses the column buffers: fewer bytes through a
    remote shuffle (Dataflow Shuffle, Flink/Spark network) for some CPU; None for in-process runners.
    """

    def __init__(self, compression: str | None = None) -> None:
        self._compression = compression

    def encode(self, value: pa.Table) -> bytes:
        return _ipc_bytes(value, self._compression)

    def decode(self, encoded: bytes) -> pa.Table:
        return pa.ipc.open_stream(pa.py_buffer(encoded)).read_all()

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


def _benchmark(rows: int = 20_000, repeats: int = 20) -> None:  # pragma: no cover - a measuring tool
    """``python -m transforms.coders [JSONL]``: pickle vs Arrow IPC on one accepted batch of ``rows``."""
    import sys
    import timeit

    from schemas.config import load_config
    from transforms.read import InputFile, read_chunks
    from transforms.validate import validate_chunk

    data = sys.argv[1] if len(sys.argv) > 1 else "benchmarks/data/200000-jsonl/part-00000.jsonl"
    config = load_config(data.rsplit("/", 1)[0] + "/workstreams.json")
    chunk = next(read_chunks(InputFile(0, data), chunk_records=rows))
    batch = validate_chunk(chunk, config)[0]
    table = pa.Table.from_batches([batch])
    print(f"{batch.num_rows} rows, {batch.num_columns} columns, {batch.nbytes / 1e6:.1f} MB in Arrow memory")
    coders = [
        ("FastPrimitivesCoder (Beam's default for untyped)", beam.coders.FastPrimitivesCoder(), batch),
        ("PickleCoder", beam.coders.PickleCoder(), batch),
        ("ArrowRecordBatchCoder", ArrowRecordBatchCoder(), batch),
        ("ArrowRecordBatchCoder(lz4)", ArrowRecordBatchCoder("lz4"), batch),
        ("ArrowRecordBatchCoder(zstd)", ArrowRecordBatchCoder("zstd"), batch),
        ("ArrowTableCoder", ArrowTableCoder(), table),
    ]
    print(f"{'coder':50} {'bytes':>10} {'encode ms':>10} {'decode ms':>10} {'round trip ms':>14}")
    for name, coder, value in coders:
        encoded = coder.encode(value)
        assert coder.decode(encoded).equals(value)
        enc = min(timeit.repeat(lambda: coder.encode(value), number=1, repeat=repeats)) * 1e3  # noqa: B023
        dec = min(timeit.repeat(lambda: coder.decode(encoded), number=1, repeat=repeats)) * 1e3  # noqa: B023
        print(f"{name:50} {len(encoded):>10} {enc:>10.2f} {dec:>10.2f} {enc + dec:>14.2f}")


if __name__ == "__main__":  # pragma: no cover
    _benchmark()
