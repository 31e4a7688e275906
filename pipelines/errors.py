"""What can be wrong with a run itself (not with a record): each one ends the run with one line."""

from __future__ import annotations

__all__ = ["DamagedOutput", "OutputBusy", "RunError"]


class RunError(Exception):
    """What is wrong with the run itself: the run fails and commits nothing (exit 1)."""


class OutputBusy(RunError):
    """Another run, backfill or compaction holds the output."""


class DamagedOutput(RunError):
    """The output's own state (ledger, index, journal, a table file) is damaged: named, never guessed."""
