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
    "Bodies",
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
        return self.record(data, workstream, received_at, raw)

    def record(self, data: Any, workstream: str, received_at: str, raw: bytes | None = None) -> bytes | Rejection:
        """One parsed body (and its bytes, when known): its landing line (no newline), or why it is rejected."""
        context = self._contexts[workstream]
        problems: list[tuple[str, str | None, str]] = []
        spliceable = raw is not None and _without_envelope(data)
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
        line = _spliced(raw, _envelope(workstream, received_at)) if spliceable and raw else orjson.dumps(data)
        return _within_limit(line)

    def batch(self, raw: bytes, workstream: str, received_at: str, json_lines: bool | None = None,
              ) -> tuple[list[bytes], list[tuple[int, Rejection]]] | Rejection:
        """A batch body: (landing lines, [(index, rejection)]), or why the whole batch is rejected.

        ``bodies`` then ``check`` over all of them; the server checks a large batch in steps.
        """
        bodies = self.bodies(raw, json_lines)
        if isinstance(bodies, Rejection):
            return bodies
        return self.check(bodies, 0, len(bodies), workstream, received_at)

    def bodies(self, raw: bytes, json_lines: bool | None = None) -> Bodies | Rejection:
        """A batch body cut into its bodies, or why the whole batch is rejected.

        A JSON array, or JSON lines (``json_lines``; when None, a body whose first character is
        ``[`` is an array). Indexes count bodies from 0: array elements, or non-blank lines.
        Raises ``BatchTooLarge`` past ``MAX_BATCH_RECORDS`` bodies.
        """
        if json_lines is None:
            json_lines = not raw.lstrip().startswith(b"[")
        if json_lines:
            lines = [line.rstrip(b"\r") for line in raw.split(b"\n")]
            lines = [line for line in lines if line.strip()]
            _check_count(len(lines))
            return Bodies(lines=lines)
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
        return Bodies(items=items)

    def check(self, bodies: Bodies, start: int, stop: int, workstream: str, received_at: str,
              ) -> tuple[list[bytes], list[tuple[int, Rejection]]]:
        """Bodies ``start`` to ``stop``: their landing lines, and the rejected ones by batch index."""
        raws: list[bytes | None]
        if bodies.lines is not None:
            lines = bodies.lines[start:stop]
            items = [_parsed(line) for line in lines]
            raws = list(lines)
        else:
            items = list((bodies.items or [])[start:stop])
            raws = [None] * len(items)
        plain = self._certified(items, workstream)
        envelope = _envelope(workstream, received_at)
        accepted: list[bytes] = []
        rejected: list[tuple[int, Rejection]] = []
        for index, (item, raw) in enumerate(zip(items, raws)):
            outcome: bytes | Rejection
            if isinstance(item, Rejection):
                outcome = item
            elif index in plain:
                outcome = _within_limit(_spliced(raw, envelope) if raw is not None and _without_envelope(item)
                                        else orjson.dumps({**item, "workstream_id": workstream, "received_at": received_at}))
            else:
                outcome = self.record(item, workstream, received_at, raw)
            if isinstance(outcome, Rejection):
                rejected.append((start + index, outcome))
            else:
                accepted.append(outcome)
        return accepted, rejected

    def _certified(self, items: list[Any], workstream: str) -> set[int]:
        """Indexes of the bodies the fast path certifies (objects naming no other workstream).

        ``received_at`` is the server's own clock (always a valid time, and no rule of the model
        relates it to another field), so it is left out of the certification; a body sending
        its own goes through the model, which reports nothing about it and lands the server's.
        """
        candidates = [i for i, item in enumerate(items) if type(item) is dict
                      and item.get("workstream_id") in (None, workstream) and "received_at" not in item]
        if not candidates:
            return set()
        values = {spec.name: [items[i].get(spec.name) for i in candidates] for spec in self._certifier.fields}
        try:
            _, ok = self._certifier.certify(values, True, workstream)
        except Exception:  # noqa: BLE001 - the fast path never decides: the model then takes every body
            return set()
        return {i for i, fine in zip(candidates, ok.tolist()) if fine}


@dataclass(frozen=True)
class Bodies:
    """The bodies of a batch: each line's bytes (JSON lines), or the parsed elements (an array)."""

    lines: list[bytes] | None = None
    items: list[Any] | None = None

    def __len__(self) -> int:
        return len(self.lines if self.lines is not None else self.items or [])


def _parsed(line: bytes) -> Any:
    """One line of a JSON-lines batch parsed, or its ``Rejection``."""
    if len(line) > MAX_RECORD_BYTES:
        return Rejection("record_too_large", None, f"line is {len(line)} bytes, over the {MAX_RECORD_BYTES}-byte limit")
    data, problem = parse_json_record(line, "body")
    return Rejection(str(problem.code), problem.field, problem.describe()) if problem else data


def _without_envelope(data: Any) -> bool:
    """A non-empty object naming neither envelope field: its line is the body with both appended."""
    return type(data) is dict and bool(data) and "workstream_id" not in data and "received_at" not in data


def _envelope(workstream: str, received_at: str) -> bytes:
    return b',"workstream_id":' + orjson.dumps(workstream) + b',"received_at":' + orjson.dumps(received_at) + b"}"


def _spliced(raw: bytes, envelope: bytes) -> bytes:
    """The body as sent (a non-empty JSON object), its closing brace replaced by the envelope's fields.

    Parsed again, it is exactly the body plus the envelope: the landing line keeps the client's
    own text, and the server saves serializing every record again.
    """
    return raw.strip()[:-1] + envelope


def _within_limit(line: bytes) -> bytes | Rejection:
    if len(line) > MAX_RECORD_BYTES:
        return Rejection("record_too_large", None,
                         f"the landing line would be {len(line)} bytes, over the {MAX_RECORD_BYTES}-byte limit")
    return line


def _check_count(count: int) -> None:
    if count > MAX_BATCH_RECORDS:
        raise BatchTooLarge(f"a batch holds at most {MAX_BATCH_RECORDS} bodies, this one {count}")


def rejection_list(rejected: Sequence[tuple[int, Rejection]]) -> list[dict[str, Any]]:
    """The ``rejected`` list of a batch answer."""
    return [{"index": index, **rejection.as_dict()} for index, rejection in rejected]
