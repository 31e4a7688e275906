"""Read task_completed files (JSON lines or CSV, optionally gzip) into chunks of raw records.

Reading only splits a file into records and remembers where each came from; parsing JSON and
checking rules happen in ``ValidateRecords``, so one bad line never costs its neighbours.
A file is read sequentially (line numbers need it), or a plain file in splits cut where a record
ends and whose first record number is known (``LineSplits``, ``CsvSplits``), and cut into chunks
of ``chunk_records`` records. The files and splits are spread over the workers before they are read.
CSV is parsed by Arrow block by block where that gives the csv module's rows (``_arrow_rows``),
else row by row by the csv module.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import itertools
import pickle
import re
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas.errors import ErrorCode
from schemas.rules import encoding_problem

__all__ = [
    "CsvSplits",
    "cell_count_problem",
    "even_cuts",
    "InputFile",
    "LineSplits",
    "RawChunk",
    "ReadTaskFiles",
    "detect_format",
    "path_workstream",
    "read_chunks",
]

Format = Literal["jsonl", "csv"]
_JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
_PATH_WORKSTREAM = re.compile(r"(?:^|/)workstream_id=([^/]+)/")
_BLOCK = 4 << 20
_HEADER_BLOCK = 64 << 10
_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_CSV_FIELD_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class InputFile:
    """One matched input file, or a split of one; ``index`` is the file's rank in the run's sorted
    file list (SPEC 2.4).

    A split is the bytes ``[start, end)`` of a plain file, cut where a record ends by
    ``LineSplits`` (JSON lines) or ``CsvSplits``; ``first_line`` is the number of its first line
    (JSON lines) or row (CSV, header = 1) in the file, so records keep the numbers (and order)
    they have when the file is read whole.
    """

    index: int
    path: str
    start: int = 0
    end: int | None = None
    first_line: int = 1

    def splits(self, ends: list[tuple[int, int]]) -> list[InputFile]:
        """This file cut at ``ends``: (byte offset just after a line end, lines before it)."""
        pieces, start, first = [], 0, 1
        for offset, lines in [*ends, (None, None)]:
            pieces.append(InputFile(self.index, self.path, start, offset, first))
            if offset is not None and lines is not None:
                start, first = offset, lines + 1
        return pieces


class LineSplits:
    """Finds where to cut a plain JSON-lines file into splits of about ``target`` bytes, from the
    blocks of one pass over it (the pass that takes its checksum): cuts fall just after a newline,
    and each remembers how many lines come before it."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.ends: list[tuple[int, int]] = []
        self._offset = 0  # bytes seen
        self._lines = 0  # newlines seen
        self._next = target  # the next cut is at the first newline at or after this offset

    def feed(self, block: bytes) -> None:
        base = self._offset
        counted = 0  # the newlines of block[:counted] are in self._lines: each byte is counted once
        while self._next < base + len(block):
            at = block.find(b"\n", max(self._next - base, 0))
            if at < 0:
                break
            self._lines += block.count(b"\n", counted, at + 1)
            counted = at + 1
            cut = base + counted
            self.ends.append((cut, self._lines))
            self._next = cut + self.target
        self._lines += block.count(b"\n", counted)
        self._offset += len(block)

    def finish(self) -> list[tuple[int, int]]:
        """The cuts, without one at the very end of the file."""
        return [(offset, lines) for offset, lines in self.ends if offset < self._offset]


