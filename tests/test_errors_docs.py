"""The generated docs are what their generators print now, so they can never go stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from schemas.errors import ErrorCode
from schemas.record import field_specs
from schemas.reference import reference
from schemas.tables import data_dictionary

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _printed(module: str) -> str:
    """What ``python -m <module>`` prints, exactly as ``> docs/...`` would write it."""
    done = subprocess.run([sys.executable, "-m", module], cwd=ROOT, capture_output=True, check=True)
    return done.stdout.decode("utf-8")


def test_reference_md_is_what_its_generator_prints() -> None:
    printed = _printed("schemas.reference")
    assert printed == reference()
    assert (DOCS / "REFERENCE.md").read_text(encoding="utf-8") == printed, \
        "docs/REFERENCE.md is stale: python -m schemas.reference > docs/REFERENCE.md"


def test_data_dictionary_md_is_what_its_generator_prints() -> None:
    printed = _printed("schemas.tables")
    assert printed == data_dictionary() + "\n"
    assert (DOCS / "DATA_DICTIONARY.md").read_text(encoding="utf-8") == printed, \
        "docs/DATA_DICTIONARY.md is stale: python -m schemas.tables > docs/DATA_DICTIONARY.md"


def test_reference_lists_every_field_and_every_code() -> None:
    text = reference()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")}
    for spec in field_specs():
        row = rows[f"`{spec.name}`"]
        assert spec.description in row and spec.json_type in row
        assert ("| yes |" if spec.required else "| no |") in row
    assert "| `1` |" in rows["`task_count`"] and "| `true` |" in rows["`replace_duplicate`"]
    assert "must not be before `task_started_at`" in rows["`task_completed_at`"]
    assert "10^12" in rows["`task_count`"]
    for code in ErrorCode:
        row = rows[f"`{code.value}`"]
        assert code.description in row and f"`{code.example}`" in row


def test_the_docs_stand_alone() -> None:
    """The repository does not ship the product contract, so the reference must not point at it."""
    assert "SPEC" not in reference()
