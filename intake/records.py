"""API bodies to landing lines, or to the rejection the pipeline would give them.

Validation is the pipeline's own: ``schemas.record.validate_record`` with a ``RecordContext``
whose path workstream is the one of the URL, the code the batch path runs. The rejection is
built as the batch path builds a row of its rejects table: the first error's code and field,
and every error described, joined by ``"; "``.

The landed line is the body as sent, plus the two envelope fields the API knows from the
request (SPEC 1): ``workstream_id`` (from the path) and ``received_at`` (the server's clock).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from schemas.config import WorkstreamConfig
from schemas.fast_validate import Certifier
from schemas.record import FIELD_ORDER, RecordContext, parse_json_record, validate_record
from schemas.rules import is_blank

__all__ = [
    "BODY_FIELDS",
    "ENVELOPE_FIELDS",
    "MAX_BATCH_RECORDS",
    "MAX_RECORD_BYTES",
    "BatchTooLarge",
    "BodyChecker",
    "Rejection",
    "received_now",
    "rejection_list",
]

ENVELOPE_FIELDS = ("workstream_id", "received_at")
BODY_FIELDS = tuple(name for name in FIELD_ORDER if name not in ENVELOPE_FIELDS)
MAX_RECORD_BYTES = 1 << 20  # SPEC 2.1 and 9: a body, and a landed line, of at most 1 MiB
MAX_BATCH_RECORDS = 10_000  # SPEC 9


@dataclass(frozen=True)
class Rejection:
    """Why a body does not land: a SPEC 3 code, the field's API name (or None) and a message."""

    code: str
    field: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"error_code": self.code, "error_field": self.field, "error_message": self.message}


class BatchTooLarge(ValueError):
    """A batch holds more bodies than ``MAX_BATCH_RECORDS``."""


def received_now() -> str:
    """The server's clock as the landed ``received_at``: UTC, ISO 8601, with a ``Z``."""
    return f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%S.%f}Z"