def even_cuts(cuts: list[tuple[int, int]], size: int, target: int) -> list[tuple[int, int]]:
    """Of the candidate ``cuts`` of a ``size``-byte file, those that cut it into ceil(size / target)
    splits as even as the candidates allow (each the candidate nearest its ideal offset).

    Splits of one size keep the workers evenly loaded: the runner deals the splits out in turn,
    and fixed-size splits leave one short remainder per file, which went to the same worker for
    every file (measured: one of two workers idle for the last 4 s of a 1M-row CSV run).
    """
    parts = -(-size // max(target, 1))
    offsets = [offset for offset, _ in cuts]
    chosen: list[tuple[int, int]] = []
    for part in range(1, parts):
        at = bisect.bisect_left(offsets, part * size / parts)
        near = min((i for i in (at - 1, at) if 0 <= i < len(cuts)), default=None,
                   key=lambda i: abs(offsets[i] - part * size / parts))
        if near is not None and (not chosen or cuts[near][0] > chosen[-1][0]):
            chosen.append(cuts[near])
    return chosen


_QUOTE, _COMMA, _LF, _CR = b'"', b",", b"\n", b"\r"
_FIELD_STARTS = np.frombuffer(_COMMA + _LF + _QUOTE, np.uint8)  # what may precede an opening quote
_FIELD_ENDS = np.frombuffer(_COMMA + _LF + _CR + _QUOTE, np.uint8)  # what may follow a closing quote


class CsvSplits:
    """Finds where to cut a plain CSV file into splits of about ``target`` bytes, from the blocks
    of the pass that takes its checksum, so that the splits read the rows of reading it whole.

    A CSV row may span lines, so a cut falls only after a newline outside quotes: one with an even
    number of quote characters before it. That is where the csv module ends a row as long as the
    file's quoting is regular: every opening quote starts a field, every closing quote ends one (or
    is doubled), no carriage return stands alone, no NUL byte, no quote left open at the end, and
    no UTF-16 byte-order mark. Then no row can fail to parse, so none can shift the rows after it.
    A file that breaks any of these is not cut (``finish`` gives no cuts) and is read whole.
    Each cut remembers how many rows (the header included) come before it.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.ends: list[tuple[int, int]] = []
        self._offset = 0  # bytes seen
        self._rows = 0  # newlines outside quotes seen: rows ended
        self._quotes = 0  # quote characters seen
        self._next = target  # the next cut is at the first row end at or after this offset
        self._last = _LF[0]  # the byte before the next block: the file's start is a row's start
        self._head: bytes | None = b""  # the first bytes, until a byte-order mark can be told
        self._open_close = False  # the last block ended with a closing quote: the next byte must end a field
        self._open_cr = False  # the last block ended with a carriage return: the next byte must be a newline
        self._regular = True

    def feed(self, block: bytes) -> None:
        if self._head is not None:
            self._head += block
            if len(self._head) < len(_BOM):
                return
            block, self._head = self._head, None
            if block.startswith(_UTF16_BOMS):
                self._regular = False
            elif block.startswith(_BOM):  # the reader drops the mark: the first field starts after it
                self._offset = len(_BOM)
                block = block[len(_BOM):]
        if self._regular and block:
            self._scan(np.frombuffer(block, np.uint8))
        self._offset += len(block)

    def _scan(self, data: np.ndarray) -> None:
        quotes = self._check(data)
        if quotes is None:
            return
        newlines = np.flatnonzero(data == _LF[0])
        row_ends = newlines[(np.searchsorted(quotes, newlines) + self._quotes) % 2 == 0]
        while True:
            at = int(np.searchsorted(row_ends, self._next - self._offset))
            if at == len(row_ends):
                break
            cut = self._offset + int(row_ends[at]) + 1
            self.ends.append((cut, self._rows + at + 1))
            self._next = cut + self.target
        self._rows += len(row_ends)
        self._quotes += len(quotes)
        self._last = int(data[-1])

    def _check(self, data: np.ndarray) -> np.ndarray | None:
        """The positions of the quote characters of the next bytes, or None (and not regular)
        when they break the rules."""
        if (self._open_close and data[0] not in _FIELD_ENDS) or (self._open_cr and data[0] != _LF[0]):
            self._regular = False
            return None
        quotes = np.flatnonzero(data == _QUOTE[0])
        opening = quotes[self._quotes % 2::2]  # the quotes seen before decide which of these open a field
        closing = quotes[(self._quotes + 1) % 2::2]
        before = np.where(opening > 0, data[np.maximum(opening - 1, 0)], self._last)
        inner = closing[closing < len(data) - 1]
        returns = np.flatnonzero(data == _CR[0])
        if (not np.isin(before, _FIELD_STARTS).all() or not np.isin(data[inner + 1], _FIELD_ENDS).all()
                or (data[returns[returns < len(data) - 1] + 1] != _LF[0]).any() or not data.all()):
            self._regular = False
            return None
        self._open_close = bool(len(closing)) and closing[-1] == len(data) - 1
        self._open_cr = bool(len(returns)) and returns[-1] == len(data) - 1
        return quotes

    @classmethod
    def is_regular(cls, rows: bytes) -> bool:
        """Whether ``rows``, whole lines from a row's start, are regular as this class means it."""
        scan = cls(len(rows) + 1)
        quotes = scan._check(np.frombuffer(rows, np.uint8)) if rows else np.zeros(0)
        return quotes is not None and not len(quotes) % 2 and not scan._open_cr

    def finish(self) -> list[tuple[int, int]]:
        """The cuts, without one at the very end of the file; none for a file that is not regular."""
        if self._head is not None or not self._regular or self._quotes % 2 or self._open_cr:
            return []
        return [(offset, rows) for offset, rows in self.ends if offset < self._offset]


@dataclass
class RawChunk:
    """Consecutive raw records of one file, in file order.

    ``raws`` hold the record text as read: bytes for JSON lines, str for CSV rows (decoded
    with surrogate escapes, so invalid UTF-8 is still visible to validation). ``cells`` holds
    the parsed CSV cells. ``problems`` holds a (code, message) a record already failed with
    while being read (too large, malformed CSV, a file that is not UTF-8), else None.

    A CSV chunk read by Arrow (``_arrow_rows``) holds its cells as ``columns`` instead, one text
    column per header column and a row per record; ``cells`` is then None but for the rows that
    are not valid UTF-8, which Arrow cannot hold. ``row_cells`` gives a row's cells either way.
    """

    source_file: str
    file_index: int
    kind: Format
    path_workstream: str | None
    header: tuple[str, ...] | None = None
    lines: list[int] = field(default_factory=list)
    raws: list[bytes | str] = field(default_factory=list)
    cells: list[list[str] | None] = field(default_factory=list)
    problems: list[tuple[ErrorCode, str] | None] = field(default_factory=list)
    blank_lines: int = 0
    columns: pa.RecordBatch | None = None
    column_rows: np.ndarray | None = None  # each record's row of ``columns`` (-1: none); None: the same

    def __len__(self) -> int:
        return len(self.lines)

    def row_cells(self, position: int) -> list[str] | None:
        """The cells of a CSV record, None when it could not be read as cells."""
        return self.rows_cells([position])[0]

    def rows_cells(self, positions: list[int]) -> list[list[str] | None]:
        """The cells of CSV records, each None when it could not be read as cells; the rows of
        ``columns`` are taken at once (one by one cost 50 us a row)."""
        found = [self.cells[i] for i in positions]
        if self.columns is None:
            return found
        wanted = [at for at, i in enumerate(positions) if found[at] is None and self.problems[i] is None]
        if wanted:
            rows = [positions[at] for at in wanted]
            index = pa.array(rows if self.column_rows is None else self.column_rows[rows], pa.int64())
            taken = self.columns.take(index)
            for at, cells in zip(wanted, zip(*(column.to_pylist() for column in taken.columns))):
                found[at] = list(cells)
        return found

    def empty_like(self) -> RawChunk:
        return RawChunk(self.source_file, self.file_index, self.kind, self.path_workstream, self.header)


class RawChunkCoder(beam.coders.Coder):
    """A ``RawChunk`` as a pickle, its size estimated from its raw text without pickling it.

    Chunks stay inside their fused stage, but Beam samples the size of elements for its metrics
    by encoding them: about 20 of every worker's ~10 MB chunks were pickled only to be measured
    (1M CSV records: 2.2 s of one worker's 45 s).
    """

    def encode(self, value: RawChunk) -> bytes:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> RawChunk:
        chunk = pickle.loads(encoded)
        assert isinstance(chunk, RawChunk)
        return chunk

    def estimate_size(self, value: RawChunk) -> int:
        return sum(map(len, value.raws))

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self) -> Any:
        return RawChunk


