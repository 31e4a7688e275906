"""Counts as data: every stage emits small dicts of counts that are summed into the manifest.

Counts travel through the pipeline rather than through runner metrics, so they are exact and
reach the driver the same way on every runner (as a JSON file in the run's staging folder).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apache_beam as beam

from transforms.files import write_json

__all__ = ["SumCounts", "WriteCounts", "merge_counts"]


def merge_counts(total: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """Add ``more`` into ``total``: numbers add, dicts merge recursively, lists concatenate."""
    for key, value in more.items():
        if isinstance(value, dict):
            merge_counts(total.setdefault(key, {}), value)
        elif isinstance(value, list):
            total.setdefault(key, []).extend(value)
        else:
            total[key] = total.get(key, 0) + value
    return total


class SumCounts(beam.CombineFn):
    """Sums count dicts (see ``merge_counts``) into one."""

    def create_accumulator(self) -> dict[str, Any]:
        return {}

    def add_input(self, accumulator: dict[str, Any], counts: dict[str, Any]) -> dict[str, Any]:
        return merge_counts(accumulator, counts)

    def merge_accumulators(self, accumulators: Iterable[dict[str, Any]]) -> dict[str, Any]:
        total: dict[str, Any] = {}
        for accumulator in accumulators:
            merge_counts(total, accumulator)
        return total

    def extract_output(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        return accumulator


class WriteCounts(beam.PTransform):
    """Sum every stage's counts and write them as one JSON file for the driver to read."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def expand(self, counts: beam.PCollection[dict[str, Any]]) -> beam.PCollection[None]:
        path = self._path
        return (
            counts
            | "Sum" >> beam.CombineGlobally(SumCounts())
            | "WriteJson" >> beam.Map(lambda total: write_json(path, total))
        )
