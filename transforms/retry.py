"""Stored rejects as raw records again, with their original file and line, for ``rejects retry``.

A reject keeps its raw text, file and line, so after the configuration is fixed it can be
validated again exactly as it was first read: JSON lines as their bytes, CSV rows parsed with
their file's header (read again from the file, which must still be there).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping

import pyarrow as pa

from schemas.errors import ErrorCode
from transforms.read import InputFile, RawChunk, cell_count_problem, detect_format, path_workstream, read_chunks

__all__ = ["csv_header", "rejected_chunks"]


def csv_header(path: str) -> tuple[str, ...] | None:
    """The header row of a CSV input file, read again; None when the file is gone or unreadable."""
    try:
        chunk = next(read_chunks(InputFile(0, path), "csv", chunk_records=1), None)
    except Exception:  # noqa: BLE001 - a file that is gone or damaged: its rows cannot be retried
        return None
    return chunk.header if chunk is not None and chunk.header else None


def rejected_chunks(rejects: pa.Table, headers: Mapping[str, tuple[str, ...] | None],
                    max_record_bytes: int = 1 << 20) -> tuple[list[RawChunk], list[tuple[str, int]]]:
    """One chunk per source file (in path order, rows in line order), and the rejects that cannot
    be retried (a CSV row whose file, and so whose header, is gone)."""
    chunks: list[RawChunk] = []
    left: list[tuple[str, int]] = []
    rows = sorted(rejects.select(["source_file", "source_line", "raw"]).to_pylist(),
                  key=lambda r: (r["source_file"], r["source_line"]))
    by_file: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_file.setdefault(str(row["source_file"]), []).append(row)
    for index, (path, found) in enumerate(sorted(by_file.items())):
        try:
            kind = detect_format(path)
        except ValueError:
            kind = "jsonl"
        header = headers.get(path)
        if kind == "csv" and header is None:
            left += [(path, int(str(r["source_line"]))) for r in found]
            continue
        chunk = RawChunk(path, index, kind, path_workstream(path), header)
        for row in found:
            raw = str(row["raw"])
            chunk.lines.append(int(str(row["source_line"])))
            size = len(raw.encode("utf-8", errors="surrogateescape"))
            problem = (ErrorCode.RECORD_TOO_LARGE, f"record is {size} bytes, over the {max_record_bytes}-byte limit") \
                if size > max_record_bytes else None
            if kind == "jsonl":
                chunk.raws.append(raw.encode("utf-8", errors="surrogateescape"))
                chunk.cells.append(None)
            else:
                try:
                    cells = next(csv.reader(io.StringIO(raw), strict=True), [])
                except csv.Error:
                    cells = []
                chunk.raws.append(raw)
                fits = header is not None and len(cells) == len(header)
                chunk.cells.append(cells if fits else None)
                if problem is None and not fits:
                    problem = cell_count_problem(len(cells), len(header or ()))
            chunk.problems.append(problem)
        chunks.append(chunk)
    return chunks, left
