"""The record rules of SPEC 1 (schemas/rules.py): tables of examples plus hypothesis properties."""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.errors import ErrorCode
from schemas.rules import (
    MAX_COUNT,
    MAX_COUNT_TEXT,
    MAX_DEPTH,
    RuleError,
    clean_string,
    is_blank,
    json_nesting,
    json_text,
    normalize_worker_id,
    parse_bool,
    parse_count,
    parse_duration,
    parse_object,
    parse_timestamp,
)

UTC = timezone.utc
KATHMANDU = ZoneInfo("Asia/Kathmandu")
NEW_YORK = ZoneInfo("America/New_York")

FAST = settings(max_examples=100, deadline=None, database=None)


def code_of(func, *args) -> str:
    """The RuleError code a rule raises for ``args`` (fails the test when it returns)."""
    with pytest.raises(RuleError) as info:
        func(*args)
    assert info.value.message, "a rule error must carry a message a person can act on"
    return info.value.code


# --------------------------------------------------------------------------- strings


@pytest.mark.parametrize(
    ("value", "expected"),
    [("abc", "abc"), ("  abc  ", "abc"), ("\tab c\n", "ab c"), ("", ""), ("   ", ""), ("ÄÖ ü", "ÄÖ ü")],
)
def test_clean_string_trims(value, expected) -> None:
    assert clean_string(value) == expected


@pytest.mark.parametrize("value", [5, 5.5, True, False, None, ["a"], {"a": "b"}, b"bytes"])
def test_clean_string_rejects_non_strings_as_invalid_type(value) -> None:
    assert code_of(clean_string, value) == "invalid_type"


@pytest.mark.parametrize(
    ("value", "blank"),
    [(None, True), ("", True), ("   ", True), ("\t\n", True), ("x", False), (" x ", False), (0, False), (False, False)],
)
def test_is_blank(value, blank) -> None:
    assert is_blank(value) is blank


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Worker@Example.com", "worker@example.com"),
        ("  First.Last@Example.CO.UK  ", "first.last@example.co.uk"),
        ("worker@example.com", "worker@example.com"),
        ("Worker-ABC", "Worker-ABC"),  # not an e-mail: only trimmed, case kept
        ("  W-17 ", "W-17"),
        ("Name@Host", "Name@Host"),  # no domain.tld: not an e-mail
        ("A B@Example.com", "A B@Example.com"),  # whitespace inside: not an e-mail
    ],
)
def test_normalize_worker_id(value, expected) -> None:
    assert normalize_worker_id(value) == expected


@pytest.mark.parametrize("value", [5, 1.5, True, None, ["w@x.io"]])
def test_normalize_worker_id_rejects_non_strings(value) -> None:
    assert code_of(normalize_worker_id, value) == "invalid_type"


# --------------------------------------------------------------------------- counts


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0), (10, 10), (10.0, 10), ("10", 10), (" 10 ", 10), ("10.0", 10), ("0", 0),
        ("+5", 5), ("1e3", 1000), (10**12, 10**12), (str(10**12), 10**12), (1e12, 10**12), ("1e12", 10**12),
    ],
)
def test_parse_count_accepts(value, expected) -> None:
    result = parse_count(value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (-1, "invalid_value"), ("-1", "invalid_value"), (-1.0, "invalid_value"),
        (10.5, "invalid_value"), ("10.5", "invalid_value"), (0.1, "invalid_value"),
        (math.nan, "invalid_value"), (math.inf, "invalid_value"), (-math.inf, "invalid_value"),
        ("nan", "invalid_value"), ("inf", "invalid_value"),
        (10**12 + 1, "invalid_value"), (str(10**12 + 1), "invalid_value"), (1e13, "invalid_value"),  # over 10^12
        (2**63 - 1, "invalid_value"), (2**63, "invalid_value"), (float(2**64), "invalid_value"), ("9" * 40, "invalid_value"),
        ("ten", "invalid_type"), ("", "invalid_type"), ("10 tasks", "invalid_type"), ("0x10", "invalid_type"),
        ("1,000", "invalid_type"),
        (True, "invalid_type"), (False, "invalid_type"), (None, "invalid_type"),
        ([1], "invalid_type"), ({"n": 1}, "invalid_type"),
    ],
)
def test_parse_count_rejects(value, code) -> None:
    assert code_of(parse_count, value) == code


