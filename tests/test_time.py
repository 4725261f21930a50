"""The one duration parser and UTC clock: short and ISO 8601 durations, timestamps, now."""

from __future__ import annotations

import re
import types
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter

import purposeguard.stores
from purposeguard import _time
from purposeguard._time import epoch_us, format_ts, now_iso, now_us, parse_duration, parse_ts

DAY = timedelta(days=1)
MALFORMED = (
    "a duration is a whole number and a unit s, m, h, d, w or y, such as '3y', "
    "or ISO 8601, such as 'P3Y' or 'PT12H'"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45s", timedelta(seconds=45)),
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("30d", 30 * DAY),
        ("2w", 14 * DAY),
        ("3y", 3 * 365 * DAY),
        ("030d", 30 * DAY),
    ],
)
def test_short_durations_are_a_number_and_a_unit(text: str, expected: timedelta) -> None:
    assert expected == parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P3Y", 3 * 365 * DAY),
        ("P2M", 60 * DAY),
        ("P30D", 30 * DAY),
        ("P1W", 7 * DAY),
        ("PT12H", timedelta(hours=12)),
        ("PT90M", timedelta(minutes=90)),
        ("PT1.5S", timedelta(seconds=1, microseconds=500_000)),
        ("PT0.000001S", timedelta(microseconds=1)),
        ("P1Y2M3DT4H5M6S", timedelta(days=365 + 60 + 3, hours=4, minutes=5, seconds=6)),
    ],
)
def test_iso_8601_durations_count_a_year_as_365_days_and_a_month_as_30(
    text: str, expected: timedelta
) -> None:
    assert expected == parse_duration(text)


@pytest.mark.parametrize(
    "span",
    [
        3 * 365 * DAY,
        timedelta(hours=12),
        timedelta(days=1, seconds=5, microseconds=3),
        timedelta(microseconds=1),
        timedelta(days=999_999_999),
    ],
)
def test_what_pydantic_dumps_a_timedelta_as_parses_back_to_it(span: timedelta) -> None:
    dumped = TypeAdapter(timedelta).dump_python(span, mode="json")
    assert span == parse_duration(dumped)


def test_a_positive_timedelta_passes_through() -> None:
    assert timedelta(hours=1) == parse_duration(timedelta(hours=1))


@pytest.mark.parametrize("value", ["0d", "P0D", "PT0S", timedelta(0)])
def test_a_zero_duration_is_refused_unless_allowed(value: object) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        parse_duration(value)
    assert timedelta(0) == parse_duration(value, allow_zero=True)


@pytest.mark.parametrize("value", ["-5d", "-P1D", -DAY])
def test_a_negative_duration_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        parse_duration(value, allow_zero=True)


@pytest.mark.parametrize(
    "value",
    ["", "d", "3 years", "30 d", "3Y", "p3y", "P", "PT", "P1DT", "P1.5D", "PT1H30", "--5d", 30],
)
def test_a_malformed_duration_says_what_one_looks_like_without_echoing_it(
    value: object,
) -> None:
    with pytest.raises(ValueError, match="such as") as info:
        parse_duration(value)
    assert str(info.value) == MALFORMED


def test_a_duration_too_long_for_a_timedelta_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter than 999,999,999 days"):
        parse_duration("P99999999999Y")
    with pytest.raises(ValueError, match="such as") as info:
        parse_duration("9" * 100 + "d")  # longer than any duration is written
    assert str(info.value) == MALFORMED


def test_timestamps_are_fixed_width_utc_and_parse_back() -> None:
    at = datetime(2024, 9, 1, 19, 0, 0, 5, tzinfo=timezone(timedelta(hours=9)))
    text = format_ts(at)
    assert text == "2024-09-01T10:00:00.000005Z"
    assert parse_ts(text) == at
    assert parse_ts(text).tzinfo is UTC


def test_a_naive_datetime_cannot_be_formatted() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_ts(datetime(2024, 9, 1))


def test_parse_ts_reads_any_iso_8601_time_and_naive_means_utc() -> None:
    assert parse_ts("2024-09-01T12:00:00+09:00") == datetime(2024, 9, 1, 3, tzinfo=UTC)
    assert parse_ts("2024-09-01T12:00Z") == datetime(2024, 9, 1, 12, tzinfo=UTC)
    assert parse_ts("2024-09-01") == datetime(2024, 9, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="Invalid isoformat"):
        parse_ts("yesterday")


def test_the_stores_keep_exporting_the_timestamp_helpers() -> None:
    assert purposeguard.stores.format_ts is format_ts
    assert purposeguard.stores.parse_ts is parse_ts


def _clock(monkeypatch: pytest.MonkeyPatch, ns: int) -> None:
    monkeypatch.setattr(_time, "time", types.SimpleNamespace(time_ns=lambda: ns))


def test_now_iso_is_microseconds_in_utc_and_follows_the_clock_across_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    second = int(datetime(2024, 9, 1, 10, tzinfo=UTC).timestamp())
    _clock(monkeypatch, second * 10**9 + 123_456_789)
    assert now_iso() == "2024-09-01T10:00:00.123456Z"
    _clock(monkeypatch, second * 10**9 + 999_999_999)
    assert now_iso() == "2024-09-01T10:00:00.999999Z"
    _clock(monkeypatch, (second + 1) * 10**9)
    assert now_iso() == "2024-09-01T10:00:01.000000Z"


def test_now_iso_reads_the_real_clock() -> None:
    before = datetime.now(UTC)
    text = now_iso()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text)
    assert before <= parse_ts(text) <= after


def test_now_us_and_epoch_us_count_microseconds_since_the_epoch() -> None:
    assert epoch_us(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == 1_000_005
    assert epoch_us(datetime(1970, 1, 1, 9, tzinfo=timezone(timedelta(hours=9)))) == 0
    before = epoch_us(datetime.now(UTC))
    now = now_us()
    after = epoch_us(datetime.now(UTC))
    assert before is not None
    assert after is not None
    assert before <= now <= after


@pytest.mark.parametrize("value", [datetime(2024, 9, 1), "2024-09-01", 0, None])
def test_epoch_us_is_none_for_what_names_no_instant(value: object) -> None:
    assert epoch_us(value) is None
