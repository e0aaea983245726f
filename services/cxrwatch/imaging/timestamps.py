"""When a radiograph was acquired, as an aware datetime.

Sources, first complete one wins:

1. Acquisition DateTime (0008,002A);
2. Acquisition Date + Acquisition Time (old CR objects carry only these);
3. Content Date + Content Time;
4. Study Date + Study Time.

A date without its time is incomplete: midnight would misplace the image by up
to a day in the clinical look-back, so the next source is tried instead.

The offset is, in order: the one written in the DateTime value itself, the
object's Timezone Offset From UTC (0008,0201), which by the standard applies to
every date and time in it, and last the facility's time zone.

Dates are ``YYYYMMDD`` or the ACR-NEMA ``YYYY.MM.DD``; times ``HH[MM[SS[.F]]]``
or ``HH:MM:SS``. A malformed value is an error naming the attribute, never a
silent fallback to another source.
"""

import re
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

from pydicom.dataset import Dataset

from cxrwatch.core.errors import InvalidInput
from cxrwatch.imaging.dataset import text

_DATE = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
_TIME = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6})\d*)?)?)?$")
_DATETIME = re.compile(
    r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6})\d*)?([+-]\d{4})?$"
)
_OFFSET = re.compile(r"^([+-])(\d{2})(\d{2})$")

_PAIRS = (
    ("AcquisitionDate", "AcquisitionTime"),
    ("ContentDate", "ContentTime"),
    ("StudyDate", "StudyTime"),
)


def acquired_at(dataset: Dataset, facility_tz: tzinfo) -> tuple[datetime, str] | None:
    """Return the acquisition time and the attribute it came from, or None.

    Raises
    ------
    InvalidInput
        If a date, time or offset that is present is malformed.
    """
    zone = _object_offset(dataset) or facility_tz
    stamp = text(dataset, "AcquisitionDateTime")
    if stamp is not None:
        found = parse_datetime(stamp, zone, "AcquisitionDateTime")
        if found is not None:
            return found, "AcquisitionDateTime"
    for date_keyword, time_keyword in _PAIRS:
        day = text(dataset, date_keyword)
        clock = text(dataset, time_keyword)
        if day is None or clock is None:
            continue
        when = datetime.combine(
            parse_date(day, date_keyword), parse_time(clock, time_keyword)
        )
        return when.replace(tzinfo=zone), f"{date_keyword}+{time_keyword}"
    return None


def parse_date(value: str, keyword: str = "date") -> date:
    """Parse a DA value (``YYYYMMDD`` or ``YYYY.MM.DD``).

    Raises
    ------
    InvalidInput
        If the value is no calendar date.
    """
    match = _DATE.match(value.strip())
    try:
        if match is None:
            raise ValueError("expected YYYYMMDD")
        return date(*(int(part) for part in match.groups()))
    except ValueError as exc:
        raise InvalidInput(
            f"{keyword} is {value!r}, not a DICOM date (YYYYMMDD): {exc}"
        ) from exc


def parse_time(value: str, keyword: str = "time") -> time:
    """Parse a TM value (``HHMMSS.FFFFFF``, shorter forms, or ``HH:MM:SS``).

    Raises
    ------
    InvalidInput
        If the value is no time of day.
    """
    match = _TIME.match(value.strip())
    try:
        if match is None:
            raise ValueError("expected HHMMSS.FFFFFF")
        hours, minutes, seconds, fraction = match.groups()
        return time(
            int(hours),
            int(minutes or 0),
            min(int(seconds or 0), 59),  # a leap second stays in its minute
            int((fraction or "0").ljust(6, "0")),
        )
    except ValueError as exc:
        raise InvalidInput(
            f"{keyword} is {value!r}, not a DICOM time (HHMMSS.FFFFFF): {exc}"
        ) from exc


def parse_datetime(value: str, zone: tzinfo, keyword: str) -> datetime | None:
    """Parse a DT value; None when it stops before the hour.

    Raises
    ------
    InvalidInput
        If the value is malformed.
    """
    cleaned = value.strip()
    if re.fullmatch(r"\d{4}(\d{2}){0,2}([+-]\d{4})?", cleaned):
        return None
    match = _DATETIME.match(cleaned)
    try:
        if match is None:
            raise ValueError("expected YYYYMMDDHHMMSS.FFFFFF&ZZXX")
        year, month, day, hours, minutes, seconds, fraction, offset = match.groups()
        when = datetime(
            int(year),
            int(month),
            int(day),
            int(hours),
            int(minutes or 0),
            min(int(seconds or 0), 59),
            int((fraction or "0").ljust(6, "0")),
        )
        return when.replace(tzinfo=_offset(offset, keyword) if offset else zone)
    except ValueError as exc:
        raise InvalidInput(
            f"{keyword} is {value!r}, not a DICOM date-time: {exc}"
        ) from exc


def _object_offset(dataset: Dataset) -> tzinfo | None:
    found = text(dataset, "TimezoneOffsetFromUTC")
    if found is None:
        return None
    return _offset(found, "TimezoneOffsetFromUTC")


def _offset(value: str, keyword: str) -> tzinfo:
    match = _OFFSET.match(value.strip())
    if match is None:
        raise InvalidInput(f"{keyword} is {value!r}, not a UTC offset like '-0400'")
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14):
        raise InvalidInput(f"{keyword} is {value!r}, beyond the +-14:00 of any zone")
    if not delta:
        return UTC
    return timezone(-delta if sign == "-" else delta)


def birth_date(dataset: Dataset) -> str | None:
    """Patient's Birth Date as ISO ``YYYY-MM-DD``; None when absent or malformed."""
    found = text(dataset, "PatientBirthDate")
    if found is None:
        return None
    try:
        return parse_date(found, "PatientBirthDate").isoformat()
    except InvalidInput:
        return None