@pytest.mark.parametrize("text", ["1_000", "１０", "١٢"])
def test_parse_count_only_reads_plain_decimal_text(text) -> None:
    """A count string is a plain decimal number ("10"), as in JSON or a CSV cell.

    Python's own literal syntax (digit separators "1_000") and non-ASCII digits are not numbers
    of JSON/CSV; "1,000" is rejected as invalid_type, so "1_000" must be too.
    """
    assert code_of(parse_count, text) == "invalid_type"


@FAST
@given(st.integers(min_value=0, max_value=10**12))
def test_parse_count_any_non_negative_int_in_every_form(n: int) -> None:
    assert parse_count(n) == n
    assert parse_count(str(n)) == n
    assert parse_count(f"  {n} ") == n
    as_float = float(n)
    if as_float == n:  # exactly representable
        assert parse_count(as_float) == n
        assert parse_count(repr(as_float)) == n


@FAST
@given(st.integers(min_value=10**12 + 1))
def test_parse_count_over_ten_to_the_twelve_is_invalid_value(n: int) -> None:
    """A count is bounded, so that summing a day of them can never wrap a 64-bit integer."""
    for value in (n, str(n), float(n)):
        with pytest.raises(RuleError) as info:
            parse_count(value)
        assert info.value.code == "invalid_value"
        assert "is larger than the 10^12 a single event can count" in info.value.message
    assert MAX_COUNT == 10**12 == 10 ** int(MAX_COUNT_TEXT.removeprefix("10^"))
    assert MAX_COUNT_TEXT in ErrorCode.INVALID_VALUE.description  # the reference says what the rule does
    assert 2**63 // MAX_COUNT > 9_000_000  # millions of maximal events a day before a sum could wrap


@FAST
@given(st.integers(max_value=-1))
def test_parse_count_negative_is_invalid_value(n: int) -> None:
    assert code_of(parse_count, n) == "invalid_value"
    assert code_of(parse_count, str(n)) == "invalid_value"


@FAST
@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer()))
def test_parse_count_non_integral_float_is_invalid_value(x: float) -> None:
    assert code_of(parse_count, x) == "invalid_value"
    assert code_of(parse_count, repr(x)) == "invalid_value"


def _python_reads_as_number(text: str) -> bool:
    for convert in (int, float):
        try:
            convert(text)
            return True
        except ValueError:
            pass
    return False


@FAST
@given(st.text().filter(lambda s: not _python_reads_as_number(s)))
def test_parse_count_non_numeric_text_is_invalid_type(text: str) -> None:
    assert code_of(parse_count, text) == "invalid_type"
    assert code_of(parse_duration, text) == "invalid_type"


@pytest.mark.parametrize("value", [True, False])
def test_numbers_reject_booleans_as_invalid_type(value: bool) -> None:
    assert code_of(parse_count, value) == "invalid_type"
    assert code_of(parse_duration, value) == "invalid_type"


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0.0), (12, 12.0), (12.5, 12.5), ("12.5", 12.5), (" 3600 ", 3600.0), ("1e2", 100.0), (1e300, 1e300)],
)
def test_parse_duration_accepts(value, expected) -> None:
    result = parse_duration(value)
    assert result == expected
    assert type(result) is float


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (-1, "invalid_value"), (-0.001, "invalid_value"), ("-5", "invalid_value"),
        (math.nan, "invalid_value"), (math.inf, "invalid_value"), (-math.inf, "invalid_value"),
        ("NaN", "invalid_value"), ("inf", "invalid_value"), ("-Infinity", "invalid_value"), ("1e400", "invalid_value"),
        ("ten", "invalid_type"), ("", "invalid_type"), ("5s", "invalid_type"), (None, "invalid_type"),
        ([5], "invalid_type"), ({"s": 5}, "invalid_type"),
    ],
)
def test_parse_duration_rejects(value, code) -> None:
    assert code_of(parse_duration, value) == code


