"""Pickle against Arrow IPC on one accepted batch: why ``transforms/coders.py`` exists.

    python -m benchmarks.coders [benchmarks/data/200000-jsonl/part-00000.jsonl]
"""

from __future__ import annotations

import sys
import timeit

import apache_beam as beam
import pyarrow as pa

from schemas.config import load_config
from transforms.coders import ArrowRecordBatchCoder, ArrowTableCoder
from transforms.read import InputFile, read_chunks
from transforms.validate import validate_chunk


def main(rows: int = 20_000, repeats: int = 20) -> None:
    """``python -m benchmarks.coders [JSONL]``: pickle vs Arrow IPC on one accepted batch of ``rows``."""
    data = sys.argv[1] if len(sys.argv) > 1 else "benchmarks/data/200000-jsonl/part-00000.jsonl"
    config = load_config(data.rsplit("/", 1)[0] + "/workstreams.json")
    chunk = next(read_chunks(InputFile(0, data), chunk_records=rows))
    batch = validate_chunk(chunk, config)[0]
    table = pa.Table.from_batches([batch])
    print(f"{batch.num_rows} rows, {batch.num_columns} columns, {batch.nbytes / 1e6:.1f} MB in Arrow memory")
    coders = [
        ("FastPrimitivesCoder (Beam's default for untyped)", beam.coders.FastPrimitivesCoder(), batch),
        ("PickleCoder", beam.coders.PickleCoder(), batch),
        ("ArrowRecordBatchCoder(None)", ArrowRecordBatchCoder(None), batch),
        ("ArrowRecordBatchCoder(lz4)", ArrowRecordBatchCoder("lz4"), batch),
        ("ArrowRecordBatchCoder (zstd, the default)", ArrowRecordBatchCoder(), batch),
        ("ArrowTableCoder (zstd, the default)", ArrowTableCoder(), table),
    ]
    print(f"{'coder':50} {'bytes':>10} {'encode ms':>10} {'decode ms':>10} {'round trip ms':>14}")
    for name, coder, value in coders:
        encoded = coder.encode(value)
        assert coder.decode(encoded).equals(value)
        enc = min(timeit.repeat(lambda: coder.encode(value), number=1, repeat=repeats)) * 1e3  # noqa: B023
        dec = min(timeit.repeat(lambda: coder.decode(encoded), number=1, repeat=repeats)) * 1e3  # noqa: B023
        print(f"{name:50} {len(encoded):>10} {enc:>10.2f} {dec:>10.2f} {enc + dec:>14.2f}")


if __name__ == "__main__":
    main()
