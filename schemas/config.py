"""The workstream configuration (SPEC 7): which use cases and task definitions exist."""

from __future__ import annotations

import json
from functools import cached_property

import yaml
from apache_beam.io.filesystems import FileSystems
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["ConfigError", "UseCase", "Workstream", "WorkstreamConfig", "load_config"]


class ConfigError(Exception):
    """The configuration file cannot be read or is invalid: a run error (SPEC 3)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)


class UseCase(_Strict):
    id: str = Field(min_length=1)
    name: str | None = None
    task_definitions: tuple[str, ...] = ()

    @field_validator("task_definitions")
    @classmethod
    def _trimmed(cls, ids: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(i.strip() for i in ids)
        if any(not i for i in cleaned):
            raise ValueError("a task definition id is empty")
        return cleaned


class Workstream(_Strict):
    id: str = Field(min_length=1)
    name: str | None = None
    use_cases: tuple[UseCase, ...] = ()
    api_key_sha256: tuple[str, ...] = Field(
        (), description="SHA-256 hex digests of the API keys that may post to this workstream (throughput serve)")

    @model_validator(mode="after")
    def _unique_use_cases(self) -> Workstream:
        ids = [u.id for u in self.use_cases]
        if len(ids) != len(set(ids)):
            raise ValueError(f"workstream {self.id!r} lists a use case twice")
        return self


class WorkstreamConfig(_Strict):
    workstreams: tuple[Workstream, ...]

    @model_validator(mode="after")
    def _unique_workstreams(self) -> WorkstreamConfig:
        ids = [w.id for w in self.workstreams]
        if len(ids) != len(set(ids)):
            raise ValueError("a workstream id is listed twice")
        return self

    @cached_property
    def task_definitions(self) -> dict[str, dict[str, frozenset[str]]]:
        """workstream id -> use case id -> task definition ids: the lookup validation uses."""
        return {
            w.id: {u.id: frozenset(u.task_definitions) for u in w.use_cases}
            for w in self.workstreams
        }


def load_config(path: str) -> WorkstreamConfig:
    """Read a JSON or YAML (by extension) configuration through Beam's FileSystems."""
    try:
        with FileSystems.open(path) as handle:
            text = handle.read().decode("utf-8")
    except Exception as exc:  # any filesystem's error: the message names the file
        raise ConfigError(f"cannot read workstream configuration {path}: {exc}") from exc
    try:
        if path.lower().endswith((".yaml", ".yml")):
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"workstream configuration {path} is not valid JSON/YAML: {exc}") from exc
    try:
        return WorkstreamConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"workstream configuration {path} is invalid: {problems}") from exc