@FAST
@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_parse_duration_any_finite_non_negative(x: float) -> None:
    assert parse_duration(x) == x
    assert parse_duration(repr(x)) == x


@FAST
@given(st.integers(min_value=0, max_value=10**15))
def test_parse_duration_integers(n: int) -> None:
    assert parse_duration(n) == float(n)
    assert parse_duration(str(n)) == float(n)


@FAST
@given(st.floats(max_value=-5e-324, allow_infinity=False))  # the smallest negative float and below
def test_parse_duration_negative_is_invalid_value(x: float) -> None:
    assert code_of(parse_duration, x) == "invalid_value"
    assert code_of(parse_duration, repr(x)) == "invalid_value"


@FAST
@given(st.sampled_from([math.nan, math.inf, -math.inf, "nan", "NaN", "inf", "-inf", "Infinity"]))
def test_parse_duration_nan_and_infinities_are_invalid_value(value) -> None:
    assert code_of(parse_duration, value) == "invalid_value"


# --------------------------------------------------------------------------- booleans


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), (1, True), (0, False), ("true", True), ("FALSE", False),
     (" Yes ", True), ("no", False), ("1", True), ("0", False)],
)
def test_parse_bool_accepts(value, expected) -> None:
    assert parse_bool(value) is expected


@pytest.mark.parametrize("value", ["", "y", "n", "t", "f", "2", "-1", "truthy", "on", "off", 2, -1, None, [True], {"a": 1}])
def test_parse_bool_rejects_as_invalid_type(value) -> None:
    assert code_of(parse_bool, value) == "invalid_type"


def _case_variants(word: str):
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda upper: "".join(c.upper() if u else c.lower() for c, u in zip(word, upper, strict=True))
    )


@FAST
@given(
    st.sampled_from([("true", True), ("false", False), ("1", True), ("0", False), ("yes", True), ("no", False)])
    .flatmap(lambda pair: st.tuples(_case_variants(pair[0]), st.just(pair[1]))),
    st.sampled_from(["", " ", "  ", "\t"]),
)
def test_parse_bool_every_case_variant(variant: tuple[str, bool], pad: str) -> None:
    text, expected = variant
    assert parse_bool(text) is expected
    assert parse_bool(f"{pad}{text}{pad}") is expected


