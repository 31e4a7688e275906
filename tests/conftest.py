"""Shared fixtures: a workstream configuration and helpers to write input files and read tables back."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from schemas.config import WorkstreamConfig

# CI runs the same examples every time (a red build always reproduces); explore new ones with
# HYPOTHESIS_PROFILE=explore.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

WS = "ws-ner"
UC = "305ea07b-1d24-4f8f-8e1d-aae27cb07840"
TD = "4ed59e6b-bf4b-4f33-a1dc-4015d63eef59"
TD2 = "9b1c2d3e-0000-4f33-a1dc-4015d63eef60"

CONFIG_DATA = {
    "workstreams": [
        {"id": WS, "name": "NER", "use_cases": [{"id": UC, "task_definitions": [TD, TD2]}]},
        {"id": "ws-audio", "use_cases": [{"id": "uc-audio", "task_definitions": ["td-transcribe"]}]},
    ]
}


def record(**overrides: Any) -> dict[str, Any]:
    """A valid API body; ``None`` in overrides removes the field."""
    body: dict[str, Any] = {
        "workstream_id": WS,
        "worker_id": "worker@example.com",
        "use_case_id": UC,
        "task_definition_id": TD,
        "task_started_at": "2020-12-22T09:13:24.127Z",
        "task_completed_at": "2020-12-22T10:13:24.127Z",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def write_jsonl(path: Path, rows: list[Any], compress: bool = False) -> Path:
    """Rows are dicts (dumped as JSON) or str (written as the raw line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _logs_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's log files go to the test's own folder, never to the user's state folder."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture
def config() -> WorkstreamConfig:
    return WorkstreamConfig.model_validate(CONFIG_DATA)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "workstreams.json"
    path.write_text(json.dumps(CONFIG_DATA))
    return path
