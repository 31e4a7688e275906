"""The server's options, and the workstream configuration read without Beam.

``schemas.config.load_config`` reads through Beam's FileSystems; the server reads a local file
itself and validates it with the same model, ``WorkstreamConfig``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from schemas.config import ConfigError, WorkstreamConfig

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_MAX_FILE_SECONDS",
    "ENVIRONMENT_VARIABLE",
    "Settings",
    "read_workstreams",
]

DEFAULT_MAX_FILE_BYTES = 64 << 20
DEFAULT_MAX_FILE_SECONDS = 300.0
ENVIRONMENT_VARIABLE = "THROUGHPUT_INTAKE_SETTINGS"  # how the serve command hands settings to its workers

_DIGEST = re.compile(r"[0-9a-f]{64}")
_UNSAFE_IN_PATH = ("/", "\\", "\x00")


@dataclass(frozen=True)
class Settings:
    """What one server process needs; travels to uvicorn's worker processes as JSON."""

    landing: str
    workstreams: str
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_file_seconds: float = DEFAULT_MAX_FILE_SECONDS
    access_log: str = "-"
    supervisor_pid: int | None = None

    def to_environment(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_environment(cls) -> Settings:
        text = os.environ.get(ENVIRONMENT_VARIABLE)
        if not text:
            raise RuntimeError(f"{ENVIRONMENT_VARIABLE} is not set: start the server with `throughput serve`")
        return cls(**json.loads(text))


def read_workstreams(path: str) -> WorkstreamConfig:
    """The configuration (JSON or YAML by extension), checked for what the server relies on.

    Beyond the model: every ``api_key_sha256`` entry is a SHA-256 hex digest, and every workstream
    id can be a path segment of the landing folder (``workstream_id=<id>``).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read workstream configuration {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text) if path.lower().endswith((".yaml", ".yml")) else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"workstream configuration {path} is not valid JSON/YAML: {exc}") from exc
    try:
        config = WorkstreamConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"workstream configuration {path} is invalid: {problems}") from exc
    for workstream in config.workstreams:
        if any(ch in workstream.id for ch in _UNSAFE_IN_PATH):
            raise ConfigError(f"workstream configuration {path}: workstream id {workstream.id!r} cannot name a "
                              "landing folder (it holds '/', '\\' or NUL)")
        for digest in workstream.api_key_sha256:
            if not _DIGEST.fullmatch(digest.lower()):
                raise ConfigError(f"workstream configuration {path}: workstream {workstream.id!r} has an "
                                  f"api_key_sha256 entry that is not a SHA-256 hex digest: {digest[:12]!r}...")
    return config