@FAST
@given(st.text().filter(lambda s: s.strip().lower() not in {"true", "false", "1", "0", "yes", "no"}))
def test_parse_bool_other_text_is_invalid_type(text: str) -> None:
    assert code_of(parse_bool, text) == "invalid_type"


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-12-22T09:13:24.127Z", datetime(2020, 12, 22, 9, 13, 24, 127000, tzinfo=UTC)),
        ("2020-12-22T09:13:24Z", datetime(2020, 12, 22, 9, 13, 24, tzinfo=UTC)),
        ("2020-12-22 09:13:24", datetime(2020, 12, 22, 9, 13, 24, tzinfo=UTC)),
        ("2020-12-22T15:00:00+05:45", datetime(2020, 12, 22, 9, 15, tzinfo=UTC)),
        ("2020-12-22 04:13:24.5-05:00", datetime(2020, 12, 22, 9, 13, 24, 500000, tzinfo=UTC)),
        ("2020-12-22T23:30:00-02:00", datetime(2020, 12, 23, 1, 30, tzinfo=UTC)),  # crosses the date
        ("2020-12-22T09:13:24.123456+00:00", datetime(2020, 12, 22, 9, 13, 24, 123456, tzinfo=UTC)),
        ("  2020-12-22T09:13:24Z  ", datetime(2020, 12, 22, 9, 13, 24, tzinfo=UTC)),
        ("2020-12-22T09", datetime(2020, 12, 22, 9, tzinfo=UTC)),  # README: hour alone is 09:00
    ],
)
def test_parse_timestamp_accepts(text, expected) -> None:
    result = parse_timestamp(text)
    assert result == expected
    assert result.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        ("2020-12-22T09:13:24", KATHMANDU, datetime(2020, 12, 22, 3, 28, 24, tzinfo=UTC)),
        ("2020-12-22 09:00", NEW_YORK, datetime(2020, 12, 22, 14, 0, tzinfo=UTC)),  # EST, -05:00
        ("2020-07-01T09:00", NEW_YORK, datetime(2020, 7, 1, 13, 0, tzinfo=UTC)),  # EDT, -04:00
        ("2020-07-01T09:00Z", NEW_YORK, datetime(2020, 7, 1, 9, 0, tzinfo=UTC)),  # an offset wins
        ("2020-07-01T09:00+01:00", KATHMANDU, datetime(2020, 7, 1, 8, 0, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_default_timezone(text, tz, expected) -> None:
    result = parse_timestamp(text, tz)
    assert result == expected
    assert result.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("2020-12-22", "invalid_timestamp"),
        ("  2020-12-22  ", "invalid_timestamp"),
        ("20201222", "invalid_timestamp"),
        ("09:13:24", "invalid_timestamp"),
        ("2020-12-22T", "invalid_timestamp"),
        ("2020-13-01T00:00", "invalid_timestamp"),
        ("2020-12-22T25:00", "invalid_timestamp"),
        ("22/12/2020 09:13", "invalid_timestamp"),
        ("yesterday at noon", "invalid_timestamp"),
        ("", "invalid_timestamp"),
        ("9999-12-31T23:59-05:00", "invalid_timestamp"),  # out of range once in UTC
        (1608628404, "invalid_type"),
        (1608628404.127, "invalid_type"),
        (True, "invalid_type"),
        (None, "invalid_type"),
        (["2020-12-22T09:13:24Z"], "invalid_type"),
    ],
)
def test_parse_timestamp_rejects(value, code) -> None:
    assert code_of(parse_timestamp, value) == code


_MIN = datetime(1900, 1, 1)
_MAX = datetime(2200, 12, 31, 23, 59, 59, 999999)
# Whole minutes, as ISO 8601 offsets are: Python 3.11's fromisoformat drops an offset's microseconds.
_FIXED_OFFSETS = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))


@FAST
@given(
    st.datetimes(min_value=_MIN, max_value=_MAX, timezones=st.one_of(st.timezones(), _FIXED_OFFSETS)),
    st.sampled_from(["T", " "]),
    st.booleans(),
)
def test_parse_timestamp_aware_roundtrip(moment: datetime, sep: str, zulu: bool) -> None:
    text = moment.isoformat(sep=sep)
    if zulu and text.endswith("+00:00"):
        text = text[: -len("+00:00")] + "Z"
    result = parse_timestamp(text, NEW_YORK)  # the default zone must not matter when there is an offset
    # The instant the text names: its wall time minus the offset it prints. (Comparing with
    # ``moment`` itself would be wrong for times in a DST gap or fold: PEP 495 makes those
    # unequal to every datetime of another zone.)
    offset = moment.utcoffset()
    assert offset is not None
    expected = (moment.replace(tzinfo=None) - offset).replace(tzinfo=UTC)
    assert result == expected
    assert result.utcoffset() == timedelta(0)


