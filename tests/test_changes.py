"""PartitionChanges.gather: what one partition writer was told, gathered from typed messages."""

from __future__ import annotations

import pytest

from transforms.changes import DropRecords, PartitionChanges, RemoveFiles, RemoveKeys, SpilledRows


@pytest.mark.parametrize(("messages", "spilled", "drop", "keys", "files", "removes"), [
    ([], [], set(), set(), set(), False),
    ([SpilledRows("a.arrow", 0), SpilledRows("a.arrow", 2)], [("a.arrow", 0), ("a.arrow", 2)], set(), set(), set(), False),
    ([DropRecords((3, 1)), DropRecords((1, 7))], [], {1, 3, 7}, set(), set(), False),  # this run's losers only
    ([RemoveKeys(("k1",)), SpilledRows("b.arrow", 1)], [("b.arrow", 1)], set(), {"k1"}, set(), True),
    ([RemoveFiles(("in/a.jsonl",)), RemoveFiles(("in/a.jsonl", "in/b.jsonl"))], [], set(), set(),
     {"in/a.jsonl", "in/b.jsonl"}, True),
])
def test_gather(messages, spilled, drop, keys, files, removes) -> None:  # noqa: ANN001 - table-driven
    gathered = PartitionChanges.gather(messages)
    assert (gathered.spilled, gathered.drop, gathered.remove_keys, gathered.remove_files) == (spilled, drop, keys, files)
    assert gathered.removes_earlier_rows is removes


def test_an_unknown_message_is_an_error_not_ignored() -> None:
    with pytest.raises(TypeError, match="not a partition change"):
        PartitionChanges.gather([("rows", ("a.arrow", 0))])  # type: ignore[list-item]