beam.coders.registry.register_coder(RawChunk, RawChunkCoder)


class ReadTaskFiles(beam.PTransform):
    """PCollection[InputFile] -> PCollection[RawChunk], every record with its file and line.

    The files (and splits) are spread over the workers before reading, so each worker reads,
    validates and spills its own share; only file names cross that shuffle, never raw text.
    """

    def __init__(self, file_format: str = "auto", max_record_bytes: int = 1 << 20, chunk_records: int = 20_000) -> None:
        super().__init__()
        self._format = file_format
        self._max_record_bytes = max_record_bytes
        self._chunk_records = chunk_records

    def expand(self, files: beam.PCollection[InputFile]) -> beam.PCollection[RawChunk]:
        # Spread the files (and splits of files) over workers before reading: only their names
        # cross the shuffle, and each worker reads, validates and spills its own share.
        files = files | "SpreadFiles" >> beam.Reshuffle()
        chunks = files | "SplitIntoChunks" >> beam.FlatMap(
            read_chunks,
            file_format=self._format,
            max_record_bytes=self._max_record_bytes,
            chunk_records=self._chunk_records,
        ).with_output_types(RawChunk)
        return chunks


def detect_format(path: str, requested: str = "auto") -> Format:
    """The format of a file: as requested, else by extension (``.gz`` looked through)."""
    if requested in ("jsonl", "csv"):
        return requested  # type: ignore[return-value]
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(_JSONL_SUFFIXES):
        return "jsonl"
    raise ValueError(f"cannot tell the format of {path} from its extension; pass --format jsonl or csv")