@FAST
@given(
    st.datetimes(min_value=_MIN, max_value=_MAX),
    st.sampled_from(["Asia/Kathmandu", "America/New_York", "Australia/Lord_Howe", "UTC", "Pacific/Chatham"]),
    st.sampled_from(["T", " "]),
)
def test_parse_timestamp_naive_read_in_default_zone(naive: datetime, zone: str, sep: str) -> None:
    tz = ZoneInfo(zone)
    result = parse_timestamp(naive.isoformat(sep=sep), tz)
    assert result.utcoffset() == timedelta(0)
    assert result == naive.replace(tzinfo=tz).astimezone(UTC)
    local = result.astimezone(tz)
    if local.replace(tzinfo=None) == naive:  # the wall time exists in that zone: it must come back
        assert local.utcoffset() == naive.replace(tzinfo=tz).utcoffset()


@FAST
@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31)), st.sampled_from(["", " ", "\t"]))
def test_parse_timestamp_date_alone_is_invalid(day: date, pad: str) -> None:
    assert code_of(parse_timestamp, f"{pad}{day.isoformat()}{pad}") == "invalid_timestamp"
    assert code_of(parse_timestamp, f"{pad}{day.isoformat()}{pad}", KATHMANDU) == "invalid_timestamp"


@FAST
@given(
    st.one_of(
        st.integers(), st.floats(), st.booleans(), st.none(), st.datetimes(), st.dates(),
        st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    )
)
def test_parse_timestamp_non_string_is_invalid_type(value) -> None:
    assert code_of(parse_timestamp, value) == "invalid_type"


# --------------------------------------------------------------------------- objects


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, {}),
        ({"a": "x"}, {"a": "x"}),
        ({"attribute_1_count": 340, "attribute_1_label": "Words"}, {"attribute_1_count": "340", "attribute_1_label": "Words"}),
        ({"f": 1.5, "t": True, "n": None, "l": [1, "a"], "o": {"k": False}},
         {"f": "1.5", "t": "true", "n": "null", "l": '[1,"a"]', "o": '{"k":false}'}),
        ('{"a": 1, "b": "two"}', {"a": "1", "b": "two"}),  # JSON object text (CSV cell)
        ("{}", {}),
        ({"ü": "ñ"}, {"ü": "ñ"}),
    ],
)
def test_parse_object_accepts(value, expected) -> None:
    assert parse_object(value) == expected


@pytest.mark.parametrize(
    "value",
    ["not json", "[1, 2]", "42", '"text"', "null", "{'a': 1}", "", 42, 1.5, True, None, [{"a": 1}]],
)
def test_parse_object_rejects_as_invalid_type(value) -> None:
    assert code_of(parse_object, value) == "invalid_type"


def test_parse_object_big_integer_value_does_not_crash() -> None:
    """A value that is an integer beyond 64 bits must give its JSON text or a RuleError, not a TypeError."""
    try:
        result = parse_object({"n": 2**64})
    except RuleError as err:
        assert err.code in {"invalid_value", "invalid_type"}
    else:
        assert result == {"n": "18446744073709551616"}


def test_parse_object_big_integer_in_json_text_is_kept_exactly() -> None:
    """SPEC 5: non-string values are stored as their JSON text, so 18446744073709551616 stays that text."""
    try:
        result = parse_object('{"n": 18446744073709551616}')
    except RuleError as err:
        assert err.code in {"invalid_value", "invalid_type"}
    else:
        assert result == {"n": "18446744073709551616"}


@FAST
@given(st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=8), st.integers(-(2**63), 2**63 - 1), st.booleans(), st.none())))
def test_parse_object_values_are_strings_and_strings_unchanged(obj: dict) -> None:
    result = parse_object(obj)
    assert set(result) == set(obj)
    for key, value in obj.items():
        assert isinstance(result[key], str)
        if isinstance(value, str):
            assert result[key] == value
        else:
            assert re.fullmatch(r"true|false|null|-?\d+", result[key])


# --------------------------------------------------------------------------- hostile values


def test_rule_errors_carry_error_code_members() -> None:
    with pytest.raises(RuleError) as info:
        parse_count("ten")
    assert info.value.code is ErrorCode.INVALID_TYPE


