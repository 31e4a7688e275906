"""Counts as data: every stage emits a small typed ``StageReport`` that is summed for the driver.

A report has two parts kept apart: ``Counts``, what the manifest counts (records read,
written, rejected..., rows and files per table), and ``CommitFiles``, what the commit journal
needs (the files staged and retired, and the partitions each input file's rows went to).
Both are dataclasses: a misspelt count is an error, never a silent zero.

Counts travel through the pipeline rather than through runner metrics, so they are exact and
reach the driver the same way on every runner (as a JSON file in the run's staging folder).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

from transforms.files import write_json

__all__ = ["CommitFiles", "Counts", "StageReport", "SumCounts", "TableCounts", "WriteCounts"]


@dataclass
class TableCounts:
    """Rows and files a run added to one table, and rows it removed from earlier files."""

    rows: int = 0
    files: int = 0
    rows_removed: int = 0

    def __add__(self, other: TableCounts) -> TableCounts:
        return TableCounts(self.rows + other.rows, self.files + other.files, self.rows_removed + other.rows_removed)


@dataclass
class Counts:
    """What the manifest counts. ``read = written + rejected + ignored_duplicates + superseded``."""

    read: int = 0
    blank_lines: int = 0
    written: int = 0
    rejected: int = 0
    ignored_duplicates: int = 0
    superseded: int = 0
    replaced_existing: int = 0
    index_keys: int = 0
    rows: int = 0  # compaction: rows rewritten
    rejected_by_code: dict[str, int] = field(default_factory=dict)
    tables: dict[str, TableCounts] = field(default_factory=dict)

    def __add__(self, other: Counts) -> Counts:
        summed = Counts(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                           for f in dataclasses.fields(self) if f.type == "int"})
        summed.rejected_by_code = {code: self.rejected_by_code.get(code, 0) + other.rejected_by_code.get(code, 0)
                                   for code in {**self.rejected_by_code, **other.rejected_by_code}}
        summed.tables = {name: self.tables.get(name, TableCounts()) + other.tables.get(name, TableCounts())
                         for name in {**self.tables, **other.tables}}
        return summed

    @property
    def reconciles(self) -> bool:
        return self.read == self.written + self.rejected + self.ignored_duplicates + self.superseded


@dataclass
class CommitFiles:
    """What the journal needs: files staged (to move in), retired (to delete), and where inputs went."""

    staged: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    file_partitions: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def __add__(self, other: CommitFiles) -> CommitFiles:
        partitions = {path: list(found) for path, found in self.file_partitions.items()}
        for path, found in other.file_partitions.items():
            partitions.setdefault(path, []).extend(found)
        return CommitFiles(self.staged + other.staged, self.retired + other.retired, partitions)


@dataclass
class StageReport:
    """One stage's counts and files; reports add up."""

    counts: Counts = field(default_factory=Counts)
    files: CommitFiles = field(default_factory=CommitFiles)

    def __add__(self, other: StageReport) -> StageReport:
        return StageReport(self.counts + other.counts, self.files + other.files)

    @classmethod
    def of(cls, files: CommitFiles | None = None, tables: Mapping[str, TableCounts] | None = None,
           rejected_by_code: Mapping[str, int] | None = None, **counts: int) -> StageReport:
        """A report from keyword counts; an unknown name raises ``TypeError``."""
        return cls(Counts(**counts, rejected_by_code=dict(rejected_by_code or {}), tables=dict(tables or {})),
                   files or CommitFiles())

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StageReport:
        counts = dict(data.get("counts", {}))
        tables = {name: TableCounts(**value) for name, value in counts.pop("tables", {}).items()}
        files = dict(data.get("files", {}))
        partitions = {path: [(str(w), str(d)) for w, d in found] for path, found in files.pop("file_partitions", {}).items()}
        return cls(Counts(**counts, tables=tables), CommitFiles(**files, file_partitions=partitions))


def _report(value: StageReport | Mapping[str, Any]) -> StageReport:
    """A stage's report; a plain mapping of counts (e.g. ``{"read": 3}``) is read strictly."""
    if isinstance(value, StageReport):
        return value
    return StageReport.of(**value)


class SumCounts(beam.CombineFn):
    """Sums stage reports into one."""

    def create_accumulator(self) -> StageReport:
        return StageReport()

    def add_input(self, accumulator: StageReport, report: StageReport | Mapping[str, Any]) -> StageReport:
        return accumulator + _report(report)

    def merge_accumulators(self, accumulators: Iterable[StageReport]) -> StageReport:
        total = StageReport()
        for accumulator in accumulators:
            total = total + accumulator
        return total

    def extract_output(self, accumulator: StageReport) -> StageReport:
        return accumulator


class WriteCounts(beam.PTransform):
    """Sum every stage's report and write it as one JSON file for the driver to read."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def expand(self, reports: beam.PCollection[StageReport]) -> beam.PCollection[None]:
        path = self._path
        return (
            reports
            | "Sum" >> beam.CombineGlobally(SumCounts())
            | "WriteJson" >> beam.Map(lambda total: write_json(path, total.to_json()))
        )