class BodyChecker:
    """Validates bodies against one configuration and turns the accepted ones into landing lines.

    A batch goes through the pipeline's own fast path first (``schemas.fast_validate``, proved
    to accept exactly what the model accepts): plain bodies are certified in bulk, and only the
    others go through the model one by one, which also writes their rejection.
    """

    def __init__(self, config: WorkstreamConfig) -> None:
        self._contexts = {w.id: RecordContext(config=config, path_workstream=w.id) for w in config.workstreams}
        self._certifier = Certifier(config)

    def line(self, raw: bytes, workstream: str, received_at: str) -> bytes | Rejection:
        """One body's bytes: its landing line (no newline), or why it is rejected."""
        data, problem = parse_json_record(raw, "body")  # the batch path's own parser
        if problem is not None:
            return Rejection(str(problem.code), problem.field, problem.describe())
        return self.record(data, workstream, received_at)

    def record(self, data: Any, workstream: str, received_at: str) -> bytes | Rejection:
        """One parsed body: its landing line (no newline), or why it is rejected."""
        context = self._contexts[workstream]
        problems: list[tuple[str, str | None, str]] = []
        if isinstance(data, dict):
            own = data.get("workstream_id")
            if not is_blank(own):
                if not isinstance(own, str):
                    problems.append(("invalid_type", "workstream_id",
                                     f"workstream_id: must be a string, got {type(own).__name__}"))
                elif own.strip() != workstream:
                    problems.append(("invalid_value", "workstream_id",
                                     f"workstream_id: is {own.strip()!r} but the URL names workstream {workstream!r}"))
            data["workstream_id"] = workstream
            data["received_at"] = received_at
        verdict = validate_record(data, context)
        problems.extend((str(e.code), e.field, e.describe()) for e in verdict.errors)
        if problems:
            code, field, _ = problems[0]
            return Rejection(code, field, "; ".join(message for _, _, message in problems))
        line = orjson.dumps(data)
        if len(line) > MAX_RECORD_BYTES:
            return Rejection("record_too_large", None,
                             f"the landing line would be {len(line)} bytes, over the {MAX_RECORD_BYTES}-byte limit")
        return line

    def batch(self, raw: bytes, workstream: str, received_at: str, json_lines: bool | None = None,
              ) -> tuple[list[bytes], list[tuple[int, Rejection]]] | Rejection:
        """A batch body: (landing lines, [(index, rejection)]), or why the whole batch is rejected.

        A JSON array, or JSON lines (``json_lines``; when None, a body whose first character is
        ``[`` is an array). Indexes count bodies from 0: array elements, or non-blank lines.
        Raises ``BatchTooLarge`` past ``MAX_BATCH_RECORDS`` bodies.
        """
        if json_lines is None:
            json_lines = not raw.lstrip().startswith(b"[")
        if json_lines:
            bodies = [line.rstrip(b"\r") for line in raw.split(b"\n")]
            bodies = [body for body in bodies if body.strip()]
            _check_count(len(bodies))
            parsed: list[Any] = []
            for body in bodies:
                if len(body) > MAX_RECORD_BYTES:
                    parsed.append(Rejection(
                        "record_too_large", None, f"line is {len(body)} bytes, over the {MAX_RECORD_BYTES}-byte limit"))
                    continue
                data, problem = parse_json_record(body, "body")
                parsed.append(Rejection(str(problem.code), problem.field, problem.describe()) if problem else data)
            return self._many(parsed, workstream, received_at)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejection("invalid_encoding", None, f"batch body is not valid UTF-8 (byte {exc.start})")
        try:
            items = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return Rejection("malformed_json", None, f"batch body is not a valid JSON array: {exc}")
        if not isinstance(items, list):
            return Rejection("not_an_object", None, "batch body must be a JSON array of objects or JSON lines")
        _check_count(len(items))
        return self._many(items, workstream, received_at)

    def _many(self, items: list[Any], workstream: str, received_at: str) -> tuple[list[bytes], list[tuple[int, Rejection]]]:
        """Parsed bodies (or the rejection of a body that could not be parsed), in order."""
        plain = self._certified(items, workstream, received_at)
        accepted: list[bytes] = []
        rejected: list[tuple[int, Rejection]] = []
        for index, item in enumerate(items):
            if isinstance(item, Rejection):
                outcome: bytes | Rejection = item
            elif index in plain:
                line = orjson.dumps(item)
                outcome = line if len(line) <= MAX_RECORD_BYTES else self.record(item, workstream, received_at)
            else:
                outcome = self.record(item, workstream, received_at)
            _sort(outcome, index, accepted, rejected)
        return accepted, rejected

    def _certified(self, items: list[Any], workstream: str, received_at: str) -> set[int]:
        """Indexes of the bodies the fast path certifies (their envelope fields set in place)."""
        candidates = [i for i, item in enumerate(items) if type(item) is dict
                      and item.get("workstream_id") in (None, workstream) and "received_at" not in item]
        if not candidates:
            return set()
        for i in candidates:
            items[i]["workstream_id"] = workstream
            items[i]["received_at"] = received_at
        values = {spec.name: [items[i].get(spec.name) for i in candidates] for spec in self._certifier.fields}
        try:
            _, ok = self._certifier.certify(values, True, workstream)
        except Exception:  # noqa: BLE001 - the fast path never decides: the model then takes every body
            return set()
        return {i for i, fine in zip(candidates, ok.tolist()) if fine}


def _check_count(count: int) -> None:
    if count > MAX_BATCH_RECORDS:
        raise BatchTooLarge(f"a batch holds at most {MAX_BATCH_RECORDS} bodies, this one {count}")


def _sort(outcome: bytes | Rejection, index: int, accepted: list[bytes], rejected: list[tuple[int, Rejection]]) -> None:
    if isinstance(outcome, Rejection):
        rejected.append((index, outcome))
    else:
        accepted.append(outcome)


def rejection_list(rejected: Sequence[tuple[int, Rejection]]) -> list[dict[str, Any]]:
    """The ``rejected`` list of a batch answer."""
    return [{"index": index, **rejection.as_dict()} for index, rejection in rejected]