@pytest.mark.parametrize("text", ["[" * 10_000 + "]" * 10_000, '{"a": ' + "[" * 10_000 + "]" * 10_000 + "}",
                                  "{" * 100_000, '{"a": ' + "[" * (MAX_DEPTH) + "]" * MAX_DEPTH + "}"])
def test_parse_object_too_deep_json_text_is_invalid_value(text: str) -> None:
    """JSON text nested deeper than MAX_DEPTH is a reject, never a RecursionError."""
    with pytest.raises(RuleError) as info:
        parse_object(text)
    assert info.value.code == "invalid_value"
    assert "nested too deep" in info.value.message


def test_parse_object_too_deep_object_is_invalid_value() -> None:
    deep: object = 0
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(RuleError) as info:
        parse_object({"a": deep})
    assert (info.value.code, "nested too deep" in info.value.message) == ("invalid_value", True)


def test_parse_object_at_the_depth_limit_is_kept() -> None:
    inner = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    assert parse_object('{"a": ' + inner + "}") == {"a": inner}


@pytest.mark.parametrize("value", ['{"a": "\\ud800"}', '{"\\udfff": 1}', '{"a": ["x", {"b": "\\ud83d"}]}',
                                   {"a": "\ud800"}, {"\udcff": "x"}, {"a": [{"b": "\ud800"}]}, '{"a": "x\ud800"}'])
def test_parse_object_lone_surrogates_are_invalid_encoding(value) -> None:
    """json (unlike orjson) reads "\\ud800" as a lone surrogate, which no UTF-8 column can hold."""
    with pytest.raises(RuleError) as info:
        parse_object(value)
    assert info.value.code == "invalid_encoding"
    assert "not valid Unicode" in info.value.message


def test_a_surrogate_pair_is_fine() -> None:
    assert parse_object('{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}


@pytest.mark.parametrize("rule", [clean_string, normalize_worker_id, parse_count, parse_duration, parse_bool, parse_timestamp])
@pytest.mark.parametrize("text", ["\ud800", "abc\udcff", " \udfff 10"])
def test_text_with_lone_surrogates_is_invalid_encoding_for_every_rule(rule, text: str) -> None:
    assert code_of(rule, text) == "invalid_encoding"


@pytest.mark.parametrize(("text", "depth"), [("{}", 1), ('{"a": [1, {"b": []}]}', 3), ('"[[[["', 0),
                                            ('{"a": "]]]]"}', 1), ("[" * 500 + "]" * 500, 500),
                                            ('["\\"", ' + "[" * 70 + "]" * 70 + "]", 71)])
def test_json_nesting(text: str, depth: int) -> None:
    assert json_nesting(text) >= depth
    if depth > MAX_DEPTH or text.count("[") + text.count("{") > MAX_DEPTH:
        assert json_nesting(text) == depth


def test_json_text_is_lossless_for_what_orjson_refuses() -> None:
    deep: object = "end"
    for _ in range(2000):
        deep = {"k": deep}
    text = json_text({"big": 2**70, "lone": "\ud800", "deep": deep, "é": [1.5, None, True]})
    assert text.encode("utf-8")  # storable
    assert text.startswith('{"big":1180591620717411303424,"lone":"\\ud800","deep":{"k":{"k":')
    assert text.endswith('"end"' + "}" * 2000 + ',"é":[1.5,null,true]}')


@pytest.mark.parametrize("rule", [parse_count, parse_duration])
@pytest.mark.parametrize("digits", [5000, 10_000])
def test_numbers_of_any_size_are_invalid_value_not_a_crash(rule, digits: int) -> None:
    """Python reads no more than 4300 digits as an integer; a longer number is still just too large."""
    assert code_of(rule, "9" * digits) == "invalid_value"
    assert code_of(rule, f" {'1' * digits} ") == "invalid_value"
    assert code_of(rule, 10**digits) == "invalid_value"
