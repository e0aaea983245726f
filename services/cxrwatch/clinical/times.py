"""Event times of clinical messages, read as the sender meant them.

Event time, not arrival time, places an observation in the look-back window, so
every time is turned into an aware UTC instant here:

* a time with a UTC offset is taken as given;
* a time without one is read in the facility's zone, ``CXRWATCH_FACILITY_TIMEZONE``
  (an IANA name such as ``America/New_York``; default ``UTC``), with the offset
  in force on that date, so summer and winter times both land right. FHIR
  requires an offset on a dateTime with a time, but senders omit it; such a
  value is given the facility's offset before the FHIR library validates it;
* a local time that occurs twice (clocks going back) is read as the first; one
  that never occurs (clocks going forward) with the offset before the change;
* a date alone stands for the end of that local day: the latest moment it can
  mean, so a value is never placed before it could have been measured;
* a year or a year and month is too coarse for look-backs of hours: refused;
* a time the stores cannot hold (before 1970, after 2286-11-20) is refused, so
  that it is dead-lettered as bad input, not as a reader defect.
"""

import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cxrwatch.core.errors import InvalidInput
from cxrwatch.core.observations import check_storable

# A FHIR time element (a name ending in DateTime or Instant, a Period's start or
# end, issued, lastUpdated, a Bundle's timestamp) whose value has a time but no
# offset. Other strings that merely look like times are left alone.
_NAIVE_JSON_DATETIME = re.compile(
    rb'("(?:\w*DateTime|\w*Instant|start|end|issued|lastUpdated|timestamp)"\s*:\s*)'
    rb'"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})(:\d{2}(?:\.\d{1,9})?)?"'
)
_HL7_DTM = re.compile(
    r"(?P<date>\d{4}(?:\d{2}(?:\d{2})?)?)"
    r"(?P<clock>\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,4})?)?)?)?"
    r"(?P<offset>[+-]\d{4})?"
)
_END_OF_DAY = time(23, 59, 59, 999000)


class FacilityClock:
    """Reads event times, completing those without an offset in the facility zone."""

    def __init__(self, zone_name: str) -> None:
        try:
            self.zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"CXRWATCH_FACILITY_TIMEZONE={zone_name!r} is not an IANA time zone "
                "name such as 'Europe/London' or 'UTC'"
            ) from exc

    def day_of(self, moment: datetime) -> date:
        """Return the facility's calendar day at an aware instant."""
        return moment.astimezone(self.zone).date()

    def complete_fhir_json(self, raw: bytes) -> bytes:
        """Give every dateTime in a FHIR JSON document without an offset the
        facility's offset for that date, so that the library accepts it."""
        if _NAIVE_JSON_DATETIME.search(raw) is None:
            return raw
        return _NAIVE_JSON_DATETIME.sub(self._with_offset, raw)

    def fhir_time(self, value: datetime | date | str, what: str) -> datetime:
        """Return a validated FHIR dateTime as an instant.

        Raises
        ------
        InvalidInput
            If the value is only a year or a year and month, or outside the
            times the stores hold.
        """
        if isinstance(value, datetime):
            return self._instant(value, what)
        if isinstance(value, date):
            return self._instant(datetime.combine(value, _END_OF_DAY), what)
        raise InvalidInput(
            f"{what} {value!r} is too coarse: an observation time needs at least a day"
        )

    def hl7_time(self, text: str, what: str) -> datetime | None:
        """Return an HL7 v2 DTM (``YYYYMMDD[HH[MM[SS[.S]]]][+/-ZZZZ]``) as an
        instant, or ``None`` when the field is empty.

        Raises
        ------
        InvalidInput
            If the text is not a DTM, holds less than a day or lies outside the
            times the stores hold.
        """
        text = text.strip()
        if not text:
            return None
        match = _HL7_DTM.fullmatch(text)
        if match is None:
            raise InvalidInput(f"{what} {text!r} is not an HL7 date/time")
        day, clock, offset = match["date"], match["clock"] or "", match["offset"]
        if len(day) < 8:
            raise InvalidInput(
                f"{what} {text!r} is too coarse: an observation time needs a day"
            )
        try:
            moment = _hl7_naive(day, clock)
        except ValueError as exc:
            raise InvalidInput(f"{what} {text!r} is not a valid date/time") from exc
        if not clock:
            moment = datetime.combine(moment.date(), _END_OF_DAY)
        if offset is not None:
            moment = moment.replace(tzinfo=_offset(offset, text, what))
        return self._instant(moment, what)

    def _instant(self, moment: datetime, what: str) -> datetime:
        """The UTC instant of a time, read in the facility zone when it has no
        offset; checked before it is converted, which could overflow."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone, fold=0)
        check_storable(moment, what)
        return moment.astimezone(UTC)

    def _with_offset(self, match: re.Match[bytes]) -> bytes:
        minutes, seconds = match[2].decode(), (match[3] or b":00").decode()
        try:
            naive = datetime.fromisoformat(minutes + seconds[:3])
        except ValueError:
            return match[0]  # not a date; the library will name the problem
        offset = naive.replace(tzinfo=self.zone, fold=0).utcoffset() or timedelta(0)
        return match[1] + f'"{minutes}{seconds}{_iso_offset(offset)}"'.encode()


def _hl7_naive(day: str, clock: str) -> datetime:
    year, month, dom = int(day[:4]), int(day[4:6]), int(day[6:8])
    hour = int(clock[0:2] or 0)
    minute = int(clock[2:4] or 0)
    second = int(clock[4:6] or 0)
    micro = round(float("0" + clock[6:]) * 1_000_000) if len(clock) > 6 else 0
    return datetime(year, month, dom, hour, minute, second, micro)


def _offset(text: str, whole: str, what: str) -> timezone:
    hours, minutes = int(text[1:3]), int(text[3:5])
    if hours > 14 or minutes > 59:
        raise InvalidInput(f"{what} {whole!r} has an impossible UTC offset {text}")
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if text[0] == "-" else delta)


def _iso_offset(offset: timedelta) -> str:
    total = int(offset.total_seconds()) // 60
    sign = "-" if total < 0 else "+"
    hours, minutes = divmod(abs(total), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"