def path_workstream(path: str) -> str | None:
    """The ``workstream_id=<id>`` segment of a file's path, if any (SPEC 2.3)."""
    found = _PATH_WORKSTREAM.findall(path.replace("\\", "/"))
    return unquote(found[-1]).strip() or None if found else None


def read_chunks(
    source: InputFile, file_format: str = "auto", max_record_bytes: int = 1 << 20, chunk_records: int = 20_000,
    arrow_csv: bool = True,
) -> Iterator[RawChunk]:
    """Read one file (or one split of it) through Beam's FileSystems and yield its records in chunks.

    CSV is read by Arrow block by block while the blocks are plain (``_arrow_rows``), else row by
    row with the csv module; ``arrow_csv=False`` reads it row by row throughout. Both give the
    same records.
    """
    kind = detect_format(source.path, file_format)
    chunk = RawChunk(source.path, source.index, kind, path_workstream(source.path))
    with FileSystems.open(source.path, compression_type=CompressionTypes.AUTO) as handle:
        header = _csv_header(handle) if kind == "csv" and source.start else None
        if source.start:
            handle.seek(source.start)
        size = None if source.end is None else source.end - source.start
        if kind == "csv" and arrow_csv:
            yield from _csv_chunks(_LineBlocks(handle, size, at_start=source.start == 0), chunk, header,
                                   source.first_line, max_record_bytes, chunk_records)
            return
        lines = _iter_lines(handle, size, at_start=source.start == 0)
        records = _jsonl_records(lines, max_record_bytes, source.first_line) if kind == "jsonl" \
            else _csv_records(lines, max_record_bytes, chunk, header, source.first_line)
        yield from _in_chunks(records, chunk, chunk_records)


def _in_chunks(records: Iterable[_Record], chunk: RawChunk, chunk_records: int) -> Iterator[RawChunk]:
    """The records in chunks of ``chunk_records``, the first being ``chunk``."""
    for line, raw, cells, problem in records:
        if raw is None:
            chunk.blank_lines += 1
            continue
        chunk.lines.append(line)
        chunk.raws.append(raw)
        chunk.cells.append(cells)
        chunk.problems.append(problem)
        if len(chunk) >= chunk_records:
            yield chunk
            chunk = chunk.empty_like()
    if len(chunk) or chunk.blank_lines:
        yield chunk


_Record = tuple[int, "bytes | str | None", "list[str] | None", "tuple[ErrorCode, str] | None"]


def _iter_lines(handle, size: int | None = None, at_start: bool = True,  # noqa: ANN001
                block_bytes: int = _BLOCK) -> Iterator[bytes]:
    """Lines of a binary stream (any FileSystems file object) with their line endings, read in
    large blocks; ``size`` bytes at most; a byte-order mark is dropped only at the file's start."""
    return _lines(_blocks(handle, size, at_start, block_bytes))


def _blocks(handle, size: int | None = None, at_start: bool = True,  # noqa: ANN001
            block_bytes: int = _BLOCK) -> Iterator[bytes]:
    """The bytes of a stream in blocks, ``size`` bytes at most, a byte-order mark dropped at the file's start."""
    left = size
    while left is None or left > 0:
        block = handle.read(block_bytes if left is None else min(block_bytes, left))
        if not block:
            return
        if left is not None:
            left -= len(block)
        if at_start:
            block = block[len(_BOM):] if block.startswith(_BOM) else block
            at_start = False
        yield block


