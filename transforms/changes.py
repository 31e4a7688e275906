"""What a partition writer is told: typed messages keyed by (workstream, completed date).

Three stages send a partition its changes, and one place gathers them:
- ``WriteTables``' spill step: ``SpilledRows``, a batch of this run's rows spilled to a file;
- ``DedupeByKey``: ``DropRecords``, this run's records that lost their key's chain, and
  ``RemoveKeys``, keys whose earlier rows a record of this run replaces;
- the run's plan: ``RemoveFiles``, reprocessed input files whose earlier rows leave.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["DropRecords", "Partition", "PartitionChange", "PartitionChanges", "RemoveFiles", "RemoveKeys", "SpilledRows"]

Partition = tuple[str, str]  # (workstream_id, completed_date as YYYY-MM-DD)


@dataclass(frozen=True)
class SpilledRows:
    """Batch ``batch`` of the Arrow IPC file ``path`` holds rows of this run for the partition."""

    path: str
    batch: int


@dataclass(frozen=True)
class DropRecords:
    """This run's records (by ``_seq``) that lost to another record of their key."""

    seqs: tuple[int, ...]


@dataclass(frozen=True)
class RemoveKeys:
    """Earlier rows of these dedupe keys leave the partition: a record of this run replaces them."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class RemoveFiles:
    """Earlier rows that came from these input files leave the partition (the files are reprocessed)."""

    files: tuple[str, ...]


PartitionChange = SpilledRows | DropRecords | RemoveKeys | RemoveFiles


@dataclass
class PartitionChanges:
    """Everything one partition was told, gathered."""

    spilled: list[tuple[str, int]] = field(default_factory=list)
    drop: set[int] = field(default_factory=set)
    remove_keys: set[str] = field(default_factory=set)
    remove_files: set[str] = field(default_factory=set)

    @classmethod
    def gather(cls, changes: Iterable[PartitionChange]) -> PartitionChanges:
        gathered = cls()
        for change in changes:
            if isinstance(change, SpilledRows):
                gathered.spilled.append((change.path, change.batch))
            elif isinstance(change, DropRecords):
                gathered.drop.update(change.seqs)
            elif isinstance(change, RemoveKeys):
                gathered.remove_keys.update(change.keys)
            elif isinstance(change, RemoveFiles):
                gathered.remove_files.update(change.files)
            else:
                raise TypeError(f"not a partition change: {change!r}")
        return gathered

    @property
    def removes_earlier_rows(self) -> bool:
        """Whether earlier files of the partition lose rows (else they stay as they are)."""
        return bool(self.remove_keys or self.remove_files)
