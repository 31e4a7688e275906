"""Record rules of SPEC section 1 as plain functions.

Each function takes one raw input value (from JSON or from a CSV cell) and returns the
normalized value, or raises ``RuleError`` with an error code of SPEC section 3 and a message
a person can act on. The pydantic model in ``schemas.record`` wires them to the fields; the
functions stay free of pydantic and Beam so they are tested on their own.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone, tzinfo
from typing import Any

import orjson

__all__ = [
    "DATA_SOURCES",
    "RuleError",
    "clean_string",
    "is_blank",
    "json_text",
    "parse_bool",
    "parse_count",
    "parse_duration",
    "parse_object",
    "parse_timestamp",
    "normalize_worker_id",
]

DATA_SOURCES = ("api", "csv_manual", "csv_automated")

# Plain ASCII decimal text: Python's int()/float() would also take "1_000" or other scripts' digits.
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_SHOWN = 80  # characters of a bad value quoted back in a message


class RuleError(ValueError):
    """A value breaks a record rule; ``code`` is one of SPEC 3's error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def is_blank(value: Any) -> bool:
    """Absent, null, or a string that is empty after trimming (SPEC 1: counts as absent)."""
    return value is None or (isinstance(value, str) and not value.strip())


def clean_string(value: Any) -> str:
    """A string field: must be a JSON string; trimmed."""
    if not isinstance(value, str):
        raise RuleError("invalid_type", f"must be a string, got {_type_name(value)} {_show(value)}")
    return value.strip()


def normalize_worker_id(value: Any) -> str:
    """Trimmed; an email address is lower-cased so one worker is one id."""
    text = clean_string(value)
    return text.lower() if _EMAIL.match(text) else text


def _number(value: Any, expect: str) -> float | int:
    """A JSON number, or a string holding one (CSV cells and lenient JSON)."""
    if isinstance(value, bool):
        raise RuleError("invalid_type", f"must be {expect}, got boolean {_show(value)}")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text):
            return int(text)
        if _DECIMAL.fullmatch(text) or text.lower() in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
            return float(text)
        raise RuleError("invalid_type", f"must be {expect}, got {_show(value)}")
    raise RuleError("invalid_type", f"must be {expect}, got {_type_name(value)} {_show(value)}")


def parse_count(value: Any) -> int:
    """A count: an integer value >= 0; ``10``, ``10.0`` and ``"10"`` are 10."""
    number = _number(value, "an integer >= 0")
    if isinstance(number, float):
        if not math.isfinite(number) or not number.is_integer():
            raise RuleError("invalid_value", f"must be a whole number >= 0, got {_show(value)}")
        number = int(number)
    if number < 0:
        raise RuleError("invalid_value", f"must be >= 0, got {_show(value)}")
    if number >= 2**63:
        raise RuleError("invalid_value", f"is too large for a 64-bit count: {_show(value)}")
    return number


def parse_duration(value: Any) -> float:
    """Seconds: a finite number >= 0."""
    try:
        number = float(_number(value, "a number of seconds"))
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number) or number < 0:
        raise RuleError("invalid_value", f"must be a finite number of seconds >= 0, got {_show(value)}")
    return number


def parse_bool(value: Any) -> bool:
    """true/false, 1/0, yes/no in any case; JSON booleans as they are."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise RuleError("invalid_type", f"must be a boolean (true/false, 1/0, yes/no), got {_show(value)}")


def parse_timestamp(value: Any, default_tz: tzinfo = timezone.utc) -> datetime:
    """ISO 8601 date and time, normalized to UTC.

    A value without an offset is read in ``default_tz``. A date alone is rejected: a task
    event happens at a time, and midnight would be a silent guess.
    """
    if not isinstance(value, str):
        raise RuleError("invalid_type", f"must be an ISO 8601 datetime string, got {_type_name(value)} {_show(value)}")
    text = value.strip()
    if not any(sep in text for sep in ("T", "t", " ")):
        raise RuleError("invalid_timestamp", f"needs a date and a time (ISO 8601), got {_show(value)}")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise RuleError("invalid_timestamp", f"is not an ISO 8601 datetime: {_show(value)}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=default_tz)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise RuleError("invalid_timestamp", f"is out of range once converted to UTC: {_show(value)}") from None


def parse_object(value: Any) -> dict[str, str | None]:
    """Key/value pairs as ``map<string,string>``: non-string values become their JSON text.

    A CSV cell (or a JSON string) holds the object as JSON text.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)  # not orjson: integers beyond 64 bits stay exact
        except ValueError:
            raise RuleError("invalid_type", f"must be a JSON object, got text that is not JSON: {_show(value)}") from None
        if not isinstance(value, dict):
            raise RuleError("invalid_type", f"must be a JSON object, got {_type_name(value)} text")
    if not isinstance(value, dict):
        raise RuleError("invalid_type", f"must be an object, got {_type_name(value)} {_show(value)}")
    return {str(key): item if isinstance(item, str) else json_text(item) for key, item in value.items()}


def json_text(value: Any) -> str:
    """Compact JSON text of a value; integers beyond 64 bits (which orjson refuses) kept exact."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