def _lines(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of consecutive blocks, with their line endings.

    The blocks of a line not yet ended are kept apart and joined once it ends: adding each block
    to it copied the line again for every block, and a 300 MB line read in 64 KB blocks for a
    split's header did not end in ten minutes.
    """
    unended: list[bytes] = []  # the blocks of the line not yet ended
    for block in blocks:
        unended.append(block)
        if _LF not in block:
            continue
        pieces = b"".join(unended).split(_LF)
        unended = [pieces.pop()]
        for piece in pieces:
            yield piece + _LF
    rest = b"".join(unended)
    if rest:
        yield rest


def _jsonl_records(lines: Iterable[bytes], max_record_bytes: int, first_line: int = 1) -> Iterator[_Record]:
    for number, line in enumerate(lines, start=first_line):
        body = line.rstrip(b"\r\n")
        if not body.strip():
            yield number, None, None, None
        elif len(body) > max_record_bytes:
            yield number, body, None, (ErrorCode.RECORD_TOO_LARGE,
                                       f"line is {len(body)} bytes, over the {max_record_bytes}-byte limit")
        else:
            yield number, body, None, None


class _LineTap:
    """Feeds text lines to ``csv.reader`` and remembers them, to keep each row's raw text.

    Bytes are decoded a block at a time (with surrogate escapes, so invalid UTF-8 stays
    visible to validation), which is what keeps CSV reading cheap. A file that starts with a
    UTF-16 byte-order mark is decoded as UTF-16, so that its rows can be told apart and each
    rejected with the reason (``utf16_bom``).
    """

    def __init__(self, lines: Iterable[bytes], at_start: bool = True) -> None:
        self.taken: list[str] = []
        self.utf16_bom: bytes | None = None
        self._at_start = at_start  # only a file's first line can carry a byte-order mark
        self.lines = self._decoded(lines)

    def _decoded(self, lines: Iterable[bytes]) -> Iterator[str]:
        decoder: codecs.IncrementalDecoder | None = None
        pending = ""
        batch: list[bytes] = []
        first = True
        for line in lines:
            if decoder is None:
                decoder = self._decoder_for(line)
            batch.append(line)
            if len(batch) == 4096 or first:  # the first line alone: a header is read without the lines after it
                first = False
                pending = yield from self._emit(pending + decoder.decode(b"".join(batch)))
                batch = []
        if decoder is not None:
            last = yield from self._emit(pending + decoder.decode(b"".join(batch), final=True))
            if last:
                self.taken.append(last)
                yield last

    def _decoder_for(self, first_line: bytes) -> codecs.IncrementalDecoder:
        if self._at_start and first_line.startswith(_UTF16_BOMS):
            self.utf16_bom = first_line[:2]
            return codecs.getincrementaldecoder("utf-16")(errors="replace")
        return codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")

    def _emit(self, text: str) -> Generator[str, None, str]:
        """Yield the whole lines of ``text``; give back what follows the last line ending."""
        pieces = text.split("\n")
        rest = pieces.pop()
        for piece in pieces:
            line = piece + "\n"
            self.taken.append(line)
            yield line
        return rest

    def drain(self) -> str:
        text = "".join(self.taken)
        self.taken.clear()
        return text.rstrip("\r\n")


def _unusable(tap: _LineTap, header: list[str]) -> tuple[ErrorCode, str] | None:
    """Why no row of the file can be read because of its encoding, or None."""
    if tap.utf16_bom is not None:
        mark = tap.utf16_bom.hex(" ").upper()
        return ErrorCode.INVALID_ENCODING, f"the file is UTF-16 (byte-order mark {mark}); save it as UTF-8"
    for number, name in enumerate(header, start=1):
        if encoding_problem(name) is not None:
            return (ErrorCode.INVALID_ENCODING,
                    f"the header row is not valid UTF-8 (column {number}); save the file as UTF-8")
    return None


def _too_large_row(max_record_bytes: int) -> tuple[ErrorCode, str]:
    return ErrorCode.RECORD_TOO_LARGE, f"row is over the {max_record_bytes}-byte limit"


def cell_count_problem(cells: int, header: int) -> tuple[ErrorCode, str]:
    """The problem of a CSV row of another number of cells than its header's."""
    return ErrorCode.MALFORMED_CSV, f"row has {cells} cells but the header has {header}"


_Header = tuple[list[str], "tuple[ErrorCode, str] | None"]  # the header's names, and why it cannot be used


def _csv_header(handle) -> _Header:  # noqa: ANN001
    """The header of a CSV file read from its start, for a split that starts later: the split
    then reads its rows as reading the whole file would. Only regular files are split
    (``CsvSplits``), so the header row is valid CSV."""
    tap = _LineTap(_iter_lines(handle, block_bytes=_HEADER_BLOCK))  # not a whole block per split from a remote store
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    names = [name.strip() for name in next(csv.reader(tap.lines, strict=True), [])]
    unusable = _unusable(tap, names)
    return ([] if unusable else names), unusable


def _csv_records(lines: Iterable[bytes], max_record_bytes: int, chunk: RawChunk, known: _Header | None = None,
                 first_row: int = 1) -> Iterator[_Record]:
    """CSV rows numbered as a spreadsheet shows them (header = 1); the header goes into ``chunk``.

    A split after the file's first (``known`` header, ``first_row`` its first row's number) starts
    with the header read by ``_csv_header``. When the header row cannot be used (not valid CSV,
    not UTF-8, a UTF-16 file), every row of the file is still read and rejected with the reason,
    so that nothing is lost unseen.
    """
    # The csv module's field limit would abort a long quoted cell mid-way and turn the rest of
    # it into bogus rows; lift it (the setting is process-wide, so always to the same value)
    # and judge a row's size once it is whole.
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    tap = _LineTap(lines, at_start=known is None)
    reader = csv.reader(tap.lines, strict=True)
    header: list[str] | None = None
    unusable: tuple[ErrorCode, str] | None = None  # why the header cannot be used
    if known is not None:
        header, unusable = known
        chunk.header = tuple(header)
    row_number = first_row - 1
    while True:
        row_number += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raw = tap.drain()
            if header is None:  # no usable header: every row of the file is rejected with the reason
                header = []
                chunk.header = ()
                unusable = _unusable(tap, header)
                if unusable is not None:
                    yield row_number, raw, None, unusable
                    continue
                unusable = (ErrorCode.MALFORMED_CSV, "the file's header row is not valid CSV, so no row can be read")
                yield row_number, raw, None, (ErrorCode.MALFORMED_CSV, f"the header row is not valid CSV: {exc}")
                continue
            yield row_number, raw, None, (ErrorCode.MALFORMED_CSV, f"row is not valid CSV: {exc}")
            continue
        raw = tap.drain()
        if header is None:
            header = [name.strip() for name in cells]
            unusable = _unusable(tap, header)
            if unusable is not None:
                header = []
            chunk.header = tuple(header)
            continue
        if not cells:
            yield row_number, None, None, None
        elif len(raw) * 4 > max_record_bytes and len(raw.encode("utf-8", errors="surrogateescape")) > max_record_bytes:
            yield row_number, raw, None, _too_large_row(max_record_bytes)
        elif unusable is not None:
            yield row_number, raw, None, unusable
        elif len(cells) != len(header):
            yield row_number, raw, None, cell_count_problem(len(cells), len(header))
        else:
            yield row_number, raw, cells, None


# --- CSV read by Arrow -----------------------------------------------------------------------------


class _LineBlocks:
    """A binary stream (``size`` bytes at most) as blocks of whole lines, a given number at a time;
    a byte-order mark is dropped at the file's start."""

    def __init__(self, handle, size: int | None, at_start: bool) -> None:  # noqa: ANN001
        self._source = _blocks(handle, size, at_start)
        self._pending = b""
        self._ends = np.zeros(0, np.int64)  # where the newlines of ``_pending`` are

    def take(self, count: int) -> tuple[bytes, np.ndarray]:
        """The next ``count`` lines (fewer at the end; b"" when there are none), and where their
        newlines are: each byte is looked at once."""
        parts, ends, have = [], [], 0
        while True:
            if not self._pending:
                self._pending = next(self._source, b"")
                if not self._pending:
                    break
                self._ends = np.flatnonzero(np.frombuffer(self._pending, np.uint8) == _LF[0])
            if have + len(self._ends) >= count:
                cut = int(self._ends[count - have - 1]) + 1
                parts.append(self._pending[:cut])
                ends.append(self._ends[:count - have] + (sum(map(len, parts)) - cut))
                self._pending, self._ends = self._pending[cut:], self._ends[count - have:] - cut
                break
            ends.append(self._ends + sum(map(len, parts)))
            parts.append(self._pending)
            have += len(self._ends)
            self._pending = b""
        return b"".join(parts), np.concatenate(ends) if ends else np.zeros(0, np.int64)

    def lines(self, before: bytes = b"") -> Iterator[bytes]:
        """The lines of ``before`` and of the rest of the stream, for the row-by-row reader."""
        pending, self._pending = before + self._pending, b""
        return _lines(itertools.chain([pending], self._source))


def _csv_chunks(blocks: _LineBlocks, chunk: RawChunk, known: _Header | None, first_row: int,
                max_record_bytes: int, chunk_records: int) -> Iterator[RawChunk]:
    """A CSV file (or split) in chunks, read by Arrow block by block for as long as the blocks
    are plain; from the first block that is not, row by row (``_csv_records``) to the end.

    Going back to Arrow after such a block would need to know where the csv module's row ends,
    which only reading row by row tells: a quoted newline may carry a row into the next block.
    """
    start = b""
    if known is None:  # the split starts the file: its first line is the header
        start, _ = blocks.take(1)
        names = _plain_header(start)
        row = first_row + 1
    else:
        names = known[0] if known[1] is None else None
        row = first_row
    if names is None:
        yield from _in_chunks(_csv_records(blocks.lines(start), max_record_bytes, chunk, known, first_row),
                              chunk, chunk_records)
        return
    chunk.header = tuple(names)
    while True:
        block, ends = blocks.take(chunk_records)
        if not block:
            return
        read = _arrow_rows(block, ends, chunk.empty_like(), row, max_record_bytes)
        if read is None:
            rest = chunk.empty_like()
            yield from _in_chunks(_csv_records(blocks.lines(block), max_record_bytes, rest, (names, None), row),
                                  rest, chunk_records)
            return
        row += len(ends) + (not block.endswith(_LF))
        yield read


def _plain_header(line: bytes) -> list[str] | None:
    """The names of a header line that reads the same split at commas as read by the csv module
    (UTF-8, no quote, no stray carriage return or NUL), else None."""
    body = line[:-1] if line.endswith(_LF) else line
    body = body[:-1] if body.endswith(_CR) else body
    if not body or any(mark in body for mark in (_QUOTE, _CR, b"\x00")):
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return [name.strip() for name in text.split(",")]


def _arrow_rows(block: bytes, ends: np.ndarray, chunk: RawChunk, first_row: int,
                max_record_bytes: int) -> RawChunk | None:
    """The rows of ``block`` (whole lines, the first numbered ``first_row``, its newlines at
    ``ends``) in ``chunk`` as the csv module would read them, or None when Arrow cannot be shown
    to read them the same way.

    That needs the block to be regular CSV (``CsvSplits.is_regular``: where the csv module is
    strict, Arrow is lenient), and every row to be one line (rows read + rows refused = lines).
    Arrow refuses a row of another cell count: the csv module's row is then malformed. A line
    that is not UTF-8 is read by the csv module, so that validation names its cell. Reading 1M
    rows into the fast path's columns took one worker 6.5 s with the csv module, 2.6 s with Arrow.
    """
    width = len(chunk.header or ())
    if block.startswith(_BOM) or len(block) >= 2**31 - 1 or not CsvSplits.is_regular(block):
        return None  # Arrow would drop a byte-order mark that starts a block; its blocks are int32
    raws, not_utf8 = _decoded_lines(block, ends)
    table, refused = _arrow_table(_as_text(block, ends, raws, not_utf8), width)
    if table is None or table.num_rows + len(refused) != len(raws):
        return None  # a row spans lines, or Arrow failed
    lengths = np.diff(ends, prepend=-1) - 1  # each line's bytes, its line ending left out
    if _CR in block:
        lengths -= np.frombuffer(block, np.uint8)[np.maximum(ends - 1, 0)] == _CR[0]
    if len(raws) > len(ends):  # the last line has no newline (a regular block ends in no lone CR)
        lengths = np.append(lengths, len(block) - 1 - (ends[-1] if len(ends) else -1))
    blank = lengths == 0  # the csv module reads [] there
    in_table = np.ones(len(raws), dtype=bool)
    in_table[refused] = False
    records = np.flatnonzero(~blank)
    position = np.cumsum(~blank) - 1  # each line's record
    chunk.blank_lines = len(raws) - len(records)
    chunk.lines = (records + first_row).tolist()
    chunk.raws = [raws[i] for i in records.tolist()] if chunk.blank_lines else list[bytes | str](raws)
    chunk.cells = [None] * len(records)
    chunk.problems = [None] * len(records)
    special = {*refused, *not_utf8}
    for i in np.flatnonzero(lengths > max_record_bytes).tolist():  # bytes as read: as encoded again
        chunk.problems[position[i]] = _too_large_row(max_record_bytes)
        special.discard(i)
    for i in sorted(special):
        cells = next(csv.reader([raws[i]], strict=True), [])
        if len(cells) != width:
            chunk.problems[position[i]] = cell_count_problem(len(cells), width)
        else:
            chunk.cells[position[i]] = cells
    chunk.columns = pa.RecordBatch.from_arrays([column.combine_chunks() for column in table.columns],
                                               names=table.column_names)
    if chunk.blank_lines or not in_table.all() or not_utf8:  # record -> its row of the columns
        rows = np.where(in_table, np.cumsum(in_table) - 1, -1)
        rows[not_utf8] = -1  # its cells are the csv module's
        chunk.column_rows = rows[records]
    return chunk


def _as_text(block: bytes, ends: np.ndarray, raws: list[str], not_utf8: list[int]) -> bytes:
    """``block`` with the bytes that are not UTF-8 replaced (by "?"), for Arrow: bytes above
    ASCII are never a comma, quote or newline, so every line keeps its cells."""
    if not not_utf8:
        return block
    parts, start = [], 0
    for i in not_utf8:
        begin = int(ends[i - 1]) + 1 if i else 0
        end = int(ends[i]) if i < len(ends) else len(block)
        parts += [block[start:begin], raws[i].encode("utf-8", errors="replace")]
        start = end
    parts.append(block[start:])
    return b"".join(parts)


def _arrow_table(block: bytes, width: int) -> tuple[pa.Table | None, list[int]]:
    """Arrow's reading of ``block`` (UTF-8) in ``width`` text columns, and the indexes of the
    lines it refused for their number of cells."""
    refused: list[int] = []

    def refuse(row: Any) -> str:
        if row.number is None:
            return "error"
        refused.append(row.number - 1)
        return "skip"

    names = [f"c{i}" for i in range(width)]
    try:
        return pa_csv.read_csv(
            pa.py_buffer(block),
            read_options=pa_csv.ReadOptions(column_names=names, use_threads=False, block_size=max(len(block), 1)),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False,
                                              invalid_row_handler=refuse),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False, quoted_strings_can_be_null=False, check_utf8=False),
        ), refused
    except (pa.ArrowException, ValueError):
        return None, refused


def _decoded_lines(block: bytes, ends: np.ndarray) -> tuple[list[str], list[int]]:
    """The lines of ``block`` (newlines at ``ends``) as text without their line endings, decoded
    as ``_LineTap`` decodes them, and the indexes of those that are not UTF-8."""
    not_utf8: list[int] = []
    view, start, parts = memoryview(block), 0, []
    while start < len(block):
        try:
            parts.append(str(view[start:], "utf-8"))
            break
        except UnicodeDecodeError as exc:
            at = start + exc.start
            begin = block.rfind(_LF, start, at) + 1 or start
            end = block.find(_LF, at) + 1 or len(block)
            parts.append(str(view[start:begin], "utf-8"))
            parts.append(str(view[begin:end], "utf-8", errors="surrogateescape"))
            not_utf8.append(int(np.searchsorted(ends, at)))
            start = end
    text = "".join(parts) if len(parts) > 1 else parts[0] if parts else ""
    lines = text.split("\n")
    if block.endswith(_LF):
        lines.pop()
    if "\r" in text:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return lines, not_utf8
