"""Event times: offsets, the facility zone across DST, dates, coarse times."""

import re
from datetime import UTC, date, datetime

import pytest
from cxrwatch.clinical.times import FacilityClock
from cxrwatch.core.errors import InvalidInput


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_fhir_time_without_offset_is_read_in_the_facility_zone(new_york):
    raw = b'{"effectiveDateTime": "2021-03-09T14:30:00"}'
    assert (
        new_york.complete_fhir_json(raw)
        == b'{"effectiveDateTime": "2021-03-09T14:30:00-05:00"}'
    )


def test_fhir_time_after_the_dst_change_takes_the_summer_offset(new_york):
    raw = b'{"effectiveDateTime": "2021-03-15T14:30:00"}'
    assert (
        new_york.complete_fhir_json(raw)
        == b'{"effectiveDateTime": "2021-03-15T14:30:00-04:00"}'
    )


def test_fhir_times_with_an_offset_are_left_alone(new_york):
    raw = b'{"a": "2021-03-09T14:30:00Z", "b": "2021-03-09T14:30:00+01:00"}'
    assert new_york.complete_fhir_json(raw) == raw
    raw = b'{"c": "2021-03-09", "d": "\\"2021-03-09T14:30:00\\" quoted"}'
    assert new_york.complete_fhir_json(raw) == raw
    raw = b'{"subject": {"reference": "2021-03-09T14:30:00"}}'  # not a time element
    assert new_york.complete_fhir_json(raw) == raw


def test_every_kind_of_fhir_time_element_is_completed(new_york):
    raw = (
        b'{"effectivePeriod": {"start": "2021-03-09T14:30:00", '
        b'"end": "2021-03-09T15:00"}, "issued": "2021-03-09T16:00:00", '
        b'"valueDateTime": "2021-03-09T17:00:00.5"}'
    )
    assert new_york.complete_fhir_json(raw) == (
        b'{"effectivePeriod": {"start": "2021-03-09T14:30:00-05:00", '
        b'"end": "2021-03-09T15:00:00-05:00"}, "issued": "2021-03-09T16:00:00-05:00", '
        b'"valueDateTime": "2021-03-09T17:00:00.5-05:00"}'
    )


def test_hl7_times_without_offset_across_dst(new_york):
    assert new_york.hl7_time("20210309143000", "t") == utc(2021, 3, 9, 19, 30)
    assert new_york.hl7_time("202103151430", "t") == utc(2021, 3, 15, 18, 30)


def test_hl7_time_with_offset(new_york):
    assert new_york.hl7_time("20141006062700+0700", "t") == utc(2014, 10, 5, 23, 27)
    assert new_york.hl7_time("20110103143428-0800", "t") == utc(2011, 1, 3, 22, 34, 28)


def test_a_date_alone_is_the_end_of_the_local_day(new_york):
    end = utc(2021, 3, 10, 4, 59, 59, 999000)  # 23:59:59.999 EST
    assert new_york.hl7_time("20210309", "t") == end
    assert new_york.fhir_time(date(2021, 3, 9), "t") == end


def test_a_local_time_that_occurs_twice_is_read_as_the_first(new_york):
    # 2021-11-07 01:30 happens at 05:30 UTC (EDT) and again at 06:30 UTC (EST).
    assert new_york.hl7_time("202111070130", "t") == utc(2021, 11, 7, 5, 30)


def test_a_local_time_that_never_occurs_takes_the_offset_before_the_change(new_york):
    # 2021-03-14 02:30 does not exist in New York; EST (-5) still applies.
    assert new_york.hl7_time("202103140230", "t") == utc(2021, 3, 14, 7, 30)


@pytest.mark.parametrize("text", ["2021", "202103"])
def test_a_year_or_month_is_too_coarse(new_york, text):
    with pytest.raises(InvalidInput, match="too coarse"):
        new_york.hl7_time(text, "OBX-14")


def test_fhir_year_month_is_too_coarse(new_york):
    with pytest.raises(InvalidInput, match="too coarse"):
        new_york.fhir_time("2021-03", "effectiveDateTime")


@pytest.mark.parametrize(
    "text", ["yesterday", "20211345", "20210101+2500", "2021-03-09"]
)
def test_malformed_hl7_times_are_refused(new_york, text):
    with pytest.raises(InvalidInput, match="OBX-14"):
        new_york.hl7_time(text, "OBX-14")


def test_an_empty_hl7_time_is_absent(new_york):
    assert new_york.hl7_time("", "t") is None


def test_an_unknown_zone_names_the_setting():
    with pytest.raises(ValueError, match="CXRWATCH_FACILITY_TIMEZONE"):
        FacilityClock("Mars/Olympus_Mons")


# The stores key times as 10**13 milliseconds from 1970: up to 1970-01-01 plus
# 115740 days and 64000 s (2286-11-20 17:46:40 UTC), that instant excluded.
@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("19691231235959+0000", "1969-12-31T23:59:59+00:00"),
        ("22861120174640+0000", "2286-11-20T17:46:40+00:00"),
        ("29991204120000", "2999-12-04T12:00:00-05:00"),  # EST in December
        ("00010101000000+1400", "0001-01-01T00:00:00+14:00"),  # before year 1 UTC
        ("99991231", "9999-12-31T23:59:59.999000-05:00"),  # after year 9999 UTC
    ],
)
def test_hl7_times_the_stores_cannot_hold_are_refused(new_york, text, shown):
    with pytest.raises(InvalidInput) as refused:
        new_york.hl7_time(text, "OBX-14")
    assert type(refused.value) is InvalidInput
    assert str(refused.value) == (
        f"OBX-14 {shown} is outside the times cxrwatch stores "
        "(1970-01-01 to 2286-11-20)"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (datetime(1800, 1, 1, tzinfo=UTC), "1800-01-01T00:00:00+00:00"),
        (date(2999, 1, 1), "2999-01-01T23:59:59.999000-05:00"),
    ],
)
def test_fhir_times_the_stores_cannot_hold_are_refused(new_york, value, shown):
    with pytest.raises(InvalidInput, match=re.escape(f"effectiveDateTime {shown} is")):
        new_york.fhir_time(value, "effectiveDateTime")


def test_the_first_and_last_storable_times_are_read(new_york):
    assert new_york.hl7_time("19700101000000+0000", "t") == utc(1970, 1, 1)
    assert new_york.hl7_time("22861120174639.999+0000", "t") == utc(
        2286, 11, 20, 17, 46, 39, 999000
    )
