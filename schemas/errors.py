"""Error codes of a rejected record: the one list of them, each with what it means and an example.

A code is a ``StrEnum`` member, so it is its plain string value wherever a string is needed (the
``rejects`` table stores ``error_code`` as that string). Every other module raises and passes the
member itself; nothing keeps a list of codes of its own, so a code added here is all it takes.
The reference (``python -m schemas.reference``) prints each code with its description and example.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DocumentedCode", "ErrorCode", "code_of_exception"]


class DocumentedCode(StrEnum):
    """A code that carries a one-line ``description`` and an ``example`` input that triggers it.

    Members are declared as ``NAME = "value", "description", "example"``.
    """

    description: str
    example: str

    def __new__(cls, value: str, description: str = "", example: str = "") -> DocumentedCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.description = description
        member.example = example
        return member


class ErrorCode(DocumentedCode):
    """Why a record was rejected (``rejects.error_code``).

    Examples are JSON lines records, shown with only the fields that matter: every other field is
    as in a valid record.
    """

    MALFORMED_JSON = (
        "malformed_json",
        "A JSON lines record is not valid JSON.",
        '{"worker_id": "w1", ',
    )
    MALFORMED_CSV = (
        "malformed_csv",
        "A CSV row cannot be read: broken quoting, or not as many cells as the header row has.",
        'w1,"x"y',
    )
    NOT_AN_OBJECT = (
        "not_an_object",
        "A JSON lines record is valid JSON but not an object.",
        "[1, 2]",
    )
    INVALID_ENCODING = (
        "invalid_encoding",
        "The record is not UTF-8 text: invalid bytes, a lone UTF-16 surrogate (\\ud800), or a UTF-16 file.",
        '{"task_id": "\\ud800"}',
    )
    RECORD_TOO_LARGE = (
        "record_too_large",
        "A line or CSV row is longer than --max-record-bytes (1 MiB by default).",
        "a line of 2,000,000 bytes",
    )
    MISSING_FIELD = (
        "missing_field",
        "A required field is absent, null, or an empty or blank string.",
        '{"worker_id": "  "}',
    )
    INVALID_TYPE = (
        "invalid_type",
        "A value is of the wrong JSON type, or text that cannot be read as the field's type.",
        '{"task_count": "ten"}',
    )
    INVALID_VALUE = (
        "invalid_value",
        "A value of the right type is out of range: a negative, fractional or over 10^12 count, a negative "
        "duration, an object nested too deep.",
        '{"task_count": -1}',
    )
    INVALID_TIMESTAMP = (
        "invalid_timestamp",
        "A datetime is not an ISO 8601 date and time (a date alone is not enough), or is out of range.",
        '{"task_started_at": "2020-12-22"}',
    )
    COMPLETED_BEFORE_STARTED = (
        "completed_before_started",
        "task_completed_at is earlier than task_started_at.",
        '{"task_started_at": "2020-12-22T10:00:00Z", "task_completed_at": "2020-12-22T09:00:00Z"}',
    )
    INVALID_DATA_SOURCE = (
        "invalid_data_source",
        "data_source is present but not one of api, csv_manual, csv_automated.",
        '{"data_source": "web"}',
    )
    MISSING_WORKSTREAM_ID = (
        "missing_workstream_id",
        "No workstream: none in the record, none in its file's path (workstream_id=<id>), no --workstream-id.",
        '{"workstream_id": ""}',
    )
    UNKNOWN_WORKSTREAM = (
        "unknown_workstream",
        "The workstream is not in the workstream configuration.",
        '{"workstream_id": "ws-unknown"}',
    )
    UNKNOWN_USE_CASE = (
        "unknown_use_case",
        "use_case_id is not a use case of the record's workstream in the configuration.",
        '{"use_case_id": "uc-unknown"}',
    )
    UNKNOWN_TASK_DEFINITION = (
        "unknown_task_definition",
        "task_definition_id is not a task definition of the record's use case in the configuration.",
        '{"task_definition_id": "td-unknown"}',
    )


def code_of_exception(exc: BaseException) -> ErrorCode:
    """The code of a record whose checking failed with an exception no rule expected."""
    if isinstance(exc, UnicodeError):
        return ErrorCode.INVALID_ENCODING
    return ErrorCode.INVALID_VALUE
