"""Record rules of SPEC section 1 as plain functions.

Each function takes one raw input value (from JSON or from a CSV cell) and returns the
normalized value, or raises ``RuleError`` with an ``ErrorCode`` and a message a person can act
on. The pydantic model in ``schemas.record`` wires them to the fields; the functions stay free
of pydantic and Beam so they are tested on their own.

Every function is total: whatever value it is given (text with lone surrogates, JSON nested
thousands deep, integers of any size) it returns or raises ``RuleError``, nothing else.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone, tzinfo
from typing import Any

import orjson

from schemas.errors import ErrorCode

__all__ = [
    "DATA_SOURCES",
    "MAX_COUNT",
    "MAX_COUNT_TEXT",
    "MAX_DEPTH",
    "RuleError",
    "check_text",
    "clean_string",
    "encoding_problem",
    "is_blank",
    "json_nesting",
    "json_text",
    "normalize_worker_id",
    "parse_bool",
    "parse_count",
    "parse_duration",
    "parse_object",
    "parse_timestamp",
]

DATA_SOURCES = ("api", "csv_manual", "csv_automated")
MAX_COUNT = 10**12  # what one event can count: sums of counts stay far from 2**63
MAX_COUNT_TEXT = "10^12"
MAX_DEPTH = 64  # levels of arrays/objects in a key/value object, itself included

# Plain ASCII decimal text: Python's int()/float() would also take "1_000" or other scripts' digits.
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_SHOWN = 80  # characters of a bad value quoted back in a message
_SURROGATE = re.compile("[\ud800-\udfff]")  # never valid in text; UTF-8 cannot encode it
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class RuleError(ValueError):
    """A value breaks a record rule; ``code`` says which kind of rule (see ``ErrorCode``)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _show(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer of more digits than Python will print
        text = f"<an integer of {value.bit_length()} bits>"
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


def encoding_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored as UTF-8 (it holds a surrogate code point), or None."""
    if text.isascii():
        return None
    found = _SURROGATE.search(text)
    if found is None:
        return None
    point = ord(found.group())
    if 0xDC80 <= point <= 0xDCFF:  # how a byte that is not UTF-8 is kept while reading
        what = f"a byte that is not UTF-8 (0x{point - 0xDC00:02x}) or a lone surrogate \\u{point:04x}"
    else:
        what = f"a lone UTF-16 surrogate \\u{point:04x}"
    return f"is not valid Unicode text: character {found.start() + 1} is {what}; fix the text or save it as UTF-8"


def check_text(text: str) -> str:
    """``text`` itself, if it can be stored as UTF-8; else ``RuleError`` (invalid_encoding)."""
    problem = encoding_problem(text)
    if problem is not None:
        raise RuleError(ErrorCode.INVALID_ENCODING, problem)
    return text


def clean_string(value: Any) -> str:
    """A string field: must be a JSON string of valid Unicode text; trimmed."""
    if not isinstance(value, str):
        raise RuleError(ErrorCode.INVALID_TYPE, f"must be a string, got {_type_name(value)} {_show(value)}")
    return check_text(value).strip()


def normalize_worker_id(value: Any) -> str:
    """Trimmed; an email address is lower-cased so one worker is one id."""
    text = clean_string(value)
    return text.lower() if _EMAIL.match(text) else text


def _number(value: Any, expect: str) -> float | int:
    """A JSON number, or a string holding one (CSV cells and lenient JSON)."""
    if isinstance(value, bool):
        raise RuleError(ErrorCode.INVALID_TYPE, f"must be {expect}, got boolean {_show(value)}")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        text = check_text(value).strip()
        if _INTEGER.fullmatch(text):
            try:
                return int(text)
            except ValueError:  # more digits than Python reads as an integer: as a float, infinite
                return float(text)
        if _DECIMAL.fullmatch(text) or text.lower() in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
            return float(text)
        raise RuleError(ErrorCode.INVALID_TYPE, f"must be {expect}, got {_show(value)}")
    raise RuleError(ErrorCode.INVALID_TYPE, f"must be {expect}, got {_type_name(value)} {_show(value)}")


def parse_count(value: Any) -> int:
    """A count: an integer value from 0 to 10^12; ``10``, ``10.0`` and ``"10"`` are 10.

    The bound keeps sums of counts (throughput_daily) from wrapping a 64-bit integer.
    """
    number = _number(value, "an integer >= 0")
    if isinstance(number, float):
        if not math.isfinite(number) or not number.is_integer():
            raise RuleError(ErrorCode.INVALID_VALUE, f"must be a whole number >= 0, got {_show(value)}")
        number = int(number)
    if number < 0:
        raise RuleError(ErrorCode.INVALID_VALUE, f"must be >= 0, got {_show(value)}")
    if number > MAX_COUNT:
        raise RuleError(ErrorCode.INVALID_VALUE, f"is larger than the {MAX_COUNT_TEXT} a single event can count: {_show(value)}")
    return number


def parse_duration(value: Any) -> float:
    """Seconds: a finite number >= 0."""
    try:
        number = float(_number(value, "a number of seconds"))
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number) or number < 0:
        raise RuleError(ErrorCode.INVALID_VALUE, f"must be a finite number of seconds >= 0, got {_show(value)}")
    return number


def parse_bool(value: Any) -> bool:
    """true/false, 1/0, yes/no in any case; JSON booleans as they are."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = check_text(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise RuleError(ErrorCode.INVALID_TYPE, f"must be a boolean (true/false, 1/0, yes/no), got {_show(value)}")


def parse_timestamp(value: Any, default_tz: tzinfo = timezone.utc) -> datetime:
    """ISO 8601 date and time, normalized to UTC.

    A value without an offset is read in ``default_tz``. A date alone is rejected: a task
    event happens at a time, and midnight would be a silent guess.
    """
    if not isinstance(value, str):
        raise RuleError(ErrorCode.INVALID_TYPE,
                        f"must be an ISO 8601 datetime string, got {_type_name(value)} {_show(value)}")
    text = check_text(value).strip()
    if not any(sep in text for sep in ("T", "t", " ")):
        raise RuleError(ErrorCode.INVALID_TIMESTAMP, f"needs a date and a time (ISO 8601), got {_show(value)}")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise RuleError(ErrorCode.INVALID_TIMESTAMP, f"is not an ISO 8601 datetime: {_show(value)}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=default_tz)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise RuleError(ErrorCode.INVALID_TIMESTAMP, f"is out of range once converted to UTC: {_show(value)}") from None


def parse_object(value: Any) -> dict[str, str | None]:
    """Key/value pairs as ``map<string,string>``: non-string values become their JSON text.

    A CSV cell (or a JSON string) holds the object as JSON text. An object nested more than
    ``MAX_DEPTH`` levels is ``invalid_value``; text that is not valid Unicode anywhere in it (a
    key, a value, deep inside) is ``invalid_encoding``.
    """
    checked = False
    if isinstance(value, str):
        check_text(value)
        if json_nesting(value) > MAX_DEPTH:
            raise _too_deep()
        checked = "\\u" not in value  # then no text in it can decode to a surrogate, and it is not too deep
        try:
            value = json.loads(value)  # not orjson: integers beyond 64 bits stay exact
        except RecursionError:
            raise _too_deep() from None
        except ValueError:
            raise RuleError(ErrorCode.INVALID_TYPE,
                            f"must be a JSON object, got text that is not JSON: {_show(value)}") from None
        if not isinstance(value, dict):
            raise RuleError(ErrorCode.INVALID_TYPE, f"must be a JSON object, got {_type_name(value)} text")
    if not isinstance(value, dict):
        raise RuleError(ErrorCode.INVALID_TYPE, f"must be an object, got {_type_name(value)} {_show(value)}")
    if not checked:
        _check_tree(value)
    return {str(key): item if isinstance(item, str) else json_text(item) for key, item in value.items()}


def _too_deep() -> RuleError:
    return RuleError(ErrorCode.INVALID_VALUE,
                     f"is nested too deep: more than {MAX_DEPTH} levels of arrays and objects")


def _check_tree(value: dict[Any, Any]) -> None:
    """Walk a parsed JSON object (without recursion): not too deep, every text valid Unicode."""
    nested: list[tuple[Any, int]] = []
    for key, item in value.items():  # the common case, a flat object of scalars, in one pass
        if isinstance(key, str) and not key.isascii():
            check_text(key)
        if isinstance(item, str):
            if not item.isascii():
                check_text(item)
        elif isinstance(item, (dict, list)):
            nested.append((item, 2))
    while nested:
        item, depth = nested.pop()
        if isinstance(item, str):
            check_text(item)
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise _too_deep()
            if isinstance(item, dict):
                for key, sub in item.items():
                    if isinstance(key, str):
                        check_text(key)
                    nested.append((sub, depth + 1))
            else:
                nested.extend((sub, depth + 1) for sub in item)


def json_nesting(text: str) -> int:
    """How deep the arrays/objects of JSON text nest, at least as deep as a parser would go (when
    the text opens no more than ``MAX_DEPTH`` brackets, their number: a bound, cheaper to count)."""
    opened = text.count("[") + text.count("{")
    if opened <= MAX_DEPTH:  # the common case: cannot be deeper than the brackets it opens
        return opened
    depth = peak = 0
    for bracket in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        peak = max(peak, depth)
    return peak


def json_text(value: Any) -> str:
    """Compact JSON text of any parsed JSON value, lossless: integers beyond 64 bits kept exact,
    any depth, text that is not valid Unicode kept as its ``\\u`` escape."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # too big an integer, too deep, a surrogate or a non-string key
        return _json_text_slowly(value)


class _Done(str):
    """JSON text already written, on the work stack of ``_json_text_slowly``."""


def _json_text_slowly(value: Any) -> str:
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Done):
            out.append(item)
        elif isinstance(item, dict):
            parts: list[Any] = [_Done("{")]
            for i, (key, sub) in enumerate(item.items()):
                parts += [_Done(("," if i else "") + _scalar_text(str(key)) + ":"), sub]
            stack.extend(reversed([*parts, _Done("}")]))
        elif isinstance(item, (list, tuple)):
            parts = [_Done("[")]
            for i, sub in enumerate(item):
                parts += [_Done(",")] if i else []
                parts.append(sub)
            stack.extend(reversed([*parts, _Done("]")]))
        else:
            out.append(_scalar_text(item))
    return "".join(out)


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=encoding_problem(value) is not None)
    if isinstance(value, float) and not math.isfinite(value):
        return "null"  # as orjson writes it
    return json.dumps(value, default=str)
