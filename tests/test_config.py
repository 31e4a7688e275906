"""The workstream configuration (SPEC 7): load_config and the lookup validation uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from schemas.config import ConfigError, WorkstreamConfig, load_config
from tests.conftest import CONFIG_DATA, TD, TD2, UC, WS

EXPECTED_LOOKUP = {
    WS: {UC: frozenset({TD, TD2})},
    "ws-audio": {"uc-audio": frozenset({"td-transcribe"})},
}


def test_load_json(config_file: Path) -> None:
    config = load_config(str(config_file))
    assert isinstance(config, WorkstreamConfig)
    assert [w.id for w in config.workstreams] == [WS, "ws-audio"]
    assert config.workstreams[0].name == "NER"
    assert config.task_definitions == EXPECTED_LOOKUP


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".YAML"])
def test_load_yaml(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"workstreams{suffix}"
    path.write_text(yaml.safe_dump(CONFIG_DATA), encoding="utf-8")
    assert load_config(str(path)).task_definitions == EXPECTED_LOOKUP


def test_load_yaml_written_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "ws.yaml"
    path.write_text(
        "workstreams:\n"
        "  - id: ws-ner\n"
        "    name: NER annotation\n"
        "    use_cases:\n"
        "      - id: uc-1\n"
        "        task_definitions: [td-1, td-2]\n"
        "      - id: uc-2\n",
        encoding="utf-8",
    )
    config = load_config(str(path))
    assert config.task_definitions == {"ws-ner": {"uc-1": frozenset({"td-1", "td-2"}), "uc-2": frozenset()}}


def test_json_with_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "ws.json"
    path.write_text(json.dumps({
        "workstreams": [{"id": " ws-a ", "use_cases": [{"id": " uc-a", "task_definitions": [" td-a "]}]}],
    }))
    assert load_config(str(path)).task_definitions == {"ws-a": {"uc-a": frozenset({"td-a"})}}


def test_api_key_digests_are_kept(tmp_path: Path) -> None:
    digest = "0" * 64
    path = tmp_path / "ws.json"
    path.write_text(json.dumps({"workstreams": [{"id": "ws-a", "api_key_sha256": [digest]}]}))
    assert load_config(str(path)).workstreams[0].api_key_sha256 == (digest,)


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    message = str(info.value)
    assert str(path) in message, f"the error must name the file: {message}"
    return message


def test_missing_file(tmp_path: Path) -> None:
    _error(tmp_path / "nope.json")


def test_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "ws.json"
    path.write_text('{"workstreams": [', encoding="utf-8")
    assert "JSON" in _error(path)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "ws.yaml"
    path.write_text("workstreams: [\n  - id: a\n", encoding="utf-8")
    assert "YAML" in _error(path)


def test_json_file_is_not_read_as_yaml(tmp_path: Path) -> None:
    path = tmp_path / "ws.json"
    path.write_text("workstreams:\n  - id: ws-a\n", encoding="utf-8")  # valid YAML, not JSON
    _error(path)


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "ws.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(("data", "expected"), [
    # a misspelt key would otherwise leave the workstream without use cases, silently
    ({"workstreams": [{"id": "ws", "use_case": [{"id": "uc"}]}]},
     "workstreams.0.use_case: unknown key (did you mean use_cases?)"),
    ({"workstreams": [{"id": "ws", "use_cases": [{"id": "uc", "task_definition": ["td"]}]}]},
     "workstreams.0.use_cases.0.task_definition: unknown key (did you mean task_definitions?)"),
    ({"version": 3, "workstreams": []}, "version: unknown key (known keys: workstreams)"),
    ({"workstreams": [{"id": "ws", "owner": "x"}]},
     "workstreams.0.owner: unknown key (known keys: id, name, use_cases, api_key_sha256)"),
])
def test_unknown_keys_are_errors_naming_the_key(tmp_path: Path, data: object, expected: str) -> None:
    assert expected in _error(_write(tmp_path, data))


def test_unknown_key_in_yaml_names_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "ws.yaml"
    path.write_text("workstreams:\n  - id: ws-a\n    use_case:\n      - id: uc-1\n", encoding="utf-8")
    message = _error(path)
    assert "workstreams.0.use_case: unknown key" in message


def test_missing_workstream_id(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, {"workstreams": [{"name": "no id", "use_cases": []}]}))
    assert "id" in message
    assert "workstreams.0" in message  # points at the entry


def test_missing_use_case_id(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, {"workstreams": [{"id": "ws", "use_cases": [{"task_definitions": ["td"]}]}]}))
    assert "use_cases" in message and "id" in message


def test_blank_workstream_id(tmp_path: Path) -> None:
    _error(_write(tmp_path, {"workstreams": [{"id": "   "}]}))


def test_duplicate_workstream_ids(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, {"workstreams": [{"id": "ws"}, {"id": "ws"}]}))
    assert "twice" in message


def test_duplicate_workstream_ids_after_trimming(tmp_path: Path) -> None:
    assert "twice" in _error(_write(tmp_path, {"workstreams": [{"id": "ws"}, {"id": " ws "}]}))


def test_duplicate_use_case_ids(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, {"workstreams": [{"id": "ws", "use_cases": [{"id": "uc"}, {"id": "uc"}]}]}))
    assert "twice" in message


def test_blank_task_definition(tmp_path: Path) -> None:
    _error(_write(tmp_path, {"workstreams": [{"id": "ws", "use_cases": [{"id": "uc", "task_definitions": ["td", " "]}]}]}))


@pytest.mark.parametrize("data", [{}, [], None, {"workstreams": "ws"}, {"workstreams": [{"id": 5}]}])
def test_wrong_shapes(tmp_path: Path, data: object) -> None:
    _error(_write(tmp_path, data))


def test_empty_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "ws.yml"
    path.write_text("", encoding="utf-8")
    _error(path)


def test_task_definitions_lookup(config: WorkstreamConfig) -> None:
    lookup = config.task_definitions
    assert lookup == EXPECTED_LOOKUP
    assert TD in lookup[WS][UC] and TD2 in lookup[WS][UC]
    assert "td-transcribe" not in lookup[WS][UC]
    assert "uc-audio" not in lookup[WS]
    assert isinstance(lookup[WS][UC], frozenset)
    assert config.task_definitions is lookup  # computed once


def test_workstream_without_use_cases(tmp_path: Path) -> None:
    config = load_config(str(_write(tmp_path, {"workstreams": [{"id": "ws-empty"}]})))
    assert config.task_definitions == {"ws-empty": {}}


def test_config_is_frozen(config: WorkstreamConfig) -> None:
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        config.workstreams = ()  # type: ignore[misc]
    assert len(config.workstreams) == 2
