"""The workstream configuration (SPEC 7): which use cases and task definitions exist."""

from __future__ import annotations

import difflib
import json
import typing
from collections.abc import Sequence
from functools import cached_property

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["ConfigError", "UseCase", "Workstream", "WorkstreamConfig", "load_config"]


class ConfigError(Exception):
    """The configuration file cannot be read or is invalid: a run error (SPEC 3)."""


class _Strict(BaseModel):
    # An unknown key is an error, not ignored: `use_case` for `use_cases` would otherwise
    # silently leave a workstream without use cases and reject all of its records.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


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
    # Imported here: the models above are used where Beam is not (the CLI's help, the intake server).
    from apache_beam.io.filesystems import FileSystems

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
        problems = "; ".join(_problem(err["loc"], err["type"], err["msg"]) for err in exc.errors())
        raise ConfigError(f"workstream configuration {path} is invalid: {problems}") from exc


def _problem(loc: Sequence[int | str], kind: str, message: str) -> str:
    """``workstreams.0.use_case: unknown key (did you mean use_cases?)``: where, then what."""
    where = ".".join(str(part) for part in loc) or "(top)"
    if kind != "extra_forbidden":
        return f"{where}: {message}"
    known = _keys_at(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(known)}"
    return f"{where}: unknown key ({hint})"


def _keys_at(loc: Sequence[int | str]) -> list[str]:
    """The keys the model at ``loc`` (a path into the configuration) accepts."""
    model: type[BaseModel] = WorkstreamConfig
    for part in loc:
        if isinstance(part, int):
            continue  # an index into a list of the model found at the previous key
        field = model.model_fields.get(part)
        if field is None:
            return []
        inner = [a for a in (field.annotation, *typing.get_args(field.annotation))
                 if isinstance(a, type) and issubclass(a, BaseModel)]
        if not inner:
            return []
        model = inner[0]
    return list(model.model_fields)
